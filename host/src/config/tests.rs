use std::path::{Path, PathBuf};

use super::*;

fn demo_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml")
}

fn demo_text() -> String {
    std::fs::read_to_string(demo_path()).unwrap()
}

/// Parse the demo config with one textual replacement applied.
fn with(from: &str, to: &str) -> Result<SiteConfig, ConfigError> {
    let text = demo_text();
    assert!(text.contains(from), "demo config lacks `{from}`");
    SiteConfig::parse(&text.replacen(from, to, 1), &demo_path())
}

#[test]
fn demo_config_is_valid_and_includes_resolve() {
    let cfg = SiteConfig::load(&demo_path()).unwrap();
    assert_eq!(cfg.rack.cell_count(), 128);
    // The OCV table was inlined from configs/ocv-lfp.toml.
    let ocv = &cfg.plugins.soc.config["ocv"];
    assert_eq!(ocv["chemistry"].as_str(), Some("LFP"));
    assert!(ocv["soc_pct"].as_array().unwrap().len() > 10);
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let e = with("cycle_ms = 100", "cycle_ms = 100\ncycle_msec = 3").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("cycle_msec"), "{msg}");
    assert!(msg.contains("demo-site.toml"), "{msg}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let e = with(
        "capacity_ah = 280.0\nchemistry",
        "capacity_ah = \"lots\"\nchemistry",
    )
    .unwrap_err();
    assert!(e.to_string().contains("rack.capacity_ah"), "{e}");
}

#[test]
fn hysteresis_must_point_the_right_way() {
    let e = with("release = 3.55", "release = 3.70").unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.cell_over_voltage_v.release"),
        "{e}"
    );
    let e = with("release = 2.80", "release = 2.40").unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.cell_under_voltage_v.release"),
        "{e}"
    );
}

#[test]
fn zero_delay_is_rejected() {
    let e = with(
        "release = 50.0, delay_ms = 1000",
        "release = 50.0, delay_ms = 0",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.cell_over_temp_c.delay_ms"),
        "{e}"
    );
}

#[test]
fn deadline_must_fit_in_the_cycle() {
    let e = with("deadline_ms = 20", "deadline_ms = 100").unwrap_err();
    assert!(e.to_string().contains("plugins.sandbox.deadline_ms"), "{e}");
}

#[test]
fn missing_include_names_the_file() {
    let e = with(
        "ocv = { include = \"ocv-lfp.toml\" }",
        "ocv = { include = \"ocv-nope.toml\" }",
    )
    .unwrap_err();
    assert!(e.to_string().contains("ocv-nope.toml"), "{e}");
}

#[test]
fn sim_profile_errors_name_the_step() {
    let e = with(
        "{ duration_s = 600, current_a = 0.0, label = \"rest\" }",
        "{ duration_s = -1, current_a = 0.0 }",
    )
    .unwrap_err();
    assert!(e.to_string().contains("sim.profile[2]"), "{e}");
}

#[test]
fn sensors_map_evenly_onto_cells() {
    let cfg = SiteConfig::load(&demo_path()).unwrap();
    let sensors: Vec<u32> = (0..16).map(|c| cfg.rack.sensor_for_cell(c)).collect();
    assert_eq!(sensors, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
}

#[test]
fn fault_typos_are_rejected() {
    let e = with(
        "profile = [",
        "faults = [{ at_s = 1, kind = \"cell_soc\", celll = 3, soc_pct = 50 }]\nprofile = [",
    )
    .unwrap_err();
    assert!(e.to_string().contains("celll"), "{e}");
    let e = with(
        "profile = [",
        "faults = [{ at_s = 1, kind = \"cell_melt\" }]\nprofile = [",
    )
    .unwrap_err();
    assert!(e.to_string().contains("cell_melt"), "{e}");
}
