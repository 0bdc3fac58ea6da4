//! The layering is kept by the build, not by prose. Each library crate
//! of the workspace has a list of crates it may not pull in, directly or
//! through anything it depends on; above all `bms-protection` depends on
//! no wasm runtime, async runtime, plugin runtime or SDK, the host, or an
//! I/O crate. Read from `cargo metadata`'s resolved graph (normal
//! dependencies only; dev-dependencies do not ship).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

const RUNTIMES: &[&str] = &[
    "wasmtime",
    "wasmparser",
    "wit-bindgen",
    "wit-component",
    "tokio",
    "mio",
];
const FIELD_IO: &[&str] = &["tokio-modbus", "socketcan", "notify"];

/// (crate, what it may not depend on besides the runtimes and field I/O).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "bms-protection",
        &[
            "libc",
            "bmshost",
            "bms-plugin-sdk",
            "bms-plugin-runtime",
            "bms-can",
            "bms-sim",
            "bms-journal",
        ],
    ),
    (
        "bms-can",
        &["bmshost", "bms-protection", "bms-sim", "bms-plugin-runtime"],
    ),
    // The simulated rack shares nothing with the host's mapping or
    // protection: a mapping bug cannot hide behind the same bug.
    (
        "bms-sim",
        &[
            "bmshost",
            "bms-protection",
            "bms-plugin-runtime",
            "bms-journal",
        ],
    ),
    (
        "bms-journal",
        &["bmshost", "bms-plugin-runtime", "bms-sim", "bms-can"],
    ),
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

fn metadata() -> serde_json::Value {
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
    serde_json::from_slice(&out.stdout).unwrap()
}

fn violations(meta: &serde_json::Value, krate: &str, extra: &[&str]) -> Vec<String> {
    let deps = normal_closure(meta, krate);
    RUNTIMES
        .iter()
        .chain(FIELD_IO)
        .chain(extra)
        .filter(|f| deps.contains(**f))
        .map(|f| f.to_string())
        .collect()
}

#[test]
fn protection_depends_on_no_runtime_plugin_or_io_crate() {
    let meta = metadata();
    let (_, extra) = LAYERS[0];
    let bad = violations(&meta, "bms-protection", extra);
    let deps = normal_closure(&meta, "bms-protection");
    assert!(
        bad.is_empty(),
        "bms-protection must not depend on {bad:?}; its dependencies: {deps:?}"
    );
    // The check itself sees the graph: serde is a real dependency.
    assert!(deps.contains("serde"), "{deps:?}");
    // And it would catch a violation: the host does pull in these.
    let host = violations(&meta, "bmshost", extra);
    for c in [
        "tokio",
        "wasmtime",
        "socketcan",
        "bms-can",
        "bms-plugin-runtime",
    ] {
        assert!(host.iter().any(|h| h == c), "{c} not seen in {host:?}");
    }
}

#[test]
fn every_library_crate_keeps_its_layer() {
    let meta = metadata();
    let bad: Vec<String> = LAYERS
        .iter()
        .flat_map(|(krate, extra)| {
            violations(&meta, krate, extra)
                .into_iter()
                .map(move |v| format!("{krate} -> {v}"))
        })
        .collect();
    assert!(bad.is_empty(), "layering violated: {bad:?}");
}

#[test]
fn the_plugin_runtime_reaches_no_field_io_and_no_host() {
    let meta = metadata();
    let bad = violations(
        &meta,
        "bms-plugin-runtime",
        &["bmshost", "bms-sim", "bms-can"],
    )
    .into_iter()
    // The runtime is the one crate that must have wasmtime.
    .filter(|c| !c.starts_with("wasm") && !c.starts_with("wit-"))
    .collect::<Vec<_>>();
    assert!(
        bad.is_empty(),
        "bms-plugin-runtime must not depend on {bad:?}"
    );
    assert!(normal_closure(&meta, "bms-plugin-runtime").contains("wasmtime"));
}
