//! Telemetry: the operator's status line and the end-of-run summary.
//!
//! Owns: formatting and the summary's JSON shape. Reads cycle reports; may
//! not change anything in the cycle.

use serde::Serialize;

use crate::control::CycleReport;
use crate::plugins::events::PluginEvent;
use crate::plugins::slot::SlotStatus;
use crate::plugins::PluginSet;
use crate::protection::contactor::ContactorState;
use crate::protection::events::EventRecord;
use crate::protection::{ClampStats, Latch};

/// One status line: SOC, SOH, cell V/T extremes, current, allowed
/// currents, bleeding cells and the active plugins.
pub fn status_line(time_s: f64, r: &CycleReport, plugins: &PluginSet) -> String {
    let s = &r.snapshot;
    let (vmin, vmax) = s.cell_voltage_range_v();
    let (tmin, tmax) = s.cell_temp_range_c();
    let opt = |v: Option<f32>| v.map_or("--".to_string(), |v| format!("{v:.1}%"));
    let plugin_list: Vec<String> = plugins
        .iter()
        .map(|p| format!("{}={}", p.role, p.label()))
        .collect();
    let b = &r.protection.soc;
    let disagree = r
        .protection
        .active
        .iter()
        .any(|a| a.quantity == crate::protection::Quantity::SocDisagreement);
    let protection_soc = format!(
        "(protection {}..{}{})",
        opt(b.native_min_pct),
        opt(b.native_max_pct),
        if disagree { ", DISAGREES" } else { "" }
    );
    format!(
        "t={:>6.0}s SOC {} {} SOH {} | V {:.3}..{:.3} V T {:.1}..{:.1} C | I {:>7.1} A (allow +{:.0}/-{:.0} A) | bleed {:>3} | {} | EMS {:+.1} kW ({}) | {}",
        time_s,
        opt(r.pack_soc_pct),
        protection_soc,
        opt(r.pack_soh_pct),
        vmin,
        vmax,
        tmin,
        tmax,
        s.current_a,
        r.allowed.charge_a,
        r.allowed.discharge_a,
        r.bleed.iter().filter(|b| **b).count(),
        contactor_label(r),
        r.ems_power_w / 1000.0,
        r.ems_reason,
        plugin_list.join(" "),
    )
}

/// One bank status line: the bank's SOC, limits and imbalance, then each
/// rack's SOC, current and contactors.
pub fn bank_line(
    t_ms: u64,
    names: &[String],
    racks: &[crate::io::modbus::RackReport<'_>],
    b: &crate::bank::BankState,
) -> String {
    let opt = |v: Option<f32>| v.map_or("--".to_string(), |v| format!("{v:.1}%"));
    let per_rack: Vec<String> = names
        .iter()
        .zip(racks)
        .map(|(n, r)| {
            format!(
                "{n} {} {:.0} A {}",
                opt(r.report.pack_soc_pct),
                r.report.snapshot.current_a,
                contactor_label(r.report)
            )
        })
        .collect();
    format!(
        "t={:>6.0}s BANK SOC {} | {}/{} racks connected | allow +{:.0}/-{:.0} A (imbalance {:.1} pp x{:.2}) | {}",
        t_ms as f64 / 1000.0,
        opt(b.soc_pct),
        b.connected,
        b.racks,
        b.allowed.charge_a,
        b.allowed.discharge_a,
        b.soc_spread_pct,
        b.imbalance_factor,
        per_rack.join(" | ")
    )
}

fn contactor_label(r: &CycleReport) -> String {
    let p = &r.protection;
    match (p.contactor_state, p.latched.first()) {
        (ContactorState::Closed, _) => "closed".into(),
        (s, Some(l)) => format!("{s:?} FAULT {:?}", l.quantity).to_uppercase(),
        (s, None) => format!("{s:?}").to_lowercase(),
    }
}

/// One event record as a line for operators.
pub fn event_line(e: &EventRecord) -> String {
    let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    format!(
        "#{:<4} t={:>9.2}s {:<9} {:<24} {:<4} at {:<14} value {:>8} limit {:>8} -> {}: {}",
        e.seq,
        e.time_ms as f64 / 1000.0,
        format!("{:?}", e.kind).to_lowercase(),
        e.quantity.map_or("-".to_string(), |q| format!("{q:?}")),
        e.tier.map_or("-", |t| t.key()),
        e.location
            .map_or("-".to_string(), |l| format!("m{} c{}", l.module, l.cell)),
        opt(e.value),
        opt(e.limit),
        e.action,
        e.message
    )
}

/// Estimation accuracy against the simulator's truth.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimAccuracy {
    /// Largest |estimated − true| cell SOC over the run, in percentage points.
    pub max_abs_soc_error_pct: f64,
    /// Cell and time of that largest error.
    pub max_abs_soc_error_cell: usize,
    pub max_abs_soc_error_time_s: f64,
    /// Largest |estimated − true| cell SOC at the end.
    pub final_abs_soc_error_pct: f64,
    /// Per cell: largest |estimated − true| SOC over the run, and at the
    /// end, in percentage points.
    pub max_abs_soc_error_pct_per_cell: Vec<f64>,
    pub final_abs_soc_error_pct_per_cell: Vec<f64>,
    /// Control cycles whose SOC estimate was compared with the truth, and
    /// cycles that had no estimate to compare (incomplete data).
    pub cycles_compared: u64,
    pub cycles_without_estimate: u64,
    /// True cell SOC spread (max − min) at start and end, in percentage points.
    pub initial_true_soc_spread_pct: f64,
    pub final_true_soc_spread_pct: f64,
    /// Mean and smallest true cell capacity, in Ah (SOH is the weakest
    /// cell's capacity over the rating).
    pub true_mean_capacity_ah: f64,
    pub true_min_capacity_ah: f64,
    /// Lowest and highest true mean SOC over the run, %.
    pub true_pack_soc_range_pct: (f64, f64),
    /// The simulated PCS (`[sim.pcs]`): energy charged and discharged,
    /// time the limits held the setpoint back, the EMS's share.
    pub pcs: Option<crate::sim::pcs::PcsStats>,
}

/// The end-of-run summary (`bmsd run --summary FILE`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub site: String,
    pub simulated_s: f64,
    pub wall_s: f64,
    pub cycles: u64,
    /// Cycles whose processing took longer than the cycle period.
    pub cycles_over_period: u64,
    /// Cycles that finished after their deadline: the cycle period in a
    /// lock-step run; the next cycle's scheduled start in a paced run.
    pub missed_deadlines: u64,
    /// Longest cycle processing time, in µs.
    pub max_cycle_us: u64,
    /// Median and 99th percentile of the cycle processing time, in µs.
    pub cycle_p50_us: u64,
    pub cycle_p99_us: u64,
    pub final_pack_soc_pct: Option<f32>,
    pub final_pack_soh_pct: Option<f32>,
    /// Measured cell-voltage spread (max − min) at the end, in mV, from
    /// each cell's voltage averaged over the last 30 s (sensor noise
    /// would otherwise dominate a single reading).
    pub final_cell_voltage_spread_mv: f32,
    pub final_cell_voltage_min_v: f32,
    pub final_cell_voltage_max_v: f32,
    pub final_contactor_state: ContactorState,
    /// MSL faults latched at the end.
    pub latched: Vec<Latch>,
    /// The protection event record of the run (tier transitions, latches,
    /// resets, contactor transitions).
    pub protection_events: Vec<EventRecord>,
    pub clamp: ClampStats,
    pub acquisition: crate::io::can::acquire::AcquireStats,
    /// Cell-seconds of bleeding over the run.
    pub bleed_cell_s: f64,
    /// Time current flowed in a direction protection allowed less of
    /// than its rating (derated), s.
    pub derated_s: f64,
    pub plugins: Vec<SlotStatus>,
    /// The plugin runtime's record of the run (loads, crashes, restarts,
    /// quarantines, swaps, rollbacks).
    pub plugin_events: Vec<PluginEvent>,
    /// Present only in simulation.
    pub sim: Option<SimAccuracy>,
    /// The contactor output link of a hardware site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<crate::io::coils::CoilLinkStatus>,
    /// Protection stopping or resuming, as the control side saw it.
    pub supervision: Vec<crate::site::supervise::SupervisionRecord>,
    /// How late the protection thread's ticks started (paced runs only).
    pub protection_jitter: Option<crate::protection::task::JitterStats>,
}

/// One plugin-runtime record as a line for operators.
pub fn plugin_event_line(e: &PluginEvent) -> String {
    format!(
        "#{:<4} t={:>9.2}s {:<8} {:<15} {:<24} {}",
        e.seq,
        e.time_ms as f64 / 1000.0,
        e.role.map_or("-".to_string(), |r| r.to_string()),
        serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        e.plugin.as_deref().unwrap_or("-"),
        e.message
    )
}
