//! The durable end of a journal file.
//!
//! Owns: appending whole lines and `fsync`ing them, and recovering from a
//! failed write. Lines not yet known durable stay queued; after any
//! failure (a short write on a full disk, EFBIG, a failed `fsync`) the file
//! is cut back to its last good length before the queue is written again,
//! so a record is never glued to a fragment and a failed `fsync` is never
//! taken for a success. May not touch: what the lines mean.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most bytes queued while the disk refuses them; beyond, records are
/// dropped from the file (they stay in memory) and counted.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// What a journal's disk side has been through; shared with a writer
/// thread, so read with [`Health::snapshot`].
#[derive(Debug, Default)]
pub struct Health {
    write_errors: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`Health`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HealthSnapshot {
    /// Attempts to write or `fsync` that failed.
    pub write_errors: u64,
    /// Records written to memory but not yet known durable.
    pub queued: u64,
    /// Records that could not even be queued (queue full): never on disk.
    pub dropped: u64,
    pub last_error: Option<String>,
}

impl HealthSnapshot {
    /// Whether the disk currently holds less than the journal was told.
    pub fn failing(&self) -> bool {
        self.queued > 0 || self.dropped > 0
    }
}

impl Health {
    /// Whether records are queued or were dropped (no lock taken).
    pub fn failing(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > 0 || self.dropped.load(Ordering::Relaxed) > 0
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            write_errors: self.write_errors.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

pub(crate) struct DurableFile {
    file: File,
    path: PathBuf,
    /// File length up to the end of the last line known durable.
    good_len: u64,
    /// Lines not yet known durable, oldest first.
    queue: Vec<u8>,
    queued_lines: u64,
    /// A failed attempt may have left bytes past `good_len`.
    dirty: bool,
    health: Arc<Health>,
}

impl DurableFile {
    /// Append to `path`, whose first `good_len` bytes are whole records.
    pub(crate) fn open(path: &Path, good_len: u64, health: Arc<Health>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            good_len,
            queue: Vec::new(),
            queued_lines: 0,
            dirty: false,
            health,
        })
    }

    /// Queue one line (with its `\n`) and try to make the queue durable.
    pub(crate) fn push(&mut self, line: &[u8]) {
        if self.queue.len() + line.len() > MAX_QUEUED_BYTES {
            self.health.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), "journal queue full: record not written to disk");
        } else {
            self.queue.extend_from_slice(line);
            self.queued_lines += 1;
        }
        self.flush();
    }

    /// End an unterminated last record with its newline: it counts
    /// as good, and the next record must not run into it.
    pub(crate) fn terminate(&mut self) {
        self.queue.push(b'\n');
        self.flush();
    }

    /// Write the queue at the good end of the file and `fsync` it.
    pub(crate) fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        match self.write_queue() {
            Ok(()) => {
                self.good_len += self.queue.len() as u64;
                self.queue.clear();
                self.queued_lines = 0;
                self.dirty = false;
            }
            Err(e) => {
                self.health.write_errors.fetch_add(1, Ordering::Relaxed);
                *self
                    .health
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                tracing::error!(path = %self.path.display(), error = %e, queued = self.queued_lines, "cannot persist journal record; kept queued");
            }
        }
        self.health
            .queued
            .store(self.queued_lines, Ordering::Relaxed);
    }

    fn write_queue(&mut self) -> std::io::Result<()> {
        if self.dirty {
            // Cut whatever a failed attempt left, so nothing is glued to it.
            self.file.set_len(self.good_len)?;
            self.dirty = false;
        }
        self.dirty = true;
        self.file.write_all(&self.queue)?;
        // A failed fsync leaves `dirty` set: the next attempt truncates and
        // writes again rather than trusting the page cache.
        self.file.sync_data()
    }
}
