//! Clamping of plugin outputs. Nothing a plugin returns reaches hardware
//! or the PCS without passing through here; the clamp reads only the
//! protection [`Status`] of the latest tick, never the other way round.

use serde::Serialize;

use super::limits::{BalancingLimits, ProtectionConfig};
use super::Status;
use crate::snapshot::{CommStatus, PackSnapshot};

/// Counts of plugin outputs protection refused or changed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClampStats {
    /// Bleed requests refused (cell too low, too hot, stale, faulted, or
    /// over the simultaneous-bleeder cap).
    pub bleed_refused: u64,
    /// Non-finite values replaced by the safe value.
    pub non_finite: u64,
    /// Power hints reduced to the derated limit.
    pub power_capped: u64,
}

/// The clamp stage of the control cycle.
#[derive(Debug, Clone)]
pub struct Clamp {
    /// No bleeding at or below this cell voltage (the under-voltage MOL).
    min_bleed_v: f32,
    limits: BalancingLimits,
    pub stats: ClampStats,
}

impl Clamp {
    pub fn new(cfg: &ProtectionConfig) -> Self {
        let uv = cfg.cell_under_voltage_v;
        let min_bleed_v = [uv.mol, uv.rsl, uv.msl]
            .into_iter()
            .flatten()
            .map(|t| t.limit + t.hysteresis)
            .fold(f32::NEG_INFINITY, f32::max);
        Self {
            min_bleed_v,
            limits: cfg.balancing,
            stats: ClampStats::default(),
        }
    }

    /// Allow a bleed only on cells of fresh modules above the
    /// under-voltage MOL and below the balancing temperature limit, never
    /// while a fault is latched, and on at most `max_bleeders` cells (the
    /// highest voltages win).
    pub fn bleed(&mut self, snap: &PackSnapshot, status: &Status, requested: &[bool]) -> Vec<bool> {
        let cells = snap.cell_voltage_v.len();
        let per = snap.cells_per_module.max(1) as usize;
        let faulted = !status.latched.is_empty();
        let mut allowed: Vec<usize> = Vec::new();
        for i in 0..cells {
            if !requested.get(i).copied().unwrap_or(false) {
                continue;
            }
            let v = snap.cell_voltage_v[i];
            let t = snap.cell_temp_c[i];
            let fresh = snap.module_comm.get(i / per) == Some(&CommStatus::Ok);
            if !faulted
                && fresh
                && v.is_finite()
                && v > self.min_bleed_v
                && t.is_finite()
                && t < self.limits.max_temp_c
            {
                allowed.push(i);
            } else {
                self.stats.bleed_refused += 1;
            }
        }
        let cap = self.limits.max_bleeders as usize;
        if allowed.len() > cap {
            allowed.sort_by(|a, b| snap.cell_voltage_v[*b].total_cmp(&snap.cell_voltage_v[*a]));
            self.stats.bleed_refused += (allowed.len() - cap) as u64;
            allowed.truncate(cap);
        }
        let mut out = vec![false; cells];
        for i in allowed {
            out[i] = true;
        }
        out
    }

    /// Cap a power hint (W, positive = charge) to what the derated current
    /// limits allow at the present pack voltage. NaN/inf become 0.
    pub fn power_w(&mut self, snap: &PackSnapshot, status: &Status, power_w: f32) -> f32 {
        if !power_w.is_finite() {
            self.stats.non_finite += 1;
            return 0.0;
        }
        let pack_v = snap.pack_voltage_or_zero();
        let max_charge = status.allowed.charge_a * pack_v;
        let max_discharge = status.allowed.discharge_a * pack_v;
        let capped = power_w.clamp(-max_discharge, max_charge);
        if capped != power_w {
            self.stats.power_capped += 1;
        }
        capped
    }
}
