//! Plugins written outside this repository, as an integrator's own crate:
//! `cargo xtask new-plugin` creates one per role, each passes its own
//! native test, and `cargo xtask build-plugin` turns one into a component
//! that the host's runtime validates, loads and steps.

use std::path::Path;
use std::process::Command;

use bmshost::config::SandboxConfig;
use bmshost::plugins::{convert, PluginEngine, PluginInstance, Role};

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

fn xtask(args: &[&str]) -> String {
    let mut cmd = cargo();
    cmd.current_dir(bms_e2e::workspace_root())
        .arg("xtask")
        .args(args);
    run(cmd)
}

#[test]
fn new_plugin_and_build_plugin_work_out_of_tree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for role in ["soc", "soh", "balancer", "ems"] {
        let name = format!("site-{role}");
        xtask(&["new-plugin", &name, "--role", role, "--dir", d]);
        let krate = dir.path().join(&name);
        assert!(krate.join("Cargo.toml").is_file() && krate.join("src/lib.rs").is_file());
        // Its own test, natively, as the integrator runs it (one target
        // dir for the four, so the SDK compiles once).
        let mut test = cargo();
        test.current_dir(&krate)
            .env("CARGO_TARGET_DIR", dir.path().join("native"))
            .arg("test");
        let out = run(test);
        assert!(out.contains("test result: ok. 1 passed"), "{role}: {out}");
    }
    // Refusals name the problem.
    let mut again = cargo();
    again.current_dir(bms_e2e::workspace_root()).args([
        "xtask",
        "new-plugin",
        "site-soc",
        "--role",
        "soc",
        "--dir",
        d,
    ]);
    let out = again.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));

    let built = xtask(&["build-plugin", &format!("{d}/site-soc")]);
    let component = built
        .lines()
        .find(|l| l.trim().ends_with(".wasm"))
        .map(|l| Path::new(l.trim()).to_path_buf())
        .unwrap_or_else(|| panic!("build-plugin printed no component path:\n{built}"));
    assert_eq!(
        component,
        dir.path()
            .canonicalize()
            .unwrap()
            .join("site-soc/target/plugin/site-soc.wasm")
    );

    let engine = PluginEngine::new().unwrap();
    let json = r#"{"empty_v": 3.0, "full_v": 3.45}"#;
    let mut p = PluginInstance::load(
        &engine,
        Role::Soc,
        &component,
        json,
        SandboxConfig::default(),
    )
    .unwrap();
    let mut snap = bmshost::snapshot::PackSnapshot::empty(16, 16);
    snap.cell_voltage_v = vec![3.225; 16];
    let out = p.step_soc(&convert::snapshot(&snap)).unwrap();
    assert!((out.pack_soc_pct - 50.0).abs() < 0.01, "{out:?}");
    // Wrong role: validation names it.
    let e = match PluginInstance::load(
        &engine,
        Role::Soh,
        &component,
        json,
        SandboxConfig::default(),
    ) {
        Ok(_) => panic!("a SOC component loaded as SOH"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("soc"), "{e}");
}
