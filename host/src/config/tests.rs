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
fn tiers_must_nest_mol_inside_rsl_inside_msl() {
    let e = with(
        "rsl = { limit = 3.60, delay_ms = 500",
        "rsl = { limit = 3.70, delay_ms = 500",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("protection.cell_over_voltage_v.msl.limit"),
        "{msg}"
    );
    assert!(msg.contains("MOL inside RSL inside MSL"), "{msg}");
    let e = with(
        "mol = { limit = 2.90, delay_ms = 1000",
        "mol = { limit = 2.70, delay_ms = 1000",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.cell_under_voltage_v.rsl.limit"),
        "{e}"
    );
}

#[test]
fn zero_delay_and_negative_hysteresis_are_rejected() {
    let e = with(
        "msl = { limit = 55.0, delay_ms = 1000",
        "msl = { limit = 55.0, delay_ms = 0",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.cell_over_temp_charge_c.msl.delay_ms"),
        "{e}"
    );
    let e = with(
        "rsl = { limit = 300.0, delay_ms = 500, hysteresis = 10.0 }",
        "rsl = { limit = 300.0, delay_ms = 500, hysteresis = -1.0 }",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.charge_over_current_a.rsl.hysteresis"),
        "{e}"
    );
    let e = with("reclose_delay_ms = 5000", "reclose_delay_ms = 0").unwrap_err();
    assert!(
        e.to_string()
            .contains("`protection.contactors.reclose_delay_ms`: must be > 0"),
        "{e}"
    );
}

#[test]
fn derating_curves_must_be_monotonic_where_required() {
    let e = with(
        "charge_vs_cell_voltage_v = [[3.45, 280.0], [3.55, 140.0], [3.60, 0.0]]",
        "charge_vs_cell_voltage_v = [[3.45, 280.0], [3.55, 140.0], [3.60, 200.0]]",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("protection.derating.charge_vs_cell_voltage_v[2]"),
        "{e}"
    );
}

#[test]
fn the_old_unsalted_credential_is_refused_by_name() {
    let e = with(
        "users_file = \"users-demo.toml\"",
        "reset_credential_sha256 = \"75197bba5447b7df1b3b5247c83efd984494a7973bb3bb5cecd992e0ab69e606\"",
    )
    .unwrap_err();
    assert!(e.to_string().contains("reset_credential_sha256"), "{e}");
}

#[test]
fn deadline_must_fit_in_the_cycle() {
    let e = with("deadline_ms = 20", "deadline_ms = 100").unwrap_err();
    assert!(e.to_string().contains("plugins.sandbox.deadline_ms"), "{e}");
}

#[test]
fn sandbox_limits_can_be_set_per_role() {
    let cfg = with(
        "[plugins.soc]\n",
        "[plugins.soc.sandbox]\ndeadline_ms = 30\nmemory_mib = 64\n\n[plugins.soc]\n",
    )
    .unwrap();
    let soc = cfg.plugins.sandbox_for(crate::plugins::Role::Soc);
    assert_eq!((soc.deadline_ms, soc.memory_mib), (30, 64));
    let soh = cfg.plugins.sandbox_for(crate::plugins::Role::Soh);
    assert_eq!((soh.deadline_ms, soh.memory_mib), (20, 32));

    let e = with(
        "[plugins.soc]\n",
        "[plugins.soc.sandbox]\ndeadline_ms = 0\n\n[plugins.soc]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("plugins.soc.sandbox.deadline_ms"),
        "{e}"
    );
}

#[test]
fn plugin_policy_is_validated() {
    let e = with(
        "[plugins.sandbox]",
        "[plugins.policy]\nrestart_backoff_ms = 5000\nrestart_backoff_max_ms = 100\n\n[plugins.sandbox]",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("plugins.policy.restart_backoff_max_ms"),
        "{e}"
    );
    let e = with(
        "[plugins.sandbox]",
        "[plugins.policy]\non_state_rejected = \"shrug\"\n\n[plugins.sandbox]",
    )
    .unwrap_err();
    assert!(e.to_string().contains("on_state_rejected"), "{e}");
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

fn configs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name)
}

#[test]
fn shipped_site_examples_extend_the_demo_and_are_valid() {
    let one = SiteConfig::load(&configs("site-1rack.toml")).unwrap();
    assert_eq!(one.site.name, "site-1rack");
    assert!(one.bank.is_none());
    assert_eq!(
        one.modbus.as_ref().unwrap().on_heartbeat_loss,
        HeartbeatLoss::ZeroCurrent
    );
    // Inherited from demo-site.toml, includes resolved.
    assert_eq!(one.rack.cell_count(), 128);
    assert_eq!(
        one.plugins.soc.config["ocv"]["chemistry"].as_str(),
        Some("LFP")
    );
    let four = SiteConfig::load(&configs("site-4rack.toml")).unwrap();
    let bank = four.bank.as_ref().unwrap();
    assert_eq!(bank.racks.len(), 4);
    assert_eq!(
        crate::bank::rack_capacities(&four),
        [280.0, 280.0, 280.0, 260.0]
    );
    let r2 = bank.rack_config(&four, 1);
    assert_eq!(r2.can.id_offset, 0x40);
    assert!(r2.modbus.is_none() && r2.bank.is_none());
    assert_ne!(
        r2.sim.as_ref().unwrap().seed,
        four.sim.as_ref().unwrap().seed
    );
}

#[test]
fn the_416_cell_rack_and_the_10_rack_bank_load_and_map_onto_their_dbc() {
    let one = SiteConfig::load(&configs("site-416.toml")).unwrap();
    assert_eq!(one.rack.cell_count(), 416);
    let ten = SiteConfig::load(&configs("site-10rack.toml")).unwrap();
    let bank = ten.bank.as_ref().unwrap();
    assert_eq!(bank.racks.len(), 10);
    assert_eq!(crate::bank::rack_capacities(&ten), [280.0; 10]);
    let cells: u32 = (0..10)
        .map(|i| bank.rack_config(&ten, i).rack.cell_count() as u32)
        .sum();
    assert_eq!(cells, 4160);
    // Every signal the templates name exists in the generated DBC.
    for cfg in [one, bank.rack_config(&ten, 9)] {
        let dbc = crate::site::load_dbc(&cfg).unwrap();
        let map = crate::io::can::mapping::RackMap::resolve(&cfg, std::sync::Arc::new(dbc))
            .unwrap_or_else(|e| panic!("{}: {e}", cfg.site.name));
        assert_eq!(map.cells, 416);
    }
}

/// A bank config with `body` as its `[bank]` section.
fn bank(body: &str) -> Result<SiteConfig, ConfigError> {
    let text = format!("extends = \"demo-site.toml\"\n[bank]\n{body}");
    SiteConfig::parse(&text, &configs("bank-test.toml"))
}

#[test]
fn bad_bank_sections_are_named() {
    let cases = [
        ("racks = []", "bank.racks", "at least one rack"),
        (
            "racks = [{ name = \"R1\" }, { name = \"R1\" }]",
            "bank.racks[1].name",
            "also racks[0]",
        ),
        (
            "racks = [{ name = \"a/b\" }]",
            "bank.racks[0].name",
            "directory",
        ),
        (
            "racks = [{ name = \"R1\", bus = \"can0\" }, { name = \"R2\", bus = \"can0\" }]",
            "bank.racks[1].id_offset",
            "distinct id ranges",
        ),
        (
            "racks = [{ name = \"R1\", capacity_ah = -5.0 }]",
            "bank.racks[0].capacity_ah",
            "> 0",
        ),
        (
            "imbalance_derating = [[2.0, 1.0], [10.0, 1.5]]\nracks = [{ name = \"R1\" }]",
            "bank.imbalance_derating",
            "",
        ),
        (
            "isolate = true\nracks = [{ name = \"R1\" }]",
            "bank",
            "isolate",
        ),
    ];
    for (body, field, text) in cases {
        let e = bank(body).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(text), "{body}: {e}");
        assert!(e.contains("bank-test.toml"), "{e}");
    }
}

#[test]
fn extends_errors_name_the_files() {
    let e = SiteConfig::parse("extends = \"nope.toml\"", &configs("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.toml"), "{e}");
    let e = SiteConfig::parse("extends = 3", &configs("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("extends") && e.contains("x.toml"), "{e}");
}

/// The demo as a hardware site: `[sim]` replaced by `outputs`.
fn hardware(outputs: &str) -> Result<SiteConfig, ConfigError> {
    let text = demo_text();
    let at = text.find("\n[sim]").expect("demo has [sim]");
    let end = text[at + 1..]
        .find("\n[")
        .map_or(text.len(), |i| at + 1 + i);
    // [sim] may have sub-tables ([sim.x]) or arrays of tables; cut them too.
    let mut rest = &text[end..];
    while let Some(stripped) = rest.strip_prefix("\n[sim") {
        rest = stripped.find("\n[").map_or("", |i| &stripped[i..]);
    }
    let text = format!("{}{}\n{outputs}", &text[..at], rest);
    SiteConfig::parse(&text, &demo_path())
}

#[test]
fn a_hardware_site_needs_outputs_and_a_sim_site_refuses_them() {
    let coils = "[outputs]\ndriver = \"modbus-coils\"\naddress = \"10.0.0.5:502\"\n\
                 precharge_coil = 0\nmain_coil = 1\nheartbeat_coil = 2\n";
    let cfg = hardware(coils).unwrap();
    assert!(cfg.sim.is_none());
    let Some(OutputsConfig::ModbusCoils(c)) = &cfg.outputs else {
        panic!("{:?}", cfg.outputs)
    };
    assert_eq!((c.main_coil, c.timeout_ms, c.unit_id), (1, 100, 1));

    let e = hardware("").unwrap_err().to_string();
    assert!(
        e.contains("`outputs`") && e.contains("hardware site"),
        "{e}"
    );
    let e = hardware(&coils.replace("heartbeat_coil = 2", "heartbeat_coil = 0"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outputs.heartbeat_coil") && e.contains("precharge_coil"),
        "{e}"
    );
    let e = hardware(&coils.replace("modbus-coils", "gpio"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("gpio") && e.contains("modbus-coils"), "{e}");
    let e = with("[sim]", &format!("{coils}\n[sim]"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`outputs`") && e.contains("[sim]"), "{e}");
}

/// Fuzz target (bolero): the site loader takes any text (alone, or
/// spliced into the demo site so inputs reach the deeper checks) and
/// answers with a config or an error naming the file, never a panic.
#[test]
fn fuzz_site_config() {
    let demo = demo_text();
    let runs = std::sync::atomic::AtomicU64::new(0);
    bolero::check!().for_each(|bytes: &[u8]| {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let input = String::from_utf8_lossy(bytes);
        let at = bytes
            .first()
            .map_or(0, |b| usize::from(*b) * demo.len() / 256);
        let at = (0..=at)
            .rev()
            .find(|&i| demo.is_char_boundary(i))
            .unwrap_or(0);
        let end = (at + input.len().min(64)).min(demo.len());
        let end = (end..=demo.len())
            .find(|&i| demo.is_char_boundary(i))
            .unwrap_or(demo.len());
        let spliced = format!("{}{input}{}", &demo[..at], &demo[end..]);
        for text in [input.as_ref(), spliced.as_str()] {
            if let Err(e) = SiteConfig::parse(text, &configs("fuzz.toml")) {
                let msg = e.to_string();
                assert!(!msg.is_empty());
            }
        }
    });
    println!(
        "fuzz target site_config: {} executions",
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}
