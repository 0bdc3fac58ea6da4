//! The protection event record and where it goes.
//!
//! Every tier transition (raised, cleared), latch, reset, hold and
//! contactor transition becomes one [`EventRecord`], appended to an
//! [`EventSink`]. The host's sink writes each record to `events.jsonl` and
//! `fsync`s it before `append` returns (`bmshost::journal`); this crate
//! knows no file, only the trait, and [`MemoryLog`] for tests.

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
    /// An external request (operator `SetOp`, lost controller heartbeat,
    /// bank trip) started holding the contactors open or the current at 0.
    Hold,
    /// Such a request was withdrawn.
    Released,
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

/// Where protection's records go. `append` returns once the record is
/// as durable as the sink makes it (the host's: written and fsync'ed); it
/// fills in `seq` and `unix_ms`. `records` holds every record of this sink,
/// earlier runs included, so persistent latches can be restored.
pub trait EventSink: Send {
    fn append(&mut self, rec: EventRecord);
    fn records(&self) -> &[EventRecord];
    /// Whether appended records are not (yet) on durable storage: raises
    /// the `EventRecordFailing` warning.
    fn failing(&self) -> bool {
        false
    }
    /// Try again to make queued records durable (called every tick while
    /// [`EventSink::failing`], with protection's clock; the sink decides
    /// how often it really tries).
    fn retry(&mut self, _now_ms: u64) {}
}

/// An in-memory sink (tests, benchmarks, dry runs).
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    records: Vec<EventRecord>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A log that starts with `records` (a restart over an earlier record).
    pub fn with(records: Vec<EventRecord>) -> Self {
        Self { records }
    }
}

impl EventSink for MemoryLog {
    fn append(&mut self, mut rec: EventRecord) {
        rec.seq = self.records.last().map_or(1, |r| r.seq + 1);
        self.records.push(rec);
    }
    fn records(&self) -> &[EventRecord] {
        &self.records
    }
}
