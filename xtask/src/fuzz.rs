//! `cargo xtask fuzz [--seconds N]`: run every fuzz target for N seconds
//! (default 10) and print a table of executions and crashes.
//!
//! The targets are bolero tests named `fuzz_*` in the crates that own the
//! parsers (table below). `cargo test` runs each for bolero's default of
//! one second; here each gets `BOLERO_RANDOM_TEST_TIME_MS`. Bolero's random
//! engine runs on stable Rust; for coverage-guided runs use `cargo bolero
//! test --engine libfuzzer` on the same targets (needs cargo-bolero).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (package, test target, test name): every fuzz target.
const TARGETS: &[(&str, &str, &str)] = &[
    ("bms-can", "--test=fuzz", "fuzz_dbc_parse"),
    ("bms-can", "--test=fuzz", "fuzz_frame_decode"),
    ("bms-journal", "--test=fuzz", "fuzz_journal_lines"),
    (
        "bms-plugin-runtime",
        "--lib",
        "persist::tests::fuzz_state_blob",
    ),
    (
        "bmshost",
        "--lib",
        "io::modbus::server::tests::fuzz_modbus_request",
    ),
    ("bmshost", "--lib", "config::tests::fuzz_site_config"),
];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let seconds: u64 = match args {
        [] => 10,
        [flag, n] if flag == "--seconds" => n
            .parse()
            .with_context(|| format!("--seconds {n}: not a whole number"))?,
        _ => bail!("usage: cargo xtask fuzz [--seconds N]"),
    };
    let mut rows = Vec::new();
    for (package, target, test) in TARGETS {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .env("BOLERO_RANDOM_TEST_TIME_MS", (seconds * 1000).to_string())
            .args(["test", "-p", package, target, "--", "--exact", test])
            .args(["--nocapture", "--test-threads=1"])
            .output()
            .with_context(|| format!("running the fuzz target {test}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let executions = stdout
            .lines()
            // With --nocapture the line may follow the test's own name.
            .find_map(|l| l.split_once("fuzz target ").map(|(_, rest)| rest))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.strip_suffix(" executions"))
            .and_then(|n| n.parse::<u64>().ok());
        let name = test.rsplit("::").next().unwrap_or(test);
        match (out.status.success(), executions) {
            (true, Some(n)) => rows.push((name, n, 0)),
            (true, None) => bail!("{name}: ran but printed no execution count:\n{stdout}"),
            (false, _) => {
                eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
                rows.push((name, executions.unwrap_or(0), 1));
            }
        }
    }
    println!(
        "\n{:<22} {:>12} {:>10} {:>8}",
        "target", "executions", "per s", "crashes"
    );
    for (name, n, crashes) in &rows {
        println!("{name:<22} {n:>12} {:>10} {crashes:>8}", n / seconds.max(1));
    }
    let crashed = rows.iter().filter(|r| r.2 > 0).count();
    if crashed > 0 {
        bail!("{crashed} fuzz target(s) crashed; the input is in the output above");
    }
    Ok(())
}
