//! The audit record: every attempt to change the running host, allowed or
//! not, with who, through which path, what, on what, and the outcome.
//!
//! Owns: [`AuditRecord`] and [`Audit`], a durable journal
//! (`audit.jsonl` in the state directory, fsynced per record). Its lock is
//! taken by request paths only (the control socket, the Modbus server),
//! never by the protection or control thread. May not touch: deciding;
//! callers record what they decided.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalError, Record, Retention};

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: u64,
    /// The user, or for Modbus the client address (`modbus:10.0.0.5`).
    pub user: String,
    /// `socket`, `modbus` or `http`.
    pub source: String,
    /// `reset`, `reload`, `rollback`, `alm_rst`, `set_op`, ...
    pub action: String,
    /// What it acted on: `protection`, a plugin role, a register.
    pub target: String,
    /// `ok: <what happened>` or `refused: <why>`.
    pub result: String,
}

impl Record for AuditRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
}

/// The site's audit record.
pub struct Audit(Mutex<Journal<AuditRecord>>);

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit(..)")
    }
}

impl Audit {
    /// Open `<state_dir>/audit.jsonl` (and its sealed segments).
    pub fn open(state_dir: &Path, retention: Retention) -> Result<Self, JournalError> {
        Ok(Self(Mutex::new(Journal::open_with(
            &state_dir.join("audit.jsonl"),
            retention,
        )?)))
    }

    /// A record kept in memory only (tests).
    pub fn memory() -> Self {
        Self(Mutex::new(Journal::memory()))
    }

    /// Record one attempt and its outcome.
    pub fn record<T, E: std::fmt::Display>(
        &self,
        user: &str,
        source: &str,
        action: &str,
        target: &str,
        outcome: &Result<T, E>,
    ) {
        let result = match outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        tracing::info!(user, source, action, target, %result, "audit");
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(AuditRecord {
                seq: 0,
                unix_ms: 0,
                user: user.into(),
                source: source.into(),
                action: action.into(),
                target: target.into(),
                result,
            });
    }

    /// Records after `since_seq`, at most `limit` (older ones from disk).
    pub fn since(&self, since_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, JournalError> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since(since_seq, limit)
    }
}
