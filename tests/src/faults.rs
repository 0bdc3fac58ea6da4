//! The fault matrix (`cargo xtask faults`): each fault scenario's test
//! ends with one [`Row`]: what protection was expected to do, what it
//! did, how fast against its bound, and how many records the event
//! journal lost (it must lose none). [`row`] asserts the row, then
//! appends it as a JSON line to `$BMS_FAULTS_OUT` when that is set; the
//! xtask collects them into the table of SAFETY.md.

use std::io::Write;
use std::path::Path;

use bmshost::protection::events::EventRecord;

/// One scenario's outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub scenario: String,
    pub expected: String,
    pub observed: String,
    /// From the fault to the action, ms (None: no timed action).
    pub reaction_ms: Option<u64>,
    pub bound_ms: Option<u64>,
    /// Protection records in memory but not in the journal on disk.
    pub records_lost: u64,
}

/// Assert `r` (reaction within its bound, nothing lost) and record it.
pub fn row(r: Row) {
    if let (Some(t), Some(b)) = (r.reaction_ms, r.bound_ms) {
        assert!(t <= b, "{}: reacted in {t} ms, bound {b} ms", r.scenario);
    }
    assert_eq!(r.records_lost, 0, "{}: journal lost records", r.scenario);
    let Some(out) = std::env::var_os("BMS_FAULTS_OUT") else {
        return;
    };
    let mut line = serde_json::to_vec(&r).expect("a row serialises");
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .unwrap_or_else(|e| panic!("BMS_FAULTS_OUT {}: {e}", Path::new(&out).display()));
    // One write per row: rows of parallel tests never interleave.
    f.write_all(&line).expect("fault row written");
}

/// Records of `seen` (what protection recorded in memory) missing from
/// the event journal in `state_dir`.
pub fn records_lost(state_dir: &Path, seen: &[EventRecord]) -> u64 {
    let path = state_dir.join("events.jsonl");
    let on_disk: std::collections::HashSet<u64> =
        bmshost::journal::segments::read_since::<EventRecord>(&path, 0, usize::MAX)
            .expect("the event journal reads back")
            .iter()
            .map(|r| r.seq)
            .collect();
    seen.iter().filter(|r| !on_disk.contains(&r.seq)).count() as u64
}

/// A row for a scenario with no timed reaction.
pub fn untimed(scenario: &str, expected: &str, observed: String, records_lost: u64) -> Row {
    Row {
        scenario: scenario.into(),
        expected: expected.into(),
        observed,
        reaction_ms: None,
        bound_ms: None,
        records_lost,
    }
}
