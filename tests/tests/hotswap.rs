//! 100 hot swaps between two versions of the SOC plugin, by replacing the
//! component file on disk while the demo rack runs at its real cycle
//! period, under charge current so that a lost state would show as a
//! jump. Alone in its test binary so no other test competes for the CPU.

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
        // Charging from the start (current flows once the contactors
        // close): every cycle counts, so SOC moves by a known step.
        let profile: toml::Value =
            toml::from_str::<toml::Table>("p = [{ duration_s = 1800, current_a = 168.0 }]")
                .unwrap()["p"]
                .clone();
        section(t, &["sim"]).insert("profile".into(), profile);
    });
    let cfg = bmshost::config::SiteConfig::load(&site_path).unwrap();
    let cycle_ms = cfg.control.cycle_ms;
    let capacity_ah = cfg.plugins.soc.config["capacity_ah"].as_float().unwrap() as f32;
    let flowing_after_ms = 8_000;
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let control = site.plugin_control(std::sync::Arc::new(bmshost::auth::Guard::new(None)));

    // The operator's side: replace the file, wait until the new version
    // serves, measure, repeat.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (board, stop, soc_file) = (control.board.clone(), stop.clone(), soc_file.clone());
        std::thread::spawn(move || {
            let shas = versions.each_ref().map(|v| bmshost::plugins::sha256_hex(v));
            let mut latencies = Vec::new();
            // Start once the contactors are closed and current flows.
            while board.time_ms() < flowing_after_ms {
                std::thread::sleep(Duration::from_millis(10));
            }
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
    for e in summary
        .plugin_events
        .iter()
        .filter(|e| e.kind == K::Swapped)
    {
        assert!(
            e.message.contains("state handed over"),
            "swap without state handoff: {}",
            e.message
        );
    }

    // SOC continuity. Each cycle under current, SOC moves by one counting
    // step, I·dt/capacity. How far a cycle's change is from that step
    // (noise, coulombic efficiency, bleeding) is measured on the cycles
    // without a swap; a swap must stay within the same deviation. A
    // plugin that lost its state would re-estimate from OCV under load
    // and jump by far more.
    let deviation = |a: f32, b: f32, i_a: f32| {
        let step_pp = i_a * cycle_ms as f32 / 1000.0 / 3600.0 / capacity_ah * 100.0;
        ((b - a) - step_pp).abs()
    };
    let (mut normal_max, mut swap_devs) = (0f32, Vec::new());
    for w in socs.windows(2) {
        let ((va, sa, _), (vb, sb, ib)) = (&w[0], &w[1]);
        let (Some(a), Some(b)) = (sa, sb) else {
            continue;
        };
        if *ib < 100.0 {
            assert!(va == vb, "a swap ({va} -> {vb}) while no current flowed");
            continue;
        }
        let d = deviation(*a, *b, *ib);
        if va == vb {
            normal_max = normal_max.max(d);
        } else {
            swap_devs.push((d, *a, *b, va.clone(), vb.clone()));
        }
    }
    assert_eq!(swap_devs.len(), SWAPS);
    let one_step_pp = 168.0 * cycle_ms as f32 / 1000.0 / 3600.0 / capacity_ah * 100.0;
    for (d, a, b, va, vb) in &swap_devs {
        assert!(
            *d <= normal_max + 0.05 * one_step_pp,
            "SOC {a} -> {b} at a swap ({va} -> {vb}) deviates {d} pp from the counting \
             step; cycles without a swap deviate at most {normal_max} pp (one step {one_step_pp} pp)"
        );
    }
    println!(
        "SOC continuity: swap deviation max {:.2e} pp, non-swap max {normal_max:.2e} pp, one step {one_step_pp:.2e} pp",
        swap_devs.iter().map(|s| s.0).fold(0f32, f32::max)
    );

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
