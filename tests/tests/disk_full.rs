//! The disk fills up just before an over-voltage latch: protection keeps
//! running, latches and opens on time, raises the record-failing warning,
//! and once the disk takes writes again every queued record reaches it:
//! none is lost, none is glued to a fragment.
//!
//! The full disk is real to the process: RLIMIT_FSIZE at the current size
//! of the event journal, so the next append stores part of its line and
//! fails with EFBIG. Its own test binary: the limit is process-wide.

use bms_e2e::{assemble, demo_site, fault, set_faults};
use bmshost::protection::events::{EventKind, EventLog};
use bmshost::protection::{ActiveTier, Quantity};
use bmshost::site::{Observation, RunOptions};

fn set_file_size_limit(bytes: Option<u64>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.map_or(lim.rlim_max, |b| b as libc::rlim_t);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

#[test]
fn a_latch_on_a_full_disk_holds_warns_and_reaches_the_disk_once_it_has_room() {
    // SAFETY: ignoring SIGXFSZ turns the limit into an EFBIG error.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let (full_ms, fault_ms, room_ms) = (55_000u64, 60_000u64, 90_000u64);
    let cfg = demo_site(|t| {
        set_faults(
            t,
            vec![fault(
                "cell_soc",
                fault_ms as f64 / 1000.0,
                &[("cell", 37.into()), ("soc_pct", 102.5.into())],
            )],
        )
    });
    let (mut site, dir) = assemble(cfg);
    let events = dir.path().join("events.jsonl");
    let (mut warned, mut latched, mut open_while_full) = (None, None, false);
    let opts = RunOptions {
        duration_s: Some(100.0),
        ..Default::default()
    };
    let summary = site
        .run(&opts, |o: Observation<'_>| {
            if o.t_ms == full_ms {
                let len = std::fs::metadata(&events).unwrap().len();
                set_file_size_limit(Some(len));
            }
            if o.t_ms == room_ms {
                set_file_size_limit(None);
            }
            let failing = ActiveTier {
                quantity: Quantity::EventRecordFailing,
                tier: bmshost::protection::limits::TierLevel::Mol,
            };
            if o.status.active.contains(&failing) {
                warned.get_or_insert(o.t_ms);
            }
            if latched.is_none() && !o.status.latched.is_empty() {
                latched = Some(o.t_ms);
            }
            if latched.is_some() && o.t_ms < room_ms {
                open_while_full |= !o.sim.expect("simulated").main_closed();
            }
        })
        .unwrap();
    set_file_size_limit(None);
    let latched = latched.expect("the over-voltage latched on a full disk");
    assert!(
        latched < room_ms,
        "latched at {latched} ms, before the disk had room"
    );
    assert!(
        open_while_full,
        "the contacts opened while the disk was full"
    );
    assert_eq!(summary.latched[0].quantity, Quantity::CellOverVoltage);
    let warned = warned.expect("the record-failing warning was raised");
    assert!(
        (full_ms..room_ms).contains(&warned),
        "warned at {warned} ms"
    );

    let read = EventLog::read(&events).unwrap();
    assert!(
        read.corrupt_lines.is_empty() && read.torn_tail_bytes == 0,
        "{read:?}"
    );
    let on_disk: Vec<_> = read.records.iter().map(|r| r.seq).collect();
    assert!(
        read.records
            .iter()
            .any(|r| r.kind == EventKind::Latched && r.quantity == Some(Quantity::CellOverVoltage)),
        "the latch reached the disk"
    );
    let lost = bms_e2e::faults::records_lost(dir.path(), &summary.protection_events);
    let mut sorted = on_disk.clone();
    sorted.sort_unstable();
    assert_eq!(on_disk, sorted, "in order");
    bms_e2e::faults::row(bms_e2e::faults::Row {
        scenario: "disk full during an over-voltage latch".into(),
        expected: "latch and open on time; warning raised; records written once there is room"
            .into(),
        observed: format!(
            "latched with the disk full, opened; warning at the first refused write ({} ms after the disk filled); all records on disk once it had room",
            warned - full_ms
        ),
        reaction_ms: Some(latched - fault_ms),
        bound_ms: Some(
            demo_site(|_| {})
                .protection
                .cell_over_voltage_v
                .msl
                .unwrap()
                .delay_ms
                + 100
                + 10,
        ),
        records_lost: lost,
    });
}
