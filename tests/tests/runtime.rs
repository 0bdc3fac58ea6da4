//! The plugin runtime end to end, with real components on the simulated
//! rack: hostile plugins, validation errors, the `.cwasm` cache, state
//! persistence across restarts, refused candidates and rollback.

use std::sync::mpsc::Receiver;

use bms_e2e::{assemble, component, demo_site, edit_site, section, standalone_site, use_plugin};
use bmshost::config::SandboxConfig;
use bmshost::plugins::events::PluginEventKind as K;
use bmshost::plugins::reload::Order;
use bmshost::plugins::runtime::CodeSource;
use bmshost::plugins::slot::SlotState;
use bmshost::plugins::{Artifact, PluginEngine, Role};
use bmshost::protection::contactor::ContactorState;
use bmshost::site::{RackSite, RunOptions, Speed};
use bmshost::telemetry::Summary;

fn policy(t: &mut toml::Table) {
    let p = section(t, &["plugins"]);
    let mut pol = toml::Table::new();
    pol.insert("restart_backoff_ms".into(), 500.into());
    pol.insert("quarantine_crashes".into(), 3.into());
    pol.insert("quarantine_window_s".into(), 600.into());
    pol.insert("checkpoint_cycles".into(), 5.into());
    pol.insert("watch".into(), false.into());
    p.insert("policy".into(), toml::Value::Table(pol));
}

fn hostile_soc(mode: &str) -> toml::Table {
    let mut c = toml::Table::new();
    c.insert("mode".into(), mode.into());
    // 20 good cycles first: a SOC estimate and checkpoints exist.
    c.insert("after_steps".into(), 20.into());
    c
}

fn run(site: &mut RackSite, seconds: f64) -> Summary {
    site.run(
        &RunOptions {
            speed: Speed::Max,
            duration_s: Some(seconds),
            print_status: false,
            stop: None,
        },
        |_| {},
    )
    .expect("run")
}

/// One hostile SOC plugin on the demo rack for 30 s.
fn hostile(mode: &str, expect: &str) {
    let cfg = demo_site(|t| {
        policy(t);
        use_plugin(t, "soc", "hostile-soc", hostile_soc(mode));
        if mode == "hog" {
            // Only the memory cap may stop the hog: a CPU deadline far
            // beyond the time to fill 32 MiB, however loaded the machine
            // (so the cycle is longer too: the deadlines must fit in it).
            section(t, &["control"]).insert("cycle_ms".into(), 200.into());
            let mut sb = toml::Table::new();
            sb.insert("deadline_ms".into(), 100.into());
            section(t, &["plugins", "soc"]).insert("sandbox".into(), sb.into());
        }
    });
    let cycles = 30_000 / cfg.control.cycle_ms;
    let (mut site, dir) = assemble(cfg);
    let s = run(&mut site, 30.0);
    let lost = bms_e2e::faults::records_lost(dir.path(), &s.protection_events);

    // The host kept cycling.
    assert_eq!(s.cycles, cycles, "{mode}");
    let soc = s.plugins.iter().find(|p| p.role == Role::Soc).unwrap();
    // The plugin was restarted after its first crash, then quarantined.
    assert!(
        matches!(soc.state, SlotState::Quarantined { .. }),
        "{mode}: {soc:?}"
    );
    assert_eq!(soc.crashes, 3, "{mode}: {soc:?}");
    assert!(soc.restarts >= 2, "{mode}: {soc:?}");
    let alarm = soc.alarm.as_deref().expect("quarantine raises an alarm");
    assert!(
        alarm.contains(expect),
        "{mode}: alarm `{alarm}` lacks `{expect}`"
    );
    let kinds: Vec<K> = s
        .plugin_events
        .iter()
        .filter(|e| e.role == Some(Role::Soc))
        .map(|e| e.kind)
        .collect();
    for k in [K::Loaded, K::Crashed, K::Restarted, K::Quarantined] {
        assert!(kinds.contains(&k), "{mode}: no {k:?} in {kinds:?}");
    }
    // The fallback counted on from the plugin's last good estimate (50 %).
    let soc_pct = s.final_pack_soc_pct.expect("fallback SOC");
    assert!((soc_pct - 50.0).abs() < 1.0, "{mode}: SOC {soc_pct}");
    // Protection was unaffected: no fault, contactors closed as usual.
    assert!(s.latched.is_empty(), "{mode}: {:?}", s.latched);
    assert_eq!(s.final_contactor_state, ContactorState::Closed, "{mode}");
    // The other roles never noticed.
    for p in s.plugins.iter().filter(|p| p.role != Role::Soc) {
        assert_eq!(p.state, SlotState::Active, "{mode}: {p:?}");
        assert_eq!(p.crashes, 0, "{mode}: {p:?}");
    }
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        &format!("hostile plugin: SOC {mode}"),
        "cut off, restarted, quarantined after 3 crashes; fallback serves; no trip",
        format!("every cycle ran, contactors closed; alarm: {alarm}"),
        lost,
    ));
}

#[test]
fn plugin_panicking_on_step_is_restarted_then_quarantined() {
    // The trap names the panic, with the plugin's own message forwarded
    // by the SDK's panic hook through `log`.
    hostile("trap", "hostile-soc: deliberate panic at t=");
}

#[test]
fn plugin_in_an_infinite_loop_is_cut_off_at_its_deadline() {
    hostile("hang", "exceeded its CPU deadline of 20 ms");
}

#[test]
fn plugin_slower_than_its_deadline_is_cut_off() {
    hostile("slow", "exceeded its CPU deadline of 20 ms");
}

#[test]
fn plugin_hogging_memory_hits_its_cap() {
    hostile("hog", "exceeded its memory cap of 32 MiB");
}

#[test]
fn plugin_returning_nan_is_treated_as_a_crash() {
    hostile("nan", "cell-soc-pct[0] = NaN");
}

#[test]
fn plugins_that_cannot_load_leave_the_fallback_serving_with_an_alarm() {
    for (name, expect) in [
        ("hostile-wasi", "imports `wasi:random/random@0.2.0`"),
        ("hostile-balancer", "is a `balancer` plugin"),
    ] {
        let cfg = demo_site(|t| {
            policy(t);
            use_plugin(t, "soc", name, toml::Table::new());
        });
        let (mut site, _dir) = assemble(cfg);
        let errors = site.plugin_load_errors();
        assert!(
            errors.len() == 1 && errors[0].contains(expect),
            "{errors:?}"
        );
        let s = run(&mut site, 10.0);
        assert_eq!(s.cycles, 100);
        let soc = s.plugins.iter().find(|p| p.role == Role::Soc).unwrap();
        assert_eq!(soc.state.name(), "fallback", "{soc:?}");
        let alarm = soc.alarm.as_deref().unwrap_or_default();
        assert!(alarm.contains(expect), "{name}: {alarm}");
        assert!(s.latched.is_empty());
        assert_eq!(s.final_contactor_state, ContactorState::Closed);
        assert!(s
            .plugin_events
            .iter()
            .any(|e| e.kind == K::LoadFailed && e.message.contains(expect)));
    }
}

fn load(engine: &PluginEngine, role: Role, bytes: &[u8]) -> Result<(), String> {
    Artifact::from_bytes(engine, role, std::path::Path::new("candidate.wasm"), bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn validation_names_the_world_version_import_or_export_that_does_not_match() {
    let engine = PluginEngine::new().unwrap();
    let read = |n: &str| std::fs::read(component(n)).unwrap();

    // Wrong world: a balancer offered as a SOC estimator.
    let err = load(&engine, Role::Soc, &read("hostile-balancer")).unwrap_err();
    assert!(
        err.contains("is a `balancer` plugin") && err.contains("soc-estimator"),
        "{err}"
    );

    // A WASI import.
    let err = load(&engine, Role::Soc, &read("hostile-wasi")).unwrap_err();
    assert!(
        err.contains("imports `wasi:random/random@0.2.0`") && err.contains("does not provide"),
        "{err}"
    );

    // An incompatible bms:plugin version: the same component, renamed to
    // 0.9.0 (same length, so the binary stays well-formed).
    let mut bytes = read("soc-counting");
    let (from, to) = (b"bms:plugin/types@0.1.0", b"bms:plugin/types@0.9.0");
    let mut replaced = 0;
    for i in 0..bytes.len() - from.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    let err = load(&engine, Role::Soc, &bytes).unwrap_err();
    assert!(
        err.contains("bms:plugin@0.9.0 is not semver-compatible")
            && err.contains("bms:plugin@0.1.0"),
        "{err}"
    );

    // Missing exports.
    let empty = wat::parse_str("(component)").unwrap();
    let err = load(&engine, Role::Soh, &empty).unwrap_err();
    assert!(
        err.contains("does not export `info`, `init`, `step`, `save-state`, `restore-state`")
            && err.contains("soh-estimator"),
        "{err}"
    );

    // Not a component at all.
    let err = load(&engine, Role::Soc, b"\0asm garbage").unwrap_err();
    assert!(err.contains("not a valid component"), "{err}");

    // The real thing passes, for every role.
    for (name, role) in bms_e2e::PLUGINS.iter().zip(Role::ALL) {
        load(&engine, role, &read(name)).unwrap();
    }
    for (scenario, observed) in [
        (
            "hostile plugin: wrong world (a balancer as SOC)",
            "refused: is a `balancer` plugin",
        ),
        (
            "hostile plugin: WASI import",
            "refused: imports `wasi:random/random@0.2.0`",
        ),
    ] {
        bms_e2e::faults::row(bms_e2e::faults::untimed(
            scenario,
            "refused at validation; the running version stays",
            observed.into(),
            0,
        ));
    }
}

#[test]
fn cwasm_cache_is_used_and_a_corrupt_entry_is_recompiled_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new()
        .unwrap()
        .with_cache(dir.path().join("cache"));
    let path = component("soc-counting");
    let a = Artifact::load(&engine, Role::Soc, &path).unwrap();
    assert_eq!(a.source, CodeSource::Compiled);
    let entry = engine.cache().unwrap().entry_path(&a.sha256);
    assert!(entry.is_file());
    let b = Artifact::load(&engine, Role::Soc, &path).unwrap();
    assert_eq!(b.source, CodeSource::Cache);

    let good = std::fs::read(&entry).unwrap();
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("flipped byte", {
            let mut c = good.clone();
            let mid = c.len() / 2;
            c[mid] ^= 0xff;
            c
        }),
        ("truncated", good[..good.len() / 3].to_vec()),
        ("foreign file", b"not a cwasm at all".to_vec()),
    ];
    // Oversized (sparse, so the test costs no disk): refused unread.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .unwrap();
    f.set_len(bmshost::plugins::cache::MAX_ENTRY_BYTES + 1)
        .unwrap();
    drop(f);
    let c = Artifact::load(&engine, Role::Soc, &path).unwrap();
    assert_eq!(c.source, CodeSource::Compiled, "oversized");
    assert!(
        c.cache_note
            .as_deref()
            .unwrap_or_default()
            .contains("over the"),
        "{:?}",
        c.cache_note
    );
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        good,
        "rewritten after the oversized one"
    );
    for (what, bytes) in corruptions {
        std::fs::write(&entry, &bytes).unwrap();
        let c = Artifact::load(&engine, Role::Soc, &path).unwrap();
        assert_eq!(c.source, CodeSource::Compiled, "{what}");
        let note = c.cache_note.as_deref().unwrap_or_default();
        assert!(
            note.contains("checksum mismatch") || note.contains("bad header"),
            "{what}: {note}"
        );
        // The entry was rewritten from the validated component.
        assert_eq!(std::fs::read(&entry).unwrap(), good, "{what}");
        // And the instance works.
        let mut i = bmshost::plugins::PluginInstance::instantiate(
            &engine,
            &c,
            &serde_json::to_string(&demo_site(|_| {}).plugins.soc.config).unwrap(),
            SandboxConfig::default(),
        )
        .unwrap();
        i.save_state().unwrap();
    }
    // An entry from another host (valid format, another key) is refused.
    {
        let other_dir = tempfile::tempdir().unwrap();
        let other = PluginEngine::new()
            .unwrap()
            .with_cache(other_dir.path().join("cache"));
        let theirs = Artifact::load(&other, Role::Soc, &path).unwrap();
        let foreign = std::fs::read(other.cache().unwrap().entry_path(&theirs.sha256)).unwrap();
        assert_ne!(foreign, good, "another host's key makes another entry");
        std::fs::write(&entry, &foreign).unwrap();
        let c = Artifact::load(&engine, Role::Soc, &path).unwrap();
        assert_eq!(c.source, CodeSource::Compiled, "foreign entry loaded");
        assert!(c
            .cache_note
            .as_deref()
            .unwrap_or_default()
            .contains("not written by this host"));
        // The file name reveals neither the component nor the engine.
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(&a.sha256[..16]), "{name}");
    }
    // A cache directory others may write is not trusted at all: a planted
    // entry is deleted, nothing is loaded or stored, and the directory is
    // left as found (tightening it would bless what was planted).
    {
        use std::os::unix::fs::PermissionsExt;
        let cache_dir = dir.path().join("cache");
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(&entry, &good).unwrap();
        for _ in 0..2 {
            let c = Artifact::load(&engine, Role::Soc, &path).unwrap();
            assert_eq!(c.source, CodeSource::Compiled);
            assert!(
                c.cache_note
                    .as_deref()
                    .unwrap_or_default()
                    .contains("not trusted"),
                "{:?}",
                c.cache_note
            );
            assert!(!entry.exists(), "the planted entry is deleted");
        }
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777, "left for the operator");
        // The operator closes it: the cache works again.
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            Artifact::load(&engine, Role::Soc, &path).unwrap().source,
            CodeSource::Compiled
        );
        assert_eq!(
            Artifact::load(&engine, Role::Soc, &path).unwrap().source,
            CodeSource::Cache
        );
    }
    // Invalid components never reach the cache.
    let n = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    let _ = Artifact::load(&engine, Role::Soc, &component("hostile-wasi"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
        n
    );
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "cache entries: tampered, truncated, foreign, oversized, planted",
        "rejected and deleted; compiled from the validated component",
        "all refused (HMAC, size, directory trust); planted entry deleted; cache rebuilt".into(),
        0,
    ));
}

#[test]
fn plugin_state_survives_a_restart_and_a_corrupt_state_file_falls_back_to_init() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    // 240 s rest, then charging at 0.6C: SOC rises ~1 pp per 100 s.
    let cfg = || demo_site(policy);
    let mut a = RackSite::assemble_in(cfg(), state.clone()).unwrap();
    let first = run(&mut a, 600.0);
    drop(a);
    let saved = first.final_pack_soc_pct.unwrap();
    assert!(state.join("plugins/soc.state").is_file());

    // Restart: the sim starts over at its initial SOC, the plugin carries on
    // from its saved state.
    let first_soc = |site: &mut RackSite| {
        let mut soc = None;
        site.run(
            &RunOptions {
                speed: Speed::Max,
                duration_s: Some(1.0),
                print_status: false,
                stop: None,
            },
            |o| {
                if let Some(c) = o.cycle {
                    soc = soc.or(c.pack_soc_pct);
                }
            },
        )
        .unwrap();
        soc.expect("a SOC")
    };
    let mut b = RackSite::assemble_in(cfg(), state.clone()).unwrap();
    let restored = first_soc(&mut b);
    drop(b);
    assert!(
        (restored - saved).abs() < 0.2,
        "restored SOC {restored} vs saved {saved}"
    );
    let journal = plugin_journal(&state);
    assert!(journal
        .iter()
        .any(|e| e.kind == K::StateRestored && e.role == Some(Role::Soc)));

    // A fresh start (no state) begins from OCV, well below the saved SOC.
    let mut fresh = RackSite::assemble_in(cfg(), dir.path().join("other")).unwrap();
    let from_ocv = first_soc(&mut fresh);
    drop(fresh);
    assert!(
        saved - from_ocv > 3.0,
        "saved {saved} vs OCV start {from_ocv}"
    );

    // Corrupt the file: detected by checksum, reported, plugin starts
    // from init; nothing crashes.
    let file = state.join("plugins/soc.state");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let mut c = RackSite::assemble_in(cfg(), state.clone()).unwrap();
    let after = first_soc(&mut c);
    drop(c);
    assert!(
        (after - from_ocv).abs() < 0.5,
        "corrupt state must not be used: {after} vs init {from_ocv}"
    );
    let journal = plugin_journal(&state);
    let corrupt = journal
        .iter()
        .find(|e| e.kind == K::StateCorrupt)
        .expect("a state_corrupt record");
    assert!(
        corrupt.message.contains("checksum mismatch") && corrupt.message.contains("soc.state"),
        "{}",
        corrupt.message
    );
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "plugin state file tampered",
        "refused (HMAC bound to role and host); plugin starts from init",
        format!("state_corrupt recorded: {}", corrupt.message),
        0,
    ));
}

fn plugin_journal(state_dir: &std::path::Path) -> Vec<bmshost::plugins::events::PluginEvent> {
    bmshost::journal::Journal::read(&state_dir.join("plugin-events.jsonl"))
        .unwrap()
        .records
}

/// Steps the test drives while the rack runs, one after the other.
enum Step {
    Edit(&'static str, Option<toml::Table>, &'static str),
    Rollback,
}

#[test]
fn bad_candidates_never_replace_a_working_plugin_and_rollback_restores_the_previous() {
    let dir = tempfile::tempdir().unwrap();
    let site_path = standalone_site(dir.path(), policy);
    let cfg = bmshost::config::SiteConfig::load(&site_path).unwrap();
    let soc_config = cfg.plugins.soc.config.as_table().unwrap().clone();
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let control = site.plugin_control(std::sync::Arc::new(bmshost::auth::Guard::new(None)));
    let path_of = |n: &str| component(n).to_string_lossy().into_owned();

    let mut picky = toml::Table::new();
    picky.insert("mode".into(), "picky".into());
    let mut trap = toml::Table::new();
    trap.insert("mode".into(), "trap".into());
    let steps = vec![
        // Wrong world: refused at validation.
        Step::Edit("hostile-balancer", None, "is a `balancer` plugin"),
        // Panics on its first step: refused by the canary.
        Step::Edit("hostile-soc", Some(trap), "canary FAILED"),
        // Cannot read the running state; policy `refuse`.
        Step::Edit("hostile-soc", Some(picky), "rejected the running state"),
        // A good new version: accepted, state handed over.
        Step::Edit(
            "soc-counting-next",
            None,
            "soc-counting 0.1.0 -> soc-counting-next 0.2.0",
        ),
        Step::Rollback,
    ];
    let mut steps = steps.into_iter();
    let mut pending: Option<(
        Receiver<Result<String, bmshost::plugins::reload::Refused>>,
        &'static str,
    )> = None;
    let mut outcomes = Vec::new();
    let mut labels = Vec::new();
    let mut socs: Vec<Option<f32>> = Vec::new();
    let mut done = false;
    site.run(
        &RunOptions {
            speed: Speed::Max,
            duration_s: Some(300.0),
            print_status: false,
            stop: None,
        },
        |o| {
            let Some(c) = o.cycle else { return };
            socs.push(c.pack_soc_pct);
            let status = control.board.statuses();
            let soc = status.iter().find(|s| s.role == Role::Soc).unwrap();
            labels.push((soc.name.clone().unwrap(), soc.state.clone()));
            if o.t_ms < 10_000 || done {
                return;
            }
            if let Some((rx, expect)) = &pending {
                match rx.try_recv() {
                    Ok(r) => {
                        outcomes.push((r, *expect));
                        pending = None;
                    }
                    Err(_) => {
                        // The reloader runs on its own thread; give it
                        // wall time while simulated time stands still.
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        return;
                    }
                }
            }
            match steps.next() {
                Some(Step::Edit(name, config, expect)) => {
                    let config = config.unwrap_or_else(|| soc_config.clone());
                    edit_site(&site_path, |t| {
                        let slot = section(t, &["plugins", "soc"]);
                        slot.insert("path".into(), path_of(name).into());
                        slot.insert("config".into(), toml::Value::Table(config));
                    });
                    pending = Some((control.reload.reload(Role::Soc), expect));
                }
                Some(Step::Rollback) => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    control
                        .orders
                        .send(Order::Rollback(Role::Soc, Some(tx)))
                        .unwrap();
                    pending = Some((rx, "soc-counting-next 0.2.0 -> soc-counting 0.1.0"));
                }
                None => done = true,
            }
        },
    )
    .unwrap();
    assert!(done, "the steps did not finish: {outcomes:?}");
    let results: Vec<_> = outcomes.iter().map(|(r, _)| r.clone()).collect();
    for (i, (r, expect)) in outcomes.iter().enumerate() {
        let text = match r {
            Ok(t) | Err(bmshost::plugins::reload::Refused(t)) => t,
        };
        assert!(text.contains(expect), "step {i}: `{text}` lacks `{expect}`");
        assert_eq!(r.is_ok(), i >= 3, "step {i}: {r:?}");
    }
    // The SOC role was served by a plugin, never the fallback, throughout,
    // and only by soc-counting or its next version.
    for (name, state) in &labels {
        assert_eq!(*state, SlotState::Active, "{results:?}");
        assert!(
            name.starts_with("soc-counting"),
            "{name} served: {results:?}"
        );
    }
    assert_eq!(labels.last().unwrap().0, "soc-counting");
    // Continuity across the swap and the rollback: the state was handed
    // over, so SOC moves by no more than one cycle of counting (at rest,
    // noise only).
    let mut changes = 0;
    for i in 1..labels.len() {
        if labels[i].0 != labels[i - 1].0 {
            changes += 1;
            let (a, b) = (socs[i - 1].unwrap(), socs[i].unwrap());
            assert!((b - a).abs() < 0.05, "SOC jumped {a} -> {b} at a swap");
        }
    }
    assert_eq!(changes, 2, "one swap and one rollback");
}

#[test]
fn a_new_version_crashing_during_its_probation_is_rolled_back_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let site_path = standalone_site(dir.path(), policy);
    let cfg = bmshost::config::SiteConfig::load(&site_path).unwrap();
    let probation = cfg.plugins.policy.probation_cycles;
    let mut site = RackSite::assemble_in(cfg, dir.path().join("state")).unwrap();
    let control = site.plugin_control(std::sync::Arc::new(bmshost::auth::Guard::new(None)));
    // Passes the canary (at most canary + checkpoint cycles of replay),
    // then panics well inside its probation.
    let mut late_trap = toml::Table::new();
    late_trap.insert("mode".into(), "trap".into());
    late_trap.insert("after_steps".into(), 40.into());
    assert!(40 < probation);
    let mut pending = None;
    let mut swapped_at = None;
    let mut names = Vec::new();
    site.run(
        &RunOptions {
            speed: Speed::Max,
            duration_s: Some(120.0),
            print_status: false,
            stop: None,
        },
        |o| {
            let Some(_) = o.cycle else { return };
            let soc = control
                .board
                .statuses()
                .into_iter()
                .find(|s| s.role == Role::Soc)
                .unwrap();
            names.push(soc.name.clone().unwrap());
            if o.t_ms == 10_000 {
                edit_site(&site_path, |t| {
                    let slot = section(t, &["plugins", "soc"]);
                    slot.insert(
                        "path".into(),
                        component("hostile-soc")
                            .to_string_lossy()
                            .into_owned()
                            .into(),
                    );
                    slot.insert("config".into(), toml::Value::Table(late_trap.clone()));
                });
                pending = Some(control.reload.reload(Role::Soc));
            }
            if let Some(rx) = &pending {
                match rx.try_recv() {
                    Ok(r) => {
                        assert!(r.is_ok(), "{r:?}");
                        swapped_at = Some(names.len());
                        pending = None;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
        },
    )
    .unwrap();
    let at = swapped_at.expect("the swap happened");
    assert!(names[at..].iter().any(|n| n == "hostile-soc"));
    assert_eq!(names.last().unwrap(), "soc-counting", "rolled back");
    let events = control.events.lock().unwrap().since(0, usize::MAX).unwrap();
    let rollback = events
        .iter()
        .find(|e| e.kind == K::RolledBack)
        .expect("an automatic rollback");
    assert!(
        rollback
            .message
            .contains("hostile-soc 0.1.0 -> soc-counting 0.1.0"),
        "{}",
        rollback.message
    );
    assert!(events
        .iter()
        .any(|e| e.kind == K::Crashed && e.message.contains("probation")));
    // Rolled back, not quarantined: the good version serves.
    let soc = control
        .board
        .statuses()
        .into_iter()
        .find(|s| s.role == Role::Soc)
        .unwrap();
    assert_eq!(soc.state, SlotState::Active, "{soc:?}");
    // And pinned, as an operator's rollback is: the watcher does not put
    // the crashed version back while its file is unchanged.
    let pinned = control
        .board
        .pinned(Role::Soc)
        .expect("the crashed version is pinned");
    assert_ne!(
        Some(&pinned),
        soc.sha256.as_ref(),
        "pinned: the version rolled back from"
    );
}

#[test]
fn a_log_flood_is_cut_to_the_allowance_and_the_plugin_keeps_serving() {
    use bmshost::plugins::{convert, PluginInstance};
    let engine = PluginEngine::new().unwrap();
    let json = r#"{"mode": "log-flood"}"#;
    let path = component("hostile-soc");
    let sandbox = SandboxConfig {
        deadline_ms: 2_000,
        ..SandboxConfig::default()
    };
    let mut p = PluginInstance::load(&engine, Role::Soc, &path, json, sandbox).unwrap();
    let snap = convert::snapshot(&bmshost::snapshot::PackSnapshot::empty(128, 16));
    for step in 1..=5u64 {
        let out = p.step_soc(&snap).unwrap();
        assert_eq!(out.pack_soc_pct, 50.0);
        // 16 per call reach the host log; the rest are counted.
        assert_eq!(p.logs_dropped(), step * (2000 - 16), "step {step}");
    }
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "hostile plugin: log flood (2,000 messages per step)",
        "16 per call reach the log, the rest are counted and dropped; the plugin serves",
        format!(
            "{} dropped over 5 steps; every step answered",
            p.logs_dropped()
        ),
        0,
    ));
}

#[test]
fn a_state_bomb_is_refused_with_the_plugin_and_the_size() {
    use bmshost::plugins::{PluginError, PluginInstance};
    let engine = PluginEngine::new().unwrap();
    // 2 MiB: over the default 1 MiB cap, and quick to build (a bigger
    // bomb only costs the plugin's own CPU deadline).
    let json = r#"{"mode": "state-bomb", "state_bytes": 2097152}"#;
    let sandbox = SandboxConfig {
        memory_mib: 64,
        deadline_ms: 2_000,
        ..SandboxConfig::default()
    };
    let path = component("hostile-soc");
    let mut p = PluginInstance::load(&engine, Role::Soc, &path, json, sandbox).unwrap();
    match p.save_state() {
        Err(PluginError::BadOutput {
            plugin, message, ..
        }) => {
            assert_eq!(plugin, "hostile-soc");
            assert!(
                message.contains("2097152 bytes") && message.contains("1024 KiB"),
                "{message}"
            );
        }
        other => panic!(
            "a 24 MiB state was not refused: {:?}",
            other.map(|b| b.len())
        ),
    }
    // Under the cap it is an ordinary state.
    let small = r#"{"mode": "state-bomb", "state_bytes": 1000}"#;
    let mut p = PluginInstance::load(&engine, Role::Soc, &path, small, sandbox).unwrap();
    assert_eq!(p.save_state().unwrap().len(), 1000);
    bms_e2e::faults::row(bms_e2e::faults::untimed(
        "hostile plugin: state bomb (2 MiB save_state)",
        "refused at the cap, naming the plugin and the size",
        "refused: 2097152 bytes over the 1024 KiB cap".into(),
        0,
    ));
}
