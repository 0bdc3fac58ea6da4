//! Plugins outside this repository, as an integrator writes them:
//!
//! - `cargo xtask new-plugin NAME --role soc|soh|balancer|ems --dir PATH`
//!   creates `PATH/NAME`, a standalone crate (its own `[workspace]`) that
//!   depends on this repository's SDK, with a working plugin of that role
//!   and a native test through the SDK's harness;
//! - `cargo xtask build-plugin PATH` builds such a crate for
//!   `wasm32-unknown-unknown` with the toolchain the plugins here use, turns
//!   it into a component, refuses imports outside `bms:plugin/*`, and
//!   writes `PATH/target/plugin/NAME.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{check_imports, componentize, plugin_crate, toolchain, PluginCrate};

/// One role's placeholder plugin: its `step`, export macro and test.
struct Template {
    role: &'static str,
    body: &'static str,
    export: &'static str,
    test: &'static str,
}

const TEMPLATES: &[Template] = &[
    Template {
        role: "soc",
        body: r#"impl SocEstimator for {T} {
    fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
        // A placeholder: SOC linear in cell voltage. Replace with yours.
        let span_v = self.config.full_v - self.config.empty_v;
        let cell_soc_pct: Vec<f32> = s
            .cell_voltage_v
            .iter()
            .map(|v| ((v - self.config.empty_v) / span_v * 100.0).clamp(0.0, 100.0))
            .collect();
        let pack_soc_pct = cell_soc_pct.iter().copied().fold(100.0, f32::min);
        Ok(SocOutput { cell_soc_pct, pack_soc_pct })
    }
}"#,
        export: "export_soc_estimator",
        test: r#"let out = h.step(&PackSnapshot::uniform(0, 4, 4, 3.25, 25.0, 0.0)).unwrap();
        assert_eq!(out.cell_soc_pct.len(), 4);
        assert!((0.0..=100.0).contains(&out.pack_soc_pct));"#,
    },
    Template {
        role: "soh",
        body: r#"impl SohEstimator for {T} {
    fn step(&mut self, s: &PackSnapshot) -> Result<SohOutput, String> {
        // A placeholder: every cell as new. Replace with yours.
        let n = s.cell_voltage_v.len();
        Ok(SohOutput {
            pack_soh_pct: 100.0,
            cell_capacity_ah: vec![self.config.capacity_ah; n],
            cell_resistance_mohm: vec![0.5; n],
        })
    }
}"#,
        export: "export_soh_estimator",
        test: r#"let out = h.step(&PackSnapshot::uniform(0, 4, 4, 3.25, 25.0, 0.0)).unwrap();
        assert_eq!(out.cell_capacity_ah.len(), 4);"#,
    },
    Template {
        role: "balancer",
        body: r#"impl Balancer for {T} {
    fn step(&mut self, input: &BalanceInput) -> Result<BalanceOutput, String> {
        // A placeholder: bleed cells above the lowest by more than the band.
        let v = &input.snapshot.cell_voltage_v;
        let min = v.iter().copied().fold(f32::INFINITY, f32::min);
        let band_v = self.config.band_mv / 1000.0;
        Ok(BalanceOutput { bleed: v.iter().map(|x| x - min > band_v).collect() })
    }
}"#,
        export: "export_balancer",
        test: r#"let snapshot = PackSnapshot::uniform(0, 4, 4, 3.25, 25.0, 0.0);
        let out = h.step(&BalanceInput { snapshot, cell_soc_pct: vec![50.0; 4] }).unwrap();
        assert_eq!(out.bleed, [false; 4]);"#,
    },
    Template {
        role: "ems",
        body: r#"impl EmsAdvisor for {T} {
    fn step(&mut self, input: &EmsInput) -> Result<EmsOutput, String> {
        // A placeholder: charge below the target SOC, else idle.
        let power_w = if input.soc.pack_soc_pct < self.config.target_soc_pct {
            self.config.charge_power_w
        } else {
            0.0
        };
        Ok(EmsOutput { power_w, reason: "placeholder".into() })
    }
}"#,
        export: "export_ems_advisor",
        test: r#"let input = EmsInput {
            snapshot: PackSnapshot::uniform(0, 4, 4, 3.25, 25.0, 0.0),
            soc: SocOutput { cell_soc_pct: vec![50.0; 4], pack_soc_pct: 50.0 },
            soh: SohOutput {
                pack_soh_pct: 100.0,
                cell_capacity_ah: vec![280.0; 4],
                cell_resistance_mohm: vec![0.5; 4],
            },
            limits: ProtectionLimits {
                max_charge_current_a: 100.0,
                max_discharge_current_a: 100.0,
                max_charge_power_w: 50_000.0,
                max_discharge_power_w: 50_000.0,
                cell_min_voltage_v: 2.8,
                cell_max_voltage_v: 3.6,
            },
            minute_of_day: 600,
        };
        assert_eq!(h.step(&input).unwrap().power_w, 10_000.0);"#,
    },
];

/// The config fields of each role's placeholder, as Rust and as JSON.
fn config(role: &str) -> (&'static str, &'static str) {
    match role {
        "soc" => (
            "    /// Cell voltage at 0 % and at 100 % of the placeholder map, V.\n    pub empty_v: f32,\n    pub full_v: f32,",
            r#"{"empty_v": 3.0, "full_v": 3.45}"#,
        ),
        "soh" => (
            "    /// Rated cell capacity, Ah.\n    pub capacity_ah: f32,",
            r#"{"capacity_ah": 280}"#,
        ),
        "balancer" => (
            "    /// Bleed cells this far above the lowest, mV.\n    pub band_mv: f32,",
            r#"{"band_mv": 10}"#,
        ),
        _ => (
            "    /// Charge below this pack SOC, %.\n    pub target_soc_pct: f32,\n    /// Charge power, W.\n    pub charge_power_w: f32,",
            r#"{"target_soc_pct": 80, "charge_power_w": 10000}"#,
        ),
    }
}

fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

pub fn new_plugin(root: &Path, args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask new-plugin NAME --role soc|soh|balancer|ems --dir PATH";
    let (mut name, mut role, mut dir) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => role = it.next().cloned(),
            "--dir" => dir = it.next().map(PathBuf::from),
            n if name.is_none() && !n.starts_with('-') => name = Some(n.to_string()),
            other => bail!("unexpected argument `{other}`\n{usage}"),
        }
    }
    let (Some(name), Some(role), Some(dir)) = (name, role, dir) else {
        bail!("{usage}");
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("NAME `{name}`: use lowercase letters, digits and `-`, starting with a letter");
    }
    let Some(t) = TEMPLATES.iter().find(|t| t.role == role) else {
        bail!("--role {role}: expected soc, soh, balancer or ems");
    };
    let crate_dir = dir.join(&name);
    if crate_dir.exists() {
        bail!(
            "{} exists already; pick another NAME or --dir",
            crate_dir.display()
        );
    }
    let sdk = root
        .join("sdk")
        .canonicalize()
        .context("locating the SDK")?;
    let ty = camel(&name);
    let (fields, json) = config(&role);
    std::fs::create_dir_all(crate_dir.join("src"))?;
    std::fs::write(crate_dir.join("Cargo.toml"), cargo_toml(&name, &role, &sdk))?;
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        lib_rs(&name, t, &ty, fields, json),
    )?;
    std::fs::write(crate_dir.join(".gitignore"), "/target\n")?;
    std::fs::write(
        crate_dir.join("README.md"),
        format!(
            "# {name}\n\nA `{role}` plugin for bmshost.\n\n```sh\ncargo test                                   # native, through the SDK's harness\ncargo xtask build-plugin {}   # from the bmshost checkout: the component\n```\n\nSite config: `[plugins.{}]` with `path = \"target/plugin/{name}.wasm\"` and `config = {json}`.\n",
            crate_dir.display(),
            role,
        ),
    )?;
    println!("created {} (a {role} plugin)", crate_dir.display());
    Ok(())
}

fn cargo_toml(name: &str, role: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A {role} plugin for bmshost"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
bms-plugin-sdk = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}

# Small components; a panic aborts the instance (the host restarts it).
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"

# A crate of its own, wherever it lives.
[workspace]
"#,
        sdk.display()
    )
}

fn lib_rs(name: &str, t: &Template, ty: &str, fields: &str, json: &str) -> String {
    format!(
        r##"//! {name}: a bmshost `{role}` plugin. The algorithm in `step` is a
//! placeholder; the plumbing around it (config, info, export) is what the
//! host expects.

use bms_plugin_sdk::prelude::*;

/// The plugin's `config` table from the site file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
{fields}
}}

pub struct {ty} {{
    config: Config,
}}

impl Plugin for {ty} {{
    type Config = Config;
    fn info() -> PluginInfo {{
        bms_plugin_sdk::plugin_info!()
    }}
    fn init(config: Config) -> Result<Self, String> {{
        Ok(Self {{ config }})
    }}
}}

{body}

bms_plugin_sdk::{export}!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use bms_plugin_sdk::harness::Harness;

    #[test]
    fn steps_through_the_host_config_path() {{
        let mut h = Harness::<{ty}>::new(r#"{json}"#).unwrap();
        {test}
    }}
}}
"##,
        role = t.role,
        body = t.body.replace("{T}", ty),
        export = t.export,
        test = t.test,
    )
}

pub fn build_plugin(args: &[String]) -> Result<PathBuf> {
    let [dir] = args else {
        bail!("usage: cargo xtask build-plugin PATH (a plugin crate)");
    };
    let dir = Path::new(dir)
        .canonicalize()
        .with_context(|| format!("{dir}: no such plugin crate"))?;
    // An integrator's crate gets no exemption from the import check.
    let PluginCrate { name, lib, .. } = plugin_crate(&dir)?;
    let tc = toolchain::detect()?;
    eprintln!("xtask: building {} with {}", dir.display(), tc.describe());
    let base = dir.join("target").join("wasm");
    let status = tc
        .cargo_build_in(&dir, &base, &["--release"])
        .status()
        .with_context(|| format!("running cargo in {}", dir.display()))?;
    if !status.success() {
        bail!(
            "building {} for wasm32-unknown-unknown failed",
            dir.display()
        );
    }
    let core = tc
        .target_dir(&base)
        .join("wasm32-unknown-unknown/release")
        .join(format!("{lib}.wasm"));
    let component = componentize(&core)
        .with_context(|| format!("turning {} into a component", core.display()))?;
    check_imports(&name, &component)?;
    let out = dir.join("target/plugin");
    std::fs::create_dir_all(&out)?;
    let dest = out.join(format!("{name}.wasm"));
    std::fs::write(&dest, &component)?;
    println!("{}", dest.display());
    Ok(dest)
}
