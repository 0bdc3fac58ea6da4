//! Group level: the shipped four-rack bank (`configs/site-4rack.toml`) on
//! the simulated racks, with the real plugins in every rack.
//!
//! - the bank SOC is the capacity-weighted SOC of the connected racks, and
//!   the bank limits are the sum of the rack limits times the imbalance
//!   factor (both recomputed here from the racks' own reports);
//! - a rack that faults is isolated while the others carry on, and the
//!   SunSpec image (scanned with pysunspec2) shows one 803 string per rack
//!   with the faulted one open;
//! - with isolation off, the fault holds every rack open (bank trip);
//! - two racks share one bus on disjoint id ranges without mixing data.

use std::collections::BTreeMap;
use std::process::Command;

use bms_e2e::{component, section, workspace_root, PLUGINS};
use bmshost::bank::BankState;
use bmshost::config::SiteConfig;
use bmshost::protection::contactor::ContactorState;
use bmshost::protection::events::EventKind;
use bmshost::protection::HoldSource;
use bmshost::site::{BankSite, RunOptions};

/// R3 (index 2) gets a +500 mV sense offset on one cell at this time: a
/// cell over-voltage MSL within 0.5 s.
const FAULT_AT_S: f64 = 240.0;
const FAULTED: usize = 2;

/// `configs/site-4rack.toml` after `edit`, as if read from `configs/`.
fn four_racks(edit: impl FnOnce(&mut toml::Table)) -> SiteConfig {
    for p in PLUGINS {
        component(p);
    }
    let path = workspace_root().join("configs/site-4rack.toml");
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut control = toml::Table::new();
    control.insert("status_interval_ms".into(), 10_000_000.into());
    t.insert("control".into(), toml::Value::Table(control));
    let racks = section(&mut t, &["bank"])["racks"].as_array_mut().unwrap();
    let mut fault = toml::Table::new();
    fault.insert("kind".into(), "cell_voltage_offset".into());
    fault.insert("at_s".into(), FAULT_AT_S.into());
    fault.insert("cell".into(), 37.into());
    fault.insert("offset_mv".into(), 500.0.into());
    racks[FAULTED].as_table_mut().unwrap().insert(
        "sim_faults".into(),
        toml::Value::Array(vec![toml::Value::Table(fault)]),
    );
    edit(&mut t);
    SiteConfig::parse(&toml::to_string(&t).unwrap(), &path)
        .unwrap_or_else(|e| panic!("edited site-4rack.toml is invalid: {e}"))
}

fn run(
    cfg: SiteConfig,
    duration_s: f64,
    at_s: &[f64],
) -> (
    BankSite,
    bmshost::site::bank::BankSummary,
    BTreeMap<u64, Snapshot>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut site = BankSite::assemble_in(cfg, dir.path().to_path_buf()).unwrap();
    let marks: Vec<u64> = at_s.iter().map(|s| (s * 1000.0) as u64).collect();
    let mut seen = BTreeMap::new();
    let racks = std::cell::RefCell::new(vec![None::<RackAt>; site.racks.len()]);
    let summary = site
        .run(
            &RunOptions {
                duration_s: Some(duration_s),
                ..RunOptions::default()
            },
            |i, o| {
                if let Some(c) = o.cycle {
                    racks.borrow_mut()[i] = Some(RackAt {
                        soc_pct: c.pack_soc_pct,
                        protection_soc_pct: o.status.soc.native_mean_pct,
                        allowed_charge_a: o.status.allowed.charge_a,
                        state: o.status.contactor_state,
                        latched: !o.status.latched.is_empty(),
                    });
                }
            },
            |t_ms, bank| {
                if marks.contains(&t_ms) {
                    seen.insert(
                        t_ms,
                        Snapshot {
                            bank: bank.clone(),
                            racks: racks.borrow().iter().map(|r| r.clone().unwrap()).collect(),
                        },
                    );
                }
            },
        )
        .unwrap();
    assert_eq!(seen.len(), marks.len(), "every mark observed");
    (site, summary, seen, dir)
}

#[derive(Debug, Clone)]
struct RackAt {
    /// The SOC plugin's estimate (what the bank reports).
    soc_pct: Option<f32>,
    /// Protection's own SOC (what the imbalance derating is judged on).
    protection_soc_pct: Option<f32>,
    allowed_charge_a: f32,
    state: ContactorState,
    latched: bool,
}

#[derive(Debug)]
struct Snapshot {
    bank: BankState,
    racks: Vec<RackAt>,
}

const CAPACITY_AH: [f32; 4] = [280.0, 280.0, 280.0, 260.0];

/// The aggregation rules, computed independently of `bank::aggregate`.
fn check_aggregation(s: &Snapshot) {
    let on: Vec<usize> = (0..4)
        .filter(|&i| s.racks[i].state == ContactorState::Closed)
        .collect();
    assert_eq!(s.bank.connected, on.len(), "{s:?}");
    let cap: f32 = on.iter().map(|&i| CAPACITY_AH[i]).sum();
    let soc: f32 = on
        .iter()
        .map(|&i| CAPACITY_AH[i] * s.racks[i].soc_pct.unwrap())
        .sum::<f32>()
        / cap;
    // Rack SOC is read once per cycle, the bank's at the same boundary.
    assert!(
        (s.bank.soc_pct.unwrap() - soc).abs() < 0.05,
        "{soc} vs {s:?}"
    );
    let socs: Vec<f32> = on
        .iter()
        .map(|&i| s.racks[i].protection_soc_pct.unwrap())
        .collect();
    let spread = socs.iter().cloned().fold(f32::MIN, f32::max)
        - socs.iter().cloned().fold(f32::MAX, f32::min);
    // The shipped curve: 1.0 up to 2 pp, 0.5 at 10 pp, 0 at 20 pp.
    let factor = if spread <= 2.0 {
        1.0
    } else if spread <= 10.0 {
        1.0 - 0.5 * (spread - 2.0) / 8.0
    } else {
        (0.5 - 0.5 * (spread - 10.0) / 10.0).max(0.0)
    };
    assert!(
        (s.bank.imbalance_factor - factor).abs() < 0.02,
        "{factor} vs {s:?}"
    );
    let sum: f32 = on.iter().map(|&i| s.racks[i].allowed_charge_a).sum();
    assert!(
        (s.bank.allowed.charge_a - sum * s.bank.imbalance_factor).abs() < 1.0,
        "{sum} x {} vs {s:?}",
        s.bank.imbalance_factor
    );
    assert!(s.bank.allowed.charge_a <= sum + 1e-3);
}

#[test]
fn a_faulted_rack_is_isolated_while_the_bank_carries_on_and_sunspec_shows_every_string() {
    let cfg = four_racks(|t| {
        let m = section(t, &["modbus"]);
        m.insert("bind".into(), "127.0.0.1:0".into());
    });
    let (site, summary, seen, _dir) = run(cfg, FAULT_AT_S + 60.0, &[200.0, FAULT_AT_S + 50.0]);
    let server = site.start_modbus().unwrap().expect("[modbus] configured");

    // Before the fault: every rack connected and charging, R3 a little
    // fuller (it started at 33 % against 30 %), so the bank derates.
    let before = &seen[&200_000];
    assert_eq!(before.bank.connected, 4, "{before:?}");
    assert!(before.bank.soc_spread_pct > 2.0, "{before:?}");
    assert!(before.bank.imbalance_factor < 1.0, "{before:?}");
    check_aggregation(before);

    // After: R3 latched and open, the other three still closed and counted.
    let after = &seen[&((FAULT_AT_S + 50.0) as u64 * 1000)];
    assert!(after.racks[FAULTED].latched, "{after:?}");
    assert_eq!(after.racks[FAULTED].state, ContactorState::Open);
    for i in [0, 1, 3] {
        assert_eq!(
            after.racks[i].state,
            ContactorState::Closed,
            "rack {i}: {after:?}"
        );
        assert!(!after.racks[i].latched);
    }
    check_aggregation(after);
    assert_eq!(summary.bank_trip_periods, 0, "isolation is on");
    assert_eq!(summary.missed_deadlines, 0);
    let r3 = &summary.racks[FAULTED].summary;
    let trip = r3
        .protection_events
        .iter()
        .find(|e| e.kind == EventKind::Latched)
        .expect("R3 latched");
    assert!(
        (trip.time_ms as f64) < (FAULT_AT_S + 1.0) * 1000.0,
        "tripped at {} ms",
        trip.time_ms
    );

    // pysunspec2 sees the bank: four strings, three connected, R3's string
    // open with its over-voltage alarm, each string's SOC its rack's.
    let out = Command::new(bms_e2e::python(&["sunspec2"]))
        .arg(workspace_root().join("tests/py/sunspec_scan.py"))
        .args(["127.0.0.1", &server.local_addr.port().to_string(), "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(scan["NStr"], 4, "{scan}");
    assert_eq!(scan["NStrCon"], 3, "{scan}");
    let st: Vec<u64> = scan["StrSt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(st, [3, 3, 1, 3], "bit 1 = contactor closed: {scan}");
    let evt = scan["StrEvt1"][FAULTED].as_u64().unwrap();
    assert_ne!(
        evt & (1 << bmshost::io::modbus::sunspec::evt1::OVER_VOLT_ALARM),
        0,
        "{scan}"
    );
    for (i, r) in summary.racks.iter().enumerate() {
        let soc = f64::from(r.summary.final_pack_soc_pct.unwrap());
        let str_soc = scan["StrSoC"][i].as_f64().unwrap();
        assert!((str_soc - soc).abs() < 0.2, "rack {i}: {str_soc} vs {soc}");
    }
    let bank_soc = f64::from(summary.bank.soc_pct.unwrap());
    assert!(
        (scan["SoC"].as_f64().unwrap() - bank_soc).abs() < 0.2,
        "{scan}"
    );
    // The bank's allowed charge current is what 802 AChaMax reports.
    let cha = f64::from(summary.bank.allowed.charge_a);
    assert!(
        (scan["AChaMax"].as_f64().unwrap() - cha).abs() < 1.0,
        "{scan} vs {cha}"
    );

    // R1 and R2 share can0 on disjoint id ranges: each hears the other's
    // frames as unknown ids and still decodes only its own, so both stay
    // complete and estimate their own SOC; R3 on its own bus hears nobody.
    for i in [0, 1] {
        let s = &summary.racks[i].summary;
        assert!(
            s.acquisition.unknown_id > 1000,
            "rack {i}: {:?}",
            s.acquisition
        );
        let acc = s.sim.as_ref().unwrap();
        assert!(acc.max_abs_soc_error_pct < 3.0, "rack {i}: {acc:?}");
    }
    assert_eq!(summary.racks[2].summary.acquisition.unknown_id, 0);
}

#[test]
fn without_isolation_a_rack_fault_holds_every_rack_open() {
    let cfg = four_racks(|t| {
        section(t, &["bank"]).insert("isolate_faulted_racks".into(), false.into());
        t.remove("modbus");
    });
    let (_site, summary, seen, _dir) = run(cfg, FAULT_AT_S + 20.0, &[FAULT_AT_S + 10.0]);
    let after = &seen[&((FAULT_AT_S + 10.0) as u64 * 1000)];
    assert_eq!(after.bank.connected, 0, "{after:?}");
    assert_eq!(after.bank.allowed.charge_a, 0.0);
    assert!(summary.bank_trip_periods > 0);
    for (i, r) in summary.racks.iter().enumerate() {
        assert_eq!(
            r.summary.final_contactor_state,
            ContactorState::Open,
            "rack {i}"
        );
        if i == FAULTED {
            assert!(!r.summary.latched.is_empty());
            continue;
        }
        // Held, not latched: they reclose once R3 is reset.
        assert!(r.summary.latched.is_empty(), "rack {i}");
        let hold = r
            .summary
            .protection_events
            .iter()
            .find(|e| e.kind == EventKind::Hold)
            .unwrap_or_else(|| panic!("rack {i} recorded no hold"));
        assert!(
            hold.message.contains(&format!("{:?}", HoldSource::Bank))
                && hold.message.contains("rack R3 latched"),
            "{}",
            hold.message
        );
    }
}
