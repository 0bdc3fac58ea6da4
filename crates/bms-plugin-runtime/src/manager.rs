//! The plugin manager: the four role slots and everything around them that
//! lives on the control thread.
//!
//! Owns: the slots, the order queue from the reloader and the operator
//! (applied only at cycle boundaries), the recent-cycle history for
//! canaries, the status board the control API reads, the journal, and the
//! periodic and shutdown persistence of plugin state.
//!
//! May not touch: protection or I/O; outputs leave through the control
//! cycle, which clamps them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::canary::{role_index, CanaryReport, History, HistoryEntry, SharedHistory};
use super::events::{record, PluginEventKind as K, PluginJournal};
use super::orders::Order;
use super::persist::{StateMeta, StateStore};
use super::slot::{RoleSlot, SlotStatus};
use super::{PluginEngine, Role};
use crate::config::PluginsConfig;
use bms_journal::{Journal, JournalError};

/// Slots by role.
pub struct PluginSet {
    pub soc: RoleSlot,
    pub soh: RoleSlot,
    pub balancer: RoleSlot,
    pub ems: RoleSlot,
}

impl PluginSet {
    pub fn iter(&self) -> impl Iterator<Item = &RoleSlot> {
        [&self.soc, &self.soh, &self.balancer, &self.ems].into_iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut RoleSlot> {
        [
            &mut self.soc,
            &mut self.soh,
            &mut self.balancer,
            &mut self.ems,
        ]
        .into_iter()
    }

    pub fn get_mut(&mut self, role: Role) -> &mut RoleSlot {
        match role {
            Role::Soc => &mut self.soc,
            Role::Soh => &mut self.soh,
            Role::Balancer => &mut self.balancer,
            Role::Ems => &mut self.ems,
        }
    }
}

/// What the control API and the reloader read: per-role status, the last
/// canary per role, and the host time of the last cycle.
#[derive(Default)]
pub struct Board {
    time_ms: AtomicU64,
    slots: Mutex<Vec<SlotStatus>>,
    canaries: Mutex<[Option<CanaryReport>; 4]>,
    /// Install orders the control thread has decided per role (swapped or
    /// refused), counted after the board shows the outcome.
    installs_decided: [AtomicU64; 4],
    /// Per role, the sha256 an operator rolled back from: file events
    /// bringing those bytes again are not applied (a late event must not
    /// undo the rollback); other bytes, or an operator reload, are.
    pinned: Mutex<[Option<String>; 4]>,
}

impl Board {
    /// Install orders for `role` decided so far; the reloader compares it
    /// with the number it sent to know whether one is still queued.
    pub fn installs_decided(&self, role: Role) -> u64 {
        self.installs_decided[role_index(role)].load(Ordering::Acquire)
    }

    pub fn time_ms(&self) -> u64 {
        self.time_ms.load(Ordering::Relaxed)
    }

    /// The sha256 `role` was rolled back from, while that rollback holds.
    pub fn pinned(&self, role: Role) -> Option<String> {
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())[role_index(role)].clone()
    }

    fn set_pinned(&self, role: Role, sha: Option<String>) {
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())[role_index(role)] = sha;
    }

    pub fn statuses(&self) -> Vec<SlotStatus> {
        let canaries = self
            .canaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut v = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for s in &mut v {
            s.canary = canaries[role_index(s.role)].clone();
        }
        v
    }

    /// sha256 of the version deployed to `role`.
    pub fn running_sha256(&self, role: Role) -> Option<String> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.role == role)
            .and_then(|s| s.sha256.clone())
    }

    pub fn set_canary(&self, role: Role, r: CanaryReport) {
        self.canaries.lock().unwrap_or_else(|e| e.into_inner())[role_index(role)] = Some(r);
    }

    fn publish(&self, now_ms: u64, slots: &PluginSet) {
        self.time_ms.store(now_ms, Ordering::Relaxed);
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) =
            slots.iter().map(RoleSlot::status).collect();
    }
}

pub struct PluginManager {
    pub slots: PluginSet,
    orders_rx: Receiver<Order>,
    orders_tx: Sender<Order>,
    pub history: SharedHistory,
    pub board: Arc<Board>,
    pub journal: PluginJournal,
    /// A copy of the journal for readers (the control API): reading it
    /// never takes the journal's lock, which the control thread takes.
    pub feed: Arc<Mutex<bms_journal::Feed<super::events::PluginEvent>>>,
    save_interval_ms: u64,
    last_save_ms: u64,
    /// Orders applied (swaps, rollbacks, disables), for tests and reports.
    pub orders_applied: u64,
    /// First journal sequence number of this run.
    pub first_seq: u64,
    deployed_sha: [Option<String>; 4],
    writer: Option<StateWriter>,
    /// (journal sequence, call errors) at the last board publish.
    published: (u64, u64),
}

/// Writes state files on its own thread: the control thread never waits
/// on a disk.
struct StateWriter {
    tx: Option<Sender<(StateMeta, Vec<u8>)>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl StateWriter {
    fn spawn(store: StateStore) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(StateMeta, Vec<u8>)>();
        let handle = std::thread::Builder::new()
            .name("plugin-state-writer".into())
            .spawn(move || {
                for (meta, blob) in rx {
                    if let Err(e) = store.save(&meta, &blob) {
                        tracing::error!(role = %meta.role, error = %e, path = %store.path(meta.role).display(), "cannot save plugin state");
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        // Close the queue, then wait until everything queued is on disk.
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl PluginManager {
    /// Load every enabled role's plugin and restore its saved state.
    /// Component paths are relative to `base_dir` (the site file's
    /// directory). With a `state_dir`, the journal, state files and
    /// `.cwasm` cache live there; without, everything stays in memory.
    pub fn start(
        engine: &PluginEngine,
        cfg: &PluginsConfig,
        base_dir: &Path,
        state_dir: Option<&Path>,
    ) -> Result<Self, JournalError> {
        let mut journal = match state_dir {
            Some(d) => Journal::open(&d.join("plugin-events.jsonl"))?,
            None => Journal::memory(),
        };
        // Swaps are journaled from the control thread: no fsync there.
        if let Err(e) = journal.write_in_background() {
            tracing::warn!(error = %e, "plugin journal writes synchronously");
        }
        let first_seq = journal.next_seq();
        let feed = Arc::new(Mutex::new(journal.feed()));
        let journal = Arc::new(Mutex::new(journal));
        let store = state_dir.and_then(|d| match StateStore::open(d.join("plugins")) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "plugin state directory not trusted: plugin state is neither read nor saved");
                None
            }
        });
        let policy = cfg.policy;
        let slot = |role: Role| {
            let mut s = RoleSlot::new(engine.clone(), role, policy, journal.clone());
            let section = cfg.slot(role);
            let saved = match store.as_ref().map(|st| st.load(role)) {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    record(
                        &journal,
                        0,
                        Some(role),
                        K::StateCorrupt,
                        None,
                        format!("{e}; the plugin starts from init"),
                    );
                    None
                }
                None => None,
            };
            if !section.enabled {
                s.keep_state(saved);
                return s;
            }
            let json = serde_json::to_string(&section.config).unwrap_or_else(|_| "{}".into());
            s.start(
                &base_dir.join(&section.path),
                json,
                cfg.sandbox_for(role),
                saved,
            );
            s
        };
        let slots = PluginSet {
            soc: slot(Role::Soc),
            soh: slot(Role::Soh),
            balancer: slot(Role::Balancer),
            ems: slot(Role::Ems),
        };
        let (orders_tx, orders_rx) = mpsc::channel();
        let writer = match store.clone().map(StateWriter::spawn).transpose() {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the plugin state writer; state is not persisted");
                None
            }
        };
        let board = Arc::new(Board::default());
        board.publish(0, &slots);
        Ok(Self {
            slots,
            orders_rx,
            orders_tx,
            history: Arc::new(Mutex::new(History::new(
                policy.canary_snapshots,
                policy.checkpoint_cycles,
            ))),
            board,
            journal,
            feed,
            save_interval_ms: policy.state_save_interval_s * 1000,
            last_save_ms: 0,
            orders_applied: 0,
            first_seq,
            deployed_sha: Default::default(),
            writer,
            published: (0, 0),
        })
    }

    /// Where the reloader and the control API send orders.
    pub fn orders(&self) -> Sender<Order> {
        self.orders_tx.clone()
    }

    /// Apply queued swaps, rollbacks and disables: call at a cycle boundary.
    pub fn apply_orders(&mut self, now_ms: u64) {
        let mut changed = false;
        let mut decided = None;
        let mut answer = None;
        // One order per cycle bounds the plugin work a boundary can add.
        if let Ok(order) = self.orders_rx.try_recv() {
            changed = true;
            self.orders_applied += 1;
            let (result, reply) = match order {
                Order::Install(c, reply) => {
                    let role = c.artifact.role;
                    decided = Some(role);
                    let r = self.slots.get_mut(role).install(*c, now_ms);
                    if r.is_ok() {
                        self.board.set_pinned(role, None);
                    }
                    (r, reply)
                }
                Order::Rollback(role, reply) => {
                    let from = self.board.running_sha256(role);
                    let r = self.slots.get_mut(role).rollback(now_ms);
                    if r.is_ok() {
                        self.board.set_pinned(role, from);
                    }
                    (r, reply)
                }
                Order::Disable(role, why, reply) => {
                    self.slots.get_mut(role).disable(now_ms, why.clone());
                    (Ok(format!("{role}: {why}")), reply)
                }
            };
            answer = reply.map(|r| (r, result));
        }
        if changed {
            self.board.publish(now_ms, &self.slots);
        }
        // Answered once the board shows the change: a caller that reads
        // the board right after its answer sees what it asked for.
        if let Some((r, result)) = answer {
            let _ = r.send(result);
        }
        if let Some(role) = decided {
            self.board.installs_decided[role_index(role)].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Close a cycle: record it for canaries (with the checkpoints taken in
    /// it), publish the board, and write state to disk when due.
    pub fn end_cycle(&mut self, now_ms: u64, entry: Option<HistoryEntry>) {
        // An automatic rollback pins like an operator's: the watcher must
        // not put back the version that just crashed in its probation.
        for s in self.slots.iter_mut() {
            if let Some(sha) = s.take_auto_rollback() {
                self.board.set_pinned(s.role, Some(sha));
            }
        }
        // A version change (swap, rollback, automatic rollback) makes the
        // role's recorded outputs and checkpoints another version's.
        for s in self.slots.iter() {
            let i = role_index(s.role);
            let sha = s.deployed().map(|d| &d.artifact.sha256);
            if sha != self.deployed_sha[i].as_ref() {
                self.deployed_sha[i] = sha.cloned();
                self.history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(i);
            }
        }
        if let Some(mut e) = entry {
            for s in self.slots.iter() {
                e.checkpoints[role_index(s.role)] = s.fresh_checkpoint.clone();
            }
            self.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e);
        }
        // Every slot transition is journaled; plain call errors are
        // counted. Rebuild the board's statuses only when either moved.
        let fingerprint = (
            self.journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_seq(),
            self.slots.iter().map(|s| s.errors).sum::<u64>(),
        );
        if fingerprint != self.published {
            self.published = fingerprint;
            self.board.publish(now_ms, &self.slots);
        } else {
            self.board.time_ms.store(now_ms, Ordering::Relaxed);
        }
        if now_ms.saturating_sub(self.last_save_ms) >= self.save_interval_ms {
            self.save_all(now_ms);
        }
    }

    /// Queue every deployed plugin's state for writing (periodically and
    /// at shutdown; dropping the manager waits for the writes).
    pub fn save_all(&mut self, now_ms: u64) {
        self.last_save_ms = now_ms;
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else {
            return;
        };
        for s in self.slots.iter_mut() {
            if let Some(saved) = s.state_for_disk(now_ms) {
                let _ = tx.send(saved);
            }
        }
    }
}
