//! Protection supervised from outside its thread: hang it, or kill it
//! without any cleanup, and within the configured periods the PCS (a
//! pymodbus simulator) reads 0 A with a frozen heartbeat, SunSpec (read
//! with pysunspec2) shows the bank faulted with nothing allowed, and the
//! control side records it. Paced, real-time runs.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bms_e2e::{assemble, demo_site, section, workspace_root};
use bmshost::protection::task::InjectedFault;
use bmshost::site::{Observation, RunOptions, Speed};

fn scan(port: u16) -> serde_json::Value {
    let out = Command::new(bms_e2e::python(&["sunspec2", "pymodbus"]))
        .arg(workspace_root().join("tests/py/sunspec_scan.py"))
        .args(["127.0.0.1", &port.to_string(), "1"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn pcs_and_modbus(t: &mut toml::Table, pcs_port: u16) {
    bms_e2e::pcs_section(t, pcs_port, 50);
    let mut m = toml::Table::new();
    m.insert("bind".into(), "127.0.0.1:0".into());
    t.insert("modbus".into(), toml::Value::Table(m));
    // Keep the watchdog relay slower than the supervision, so the PCS is
    // told 0 A before the contactor opens under it.
    section(t, &["protection"]).insert("watchdog_periods".into(), 20.into());
    section(t, &["protection"]).insert("supervision_periods".into(), 10.into());
}

/// (ms after the fault, charge register, heartbeat register)
type Series = Vec<(i64, u16, u16)>;

fn run_with(fault: InjectedFault) {
    let _one = bms_e2e::one_paced_rack();
    let (pcs_port, _pcs) = bms_e2e::start_pcs_sim();
    let cfg = demo_site(|t| pcs_and_modbus(t, pcs_port));
    let max_silence_ms = cfg.protection.period_ms * u64::from(cfg.protection.supervision_periods);
    let (mut site, _dir) = assemble(cfg);
    let _link = site.start_pcs_link().unwrap().expect("[pcs]");
    let server = site.start_modbus().unwrap().expect("[modbus]");
    let modbus_port = server.local_addr.port();

    let fault_ms = 7_000u64;
    let started = Instant::now();
    // Wall ms since start at which the fault was injected (0: not yet).
    let injected_wall_ms = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let series = Arc::new(Mutex::new(Series::new()));
    let scanned = Arc::new(Mutex::new(None::<serde_json::Value>));
    let poller = {
        let (inj, stop, series, scanned) = (
            injected_wall_ms.clone(),
            stop.clone(),
            series.clone(),
            scanned.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let at = inj.load(Ordering::Relaxed);
                if let Some(r) = bms_e2e::read_registers(pcs_port, 100, 3) {
                    let now = started.elapsed().as_millis() as i64;
                    let rel = if at == 0 { -1 } else { now - at as i64 };
                    series.lock().unwrap().push((rel, r[0], r[2]));
                    if rel > 1500 && scanned.lock().unwrap().is_none() {
                        *scanned.lock().unwrap() = Some(scan(modbus_port));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let opts = RunOptions {
        speed: Speed::Factor(1.0),
        duration_s: Some(10.0),
        ..Default::default()
    };
    let mut closed_at_fault = false;
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms >= fault_ms && injected_wall_ms.load(Ordering::Relaxed) == 0 {
                closed_at_fault = o.sim.expect("simulated").main_closed();
                o.thread.expect("paced").inject(fault);
                injected_wall_ms.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    drop(server);
    assert!(closed_at_fault, "contactors closed before the fault");
    let series = series.lock().unwrap().clone();
    let before: Vec<&(i64, u16, u16)> = series.iter().filter(|s| s.0 < 0).collect();
    assert!(
        before.iter().any(|s| s.1 > 0) && before.first().map(|s| s.2) != before.last().map(|s| s.2),
        "before the fault the PCS sees current allowed and a live heartbeat: {before:?}"
    );
    // Supervision bound + one PCS write period + one poll + a Python start.
    let bound_ms = (max_silence_ms + 50 + 50 + 400) as i64;
    let after: Vec<&(i64, u16, u16)> = series.iter().filter(|s| s.0 > bound_ms).collect();
    assert!(
        after.len() >= 3,
        "too few PCS samples after the fault: {series:?}"
    );
    assert!(
        after.iter().all(|s| s.1 == 0),
        "{fault:?}: the PCS still saw current allowed {bound_ms} ms after the fault: {series:?}"
    );
    assert!(
        after.iter().all(|s| s.2 == after[0].2),
        "{fault:?}: the PCS heartbeat kept counting: {series:?}"
    );
    let scan = scanned
        .lock()
        .unwrap()
        .clone()
        .expect("SunSpec scanned after the fault");
    assert_eq!(scan["State"], 99, "SunSpec 802 State is FAULT: {scan}");
    assert_eq!(scan["AChaMax"].as_f64(), Some(0.0), "{scan}");
    let other_alarm = 1u64 << bmshost::io::modbus::sunspec::evt1::OTHER_ALARM;
    assert!(
        scan["StrEvt1"][0]
            .as_u64()
            .is_some_and(|e| e & other_alarm != 0),
        "the string shows the alarm: {scan}"
    );
    let stopped = summary
        .supervision
        .iter()
        .find(|r| r.kind == "protection_stopped")
        .unwrap_or_else(|| panic!("not recorded: {:?}", summary.supervision));
    assert!(
        stopped.time_ms >= fault_ms && stopped.silent_ms > max_silence_ms,
        "{stopped:?}"
    );
}

#[test]
fn a_hung_protection_thread_tells_the_pcs_zero_and_freezes_its_heartbeat() {
    run_with(InjectedFault::Hang);
}

#[test]
fn a_killed_protection_thread_tells_the_pcs_zero_and_freezes_its_heartbeat() {
    run_with(InjectedFault::Kill);
}
