//! The operator's view of protection, through the real binaries: a running
//! `bmsd`, `bmsctl status / reset / events`, and the durable event record
//! surviving `kill -9`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
            if matches!(key, "include" | "dbc" | "ocv_table" | "path" | "state_dir") =>
        {
            *s = base.join(&*s).to_string_lossy().into_owned();
        }
        _ => {}
    }
}

/// The demo site, with an over-voltage *sensor* fault from 1 s to 5 s, in
/// a temporary directory with its own state dir.
fn site_file(dir: &Path) -> PathBuf {
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
    t["sim"].as_table_mut().unwrap().insert(
        "faults".into(),
        toml::Value::Array(vec![fault(1.0, 500.0), fault(5.0, 0.0)]),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, toml::to_string(&v).unwrap()).unwrap();
    path
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bmsctl(site: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bmsctl"))
        .arg("--config")
        .arg(site)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

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
fn reset_needs_the_credential_and_a_cleared_condition_and_the_record_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_file(dir.path());
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_bmsd"))
            .args(["run", "--speed", "1", "--duration", "60s", "--config"])
            .arg(&site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("state/bmsd.sock");
    wait_for("the control socket", Duration::from_secs(30), || {
        socket.exists()
    });

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

    // Wrong credential: refused, nothing changes.
    let (ok, text) = bmsctl(&site, &["reset", "--credential", "guess"]);
    assert!(!ok && text.contains("not authorised"), "{text}");

    // Right credential while the condition still holds (until 5 s):
    // refused. The latch comes at ~1.5 s; the check runs well before 5 s.
    assert!(
        st["time_ms"].as_u64().unwrap() < 4800,
        "test machine too slow to check the refusal"
    );
    let (ok, text) = bmsctl(&site, &["reset", "--credential", "demo-reset"]);
    assert!(!ok && text.contains("condition not cleared"), "{text}");

    // After the sensor recovers, the authorised reset succeeds.
    // (The reset also needs the arming window of fresh data: 5 s.)
    wait_for("the sensor fault to clear", Duration::from_secs(15), || {
        status(&site)["time_ms"].as_u64().unwrap() > 7000
    });
    let (ok, text) = bmsctl(&site, &["reset", "--credential", "demo-reset"]);
    assert!(ok, "{text}");
    assert!(status(&site)["latched"].as_array().unwrap().is_empty());
    // After the reset, a new arming window, then the contactors close.
    wait_for(
        "the contactors to close after the reset",
        Duration::from_secs(20),
        || status(&site)["contactor_state"] == "closed",
    );

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
