//! Battery physics: equivalent-circuit cells and lumped module thermals.
//!
//! Each cell is OCV(SOC) + R0 + one RC pair, with its own capacity,
//! resistances, starting SOC and self-discharge. Each module is one thermal
//! mass exchanging heat with ambient. Pure numbers: no CAN, no noise.

use super::ocv::OcvCurve;
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::SimConfig;

/// OCV rise per % of overcharge beyond the table, in V.
const OVERCHARGE_V_PER_PCT: f64 = 0.05;
/// OCV drop per % of over-discharge below the table, in V.
const OVERDISCHARGE_V_PER_PCT: f64 = 0.1;
/// How far the model follows a cell beyond 0..100 % (as a fraction).
pub const SOC_MIN: f64 = -0.1;
pub const SOC_MAX: f64 = 1.1;

/// True state of one cell.
#[derive(Debug, Clone)]
pub struct Cell {
    /// State of charge, 0..=1.
    pub soc: f64,
    pub capacity_ah: f64,
    pub r0_ohm: f64,
    pub r1_ohm: f64,
    pub tau1_s: f64,
    /// Voltage across the RC pair, in V.
    pub v_rc: f64,
    /// Self-discharge, fraction of capacity per second.
    pub self_discharge_per_s: f64,
    /// Internal short (fault injection): leak resistance in Ω.
    pub leak_ohm: Option<f64>,
    /// Current through the cell in the last step, in A (positive = charge).
    pub current_a: f64,
}

/// The rack's physics.
#[derive(Debug, Clone)]
pub struct RackModel {
    pub cells: Vec<Cell>,
    pub cells_per_module: usize,
    /// Module temperatures in °C.
    pub module_temp_c: Vec<f64>,
    /// Extra heat per module (fault injection), in W.
    pub module_extra_heat_w: Vec<f64>,
    ocv: OcvCurve,
    ambient_c: f64,
    heat_capacity_j_per_k: f64,
    thermal_resistance_k_per_w: f64,
    bleed_resistance_ohm: f64,
}

impl RackModel {
    pub fn new(
        cfg: &SimConfig,
        ocv: OcvCurve,
        modules: usize,
        cells_per_module: usize,
        capacity_ah: f64,
        rng: &mut impl Rng,
    ) -> Self {
        let spread = |sigma: f64| Normal::new(0.0, sigma.max(0.0)).expect("finite sigma");
        let soc_d = spread(cfg.initial_soc_spread_pct / 100.0);
        let cap_d = spread(cfg.capacity_spread_pct / 100.0);
        let r_d = spread(cfg.resistance_spread_pct / 100.0);
        let sd_d = spread(cfg.self_discharge_spread_pct / 100.0);
        let cells = (0..modules * cells_per_module)
            .map(|_| {
                let r_factor = (1.0 + r_d.sample(rng)).max(0.3);
                Cell {
                    soc: (cfg.initial_soc_pct / 100.0 + soc_d.sample(rng)).clamp(0.0, 1.0),
                    capacity_ah: capacity_ah * (1.0 + cap_d.sample(rng)).max(0.5),
                    r0_ohm: cfg.r0_mohm / 1000.0 * r_factor,
                    r1_ohm: cfg.r1_mohm / 1000.0 * r_factor,
                    tau1_s: cfg.tau1_s,
                    v_rc: 0.0,
                    self_discharge_per_s: (cfg.self_discharge_pct_per_day
                        * (1.0 + sd_d.sample(rng)).max(0.0))
                        / 100.0
                        / 86_400.0,
                    leak_ohm: None,
                    current_a: 0.0,
                }
            })
            .collect();
        Self {
            cells,
            cells_per_module,
            module_temp_c: vec![cfg.initial_temp_c; modules],
            module_extra_heat_w: vec![0.0; modules],
            ocv,
            ambient_c: cfg.ambient_c,
            heat_capacity_j_per_k: cfg.module_heat_capacity_j_per_k,
            thermal_resistance_k_per_w: cfg.module_thermal_resistance_k_per_w,
            bleed_resistance_ohm: cfg.bleed_resistance_ohm,
        }
    }

    /// Open-circuit voltage of a cell, in V. Beyond the table (overcharge,
    /// deep discharge) the voltage runs away steeply, as real cells do.
    pub fn ocv_v(&self, cell: usize) -> f64 {
        let soc_pct = self.cells[cell].soc * 100.0;
        let (lo, hi) = self.ocv.soc_range();
        let table = self.ocv.ocv_v(soc_pct);
        if soc_pct > hi {
            table + (soc_pct - hi) * OVERCHARGE_V_PER_PCT
        } else if soc_pct < lo {
            table - (lo - soc_pct) * OVERDISCHARGE_V_PER_PCT
        } else {
            table
        }
    }

    /// Terminal voltage of a cell, in V.
    pub fn terminal_v(&self, cell: usize) -> f64 {
        let c = &self.cells[cell];
        self.ocv_v(cell) + c.current_a * c.r0_ohm + c.v_rc
    }

    /// Sum of terminal voltages, in V.
    pub fn pack_voltage_v(&self) -> f64 {
        (0..self.cells.len()).map(|i| self.terminal_v(i)).sum()
    }

    /// Advance `dt_s` with `pack_current_a` flowing (positive = charge)
    /// and the bleed switches in `bleed` closed.
    pub fn step(&mut self, dt_s: f64, pack_current_a: f64, bleed: &[bool]) {
        let modules = self.module_temp_c.len();
        let mut heat_w = self.module_extra_heat_w.clone();
        for i in 0..self.cells.len() {
            let v = self.terminal_v(i);
            let bleed_a = if bleed.get(i).copied().unwrap_or(false) {
                v / self.bleed_resistance_ohm
            } else {
                0.0
            };
            let leak_a = self.cells[i].leak_ohm.map_or(0.0, |r| v / r);
            let c = &mut self.cells[i];
            // Bleed and leak currents discharge the cell on top of the
            // string current.
            let i_cell = pack_current_a - bleed_a - leak_a;
            c.current_a = i_cell;
            let decay = (-dt_s / c.tau1_s).exp();
            c.v_rc = c.v_rc * decay + i_cell * c.r1_ohm * (1.0 - decay);
            c.soc += i_cell * dt_s / 3600.0 / c.capacity_ah - c.self_discharge_per_s * dt_s;
            c.soc = c.soc.clamp(SOC_MIN, SOC_MAX);
            let module = (i / self.cells_per_module).min(modules - 1);
            heat_w[module] += i_cell * i_cell * (c.r0_ohm + c.r1_ohm)
                + bleed_a * bleed_a * self.bleed_resistance_ohm
                + leak_a * leak_a * c.leak_ohm.unwrap_or(0.0);
        }
        for (t, q) in self.module_temp_c.iter_mut().zip(heat_w) {
            let loss_w = (*t - self.ambient_c) / self.thermal_resistance_k_per_w;
            *t += (q - loss_w) * dt_s / self.heat_capacity_j_per_k;
        }
    }

    /// True SOC per cell, in percent.
    pub fn soc_pct(&self) -> Vec<f64> {
        self.cells.iter().map(|c| c.soc * 100.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> RackModel {
        let cfg = SimConfig::for_tests();
        let ocv = OcvCurve::new(vec![0.0, 100.0], vec![3.0, 3.4]).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        RackModel::new(&cfg, ocv, 2, 4, 100.0, &mut rng)
    }

    #[test]
    fn charge_raises_soc_by_ah_over_capacity() {
        let mut m = model();
        let before = m.cells[0].soc;
        for _ in 0..3600 {
            m.step(1.0, 10.0, &[]);
        }
        let expected = 10.0 / m.cells[0].capacity_ah;
        assert!((m.cells[0].soc - before - expected).abs() < 1e-6);
    }

    #[test]
    fn terminal_voltage_includes_ir_drop_and_rc() {
        let mut m = model();
        let ocv = m.ocv_v(0);
        m.step(0.001, 100.0, &[]);
        let c = m.cells[0].clone();
        assert!((m.terminal_v(0) - (m.ocv_v(0) + 100.0 * c.r0_ohm + c.v_rc)).abs() < 1e-12);
        assert!(m.terminal_v(0) > ocv + 100.0 * c.r0_ohm * 0.99);
        // RC relaxes after the current stops.
        for _ in 0..10_000 {
            m.step(0.1, 0.0, &[]);
        }
        assert!(m.cells[0].v_rc.abs() < 1e-6);
    }

    #[test]
    fn bleeding_discharges_only_that_cell_and_heats_module() {
        let mut m = model();
        let (a, b) = (m.cells[0].soc, m.cells[1].soc);
        let t0 = m.module_temp_c[0];
        let bleed = [true, false, false, false, false, false, false, false];
        for _ in 0..600 {
            m.step(1.0, 0.0, &bleed);
        }
        assert!(m.cells[0].soc < a - 1e-4);
        assert!((m.cells[1].soc - b).abs() < 1e-6);
        assert!(m.module_temp_c[0] > t0);
        assert!((m.module_temp_c[1] - t0).abs() < 1e-9);
    }
}
