//! Faults injected through the simulator, with the real plugins loaded:
//! protection must open the contactors within the configured delay plus
//! one control cycle, and name the quantity and location.

use bms_e2e::{demo_site, section};
use bmshost::protection::{Action, ContactorCommand, Quantity};
use bmshost::site::{RunOptions, SimSite};

const CYCLE_MS: u64 = 100;

/// Run the demo with one fault injected; returns (time the monitored
/// value last started to exceed `limit`, contactor-open time, summary).
fn run_with_fault(
    fault: toml::Value,
    duration_s: f64,
    exceeds: impl Fn(&bmshost::snapshot::PackSnapshot) -> bool,
) -> (Option<u64>, u64, bmshost::telemetry::Summary) {
    let cfg = demo_site(|t| {
        section(t, &["sim"]).insert("faults".into(), toml::Value::Array(vec![fault]));
    });
    let mut site = SimSite::assemble(cfg).unwrap();
    let mut beyond_since: Option<u64> = None;
    let mut at_open: Option<Option<u64>> = None;
    let opts = RunOptions {
        duration_s: Some(duration_s),
        ..Default::default()
    };
    let summary = site
        .run(&opts, |_, r, _| {
            if at_open.is_some() {
                return;
            }
            if exceeds(&r.snapshot) {
                beyond_since.get_or_insert(r.snapshot.timestamp_ms);
            } else {
                beyond_since = None;
            }
            if r.contactors == ContactorCommand::Open && r.snapshot.timestamp_ms > 1000 {
                at_open = Some(beyond_since);
            }
        })
        .unwrap();
    let open = summary
        .protection_events
        .iter()
        .find(|e| e.action == Action::OpenContactors)
        .unwrap_or_else(|| panic!("contactors never opened: {:?}", summary.protection_events));
    (at_open.flatten(), open.time_ms, summary)
}

fn assert_trip_time(since: Option<u64>, opened: u64, delay_ms: u64) {
    let since = since.expect("the value never exceeded the limit before the trip");
    let took = opened - since;
    assert!(
        took >= delay_ms && took <= delay_ms + CYCLE_MS,
        "tripped {took} ms after the limit was exceeded; delay {delay_ms} ms, cycle {CYCLE_MS} ms"
    );
}

fn fault(kind: &str, at_s: f64, fields: &[(&str, toml::Value)]) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("kind".into(), kind.into());
    t.insert("at_s".into(), at_s.into());
    for (k, v) in fields {
        t.insert((*k).into(), v.clone());
    }
    toml::Value::Table(t)
}

#[test]
fn overcharged_cell_opens_contactors_within_delay_plus_one_cycle() {
    // Cell 37 (module 2, cell 5) is driven into overcharge while charging.
    let f = fault(
        "cell_soc",
        400.0,
        &[("cell", 37.into()), ("soc_pct", 101.5.into())],
    );
    let (since, opened, s) = run_with_fault(f, 500.0, |snap| snap.cell_voltage_range_v().1 > 3.65);
    assert_trip_time(since, opened, 500);
    let fault = s.latched_fault.expect("latched");
    assert_eq!(fault.quantity, Some(Quantity::CellOverVoltage));
    let loc = fault.location.unwrap();
    assert_eq!((loc.module, loc.cell), (2, 5));
    assert_eq!(s.final_contactors, ContactorCommand::Open);
}

#[test]
fn deep_discharged_cell_trips_under_voltage() {
    // Discharge starts at 4440 s; cell 100 (module 6, cell 4) is empty.
    let f = fault(
        "cell_soc",
        4500.0,
        &[("cell", 100.into()), ("soc_pct", 0.0.into())],
    );
    let (since, opened, s) = run_with_fault(f, 4560.0, |snap| snap.cell_voltage_range_v().0 < 2.5);
    assert_trip_time(since, opened, 500);
    let fault = s.latched_fault.expect("latched");
    assert_eq!(fault.quantity, Some(Quantity::CellUnderVoltage));
    let loc = fault.location.unwrap();
    assert_eq!((loc.module, loc.cell), (6, 4));
}

#[test]
fn overheating_module_trips_over_temperature() {
    let f = fault(
        "module_heat",
        60.0,
        &[("module", 3.into()), ("power_w", 6000.0.into())],
    );
    let (since, opened, s) = run_with_fault(f, 1200.0, |snap| snap.cell_temp_range_c().1 > 55.0);
    assert_trip_time(since, opened, 1000);
    let fault = s.latched_fault.expect("latched");
    assert_eq!(fault.quantity, Some(Quantity::CellOverTemperature));
    assert_eq!(fault.location.unwrap().module, 3);
}

#[test]
fn silent_module_is_a_communication_fault() {
    let f = fault("module_silent", 300.0, &[("module", 5.into())]);
    let (_, opened, s) = run_with_fault(f, 320.0, |_| false);
    let fault = s.latched_fault.expect("latched");
    assert_eq!(fault.quantity, Some(Quantity::CommunicationLoss));
    assert_eq!(fault.location.unwrap().module, 5);
    // Stale after module_timeout_ms (500), acted on in the next cycle.
    assert!(
        opened > 300_000 + 500 && opened <= 300_000 + 500 + 2 * CYCLE_MS,
        "opened at {opened} ms"
    );
}
