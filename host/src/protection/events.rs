//! The durable protection event record.
//!
//! Every tier transition (raised, cleared), latch, reset and contactor
//! transition becomes one JSON line in `events.jsonl`, written and
//! `fsync`ed before the call returns, so a record survives `kill -9` and
//! power loss once `append` has returned. A torn last line (the process
//! died mid-write) is skipped and counted when reading, never fatal.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::limits::TierLevel;
use super::{Location, Quantity};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A tier's condition held for its delay.
    Raised,
    /// A tier's value came back inside its hysteresis.
    Cleared,
    /// An MSL fault latched: contactors open until an authorised reset.
    Latched,
    /// An operator reset the latched faults.
    Reset,
    /// The contactor state machine changed state.
    Contactor,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, unique and increasing within one log file.
    pub seq: u64,
    /// Host monotonic time, ms.
    pub time_ms: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: u64,
    pub kind: EventKind,
    pub quantity: Option<Quantity>,
    pub tier: Option<TierLevel>,
    pub location: Option<Location>,
    /// The measured value (quantity's unit), when there is one.
    pub value: Option<f32>,
    /// The limit crossed, when there is one.
    pub limit: Option<f32>,
    /// What protection did: e.g. `warn`, `zero charge current`,
    /// `open contactors`, `precharge -> closed`.
    pub action: String,
    pub message: String,
}

/// Why the event file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("event log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result of reading an event file.
#[derive(Debug, Default)]
pub struct ReadEvents {
    pub records: Vec<EventRecord>,
    /// Lines that did not parse (a torn final write).
    pub torn_lines: usize,
}

/// The event record: in memory always, on disk when opened with a path.
pub struct EventLog {
    file: Option<(File, PathBuf)>,
    records: Vec<EventRecord>,
    next_seq: u64,
    /// Appends that failed to reach the disk (the record is kept in memory).
    pub write_errors: u64,
}

impl EventLog {
    /// A log kept only in memory (tests, dry runs).
    pub fn memory() -> Self {
        Self {
            file: None,
            records: Vec::new(),
            next_seq: 1,
            write_errors: 0,
        }
    }

    /// Open (or create) `path` for appending; earlier records are loaded so
    /// sequence numbers continue and persistent latches can be restored.
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let io = |source| EventLogError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let previous = if path.exists() {
            Self::read(path)?
        } else {
            ReadEvents::default()
        };
        if previous.torn_lines > 0 {
            tracing::warn!(path = %path.display(), torn = previous.torn_lines, "event log had unreadable lines (torn write); skipped");
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
        let next_seq = previous.records.last().map_or(1, |r| r.seq + 1);
        Ok(Self {
            file: Some((file, path.to_owned())),
            records: previous.records,
            next_seq,
            write_errors: 0,
        })
    }

    /// Read every record of an event file.
    pub fn read(path: &Path) -> Result<ReadEvents, EventLogError> {
        let io = |source| EventLogError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        let mut out = ReadEvents::default();
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(io)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<EventRecord>(&line) {
                Ok(r) => out.records.push(r),
                Err(_) => out.torn_lines += 1,
            }
        }
        Ok(out)
    }

    /// Append a record durably; fills in `seq` and `unix_ms`.
    pub fn append(&mut self, mut rec: EventRecord) -> &EventRecord {
        rec.seq = self.next_seq;
        self.next_seq += 1;
        rec.unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some((file, path)) = &mut self.file {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            // One write of the whole line, then fsync: the record is
            // either complete on disk or absent (torn at worst).
            if let Err(e) = file.write_all(&line).and_then(|_| file.sync_data()) {
                self.write_errors += 1;
                tracing::error!(path = %path.display(), error = %e, "cannot persist protection event");
            }
        }
        self.records.push(rec);
        self.records.last().expect("just pushed")
    }

    pub fn records(&self) -> &[EventRecord] {
        &self.records
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, p)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: EventKind) -> EventRecord {
        EventRecord {
            seq: 0,
            time_ms: 5,
            unix_ms: 0,
            kind,
            quantity: Some(Quantity::CellOverVoltage),
            tier: Some(TierLevel::Msl),
            location: Some(Location { module: 1, cell: 2 }),
            value: Some(3.7),
            limit: Some(3.65),
            action: "open contactors".into(),
            message: "test".into(),
        }
    }

    #[test]
    fn records_persist_and_sequence_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/events.jsonl");
        let mut log = EventLog::open(&path).unwrap();
        log.append(rec(EventKind::Raised));
        log.append(rec(EventKind::Latched));
        drop(log);
        let mut log = EventLog::open(&path).unwrap();
        assert_eq!(log.records().len(), 2);
        assert_eq!(log.append(rec(EventKind::Reset)).seq, 3);
        let read = EventLog::read(&path).unwrap();
        let kinds: Vec<_> = read.records.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Raised, EventKind::Latched, EventKind::Reset]
        );
        assert_eq!(
            read.records[0].location,
            Some(Location { module: 1, cell: 2 })
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path).unwrap();
        log.append(rec(EventKind::Raised));
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":2,\"time_ms\":").unwrap();
        let read = EventLog::read(&path).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.torn_lines, 1);
        // Appending after a torn line still produces readable records.
        let mut log = EventLog::open(&path).unwrap();
        log.append(rec(EventKind::Cleared));
        let read = EventLog::read(&path).unwrap();
        assert_eq!(
            read.records.len(),
            2,
            "the new record must not be glued to the torn line"
        );
        assert_eq!(read.records[1].kind, EventKind::Cleared);
        assert_eq!(read.torn_lines, 1);
    }
}
