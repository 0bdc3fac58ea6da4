//! A plugin has no way to reach a contactor, a limit or a fault state: the
//! WIT gives it no such handle, and the host's linker provides nothing but
//! the log function, so a component asking for more cannot even be linked.

use bms_e2e::{component, PLUGINS};
use bmshost::plugins::PluginEngine;

#[test]
fn reference_plugins_see_only_the_log_function() {
    let engine = PluginEngine::new().unwrap();
    for name in PLUGINS {
        let bytes = std::fs::read(component(name)).unwrap();
        let imports = engine.describe_imports(&bytes).unwrap();
        for (instance, exports) in &imports {
            match instance.as_str() {
                "bms:plugin/log@0.1.0" => {
                    let funcs: Vec<_> = exports.iter().filter(|e| e.as_str() != "level").collect();
                    assert_eq!(funcs, ["log"], "{name}: log interface offers {exports:?}");
                }
                // Record and enum definitions only: data, no functions.
                "bms:plugin/types@0.1.0" => {}
                other => panic!("{name} imports {other}"),
            }
        }
    }
}

/// A component importing a capability the host does not offer.
fn component_importing(interface: &str) -> Vec<u8> {
    let text = format!(
        r#"(component
            (import "{interface}" (instance (export "close" (func))))
        )"#
    );
    wat::parse_str(text).expect("valid component text")
}

#[test]
fn a_component_asking_for_a_contactor_cannot_be_linked() {
    let engine = PluginEngine::new().unwrap();
    for interface in [
        "bms:plugin/contactor@0.1.0",
        "bms:plugin/protection@0.1.0",
        "wasi:cli/environment@0.2.0",
    ] {
        let err = engine
            .check_linkable(&component_importing(interface))
            .unwrap_err();
        assert!(
            err.to_string().contains(interface),
            "error must name `{interface}`: {err}"
        );
    }
    // The reference plugins link.
    for name in PLUGINS {
        engine
            .check_linkable(&std::fs::read(component(name)).unwrap())
            .unwrap();
    }
}
