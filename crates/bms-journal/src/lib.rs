//! bms-journal: durable JSON-lines journals: the protection event record and the
//! plugin runtime's record.
//!
//! Owns: the file discipline. Each record is one line, written in one call
//! and `fsync`ed — before `append` returns (the protection record), or
//! shortly after by a writer thread ([`Journal::write_in_background`], the
//! plugin record, journaled from the control thread). A torn last line (the process died mid-write) is
//! skipped and counted when reading, never fatal; the next append starts on
//! a fresh line.
//!
//! May not touch: what the records mean.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use bms_protection::events::{EventRecord, EventSink};
use serde::{de::DeserializeOwned, Serialize};

/// A journal line: the journal assigns its sequence number and wall time.
pub trait Record: Serialize + DeserializeOwned {
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

/// Result of reading a journal file.
#[derive(Debug)]
pub struct ReadJournal<R> {
    pub records: Vec<R>,
    /// Lines that did not parse (a torn final write).
    pub torn_lines: usize,
}

/// A journal: in memory always, on disk when opened with a path.
pub struct Journal<R> {
    file: Option<(File, PathBuf)>,
    /// Set by [`Journal::write_in_background`]: lines go to a writer thread.
    background: Option<Background>,
    records: Vec<R>,
    next_seq: u64,
    /// Appends that failed to reach the disk (the record is kept in memory).
    pub write_errors: u64,
}

struct Background {
    tx: std::sync::mpsc::Sender<Vec<u8>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Close the channel, then wait for the queued lines to be written.
        let (tx, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<R: Record> Journal<R> {
    /// A log kept only in memory (tests, dry runs).
    pub fn memory() -> Self {
        Self {
            file: None,
            background: None,
            records: Vec::new(),
            next_seq: 1,
            write_errors: 0,
        }
    }

    /// Open (or create) `path` for appending; earlier records are loaded so
    /// sequence numbers continue and persistent latches can be restored.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let previous = if path.exists() {
            Self::read(path)?
        } else {
            ReadJournal {
                records: Vec::new(),
                torn_lines: 0,
            }
        };
        if previous.torn_lines > 0 {
            tracing::warn!(path = %path.display(), torn = previous.torn_lines, "journal had unreadable lines (torn write); skipped");
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        // Terminate a torn last line so the next record starts clean.
        let ends_clean = std::fs::read(path)
            .map(|b| b.last().is_none_or(|c| *c == b'\n'))
            .map_err(io)?;
        if !ends_clean {
            file.write_all(b"\n")
                .and_then(|_| file.sync_data())
                .map_err(io)?;
        }
        let next_seq = previous.records.last().map_or(1, |r| r.seq() + 1);
        Ok(Self {
            file: Some((file, path.to_owned())),
            background: None,
            records: previous.records,
            next_seq,
            write_errors: 0,
        })
    }

    /// Read every record of an event file.
    pub fn read(path: &Path) -> Result<ReadJournal<R>, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let mut out = ReadJournal {
            records: Vec::new(),
            torn_lines: 0,
        };
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(io)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<R>(&line) {
                Ok(r) => out.records.push(r),
                Err(_) => out.torn_lines += 1,
            }
        }
        Ok(out)
    }

    /// Append a record durably; fills in `seq` and `unix_ms`.
    pub fn append(&mut self, mut rec: R) -> &R {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        rec.stamp(self.next_seq, unix_ms);
        self.next_seq += 1;
        if let Some(bg) = &self.background {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            let _ = bg.tx.send(line);
        } else if let Some((file, path)) = &mut self.file {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            // One write of the whole line, then fsync: the record is
            // either complete on disk or absent (torn at worst).
            if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
                self.write_errors += 1;
                tracing::error!(path = %path.display(), error = %e, "cannot persist journal record");
            }
        }
        self.records.push(rec);
        self.records.last().expect("just pushed")
    }

    /// Hand the file to a writer thread: `append` returns at once and the
    /// record reaches the disk (write + fsync, in order) shortly after.
    /// For callers that must not wait on a disk (the control thread); the
    /// protection record stays synchronous. Dropping the journal flushes.
    pub fn write_in_background(&mut self) -> std::io::Result<()> {
        let Some((mut file, path)) = self.file.take() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                for line in rx {
                    if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
                        tracing::error!(path = %path.display(), error = %e, "cannot persist journal record");
                    }
                }
            })?;
        self.background = Some(Background {
            tx,
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
}
