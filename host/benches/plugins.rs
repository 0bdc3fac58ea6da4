//! The plugin runtime's costs, printed as a table:
//! - per-call cost of each reference plugin in wasm against the same
//!   algorithm built natively (through the SDK's `Harness`), for 128 and
//!   4,160 cells, and the ratio;
//! - artifact preparation: Cranelift compile against a `.cwasm` cache hit;
//! - instantiate + init + restore of a saved state (a crash restart or the
//!   control-thread half of a swap), and the canary;
//! - on a paced demo rack at its real cycle period: the latency from a
//!   plugin file change to the new version serving, and the cycle time
//!   with and without swaps going on (jitter).
//!
//! `cargo bench -p bmshost --bench plugins` after `cargo xtask build-plugins`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bms_plugin_sdk::harness::Harness;
use bms_plugin_sdk::types as sdk;
use bms_plugin_sdk::{Balancer, EmsAdvisor, SocEstimator, SohEstimator};
use bmshost::config::SiteConfig;
use bmshost::plugins::bindings::types as w;
use bmshost::plugins::canary::{History, HistoryEntry, Outputs};
use bmshost::plugins::{canary, Artifact, PluginEngine, PluginInstance, Role};
use bmshost::site::{RackSite, RunOptions, Speed};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn component(name: &str) -> PathBuf {
    let p = root().join(format!("target/plugins/{name}.wasm"));
    assert!(
        p.is_file(),
        "{} missing: run `cargo xtask build-plugins`",
        p.display()
    );
    p
}

/// Mean µs per call: warm up, then the median of 15 batches of ~20 ms.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let t = Instant::now();
    let mut n = 0u32;
    while t.elapsed() < Duration::from_millis(20) {
        f();
        n += 1;
    }
    let per_batch = n.max(1);
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(per_batch)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[batches.len() / 2]
}

/// A charging pack of `n` cells with a little spread, as both the SDK's
/// and the WIT's snapshot type.
fn snapshots(n: usize) -> (sdk::PackSnapshot, w::PackSnapshot) {
    let mut s = sdk::PackSnapshot::uniform(1_000, n, 16, 3.30, 25.0, 100.0);
    for (i, v) in s.cell_voltage_v.iter_mut().enumerate() {
        *v += (i % 7) as f32 * 0.002;
    }
    let ws = w::PackSnapshot {
        timestamp_ms: s.timestamp_ms,
        current_a: s.current_a,
        pack_voltage_v: s.pack_voltage_v,
        cell_voltage_v: s.cell_voltage_v.clone(),
        cell_temp_c: s.cell_temp_c.clone(),
        cells_per_module: s.cells_per_module,
        module_comm: vec![w::CommStatus::Ok; s.module_comm.len()],
        cell_bleed_a: s.cell_bleed_a.clone(),
        contactors_closed: true,
    };
    (s, ws)
}

fn limits() -> (sdk::ProtectionLimits, w::ProtectionLimits) {
    let l = sdk::ProtectionLimits {
        max_charge_current_a: 280.0,
        max_discharge_current_a: 280.0,
        max_charge_power_w: 120_000.0,
        max_discharge_power_w: 120_000.0,
        cell_min_voltage_v: 2.9,
        cell_max_voltage_v: 3.55,
    };
    let wl = w::ProtectionLimits {
        max_charge_current_a: l.max_charge_current_a,
        max_discharge_current_a: l.max_discharge_current_a,
        max_charge_power_w: l.max_charge_power_w,
        max_discharge_power_w: l.max_discharge_power_w,
        cell_min_voltage_v: l.cell_min_voltage_v,
        cell_max_voltage_v: l.cell_max_voltage_v,
    };
    (l, wl)
}

struct Row {
    what: String,
    value: String,
}

fn per_call(cfg: &SiteConfig, engine: &PluginEngine, rows: &mut Vec<Row>) {
    let json = |role: Role| serde_json::to_string(&cfg.plugins.slot(role).config).unwrap();
    // Big packs need more than the demo's per-call deadline in wasm.
    let generous = bmshost::config::SandboxConfig {
        memory_mib: 256,
        deadline_ms: 1_000,
        ..Default::default()
    };
    println!(
        "{:<16} {:>6} {:>12} {:>12} {:>7}",
        "plugin", "cells", "wasm us", "native us", "ratio"
    );
    for n in [128usize, 4160] {
        let (s, ws) = snapshots(n);
        let (l, wl) = limits();
        let soc_pct = vec![50.0f32; n];
        let mut cases: Vec<(&str, f64, f64)> = Vec::new();

        // soc-counting
        let mut native = Harness::<soc_counting::SocCounting>::new(&json(Role::Soc)).unwrap();
        let mut s1 = s.clone();
        let nat = measure(|| {
            s1.timestamp_ms += 100;
            native.step(&s1).unwrap();
        });
        let mut inst = PluginInstance::load(
            engine,
            Role::Soc,
            &component("soc-counting"),
            &json(Role::Soc),
            generous,
        )
        .unwrap();
        let mut w1 = ws.clone();
        let wasm = measure(|| {
            w1.timestamp_ms += 100;
            inst.step_soc(&w1).unwrap();
        });
        cases.push(("soc-counting", wasm, nat));

        // soh-capacity
        let mut native = Harness::<soh_capacity::SohCapacity>::new(&json(Role::Soh)).unwrap();
        let mut s1 = s.clone();
        let nat = measure(|| {
            s1.timestamp_ms += 100;
            native.step(&s1).unwrap();
        });
        let mut inst = PluginInstance::load(
            engine,
            Role::Soh,
            &component("soh-capacity"),
            &json(Role::Soh),
            generous,
        )
        .unwrap();
        let mut w1 = ws.clone();
        let wasm = measure(|| {
            w1.timestamp_ms += 100;
            inst.step_soh(&w1).unwrap();
        });
        cases.push(("soh-capacity", wasm, nat));

        // balance-passive
        let mut native =
            Harness::<balance_passive::PassiveBalancer>::new(&json(Role::Balancer)).unwrap();
        let mut b1 = sdk::BalanceInput {
            snapshot: s.clone(),
            cell_soc_pct: soc_pct.clone(),
        };
        let nat = measure(|| {
            b1.snapshot.timestamp_ms += 100;
            native.step(&b1).unwrap();
        });
        let mut inst = PluginInstance::load(
            engine,
            Role::Balancer,
            &component("balance-passive"),
            &json(Role::Balancer),
            generous,
        )
        .unwrap();
        let mut wb = w::BalanceInput {
            snapshot: ws.clone(),
            cell_soc_pct: soc_pct.clone(),
        };
        let wasm = measure(|| {
            wb.snapshot.timestamp_ms += 100;
            inst.step_balancer(&wb).unwrap();
        });
        cases.push(("balance-passive", wasm, nat));

        // ems-hints
        let mut native = Harness::<ems_hints::EmsHints>::new(&json(Role::Ems)).unwrap();
        let mut e1 = sdk::EmsInput {
            snapshot: s.clone(),
            soc: sdk::SocOutput {
                cell_soc_pct: soc_pct.clone(),
                pack_soc_pct: 50.0,
            },
            soh: sdk::SohOutput {
                pack_soh_pct: 100.0,
                cell_capacity_ah: vec![280.0; n],
                cell_resistance_mohm: vec![0.3; n],
            },
            limits: l,
            minute_of_day: 600,
        };
        let nat = measure(|| {
            e1.snapshot.timestamp_ms += 100;
            native.step(&e1).unwrap();
        });
        let mut inst = PluginInstance::load(
            engine,
            Role::Ems,
            &component("ems-hints"),
            &json(Role::Ems),
            generous,
        )
        .unwrap();
        let mut we = w::EmsInput {
            snapshot: ws.clone(),
            soc: w::SocOutput {
                cell_soc_pct: soc_pct.clone(),
                pack_soc_pct: 50.0,
            },
            soh: w::SohOutput {
                pack_soh_pct: 100.0,
                cell_capacity_ah: vec![280.0; n],
                cell_resistance_mohm: vec![0.3; n],
            },
            limits: wl,
            minute_of_day: 600,
        };
        let wasm = measure(|| {
            we.snapshot.timestamp_ms += 100;
            inst.step_ems(&we).unwrap();
        });
        cases.push(("ems-hints", wasm, nat));

        for (name, wasm, nat) in cases {
            println!(
                "{name:<16} {n:>6} {wasm:>12.2} {nat:>12.2} {:>6.1}x",
                wasm / nat
            );
            rows.push(Row {
                what: format!("{name} step, {n} cells: wasm / native"),
                value: format!("{wasm:.2} us / {nat:.2} us = {:.1}x", wasm / nat),
            });
        }
    }
}

fn lifecycle(cfg: &SiteConfig, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let path = component("soc-counting");
    let json = serde_json::to_string(&cfg.plugins.soc.config).unwrap();
    let sb = cfg.plugins.sandbox_for(Role::Soc);

    let plain = PluginEngine::new().unwrap();
    let compile_us = measure(|| {
        Artifact::load(&plain, Role::Soc, &path).unwrap();
    });
    let cached = PluginEngine::new()
        .unwrap()
        .with_cache(dir.path().to_path_buf());
    Artifact::load(&cached, Role::Soc, &path).unwrap();
    let hit_us = measure(|| {
        Artifact::load(&cached, Role::Soc, &path).unwrap();
    });
    rows.push(Row {
        what: "soc-counting artifact: compile + validate".into(),
        value: format!("{:.1} ms", compile_us / 1000.0),
    });
    rows.push(Row {
        what: "soc-counting artifact: .cwasm cache hit + validate".into(),
        value: format!("{:.2} ms", hit_us / 1000.0),
    });

    let art = Artifact::load(&cached, Role::Soc, &path).unwrap();
    for n in [128usize, 4160] {
        let (_, ws) = snapshots(n);
        let big = bmshost::config::SandboxConfig {
            memory_mib: 256,
            deadline_ms: 1_000,
            ..Default::default()
        };
        let mut warm = PluginInstance::instantiate(&cached, &art, &json, big).unwrap();
        let mut s = ws.clone();
        for _ in 0..20 {
            s.timestamp_ms += 100;
            warm.step_soc(&s).unwrap();
        }
        let state = warm.save_state().unwrap();
        let inst_us = measure(|| {
            PluginInstance::instantiate(&cached, &art, &json, big).unwrap();
        });
        let restore_us = measure(|| {
            let mut i = PluginInstance::instantiate(&cached, &art, &json, big).unwrap();
            i.restore_state(&state).unwrap();
        });
        rows.push(Row {
            what: format!("soc-counting instantiate + init, {n} cells"),
            value: format!("{inst_us:.0} us"),
        });
        rows.push(Row {
            what: format!(
                "soc-counting instantiate + init + restore ({} KiB state), {n} cells",
                state.len() / 1024
            ),
            value: format!("{restore_us:.0} us"),
        });
    }

    // The canary over the demo's history depth.
    let (_, ws) = snapshots(128);
    let mut warm = PluginInstance::instantiate(&cached, &art, &json, sb).unwrap();
    let history = Arc::new(std::sync::Mutex::new(History::new(
        cfg.plugins.policy.canary_snapshots,
        cfg.plugins.policy.checkpoint_cycles,
    )));
    let mut s = ws.clone();
    for k in
        0..(cfg.plugins.policy.canary_snapshots + cfg.plugins.policy.checkpoint_cycles as usize)
    {
        s.timestamp_ms += 100;
        let out = warm.step_soc(&s).unwrap();
        let mut checkpoints: [Option<Arc<Vec<u8>>>; 4] = Default::default();
        if k % cfg.plugins.policy.checkpoint_cycles as usize == 0 {
            checkpoints[0] = Some(Arc::new(warm.save_state().unwrap()));
        }
        history.lock().unwrap().push(HistoryEntry {
            balance: w::BalanceInput {
                snapshot: s.clone(),
                cell_soc_pct: out.cell_soc_pct.clone(),
            },
            ems_soc: out.clone(),
            ems_soh: w::SohOutput {
                pack_soh_pct: 100.0,
                cell_capacity_ah: vec![],
                cell_resistance_mohm: vec![],
            },
            ems_limits: limits().1,
            minute_of_day: 0,
            outputs: Outputs {
                soc: Some(out),
                ..Outputs::default()
            },
            checkpoints,
        });
    }
    let mut report = None;
    let canary_us = measure(|| {
        let c = canary::run(
            &cached,
            art.clone(),
            json.clone(),
            sb,
            &history,
            cfg.plugins.policy.canary_snapshots,
            "bench".into(),
        );
        assert!(c.canary.passed);
        report = Some(c.canary);
    });
    let r = report.unwrap();
    rows.push(Row {
        what: format!(
            "canary: instantiate, restore, replay {} cycles, 128 cells",
            r.replayed
        ),
        value: format!("{:.2} ms", canary_us / 1000.0),
    });
}

/// Swaps by file change on a paced demo rack: latency and cycle times.
fn swaps_on_a_running_rack(rows: &mut Vec<Row>) {
    const SWAPS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let soc_file = dir.path().join("soc.wasm");
    let versions = [
        std::fs::read(component("soc-counting")).unwrap(),
        std::fs::read(component("soc-counting-next")).unwrap(),
    ];
    std::fs::write(&soc_file, &versions[0]).unwrap();
    let configs = root().join("configs");
    let mut text = std::fs::read_to_string(configs.join("demo-site.toml")).unwrap();
    text = text.replace(
        "\"../target/plugins/soc-counting.wasm\"",
        &format!("{soc_file:?}"),
    );
    let cfg = SiteConfig::parse(&text, &configs.join("demo-site.toml")).unwrap();
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let board = site
        .plugin_control(std::sync::Arc::new(bmshost::auth::Guard::new(None)))
        .board;
    let stop = Arc::new(AtomicBool::new(false));
    let swapping = Arc::new(AtomicBool::new(false));
    let (b2, stop2, sw2, file2) = (
        board.clone(),
        stop.clone(),
        swapping.clone(),
        soc_file.clone(),
    );
    let swapper = std::thread::spawn(move || {
        let shas: Vec<String> = versions
            .iter()
            .map(|v| bmshost::plugins::sha256_hex(v))
            .collect();
        // 5 s of quiet cycling first, as the baseline.
        std::thread::sleep(Duration::from_secs(5));
        sw2.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        for i in 0..SWAPS {
            let next = (i + 1) % 2;
            let t = Instant::now();
            let tmp = file2.with_extension("partial");
            std::fs::write(&tmp, &versions[next]).unwrap();
            std::fs::rename(&tmp, &file2).unwrap();
            while b2.running_sha256(Role::Soc).as_deref() != Some(shas[next].as_str()) {
                std::thread::sleep(Duration::from_millis(1));
            }
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        sw2.store(false, Ordering::Relaxed);
        stop2.store(true, Ordering::Relaxed);
        lat
    });
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    let mut last = Instant::now();
    let summary = site
        .run(
            &RunOptions {
                speed: Speed::Factor(1.0),
                duration_s: Some(600.0),
                print_status: false,
                stop: Some(stop),
            },
            |o| {
                if o.cycle.is_some() {
                    // Wall time between cycle ends: the jitter a PCS sees.
                    let gap = last.elapsed().as_secs_f64() * 1000.0;
                    last = Instant::now();
                    if swapping.load(Ordering::Relaxed) {
                        busy.push(gap);
                    } else {
                        quiet.push(gap);
                    }
                }
            },
        )
        .unwrap();
    let mut lat = swapper.join().unwrap();
    lat.sort_by(f64::total_cmp);
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, min {:.1}, max {:.1} ms (n={})",
            p(0.5),
            p(0.99),
            v[0],
            v[v.len() - 1],
            v.len()
        )
    };
    quiet.remove(0);
    rows.push(Row {
        what: format!("file change -> active, {SWAPS} swaps at 1x"),
        value: format!(
            "p50 {:.0} ms, max {:.0} ms",
            lat[lat.len() / 2],
            lat[lat.len() - 1]
        ),
    });
    rows.push(Row {
        what: "cycle-to-cycle interval, no swaps (100 ms cycle)".into(),
        value: stats(&mut quiet),
    });
    rows.push(Row {
        what: "cycle-to-cycle interval, during swaps".into(),
        value: stats(&mut busy),
    });
    rows.push(Row {
        what: "missed deadlines / cycle processing p99 / max".into(),
        value: format!(
            "{} / {} us / {} us",
            summary.missed_deadlines, summary.cycle_p99_us, summary.max_cycle_us
        ),
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not run
    // benches with harness = false unless asked.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cfg = SiteConfig::load(&root().join("configs/demo-site.toml")).unwrap();
    let engine = PluginEngine::new().unwrap();
    let mut rows = Vec::new();
    per_call(&cfg, &engine, &mut rows);
    lifecycle(&cfg, &mut rows);
    swaps_on_a_running_rack(&mut rows);
    println!();
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    for r in rows {
        println!("{:<width$}  {}", r.what, r.value);
    }
}
