//! The operator's view of protection, through the real binaries: a running
//! `bmsd`, `bmsctl status / reset / events`, and the durable event record
//! surviving `kill -9`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Held by each test: two paced daemons (one at 10x speed) on a 2-core
/// machine starve each other's simulated BMUs and protection threads, and
/// 10x speed turns the 300 ms message deadline into 30 ms of wall time.
fn one_daemon() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Absolutize every relative path of a site table so it can live anywhere.
fn absolutize(v: &mut toml::Value, base: &Path, key: &str) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                absolutize(v, base, k);
            }
        }
        toml::Value::String(s)
            if matches!(
                key,
                "include" | "dbc" | "ocv_table" | "path" | "state_dir" | "users_file"
            ) =>
        {
            *s = base.join(&*s).to_string_lossy().into_owned();
        }
        _ => {}
    }
}

/// The demo site, with an over-voltage *sensor* fault from 1 s to 5 s, in
/// a temporary directory with its own state dir.
fn site_file(dir: &Path) -> PathBuf {
    site_file_with(dir, true, |_| {})
}

fn site_file_with(dir: &Path, sensor_fault: bool, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    assert!(
        root().join("target/plugins/soc-counting.wasm").is_file(),
        "plugins not built: run `cargo xtask build-plugins` first"
    );
    let configs = root().join("configs");
    let text = std::fs::read_to_string(configs.join("demo-site.toml")).unwrap();
    let mut v: toml::Value = toml::from_str(&text).unwrap();
    absolutize(&mut v, &configs, "");
    let t = v.as_table_mut().unwrap();
    t["site"].as_table_mut().unwrap().insert(
        "state_dir".into(),
        dir.join("state").to_string_lossy().into_owned().into(),
    );
    let fault = |at_s: f64, offset_mv: f64| {
        let mut f = toml::Table::new();
        f.insert("kind".into(), "cell_voltage_offset".into());
        f.insert("at_s".into(), at_s.into());
        f.insert("cell".into(), 10.into());
        f.insert("offset_mv".into(), offset_mv.into());
        toml::Value::Table(f)
    };
    if sensor_fault {
        t["sim"].as_table_mut().unwrap().insert(
            "faults".into(),
            toml::Value::Array(vec![fault(1.0, 500.0), fault(5.0, 0.0)]),
        );
    }
    edit(t);
    let path = dir.join("site.toml");
    std::fs::write(&path, toml::to_string(&v).unwrap()).unwrap();
    path
}

struct Daemon(Child);

impl Daemon {
    /// `bmsd run` on `site` in the background, once its control socket is up
    /// (the state dir is `state/` next to the site file).
    fn start(site: &Path, speed: &str, duration: &str) -> Self {
        let daemon = Daemon(
            Command::new(env!("CARGO_BIN_EXE_bmsd"))
                .args(["run", "--speed", speed, "--duration", duration, "--config"])
                .arg(site)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let socket = site.with_file_name("state").join("bmsd.sock");
        wait_for("the control socket", Duration::from_secs(30), || {
            socket.exists()
        });
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bmsctl(site: &Path, args: &[&str]) -> (bool, String) {
    bmsctl_as(site, None, args)
}

/// `bmsctl` as `user` with `secret` (through $BMS_SECRET, never argv).
fn bmsctl_as(site: &Path, who: Option<(&str, &str)>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bmsctl"));
    cmd.arg("--config")
        .arg(site)
        .args(args)
        .env_remove("BMS_SECRET")
        .env_remove("BMS_USER");
    if let Some((user, secret)) = who {
        cmd.args(["--user", user]).env("BMS_SECRET", secret);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The demo operator (`configs/users-demo.toml`; a published secret,
/// accepted on simulated sites only).
const OPERATOR: Option<(&str, &str)> = Some(("operator", "demo-reset"));

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(site: &Path) -> serde_json::Value {
    let (ok, text) = bmsctl(site, &["status"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn reset_needs_an_operator_and_a_cleared_condition_and_the_record_survives_kill_9() {
    let _one = one_daemon();
    let dir = tempfile::tempdir().unwrap();
    let site = site_file(dir.path());
    let daemon = Daemon::start(&site, "1", "60s");

    // The sensor fault latches an over-voltage MSL.
    wait_for("the over-voltage latch", Duration::from_secs(10), || {
        status(&site)["latched"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    let st = status(&site);
    assert_eq!(st["latched"][0]["quantity"], "cell_over_voltage");
    assert_eq!(st["latched"][0]["location"]["module"], 0);
    assert_eq!(st["latched"][0]["location"]["cell"], 10);

    // No user, a viewer, a wrong secret: refused, nothing changes.
    let (ok, text) = bmsctl(&site, &["reset"]);
    assert!(!ok && text.contains("--user"), "{text}");
    let (ok, text) = bmsctl_as(&site, Some(("viewer", "demo-viewer")), &["reset"]);
    assert!(!ok && text.contains("is a viewer"), "{text}");
    let (ok, text) = bmsctl_as(&site, Some(("operator", "guess")), &["reset"]);
    assert!(!ok && text.contains("not authorised"), "{text}");

    // Right credential while the condition still holds (until 5 s):
    // refused. The latch comes at ~1.5 s; the check runs well before 5 s.
    assert!(
        st["time_ms"].as_u64().unwrap() < 4800,
        "test machine too slow to check the refusal"
    );
    let (ok, text) = bmsctl_as(&site, OPERATOR, &["reset"]);
    assert!(!ok && text.contains("condition not cleared"), "{text}");

    // After the sensor recovers, the authorised reset succeeds.
    // (The reset also needs the arming window of fresh data: 5 s.)
    wait_for("the sensor fault to clear", Duration::from_secs(15), || {
        status(&site)["time_ms"].as_u64().unwrap() > 7000
    });
    let (ok, text) = bmsctl_as(&site, OPERATOR, &["reset"]);
    assert!(ok, "{text}");
    assert!(status(&site)["latched"].as_array().unwrap().is_empty());
    // After the reset, a new arming window, then the contactors close.
    wait_for(
        "the contactors to close after the reset",
        Duration::from_secs(20),
        || status(&site)["contactor_state"] == "closed",
    );

    // The audit record has every attempt: who, where, what, outcome.
    let (ok, audit) = bmsctl(&site, &["audit", "--json"]);
    assert!(ok, "{audit}");
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let seen: Vec<(String, String)> = audit
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // (Without --user, bmsctl asks for one and sends nothing.)
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen[0].0 == "viewer" && seen[0].1.contains("is a viewer"),
        "{seen:?}"
    );
    assert!(
        seen[1].0 == "operator" && seen[1].1.contains("wrong user or secret"),
        "{seen:?}"
    );
    assert!(seen[2].1.contains("condition not cleared"), "{seen:?}");
    assert_eq!(seen[3], ("operator".to_string(), "ok".to_string()));
    assert!(audit
        .iter()
        .all(|r| r["source"] == "socket" && r["action"] == "reset"));
    let events_text = std::fs::read_to_string(dir.path().join("state/events.jsonl")).unwrap();
    assert!(
        events_text.contains("reset by operator `operator` over the control socket"),
        "the reset record names who and how"
    );

    // Opening is never refused: no user, no secret. Releasing needs one.
    let (ok, text) = bmsctl(&site, &["open", "--reason", "drill"]);
    assert!(ok, "{text}");
    wait_for("the open hold", Duration::from_secs(5), || {
        status(&site)["contactor_state"] == "open"
    });
    let (ok, text) = bmsctl(&site, &["release"]);
    assert!(!ok && text.contains("--user"), "{text}");
    let (ok, text) = bmsctl_as(&site, OPERATOR, &["release"]);
    assert!(ok, "{text}");
    wait_for(
        "the contactors to close after the release",
        Duration::from_secs(20),
        || status(&site)["contactor_state"] == "closed",
    );
    let (_, audit) = bmsctl(&site, &["audit", "--json", "--since", "4"]);
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let acts: Vec<_> = audit
        .iter()
        .map(|r| (r["action"].clone(), r["result"].clone()))
        .collect();
    assert_eq!(
        acts,
        [
            (serde_json::json!("open"), serde_json::json!("ok")),
            (serde_json::json!("release"), serde_json::json!("ok"))
        ],
        "{audit:?}"
    );

    // Local control: anyone may read the mode, an operator switches it,
    // and it is recorded on disk (for the next start) and in the audit.
    let (ok, text) = bmsctl(&site, &["control"]);
    assert!(ok && text.trim() == "remote", "{text}");
    let (ok, text) = bmsctl_as(
        &site,
        Some(("viewer", "demo-viewer")),
        &["control", "local"],
    );
    assert!(!ok && text.contains("is a viewer"), "{text}");
    let (ok, text) = bmsctl_as(&site, OPERATOR, &["control", "local"]);
    assert!(
        ok && text.contains("remote (Modbus) writes are refused"),
        "{text}"
    );
    let (_, text) = bmsctl(&site, &["control"]);
    assert_eq!(text.trim(), "local");
    let on_disk = std::fs::read_to_string(dir.path().join("state/control-mode")).unwrap();
    assert_eq!(on_disk, "local");
    let (_, audit) = bmsctl(&site, &["audit", "--json", "--since", "6"]);
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let acts: Vec<_> = audit
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["target"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0].0, "viewer");
    assert_eq!(acts[1], ("operator", "control", "local", "ok"));

    // The record lists raise, latch and reset, over the socket ...
    let (ok, events) = bmsctl(&site, &["events"]);
    assert!(ok, "{events}");
    for needle in ["raised", "latched", "reset", "CellOverVoltage", "m0 c10"] {
        assert!(events.contains(needle), "events lack `{needle}`:\n{events}");
    }

    // ... and on disk, complete, after kill -9.
    let mut daemon = daemon;
    daemon.0.kill().unwrap(); // SIGKILL: no destructor, no flush
    daemon.0.wait().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .args(["events", "--config"])
        .arg(&site)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listed}");
    assert!(!listed.contains("torn"), "{listed}");
    let disk = bmshost::protection::events::EventLog::read(&dir.path().join("state/events.jsonl"))
        .unwrap();
    let kinds: Vec<_> = disk
        .records
        .iter()
        .map(|r| format!("{:?}", r.kind))
        .collect();
    for k in ["Raised", "Latched", "Reset", "Contactor"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} record on disk: {kinds:?}"
        );
    }
    assert!(
        disk.records.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "sequence gaps"
    );
    for needle in ["latched", "reset"] {
        assert!(
            listed.contains(needle),
            "`bmsd events` lacks {needle}:\n{listed}"
        );
    }
}

/// SOC in a soc-counting state file: the host's `BMSPST02` frame (magic,
/// HMAC, header) around the plugin's `BMSS` blob of JSON.
fn saved_soc(path: &Path) -> Option<f64> {
    let bytes = std::fs::read(path).ok()?;
    let body = &bytes[40..];
    let len = u32::from_le_bytes(body[..4].try_into().ok()?) as usize;
    let blob = &body[4 + len..];
    let v: serde_json::Value = serde_json::from_slice(&blob[6..]).ok()?;
    v["pack_soc_pct"].as_f64()
}

#[test]
fn operator_swaps_and_rolls_back_plugins_and_a_killed_daemon_keeps_its_soc() {
    let _one = one_daemon();
    let dir = tempfile::tempdir().unwrap();
    let plugin = |n: &str| root().join(format!("target/plugins/{n}.wasm"));
    let site = site_file_with(dir.path(), false, |t| {
        let p = t["plugins"].as_table_mut().unwrap();
        let mut pol = toml::Table::new();
        pol.insert("watch".into(), false.into());
        pol.insert("state_save_interval_s".into(), 10.into());
        p.insert("policy".into(), toml::Value::Table(pol));
        // Charge at 1C right after the arming window: SOC moves 1 pp in 36 s.
        let step = |d: f64, a: f64| {
            let mut s = toml::Table::new();
            s.insert("duration_s".into(), d.into());
            s.insert("current_a".into(), a.into());
            toml::Value::Table(s)
        };
        t["sim"].as_table_mut().unwrap().insert(
            "profile".into(),
            toml::Value::Array(vec![step(10.0, 0.0), step(3600.0, 280.0)]),
        );
        // At 10x speed the demo's 50 ms watchdog relay and 200-300 ms
        // message deadlines are 5 ms and 20-30 ms of wall time: start-up
        // compiles and a loaded 2-core machine take that from a thread.
        // This test is about operating plugins; watchdog.rs and
        // protection.rs test those timeouts at real time.
        let p = t["protection"].as_table_mut().unwrap();
        p.insert("watchdog_periods".into(), 50.into());
        p.insert("supervision_periods".into(), 50.into());
        let can = t["can"].as_table_mut().unwrap();
        can.insert("module_timeout_ms".into(), 3000.into());
        can.insert("current_timeout_ms".into(), 2000.into());
        can.insert("stale_after_periods".into(), 20.into());
    });
    let edit = |f: &dyn Fn(&mut toml::Table)| {
        let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&site).unwrap()).unwrap();
        f(&mut t);
        std::fs::write(&site, toml::to_string(&t).unwrap()).unwrap();
    };
    let daemon = Daemon::start(&site, "10", "1h");

    let (ok, list) = bmsctl(&site, &["plugins"]);
    assert!(ok, "{list}");
    for needle in [
        "soc-counting",
        "soh-capacity",
        "balance-passive",
        "ems-hints",
        "active",
    ] {
        assert!(
            list.contains(needle),
            "`bmsctl plugins` lacks {needle}:\n{list}"
        );
    }

    // A new SOC version, through the site file and `bmsctl reload`.
    edit(&|t| {
        t["plugins"]["soc"].as_table_mut().unwrap().insert(
            "path".into(),
            plugin("soc-counting-next")
                .to_string_lossy()
                .into_owned()
                .into(),
        );
    });
    let (ok, out) = bmsctl_as(&site, OPERATOR, &["reload", "soc"]);
    assert!(
        ok && out.contains("soc-counting 0.1.0 -> soc-counting-next 0.2.0"),
        "{out}"
    );
    assert!(
        out.contains("state handed over") && out.contains("canary: passed"),
        "{out}"
    );
    let (_, list) = bmsctl(&site, &["plugins"]);
    assert!(
        list.contains("soc-counting-next") && list.contains("swap soc-counting 0.1.0"),
        "{list}"
    );

    // A bad EMS config: refused with the field named; EMS keeps running.
    edit(&|t| {
        t["plugins"]["ems"]["config"]
            .as_table_mut()
            .unwrap()
            .insert("soc_min_pct".into(), 150.0.into());
    });
    let (ok, out) = bmsctl_as(&site, OPERATOR, &["reload", "ems"]);
    assert!(!ok && out.contains("soc_min_pct"), "{out}");
    let (_, json) = bmsctl(&site, &["plugins", "--json"]);
    let slots: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ems = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "ems")
        .unwrap();
    assert_eq!(ems["state"], "active", "{ems}");
    assert!(ems["last_swap"].is_null(), "{ems}");
    // The operator fixes the file again (the restart below needs it).
    edit(&|t| {
        t["plugins"]["ems"]["config"]
            .as_table_mut()
            .unwrap()
            .insert("soc_min_pct".into(), 10.0.into());
    });

    // Roll SOC back, with its state.
    let (ok, out) = bmsctl_as(&site, OPERATOR, &["rollback", "soc"]);
    assert!(
        ok && out.contains("soc-counting-next 0.2.0 -> soc-counting 0.1.0"),
        "{out}"
    );
    let (ok, out) = bmsctl_as(&site, OPERATOR, &["rollback", "soh"]);
    assert!(!ok && out.contains("no previous version"), "{out}");

    let (ok, events) = bmsctl(&site, &["events"]);
    assert!(ok, "{events}");
    for needle in [
        "plugin events:",
        "swapped",
        "swap_refused",
        "rolled_back",
        "soc_min_pct",
    ] {
        assert!(events.contains(needle), "events lack `{needle}`:\n{events}");
    }

    // Charge for a while (state saved every 30 s of rack time), then kill -9.
    let state = dir.path().join("state/plugins/soc.state");
    let initial = 30.0;
    // Generous: a loaded CI machine once needed more than 60 s here.
    let began = Instant::now();
    while !saved_soc(&state).is_some_and(|s| s > initial + 3.0) {
        if began.elapsed() > Duration::from_secs(240) {
            let (_, plugins) = bmsctl(&site, &["plugins"]);
            panic!(
                "timed out waiting for a saved SOC well above the start: saved {:?}\n{plugins}\n{}",
                saved_soc(&state),
                status(&site)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut daemon = daemon;
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    let saved = saved_soc(&state).unwrap();

    // Start again: the SOC plugin resumes from its saved state (the
    // simulated rack restarts at rest, so SOC holds still).
    let summary = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .args(["run", "--speed", "max", "--duration", "3s", "--config"])
        .arg(&site)
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let soc = s["final_pack_soc_pct"].as_f64().unwrap();
    assert!(
        (soc - saved).abs() < 0.1,
        "restarted at {soc} %, saved {saved} %"
    );
    let restored = s["plugin_events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "state_restored" && e["role"] == "soc");
    assert!(restored, "{}", s["plugin_events"]);
}

/// A fault-matrix row (see `bms_e2e::faults`; this binary cannot depend
/// on that crate): appended to `$BMS_FAULTS_OUT` when set.
fn fault_row(scenario: &str, expected: &str, observed: &str, records_lost: u64) {
    assert_eq!(records_lost, 0, "{scenario}: records lost");
    let Some(out) = std::env::var_os("BMS_FAULTS_OUT") else {
        return;
    };
    let row = serde_json::json!({
        "scenario": scenario, "expected": expected, "observed": observed,
        "reaction_ms": null, "bound_ms": null, "records_lost": records_lost,
    });
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    f.write_all(format!("{row}\n").as_bytes()).unwrap();
}

/// A journal file's whole lines as JSON, and the numbers of whole lines
/// that do not parse (a final line without its newline is a torn tail,
/// which the next open cuts: not damage).
fn journal_lines(path: &Path) -> (Vec<serde_json::Value>, Vec<usize>) {
    let text = std::fs::read(path).unwrap_or_default();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let whole = text.len() - text.iter().rev().take_while(|&&b| b != b'\n').count();
    for (i, line) in text[..whole].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(v) => ok.push(v),
            Err(_) => bad.push(i + 1),
        }
    }
    (ok, bad)
}

/// `kill -9` at random moments while the daemon writes everything it
/// writes: the protection and plugin journals, the audit record (a client
/// keeps sending `open`, each answered only once recorded), plugin state
/// every simulated second, the native-code cache, the host key, the
/// control mode. After every kill the next start reads all of it: no
/// journal has a damaged line (a torn tail is cut), no state file or
/// cache entry is refused, and every answered request is on disk.
#[test]
fn kill_9_during_every_kind_of_write_loses_and_corrupts_nothing() {
    use bmshost::api::{call, Request, Who};
    let _one = one_daemon();
    let dir = tempfile::tempdir().unwrap();
    let site = site_file_with(dir.path(), true, |t| {
        let p = t["plugins"].as_table_mut().unwrap();
        let mut pol = toml::Table::new();
        pol.insert("watch".into(), false.into());
        pol.insert("state_save_interval_s".into(), 1.into());
        p.insert("policy".into(), toml::Value::Table(pol));
        let p = t["protection"].as_table_mut().unwrap();
        p.insert("watchdog_periods".into(), 50.into());
        p.insert("supervision_periods".into(), 50.into());
    });
    let state = dir.path().join("state");
    let socket = state.join("bmsd.sock");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut answered = 0u64;
    let rounds = 12;
    for round in 0..rounds {
        let _ = std::fs::remove_file(&socket);
        let mut daemon = Daemon::start(&site, "20", "1h");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, sock2) = (stop.clone(), socket.clone());
        let client = std::thread::spawn(move || {
            let mut ok = 0u64;
            let mut i = 0u64;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let req = if i.is_multiple_of(5) {
                    Request::Control {
                        mode: Some(if i.is_multiple_of(10) {
                            bmshost::io::modbus::mode::Mode::Local
                        } else {
                            bmshost::io::modbus::mode::Mode::Remote
                        }),
                        who: Who {
                            user: "operator".into(),
                            secret: "demo-reset".into(),
                        },
                    }
                } else {
                    Request::Open {
                        reason: format!("kill test {i}"),
                        user: "tester".into(),
                    }
                };
                let is_open = matches!(req, Request::Open { .. });
                if let Ok(r) = call(&sock2, &req) {
                    if r.ok && is_open {
                        ok += 1;
                    }
                }
            }
            ok
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(100 + rng % 1400));
        daemon.0.kill().unwrap(); // SIGKILL: no destructor, no flush
        daemon.0.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        answered += client.join().unwrap();

        for journal in ["events.jsonl", "audit.jsonl", "plugin-events.jsonl"] {
            let path = state.join(journal);
            if !path.exists() {
                continue;
            }
            let (_, bad) = journal_lines(&path);
            assert!(
                bad.is_empty(),
                "round {round}: {journal} has damaged lines {bad:?}"
            );
        }
        let (audit, _) = journal_lines(&state.join("audit.jsonl"));
        let opens = audit.iter().filter(|r| r["action"] == "open").count() as u64;
        assert!(
            opens >= answered,
            "round {round}: {answered} opens answered, {opens} on disk"
        );
    }
    // The last start read everything the kills left: nothing refused.
    let _ = std::fs::remove_file(&socket);
    let daemon = Daemon::start(&site, "20", "1h");
    std::thread::sleep(Duration::from_millis(500));
    drop(daemon);
    let (events, _) = journal_lines(&state.join("plugin-events.jsonl"));
    let refused: Vec<_> = events
        .iter()
        .filter(|r| {
            r["kind"] == "state_corrupt"
                || r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("checksum mismatch") || m.contains("bad header"))
        })
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert!(
        events.iter().any(|r| r["kind"] == "loaded"),
        "plugin loads recorded"
    );
    fault_row(
        "kill -9 during every kind of write (12 kills)",
        "no damaged record, state or cache entry; every answered request on disk",
        &format!("{answered} answered opens all on disk; no line, state or cache entry refused"),
        0,
    );
}
