//! The layering is kept by the build, not by prose: `bms-protection`
//! (and everything it pulls in) must not depend on a wasm runtime, an
//! async runtime, the plugin runtime or SDK, the host, or an I/O crate.
//! Read from `cargo metadata`'s resolved graph (normal dependencies only;
//! dev-dependencies do not ship).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "wasmtime",
    "wasmparser",
    "wit-bindgen",
    "wit-component",
    "tokio",
    "mio",
    "tokio-modbus",
    "socketcan",
    "notify",
    "libc",
    "bmshost",
    "bms-plugin-sdk",
    "bms-can",
];

fn normal_closure(meta: &serde_json::Value, root: &str) -> BTreeSet<String> {
    let packages: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = packages
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{root} not in the workspace"));
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(packages[pkg].to_string()) {
                stack.push(pkg);
            }
        }
    }
    seen
}

#[test]
fn protection_depends_on_no_runtime_plugin_or_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deps = normal_closure(&meta, "bms-protection");
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "bms-protection must not depend on {bad:?}; its dependencies: {deps:?}"
    );
    // The check itself sees the graph: serde is a real dependency.
    assert!(deps.contains("serde"), "{deps:?}");
    // And it would catch a violation: the host does pull in these.
    let host = normal_closure(&meta, "bmshost");
    assert!(host.contains("tokio") && host.contains("wasmtime") && host.contains("bms-protection"));
}
