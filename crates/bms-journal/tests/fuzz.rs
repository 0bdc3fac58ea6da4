//! Fuzz target (bolero): a journal file holding any bytes opens without
//! panicking, and the next record appended reads back whole: never glued
//! to a fragment, whatever the file held.

use std::sync::atomic::{AtomicU64, Ordering};

use bms_journal::Journal;
use bms_protection::events::{EventKind, EventRecord};

fn record() -> EventRecord {
    EventRecord {
        seq: 0,
        time_ms: 1,
        unix_ms: 0,
        kind: EventKind::Raised,
        quantity: None,
        tier: None,
        location: None,
        value: None,
        limit: None,
        action: "fuzz".into(),
        message: "after the fuzzed bytes".into(),
    }
}

#[test]
fn fuzz_journal_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let runs = AtomicU64::new(0);
    bolero::check!().for_each(|bytes: &[u8]| {
        runs.fetch_add(1, Ordering::Relaxed);
        std::fs::write(&path, bytes).unwrap();
        let mut j = Journal::<EventRecord>::open(&path).unwrap();
        let seq = j.append(record()).seq;
        drop(j);
        let read = Journal::<EventRecord>::read(&path).unwrap();
        let last = read.records.last().expect("the appended record reads back");
        assert_eq!(
            (last.seq, last.message.as_str()),
            (seq, "after the fuzzed bytes")
        );
        assert_eq!(read.torn_tail_bytes, 0, "nothing torn after a clean append");
    });
    println!(
        "fuzz target journal_lines: {} executions",
        runs.load(Ordering::Relaxed)
    );
}
