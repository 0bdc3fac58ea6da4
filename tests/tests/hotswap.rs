//! 100 hot swaps between two versions of the SOC plugin, by replacing the
//! component file on disk while the demo rack runs at its real cycle
//! period. Alone in its test binary so no other test competes for the CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bms_e2e::{component, section, standalone_site, write_atomic};
use bmshost::plugins::events::PluginEventKind as K;
use bmshost::plugins::Role;
use bmshost::site::{RackSite, RunOptions, Speed};

const SWAPS: usize = 100;

#[test]
fn hundred_hot_swaps_miss_no_deadline_and_keep_soc_continuous() {
    let dir = tempfile::tempdir().unwrap();
    let soc_file = dir.path().join("soc.wasm");
    let versions = [
        std::fs::read(component("soc-counting")).unwrap(),
        std::fs::read(component("soc-counting-next")).unwrap(),
    ];
    std::fs::write(&soc_file, &versions[0]).unwrap();
    let site_path = standalone_site(dir.path(), |t| {
        section(t, &["plugins", "soc"]).insert(
            "path".into(),
            soc_file.to_string_lossy().into_owned().into(),
        );
    });
    let cfg = bmshost::config::SiteConfig::load(&site_path).unwrap();
    let cycle_ms = cfg.control.cycle_ms;
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let control = site.plugin_control();

    // The operator's side: replace the file, wait until the new version
    // serves, measure, repeat.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (board, stop, soc_file) = (control.board.clone(), stop.clone(), soc_file.clone());
        std::thread::spawn(move || {
            let shas = versions.each_ref().map(|v| bmshost::plugins::sha256_hex(v));
            let mut latencies = Vec::new();
            for i in 0..SWAPS {
                let next = (i + 1) % 2;
                let began = Instant::now();
                write_atomic(&soc_file, &versions[next]);
                while board.running_sha256(Role::Soc).as_deref() != Some(shas[next].as_str()) {
                    assert!(
                        began.elapsed() < Duration::from_secs(20),
                        "swap {i} did not happen"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                latencies.push(began.elapsed());
            }
            // Record a few more cycles after the last swap.
            std::thread::sleep(Duration::from_millis(500));
            stop.store(true, Ordering::Relaxed);
            latencies
        })
    };

    let mut socs: Vec<(String, Option<f32>, f32)> = Vec::new();
    let summary = site
        .run(
            &RunOptions {
                speed: Speed::Factor(1.0),
                // Ends when the swapper is done.
                duration_s: Some(600.0),
                print_status: false,
                stop: Some(stop.clone()),
            },
            |o| {
                let Some(c) = o.cycle else { return };
                let v = control
                    .board
                    .statuses()
                    .into_iter()
                    .find(|s| s.role == Role::Soc)
                    .and_then(|s| s.version)
                    .unwrap_or_default();
                socs.push((v, c.pack_soc_pct, c.snapshot.current_a));
            },
        )
        .unwrap();
    let latencies = swapper.join().expect("swapper");
    assert_eq!(latencies.len(), SWAPS);

    // Not one cycle missed its deadline.
    assert_eq!(summary.missed_deadlines, 0, "{summary:?}");
    assert_eq!(summary.cycles_over_period, 0);
    let swapped = summary
        .plugin_events
        .iter()
        .filter(|e| e.kind == K::Swapped)
        .count();
    let refused: Vec<_> = summary
        .plugin_events
        .iter()
        .filter(|e| e.kind == K::SwapRefused)
        .collect();
    assert_eq!(swapped, SWAPS, "refused: {refused:?}");

    // SOC continuity: at each swap the change is within one cycle of
    // counting at the measured current (plus sensor noise margin).
    let mut swaps_seen = 0;
    for w in socs.windows(2) {
        let ((va, sa, _), (vb, sb, ib)) = (&w[0], &w[1]);
        if va == vb {
            continue;
        }
        swaps_seen += 1;
        let (a, b) = (sa.unwrap(), sb.unwrap());
        let step_pp = ib.abs() * cycle_ms as f32 / 1000.0 / 3600.0 / 280.0 * 100.0;
        assert!(
            (b - a).abs() <= step_pp * 2.0 + 0.01,
            "SOC jumped {a} -> {b} at a swap ({va} -> {vb}), one step is {step_pp} pp"
        );
    }
    assert_eq!(swaps_seen, SWAPS);

    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{SWAPS} swaps: file change -> active p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms; \
         cycle time p50 {} us, p99 {} us, max {} us over {} cycles; 0 missed deadlines",
        ms[ms.len() / 2],
        ms[ms.len() * 9 / 10],
        ms[ms.len() - 1],
        summary.cycle_p50_us,
        summary.cycle_p99_us,
        summary.max_cycle_us,
        summary.cycles
    );
}
