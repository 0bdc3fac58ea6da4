//! The durable protection event record: [`bms_protection::events`] on
//! [`crate::journal`] (which also implements protection's `EventSink`).
//! Every record is one JSON line in `events.jsonl`, written and `fsync`ed
//! before `append` returns.

pub use bms_protection::events::*;

use crate::journal::{Journal, JournalError, ReadJournal};

/// The protection event record on disk (or in memory).
pub type EventLog = Journal<EventRecord>;
pub type EventLogError = JournalError;
pub type ReadEvents = ReadJournal<EventRecord>;

#[cfg(test)]
mod tests {
    use super::*;
    use bms_protection::limits::TierLevel;
    use bms_protection::{Location, Quantity};
    use std::fs::OpenOptions;
    use std::io::Write;

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
    fn a_torn_last_line_is_cut_on_reopen_and_never_merged() {
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
        let mut log = EventLog::open(&path).unwrap();
        assert_eq!(log.recovery().torn_tail_bytes, 19);
        log.append(rec(EventKind::Latched));
        let read = EventLog::read(&path).unwrap();
        let kinds: Vec<_> = read.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [EventKind::Raised, EventKind::Latched]);
        assert_eq!(read.torn_lines, 0, "the fragment was cut, not glued");
    }

    /// A deep-under-voltage latch long past the memory window and many
    /// sealed segments: pinned, it is still restored at the next start.
    #[test]
    fn a_persistent_latch_outlives_retention_and_is_restored_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let small = crate::journal::Retention {
            segment_bytes: 4096,
            keep_segments: 2,
            memory_records: 50,
        };
        let mut log = EventLog::open_with(&path, small).unwrap();
        log.append(EventRecord {
            quantity: Some(Quantity::CellDeepUnderVoltage),
            ..rec(EventKind::Latched)
        });
        for _ in 0..3000 {
            log.append(rec(EventKind::Raised));
        }
        assert!(log.records().len() <= 101);
        drop(log);
        let sealed = crate::journal::segments::sealed(&path).unwrap();
        assert_eq!(sealed.iter().filter(|s| !s.pinned).count(), 2);
        assert!(sealed[0].pinned && sealed[0].first_seq == 1, "{sealed:?}");

        let cfg = crate::config::SiteConfig::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml"),
        )
        .unwrap();
        let log = EventLog::open_with(&path, small).unwrap();
        let p = bms_protection::Protection::new(cfg.protection.clone(), 500, log);
        let latched: Vec<_> = p.latched().iter().map(|l| l.quantity).collect();
        assert_eq!(latched, [Quantity::CellDeepUnderVoltage]);
    }
}
