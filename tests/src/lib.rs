//! Helpers for the end-to-end tests in `tests/tests/`: locate the built
//! plugin components and load the demo site with edits.
//!
//! The components come from `cargo xtask build-plugins` (which `cargo
//! xtask test` runs first). A missing component is a test failure with
//! instructions, never a silent skip.

use std::path::{Path, PathBuf};

use bmshost::config::SiteConfig;

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
pub fn assemble(cfg: SiteConfig) -> (bmshost::site::SimSite, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let site =
        bmshost::site::SimSite::assemble_in(cfg, dir.path().to_path_buf()).expect("site assembles");
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
