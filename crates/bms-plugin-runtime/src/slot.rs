//! One role's slot: who serves the role, and every transition between
//! plugin versions, crashes, restarts and the native fallback.
//!
//! Owns: the live instance, the deployed and previous versions, the last
//! good state (checkpoint), the crash policy (restart with exponential
//! backoff from the checkpoint, quarantine after N crashes in a window),
//! swap commits with state handoff, and rollback. Every transition is
//! journaled.
//!
//! May not touch: compilation (the reloader prepares artifacts off the
//! control thread) or anything outside plugins. All methods here run on the
//! control thread at a cycle boundary or inside the cycle's plugin stage.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::canary::CanaryReport;
use super::events::{record, PluginEventKind as K, PluginJournal};
use super::persist::StateMeta;
use super::{Artifact, PluginEngine, PluginError, PluginInfo, PluginInstance, Role};
use crate::config::{PluginPolicy, SandboxConfig, StateRejectedPolicy};
use crate::orders::Refused;

/// Who serves the role now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum SlotState {
    /// The plugin serves the role.
    Active,
    /// The native fallback serves the role: the plugin is disabled, failed
    /// to load, or crashed and waits for its restart at `retry_at_ms`.
    Fallback {
        reason: String,
        retry_at_ms: Option<u64>,
    },
    /// Crashed too often: the fallback serves until an operator reload or
    /// rollback. An alarm is raised.
    Quarantined { reason: String },
}

impl SlotState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Fallback { .. } => "fallback",
            Self::Quarantined { .. } => "quarantined",
        }
    }
}

/// A plugin version as deployed to a role: what a restart rebuilds from.
#[derive(Clone)]
pub struct Deployment {
    pub artifact: Arc<Artifact>,
    pub config_json: String,
    pub sandbox: SandboxConfig,
    pub info: PluginInfo,
}

impl Deployment {
    pub fn label(&self) -> String {
        format!("{} {}", self.info.name, self.info.version)
    }
}

/// A prepared swap: compiled, validated and canaried off the control
/// thread; committed by [`RoleSlot::install`].
pub struct Candidate {
    /// A fresh instance, already `init`ed off the control thread; the
    /// commit only hands the state over.
    pub fresh: Option<PluginInstance>,
    pub artifact: Arc<Artifact>,
    pub config_json: String,
    pub sandbox: SandboxConfig,
    pub canary: CanaryReport,
    /// What asked for it: `file change`, `config change`, `operator`.
    pub trigger: String,
}

/// The last completed swap or rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapRecord {
    pub time_ms: u64,
    /// `swap` or `rollback`.
    pub kind: String,
    pub from: String,
    pub to: String,
    pub trigger: String,
    /// What happened to the state: `handed over`, `fresh init`, ...
    pub state: String,
    /// Control-thread time of the commit, µs.
    pub commit_us: u64,
}

/// What an operator sees per role (`bmsctl plugins`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotStatus {
    pub role: Role,
    pub name: Option<String>,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub path: Option<String>,
    #[serde(flatten)]
    pub state: SlotState,
    /// Traps and invalid outputs since start.
    pub crashes: u64,
    /// Calls that returned an error (fallback for that cycle).
    pub errors: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    pub last_swap: Option<SwapRecord>,
    /// The last canary run for this role (filled in by the board).
    pub canary: Option<CanaryReport>,
    pub previous: Option<String>,
    pub alarm: Option<String>,
}

pub struct RoleSlot {
    pub role: Role,
    engine: PluginEngine,
    policy: PluginPolicy,
    journal: PluginJournal,
    instance: Option<PluginInstance>,
    deployed: Option<Deployment>,
    /// The version before the last swap, with its state at that moment.
    previous: Option<(Deployment, Option<Vec<u8>>)>,
    /// Last good state of the deployed version and the host time it was
    /// saved: restarts begin here.
    checkpoint: Option<(Arc<Vec<u8>>, u64)>,
    /// Set when a checkpoint was taken in the current cycle (history).
    pub fresh_checkpoint: Option<Arc<Vec<u8>>>,
    cycles_since_checkpoint: u32,
    /// Cycles left in which a crash of a just-swapped version rolls back.
    probation_cycles: u32,
    /// sha256 of a version this slot rolled back from on its own (a crash
    /// in probation), until the manager pins it.
    auto_rolled_back_from: Option<String>,
    pub state: SlotState,
    crash_times_ms: VecDeque<u64>,
    consecutive_crashes: u32,
    pub crashes: u64,
    pub errors: u64,
    pub restarts: u64,
    pub last_error: Option<String>,
    last_swap: Option<SwapRecord>,
    /// Why the configured plugin could not be loaded (an alarm until a
    /// reload succeeds).
    load_error: Option<String>,
}

impl RoleSlot {
    /// An empty slot: the fallback serves until [`Self::start`].
    pub fn new(
        engine: PluginEngine,
        role: Role,
        policy: PluginPolicy,
        journal: PluginJournal,
    ) -> Self {
        Self {
            role,
            engine,
            policy,
            journal,
            instance: None,
            deployed: None,
            previous: None,
            checkpoint: None,
            fresh_checkpoint: None,
            // Staggered, so the four roles do not checkpoint in one cycle.
            cycles_since_checkpoint: super::canary::role_index(role) as u32,
            probation_cycles: 0,
            auto_rolled_back_from: None,
            state: SlotState::Fallback {
                reason: "disabled in the site config".into(),
                retry_at_ms: None,
            },
            crash_times_ms: VecDeque::new(),
            consecutive_crashes: 0,
            crashes: 0,
            errors: 0,
            restarts: 0,
            last_error: None,
            last_swap: None,
            load_error: None,
        }
    }

    fn event(&self, now_ms: u64, kind: K, plugin: Option<String>, message: String) {
        record(
            &self.journal,
            now_ms,
            Some(self.role),
            kind,
            plugin,
            message,
        );
    }

    /// The configured plugin cannot serve: fallback, alarm, journal.
    fn load_failed(&mut self, e: &PluginError, label: Option<String>) {
        let msg = e.to_string();
        self.event(
            0,
            K::LoadFailed,
            label,
            format!("{msg}; the native fallback serves the role"),
        );
        self.state = SlotState::Fallback {
            reason: msg.clone(),
            retry_at_ms: None,
        };
        self.last_error = Some(msg.clone());
        self.load_error = Some(msg);
    }

    /// Load the configured plugin at start-up and restore `saved` state
    /// (from the state file). On failure the fallback serves.
    pub fn start(
        &mut self,
        path: &std::path::Path,
        config_json: String,
        sandbox: SandboxConfig,
        saved: Option<(StateMeta, Vec<u8>)>,
    ) {
        let loaded = Artifact::load(&self.engine, self.role, path).and_then(|a| {
            PluginInstance::instantiate(&self.engine, &a, &config_json, sandbox).map(|i| (a, i))
        });
        let (artifact, mut instance) = match loaded {
            Ok(v) => v,
            Err(e) => {
                self.load_failed(&e, None);
                self.keep_state(saved);
                return;
            }
        };
        let info = instance.info().clone();
        let label = format!("{} {}", info.name, info.version);
        self.event(
            0,
            K::Loaded,
            Some(label.clone()),
            format!(
                "sha256 {} ({:?}, {} µs)",
                info.sha256, artifact.source, artifact.prepare_us
            ),
        );
        if let Some(note) = &artifact.cache_note {
            self.event(
                0,
                K::Loaded,
                Some(label.clone()),
                format!("cache entry not trusted, recompiled: {note}"),
            );
        }
        if let Some((meta, blob)) = saved {
            match instance.restore_state(&blob) {
                Ok(()) => {
                    self.event(
                        0,
                        K::StateRestored,
                        Some(label.clone()),
                        format!(
                            "state saved by {} {} at {} ms restored ({} bytes)",
                            meta.plugin,
                            meta.version,
                            meta.time_ms,
                            blob.len()
                        ),
                    );
                    self.checkpoint = Some((Arc::new(blob), 0));
                }
                Err(e) => {
                    self.event(
                        0,
                        K::StateRejected,
                        Some(label.clone()),
                        format!("saved state not accepted, starting from init: {e}"),
                    );
                    match PluginInstance::instantiate(
                        &self.engine,
                        &artifact,
                        &config_json,
                        sandbox,
                    ) {
                        Ok(fresh) => instance = fresh,
                        Err(e) => {
                            self.load_failed(&e, Some(label));
                            return;
                        }
                    }
                }
            }
        }
        self.deployed = Some(Deployment {
            artifact,
            config_json,
            sandbox,
            info,
        });
        self.instance = Some(instance);
        self.state = SlotState::Active;
    }

    /// Run `f` on the live instance. `None` means: the fallback serves this
    /// cycle. A crashed plugin is rebuilt here once its backoff has passed.
    pub fn run<T>(
        &mut self,
        now_ms: u64,
        f: impl FnOnce(&mut PluginInstance) -> Result<T, PluginError>,
    ) -> Option<T> {
        self.fresh_checkpoint = None;
        if self.instance.is_none() {
            self.maybe_restart(now_ms);
        }
        let instance = self.instance.as_mut()?;
        let out = match f(instance) {
            Ok(v) => v,
            Err(e) => {
                self.fail(e, now_ms);
                return None;
            }
        };
        self.probation_cycles = self.probation_cycles.saturating_sub(1);
        self.cycles_since_checkpoint += 1;
        if self.cycles_since_checkpoint >= self.policy.checkpoint_cycles
            || self.checkpoint.is_none()
        {
            self.cycles_since_checkpoint = 0;
            match instance.save_state() {
                Ok(s) => {
                    let s = Arc::new(s);
                    self.checkpoint = Some((s.clone(), now_ms));
                    self.fresh_checkpoint = Some(s);
                    // A clean run up to a checkpoint ends a crash streak.
                    self.consecutive_crashes = 0;
                }
                Err(e) => {
                    self.fail(e, now_ms);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Record a failed call. A trap or invalid output is a crash: the
    /// instance is dropped and rebuilt later from the checkpoint; a plain
    /// error return only means the fallback serves this cycle.
    pub fn fail(&mut self, e: PluginError, now_ms: u64) {
        let msg = e.to_string();
        let crash = matches!(e, PluginError::Trap { .. } | PluginError::BadOutput { .. });
        if !crash {
            self.errors += 1;
            if self.last_error.as_deref() != Some(msg.as_str()) {
                tracing::warn!(role = %self.role, error = %msg, "plugin call failed: fallback used this cycle");
            }
            self.last_error = Some(msg);
            return;
        }
        self.crashes += 1;
        self.instance = None;
        self.last_error = Some(msg.clone());
        self.crash_times_ms.push_back(now_ms);
        let window_ms = self.policy.quarantine_window_s * 1000;
        while self
            .crash_times_ms
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) > window_ms)
        {
            self.crash_times_ms.pop_front();
        }
        let label = self.deployed.as_ref().map(Deployment::label);
        if self.probation_cycles > 0 && self.previous.is_some() {
            self.probation_cycles = 0;
            self.event(
                now_ms,
                K::Crashed,
                label,
                format!("{msg}; crashed within its probation after a swap: rolling back"),
            );
            let from = self.deployed.as_ref().map(|d| d.artifact.sha256.clone());
            match self.rollback(now_ms) {
                Ok(_) => self.auto_rolled_back_from = from,
                Err(e) => {
                    self.state = SlotState::Fallback {
                        reason: format!("{msg}; automatic rollback failed: {e}"),
                        retry_at_ms: Some(now_ms + self.policy.restart_backoff_ms),
                    };
                }
            }
            return;
        }
        if self.crash_times_ms.len() >= self.policy.quarantine_crashes as usize {
            let reason = format!(
                "{} crashes within {} s; last: {msg}",
                self.crash_times_ms.len(),
                self.policy.quarantine_window_s
            );
            self.event(
                now_ms,
                K::Quarantined,
                label,
                format!("ALARM: plugin quarantined, native fallback serves the role until an operator reload or rollback: {reason}"),
            );
            self.state = SlotState::Quarantined { reason };
            return;
        }
        self.consecutive_crashes += 1;
        let backoff_ms = self
            .policy
            .restart_backoff_ms
            .saturating_mul(1u64 << (self.consecutive_crashes - 1).min(20))
            .min(self.policy.restart_backoff_max_ms);
        self.event(
            now_ms,
            K::Crashed,
            label,
            format!("{msg}; instance dropped, native fallback serves, restart in {backoff_ms} ms"),
        );
        self.state = SlotState::Fallback {
            reason: msg,
            retry_at_ms: Some(now_ms + backoff_ms),
        };
    }

    fn maybe_restart(&mut self, now_ms: u64) {
        let due =
            matches!(self.state, SlotState::Fallback { retry_at_ms: Some(t), .. } if now_ms >= t);
        let Some(dep) = self.deployed.clone().filter(|_| due) else {
            return;
        };
        let restored =
            PluginInstance::instantiate(&self.engine, &dep.artifact, &dep.config_json, dep.sandbox)
                .and_then(|mut i| {
                    if let Some((state, _)) = &self.checkpoint {
                        i.restore_state(state)?;
                    }
                    Ok(i)
                });
        match restored {
            Ok(i) => {
                self.restarts += 1;
                // The streak ends only after a full checkpoint interval.
                self.cycles_since_checkpoint = 0;
                let from = self
                    .checkpoint
                    .as_ref()
                    .map_or("init (no checkpoint yet)".to_string(), |(_, t)| {
                        format!("the checkpoint of {t} ms")
                    });
                self.event(
                    now_ms,
                    K::Restarted,
                    Some(dep.label()),
                    format!("fresh instance restored from {from}"),
                );
                self.instance = Some(i);
                self.state = SlotState::Active;
            }
            Err(e) => {
                self.event(now_ms, K::RestartFailed, Some(dep.label()), e.to_string());
                self.fail(
                    match e {
                        e @ (PluginError::Trap { .. } | PluginError::BadOutput { .. }) => e,
                        other => PluginError::BadOutput {
                            role: self.role,
                            plugin: dep.info.name.clone(),
                            message: format!("restart failed: {other}"),
                        },
                    },
                    now_ms,
                );
            }
        }
    }

    /// Commit a prepared candidate: a fresh instance, the running version's
    /// state handed over, and the old version kept for rollback. A failure
    /// leaves the running version untouched.
    pub fn install(&mut self, mut c: Candidate, now_ms: u64) -> Result<String, Refused> {
        let began = std::time::Instant::now();
        let refuse = |me: &Self, why: String| {
            me.event(
                now_ms,
                K::SwapRefused,
                None,
                format!(
                    "{} ({}): {why}; the running version stays",
                    c.artifact.path.display(),
                    c.trigger
                ),
            );
            Err(Refused(why))
        };
        let mut new = match c.fresh.take() {
            Some(i) => i,
            None => match PluginInstance::instantiate(
                &self.engine,
                &c.artifact,
                &c.config_json,
                c.sandbox,
            ) {
                Ok(i) => i,
                Err(e) => return refuse(self, e.to_string()),
            },
        };
        let handoff = self.handoff_state();
        let mut state_note = "no state to hand over: fresh init".to_string();
        let mut handed_over = false;
        if let Some(state) = &handoff {
            match new.restore_state(state) {
                Ok(()) => {
                    handed_over = true;
                    state_note = format!("state handed over ({} bytes)", state.len());
                }
                Err(e) => match self.policy.on_state_rejected {
                    StateRejectedPolicy::Refuse => {
                        return refuse(self, format!("new version rejected the running state: {e}"))
                    }
                    StateRejectedPolicy::InitFresh => {
                        new = match PluginInstance::instantiate(
                            &self.engine,
                            &c.artifact,
                            &c.config_json,
                            c.sandbox,
                        ) {
                            Ok(i) => i,
                            Err(e) => return refuse(self, e.to_string()),
                        };
                        state_note = format!("WARNING: new version rejected the running state ({e}); started from init");
                        self.event(
                            now_ms,
                            K::StateRejected,
                            Some(label_of(&new)),
                            state_note.clone(),
                        );
                    }
                },
            }
        }
        let to = Deployment {
            artifact: c.artifact.clone(),
            config_json: c.config_json,
            sandbox: c.sandbox,
            info: new.info().clone(),
        };
        let from = self
            .deployed
            .as_ref()
            .map_or("fallback".into(), Deployment::label);
        let same = self.deployed.as_ref().is_some_and(|d| {
            d.artifact.sha256 == to.artifact.sha256
                && d.config_json == to.config_json
                && d.sandbox == to.sandbox
        });
        let checkpoint = handoff.clone().filter(|_| handed_over);
        // Reinstalling the running version keeps the rollback target.
        self.commit(new, to, (!same).then_some(handoff), checkpoint);
        // A new version that crashes soon after going live is rolled back.
        self.probation_cycles = if same {
            0
        } else {
            self.policy.probation_cycles
        };
        let rec = SwapRecord {
            time_ms: now_ms,
            kind: "swap".into(),
            from: from.clone(),
            to: self.label(),
            trigger: c.trigger,
            state: state_note,
            commit_us: began.elapsed().as_micros() as u64,
        };
        let msg = format!(
            "{from} -> {} ({}; {}; canary: {}; commit {} µs)",
            rec.to,
            rec.trigger,
            rec.state,
            c.canary.summary(),
            rec.commit_us
        );
        self.event(now_ms, K::Swapped, Some(rec.to.clone()), msg.clone());
        self.last_swap = Some(rec);
        Ok(msg)
    }

    /// Return to the version before the last swap. The running state is
    /// handed back; if the old version cannot read it, it resumes from its
    /// own state at the time of the swap.
    pub fn rollback(&mut self, now_ms: u64) -> Result<String, Refused> {
        let result = self.try_rollback(now_ms);
        if let Err(e) = &result {
            self.event(
                now_ms,
                K::SwapRefused,
                None,
                format!("rollback refused: {e}"),
            );
        }
        result.map_err(Refused)
    }

    fn try_rollback(&mut self, now_ms: u64) -> Result<String, String> {
        let began = std::time::Instant::now();
        let Some((prev, prev_state)) = self.previous.clone() else {
            return Err(format!(
                "{}: no previous version to roll back to",
                self.role
            ));
        };
        let engine = self.engine.clone();
        let fresh = || {
            PluginInstance::instantiate(&engine, &prev.artifact, &prev.config_json, prev.sandbox)
                .map_err(|e| format!("cannot instantiate {}: {e}", prev.label()))
        };
        let mut inst = fresh()?;
        let current = self.handoff_state();
        let mut note = "fresh init".to_string();
        let mut checkpoint = None;
        if let Some(s) = &current {
            match inst.restore_state(s) {
                Ok(()) => {
                    note = "running state handed back".into();
                    checkpoint = Some(s.clone());
                }
                Err(e) => {
                    note = format!("running state not readable ({e})");
                    // A failed restore may leave the instance half-done.
                    inst = fresh()?;
                }
            }
        }
        if checkpoint.is_none() {
            if let Some(s) = &prev_state {
                match inst.restore_state(s) {
                    Ok(()) => {
                        note = format!("{note}; resumed from its own state at the swap");
                        checkpoint = Some(s.clone());
                    }
                    Err(e) => {
                        return Err(format!("{} rejects its own saved state: {e}", prev.label()))
                    }
                }
            }
        }
        let from = self
            .deployed
            .as_ref()
            .map_or("fallback".into(), Deployment::label);
        self.commit(inst, prev, Some(current), checkpoint);
        self.probation_cycles = 0;
        let rec = SwapRecord {
            time_ms: now_ms,
            kind: "rollback".into(),
            from: from.clone(),
            to: self.label(),
            trigger: "operator".into(),
            state: note,
            commit_us: began.elapsed().as_micros() as u64,
        };
        let msg = format!("{from} -> {} ({})", rec.to, rec.state);
        self.event(now_ms, K::RolledBack, Some(rec.to.clone()), msg.clone());
        self.last_swap = Some(rec);
        Ok(msg)
    }

    /// The version this slot rolled back from on its own since the last
    /// call, if any: the manager pins it as it pins an operator's rollback.
    pub fn take_auto_rollback(&mut self) -> Option<String> {
        self.auto_rolled_back_from.take()
    }

    /// Keep a saved state (from disk) for a plugin that is not running, so
    /// a later install hands it over instead of starting fresh.
    pub fn keep_state(&mut self, saved: Option<(StateMeta, Vec<u8>)>) {
        if let Some((_, blob)) = saved {
            self.checkpoint = Some((Arc::new(blob), 0));
        }
    }

    /// Serve the role with the fallback from now on (`enabled = false`).
    pub fn disable(&mut self, now_ms: u64, why: String) {
        let label = self.deployed.as_ref().map(Deployment::label);
        self.instance = None;
        self.state = SlotState::Fallback {
            reason: why.clone(),
            retry_at_ms: None,
        };
        self.event(now_ms, K::Disabled, label, why);
    }

    /// Make `to` the deployed version with instance `inst`. With
    /// `previous_state`, the outgoing version becomes the rollback target
    /// with that state; without, the rollback target is kept. `checkpoint`
    /// is the new version's first restart point (the state it accepted).
    fn commit(
        &mut self,
        inst: PluginInstance,
        to: Deployment,
        previous_state: Option<Option<Vec<u8>>>,
        checkpoint: Option<Vec<u8>>,
    ) {
        if let Some(old) = self.deployed.take() {
            if let Some(state) = previous_state {
                self.previous = Some((old, state));
            }
        }
        self.deployed = Some(to);
        self.instance = Some(inst);
        self.load_error = None;
        self.checkpoint = checkpoint.map(|s| (Arc::new(s), 0));
        self.cycles_since_checkpoint = 0;
        self.crash_times_ms.clear();
        self.consecutive_crashes = 0;
        self.state = SlotState::Active;
    }

    /// The outgoing version's state for a handoff, without counting a
    /// failure as a crash: the live instance's, else the checkpoint.
    fn handoff_state(&mut self) -> Option<Vec<u8>> {
        if let Some(i) = self.instance.as_mut() {
            match i.save_state() {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(role = %self.role, error = %e, "outgoing plugin could not save its state; handing over its last checkpoint")
                }
            }
        }
        self.checkpoint.as_ref().map(|(s, _)| s.to_vec())
    }

    /// The running version's state now; the checkpoint if it is not live.
    fn current_state(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if let Some(i) = self.instance.as_mut() {
            match i.save_state() {
                Ok(s) => return Some(s),
                Err(e) => self.fail(e, now_ms),
            }
        }
        self.checkpoint.as_ref().map(|(s, _)| s.to_vec())
    }

    /// State to write to disk: fresh from the live instance, else the
    /// checkpoint. `None` when there is nothing to save.
    pub fn state_for_disk(&mut self, now_ms: u64) -> Option<(StateMeta, Vec<u8>)> {
        let blob = self.current_state(now_ms)?;
        let dep = self.deployed.as_ref()?;
        Some((
            StateMeta {
                role: self.role,
                plugin: dep.info.name.clone(),
                version: dep.info.version.clone(),
                component_sha256: dep.info.sha256.clone(),
                time_ms: now_ms,
            },
            blob,
        ))
    }

    pub fn deployed(&self) -> Option<&Deployment> {
        self.deployed.as_ref()
    }

    pub fn info(&self) -> Option<&PluginInfo> {
        self.deployed.as_ref().map(|d| &d.info)
    }

    /// "name version" for status lines, or "fallback".
    pub fn label(&self) -> String {
        match (&self.state, &self.deployed) {
            (SlotState::Active, Some(d)) => d.label(),
            _ => "fallback".into(),
        }
    }

    pub fn status(&self) -> SlotStatus {
        let info = self.info();
        SlotStatus {
            role: self.role,
            name: info.map(|i| i.name.clone()),
            version: info.map(|i| i.version.clone()),
            sha256: info.map(|i| i.sha256.clone()),
            path: info.map(|i| i.path.display().to_string()),
            state: self.state.clone(),
            crashes: self.crashes,
            errors: self.errors,
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            last_swap: self.last_swap.clone(),
            canary: None,
            previous: self.previous.as_ref().map(|(d, _)| d.label()),
            alarm: match (&self.state, &self.load_error) {
                (SlotState::Quarantined { reason }, _) => Some(format!("quarantined: {reason}")),
                (_, Some(e)) => Some(format!("failed to load: {e}")),
                _ => None,
            },
        }
    }
}

fn label_of(i: &PluginInstance) -> String {
    format!("{} {}", i.info().name, i.info().version)
}
