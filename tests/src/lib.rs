//! Helpers for the end-to-end tests in `tests/tests/`: locate the built
//! plugin components and load the demo site with edits.
//!
//! The components come from `cargo xtask build-plugins` (which `cargo
//! xtask test` runs first). A missing component is a test failure with
//! instructions, never a silent skip.

use std::path::{Path, PathBuf};

use bmshost::config::SiteConfig;

pub mod faults;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// Path of a built plugin component; panics with instructions if missing.
pub fn component(name: &str) -> PathBuf {
    let p = workspace_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: build the plugins first with `cargo xtask build-plugins` \
         (or run the whole suite with `cargo xtask test`)",
        p.display()
    );
    p
}

/// The reference plugins, by package name.
pub const PLUGINS: [&str; 4] = [
    "soc-counting",
    "soh-capacity",
    "balance-passive",
    "ems-hints",
];

/// Load `configs/demo-site.toml` after applying `edit` to its TOML tree.
/// Relative paths keep resolving against `configs/`.
pub fn demo_site(edit: impl FnOnce(&mut toml::Table)) -> SiteConfig {
    let path = workspace_root().join("configs/demo-site.toml");
    for p in PLUGINS {
        component(p);
    }
    let text = std::fs::read_to_string(&path).expect("demo-site.toml");
    let mut table: toml::Table = toml::from_str(&text).expect("demo-site.toml parses");
    edit(&mut table);
    SiteConfig::parse(&toml::to_string(&table).expect("serialize"), &path)
        .unwrap_or_else(|e| panic!("edited demo config is invalid: {e}"))
}

/// `table[a][b]...` as a mutable table, creating nothing.
pub fn section<'a>(t: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    path.iter().fold(t, |t, k| {
        t.get_mut(*k)
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("no [{k}] in demo config"))
    })
}

/// Assemble `cfg` with its durable state in a fresh temporary directory,
/// so parallel tests never share an event record.
pub fn assemble(cfg: SiteConfig) -> (bmshost::site::RackSite, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = bmshost::site::RackSite::assemble_in(cfg, dir.path().to_path_buf())
        .expect("site assembles");
    (site, dir)
}

/// Point `role` at another component with a config.
pub fn use_plugin(t: &mut toml::Table, role: &str, component_name: &str, config: toml::Table) {
    let slot = section(t, &["plugins", role]);
    slot.insert(
        "path".into(),
        format!("../target/plugins/{component_name}.wasm").into(),
    );
    slot.insert("config".into(), toml::Value::Table(config));
}

/// A `[[sim.faults]]` entry.
pub fn fault(kind: &str, at_s: f64, fields: &[(&str, toml::Value)]) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("kind".into(), kind.into());
    t.insert("at_s".into(), at_s.into());
    for (k, v) in fields {
        t.insert((*k).into(), v.clone());
    }
    toml::Value::Table(t)
}

/// Replace the demo's sim faults.
pub fn set_faults(t: &mut toml::Table, faults: Vec<toml::Value>) {
    section(t, &["sim"]).insert("faults".into(), toml::Value::Array(faults));
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

/// The demo site as a file of its own in `dir` (state in `dir/state`),
/// after `edit`; for tests that edit the site file while the host runs.
pub fn standalone_site(dir: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    for p in PLUGINS {
        component(p);
    }
    let configs = workspace_root().join("configs");
    let text = std::fs::read_to_string(configs.join("demo-site.toml")).expect("demo-site.toml");
    let mut v: toml::Value = toml::from_str(&text).expect("demo-site.toml parses");
    absolutize(&mut v, &configs, "");
    let t = v.as_table_mut().expect("a table");
    section(t, &["site"]).insert(
        "state_dir".into(),
        dir.join("state").to_string_lossy().into_owned().into(),
    );
    edit(t);
    let path = dir.join("site.toml");
    write_atomic(&path, toml::to_string(&v).expect("serialize").as_bytes());
    path
}

/// Edit a standalone site file in place (atomically).
pub fn edit_site(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(path).expect("site file"))
        .expect("site file parses");
    edit(&mut t);
    write_atomic(path, toml::to_string(&t).expect("serialize").as_bytes());
}

/// Replace `dest` with `bytes` the way an operator should: write a temp
/// file next to it, then rename over.
pub fn write_atomic(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, dest).expect("rename into place");
}

/// The Python with the third-party peers (`tests/py/requirements.txt`):
/// `$BMS_PYTHON` (set by `cargo xtask test`) or `target/pyenv`. Panics with
/// instructions if it cannot import `modules`.
pub fn python(modules: &[&str]) -> PathBuf {
    let py = std::env::var_os("BMS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/pyenv/bin/python"));
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import {}: run the suite with `cargo xtask test` (it creates \
         target/pyenv from tests/py/requirements.txt) or set BMS_PYTHON",
        py.display(),
        modules.join(", ")
    );
    py
}

/// Held by tests that run a paced rack: two paced racks on a 2-core machine
/// starve each other's protection threads (which then, correctly, open the
/// contactors).
pub fn one_paced_rack() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A peer process (a Python simulator) killed when dropped.
pub struct Peer(pub std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `count` holding registers from `address` of the Modbus device on
/// `port`, read with pymodbus (`None` if it does not answer).
pub fn read_registers(port: u16, address: u16, count: u16) -> Option<Vec<u16>> {
    let out = std::process::Command::new(python(&["pymodbus"]))
        .arg(workspace_root().join("tests/py/modbus_probe.py"))
        .args(["127.0.0.1", &port.to_string(), "1", "read"])
        .args([address.to_string(), count.to_string()])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["registers"].as_array().map(|r| {
        r.iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u16)
            .collect()
    })
}

/// The PCS simulator (`tests/py/pcs_sim.py`) on a free port, once it answers.
pub fn start_pcs_sim() -> (u16, Peer) {
    let port = free_port();
    let peer = Peer(
        std::process::Command::new(python(&["pymodbus"]))
            .arg(workspace_root().join("tests/py/pcs_sim.py"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the PCS simulator"),
    );
    let t = std::time::Instant::now();
    while read_registers(port, 100, 1).is_none() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "PCS simulator did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (port, peer)
}

/// A `[pcs]` section writing to `127.0.0.1:port` every `period_ms`: charge
/// limit at register 100, discharge at 101 (0.1 A), heartbeat at 102.
pub fn pcs_section(t: &mut toml::Table, port: u16, period_ms: i64) {
    let reg = |address: i64, scale: f64| {
        let mut r = toml::Table::new();
        r.insert("address".into(), address.into());
        r.insert("scale".into(), scale.into());
        toml::Value::Table(r)
    };
    let mut p = toml::Table::new();
    p.insert("address".into(), format!("127.0.0.1:{port}").into());
    p.insert("period_ms".into(), period_ms.into());
    p.insert("timeout_ms".into(), 300.into());
    p.insert("reconnect_backoff_ms".into(), 100.into());
    p.insert("max_charge_current".into(), reg(100, 0.1));
    p.insert("max_discharge_current".into(), reg(101, 0.1));
    p.insert("heartbeat".into(), reg(102, 1.0));
    t.insert("pcs".into(), toml::Value::Table(p));
}
