//! Build automation for bmshost: `cargo xtask <command>`.
//!
//! - `build-plugins`: build every crate under `plugins/` for
//!   `wasm32-unknown-unknown` and turn it into a component in
//!   `target/plugins/<name>.wasm`.
//! - `demo`: build-plugins, then run the demo site at high speed.
//! - `test`: build-plugins, then run every test in the workspace.
//! - `bench-jitter`: build-plugins, then measure the protection thread's
//!   period jitter on the 10-rack bank (see [`jitter`]).
//! - `fuzz`: run every fuzz target for N seconds (see [`fuzz`]).
//! - `faults`: build-plugins, then run every fault scenario and print the
//!   fault matrix (see [`faults`]).
//! - `new-plugin`, `build-plugin`: plugins out of this tree (see
//!   [`new_plugin`]).
//!
//! The wasm toolchain is chosen automatically: a rustup toolchain with the
//! `wasm32-unknown-unknown` target if installed, else Debian's `rustc-web`
//! toolchain building std from source. `BMS_WASM_TOOLCHAIN=rustup|debian`
//! forces one.

mod faults;
mod fuzz;
mod jitter;
mod new_plugin;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("build-plugins") => build_plugins(&root).map(|_| ()),
        Some("demo") => {
            build_plugins(&root)?;
            demo(&root, &args[1..])
        }
        Some("componentize") if args.len() == 3 => {
            let component = componentize(Path::new(&args[1]))?;
            check_imports(&args[1], &component)?;
            std::fs::write(&args[2], component)?;
            Ok(())
        }
        Some("test") => {
            build_plugins(&root)?;
            test(&root, &args[1..])
        }
        Some("bench-jitter") => {
            build_plugins(&root)?;
            jitter::bench(&root, &args[1..])
        }
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        Some("new-plugin") => new_plugin::new_plugin(&root, &args[1..]),
        Some("build-plugin") => new_plugin::build_plugin(&args[1..]).map(|_| ()),
        Some("faults") => {
            build_plugins(&root)?;
            let python = python_env(&root)?;
            faults::run(&root, &python)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 build-plugins   build plugins/* into components in target/plugins/\n  \
                 demo [ARGS]     build plugins and run configs/demo-site.toml at high speed\n  \
                 test [ARGS]     build plugins and run every workspace test (ARGS go to cargo test)\n  \
                 bench-jitter    protection period jitter on the 10-rack bank [--seconds N] [--spin-iterations N]\n  \
                 fuzz            every fuzz target for N seconds, with executions and crashes [--seconds N]\n  \
                 faults          every fault scenario end to end, printed as the fault matrix\n  \
                 new-plugin NAME --role soc|soh|balancer|ems --dir PATH   a plugin crate of its own\n  \
                 build-plugin PATH   build such a crate into PATH/target/plugin/NAME.wasm"
            );
            std::process::exit(2);
        }
    }
}

/// A plugin crate: package name and lib target name.
pub(crate) struct PluginCrate {
    name: String,
    lib: String,
    /// Test-only plugins that exist to import what the host refuses
    /// (`[package.metadata.bms] allow-foreign-imports = true`).
    allow_foreign_imports: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The plugin crate in `dir`, from its Cargo.toml.
pub(crate) fn plugin_crate(dir: &Path) -> Result<PluginCrate> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let name = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no [package] name", manifest.display()))?
        .to_string();
    // The wasm artifact is named after the lib target.
    let lib = doc
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(toml::Value::as_str)
        .map_or_else(|| name.replace('-', "_"), str::to_string);
    let allow_foreign_imports = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("bms"))
        .and_then(|b| b.get("allow-foreign-imports"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Ok(PluginCrate {
        name,
        lib,
        allow_foreign_imports,
    })
}

/// Every directory under `plugins/` (reference plugins) and
/// `tests/plugins/` (test-only hostile plugins) with a Cargo.toml, as
/// their package and lib names.
fn plugin_crates(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut out = Vec::new();
    let dirs = [root.join("plugins"), root.join("tests/plugins")];
    let entries = dirs
        .iter()
        .filter(|d| d.is_dir())
        .map(|d| std::fs::read_dir(d).with_context(|| format!("reading {}", d.display())))
        .collect::<Result<Vec<_>>>()?;
    for entry in entries.into_iter().flatten() {
        let dir = entry?.path();
        if dir.join("Cargo.toml").is_file() {
            out.push(plugin_crate(&dir)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Build all plugins; returns the component paths.
fn build_plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let tc = toolchain::detect()?;
    eprintln!("xtask: building plugins with {}", tc.describe());
    let target_dir = root.join("target").join("wasm");
    let out_dir = root.join("target").join("plugins");
    std::fs::create_dir_all(&out_dir)?;
    let mut built = Vec::new();
    for PluginCrate {
        name,
        lib,
        allow_foreign_imports,
    } in plugin_crates(root)?
    {
        // One cargo invocation per plugin: feature unification across
        // plugins must not leak one plugin's code into another's module.
        let mut cmd = tc.cargo_build(root, &target_dir, &name);
        let status = cmd
            .status()
            .with_context(|| format!("running cargo for plugin {name}"))?;
        if !status.success() {
            bail!("building plugin {name} for wasm32-unknown-unknown failed");
        }
        let core = tc
            .target_dir(&target_dir)
            .join("wasm32-unknown-unknown")
            .join("wasm")
            .join(format!("{lib}.wasm"));
        let component = componentize(&core)
            .with_context(|| format!("turning {} into a component", core.display()))?;
        if !allow_foreign_imports {
            check_imports(&name, &component)?;
        }
        let dest = out_dir.join(format!("{name}.wasm"));
        std::fs::write(&dest, &component)?;
        eprintln!(
            "xtask: {name}: {} ({} KiB)",
            dest.display(),
            component.len() / 1024
        );
        built.push(dest);
    }
    Ok(built)
}

fn componentize(core: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(core)?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)?
        .validate(true)
        .encode()
}

/// A plugin may import only `bms:plugin/*` interfaces: no WASI, no `env`.
fn check_imports(name: &str, component: &[u8]) -> Result<()> {
    for import in component_imports(component)? {
        if !import.starts_with("bms:plugin/") {
            bail!(
                "plugin {name} imports `{import}`; plugins may import only bms:plugin/* \
                 (no WASI, no env). Remove the dependency that pulls it in."
            );
        }
    }
    Ok(())
}

fn component_imports(component: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ComponentImportSection(reader) = payload? {
            for import in reader {
                let import = import?;
                // Type imports are names for types of imported
                // interfaces, not capabilities.
                if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                    names.push(import.name.name.to_string());
                }
            }
        }
    }
    Ok(names)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(mut cmd: Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn demo(root: &Path, extra: &[String]) -> Result<()> {
    let mut cmd = cargo();
    // The dev profile optimises dependencies (see Cargo.toml), so the demo
    // reuses the test build instead of compiling wasmtime a second time.
    cmd.current_dir(root).args([
        "run", "--quiet", "-p", "bmshost", "--bin", "bmsd", "--", "run",
    ]);
    // Defaults for what the caller did not set (`cargo xtask demo --speed
    // 60` must not pass --speed twice).
    let given = |flag: &str| {
        extra
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    for (flag, value) in [
        ("--config", "configs/demo-site.toml"),
        ("--speed", "max"),
        ("--summary", "target/demo-summary.json"),
    ] {
        if !given(flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    run(cmd)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    let python = python_env(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .env("BMS_PYTHON", &python)
        .args(["test", "--workspace"])
        .args(extra);
    run(cmd)
}

/// The Python the third-party peer tests run (cantools, ...): a venv in
/// `target/pyenv` with `tests/py/requirements.txt` installed from PyPI.
/// Reinstalls when the requirements change.
fn python_env(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/pyenv");
    let python = venv.join("bin/python");
    let req = root.join("tests/py/requirements.txt");
    let wanted =
        std::fs::read_to_string(&req).with_context(|| format!("reading {}", req.display()))?;
    let stamp = venv.join("requirements.installed");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(python);
    }
    eprintln!("xtask: setting up {} for the peer tests", venv.display());
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&venv);
    run(cmd).context("creating the Python venv (install python3-venv)")?;
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(&req);
    run(cmd).context("installing tests/py/requirements.txt from PyPI")?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}
