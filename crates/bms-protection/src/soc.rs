//! Protection's own state of charge: what the SOC-dependent limits are
//! judged on, whatever a plugin reports.
//!
//! Owns: per-cell ampere-hour counting, initialisation from the
//! open-circuit voltage (OCV) on a cell's first fresh reading, and
//! recalibration from the OCV after a rest where the OCV curve is steep
//! enough to say something. It also picks the SOC each derating direction
//! uses: the *higher* of its own and the plugin's for charge, the *lower*
//! for discharge, so a plausible but wrong estimate can only lower a limit.
//!
//! May not touch: anything but the snapshot it is given. It never reads a
//! plugin; the reported SOC is an argument, advisory only.

use serde::{Deserialize, Serialize};

use super::limits::Tier;
use crate::snapshot::{CommStatus, PackSnapshot};

/// `[protection.soc]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocConfig {
    /// The cell's rested open-circuit voltage over SOC.
    pub ocv: OcvPoints,
    /// |I| below this for `rest_time_s` is a rest (recalibration), A.
    #[serde(default = "default_rest_current_a")]
    pub rest_current_a: f32,
    #[serde(default = "default_rest_time_s")]
    pub rest_time_s: u32,
    /// Recalibrate a cell only where dOCV/dSOC is at least this steep, mV/%.
    #[serde(default = "default_min_slope")]
    pub min_ocv_slope_mv_per_pct: f32,
    /// Warning tier (MOL only): protection's and the plugin's SOC differ by
    /// more than `limit` pp for `delay_ms`.
    #[serde(default = "default_disagreement")]
    pub disagreement_pct: Tier,
    /// Rated cell capacity, Ah: set from `rack.capacity_ah` when the site
    /// loads (never read from this section).
    #[serde(skip)]
    pub capacity_ah: f32,
}

fn default_rest_current_a() -> f32 {
    2.0
}
fn default_rest_time_s() -> u32 {
    600
}
fn default_min_slope() -> f32 {
    1.0
}
fn default_disagreement() -> Tier {
    Tier {
        limit: 10.0,
        delay_ms: 10_000,
        hysteresis: 2.0,
    }
}

/// An OCV table as in `configs/ocv-*.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OcvPoints {
    /// Informational (the OCV files carry it).
    #[serde(default)]
    pub chemistry: Option<String>,
    pub soc_pct: Vec<f32>,
    pub ocv_v: Vec<f32>,
}

impl SocConfig {
    /// Errors are (field below `protection.soc.`, message).
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        let o = &self.ocv;
        if o.soc_pct.len() != o.ocv_v.len() || o.soc_pct.len() < 2 {
            return Err((
                "ocv".into(),
                format!(
                    "soc_pct and ocv_v need the same length >= 2, got {} and {}",
                    o.soc_pct.len(),
                    o.ocv_v.len()
                ),
            ));
        }
        for i in 1..o.soc_pct.len() {
            let (s, v) = (o.soc_pct[i], o.ocv_v[i]);
            if !(s.is_finite() && v.is_finite() && s > o.soc_pct[i - 1] && v > o.ocv_v[i - 1]) {
                return Err((
                    format!("ocv[{i}]"),
                    "soc_pct and ocv_v must be finite and strictly increasing".into(),
                ));
            }
        }
        if o.soc_pct[0] < 0.0 || o.soc_pct[o.soc_pct.len() - 1] > 100.0 {
            return Err(("ocv.soc_pct".into(), "must lie within 0..=100".into()));
        }
        if !(self.rest_current_a.is_finite() && self.rest_current_a > 0.0) {
            return Err(("rest_current_a".into(), "must be > 0".into()));
        }
        if !(self.min_ocv_slope_mv_per_pct.is_finite() && self.min_ocv_slope_mv_per_pct >= 0.0) {
            return Err(("min_ocv_slope_mv_per_pct".into(), "must be >= 0".into()));
        }
        let d = &self.disagreement_pct;
        if !(d.limit.is_finite() && d.limit > 0.0 && d.limit <= 100.0) {
            return Err((
                "disagreement_pct.limit".into(),
                "must be in (0, 100]".into(),
            ));
        }
        if d.delay_ms == 0 || !(d.hysteresis >= 0.0 && d.hysteresis < d.limit) {
            return Err((
                "disagreement_pct".into(),
                "delay_ms must be > 0 and 0 <= hysteresis < limit".into(),
            ));
        }
        if !(self.capacity_ah.is_finite() && self.capacity_ah > 0.0) {
            return Err((
                "capacity_ah".into(),
                format!(
                    "rated capacity must be > 0 (from rack.capacity_ah), got {}",
                    self.capacity_ah
                ),
            ));
        }
        Ok(())
    }
}

/// Which SOC each derating direction uses, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SocBasis {
    /// Protection's own SOC: lowest, mean and highest cell, %.
    pub native_min_pct: Option<f32>,
    pub native_mean_pct: Option<f32>,
    pub native_max_pct: Option<f32>,
    /// The plugin's pack SOC as last reported, %.
    pub reported_pct: Option<f32>,
    /// The SOC the charge limit is derated on (the higher), %.
    pub charge_pct: Option<f32>,
    /// The SOC the discharge limit is derated on (the lower), %.
    pub discharge_pct: Option<f32>,
    /// |reported − native| beyond which the estimates disagree, pp: the
    /// larger of the distances to the native extremes, 0 when in between.
    pub disagreement_pct: Option<f32>,
}

impl SocBasis {
    pub const UNKNOWN: SocBasis = SocBasis {
        native_min_pct: None,
        native_mean_pct: None,
        native_max_pct: None,
        reported_pct: None,
        charge_pct: None,
        discharge_pct: None,
        disagreement_pct: None,
    };
}

/// Per-cell SOC by ampere-hour counting.
#[derive(Debug, Clone)]
pub struct NativeSoc {
    cfg: SocConfig,
    /// Per cell, %; NaN until the cell's first fresh reading.
    cell_pct: Vec<f32>,
    last_ms: Option<u64>,
    rest_since_ms: Option<u64>,
    recalibrated_this_rest: bool,
}

impl NativeSoc {
    pub fn new(cfg: SocConfig) -> Self {
        Self {
            cfg,
            cell_pct: Vec::new(),
            last_ms: None,
            rest_since_ms: None,
            recalibrated_this_rest: false,
        }
    }

    pub fn cell_pct(&self) -> &[f32] {
        &self.cell_pct
    }

    /// Advance to the snapshot: count the charge since the last update,
    /// initialise cells seen for the first time, recalibrate after a rest.
    /// `data_fresh` says the snapshot as a whole is not stale.
    pub fn update(&mut self, s: &PackSnapshot, data_fresh: bool) {
        if self.cell_pct.len() != s.cell_voltage_v.len() {
            self.cell_pct = vec![f32::NAN; s.cell_voltage_v.len()];
        }
        let dt_s = self
            .last_ms
            .map_or(0.0, |t| s.timestamp_ms.saturating_sub(t) as f32 / 1000.0);
        self.last_ms = Some(s.timestamp_ms);
        let current = (data_fresh && s.current_comm == CommStatus::Ok && s.current_a.is_finite())
            .then_some(s.current_a);
        if let Some(i_a) = current {
            let per_a = dt_s / 3600.0 / self.cfg.capacity_ah * 100.0;
            for (soc, bleed_a) in self.cell_pct.iter_mut().zip(&s.cell_bleed_a) {
                if soc.is_finite() {
                    let bleed = if bleed_a.is_finite() { *bleed_a } else { 0.0 };
                    *soc = (*soc + (i_a - bleed) * per_a).clamp(0.0, 100.0);
                }
            }
        }
        let rested = self.track_rest(s.timestamp_ms, current);
        let per = s.cells_per_module.max(1) as usize;
        for (i, v) in s.cell_voltage_v.iter().enumerate() {
            let fresh = data_fresh && s.module_comm.get(i / per) == Some(&CommStatus::Ok);
            if !fresh || !v.is_finite() {
                continue;
            }
            if self.cell_pct[i].is_nan() {
                self.cell_pct[i] = self.soc_at(*v);
            } else if rested && !self.recalibrated_this_rest {
                let soc = self.soc_at(*v);
                if self.slope_mv_per_pct(soc) >= self.cfg.min_ocv_slope_mv_per_pct {
                    self.cell_pct[i] = soc;
                }
            }
        }
        if rested {
            self.recalibrated_this_rest = true;
        }
    }

    fn track_rest(&mut self, now_ms: u64, current: Option<f32>) -> bool {
        match current {
            Some(i) if i.abs() < self.cfg.rest_current_a => {
                let since = *self.rest_since_ms.get_or_insert(now_ms);
                now_ms.saturating_sub(since) >= u64::from(self.cfg.rest_time_s) * 1000
            }
            _ => {
                self.rest_since_ms = None;
                self.recalibrated_this_rest = false;
                false
            }
        }
    }

    /// SOC at a rested cell voltage (table ends hold outside).
    fn soc_at(&self, v: f32) -> f32 {
        interpolate(&self.cfg.ocv.ocv_v, &self.cfg.ocv.soc_pct, v)
    }

    fn slope_mv_per_pct(&self, soc_pct: f32) -> f32 {
        let (s, v) = (&self.cfg.ocv.soc_pct, &self.cfg.ocv.ocv_v);
        let i = s.partition_point(|x| *x <= soc_pct).clamp(1, s.len() - 1);
        (v[i] - v[i - 1]) * 1000.0 / (s[i] - s[i - 1])
    }

    /// The SOC each direction is derated on, from the native cells and the
    /// plugin's report: charge on the higher, discharge on the lower.
    pub fn basis(&self, reported_pct: Option<f32>) -> SocBasis {
        let known: Vec<f32> = self
            .cell_pct
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let complete = !known.is_empty() && known.len() == self.cell_pct.len();
        let (lo, hi, mean) = if complete {
            let lo = known.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = known.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (
                Some(lo),
                Some(hi),
                Some(known.iter().sum::<f32>() / known.len() as f32),
            )
        } else {
            (None, None, None)
        };
        // Out of range is clamped, not dropped: 120 % derates charge as 100 %.
        let reported = reported_pct
            .filter(|x| x.is_finite())
            .map(|x| x.clamp(0.0, 100.0));
        let pick = |a: Option<f32>, b: Option<f32>, f: fn(f32, f32) -> f32| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        let disagreement = match (reported, lo, hi) {
            (Some(r), Some(lo), Some(hi)) => Some((lo - r).max(r - hi).max(0.0)),
            _ => None,
        };
        SocBasis {
            native_min_pct: lo,
            native_mean_pct: mean,
            native_max_pct: hi,
            reported_pct: reported,
            charge_pct: pick(hi, reported, f32::max),
            discharge_pct: pick(lo, reported, f32::min),
            disagreement_pct: disagreement,
        }
    }
}

/// Piecewise-linear y(x) over strictly increasing `xs`; ends hold.
fn interpolate(xs: &[f32], ys: &[f32], x: f32) -> f32 {
    let n = xs.len();
    if x <= xs[0] {
        return ys[0];
    }
    if x >= xs[n - 1] {
        return ys[n - 1];
    }
    let i = xs.partition_point(|q| *q <= x) - 1;
    let t = (x - xs[i]) / (xs[i + 1] - xs[i]);
    ys[i] + t * (ys[i + 1] - ys[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SocConfig {
        SocConfig {
            ocv: OcvPoints {
                chemistry: None,
                soc_pct: vec![0.0, 10.0, 90.0, 100.0],
                ocv_v: vec![3.0, 3.2, 3.3, 3.5],
            },
            rest_current_a: 2.0,
            rest_time_s: 60,
            min_ocv_slope_mv_per_pct: 2.0,
            disagreement_pct: default_disagreement(),
            capacity_ah: 100.0,
        }
    }

    fn snap(t_ms: u64, v: f32, current_a: f32) -> PackSnapshot {
        let mut s = PackSnapshot::empty(4, 2);
        s.timestamp_ms = t_ms;
        s.cell_voltage_v = vec![v; 4];
        s.module_comm = vec![CommStatus::Ok; 2];
        s.current_comm = CommStatus::Ok;
        s.current_a = current_a;
        s.complete = true;
        s
    }

    #[test]
    fn initialises_from_ocv_counts_charge_and_recalibrates_only_where_steep() {
        let mut soc = NativeSoc::new(cfg());
        soc.update(&snap(0, 3.4, 0.0), true);
        assert!((soc.cell_pct()[0] - 95.0).abs() < 1e-3);
        // 10 Ah into 100 Ah over one hour: +10 pp, clamped at 100.
        soc.update(&snap(1_800_000, 3.4, 10.0), true);
        assert!((soc.cell_pct()[0] - 100.0).abs() < 1e-3);
        // Discharge to a known point, then a rest on the steep top segment.
        soc.update(&snap(3_600_000, 3.4, -20.0), true);
        assert!((soc.cell_pct()[0] - 90.0).abs() < 1e-2);
        soc.update(&snap(3_630_000, 3.45, 0.0), true);
        assert!((soc.cell_pct()[0] - 90.0).abs() < 1e-2, "not rested yet");
        soc.update(&snap(3_700_000, 3.45, 0.0), true);
        assert!((soc.cell_pct()[0] - 97.5).abs() < 1e-2, "recalibrated");
        // On the flat middle segment (1.25 mV/%) a rest does not recalibrate.
        let mut soc = NativeSoc::new(cfg());
        soc.update(&snap(0, 3.25, 0.0), true);
        let start = soc.cell_pct()[0];
        soc.update(&snap(3_600_000, 3.25, -10.0), true);
        soc.update(&snap(3_700_000, 3.25, 0.0), true);
        soc.update(&snap(3_800_000, 3.25, 0.0), true);
        assert!((soc.cell_pct()[0] - (start - 10.0)).abs() < 1e-2);
    }

    #[test]
    fn stale_data_neither_counts_nor_initialises() {
        let mut soc = NativeSoc::new(cfg());
        soc.update(&snap(0, 3.4, 0.0), false);
        assert!(soc.cell_pct()[0].is_nan());
        assert_eq!(soc.basis(Some(50.0)).charge_pct, Some(50.0));
        soc.update(&snap(1000, 3.4, 0.0), true);
        let before = soc.cell_pct()[0];
        soc.update(&snap(3_601_000, 3.4, 50.0), false);
        assert_eq!(soc.cell_pct()[0], before);
    }

    #[test]
    fn charge_derates_on_the_higher_discharge_on_the_lower() {
        let mut soc = NativeSoc::new(cfg());
        let mut s = snap(0, 3.4, 0.0);
        s.cell_voltage_v = vec![3.25, 3.3, 3.4, 3.4];
        soc.update(&s, true);
        let b = soc.basis(Some(50.0));
        assert!((b.charge_pct.unwrap() - 95.0).abs() < 1e-3);
        assert!((b.discharge_pct.unwrap() - 50.0).abs() < 1e-3);
        assert!(
            b.disagreement_pct.unwrap() < 1e-3,
            "50 lies between the cells"
        );
        let b = soc.basis(Some(20.0));
        assert!((b.disagreement_pct.unwrap() - (b.native_min_pct.unwrap() - 20.0)).abs() < 1e-3);
        // NaN is no report; out of range counts as the nearest end.
        assert_eq!(soc.basis(Some(f32::NAN)).reported_pct, None);
        assert_eq!(soc.basis(Some(150.0)).charge_pct, Some(100.0));
        assert_eq!(soc.basis(Some(-5.0)).discharge_pct, Some(0.0));
    }
}
