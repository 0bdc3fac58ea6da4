//! `bmsd`: the bmshost daemon.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use bmshost::config::SiteConfig;
use bmshost::site::{BankSite, RackSite, RunOptions, Speed};

#[derive(Parser)]
#[command(name = "bmsd", version, about = "Battery energy-storage control host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a site.
    Run {
        /// Site configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Simulated seconds per wall-clock second, or `max`.
        #[arg(long, default_value = "1")]
        speed: Speed,
        /// How long to run, e.g. `90s`, `30m`, `2h` (default: the sim profile).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<f64>,
        /// Write the end-of-run summary as JSON to this file.
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Keep durable state (event record, control socket) here instead
        /// of the config's `site.state_dir`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Start even if an enabled plugin fails to load; its role runs on
        /// the native fallback.
        #[arg(long)]
        allow_fallback: bool,
    },
    /// Validate a site configuration and exit.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// List the durable protection event record of a site (works whether
    /// or not the daemon runs).
    Events {
        #[arg(long)]
        config: PathBuf,
    },
}

/// Seconds from `90`, `90s`, `30m` or `2h`.
fn parse_duration(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        _ => (s, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
        _ => Err(format!(
            "expected a duration like 90s, 30m or 2h, got `{s}`"
        )),
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { config } => {
            let cfg = SiteConfig::load(&config)?;
            // Everything a start would do short of running: DBC, signal
            // mapping, and every enabled plugin's load and init.
            let problems = bmshost::site::check(&cfg);
            if !problems.is_empty() {
                anyhow::bail!("{}:\n  {}", config.display(), problems.join("\n  "));
            }
            println!(
                "{}: ok ({} modules x {} cells)",
                config.display(),
                cfg.rack.modules,
                cfg.rack.cells_per_module
            );
            Ok(())
        }
        Command::Events { config } => {
            let cfg = SiteConfig::load(&config)?;
            let path = cfg.resolve(&cfg.site.state_dir).join("events.jsonl");
            let read = bmshost::protection::events::EventLog::read(&path)?;
            for r in &read.records {
                println!("{}", bmshost::telemetry::event_line(r));
            }
            if !read.corrupt_lines.is_empty() {
                println!(
                    "({}: line(s) {:?} do not parse: damaged inside the file, not shown)",
                    path.display(),
                    read.corrupt_lines
                );
            }
            if read.torn_tail_bytes > 0 {
                println!(
                    "({}: ends in a torn record of {} bytes: a write that did not finish; \
                     the next start cuts it)",
                    path.display(),
                    read.torn_tail_bytes
                );
            }
            Ok(())
        }
        Command::Run {
            config,
            speed,
            duration,
            summary,
            state_dir,
            allow_fallback,
        } => {
            let cfg = SiteConfig::load(&config)?;
            let state_dir = state_dir.unwrap_or_else(|| cfg.resolve(&cfg.site.state_dir));
            // Before anything is assembled: a hardware site with an open
            // users file or a published secret does not start.
            let guard = std::sync::Arc::new(guard(&cfg)?);
            // SIGTERM / SIGINT end the run at the next cycle: plugin state
            // is saved and the contactors open on the way out.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, stop.clone())
                    .context("installing the signal handler")?;
            }
            let opts = RunOptions {
                speed,
                duration_s: duration,
                print_status: true,
                stop: Some(stop),
            };
            let json = if cfg.bank.is_some() {
                run_bank(cfg, state_dir, allow_fallback, &opts, &guard)?
            } else {
                run_rack(cfg, state_dir, allow_fallback, &opts, &guard)?
            };
            if let Some(path) = summary {
                std::fs::write(&path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("summary written to {}", path.display());
            }
            Ok(())
        }
    }
}

fn refuse_fallbacks(site: &RackSite, allow_fallback: bool, what: &str) -> Result<()> {
    let failed = site.plugin_load_errors();
    if !failed.is_empty() && !allow_fallback {
        anyhow::bail!(
            "{what}: {} plugin(s) failed to load (use --allow-fallback to run their native fallbacks):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// The users of `[operator] users_file`, checked as the site requires.
fn guard(cfg: &SiteConfig) -> Result<bmshost::auth::Guard> {
    use bmshost::auth::Guard;
    let Some(file) = &cfg.operator.users_file else {
        tracing::warn!("no [operator] users_file: nobody can reset, reload or roll back over the control socket");
        return Ok(Guard::new(None));
    };
    let path = cfg.resolve(file);
    let hardware = cfg.sim.is_none();
    Guard::from_file(&path, hardware)
        .with_context(|| format!("{}: `operator.users_file`", cfg.source.display()))
}

fn start_api(
    site: &RackSite,
    socket: &std::path::Path,
    guard: &std::sync::Arc<bmshost::auth::Guard>,
) -> Result<bmshost::api::ApiServer> {
    let api = bmshost::api::ApiServer::start(
        socket,
        bmshost::api::ApiContext {
            protection: site.protection.clone(),
            events: site.events.clone(),
            shared: site.shared.clone(),
            guard: guard.clone(),
            audit: site.audit.clone(),
            control_mode: site.control_mode(),
            plugins: Some(site.plugin_control(guard.clone())),
        },
    )
    .with_context(|| format!("starting the control API on {}", socket.display()))?;
    Ok(api)
}

/// Run a one-rack site; returns the summary as JSON.
fn run_rack(
    cfg: SiteConfig,
    state_dir: PathBuf,
    allow_fallback: bool,
    opts: &RunOptions,
    guard: &std::sync::Arc<bmshost::auth::Guard>,
) -> Result<String> {
    let socket = state_dir.join("bmsd.sock");
    let mut site = RackSite::assemble_in(cfg, state_dir)?;
    refuse_fallbacks(&site, allow_fallback, "rack")?;
    let _api = start_api(&site, &socket, guard)?;
    println!("control API: {}", socket.display());
    let _pcs = site.start_pcs_link()?;
    let _modbus = site.start_modbus()?;
    if let Some(m) = &_modbus {
        println!("SunSpec Modbus TCP: {}", m.local_addr);
    }
    let result = site.run(opts, |_| {})?;
    drop(site);
    print_summary(&result);
    Ok(serde_json::to_string_pretty(&result)?)
}

/// Run a bank site: one control socket per rack; returns the summary as JSON.
fn run_bank(
    cfg: SiteConfig,
    state_dir: PathBuf,
    allow_fallback: bool,
    opts: &RunOptions,
    guard: &std::sync::Arc<bmshost::auth::Guard>,
) -> Result<String> {
    let mut site = BankSite::assemble_in(cfg, state_dir.clone())?;
    let mut apis = Vec::new();
    for (rack, name) in site.racks.iter().zip(&site.names) {
        refuse_fallbacks(rack, allow_fallback, &format!("rack {name}"))?;
        let socket = state_dir.join("racks").join(name).join("bmsd.sock");
        apis.push(start_api(rack, &socket, guard)?);
        println!("control API of rack {name}: {}", socket.display());
    }
    let _pcs = site.start_pcs_link()?;
    let _modbus = site.start_modbus()?;
    if let Some(m) = &_modbus {
        println!("SunSpec Modbus TCP: {}", m.local_addr);
    }
    let result = site.run(opts, |_, _| {}, |_, _| {})?;
    drop(site);
    for r in &result.racks {
        println!("== rack {} ==", r.name);
        print_summary(&r.summary);
    }
    let b = &result.bank;
    println!(
        "== bank: {}/{} racks connected, SOC {}, allowed +{:.0}/-{:.0} A, imbalance {:.1} pp (x{:.2}), {} bank-trip periods, {} missed deadlines ==",
        b.connected,
        b.racks,
        b.soc_pct.map_or("--".into(), |s| format!("{s:.1}%")),
        b.allowed.charge_a,
        b.allowed.discharge_a,
        b.soc_spread_pct,
        b.imbalance_factor,
        result.bank_trip_periods,
        result.missed_deadlines
    );
    Ok(serde_json::to_string_pretty(&result)?)
}

fn print_summary(s: &bmshost::telemetry::Summary) {
    println!("== summary: {} ==", s.site);
    println!(
        "ran {:.0} s (site time) in {:.1} s wall, {} cycles, cycle p50 {} us p99 {} us max {} us, {} missed deadlines",
        s.simulated_s,
        s.wall_s,
        s.cycles,
        s.cycle_p50_us,
        s.cycle_p99_us,
        s.max_cycle_us,
        s.missed_deadlines
    );
    if let Some(j) = &s.protection_jitter {
        println!(
            "protection period jitter over {} ticks: p50 {} us, p99 {} us, p99.9 {} us, max {} us; largest frame arrival -> tick {} ms",
            j.ticks, j.p50_us, j.p99_us, j.p999_us, j.max_us, s.acquisition.max_rx_to_decode_ms
        );
    }
    let pct = |v: Option<f32>| v.map_or("--".into(), |v| format!("{v:.1}%"));
    println!(
        "pack SOC {}  SOH {}",
        pct(s.final_pack_soc_pct),
        pct(s.final_pack_soh_pct)
    );
    println!(
        "cell voltage {:.3}..{:.3} V (spread {:.1} mV), bleeding {:.0} cell-s",
        s.final_cell_voltage_min_v,
        s.final_cell_voltage_max_v,
        s.final_cell_voltage_spread_mv,
        s.bleed_cell_s
    );
    if let Some(a) = &s.sim {
        println!(
            "SOC error vs truth: max {:.2} pp (cell {} at {:.0} s), final {:.2} pp; true SOC spread {:.2} -> {:.2} pp",
            a.max_abs_soc_error_pct,
            a.max_abs_soc_error_cell,
            a.max_abs_soc_error_time_s,
            a.final_abs_soc_error_pct,
            a.initial_true_soc_spread_pct,
            a.final_true_soc_spread_pct
        );
    }
    println!("contactors {:?}", s.final_contactor_state);
    if let Some(o) = &s.outputs {
        println!(
            "contactor outputs: {} ({} writes, {} failures, {} connects){}",
            if o.connected { "connected" } else { "DOWN" },
            o.writes,
            o.failures,
            o.reconnects,
            o.alarm
                .as_deref()
                .map_or(String::new(), |a| format!("  ALARM {a}"))
        );
    }
    for l in &s.latched {
        println!(
            "  LATCHED {:?} at {:?}: {}",
            l.quantity, l.location, l.message
        );
    }
    for e in &s.protection_events {
        println!("  {}", bmshost::telemetry::event_line(e));
    }
    for p in &s.plugins {
        println!(
            "  plugin {:<8} {:<11} {} {} crashes={} restarts={} errors={}{}",
            p.role.to_string(),
            p.state.name(),
            p.name.as_deref().unwrap_or("-"),
            p.version.as_deref().unwrap_or(""),
            p.crashes,
            p.restarts,
            p.errors,
            p.alarm
                .as_deref()
                .map_or(String::new(), |a| format!("  ALARM {a}"))
        );
    }
    for e in &s.plugin_events {
        println!("  {}", bmshost::telemetry::plugin_event_line(e));
    }
}
