//! Passive (resistive) cell balancing.
//!
//! Every cycle the plugin finds the lowest eligible cell and bleeds the
//! cells that sit more than `start_threshold` above it. A bleeding cell
//! keeps bleeding until it is within `stop_threshold` of the minimum
//! (hysteresis), so a cell does not toggle on measurement noise.
//!
//! # Modes
//!
//! - `voltage` compares `cell_voltage_v` (thresholds in mV). It needs no
//!   SOC estimator, but under current a terminal voltage includes the IR
//!   drop: while charging, a cell with a higher internal resistance reads
//!   higher and would be bled although it holds no more charge. Use wider
//!   thresholds when `charge` is enabled, or enable only `rest`, or use
//!   `soc` mode. On flat OCV curves (LFP plateau) voltage says little
//!   about SOC anyway.
//! - `soc` compares the per-cell SOC of this cycle's estimator (thresholds
//!   in %). It is only as good as that estimator.
//!
//! # Eligibility
//!
//! A cell takes part (may bleed and counts for the minimum) only if its
//! module is not stale, its voltage is finite and above
//! `min_cell_voltage_v`, and, in `soc` mode, its SOC is finite. Excluding
//! low cells from the minimum too is deliberate: such a reading is a
//! failing sensor or a cell that needs a technician, and draining every
//! healthy cell down to it would only waste energy.
//!
//! # Bleeder cap
//!
//! With `max_bleeders` set and more candidates than slots, candidates are
//! ranked by their distance above the minimum; a cell that is already
//! bleeding gets a bonus equal to the hysteresis band (start − stop). So an
//! incumbent keeps its slot while it is still among the highest, and a
//! waiting cell takes the slot over only when it is more than the band
//! higher. Without the bonus, two nearly equal cells would swap every cycle.
//! Ties go to the incumbent, then to the lower cell index.
//!
//! Outside an enabled pack state (and when the current is not a finite
//! number) nothing bleeds and the hysteresis memory is cleared.

use bms_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// Format version of the saved state blob.
const STATE_VERSION: u16 = 1;

/// What the thresholds compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cell terminal voltage, thresholds in mV.
    Voltage,
    /// Cell SOC from the estimator, thresholds in %.
    Soc,
}

/// The plugin's config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `"voltage"` or `"soc"`; required, because it decides which
    /// thresholds apply.
    pub mode: Mode,
    /// Voltage mode: start bleeding above min + this, in mV.
    #[serde(default)]
    pub start_threshold_mv: Option<f32>,
    /// Voltage mode: stop bleeding at or below min + this, in mV.
    #[serde(default)]
    pub stop_threshold_mv: Option<f32>,
    /// SOC mode: start bleeding above min + this, in %.
    #[serde(default)]
    pub start_threshold_pct: Option<f32>,
    /// SOC mode: stop bleeding at or below min + this, in %.
    #[serde(default)]
    pub stop_threshold_pct: Option<f32>,
    /// Most cells bleeding at once (board heat, bleed supply); none = no cap.
    #[serde(default)]
    pub max_bleeders: Option<u32>,
    /// Pack states in which balancing runs.
    #[serde(default = "default_enabled_states")]
    pub enabled_states: Vec<PackState>,
    /// |current| at or below this counts as rest, in A.
    #[serde(default = "default_rest_current_a")]
    pub rest_current_a: f32,
    /// Never bleed a cell at or below this voltage, in V.
    #[serde(default = "default_min_cell_voltage_v")]
    pub min_cell_voltage_v: f32,
}

fn default_enabled_states() -> Vec<PackState> {
    vec![PackState::Charge, PackState::Rest]
}

fn default_rest_current_a() -> f32 {
    2.0
}

fn default_min_cell_voltage_v() -> f32 {
    3.0
}

/// What survives a hot swap: the bleeding set, so hysteresis continues.
#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    cell_count: usize,
    /// Indices of bleeding cells, ascending.
    bleeding: Vec<usize>,
}

/// Threshold-with-hysteresis passive balancer.
#[derive(Debug)]
pub struct PassiveBalancer {
    mode: Mode,
    /// Thresholds in the mode's config unit (mV or %).
    start: f64,
    stop: f64,
    max_bleeders: Option<usize>,
    enabled_states: Vec<PackState>,
    rest_current_a: f32,
    min_cell_voltage_v: f32,
    /// Last output; empty before the first step (or for an empty pack).
    bleeding: Vec<bool>,
    /// Whether a SOC list length mismatch was already reported, so the log
    /// is not flooded every cycle.
    soc_len_warned: bool,
}

/// Check one start/stop pair; names the fields in errors.
fn thresholds(
    start: Option<f32>,
    stop: Option<f32>,
    start_name: &str,
    stop_name: &str,
    mode: &str,
) -> Result<(f64, f64), String> {
    let start = start.ok_or_else(|| format!("{start_name} is required when mode = \"{mode}\""))?;
    let stop = stop.ok_or_else(|| format!("{stop_name} is required when mode = \"{mode}\""))?;
    if !start.is_finite() {
        return Err(format!(
            "{start_name} must be a finite number (got {start})"
        ));
    }
    if !stop.is_finite() || stop < 0.0 {
        return Err(format!("{stop_name} must be >= 0 (got {stop})"));
    }
    if start <= stop {
        return Err(format!(
            "{start_name} must be > {stop_name} (got {start} <= {stop})"
        ));
    }
    Ok((f64::from(start), f64::from(stop)))
}

impl Plugin for PassiveBalancer {
    type Config = Config;

    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }

    fn init(c: Config) -> Result<Self, String> {
        let (start, stop) = match c.mode {
            Mode::Voltage => thresholds(
                c.start_threshold_mv,
                c.stop_threshold_mv,
                "start_threshold_mv",
                "stop_threshold_mv",
                "voltage",
            )?,
            Mode::Soc => {
                let (start, stop) = thresholds(
                    c.start_threshold_pct,
                    c.stop_threshold_pct,
                    "start_threshold_pct",
                    "stop_threshold_pct",
                    "soc",
                )?;
                if start > 100.0 {
                    return Err(format!("start_threshold_pct must be <= 100 (got {start})"));
                }
                (start, stop)
            }
        };
        if c.max_bleeders == Some(0) {
            return Err("max_bleeders must be >= 1 (got 0); omit it for no cap".into());
        }
        if c.enabled_states.is_empty() {
            return Err(
                "enabled_states must name at least one of \"charge\", \"rest\", \"discharge\" \
                 (to turn balancing off, remove the plugin)"
                    .into(),
            );
        }
        if !c.rest_current_a.is_finite() || c.rest_current_a < 0.0 {
            return Err(format!(
                "rest_current_a must be >= 0 (got {})",
                c.rest_current_a
            ));
        }
        if !c.min_cell_voltage_v.is_finite() || c.min_cell_voltage_v < 0.0 {
            return Err(format!(
                "min_cell_voltage_v must be >= 0 (got {})",
                c.min_cell_voltage_v
            ));
        }
        Ok(Self {
            mode: c.mode,
            start,
            stop,
            max_bleeders: c.max_bleeders.map(|m| m as usize),
            enabled_states: c.enabled_states,
            rest_current_a: c.rest_current_a,
            min_cell_voltage_v: c.min_cell_voltage_v,
            bleeding: Vec::new(),
            soc_len_warned: false,
        })
    }

    fn save_state(&self) -> Vec<u8> {
        let bleeding = (0..self.bleeding.len())
            .filter(|&i| self.bleeding[i])
            .collect();
        bms_plugin_sdk::state::encode(
            STATE_VERSION,
            &SavedState {
                cell_count: self.bleeding.len(),
                bleeding,
            },
        )
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        // A host with nothing saved yet hands over an empty blob.
        if state.is_empty() {
            return Ok(());
        }
        let saved: SavedState = bms_plugin_sdk::state::decode(STATE_VERSION, state)?;
        let mut bleeding = vec![false; saved.cell_count];
        for &i in &saved.bleeding {
            let slot = bleeding.get_mut(i).ok_or_else(|| {
                format!(
                    "state blob is corrupt: bleeding cell index {i} is outside cell_count {}",
                    saved.cell_count
                )
            })?;
            *slot = true;
        }
        self.bleeding = bleeding;
        Ok(())
    }
}

impl PassiveBalancer {
    /// Scale from the compared value's unit to the threshold unit.
    fn scale(&self) -> f64 {
        match self.mode {
            Mode::Voltage => 1000.0, // V -> mV
            Mode::Soc => 1.0,
        }
    }

    /// The value cell `i` is compared by, or `None` if it may not take part.
    fn eligible_value(&self, input: &BalanceInput, i: usize) -> Option<f64> {
        let snap = &input.snapshot;
        if snap.cell_is_stale(i) {
            return None;
        }
        let v = *snap.cell_voltage_v.get(i)?;
        if !v.is_finite() || v <= self.min_cell_voltage_v {
            return None;
        }
        let value = match self.mode {
            Mode::Voltage => v,
            Mode::Soc => *input.cell_soc_pct.get(i)?,
        };
        value.is_finite().then_some(f64::from(value))
    }

    /// The bleed request for this cycle; always one entry per cell.
    /// `self.bleeding` must already have one entry per cell.
    fn decide(&self, input: &BalanceInput) -> Vec<bool> {
        let snap = &input.snapshot;
        let n = snap.cell_count();
        let mut out = vec![false; n];

        // NaN current would classify as rest; an unknown state must not balance.
        if !snap.current_a.is_finite() {
            return out;
        }
        let state = PackState::classify(snap.current_a, self.rest_current_a);
        if !self.enabled_states.contains(&state) {
            return out;
        }

        let values: Vec<Option<f64>> = (0..n).map(|i| self.eligible_value(input, i)).collect();
        let Some(min) = values.iter().flatten().copied().reduce(f64::min) else {
            return out;
        };

        let band = self.start - self.stop;
        // (cell, rank key in threshold units, already bleeding)
        let mut candidates: Vec<(usize, f64, bool)> = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let Some(value) = value else { continue };
            let was_bleeding = self.bleeding[i];
            let above = (value - min) * self.scale();
            let threshold = if was_bleeding { self.stop } else { self.start };
            if above > threshold {
                let key = if was_bleeding { above + band } else { above };
                candidates.push((i, key, was_bleeding));
            }
        }

        if let Some(cap) = self.max_bleeders {
            if candidates.len() > cap {
                candidates
                    .sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
                candidates.truncate(cap);
            }
        }
        for (i, _, _) in candidates {
            out[i] = true;
        }
        out
    }
}

impl Balancer for PassiveBalancer {
    fn step(&mut self, input: &BalanceInput) -> Result<BalanceOutput, String> {
        let n = input.snapshot.cell_count();
        if self.bleeding.len() != n {
            if !self.bleeding.is_empty() {
                bms_plugin_sdk::warn!(
                    "discarding the remembered bleed set: it was for {} cells, the pack now has {n}",
                    self.bleeding.len()
                );
            }
            self.bleeding = vec![false; n];
        }

        if self.mode == Mode::Soc && input.cell_soc_pct.len() != n {
            if !self.soc_len_warned {
                bms_plugin_sdk::warn!(
                    "cell_soc_pct has {} entries for {n} cells; cells without a SOC are not balanced",
                    input.cell_soc_pct.len()
                );
                self.soc_len_warned = true;
            }
        } else {
            self.soc_len_warned = false;
        }

        let bleed = self.decide(input);
        if bleed != self.bleeding {
            let on: Vec<usize> = (0..n).filter(|&i| bleed[i]).collect();
            bms_plugin_sdk::debug!("bleeding cells now {on:?}");
        }
        self.bleeding.clone_from(&bleed);
        Ok(BalanceOutput { bleed })
    }
}

bms_plugin_sdk::export_balancer!(PassiveBalancer);

#[cfg(test)]
mod tests {
    use super::*;
    use bms_plugin_sdk::harness::Harness;
    use bms_plugin_sdk::log::Level;

    const VOLTAGE: &str =
        r#"{"mode": "voltage", "start_threshold_mv": 10, "stop_threshold_mv": 5}"#;

    /// 8 cells, 4 per module, all at 3.300 V / 50 %, charging at `current_a`.
    fn input(current_a: f32) -> BalanceInput {
        BalanceInput {
            snapshot: PackSnapshot::uniform(0, 8, 4, 3.300, 25.0, current_a),
            cell_soc_pct: vec![50.0; 8],
        }
    }

    /// `input` with cell voltages raised by the given mV offsets.
    fn with_mv(current_a: f32, offsets_mv: &[(usize, f32)]) -> BalanceInput {
        let mut i = input(current_a);
        for &(cell, mv) in offsets_mv {
            i.snapshot.cell_voltage_v[cell] = 3.300 + mv / 1000.0;
        }
        i
    }

    fn bleeding(h: &mut Harness<PassiveBalancer>, i: &BalanceInput) -> Vec<usize> {
        let out = h.step(i).unwrap();
        assert_eq!(out.bleed.len(), i.snapshot.cell_count());
        (0..out.bleed.len()).filter(|&c| out.bleed[c]).collect()
    }

    fn voltage(extra: &str) -> Harness<PassiveBalancer> {
        Harness::new(&format!(
            r#"{{"mode": "voltage", "start_threshold_mv": 10, "stop_threshold_mv": 5{extra}}}"#
        ))
        .unwrap()
    }

    fn init_err(json: &str) -> String {
        match Harness::<PassiveBalancer>::new(json) {
            Ok(_) => panic!("config was accepted: {json}"),
            Err(e) => e,
        }
    }

    #[test]
    fn info_comes_from_cargo_toml() {
        let i = PassiveBalancer::info();
        assert_eq!(i.name, "balance-passive");
        assert!(!i.description.is_empty());
    }

    #[test]
    fn bleeds_only_cells_above_min_plus_start() {
        let mut h = voltage("");
        let i = with_mv(10.0, &[(2, 20.0), (5, 8.0), (7, 12.0)]);
        assert_eq!(bleeding(&mut h, &i), vec![2, 7]);
        // A uniform pack bleeds nothing.
        assert!(bleeding(&mut h, &input(10.0)).is_empty());
    }

    #[test]
    fn minimum_is_the_lowest_eligible_cell() {
        let mut h = voltage("");
        // Everything is relative to the lowest cell, here 3.292 V: cells at
        // 3.300 are +8 mV, cell 6 +7.5 mV, cell 4 +11 mV.
        let mut i = with_mv(10.0, &[(0, -8.0), (4, 3.0)]);
        i.snapshot.cell_voltage_v[6] = 3.2995;
        assert_eq!(bleeding(&mut h, &i), vec![4]);
    }

    #[test]
    fn hysteresis_keeps_a_cell_on_until_below_stop() {
        let mut h = voltage("");
        assert_eq!(bleeding(&mut h, &with_mv(10.0, &[(1, 20.0)])), vec![1]);
        // Between stop (5) and start (10): stays on; a fresh cell at the
        // same level does not start.
        assert_eq!(
            bleeding(&mut h, &with_mv(10.0, &[(1, 7.0), (3, 7.0)])),
            vec![1]
        );
        // At or below stop: off.
        assert!(bleeding(&mut h, &with_mv(10.0, &[(1, 4.0), (3, 7.0)])).is_empty());
        // Back between stop and start: stays off, needs > start again.
        assert!(bleeding(&mut h, &with_mv(10.0, &[(1, 7.0)])).is_empty());
        assert_eq!(bleeding(&mut h, &with_mv(10.0, &[(1, 11.0)])), vec![1]);
    }

    #[test]
    fn max_bleeders_keeps_the_highest_cells() {
        let mut h = voltage(r#", "max_bleeders": 2"#);
        let i = with_mv(
            10.0,
            &[(0, 15.0), (2, 40.0), (3, 20.0), (6, 30.0), (7, 12.0)],
        );
        assert_eq!(bleeding(&mut h, &i), vec![2, 6]);
    }

    #[test]
    fn incumbent_keeps_its_slot_within_the_hysteresis_band() {
        let mut h = voltage(r#", "max_bleeders": 1"#);
        assert_eq!(
            bleeding(&mut h, &with_mv(10.0, &[(0, 30.0), (1, 20.0)])),
            vec![0]
        );
        // Cell 1 is higher now, but by less than the band (5 mV): no swap.
        assert_eq!(
            bleeding(&mut h, &with_mv(10.0, &[(0, 17.0), (1, 20.0)])),
            vec![0]
        );
        // More than the band higher: cell 1 takes over, cell 0 stops.
        assert_eq!(
            bleeding(&mut h, &with_mv(10.0, &[(0, 12.0), (1, 20.0)])),
            vec![1]
        );
    }

    #[test]
    fn disabled_in_discharge_by_default_and_memory_is_reset() {
        let mut h = voltage("");
        assert_eq!(bleeding(&mut h, &with_mv(10.0, &[(1, 20.0)])), vec![1]);
        assert!(bleeding(&mut h, &with_mv(-10.0, &[(1, 20.0)])).is_empty());
        // Back in charge between stop and start: the memory was cleared.
        assert!(bleeding(&mut h, &with_mv(10.0, &[(1, 7.0)])).is_empty());
        // Rest is enabled by default; |1.9 A| < 2.0 A counts as rest.
        assert_eq!(bleeding(&mut h, &with_mv(-1.9, &[(1, 20.0)])), vec![1]);
        assert_eq!(bleeding(&mut h, &with_mv(0.0, &[(1, 20.0)])), vec![1]);
    }

    #[test]
    fn enabled_states_and_rest_current_are_configurable() {
        let mut h = voltage(r#", "enabled_states": ["discharge"], "rest_current_a": 5"#);
        assert_eq!(bleeding(&mut h, &with_mv(-10.0, &[(1, 20.0)])), vec![1]);
        assert!(bleeding(&mut h, &with_mv(10.0, &[(1, 20.0)])).is_empty());
        // -4 A is rest with a 5 A dead band.
        assert!(bleeding(&mut h, &with_mv(-4.0, &[(1, 20.0)])).is_empty());
    }

    #[test]
    fn stale_module_cells_neither_bleed_nor_set_the_minimum() {
        let mut h = voltage("");
        // Module 0 (cells 0..4) is stale with a very low and a very high cell.
        let mut i = with_mv(10.0, &[(0, -50.0), (1, 100.0), (5, 15.0)]);
        i.snapshot.module_comm[0] = CommStatus::Stale;
        assert_eq!(bleeding(&mut h, &i), vec![5]);
        // A missing module status counts as stale too.
        i.snapshot.module_comm.truncate(1);
        assert!(bleeding(&mut h, &i).is_empty());
    }

    #[test]
    fn soc_mode_compares_soc_not_voltage() {
        let soc = r#"{"mode": "soc", "start_threshold_pct": 2, "stop_threshold_pct": 1}"#;
        let mut h = Harness::<PassiveBalancer>::new(soc).unwrap();
        let mut v = Harness::<PassiveBalancer>::new(VOLTAGE).unwrap();

        // SOC spread, flat voltage: only soc mode bleeds.
        let mut i = input(10.0);
        i.cell_soc_pct[3] = 53.0;
        i.cell_soc_pct[4] = 51.5;
        assert_eq!(bleeding(&mut h, &i), vec![3]);
        assert!(bleeding(&mut v, &i).is_empty());

        // Voltage spread, flat SOC: only voltage mode bleeds.
        let i = with_mv(10.0, &[(6, 30.0)]);
        assert!(bleeding(&mut h, &i).is_empty());
        assert_eq!(bleeding(&mut v, &i), vec![6]);
    }

    #[test]
    fn soc_mode_hysteresis_uses_pct_thresholds() {
        let soc = r#"{"mode": "soc", "start_threshold_pct": 2, "stop_threshold_pct": 1}"#;
        let mut h = Harness::<PassiveBalancer>::new(soc).unwrap();
        let mut i = input(0.0);
        i.cell_soc_pct[0] = 53.0;
        assert_eq!(bleeding(&mut h, &i), vec![0]);
        i.cell_soc_pct[0] = 51.5;
        assert_eq!(bleeding(&mut h, &i), vec![0]);
        i.cell_soc_pct[0] = 50.8;
        assert!(bleeding(&mut h, &i).is_empty());
    }

    #[test]
    fn cells_at_or_below_min_cell_voltage_never_bleed() {
        let soc = r#"{"mode": "soc", "start_threshold_pct": 2, "stop_threshold_pct": 1}"#;
        let mut h = Harness::<PassiveBalancer>::new(soc).unwrap();
        let mut i = input(0.0);
        for c in [2, 3, 4] {
            i.cell_soc_pct[c] = 60.0;
        }
        i.snapshot.cell_voltage_v[2] = 2.98;
        i.snapshot.cell_voltage_v[3] = 3.0; // exactly at the limit: not allowed
        assert_eq!(bleeding(&mut h, &i), vec![4]);

        // A configured limit above the pack voltage stops everything.
        let mut h = voltage(r#", "min_cell_voltage_v": 3.4"#);
        assert!(bleeding(&mut h, &with_mv(0.0, &[(1, 50.0)])).is_empty());
    }

    #[test]
    fn a_cell_reading_zero_volts_does_not_drag_the_minimum_down() {
        let mut h = voltage("");
        let mut i = with_mv(0.0, &[(5, 15.0)]);
        i.snapshot.cell_voltage_v[2] = 0.0;
        assert_eq!(bleeding(&mut h, &i), vec![5]);
    }

    #[test]
    fn nan_values_make_a_cell_ineligible() {
        let mut h = voltage("");
        let mut i = with_mv(10.0, &[(4, 20.0)]);
        i.snapshot.cell_voltage_v[1] = f32::NAN;
        i.snapshot.cell_voltage_v[2] = f32::INFINITY;
        assert_eq!(bleeding(&mut h, &i), vec![4]);

        let soc = r#"{"mode": "soc", "start_threshold_pct": 2, "stop_threshold_pct": 1}"#;
        let mut h = Harness::<PassiveBalancer>::new(soc).unwrap();
        let mut i = input(10.0);
        i.cell_soc_pct[0] = f32::NAN;
        i.cell_soc_pct[1] = f32::NEG_INFINITY;
        i.cell_soc_pct[6] = 55.0;
        assert_eq!(bleeding(&mut h, &i), vec![6]);
        // NaN voltage under a valid SOC: cannot check the voltage floor.
        i.snapshot.cell_voltage_v[6] = f32::NAN;
        assert!(bleeding(&mut h, &i).is_empty());
    }

    #[test]
    fn nan_current_means_no_bleeding() {
        let mut h = voltage("");
        assert!(bleeding(&mut h, &with_mv(f32::NAN, &[(1, 20.0)])).is_empty());
    }

    #[test]
    fn odd_inputs_give_well_formed_output() {
        let mut h = voltage("");
        // Empty pack.
        let empty = BalanceInput {
            snapshot: PackSnapshot::uniform(0, 0, 4, 3.3, 25.0, 0.0),
            cell_soc_pct: vec![],
        };
        assert!(h.step(&empty).unwrap().bleed.is_empty());
        // No module status at all, zero cells per module.
        let mut i = with_mv(0.0, &[(1, 20.0)]);
        i.snapshot.module_comm.clear();
        i.snapshot.cells_per_module = 0;
        assert_eq!(h.step(&i).unwrap().bleed, vec![false; 8]);
        // All NaN.
        let mut i = input(0.0);
        i.snapshot.cell_voltage_v = vec![f32::NAN; 8];
        assert_eq!(h.step(&i).unwrap().bleed, vec![false; 8]);

        // SOC list shorter than the cell list: output still covers every
        // cell, the uncovered ones do not bleed, and one warning is logged.
        let soc = r#"{"mode": "soc", "start_threshold_pct": 2, "stop_threshold_pct": 1}"#;
        let mut h = Harness::<PassiveBalancer>::new(soc).unwrap();
        h.take_logs();
        let mut i = input(0.0);
        i.cell_soc_pct = vec![50.0, 50.0, 60.0];
        i.snapshot.cell_voltage_v[7] = 3.5;
        assert_eq!(bleeding(&mut h, &i), vec![2]);
        assert_eq!(bleeding(&mut h, &i), vec![2]);
        let warns = h
            .take_logs()
            .into_iter()
            .filter(|(l, _)| *l == Level::Warn)
            .count();
        assert_eq!(warns, 1);
    }

    #[test]
    fn state_round_trip_keeps_the_bleeding_set() {
        let mut h = voltage("");
        assert_eq!(
            bleeding(&mut h, &with_mv(10.0, &[(2, 20.0), (7, 25.0)])),
            vec![2, 7]
        );
        h.reload().unwrap();
        // Between stop and start: only remembered bleeders stay on.
        let between = with_mv(10.0, &[(2, 7.0), (7, 7.0), (4, 7.0)]);
        assert_eq!(bleeding(&mut h, &between), vec![2, 7]);

        // A fresh instance without the state would not bleed them.
        let mut fresh = voltage("");
        assert!(bleeding(&mut fresh, &between).is_empty());
    }

    #[test]
    fn saved_state_for_another_cell_count_is_discarded_with_a_warning() {
        let mut h = voltage("");
        assert_eq!(bleeding(&mut h, &with_mv(10.0, &[(2, 20.0)])), vec![2]);
        h.reload().unwrap();
        h.take_logs();

        let mut i = BalanceInput {
            snapshot: PackSnapshot::uniform(0, 12, 4, 3.300, 25.0, 10.0),
            cell_soc_pct: vec![50.0; 12],
        };
        i.snapshot.cell_voltage_v[2] = 3.307; // between stop and start
        assert!(bleeding(&mut h, &i).is_empty());
        let logs = h.take_logs();
        assert!(
            logs.iter()
                .any(|(l, m)| *l == Level::Warn && m.contains("8 cells") && m.contains("12")),
            "{logs:?}"
        );
    }

    #[test]
    fn restore_accepts_empty_and_rejects_garbage() {
        let mut h = voltage("");
        assert!(h.restore_state(&[]).is_ok());
        assert!(h.restore_state(b"not a state blob").is_err());
        let wrong_version = bms_plugin_sdk::state::encode(
            99,
            &SavedState {
                cell_count: 1,
                bleeding: vec![],
            },
        );
        assert!(h.restore_state(&wrong_version).unwrap_err().contains("99"));
        let out_of_range = bms_plugin_sdk::state::encode(
            STATE_VERSION,
            &SavedState {
                cell_count: 4,
                bleeding: vec![4],
            },
        );
        assert!(h
            .restore_state(&out_of_range)
            .unwrap_err()
            .contains("index 4"));
    }

    #[test]
    fn config_errors_name_the_field() {
        assert_eq!(
            init_err(r#"{"mode": "voltage", "start_threshold_mv": 5, "stop_threshold_mv": 8}"#),
            "start_threshold_mv must be > stop_threshold_mv (got 5 <= 8)"
        );
        assert!(init_err(
            r#"{"mode": "voltage", "start_threshold_mv": 5, "stop_threshold_mv": 5}"#
        )
        .contains("start_threshold_mv must be > stop_threshold_mv"));
        assert!(init_err(
            r#"{"mode": "voltage", "start_threshold_mv": 5, "stop_threshold_mv": -1}"#
        )
        .contains("stop_threshold_mv must be >= 0"));
        // Thresholds of the other mode do not count.
        let e = init_err(r#"{"mode": "soc", "start_threshold_mv": 10, "stop_threshold_mv": 5}"#);
        assert!(e.contains("start_threshold_pct is required"), "{e}");
        let e = init_err(r#"{"mode": "soc", "start_threshold_pct": 3}"#);
        assert!(e.contains("stop_threshold_pct is required"), "{e}");
        let e = init_err(r#"{"mode": "soc", "start_threshold_pct": 300, "stop_threshold_pct": 1}"#);
        assert!(e.contains("start_threshold_pct must be <= 100"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "max_bleeders": 0}"#));
        assert!(e.contains("max_bleeders"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "enabled_states": []}"#));
        assert!(e.contains("enabled_states"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "enabled_states": ["charging"]}"#));
        assert!(e.contains("enabled_states"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "rest_current_a": -1}"#));
        assert!(e.contains("rest_current_a"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "min_cell_voltage_v": -3}"#));
        assert!(e.contains("min_cell_voltage_v"), "{e}");
        let e = init_err(&VOLTAGE.replace('}', r#", "start_threshold": 3}"#));
        assert!(e.contains("unknown field `start_threshold`"), "{e}");
        let e =
            init_err(r#"{"mode": "current", "start_threshold_mv": 10, "stop_threshold_mv": 5}"#);
        assert!(e.contains("mode"), "{e}");
        let e = init_err(r#"{"start_threshold_mv": 10, "stop_threshold_mv": 5}"#);
        assert!(e.contains("mode"), "{e}");

        // Both modes' thresholds together are fine (switch mode by one field).
        Harness::<PassiveBalancer>::new(
            r#"{"mode": "soc", "start_threshold_mv": 10, "stop_threshold_mv": 5,
                "start_threshold_pct": 2, "stop_threshold_pct": 0}"#,
        )
        .unwrap();
    }
}
