//! The PCS link against a PCS simulator built with pymodbus: the host
//! writes protection's allowed currents into the PCS's registers, the PCS
//! sees them change when protection derates, and an unreachable PCS raises
//! the link alarm while the rack runs on, unaffected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bms_e2e::{assemble, demo_site, fault, set_faults};
use bmshost::protection::contactor::ContactorState;
use bmshost::site::{RunOptions, Speed};

fn read_register(port: u16, address: u16) -> Option<u16> {
    bms_e2e::read_registers(port, address, 1).and_then(|r| r.first().copied())
}

fn pcs_section(t: &mut toml::Table, port: u16) {
    bms_e2e::pcs_section(t, port, 100);
    // At 5x speed the demo's 5-period watchdog is 10 ms of wall time, which
    // a loaded test machine (the Python poller starts a process every
    // 100 ms) can take from the protection thread; this test is about the
    // PCS link, not the watchdog relay (tests/tests/watchdog.rs is).
    bms_e2e::section(t, &["protection"]).insert("watchdog_periods".into(), 25.into());
    // Likewise the CAN deadlines: 200 ms of site time is 40 ms of wall
    // time, less than a stall this 2-core machine was measured to take
    // (bench-jitter: ~60-70 ms). protection.rs tests them at real time.
    let can = bms_e2e::section(t, &["can"]);
    can.insert("module_timeout_ms".into(), 3000.into());
    can.insert("current_timeout_ms".into(), 2000.into());
    can.insert("stale_after_periods".into(), 20.into());
}

#[test]
fn the_pcs_receives_the_limits_and_sees_them_drop_when_protection_derates() {
    let _one = bms_e2e::one_paced_rack();
    let (port, _sim) = bms_e2e::start_pcs_sim();
    // A +200 mV sensor offset on one cell at 30 s: 3.47 V is on the charge
    // derating curve (3.45 V: 280 A .. 3.55 V: 140 A), below every trip.
    let cfg = demo_site(|t| {
        pcs_section(t, port);
        set_faults(
            t,
            vec![fault(
                "cell_voltage_offset",
                30.0,
                &[("cell", 5.into()), ("offset_mv", 200.0.into())],
            )],
        );
    });
    let (mut site, _dir) = assemble(cfg);
    let link = site.start_pcs_link().unwrap().expect("[pcs] configured");
    let stop = Arc::new(AtomicBool::new(false));
    let series = Arc::new(Mutex::new(Vec::<(f64, u16, u16)>::new()));
    let poller = {
        let (stop, series) = (stop.clone(), series.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let (Some(c), Some(hb)) = (read_register(port, 100), read_register(port, 102)) {
                    series
                        .lock()
                        .unwrap()
                        .push((t.elapsed().as_secs_f64(), c, hb));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut allowed_before = 0.0f32;
    let mut allowed_after = f32::MAX;
    let s = site
        .run(
            &RunOptions {
                speed: Speed::Factor(5.0),
                duration_s: Some(60.0),
                print_status: false,
                stop: None,
            },
            |o| {
                if o.cycle.is_some() {
                    if o.t_ms < 29_000 {
                        allowed_before = allowed_before.max(o.status.allowed.charge_a);
                    } else if o.t_ms > 40_000 {
                        allowed_after = allowed_after.min(o.status.allowed.charge_a);
                    }
                }
            },
        )
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let status = link.status();
    drop(link);
    assert!(s.latched.is_empty(), "{:?}", s.latched);
    assert!(
        allowed_before > 270.0 && allowed_after < 260.0 && allowed_after > 200.0,
        "protection derated {allowed_before} -> {allowed_after}"
    );
    let series = series.lock().unwrap().clone();
    let seen: Vec<u16> = series.iter().map(|(_, c, _)| *c).collect();
    // The PCS saw full current (2800 = 280.0 A at scale 0.1) and then the
    // derated limit.
    let peak = seen
        .iter()
        .position(|c| *c >= 2790)
        .unwrap_or_else(|| panic!("never 280 A: {seen:?}"));
    assert!(
        seen[peak..].iter().any(|c| (2000..2600).contains(c)),
        "the derating never reached the PCS: {seen:?}"
    );
    // The heartbeat register keeps counting.
    let hbs: Vec<u16> = series.iter().map(|(_, _, h)| *h).collect();
    assert!(hbs.last() > hbs.first(), "{hbs:?}");
    assert!(status.writes > 50 && status.alarm.is_none(), "{status:?}");
}

#[test]
fn an_unreachable_pcs_raises_the_alarm_and_the_rack_runs_on() {
    let _one = bms_e2e::one_paced_rack();
    let port = bms_e2e::free_port(); // nothing listens here
    let cfg = demo_site(|t| pcs_section(t, port));
    let (mut site, _dir) = assemble(cfg);
    let link = site.start_pcs_link().unwrap().unwrap();
    let s = site
        .run(
            &RunOptions {
                speed: Speed::Factor(5.0),
                duration_s: Some(20.0),
                print_status: false,
                stop: None,
            },
            |_| {},
        )
        .unwrap();
    let status = link.status();
    let alarm = status.alarm.as_deref().unwrap_or_default();
    assert!(
        alarm.contains(&format!("127.0.0.1:{port}")) && alarm.contains("unreachable"),
        "{status:?}"
    );
    assert!(
        !status.connected && status.failures >= 3,
        "retries with backoff: {status:?}"
    );
    assert_eq!(status.writes, 0);
    // Protection does not depend on the PCS link.
    assert!(s.latched.is_empty());
    assert_eq!(s.final_contactor_state, ContactorState::Closed);
    assert_eq!(s.cycles, 200);
}
