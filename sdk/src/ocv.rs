//! Open-circuit-voltage tables: SOC ↔ OCV by piecewise-linear interpolation.
//!
//! A table is two equally long arrays, SOC ascending and OCV strictly
//! ascending, as shipped in `configs/ocv-*.toml`:
//!
//! ```toml
//! chemistry = "LFP"
//! soc_pct = [0.0, 10.0, 100.0]
//! ocv_v   = [2.50, 3.20, 3.55]
//! ```

use serde::{Deserialize, Serialize};

/// Raw form as found in config files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OcvTableConfig {
    #[serde(default)]
    pub chemistry: Option<String>,
    pub soc_pct: Vec<f32>,
    pub ocv_v: Vec<f32>,
}

/// A validated OCV(SOC) curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OcvTableConfig")]
pub struct OcvTable {
    soc_pct: Vec<f32>,
    ocv_v: Vec<f32>,
}

impl TryFrom<OcvTableConfig> for OcvTable {
    type Error = String;
    fn try_from(c: OcvTableConfig) -> Result<Self, String> {
        Self::new(c.soc_pct, c.ocv_v)
    }
}

impl OcvTable {
    /// Validate and build a table.
    pub fn new(soc_pct: Vec<f32>, ocv_v: Vec<f32>) -> Result<Self, String> {
        if soc_pct.len() != ocv_v.len() {
            return Err(format!(
                "ocv table: soc_pct has {} points but ocv_v has {}",
                soc_pct.len(),
                ocv_v.len()
            ));
        }
        if soc_pct.len() < 2 {
            return Err("ocv table: needs at least 2 points".into());
        }
        for i in 1..soc_pct.len() {
            if soc_pct[i] <= soc_pct[i - 1] {
                return Err(format!(
                    "ocv table: soc_pct[{i}] = {} is not greater than soc_pct[{}] = {}",
                    soc_pct[i],
                    i - 1,
                    soc_pct[i - 1]
                ));
            }
            if ocv_v[i] <= ocv_v[i - 1] {
                return Err(format!(
                    "ocv table: ocv_v[{i}] = {} is not greater than ocv_v[{}] = {} (OCV must rise with SOC)",
                    ocv_v[i],
                    i - 1,
                    ocv_v[i - 1]
                ));
            }
        }
        if soc_pct.iter().chain(&ocv_v).any(|x| !x.is_finite()) {
            return Err("ocv table: contains a non-finite value".into());
        }
        Ok(Self { soc_pct, ocv_v })
    }

    /// OCV in volts at `soc_pct`, clamped to the table's ends.
    pub fn ocv_v(&self, soc_pct: f32) -> f32 {
        interpolate(&self.soc_pct, &self.ocv_v, soc_pct)
    }

    /// SOC in percent for an open-circuit voltage, clamped to the table's ends.
    pub fn soc_pct(&self, ocv_v: f32) -> f32 {
        interpolate(&self.ocv_v, &self.soc_pct, ocv_v)
    }

    /// Slope dOCV/dSOC in mV per percent at `soc_pct`. A flat curve (LFP
    /// plateau) gives a small slope: OCV then says little about SOC.
    pub fn slope_mv_per_pct(&self, soc_pct: f32) -> f32 {
        let i = segment(&self.soc_pct, soc_pct);
        (self.ocv_v[i + 1] - self.ocv_v[i]) * 1000.0 / (self.soc_pct[i + 1] - self.soc_pct[i])
    }

    /// Lowest and highest SOC covered by the table.
    pub fn soc_range(&self) -> (f32, f32) {
        (self.soc_pct[0], *self.soc_pct.last().unwrap_or(&100.0))
    }
}

/// Index `i` of the segment `xs[i]..xs[i+1]` holding `x` (clamped).
fn segment(xs: &[f32], x: f32) -> usize {
    let upper = xs.partition_point(|&p| p <= x);
    upper.clamp(1, xs.len() - 1) - 1
}

fn interpolate(xs: &[f32], ys: &[f32], x: f32) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    if x <= xs[0] {
        return ys[0];
    }
    if x >= xs[xs.len() - 1] {
        return ys[ys.len() - 1];
    }
    let i = segment(xs, x);
    let t = (x - xs[i]) / (xs[i + 1] - xs[i]);
    ys[i] + t * (ys[i + 1] - ys[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> OcvTable {
        OcvTable::new(vec![0.0, 50.0, 100.0], vec![3.0, 3.3, 3.6]).unwrap()
    }

    #[test]
    fn interpolates_both_ways() {
        let t = table();
        assert!((t.ocv_v(25.0) - 3.15).abs() < 1e-6);
        assert!((t.soc_pct(3.45) - 75.0).abs() < 1e-3);
        assert!((t.slope_mv_per_pct(10.0) - 6.0).abs() < 1e-4);
    }

    #[test]
    fn clamps_outside_the_table() {
        let t = table();
        assert_eq!(t.soc_pct(2.0), 0.0);
        assert_eq!(t.soc_pct(4.0), 100.0);
        assert_eq!(t.ocv_v(120.0), 3.6);
    }

    #[test]
    fn rejects_non_monotonic_tables_naming_the_point() {
        let err = OcvTable::new(vec![0.0, 50.0, 100.0], vec![3.0, 3.3, 3.2]).unwrap_err();
        assert!(err.contains("ocv_v[2]"), "{err}");
        let err = OcvTable::new(vec![0.0, 50.0], vec![3.0]).unwrap_err();
        assert!(err.contains("2 points but ocv_v has 1"), "{err}");
    }

    #[test]
    fn round_trips_on_every_point() {
        let t = table();
        for soc in [0.0, 12.5, 50.0, 99.0] {
            assert!((t.soc_pct(t.ocv_v(soc)) - soc).abs() < 1e-3);
        }
    }
}
