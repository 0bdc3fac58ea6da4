//! The `bmsd` binary as an operator runs it. Needs the plugin components
//! (`cargo xtask build-plugins`; `cargo xtask test` builds them first).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn run_prints_status_and_writes_the_summary() {
    assert!(
        root().join("target/plugins/soc-counting.wasm").is_file(),
        "plugins not built: run `cargo xtask build-plugins` first"
    );
    let dir = std::env::temp_dir().join(format!("bmsd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .current_dir(root())
        .args([
            "run",
            "--config",
            "configs/demo-site.toml",
            "--speed",
            "max",
            "--duration",
            "6m",
        ])
        .arg("--summary")
        .arg(&summary)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bmsd failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Status lines: SOC, SOH, V, T, current, limits, bleeding, plugins.
    let status = stdout
        .lines()
        .find(|l| l.starts_with("t=") && l.contains("300s"))
        .expect(&stdout);
    for needle in [
        "SOC ",
        "SOH ",
        " V ",
        " T ",
        " I ",
        "allow +",
        "bleed",
        "soc=soc-counting",
        "ems=ems-hints",
    ] {
        assert!(
            status.contains(needle),
            "status line lacks `{needle}`: {status}"
        );
    }
    assert!(stdout.contains("== summary: demo-site =="), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["cycles"], 3600);
    assert!(json["sim"]["max_abs_soc_error_pct"].as_f64().unwrap() < 3.0);
    assert!(json["final_cell_voltage_spread_mv"].as_f64().unwrap() > 0.0);
    assert_eq!(
        json["protection_events"][0]["action"],
        "close precharge relay"
    );
    assert_eq!(
        json["protection_events"][1]["action"],
        "close main contactor"
    );
    assert_eq!(json["plugins"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_rejects_a_bad_config_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("bmsd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(root().join("configs/demo-site.toml"))
        .unwrap()
        .replace("cells_per_module = 16", "cells_per_module = 0");
    let bad = dir.join("bad-site.toml");
    std::fs::write(&bad, text).unwrap();
    // The site's own includes come along; the error must be the rack's.
    std::fs::copy(
        root().join("configs/ocv-lfp.toml"),
        dir.join("ocv-lfp.toml"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad-site.toml") && stderr.contains("rack.cells_per_module"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_loads_plugins_and_names_a_bad_plugin_config() {
    // Same directory as the demo so relative paths resolve; unique name.
    let bad = root().join(format!("configs/.check-{}.toml", std::process::id()));
    let text = std::fs::read_to_string(root().join("configs/demo-site.toml"))
        .unwrap()
        .replacen(
            "coulombic_efficiency = 0.998",
            "coulombic_efficency = 0.998",
            1,
        );
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_file(&bad).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugins.soc") && stderr.contains("coulombic_efficency"),
        "{stderr}"
    );
    let ok = Command::new(env!("CARGO_BIN_EXE_bmsd"))
        .args(["check", "--config", "configs/demo-site.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A hardware site (no `[sim]`) with the demo users file: refused before
/// anything starts, naming the file and the user; an open users file is
/// refused naming its mode.
#[test]
fn a_hardware_site_refuses_to_start_with_a_published_secret_or_an_open_users_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let configs = root().join("configs");
    for f in ["ocv-lfp.toml", "users-demo.toml", "bmu-demo.dbc"] {
        std::fs::copy(configs.join(f), dir.path().join(f)).unwrap();
    }
    let users = dir.path().join("users-demo.toml");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut t: toml::Table =
        toml::from_str(&std::fs::read_to_string(configs.join("demo-site.toml")).unwrap()).unwrap();
    t.remove("sim");
    let mut o = toml::Table::new();
    o.insert("driver".into(), "modbus-coils".into());
    o.insert("address".into(), "127.0.0.1:1".into());
    o.insert("precharge_coil".into(), 0.into());
    o.insert("main_coil".into(), 1.into());
    o.insert("heartbeat_coil".into(), 2.into());
    t.insert("outputs".into(), o.into());
    t["site"].as_table_mut().unwrap().insert(
        "state_dir".into(),
        dir.path()
            .join("state")
            .to_string_lossy()
            .into_owned()
            .into(),
    );
    let site = dir.path().join("hw-site.toml");
    std::fs::write(&site, toml::to_string(&t).unwrap()).unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_bmsd"))
            .args(["run", "--duration", "1s", "--config"])
            .arg(&site)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run();
    assert!(
        stderr.contains("users-demo.toml")
            && stderr.contains("`operator`")
            && stderr.contains("published example secret"),
        "{stderr}"
    );
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = run();
    assert!(stderr.contains("mode 644"), "{stderr}");
    assert!(
        !dir.path().join("state/events.jsonl").exists(),
        "nothing was assembled"
    );
}
