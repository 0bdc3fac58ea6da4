//! Costs on the control path, for a 128-cell rack (the demo site):
//! - one protection tick (all quantities, contactor machine, derating);
//! - acquisition: decoding one full set of BMU + current-sensor frames;
//! - one call of each reference plugin's `step` through wasmtime.
//!
//! `cargo bench -p bmshost --bench cycle` (needs `cargo xtask build-plugins`
//! for the plugin benches; they are skipped with a message otherwise).

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

use bmshost::config::SiteConfig;
use bmshost::io::can::acquire::Acquisition;
use bmshost::io::can::bus::{CanPort, VirtualBus};
use bmshost::io::can::dbc::Dbc;
use bmshost::io::can::mapping::RackMap;
use bmshost::io::contactor::SimulatedContactor;
use bmshost::plugins::{convert, PluginEngine, PluginInstance, Role};
use bmshost::protection::events::EventLog;
use bmshost::protection::Protection;
use bmshost::sim::Simulator;

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
    let mut sim = Simulator::new(&cfg, map.clone(), Box::new(bus.endpoint()), wiring).unwrap();
    let rx = bus.endpoint();
    let mut acq = Acquisition::new(&cfg, map);
    // One second of traffic: every frame type several times.
    sim.advance_to(1000);
    let mut frames = Vec::new();
    rx.drain(&mut frames);
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

criterion_group!(benches, bench);
criterion_main!(benches);
