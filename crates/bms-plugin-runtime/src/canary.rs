//! The canary a swap candidate passes before it may go live, and the
//! recent-cycle history it replays.
//!
//! Owns: [`History`] (the last cycles' plugin inputs, the running plugins'
//! outputs and their checkpoints, written by the control cycle) and
//! [`run`], which instantiates a candidate in its own store, restores the
//! running version's oldest checkpoint in the window, replays the cycles
//! after it, checks every output with [`super::check`] and measures the
//! divergence from what the running version returned on the same inputs.
//!
//! May not touch: the live instances. The canary runs on the reloader
//! thread and shares nothing with the control cycle but the history lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bindings::types as w;
use super::slot::Candidate;
use super::{check, Artifact, PluginEngine, PluginInstance, Role};
use crate::config::SandboxConfig;

/// What the running plugins returned in one cycle (`None`: fallback).
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub soc: Option<w::SocOutput>,
    pub soh: Option<w::SohOutput>,
    pub bleed: Option<Vec<bool>>,
    pub ems: Option<w::EmsOutput>,
}

/// One control cycle, as the plugins saw it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub balance: w::BalanceInput,
    /// The EMS input without its snapshot (it is `balance.snapshot`).
    pub ems_soc: w::SocOutput,
    pub ems_soh: w::SohOutput,
    pub ems_limits: w::ProtectionLimits,
    pub minute_of_day: u32,
    pub outputs: Outputs,
    /// State each role's plugin saved right after this cycle, if it took a
    /// checkpoint (index: [`role_index`]).
    pub checkpoints: [Option<Arc<Vec<u8>>>; 4],
}

impl HistoryEntry {
    fn ems_input(&self) -> w::EmsInput {
        w::EmsInput {
            snapshot: self.balance.snapshot.clone(),
            soc: self.ems_soc.clone(),
            soh: self.ems_soh.clone(),
            limits: self.ems_limits,
            minute_of_day: self.minute_of_day,
        }
    }
}

pub fn role_index(role: Role) -> usize {
    match role {
        Role::Soc => 0,
        Role::Soh => 1,
        Role::Balancer => 2,
        Role::Ems => 3,
    }
}

/// The last cycles, oldest first.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    capacity: usize,
}

pub type SharedHistory = Arc<Mutex<History>>;

impl History {
    /// Keep `replay` cycles plus enough to always hold a checkpoint before
    /// them.
    pub fn new(replay: usize, checkpoint_cycles: u32) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: replay + checkpoint_cycles as usize,
        }
    }

    pub fn push(&mut self, e: HistoryEntry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Drop a role's checkpoints and outputs: they belong to a version
    /// that no longer serves.
    pub fn forget(&mut self, role_index: usize) {
        for e in &mut self.entries {
            e.checkpoints[role_index] = None;
            match role_index {
                0 => e.outputs.soc = None,
                1 => e.outputs.soh = None,
                2 => e.outputs.bleed = None,
                _ => e.outputs.ems = None,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The canary's verdict, kept with the swap record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryReport {
    pub passed: bool,
    /// Cycles replayed.
    pub replayed: usize,
    /// Whether the replay began from the running version's checkpoint (so
    /// the divergence compares like with like) or from a fresh `init`.
    pub from_checkpoint: bool,
    /// Largest difference from the running version over the replay.
    pub divergence: Option<f64>,
    /// Unit of `divergence`: `pp` (SOC/SOH percentage points), `cells`
    /// (bleed flags that differ) or `W`.
    pub divergence_unit: String,
    pub error: Option<String>,
    pub duration_us: u64,
}

impl CanaryReport {
    pub fn summary(&self) -> String {
        let div = self
            .divergence
            .map_or("no running output to compare".into(), |d| {
                format!("max divergence {d:.3} {}", self.divergence_unit)
            });
        match &self.error {
            Some(e) => format!("FAILED after {} cycles: {e}", self.replayed),
            None => format!(
                "passed {} cycles from {}, {div}",
                self.replayed,
                if self.from_checkpoint {
                    "the running checkpoint"
                } else {
                    "init"
                }
            ),
        }
    }
}

/// Instantiate, `init` and replay `artifact` against the history. The
/// returned candidate carries the report; check `canary.passed`.
pub fn run(
    engine: &PluginEngine,
    artifact: Arc<Artifact>,
    config_json: String,
    sandbox: SandboxConfig,
    history: &SharedHistory,
    replay: usize,
    trigger: String,
) -> Candidate {
    let began = Instant::now();
    let role = artifact.role;
    let entries: Vec<HistoryEntry> = {
        let h = history.lock().unwrap_or_else(|e| e.into_inner());
        h.entries.iter().cloned().collect()
    };
    let mut report = CanaryReport {
        passed: false,
        replayed: 0,
        from_checkpoint: false,
        divergence: None,
        divergence_unit: match role {
            Role::Soc | Role::Soh => "pp",
            Role::Balancer => "cells",
            Role::Ems => "W",
        }
        .into(),
        error: None,
        duration_us: 0,
    };
    let result = replay_all(
        engine,
        &artifact,
        &config_json,
        sandbox,
        &entries,
        replay,
        &mut report,
    );
    // The instance that goes live: fresh, `init`ed here, off the control
    // thread; the commit only hands the state over.
    let fresh = match result {
        Err(e) => {
            report.error = Some(e);
            None
        }
        Ok(()) => match PluginInstance::instantiate(engine, &artifact, &config_json, sandbox) {
            Ok(i) => {
                report.passed = true;
                Some(i)
            }
            Err(e) => {
                report.error = Some(e.to_string());
                None
            }
        },
    };
    report.duration_us = began.elapsed().as_micros() as u64;
    Candidate {
        fresh,
        artifact,
        config_json,
        sandbox,
        canary: report,
        trigger,
    }
}

fn replay_all(
    engine: &PluginEngine,
    artifact: &Arc<Artifact>,
    config_json: &str,
    sandbox: SandboxConfig,
    entries: &[HistoryEntry],
    replay: usize,
    report: &mut CanaryReport,
) -> Result<(), String> {
    let role = artifact.role;
    let ri = role_index(role);
    let mut inst = PluginInstance::instantiate(engine, artifact, config_json, sandbox)
        .map_err(|e| e.to_string())?;
    if entries.is_empty() {
        return Err(
            "no recent cycles to replay yet (the rack has not reported complete data); \
                    retry once it has"
                .into(),
        );
    }
    let tail = entries.len().saturating_sub(replay.max(1));
    let mut start = tail;
    // The oldest checkpoint at or before the replay window.
    let has = |e: &HistoryEntry| e.checkpoints[ri].is_some();
    let found = if entries.is_empty() {
        None
    } else {
        entries[..=tail.min(entries.len() - 1)]
            .iter()
            .rposition(has)
            .or_else(|| entries.iter().position(has))
    };
    if let Some(i) = found {
        let state = entries[i].checkpoints[ri].as_ref().expect("found above");
        if inst.restore_state(state).is_ok() && i + 1 < entries.len() {
            report.from_checkpoint = true;
            start = i + 1;
        } else {
            // Incompatible state: the swap policy decides later; the
            // outputs are still checked, from a fresh init.
            inst = PluginInstance::instantiate(engine, artifact, config_json, sandbox)
                .map_err(|e| e.to_string())?;
        }
    }
    let name = inst.info().name.clone();
    let mut worst: Option<f64> = None;
    let mut track = |d: Option<f64>| {
        if let Some(d) = d {
            worst = Some(worst.map_or(d, |w| w.max(d)));
        }
    };
    for (k, e) in entries[start..].iter().enumerate() {
        let n = e.balance.snapshot.cell_voltage_v.len();
        let at = |err: super::PluginError| {
            format!("replay cycle {} of {}: {err}", k + 1, entries.len() - start)
        };
        match role {
            Role::Soc => {
                let o = inst
                    .step_soc(&e.balance.snapshot)
                    .and_then(|o| check::soc(role, &name, o, n))
                    .map_err(at)?;
                track(e.outputs.soc.as_ref().map(|r| {
                    o.cell_soc_pct
                        .iter()
                        .zip(&r.cell_soc_pct)
                        .map(|(a, b)| f64::from((a - b).abs()))
                        .fold(f64::from((o.pack_soc_pct - r.pack_soc_pct).abs()), f64::max)
                }));
            }
            Role::Soh => {
                let o = inst
                    .step_soh(&e.balance.snapshot)
                    .and_then(|o| check::soh(role, &name, o, n))
                    .map_err(at)?;
                track(
                    e.outputs
                        .soh
                        .as_ref()
                        .map(|r| f64::from((o.pack_soh_pct - r.pack_soh_pct).abs())),
                );
            }
            Role::Balancer => {
                let o = inst
                    .step_balancer(&e.balance)
                    .and_then(|o| check::bleed(&name, o.bleed, n))
                    .map_err(at)?;
                track(
                    e.outputs
                        .bleed
                        .as_ref()
                        .map(|r| o.iter().zip(r).filter(|(a, b)| a != b).count() as f64),
                );
            }
            Role::Ems => {
                let o = inst
                    .step_ems(&e.ems_input())
                    .and_then(|o| check::ems(&name, o))
                    .map_err(at)?;
                track(
                    e.outputs
                        .ems
                        .as_ref()
                        .map(|r| f64::from((o.power_w - r.power_w).abs())),
                );
            }
        }
        report.replayed += 1;
    }
    report.divergence = worst;
    Ok(())
}
