//! The durable end of a journal file.
//!
//! Owns: appending whole lines and `fsync`ing them, and recovering from a
//! failed write. Lines not yet known durable stay queued; after any
//! failure (a short write on a full disk, EFBIG, a failed `fsync`) the file
//! is cut back to its last good length before the queue is written again,
//! so a record is never glued to a fragment and a failed `fsync` is never
//! taken for a success. Once the file is durable past
//! [`Retention::segment_bytes`] it is sealed and a new one started
//! ([`crate::segments`]). May not touch: what the lines mean.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::segments::{self, Retention};

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
    retention: Retention,
    /// Sequence number of the file's first record, and whether it holds a
    /// pinned one: the sealed segment's name.
    first_seq: Option<u64>,
    pinned: bool,
}

/// What the active file already holds when it is opened.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    /// File length up to the end of its last whole record.
    pub good_len: u64,
    pub first_seq: Option<u64>,
    pub pinned: bool,
}

impl DurableFile {
    /// Append to `path`, which already holds `held`.
    pub(crate) fn open(
        path: &Path,
        held: Held,
        health: Arc<Health>,
        retention: Retention,
    ) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            good_len: held.good_len,
            queue: Vec::new(),
            queued_lines: 0,
            dirty: false,
            health,
            retention,
            first_seq: held.first_seq,
            pinned: held.pinned,
        })
    }

    /// Queue one line (with its `\n`) of record `seq` and try to make the
    /// queue durable.
    pub(crate) fn push(&mut self, line: &[u8], seq: u64, pinned: bool) {
        if self.queue.len() + line.len() > MAX_QUEUED_BYTES {
            self.health.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), "journal queue full: record not written to disk");
        } else {
            self.queue.extend_from_slice(line);
            self.queued_lines += 1;
            self.first_seq.get_or_insert(seq);
            self.pinned |= pinned;
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
                if self.good_len >= self.retention.segment_bytes {
                    self.rotate();
                }
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

    /// Seal the (durable, fully written) file and start a new one. A
    /// failure leaves the records where they are, readable, and is retried
    /// after the next record.
    fn rotate(&mut self) {
        let Some(first_seq) = self.first_seq else {
            return;
        };
        let result = segments::seal(&self.path, first_seq, self.pinned).and_then(|sealed| {
            let fresh = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&self.path);
            match fresh {
                Ok(f) => {
                    self.file = f;
                    self.good_len = 0;
                    self.first_seq = None;
                    self.pinned = false;
                    tracing::info!(segment = %sealed.display(), "journal segment sealed");
                    segments::enforce(&self.path, self.retention.keep_segments).map(|_| ())
                }
                // The handle still appends to the sealed file: records
                // stay whole and are read back from there.
                Err(e) => Err(e),
            }
        });
        if let Err(e) = result {
            self.health.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), error = %e, "cannot rotate the journal segment");
        }
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
