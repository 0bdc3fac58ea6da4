//! The SunSpec Modbus TCP server checked with third-party clients while the
//! simulated rack runs: `pysunspec2` scans the device and finds models 1,
//! 802 and 803 with the values the host is producing; `mbpoll` reads the
//! `SunS` header; `pymodbus` gets the right exception codes for bad reads
//! and writes. The Python tools come from `target/pyenv` (`cargo xtask
//! test`) through `BMS_PYTHON`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bms_e2e::{demo_site, section, workspace_root};
use bmshost::control::CycleReport;
use bmshost::site::{RackSite, RunOptions, Speed};

fn py(script: &str, args: &[String]) -> serde_json::Value {
    let out = Command::new(bms_e2e::python(&["sunspec2", "pymodbus"]))
        .arg(workspace_root().join("tests/py").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The demo site with a Modbus server on a free loopback port, running paced
/// in a thread; returns the port and the latest cycle report.
fn running_site(
    writers: &[&str],
) -> (
    u16,
    Arc<Mutex<Option<CycleReport>>>,
    std::thread::JoinHandle<()>,
    tempfile::TempDir,
) {
    running_site_in(writers, tempfile::tempdir().unwrap())
}

/// As [`running_site`], with the state directory `dir` (prepared by the
/// caller).
fn running_site_in(
    writers: &[&str],
    dir: tempfile::TempDir,
) -> (
    u16,
    Arc<Mutex<Option<CycleReport>>>,
    std::thread::JoinHandle<()>,
    tempfile::TempDir,
) {
    let cfg = demo_site(|t| {
        let mut m = toml::Table::new();
        m.insert("bind".into(), "127.0.0.1:0".into());
        m.insert(
            "allowed_writers".into(),
            toml::Value::Array(writers.iter().map(|w| (*w).into()).collect()),
        );
        t.insert("modbus".into(), toml::Value::Table(m));
        section(t, &["control"]).insert("status_interval_ms".into(), 1_000_000.into());
    });
    let mut site = RackSite::assemble_in(cfg, dir.path().to_path_buf()).unwrap();
    let server = site.start_modbus().unwrap().expect("[modbus] configured");
    let port = server.local_addr.port();
    let last = Arc::new(Mutex::new(None));
    let last2 = last.clone();
    let handle = std::thread::spawn(move || {
        let _server = server;
        site.run(
            &RunOptions {
                speed: Speed::Factor(5.0),
                // Inside the initial rest: values hold still while read.
                duration_s: Some(60.0),
                print_status: false,
                stop: None,
            },
            |o| {
                if let Some(c) = o.cycle {
                    *last2.lock().unwrap() = Some(c.clone());
                }
            },
        )
        .unwrap();
    });
    // Let the contactors close and the estimators settle.
    std::thread::sleep(Duration::from_secs(3));
    (port, last, handle, dir)
}

#[test]
fn pysunspec2_finds_the_models_and_reads_what_the_rack_produces() {
    let _one = bms_e2e::one_paced_rack();
    let (port, last, handle, _dir) = running_site(&["127.0.0.1"]);
    let scan = py(
        "sunspec_scan.py",
        &["127.0.0.1".into(), port.to_string(), "1".into()],
    );
    let report = last.lock().unwrap().clone().expect("cycles ran");
    assert_eq!(scan["models"], serde_json::json!([1, 802, 803]), "{scan}");
    assert_eq!(scan["Mn"], "bmshost");
    assert_eq!(scan["Typ"], 4, "lithium-ion");
    assert_eq!(scan["State"], 3, "connected: {scan}");
    let f = |k: &str| scan[k].as_f64().unwrap_or_else(|| panic!("{k}: {scan}"));
    let soc = f64::from(report.pack_soc_pct.unwrap());
    assert!(
        (f("SoC") - soc).abs() < 0.2,
        "SoC {} vs host {soc}",
        f("SoC")
    );
    let (vmin, vmax) = report.snapshot.cell_voltage_range_v();
    assert!((f("CellVMax") - f64::from(vmax)).abs() < 0.005, "{scan}");
    assert!((f("CellVMin") - f64::from(vmin)).abs() < 0.005, "{scan}");
    assert_eq!(scan["CellVMaxStr"], 1);
    assert!((1..=8).contains(&(f("CellVMaxMod") as i64)));
    assert!(
        (f("AChaMax") - f64::from(report.allowed.charge_a)).abs() <= 30.0,
        "{scan}"
    );
    assert!((f("AHRtg") - 280.0).abs() < 0.1);
    assert_eq!(scan["NStr"], 1);
    assert!((scan["StrSoC"][0].as_f64().unwrap() - soc).abs() < 0.2);

    // mbpoll: the SunS marker and model 1 at 40000 (mbpoll counts from 1).
    let out = Command::new("mbpoll")
        .args([
            "-m", "tcp", "-a", "1", "-r", "40001", "-c", "4", "-t", "4:hex", "-1", "-p",
        ])
        .arg(port.to_string())
        .arg("127.0.0.1")
        .output()
        .expect("mbpoll (apt-get install mbpoll; .ci/run does)");
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    for (reg, val) in [
        ("40001", "0x5375"),
        ("40002", "0x6e53"),
        ("40003", "0x0001"),
        ("40004", "0x0042"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("[{reg}]")) && l.contains(val)),
            "mbpoll did not read {val} at {reg}:\n{text}"
        );
    }
    handle.join().unwrap();
}

#[test]
fn bad_requests_get_the_modbus_exception_codes_and_writes_are_authorised() {
    let _one = bms_e2e::one_paced_rack();
    let (port, _last, handle, _dir) = running_site(&["127.0.0.1"]);
    let probe = |args: &[&str]| {
        let mut a = vec!["127.0.0.1".to_string(), port.to_string(), "1".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        py("modbus_probe.py", &a)
    };
    // Layout: SunS(2) + model 1 (2 + 66) = 70; model 802 header at 40070,
    // its points from 40072: SoC at +9, CtrlHb at +17, AlmRst at +18.
    let soc = 40072 + 9;
    let ctrl_hb = 40072 + 17;
    let alm_rst = 40072 + 18;
    assert_eq!(
        probe(&["read", "39990", "4"])["exception"],
        2,
        "below the image"
    );
    assert_eq!(
        probe(&["write", &soc.to_string(), "500"])["exception"],
        2,
        "read-only"
    );
    assert_eq!(probe(&["write", &ctrl_hb.to_string(), "7"])["ok"], true);
    assert_eq!(
        probe(&["write", &alm_rst.to_string(), "2"])["exception"],
        3,
        "bad value"
    );
    // Nothing is latched: protection refuses the reset.
    assert_eq!(probe(&["write", &alm_rst.to_string(), "1"])["exception"], 4);
    // A write spanning a writable and a read-only register changes nothing.
    assert_eq!(
        probe(&["write", &(ctrl_hb - 1).to_string(), "1", "2"])["exception"],
        2
    );
    assert_eq!(
        probe(&["read", &ctrl_hb.to_string(), "1"])["registers"],
        serde_json::json!([0]),
        "CtrlHb reads as 0 (the image shows no write-back)"
    );
    handle.join().unwrap();

    // A client not in allowed_writers may read but not write.
    let (port, _last, handle, _dir) = running_site(&[]);
    let a = |args: &[&str]| {
        let mut v = vec!["127.0.0.1".to_string(), port.to_string(), "1".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        py("modbus_probe.py", &v)
    };
    assert_eq!(a(&["read", "40000", "2"])["ok"], true);
    assert_eq!(a(&["write", &ctrl_hb.to_string(), "7"])["exception"], 1);
    handle.join().unwrap();
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "Modbus: illegal writes (read-only, bad value, stranger, spanning)",
        "exceptions 02 / 03 / 01; nothing written",
        "exceptions as expected; CtrlHb unchanged".into(),
        0,
    ));
}

#[test]
fn under_local_control_an_allowed_writer_can_only_disconnect_and_the_mode_survives_a_restart() {
    let _one = bms_e2e::one_paced_rack();
    // An operator switched the site to local before it (re)started.
    let dir = tempfile::tempdir().unwrap();
    bmshost::io::modbus::mode::ControlMode::load(dir.path())
        .set(bmshost::io::modbus::mode::Mode::Local)
        .unwrap();
    let (port, _last, handle, _dir) = running_site_in(&["127.0.0.1"], dir);
    let probe = |args: &[&str]| {
        let mut a = vec!["127.0.0.1".to_string(), port.to_string(), "1".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        py("modbus_probe.py", &a)
    };
    // 802 points from 40072: LocRemCtl +15, CtrlHb +17, AlmRst +18.
    let (loc_rem_ctl, ctrl_hb, alm_rst) = (40072 + 15, 40072 + 17, 40072 + 18);
    assert_eq!(
        probe(&["read", &loc_rem_ctl.to_string(), "1"])["registers"],
        serde_json::json!([1]),
        "LocRemCtl reads LOCAL"
    );
    for (reg, v) in [(ctrl_hb, "7"), (alm_rst, "1")] {
        assert_eq!(
            probe(&["write", &reg.to_string(), v])["exception"],
            1,
            "register {reg} under local control"
        );
    }
    handle.join().unwrap();
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "Modbus: writes under local control (LocRemCtl = LOCAL)",
        "refused (exception 01) but a disconnect; mode kept across a restart",
        "CtrlHb and AlmRst refused with 01; LocRemCtl reads 1 after restart".into(),
        0,
    ));
}

/// A latch-producing sensor fault (cell 10 reads 500 mV high from 1 s to
/// 5 s) on a site whose Modbus server lets 127.0.0.1 write.
fn latching_site(remote_msl_reset: bool) -> bmshost::config::SiteConfig {
    demo_site(|t| {
        let mut m = toml::Table::new();
        m.insert("bind".into(), "127.0.0.1:0".into());
        m.insert(
            "allowed_writers".into(),
            toml::Value::Array(vec!["127.0.0.1".into()]),
        );
        m.insert("remote_msl_reset".into(), remote_msl_reset.into());
        t.insert("modbus".into(), toml::Value::Table(m));
        section(t, &["control"]).insert("status_interval_ms".into(), 1_000_000.into());
        let fault = |at_s: f64, offset_mv: f64| {
            let mut f = toml::Table::new();
            f.insert("kind".into(), "cell_voltage_offset".into());
            f.insert("at_s".into(), at_s.into());
            f.insert("cell".into(), 10.into());
            f.insert("offset_mv".into(), offset_mv.into());
            toml::Value::Table(f)
        };
        section(t, &["sim"]).insert(
            "faults".into(),
            toml::Value::Array(vec![fault(1.0, 500.0), fault(5.0, 0.0)]),
        );
    })
}

#[test]
fn alm_rst_from_an_allowed_writer_cannot_clear_an_msl_latch_unless_the_site_opts_in() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _one = bms_e2e::one_paced_rack();
    let alm_rst = (40072 + 18).to_string();
    for opt_in in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut site =
            RackSite::assemble_in(latching_site(opt_in), dir.path().to_path_buf()).unwrap();
        let server = site.start_modbus().unwrap().expect("[modbus] configured");
        let port = server.local_addr.port().to_string();
        let latched = Arc::new(AtomicBool::new(false));
        let t_ms = Arc::new(AtomicU64::new(0));
        let (l2, t2) = (latched.clone(), t_ms.clone());
        let handle = std::thread::spawn(move || {
            let _server = server;
            site.run(
                &RunOptions {
                    speed: Speed::Factor(5.0),
                    duration_s: Some(30.0),
                    print_status: false,
                    stop: None,
                },
                |o| {
                    l2.store(!o.status.latched.is_empty(), Ordering::Relaxed);
                    t2.store(o.t_ms, Ordering::Relaxed);
                },
            )
            .unwrap();
        });
        // Latched at ~1.5 s; the condition clears at 5 s and a reset needs
        // 5 s of fresh data after that.
        let start = std::time::Instant::now();
        while !(latched.load(Ordering::Relaxed) && t_ms.load(Ordering::Relaxed) > 14_000) {
            assert!(start.elapsed() < Duration::from_secs(20), "no latch");
            std::thread::sleep(Duration::from_millis(20));
        }
        let reply = py(
            "modbus_probe.py",
            &[
                "127.0.0.1".into(),
                port,
                "1".into(),
                "write".into(),
                alm_rst.clone(),
                "1".into(),
            ],
        );
        if opt_in {
            assert_eq!(reply["ok"], true, "{reply}");
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !latched.load(Ordering::Relaxed),
                "the opted-in reset clears"
            );
        } else {
            assert_eq!(reply["exception"], 4, "{reply}");
            std::thread::sleep(Duration::from_millis(300));
            assert!(latched.load(Ordering::Relaxed), "the latch holds");
        }
        handle.join().unwrap();
        let record =
            bmshost::protection::events::EventLog::read(&dir.path().join("events.jsonl")).unwrap();
        let resets: Vec<_> = record
            .records
            .iter()
            .filter(|r| r.kind == bmshost::protection::events::EventKind::Reset)
            .collect();
        if opt_in {
            assert_eq!(resets.len(), 1, "{resets:?}");
            assert!(
                resets[0].message.contains("SunSpec AlmRst from 127.0.0.1"),
                "the record says who and how: {}",
                resets[0].message
            );
        } else {
            assert!(resets.is_empty(), "{resets:?}");
            bms_e2e::faults::row(bms_e2e::faults::untimed(
                "Modbus: AlmRst from an allowed writer while an MSL is latched",
                "refused (exception 04) unless the site opts in; the latch holds",
                "exception 04; latch held; no reset record".into(),
                0,
            ));
        }
    }
}
