//! bms-protection: the host's hardware-protection-board equivalent.
//!
//! Owns: the process image ([`snapshot`]), the limit table ([`limits`]),
//! debounced three-tier monitors ([`monitor`]), fault latching and
//! authorised reset, the contactor state machine ([`contactor`]), derating
//! (state of function) on protection's own SOC ([`soc`]), the event record
//! type and its sink ([`events`]), and the clamping of every plugin output
//! ([`clamp`]). [`Protection::tick`] is the entry point, once per period.
//!
//! May not touch: plugins, sockets, files, threads or clocks. This crate
//! depends on no wasmtime, tokio, plugin-runtime or I/O crate (a test reads
//! `cargo metadata` to keep it so): it reads a snapshot and returns relay
//! commands and limits. The host runs it on its protection thread
//! (`bmshost::protection::task`). Plugins cannot reach anything here: the
//! WIT contract gives them no handle to a contactor, limit or fault, and
//! every value they return passes through [`clamp`] first.
//!
//! The invariants are listed in `SAFETY.md` at the repository root, each
//! with the test that proves it.

pub mod clamp;
pub mod contactor;
pub mod events;
pub mod limits;
pub mod monitor;
pub mod snapshot;
pub mod soc;
pub mod table;

use serde::{Deserialize, Serialize};

use crate::snapshot::{CommStatus, PackSnapshot};
use contactor::{ContactorFault, ContactorFsm, ContactorInputs, ContactorState, RelayOutputs};
use events::{EventKind, EventRecord, EventSink};
use limits::{Direction, ProtectionConfig, TierLevel};
use monitor::{Gate, QuantityMonitor, TierMonitor, Transition};

pub use clamp::ClampStats;
pub use limits::ProtectionConfig as Config;

/// A protected quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    CellOverVoltage,
    CellUnderVoltage,
    CellDeepUnderVoltage,
    CellOverTempCharge,
    CellOverTempDischarge,
    CellUnderTempCharge,
    CellUnderTempDischarge,
    CellTempSpread,
    CellVoltageSpread,
    ChargeOverCurrent,
    DischargeOverCurrent,
    /// |Σ cell voltages − pack voltage| too large.
    PackVoltageMismatch,
    /// A BMU or the current sensor stopped delivering fresh data.
    CommunicationLoss,
    /// A reading outside its sensor's physical range.
    SensorOutOfRange,
    /// The current reading stopped changing at all.
    CurrentSensorFrozen,
    ContactorWelded,
    PrechargeFailed,
    /// Protection's own SOC and the plugin's differ by more than the band
    /// (MOL only: a warning; derating already uses the safer of the two).
    SocDisagreement,
    /// The event record cannot reach its disk (full, failing): records
    /// are kept in memory and retried. MOL only: protection keeps running
    /// and latches stay latched.
    EventRecordFailing,
}

impl Quantity {
    /// The quantity's row of the limit table.
    pub fn row(self) -> &'static table::Row {
        table::row(self)
    }

    /// Latches that survive a host restart (blocking closing until reset).
    pub fn is_persistent(self) -> bool {
        self.row().persistent
    }
}

/// Where in the rack a value was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub module: usize,
    /// Cell within the module (0 for module-level quantities).
    pub cell: usize,
}

/// Current limits allowed now, in A (both >= 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllowedCurrent {
    pub charge_a: f32,
    pub discharge_a: f32,
}

impl AllowedCurrent {
    pub const ZERO: AllowedCurrent = AllowedCurrent {
        charge_a: 0.0,
        discharge_a: 0.0,
    };
}

/// A latched MSL fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latch {
    pub quantity: Quantity,
    pub location: Option<Location>,
    pub value: Option<f32>,
    pub limit: Option<f32>,
    pub time_ms: u64,
    pub message: String,
}

/// A tier that is raised now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActiveTier {
    pub quantity: Quantity,
    pub tier: TierLevel,
}

/// What protection publishes every tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub time_ms: u64,
    pub outputs: RelayOutputs,
    pub contactor_state: ContactorState,
    pub allowed: AllowedCurrent,
    pub latched: Vec<Latch>,
    pub active: Vec<ActiveTier>,
    /// Why the contactors may not close, if they may not.
    pub blocked_reason: Option<String>,
    /// External hold requests in force.
    pub holds: Vec<Hold>,
    /// Protection's own SOC, the plugin's, and which one each direction
    /// is derated on.
    pub soc: soc::SocBasis,
}

impl Status {
    /// Contactors open, nothing allowed: the state before the first tick.
    pub fn initial() -> Self {
        Self {
            time_ms: 0,
            outputs: RelayOutputs::OPEN,
            contactor_state: ContactorState::Open,
            allowed: AllowedCurrent::ZERO,
            latched: Vec::new(),
            active: Vec::new(),
            blocked_reason: Some("protection has not run yet".into()),
            holds: Vec::new(),
            soc: soc::SocBasis::UNKNOWN,
        }
    }

    pub fn closed(&self) -> bool {
        self.contactor_state == ContactorState::Closed
    }
}

/// Who asks protection to hold the rack back. Holds only ever take
/// permission away: they can open the contactors or zero the allowed
/// current, never close anything, clear a latch or raise a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldSource {
    /// A SunSpec `SetOp` disconnect from an authorised Modbus client.
    Operator,
    /// `bmsctl open` on the control socket (anyone who can reach it:
    /// opening is never refused; releasing needs an operator).
    ControlSocket,
    /// The SunSpec controller heartbeat (`CtrlHb`) was lost.
    ControllerHeartbeat,
    /// The bank controller: another rack faulted and isolation is off.
    Bank,
    /// The contactor output link (remote I/O module) is down: the host
    /// cannot command the coils, so it holds open and never resumes
    /// closed when the link returns.
    OutputLink,
}

/// What a hold does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldKind {
    /// Open the contactors (and keep them open) while held.
    Open,
    /// Stay connected but allow no current in either direction.
    ZeroCurrent,
}

/// One active hold request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub source: HoldSource,
    pub kind: HoldKind,
    pub reason: String,
}

/// Why a reset was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResetError {
    #[error("nothing is latched")]
    NothingLatched,
    #[error("condition not cleared: {0}")]
    NotCleared(String),
}

/// Values derived from one snapshot.
struct Derived {
    /// The snapshot as a whole is recent (acquisition is alive).
    age_ok: bool,
    fresh: bool,
    max_v: Option<(usize, f32)>,
    min_v: Option<(usize, f32)>,
    max_t: Option<(usize, f32)>,
    min_t: Option<(usize, f32)>,
    current_a: Option<f32>,
    mismatch_v: Option<f32>,
    charging: bool,
}

struct Tracked {
    quantity: Quantity,
    monitor: QuantityMonitor,
}

/// The protection state machine of one rack.
pub struct Protection {
    cfg: ProtectionConfig,
    tracked: Vec<Tracked>,
    range: TierMonitor,
    range_location: Option<Location>,
    /// Protection's own SOC, and the warning tier for a plugin that
    /// disagrees with it.
    soc: soc::NativeSoc,
    soc_disagreement: TierMonitor,
    /// Snapshot older than this is stale as a whole (acquisition stalled).
    data_timeout_ms: u64,
    latched: Vec<Latch>,
    contactor: ContactorFsm,
    allowed: AllowedCurrent,
    last_tick_ms: Option<u64>,
    seen_complete: bool,
    /// Since when every source has been fresh without interruption.
    fresh_since_ms: Option<u64>,
    /// Fresh data needed before closing: the longest MSL debounce.
    arm_ms: u64,
    /// The first tick's time, for the start-up communication grace.
    started_ms: Option<u64>,
    log: Box<dyn EventSink>,
    /// Whether the sink reported that records do not reach the disk.
    record_failing: bool,
    /// External hold requests (see [`HoldSource`]), sorted by source.
    holds: Vec<Hold>,
    pub clamp_stats: ClampStats,
    status: Status,
}

impl Protection {
    /// Build protection with its event record. Persistent latches (deep
    /// under-voltage, welded contactor) found in the record without a later
    /// reset are restored: they keep blocking closing across restarts.
    pub fn new(cfg: ProtectionConfig, data_timeout_ms: u64, log: impl EventSink + 'static) -> Self {
        let tracked = cfg
            .tiered()
            .iter()
            .map(|(_, quantity, tiers, dir)| Tracked {
                quantity: *quantity,
                monitor: QuantityMonitor::new(tiers, *dir),
            })
            .collect();
        let range = TierMonitor::new(
            limits::Tier {
                limit: 0.5,
                delay_ms: cfg.plausibility.range_delay_ms,
                hysteresis: 0.0,
            },
            Direction::Above,
        );
        let arm_ms = cfg
            .tiered()
            .iter()
            .filter_map(|(_, _, t, _)| t.msl.map(|m| m.delay_ms))
            .chain([cfg.plausibility.range_delay_ms])
            .max()
            .unwrap_or(0);
        let latched = restore_persistent_latches(log.records());
        let mut log: Box<dyn EventSink> = Box::new(log);
        for l in &latched {
            tracing::error!(quantity = ?l.quantity, "persistent latch restored from the event record: closing blocked until reset");
            log.append(EventRecord {
                seq: 0,
                time_ms: 0,
                unix_ms: 0,
                kind: EventKind::Latched,
                quantity: Some(l.quantity),
                tier: Some(TierLevel::Msl),
                location: l.location,
                value: l.value,
                limit: l.limit,
                action: "keep contactors open (restored at start-up)".into(),
                message: l.message.clone(),
            });
        }
        Self {
            contactor: ContactorFsm::new(cfg.contactors, 0),
            tracked,
            range,
            range_location: None,
            soc: soc::NativeSoc::new(cfg.soc.clone()),
            soc_disagreement: TierMonitor::new(cfg.soc.disagreement_pct, Direction::Above),
            data_timeout_ms,
            latched,
            allowed: AllowedCurrent::ZERO,
            last_tick_ms: None,
            seen_complete: false,
            fresh_since_ms: None,
            arm_ms,
            started_ms: None,
            log,
            record_failing: false,
            holds: Vec::new(),
            clamp_stats: ClampStats::default(),
            status: Status::initial(),
            cfg,
        }
    }

    pub fn config(&self) -> &ProtectionConfig {
        &self.cfg
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn events(&self) -> &[EventRecord] {
        self.log.records()
    }

    pub fn latched(&self) -> &[Latch] {
        &self.latched
    }

    /// Replace the set of hold requests (applied at the next tick). Every
    /// change is recorded. A hold can only take permission away.
    pub fn set_holds(&mut self, holds: &[Hold], now_ms: u64) {
        // Called every tick: nothing to allocate while nothing changes.
        if holds == self.holds.as_slice() {
            return;
        }
        let mut next = holds.to_vec();
        next.sort_by_key(|h| h.source);
        next.dedup_by_key(|h| h.source);
        let old = std::mem::take(&mut self.holds);
        let released = old.iter().filter(|h| !next.contains(h)).map(|h| {
            (
                EventKind::Released,
                "hold released",
                format!("{:?} hold released (was: {})", h.source, h.reason),
            )
        });
        let raised = next.iter().filter(|h| !old.contains(h)).map(|h| {
            let action = match h.kind {
                HoldKind::Open => "hold contactors open",
                HoldKind::ZeroCurrent => "hold current at zero",
            };
            (
                EventKind::Hold,
                action,
                format!("{:?}: {}", h.source, h.reason),
            )
        });
        let changes: Vec<_> = released.chain(raised).collect();
        let mut ev = Events::default();
        for (kind, action, message) in changes {
            let detail = Detail {
                time_ms: now_ms,
                location: None,
                value: None,
                limit: None,
                action,
                message,
            };
            ev.push(kind, None, None, detail);
        }
        self.holds = next;
        self.record(ev);
    }

    pub fn holds(&self) -> &[Hold] {
        &self.holds
    }

    /// The one place events are recorded: a call's events, in the order
    /// its stages returned them, logged and appended to the sink before
    /// the call that made them returns.
    fn record(&mut self, ev: Events) {
        for rec in ev.0 {
            let (kind, quantity, tier) = (rec.kind, rec.quantity, rec.tier);
            let level_error = kind == EventKind::Latched || tier == Some(TierLevel::Msl);
            if kind == EventKind::Contactor {
                tracing::info!(action = %rec.action, "{}", rec.message);
            } else if level_error {
                tracing::error!(?kind, ?quantity, ?tier, location = ?rec.location, value = ?rec.value, limit = ?rec.limit, action = %rec.action, "{}", rec.message);
            } else {
                tracing::warn!(?kind, ?quantity, ?tier, location = ?rec.location, value = ?rec.value, limit = ?rec.limit, action = %rec.action, "{}", rec.message);
            }
            self.log.append(rec);
        }
    }

    /// Latch `l` (once per quantity and location) and add its event.
    fn latch(&mut self, ev: &mut Events, l: Latch) {
        if self
            .latched
            .iter()
            .any(|x| x.quantity == l.quantity && x.location == l.location)
        {
            return;
        }
        ev.push(
            EventKind::Latched,
            Some(l.quantity),
            Some(TierLevel::Msl),
            Detail {
                time_ms: l.time_ms,
                location: l.location,
                value: l.value,
                limit: l.limit,
                action: "open contactors and latch",
                message: l.message.clone(),
            },
        );
        self.latched.push(l);
    }

    fn derive(&self, s: &PackSnapshot, now_ms: u64) -> Derived {
        let per = s.cells_per_module.max(1) as usize;
        let age_ok = now_ms.saturating_sub(s.timestamp_ms) <= self.data_timeout_ms;
        let module_ok = |i: &usize| age_ok && s.module_comm.get(i / per) == Some(&CommStatus::Ok);
        let current_ok = age_ok && s.current_comm == CommStatus::Ok && s.current_a.is_finite();
        let all_fresh =
            s.complete && current_ok && s.module_comm.iter().all(|c| *c == CommStatus::Ok);
        let current_a = current_ok.then_some(s.current_a);
        let mismatch_v = (all_fresh && s.pack_voltage_v.is_finite()).then(|| {
            let sum: f32 = s.cell_voltage_v.iter().sum();
            (sum - s.pack_voltage_v).abs()
        });
        Derived {
            age_ok,
            fresh: all_fresh,
            max_v: extreme(&s.cell_voltage_v, module_ok, f32::max),
            min_v: extreme(&s.cell_voltage_v, module_ok, f32::min),
            max_t: extreme(&s.cell_temp_c, module_ok, f32::max),
            min_t: extreme(&s.cell_temp_c, module_ok, f32::min),
            current_a,
            mismatch_v,
            charging: current_a.is_some_and(|i| i > self.cfg.rest_current_a),
        }
    }

    /// One protection tick at `now_ms` on the latest snapshot.
    /// `reported_soc_pct` is the SOC plugin's latest validated pack
    /// estimate, if any: advisory only. Derating uses the higher of it and
    /// protection's own SOC for charge and the lower for discharge, so it
    /// can only lower a limit.
    pub fn tick(
        &mut self,
        s: &PackSnapshot,
        reported_soc_pct: Option<f32>,
        now_ms: u64,
    ) -> &Status {
        // inputs -> monitors -> latches -> permit -> contactor -> derating -> status
        let d = self.derive(s, now_ms);
        let mut ev = Events::default();
        let soc = ev.and(self.estimate_soc(s, &d, reported_soc_pct, now_ms));
        ev.add(self.run_monitors(&d, s.cells_per_module.max(1) as usize, now_ms));
        ev.add(self.check_plausibility(s, &d, now_ms));
        ev.add(self.check_communication(s, &d, now_ms));
        ev.add(self.check_record(now_ms));
        let permit = self.permit(&d, now_ms);
        let outputs = ev.and(self.drive_contactor(s, &d, &permit, now_ms));
        self.derate(&d, &soc, now_ms);
        self.publish(outputs, permit, soc, now_ms);
        self.record(ev);
        &self.status
    }

    /// Protection's own SOC, the basis each direction derates on, and the
    /// disagreement warning.
    fn estimate_soc(
        &mut self,
        s: &PackSnapshot,
        d: &Derived,
        reported_soc_pct: Option<f32>,
        now_ms: u64,
    ) -> (soc::SocBasis, Events) {
        self.soc.update(s, d.age_ok);
        let basis = self.soc.basis(reported_soc_pct);
        let ev = self.check_soc_disagreement(&basis, now_ms);
        (basis, ev)
    }

    /// Every tier of every tiered quantity on this snapshot's values, as
    /// the limit table says where each comes from; a raised MSL latches.
    fn run_monitors(&mut self, d: &Derived, per: usize, now_ms: u64) -> Events {
        let mut ev = Events::default();
        for k in 0..self.tracked.len() {
            let quantity = self.tracked[k].quantity;
            let row = quantity.row();
            let (value, location) = d.value(row.source, per);
            let msl_applies = match row.msl_when {
                table::MslWhen::Always => true,
                table::MslWhen::Charging => d.charging,
                table::MslWhen::NotCharging => !d.charging,
            };
            for level in TierLevel::ALL {
                let gate = Gate {
                    raise_applies: level != TierLevel::Msl || msl_applies,
                    may_clear: d.fresh,
                };
                let Some(mon) = self.tracked[k].monitor.tiers[level as usize].as_mut() else {
                    continue;
                };
                let limit = mon.tier.limit;
                let Some(tr) = mon.update_gated(value, now_ms, gate) else {
                    continue;
                };
                let (kind, action) = match (tr, level) {
                    (Transition::Cleared, _) => (EventKind::Cleared, "none"),
                    (_, TierLevel::Mol) => (EventKind::Raised, "warn; derating"),
                    (_, TierLevel::Rsl) => (EventKind::Raised, row.blocks.rsl_action()),
                    (_, TierLevel::Msl) => (EventKind::Raised, "open contactors"),
                };
                let message = format!("{quantity:?} {}: {:?} vs limit {limit}", level.key(), value);
                let detail = Detail {
                    time_ms: now_ms,
                    location,
                    value,
                    limit: Some(limit),
                    action,
                    message: message.clone(),
                };
                ev.push(kind, Some(quantity), Some(level), detail);
                if tr == Transition::Raised && level == TierLevel::Msl {
                    self.latch(
                        &mut ev,
                        Latch {
                            quantity,
                            location,
                            value,
                            limit: Some(limit),
                            time_ms: now_ms,
                            message,
                        },
                    );
                }
            }
        }
        ev
    }

    /// Whether the contactors may stay closed and may close, and why not.
    fn permit(&mut self, d: &Derived, now_ms: u64) -> Permit {
        if d.fresh {
            self.seen_complete = true;
            self.fresh_since_ms.get_or_insert(now_ms);
        } else {
            self.fresh_since_ms = None;
        }
        // Before connecting, no MSL may be beyond its limit even undebounced.
        // Charge-only temperature limits are left out: a cold pack may still
        // connect to discharge (charging stays blocked by RSL and derating).
        let beyond_msl = self
            .tracked
            .iter()
            .filter(|t| t.quantity.row().msl_when != table::MslWhen::Charging)
            .find(|t| {
                t.monitor
                    .get(TierLevel::Msl)
                    .is_some_and(TierMonitor::is_beyond)
            })
            .map(|t| t.quantity);
        let armed_for = self.fresh_since_ms.map_or(0, |t| now_ms.saturating_sub(t));
        // Staying connected needs no latch and fresh data; connecting also
        // needs every MSL inside its limit and a full arming window.
        let open_hold = self.holds.iter().find(|h| h.kind == HoldKind::Open);
        let keep = if let Some(l) = self.latched.first() {
            Some(format!("fault latched: {}", l.message))
        } else if let Some(h) = open_hold {
            Some(format!("held open ({:?}): {}", h.source, h.reason))
        } else if !d.fresh {
            Some("waiting for fresh data from every BMU and the current sensor".into())
        } else {
            None
        };
        let close = keep.clone().or_else(|| {
            if let Some(q) = beyond_msl {
                Some(format!("{q:?} is beyond its MSL limit (debouncing)"))
            } else if armed_for < self.arm_ms {
                Some(format!(
                    "arming: {armed_for} of {} ms of fresh data evaluated",
                    self.arm_ms
                ))
            } else {
                None
            }
        });
        Permit { keep, close }
    }

    /// Step the contactor state machine on the permit; its transitions are
    /// recorded and its faults (precharge, weld) latch.
    fn drive_contactor(
        &mut self,
        s: &PackSnapshot,
        d: &Derived,
        permit: &Permit,
        now_ms: u64,
    ) -> (RelayOutputs, Events) {
        let mut ev = Events::default();
        let inputs = ContactorInputs {
            pack_v: if d.fresh { s.pack_voltage_v } else { f32::NAN },
            link_v: if d.fresh { s.link_voltage_v } else { f32::NAN },
            current_a: d.current_a.unwrap_or(f32::NAN),
        };
        let step = self.contactor.tick(
            contactor::Permit {
                close: permit.close.is_none(),
                keep: permit.keep.is_none(),
            },
            inputs,
            now_ms,
        );
        if let Some((from, to)) = step.transition {
            let reason = permit
                .blocked(from)
                .unwrap_or_else(|| "all sources fresh, no fault".into());
            let detail = Detail {
                time_ms: now_ms,
                location: None,
                value: None,
                limit: None,
                action: contactor_action(from, to),
                message: format!("{from:?} -> {to:?}: {reason}"),
            };
            ev.push(EventKind::Contactor, None, None, detail);
        }
        if let Some(f) = step.fault {
            let (quantity, message, value) = match f {
                ContactorFault::PrechargeTimeout { link_v, pack_v } => (
                    Quantity::PrechargeFailed,
                    format!("precharge reached {link_v:.1} V of {pack_v:.1} V within {} ms", self.cfg.contactors.precharge_timeout_ms),
                    Some(link_v),
                ),
                ContactorFault::Welded { current_a, link_v } => (
                    Quantity::ContactorWelded,
                    format!("contactor commanded open but {current_a:.1} A flows / link at {link_v:.1} V: welded"),
                    Some(current_a),
                ),
            };
            self.latch(
                &mut ev,
                Latch {
                    quantity,
                    location: None,
                    value,
                    limit: None,
                    time_ms: now_ms,
                    message,
                },
            );
        }
        (step.outputs, ev)
    }

    /// The allowed currents: drop at once, rise at the ramp rate, zero
    /// unless closed.
    fn derate(&mut self, d: &Derived, soc: &soc::SocBasis, now_ms: u64) {
        let target = self.derate_target(d, soc);
        let dt_s = self
            .last_tick_ms
            .map_or(0.0, |t| now_ms.saturating_sub(t) as f32 / 1000.0);
        self.last_tick_ms = Some(now_ms);
        let ramp = self.cfg.derating.ramp_up_a_per_s * dt_s;
        let follow = |prev: f32, target: f32| {
            if target < prev {
                target
            } else {
                (prev + ramp).min(target)
            }
        };
        self.allowed = if self.contactor.state() == ContactorState::Closed {
            AllowedCurrent {
                charge_a: follow(self.allowed.charge_a, target.charge_a),
                discharge_a: follow(self.allowed.discharge_a, target.discharge_a),
            }
        } else {
            AllowedCurrent::ZERO
        };
    }

    /// Build the status this tick publishes.
    fn publish(&mut self, outputs: RelayOutputs, permit: Permit, soc: soc::SocBasis, now_ms: u64) {
        // A fault latched this tick (contactor supervision) is the reason now.
        let blocked_reason = match self.latched.first() {
            Some(l) => Some(format!("fault latched: {}", l.message)),
            None => permit.blocked(self.contactor.state()),
        };
        let active = self
            .tracked
            .iter()
            .flat_map(|t| {
                TierLevel::ALL
                    .into_iter()
                    .filter(|l| t.monitor.is_active(*l))
                    .map(|tier| ActiveTier {
                        quantity: t.quantity,
                        tier,
                    })
            })
            .chain(self.soc_disagreement.active.then_some(ActiveTier {
                quantity: Quantity::SocDisagreement,
                tier: TierLevel::Mol,
            }))
            .chain(self.record_failing.then_some(ActiveTier {
                quantity: Quantity::EventRecordFailing,
                tier: TierLevel::Mol,
            }))
            .collect();
        self.status = Status {
            time_ms: now_ms,
            outputs,
            contactor_state: self.contactor.state(),
            allowed: self.allowed,
            latched: self.latched.clone(),
            active,
            blocked_reason,
            holds: self.holds.clone(),
            soc,
        };
    }

    fn check_plausibility(&mut self, s: &PackSnapshot, d: &Derived, now_ms: u64) -> Events {
        let mut ev = Events::default();
        let p = self.cfg.plausibility;
        let per = s.cells_per_module.max(1) as usize;
        let fresh = |i: usize| s.module_comm.get(i / per) == Some(&CommStatus::Ok);
        let outside = |v: f32, r: [f32; 2]| v.is_finite() && (v < r[0] || v > r[1]);
        let bad_cell = (0..s.cell_voltage_v.len()).find(|&i| {
            fresh(i)
                && (outside(s.cell_voltage_v[i], p.cell_voltage_range_v)
                    || outside(s.cell_temp_c[i], p.temp_range_c))
        });
        // The pack and link voltages come with the current (one sensor).
        let bad_current = d.current_a.is_some_and(|i| {
            outside(i, p.current_range_a)
                || outside(s.pack_voltage_v, p.pack_voltage_range_v)
                || outside(s.link_voltage_v, p.link_voltage_range_v)
        });
        let out = bad_cell.is_some() || bad_current;
        if out {
            self.range_location = bad_cell.map(|i| Location {
                module: i / per,
                cell: i % per,
            });
        }
        let gate = Gate {
            raise_applies: true,
            may_clear: d.fresh,
        };
        let tr = self
            .range
            .update_gated(Some(if out { 1.0 } else { 0.0 }), now_ms, gate);
        if tr == Some(Transition::Cleared) {
            ev.push(
                EventKind::Cleared,
                Some(Quantity::SensorOutOfRange),
                Some(TierLevel::Msl),
                Detail {
                    time_ms: now_ms,
                    location: self.range_location,
                    value: None,
                    limit: None,
                    action: "none",
                    message: "every reading back inside its sensor range".into(),
                },
            );
        }
        if tr == Some(Transition::Raised) {
            let (location, value, what) = match bad_cell {
                Some(i) => (
                    self.range_location,
                    Some(s.cell_voltage_v[i]),
                    "cell voltage or temperature",
                ),
                None => (None, d.current_a, "current, pack or link voltage"),
            };
            let message = format!(
                "{what} reading outside its sensor's physical range for {} ms",
                p.range_delay_ms
            );
            ev.push(
                EventKind::Raised,
                Some(Quantity::SensorOutOfRange),
                Some(TierLevel::Msl),
                Detail {
                    time_ms: now_ms,
                    location,
                    value,
                    limit: None,
                    action: "open contactors",
                    message: message.clone(),
                },
            );
            self.latch(
                &mut ev,
                Latch {
                    quantity: Quantity::SensorOutOfRange,
                    location,
                    value,
                    limit: None,
                    time_ms: now_ms,
                    message,
                },
            );
        }
        if p.current_frozen_ms > 0 && self.contactor.state() == ContactorState::Closed {
            let frozen_for = now_ms.saturating_sub(s.current_changed_ms);
            if d.current_a.is_some() && frozen_for >= p.current_frozen_ms {
                let message = format!(
                    "current reading stuck at {:.3} A for {frozen_for} ms while connected: sensor implausible",
                    s.current_a
                );
                self.latch(
                    &mut ev,
                    Latch {
                        quantity: Quantity::CurrentSensorFrozen,
                        location: None,
                        value: Some(s.current_a),
                        limit: None,
                        time_ms: now_ms,
                        message,
                    },
                );
            }
        }
        ev
    }

    fn check_communication(&mut self, s: &PackSnapshot, d: &Derived, now_ms: u64) -> Events {
        let mut ev = Events::default();
        let started = *self.started_ms.get_or_insert(now_ms);
        if d.fresh {
            return ev;
        }
        if !self.seen_complete {
            // Start-up: give every source two timeouts to report once, then
            // name the ones that never did.
            if now_ms.saturating_sub(started) < 2 * self.data_timeout_ms {
                return ev;
            }
            let missing: Vec<usize> = (0..s.module_comm.len())
                .filter(|m| s.module_comm[*m] == CommStatus::Stale)
                .collect();
            let mut what: Vec<String> = missing.iter().map(|m| format!("module {m}")).collect();
            if s.current_comm == CommStatus::Stale {
                what.push("the current sensor".into());
            }
            self.latch(
                &mut ev,
                Latch {
                    quantity: Quantity::CommunicationLoss,
                    location: missing.first().map(|m| Location {
                        module: *m,
                        cell: 0,
                    }),
                    value: None,
                    limit: None,
                    time_ms: now_ms,
                    message: format!("never heard from {} since start-up", what.join(", ")),
                },
            );
            return ev;
        }
        let age = now_ms.saturating_sub(s.timestamp_ms);
        let (location, message) = if age > self.data_timeout_ms {
            (
                None,
                format!("no snapshot for {age} ms: acquisition stalled"),
            )
        } else if let Some(m) = s.module_comm.iter().position(|c| *c == CommStatus::Stale) {
            (
                Some(Location { module: m, cell: 0 }),
                format!("module {m} stopped communicating"),
            )
        } else {
            (None, "current sensor stopped communicating".to_string())
        };
        self.latch(
            &mut ev,
            Latch {
                quantity: Quantity::CommunicationLoss,
                location,
                value: None,
                limit: None,
                time_ms: now_ms,
                message,
            },
        );
        ev
    }

    /// The warning tier for an event record that cannot reach its disk.
    /// Its own events are queued with the rest and reach the disk with
    /// them once it takes writes again.
    fn check_record(&mut self, now_ms: u64) -> Events {
        let mut ev = Events::default();
        if self.record_failing {
            // Queued records go out once the disk takes them, with no new
            // record needed to push them (the sink paces its attempts).
            self.log.retry(now_ms);
        }
        let failing = self.log.failing();
        if failing == self.record_failing {
            return ev;
        }
        self.record_failing = failing;
        let (kind, action, message) = if failing {
            (
                EventKind::Raised,
                "warn; keep protecting, latches held in memory",
                "the event record cannot reach its disk: records are kept in memory and \
                 retried; a restart before the disk recovers loses them"
                    .to_string(),
            )
        } else {
            (
                EventKind::Cleared,
                "none",
                "the event record reaches its disk again; queued records written".to_string(),
            )
        };
        let detail = Detail {
            time_ms: now_ms,
            location: None,
            value: None,
            limit: None,
            action,
            message,
        };
        ev.push(
            kind,
            Some(Quantity::EventRecordFailing),
            Some(TierLevel::Mol),
            detail,
        );
        ev
    }

    /// The warning tier for a plugin SOC that disagrees with protection's.
    fn check_soc_disagreement(&mut self, b: &soc::SocBasis, now_ms: u64) -> Events {
        let mut ev = Events::default();
        let gate = Gate {
            raise_applies: true,
            may_clear: true,
        };
        let Some(tr) = self
            .soc_disagreement
            .update_gated(b.disagreement_pct, now_ms, gate)
        else {
            return ev;
        };
        let band = self.cfg.soc.disagreement_pct.limit;
        let show = |x: Option<f32>| x.map_or("unknown".to_string(), |v| format!("{v:.1} %"));
        let (kind, action, message) = match tr {
            Transition::Raised => (
                EventKind::Raised,
                "warn; derating on the more conservative SOC",
                format!(
                    "SOC plugin reports {} but protection counts {}..{} (mean {}): more than {band} pp apart",
                    show(b.reported_pct),
                    show(b.native_min_pct),
                    show(b.native_max_pct),
                    show(b.native_mean_pct)
                ),
            ),
            Transition::Cleared => (
                EventKind::Cleared,
                "none",
                format!(
                    "SOC plugin ({}) and protection ({}..{}) agree again",
                    show(b.reported_pct),
                    show(b.native_min_pct),
                    show(b.native_max_pct)
                ),
            ),
        };
        let detail = Detail {
            time_ms: now_ms,
            location: None,
            value: b.disagreement_pct,
            limit: Some(band),
            action,
            message,
        };
        ev.push(
            kind,
            Some(Quantity::SocDisagreement),
            Some(TierLevel::Mol),
            detail,
        );
        ev
    }

    fn derate_target(&self, d: &Derived, soc: &soc::SocBasis) -> AllowedCurrent {
        let c = &self.cfg.derating;
        let mut charge = c.max_charge_current_a;
        let mut discharge = c.max_discharge_current_a;
        let v = |x: Option<(usize, f32)>| x.map_or(f32::NAN, |x| x.1);
        charge = charge.min(c.charge_vs_cell_voltage_v.eval(v(d.max_v)));
        discharge = discharge.min(c.discharge_vs_cell_voltage_v.eval(v(d.min_v)));
        for t in [v(d.min_t), v(d.max_t)] {
            charge = charge.min(c.charge_vs_temp_c.eval(t));
            discharge = discharge.min(c.discharge_vs_temp_c.eval(t));
        }
        // Unknown SOC (no data yet): the voltage curves still protect.
        if let Some(x) = soc.charge_pct {
            charge = charge.min(c.charge_vs_soc_pct.eval(x));
        }
        if let Some(x) = soc.discharge_pct {
            discharge = discharge.min(c.discharge_vs_soc_pct.eval(x));
        }
        for t in &self.tracked {
            if t.monitor.is_active(TierLevel::Rsl) || t.monitor.is_active(TierLevel::Msl) {
                match t.quantity.row().blocks {
                    table::Blocks::Charge => charge = 0.0,
                    table::Blocks::Discharge => discharge = 0.0,
                    table::Blocks::Both => (charge, discharge) = (0.0, 0.0),
                    table::Blocks::Nothing => {}
                }
            }
        }
        if !self.holds.is_empty() {
            // Either kind of hold: no current (an open hold also opens).
            (charge, discharge) = (0.0, 0.0);
        }
        AllowedCurrent {
            charge_a: charge.max(0.0),
            discharge_a: discharge.max(0.0),
        }
    }

    /// Authorised reset (the caller has checked the credential): clear every
    /// latch, but only if every latched condition has cleared. All or
    /// nothing, so a reset never half-arms a faulted rack. `by` says who
    /// asked and through which path (e.g. "operator `ana` over the control
    /// socket"); it goes into every reset record.
    pub fn reset(
        &mut self,
        s: &PackSnapshot,
        now_ms: u64,
        by: &str,
    ) -> Result<Vec<Latch>, ResetError> {
        if self.latched.is_empty() {
            return Err(ResetError::NothingLatched);
        }
        let d = self.derive(s, now_ms);
        // Evidence, not flags: every condition is judged on data that has
        // been fresh for at least the longest MSL debounce, so a value still
        // beyond its limit has had the time to re-raise its tier.
        let evaluated_ms = self.fresh_since_ms.map_or(0, |t| now_ms.saturating_sub(t));
        if !d.fresh || evaluated_ms < self.arm_ms {
            return Err(ResetError::NotCleared(format!(
                "need {} ms of fresh data from every source to judge the conditions, have {evaluated_ms} ms",
                self.arm_ms
            )));
        }
        let c = self.cfg.contactors;
        let mut not_cleared = Vec::new();
        for l in &self.latched {
            use table::ResetRule as R;
            let cleared = match l.quantity.row().reset {
                R::FreshData => true,
                R::RangesBack => !self.range.active && !self.range.is_beyond(),
                R::CurrentMoving => s.current_changed_ms + 1000 >= now_ms,
                R::WeldCleared => {
                    self.contactor.state() == ContactorState::Open
                        && self.contactor.in_state_ms(now_ms) >= c.open_timeout_ms
                        && d.current_a.is_some_and(|i| i.abs() < c.weld_current_a)
                        && s.link_voltage_v < c.weld_voltage_fraction * s.pack_voltage_v
                }
                R::TierReleased => self
                    .tracked
                    .iter()
                    .find(|t| t.quantity == l.quantity)
                    .is_some_and(|t| {
                        t.monitor
                            .get(TierLevel::Msl)
                            .is_some_and(|m| !m.active && !m.is_beyond())
                    }),
                // Nothing of this kind is ever latched; refuse rather than guess.
                R::NeverLatches => false,
            };
            if !cleared {
                not_cleared.push(format!("{:?}: {}", l.quantity, l.message));
            }
        }
        if !not_cleared.is_empty() {
            return Err(ResetError::NotCleared(not_cleared.join("; ")));
        }
        let cleared = std::mem::take(&mut self.latched);
        // Re-arm: closing again needs a full arming window of fresh data.
        self.fresh_since_ms = Some(now_ms);
        let mut ev = Events::default();
        for l in &cleared {
            ev.push(
                EventKind::Reset,
                Some(l.quantity),
                Some(TierLevel::Msl),
                Detail {
                    time_ms: now_ms,
                    location: l.location,
                    value: None,
                    limit: None,
                    action: "latch cleared by authorised reset",
                    message: format!("reset by {by} of: {}", l.message),
                },
            );
        }
        self.record(ev);
        Ok(cleared)
    }
}

/// The events a stage returns, in the order it raised them; the tick
/// gathers every stage's and [`Protection::record`]s them in one place.
#[derive(Default)]
#[must_use]
struct Events(Vec<EventRecord>);

impl Events {
    fn push(
        &mut self,
        kind: EventKind,
        quantity: Option<Quantity>,
        tier: Option<TierLevel>,
        detail: Detail,
    ) {
        self.0.push(EventRecord {
            seq: 0,
            time_ms: detail.time_ms,
            unix_ms: 0,
            kind,
            quantity,
            tier,
            location: detail.location,
            value: detail.value.filter(|v| v.is_finite()),
            limit: detail.limit.filter(|v| v.is_finite()),
            action: detail.action.to_string(),
            message: detail.message,
        });
    }

    /// Append a stage's events.
    fn add(&mut self, stage: Events) {
        self.0.extend(stage.0);
    }

    /// Append a stage's events and hand back its result.
    fn and<T>(&mut self, (value, stage): (T, Events)) -> T {
        self.add(stage);
        value
    }
}

/// Why the contactors may not stay closed (`keep`) or may not close
/// (`close`); `None` means they may.
struct Permit {
    keep: Option<String>,
    close: Option<String>,
}

impl Permit {
    /// The reason that applies in contactor state `state`.
    fn blocked(&self, state: ContactorState) -> Option<String> {
        match state {
            ContactorState::Open => self.close.clone(),
            _ => self.keep.clone(),
        }
    }
}

struct Detail {
    time_ms: u64,
    location: Option<Location>,
    value: Option<f32>,
    limit: Option<f32>,
    action: &'static str,
    message: String,
}

fn contactor_action(from: ContactorState, to: ContactorState) -> &'static str {
    use ContactorState::*;
    match (from, to) {
        (Open, Precharge) => "close precharge relay",
        (Precharge, Closed) => "close main contactor",
        (_, Opening) => "open contactors",
        (_, Open) => "contactors open",
        _ => "contactor transition",
    }
}

/// Persistent latches from the record: latched and not reset since.
fn restore_persistent_latches(records: &[EventRecord]) -> Vec<Latch> {
    let mut out: Vec<Latch> = Vec::new();
    for r in records {
        let Some(q) = r.quantity.filter(|q| q.is_persistent()) else {
            continue;
        };
        match r.kind {
            EventKind::Latched
                if out
                    .iter()
                    .any(|l| l.quantity == q && l.location == r.location) => {}
            EventKind::Latched => out.push(Latch {
                quantity: q,
                location: r.location,
                value: r.value,
                limit: r.limit,
                time_ms: 0,
                message: if r.message.ends_with("(restored from the event record)") {
                    r.message.clone()
                } else {
                    format!("{} (restored from the event record)", r.message)
                },
            }),
            EventKind::Reset => out.retain(|l| l.quantity != q),
            _ => {}
        }
    }
    out
}

impl Derived {
    /// The value (and where it was measured) of a tiered quantity's source.
    fn value(&self, source: table::Source, per: usize) -> (Option<f32>, Option<Location>) {
        use table::Source as S;
        let loc = |x: Option<(usize, f32)>| {
            x.map(|(i, _)| Location {
                module: i / per,
                cell: i % per,
            })
        };
        let val = |x: Option<(usize, f32)>| x.map(|(_, v)| v);
        let spread = |hi: Option<(usize, f32)>, lo: Option<(usize, f32)>| Some(val(hi)? - val(lo)?);
        match source {
            S::MaxCellVoltage => (val(self.max_v), loc(self.max_v)),
            S::MinCellVoltage => (val(self.min_v), loc(self.min_v)),
            S::MaxCellTemp => (val(self.max_t), loc(self.max_t)),
            S::MinCellTemp => (val(self.min_t), loc(self.min_t)),
            S::CellTempSpread => (spread(self.max_t, self.min_t), loc(self.max_t)),
            S::CellVoltageSpread => (spread(self.max_v, self.min_v), loc(self.max_v)),
            S::ChargeCurrent => (self.current_a, None),
            S::DischargeCurrent => (self.current_a.map(|i| -i), None),
            S::PackVoltageMismatch => (self.mismatch_v, None),
            // Judged by their own checks, never as a tiered value.
            S::Freshness
            | S::SensorRanges
            | S::CurrentChanges
            | S::ContactorFeedback
            | S::SocEstimates
            | S::EventRecord => (None, None),
        }
    }
}

/// Index and value of the extreme finite value among cells passing `keep`.
fn extreme(
    values: &[f32],
    keep: impl Fn(&usize) -> bool,
    pick: fn(f32, f32) -> f32,
) -> Option<(usize, f32)> {
    values
        .iter()
        .enumerate()
        .filter(|(i, v)| v.is_finite() && keep(i))
        .fold(None, |acc: Option<(usize, f32)>, (i, &v)| match acc {
            Some((_, best)) if pick(best, v) == best => acc,
            _ => Some((i, v)),
        })
}

#[cfg(test)]
mod tests;
