//! The `[plugins]` section of a site file: which component serves each
//! role, its config, its sandbox, and the runtime's crash, swap and
//! persistence policy.
//!
//! Owns: the types and their defaults. May not touch: the rest of the site
//! file; the host validates these values in context (`bmshost::config`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::Role;

/// Role → plugin assignment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    pub soc: PluginSlot,
    pub soh: PluginSlot,
    pub balancer: PluginSlot,
    pub ems: PluginSlot,
    /// Default limits for every role; a role's own `sandbox` table
    /// overrides single fields.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub policy: PluginPolicy,
}

/// One role's plugin: the component file and its own config section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSlot {
    /// Component file, relative to the site file.
    pub path: PathBuf,
    /// Set false to run the role's native fallback instead.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Passed to the plugin's `init` as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Value,
    /// Per-role sandbox limits; unset fields take `plugins.sandbox`.
    #[serde(default)]
    pub sandbox: SandboxOverride,
}

/// Per-role overrides of [`SandboxConfig`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxOverride {
    pub memory_mib: Option<u32>,
    pub deadline_ms: Option<u64>,
    pub max_state_kib: Option<u32>,
}

/// What to do when a new plugin version rejects the state handed over by
/// the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateRejectedPolicy {
    /// Keep the running version; the swap fails.
    Refuse,
    /// Swap anyway with the new version freshly `init`ed, and warn.
    InitFresh,
}

/// Crash, swap and persistence policy of the plugin runtime.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginPolicy {
    /// Wait before the first restart after a trap, in ms of host time;
    /// doubles per consecutive crash.
    pub restart_backoff_ms: u64,
    /// Longest wait between restarts, in ms.
    pub restart_backoff_max_ms: u64,
    /// This many traps within `quarantine_window_s` quarantine the plugin:
    /// the fallback stays until an operator reload.
    pub quarantine_crashes: u32,
    pub quarantine_window_s: u64,
    /// Recent snapshots a swap candidate replays before it may go live.
    pub canary_snapshots: usize,
    pub on_state_rejected: StateRejectedPolicy,
    /// Cycles after a swap during which a crash of the new version rolls
    /// back to the previous one automatically.
    pub probation_cycles: u32,
    /// Save each plugin's state in memory every this many cycles: the
    /// point a crashed plugin restarts from.
    pub checkpoint_cycles: u32,
    /// Write plugin state to disk this often (and at shutdown), in s.
    pub state_save_interval_s: u64,
    /// Watch plugin files and the site config and reload on change.
    pub watch: bool,
}

impl Default for PluginPolicy {
    fn default() -> Self {
        Self {
            restart_backoff_ms: 1_000,
            restart_backoff_max_ms: 60_000,
            quarantine_crashes: 3,
            quarantine_window_s: 600,
            canary_snapshots: 20,
            on_state_rejected: StateRejectedPolicy::Refuse,
            probation_cycles: 50,
            checkpoint_cycles: 10,
            state_save_interval_s: 60,
            watch: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn empty_table() -> toml::Value {
    toml::Value::Table(Default::default())
}

/// Resource limits for every plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Linear-memory cap per instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// CPU deadline per call, in ms.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest state blob `save_state` may return, in KiB.
    #[serde(default = "default_max_state_kib")]
    pub max_state_kib: u32,
}

fn default_memory_mib() -> u32 {
    32
}
fn default_deadline_ms() -> u64 {
    20
}
fn default_max_state_kib() -> u32 {
    1024
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            deadline_ms: default_deadline_ms(),
            max_state_kib: default_max_state_kib(),
        }
    }
}

impl PluginsConfig {
    /// The effective sandbox of a role: its overrides over the defaults.
    pub fn sandbox_for(&self, role: Role) -> SandboxConfig {
        let o = self.slot(role).sandbox;
        SandboxConfig {
            memory_mib: o.memory_mib.unwrap_or(self.sandbox.memory_mib),
            deadline_ms: o.deadline_ms.unwrap_or(self.sandbox.deadline_ms),
            max_state_kib: o.max_state_kib.unwrap_or(self.sandbox.max_state_kib),
        }
    }

    pub fn slot(&self, role: Role) -> &PluginSlot {
        match role {
            Role::Soc => &self.soc,
            Role::Soh => &self.soh,
            Role::Balancer => &self.balancer,
            Role::Ems => &self.ems,
        }
    }
    pub fn slot_mut(&mut self, role: Role) -> &mut PluginSlot {
        match role {
            Role::Soc => &mut self.soc,
            Role::Soh => &mut self.soh,
            Role::Balancer => &mut self.balancer,
            Role::Ems => &mut self.ems,
        }
    }
}
