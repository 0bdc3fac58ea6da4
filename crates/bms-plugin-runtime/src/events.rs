//! The plugin runtime's durable record: every load, trap, restart,
//! quarantine, swap, refusal, rollback and state restore, one JSON line in
//! `plugin-events.jsonl` next to the protection record.
//!
//! Owns: the record type. Durability comes from [`crate::journal`], in
//! background mode: a record is on disk a few ms after the transition.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::Role;
use bms_journal::{Journal, Record};

/// What happened to a role's plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginEventKind {
    Loaded,
    LoadFailed,
    Disabled,
    /// A call trapped or returned invalid output: instance dropped.
    Crashed,
    Restarted,
    RestartFailed,
    /// Too many crashes in the window: fallback until an operator reload.
    /// This is an alarm.
    Quarantined,
    Swapped,
    SwapRefused,
    RolledBack,
    StateRestored,
    StateRejected,
    StateCorrupt,
    ConfigRejected,
}

impl PluginEventKind {
    /// Whether an operator must look at it.
    pub fn is_alarm(self) -> bool {
        matches!(self, Self::Quarantined)
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEvent {
    pub seq: u64,
    /// Host monotonic time, ms.
    pub time_ms: u64,
    /// Wall-clock time, ms since the Unix epoch.
    pub unix_ms: u64,
    /// `None` for site-wide events (a rejected config edit).
    pub role: Option<Role>,
    pub kind: PluginEventKind,
    /// "name version" of the plugin concerned, when known.
    pub plugin: Option<String>,
    pub message: String,
}

impl Record for PluginEvent {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
}

/// The journal, shared by the control thread, the reloader and the API.
pub type PluginJournal = Arc<Mutex<Journal<PluginEvent>>>;

/// Append an event and log it with the matching level.
pub fn record(
    journal: &PluginJournal,
    time_ms: u64,
    role: Option<Role>,
    kind: PluginEventKind,
    plugin: Option<String>,
    message: String,
) {
    let role_s = role.map_or("-".to_string(), |r| r.to_string());
    let p = plugin.as_deref().unwrap_or("-");
    match kind {
        PluginEventKind::Crashed
        | PluginEventKind::Quarantined
        | PluginEventKind::LoadFailed
        | PluginEventKind::StateCorrupt
        | PluginEventKind::RestartFailed => {
            tracing::error!(role = %role_s, plugin = p, ?kind, "{message}")
        }
        PluginEventKind::SwapRefused
        | PluginEventKind::StateRejected
        | PluginEventKind::ConfigRejected
        | PluginEventKind::Disabled => {
            tracing::warn!(role = %role_s, plugin = p, ?kind, "{message}")
        }
        _ => tracing::info!(role = %role_s, plugin = p, ?kind, "{message}"),
    }
    journal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .append(PluginEvent {
            seq: 0,
            time_ms,
            unix_ms: 0,
            role,
            kind,
            plugin,
            message,
        });
}
