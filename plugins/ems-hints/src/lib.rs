//! EMS hints: a recommended charge / discharge power from a SOC window and
//! a time-of-use schedule.
//!
//! Each cycle the plugin looks up the schedule period that contains
//! `minute_of_day` (or falls back to `default_action`) and then:
//!
//! - `charge`: `+charge_power_w` while pack SOC < `soc_max_pct`;
//! - `discharge`: `-discharge_power_w` while pack SOC > `soc_min_pct`;
//! - `idle`: 0 W.
//!
//! Within `taper_pct` of the window edge being approached, the power falls
//! linearly to 0 at the edge, so the hint does not bang between full power
//! and zero around the boundary. The approach to the edge is therefore
//! asymptotic; set `taper_pct` to 0 for a hard stop. The result is capped
//! by the protection limits in the input: the host clamps anyway, but the
//! hint and its reason should tell the truth.
//!
//! Periods are `[start, end)` in local time, `"HH:MM"`; a period whose end
//! is not after its start wraps midnight (`22:00`–`06:00`). `"24:00"` is
//! accepted as an end time. Periods must not overlap.
//!
//! Stateless and deterministic: the output depends on the input only.

use bms_plugin_sdk::prelude::*;
use serde::Deserialize;

const MINUTES_PER_DAY: u32 = 24 * 60;

/// What a schedule period asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Charge,
    Discharge,
    Idle,
}

/// One time-of-use period as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodConfig {
    /// Shown in the hint's reason, e.g. `off-peak`.
    pub name: String,
    /// Local start time `"HH:MM"`, inclusive.
    pub start: String,
    /// Local end time `"HH:MM"`, exclusive; `"24:00"` allowed.
    pub end: String,
    pub action: Action,
}

/// The plugin's config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Never discharge at or below this pack SOC, in %.
    pub soc_min_pct: f32,
    /// Never charge at or above this pack SOC, in %.
    pub soc_max_pct: f32,
    /// Charge power at full rate, in W (> 0).
    pub charge_power_w: f32,
    /// Discharge power magnitude at full rate, in W (> 0).
    pub discharge_power_w: f32,
    #[serde(default)]
    pub periods: Vec<PeriodConfig>,
    /// Action outside every period.
    #[serde(default = "default_action")]
    pub default_action: Action,
    /// Width of the linear power taper at the window edges, in % SOC.
    #[serde(default = "default_taper_pct")]
    pub taper_pct: f32,
}

fn default_action() -> Action {
    Action::Idle
}

fn default_taper_pct() -> f32 {
    5.0
}

/// A validated period in minutes since midnight.
#[derive(Debug, Clone)]
struct Period {
    name: String,
    start_min: u32,
    /// `1..=1440`; `<= start_min` means the period wraps midnight.
    end_min: u32,
    action: Action,
}

impl Period {
    fn contains(&self, minute: u32) -> bool {
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }

    /// The period as at most two non-wrapping `[start, end)` ranges.
    fn ranges(&self) -> Vec<(u32, u32)> {
        if self.start_min < self.end_min {
            vec![(self.start_min, self.end_min)]
        } else {
            let mut r = vec![(self.start_min, MINUTES_PER_DAY)];
            if self.end_min > 0 {
                r.push((0, self.end_min));
            }
            r
        }
    }
}

/// Format minutes since midnight as `HH:MM`.
fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Parse `"HH:MM"` (one or two hour digits, two minute digits) into
/// minutes since midnight. `"24:00"` only where `allow_end_of_day`.
fn parse_hhmm(s: &str, allow_end_of_day: bool) -> Result<u32, String> {
    let (h, m) = s.split_once(':').ok_or("expected HH:MM")?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err("expected HH:MM".into());
    }
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| "expected HH:MM")?,
        m.parse().map_err(|_| "expected HH:MM")?,
    );
    if m > 59 {
        return Err("minutes must be 00..59".into());
    }
    if h == 24 && m == 0 {
        return if allow_end_of_day {
            Ok(MINUTES_PER_DAY)
        } else {
            Err("24:00 is only allowed as an end time; use 00:00".into())
        };
    }
    if h > 23 {
        return Err("hours must be 00..23".into());
    }
    Ok(h * 60 + m)
}

/// Validate one configured period; errors name its index and field.
fn parse_period(index: usize, p: &PeriodConfig) -> Result<Period, String> {
    if p.name.trim().is_empty() {
        return Err(format!("periods[{index}].name must not be empty"));
    }
    let time = |field: &str, value: &str, end: bool| {
        parse_hhmm(value, end).map_err(|why| {
            format!(
                "periods[{index}].{field} (period \"{}\"): invalid time \"{value}\": {why}",
                p.name
            )
        })
    };
    let start_min = time("start", &p.start, false)?;
    let end_min = time("end", &p.end, true)?;
    // 00:00-24:00 is the whole day; equal start and end is ambiguous.
    if start_min == end_min {
        return Err(format!(
            "periods[{index}] (period \"{}\"): start and end are both {}; a period must not be \
             empty (for a whole day use 00:00-24:00 or default_action)",
            p.name, p.start
        ));
    }
    Ok(Period {
        name: p.name.clone(),
        start_min,
        end_min,
        action: p.action,
    })
}

/// Linear taper: 1 at `taper_pct` or more from the edge, 0 at the edge.
fn taper(distance_pct: f32, taper_pct: f32) -> f32 {
    if taper_pct > 0.0 {
        (distance_pct / taper_pct).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// A protection power limit as a usable cap: NaN means unknown, so 0.
fn cap_w(limit_w: f32) -> f32 {
    if limit_w.is_nan() {
        0.0
    } else {
        limit_w.max(0.0)
    }
}

/// Time-of-use and SOC-window EMS advisor.
#[derive(Debug)]
pub struct EmsHints {
    soc_min_pct: f32,
    soc_max_pct: f32,
    charge_power_w: f32,
    discharge_power_w: f32,
    periods: Vec<Period>,
    default_action: Action,
    taper_pct: f32,
}

impl Plugin for EmsHints {
    type Config = Config;

    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }

    fn init(c: Config) -> Result<Self, String> {
        for (name, v) in [
            ("soc_min_pct", c.soc_min_pct),
            ("soc_max_pct", c.soc_max_pct),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{name} must be within 0..=100 (got {v})"));
            }
        }
        if c.soc_min_pct >= c.soc_max_pct {
            return Err(format!(
                "soc_min_pct must be < soc_max_pct (got {} >= {})",
                c.soc_min_pct, c.soc_max_pct
            ));
        }
        for (name, v) in [
            ("charge_power_w", c.charge_power_w),
            ("discharge_power_w", c.discharge_power_w),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(format!("{name} must be > 0 (got {v})"));
            }
        }
        let window_pct = c.soc_max_pct - c.soc_min_pct;
        if !c.taper_pct.is_finite() || c.taper_pct < 0.0 {
            return Err(format!("taper_pct must be >= 0 (got {})", c.taper_pct));
        }
        if c.taper_pct > window_pct {
            return Err(format!(
                "taper_pct must be <= soc_max_pct - soc_min_pct (got {} > {window_pct})",
                c.taper_pct
            ));
        }

        let periods = c
            .periods
            .iter()
            .enumerate()
            .map(|(i, p)| parse_period(i, p))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in periods.iter().enumerate() {
            for (j, b) in periods.iter().enumerate().skip(i + 1) {
                let overlap = a
                    .ranges()
                    .iter()
                    .any(|&(a0, a1)| b.ranges().iter().any(|&(b0, b1)| a0 < b1 && b0 < a1));
                if overlap {
                    return Err(format!(
                        "periods[{i}] (\"{}\" {}-{}) overlaps periods[{j}] (\"{}\" {}-{})",
                        a.name,
                        hhmm(a.start_min),
                        hhmm(a.end_min),
                        b.name,
                        hhmm(b.start_min),
                        hhmm(b.end_min),
                    ));
                }
            }
        }

        Ok(Self {
            soc_min_pct: c.soc_min_pct,
            soc_max_pct: c.soc_max_pct,
            charge_power_w: c.charge_power_w,
            discharge_power_w: c.discharge_power_w,
            periods,
            default_action: c.default_action,
            taper_pct: c.taper_pct,
        })
    }
}

impl EmsHints {
    /// Power (signed) and the reason after the period label.
    fn advise(&self, action: Action, soc_pct: f32, input: &EmsInput) -> (f32, String) {
        let charge = match action {
            Action::Idle => return (0.0, "idle".into()),
            Action::Charge => true,
            Action::Discharge => false,
        };
        if !soc_pct.is_finite() {
            return (0.0, "pack SOC unavailable, idle".into());
        }
        let (verb, target_pct, magnitude_w, distance_pct, cap) = if charge {
            if soc_pct >= self.soc_max_pct {
                return (0.0, format!("SOC at window maximum {}%", self.soc_max_pct));
            }
            let cap = cap_w(input.limits.max_charge_power_w);
            (
                "charge",
                self.soc_max_pct,
                self.charge_power_w,
                self.soc_max_pct - soc_pct,
                cap,
            )
        } else {
            if soc_pct <= self.soc_min_pct {
                return (0.0, format!("SOC at window minimum {}%", self.soc_min_pct));
            }
            let cap = cap_w(input.limits.max_discharge_power_w);
            (
                "discharge",
                self.soc_min_pct,
                self.discharge_power_w,
                soc_pct - self.soc_min_pct,
                cap,
            )
        };
        let factor = taper(distance_pct, self.taper_pct);
        let mut power_w = magnitude_w * factor;
        let mut reason = format!("{verb} to {target_pct}%");
        if factor < 1.0 {
            reason.push_str(", tapered near the window edge");
        }
        if power_w > cap {
            power_w = cap;
            reason.push_str(&format!(", limited by protection to {cap} W"));
        }
        (if charge { power_w } else { -power_w }, reason)
    }
}

impl EmsAdvisor for EmsHints {
    fn step(&mut self, input: &EmsInput) -> Result<EmsOutput, String> {
        // The contract says 0..1440; wrap anything else instead of failing.
        let minute = input.minute_of_day % MINUTES_PER_DAY;
        let (label, action) = match self.periods.iter().find(|p| p.contains(minute)) {
            Some(p) => (p.name.as_str(), p.action),
            None => ("no period", self.default_action),
        };
        let (power_w, why) = self.advise(action, input.soc.pack_soc_pct, input);
        Ok(EmsOutput {
            power_w: if power_w.is_finite() { power_w } else { 0.0 },
            reason: format!("{label}: {why}"),
        })
    }
}

bms_plugin_sdk::export_ems_advisor!(EmsHints);

#[cfg(test)]
mod tests {
    use super::*;
    use bms_plugin_sdk::harness::Harness;

    const CONFIG: &str = r#"{
        "soc_min_pct": 10, "soc_max_pct": 90,
        "charge_power_w": 50000, "discharge_power_w": 40000,
        "periods": [
            {"name": "off-peak", "start": "22:00", "end": "06:00", "action": "charge"},
            {"name": "midday", "start": "11:00", "end": "14:00", "action": "idle"},
            {"name": "peak", "start": "17:00", "end": "21:00", "action": "discharge"}
        ]
    }"#;

    fn at(h: u32, m: u32, soc_pct: f32) -> EmsInput {
        EmsInput {
            snapshot: PackSnapshot::uniform(0, 4, 4, 3.3, 25.0, 0.0),
            soc: SocOutput {
                cell_soc_pct: vec![soc_pct; 4],
                pack_soc_pct: soc_pct,
            },
            soh: SohOutput {
                pack_soh_pct: 100.0,
                cell_capacity_ah: vec![280.0; 4],
                cell_resistance_mohm: vec![0.3; 4],
            },
            limits: ProtectionLimits {
                max_charge_current_a: 200.0,
                max_discharge_current_a: 200.0,
                max_charge_power_w: 1e6,
                max_discharge_power_w: 1e6,
                cell_min_voltage_v: 2.8,
                cell_max_voltage_v: 3.6,
            },
            minute_of_day: h * 60 + m,
        }
    }

    fn hints() -> Harness<EmsHints> {
        Harness::new(CONFIG).unwrap()
    }

    fn power(h: &mut Harness<EmsHints>, i: &EmsInput) -> f32 {
        h.step(i).unwrap().power_w
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 0.5
    }

    fn init_err(json: &str) -> String {
        match Harness::<EmsHints>::new(json) {
            Ok(_) => panic!("config was accepted: {json}"),
            Err(e) => e,
        }
    }

    /// CONFIG with its periods replaced.
    fn with_periods(periods: &str) -> String {
        format!(
            r#"{{"soc_min_pct": 10, "soc_max_pct": 90, "charge_power_w": 50000,
                "discharge_power_w": 40000, "periods": {periods}}}"#
        )
    }

    #[test]
    fn info_comes_from_cargo_toml() {
        let i = EmsHints::info();
        assert_eq!(i.name, "ems-hints");
        assert!(!i.description.is_empty());
    }

    #[test]
    fn each_period_action() {
        let mut h = hints();
        let out = h.step(&at(2, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, 50000.0);
        assert_eq!(out.reason, "off-peak: charge to 90%");

        let out = h.step(&at(18, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, -40000.0);
        assert_eq!(out.reason, "peak: discharge to 10%");

        let out = h.step(&at(12, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, 0.0);
        assert_eq!(out.reason, "midday: idle");

        let out = h.step(&at(8, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, 0.0);
        assert_eq!(out.reason, "no period: idle");
    }

    #[test]
    fn default_action_applies_outside_periods() {
        let cfg = CONFIG.replacen('{', r#"{"default_action": "charge","#, 1);
        let mut h = Harness::<EmsHints>::new(&cfg).unwrap();
        let out = h.step(&at(8, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, 50000.0);
        assert_eq!(out.reason, "no period: charge to 90%");
        // Periods still win.
        assert_eq!(power(&mut h, &at(18, 0, 50.0)), -40000.0);
    }

    #[test]
    fn periods_wrap_midnight_and_are_start_inclusive_end_exclusive() {
        let mut h = hints();
        for (hh, mm) in [(22, 0), (23, 59), (0, 0), (3, 30), (5, 59)] {
            assert_eq!(power(&mut h, &at(hh, mm, 50.0)), 50000.0, "{hh}:{mm}");
        }
        for (hh, mm) in [(6, 0), (21, 59), (10, 59), (14, 0)] {
            assert_eq!(power(&mut h, &at(hh, mm, 50.0)), 0.0, "{hh}:{mm}");
        }
        assert_eq!(power(&mut h, &at(17, 0, 50.0)), -40000.0);
        assert_eq!(power(&mut h, &at(20, 59, 50.0)), -40000.0);
        assert_eq!(power(&mut h, &at(21, 0, 50.0)), 0.0);
    }

    #[test]
    fn end_of_day_and_adjacent_periods() {
        let mut h = Harness::<EmsHints>::new(&with_periods(
            r#"[{"name": "evening", "start": "18:00", "end": "24:00", "action": "discharge"},
                {"name": "night", "start": "00:00", "end": "06:00", "action": "charge"},
                {"name": "morning", "start": "06:00", "end": "18:00", "action": "idle"}]"#,
        ))
        .unwrap();
        assert_eq!(power(&mut h, &at(23, 59, 50.0)), -40000.0);
        assert_eq!(power(&mut h, &at(0, 0, 50.0)), 50000.0);
        assert_eq!(h.step(&at(6, 0, 50.0)).unwrap().reason, "morning: idle");
    }

    #[test]
    fn soc_window_stops_charge_and_discharge() {
        let mut h = hints();
        for soc in [90.0, 95.0, 100.0] {
            let out = h.step(&at(2, 0, soc)).unwrap();
            assert_eq!(out.power_w, 0.0);
            assert_eq!(out.reason, "off-peak: SOC at window maximum 90%");
        }
        for soc in [10.0, 5.0, 0.0] {
            let out = h.step(&at(18, 0, soc)).unwrap();
            assert_eq!(out.power_w, 0.0);
            assert_eq!(out.reason, "peak: SOC at window minimum 10%");
        }
        // Outside the window on the other side: full power back into it.
        assert_eq!(power(&mut h, &at(2, 0, 5.0)), 50000.0);
        assert_eq!(power(&mut h, &at(18, 0, 95.0)), -40000.0);
    }

    #[test]
    fn power_tapers_linearly_near_the_edge() {
        let mut h = hints();
        assert_eq!(power(&mut h, &at(2, 0, 85.0)), 50000.0);
        assert!(close(power(&mut h, &at(2, 0, 87.5)), 25000.0));
        assert!(close(power(&mut h, &at(2, 0, 89.0)), 10000.0));
        let out = h.step(&at(2, 0, 89.0)).unwrap();
        assert!(out.reason.contains("tapered"), "{}", out.reason);

        assert_eq!(power(&mut h, &at(18, 0, 15.0)), -40000.0);
        assert!(close(power(&mut h, &at(18, 0, 12.5)), -20000.0));
        assert!(close(power(&mut h, &at(18, 0, 11.0)), -8000.0));

        // Monotonic approach to the edge, no jump.
        let mut last = f32::INFINITY;
        for k in 0..=100 {
            let p = power(&mut h, &at(2, 0, 80.0 + k as f32 * 0.1));
            assert!(p <= last && p >= 0.0);
            last = p;
        }
        assert_eq!(last, 0.0);

        // taper_pct = 0: full power right up to the edge.
        let cfg = CONFIG.replacen('{', r#"{"taper_pct": 0,"#, 1);
        let mut h = Harness::<EmsHints>::new(&cfg).unwrap();
        assert_eq!(power(&mut h, &at(2, 0, 89.9)), 50000.0);
        assert_eq!(power(&mut h, &at(18, 0, 10.1)), -40000.0);
    }

    #[test]
    fn protection_limits_cap_the_hint() {
        let mut h = hints();
        let mut i = at(2, 0, 50.0);
        i.limits.max_charge_power_w = 20000.0;
        let out = h.step(&i).unwrap();
        assert_eq!(out.power_w, 20000.0);
        assert!(
            out.reason.contains("limited by protection"),
            "{}",
            out.reason
        );

        let mut i = at(18, 0, 50.0);
        i.limits.max_discharge_power_w = 10000.0;
        assert_eq!(power(&mut h, &i), -10000.0);

        // A taper below the limit is not reported as limited.
        let mut i = at(2, 0, 89.0);
        i.limits.max_charge_power_w = 20000.0;
        let out = h.step(&i).unwrap();
        assert!(close(out.power_w, 10000.0));
        assert!(!out.reason.contains("limited"));

        // Unknown or nonsensical limits give no power, never NaN.
        for lim in [f32::NAN, -5.0, 0.0] {
            let mut i = at(2, 0, 50.0);
            i.limits.max_charge_power_w = lim;
            assert_eq!(power(&mut h, &i), 0.0);
            let mut i = at(18, 0, 50.0);
            i.limits.max_discharge_power_w = lim;
            assert_eq!(power(&mut h, &i), 0.0);
        }
        let mut i = at(2, 0, 50.0);
        i.limits.max_charge_power_w = f32::INFINITY;
        assert_eq!(power(&mut h, &i), 50000.0);
    }

    #[test]
    fn odd_inputs_never_fail() {
        let mut h = hints();
        let out = h.step(&at(2, 0, f32::NAN)).unwrap();
        assert_eq!(out.power_w, 0.0);
        assert_eq!(out.reason, "off-peak: pack SOC unavailable, idle");
        assert_eq!(power(&mut h, &at(18, 0, f32::INFINITY)), 0.0);
        // Out-of-contract minute wraps: 1440 + 120 is 02:00.
        let mut i = at(2, 0, 50.0);
        i.minute_of_day = 1440 + 120;
        assert_eq!(power(&mut h, &i), 50000.0);
        i.minute_of_day = u32::MAX;
        assert!(h.step(&i).unwrap().power_w.is_finite());
        // Empty lists in the input do not matter.
        let mut i = at(18, 0, 50.0);
        i.snapshot = PackSnapshot::uniform(0, 0, 0, 0.0, 0.0, 0.0);
        i.soc.cell_soc_pct.clear();
        i.soh.cell_capacity_ah.clear();
        assert_eq!(power(&mut h, &i), -40000.0);
    }

    #[test]
    fn stateless_and_deterministic() {
        let mut h = hints();
        let a = h.step(&at(23, 0, 70.0)).unwrap();
        h.reload().unwrap();
        let b = h.step(&at(23, 0, 70.0)).unwrap();
        assert_eq!(a, b);
        assert!(h.save_state().is_empty());
    }

    #[test]
    fn no_periods_means_default_action_all_day() {
        let mut h = Harness::<EmsHints>::new(
            r#"{"soc_min_pct": 20, "soc_max_pct": 80, "charge_power_w": 1000,
                "discharge_power_w": 1000, "default_action": "discharge"}"#,
        )
        .unwrap();
        let out = h.step(&at(12, 0, 50.0)).unwrap();
        assert_eq!(out.power_w, -1000.0);
        assert_eq!(out.reason, "no period: discharge to 20%");
    }

    #[test]
    fn bad_times_name_the_period_and_field() {
        let e = init_err(&with_periods(
            r#"[{"name": "a", "start": "01:00", "end": "02:00", "action": "idle"},
                {"name": "b", "start": "25:00", "end": "26:00", "action": "charge"}]"#,
        ));
        assert!(e.contains("periods[1].start"), "{e}");
        assert!(e.contains("\"25:00\""), "{e}");

        for (bad, why) in [
            ("12:60", "minutes"),
            ("7:5", "HH:MM"),
            ("ab:cd", "HH:MM"),
            ("1200", "HH:MM"),
            ("", "HH:MM"),
            ("-1:00", "HH:MM"),
            ("+1:00", "HH:MM"),
            ("24:30", "hours"),
        ] {
            let e = init_err(&with_periods(&format!(
                r#"[{{"name": "x", "start": "01:00", "end": "{bad}", "action": "idle"}}]"#
            )));
            assert!(
                e.contains("periods[0].end") && e.contains(why),
                "{bad}: {e}"
            );
        }
        let e = init_err(&with_periods(
            r#"[{"name": "x", "start": "24:00", "end": "02:00", "action": "idle"}]"#,
        ));
        assert!(
            e.contains("periods[0].start") && e.contains("end time"),
            "{e}"
        );
        let e = init_err(&with_periods(
            r#"[{"name": "x", "start": "06:00", "end": "06:00", "action": "idle"}]"#,
        ));
        assert!(e.contains("periods[0]") && e.contains("empty"), "{e}");
        let e = init_err(&with_periods(
            r#"[{"name": " ", "start": "06:00", "end": "07:00", "action": "idle"}]"#,
        ));
        assert!(e.contains("periods[0].name"), "{e}");
    }

    #[test]
    fn overlapping_periods_are_rejected() {
        let e = init_err(&with_periods(
            r#"[{"name": "night", "start": "22:00", "end": "06:00", "action": "charge"},
                {"name": "noon", "start": "11:00", "end": "13:00", "action": "idle"},
                {"name": "morning", "start": "05:00", "end": "07:00", "action": "discharge"}]"#,
        ));
        assert!(e.contains("periods[0]") && e.contains("periods[2]"), "{e}");
        assert!(e.contains("night") && e.contains("morning"), "{e}");

        let e = init_err(&with_periods(
            r#"[{"name": "a", "start": "10:00", "end": "12:00", "action": "charge"},
                {"name": "b", "start": "11:59", "end": "13:00", "action": "idle"}]"#,
        ));
        assert!(e.contains("periods[0]") && e.contains("periods[1]"), "{e}");

        // Two wrapping periods always overlap at midnight.
        let e = init_err(&with_periods(
            r#"[{"name": "a", "start": "23:00", "end": "01:00", "action": "charge"},
                {"name": "b", "start": "23:30", "end": "00:30", "action": "idle"}]"#,
        ));
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let base = |extra: &str| {
            format!(
                r#"{{"soc_min_pct": 10, "soc_max_pct": 90, "charge_power_w": 1000,
                    "discharge_power_w": 1000{extra}}}"#
            )
        };
        let e = init_err(
            r#"{"soc_min_pct": 90, "soc_max_pct": 90, "charge_power_w": 1, "discharge_power_w": 1}"#,
        );
        assert_eq!(e, "soc_min_pct must be < soc_max_pct (got 90 >= 90)");
        let e = init_err(
            r#"{"soc_min_pct": 95, "soc_max_pct": 90, "charge_power_w": 1, "discharge_power_w": 1}"#,
        );
        assert!(e.contains("soc_min_pct must be < soc_max_pct"), "{e}");
        let e = init_err(
            r#"{"soc_min_pct": -1, "soc_max_pct": 90, "charge_power_w": 1, "discharge_power_w": 1}"#,
        );
        assert!(e.contains("soc_min_pct"), "{e}");
        let e = init_err(
            r#"{"soc_min_pct": 10, "soc_max_pct": 101, "charge_power_w": 1, "discharge_power_w": 1}"#,
        );
        assert!(e.contains("soc_max_pct"), "{e}");
        let e = init_err(
            r#"{"soc_min_pct": 10, "soc_max_pct": 90, "charge_power_w": 0, "discharge_power_w": 1}"#,
        );
        assert!(e.contains("charge_power_w must be > 0"), "{e}");
        let e = init_err(
            r#"{"soc_min_pct": 10, "soc_max_pct": 90, "charge_power_w": 1, "discharge_power_w": -5}"#,
        );
        assert!(e.contains("discharge_power_w must be > 0"), "{e}");
        let e = init_err(&base(r#", "taper_pct": -1"#));
        assert!(e.contains("taper_pct"), "{e}");
        let e = init_err(&base(r#", "taper_pct": 81"#));
        assert!(e.contains("taper_pct"), "{e}");
        let e = init_err(&base(r#", "tapr_pct": 5"#));
        assert!(e.contains("unknown field `tapr_pct`"), "{e}");
        let e = init_err(&base(
            r#", "periods": [{"name": "a", "start": "01:00", "end": "02:00", "action": "charge", "power_w": 5}]"#,
        ));
        assert!(
            e.contains("periods[0]") && e.contains("unknown field `power_w`"),
            "{e}"
        );
        let e = init_err(&base(
            r#", "periods": [{"name": "a", "start": "01:00", "end": "02:00", "action": "charging"}]"#,
        ));
        assert!(e.contains("periods[0].action"), "{e}");
        let e = init_err(&base(r#", "default_action": "sleep""#));
        assert!(e.contains("default_action"), "{e}");
        let e = init_err(r#"{"soc_min_pct": 10, "soc_max_pct": 90, "charge_power_w": 1}"#);
        assert!(e.contains("discharge_power_w"), "{e}");
    }
}
