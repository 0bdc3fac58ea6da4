//! Table-driven checks of the trip stages, debounce, hysteresis, contactor
//! command and clamps.

use super::*;
use crate::config::TripLimit;
use crate::snapshot::{CommStatus, PackSnapshot};

fn cfg() -> ProtectionConfig {
    ProtectionConfig {
        cell_over_voltage_v: TripLimit {
            limit: 3.65,
            release: 3.55,
            delay_ms: 500,
        },
        cell_under_voltage_v: TripLimit {
            limit: 2.5,
            release: 2.8,
            delay_ms: 500,
        },
        cell_over_temp_c: TripLimit {
            limit: 55.0,
            release: 50.0,
            delay_ms: 1000,
        },
        max_charge_current_a: 280.0,
        max_discharge_current_a: 280.0,
        charge_derate_start_v: 3.45,
        discharge_derate_start_v: 2.9,
    }
}

fn snap(t_ms: u64, v: f32, temp: f32) -> PackSnapshot {
    PackSnapshot {
        timestamp_ms: t_ms,
        current_a: 0.0,
        pack_voltage_v: v * 8.0,
        cell_voltage_v: vec![3.3; 8],
        cell_temp_c: vec![25.0; 8],
        cells_per_module: 4,
        module_comm: vec![CommStatus::Ok; 2],
        current_comm: CommStatus::Ok,
        complete: true,
        contactors_closed: true,
    }
    .with_cell(6, v, temp)
}

impl PackSnapshot {
    fn with_cell(mut self, i: usize, v: f32, t: f32) -> Self {
        self.cell_voltage_v[i] = v;
        self.cell_temp_c[i] = t;
        self
    }
}

#[test]
fn each_quantity_trips_after_its_delay_and_not_before() {
    // (voltage, temperature, delay, expected quantity)
    let table = [
        (3.70, 25.0, 500, Quantity::CellOverVoltage),
        (2.40, 25.0, 500, Quantity::CellUnderVoltage),
        (3.30, 60.0, 1000, Quantity::CellOverTemperature),
    ];
    for (v, t, delay, q) in table {
        let mut p = Protection::new(cfg());
        assert_eq!(
            p.evaluate(&snap(0, 3.3, 25.0)).contactors,
            ContactorCommand::Closed
        );
        // Exceeded from 100 ms on; still closed just before the delay.
        for ms in (100..100 + delay).step_by(100) {
            let verdict = p.evaluate(&snap(ms, v, t));
            assert_eq!(
                verdict.contactors,
                ContactorCommand::Closed,
                "{q:?} at {ms} ms"
            );
        }
        let verdict = p.evaluate(&snap(100 + delay, v, t));
        assert_eq!(verdict.contactors, ContactorCommand::Open, "{q:?}");
        assert_eq!(verdict.allowed.charge_a, 0.0);
        assert_eq!(verdict.allowed.discharge_a, 0.0);
        let f = p.latched().unwrap();
        assert_eq!(f.quantity, Some(q));
        assert_eq!(f.location, Some(Location { module: 1, cell: 2 }));
    }
}

#[test]
fn a_short_excursion_resets_the_debounce() {
    let mut p = Protection::new(cfg());
    p.evaluate(&snap(0, 3.70, 25.0));
    p.evaluate(&snap(400, 3.70, 25.0));
    // Back inside for one sample: the timer restarts.
    p.evaluate(&snap(500, 3.60, 25.0));
    assert_eq!(
        p.evaluate(&snap(900, 3.70, 25.0)).contactors,
        ContactorCommand::Closed
    );
    assert_eq!(
        p.evaluate(&snap(1400, 3.70, 25.0)).contactors,
        ContactorCommand::Open
    );
}

#[test]
fn latched_fault_keeps_contactors_open_after_the_value_recovers() {
    let mut p = Protection::new(cfg());
    p.evaluate(&snap(0, 3.70, 25.0));
    p.evaluate(&snap(500, 3.70, 25.0));
    for ms in (600..5000).step_by(100) {
        assert_eq!(
            p.evaluate(&snap(ms, 3.30, 25.0)).contactors,
            ContactorCommand::Open
        );
    }
    // One open and one close event, in that order, at the right times.
    let actions: Vec<_> = p.events().iter().map(|e| (e.action, e.time_ms)).collect();
    assert_eq!(
        actions,
        [(Action::CloseContactors, 0), (Action::OpenContactors, 500)]
    );
}

#[test]
fn monitor_release_needs_hysteresis() {
    let lim = TripLimit {
        limit: 3.65,
        release: 3.55,
        delay_ms: 100,
    };
    let mut m = monitor::Monitor::new(lim, monitor::Direction::Above);
    assert!(!m.update(3.70, 0));
    assert!(m.update(3.70, 100));
    assert!(
        m.update(3.60, 200),
        "between release and limit: still tripped"
    );
    assert!(!m.update(3.50, 300), "below release: released");
}

#[test]
fn contactors_stay_open_until_every_source_is_fresh() {
    let mut p = Protection::new(cfg());
    let mut s = snap(0, 3.3, 25.0);
    s.complete = false;
    assert_eq!(p.evaluate(&s).contactors, ContactorCommand::Open);
    let mut s = snap(100, 3.3, 25.0);
    s.current_comm = CommStatus::Stale;
    let v = p.evaluate(&s);
    assert_eq!(v.contactors, ContactorCommand::Open);
    assert_eq!(
        p.latched().unwrap().quantity,
        Some(Quantity::CommunicationLoss)
    );
}

#[test]
fn stale_module_values_do_not_trip_voltage_but_trip_comm_loss() {
    let mut p = Protection::new(cfg());
    let mut s = snap(0, 9.99, 25.0);
    s.module_comm[1] = CommStatus::Stale;
    p.evaluate(&s);
    let f = p.latched().unwrap();
    assert_eq!(f.quantity, Some(Quantity::CommunicationLoss));
    assert_eq!(f.location.unwrap().module, 1);
}

#[test]
fn derating_is_linear_towards_the_limits() {
    let mut p = Protection::new(cfg());
    // Max cell 3.55 V: halfway between 3.45 and 3.65.
    let v = p.evaluate(&snap(0, 3.55, 25.0));
    assert!((v.allowed.charge_a - 140.0).abs() < 0.5, "{:?}", v.allowed);
    assert_eq!(v.allowed.discharge_a, 280.0);
    let v = p.evaluate(&snap(100, 2.7, 25.0));
    assert!(
        (v.allowed.discharge_a - 140.0).abs() < 0.5,
        "{:?}",
        v.allowed
    );
}

#[test]
fn bleeding_is_refused_on_low_hot_or_stale_cells() {
    let mut p = Protection::new(cfg());
    let mut s = snap(0, 3.3, 25.0);
    s.cell_voltage_v[1] = 2.7; // below UV release
    s.cell_temp_c[2] = 51.0; // above OT release
    s.module_comm[1] = CommStatus::Stale; // cells 4..8
    let out = p.clamp_bleed(&s, &[true; 8]);
    assert_eq!(out, [true, false, false, true, false, false, false, false]);
    assert_eq!(p.clamp_stats.bleed_refused, 6);
}

#[test]
fn power_hints_are_capped_and_nan_is_zero() {
    let mut p = Protection::new(cfg());
    let s = snap(0, 3.3, 25.0);
    let allowed = AllowedCurrent {
        charge_a: 10.0,
        discharge_a: 20.0,
    };
    let pack_v = s.pack_voltage_v;
    assert_eq!(p.clamp_power_w(&s, allowed, 1e9), 10.0 * pack_v);
    assert_eq!(p.clamp_power_w(&s, allowed, -1e9), -20.0 * pack_v);
    assert_eq!(p.clamp_power_w(&s, allowed, f32::NAN), 0.0);
    assert_eq!(p.clamp_power_w(&s, allowed, f32::INFINITY), 0.0);
    assert_eq!(p.clamp_power_w(&s, allowed, 5.0), 5.0);
    assert_eq!(p.clamp_stats.non_finite, 2);
    assert_eq!(p.clamp_stats.power_capped, 2);
}
