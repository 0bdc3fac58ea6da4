//! Clamping of plugin outputs. Nothing a plugin returns reaches hardware
//! or the PCS without passing through here.

use serde::Serialize;

use super::{AllowedCurrent, Protection};
use crate::snapshot::{CommStatus, PackSnapshot};

/// Counts of plugin outputs protection refused or changed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClampStats {
    /// Bleed requests refused (cell too low, too hot, stale, or over the cap).
    pub bleed_refused: u64,
    /// Non-finite values replaced by the safe value.
    pub non_finite: u64,
    /// Power hints reduced to the derated limit.
    pub power_capped: u64,
}

impl Protection {
    /// Allow a bleed only on cells of fresh modules whose voltage is above
    /// the under-voltage release and whose temperature is below the
    /// over-temperature release, and never while a fault is latched.
    pub fn clamp_bleed(&mut self, snap: &PackSnapshot, requested: &[bool]) -> Vec<bool> {
        let cells = snap.cell_voltage_v.len();
        let min_v = self.cfg.cell_under_voltage_v.release;
        let max_t = self.cfg.cell_over_temp_c.release;
        let faulted = self.latched.is_some();
        let per = snap.cells_per_module.max(1) as usize;
        let mut out = vec![false; cells];
        for (i, slot) in out.iter_mut().enumerate() {
            if !requested.get(i).copied().unwrap_or(false) {
                continue;
            }
            let v = snap.cell_voltage_v[i];
            let t = snap.cell_temp_c[i];
            let fresh = snap.module_comm.get(i / per) == Some(&CommStatus::Ok);
            if !faulted && fresh && v.is_finite() && v > min_v && t.is_finite() && t < max_t {
                *slot = true;
            } else {
                self.clamp_stats.bleed_refused += 1;
            }
        }
        out
    }

    /// Cap a power hint (W, positive = charge) to what the derated current
    /// limits allow at the present pack voltage. NaN/inf become 0.
    pub fn clamp_power_w(
        &mut self,
        snap: &PackSnapshot,
        allowed: AllowedCurrent,
        power_w: f32,
    ) -> f32 {
        if !power_w.is_finite() {
            self.clamp_stats.non_finite += 1;
            return 0.0;
        }
        let pack_v = if snap.pack_voltage_v.is_finite() {
            snap.pack_voltage_v.max(0.0)
        } else {
            0.0
        };
        let max_charge = allowed.charge_a * pack_v;
        let max_discharge = allowed.discharge_a * pack_v;
        let capped = power_w.clamp(-max_discharge, max_charge);
        if capped != power_w {
            self.clamp_stats.power_capped += 1;
        }
        capped
    }

    /// Replace a non-finite estimate by `fallback`, counting it.
    pub fn finite_or(&mut self, value: f32, fallback: f32) -> f32 {
        if value.is_finite() {
            value
        } else {
            self.clamp_stats.non_finite += 1;
            fallback
        }
    }
}
