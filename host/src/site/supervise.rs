//! Supervision of the protection thread from the control side.
//!
//! Owns: noticing that a rack's protection stopped ticking (or came back)
//! and recording it in `supervision.jsonl`. What follows from a dead
//! protection is enforced where the data is read, so it holds even if the
//! control thread is the one that hangs next: the PCS link writes 0 A and
//! freezes its heartbeat, the bank allows nothing and shows the rack
//! faulted, SunSpec shows the string disconnected with an alarm (all via
//! [`Liveness`]). The contactor watchdog relay opens the rack meanwhile.
//!
//! May not touch: protection itself (its lock may be held by the very
//! thread that hung), so the record goes to a journal of its own.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalError, Record};
use crate::protection::task::Liveness;

/// One supervision record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisionRecord {
    pub seq: u64,
    /// Site-clock time, ms.
    pub time_ms: u64,
    pub unix_ms: u64,
    pub rack: String,
    /// `protection_stopped` or `protection_resumed`.
    pub kind: String,
    /// Clock ms since protection's last tick when noticed.
    pub silent_ms: u64,
    pub message: String,
}

impl Record for SupervisionRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
}

pub struct Supervisor {
    rack: String,
    liveness: Liveness,
    journal: Journal<SupervisionRecord>,
    first_seq: u64,
    dead: bool,
}

impl Supervisor {
    /// Records go to `state_dir/supervision.jsonl`, written off the
    /// calling thread.
    pub fn open(rack: &str, liveness: Liveness, state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join("supervision.jsonl");
        let mut journal = Journal::open(&path)?;
        journal
            .write_in_background()
            .map_err(|source| JournalError::Io { path, source })?;
        Ok(Self {
            rack: rack.to_string(),
            first_seq: journal.next_seq(),
            liveness,
            journal,
            dead: false,
        })
    }

    /// Check once (every control cycle); returns whether protection is
    /// alive, recording a change.
    pub fn check(&mut self, now_ms: u64) -> bool {
        let alive = self.liveness.alive();
        if alive != self.dead {
            return alive;
        }
        self.dead = !alive;
        let silent_ms = self.liveness.silent_ms();
        let (kind, message) = if alive {
            tracing::warn!(rack = %self.rack, "protection is ticking again");
            (
                "protection_resumed",
                "protection is ticking again; the PCS heartbeat resumes".to_string(),
            )
        } else {
            let message = format!(
                "protection has not ticked for {silent_ms} ms (limit {} ms): PCS told 0 A with its \
                 heartbeat frozen, rack shown faulted in SunSpec and the bank; the watchdog relay opens the contactors",
                self.liveness.max_silence_ms()
            );
            tracing::error!(rack = %self.rack, "{message}");
            ("protection_stopped", message)
        };
        self.journal.append(SupervisionRecord {
            seq: 0,
            time_ms: now_ms,
            unix_ms: 0,
            rack: self.rack.clone(),
            kind: kind.into(),
            silent_ms,
            message,
        });
        alive
    }

    /// Records of this run.
    pub fn records(&self) -> Vec<SupervisionRecord> {
        self.journal
            .records()
            .iter()
            .filter(|r| r.seq >= self.first_seq)
            .cloned()
            .collect()
    }
}
