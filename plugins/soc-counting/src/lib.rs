//! # soc-counting
//!
//! Per-cell state of charge by ampere-hour counting, recalibrated from the
//! open-circuit voltage (OCV) when the pack has rested.
//!
//! ## Algorithm
//!
//! - **Start:** on the first step without restored state, every cell's SOC
//!   is read from the OCV table at its measured voltage. This assumes the
//!   host starts with the pack at rest (contactors just closed, no current);
//!   started under load, the ohmic drop biases the start value until the next
//!   rest recalibration. A cell that is stale or unreadable at start gets the
//!   mean of the others and is read from OCV as soon as it reports a valid
//!   voltage while the current is below `rest_current_a`.
//! - **Counting:** every step adds `I·dt` to every cell (series string: one
//!   current), less the cell's own bleed current (`cell_bleed_a`). Charge current is scaled by `coulombic_efficiency` because
//!   part of the charge put in is lost to side reactions; discharge is not.
//!   The current of a snapshot is taken to have flowed over the interval
//!   that ends at it. `dt` comes from `timestamp_ms` differences: 0 on the
//!   first step, 0 when time goes backwards (host restart; rest detection
//!   starts over), and at most [`MAX_STEP_DT_S`] so a stall of the host or
//!   a gap in the data does not integrate one stale current sample for
//!   minutes.
//! - **Recalibration:** when |I| has stayed below `rest_current_a` for
//!   `rest_time_s`, each cell is set to the SOC its OCV says, once per rest
//!   period, but only where the OCV curve is at least
//!   `min_ocv_slope_mv_per_pct` steep at that SOC: on a flat plateau (LFP
//!   between ~40 and ~60 %) a millivolt of noise is several percent of SOC,
//!   so counting is the better estimate there. The voltage looked up is
//!   exponentially filtered with `voltage_filter_tau_s` to average sensor
//!   noise. A stale module or a missing / implausible reading (NaN, a dead
//!   sensor's 0 V) resets that cell's filter; a cell is recalibrated only
//!   once its filter has averaged fresh, valid samples for at least
//!   `voltage_filter_tau_s`, so old or frozen readings never set its SOC. A
//!   cell that was not ready when rest was detected is recalibrated when it
//!   becomes ready, if the same rest still lasts.
//! - **Pack SOC:** `100·min / (min + (100 − max))` over the cell SOCs: the
//!   charge the pack can still deliver over the total it can use, so the
//!   pack reads empty when the weakest cell is empty and full when the
//!   strongest is full. If the weakest is empty and the strongest full at
//!   once (0/0) the pack can be neither charged nor discharged and reads 0.
//!
//! A cell voltage below half the OCV table's lowest value or above 1.5×
//! its highest is a sensor fault (a dead sensor reads 0 V) and is treated
//! like a missing reading.
//!
//! No temperature compensation; one rated capacity for every cell.
//!
//! ## Config (JSON)
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `capacity_ah` | required | rated capacity of one cell, Ah, > 0 |
//! | `coulombic_efficiency` | 0.998 | applied to charge current, 0 < x <= 1 |
//! | `rest_current_a` | 2.0 | rest means \|I\| below this, A, > 0 |
//! | `rest_time_s` | 600 | ... for at least this long, s, >= 0 |
//! | `min_ocv_slope_mv_per_pct` | 1.0 | recalibrate only where dOCV/dSOC >= this, >= 0 |
//! | `voltage_filter_tau_s` | 10 | time constant of the voltage filter, s, >= 0 (0 = off) |
//! | `ocv` | required | `{"chemistry": "LFP", "soc_pct": [..], "ocv_v": [..]}` |

use bms_plugin_sdk::prelude::*;
use bms_plugin_sdk::state;
use serde::{Deserialize, Serialize};

/// Longest interval integrated in one step, in seconds. The host runs at a
/// fixed cycle well below this; a longer gap means the host or the data
/// stalled, and holding one current sample over the whole gap would
/// integrate garbage. The gap's remaining charge is lost to the count and
/// corrected at the next rest recalibration.
pub const MAX_STEP_DT_S: f64 = 10.0;

/// Format version of the state blob.
const STATE_VERSION: u16 = 1;

/// The plugin's config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rated capacity of one cell in Ah: the scale from Ah to percent.
    pub capacity_ah: f32,
    /// Fraction of the charge current that ends up stored.
    #[serde(default = "default_coulombic_efficiency")]
    pub coulombic_efficiency: f32,
    /// |I| below this counts as rest, in A.
    #[serde(default = "default_rest_current_a")]
    pub rest_current_a: f32,
    /// Rest must last this long before the terminal voltage is trusted as OCV.
    #[serde(default = "default_rest_time_s")]
    pub rest_time_s: f32,
    /// Minimum OCV slope for a recalibration, in mV per percent SOC.
    #[serde(default = "default_min_ocv_slope_mv_per_pct")]
    pub min_ocv_slope_mv_per_pct: f32,
    /// Time constant of the exponential filter on the cell voltage, in s.
    #[serde(default = "default_voltage_filter_tau_s")]
    pub voltage_filter_tau_s: f32,
    /// OCV(SOC) curve of the cell chemistry.
    pub ocv: OcvTable,
}

fn default_coulombic_efficiency() -> f32 {
    0.998
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

/// What the plugin knows about one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cell {
    /// SOC in percent. f64 because one step's increment can be far below
    /// an f32 ulp at 50 % (1 A for 100 ms on 280 Ah is 1e-5 %) and rounding
    /// would bias the count.
    soc_pct: f64,
    /// Filtered voltage in V; `None` while the cell's module is stale or its
    /// reading is missing or implausible (re-seeded when data returns, so
    /// old data never reaches a recalibration).
    filtered_v: Option<f32>,
    /// How long the filter has run since it was (re-)seeded, in ms.
    filter_age_ms: u64,
    /// SOC is a placeholder: no valid voltage was available at start.
    ocv_init_pending: bool,
    /// Not yet considered for recalibration in the current rest period.
    recal_pending: bool,
}

/// Everything that survives a hot swap or restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedState {
    last_timestamp_ms: Option<u64>,
    /// Start of the current low-current period, if any.
    rest_since_ms: Option<u64>,
    /// The pack is in a rest period whose recalibration has happened.
    in_rest_period: bool,
    pack_soc_pct: f32,
    /// `None` before the first step with cells.
    cells: Option<Vec<Cell>>,
}

impl SavedState {
    /// Refuse blobs that decode but could not have been written by us.
    fn validate(&self) -> Result<(), String> {
        if !(self.pack_soc_pct.is_finite() && (0.0..=100.0).contains(&self.pack_soc_pct)) {
            return Err(format!(
                "state blob is corrupt: pack_soc_pct = {}",
                self.pack_soc_pct
            ));
        }
        for (i, c) in self.cells.iter().flatten().enumerate() {
            if !(c.soc_pct.is_finite() && (0.0..=100.0).contains(&c.soc_pct)) {
                return Err(format!(
                    "state blob is corrupt: cell {i} soc_pct = {}",
                    c.soc_pct
                ));
            }
            if c.filtered_v.is_some_and(|v| !v.is_finite()) {
                return Err(format!(
                    "state blob is corrupt: cell {i} filtered_v is not finite"
                ));
            }
        }
        Ok(())
    }
}

/// SOC by ampere-hour counting with OCV recalibration after rest.
#[derive(Debug, Clone)]
pub struct SocCounting {
    capacity_ah: f64,
    coulombic_efficiency: f64,
    rest_current_a: f32,
    rest_time_s: f32,
    min_ocv_slope_mv_per_pct: f32,
    voltage_filter_tau_s: f32,
    ocv: OcvTable,
    /// Cell voltages outside this window (V) are sensor faults, not OCV: a
    /// dead sensor reading 0 V must not recalibrate a cell to 0 %.
    valid_v: (f32, f32),

    rest: RestDetector,
    last_timestamp_ms: Option<u64>,
    in_rest_period: bool,
    pack_soc_pct: f32,
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
    /// Real elapsed time, for the voltage filter (a long gap should let
    /// the filter follow the new value).
    elapsed_s: f64,
    /// Elapsed time capped at [`MAX_STEP_DT_S`], for integration.
    integrate_s: f64,
    elapsed_ms: u64,
}

impl Plugin for SocCounting {
    type Config = Config;

    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }

    fn init(c: Config) -> Result<Self, String> {
        check_positive("capacity_ah", c.capacity_ah)?;
        let eta = c.coulombic_efficiency;
        if eta.is_nan() || eta <= 0.0 || eta > 1.0 {
            return Err(format!(
                "coulombic_efficiency must be in (0, 1], got {}",
                c.coulombic_efficiency
            ));
        }
        check_positive("rest_current_a", c.rest_current_a)?;
        check_non_negative("rest_time_s", c.rest_time_s)?;
        check_non_negative("min_ocv_slope_mv_per_pct", c.min_ocv_slope_mv_per_pct)?;
        check_non_negative("voltage_filter_tau_s", c.voltage_filter_tau_s)?;
        let valid_v = check_ocv(&c.ocv)?;
        Ok(Self {
            capacity_ah: f64::from(c.capacity_ah),
            coulombic_efficiency: f64::from(c.coulombic_efficiency),
            rest_current_a: c.rest_current_a,
            rest_time_s: c.rest_time_s,
            min_ocv_slope_mv_per_pct: c.min_ocv_slope_mv_per_pct,
            voltage_filter_tau_s: c.voltage_filter_tau_s,
            ocv: c.ocv,
            valid_v,
            rest: RestDetector::new(c.rest_current_a, c.rest_time_s),
            last_timestamp_ms: None,
            in_rest_period: false,
            pack_soc_pct: 0.0,
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
                pack_soc_pct: self.pack_soc_pct,
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
        self.pack_soc_pct = saved.pack_soc_pct;
        self.cells = saved.cells;
        self.restored = true;
        Ok(())
    }
}

impl SocCounting {
    fn new_rest_detector(&self) -> RestDetector {
        RestDetector::new(self.rest_current_a, self.rest_time_s)
    }

    /// Advance the clock to `timestamp_ms` and return the step length.
    fn advance_clock(&mut self, timestamp_ms: u64) -> Dt {
        let dt_ms = match self.last_timestamp_ms {
            None => 0,
            Some(last) if timestamp_ms >= last => timestamp_ms - last,
            Some(last) => {
                // Host restart with restored state, or a clock glitch: the
                // saved rest start is meaningless on the new time base.
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

    /// Fresh cell states read from OCV (see the crate docs).
    fn initial_cells(&self, s: &PackSnapshot) -> Vec<Cell> {
        let mut cells: Vec<Cell> = (0..s.cell_count())
            .map(|i| {
                let v = self.usable_voltage(s, i);
                Cell {
                    soc_pct: v.map_or(0.0, |v| f64::from(self.ocv.soc_pct(v))),
                    filtered_v: v,
                    filter_age_ms: 0,
                    ocv_init_pending: v.is_none(),
                    recal_pending: false,
                }
            })
            .collect();
        let known: Vec<f64> = cells
            .iter()
            .filter(|c| !c.ocv_init_pending)
            .map(|c| c.soc_pct)
            .collect();
        let placeholder = if known.is_empty() {
            50.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        for c in cells.iter_mut().filter(|c| c.ocv_init_pending) {
            c.soc_pct = placeholder;
        }
        let pending = cells.len() - known.len();
        if pending > 0 {
            bms_plugin_sdk::warn!(
                "{pending} of {} cells have no valid voltage at start; using {placeholder:.1} % \
                 until they report one at low current",
                cells.len()
            );
        }
        cells
    }

    /// SOC increment in percent for `current_a` over `dt_s`.
    fn delta_soc_pct(&self, current_a: f32, dt_s: f64) -> f64 {
        let i = f64::from(current_a);
        let stored_a = if i > 0.0 {
            i * self.coulombic_efficiency
        } else {
            i
        };
        stored_a * dt_s / 3600.0 / self.capacity_ah * 100.0
    }

    /// Recalibrate the cells not yet considered in this rest period, and
    /// log what changed.
    fn recalibrate(&mut self, s: &PackSnapshot) {
        let Some(mut cells) = self.cells.take() else {
            return;
        };
        let mut recalibrated = 0usize;
        let mut flat = 0usize;
        let mut largest: Option<(usize, f64)> = None;
        // The filter must have averaged for a time constant.
        let settled_ms = (f64::from(self.voltage_filter_tau_s) * 1000.0).ceil() as u64;
        for (i, c) in cells.iter_mut().enumerate() {
            if !c.recal_pending || s.cell_is_stale(i) || c.filter_age_ms < settled_ms {
                continue;
            }
            let Some(v) = c.filtered_v else { continue };
            c.recal_pending = false;
            let soc_ocv = self.ocv.soc_pct(v);
            // A placeholder is worse than any OCV reading, flat or not.
            if !c.ocv_init_pending
                && self.ocv.slope_mv_per_pct(soc_ocv) < self.min_ocv_slope_mv_per_pct
            {
                flat += 1;
                continue;
            }
            let correction = f64::from(soc_ocv) - c.soc_pct;
            c.soc_pct = f64::from(soc_ocv);
            c.ocv_init_pending = false;
            recalibrated += 1;
            if largest.is_none_or(|(_, l)| correction.abs() > l.abs()) {
                largest = Some((i, correction));
            }
        }
        if let Some((cell, correction)) = largest {
            bms_plugin_sdk::info!(
                "OCV recalibration after rest: {recalibrated} of {} cells, largest correction \
                 {correction:+.2} % (cell {cell}); {flat} cells on a flat part of the curve kept",
                cells.len()
            );
        } else if flat > 0 {
            bms_plugin_sdk::debug!(
                "rest detected but {flat} cells are on a flat part of the OCV curve; not recalibrated"
            );
        }
        self.cells = Some(cells);
    }
}

/// Usable-pack SOC from the weakest and strongest cell (see crate docs).
fn pack_soc_pct(cells: &[Cell]) -> f64 {
    let min = cells
        .iter()
        .map(|c| c.soc_pct)
        .fold(f64::INFINITY, f64::min);
    let max = cells
        .iter()
        .map(|c| c.soc_pct)
        .fold(f64::NEG_INFINITY, f64::max);
    let usable = min + (100.0 - max);
    if usable.is_nan() || usable <= 0.0 {
        // Empty list, or weakest empty and strongest full at once.
        return 0.0;
    }
    (100.0 * min / usable).clamp(0.0, 100.0)
}

impl SocEstimator for SocCounting {
    fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
        let dt = self.advance_clock(s.timestamp_ms);
        // A non-finite current ends the rest period: we cannot tell it is low.
        let rested = self.rest.update(s.timestamp_ms, s.current_a);
        let current_a = s.current_a.is_finite().then_some(s.current_a);
        let n = s.cell_count();
        if n == 0 {
            // No cell data this cycle: keep the estimate, report no cells.
            return Ok(SocOutput {
                cell_soc_pct: Vec::new(),
                pack_soc_pct: self.pack_soc_pct,
            });
        }

        match &self.cells {
            Some(cells) if cells.len() == n => {
                if current_a.is_some() {
                    // Each cell carries the string current minus what its
                    // own bleed resistor draws.
                    let d: Vec<f64> = (0..n)
                        .map(|k| self.delta_soc_pct(s.cell_current_a(k), dt.integrate_s))
                        .collect();
                    if let Some(cells) = self.cells.as_mut() {
                        for (c, d) in cells.iter_mut().zip(d) {
                            c.soc_pct = (c.soc_pct + d).clamp(0.0, 100.0);
                        }
                    }
                }
            }
            other => {
                if let Some(old) = other {
                    if self.restored {
                        bms_plugin_sdk::warn!(
                            "restored state has {} cells but the snapshot has {n}; \
                             discarding it and re-initialising from OCV",
                            old.len()
                        );
                    } else {
                        bms_plugin_sdk::warn!(
                            "cell count changed from {} to {n}; re-initialising from OCV",
                            old.len()
                        );
                    }
                }
                self.cells = Some(self.initial_cells(s));
            }
        }
        self.restored = false;

        // Voltage filter: alpha from the real elapsed time.
        let alpha = if self.voltage_filter_tau_s > 0.0 {
            (1.0 - (-dt.elapsed_s / f64::from(self.voltage_filter_tau_s)).exp()) as f32
        } else {
            1.0
        };
        let low_current = current_a.is_some_and(|i| i.abs() < self.rest_current_a);
        let voltages: Vec<Option<f32>> = (0..n).map(|i| self.usable_voltage(s, i)).collect();
        if let Some(cells) = self.cells.as_mut() {
            for (c, v) in cells.iter_mut().zip(&voltages) {
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
                if c.ocv_init_pending && low_current {
                    // The raw sample: the filter may still hold loaded voltages.
                    if let Some(v) = *v {
                        c.soc_pct = f64::from(self.ocv.soc_pct(v));
                        c.ocv_init_pending = false;
                    }
                }
            }
        }

        if rested {
            if !self.in_rest_period {
                self.in_rest_period = true;
                for c in self.cells.iter_mut().flatten() {
                    c.recal_pending = true;
                }
            }
            self.recalibrate(s);
        } else {
            self.in_rest_period = false;
            for c in self.cells.iter_mut().flatten() {
                c.recal_pending = false;
            }
        }

        let cells = self.cells.as_deref().unwrap_or_default();
        self.pack_soc_pct = pack_soc_pct(cells) as f32;
        Ok(SocOutput {
            cell_soc_pct: cells.iter().map(|c| c.soc_pct as f32).collect(),
            pack_soc_pct: self.pack_soc_pct,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "export")]
bms_plugin_sdk::export_soc_estimator!(SocCounting);
