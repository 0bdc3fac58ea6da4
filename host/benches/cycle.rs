//! Costs on the control path:
//! - one protection tick (all quantities, contactor machine, derating) for
//!   the 128-cell demo rack, a 416-cell rack, and a 4,160-cell bank
//!   (10 racks × 416, one protection instance per rack, as `bmsd` runs it);
//! - acquisition: decoding one full set of BMU + current-sensor frames;
//! - one call of each reference plugin's `step` through wasmtime;
//! - a table of the latency from the arrival of the sample that completes
//!   an over-voltage MSL debounce to the open command on the contactor
//!   output, through the real simulator frames, DBC decoding, snapshot
//!   publication and protection task.
//!
//! `cargo bench -p bmshost --bench cycle` (needs `cargo xtask build-plugins`
//! for the plugin benches; they are skipped with a message otherwise).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};

use bmshost::config::SiteConfig;
use bmshost::io::can::acquire::Acquisition;
use bmshost::io::can::bus::{CanPort, VirtualBus};
use bmshost::io::can::dbc::Dbc;
use bmshost::io::can::frontend::CanFrontEnd;
use bmshost::io::can::mapping::RackMap;
use bmshost::io::contactor::SimulatedContactor;
use bmshost::plugins::{convert, PluginEngine, PluginInstance, Role};
use bmshost::protection::events::EventLog;
use bmshost::protection::task::{ProtectionTask, Shared};
use bmshost::protection::Protection;
use bmshost::sim::{Fault, FaultKind};
use bmshost::snapshot::{CommStatus, PackSnapshot};

fn site() -> SiteConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml");
    SiteConfig::load(&p).expect("demo config")
}

fn bench(c: &mut Criterion) {
    let cfg = site();
    let dbc = Arc::new(Dbc::from_file(cfg.resolve(&cfg.can.dbc)).unwrap());
    let map = Arc::new(RackMap::resolve(&cfg, dbc).unwrap());
    let bus = VirtualBus::new();
    let (_contactor, wiring) = SimulatedContactor::new();
    let mut sim =
        bmshost::sim::for_site(&cfg, map.dbc.clone(), Box::new(bus.endpoint()), wiring).unwrap();
    let rx = bus.endpoint();
    let mut acq = Acquisition::new(&cfg, map);
    // One second of traffic: every frame type several times.
    sim.advance_to(1000);
    let mut frames = Vec::new();
    rx.drain_stamped(&mut frames);
    let per_100ms = frames.len() / 10;
    let window: Vec<_> = frames[..per_100ms].to_vec();
    acq.ingest(&frames, 1000);
    let snap = acq.snapshot(1000, true);

    c.bench_function(
        &format!("acquire: decode {per_100ms} frames (100 ms of traffic)"),
        |b| b.iter(|| acq.ingest(&window, 1000)),
    );

    let mut p = Protection::new(cfg.protection.clone(), 500, EventLog::memory());
    let mut t = 1000;
    c.bench_function("protection tick, 128 cells", |b| {
        b.iter(|| {
            t += 10;
            let mut s = snap.clone();
            s.timestamp_ms = t;
            s.current_changed_ms = t;
            p.tick(&s, Some(50.0), t).allowed
        })
    });

    // A 416-cell rack (26 modules × 16 cells), alone and ten of them.
    let rack = synthetic_rack(416, 16);
    let mut racks: Vec<Protection> = (0..10)
        .map(|_| Protection::new(cfg.protection.clone(), 500, EventLog::memory()))
        .collect();
    let mut t = 1000;
    c.bench_function("protection tick, 416 cells (one rack)", |b| {
        b.iter(|| {
            t += 10;
            let mut s = rack.clone();
            s.timestamp_ms = t;
            s.current_changed_ms = t;
            racks[0].tick(&s, Some(50.0), t).allowed
        })
    });
    let mut t = 1000;
    c.bench_function(
        "protection tick, 4,160 cells (10 racks × 416, one period)",
        |b| {
            b.iter(|| {
                t += 10;
                let mut s = rack.clone();
                s.timestamp_ms = t;
                s.current_changed_ms = t;
                racks
                    .iter_mut()
                    .map(|p| p.tick(&s, Some(50.0), t).allowed.charge_a)
                    .sum::<f32>()
            })
        },
    );

    let engine = PluginEngine::new().unwrap();
    let wsnap = convert::snapshot(&snap);
    for (role, name) in [(Role::Soc, "soc-counting"), (Role::Soh, "soh-capacity")] {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{name}.wasm"));
        if !path.is_file() {
            eprintln!(
                "skipping {name}: {} missing (cargo xtask build-plugins)",
                path.display()
            );
            continue;
        }
        let json = serde_json::to_string(&cfg.plugins.slot(role).config).unwrap();
        let mut inst =
            PluginInstance::load(&engine, role, &path, &json, cfg.plugins.sandbox_for(role))
                .unwrap();
        let mut s = wsnap.clone();
        c.bench_function(&format!("{name} step (wasm), 128 cells"), |b| {
            b.iter(|| {
                s.timestamp_ms += 100;
                match role {
                    Role::Soc => inst.step_soc(&s).map(|_| ()),
                    _ => inst.step_soh(&s).map(|_| ()),
                }
                .unwrap()
            })
        });
    }
}

/// A healthy rack snapshot of `cells` cells, contactors closed.
fn synthetic_rack(cells: usize, per_module: u32) -> PackSnapshot {
    let cell_voltage_v: Vec<f32> = (0..cells).map(|i| 3.30 + (i % 7) as f32 * 0.002).collect();
    let pack_voltage_v = cell_voltage_v.iter().sum();
    PackSnapshot {
        timestamp_ms: 0,
        current_a: 50.0,
        pack_voltage_v,
        link_voltage_v: pack_voltage_v,
        current_changed_ms: 0,
        cell_temp_c: (0..cells).map(|i| 25.0 + (i % 5) as f32 * 0.5).collect(),
        cell_voltage_v,
        cells_per_module: per_module,
        module_comm: vec![CommStatus::Ok; cells / per_module as usize],
        cell_bleed_a: vec![0.0; cells],
        current_comm: CommStatus::Ok,
        complete: true,
        contactors_closed: true,
    }
}

/// One trip on the demo rack, lock-step as `bmsd` runs a simulated site:
/// the simulator's frames are decoded, the snapshot published, and the
/// protection task drives the simulated contactor output. A cell reads
/// +500 mV (beyond the 3.65 V MSL) from `fault_s`.
///
/// Returns the simulated time from the first frame carrying the
/// over-voltage to the open command, and the wall time the host spent
/// on the period that opened (ingest + snapshot + protection tick +
/// output).
fn trip_trial(cfg: &SiteConfig, map: &Arc<RackMap>, fault_s: f64) -> (u64, Duration) {
    let mut cfg = cfg.clone();
    let sim_cfg = cfg.sim.as_mut().expect("demo site has [sim]");
    sim_cfg.faults = vec![Fault {
        at_s: fault_s,
        kind: FaultKind::CellVoltageOffset {
            cell: 5,
            offset_mv: 500.0,
        },
    }];
    let bus = VirtualBus::new();
    let (contactor, wiring) = SimulatedContactor::new();
    let mut sim = bmshost::sim::for_site(
        &cfg,
        map.dbc.clone(),
        Box::new(bus.endpoint()),
        wiring.clone(),
    )
    .unwrap();
    let acq = Acquisition::new(&cfg, map.clone());
    let period = cfg.protection.period_ms;
    let limit_v = cfg.protection.cell_over_voltage_v.msl.unwrap().limit;
    let shared = Shared::new(acq.snapshot(0, false));
    let front_end = CanFrontEnd::new(acq, Box::new(bus.endpoint()), None, 1.5);
    let protection = Protection::new(cfg.protection.clone(), 500, EventLog::memory());
    let mut task = ProtectionTask::new(
        protection,
        Box::new(contactor),
        Box::new(front_end),
        shared.clone(),
    );
    let mut arrived = None;
    let mut t = 0;
    loop {
        t += period;
        assert!(t < 60_000, "no trip within 60 s");
        sim.advance_to(t);
        // Drain, decode, freeze, protect, drive: one protection period.
        let start = Instant::now();
        task.tick(t);
        let opened = !wiring.commanded().main;
        let spent = start.elapsed();
        let beyond = shared
            .snapshot()
            .cell_voltage_v
            .iter()
            .any(|v| *v > limit_v);
        if beyond && arrived.is_none() {
            assert!(!opened, "contactors must be closed when the fault starts");
            arrived = Some(t);
        }
        if let (Some(at), true) = (arrived, opened) {
            return (t - at, spent);
        }
    }
}

fn latency_table() {
    let cfg = site();
    let dbc = Arc::new(Dbc::from_file(cfg.resolve(&cfg.can.dbc)).unwrap());
    let map = Arc::new(RackMap::resolve(&cfg, dbc).unwrap());
    let delay_ms = cfg.protection.cell_over_voltage_v.msl.unwrap().delay_ms;
    let trials = 50;
    let mut sim_ms = Vec::new();
    let mut host = Vec::new();
    for k in 0..trials {
        // Different phases between the fault, the BMU frames and the tick.
        let (ms, spent) = trip_trial(&cfg, &map, 10.0 + k as f64 * 0.007);
        sim_ms.push(ms);
        host.push(spent);
    }
    sim_ms.sort_unstable();
    host.sort_unstable();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!();
    println!("sample arrival -> contactor open command (demo rack, {trials} trips, over-voltage MSL delay {delay_ms} ms, period {} ms)", cfg.protection.period_ms);
    println!(
        "| measure                                   | min      | p50      | p99      | max      |"
    );
    println!(
        "|-------------------------------------------|----------|----------|----------|----------|"
    );
    println!(
        "| sim ms from the first beyond-limit frame  | {:>8} | {:>8} | {:>8} | {:>8} |",
        sim_ms[0],
        sim_ms[sim_ms.len() / 2],
        sim_ms[((sim_ms.len() - 1) as f64 * 0.99).round() as usize],
        sim_ms[sim_ms.len() - 1]
    );
    println!(
        "| host time in the opening period (µs)      | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} |",
        host[0].as_secs_f64() * 1e6,
        pct(&host, 0.5).as_secs_f64() * 1e6,
        pct(&host, 0.99).as_secs_f64() * 1e6,
        host[host.len() - 1].as_secs_f64() * 1e6
    );
    println!("On a live site the protection thread adds up to one period of scheduling between the frame's arrival and the tick that reads it.");
    assert!(
        sim_ms
            .iter()
            .all(|ms| *ms >= delay_ms && *ms <= delay_ms + cfg.protection.period_ms),
        "a trip outside delay .. delay + one period: {sim_ms:?}"
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    latency_table();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
