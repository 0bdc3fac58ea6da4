//! # soh-capacity
//!
//! Per-cell capacity from the charge moved between two rested OCV points,
//! and per-cell DC resistance from voltage jumps on current steps.
//!
//! ## Capacity
//!
//! The pack's net charge `∫I·dt` (Ah, signed, positive = charged, no
//! coulombic efficiency) is counted from start. When the pack has rested
//! (|I| below `rest_current_a` for `rest_time_s`) each cell's SOC is read
//! from its filtered voltage through the OCV table, where the curve is at
//! least `min_ocv_slope_mv_per_pct` steep (elsewhere OCV says little
//! about SOC). Such a point `(soc, net Ah)` is compared with the cell's
//! previous point: if the SOC moved by at least `min_delta_soc_pct`,
//!
//! ```text
//! measured capacity = |ΔAh| / (|ΔSOC| / 100)
//! capacity += capacity_gain · (measured − capacity)
//! ```
//!
//! and the new point becomes the reference. A measurement outside 50..150 %
//! of `rated_capacity_ah`, or one where the charge and the SOC moved in
//! opposite directions, is rejected with a warning (the reference still
//! moves on: one of the two OCV readings was bad). A smaller SOC swing
//! keeps the older reference so partial cycles add up to a measurable one.
//! One point per cell per rest period, taken when the rest is first
//! detected; a cell not ready then (stale module, missing or implausible
//! reading, voltage filter not yet averaged for `voltage_filter_tau_s`) is
//! taken when it becomes ready, if the rest still lasts.
//!
//! ## Resistance
//!
//! Between consecutive snapshots at most `max_step_dt_ms` apart whose
//! current differs by at least `step_current_a`, `R = ΔV_cell / ΔI` for
//! each cell fresh in both. Values that are not positive or exceed
//! `max_resistance_mohm` (noise, a relay bounce, a balancing switch) are
//! ignored; the rest feed `R += resistance_gain · (measured − R)`. This
//! is the resistance seen within one sample period of the step, so it
//! grows with the host's cycle time.
//!
//! `initial_resistance_mohm` is **required**: it is what the plugin reports
//! until the first current step, and a default (say 0.25 mΩ, right for a
//! 280 Ah LFP prismatic) would be off by an order of magnitude for small
//! cells.
//!
//! A cell voltage below half the OCV table's lowest value or above 1.5×
//! its highest is a sensor fault (a dead sensor reads 0 V) and is treated
//! like a missing reading.
//!
//! ## Time
//!
//! No clock: `dt` comes from `timestamp_ms`. 0 on the first step; 0 when
//! time goes backwards (host restart: rest detection starts over); at
//! most [`MAX_STEP_DT_S`] for integration, so a stall does not hold one
//! current sample over minutes.
//!
//! ## Config (JSON)
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `rated_capacity_ah` | required | rated cell capacity, Ah, > 0 |
//! | `initial_resistance_mohm` | required | resistance until measured, mΩ, 0 < x <= `max_resistance_mohm` |
//! | `rest_current_a` | 2.0 | rest means \|I\| below this, A, > 0 |
//! | `rest_time_s` | 600 | ... for at least this long, s, >= 0 |
//! | `min_ocv_slope_mv_per_pct` | 1.0 | use OCV only where dOCV/dSOC >= this, >= 0 |
//! | `voltage_filter_tau_s` | 10 | time constant of the voltage filter for OCV, s, >= 0 |
//! | `min_delta_soc_pct` | 20 | smallest SOC swing that measures capacity, 0 < x <= 100 |
//! | `capacity_gain` | 0.3 | capacity filter gain, 0 < x <= 1 |
//! | `step_current_a` | 20 | smallest current step for resistance, A, > 0 |
//! | `max_step_dt_ms` | 1000 | largest snapshot spacing for a step, ms, > 0 |
//! | `max_resistance_mohm` | 50 | larger measurements are ignored, mΩ, > 0 |
//! | `resistance_gain` | 0.2 | resistance filter gain, 0 < x <= 1 |
//! | `ocv` | required | `{"chemistry": "LFP", "soc_pct": [..], "ocv_v": [..]}` |

use bms_plugin_sdk::prelude::*;
use bms_plugin_sdk::state;
use serde::{Deserialize, Serialize};

/// Longest interval integrated in one step, in seconds. A longer gap means
/// the host or the data stalled; the lost charge only disturbs the
/// capacity measurement spanning it, which the plausibility window and
/// the filter absorb.
pub const MAX_STEP_DT_S: f64 = 10.0;

/// Capacity measurements outside this fraction of rated are rejected.
const PLAUSIBLE_CAPACITY: (f64, f64) = (0.5, 1.5);

/// Format version of the state blob.
const STATE_VERSION: u16 = 1;

/// The plugin's config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rated capacity of one cell in Ah: the start value and the SOH scale.
    pub rated_capacity_ah: f32,
    /// Resistance reported until the first current step, in mΩ.
    pub initial_resistance_mohm: f32,
    /// |I| below this counts as rest, in A.
    #[serde(default = "default_rest_current_a")]
    pub rest_current_a: f32,
    /// Rest must last this long before the terminal voltage is trusted as OCV.
    #[serde(default = "default_rest_time_s")]
    pub rest_time_s: f32,
    /// Minimum OCV slope for an OCV point, in mV per percent SOC.
    #[serde(default = "default_min_ocv_slope_mv_per_pct")]
    pub min_ocv_slope_mv_per_pct: f32,
    /// Time constant of the exponential filter on the cell voltage, in s.
    #[serde(default = "default_voltage_filter_tau_s")]
    pub voltage_filter_tau_s: f32,
    /// Smallest SOC swing between two OCV points that measures capacity;
    /// OCV errors weigh less on a larger swing.
    #[serde(default = "default_min_delta_soc_pct")]
    pub min_delta_soc_pct: f32,
    /// Gain of the capacity filter per measurement.
    #[serde(default = "default_capacity_gain")]
    pub capacity_gain: f32,
    /// Smallest current change between two snapshots that measures resistance.
    #[serde(default = "default_step_current_a")]
    pub step_current_a: f32,
    /// Largest snapshot spacing for a resistance step, in ms: over longer
    /// intervals diffusion adds to the ohmic jump.
    #[serde(default = "default_max_step_dt_ms")]
    pub max_step_dt_ms: u64,
    /// Resistance measurements above this are ignored, in mΩ.
    #[serde(default = "default_max_resistance_mohm")]
    pub max_resistance_mohm: f32,
    /// Gain of the resistance filter per measurement.
    #[serde(default = "default_resistance_gain")]
    pub resistance_gain: f32,
    /// OCV(SOC) curve of the cell chemistry.
    pub ocv: OcvTable,
}

fn default_rest_current_a() -> f32 {
    2.0
}
fn default_rest_time_s() -> f32 {
    600.0
}
fn default_min_ocv_slope_mv_per_pct() -> f32 {
    1.0
}
fn default_voltage_filter_tau_s() -> f32 {
    10.0
}
fn default_min_delta_soc_pct() -> f32 {
    20.0
}
fn default_capacity_gain() -> f32 {
    0.3
}
fn default_step_current_a() -> f32 {
    20.0
}
fn default_max_step_dt_ms() -> u64 {
    1000
}
fn default_max_resistance_mohm() -> f32 {
    50.0
}
fn default_resistance_gain() -> f32 {
    0.2
}

/// A rested OCV reading: the cell's SOC and the pack's net charge then.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct OcvPoint {
    soc_pct: f32,
    net_ah: f64,
}

/// What the plugin knows about one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cell {
    capacity_ah: f64,
    resistance_mohm: f64,
    /// Previous OCV point, if any.
    reference: Option<OcvPoint>,
    /// Filtered voltage in V; `None` while the cell's data is stale,
    /// missing or implausible (re-seeded when it returns).
    filtered_v: Option<f32>,
    /// How long the filter has run since it was (re-)seeded, in ms.
    filter_age_ms: u64,
    /// Last snapshot's voltage if it was fresh and plausible, for ΔV/ΔI.
    prev_v: Option<f32>,
    /// Not yet considered for an OCV point in the current rest period.
    point_pending: bool,
}

/// Everything that survives a hot swap or restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedState {
    last_timestamp_ms: Option<u64>,
    /// Start of the current low-current period, if any.
    rest_since_ms: Option<u64>,
    in_rest_period: bool,
    /// Net charge since start, Ah. f64: a small increment must not vanish
    /// into the rounding of a large total.
    net_ah: f64,
    /// Last snapshot's current if finite, for ΔV/ΔI.
    prev_current_a: Option<f32>,
    pack_soh_pct: f32,
    cells: Option<Vec<Cell>>,
}

impl SavedState {
    /// Refuse blobs that decode but could not have been written by us.
    fn validate(&self) -> Result<(), String> {
        let bad = |what: String| Err(format!("state blob is corrupt: {what}"));
        if !self.net_ah.is_finite() {
            return bad(format!("net_ah = {}", self.net_ah));
        }
        if !self.pack_soh_pct.is_finite() || self.pack_soh_pct < 0.0 {
            return bad(format!("pack_soh_pct = {}", self.pack_soh_pct));
        }
        if self.prev_current_a.is_some_and(|i| !i.is_finite()) {
            return bad("prev_current_a is not finite".into());
        }
        for (i, c) in self.cells.iter().flatten().enumerate() {
            if !(c.capacity_ah.is_finite() && c.capacity_ah > 0.0) {
                return bad(format!("cell {i} capacity_ah = {}", c.capacity_ah));
            }
            if !(c.resistance_mohm.is_finite() && c.resistance_mohm > 0.0) {
                return bad(format!("cell {i} resistance_mohm = {}", c.resistance_mohm));
            }
            if let Some(r) = c.reference {
                let soc_ok = r.soc_pct.is_finite() && (0.0..=100.0).contains(&r.soc_pct);
                if !soc_ok || !r.net_ah.is_finite() {
                    return bad(format!("cell {i} reference = {r:?}"));
                }
            }
            if c.filtered_v.is_some_and(|v| !v.is_finite())
                || c.prev_v.is_some_and(|v| !v.is_finite())
            {
                return bad(format!("cell {i} has a non-finite voltage"));
            }
        }
        Ok(())
    }
}

/// Capacity and resistance estimator.
#[derive(Debug, Clone)]
pub struct SohCapacity {
    rated_capacity_ah: f64,
    initial_resistance_mohm: f64,
    rest_current_a: f32,
    rest_time_s: f32,
    min_ocv_slope_mv_per_pct: f32,
    voltage_filter_tau_s: f32,
    min_delta_soc_pct: f32,
    capacity_gain: f64,
    step_current_a: f32,
    max_step_dt_ms: u64,
    max_resistance_mohm: f64,
    resistance_gain: f64,
    ocv: OcvTable,
    /// Cell voltages outside this window (V) are sensor faults.
    valid_v: (f32, f32),

    rest: RestDetector,
    last_timestamp_ms: Option<u64>,
    in_rest_period: bool,
    net_ah: f64,
    prev_current_a: Option<f32>,
    pack_soh_pct: f32,
    cells: Option<Vec<Cell>>,
    /// `cells` came from `restore_state` and has not met a snapshot yet.
    restored: bool,
}

fn check_positive(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be > 0, got {v}"))
    }
}

fn check_non_negative(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be >= 0, got {v}"))
    }
}

fn check_in_0_1(name: &str, v: f32) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(format!("{name} must be in (0, 1], got {v}"))
    }
}

/// Catch tables in the wrong units (SOC as a fraction, OCV in mV) and
/// return the plausible cell-voltage window.
fn check_ocv(ocv: &OcvTable) -> Result<(f32, f32), String> {
    let (lo, hi) = ocv.soc_range();
    if lo < 0.0 || hi > 100.0 {
        return Err(format!(
            "ocv.soc_pct must lie within 0..=100 (percent), got {lo}..={hi}"
        ));
    }
    if hi - lo < 50.0 {
        return Err(format!(
            "ocv.soc_pct covers only {lo}..={hi}; SOC is in percent (0..=100), not a fraction"
        ));
    }
    let (v_lo, v_hi) = (ocv.ocv_v(lo), ocv.ocv_v(hi));
    if v_lo <= 0.0 || v_hi > 10.0 {
        return Err(format!(
            "ocv.ocv_v must be cell voltages in volts, got {v_lo}..={v_hi}"
        ));
    }
    Ok((0.5 * v_lo, 1.5 * v_hi))
}

/// Time step derived from two timestamps.
struct Dt {
    /// Real elapsed time in s, for the voltage filter.
    elapsed_s: f64,
    /// Elapsed time capped at [`MAX_STEP_DT_S`], for integration.
    integrate_s: f64,
    /// Real elapsed time in ms; 0 on the first step and when time went
    /// backwards.
    elapsed_ms: u64,
}

impl Plugin for SohCapacity {
    type Config = Config;

    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }

    fn init(c: Config) -> Result<Self, String> {
        check_positive("rated_capacity_ah", c.rated_capacity_ah)?;
        check_positive("max_resistance_mohm", c.max_resistance_mohm)?;
        let r0 = c.initial_resistance_mohm;
        if !(r0.is_finite() && r0 > 0.0 && r0 <= c.max_resistance_mohm) {
            return Err(format!(
                "initial_resistance_mohm must be in (0, max_resistance_mohm = {}], got {r0}",
                c.max_resistance_mohm
            ));
        }
        check_positive("rest_current_a", c.rest_current_a)?;
        check_non_negative("rest_time_s", c.rest_time_s)?;
        check_non_negative("min_ocv_slope_mv_per_pct", c.min_ocv_slope_mv_per_pct)?;
        check_non_negative("voltage_filter_tau_s", c.voltage_filter_tau_s)?;
        let d = c.min_delta_soc_pct;
        if !(d.is_finite() && d > 0.0 && d <= 100.0) {
            return Err(format!("min_delta_soc_pct must be in (0, 100], got {d}"));
        }
        check_in_0_1("capacity_gain", c.capacity_gain)?;
        check_positive("step_current_a", c.step_current_a)?;
        if c.max_step_dt_ms == 0 {
            return Err("max_step_dt_ms must be > 0, got 0".into());
        }
        check_in_0_1("resistance_gain", c.resistance_gain)?;
        let valid_v = check_ocv(&c.ocv)?;
        Ok(Self {
            rated_capacity_ah: f64::from(c.rated_capacity_ah),
            initial_resistance_mohm: f64::from(r0),
            rest_current_a: c.rest_current_a,
            rest_time_s: c.rest_time_s,
            min_ocv_slope_mv_per_pct: c.min_ocv_slope_mv_per_pct,
            voltage_filter_tau_s: c.voltage_filter_tau_s,
            min_delta_soc_pct: c.min_delta_soc_pct,
            capacity_gain: f64::from(c.capacity_gain),
            step_current_a: c.step_current_a,
            max_step_dt_ms: c.max_step_dt_ms,
            max_resistance_mohm: f64::from(c.max_resistance_mohm),
            resistance_gain: f64::from(c.resistance_gain),
            ocv: c.ocv,
            valid_v,
            rest: RestDetector::new(c.rest_current_a, c.rest_time_s),
            last_timestamp_ms: None,
            in_rest_period: false,
            net_ah: 0.0,
            prev_current_a: None,
            pack_soh_pct: 100.0,
            cells: None,
            restored: false,
        })
    }

    fn save_state(&self) -> Vec<u8> {
        // The detector's thresholds come from the config, so only the start
        // of the low-current period is saved (see `restore_state`).
        let rest_since_ms = match self.last_timestamp_ms {
            Some(now) if self.rest.is_resting() => Some(now - self.rest.rest_duration_ms(now)),
            _ => None,
        };
        state::encode(
            STATE_VERSION,
            &SavedState {
                last_timestamp_ms: self.last_timestamp_ms,
                rest_since_ms,
                in_rest_period: self.in_rest_period,
                net_ah: self.net_ah,
                prev_current_a: self.prev_current_a,
                pack_soh_pct: self.pack_soh_pct,
                cells: self.cells.clone(),
            },
        )
    }

    fn restore_state(&mut self, blob: &[u8]) -> Result<(), String> {
        if blob.is_empty() {
            // Nothing saved yet: start fresh, as after `init`.
            return Ok(());
        }
        let saved: SavedState = state::decode(STATE_VERSION, blob)?;
        saved.validate()?;
        // Rebuild the detector from this config (the thresholds may have
        // changed) and replay the start of the saved low-current period.
        self.rest = self.new_rest_detector();
        if let Some(since) = saved.rest_since_ms {
            self.rest.update(since, 0.0);
        }
        self.last_timestamp_ms = saved.last_timestamp_ms;
        self.in_rest_period = saved.in_rest_period;
        self.net_ah = saved.net_ah;
        self.prev_current_a = saved.prev_current_a;
        self.pack_soh_pct = saved.pack_soh_pct;
        self.cells = saved.cells;
        self.restored = true;
        Ok(())
    }
}

impl SohCapacity {
    fn new_rest_detector(&self) -> RestDetector {
        RestDetector::new(self.rest_current_a, self.rest_time_s)
    }

    /// Advance the clock to `timestamp_ms` and return the step length.
    fn advance_clock(&mut self, timestamp_ms: u64) -> Dt {
        let dt_ms = match self.last_timestamp_ms {
            None => 0,
            Some(last) if timestamp_ms >= last => timestamp_ms - last,
            Some(last) => {
                bms_plugin_sdk::warn!(
                    "timestamp went backwards from {last} ms to {timestamp_ms} ms; \
                     not integrating this step and restarting rest detection"
                );
                self.rest = self.new_rest_detector();
                self.in_rest_period = false;
                0
            }
        };
        self.last_timestamp_ms = Some(timestamp_ms);
        let elapsed_s = dt_ms as f64 / 1000.0;
        Dt {
            elapsed_s,
            integrate_s: elapsed_s.min(MAX_STEP_DT_S),
            elapsed_ms: dt_ms,
        }
    }

    /// Cell `i`'s voltage if it is fresh and plausible.
    fn usable_voltage(&self, s: &PackSnapshot, i: usize) -> Option<f32> {
        let v = *s.cell_voltage_v.get(i)?;
        let ok = !s.cell_is_stale(i) && v.is_finite() && v > self.valid_v.0 && v < self.valid_v.1;
        ok.then_some(v)
    }

    fn initial_cells(&self, n: usize) -> Vec<Cell> {
        let cell = Cell {
            capacity_ah: self.rated_capacity_ah,
            resistance_mohm: self.initial_resistance_mohm,
            reference: None,
            filtered_v: None,
            filter_age_ms: 0,
            prev_v: None,
            point_pending: false,
        };
        vec![cell; n]
    }

    /// Feed one ΔV/ΔI measurement per cell fresh in both snapshots.
    fn update_resistance(&mut self, delta_current_a: f32, voltages: &[Option<f32>]) {
        let Some(cells) = self.cells.as_mut() else {
            return;
        };
        let (mut accepted, mut ignored) = (0usize, 0usize);
        for (c, v) in cells.iter_mut().zip(voltages) {
            let (Some(v), Some(prev)) = (*v, c.prev_v) else {
                continue;
            };
            let r_mohm = (f64::from(v) - f64::from(prev)) / f64::from(delta_current_a) * 1000.0;
            if r_mohm > 0.0 && r_mohm <= self.max_resistance_mohm {
                c.resistance_mohm += self.resistance_gain * (r_mohm - c.resistance_mohm);
                accepted += 1;
            } else {
                ignored += 1;
            }
        }
        bms_plugin_sdk::debug!(
            "current step of {delta_current_a:+.1} A: resistance updated for {accepted} cells, \
             {ignored} implausible values ignored"
        );
    }

    /// Take the OCV points of cells not yet considered in this rest period
    /// and measure capacity where the SOC swing is large enough.
    fn take_ocv_points(&mut self, s: &PackSnapshot) {
        let Some(mut cells) = self.cells.take() else {
            return;
        };
        let settled_ms = (f64::from(self.voltage_filter_tau_s) * 1000.0).ceil() as u64;
        let (lo, hi) = (
            PLAUSIBLE_CAPACITY.0 * self.rated_capacity_ah,
            PLAUSIBLE_CAPACITY.1 * self.rated_capacity_ah,
        );
        let (mut measured, mut first, mut small, mut flat) = (0usize, 0usize, 0usize, 0usize);
        let mut measured_range = (f64::INFINITY, f64::NEG_INFINITY);
        // (cell, measured Ah, ΔSOC %, ΔAh, why)
        let mut rejected: Vec<(usize, f64, f32, f64, &str)> = Vec::new();
        for (i, c) in cells.iter_mut().enumerate() {
            if !c.point_pending || s.cell_is_stale(i) || c.filter_age_ms < settled_ms {
                continue;
            }
            let Some(v) = c.filtered_v else { continue };
            c.point_pending = false;
            let soc_pct = self.ocv.soc_pct(v);
            if self.ocv.slope_mv_per_pct(soc_pct) < self.min_ocv_slope_mv_per_pct {
                flat += 1;
                continue;
            }
            let point = OcvPoint {
                soc_pct,
                net_ah: self.net_ah,
            };
            let Some(reference) = c.reference else {
                c.reference = Some(point);
                first += 1;
                continue;
            };
            let delta_soc_pct = soc_pct - reference.soc_pct;
            if delta_soc_pct.abs() < self.min_delta_soc_pct {
                // Keep the older reference: a larger swing measures better.
                small += 1;
                continue;
            }
            c.reference = Some(point);
            let delta_ah = self.net_ah - reference.net_ah;
            let capacity_ah = delta_ah.abs() / (f64::from(delta_soc_pct).abs() / 100.0);
            let same_direction = delta_ah * f64::from(delta_soc_pct) > 0.0;
            if !same_direction {
                let why = "charge and SOC moved in opposite directions";
                rejected.push((i, capacity_ah, delta_soc_pct, delta_ah, why));
                continue;
            }
            if capacity_ah < lo || capacity_ah > hi {
                let why = "outside 50..150 % of rated";
                rejected.push((i, capacity_ah, delta_soc_pct, delta_ah, why));
                continue;
            }
            c.capacity_ah += self.capacity_gain * (capacity_ah - c.capacity_ah);
            measured += 1;
            measured_range = (
                measured_range.0.min(capacity_ah),
                measured_range.1.max(capacity_ah),
            );
        }
        if measured > 0 {
            bms_plugin_sdk::info!(
                "capacity measured for {measured} cells between rested OCV points: \
                 {:.1}..{:.1} Ah",
                measured_range.0,
                measured_range.1
            );
        }
        if let Some(&(cell, capacity_ah, dsoc, dah, why)) = rejected.first() {
            bms_plugin_sdk::warn!(
                "rejected {} capacity measurements (plausible: {lo:.0}..{lo2:.0} Ah, charge and \
                 SOC moving the same way); e.g. cell {cell}: {capacity_ah:.1} Ah from {dsoc:+.1} % \
                 SOC and {dah:+.1} Ah: {why}",
                rejected.len(),
                lo2 = hi
            );
        }
        if first + small + flat > 0 {
            bms_plugin_sdk::debug!(
                "rested OCV points: {first} first references, {small} swings below \
                 min_delta_soc_pct, {flat} cells on a flat part of the curve"
            );
        }
        self.cells = Some(cells);
    }

    fn output(&self) -> SohOutput {
        let cells = self.cells.as_deref().unwrap_or_default();
        SohOutput {
            pack_soh_pct: self.pack_soh_pct,
            cell_capacity_ah: cells.iter().map(|c| c.capacity_ah as f32).collect(),
            cell_resistance_mohm: cells.iter().map(|c| c.resistance_mohm as f32).collect(),
        }
    }
}

impl SohEstimator for SohCapacity {
    fn step(&mut self, s: &PackSnapshot) -> Result<SohOutput, String> {
        let dt = self.advance_clock(s.timestamp_ms);
        // A non-finite current ends the rest period: we cannot tell it is low.
        let rested = self.rest.update(s.timestamp_ms, s.current_a);
        let current_a = s.current_a.is_finite().then_some(s.current_a);
        if let Some(i) = current_a {
            self.net_ah += f64::from(i) * dt.integrate_s / 3600.0;
        }
        let n = s.cell_count();
        if n == 0 {
            // No cell data this cycle: keep the estimates, report no cells.
            self.prev_current_a = None;
            return Ok(SohOutput {
                pack_soh_pct: self.pack_soh_pct,
                cell_capacity_ah: Vec::new(),
                cell_resistance_mohm: Vec::new(),
            });
        }

        match &self.cells {
            Some(cells) if cells.len() == n => {}
            other => {
                if let Some(old) = other {
                    if self.restored {
                        bms_plugin_sdk::warn!(
                            "restored state has {} cells but the snapshot has {n}; \
                             discarding it and starting from rated capacity",
                            old.len()
                        );
                    } else {
                        bms_plugin_sdk::warn!(
                            "cell count changed from {} to {n}; starting from rated capacity",
                            old.len()
                        );
                    }
                }
                self.cells = Some(self.initial_cells(n));
            }
        }
        self.restored = false;

        let voltages: Vec<Option<f32>> = (0..n).map(|i| self.usable_voltage(s, i)).collect();

        // Resistance from a current step since the previous snapshot.
        if let (Some(prev), Some(now)) = (self.prev_current_a, current_a) {
            let delta_a = now - prev;
            if dt.elapsed_ms > 0
                && dt.elapsed_ms <= self.max_step_dt_ms
                && delta_a.abs() >= self.step_current_a
            {
                self.update_resistance(delta_a, &voltages);
            }
        }
        self.prev_current_a = current_a;

        let alpha = if self.voltage_filter_tau_s > 0.0 {
            (1.0 - (-dt.elapsed_s / f64::from(self.voltage_filter_tau_s)).exp()) as f32
        } else {
            1.0
        };
        if let Some(cells) = self.cells.as_mut() {
            for (c, v) in cells.iter_mut().zip(&voltages) {
                c.prev_v = *v;
                match (*v, c.filtered_v) {
                    (Some(v), Some(f)) => {
                        c.filtered_v = Some(f + alpha * (v - f));
                        c.filter_age_ms = c.filter_age_ms.saturating_add(dt.elapsed_ms);
                    }
                    (Some(v), None) => {
                        c.filtered_v = Some(v);
                        c.filter_age_ms = 0;
                    }
                    // Stale, NaN or implausible: no voltage information.
                    (None, _) => {
                        c.filtered_v = None;
                        c.filter_age_ms = 0;
                    }
                }
            }
        }

        if rested {
            if !self.in_rest_period {
                self.in_rest_period = true;
                for c in self.cells.iter_mut().flatten() {
                    c.point_pending = true;
                }
            }
            self.take_ocv_points(s);
        } else {
            self.in_rest_period = false;
            for c in self.cells.iter_mut().flatten() {
                c.point_pending = false;
            }
        }

        let min_capacity_ah = self
            .cells
            .iter()
            .flatten()
            .map(|c| c.capacity_ah)
            .fold(f64::INFINITY, f64::min);
        if min_capacity_ah.is_finite() {
            self.pack_soh_pct = (100.0 * min_capacity_ah / self.rated_capacity_ah) as f32;
        }
        Ok(self.output())
    }
}

#[cfg(test)]
mod tests;

bms_plugin_sdk::export_soh_estimator!(SohCapacity);
