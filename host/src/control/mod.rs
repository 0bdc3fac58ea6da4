//! The control cycle: estimate → decide → clamp → report, on a copy of the
//! snapshot protection judged last.
//!
//! Owns: the plugin stages every control cycle and the hand-off between
//! them. Acquisition and protection run in
//! [`ProtectionTask`](crate::protection::task::ProtectionTask), on its own
//! thread or lock-stepped before each cycle; this module only reads what it
//! published in [`Shared`] (without a lock) and never blocks it. Every
//! plugin output passes through the protection [`Clamp`]; the clamped
//! bleed command goes back through [`Shared`] for the protection thread to
//! send.
//!
//! May not touch: frames and buses (io), limit logic and contactors
//! (protection), wasm (plugins). It only wires them together.

use serde::Serialize;

use crate::config::SiteConfig;
use crate::plugins::bindings::types as w;
use crate::plugins::canary::{HistoryEntry, Outputs};
use crate::plugins::fallback::{SocFallback, SohFallback};
use crate::plugins::{check, convert, PluginManager};
use crate::protection::clamp::Clamp;
use crate::protection::task::Shared;
use crate::protection::{AllowedCurrent, Status};
use crate::snapshot::PackSnapshot;

/// What one cycle produced, for telemetry.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub snapshot: PackSnapshot,
    /// Protection's status at the cycle (contactors, limits, faults).
    pub protection: Status,
    pub allowed: AllowedCurrent,
    pub cell_soc_pct: Vec<f32>,
    pub pack_soc_pct: Option<f32>,
    pub pack_soh_pct: Option<f32>,
    /// Bleed switches commanded after clamping.
    pub bleed: Vec<bool>,
    /// EMS power hint after clamping, in W.
    pub ems_power_w: f32,
    pub ems_reason: String,
    /// Whether an EMS plugin gave the hint this cycle (else the fallback's 0 W).
    pub ems_hint: bool,
}

/// The rack's controller.
pub struct Controller {
    shared: std::sync::Arc<Shared>,
    pub clamp: Clamp,
    pub plugins: PluginManager,
    soc_fallback: SocFallback,
    soh_fallback: SohFallback,
    /// Operating cell-voltage window shown to plugins (the MOL limits).
    cell_window_v: (f32, f32),
    pub cycles: u64,
    pub last: Option<CycleReport>,
    /// Whether the EMS plugin answered in the last cycle that ran plugins.
    ems_answered: bool,
}

impl Controller {
    pub fn new(cfg: &SiteConfig, shared: std::sync::Arc<Shared>, plugins: PluginManager) -> Self {
        Self {
            shared,
            clamp: Clamp::new(&cfg.protection),
            plugins,
            soc_fallback: SocFallback::new(cfg.rack.capacity_ah),
            soh_fallback: SohFallback::default(),
            cell_window_v: cfg.protection.operating_window_v(),
            cycles: 0,
            last: None,
            ems_answered: false,
        }
    }

    /// Run the plugin stages on the latest snapshot and protection status.
    /// `minute_of_day` feeds the EMS schedule.
    pub fn cycle(&mut self, minute_of_day: u32) -> &CycleReport {
        self.cycles += 1;
        let snap = (*self.shared.snapshot()).clone();
        let status = (*self.shared.status()).clone();
        let now_ms = snap.timestamp_ms;
        // Swaps and rollbacks take effect here, between two cycles.
        self.plugins.apply_orders(now_ms);

        // Estimate, decide, clamp: only on complete data.
        let complete = snap.complete;
        let (cell_soc, pack_soc, pack_soh, bleed, power_w, reason) = if complete {
            let (out, entry) = self.run_plugins(&snap, &status, minute_of_day);
            self.plugins.end_cycle(now_ms, Some(entry));
            out
        } else {
            self.plugins.end_cycle(now_ms, None);
            let n = snap.cell_voltage_v.len();
            (
                vec![f32::NAN; n],
                None,
                None,
                vec![false; n],
                0.0,
                "no data yet".to_string(),
            )
        };
        self.shared.publish_soc(pack_soc);
        // Commanded every cycle (also all-off); the protection thread sends it.
        self.shared.command_bleed(&bleed);

        self.last = Some(CycleReport {
            snapshot: snap,
            allowed: status.allowed,
            protection: status,
            cell_soc_pct: cell_soc,
            pack_soc_pct: pack_soc,
            pack_soh_pct: pack_soh,
            bleed,
            ems_power_w: power_w,
            ems_reason: reason,
            ems_hint: complete && self.ems_answered,
        });
        self.last.as_ref().expect("just set")
    }

    #[allow(clippy::type_complexity)]
    fn run_plugins(
        &mut self,
        snap: &PackSnapshot,
        status: &Status,
        minute_of_day: u32,
    ) -> (
        (Vec<f32>, Option<f32>, Option<f32>, Vec<bool>, f32, String),
        HistoryEntry,
    ) {
        let allowed = status.allowed;
        let n = snap.cell_voltage_v.len();
        let now = snap.timestamp_ms;
        let wsnap = convert::snapshot(snap);
        let slots = &mut self.plugins.slots;
        let mut outputs = Outputs::default();

        // 3. Estimate.
        let soc = slots.soc.run(now, |p| {
            p.step_soc(&wsnap)
                .and_then(|o| check::soc(p.role(), &p.info().name, o, n))
        });
        outputs.soc.clone_from(&soc);
        let soc = match soc {
            Some(o) => {
                self.soc_fallback.observe(&o, snap.timestamp_ms);
                Some(o)
            }
            None => self.soc_fallback.step(&wsnap),
        };
        let soh = slots.soh.run(now, |p| {
            p.step_soh(&wsnap)
                .and_then(|o| check::soh(p.role(), &p.info().name, o, n))
        });
        outputs.soh.clone_from(&soh);
        let soh = match soh {
            Some(o) => {
                self.soh_fallback.observe(&o);
                Some(o)
            }
            None => self.soh_fallback.step(),
        };

        // 4. Decide.
        let cell_soc = soc
            .as_ref()
            .map_or(vec![f32::NAN; n], |s| s.cell_soc_pct.clone());
        let bal_in = w::BalanceInput {
            snapshot: wsnap.clone(),
            cell_soc_pct: cell_soc.clone(),
        };
        let requested = slots.balancer.run(now, |p| {
            let out = p.step_balancer(&bal_in)?;
            check::bleed(&p.info().name, out.bleed, n)
        });
        outputs.bleed.clone_from(&requested);
        let requested = requested.unwrap_or_else(|| vec![false; n]);
        let limits = self.limits_for_plugins(snap, allowed);
        let slots = &mut self.plugins.slots;
        let ems_in = w::EmsInput {
            snapshot: wsnap,
            soc: soc.clone().unwrap_or(w::SocOutput {
                cell_soc_pct: vec![],
                pack_soc_pct: f32::NAN,
            }),
            soh: soh.clone().unwrap_or(w::SohOutput {
                pack_soh_pct: f32::NAN,
                cell_capacity_ah: vec![],
                cell_resistance_mohm: vec![],
            }),
            limits,
            minute_of_day,
        };
        let hint = slots.ems.run(now, |p| {
            p.step_ems(&ems_in)
                .and_then(|o| check::ems(&p.info().name, o))
        });
        outputs.ems.clone_from(&hint);

        // 5. Clamp.
        let bleed = self.clamp.bleed(snap, status, &requested);
        self.ems_answered = hint.is_some();
        let (power_w, reason) = match hint {
            Some(h) => (self.clamp.power_w(snap, status, h.power_w), h.reason),
            None => (0.0, "EMS fallback: no hint".to_string()),
        };
        let pack_soc = soc.map(|s| s.pack_soc_pct);
        let pack_soh = soh.map(|s| s.pack_soh_pct);
        let entry = HistoryEntry {
            balance: bal_in,
            ems_soc: ems_in.soc,
            ems_soh: ems_in.soh,
            ems_limits: ems_in.limits,
            minute_of_day,
            outputs,
            checkpoints: Default::default(),
        };
        (
            (cell_soc, pack_soc, pack_soh, bleed, power_w, reason),
            entry,
        )
    }

    fn limits_for_plugins(
        &self,
        snap: &PackSnapshot,
        allowed: AllowedCurrent,
    ) -> w::ProtectionLimits {
        let pack_v = snap.pack_voltage_or_zero();
        w::ProtectionLimits {
            max_charge_current_a: allowed.charge_a,
            max_discharge_current_a: allowed.discharge_a,
            max_charge_power_w: allowed.charge_a * pack_v,
            max_discharge_power_w: allowed.discharge_a * pack_v,
            cell_min_voltage_v: self.cell_window_v.0,
            cell_max_voltage_v: self.cell_window_v.1,
        }
    }

    /// What acquisition rejected, with the bus's own counters.
    pub fn acquire_stats(&self) -> crate::io::can::acquire::AcquireStats {
        self.shared.acquire_stats()
    }
}
