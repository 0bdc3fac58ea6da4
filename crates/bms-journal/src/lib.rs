//! bms-journal: durable JSON-lines journals: the protection event record and
//! the plugin runtime's record.
//!
//! Owns: the file discipline. Each record is one line, written and
//! `fsync`ed before `append` returns (the protection record), or shortly
//! after by a writer thread ([`Journal::write_in_background`], the plugin
//! record, journaled from the control thread). The disk side ([`file`])
//! never glues a record to a fragment: after a failed write it cuts the
//! file back to its last whole record and writes the queued records again.
//! On open, a torn tail (a crash mid-write) is truncated and reported, and
//! every unparsable line inside the file is reported by number ([`read`]).
//!
//! May not touch: what the records mean.

pub mod feed;
pub mod file;
pub mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bms_protection::events::{EventRecord, EventSink};
use serde::{de::DeserializeOwned, Serialize};

pub use feed::Feed;
pub use file::{Health, HealthSnapshot, MAX_QUEUED_BYTES};
pub use read::ReadJournal;

use file::DurableFile;

/// A journal line: the journal assigns its sequence number and wall time.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + 'static {
    fn seq(&self) -> u64;
    fn stamp(&mut self, seq: u64, unix_ms: u64);
}

/// Why a journal file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What opening a journal found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn final record cut from the end of the file.
    pub torn_tail_bytes: u64,
    /// 1-based numbers of lines inside the file that do not parse.
    pub corrupt_lines: Vec<usize>,
}

enum Disk {
    Memory,
    Inline(DurableFile),
    Background(Background),
}

/// A journal: in memory always, on disk when opened with a path.
pub struct Journal<R> {
    disk: Disk,
    /// Readers' copies: every record is sent on, never waited for.
    feeds: Vec<std::sync::mpsc::Sender<R>>,
    health: Arc<Health>,
    records: Vec<R>,
    next_seq: u64,
    recovery: Recovery,
}

struct Background {
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Close the channel, then wait for the queued lines to be written.
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<R: Record> Journal<R> {
    /// A log kept only in memory (tests, dry runs).
    pub fn memory() -> Self {
        Self {
            disk: Disk::Memory,
            feeds: Vec::new(),
            health: Arc::default(),
            records: Vec::new(),
            next_seq: 1,
            recovery: Recovery::default(),
        }
    }

    /// Open (or create) `path` for appending; earlier records are loaded so
    /// sequence numbers continue and persistent latches can be restored. A
    /// torn tail is cut off (see [`Journal::recovery`]).
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let previous = if path.exists() {
            read::scan::<R>(path)?
        } else {
            read::ReadJournal::empty()
        };
        let recovery = repair(path, &previous).map_err(io)?;
        let health = Arc::new(Health::default());
        let mut disk = DurableFile::open(path, previous.good_len, health.clone()).map_err(io)?;
        if previous.unterminated {
            disk.terminate();
        }
        let next_seq = previous.records.last().map_or(1, |r| r.seq() + 1);
        Ok(Self {
            disk: Disk::Inline(disk),
            feeds: Vec::new(),
            health,
            records: previous.records,
            next_seq,
            recovery,
        })
    }

    /// Read every record of a journal file (without repairing it).
    pub fn read(path: &Path) -> Result<ReadJournal<R>, JournalError> {
        read::scan(path)
    }

    /// Append a record durably; fills in `seq` and `unix_ms`. A record the
    /// disk refuses stays in memory and queued for the next attempt; see
    /// [`Journal::health`].
    pub fn append(&mut self, mut rec: R) -> &R {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        rec.stamp(self.next_seq, unix_ms);
        self.next_seq += 1;
        let line = || {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            line
        };
        match &mut self.disk {
            Disk::Memory => {}
            Disk::Inline(f) => f.push(&line()),
            Disk::Background(bg) => {
                if let Some(tx) = &bg.tx {
                    let _ = tx.send(line());
                }
            }
        }
        // Only readers that asked for a feed pay for the clone.
        self.feeds.retain(|f| f.send(rec.clone()).is_ok());
        self.records.push(rec);
        self.records.last().expect("just pushed")
    }

    /// A reader's copy of the record, starting with every record so far.
    /// The journal only sends to it (a channel send, never a wait), so a
    /// request served from a feed holds no lock the writer takes.
    pub fn feed(&mut self) -> Feed<R> {
        let (tx, rx) = std::sync::mpsc::channel();
        for r in &self.records {
            let _ = tx.send(r.clone());
        }
        self.feeds.push(tx);
        Feed::new(rx)
    }

    /// Hand the file to a writer thread: `append` returns at once and the
    /// record reaches the disk (write + fsync, in order) shortly after.
    /// For callers that must not wait on a disk (the control thread); the
    /// protection record stays synchronous. Dropping the journal flushes.
    pub fn write_in_background(&mut self) -> std::io::Result<()> {
        let Disk::Inline(_) = self.disk else {
            return Ok(());
        };
        let Disk::Inline(mut file) = std::mem::replace(&mut self.disk, Disk::Memory) else {
            unreachable!("checked above");
        };
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer(&mut file, rx))?;
        self.disk = Disk::Background(Background {
            tx: Some(tx),
            handle: Some(handle),
        });
        Ok(())
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn records(&self) -> &[R] {
        &self.records
    }

    /// What opening the file repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Write failures and records not yet durable.
    pub fn health(&self) -> HealthSnapshot {
        self.health.snapshot()
    }
}

/// Retry interval of a writer thread whose disk refused a record.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

fn writer(file: &mut DurableFile, rx: std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match rx.recv_timeout(RETRY) {
            Ok(line) => file.push(&line),
            Err(RecvTimeoutError::Timeout) => file.flush(),
            Err(RecvTimeoutError::Disconnected) => return file.flush(),
        }
    }
}

/// Cut a torn tail and report damage inside the file.
fn repair<R>(path: &Path, found: &ReadJournal<R>) -> std::io::Result<Recovery> {
    if found.torn_tail_bytes > 0 {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(found.good_len)?;
        f.sync_all()?;
        tracing::warn!(path = %path.display(), bytes = found.torn_tail_bytes, "journal ended in a torn record (a write that did not finish); truncated");
    }
    if !found.corrupt_lines.is_empty() {
        tracing::error!(path = %path.display(), lines = ?found.corrupt_lines, "journal has lines that do not parse; kept as evidence, not read");
    }
    Ok(Recovery {
        torn_tail_bytes: found.torn_tail_bytes,
        corrupt_lines: found.corrupt_lines.clone(),
    })
}

// Protection may not depend on an I/O crate, so the journal carries the
// glue that makes it protection's durable sink.
impl Record for EventRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
}

impl EventSink for Journal<EventRecord> {
    fn append(&mut self, rec: EventRecord) {
        Journal::append(self, rec);
    }
    fn records(&self) -> &[EventRecord] {
        Journal::records(self)
    }
    fn failing(&self) -> bool {
        self.health.failing()
    }
}
