//! The site closed loop: a simulated PCS follows the EMS advisor's hints
//! within the limits the host writes to its registers. A stationary-storage
//! day (`configs/demo-day.toml`) with the reference plugins trips no MSL,
//! the EMS's hint drives the current, and the top of charge is held back
//! by protection's derating through the PCS, not by a trip.

use bmshost::config::SiteConfig;
use bmshost::site::{Observation, RunOptions};

fn demo_day(edit: impl FnOnce(&mut toml::Table)) -> SiteConfig {
    let path = bms_e2e::workspace_root().join("configs/demo-day.toml");
    for p in bms_e2e::PLUGINS {
        bms_e2e::component(p);
    }
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut t);
    SiteConfig::parse(&toml::to_string(&t).unwrap(), &path).unwrap()
}

#[test]
fn a_day_runs_closed_loop_without_an_msl_trip_and_the_ems_drives_the_current() {
    let cfg = demo_day(|_| {});
    let (mut site, _dir) = bms_e2e::assemble(cfg);
    let opts = RunOptions {
        duration_s: Some(24.0 * 3600.0),
        ..Default::default()
    };
    // (minute of the day, true current A) once a simulated minute.
    let mut samples = Vec::new();
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms.is_multiple_of(60_000) {
                let sim = o.sim.expect("simulated");
                samples.push(((o.t_ms / 60_000) as u32, sim.truth().current_a));
            }
        })
        .unwrap();
    assert!(summary.latched.is_empty(), "{:?}", summary.latched);
    let sim = summary.sim.as_ref().unwrap();
    let pcs = sim.pcs.expect("[sim.pcs] reports");
    eprintln!(
        "day: charged {:.1} kWh, discharged {:.1} kWh, derated {:.0} s, PCS held back {:.0} s, \
         EMS share {:.0} %, true SOC {:.1}..{:.1} %",
        pcs.charged_wh / 1000.0,
        pcs.discharged_wh / 1000.0,
        summary.derated_s,
        pcs.limited_s,
        100.0 * pcs.ems_s / pcs.total_s,
        sim.true_pack_soc_range_pct.0,
        sim.true_pack_soc_range_pct.1
    );
    // The EMS's schedule drives the current: charging off-peak (00:00 to
    // 07:00), discharging in the morning peak (07:30 to 09:30), resting at
    // noon (idle).
    let at = |m: u32| samples.iter().find(|s| s.0 == m).unwrap().1;
    assert!(at(60) > 50.0, "01:00 charges: {} A", at(60));
    assert!(at(8 * 60) < -50.0, "08:00 discharges: {} A", at(8 * 60));
    assert!(at(12 * 60).abs() < 1.0, "12:00 idles: {} A", at(12 * 60));
    assert!(pcs.ems_s / pcs.total_s > 0.9, "{pcs:?}");
    // A full day's cycle, and the top held back by protection, not a trip.
    assert!(
        pcs.charged_wh > 50_000.0 && pcs.discharged_wh > 50_000.0,
        "{pcs:?}"
    );
    let (lo, hi) = sim.true_pack_soc_range_pct;
    assert!(lo < 30.0 && hi > 85.0, "SOC {lo}..{hi}");
    assert!(summary.derated_s > 0.0 && pcs.limited_s > 0.0, "{pcs:?}");
}

#[test]
fn a_simulated_pcs_needs_the_register_map_the_host_writes() {
    let path = bms_e2e::workspace_root().join("configs/demo-day.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    t.remove("pcs");
    // `extends` brings no [pcs]: the demo site has none.
    let e = SiteConfig::parse(&toml::to_string(&t).unwrap(), &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sim.pcs") && e.contains("[pcs]"), "{e}");
}
