//! Protection engine tests. The limits are the shipped demo site's
//! (`configs/demo-site.toml`), so these also check the shipped table.
//!
//! - every quantity × tier × direction: debounce timing, action, release
//!   hysteresis (`every_tier_of_every_quantity…`);
//! - latching, reset, persistence, communication, plausibility, welding;
//! - property tests: limits never exceeded, never closed while latched,
//!   never bleeding outside the window.

use std::path::Path;

use proptest::prelude::*;

use super::clamp::Clamp;
use super::contactor::ContactorState;
use super::events::{EventKind, EventRecord, EventSink, MemoryLog};
use super::limits::{Direction, TierLevel};
use super::table::Blocks;
use super::*;
use crate::snapshot::{CommStatus, PackSnapshot};

/// An in-memory event log (the host's durable one is tested in bmshost).
struct EventLog;

impl EventLog {
    fn memory() -> MemoryLog {
        MemoryLog::new()
    }
}

const PERIOD: u64 = 10;
const CELLS: usize = 8;
const PER_MODULE: u32 = 4;
/// The cell under test: module 1, cell 2.
const CELL: usize = 6;

/// The shipped demo site's `[protection]` table, with its OCV include
/// resolved and the rack's capacity, as the host's config loader does.
pub(crate) fn cfg() -> ProtectionConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let site: toml::Table = toml::from_str(
        &std::fs::read_to_string(dir.join("demo-site.toml")).expect("demo-site.toml"),
    )
    .expect("demo-site.toml parses");
    let mut protection = site["protection"].clone();
    let soc = protection["soc"].as_table_mut().expect("[protection.soc]");
    let include = soc["ocv"]["include"]
        .as_str()
        .expect("ocv include")
        .to_string();
    let ocv: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join(include)).expect("OCV file")).unwrap();
    soc.insert("ocv".into(), ocv);
    let mut cfg: ProtectionConfig = protection.try_into().expect("demo [protection]");
    cfg.soc.capacity_ah = site["rack"]["capacity_ah"].as_float().unwrap() as f32;
    cfg.validate().expect("the demo table is valid");
    cfg
}

fn base(t_ms: u64) -> PackSnapshot {
    let v = 3.3;
    PackSnapshot {
        timestamp_ms: t_ms,
        current_a: 0.0,
        pack_voltage_v: v * CELLS as f32,
        link_voltage_v: v * CELLS as f32,
        current_changed_ms: t_ms,
        cell_voltage_v: vec![v; CELLS],
        cell_temp_c: vec![20.0; CELLS],
        cells_per_module: PER_MODULE,
        module_comm: vec![CommStatus::Ok; CELLS / PER_MODULE as usize],
        cell_bleed_a: vec![0.0; CELLS],
        current_comm: CommStatus::Ok,
        complete: true,
        contactors_closed: true,
    }
}

/// Set quantity `key` to `x` in a snapshot.
fn apply(key: &str, s: &mut PackSnapshot, x: f32) {
    match key {
        "cell_over_voltage_v" | "cell_under_voltage_v" | "cell_deep_under_voltage_v" => {
            s.cell_voltage_v[CELL] = x
        }
        "cell_over_temp_charge_c" | "cell_under_temp_charge_c" => {
            s.cell_temp_c[CELL] = x;
            s.current_a = 50.0;
        }
        "cell_over_temp_discharge_c" | "cell_under_temp_discharge_c" => {
            s.cell_temp_c[CELL] = x;
            s.current_a = -50.0;
        }
        "cell_temp_spread_c" => s.cell_temp_c[CELL] = 20.0 + x,
        "cell_voltage_spread_v" => {
            s.cell_voltage_v.fill(3.2);
            s.cell_voltage_v[CELL] = 3.2 + x / 2.0;
            s.cell_voltage_v[CELL - 1] = 3.2 - x / 2.0;
        }
        "charge_over_current_a" => s.current_a = x,
        "discharge_over_current_a" => s.current_a = -x,
        "pack_voltage_mismatch_v" => s.pack_voltage_v = s.cell_voltage_v.iter().sum::<f32>() + x,
        other => panic!("no test mapping for quantity {other}"),
    }
    if key != "pack_voltage_mismatch_v" {
        s.pack_voltage_v = s.cell_voltage_v.iter().sum();
        s.link_voltage_v = s.pack_voltage_v;
    }
}

/// Tick with a DC link that follows the relays, as the real one does:
/// charged while precharge or main is closed, discharged otherwise.
fn feed(p: &mut Protection, mut s: PackSnapshot, soc: Option<f32>, t: u64) -> Status {
    let o = p.status().outputs;
    s.link_voltage_v = if o.main || o.precharge {
        s.pack_voltage_v
    } else {
        0.0
    };
    p.tick(&s, soc, t).clone()
}

/// A protection instance ticked until the contactors are closed.
fn closed_protection(cfg: &ProtectionConfig) -> (Protection, u64) {
    closed_at(cfg, 3.3, Some(50.0))
}

/// As [`closed_protection`], every cell resting at `cell_v` (which sets
/// protection's own SOC), with the plugin reporting `soc`.
fn closed_at(cfg: &ProtectionConfig, cell_v: f32, soc: Option<f32>) -> (Protection, u64) {
    let mut p = Protection::new(cfg.clone(), 500, EventLog::memory());
    let mut t = 0;
    while p.status().contactor_state != ContactorState::Closed {
        let mut s = base(t);
        s.cell_voltage_v.fill(cell_v);
        s.pack_voltage_v = cell_v * CELLS as f32;
        feed(&mut p, s, soc, t);
        t += PERIOD;
        assert!(t < 10_000, "contactors never closed");
    }
    (p, t)
}

fn raised_at(p: &Protection, q: Quantity, tier: TierLevel) -> Option<u64> {
    p.events()
        .iter()
        .find(|e| e.kind == EventKind::Raised && e.quantity == Some(q) && e.tier == Some(tier))
        .map(|e| e.time_ms)
}

fn cleared(p: &Protection, q: Quantity, tier: TierLevel) -> bool {
    p.events()
        .iter()
        .any(|e| e.kind == EventKind::Cleared && e.quantity == Some(q) && e.tier == Some(tier))
}

#[test]
fn every_tier_of_every_quantity_debounces_acts_and_releases_with_hysteresis() {
    // Flat derating curves, so any zero current is the tier's own doing.
    let mut cfg = cfg();
    let flat = |a: f32| super::limits::Curve(vec![[-1000.0, a], [1000.0, a]]);
    let d = &mut cfg.derating;
    d.charge_vs_cell_voltage_v = flat(d.max_charge_current_a);
    d.charge_vs_temp_c = flat(d.max_charge_current_a);
    d.charge_vs_soc_pct = flat(d.max_charge_current_a);
    d.discharge_vs_cell_voltage_v = flat(d.max_discharge_current_a);
    d.discharge_vs_temp_c = flat(d.max_discharge_current_a);
    d.discharge_vs_soc_pct = flat(d.max_discharge_current_a);
    let mut checked = 0;
    for (key, q, tiers, dir) in cfg.tiered() {
        for level in TierLevel::ALL {
            let Some(tier) = tiers.get(level).copied() else {
                continue;
            };
            let sign = if dir == Direction::Above { 1.0 } else { -1.0 };
            let eps = (tier.limit.abs() * 0.002).max(0.002);
            let beyond = tier.limit + sign * eps;
            let (mut p, t0) = closed_protection(&cfg);
            let ctx = format!("{key}.{}", level.key());

            // Debounce: raised exactly `delay_ms` after the limit is crossed.
            let mut t = t0;
            while t <= t0 + tier.delay_ms {
                let mut s = base(t);
                apply(key, &mut s, beyond);
                feed(&mut p, s.clone(), Some(50.0), t);
                if t < t0 + tier.delay_ms {
                    assert_eq!(raised_at(&p, q, level), None, "{ctx}: raised early at {t}");
                }
                t += PERIOD;
            }
            assert_eq!(
                raised_at(&p, q, level),
                Some(t0 + tier.delay_ms),
                "{ctx}: debounce"
            );
            let rec = p
                .events()
                .iter()
                .rev()
                .find(|e| e.quantity == Some(q) && e.tier == Some(level))
                .unwrap();
            assert_eq!(rec.limit, Some(tier.limit), "{ctx}: record names the limit");

            // Action.
            let st = p.status().clone();
            match (level, q.row().blocks) {
                (TierLevel::Msl, _) => {
                    assert!(st.latched.iter().any(|l| l.quantity == q), "{ctx}: latched");
                    assert_ne!(
                        st.contactor_state,
                        ContactorState::Closed,
                        "{ctx}: contactors open"
                    );
                    assert!(!st.outputs.main, "{ctx}: main contactor commanded open");
                    assert_eq!(st.allowed, AllowedCurrent::ZERO, "{ctx}");
                }
                (TierLevel::Rsl, Blocks::Charge) => {
                    assert_eq!(st.allowed.charge_a, 0.0, "{ctx}");
                    // (Temperature sets overlap: a hot cell is beyond both.)
                    if !key.contains("temp") {
                        assert!(
                            st.allowed.discharge_a > 0.0,
                            "{ctx}: discharge must stay allowed"
                        );
                    }
                }
                (TierLevel::Rsl, Blocks::Discharge) => {
                    assert_eq!(st.allowed.discharge_a, 0.0, "{ctx}");
                    if !key.contains("temp") {
                        assert!(st.allowed.charge_a > 0.0, "{ctx}: charge must stay allowed");
                    }
                }
                (TierLevel::Rsl, Blocks::Both) => {
                    assert_eq!(st.allowed, AllowedCurrent::ZERO, "{ctx}")
                }
                (TierLevel::Rsl, Blocks::Nothing) => panic!("{ctx}: an RSL must block a direction"),
                (TierLevel::Mol, _) => {
                    assert!(
                        st.latched.is_empty(),
                        "{ctx}: MOL must not latch: {:?}",
                        st.latched
                    );
                    assert_eq!(
                        st.contactor_state,
                        ContactorState::Closed,
                        "{ctx}: MOL keeps contactors"
                    );
                }
            }

            // Hysteresis: between release and limit the tier holds; past the
            // release point it clears (the MSL latch stays regardless).
            let hold = tier.limit - sign * tier.hysteresis / 2.0;
            let mut s = base(t);
            apply(key, &mut s, hold);
            feed(&mut p, s.clone(), Some(50.0), t);
            if tier.hysteresis > 0.0 {
                assert!(
                    !cleared(&p, q, level),
                    "{ctx}: cleared inside the hysteresis band"
                );
            }
            t += PERIOD;
            let release = tier.limit - sign * (tier.hysteresis + eps);
            let mut s = base(t);
            apply(key, &mut s, release);
            feed(&mut p, s.clone(), Some(50.0), t);
            assert!(
                cleared(&p, q, level),
                "{ctx}: not cleared past the release point"
            );
            if level == TierLevel::Msl {
                assert!(
                    p.latched().iter().any(|l| l.quantity == q),
                    "{ctx}: latch survives clearing"
                );
            }
            checked += 1;
        }
    }
    // The shipped table sets all three tiers of every quantity (deep
    // under-voltage is MSL only); each must have run.
    assert_eq!(checked, 11 * 3 + 1, "tier cases run");
}

#[test]
fn a_short_excursion_restarts_the_debounce() {
    let cfg = cfg();
    let (mut p, t0) = closed_protection(&cfg);
    let msl = cfg.cell_over_voltage_v.msl.unwrap();
    let over = |t| {
        let mut s = base(t);
        apply("cell_over_voltage_v", &mut s, msl.limit + 0.01);
        s
    };
    let mut t = t0;
    while t < t0 + msl.delay_ms - PERIOD {
        feed(&mut p, over(t), None, t);
        t += PERIOD;
    }
    feed(&mut p, base(t), None, t); // one sample back inside
    let restart = t + PERIOD;
    let mut t = restart;
    while t < restart + msl.delay_ms {
        feed(&mut p, over(t), None, t);
        assert!(
            p.latched().is_empty(),
            "latched at {t} before a full delay after the restart"
        );
        t += PERIOD;
    }
    feed(&mut p, over(t), None, t);
    assert_eq!(p.latched()[0].quantity, Quantity::CellOverVoltage);
    assert_eq!(
        p.latched()[0].location,
        Some(Location { module: 1, cell: 2 })
    );
}

fn latch_over_voltage(cfg: &ProtectionConfig) -> (Protection, u64) {
    let (mut p, mut t) = closed_protection(cfg);
    let msl = cfg.cell_over_voltage_v.msl.unwrap();
    let end = t + msl.delay_ms;
    while t <= end {
        let mut s = base(t);
        apply("cell_over_voltage_v", &mut s, msl.limit + 0.05);
        feed(&mut p, s.clone(), None, t);
        t += PERIOD;
    }
    assert!(!p.latched().is_empty());
    (p, t)
}

#[test]
fn latched_fault_keeps_contactors_open_until_an_allowed_reset() {
    let cfg = cfg();
    let (mut p, mut t) = latch_over_voltage(&cfg);
    // Still over the limit: reset refused, naming the condition.
    let mut s = base(t);
    apply("cell_over_voltage_v", &mut s, 3.7);
    feed(&mut p, s.clone(), None, t);
    let err = p.reset(&s, t, "test").unwrap_err();
    assert!(
        matches!(&err, ResetError::NotCleared(m) if m.contains("CellOverVoltage")),
        "{err}"
    );
    // Back to normal: the latch holds the contactors open for as long as it lasts.
    for _ in 0..500 {
        t += PERIOD;
        feed(&mut p, base(t), None, t);
        assert!(!p.status().outputs.main && !p.status().outputs.precharge);
    }
    let cleared = p.reset(&base(t), t, "test").unwrap();
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(
        p.reset(&base(t), t, "test").unwrap_err(),
        ResetError::NothingLatched
    );
    assert!(p.events().iter().any(|e| e.kind == EventKind::Reset));
    // After the reset, after the reclose delay, the contactors close again.
    let mut closed_at = None;
    for _ in 0..1000 {
        t += PERIOD;
        if feed(&mut p, base(t), None, t).contactor_state == ContactorState::Closed {
            closed_at = Some(t);
            break;
        }
    }
    assert!(closed_at.is_some(), "never reclosed after reset");
}

#[test]
fn deep_under_voltage_latch_survives_a_restart_until_reset() {
    let cfg = cfg();
    // The record carried from one instance to the next, as a restart reads
    // the host's events.jsonl back.
    let mut record: Vec<events::EventRecord>;
    let deep = |t| {
        let mut s = base(t);
        apply("cell_deep_under_voltage_v", &mut s, 1.5);
        s
    };
    {
        let mut p = Protection::new(cfg.clone(), 500, MemoryLog::new());
        for t in (0..=2000).step_by(PERIOD as usize) {
            feed(&mut p, deep(t), None, t);
            // Never connected onto the deep-discharged cell, not even
            // before its debounce ran out.
            assert!(
                !p.status().outputs.precharge && !p.status().outputs.main,
                "closing at {t}"
            );
        }
        assert!(p
            .latched()
            .iter()
            .any(|l| l.quantity == Quantity::CellDeepUnderVoltage));
        record = p.events().to_vec();
    }
    // "Restart" with the cell still deep-discharged: a prompt reset is
    // refused (the condition has not been judged on fresh data yet), and so
    // is one after the arming window (the tier has re-raised).
    let mut p = Protection::new(cfg.clone(), 500, MemoryLog::with(record));
    feed(&mut p, deep(0), None, 0);
    assert!(p.reset(&deep(0), 0, "test").is_err());
    for t in (10..=6000).step_by(PERIOD as usize) {
        feed(&mut p, deep(t), None, t);
        assert!(
            !p.status().outputs.precharge && !p.status().outputs.main,
            "closing at {t}"
        );
    }
    let err = p.reset(&deep(6000), 6000, "test").unwrap_err();
    assert!(err.to_string().contains("CellDeepUnderVoltage"), "{err}");
    // Restart with a healthy cell: blocked until reset, reset after arming.
    record = p.events().to_vec();
    drop(p);
    let mut p = Protection::new(cfg.clone(), 500, MemoryLog::with(record));
    for t in (0..6000).step_by(PERIOD as usize) {
        feed(&mut p, base(t), None, t);
        assert!(
            !p.status().outputs.precharge && !p.status().outputs.main,
            "closing at {t}"
        );
    }
    let reason = p.status().blocked_reason.clone().unwrap();
    assert!(reason.contains("restored"), "{reason}");
    p.reset(&base(6000), 6000, "test").unwrap();
    record = p.events().to_vec();
    drop(p);
    let p = Protection::new(cfg, 500, MemoryLog::with(record));
    assert!(p.latched().is_empty());
}

#[test]
fn stale_module_is_comm_loss_and_its_values_are_not_used() {
    let cfg = cfg();
    let (mut p, t0) = closed_protection(&cfg);
    let before = p.events().len();
    // Module 1 stale, with garbage in its cells, for longer than any delay.
    for t in (t0..t0 + 6000).step_by(PERIOD as usize) {
        let mut s = base(t);
        s.module_comm[1] = CommStatus::Stale;
        s.cell_voltage_v[CELL] = 9.0;
        s.cell_temp_c[CELL] = 150.0;
        feed(&mut p, s, None, t);
    }
    let l = &p.latched()[0];
    assert_eq!(l.quantity, Quantity::CommunicationLoss);
    assert_eq!(l.location.unwrap().module, 1);
    let tiers: Vec<_> = p.events()[before..]
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Raised | EventKind::Cleared))
        .collect();
    assert!(tiers.is_empty(), "stale values moved monitors: {tiers:?}");
}

#[test]
fn a_stale_module_cannot_clear_a_raised_tier() {
    let cfg = cfg();
    let (mut p, mut t) = latch_over_voltage(&cfg);
    // The over-voltage cell's module goes stale: the remaining cells are
    // fine, but that says nothing about the stale one.
    for _ in 0..100 {
        let mut s = base(t);
        apply("cell_over_voltage_v", &mut s, 3.7);
        s.module_comm[1] = CommStatus::Stale;
        feed(&mut p, s, None, t);
        t += PERIOD;
    }
    assert!(!p
        .events()
        .iter()
        .any(|e| e.kind == EventKind::Cleared && e.quantity == Some(Quantity::CellOverVoltage)));
}

#[test]
fn acquisition_stall_is_comm_loss() {
    let cfg = cfg();
    let (mut p, t) = closed_protection(&cfg);
    // The snapshot stops updating: protection ticks on alone.
    let frozen = base(t);
    let mut now = t;
    while p.latched().is_empty() {
        now += PERIOD;
        feed(&mut p, frozen.clone(), None, now);
        assert!(now < t + 2000);
    }
    assert_eq!(p.latched()[0].quantity, Quantity::CommunicationLoss);
    assert!(
        now - t > 500 && now - t <= 500 + PERIOD,
        "tripped after {} ms",
        now - t
    );
}

#[test]
fn a_source_that_never_reports_is_named_after_the_startup_grace() {
    let cfg = cfg();
    let mut p = Protection::new(cfg, 500, EventLog::memory());
    for t in (0..=1000).step_by(PERIOD as usize) {
        let mut s = PackSnapshot::empty(CELLS, PER_MODULE);
        s.timestamp_ms = t;
        s.module_comm[0] = CommStatus::Ok;
        feed(&mut p, s, None, t);
        assert!(!p.status().outputs.precharge && !p.status().outputs.main);
        if t < 1000 {
            assert!(p.latched().is_empty(), "latched during the grace at {t}");
        }
    }
    let l = &p.latched()[0];
    assert_eq!(l.quantity, Quantity::CommunicationLoss);
    assert_eq!(l.location.unwrap().module, 1);
    assert!(
        l.message.contains("module 1") && l.message.contains("current sensor"),
        "{}",
        l.message
    );
}

#[test]
fn never_connects_before_the_arming_window_or_onto_a_value_beyond_an_msl() {
    let cfg = cfg();
    let mut p = Protection::new(cfg.clone(), 500, EventLog::memory());
    let arm = cfg
        .tiered()
        .iter()
        .filter_map(|(_, _, t, _)| t.msl.map(|m| m.delay_ms))
        .max()
        .unwrap();
    let mut t = 0;
    while p.status().contactor_state == ContactorState::Open {
        feed(&mut p, base(t), None, t);
        t += PERIOD;
    }
    assert!(
        t - PERIOD >= arm,
        "precharge started at {} ms, arming needs {arm} ms",
        t - PERIOD
    );
    // A cell beyond its MSL (not yet debounced) blocks a new connection.
    let mut p = Protection::new(cfg.clone(), 500, EventLog::memory());
    for t in (0..arm + 1000).step_by(PERIOD as usize) {
        let mut s = base(t);
        s.cell_voltage_v[CELL] = 3.7;
        s.pack_voltage_v = s.cell_voltage_v.iter().sum();
        feed(&mut p, s, None, t);
        assert!(
            !p.status().outputs.precharge,
            "precharge onto an over-voltage cell at {t}"
        );
    }
}

#[test]
fn a_welded_contactor_at_startup_is_caught_before_the_first_close() {
    let cfg = cfg();
    let mut p = Protection::new(cfg, 500, EventLog::memory());
    let mut t = 0;
    // The link is live before anything was commanded: the main is welded.
    while p.latched().is_empty() {
        p.tick(&base(t), None, t);
        assert!(!p.status().outputs.precharge && !p.status().outputs.main);
        t += PERIOD;
        assert!(t < 10_000, "weld never detected");
    }
    assert_eq!(p.latched()[0].quantity, Quantity::ContactorWelded);
}

#[test]
fn alternating_current_direction_cannot_dodge_a_charge_temperature_msl() {
    let cfg = cfg();
    let (mut p, t0) = closed_protection(&cfg);
    let msl = cfg.cell_under_temp_charge_c.msl.unwrap();
    let mut t = t0;
    // Charge for 300 ms, discharge for 300 ms, at -5 °C: the MSL (0 °C)
    // debounce must keep running across the discharge bursts.
    while t < t0 + msl.delay_ms + 700 && p.latched().is_empty() {
        let mut s = base(t);
        s.cell_temp_c[CELL] = -5.0;
        s.current_a = if (t - t0) % 600 < 300 { 50.0 } else { -50.0 };
        feed(&mut p, s, None, t);
        t += PERIOD;
    }
    assert_eq!(
        p.latched().first().map(|l| l.quantity),
        Some(Quantity::CellUnderTempCharge)
    );
    assert!(
        t - PERIOD - t0 <= msl.delay_ms + 300,
        "latched after {} ms",
        t - PERIOD - t0
    );
}

#[test]
fn out_of_range_reading_trips_after_the_range_delay() {
    let cfg = cfg();
    let (mut p, t0) = closed_protection(&cfg);
    let mut t = t0;
    loop {
        let mut s = base(t);
        s.cell_temp_c[CELL] = 150.0;
        feed(&mut p, s.clone(), None, t);
        if !p.latched().is_empty() {
            break;
        }
        t += PERIOD;
    }
    assert_eq!(t - t0, cfg.plausibility.range_delay_ms);
    assert!(p
        .latched()
        .iter()
        .any(|l| l.quantity == Quantity::SensorOutOfRange));
}

#[test]
fn frozen_current_reading_is_implausible() {
    let cfg = cfg();
    let (mut p, t0) = closed_protection(&cfg);
    let mut t = t0;
    loop {
        let mut s = base(t);
        s.current_changed_ms = t0; // never changes again
        feed(&mut p, s.clone(), None, t);
        if !p.latched().is_empty() {
            break;
        }
        t += PERIOD;
    }
    assert_eq!(p.latched()[0].quantity, Quantity::CurrentSensorFrozen);
    assert_eq!(t - t0, cfg.plausibility.current_frozen_ms);
}

#[test]
fn current_while_commanded_open_is_a_weld() {
    let cfg = cfg();
    let (mut p, mut t) = latch_over_voltage(&cfg);
    // Contactors commanded open, but current keeps flowing.
    for _ in 0..100 {
        let mut s = base(t);
        s.current_a = 100.0;
        s.current_changed_ms = t;
        feed(&mut p, s.clone(), None, t);
        t += PERIOD;
    }
    assert!(p
        .latched()
        .iter()
        .any(|l| l.quantity == Quantity::ContactorWelded));
}

#[test]
fn precharge_that_never_reaches_the_link_faults() {
    let cfg = cfg();
    let mut p = Protection::new(cfg.clone(), 500, EventLog::memory());
    let mut t = 0;
    let mut precharge_from = None;
    while p.latched().is_empty() {
        let mut s = base(t);
        // Discharged link until precharge, then stuck at 30 %.
        s.link_voltage_v = if precharge_from.is_some() {
            0.3 * s.pack_voltage_v
        } else {
            0.0
        };
        p.tick(&s, None, t);
        if p.status().outputs.precharge {
            precharge_from.get_or_insert(t);
        }
        t += PERIOD;
        assert!(t < 20_000);
    }
    assert_eq!(p.latched()[0].quantity, Quantity::PrechargeFailed);
    let took = t - PERIOD - precharge_from.unwrap();
    assert!(
        took >= cfg.contactors.precharge_timeout_ms
            && took <= cfg.contactors.precharge_timeout_ms + PERIOD,
        "{took}"
    );
    assert!(p
        .status()
        .blocked_reason
        .as_deref()
        .unwrap()
        .contains("precharge"));
}

#[test]
fn allowed_current_ramps_up_and_drops_at_once() {
    let cfg = cfg();
    let (mut p, mut t) = closed_protection(&cfg);
    let ramp = cfg.derating.ramp_up_a_per_s;
    let before = p.status().allowed.charge_a;
    let last = p.status().time_ms;
    t += 1000;
    feed(&mut p, base(t), Some(50.0), t);
    let after = p.status().allowed.charge_a;
    let expected = before + ramp * (t - last) as f32 / 1000.0;
    assert!(
        (after - expected).abs() < 0.01,
        "{before} -> {after}, expected {expected}"
    );
    // Run up to the rating, then a hot cell drops it at once.
    for _ in 0..10 {
        t += 1000;
        feed(&mut p, base(t), Some(50.0), t);
    }
    assert_eq!(
        p.status().allowed.charge_a,
        cfg.derating.max_charge_current_a
    );
    t += PERIOD;
    let mut s = base(t);
    s.cell_voltage_v[CELL] = 3.55; // halfway down the voltage curve
    feed(&mut p, s.clone(), Some(50.0), t);
    assert!(
        (p.status().allowed.charge_a - 140.0).abs() < 0.5,
        "{:?}",
        p.status().allowed
    );
    // SOC curve applies as well.
    t += PERIOD;
    feed(&mut p, base(t), Some(100.0), t);
    assert!(
        (p.status().allowed.charge_a - 28.0).abs() < 0.5,
        "{:?}",
        p.status().allowed
    );
}

fn status_with(allowed: AllowedCurrent, latched: bool) -> Status {
    let mut st = Status::initial();
    st.allowed = allowed;
    st.contactor_state = ContactorState::Closed;
    if latched {
        st.latched.push(Latch {
            quantity: Quantity::CellOverVoltage,
            location: None,
            value: None,
            limit: None,
            time_ms: 0,
            message: String::new(),
        });
    }
    st
}

#[test]
fn bleeding_is_refused_on_low_hot_stale_or_faulted_cells_and_capped() {
    let cfg = cfg();
    let mut c = Clamp::new(&cfg);
    let mut s = base(0);
    s.cell_voltage_v[1] = 2.9; // at the under-voltage MOL release
    s.cell_temp_c[2] = cfg.balancing.max_temp_c; // at the temperature limit
    s.module_comm[1] = CommStatus::Stale; // cells 4..8
    let st = status_with(AllowedCurrent::ZERO, false);
    assert_eq!(
        c.bleed(&s, &st, &[true; CELLS]),
        [true, false, false, true, false, false, false, false]
    );
    assert_eq!(c.stats.bleed_refused, 6);
    let st = status_with(AllowedCurrent::ZERO, true);
    assert_eq!(c.bleed(&base(0), &st, &[true; CELLS]), [false; CELLS]);
}

#[test]
fn power_hints_are_capped_and_nan_is_zero() {
    let cfg = cfg();
    let mut c = Clamp::new(&cfg);
    let s = base(0);
    let st = status_with(
        AllowedCurrent {
            charge_a: 10.0,
            discharge_a: 20.0,
        },
        false,
    );
    let pack_v = s.pack_voltage_v;
    assert_eq!(c.power_w(&s, &st, 1e9), 10.0 * pack_v);
    assert_eq!(c.power_w(&s, &st, -1e9), -20.0 * pack_v);
    assert_eq!(c.power_w(&s, &st, f32::NAN), 0.0);
    assert_eq!(c.power_w(&s, &st, f32::INFINITY), 0.0);
    assert_eq!(c.power_w(&s, &st, 5.0), 5.0);
    assert_eq!(c.stats.non_finite, 2);
    assert_eq!(c.stats.power_capped, 2);
}

fn arb_snapshot() -> impl Strategy<Value = PackSnapshot> {
    (
        prop::collection::vec(
            prop_oneof![2.0f32..4.0, Just(f32::NAN), -1.0f32..10.0],
            CELLS,
        ),
        prop::collection::vec(prop_oneof![-30.0f32..80.0, Just(f32::NAN)], CELLS),
        prop_oneof![-400.0f32..400.0, Just(f32::NAN)],
        prop::collection::vec(any::<bool>(), 2),
        any::<bool>(),
    )
        .prop_map(|(v, t, i, comm, current_ok)| {
            let mut s = base(0);
            s.cell_voltage_v = v;
            s.cell_temp_c = t;
            s.current_a = i;
            s.pack_voltage_v = s.cell_voltage_v.iter().sum();
            s.link_voltage_v = s.pack_voltage_v;
            s.module_comm = comm
                .into_iter()
                .map(|ok| {
                    if ok {
                        CommStatus::Ok
                    } else {
                        CommStatus::Stale
                    }
                })
                .collect();
            s.current_comm = if current_ok {
                CommStatus::Ok
            } else {
                CommStatus::Stale
            };
            s
        })
}

/// A plausible snapshot: every cell fresh and inside its sensor range,
/// a small spread, so the contactors can stay closed and the derating
/// curves decide the allowed current.
fn arb_plausible() -> impl Strategy<Value = PackSnapshot> {
    (
        3.0f32..3.58,
        prop::collection::vec(0.0f32..0.02, CELLS),
        5.0f32..48.0,
        prop::collection::vec(0.0f32..3.0, CELLS),
        -250.0f32..250.0,
    )
        .prop_map(|(v0, dv, t0, dt, i)| {
            let mut s = base(0);
            s.cell_voltage_v = dv.iter().map(|d| v0 + d).collect();
            s.cell_temp_c = dt.iter().map(|d| t0 + d).collect();
            s.current_a = i;
            s.pack_voltage_v = s.cell_voltage_v.iter().sum();
            s
        })
}

/// The derating bound, computed here from the config's curves and
/// independently of `Protection::derate_target`.
fn expected_bound(cfg: &ProtectionConfig, s: &PackSnapshot, soc: Option<f32>) -> AllowedCurrent {
    fn at(points: &[[f32; 2]], x: f32) -> f32 {
        let (first, last) = (points[0], points[points.len() - 1]);
        if x <= first[0] {
            return first[1];
        }
        if x >= last[0] {
            return last[1];
        }
        let w = points.windows(2).find(|w| x <= w[1][0]).unwrap();
        let f = (x - w[0][0]) / (w[1][0] - w[0][0]);
        w[0][1] + f * (w[1][1] - w[0][1])
    }
    let d = &cfg.derating;
    let fold = |xs: &[f32], max: bool| {
        xs.iter()
            .copied()
            .fold(if max { f32::MIN } else { f32::MAX }, |a, b| {
                if max {
                    a.max(b)
                } else {
                    a.min(b)
                }
            })
    };
    let (max_v, min_v) = (
        fold(&s.cell_voltage_v, true),
        fold(&s.cell_voltage_v, false),
    );
    let (max_t, min_t) = (fold(&s.cell_temp_c, true), fold(&s.cell_temp_c, false));
    let mut charge = d
        .max_charge_current_a
        .min(at(&d.charge_vs_cell_voltage_v.0, max_v))
        .min(at(&d.charge_vs_temp_c.0, max_t))
        .min(at(&d.charge_vs_temp_c.0, min_t));
    let mut discharge = d
        .max_discharge_current_a
        .min(at(&d.discharge_vs_cell_voltage_v.0, min_v))
        .min(at(&d.discharge_vs_temp_c.0, max_t))
        .min(at(&d.discharge_vs_temp_c.0, min_t));
    if let Some(soc) = soc {
        charge = charge.min(at(&d.charge_vs_soc_pct.0, soc));
        discharge = discharge.min(at(&d.discharge_vs_soc_pct.0, soc));
    }
    AllowedCurrent {
        charge_a: charge,
        discharge_a: discharge,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// From closed contactors, whatever the snapshots (each held for a
    /// while, with a DC link that follows the relays): the allowed current
    /// never exceeds the derating curves of a plausible snapshot nor rises
    /// faster than the ramp, clamped power stays within the allowed
    /// current, and the main contactor is never commanded closed while a
    /// fault is latched. The run must grant current at some point, so the
    /// limits are really exercised.
    #[test]
    fn never_above_limits_never_closed_while_latched(
        first in arb_plausible(),
        rest in prop::collection::vec(
            (prop_oneof![3 => arb_plausible().prop_map(|s| (s, true)), 1 => arb_snapshot().prop_map(|s| (s, false))], 1u64..40),
            0..12,
        ),
        hints in prop::collection::vec(prop_oneof![any::<f32>(), -1e7f32..1e7], 64),
        soc in prop::option::of(-10.0f32..120.0),
    ) {
        let cfg = cfg();
        let (mut p, mut t) = closed_protection(&cfg);
        let mut clamp = Clamp::new(&cfg);
        let mut prev = p.status().allowed;
        let mut prev_t = p.status().time_ms;
        let (mut granted, mut closed_ticks, mut k) = (0u32, 0u32, 0usize);
        let segments = std::iter::once(((first, true), 20)).chain(rest);
        for ((s0, plausible), hold) in segments {
            for _ in 0..hold {
                t += PERIOD;
                k += 1;
                let mut s = s0.clone();
                s.timestamp_ms = t;
                s.current_changed_ms = t;
                let st = feed(&mut p, s.clone(), soc, t);
                let a = st.allowed;
                prop_assert!(a.charge_a >= 0.0 && a.charge_a <= cfg.derating.max_charge_current_a);
                prop_assert!(a.discharge_a >= 0.0 && a.discharge_a <= cfg.derating.max_discharge_current_a);
                let ramp = cfg.derating.ramp_up_a_per_s * (t - prev_t) as f32 / 1000.0 + 1e-3;
                prop_assert!(a.charge_a <= prev.charge_a + ramp, "charge rose {:?} -> {:?}", prev, a);
                prop_assert!(a.discharge_a <= prev.discharge_a + ramp, "discharge rose {:?} -> {:?}", prev, a);
                if plausible {
                    let bound = expected_bound(&cfg, &s, soc);
                    prop_assert!(a.charge_a <= bound.charge_a + 1e-3, "{:?} above curves {:?} for {:?}", a, bound, s);
                    prop_assert!(a.discharge_a <= bound.discharge_a + 1e-3, "{:?} above curves {:?} for {:?}", a, bound, s);
                }
                if !st.latched.is_empty() {
                    prop_assert!(!st.outputs.main && !st.outputs.precharge, "closed while latched: {:?}", st);
                }
                if st.contactor_state == ContactorState::Closed {
                    closed_ticks += 1;
                } else {
                    prop_assert_eq!(a, AllowedCurrent::ZERO);
                }
                if a.charge_a > 0.0 || a.discharge_a > 0.0 {
                    granted += 1;
                }
                let w = clamp.power_w(&s, &st, hints[k % hints.len()]);
                // Computed here, independently of the code under test.
                let pack_v = if s.pack_voltage_v.is_finite() { s.pack_voltage_v.max(0.0) } else { 0.0 };
                prop_assert!(w.is_finite());
                prop_assert!(w <= a.charge_a * pack_v + 1e-3);
                prop_assert!(w >= -a.discharge_a * pack_v - 1e-3);
                prev = a;
                prev_t = t;
            }
        }
        prop_assert!(closed_ticks > 0 && granted > 0, "closed {closed_ticks} ticks, granted {granted}");
    }

    /// Whatever a balancer asks: no bleed on a cell outside the window, on
    /// a stale module, or beyond the cap.
    #[test]
    fn bleed_never_outside_the_window(s in arb_snapshot(), req in prop::collection::vec(any::<bool>(), CELLS), latched in any::<bool>()) {
        let cfg = cfg();
        let mut clamp = Clamp::new(&cfg);
        let st = status_with(AllowedCurrent::ZERO, latched);
        let out = clamp.bleed(&s, &st, &req);
        let min_v = cfg.cell_under_voltage_v.mol.map(|t| t.limit + t.hysteresis).unwrap();
        prop_assert!(out.iter().filter(|b| **b).count() <= cfg.balancing.max_bleeders as usize);
        for (i, b) in out.iter().enumerate() {
            if *b {
                prop_assert!(req[i] && !latched);
                prop_assert!(s.cell_voltage_v[i] > min_v);
                prop_assert!(s.cell_temp_c[i] < cfg.balancing.max_temp_c);
                prop_assert_eq!(s.module_comm[i / PER_MODULE as usize], CommStatus::Ok);
            }
        }
    }
}

fn hold(source: HoldSource, kind: HoldKind) -> Hold {
    Hold {
        source,
        kind,
        reason: format!("test {source:?}"),
    }
}

#[test]
fn an_open_hold_opens_and_blocks_closing_until_released_and_is_recorded() {
    let cfg = cfg();
    let (mut p, mut t) = closed_protection(&cfg);
    p.set_holds(&[hold(HoldSource::Operator, HoldKind::Open)], t);
    feed(&mut p, base(t), Some(50.0), t);
    assert_eq!(p.status().allowed, AllowedCurrent::ZERO);
    for _ in 0..100 {
        t += PERIOD;
        feed(&mut p, base(t), Some(50.0), t);
    }
    let st = p.status().clone();
    assert_eq!(st.contactor_state, ContactorState::Open, "{st:?}");
    assert!(!st.outputs.main && !st.outputs.precharge);
    assert!(st
        .blocked_reason
        .as_deref()
        .unwrap()
        .contains("held open (Operator)"));
    assert!(st.latched.is_empty(), "a hold is not a latch");
    // Setting the same holds again records nothing new.
    let n = p.events().len();
    p.set_holds(&[hold(HoldSource::Operator, HoldKind::Open)], t);
    assert_eq!(p.events().len(), n);
    // Released: protection closes again on its own terms (arming, precharge).
    p.set_holds(&[], t);
    for _ in 0..1000 {
        t += PERIOD;
        feed(&mut p, base(t), Some(50.0), t);
    }
    assert_eq!(p.status().contactor_state, ContactorState::Closed);
    let kinds: Vec<_> = p
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Hold | EventKind::Released))
        .map(|e| (e.kind, e.action.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Hold, "hold contactors open".to_string()),
            (EventKind::Released, "hold released".to_string())
        ]
    );
}

#[test]
fn a_zero_current_hold_stays_connected_with_nothing_allowed() {
    let cfg = cfg();
    let (mut p, mut t) = closed_protection(&cfg);
    for _ in 0..500 {
        t += PERIOD;
        feed(&mut p, base(t), Some(50.0), t);
    }
    assert!(p.status().allowed.charge_a > 0.0);
    p.set_holds(
        &[hold(HoldSource::ControllerHeartbeat, HoldKind::ZeroCurrent)],
        t,
    );
    t += PERIOD;
    feed(&mut p, base(t), Some(50.0), t);
    assert_eq!(p.status().allowed, AllowedCurrent::ZERO, "drops at once");
    assert_eq!(p.status().contactor_state, ContactorState::Closed);
    p.set_holds(&[], t);
    t += PERIOD;
    feed(&mut p, base(t), Some(50.0), t);
    let a = p.status().allowed.charge_a;
    assert!(
        a > 0.0 && a <= cfg.derating.ramp_up_a_per_s * 0.011,
        "ramps back: {a}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Holds can only take permission away: with any hold in force the
    /// allowed current is zero, and with an open hold the contactors are
    /// never commanded closed.
    #[test]
    fn holds_never_grant(
        snaps in prop::collection::vec(arb_snapshot(), 1..40),
        kinds in prop::collection::vec(prop::option::of(prop_oneof![Just(HoldKind::Open), Just(HoldKind::ZeroCurrent)]), 40),
    ) {
        let cfg = cfg();
        let (mut p, t0) = closed_protection(&cfg);
        let mut was_open_held = false;
        for (k, mut s) in snaps.into_iter().enumerate() {
            let t = t0 + (k as u64 + 1) * PERIOD;
            s.timestamp_ms = t;
            s.current_changed_ms = t;
            let holds: Vec<Hold> = kinds[k].map(|kind| hold(HoldSource::Bank, kind)).into_iter().collect();
            p.set_holds(&holds, t);
            let st = p.tick(&s, Some(50.0), t).clone();
            if !holds.is_empty() {
                prop_assert_eq!(st.allowed, AllowedCurrent::ZERO);
            }
            if kinds[k] == Some(HoldKind::Open) {
                // The first held tick starts opening; from then on it never closes.
                prop_assert!(!st.outputs.precharge, "precharging under an open hold: {:?}", st);
                if was_open_held {
                    prop_assert!(!st.outputs.main, "closed under an open hold: {:?}", st);
                }
                was_open_held = true;
            } else {
                was_open_held = false;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever SOC a plugin reports (any plausible lie in 0..=100, changing
    /// every segment), the allowed currents never exceed what protection
    /// allows on its own SOC alone: two instances see the same snapshots,
    /// one with the lies and one with no plugin at all.
    #[test]
    fn a_lying_soc_plugin_never_raises_the_allowed_current(
        // Resting voltage at start: protection's SOC from 3 % to 99 %, so
        // both SOC curves are in play.
        start_v in 2.95f32..3.45,
        segments in prop::collection::vec(
            (arb_plausible(), 0.0f32..=100.0, 1u64..60),
            1..10,
        ),
    ) {
        let cfg = cfg();
        let (mut honest, t0) = closed_at(&cfg, start_v, None);
        let (mut lied_to, _) = closed_at(&cfg, start_v, Some(50.0));
        let mut t = t0;
        let mut granted = false;
        for (s0, lie, hold) in segments {
            for _ in 0..hold {
                t += PERIOD;
                let mut s = s0.clone();
                s.timestamp_ms = t;
                s.current_changed_ms = t;
                let a = feed(&mut honest, s.clone(), None, t).allowed;
                let b = feed(&mut lied_to, s, Some(lie), t);
                prop_assert!(b.allowed.charge_a <= a.charge_a + 1e-3,
                    "charge {} with a plugin at {lie} % > {} on protection's SOC {:?}", b.allowed.charge_a, a.charge_a, b.soc);
                prop_assert!(b.allowed.discharge_a <= a.discharge_a + 1e-3,
                    "discharge {} with a plugin at {lie} % > {} on protection's SOC {:?}", b.allowed.discharge_a, a.discharge_a, b.soc);
                granted |= a.charge_a > 0.0 || a.discharge_a > 0.0;
            }
        }
        prop_assert!(granted, "no current was ever allowed: nothing was tested");
    }
}

#[test]
fn soc_curves_derate_on_protections_soc_and_a_disagreement_is_a_warning() {
    let cfg = cfg();
    let (mut p, mut t) = closed_protection(&cfg);
    // Rest at 3.40 V: 98 % on the demo LFP table, deep in the SOC curve.
    let mut high = base(0);
    high.cell_voltage_v.fill(3.40);
    high.pack_voltage_v = high.cell_voltage_v.iter().sum();
    let (mut fresh, mut t2) = closed_at(&cfg, 3.40, Some(50.0));
    for _ in 0..2000 {
        t2 += PERIOD;
        let mut s = high.clone();
        (s.timestamp_ms, s.current_changed_ms) = (t2, t2);
        feed(&mut fresh, s, Some(50.0), t2);
    }
    let st = fresh.status();
    let native = st.soc.native_max_pct.expect("native SOC known");
    assert!((native - 98.0).abs() < 0.5, "{:?}", st.soc);
    assert_eq!(st.soc.charge_pct, Some(native));
    assert_eq!(st.soc.discharge_pct, Some(50.0));
    // 98 % on [[90, 280], [100, 28]]: 78.4 A, not the 280 A a 50 % lie gives.
    let expected = 280.0 - (native - 90.0) / 10.0 * 252.0;
    assert!(
        (st.allowed.charge_a - expected).abs() < 1.0,
        "{:?}",
        st.allowed
    );
    // 48 pp apart for longer than the delay: the MOL warning, recorded once
    // with the distance and the band.
    assert!(st
        .active
        .iter()
        .any(|a| a.quantity == Quantity::SocDisagreement && a.tier == TierLevel::Mol));
    let raised: Vec<_> = fresh
        .events()
        .iter()
        .filter(|e| e.quantity == Some(Quantity::SocDisagreement) && e.kind == EventKind::Raised)
        .collect();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(
        raised[0].message.contains("50.0 %"),
        "{}",
        raised[0].message
    );
    assert_eq!(raised[0].limit, Some(cfg.soc.disagreement_pct.limit));
    assert!(raised[0].value.unwrap() > 40.0);
    // The plugin comes round: the warning clears.
    for _ in 0..100 {
        t2 += PERIOD;
        let mut s = high.clone();
        (s.timestamp_ms, s.current_changed_ms) = (t2, t2);
        feed(&mut fresh, s, Some(native), t2);
    }
    assert!(cleared(&fresh, Quantity::SocDisagreement, TierLevel::Mol));
    // Agreement never raises it.
    for _ in 0..2000 {
        t += PERIOD;
        feed(&mut p, base(t), Some(60.0), t);
    }
    assert!(raised_at(&p, Quantity::SocDisagreement, TierLevel::Mol).is_none());
}

#[test]
fn validation_names_missing_tiers_insane_bounds_ratings_and_voltage_ranges() {
    let field = |edit: &dyn Fn(&mut ProtectionConfig)| {
        let mut c = cfg();
        edit(&mut c);
        c.validate()
            .expect_err("must be refused")
            .field()
            .to_string()
    };
    assert_eq!(
        field(&|c| c.cell_over_voltage_v.rsl = None),
        "cell_over_voltage_v.rsl"
    );
    assert_eq!(
        field(&|c| c.pack_voltage_mismatch_v.mol = None),
        "pack_voltage_mismatch_v.mol"
    );
    assert_eq!(
        field(&|c| c.cell_temp_spread_c.msl.as_mut().unwrap().delay_ms = 3_600_000),
        "cell_temp_spread_c.msl.delay_ms"
    );
    assert_eq!(
        field(&|c| c.plausibility.range_delay_ms = 60_000),
        "plausibility.range_delay_ms"
    );
    assert_eq!(
        field(&|c| c.contactors.open_timeout_ms = 60_000),
        "contactors.open_timeout_ms"
    );
    assert_eq!(field(&|c| c.rest_current_a = 100.0), "rest_current_a");
    assert_eq!(
        field(&|c| c.derating.max_charge_current_a = 310.0),
        "derating.max_charge_current_a",
        "a rating above the over-current RSL (300 A)"
    );
    assert_eq!(
        field(&|c| c.plausibility.pack_voltage_range_v = [600.0, 0.0]),
        "plausibility.pack_voltage_range_v"
    );
    assert_eq!(
        field(&|c| c.plausibility.link_voltage_range_v = [f32::NAN, 600.0]),
        "plausibility.link_voltage_range_v"
    );
    assert_eq!(field(&|c| c.supervision_periods = 1), "supervision_periods");
    assert_eq!(field(&|c| c.soc.ocv.ocv_v.reverse()), "soc.ocv[1]");
    let msg = {
        let mut c = cfg();
        c.cell_over_voltage_v.rsl = None;
        c.validate().unwrap_err().to_string()
    };
    assert!(msg.contains("SAFETY.md"), "{msg}");
}

#[test]
fn an_implausible_pack_or_link_voltage_trips_after_the_range_delay() {
    let cfg = cfg();
    let (mut p, mut t) = closed_protection(&cfg);
    let start = t;
    while p.latched().is_empty() {
        t += PERIOD;
        let mut s = base(t);
        s.link_voltage_v = 5000.0;
        p.tick(&s, None, t);
        assert!(t - start < 1000, "never tripped");
    }
    let l = &p.latched()[0];
    assert_eq!(l.quantity, Quantity::SensorOutOfRange);
    assert!(
        t - start >= cfg.plausibility.range_delay_ms,
        "{} ms",
        t - start
    );
}

/// A sink whose disk can be made to refuse writes.
struct FlakyDisk {
    records: Vec<EventRecord>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EventSink for FlakyDisk {
    fn append(&mut self, rec: EventRecord) {
        self.records.push(rec);
    }
    fn records(&self) -> &[EventRecord] {
        &self.records
    }
    fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[test]
fn a_failing_event_record_warns_and_protection_keeps_its_latch() {
    let cfg = cfg();
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = FlakyDisk {
        records: Vec::new(),
        failing: failing.clone(),
    };
    let (mut p, mut t) = latch_over_voltage(&cfg);
    p.log = Box::new(sink);
    failing.store(true, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..50 {
        t += PERIOD;
        let st = feed(&mut p, base(t), None, t);
        assert!(!st.outputs.main, "latched: stays open while the disk fails");
        assert!(
            st.active
                .iter()
                .any(|a| a.quantity == Quantity::EventRecordFailing && a.tier == TierLevel::Mol),
            "{:?}",
            st.active
        );
    }
    assert_eq!(p.latched().len(), 1, "the latch is held in memory");
    let raised: Vec<_> = p
        .events()
        .iter()
        .filter(|e| e.quantity == Some(Quantity::EventRecordFailing))
        .map(|e| e.kind)
        .collect();
    assert_eq!(raised, [EventKind::Raised], "raised once, not every tick");
    failing.store(false, std::sync::atomic::Ordering::Relaxed);
    t += PERIOD;
    let st = feed(&mut p, base(t), None, t);
    assert!(!st
        .active
        .iter()
        .any(|a| a.quantity == Quantity::EventRecordFailing));
    assert_eq!(
        p.events().last().map(|e| (e.kind, e.quantity)),
        Some((EventKind::Cleared, Some(Quantity::EventRecordFailing)))
    );
}
