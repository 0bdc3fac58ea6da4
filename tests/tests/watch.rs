//! The reloader's watches, paced at real time with `plugins.policy.watch`
//! on: a plugin file replaced on disk swaps its role; after a rollback the
//! same file applies again; an edit of one role's config section in the
//! site file reloads that role only, and its canary reports how far the
//! new config's outputs diverge. Alone in its test binary so no other test
//! competes for the CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bms_e2e::{component, edit_site, section, standalone_site, write_atomic};
use bmshost::plugins::events::PluginEventKind as K;
use bmshost::plugins::reload::Order;
use bmshost::plugins::{sha256_hex, Role};
use bmshost::site::{RackSite, RunOptions, Speed};

/// Ends the run when the operator thread finishes, passing or failing.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn file_and_site_watches_swap_the_changed_role_only() {
    let dir = tempfile::tempdir().unwrap();
    let soc_file = dir.path().join("soc.wasm");
    let versions = [
        std::fs::read(component("soc-counting")).unwrap(),
        std::fs::read(component("soc-counting-next")).unwrap(),
    ];
    let shas = versions.each_ref().map(|v| sha256_hex(v));
    std::fs::write(&soc_file, &versions[0]).unwrap();
    let site_path = standalone_site(dir.path(), |t| {
        section(t, &["plugins", "soc"]).insert(
            "path".into(),
            soc_file.to_string_lossy().into_owned().into(),
        );
    });
    let cfg = bmshost::config::SiteConfig::load(&site_path).unwrap();
    assert!(cfg.plugins.policy.watch, "watching is on by default");
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let control = site.plugin_control(std::sync::Arc::new(bmshost::auth::Guard::new(None)));

    let stop = Arc::new(AtomicBool::new(false));
    let operator = {
        let (board, orders, stop) = (control.board.clone(), control.orders.clone(), stop.clone());
        let (soc_file, site_path) = (soc_file.clone(), site_path.clone());
        std::thread::spawn(move || {
            let _stop = StopOnDrop(stop);
            let running = |role| board.running_sha256(role);
            let others = || {
                [Role::Soh, Role::Balancer]
                    .map(|r| board.statuses().into_iter().find(|s| s.role == r).unwrap())
                    .map(|s| (s.sha256, s.last_swap.map(|l| l.time_ms)))
            };
            // Let the contactors close and the history fill, so canaries
            // replay real cycles.
            wait_for("8 s of site time", || board.time_ms() >= 8_000);
            let untouched = others();

            write_atomic(&soc_file, &versions[1]);
            wait_for("the new SOC version", || {
                running(Role::Soc).as_deref() == Some(shas[1].as_str())
            });

            let (tx, rx) = std::sync::mpsc::channel();
            orders.send(Order::Rollback(Role::Soc, Some(tx))).unwrap();
            let r = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert!(r.is_ok(), "rollback: {r:?}");
            assert_eq!(running(Role::Soc).as_deref(), Some(shas[0].as_str()));

            // The rollback pins: the bytes it rolled back from, written
            // again (or a late event of the first write), are not applied.
            write_atomic(&soc_file, &versions[1]);
            let pinned_until = board.time_ms() + 3_000;
            while board.time_ms() < pinned_until {
                assert_eq!(
                    running(Role::Soc).as_deref(),
                    Some(shas[0].as_str()),
                    "the watcher undid the operator's rollback"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            // Different bytes lift the pin: a rebuild of the new version
            // (the same code with a custom section appended).
            let mut rebuilt = versions[1].clone();
            rebuilt.extend_from_slice(&[0, 6, 5, b'b', b'u', b'i', b'l', b'd']);
            let rebuilt_sha = sha256_hex(&rebuilt);
            write_atomic(&soc_file, &rebuilt);
            wait_for("the rebuilt SOC version", || {
                running(Role::Soc).as_deref() == Some(rebuilt_sha.as_str())
            });

            let ems_swap = || {
                board
                    .statuses()
                    .into_iter()
                    .find(|s| s.role == Role::Ems)
                    .and_then(|s| s.last_swap.map(|l| l.time_ms))
            };
            let before = ems_swap();
            edit_site(&site_path, |t| {
                section(t, &["plugins", "ems", "config"])
                    .insert("charge_power_w".into(), 20_000.0.into());
            });
            wait_for("the EMS role to reload", || ems_swap() != before);
            let ems = board
                .statuses()
                .into_iter()
                .find(|s| s.role == Role::Ems)
                .unwrap();
            let canary = ems.canary.expect("the EMS candidate ran a canary");
            assert!(canary.passed && canary.replayed > 0, "{canary:?}");
            assert_eq!(canary.divergence_unit, "W");
            assert!(
                canary.divergence.is_some_and(|d| d > 1000.0),
                "a halved charge power must diverge from the running config: {canary:?}"
            );
            assert_eq!(others(), untouched, "SOH and balancer must not reload");
            std::thread::sleep(Duration::from_millis(300));
        })
    };

    let summary = site
        .run(
            &RunOptions {
                speed: Speed::Factor(1.0),
                duration_s: Some(300.0),
                print_status: false,
                stop: Some(stop.clone()),
            },
            |_| {},
        )
        .unwrap();
    let operator_result = operator.join();
    assert!(operator_result.is_ok(), "operator thread failed");

    let swaps = |role| {
        summary
            .plugin_events
            .iter()
            .filter(|e| e.kind == K::Swapped && e.role == Some(role))
            .collect::<Vec<_>>()
    };
    let soc = swaps(Role::Soc);
    assert_eq!(soc.len(), 2, "{soc:#?}");
    assert!(
        soc.iter().all(|e| e.message.contains("plugin file change")),
        "{soc:#?}"
    );
    let ems = swaps(Role::Ems);
    assert_eq!(ems.len(), 1, "{ems:#?}");
    assert!(ems[0].message.contains("site file change"), "{:?}", ems[0]);
    assert!(swaps(Role::Soh).is_empty() && swaps(Role::Balancer).is_empty());
    assert_eq!(summary.missed_deadlines, 0);
}
