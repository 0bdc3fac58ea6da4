//! The demo site end to end: real components on the simulated rack for the
//! whole two-hour profile.

use bms_e2e::{assemble, demo_site, section};
use bmshost::site::RunOptions;
use bmshost::telemetry::Summary;

fn run(balancing: bool) -> Summary {
    let cfg = demo_site(|t| {
        section(t, &["plugins", "balancer"]).insert("enabled".into(), balancing.into());
    });
    let (mut site, _dir) = assemble(cfg);
    site.run(&RunOptions::default(), |_| {}).unwrap()
}

#[test]
fn soc_stays_accurate_and_balancing_narrows_the_spread() {
    let on = run(true);
    let off = run(false);
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
