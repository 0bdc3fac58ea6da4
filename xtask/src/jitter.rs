//! `cargo xtask bench-jitter [--seconds N] [--spin-iterations N]`: the
//! protection thread's period jitter, paced in real time, in two
//! scenarios: the 10-rack, 4,160-cell bank (`configs/site-10rack.toml`)
//! with the four reference plugins, and one 416-cell rack
//! (`configs/site-416.toml`) with every plugin spinning near its deadline
//! in `step` and `save_state` (checkpoint every cycle; ten such racks would
//! need 800 ms of plugin time per 100 ms cycle). Prints a table of each
//! rack's tick lateness (p50 / p99 / p99.9 / max) and the largest gap
//! between a frame's arrival and the tick that judged it.

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
    let spinning = dir.join("site-416-spin.toml");
    std::fs::write(
        &spinning,
        spin_site(root, &root.join("configs/site-416.toml"), spin)?,
    )?;
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
        // A bank's summary lists its racks; a rack's is its own row.
        let racks = match s["racks"].as_array() {
            Some(r) => r.clone(),
            None => vec![s.clone()],
        };
        for r in &racks {
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            let j = &r["protection_jitter"];
            rows.push(format!(
                "| {name:<17} | {:<13} | {:>7} | {:>6} | {:>6} | {:>8} | {:>7} | {:>11} | {:>13} |",
                r["name"].as_str().or(r["site"].as_str()).unwrap_or("?"),
                n(&j["ticks"]),
                n(&j["p50_us"]),
                n(&j["p99_us"]),
                n(&j["p999_us"]),
                n(&j["max_us"]),
                n(&r["acquisition"]["max_rx_to_decode_ms"]),
                n(&r["missed_deadlines"]),
            ));
        }
    }
    println!("\nprotection period jitter, {seconds} s paced at real time: site-10rack (10 x 416 cells, reference plugins), site-416 (plugins spinning {spin} iterations per call)");
    println!("| scenario          | rack          |   ticks | p50 us | p99 us | p99.9 us |  max us | rx->tick ms | missed cycles |");
    println!("|-------------------|---------------|---------|--------|--------|----------|---------|-------------|---------------|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// `base` with every role on a hostile plugin that spins: the
/// `extends` chain merged here (tables merge, values replace, as the host
/// does), relative paths made absolute, and `[plugins.*]` replaced whole
/// (a merge would keep the reference plugins' config keys).
fn spin_site(root: &Path, base: &Path, iterations: u64) -> Result<String> {
    let mut site = merged(base, 0)?;
    absolutize(&mut site, base.parent().unwrap_or(root), "");
    let t = site.as_table_mut().context("a site table")?;
    t.remove("extends");
    let s = t
        .entry("site")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(s) = s.as_table_mut() {
        s.insert("name".into(), "site-416-spin".into());
        let state = root.join("target/bench-jitter/state");
        s.insert("state_dir".into(), state.display().to_string().into());
    }
    let mut plugins = toml::Table::new();
    let mut policy = toml::Table::new();
    policy.insert("checkpoint_cycles".into(), 1.into());
    plugins.insert("policy".into(), toml::Value::Table(policy));
    for (role, name) in [
        ("soc", "hostile-soc"),
        ("soh", "hostile-soh"),
        ("balancer", "hostile-balancer"),
        ("ems", "hostile-ems"),
    ] {
        let mut config = toml::Table::new();
        config.insert("mode".into(), "spin".into());
        config.insert("spin_iterations".into(), (iterations as i64).into());
        let mut slot = toml::Table::new();
        let path = root.join("target/plugins").join(format!("{name}.wasm"));
        slot.insert("path".into(), path.display().to_string().into());
        slot.insert("config".into(), toml::Value::Table(config));
        plugins.insert(role.into(), toml::Value::Table(slot));
    }
    t.insert("plugins".into(), toml::Value::Table(plugins));
    Ok(format!(
        "# Written by `cargo xtask bench-jitter` from {}.\n{}",
        base.display(),
        toml::to_string(&site)?
    ))
}

fn merged(path: &Path, depth: u32) -> Result<toml::Value> {
    if depth > 8 {
        bail!("{}: `extends` more than 8 deep", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let over: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(base) = over.get("extends").and_then(toml::Value::as_str) else {
        return Ok(over);
    };
    let mut base = merged(
        &path.parent().unwrap_or(Path::new(".")).join(base),
        depth + 1,
    )?;
    merge(&mut base, over);
    Ok(base)
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Make every path-valued key absolute against `dir` (the site files' directory).
fn absolutize(v: &mut toml::Value, dir: &Path, key: &str) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                absolutize(v, dir, k);
            }
        }
        toml::Value::String(s)
            if matches!(key, "include" | "dbc" | "ocv_table" | "path" | "state_dir") =>
        {
            *s = dir.join(&*s).display().to_string();
        }
        _ => {}
    }
}
