//! Load: 50 concurrent Modbus TCP clients poll the SunSpec image (model 802
//! and the model 803 header, two requests per poll, back to back) while the
//! demo rack runs paced at its real cycle period. Prints request rate,
//! latency and the control cycle's deadline record.
//!
//! `cargo bench -p bmshost --bench modbus_load` (after `cargo xtask
//! build-plugins`); `BMS_LOAD_SECONDS` (default 60) and `BMS_LOAD_CLIENTS`
//! (default 50) change the run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmshost::config::SiteConfig;
use bmshost::site::{RackSite, RunOptions, Speed};
use tokio_modbus::prelude::*;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env("BMS_LOAD_SECONDS", 60);
    let clients = env("BMS_LOAD_CLIENTS", 50) as usize;
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut text = std::fs::read_to_string(configs.join("demo-site.toml")).unwrap();
    text.push_str("\n[modbus]\nbind = \"127.0.0.1:0\"\n");
    let cfg = SiteConfig::parse(&text, &configs.join("demo-site.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut site = RackSite::assemble_in(cfg, dir.path().to_path_buf()).unwrap();
    let server = site.start_modbus().unwrap().unwrap();
    let addr = server.local_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let load = {
        let (stop, latencies, errors) = (stop.clone(), latencies.clone(), errors.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let began = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..clients {
                    let (latencies, errors) = (latencies.clone(), errors.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
                        let mut mine = Vec::new();
                        while began.elapsed() < Duration::from_secs(seconds) {
                            let t = Instant::now();
                            let a = ctx.read_holding_registers(40070, 64).await;
                            let b = ctx.read_holding_registers(40134, 28).await;
                            if !matches!((a, b), (Ok(Ok(_)), Ok(Ok(_)))) {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            mine.push(t.elapsed().as_micros() as u32);
                        }
                        latencies.lock().unwrap().extend(mine);
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
            stop.store(true, Ordering::Relaxed);
        })
    };
    let summary = site
        .run(
            &RunOptions {
                speed: Speed::Factor(1.0),
                duration_s: Some(seconds as f64 + 30.0),
                print_status: false,
                stop: Some(stop),
            },
            |_| {},
        )
        .unwrap();
    load.join().unwrap();
    let board = site.modbus_board().unwrap();
    drop(server);
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let p = |q: f64| l[((l.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let requests = board.stats.requests.load(Ordering::Relaxed);
    println!(
        "modbus load: {clients} clients x {seconds} s, polls of 2 requests (64 + 28 registers)"
    );
    println!(
        "  requests served          {requests} ({:.0}/s)",
        requests as f64 / seconds as f64
    );
    println!(
        "  poll latency             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    println!(
        "  failed polls             {}",
        errors.load(Ordering::Relaxed)
    );
    println!(
        "  control cycles           {} , missed deadlines {}, processing p50 {} us, p99 {} us, max {} us",
        summary.cycles, summary.missed_deadlines, summary.cycle_p50_us, summary.cycle_p99_us, summary.max_cycle_us
    );
    // The figures are the result; these are the pass conditions.
    let failed = errors.load(Ordering::Relaxed);
    if summary.missed_deadlines > 0 || failed > 0 {
        eprintln!(
            "modbus load FAILED: {} missed control deadlines, {failed} failed polls",
            summary.missed_deadlines
        );
        std::process::exit(1);
    }
}
