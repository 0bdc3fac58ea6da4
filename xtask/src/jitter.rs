//! `cargo xtask bench-jitter [--seconds N] [--spin-iterations N]`: the
//! protection thread's period jitter on the 10-rack, 4,160-cell bank
//! (`configs/site-10rack.toml`), paced in real time, in two scenarios:
//! the four reference plugins, and every plugin spinning near its
//! deadline in `step` and `save_state` (checkpoint every cycle). Prints a
//! table of each rack's tick lateness (p50 / p99 / p99.9 / max) and the
//! largest gap between a frame's arrival and the tick that judged it.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::{cargo, run};

pub fn bench(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 600u64;
    let mut spin = 12_000_000u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--seconds" => seconds = v.parse().context("--seconds")?,
            "--spin-iterations" => spin = v.parse().context("--spin-iterations")?,
            other => bail!("unknown option {other} (--seconds N, --spin-iterations N)"),
        }
    }
    // The dev profile optimises dependencies (see Cargo.toml): the test
    // build's bmsd, without compiling wasmtime a second time.
    let mut build = cargo();
    build
        .current_dir(root)
        .args(["build", "-p", "bmshost", "--bin", "bmsd"]);
    run(build)?;
    let dir = root.join("target/bench-jitter");
    std::fs::create_dir_all(&dir)?;
    let plain = root.join("configs/site-10rack.toml");
    let spinning = dir.join("site-10rack-spin.toml");
    std::fs::write(&spinning, spin_site(root, &plain, spin))?;
    let mut rows = Vec::new();
    for (name, site) in [("reference plugins", plain), ("plugins spinning", spinning)] {
        let summary = dir.join(format!("{}.json", name.replace(' ', "-")));
        let mut cmd = std::process::Command::new(root.join("target/debug/bmsd"));
        cmd.current_dir(root)
            .args(["run", "--config"])
            .arg(&site)
            .args([
                "--speed",
                "1",
                "--duration",
                &format!("{seconds}s"),
                "--summary",
            ])
            .arg(&summary)
            .stdout(std::process::Stdio::null());
        run(cmd)?;
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
        for r in s["racks"].as_array().context("a bank summary")? {
            let j = &r["protection_jitter"];
            rows.push(format!(
                "| {name:<17} | {:<4} | {:>7} | {:>6} | {:>6} | {:>7} | {:>7} | {:>5} | {:>6} |",
                r["name"].as_str().unwrap_or("?"),
                j["ticks"],
                j["p50_us"],
                j["p99_us"],
                j["p999_us"],
                j["max_us"],
                r["acquisition"]["max_rx_to_decode_ms"],
                r["missed_deadlines"],
            ));
        }
    }
    println!("\nprotection period jitter, configs/site-10rack.toml (10 x 416 cells), {seconds} s paced at real time, spin {spin} iterations");
    println!("| scenario          | rack |   ticks | p50 us | p99 us | p99.9 us |  max us | rx->tick ms | missed cycles |");
    println!("|-------------------|------|---------|--------|--------|----------|---------|-------------|---------------|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// The 10-rack site with every role on a hostile plugin that spins.
fn spin_site(root: &Path, base: &Path, iterations: u64) -> String {
    let plugin = |role: &str, name: &str| {
        format!(
            "[plugins.{role}]\npath = \"{}\"\n[plugins.{role}.config]\nmode = \"spin\"\nspin_iterations = {iterations}\n",
            root.join("target/plugins").join(format!("{name}.wasm")).display()
        )
    };
    // Relative paths resolve against this file, so name configs/ ones in full.
    let configs = root.join("configs");
    format!(
        "# Written by `cargo xtask bench-jitter`.\nextends = \"{}\"\n\n[site]\nname = \"site-10rack-spin\"\nstate_dir = \"{}\"\n\n[can]\ndbc = \"{}\"\n\n[sim]\nocv_table = \"{}\"\n\n[protection.soc]\nocv = {{ include = \"{}\" }}\n\n[plugins.policy]\ncheckpoint_cycles = 1\n\n{}{}{}{}",
        base.display(),
        root.join("target/bench-jitter/state").display(),
        configs.join("bmu-416.dbc").display(),
        configs.join("ocv-lfp.toml").display(),
        configs.join("ocv-lfp.toml").display(),
        plugin("soc", "hostile-soc"),
        plugin("soh", "hostile-soh"),
        plugin("balancer", "hostile-balancer"),
        plugin("ems", "hostile-ems"),
    )
}
