//! The simulated power conversion system, in the loop (`[sim.pcs]`).
//!
//! Owns: the PCS's setpoint (the EMS's when it gives one, else the
//! profile), its obedience to the limits the host's PCS link writes into
//! its registers (decoded with the PCS's own register map, not the host's),
//! its response delay and current ramp, what it does without fresh limits
//! (it stops, as a real PCS supervising its BMS does), and the energy and
//! time counters of the run.
//!
//! May not touch: the host's protection or limits in memory: only the
//! registers ([`crate::wiring::PcsRegisters`]) and the setpoint line.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::wiring::SimWiring;

/// One register of the PCS's map: `value = raw × scale` (raw as `i16`
/// when `signed`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcsRegister {
    pub address: u16,
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub signed: bool,
}

fn one() -> f64 {
    1.0
}

impl PcsRegister {
    fn decode(&self, raw: u16) -> f64 {
        let raw = if self.signed {
            f64::from(raw as i16)
        } else {
            f64::from(raw)
        };
        raw * self.scale
    }
}

/// What the PCS follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Follow {
    /// The EMS's setpoint while it gives one, else the profile.
    #[default]
    Ems,
    /// The profile only.
    Profile,
}

/// `[sim.pcs]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPcsConfig {
    #[serde(default)]
    pub follow: Follow,
    /// Time from a new target to the PCS acting on it, ms.
    #[serde(default = "default_response_ms")]
    pub response_ms: u64,
    /// Fastest current change, A/s.
    #[serde(default = "default_ramp")]
    pub ramp_a_per_s: f64,
    /// Limits not rewritten for this long stop the PCS, ms.
    #[serde(default = "default_limit_timeout_ms")]
    pub limit_timeout_ms: u64,
    /// Where the BMS writes its allowed charge and discharge current (A).
    pub max_charge_current: PcsRegister,
    pub max_discharge_current: PcsRegister,
}

fn default_response_ms() -> u64 {
    200
}
fn default_ramp() -> f64 {
    100.0
}
fn default_limit_timeout_ms() -> u64 {
    5_000
}

/// What the PCS did over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PcsStats {
    pub charged_wh: f64,
    pub discharged_wh: f64,
    /// Time the setpoint was above what the BMS allowed, s.
    pub limited_s: f64,
    /// Time the EMS gave the setpoint, s.
    pub ems_s: f64,
    /// Time without fresh limits (the PCS stopped), s.
    pub no_limits_s: f64,
    pub total_s: f64,
}

/// The PCS's state.
#[derive(Debug, Clone)]
pub struct SimPcs {
    cfg: SimPcsConfig,
    current_a: f64,
    /// Targets not yet acted on: (due at ms, A).
    pending: VecDeque<(u64, f64)>,
    target_a: f64,
    pub stats: PcsStats,
}

impl SimPcs {
    pub fn new(cfg: SimPcsConfig) -> Self {
        Self {
            cfg,
            current_a: 0.0,
            pending: VecDeque::new(),
            target_a: 0.0,
            stats: PcsStats::default(),
        }
    }

    /// The allowed (charge, discharge) current in the registers, if the
    /// BMS wrote them within `limit_timeout_ms`.
    fn limits(&self, now_ms: u64, wiring: &SimWiring) -> Option<(f64, f64)> {
        let regs = wiring.pcs_registers();
        let fresh = regs
            .written_ms()
            .is_some_and(|t| now_ms.saturating_sub(t) <= self.cfg.limit_timeout_ms);
        let read = |r: &PcsRegister| regs.read(r.address).map(|raw| r.decode(raw));
        let charge = read(&self.cfg.max_charge_current)?;
        let discharge = read(&self.cfg.max_discharge_current)?;
        fresh.then_some((charge.max(0.0), discharge.max(0.0)))
    }

    /// Advance `dt_ms` at `now_ms` and return the current it drives
    /// (positive: charge). `closed`: whether current can flow at all.
    pub fn step(
        &mut self,
        now_ms: u64,
        dt_ms: u64,
        profile_a: f64,
        wiring: &SimWiring,
        closed: bool,
        pack_v: f64,
    ) -> f64 {
        let dt_s = dt_ms as f64 / 1000.0;
        let ems = wiring
            .setpoint_a()
            .filter(|_| self.cfg.follow == Follow::Ems);
        let requested = ems.unwrap_or(profile_a);
        let target = match self.limits(now_ms, wiring) {
            Some((charge, discharge)) => {
                let t = requested.clamp(-discharge, charge);
                if (t - requested).abs() > 1e-6 {
                    self.stats.limited_s += dt_s;
                }
                t
            }
            None => {
                self.stats.no_limits_s += dt_s;
                0.0
            }
        };
        self.pending
            .push_back((now_ms + self.cfg.response_ms, target));
        while self.pending.front().is_some_and(|(due, _)| *due <= now_ms) {
            if let Some((_, t)) = self.pending.pop_front() {
                self.target_a = t;
            }
        }
        let max_step = self.cfg.ramp_a_per_s * dt_s;
        self.current_a += (self.target_a - self.current_a).clamp(-max_step, max_step);
        if !closed {
            self.current_a = 0.0;
        }
        let wh = pack_v * self.current_a * dt_s / 3600.0;
        if wh > 0.0 {
            self.stats.charged_wh += wh;
        } else {
            self.stats.discharged_wh -= wh;
        }
        self.stats.ems_s += if ems.is_some() { dt_s } else { 0.0 };
        self.stats.total_s += dt_s;
        self.current_a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimPcsConfig {
        SimPcsConfig {
            follow: Follow::Ems,
            response_ms: 200,
            ramp_a_per_s: 100.0,
            limit_timeout_ms: 1000,
            max_charge_current: PcsRegister {
                address: 100,
                scale: 0.1,
                signed: false,
            },
            max_discharge_current: PcsRegister {
                address: 101,
                scale: 0.1,
                signed: false,
            },
        }
    }

    /// Step 10 ms at a time, the BMS writing `limits` (raw) every step.
    fn run(
        pcs: &mut SimPcs,
        w: &SimWiring,
        (from_ms, to_ms): (u64, u64),
        limits: Option<(u16, u16)>,
        profile_a: f64,
    ) -> f64 {
        let mut i = 0.0;
        for t in (from_ms..to_ms).step_by(10) {
            if let Some((c, d)) = limits {
                w.pcs_registers().write(t, &[(100, c), (101, d)]);
            }
            i = pcs.step(t, 10, profile_a, w, true, 400.0);
        }
        i
    }

    #[test]
    fn follows_the_ems_within_the_written_limits_with_delay_and_ramp() {
        let w = SimWiring::default();
        let mut pcs = SimPcs::new(cfg());
        // No limits yet: the PCS stays at 0 whatever is asked.
        assert_eq!(run(&mut pcs, &w, (0, 1000), None, 150.0), 0.0);
        // The BMS allows 120 A charge, 80 A discharge (0.1 A per bit). The
        // profile asks 150 A: clamped to 120 A, acted on after the 200 ms
        // response, reached after a 1.2 s ramp at 100 A/s.
        let lim = Some((1200, 800));
        assert_eq!(
            run(&mut pcs, &w, (1000, 1150), lim, 150.0),
            0.0,
            "response delay"
        );
        let i = run(&mut pcs, &w, (1150, 1900), lim, 150.0);
        assert!(i > 0.0 && i < 120.0, "ramping: {i}");
        assert!((run(&mut pcs, &w, (1900, 2600), lim, 150.0) - 120.0).abs() < 1e-6);
        // The EMS asks to discharge 100 A: clamped to 80 A.
        w.set_setpoint_a(Some(-100.0));
        assert!((run(&mut pcs, &w, (2600, 5000), lim, 150.0) + 80.0).abs() < 1e-6);
        assert!(pcs.stats.limited_s > 2.0 && pcs.stats.ems_s > 2.0);
        assert!(pcs.stats.charged_wh > 0.0 && pcs.stats.discharged_wh > 0.0);
        // The BMS stops writing: after the timeout the PCS winds down to 0.
        assert_eq!(run(&mut pcs, &w, (5000, 8000), None, 150.0), 0.0);
        assert!(pcs.stats.no_limits_s > 1.0);
    }
}
