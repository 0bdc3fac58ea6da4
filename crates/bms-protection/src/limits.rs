//! The limit table: every protected quantity with its three tiers, the
//! derating curves, the plausibility settings and the contactor timing, as
//! read from `[protection]` in the site file.
//!
//! Tiers follow foxBMS 2:
//! - **MOL** (maximum operating limit): warn; derating curves start here.
//! - **RSL** (recommended safety limit): zero current in the quantity's
//!   direction.
//! - **MSL** (maximum safety limit): open the contactors and latch until an
//!   authorised reset.
//!
//! Each tier has its own debounce delay and release hysteresis. For a
//! quantity that trips *above* its limit, MOL ≤ RSL ≤ MSL and the release
//! point is `limit − hysteresis`; for one that trips *below*, the order and
//! the sign flip. [`ProtectionConfig::validate`] enforces this and names the
//! offending field.

use serde::{Deserialize, Serialize};

use super::Quantity;

/// A `[protection]` table that must not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `field` is the path of the bad value (below `protection.` for
    /// [`ProtectionConfig::validate`]), e.g. `cell_over_voltage_v.msl.limit`.
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
}

impl LimitError {
    pub fn field(&self) -> &str {
        match self {
            LimitError::Invalid { field, .. } => field,
        }
    }
    pub fn message(&self) -> &str {
        match self {
            LimitError::Invalid { message, .. } => message,
        }
    }
}

/// One tier of one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Threshold, in the quantity's unit.
    pub limit: f32,
    /// How long the value must stay beyond `limit` before the tier is
    /// raised, in ms (> 0).
    pub delay_ms: u64,
    /// How far back inside the limit the value must come before the tier
    /// clears, in the quantity's unit (>= 0).
    pub hysteresis: f32,
}

/// The three tiers of a quantity; any tier may be omitted, not all.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub mol: Option<Tier>,
    pub rsl: Option<Tier>,
    pub msl: Option<Tier>,
}

impl Tiers {
    pub fn get(&self, tier: TierLevel) -> Option<&Tier> {
        match tier {
            TierLevel::Mol => self.mol.as_ref(),
            TierLevel::Rsl => self.rsl.as_ref(),
            TierLevel::Msl => self.msl.as_ref(),
        }
    }
}

/// Tier names, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierLevel {
    Mol,
    Rsl,
    Msl,
}

impl TierLevel {
    pub const ALL: [TierLevel; 3] = [TierLevel::Mol, TierLevel::Rsl, TierLevel::Msl];
    pub fn key(self) -> &'static str {
        match self {
            TierLevel::Mol => "mol",
            TierLevel::Rsl => "rsl",
            TierLevel::Msl => "msl",
        }
    }
}

/// A piecewise-linear curve of allowed current (A) over one variable.
/// Points are `[x, current_a]`, x strictly increasing; outside the points
/// the end values hold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Curve(pub Vec<[f32; 2]>);

impl Curve {
    /// Allowed current at `x`; NaN x gives 0 (unknown means no current).
    pub fn eval(&self, x: f32) -> f32 {
        let p = &self.0;
        if x.is_nan() || p.is_empty() {
            return 0.0;
        }
        if x <= p[0][0] {
            return p[0][1];
        }
        if x >= p[p.len() - 1][0] {
            return p[p.len() - 1][1];
        }
        let i = p.partition_point(|q| q[0] <= x) - 1;
        let t = (x - p[i][0]) / (p[i + 1][0] - p[i][0]);
        p[i][1] + t * (p[i + 1][1] - p[i][1])
    }

    /// Check shape; `monotonic`: Some(true) non-decreasing, Some(false)
    /// non-increasing in x. The error names `field` or one of its points.
    pub fn check(&self, field: &str, monotonic: Option<bool>) -> Result<(), LimitError> {
        self.validate(field, monotonic)
            .map_err(|(field, message)| LimitError::Invalid { field, message })
    }

    pub(crate) fn validate(
        &self,
        field: &str,
        monotonic: Option<bool>,
    ) -> Result<(), (String, String)> {
        let p = &self.0;
        if p.len() < 2 {
            return Err((
                field.into(),
                "needs at least 2 points [x, current_a]".into(),
            ));
        }
        for (i, q) in p.iter().enumerate() {
            if !q[0].is_finite() || !q[1].is_finite() || q[1] < 0.0 {
                return Err((
                    format!("{field}[{i}]"),
                    format!("{q:?}: values must be finite, current >= 0"),
                ));
            }
            if i > 0 {
                if q[0] <= p[i - 1][0] {
                    return Err((
                        format!("{field}[{i}]"),
                        format!(
                            "x = {} must be greater than the previous x = {}",
                            q[0],
                            p[i - 1][0]
                        ),
                    ));
                }
                match monotonic {
                    Some(true) if q[1] < p[i - 1][1] => {
                        return Err((
                            format!("{field}[{i}]"),
                            "curve must not decrease with x".into(),
                        ))
                    }
                    Some(false) if q[1] > p[i - 1][1] => {
                        return Err((
                            format!("{field}[{i}]"),
                            "curve must not increase with x".into(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// `[protection.derating]`: the state-of-function curves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeratingConfig {
    /// Continuous charge rating, A: the ceiling of every curve.
    pub max_charge_current_a: f32,
    /// Continuous discharge rating, A.
    pub max_discharge_current_a: f32,
    /// Allowed current rises at most this fast, A/s; it drops at once.
    pub ramp_up_a_per_s: f32,
    /// Charge current over the highest cell voltage (V); non-increasing.
    pub charge_vs_cell_voltage_v: Curve,
    /// Discharge current over the lowest cell voltage (V); non-decreasing.
    pub discharge_vs_cell_voltage_v: Curve,
    /// Charge current over cell temperature (°C), applied to the lowest
    /// and the highest cell temperature.
    pub charge_vs_temp_c: Curve,
    /// Discharge current over cell temperature (°C), likewise.
    pub discharge_vs_temp_c: Curve,
    /// Charge current over pack SOC (%); non-increasing. Skipped while no
    /// validated SOC estimate exists (the voltage curve still protects).
    pub charge_vs_soc_pct: Curve,
    /// Discharge current over pack SOC (%); non-decreasing.
    pub discharge_vs_soc_pct: Curve,
}

/// Plausibility checks that are not tiered quantities.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlausibilityConfig {
    /// Physical range of a cell-voltage reading, V.
    pub cell_voltage_range_v: [f32; 2],
    /// Physical range of a temperature reading, °C.
    pub temp_range_c: [f32; 2],
    /// Physical range of the current reading, A (the sensor's span).
    pub current_range_a: [f32; 2],
    /// Physical range of the pack-voltage reading, V.
    pub pack_voltage_range_v: [f32; 2],
    /// Physical range of the DC-link voltage reading, V.
    pub link_voltage_range_v: [f32; 2],
    /// A reading outside its range for this long opens the contactors, ms.
    pub range_delay_ms: u64,
    /// A live current sensor's reading always moves in its last digits; a
    /// value bit-identical for this long (with contactors closed) is a
    /// stuck sensor, ms. 0 disables the check.
    pub current_frozen_ms: u64,
}

/// `[protection.contactors]`: the contactor state machine's timing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactorConfig {
    /// Precharge succeeds when the DC-link voltage reaches this fraction of
    /// the pack voltage (0..1).
    pub precharge_fraction: f32,
    /// ... within this time, ms.
    pub precharge_timeout_ms: u64,
    /// After opening, current must have stopped within this time, ms.
    pub open_timeout_ms: u64,
    /// Commanded open but current above this flows: welded, A.
    pub weld_current_a: f32,
    /// Commanded open but the link voltage stays above this fraction of the
    /// pack voltage after `open_timeout_ms`: welded.
    pub weld_voltage_fraction: f32,
    /// Wait after an open before the next close attempt, ms.
    pub reclose_delay_ms: u64,
}

/// `[protection.balancing]`: limits on bleed commands.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BalancingLimits {
    /// At most this many cells bleed at once (heat on the BMU board).
    pub max_bleeders: u32,
    /// No bleeding on cells at or above this temperature, °C.
    pub max_temp_c: f32,
}

/// The whole `[protection]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionConfig {
    /// Protection thread period, ms (default 10).
    #[serde(default = "default_period")]
    pub period_ms: u64,
    /// |current| below this counts as rest when choosing charge or
    /// discharge temperature limits, A.
    pub rest_current_a: f32,
    pub cell_over_voltage_v: Tiers,
    pub cell_under_voltage_v: Tiers,
    /// Deep under-voltage: MSL only. Its latch survives restarts and blocks
    /// contactor closing until an authorised reset.
    pub cell_deep_under_voltage_v: Tier,
    pub cell_over_temp_charge_c: Tiers,
    pub cell_over_temp_discharge_c: Tiers,
    pub cell_under_temp_charge_c: Tiers,
    pub cell_under_temp_discharge_c: Tiers,
    /// Max − min cell temperature, °C.
    pub cell_temp_spread_c: Tiers,
    /// Max − min cell voltage, V.
    pub cell_voltage_spread_v: Tiers,
    /// Charge current, A (positive).
    pub charge_over_current_a: Tiers,
    /// Discharge current magnitude, A (positive).
    pub discharge_over_current_a: Tiers,
    /// |sum of cell voltages − pack voltage|, V.
    pub pack_voltage_mismatch_v: Tiers,
    pub plausibility: PlausibilityConfig,
    pub derating: DeratingConfig,
    pub contactors: ContactorConfig,
    pub balancing: BalancingLimits,
    /// Protection's own SOC (`[protection.soc]`).
    pub soc: super::soc::SocConfig,
    /// Watchdog: the contactor driver opens when the protection heartbeat
    /// has not toggled for this many periods.
    #[serde(default = "default_watchdog_periods")]
    pub watchdog_periods: u32,
    /// The control side declares protection dead after this many periods
    /// without a tick: the PCS is told 0 A, its heartbeat stops, the rack
    /// shows faulted in SunSpec and drops out of the bank.
    #[serde(default = "default_supervision_periods")]
    pub supervision_periods: u32,
}

fn default_period() -> u64 {
    10
}
fn default_watchdog_periods() -> u32 {
    5
}
fn default_supervision_periods() -> u32 {
    10
}

/// Direction a quantity trips in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

impl ProtectionConfig {
    /// Every tiered quantity of the limit table ([`crate::table`]) with its
    /// config key, this site's tiers and its direction, in table order.
    pub fn tiered(&self) -> Vec<(&'static str, Quantity, Tiers, Direction)> {
        crate::table::tiered_rows()
            .filter_map(|r| Some((r.key, r.quantity, self.tiers_of(r.quantity)?, r.direction)))
            .collect()
    }

    /// This site's tiers of `q` (`None` for quantities that are not tiered
    /// from `[protection]`).
    pub fn tiers_of(&self, q: Quantity) -> Option<Tiers> {
        use Quantity as Q;
        let t = match q {
            Q::CellOverVoltage => self.cell_over_voltage_v,
            Q::CellUnderVoltage => self.cell_under_voltage_v,
            Q::CellDeepUnderVoltage => Tiers {
                msl: Some(self.cell_deep_under_voltage_v),
                ..Tiers::default()
            },
            Q::CellOverTempCharge => self.cell_over_temp_charge_c,
            Q::CellOverTempDischarge => self.cell_over_temp_discharge_c,
            Q::CellUnderTempCharge => self.cell_under_temp_charge_c,
            Q::CellUnderTempDischarge => self.cell_under_temp_discharge_c,
            Q::CellTempSpread => self.cell_temp_spread_c,
            Q::CellVoltageSpread => self.cell_voltage_spread_v,
            Q::ChargeOverCurrent => self.charge_over_current_a,
            Q::DischargeOverCurrent => self.discharge_over_current_a,
            Q::PackVoltageMismatch => self.pack_voltage_mismatch_v,
            Q::CommunicationLoss
            | Q::SensorOutOfRange
            | Q::CurrentSensorFrozen
            | Q::ContactorWelded
            | Q::PrechargeFailed
            | Q::SocDisagreement
            | Q::EventRecordFailing => return None,
        };
        Some(t)
    }

    /// The operating cell-voltage window (lowest, highest) in V: the
    /// least severe configured under- and over-voltage tiers.
    pub fn operating_window_v(&self) -> (f32, f32) {
        let first = |t: &Tiers| {
            [t.mol, t.rsl, t.msl]
                .into_iter()
                .flatten()
                .next()
                .map(|t| t.limit)
        };
        (
            first(&self.cell_under_voltage_v).unwrap_or(f32::NAN),
            first(&self.cell_over_voltage_v).unwrap_or(f32::NAN),
        )
    }

    /// Check ordering, signs, shapes and bounds; the error names the field.
    pub fn validate(&self) -> Result<(), LimitError> {
        self.check()
            .map_err(|(field, message)| LimitError::Invalid { field, message })
    }

    fn check(&self) -> Result<(), (String, String)> {
        if self.period_ms == 0 || self.period_ms > 1000 {
            return Err((
                "period_ms".into(),
                format!("must be 1..=1000, got {}", self.period_ms),
            ));
        }
        if !(self.rest_current_a.is_finite() && self.rest_current_a >= 0.0) {
            return Err(("rest_current_a".into(), "must be finite and >= 0".into()));
        }
        if !(2..=1000).contains(&self.supervision_periods) {
            return Err((
                "supervision_periods".into(),
                format!(
                    "must be 2..=1000 (one late period is not a dead thread), got {}",
                    self.supervision_periods
                ),
            ));
        }
        if self.watchdog_periods < 2 {
            return Err((
                "watchdog_periods".into(),
                "must be >= 2 (one late period is not a dead thread)".into(),
            ));
        }
        for (name, q, tiers, dir) in self.tiered() {
            if q.row().tiering == crate::table::Tiering::Three {
                if let Some(level) = TierLevel::ALL.into_iter().find(|l| tiers.get(*l).is_none()) {
                    return Err((
                        format!("{name}.{}", level.key()),
                        "missing: every quantity has MOL, RSL and MSL (the exceptions are listed in SAFETY.md)".into(),
                    ));
                }
            }
            validate_tiers(name, &tiers, dir)?;
        }
        let uv_msl = self.cell_under_voltage_v.msl.map(|t| t.limit);
        if let Some(uv) = uv_msl {
            if self.cell_deep_under_voltage_v.limit >= uv {
                return Err((
                    "cell_deep_under_voltage_v.limit".into(),
                    format!("must be below cell_under_voltage_v.msl.limit ({uv})"),
                ));
            }
        }
        if let (Some(ov), Some(uv)) = (self.cell_over_voltage_v.mol, self.cell_under_voltage_v.mol)
        {
            if uv.limit >= ov.limit {
                return Err((
                    "cell_under_voltage_v.mol.limit".into(),
                    format!("must be below cell_over_voltage_v.mol.limit ({})", ov.limit),
                ));
            }
        }
        let d = &self.derating;
        for (f, v) in [
            ("derating.max_charge_current_a", d.max_charge_current_a),
            (
                "derating.max_discharge_current_a",
                d.max_discharge_current_a,
            ),
            ("derating.ramp_up_a_per_s", d.ramp_up_a_per_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err((f.into(), format!("must be a finite number > 0, got {v}")));
            }
        }
        d.charge_vs_cell_voltage_v
            .validate("derating.charge_vs_cell_voltage_v", Some(false))?;
        d.discharge_vs_cell_voltage_v
            .validate("derating.discharge_vs_cell_voltage_v", Some(true))?;
        d.charge_vs_temp_c
            .validate("derating.charge_vs_temp_c", None)?;
        d.discharge_vs_temp_c
            .validate("derating.discharge_vs_temp_c", None)?;
        d.charge_vs_soc_pct
            .validate("derating.charge_vs_soc_pct", Some(false))?;
        d.discharge_vs_soc_pct
            .validate("derating.discharge_vs_soc_pct", Some(true))?;
        // A rating above the over-current RSL would let the PCS be told a
        // current that protection itself stops.
        for (f, rating, tiers, key) in [
            (
                "derating.max_charge_current_a",
                d.max_charge_current_a,
                self.charge_over_current_a,
                "charge_over_current_a",
            ),
            (
                "derating.max_discharge_current_a",
                d.max_discharge_current_a,
                self.discharge_over_current_a,
                "discharge_over_current_a",
            ),
        ] {
            if let Some(rsl) = tiers.rsl.filter(|t| rating > t.limit) {
                return Err((
                    f.into(),
                    format!("{rating} A is above {key}.rsl.limit ({} A)", rsl.limit),
                ));
            }
        }
        let rest_max_a = 0.1 * d.max_charge_current_a.min(d.max_discharge_current_a);
        if self.rest_current_a > rest_max_a {
            return Err((
                "rest_current_a".into(),
                format!(
                    "{} A is not a rest: at most 10 % of the smaller rating ({rest_max_a} A)",
                    self.rest_current_a
                ),
            ));
        }
        let p = &self.plausibility;
        for (f, r) in [
            ("plausibility.cell_voltage_range_v", p.cell_voltage_range_v),
            ("plausibility.temp_range_c", p.temp_range_c),
            ("plausibility.current_range_a", p.current_range_a),
            ("plausibility.pack_voltage_range_v", p.pack_voltage_range_v),
            ("plausibility.link_voltage_range_v", p.link_voltage_range_v),
        ] {
            if !(r[0].is_finite() && r[1].is_finite() && r[0] < r[1]) {
                return Err((
                    f.into(),
                    format!("must be [low, high] with low < high, got {r:?}"),
                ));
            }
        }
        if p.range_delay_ms == 0 {
            return Err(("plausibility.range_delay_ms".into(), "must be > 0".into()));
        }
        for (f, v, max) in [
            (
                "plausibility.range_delay_ms",
                p.range_delay_ms,
                MAX_CHECK_MS,
            ),
            (
                "plausibility.current_frozen_ms",
                p.current_frozen_ms,
                MAX_DELAY_MS,
            ),
            (
                "contactors.precharge_timeout_ms",
                self.contactors.precharge_timeout_ms,
                MAX_DELAY_MS,
            ),
            (
                "contactors.open_timeout_ms",
                self.contactors.open_timeout_ms,
                MAX_CHECK_MS,
            ),
            (
                "contactors.reclose_delay_ms",
                self.contactors.reclose_delay_ms,
                3_600_000,
            ),
            (
                "soc.disagreement_pct.delay_ms",
                self.soc.disagreement_pct.delay_ms,
                600_000,
            ),
        ] {
            if v > max {
                return Err((
                    f.into(),
                    format!("{v} ms is beyond the sane bound of {max} ms"),
                ));
            }
        }
        if !self.balancing.max_temp_c.is_finite() {
            return Err(("balancing.max_temp_c".into(), "must be finite".into()));
        }
        self.soc
            .validate()
            .map_err(|(f, m)| (format!("soc.{f}"), m))?;
        let c = &self.contactors;
        if !(c.precharge_fraction > 0.0 && c.precharge_fraction < 1.0) {
            return Err((
                "contactors.precharge_fraction".into(),
                format!("must be in (0, 1), got {}", c.precharge_fraction),
            ));
        }
        if !(c.weld_voltage_fraction > 0.0 && c.weld_voltage_fraction < 1.0) {
            return Err((
                "contactors.weld_voltage_fraction".into(),
                format!("must be in (0, 1), got {}", c.weld_voltage_fraction),
            ));
        }
        if !(c.weld_current_a.is_finite() && c.weld_current_a > 0.0) {
            return Err(("contactors.weld_current_a".into(), "must be > 0".into()));
        }
        for (f, v) in [
            ("contactors.precharge_timeout_ms", c.precharge_timeout_ms),
            ("contactors.open_timeout_ms", c.open_timeout_ms),
            // Zero would let a fault that clears at once chatter the
            // contactors open and closed every period.
            ("contactors.reclose_delay_ms", c.reclose_delay_ms),
        ] {
            if v == 0 {
                return Err((f.into(), "must be > 0".into()));
            }
        }
        Ok(())
    }
}

/// Longest debounce a tier (or a supervision) may have, ms.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Longest time a plausibility or contactor check may take to act, ms.
pub const MAX_CHECK_MS: u64 = 10_000;

fn validate_tiers(name: &str, t: &Tiers, dir: Direction) -> Result<(), (String, String)> {
    let present: Vec<(TierLevel, Tier)> = TierLevel::ALL
        .iter()
        .filter_map(|l| t.get(*l).map(|x| (*l, *x)))
        .collect();
    if present.is_empty() {
        return Err((name.into(), "needs at least one of mol, rsl, msl".into()));
    }
    for (level, tier) in &present {
        let f = |k: &str| format!("{name}.{}.{k}", level.key());
        if !tier.limit.is_finite() {
            return Err((f("limit"), "must be finite".into()));
        }
        if tier.delay_ms == 0 {
            return Err((f("delay_ms"), "must be > 0 (a debounce delay)".into()));
        }
        if tier.delay_ms > MAX_DELAY_MS {
            return Err((
                f("delay_ms"),
                format!(
                    "{} ms is beyond the sane bound of {MAX_DELAY_MS} ms: a tier that waits longer protects nothing",
                    tier.delay_ms
                ),
            ));
        }
        if !(tier.hysteresis.is_finite() && tier.hysteresis >= 0.0) {
            return Err((
                f("hysteresis"),
                format!("must be >= 0, got {}", tier.hysteresis),
            ));
        }
    }
    // MOL inside RSL inside MSL.
    for pair in present.windows(2) {
        let ((la, a), (lb, b)) = (pair[0], pair[1]);
        let ordered = match dir {
            Direction::Above => a.limit <= b.limit,
            Direction::Below => a.limit >= b.limit,
        };
        if !ordered {
            let rel = if dir == Direction::Above {
                "above"
            } else {
                "below"
            };
            return Err((
                format!("{name}.{}.limit", lb.key()),
                format!(
                    "{} ({}) must be at or {rel} {} ({}): tiers must nest MOL inside RSL inside MSL",
                    lb.key(),
                    b.limit,
                    la.key(),
                    a.limit
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(limit: f32) -> Option<Tier> {
        Some(Tier {
            limit,
            delay_ms: 100,
            hysteresis: 0.01,
        })
    }

    #[test]
    fn tiers_must_nest_in_the_trip_direction() {
        let t = Tiers {
            mol: tier(3.55),
            rsl: tier(3.60),
            msl: tier(3.65),
        };
        assert!(validate_tiers("ov", &t, Direction::Above).is_ok());
        let (field, msg) = validate_tiers(
            "ov",
            &Tiers {
                rsl: tier(3.70),
                ..t
            },
            Direction::Above,
        )
        .unwrap_err();
        assert_eq!(field, "ov.msl.limit", "{msg}");
        let t = Tiers {
            mol: tier(2.9),
            rsl: tier(2.8),
            msl: tier(2.5),
        };
        assert!(validate_tiers("uv", &t, Direction::Below).is_ok());
        let (field, _) = validate_tiers(
            "uv",
            &Tiers {
                mol: tier(2.7),
                ..t
            },
            Direction::Below,
        )
        .unwrap_err();
        assert_eq!(field, "uv.rsl.limit");
        let (field, _) = validate_tiers("uv", &Tiers::default(), Direction::Below).unwrap_err();
        assert_eq!(field, "uv");
    }

    #[test]
    fn zero_delay_and_negative_hysteresis_are_rejected() {
        let bad = Tiers {
            msl: Some(Tier {
                limit: 1.0,
                delay_ms: 0,
                hysteresis: 0.0,
            }),
            ..Default::default()
        };
        assert_eq!(
            validate_tiers("q", &bad, Direction::Above).unwrap_err().0,
            "q.msl.delay_ms"
        );
        let bad = Tiers {
            msl: Some(Tier {
                limit: 1.0,
                delay_ms: 5,
                hysteresis: -1.0,
            }),
            ..Default::default()
        };
        assert_eq!(
            validate_tiers("q", &bad, Direction::Above).unwrap_err().0,
            "q.msl.hysteresis"
        );
    }

    #[test]
    fn curves_interpolate_and_check_monotonicity() {
        let c = Curve(vec![[3.4, 280.0], [3.6, 0.0]]);
        assert_eq!(c.eval(3.0), 280.0);
        assert!((c.eval(3.5) - 140.0).abs() < 1e-3);
        assert_eq!(c.eval(4.0), 0.0);
        assert_eq!(c.eval(f32::NAN), 0.0);
        assert!(c.validate("c", Some(false)).is_ok());
        let (field, _) = c.validate("c", Some(true)).unwrap_err();
        assert_eq!(field, "c[1]");
        let (field, _) = Curve(vec![[1.0, 1.0], [1.0, 1.0]])
            .validate("c", None)
            .unwrap_err();
        assert_eq!(field, "c[1]");
    }
}
