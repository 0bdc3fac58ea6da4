//! Protection is independent of the plugins, measured end to end:
//! - a SOC plugin that reports a plausible but wrong value cannot raise the
//!   allowed current (protection derates on its own SOC where that is more
//!   conservative) and raises the disagreement warning;
//! - plugins that are slow but legal (just under their deadline, in `step`
//!   and `save_state`, with a checkpoint every cycle) do not delay the data
//!   protection judges: acquisition runs on the protection thread.

use bms_e2e::{assemble, demo_site, fault, section, set_faults, use_plugin};
use bmshost::plugins::Role;
use bmshost::protection::events::EventKind;
use bmshost::protection::Quantity;
use bmshost::site::{Observation, RunOptions, Speed};

const PERIOD_MS: u64 = 10;
/// The simulated BMUs send every 100 ms.
const BMU_PERIOD_MS: u64 = 100;
/// What the OS may take from the protection thread on a busy 2-core machine.
const SCHEDULING_MS: u64 = 40;

fn mode(m: &str) -> toml::Table {
    let mut c = toml::Table::new();
    c.insert("mode".into(), m.into());
    c
}

/// 600 s of the demo from 88 % SOC (lock-step): the allowed charge current
/// over the last second, the SOC basis then, and the protection events.
fn run_from_88_pct(lying: bool) -> (f32, bmshost::telemetry::Summary, Option<f32>) {
    let cfg = demo_site(|t| {
        section(t, &["sim"]).insert("initial_soc_pct".into(), 88.0.into());
        if lying {
            // Always 50 %: finite and in range, so it passes every check.
            use_plugin(t, "soc", "hostile-soc", mode("honest"));
        }
    });
    let (mut site, _dir) = assemble(cfg);
    let opts = RunOptions {
        speed: Speed::Max,
        duration_s: Some(600.0),
        ..Default::default()
    };
    let (mut allowed, mut charge_basis) = (0.0f32, None);
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms >= 599_000 {
                allowed = allowed.max(o.status.allowed.charge_a);
                charge_basis = o.status.soc.charge_pct;
            }
        })
        .unwrap();
    (allowed, summary, charge_basis)
}

#[test]
fn a_plausible_but_wrong_soc_cannot_raise_the_allowed_charge_current() {
    // Two 600 s lock-step runs take a core for a while: not beside the
    // paced test below, whose protection thread needs the other one.
    let _one = bms_e2e::one_paced_rack();
    let (honest_a, honest, honest_basis) = run_from_88_pct(false);
    let (lying_a, lying, lying_basis) = run_from_88_pct(true);
    let truth = lying.sim.as_ref().unwrap();
    eprintln!(
        "allowed charge at 600 s: soc-counting {honest_a:.1} A (SOC basis {honest_basis:?}), \
         constant-50 % plugin {lying_a:.1} A (basis {lying_basis:?})"
    );
    assert!(honest.latched.is_empty() && lying.latched.is_empty());
    let soc = lying.plugins.iter().find(|p| p.role == Role::Soc).unwrap();
    assert_eq!(soc.name.as_deref(), Some("hostile-soc"), "{soc:?}");
    // Deep in the SOC derating (the demo allows 280 A below 90 %).
    assert!(honest_a < 250.0, "soc-counting: {honest_a} A");
    assert!(lying_basis.unwrap() > 90.0, "{lying_basis:?}");
    // What an honest estimator gets, within one ramp step of 0.1 s.
    assert!(
        lying_a <= honest_a + 5.0 + 0.5,
        "a 50 % plugin raised the allowed charge to {lying_a} A (honest {honest_a} A)"
    );
    // The disagreement is a recorded, visible warning.
    let raised = lying
        .protection_events
        .iter()
        .find(|e| e.quantity == Some(Quantity::SocDisagreement) && e.kind == EventKind::Raised)
        .unwrap_or_else(|| panic!("no SOC disagreement: {:#?}", lying.protection_events));
    assert!(raised.message.contains("50.0 %"), "{}", raised.message);
    assert!(raised.value.unwrap() > 10.0, "{raised:?}");
    assert!(
        !honest
            .protection_events
            .iter()
            .any(|e| e.quantity == Some(Quantity::SocDisagreement)),
        "soc-counting agrees with protection"
    );
    assert!(truth.cycles_compared > 0);
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "hostile plugin: plausible liar (SOC always 50 %, truth ~96 %)",
        "charge derated on protection's own SOC; disagreement warned",
        format!("allowed +{lying_a:.0} A (honest plugin +{honest_a:.0} A); SocDisagreement raised"),
        0,
    ));
}

/// Every role spins for `fraction` of its deadline in `step` and in
/// `save_state`, checkpointing every cycle.
fn spinning_plugins(t: &mut toml::Table, iterations: u64) {
    let spin = |m: &str| {
        let mut c = mode(m);
        c.insert("spin_iterations".into(), (iterations as i64).into());
        c
    };
    use_plugin(t, "soc", "hostile-soc", spin("spin"));
    use_plugin(t, "soh", "hostile-soh", spin("spin"));
    use_plugin(t, "balancer", "hostile-balancer", spin("spin"));
    use_plugin(t, "ems", "hostile-ems", spin("spin"));
    let plugins = section(t, &["plugins"]);
    let policy = plugins
        .entry("policy")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    policy
        .as_table_mut()
        .unwrap()
        .insert("checkpoint_cycles".into(), 1.into());
}

/// Spin iterations that take about `target_ms` in the wasm engine here.
fn calibrate(target_ms: f64) -> u64 {
    use bmshost::plugins::{convert, PluginEngine, PluginInstance};
    let engine = PluginEngine::new().unwrap();
    let probe = 2_000_000u64;
    let json = format!(r#"{{"mode": "spin", "spin_iterations": {probe}}}"#);
    let sandbox = bmshost::config::SandboxConfig {
        memory_mib: 32,
        deadline_ms: 10_000,
        ..Default::default()
    };
    let path = bms_e2e::component("hostile-soh");
    let mut p = PluginInstance::load(&engine, Role::Soh, &path, &json, sandbox).unwrap();
    let snap = convert::snapshot(&bmshost::snapshot::PackSnapshot::empty(128, 16));
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        p.step_soh(&snap).unwrap();
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    ((probe as f64) * target_ms / best) as u64
}

#[test]
fn slow_but_legal_plugins_do_not_delay_what_protection_judges() {
    let _one = bms_e2e::one_paced_rack();
    // Closing needs 5 s of uninterrupted fresh data; a machine stall during
    // start-up restarts that window, so the fault waits well past it.
    let fault_ms = 12_000;
    let probe = demo_site(|_| {});
    let deadline_ms = probe.plugins.sandbox_for(Role::Soc).deadline_ms;
    let (limit, delay) = {
        let t = probe.protection.cell_over_voltage_v.msl.unwrap();
        (t.limit, t.delay_ms)
    };
    // 60 % of the deadline: legal, with room for a loaded machine.
    let iterations = calibrate(deadline_ms as f64 * 0.6);
    let cfg = demo_site(|t| {
        spinning_plugins(t, iterations);
        // The watchdog relay is tested in watchdog.rs; here a scheduling
        // stall of a loaded CI machine must not open the rack before the
        // fault this test times.
        section(t, &["protection"]).insert("watchdog_periods".into(), 20.into());
        // Likewise for the message deadlines (300 ms): with four plugins
        // spinning on two cores the simulated BMUs' own thread can fall that
        // far behind, which would restart the arming window. What this test
        // times is the frame-to-tick latency, checked below.
        section(t, &["can"]).insert("stale_after_periods".into(), 10.into());
        set_faults(
            t,
            vec![fault(
                "cell_soc",
                fault_ms as f64 / 1000.0,
                &[("cell", 37.into()), ("soc_pct", 102.5.into())],
            )],
        );
    });
    let (mut site, _dir) = assemble(cfg);
    let opts = RunOptions {
        speed: Speed::Factor(1.0),
        duration_s: Some(13.5),
        ..Default::default()
    };
    let mut closed_at_fault = None;
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms >= fault_ms && closed_at_fault.is_none() {
                closed_at_fault = Some(o.sim.expect("simulated").main_closed());
            }
        })
        .unwrap();
    eprintln!(
        "spin {iterations} iterations; cycle p50 {} us, max {} us, missed {}; \
         largest frame arrival -> protection tick {} ms",
        summary.cycle_p50_us,
        summary.max_cycle_us,
        summary.missed_deadlines,
        summary.acquisition.max_rx_to_decode_ms
    );
    // The plugins really were slow: a cycle of four calls and four saves.
    assert!(
        summary.cycle_p50_us > 4 * deadline_ms * 1000 / 3,
        "plugins not slow enough to test anything: p50 {} us",
        summary.cycle_p50_us
    );
    assert_eq!(
        closed_at_fault,
        Some(true),
        "closed when the fault starts; latched {:?}; acquisition {:?}; events before the fault: {:?}",
        summary.latched,
        summary.acquisition,
        summary
            .protection_events
            .iter()
            .filter(|e| e.time_ms < fault_ms)
            .map(|e| format!("{} {:?} {:?} {}", e.time_ms, e.kind, e.quantity, e.message))
            .collect::<Vec<_>>()
    );
    // Each frame is judged at most one period (plus scheduling on a loaded
    // 2-core machine) after it arrived; acquiring on the control thread
    // made it the cycle duration (here ~100 ms).
    assert!(
        summary.acquisition.max_rx_to_decode_ms <= PERIOD_MS + SCHEDULING_MS,
        "a frame waited {} ms for protection",
        summary.acquisition.max_rx_to_decode_ms
    );
    let latched = summary
        .protection_events
        .iter()
        .find(|e| e.kind == EventKind::Latched)
        .unwrap_or_else(|| panic!("nothing latched: {:#?}", summary.protection_events));
    assert_eq!(
        latched.quantity,
        Some(Quantity::CellOverVoltage),
        "the first latch must be the over-voltage, not a stall: {latched:?}"
    );
    assert!(latched.value.is_some_and(|v| v > limit));
    // The truth jumps at the fault; its frame is at most one BMU period
    // away; then the delay and one protection period (plus scheduling).
    let took = latched.time_ms - fault_ms;
    let bound = delay + BMU_PERIOD_MS + PERIOD_MS + SCHEDULING_MS;
    assert!(
        took >= delay && took <= bound,
        "latched {took} ms after the fault; bound {delay}..={bound} ms"
    );
}
