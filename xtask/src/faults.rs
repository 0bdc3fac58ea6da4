//! `cargo xtask faults`: run every fault scenario end to end and print the
//! fault matrix: scenario, expected action, observed action, reaction time
//! against its bound, and records lost (which must be 0).
//!
//! Each scenario is a test (table below) that asserts its own row and
//! appends it to `$BMS_FAULTS_OUT` (`bms_e2e::faults::row`). A scenario
//! whose test failed, or that wrote no row, fails the matrix.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (package, test binary, scenario tests): every test that writes rows.
const SCENARIOS: &[(&str, &str, &[&str])] = &[
    ("bms-e2e", "independence", &["a_plausible_but_wrong_soc_cannot_raise_the_allowed_charge_current"]),
    (
        "bms-e2e",
        "runtime",
        &[
            "plugin_panicking_on_step_is_restarted_then_quarantined",
            "plugin_in_an_infinite_loop_is_cut_off_at_its_deadline",
            "plugin_hogging_memory_hits_its_cap",
            "plugin_returning_nan_is_treated_as_a_crash",
            "a_state_bomb_is_refused_with_the_plugin_and_the_size",
            "a_log_flood_is_cut_to_the_allowance_and_the_plugin_keeps_serving",
            "validation_names_the_world_version_import_or_export_that_does_not_match",
            "cwasm_cache_is_used_and_a_corrupt_entry_is_recompiled_never_trusted",
            "plugin_state_survives_a_restart_and_a_corrupt_state_file_falls_back_to_init",
        ],
    ),
    (
        "bms-e2e",
        "protection",
        &[
            "over_temperature_ramp_in_one_module",
            "internal_short_pulls_one_cell_under_voltage",
            "overcharged_cell_opens_contactors",
            "silent_module_is_a_communication_fault",
            "a_replayed_message_is_a_communication_fault_within_max_bad_periods",
            "a_corrupted_current_frame_is_dropped_and_the_sensor_is_lost",
            "garbage_frames_are_dropped_and_their_module_is_lost",
            "out_of_range_values_are_dropped_and_their_module_is_lost",
            "current_sensor_stuck_at_zero_while_current_flows",
            "plugins_returning_nan_or_huge_values_are_contained",
            "plugin_that_traps_on_every_call_falls_back_and_protection_is_unaffected",
            "plugin_that_hangs_is_cut_off_at_its_deadline",
            "over_voltage_trips_on_time_in_real_time_while_plugins_hang",
        ],
    ),
    (
        "bms-e2e",
        "sunspec",
        &[
            "bad_requests_get_the_modbus_exception_codes_and_writes_are_authorised",
            "alm_rst_from_an_allowed_writer_cannot_clear_an_msl_latch_unless_the_site_opts_in",
            "under_local_control_an_allowed_writer_can_only_disconnect_and_the_mode_survives_a_restart",
        ],
    ),
    ("bms-e2e", "modbus_flood", &["connection_floods_and_descriptor_exhaustion_leave_the_server_answering"]),
    ("bms-e2e", "disk_full", &["a_latch_on_a_full_disk_holds_warns_and_reaches_the_disk_once_it_has_room"]),
    ("bms-e2e", "watchdog", &["hung_protection_thread_opens_the_contactors", "killed_protection_thread_opens_the_contactors"]),
    ("bmshost", "operator", &["kill_9_during_every_kind_of_write_loses_and_corrupts_nothing"]),
];

#[derive(serde::Deserialize)]
struct Row {
    scenario: String,
    expected: String,
    observed: String,
    reaction_ms: Option<u64>,
    bound_ms: Option<u64>,
    records_lost: u64,
}

pub fn run(root: &Path, python: &Path) -> Result<()> {
    let out = root.join("target/faults.jsonl");
    let _ = std::fs::remove_file(&out);
    let mut failed = Vec::new();
    for (package, binary, tests) in SCENARIOS {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .env("BMS_FAULTS_OUT", &out)
            .env("BMS_PYTHON", python)
            .args(["test", "-p", package, "--test", binary, "--"])
            .args(tests.iter().copied())
            .arg("--exact")
            .status()
            .with_context(|| format!("running the {binary} scenarios"))?;
        if !status.success() {
            failed.push(*binary);
        }
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let rows: Vec<Row> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", out.display()))?;
    print_table(&rows);
    let expected_rows: usize = SCENARIOS.iter().map(|s| s.2.len()).sum();
    if !failed.is_empty() {
        bail!("scenario tests failed in: {}", failed.join(", "));
    }
    if rows.len() < expected_rows {
        bail!(
            "{} rows for {expected_rows} scenario tests: a test wrote no row",
            rows.len()
        );
    }
    Ok(())
}

/// One table cell: the first line, pipes escaped, at most 160 characters.
fn cell(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().replace('|', "\\|");
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| scenario | expected action | observed action | reaction / bound (ms) | records lost |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        let timing = match (r.reaction_ms, r.bound_ms) {
            (Some(t), Some(b)) => format!("{t} / {b}"),
            _ => "–".to_string(),
        };
        println!(
            "| {} | {} | {} | {timing} | {} |",
            cell(&r.scenario),
            cell(&r.expected),
            cell(&r.observed),
            r.records_lost
        );
    }
}
