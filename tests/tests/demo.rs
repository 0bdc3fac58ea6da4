//! The demo site end to end: real components on the simulated rack for the
//! whole two-hour profile.

use bms_e2e::{assemble, demo_site, section};
use bmshost::site::RunOptions;
use bmshost::telemetry::Summary;

/// The EMS hint per cycle: (simulated s, recommended power W, reason).
type Hints = Vec<(f64, f32, String)>;

fn run(balancing: bool) -> (Summary, Hints) {
    let cfg = demo_site(|t| {
        section(t, &["plugins", "balancer"]).insert("enabled".into(), balancing.into());
    });
    let (mut site, _dir) = assemble(cfg);
    let mut hints = Vec::new();
    let summary = site
        .run(&RunOptions::default(), |o| {
            if let Some(c) = o.cycle {
                hints.push((o.t_ms as f64 / 1000.0, c.ems_power_w, c.ems_reason.clone()));
            }
        })
        .unwrap();
    (summary, hints)
}

#[test]
fn soc_stays_accurate_and_balancing_narrows_the_spread() {
    let (on, hints) = run(true);
    let (off, _) = run(false);
    let acc = on.sim.as_ref().unwrap();
    println!(
        "balancing on: max SOC error {:.2} pp (cell {} at {:.0} s), final spread {:.1} mV, true SOC spread {:.2} -> {:.2} pp",
        acc.max_abs_soc_error_pct,
        acc.max_abs_soc_error_cell,
        acc.max_abs_soc_error_time_s,
        on.final_cell_voltage_spread_mv,
        acc.initial_true_soc_spread_pct,
        acc.final_true_soc_spread_pct
    );
    let acc_off = off.sim.as_ref().unwrap();
    println!(
        "balancing off: final spread {:.1} mV, true SOC spread {:.2} -> {:.2} pp",
        off.final_cell_voltage_spread_mv,
        acc_off.initial_true_soc_spread_pct,
        acc_off.final_true_soc_spread_pct
    );

    // Every cell, every second of the run.
    assert!(
        acc.max_abs_soc_error_pct < 3.0,
        "SOC error reached {:.2} pp on cell {} at {:.0} s",
        acc.max_abs_soc_error_pct,
        acc.max_abs_soc_error_cell,
        acc.max_abs_soc_error_time_s
    );
    // Compared on every cycle but the few before the first complete
    // snapshot; the per-cell record covers every cell.
    assert_eq!(acc.cycles_compared + acc.cycles_without_estimate, on.cycles);
    assert!(
        acc.cycles_without_estimate <= 10,
        "{} cycles without an SOC estimate",
        acc.cycles_without_estimate
    );
    assert_eq!(acc.max_abs_soc_error_pct_per_cell.len(), 128);
    let worst = acc
        .max_abs_soc_error_pct_per_cell
        .iter()
        .copied()
        .fold(0.0, f64::max);
    assert_eq!(worst, acc.max_abs_soc_error_pct);

    // SOH: the weakest cell's capacity over the rating, measured between
    // the rested points around the charge.
    let soh = on.final_pack_soh_pct.expect("an SOH estimate");
    let true_soh = 100.0 * acc.true_min_capacity_ah / 280.0;
    println!("SOH {soh:.2} %, true (weakest cell) {true_soh:.2} %");
    assert!(soh < 100.0, "SOH never left its initial 100 %");
    assert!(
        (soh as f64 - true_soh).abs() < 3.0,
        "SOH {soh} % against the true {true_soh:.2} %"
    );

    // EMS: the demo starts at 06:30, inside the off-peak window (charge
    // hint); the morning peak starts at 07:30 (discharge hint).
    let at = |from_s: f64, to_s: f64| hints.iter().filter(move |h| h.0 >= from_s && h.0 < to_s);
    assert!(
        at(0.0, 1800.0).any(|h| h.1 > 0.0 && h.2.contains("off-peak")),
        "no charge hint off-peak: {:?}",
        at(0.0, 1800.0).nth(100)
    );
    assert!(
        at(3600.0, 7200.0).any(|h| h.1 < 0.0 && h.2.contains("morning-peak")),
        "no discharge hint in the morning peak: {:?}",
        at(3600.0, 7200.0).nth(100)
    );

    // The plugins ran the whole time: nothing fell back.
    for p in &on.plugins {
        assert_eq!(p.errors, 0, "{} plugin errors: {:?}", p.role, p.last_error);
    }
    assert!(on.bleed_cell_s > 0.0 && off.bleed_cell_s == 0.0);
    // Same seed, same physics: the only difference is the bleeding.
    assert!(
        on.final_cell_voltage_spread_mv < 0.8 * off.final_cell_voltage_spread_mv,
        "balancing on: {:.1} mV, off: {:.1} mV",
        on.final_cell_voltage_spread_mv,
        off.final_cell_voltage_spread_mv
    );
    assert!(acc.final_true_soc_spread_pct < acc_off.final_true_soc_spread_pct);
    // No fault on the nominal profile, and the contactors closed once.
    assert!(on.latched.is_empty(), "{:?}", on.latched);
    let closes = on
        .protection_events
        .iter()
        .filter(|e| e.action == "close main contactor")
        .count();
    assert_eq!(closes, 1, "{:#?}", on.protection_events);
}
