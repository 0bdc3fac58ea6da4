//! The simulated cells' open-circuit voltage: the physics' own curve, read
//! from the same `configs/ocv-*.toml` files the estimators use but never
//! through the SDK's table code, so the truth does not share an
//! interpolation bug with the estimate.
//!
//! Owns: [`OcvCurve`]. May not touch: anything beyond SOC → OCV.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    #[allow(dead_code)]
    chemistry: Option<String>,
    soc_pct: Vec<f64>,
    ocv_v: Vec<f64>,
}

/// A piecewise-linear OCV(SOC) curve, SOC strictly ascending.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Raw")]
pub struct OcvCurve {
    soc_pct: Vec<f64>,
    ocv_v: Vec<f64>,
}

/// Why a curve is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OcvError {
    #[error("ocv table: soc_pct has {soc} points and ocv_v {ocv}; both need the same count >= 2")]
    Shape { soc: usize, ocv: usize },
    #[error("ocv table: point {index} is not finite or not above the one before")]
    NotAscending { index: usize },
}

impl TryFrom<Raw> for OcvCurve {
    type Error = OcvError;
    fn try_from(r: Raw) -> Result<Self, OcvError> {
        Self::new(r.soc_pct, r.ocv_v)
    }
}

impl OcvCurve {
    pub fn new(soc_pct: Vec<f64>, ocv_v: Vec<f64>) -> Result<Self, OcvError> {
        if soc_pct.len() != ocv_v.len() || soc_pct.len() < 2 {
            return Err(OcvError::Shape {
                soc: soc_pct.len(),
                ocv: ocv_v.len(),
            });
        }
        let finite = |i: usize| soc_pct[i].is_finite() && ocv_v[i].is_finite();
        if let Some(index) = (0..soc_pct.len()).find(|&i| {
            !finite(i) || (i > 0 && (soc_pct[i] <= soc_pct[i - 1] || ocv_v[i] <= ocv_v[i - 1]))
        }) {
            return Err(OcvError::NotAscending { index });
        }
        Ok(Self { soc_pct, ocv_v })
    }

    /// OCV in V at `soc_pct`, held at the table's ends.
    pub fn ocv_v(&self, soc_pct: f64) -> f64 {
        let (s, v) = (&self.soc_pct, &self.ocv_v);
        let n = s.len();
        if soc_pct <= s[0] {
            return v[0];
        }
        if soc_pct >= s[n - 1] {
            return v[n - 1];
        }
        let i = s.partition_point(|&x| x <= soc_pct) - 1;
        v[i] + (v[i + 1] - v[i]) * (soc_pct - s[i]) / (s[i + 1] - s[i])
    }

    /// Lowest and highest SOC the table covers, %.
    pub fn soc_range(&self) -> (f64, f64) {
        (self.soc_pct[0], self.soc_pct[self.soc_pct.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_holds_the_ends() {
        let c = OcvCurve::new(vec![0.0, 50.0, 100.0], vec![3.0, 3.5, 4.0]).unwrap();
        assert_eq!(c.ocv_v(-5.0), 3.0);
        assert_eq!(c.ocv_v(25.0), 3.25);
        assert_eq!(c.ocv_v(50.0), 3.5);
        assert_eq!(c.ocv_v(120.0), 4.0);
        assert_eq!(c.soc_range(), (0.0, 100.0));
    }

    #[test]
    fn a_falling_or_short_table_is_refused_with_the_point() {
        assert_eq!(
            OcvCurve::new(vec![0.0, 50.0, 40.0], vec![3.0, 3.5, 4.0]),
            Err(OcvError::NotAscending { index: 2 })
        );
        assert!(matches!(
            OcvCurve::new(vec![0.0], vec![3.0]),
            Err(OcvError::Shape { .. })
        ));
    }

    #[test]
    fn reads_the_shipped_tables() {
        for f in ["ocv-lfp.toml", "ocv-nmc.toml"] {
            let p = format!("{}/../../configs/{f}", env!("CARGO_MANIFEST_DIR"));
            let c: OcvCurve = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            assert!(c.ocv_v(50.0) > c.ocv_v(10.0), "{f}");
        }
    }
}
