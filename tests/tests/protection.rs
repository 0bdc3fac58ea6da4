//! Faults injected through the simulator, end to end with the real plugins
//! (or hostile ones) loaded. Each scenario asserts the action protection
//! took, where it says the fault is, and the trip time:
//! - against protection's own input (the snapshot it evaluated): latched
//!   within [delay, delay + one protection period] of the limit being
//!   exceeded without interruption;
//! - against the simulator's truth: within delay + one protection period +
//!   the acquisition latency (frame period, DBC quantisation), which the
//!   test computes from the config rather than guessing;
//! - the action: the main contactor is commanded open in the latching
//!   tick and the simulated contact opens within the open timeout.

use bms_e2e::{assemble, demo_site, fault, section, set_faults, use_plugin};
use bmshost::protection::contactor::ContactorState;
use bmshost::protection::events::EventKind;
use bmshost::protection::limits::TierLevel;
use bmshost::protection::Quantity;
use bmshost::site::{Observation, RunOptions};
use bmshost::snapshot::PackSnapshot;
use bmshost::telemetry::Summary;

const PERIOD_MS: u64 = 10;
const BMU_PERIOD_MS: u64 = 100;

struct Trip {
    /// Start of the last uninterrupted exceedance seen by protection.
    measured_since_ms: Option<u64>,
    /// Start of the last uninterrupted exceedance in the simulator's truth.
    truth_since_ms: Option<u64>,
    /// Time the quantity's MSL latched.
    latched_ms: u64,
    /// The simulator's true pack current at the latch, A.
    truth_current_at_latch_a: f64,
    /// When the simulated main contact opened.
    opened_ms: u64,
    /// Event records in memory but not in the journal on disk.
    records_lost: u64,
    summary: Summary,
}

impl Trip {
    /// The fault-matrix row of this trip: reaction from `since_ms` (the
    /// fault, or the true crossing) to the latch, against `bound_ms`.
    fn row(&self, scenario: &str, expected: &str, since_ms: u64, bound_ms: u64) {
        let l = &self.summary.latched[0];
        let at = l
            .location
            .map_or("rack".to_string(), |l| format!("m{} c{}", l.module, l.cell));
        bms_e2e::faults::row(bms_e2e::faults::Row {
            scenario: scenario.into(),
            expected: expected.into(),
            observed: format!(
                "{:?} MSL latched at {at}; contact open {} ms later",
                l.quantity,
                self.opened_ms - self.latched_ms
            ),
            reaction_ms: Some(self.latched_ms.saturating_sub(since_ms)),
            bound_ms: Some(bound_ms),
            records_lost: self.records_lost,
        });
    }

    fn truth_since(&self) -> u64 {
        self.truth_since_ms.expect("the truth crossed the limit")
    }
}

/// Run the demo with `edit` applied until `duration_s`, watching one
/// quantity both as measured and in the simulator's truth.
fn run_watch(
    edit: impl FnOnce(&mut toml::Table),
    duration_s: f64,
    quantity: Quantity,
    measured: impl Fn(&PackSnapshot) -> bool,
    truth: impl Fn(&bmshost::sim::SimTruth) -> bool,
) -> Trip {
    let cfg = demo_site(edit);
    let open_timeout_ms = cfg.protection.contactors.open_timeout_ms;
    let (mut site, _dir) = assemble(cfg);
    // Also checked for every scenario: the contactors were closed when the
    // exceedance began (or at the latch, when protection saw none), the
    // main contactor is commanded open in the latching tick, and the
    // simulated contact opens within the open timeout.
    let (mut m_since, mut t_since, mut latched) = (None, None, None);
    let (mut state_before, mut last_state) = (None, ContactorState::Open);
    let (mut commanded_open, mut sim_open, mut current_a) = (None, None, 0.0);
    let opts = RunOptions {
        duration_s: Some(duration_s),
        ..Default::default()
    };
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            let sim = o.sim.expect("simulated site");
            if latched.is_none() && o.status.latched.iter().any(|l| l.quantity == quantity) {
                latched = Some(o.t_ms);
                current_a = sim.truth().current_a;
                state_before.get_or_insert(last_state);
            }
            if latched.is_some() {
                if !o.status.outputs.main {
                    commanded_open.get_or_insert(o.t_ms);
                }
                if !sim.main_closed() {
                    sim_open.get_or_insert(o.t_ms);
                }
                return;
            }
            last_state = o.status.contactor_state;
            if measured(o.snapshot) {
                if m_since.is_none() {
                    m_since = Some(o.snapshot.timestamp_ms);
                    state_before = Some(last_state);
                }
            } else {
                m_since = None;
                state_before = None;
            }
            if truth(&sim.truth()) {
                t_since.get_or_insert(o.t_ms);
            } else {
                t_since = None;
            }
        })
        .unwrap();
    let latched_ms = latched.unwrap_or_else(|| {
        panic!(
            "{quantity:?} never latched; latched: {:?}\nevents: {:#?}",
            summary.latched, summary.protection_events
        )
    });
    let ev = summary
        .protection_events
        .iter()
        .find(|e| e.kind == EventKind::Latched && e.quantity == Some(quantity))
        .expect("latch recorded");
    assert_eq!(ev.time_ms, latched_ms, "event record time");
    let state_before = state_before.expect("state seen");
    assert_eq!(
        state_before,
        ContactorState::Closed,
        "{quantity:?}: the scenario must start with the contactors closed; events: {:#?}",
        summary
            .protection_events
            .iter()
            .filter(|e| e.kind != EventKind::Cleared)
            .map(|e| format!(
                "{} {:?} {:?} {:?} {}",
                e.time_ms, e.kind, e.quantity, e.tier, e.action
            ))
            .collect::<Vec<_>>()
    );
    // Protection commands open in the tick that latches; the contact
    // opens within the contactor's open timeout.
    assert_eq!(
        commanded_open,
        Some(latched_ms),
        "{quantity:?}: main contactor not commanded open in the latching tick"
    );
    let sim_open_ms = sim_open.expect("the main contact never opened");
    assert!(
        sim_open_ms <= latched_ms + open_timeout_ms,
        "{quantity:?}: contact opened {} ms after the latch",
        sim_open_ms - latched_ms
    );
    assert_ne!(summary.final_contactor_state, ContactorState::Closed);
    let records_lost = bms_e2e::faults::records_lost(_dir.path(), &summary.protection_events);
    Trip {
        measured_since_ms: m_since,
        truth_since_ms: t_since,
        latched_ms,
        truth_current_at_latch_a: current_a,
        opened_ms: sim_open_ms,
        records_lost,
        summary,
    }
}

fn assert_timing(trip: &Trip, delay_ms: u64, acquisition_latency_ms: u64) {
    let m = trip
        .measured_since_ms
        .expect("protection never saw the value beyond the limit");
    let took = trip.latched_ms - m;
    assert!(
        took >= delay_ms && took <= delay_ms + PERIOD_MS,
        "latched {took} ms after protection first saw the limit exceeded; delay {delay_ms} ms + period {PERIOD_MS} ms"
    );
    let t = trip
        .truth_since_ms
        .expect("the truth never crossed the limit");
    let took = trip.latched_ms.saturating_sub(t);
    let bound = delay_ms + PERIOD_MS + acquisition_latency_ms;
    assert!(
        took <= bound,
        "latched {took} ms after the true value crossed; bound {bound} ms"
    );
}

fn msl(cfg_key: &str) -> (f32, u64) {
    let cfg = demo_site(|_| {});
    let (_, _, tiers, _) = cfg
        .protection
        .tiered()
        .into_iter()
        .find(|(k, _, _, _)| *k == cfg_key)
        .unwrap();
    let t = tiers.msl.unwrap();
    (t.limit, t.delay_ms)
}

fn tiers_raised_in_order(s: &Summary, q: Quantity) -> Vec<TierLevel> {
    s.protection_events
        .iter()
        .filter(|e| e.kind == EventKind::Raised && e.quantity == Some(q))
        .filter_map(|e| e.tier)
        .collect()
}

#[test]
fn over_temperature_ramp_in_one_module() {
    let (limit, delay) = msl("cell_over_temp_charge_c");
    let trip = run_watch(
        |t| {
            // No temperature noise, so the truth crossing is well defined.
            section(t, &["sim"]).insert("temp_noise_c".into(), 0.0.into());
            set_faults(
                t,
                vec![fault(
                    "module_heat",
                    60.0,
                    &[("module", 3.into()), ("power_w", 6000.0.into())],
                )],
            );
        },
        900.0,
        Quantity::CellOverTempCharge,
        |s| s.cell_temp_range_c().1 > limit,
        |truth| truth.module_temp_c[3] > limit as f64,
    );
    // Latency: one BMU frame period plus the 0.1 °C DBC step at the ramp rate
    // (about 0.065 K/s here: ~1.6 s).
    assert_timing(&trip, delay, BMU_PERIOD_MS + 2000);
    let l = trip
        .summary
        .latched
        .iter()
        .find(|l| l.quantity == Quantity::CellOverTempCharge)
        .unwrap();
    assert_eq!(l.location.unwrap().module, 3);
    trip.row(
        "module over-temperature (6 kW in module 3)",
        "MSL over-temperature: open and latch, module 3",
        trip.truth_since(),
        delay + PERIOD_MS + BMU_PERIOD_MS + 2000,
    );
    // The ramp passed MOL (warn) and RSL (zero charge) before the MSL.
    assert_eq!(
        tiers_raised_in_order(&trip.summary, Quantity::CellOverTempCharge),
        [TierLevel::Mol, TierLevel::Rsl, TierLevel::Msl]
    );
}

#[test]
fn internal_short_pulls_one_cell_under_voltage() {
    let (limit, delay) = msl("cell_under_voltage_v");
    let trip = run_watch(
        |t| {
            section(t, &["sim"]).insert("cell_noise_mv".into(), 0.0.into());
            // With the demo table the collapsing cell first trips the
            // voltage-spread MSL (0.5 V, about 40 s before the cell reaches
            // 2.5 V), which opens the contactors. Widen it here so the
            // under-voltage tiers are what this scenario exercises.
            section(t, &["protection", "cell_voltage_spread_v", "msl"])
                .insert("limit".into(), 1.2.into());
            set_faults(
                t,
                vec![fault(
                    "cell_leak",
                    6000.0,
                    &[("cell", 100.into()), ("resistance_ohm", 0.01.into())],
                )],
            );
        },
        7800.0,
        Quantity::CellUnderVoltage,
        |s| s.cell_voltage_range_v().0 < limit,
        |truth| truth.cell_voltage_v[100] < limit as f64,
    );
    // Latency: one BMU frame period, plus half a 1 mV DBC step at the
    // collapsing voltage (well under 100 ms).
    assert_timing(&trip, delay, BMU_PERIOD_MS + 100);
    trip.row(
        "internal short (10 mΩ across cell 100)",
        "MSL under-voltage: open and latch, m6 c4",
        trip.truth_since(),
        delay + PERIOD_MS + BMU_PERIOD_MS + 100,
    );
    let l = trip
        .summary
        .latched
        .iter()
        .find(|l| l.quantity == Quantity::CellUnderVoltage)
        .unwrap();
    let loc = l.location.unwrap();
    assert_eq!(
        (loc.module, loc.cell),
        (6, 4),
        "cell 100 is module 6, cell 4"
    );
    assert_ne!(trip.summary.final_contactor_state, ContactorState::Closed);
}

#[test]
fn overcharged_cell_opens_contactors() {
    let (limit, delay) = msl("cell_over_voltage_v");
    let trip = run_watch(
        |t| {
            set_faults(
                t,
                vec![fault(
                    "cell_soc",
                    400.0,
                    &[("cell", 37.into()), ("soc_pct", 101.5.into())],
                )],
            )
        },
        500.0,
        Quantity::CellOverVoltage,
        |s| s.cell_voltage_range_v().1 > limit,
        |truth| truth.cell_voltage_v[37] > limit as f64,
    );
    assert_timing(&trip, delay, BMU_PERIOD_MS);
    let l = &trip.summary.latched[0];
    assert_eq!(l.quantity, Quantity::CellOverVoltage);
    let loc = l.location.unwrap();
    assert_eq!((loc.module, loc.cell), (2, 5));
    trip.row(
        "overcharged cell (cell 37 driven past 100 % SOC)",
        "MSL over-voltage: open and latch, m2 c5",
        trip.truth_since(),
        delay + PERIOD_MS + BMU_PERIOD_MS,
    );
}

#[test]
fn silent_module_is_a_communication_fault() {
    let cfg = demo_site(|_| {});
    // The BMU's messages are due every 100 ms (GenMsgCycleTime); silent
    // for `stale_after_periods` of them, the module is stale, sooner than
    // the per-value timeout.
    let timeout = cfg
        .can
        .module_timeout_ms
        .min(BMU_PERIOD_MS * u64::from(cfg.can.stale_after_periods));
    assert!(
        timeout < cfg.can.module_timeout_ms,
        "the message deadline decides"
    );
    let at_ms = 300_000;
    let trip = run_watch(
        |t| {
            set_faults(
                t,
                vec![fault(
                    "module_silent",
                    at_ms as f64 / 1000.0,
                    &[("module", 5.into())],
                )],
            )
        },
        320.0,
        Quantity::CommunicationLoss,
        |_| false,
        |_| false,
    );
    let l = &trip.summary.latched[0];
    assert_eq!(l.location.unwrap().module, 5);
    // The last frame came at most one BMU period before the silence; the
    // module is stale `timeout` after it, and protection sees it next tick.
    let took = trip.latched_ms - at_ms;
    assert!(
        took + BMU_PERIOD_MS >= timeout && took <= timeout + PERIOD_MS,
        "comm loss latched {took} ms after the BMU went silent (timeout {timeout} ms)"
    );
    trip.row(
        "comm loss: BMU of module 5 silent",
        "MSL communication loss: open and latch, module 5",
        at_ms,
        timeout + PERIOD_MS,
    );
}

/// A gateway starts repeating its cached copy of BMU4's cell-voltage
/// pages at 300 s: the frames keep arriving on time with stale values.
fn replayed_cells(t: &mut toml::Table) {
    set_faults(
        t,
        vec![fault(
            "frame_replayed",
            300.0,
            &[("message", "BMU4_CellVoltage".into())],
        )],
    )
}

#[test]
fn a_replayed_message_is_a_communication_fault_within_max_bad_periods() {
    let cfg = demo_site(replayed_cells);
    let max_bad = cfg.can.e2e[0].max_bad;
    let trip = run_watch(
        replayed_cells,
        310.0,
        Quantity::CommunicationLoss,
        |_| false,
        |_| false,
    );
    let l = &trip.summary.latched[0];
    assert_eq!(l.location.unwrap().module, 4);
    // The first repeat comes at most one BMU period after 300 s; the
    // `max_bad`-th one period later each; protection sees it next tick.
    let bound = u64::from(max_bad) * BMU_PERIOD_MS + PERIOD_MS;
    trip.row(
        "replayed frames (a gateway repeats BMU4's cached cell voltages)",
        "alive counter stands still: frames dropped; MSL communication loss, module 4",
        300_000,
        bound,
    );
}

#[test]
fn without_e2e_checks_a_replayed_message_looks_fresh_for_ever() {
    let cfg = demo_site(|t| {
        replayed_cells(t);
        section(t, &["can"]).remove("e2e");
    });
    assert!(cfg.can.e2e.is_empty());
    let (mut site, _dir) = assemble(cfg);
    let opts = RunOptions {
        duration_s: Some(330.0),
        ..Default::default()
    };
    let mut frozen_v = None;
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms == 320_000 {
                frozen_v = Some(o.snapshot.cell_voltage_v[4 * 16]);
            }
            if o.t_ms > 320_000 {
                assert_eq!(Some(o.snapshot.cell_voltage_v[4 * 16]), frozen_v);
            }
        })
        .unwrap();
    assert!(
        summary
            .latched
            .iter()
            .all(|l| l.quantity != Quantity::CommunicationLoss),
        "{:?}",
        summary.latched
    );
}

#[test]
fn a_corrupted_current_frame_is_dropped_and_the_sensor_is_lost() {
    let edit = |t: &mut toml::Table| {
        set_faults(
            t,
            vec![fault(
                "crc_corrupted",
                300.0,
                &[("message", "IVT_Current".into())],
            )],
        )
    };
    let trip = run_watch(
        edit,
        310.0,
        Quantity::CommunicationLoss,
        |_| false,
        |_| false,
    );
    let l = &trip.summary.latched[0];
    assert!(
        l.location.is_none(),
        "the current sensor, not a module: {l:?}"
    );
    assert!(trip.summary.acquisition.e2e.e2e_bad_crc >= 3);
    trip.row(
        "corrupted frames (bad CRC on IVT_Current)",
        "frames dropped; MSL communication loss, current sensor",
        300_000,
        3 * 20 + 20 + PERIOD_MS,
    );
}

/// `kind` hits `message` at 300 s; protection must latch communication
/// loss on `module` within `bound_ms`.
fn garbled(kind: &str, message: &str, module: usize, bound_ms: u64) -> Trip {
    let edit = |t: &mut toml::Table| {
        set_faults(t, vec![fault(kind, 300.0, &[("message", message.into())])])
    };
    let trip = run_watch(
        edit,
        310.0,
        Quantity::CommunicationLoss,
        |_| false,
        |_| false,
    );
    assert_eq!(trip.summary.latched[0].location.unwrap().module, module);
    assert!(trip.latched_ms - 300_000 <= bound_ms);
    trip
}

#[test]
fn garbage_frames_are_dropped_and_their_module_is_lost() {
    // One byte short: never decoded; the message is silent at its deadline.
    let cfg = demo_site(|_| {});
    let deadline = BMU_PERIOD_MS * u64::from(cfg.can.stale_after_periods);
    let bound = deadline + BMU_PERIOD_MS + PERIOD_MS;
    let trip = garbled("frame_truncated", "BMU6_CellVoltage", 6, bound);
    assert!(trip.summary.acquisition.wrong_length > 0);
    trip.row(
        "garbage frames (BMU6 cell voltages one byte short)",
        "dropped (wrong length); MSL communication loss, module 6",
        300_000,
        bound,
    );
}

#[test]
fn out_of_range_values_are_dropped_and_their_module_is_lost() {
    // On time, counter and CRC right, values beyond the DBC range: dropped
    // value by value, so the cells age out at the module timeout.
    let cfg = demo_site(|_| {});
    let bound = cfg.can.module_timeout_ms + BMU_PERIOD_MS + PERIOD_MS;
    let trip = garbled("values_out_of_range", "BMU5_CellVoltage", 5, bound);
    assert!(trip.summary.acquisition.out_of_range > 0);
    trip.row(
        "out-of-range frames (BMU5 cell voltages all bits set)",
        "values dropped, never plausible; MSL communication loss, module 5",
        300_000,
        bound,
    );
}

/// One message of a BMU falls silent while the rest of it keeps talking;
/// the per-value timeout is set far away so only the message deadline can
/// catch it. Returns how long after the silence the module latched.
fn silent_message_latch_ms(period_override_ms: Option<u64>) -> (u64, u64) {
    let at_ms = 300_000;
    let edit = |t: &mut toml::Table| {
        let can = section(t, &["can"]);
        can.insert("module_timeout_ms".into(), 5_000.into());
        if let Some(p) = period_override_ms {
            let mut periods = toml::Table::new();
            periods.insert("BMU3_Temperature".into(), (p as i64).into());
            can.insert("message_period_ms".into(), periods.into());
        }
        set_faults(
            t,
            vec![fault(
                "message_silent",
                at_ms as f64 / 1000.0,
                &[("message", "BMU3_Temperature".into())],
            )],
        )
    };
    let cfg = demo_site(edit);
    let n = u64::from(cfg.can.stale_after_periods);
    let deadline = period_override_ms.unwrap_or(BMU_PERIOD_MS) * n;
    let trip = run_watch(
        edit,
        310.0,
        Quantity::CommunicationLoss,
        |_| false,
        |_| false,
    );
    let l = &trip.summary.latched[0];
    assert_eq!(l.location.unwrap().module, 3);
    assert!(trip.summary.acquisition.message_timeouts >= 1);
    (trip.latched_ms - at_ms, deadline)
}

#[test]
fn a_silent_message_stales_its_module_at_its_dbc_period_deadline() {
    let (took, deadline) = silent_message_latch_ms(None);
    assert!(
        took + BMU_PERIOD_MS >= deadline && took <= deadline + PERIOD_MS,
        "latched {took} ms after BMU3_Temperature stopped (deadline {deadline} ms)"
    );
}

#[test]
fn a_configured_message_period_overrides_the_dbc() {
    let (took, deadline) = silent_message_latch_ms(Some(400));
    assert_eq!(deadline, 1200);
    assert!(
        took + BMU_PERIOD_MS >= deadline && took <= deadline + PERIOD_MS,
        "latched {took} ms after BMU3_Temperature stopped (deadline {deadline} ms)"
    );
}

#[test]
fn current_sensor_stuck_at_zero_while_current_flows() {
    let cfg = demo_site(|_| {});
    let frozen_ms = cfg.protection.plausibility.current_frozen_ms;
    let at_ms = 1_000_000;
    let trip = run_watch(
        |t| {
            set_faults(
                t,
                vec![fault(
                    "current_stuck",
                    at_ms as f64 / 1000.0,
                    &[("value_a", 0.0.into())],
                )],
            )
        },
        1010.0,
        Quantity::CurrentSensorFrozen,
        |_| false,
        |_| false,
    );
    // Current was really flowing when the sensor froze at zero.
    assert!(
        trip.truth_current_at_latch_a.abs() > 10.0,
        "true current {} A",
        trip.truth_current_at_latch_a
    );
    // The first frozen frame arrives within one IVT period (20 ms).
    let took = trip.latched_ms - at_ms;
    assert!(
        took >= frozen_ms && took <= frozen_ms + 20 + PERIOD_MS,
        "stuck sensor caught {took} ms after it froze (limit {frozen_ms} ms)"
    );
    trip.row(
        "stuck sensor (current reads 0 A while current flows)",
        "MSL current sensor frozen: open and latch",
        at_ms,
        frozen_ms + 20 + PERIOD_MS,
    );
}

/// With hostile plugins loaded, protection still trips an over-voltage on
/// time, and every plugin output is clamped or replaced.
fn hostile_run(soc_mode: &str, ems_mode: &str) -> Trip {
    let trip = hostile_trip(soc_mode, ems_mode);
    trip.row(
        &format!("hostile plugins: SOC {soc_mode}, EMS {ems_mode}, balancer bleeds all"),
        "outputs rejected or clamped; MSL over-voltage on time",
        trip.truth_since(),
        msl("cell_over_voltage_v").1 + PERIOD_MS + BMU_PERIOD_MS,
    );
    trip
}

fn hostile_trip(soc_mode: &str, ems_mode: &str) -> Trip {
    let (limit, delay) = msl("cell_over_voltage_v");
    let mode = |m: &str| {
        let mut c = toml::Table::new();
        c.insert("mode".into(), m.into());
        c
    };
    let trip = run_watch(
        |t| {
            use_plugin(t, "soc", "hostile-soc", mode(soc_mode));
            use_plugin(t, "ems", "hostile-ems", mode(ems_mode));
            use_plugin(t, "balancer", "hostile-balancer", mode("all"));
            // At rest there is no IR drop: overcharge further than in the
            // charging scenario to cross the limit.
            set_faults(
                t,
                vec![fault(
                    "cell_soc",
                    60.0,
                    &[("cell", 37.into()), ("soc_pct", 102.5.into())],
                )],
            );
        },
        70.0,
        Quantity::CellOverVoltage,
        |s| s.cell_voltage_range_v().1 > limit,
        |truth| truth.cell_voltage_v[37] > limit as f64,
    );
    assert_timing(&trip, delay, BMU_PERIOD_MS);
    let s = &trip.summary;
    let cfg = demo_site(|_| {});
    // Bleed-everything was capped to the protection limit every cycle.
    assert!(s.clamp.bleed_refused > 0);
    assert!(s.bleed_cell_s <= cfg.protection.balancing.max_bleeders as f64 * s.simulated_s + 1e-6);
    trip
}

#[test]
fn plugins_returning_nan_or_huge_values_are_contained() {
    let trip = hostile_run("nan", "huge");
    let s = &trip.summary;
    let soc = s
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Soc)
        .unwrap();
    assert!(soc.crashes > 0);
    assert!(
        soc.last_error
            .as_deref()
            .unwrap()
            .contains("cell-soc-pct[0] = NaN"),
        "{:?}",
        soc.last_error
    );
    assert!(
        s.clamp.power_capped > 0,
        "huge power hints must be capped: {:?}",
        s.clamp
    );

    let trip = hostile_run("huge", "nan");
    let s = &trip.summary;
    let ems = s
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Ems)
        .unwrap();
    assert!(
        ems.crashes > 0
            && ems
                .last_error
                .as_deref()
                .unwrap()
                .contains("power-w = NaN is not finite"),
        "NaN power hints must be rejected: {ems:?}"
    );
    let soc = s
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Soc)
        .unwrap();
    assert!(
        soc.last_error
            .as_deref()
            .unwrap()
            .contains("not in 0..=100"),
        "{:?}",
        soc.last_error
    );
}

#[test]
fn plugin_that_traps_on_every_call_falls_back_and_protection_is_unaffected() {
    let trip = hostile_run("trap", "huge-discharge");
    let soc = trip
        .summary
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Soc)
        .unwrap();
    let msg = soc.last_error.as_deref().unwrap();
    assert!(
        msg.contains("trapped") && msg.contains("hostile-soc: deliberate panic at t="),
        "{msg}"
    );
    assert!(
        matches!(
            soc.state,
            bmshost::plugins::slot::SlotState::Quarantined { .. }
        ),
        "{soc:?}"
    );
    assert!(soc.alarm.is_some());
}

#[test]
fn plugin_that_hangs_is_cut_off_at_its_deadline() {
    let trip = hostile_run("hang", "nan");
    let soc = trip
        .summary
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Soc)
        .unwrap();
    let msg = soc.last_error.as_deref().unwrap();
    assert!(msg.contains("CPU deadline"), "{msg}");
}

/// In real time, with protection on its own thread: the SOC plugin hangs
/// on every call (cut off at its CPU deadline, then quarantined), the EMS
/// plugin returns NaN and the balancer asks for every bleeder, while a
/// cell is overcharged. Protection still latches within the delay plus
/// the acquisition latency (the hung calls on the control thread add
/// nothing), and the contacts open.
#[test]
fn over_voltage_trips_on_time_in_real_time_while_plugins_hang() {
    let (limit, delay) = msl("cell_over_voltage_v");
    let fault_ms = 7_000;
    let mode = |m: &str| {
        let mut c = toml::Table::new();
        c.insert("mode".into(), m.into());
        c
    };
    let cfg = demo_site(|t| {
        use_plugin(t, "soc", "hostile-soc", mode("hang"));
        use_plugin(t, "ems", "hostile-ems", mode("nan"));
        use_plugin(t, "balancer", "hostile-balancer", mode("all"));
        set_faults(
            t,
            vec![fault(
                "cell_soc",
                fault_ms as f64 / 1000.0,
                &[("cell", 37.into()), ("soc_pct", 102.5.into())],
            )],
        );
    });
    let open_timeout_ms = cfg.protection.contactors.open_timeout_ms;
    let (mut site, _dir) = assemble(cfg);
    let opts = bmshost::site::RunOptions {
        speed: bmshost::site::Speed::Factor(1.0),
        duration_s: Some(8.5),
        print_status: false,
        stop: None,
    };
    let (mut closed_at_fault, mut opened) = (None, None);
    let mut ticks = 0u64;
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            ticks += 1;
            let closed = o.sim.expect("simulated site").main_closed();
            if o.t_ms >= fault_ms && closed_at_fault.is_none() {
                closed_at_fault = Some(closed);
            }
            if o.t_ms > fault_ms && !closed && opened.is_none() {
                opened = Some(o.t_ms);
            }
        })
        .unwrap();
    assert_eq!(closed_at_fault, Some(true), "closed when the fault starts");
    let soc = summary
        .plugins
        .iter()
        .find(|p| p.role == bmshost::plugins::Role::Soc)
        .unwrap();
    let msg = soc.last_error.as_deref().unwrap_or_default();
    assert!(msg.contains("CPU deadline"), "the SOC plugin hung: {msg}");
    let latched = summary
        .protection_events
        .iter()
        .find(|e| e.kind == EventKind::Latched && e.quantity == Some(Quantity::CellOverVoltage))
        .unwrap_or_else(|| panic!("no over-voltage latch: {:#?}", summary.protection_events));
    assert!(latched.value.is_some_and(|v| v > limit));
    // The jump is immediate in the truth; the frame carrying it is at most
    // one BMU period away. Acquisition runs on the protection thread, so
    // the hung calls on the control thread add nothing.
    let took = latched.time_ms - fault_ms;
    let bound = delay + BMU_PERIOD_MS + 2 * PERIOD_MS;
    assert!(
        took >= delay && took <= bound,
        "latched {took} ms after the fault; bound {delay}..={bound} ms"
    );
    let opened = opened.expect("the main contact never opened");
    assert!(
        opened <= latched.time_ms + open_timeout_ms + 2 * PERIOD_MS,
        "contact opened at {opened} ms, latched at {} ms",
        latched.time_ms
    );
    assert!(ticks > 800, "only {ticks} protection periods observed");
    bms_e2e::faults::row(bms_e2e::faults::Row {
        scenario: "hostile plugins in real time: SOC hangs, EMS NaN, bleed all".into(),
        expected: "plugins cut off at their deadline; MSL over-voltage on time".into(),
        observed: format!(
            "over-voltage latched, contact open {} ms later; SOC: {msg}",
            opened - latched.time_ms
        ),
        reaction_ms: Some(took),
        bound_ms: Some(bound),
        records_lost: bms_e2e::faults::records_lost(_dir.path(), &summary.protection_events),
    });
}
