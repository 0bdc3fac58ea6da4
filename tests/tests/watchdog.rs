//! The protection thread's heartbeat and the external watchdog relay: hang
//! the thread, or kill it without any cleanup, and the contactors open
//! anyway, within the watchdog time. Paced (real-time, threaded) runs.

use bms_e2e::{assemble, demo_site};
use bmshost::protection::task::InjectedFault;
use bmshost::site::{Observation, RunOptions, Speed};

/// Run 9 s in real time (the contactors close after the 5 s arming
/// window); inject `fault` into the protection thread at 7 s.
/// Returns (time the fault was injected, time current stopped flowing).
fn run_with(fault: InjectedFault) -> (u64, u64) {
    // 10 missed 10 ms heartbeats: tolerant of a loaded test machine, still
    // far below any trip delay.
    let cfg = demo_site(|t| {
        bms_e2e::section(t, &["protection"]).insert("watchdog_periods".into(), 10.into());
    });
    let watchdog_ms = cfg.protection.period_ms * cfg.protection.watchdog_periods as u64;
    let (mut site, dir) = assemble(cfg);
    let opts = RunOptions {
        speed: Speed::Factor(1.0),
        duration_s: Some(9.0),
        print_status: false,
        stop: None,
    };
    let (mut injected, mut opened) = (None, None);
    let mut closed_before = 0;
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            let closed = o.sim.expect("simulated site").main_closed();
            match injected {
                None if o.t_ms >= 7000 => {
                    assert!(
                        closed,
                        "contactors must be closed before the fault (at {} ms)",
                        o.t_ms
                    );
                    o.thread
                        .expect("paced run has a protection thread")
                        .inject(fault);
                    injected = Some(o.t_ms);
                }
                None => closed_before += closed as u32,
                Some(_) if opened.is_none() && !closed => opened = Some(o.t_ms),
                Some(_) => {}
            }
        })
        .unwrap();
    assert!(
        closed_before > 100,
        "contactors were closed for only {closed_before} ticks before the fault"
    );
    let (injected, opened) = (injected.unwrap(), opened.expect("contactors never opened"));
    // Heartbeat missing for the watchdog time, then the relay drops on the
    // next simulator step (20 ms); allow one more period of scheduling slack.
    let bound = watchdog_ms + 20 + 2 * 10;
    assert!(
        opened - injected <= bound,
        "{fault:?}: opened {} ms after the fault, bound {bound} ms",
        opened - injected
    );
    bms_e2e::faults::row(bms_e2e::faults::Row {
        scenario: format!("protection thread {fault:?}"),
        expected: "heartbeat stops; the external watchdog relay opens the contactors".into(),
        observed: "main contact opened by the relay".into(),
        reaction_ms: Some(opened - injected),
        bound_ms: Some(bound),
        records_lost: bms_e2e::faults::records_lost(dir.path(), &summary.protection_events),
    });
    (injected, opened)
}

#[test]
fn hung_protection_thread_opens_the_contactors() {
    run_with(InjectedFault::Hang);
}

#[test]
fn killed_protection_thread_opens_the_contactors() {
    run_with(InjectedFault::Kill);
}
