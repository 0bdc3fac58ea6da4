//! The built reference components: what they import, that each loads only
//! as its own role, and that init errors reach the operator verbatim.

use bms_e2e::{component, PLUGINS};
use bmshost::config::SandboxConfig;
use bmshost::plugins::{PluginEngine, PluginError, PluginInstance, Role};

/// Non-type imports of a component.
fn imports(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ComponentImportSection(reader) = payload.unwrap() {
            for import in reader {
                let import = import.unwrap();
                if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                    names.push(import.name.name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn components_import_only_the_bms_plugin_interfaces() {
    for name in PLUGINS {
        let imports = imports(&component(name));
        assert!(
            imports.iter().any(|i| i == "bms:plugin/log@0.1.0"),
            "{name}: expected the log import, got {imports:?}"
        );
        for i in &imports {
            assert!(
                i.starts_with("bms:plugin/"),
                "{name} imports `{i}`: no WASI or env allowed"
            );
        }
    }
}

fn sandbox() -> SandboxConfig {
    SandboxConfig::default()
}

#[test]
fn each_component_loads_as_its_own_role_only() {
    let engine = PluginEngine::new().unwrap();
    let roles = [Role::Soc, Role::Soh, Role::Balancer, Role::Ems];
    for (name, own) in PLUGINS.iter().zip(roles) {
        for role in roles {
            // `{}` is not a valid config for any of them, so an init error
            // proves instantiation succeeded.
            let err = PluginInstance::load(&engine, role, &component(name), "{}", sandbox())
                .err()
                .expect("empty config must be rejected");
            if role == own {
                assert!(
                    matches!(err, PluginError::Init { .. }),
                    "{name} as {role}: {err}"
                );
            } else {
                let msg = err.to_string();
                assert!(
                    matches!(err, PluginError::Rejected { .. }),
                    "{name} as {role}: {msg}"
                );
                assert!(msg.contains(role.world()), "{msg}");
            }
        }
    }
}

#[test]
fn init_errors_name_the_config_field() {
    let engine = PluginEngine::new().unwrap();
    let err = PluginInstance::load(
        &engine,
        Role::Soc,
        &component("soc-counting"),
        r#"{"capacity_ah": -3, "ocv": {"soc_pct": [0, 100], "ocv_v": [3.0, 3.5]}}"#,
        sandbox(),
    )
    .err()
    .expect("negative capacity must be rejected");
    let msg = err.to_string();
    assert!(msg.contains("capacity_ah"), "{msg}");
    assert!(msg.contains("soc-counting"), "{msg}");

    let err = PluginInstance::load(
        &engine,
        Role::Balancer,
        &component("balance-passive"),
        r#"{"mode": "voltage", "start_threshold_mv": 10, "stop_threshold_mv": 5, "max_bleedrs": 3}"#,
        sandbox(),
    )
    .err()
    .expect("a typo must be rejected");
    assert!(err.to_string().contains("max_bleedrs"), "{err}");
}

#[test]
fn plugin_reports_identity_and_hash() {
    let engine = PluginEngine::new().unwrap();
    let cfg = bms_e2e::demo_site(|_| {});
    let slot = &cfg.plugins.ems;
    let json = serde_json::to_string(&slot.config).unwrap();
    let p = PluginInstance::load(
        &engine,
        Role::Ems,
        &component("ems-hints"),
        &json,
        sandbox(),
    )
    .unwrap();
    assert_eq!(p.info().name, "ems-hints");
    assert!(!p.info().version.is_empty());
    assert_eq!(p.info().sha256.len(), 64);
}
