//! Behaviour tests through the host's config path ([`Harness`]) against an
//! [`IdealPack`] whose true SOC is known.

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

const CAP_AH: f32 = 280.0;
const R0_OHM: f32 = 0.5e-3;

fn table(lfp: bool) -> OcvTable {
    if lfp {
        OcvTable::new(LFP_SOC.to_vec(), LFP_OCV.to_vec()).unwrap()
    } else {
        OcvTable::new(NMC_SOC.to_vec(), NMC_OCV.to_vec()).unwrap()
    }
}

/// Config JSON for `capacity_ah` = 280 and the given table, with
/// `overrides` merged in.
fn config(lfp: bool, overrides: Value) -> String {
    let (chemistry, soc, ocv) = if lfp {
        ("LFP", LFP_SOC.to_vec(), LFP_OCV.to_vec())
    } else {
        ("NMC", NMC_SOC.to_vec(), NMC_OCV.to_vec())
    };
    let mut c = json!({
        "capacity_ah": CAP_AH,
        "ocv": {"chemistry": chemistry, "soc_pct": soc, "ocv_v": ocv},
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn harness(lfp: bool, overrides: Value) -> Harness<SocCounting> {
    Harness::new(&config(lfp, overrides)).unwrap()
}

fn config_error(json: &str) -> String {
    Harness::<SocCounting>::new(json).expect_err("config should be rejected")
}

fn pack(lfp: bool, cells: usize, soc_pct: f32) -> IdealPack {
    IdealPack::new(table(lfp), cells, CAP_AH, soc_pct, R0_OHM)
}

/// Run `seconds` at `current_a` in steps of `dt_s`; return the last output.
fn run(
    h: &mut Harness<SocCounting>,
    p: &mut IdealPack,
    seconds: f32,
    dt_s: f32,
    current_a: f32,
) -> SocOutput {
    let steps = (seconds / dt_s).round() as usize;
    let mut out = None;
    for _ in 0..steps {
        out = Some(h.step(&p.step(dt_s, current_a)).unwrap());
    }
    out.expect("at least one step")
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

#[test]
fn info_comes_from_cargo_toml() {
    let i = SocCounting::info();
    assert_eq!(i.name, "soc-counting");
    assert!(!i.description.is_empty());
}

#[test]
fn first_step_initialises_from_ocv() {
    let mut h = harness(true, json!({}));
    let p = pack(true, 8, 20.0);
    let out = h.step(&p.snapshot()).unwrap();
    assert_eq!(out.cell_soc_pct.len(), 8);
    for soc in &out.cell_soc_pct {
        assert_close(*soc, 20.0, 0.01, "initial cell SOC");
    }
    assert_close(out.pack_soc_pct, 20.0, 0.01, "initial pack SOC");
}

#[test]
fn counting_tracks_the_true_soc_through_charge_and_discharge() {
    let mut h = harness(true, json!({"coulombic_efficiency": 1.0}));
    let mut p = pack(true, 16, 20.0);
    h.step(&p.snapshot()).unwrap();
    // Charge at 0.5 C for 5000 s (+69 %), then discharge at 100 A for 1 h.
    for (seconds, current_a) in [(5000.0, 140.0), (3600.0, -100.0)] {
        for _ in 0..(seconds as usize) {
            let out = h.step(&p.step(1.0, current_a)).unwrap();
            for (est, truth) in out.cell_soc_pct.iter().zip(&p.soc_pct) {
                assert_close(*est, *truth, 0.01, "cell SOC while counting");
            }
            assert_close(out.pack_soc_pct, p.soc_pct[0], 0.01, "pack SOC");
        }
    }
    assert_close(p.soc_pct[0], 20.0 + 69.44 - 35.71, 0.02, "scenario");
}

#[test]
fn coulombic_efficiency_applies_to_charge_only() {
    let mut h = harness(false, json!({"coulombic_efficiency": 0.95}));
    let mut p = pack(false, 4, 20.0);
    h.step(&p.snapshot()).unwrap();
    let charged_pct = 100.0 / CAP_AH * 100.0; // 100 Ah
    let out = run(&mut h, &mut p, 3600.0, 1.0, 100.0);
    assert_close(p.soc_pct[0], 20.0 + charged_pct, 0.01, "truth after charge");
    assert_close(
        out.cell_soc_pct[0],
        20.0 + 0.95 * charged_pct,
        0.01,
        "estimate after charge",
    );
    // Discharging the same 100 Ah removes the full amount.
    let out = run(&mut h, &mut p, 3600.0, 1.0, -100.0);
    assert_close(
        out.cell_soc_pct[0],
        20.0 + 0.95 * charged_pct - charged_pct,
        0.01,
        "estimate after discharge",
    );
}

#[test]
fn soc_is_clamped_to_0_100() {
    let mut h = harness(false, json!({}));
    let mut p = pack(false, 2, 95.0);
    h.step(&p.snapshot()).unwrap();
    let out = run(&mut h, &mut p, 3600.0, 1.0, 200.0);
    assert_eq!(out.cell_soc_pct, vec![100.0, 100.0]);
    assert_eq!(out.pack_soc_pct, 100.0);
    let out = run(&mut h, &mut p, 3.0 * 3600.0, 1.0, -200.0);
    assert_eq!(out.cell_soc_pct, vec![0.0, 0.0]);
    assert_eq!(out.pack_soc_pct, 0.0);
}

#[test]
fn recalibrates_after_rest_on_a_steep_part_once_per_rest() {
    let mut h = harness(true, json!({}));
    let mut p = pack(true, 4, 96.0);
    h.step(&p.snapshot()).unwrap();
    // The estimate thinks 96 %; the truth is 93 % (LFP, 2 mV/% there).
    p.soc_pct = vec![93.0; 4];
    let out = run(&mut h, &mut p, 599.0, 1.0, 0.0);
    assert_close(out.cell_soc_pct[0], 96.0, 0.01, "before rest_time_s");
    let _ = h.take_logs();
    let out = run(&mut h, &mut p, 1.0, 1.0, 0.0);
    for soc in &out.cell_soc_pct {
        assert_close(*soc, 93.0, 0.02, "recalibrated at 600 s");
    }
    let logs = h.take_logs();
    assert!(
        logs_contain(&logs, Level::Info, "4 of 4 cells")
            && logs_contain(&logs, Level::Info, "largest correction -3.0"),
        "{logs:?}"
    );

    // Once per rest period: a further change during the same rest is not
    // picked up...
    p.soc_pct = vec![91.0; 4];
    let out = run(&mut h, &mut p, 1200.0, 1.0, 0.0);
    assert_close(out.cell_soc_pct[0], 93.0, 0.02, "no second recalibration");
    // ...but after a current pulse and a new full rest it is.
    run(&mut h, &mut p, 10.0, 1.0, 20.0);
    let truth = p.soc_pct[0];
    // Rest starts at the first zero-current snapshot; 600 s after it.
    let out = run(&mut h, &mut p, 600.0, 1.0, 0.0);
    assert_close(
        out.cell_soc_pct[0],
        93.0 + 10.0 * 20.0 * 0.998 / 36.0 / CAP_AH,
        1e-3,
        "1 s early",
    );
    let out = run(&mut h, &mut p, 1.0, 1.0, 0.0);
    assert_close(out.cell_soc_pct[0], truth, 0.02, "second rest period");
}

#[test]
fn does_not_recalibrate_on_the_lfp_plateau() {
    let mut h = harness(true, json!({}));
    let mut p = pack(true, 4, 55.0);
    h.step(&p.snapshot()).unwrap();
    // Truth 50 %: the OCV differs by 2.5 mV from the estimate's, which on
    // a 0.5 mV/% plateau is within a sensor's noise.
    p.soc_pct = vec![50.0; 4];
    let out = run(&mut h, &mut p, 1200.0, 1.0, 0.0);
    for soc in &out.cell_soc_pct {
        assert_close(*soc, 55.0, 0.01, "kept on the plateau");
    }
    let logs = h.take_logs();
    assert!(
        !logs_contain(&logs, Level::Info, "OCV recalibration"),
        "{logs:?}"
    );
    assert!(logs_contain(&logs, Level::Debug, "flat part"), "{logs:?}");

    // With the slope requirement off, the same rest does recalibrate.
    let mut h = harness(true, json!({"min_ocv_slope_mv_per_pct": 0.0}));
    let mut p = pack(true, 4, 55.0);
    h.step(&p.snapshot()).unwrap();
    p.soc_pct = vec![50.0; 4];
    let out = run(&mut h, &mut p, 600.0, 1.0, 0.0);
    assert_close(
        out.cell_soc_pct[0],
        50.0,
        0.05,
        "recalibrated without slope check",
    );
}

#[test]
fn start_under_load_is_corrected_at_the_first_rest() {
    // Started while discharging at 100 A: the IR drop makes the OCV lookup
    // read low. The first rest on a steep part puts it right.
    let mut h = harness(false, json!({}));
    let mut p = pack(false, 4, 60.0);
    p.r0_ohm = vec![2e-3; 4];
    let first = h.step(&p.step(1.0, -100.0)).unwrap();
    assert!(first.cell_soc_pct[0] < p.soc_pct[0] - 2.0, "{first:?}");
    let out = run(&mut h, &mut p, 601.0, 1.0, 0.0);
    assert_close(out.cell_soc_pct[0], p.soc_pct[0], 0.02, "after rest");
}

/// Pack of 2 modules × 4 cells on the NMC curve.
fn two_module_pack(soc_pct: f32) -> IdealPack {
    let mut p = pack(false, 8, soc_pct);
    p.cells_per_module = 4;
    p
}

/// Snapshot with module 1 stale, its voltages frozen at `frozen_v`.
fn with_module_1_stale(mut s: PackSnapshot, frozen_v: f32) -> PackSnapshot {
    s.module_comm[1] = CommStatus::Stale;
    for v in &mut s.cell_voltage_v[4..8] {
        *v = frozen_v;
    }
    s
}

#[test]
fn stale_modules_are_not_recalibrated() {
    let mut h = harness(false, json!({}));
    let mut p = two_module_pack(50.0);
    h.step(&p.snapshot()).unwrap();
    p.soc_pct = vec![40.0; 8];
    run(&mut h, &mut p, 300.0, 1.0, 0.0);
    // Module 1 goes stale with a frozen reading that would say 70 %.
    let frozen_v = table(false).ocv_v(70.0);
    let mut out = None;
    for _ in 0..400 {
        let s = with_module_1_stale(p.step(1.0, 0.0), frozen_v);
        out = Some(h.step(&s).unwrap());
    }
    let out = out.unwrap();
    for soc in &out.cell_soc_pct[..4] {
        assert_close(*soc, 40.0, 0.02, "fresh module recalibrated");
    }
    for soc in &out.cell_soc_pct[4..] {
        assert_close(*soc, 50.0, 0.01, "stale module untouched");
    }
    // Module 1 comes back while the same rest lasts: its cells are
    // recalibrated from fresh data (once the filter has averaged for
    // voltage_filter_tau_s), never from the frozen reading.
    let out = run(&mut h, &mut p, 5.0, 1.0, 0.0);
    for soc in &out.cell_soc_pct[4..] {
        assert_close(*soc, 50.0, 0.01, "filter not settled yet");
    }
    // Seeded by the first fresh sample, 10 s old at the 11th.
    let out = run(&mut h, &mut p, 6.0, 1.0, 0.0);
    for soc in &out.cell_soc_pct[4..] {
        assert_close(*soc, 40.0, 0.02, "recalibrated once fresh");
    }
}

#[test]
fn cells_stale_at_start_get_a_placeholder_then_their_ocv() {
    let mut h = harness(false, json!({}));
    let mut p = two_module_pack(30.0);
    for soc in &mut p.soc_pct[4..] {
        *soc = 60.0;
    }
    let out = h
        .step(&with_module_1_stale(p.snapshot(), f32::NAN))
        .unwrap();
    for soc in &out.cell_soc_pct[4..] {
        assert_close(*soc, 30.0, 0.01, "placeholder = mean of known cells");
    }
    assert!(logs_contain(
        &h.take_logs(),
        Level::Warn,
        "no valid voltage"
    ));
    let out = run(&mut h, &mut p, 1.0, 1.0, 0.0);
    for soc in &out.cell_soc_pct[4..] {
        assert_close(*soc, 60.0, 0.01, "read from OCV once fresh");
    }
}

#[test]
fn nan_and_odd_input_do_not_poison_outputs() {
    let mut h = harness(false, json!({}));
    let mut p = pack(false, 4, 50.0);
    h.step(&p.snapshot()).unwrap();
    p.soc_pct = vec![40.0; 4];
    // Cell 2 reads NaN, cell 3 reads 0 V (dead sensor) through the rest.
    let mut out = None;
    for _ in 0..700 {
        let mut s = p.step(1.0, 0.0);
        s.cell_voltage_v[2] = f32::NAN;
        s.cell_voltage_v[3] = 0.0;
        out = Some(h.step(&s).unwrap());
    }
    let out = out.unwrap();
    assert!(out.cell_soc_pct.iter().all(|x| x.is_finite()));
    assert_close(out.cell_soc_pct[0], 40.0, 0.02, "good cell recalibrated");
    // The bad cells keep their estimate: not NaN, not dragged to 0 %.
    assert_close(out.cell_soc_pct[2], 50.0, 0.01, "NaN cell");
    assert_close(out.cell_soc_pct[3], 50.0, 0.01, "0 V cell");
    // Readings return during the same rest: recalibrated from fresh data.
    let out = run(&mut h, &mut p, 11.0, 1.0, 0.0);
    assert_close(out.cell_soc_pct[2], 40.0, 0.02, "NaN cell after recovery");
    assert_close(out.cell_soc_pct[3], 40.0, 0.02, "0 V cell after recovery");

    // NaN current: no integration, no panic.
    let mut s = p.step(1.0, 0.0);
    s.current_a = f32::NAN;
    let out2 = h.step(&s).unwrap();
    assert_eq!(out2.cell_soc_pct, out.cell_soc_pct);
    // Infinite current: same.
    s.timestamp_ms += 1000;
    s.current_a = f32::INFINITY;
    let out3 = h.step(&s).unwrap();
    assert_eq!(out3.cell_soc_pct, out.cell_soc_pct);

    // Empty cell list: keep the estimate, report no cells.
    let mut empty = p.step(1.0, 0.0);
    empty.cell_voltage_v.clear();
    empty.cell_temp_c.clear();
    empty.module_comm.clear();
    let out4 = h.step(&empty).unwrap();
    assert!(out4.cell_soc_pct.is_empty());
    assert_eq!(out4.pack_soc_pct, out.pack_soc_pct);
    // And the next normal snapshot continues with the same cells.
    let out5 = h.step(&p.step(1.0, 0.0)).unwrap();
    assert_eq!(out5.cell_soc_pct.len(), 4);
    assert!(out5.pack_soc_pct.is_finite());
}

#[test]
fn first_snapshot_all_nan_stays_finite() {
    let mut h = harness(true, json!({}));
    let s = PackSnapshot::uniform(0, 4, 4, f32::NAN, 25.0, f32::NAN);
    let out = h.step(&s).unwrap();
    assert!(out.cell_soc_pct.iter().all(|x| x.is_finite()));
    assert!(out.pack_soc_pct.is_finite());
    // Empty first snapshot.
    let mut h = harness(true, json!({}));
    let out = h
        .step(&PackSnapshot::uniform(0, 0, 4, 3.3, 25.0, 0.0))
        .unwrap();
    assert!(out.cell_soc_pct.is_empty());
    assert_eq!(out.pack_soc_pct, 0.0);
}

#[test]
fn time_gaps_are_capped_and_backwards_time_is_ignored() {
    let mut h = harness(false, json!({"coulombic_efficiency": 1.0}));
    let p = pack(false, 2, 50.0);
    let mut s = p.snapshot();
    s.timestamp_ms = 1_000_000;
    h.step(&s).unwrap();
    // One hour later at 100 A: only MAX_STEP_DT_S is integrated.
    s.timestamp_ms += 3_600_000;
    s.current_a = 100.0;
    let out = h.step(&s).unwrap();
    let expected = 50.0 + 100.0 * MAX_STEP_DT_S as f32 / 3600.0 / CAP_AH * 100.0;
    assert_close(out.cell_soc_pct[0], expected, 1e-3, "capped dt");
    // Time goes backwards (host restart): nothing integrated, warned.
    s.timestamp_ms = 500;
    let out2 = h.step(&s).unwrap();
    assert_eq!(out2.cell_soc_pct, out.cell_soc_pct);
    assert!(logs_contain(&h.take_logs(), Level::Warn, "backwards"));
    // And counting resumes from the new time base.
    s.timestamp_ms = 1500;
    let out3 = h.step(&s).unwrap();
    assert!(out3.cell_soc_pct[0] > out2.cell_soc_pct[0]);
}

#[test]
fn pack_soc_is_limited_by_weakest_and_strongest_cell() {
    let cases: [(&[f32], f32); 5] = [
        (&[20.0, 50.0, 80.0], 50.0),          // 20 / (20 + 20)
        (&[30.0, 40.0], 100.0 * 30.0 / 90.0), // 30 / (30 + 60)
        (&[0.0, 50.0], 0.0),                  // weakest empty
        (&[50.0, 100.0], 100.0),              // strongest full
        (&[0.0, 100.0], 0.0),                 // 0/0: unusable, reads empty
    ];
    for (socs, expected) in cases {
        let mut h = harness(false, json!({}));
        let mut p = pack(false, socs.len(), 0.0);
        p.soc_pct = socs.to_vec();
        let out = h.step(&p.snapshot()).unwrap();
        assert_close(
            out.pack_soc_pct,
            expected,
            0.01,
            &format!("pack SOC of {socs:?}"),
        );
    }
}

#[test]
fn config_defaults_and_chemistry_key_are_accepted() {
    let h = harness(true, json!({}));
    assert_eq!(h.coulombic_efficiency, f64::from(0.998f32));
    assert_eq!(h.rest_current_a, 2.0);
    assert_eq!(h.rest_time_s, 600.0);
    assert_eq!(h.min_ocv_slope_mv_per_pct, 1.0);
    assert_eq!(h.voltage_filter_tau_s, 10.0);
}

#[test]
fn config_errors_name_the_field() {
    let err = config_error(&config(true, json!({"capacity_ahh": 280})));
    assert!(err.contains("capacity_ahh"), "{err}");
    assert_eq!(
        config_error(&config(true, json!({"capacity_ah": -3}))),
        "capacity_ah must be > 0, got -3"
    );
    for (field, bad) in [
        ("coulombic_efficiency", json!(1.2)),
        ("coulombic_efficiency", json!(0)),
        ("rest_current_a", json!(0)),
        ("rest_time_s", json!(-1)),
        ("min_ocv_slope_mv_per_pct", json!(-0.5)),
        ("voltage_filter_tau_s", json!(-10)),
        ("capacity_ah", json!("280")),
    ] {
        let err = config_error(&config(true, json!({ field: bad })));
        assert!(err.contains(field), "{field}: {err}");
    }
    let err = config_error(&json!({"capacity_ah": 280}).to_string());
    assert!(err.contains("ocv"), "{err}");
    let ocv = |soc: Value, v: Value| config(true, json!({"ocv": {"soc_pct": soc, "ocv_v": v}}));
    let err = config_error(&ocv(json!([0, 50, 100]), json!([3.0, 3.3, 3.2])));
    assert!(err.contains("ocv") && err.contains("ocv_v[2]"), "{err}");
    let err = config_error(&ocv(json!([0, 0.5, 1]), json!([3.0, 3.3, 3.6])));
    assert!(err.contains("ocv.soc_pct"), "{err}");
    let err = config_error(&ocv(json!([0, 50, 100]), json!([3000, 3300, 3600])));
    assert!(err.contains("ocv.ocv_v"), "{err}");
    let err = config_error(&config(
        true,
        json!({"ocv": {"soc_pct": [0, 100], "ocv_v": [3.0, 3.6], "chemestry": "LFP"}}),
    ));
    assert!(err.contains("chemestry"), "{err}");
}

/// Drive `a` and `b` with the same snapshots, reloading `b` at the listed
/// step indices; outputs must stay identical.
fn assert_reload_is_invisible(
    a: &mut Harness<SocCounting>,
    b: &mut Harness<SocCounting>,
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
    let cfg = config(false, json!({}));
    let mut a = Harness::<SocCounting>::new(&cfg).unwrap();
    let mut b = Harness::<SocCounting>::new(&cfg).unwrap();
    // Reload before the first step too: the blob then holds no cells.
    b.reload().unwrap();
    let mut p = two_module_pack(50.0);
    let mut snapshots = vec![p.snapshot()];
    p.soc_pct = vec![45.0; 8];
    let mut plan = vec![(120, 0.0), (1800, 80.0), (300, 0.0)];
    plan.extend([(400, 0.0), (60, -50.0), (700, 0.0)]);
    for (steps, current_a) in plan {
        for _ in 0..steps {
            snapshots.push(p.step(1.0, current_a));
        }
    }
    // Indices: charge 121..=1920, rest from 1921 (recalibration at 2521),
    // discharge 2621..=2680, rest from 2681 (recalibration at 3281).
    // Reload mid-charge, at the start of and 300 s into a rest (the
    // detector's start must survive), right after a recalibration (the
    // once-per-rest flag must survive), and during the last rest.
    let reload_at = [1, 1000, 1921, 2221, 2521, 2522, 2700, 3000, 3281];
    assert_reload_is_invisible(&mut a, &mut b, &snapshots, &reload_at);
    let last = a.step(&p.step(1.0, 0.0)).unwrap();
    assert_close(
        last.cell_soc_pct[0],
        p.soc_pct[0],
        0.05,
        "recalibrated at the end",
    );
}

#[test]
fn corrupt_state_is_rejected() {
    let mut h = harness(false, json!({}));
    let p = pack(false, 4, 50.0);
    h.step(&p.snapshot()).unwrap();
    let good = h.save_state();

    let err = h.restore_state(b"not a state blob").unwrap_err();
    assert!(err.contains("BMSS"), "{err}");
    let err = h
        .restore_state(&state::encode(1, &json!({"foo": 1})))
        .unwrap_err();
    assert!(err.contains("corrupt"), "{err}");
    let err = h.restore_state(&state::encode(2, &json!({}))).unwrap_err();
    assert!(err.contains("version 2"), "{err}");
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 5);
    assert!(h.restore_state(&truncated).is_err());

    // Well-formed JSON with impossible values.
    let mut v: Value = state::decode(1, &good).unwrap();
    v["cells"][0]["soc_pct"] = json!(150.0);
    let err = h.restore_state(&state::encode(1, &v)).unwrap_err();
    assert!(err.contains("cell 0"), "{err}");

    // An empty blob means "nothing saved" and is accepted.
    assert!(h.restore_state(&[]).is_ok());
    assert!(h.restore_state(&good).is_ok());
}

#[test]
fn cell_count_mismatch_after_restore_reinitialises_from_ocv() {
    let cfg = config(false, json!({}));
    let mut a = Harness::<SocCounting>::new(&cfg).unwrap();
    a.step(&pack(false, 4, 30.0).snapshot()).unwrap();
    let blob = a.save_state();

    let mut b = Harness::<SocCounting>::new(&cfg).unwrap();
    b.restore_state(&blob).unwrap();
    let mut p = pack(false, 6, 70.0);
    let out = b.step(&p.step(1.0, 0.0)).unwrap();
    assert_eq!(out.cell_soc_pct.len(), 6);
    for soc in &out.cell_soc_pct {
        assert_close(*soc, 70.0, 0.01, "re-initialised from OCV");
    }
    let logs = b.take_logs();
    assert!(
        logs_contain(
            &logs,
            Level::Warn,
            "restored state has 4 cells but the snapshot has 6"
        ),
        "{logs:?}"
    );
    // The same restored state with a matching pack continues from it.
    let mut c = Harness::<SocCounting>::new(&cfg).unwrap();
    c.restore_state(&blob).unwrap();
    let out = c.step(&pack(false, 4, 70.0).snapshot()).unwrap();
    assert_close(out.cell_soc_pct[0], 30.0, 0.01, "restored SOC kept");
}
