//! Behaviour tests through the host's config path ([`Harness`]) against an
//! [`IdealPack`] whose true capacity and resistance are known.

use super::*;
use bms_plugin_sdk::harness::{Harness, IdealPack};
use bms_plugin_sdk::log::Level;
use serde_json::{json, Value};

const LFP_SOC: [f32; 15] = [
    0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 98.0, 100.0,
];
const LFP_OCV: [f32; 15] = [
    2.50, 3.10, 3.20, 3.23, 3.25, 3.275, 3.29, 3.295, 3.30, 3.31, 3.33, 3.335, 3.345, 3.40, 3.55,
];
const NMC_SOC: [f32; 11] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
];
const NMC_OCV: [f32; 11] = [
    3.00, 3.45, 3.55, 3.62, 3.67, 3.72, 3.80, 3.90, 4.00, 4.08, 4.20,
];

const RATED_AH: f32 = 280.0;
const R0_OHM: f32 = 0.4e-3;

fn table(lfp: bool) -> OcvTable {
    if lfp {
        OcvTable::new(LFP_SOC.to_vec(), LFP_OCV.to_vec()).unwrap()
    } else {
        OcvTable::new(NMC_SOC.to_vec(), NMC_OCV.to_vec()).unwrap()
    }
}

/// Config JSON for rated 280 Ah, initial 0.25 mΩ and the given table, with
/// `overrides` merged in.
fn config(lfp: bool, overrides: Value) -> String {
    let (chemistry, soc, ocv) = if lfp {
        ("LFP", LFP_SOC.to_vec(), LFP_OCV.to_vec())
    } else {
        ("NMC", NMC_SOC.to_vec(), NMC_OCV.to_vec())
    };
    let mut c = json!({
        "rated_capacity_ah": RATED_AH,
        "initial_resistance_mohm": 0.25,
        "ocv": {"chemistry": chemistry, "soc_pct": soc, "ocv_v": ocv},
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn harness(lfp: bool, overrides: Value) -> Harness<SohCapacity> {
    Harness::new(&config(lfp, overrides)).unwrap()
}

fn config_error(json: &str) -> String {
    Harness::<SohCapacity>::new(json).expect_err("config should be rejected")
}

/// Run `seconds` at `current_a` in steps of `dt_s`; return the last output.
fn run(
    h: &mut Harness<SohCapacity>,
    p: &mut IdealPack,
    seconds: f32,
    dt_s: f32,
    current_a: f32,
) -> SohOutput {
    let steps = (seconds / dt_s).round() as usize;
    let mut out = None;
    for _ in 0..steps {
        out = Some(h.step(&p.step(dt_s, current_a)).unwrap());
    }
    out.expect("at least one step")
}

/// A rest long enough to be detected (rest starts at the first
/// zero-current snapshot) and for the voltage filter to settle.
fn rest(h: &mut Harness<SohCapacity>, p: &mut IdealPack) -> SohOutput {
    run(h, p, 630.0, 5.0, 0.0)
}

fn assert_close(actual: f32, expected: f32, tol: f32, what: &str) {
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected} ± {tol}"
    );
}

fn logs_contain(logs: &[(Level, String)], level: Level, needle: &str) -> bool {
    logs.iter().any(|(l, m)| *l == level && m.contains(needle))
}

/// Four LFP cells of 250, 260, 270 and 280 Ah, placed so that charging
/// 215 Ah takes every one from the steep low end to 96 %.
fn aged_pack() -> IdealPack {
    let capacity_ah = vec![250.0, 260.0, 270.0, 280.0];
    let mut p = IdealPack::new(table(true), 4, RATED_AH, 0.0, R0_OHM);
    p.soc_pct = capacity_ah
        .iter()
        .map(|c| 96.0 - 215.0 / c * 100.0)
        .collect();
    p.capacity_ah = capacity_ah;
    p
}

/// Charge (or discharge) 215 Ah in 2 h with 5 s samples.
fn move_215_ah(h: &mut Harness<SohCapacity>, p: &mut IdealPack, sign: f32) -> SohOutput {
    run(h, p, 7200.0, 5.0, sign * 215.0 / 2.0)
}

#[test]
fn info_comes_from_cargo_toml() {
    let i = SohCapacity::info();
    assert_eq!(i.name, "soh-capacity");
    assert!(!i.description.is_empty());
}

#[test]
fn starts_at_rated_capacity_and_initial_resistance() {
    let mut h = harness(true, json!({}));
    let p = IdealPack::new(table(true), 8, RATED_AH, 50.0, R0_OHM);
    let out = h.step(&p.snapshot()).unwrap();
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 8]);
    assert_eq!(out.cell_resistance_mohm, vec![0.25; 8]);
    assert_eq!(out.pack_soh_pct, 100.0);
}

#[test]
fn capacity_is_measured_between_rested_ocv_points() {
    let mut h = harness(true, json!({"capacity_gain": 1.0}));
    let mut p = aged_pack();
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    let out = move_215_ah(&mut h, &mut p, 1.0);
    assert_eq!(
        out.cell_capacity_ah,
        vec![RATED_AH; 4],
        "no update while charging"
    );
    assert_close(p.soc_pct[0], 96.0, 0.01, "scenario");
    let out = rest(&mut h, &mut p);
    for (est, truth) in out.cell_capacity_ah.iter().zip(&p.capacity_ah) {
        assert_close(*est, *truth, 0.2, "measured capacity");
    }
    assert_close(out.pack_soh_pct, 100.0 * 250.0 / RATED_AH, 0.1, "pack SOH");
    assert!(logs_contain(
        &h.take_logs(),
        Level::Info,
        "capacity measured for 4 cells"
    ));
}

#[test]
fn capacity_converges_over_cycles_with_the_default_gain() {
    let mut h = harness(true, json!({}));
    let mut p = aged_pack();
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    move_215_ah(&mut h, &mut p, 1.0);
    let out = rest(&mut h, &mut p);
    // One measurement moves 30 % of the way: 280 + 0.3·(250 − 280).
    assert_close(out.cell_capacity_ah[0], 271.0, 0.1, "first update");
    let mut errors = vec![];
    for k in 0..11 {
        move_215_ah(&mut h, &mut p, if k % 2 == 0 { -1.0 } else { 1.0 });
        let out = rest(&mut h, &mut p);
        errors.push((out.cell_capacity_ah[0] - 250.0).abs());
    }
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
    let out = h.step(&p.step(5.0, 0.0)).unwrap();
    for (est, truth) in out.cell_capacity_ah.iter().zip(&p.capacity_ah) {
        // 30 Ah · 0.7^12 ≈ 0.4 Ah left.
        assert_close(*est, *truth, 0.6, "converged capacity");
    }
}

#[test]
fn implausible_capacity_measurements_are_rejected() {
    // A 100 Ah cell configured as 280 Ah: the measurement is below 50 %.
    let mut h = harness(true, json!({"capacity_gain": 1.0}));
    let mut p = IdealPack::new(table(true), 2, 100.0, 10.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    run(&mut h, &mut p, 3600.0, 5.0, 86.0);
    let out = rest(&mut h, &mut p);
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 2]);
    let logs = h.take_logs();
    assert!(
        logs_contain(
            &logs,
            Level::Warn,
            "rejected 2 capacity measurements (plausible: 140..420 Ah"
        ) && logs_contain(
            &logs,
            Level::Warn,
            "100.0 Ah from +86.0 % SOC and +86.0 Ah: outside"
        ),
        "{logs:?}"
    );
}

#[test]
fn charge_and_soc_moving_in_opposite_directions_is_rejected() {
    // What a current sensor with the wrong sign looks like: 240 Ah
    // "charged" while the OCV says the cells went from 96 % to 10 %.
    let mut h = harness(true, json!({"capacity_gain": 1.0}));
    let mut p = IdealPack::new(table(true), 2, RATED_AH, 96.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    run(&mut h, &mut p, 7200.0, 5.0, 120.0);
    p.soc_pct = vec![10.0; 2];
    let out = rest(&mut h, &mut p);
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 2]);
    assert!(logs_contain(
        &h.take_logs(),
        Level::Warn,
        "opposite directions"
    ));
    // The reference moved on to the new point.
    let r = h.cells.as_ref().unwrap()[0].reference.unwrap();
    assert_close(r.soc_pct, 10.0, 0.01, "new reference");
}

#[test]
fn a_small_swing_keeps_the_older_reference() {
    let mut h = harness(true, json!({"capacity_gain": 1.0}));
    let mut p = aged_pack();
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    let first = h.cells.as_ref().unwrap()[0].reference.unwrap();
    assert_close(first.soc_pct, 10.0, 0.01, "first reference");
    // +10 % on cell 0: below min_delta_soc_pct, no measurement.
    run(&mut h, &mut p, 900.0, 5.0, 100.0);
    let out = rest(&mut h, &mut p);
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 4]);
    assert_eq!(h.cells.as_ref().unwrap()[0].reference, Some(first));
    // The rest of the way to 96 %: measured from the first reference.
    run(&mut h, &mut p, 7200.0 - 900.0, 5.0, 107.5);
    let out = rest(&mut h, &mut p);
    for (est, truth) in out.cell_capacity_ah.iter().zip(&p.capacity_ah) {
        assert_close(*est, *truth, 0.2, "measured over the whole swing");
    }
}

#[test]
fn no_ocv_point_on_a_flat_part_of_the_curve() {
    let mut h = harness(true, json!({}));
    let mut p = IdealPack::new(table(true), 4, RATED_AH, 55.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    assert!(h
        .cells
        .as_ref()
        .unwrap()
        .iter()
        .all(|c| c.reference.is_none()));
    assert!(logs_contain(
        &h.take_logs(),
        Level::Debug,
        "4 cells on a flat part"
    ));
    // On the steep NMC curve at the same SOC there is one.
    let mut h = harness(false, json!({}));
    let mut p = IdealPack::new(table(false), 4, RATED_AH, 55.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    rest(&mut h, &mut p);
    assert!(h
        .cells
        .as_ref()
        .unwrap()
        .iter()
        .all(|c| c.reference.is_some()));
}

/// Snapshot with module 1 (cells 4..8) stale, voltages frozen at `frozen_v`.
fn with_module_1_stale(mut s: PackSnapshot, frozen_v: f32) -> PackSnapshot {
    s.module_comm[1] = CommStatus::Stale;
    for v in &mut s.cell_voltage_v[4..8] {
        *v = frozen_v;
    }
    s
}

#[test]
fn stale_modules_give_no_ocv_points_and_no_resistance() {
    let mut h = harness(false, json!({"resistance_gain": 1.0}));
    let mut p = IdealPack::new(table(false), 8, RATED_AH, 30.0, R0_OHM);
    p.cells_per_module = 4;
    h.step(&p.snapshot()).unwrap();
    let frozen_v = table(false).ocv_v(80.0);
    let mut out = None;
    for _ in 0..130 {
        out = Some(
            h.step(&with_module_1_stale(p.step(5.0, 0.0), frozen_v))
                .unwrap(),
        );
    }
    let cells = h.cells.as_ref().unwrap();
    assert!(cells[..4].iter().all(|c| c.reference.is_some()));
    assert!(cells[4..].iter().all(|c| c.reference.is_none()));
    // A current step while module 1 is stale: only module 0 learns.
    let out_step = h
        .step(&with_module_1_stale(p.step(1.0, 100.0), frozen_v))
        .unwrap();
    assert_eq!(out.unwrap().cell_resistance_mohm, vec![0.25; 8]);
    for r in &out_step.cell_resistance_mohm[..4] {
        assert_close(*r, 0.4, 0.01, "fresh module");
    }
    assert_eq!(&out_step.cell_resistance_mohm[4..], &[0.25; 4]);
}

#[test]
fn resistance_from_a_current_step_matches_r0() {
    let mut h = harness(true, json!({"resistance_gain": 1.0}));
    let mut p = IdealPack::new(table(true), 4, RATED_AH, 50.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    run(&mut h, &mut p, 5.0, 1.0, 0.0);
    let out = h.step(&p.step(1.0, 100.0)).unwrap();
    for r in &out.cell_resistance_mohm {
        assert_close(*r, 0.4, 0.002, "one step, gain 1");
    }
}

#[test]
fn resistance_converges_with_the_default_gain() {
    let mut h = harness(true, json!({}));
    let mut p = IdealPack::new(table(true), 4, RATED_AH, 50.0, R0_OHM);
    p.r0_ohm = vec![0.3e-3, 0.4e-3, 0.6e-3, 1.2e-3];
    h.step(&p.snapshot()).unwrap();
    let mut out = None;
    // Up and down steps (charge pulses and discharge pulses).
    for k in 0..40 {
        let i = if k % 2 == 0 { 150.0 } else { -150.0 };
        run(&mut h, &mut p, 3.0, 1.0, 0.0);
        out = Some(run(&mut h, &mut p, 3.0, 1.0, i));
    }
    let out = out.unwrap();
    for (est, r0) in out.cell_resistance_mohm.iter().zip(&p.r0_ohm) {
        assert_close(*est, r0 * 1000.0, 0.005, "converged resistance");
    }
}

#[test]
fn resistance_ignores_slow_small_and_implausible_steps() {
    let mut h = harness(true, json!({"resistance_gain": 1.0}));
    let mut p = IdealPack::new(table(true), 2, RATED_AH, 50.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    // 2 s between samples: more than max_step_dt_ms.
    let out = h.step(&p.step(2.0, 100.0)).unwrap();
    assert_eq!(out.cell_resistance_mohm, vec![0.25; 2]);
    // 10 A step: below step_current_a.
    let out = h.step(&p.step(1.0, 110.0)).unwrap();
    assert_eq!(out.cell_resistance_mohm, vec![0.25; 2]);
    // 8 mΩ: above max_resistance_mohm. Negative: a sign error.
    let mut h = harness(
        true,
        json!({"resistance_gain": 1.0, "max_resistance_mohm": 5}),
    );
    let mut p = IdealPack::new(table(true), 2, RATED_AH, 50.0, R0_OHM);
    p.r0_ohm = vec![8e-3, -0.4e-3];
    h.step(&p.snapshot()).unwrap();
    let out = h.step(&p.step(1.0, 100.0)).unwrap();
    assert_eq!(out.cell_resistance_mohm, vec![0.25; 2]);
    let logs = h.take_logs();
    assert!(
        logs_contain(&logs, Level::Debug, "2 implausible values ignored"),
        "{logs:?}"
    );
}

#[test]
fn nan_and_odd_input_do_not_poison_outputs() {
    let mut h = harness(true, json!({"resistance_gain": 1.0}));
    let mut p = IdealPack::new(table(true), 4, RATED_AH, 50.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    // NaN voltage on cell 1 across a current step.
    let mut s = p.step(1.0, 100.0);
    s.cell_voltage_v[1] = f32::NAN;
    s.cell_voltage_v[2] = f32::INFINITY;
    let out = h.step(&s).unwrap();
    assert_eq!(out.cell_resistance_mohm[1], 0.25);
    assert_eq!(out.cell_resistance_mohm[2], 0.25);
    assert_close(out.cell_resistance_mohm[0], 0.4, 0.002, "good cell");
    // NaN current: no step, no integration, no panic.
    let net_ah = h.net_ah;
    let mut s = p.step(1.0, 0.0);
    s.current_a = f32::NAN;
    let out = h.step(&s).unwrap();
    assert_eq!(h.net_ah, net_ah);
    // Nor a step from NaN to a real current.
    let out2 = h.step(&p.step(1.0, -100.0)).unwrap();
    assert_eq!(out2.cell_resistance_mohm, out.cell_resistance_mohm);
    for o in [&out, &out2] {
        assert!(o.pack_soh_pct.is_finite());
        assert!(o.cell_capacity_ah.iter().all(|x| x.is_finite()));
        assert!(o.cell_resistance_mohm.iter().all(|x| x.is_finite()));
    }
    // Empty cell list: keep the estimates, report no cells.
    let empty = PackSnapshot::uniform(p.timestamp_ms + 1000, 0, 4, 3.3, 25.0, 0.0);
    let out3 = h.step(&empty).unwrap();
    assert!(out3.cell_capacity_ah.is_empty() && out3.cell_resistance_mohm.is_empty());
    assert_eq!(out3.pack_soh_pct, 100.0);
    // All-NaN first snapshot.
    let mut h = harness(true, json!({}));
    let out = h
        .step(&PackSnapshot::uniform(0, 4, 4, f32::NAN, 25.0, f32::NAN))
        .unwrap();
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 4]);
    assert_eq!(out.pack_soh_pct, 100.0);
}

#[test]
fn time_gaps_are_capped_and_backwards_time_is_ignored() {
    let mut h = harness(true, json!({}));
    let p = IdealPack::new(table(true), 2, RATED_AH, 50.0, R0_OHM);
    let mut s = p.snapshot();
    s.timestamp_ms = 1_000_000;
    h.step(&s).unwrap();
    s.timestamp_ms += 3_600_000;
    s.current_a = 100.0;
    h.step(&s).unwrap();
    assert!((h.net_ah - 100.0 * MAX_STEP_DT_S / 3600.0).abs() < 1e-9);
    let net_ah = h.net_ah;
    s.timestamp_ms = 500;
    h.step(&s).unwrap();
    assert_eq!(h.net_ah, net_ah);
    assert!(logs_contain(&h.take_logs(), Level::Warn, "backwards"));
}

#[test]
fn config_defaults_are_applied() {
    let h = harness(true, json!({}));
    assert_eq!(h.rest_current_a, 2.0);
    assert_eq!(h.rest_time_s, 600.0);
    assert_eq!(h.min_ocv_slope_mv_per_pct, 1.0);
    assert_eq!(h.voltage_filter_tau_s, 10.0);
    assert_eq!(h.min_delta_soc_pct, 20.0);
    assert_eq!(h.capacity_gain, f64::from(0.3f32));
    assert_eq!(h.step_current_a, 20.0);
    assert_eq!(h.max_step_dt_ms, 1000);
    assert_eq!(h.max_resistance_mohm, 50.0);
    assert_eq!(h.resistance_gain, f64::from(0.2f32));
}

#[test]
fn config_errors_name_the_field() {
    let err = config_error(&config(true, json!({"rated_capacity": 280})));
    assert!(err.contains("rated_capacity"), "{err}");
    assert_eq!(
        config_error(&config(true, json!({"rated_capacity_ah": -3}))),
        "rated_capacity_ah must be > 0, got -3"
    );
    for (field, bad) in [
        ("initial_resistance_mohm", json!(0)),
        ("initial_resistance_mohm", json!(60)),
        ("rest_current_a", json!(-2)),
        ("rest_time_s", json!(-1)),
        ("min_ocv_slope_mv_per_pct", json!(-1)),
        ("voltage_filter_tau_s", json!(-1)),
        ("min_delta_soc_pct", json!(0)),
        ("min_delta_soc_pct", json!(120)),
        ("capacity_gain", json!(0)),
        ("capacity_gain", json!(1.5)),
        ("step_current_a", json!(0)),
        ("max_step_dt_ms", json!(0)),
        ("max_step_dt_ms", json!(-5)),
        ("max_resistance_mohm", json!(0)),
        ("resistance_gain", json!(2)),
    ] {
        let err = config_error(&config(true, json!({ field: bad })));
        assert!(err.contains(field), "{field}: {err}");
    }
    // Required fields.
    let mut c: Value = serde_json::from_str(&config(true, json!({}))).unwrap();
    c.as_object_mut().unwrap().remove("initial_resistance_mohm");
    let err = config_error(&c.to_string());
    assert!(err.contains("initial_resistance_mohm"), "{err}");
    let err = config_error(&config(
        true,
        json!({"ocv": {"soc_pct": [0, 50, 100], "ocv_v": [3.0, 3.3]}}),
    ));
    assert!(err.contains("ocv"), "{err}");
}

/// Drive `a` and `b` with the same snapshots, reloading `b` at the listed
/// step indices; outputs must stay identical.
fn assert_reload_is_invisible(
    a: &mut Harness<SohCapacity>,
    b: &mut Harness<SohCapacity>,
    snapshots: &[PackSnapshot],
    reload_at: &[usize],
) {
    for (k, s) in snapshots.iter().enumerate() {
        if reload_at.contains(&k) {
            b.reload().unwrap();
        }
        assert_eq!(a.step(s).unwrap(), b.step(s).unwrap(), "step {k}");
    }
}

#[test]
fn save_restore_round_trip_continues_exactly() {
    let cfg = config(true, json!({}));
    let mut a = Harness::<SohCapacity>::new(&cfg).unwrap();
    let mut b = Harness::<SohCapacity>::new(&cfg).unwrap();
    b.reload().unwrap();
    let mut p = aged_pack();
    let mut snapshots = vec![p.snapshot()];
    // 5 s samples: rest, a 1 s current step, charge 215 Ah, rest.
    let mut push = |p: &mut IdealPack, steps: usize, dt_s: f32, current_a: f32| {
        for _ in 0..steps {
            snapshots.push(p.step(dt_s, current_a));
        }
    };
    push(&mut p, 126, 5.0, 0.0); // 1..=126, first points at 120
    push(&mut p, 1, 1.0, 107.5); // 127: resistance step
    push(&mut p, 1439, 5.0, 107.5); // 128..=1566
    push(&mut p, 130, 5.0, 0.0); // 1567..=1696, measurement at 1687
    let reload_at = [1, 60, 120, 121, 127, 128, 1000, 1600, 1687, 1688];
    assert_reload_is_invisible(&mut a, &mut b, &snapshots, &reload_at);
    let out = a.step(&p.step(5.0, 0.0)).unwrap();
    assert!(
        out.cell_capacity_ah[0] < 275.0,
        "a measurement happened: {out:?}"
    );
    assert!(
        out.cell_resistance_mohm[0] > 0.25,
        "a step happened: {out:?}"
    );
}

#[test]
fn corrupt_state_is_rejected() {
    let mut h = harness(true, json!({}));
    let p = IdealPack::new(table(true), 4, RATED_AH, 50.0, R0_OHM);
    h.step(&p.snapshot()).unwrap();
    let good = h.save_state();

    let err = h.restore_state(b"\x00\x01garbage").unwrap_err();
    assert!(err.contains("BMSS"), "{err}");
    let err = h
        .restore_state(&state::encode(1, &json!([1, 2, 3])))
        .unwrap_err();
    assert!(err.contains("corrupt"), "{err}");
    let err = h.restore_state(&state::encode(7, &json!({}))).unwrap_err();
    assert!(err.contains("version 7"), "{err}");
    let mut v: Value = state::decode(1, &good).unwrap();
    v["cells"][2]["capacity_ah"] = json!(-1.0);
    let err = h.restore_state(&state::encode(1, &v)).unwrap_err();
    assert!(err.contains("cell 2"), "{err}");
    assert!(h.restore_state(&[]).is_ok());
    assert!(h.restore_state(&good).is_ok());
}

#[test]
fn cell_count_mismatch_after_restore_starts_over() {
    let cfg = config(true, json!({"capacity_gain": 1.0}));
    let mut a = Harness::<SohCapacity>::new(&cfg).unwrap();
    let mut p = aged_pack();
    a.step(&p.snapshot()).unwrap();
    rest(&mut a, &mut p);
    move_215_ah(&mut a, &mut p, 1.0);
    let learned = rest(&mut a, &mut p);
    assert!(learned.pack_soh_pct < 95.0);
    let blob = a.save_state();

    let mut b = Harness::<SohCapacity>::new(&cfg).unwrap();
    b.restore_state(&blob).unwrap();
    let bigger = IdealPack::new(table(true), 6, RATED_AH, 50.0, R0_OHM);
    let mut s = bigger.snapshot();
    s.timestamp_ms = p.timestamp_ms + 1000;
    let out = b.step(&s).unwrap();
    assert_eq!(out.cell_capacity_ah, vec![RATED_AH; 6]);
    assert_eq!(out.cell_resistance_mohm, vec![0.25; 6]);
    assert_eq!(out.pack_soh_pct, 100.0);
    assert!(logs_contain(
        &b.take_logs(),
        Level::Warn,
        "restored state has 4 cells but the snapshot has 6"
    ));

    // A matching pack continues from the learned values.
    let mut c = Harness::<SohCapacity>::new(&cfg).unwrap();
    c.restore_state(&blob).unwrap();
    let out = c.step(&p.step(5.0, 0.0)).unwrap();
    assert_eq!(out.cell_capacity_ah, learned.cell_capacity_ah);
}
