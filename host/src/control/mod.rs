//! The control cycle: acquire → (protect) → estimate → decide → clamp → report.
//!
//! Owns: acquisition scheduling (every protection period, so protection
//! always sees fresh data), the plugin stages every control cycle, and the
//! hand-off between them. Protection itself runs in
//! [`ProtectionTask`](crate::protection::task::ProtectionTask), on its own
//! thread or lock-stepped before each cycle; this module only reads its
//! published [`Status`] and never blocks it. Every plugin output passes
//! through the protection [`Clamp`] before it is encoded into frames.
//!
//! May not touch: frame encoding details (io), limit logic and contactors
//! (protection), wasm (plugins). It only wires them together.

use serde::Serialize;

use crate::config::SiteConfig;
use crate::io::can::acquire::Acquisition;
use crate::io::can::bus::CanPort;
use crate::io::can::CanFrame;
use crate::plugins::bindings::types as w;
use crate::plugins::fallback::{SocFallback, SohFallback};
use crate::plugins::{convert, PluginError, Role, RoleSlot};
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
}

/// Plugin slots by role.
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
}

/// The rack's controller.
pub struct Controller {
    acquisition: Acquisition,
    port: Box<dyn CanPort>,
    shared: std::sync::Arc<Shared>,
    pub clamp: Clamp,
    pub plugins: PluginSet,
    soc_fallback: SocFallback,
    soh_fallback: SohFallback,
    rx: Vec<CanFrame>,
    /// Operating cell-voltage window shown to plugins (the MOL limits).
    cell_window_v: (f32, f32),
    /// Bleed switches commanded last cycle, and the resistor they close.
    last_bleed: Vec<bool>,
    bleed_resistance_ohm: f32,
    pub cycles: u64,
    pub last: Option<CycleReport>,
}

impl Controller {
    pub fn new(
        cfg: &SiteConfig,
        acquisition: Acquisition,
        port: Box<dyn CanPort>,
        shared: std::sync::Arc<Shared>,
        plugins: PluginSet,
    ) -> Self {
        Self {
            acquisition,
            port,
            shared,
            clamp: Clamp::new(&cfg.protection),
            plugins,
            soc_fallback: SocFallback::new(cfg.rack.capacity_ah),
            soh_fallback: SohFallback::default(),
            rx: Vec::new(),
            cell_window_v: cfg.protection.operating_window_v(),
            last_bleed: vec![false; cfg.rack.cell_count()],
            bleed_resistance_ohm: cfg.rack.bleed_resistance_ohm,
            cycles: 0,
            last: None,
        }
    }

    /// Acquire: decode every frame received so far and publish the
    /// snapshot for protection. Runs every protection period.
    pub fn acquire(&mut self, now_ms: u64) {
        self.rx.clear();
        self.port.drain(&mut self.rx);
        self.acquisition.ingest(&self.rx, now_ms);
        let closed = self.shared.status().closed();
        let mut snap = self.acquisition.snapshot(now_ms, closed);
        for ((bleed_a, on), v) in snap
            .cell_bleed_a
            .iter_mut()
            .zip(&self.last_bleed)
            .zip(&snap.cell_voltage_v)
        {
            if *on && v.is_finite() {
                *bleed_a = v / self.bleed_resistance_ohm;
            }
        }
        self.shared.publish_snapshot(snap);
    }

    /// Run the plugin stages on the latest snapshot and protection status.
    /// `minute_of_day` feeds the EMS schedule.
    pub fn cycle(&mut self, minute_of_day: u32) -> &CycleReport {
        self.cycles += 1;
        let snap = (*self.shared.snapshot()).clone();
        let status = (*self.shared.status()).clone();

        // Estimate, decide, clamp: only on complete data.
        let (cell_soc, pack_soc, pack_soh, bleed, power_w, reason) = if snap.complete {
            self.run_plugins(&snap, &status, minute_of_day)
        } else {
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

        self.last_bleed.clone_from(&bleed);
        // Bleed commands go out every cycle (also all-off), so a BMU that
        // stops hearing them can time out to no bleeding.
        for frame in self.acquisition.encode_bleed(&bleed) {
            if let Err(e) = self.port.send(&frame) {
                tracing::warn!(error = %e, "cannot send bleed command");
            }
        }

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
        });
        self.last.as_ref().expect("just set")
    }

    #[allow(clippy::type_complexity)]
    fn run_plugins(
        &mut self,
        snap: &PackSnapshot,
        status: &Status,
        minute_of_day: u32,
    ) -> (Vec<f32>, Option<f32>, Option<f32>, Vec<bool>, f32, String) {
        let allowed = status.allowed;
        let n = snap.cell_voltage_v.len();
        let wsnap = convert::snapshot(snap);

        // 3. Estimate.
        let soc = self.plugins.soc.run(|p| {
            p.step_soc(&wsnap)
                .and_then(|o| check_soc(p.role(), &p.info().name, o, n))
        });
        let soc = match soc {
            Some(o) => {
                self.soc_fallback.observe(&o, snap.timestamp_ms);
                Some(o)
            }
            None => self.soc_fallback.step(&wsnap),
        };
        let soh = self.plugins.soh.run(|p| {
            p.step_soh(&wsnap)
                .and_then(|o| check_soh(p.role(), &p.info().name, o, n))
        });
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
        let requested = self
            .plugins
            .balancer
            .run(|p| {
                let out = p.step_balancer(&bal_in)?;
                if out.bleed.len() != n {
                    return Err(PluginError::BadOutput {
                        role: Role::Balancer,
                        plugin: p.info().name.clone(),
                        message: format!("bleed has {} entries for {n} cells", out.bleed.len()),
                    });
                }
                Ok(out.bleed)
            })
            .unwrap_or_else(|| vec![false; n]);
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
            limits: self.limits_for_plugins(snap, allowed),
            minute_of_day,
        };
        let hint = self.plugins.ems.run(|p| p.step_ems(&ems_in));

        // 5. Clamp.
        let bleed = self.clamp.bleed(snap, status, &requested);
        let (power_w, reason) = match hint {
            Some(h) => (self.clamp.power_w(snap, status, h.power_w), h.reason),
            None => (0.0, "EMS fallback: no hint".to_string()),
        };
        let pack_soc = soc.map(|s| s.pack_soc_pct);
        let pack_soh = soh.map(|s| s.pack_soh_pct);
        (cell_soc, pack_soc, pack_soh, bleed, power_w, reason)
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

    /// Frames acquisition rejected, for the summary.
    pub fn acquire_stats(&self) -> crate::io::can::acquire::AcquireStats {
        self.acquisition.stats
    }
}

/// A SOC output must cover every cell with finite values in 0..=100.
fn check_soc(
    role: Role,
    plugin: &str,
    o: w::SocOutput,
    n: usize,
) -> Result<w::SocOutput, PluginError> {
    let bad = |message: String| PluginError::BadOutput {
        role,
        plugin: plugin.to_string(),
        message,
    };
    if o.cell_soc_pct.len() != n {
        return Err(bad(format!(
            "cell-soc-pct has {} entries for {n} cells",
            o.cell_soc_pct.len()
        )));
    }
    let in_range = |v: &f32| v.is_finite() && (0.0..=100.0).contains(v);
    if let Some((i, v)) = o
        .cell_soc_pct
        .iter()
        .enumerate()
        .find(|(_, v)| !in_range(v))
    {
        return Err(bad(format!("cell-soc-pct[{i}] = {v} is not in 0..=100")));
    }
    if !in_range(&o.pack_soc_pct) {
        return Err(bad(format!(
            "pack-soc-pct = {} is not in 0..=100",
            o.pack_soc_pct
        )));
    }
    Ok(o)
}

/// A SOH output must cover every cell with finite, non-negative values.
fn check_soh(
    role: Role,
    plugin: &str,
    o: w::SohOutput,
    n: usize,
) -> Result<w::SohOutput, PluginError> {
    let bad = |message: String| PluginError::BadOutput {
        role,
        plugin: plugin.to_string(),
        message,
    };
    if o.cell_capacity_ah.len() != n || o.cell_resistance_mohm.len() != n {
        return Err(bad(format!(
            "per-cell lists have {} / {} entries for {n} cells",
            o.cell_capacity_ah.len(),
            o.cell_resistance_mohm.len()
        )));
    }
    let ok = |v: &f32| v.is_finite() && *v >= 0.0;
    if !ok(&o.pack_soh_pct) || o.pack_soh_pct > 200.0 {
        return Err(bad(format!(
            "pack-soh-pct = {} is not in 0..=200",
            o.pack_soh_pct
        )));
    }
    if let Some(i) = o.cell_capacity_ah.iter().position(|v| !ok(v)) {
        return Err(bad(format!(
            "cell-capacity-ah[{i}] = {} is invalid",
            o.cell_capacity_ah[i]
        )));
    }
    if let Some(i) = o.cell_resistance_mohm.iter().position(|v| !ok(v)) {
        return Err(bad(format!(
            "cell-resistance-mohm[{i}] = {} is invalid",
            o.cell_resistance_mohm[i]
        )));
    }
    Ok(o)
}
