//! Assembles a site from its config and runs it: the DBC, the rack mapping,
//! the bus, the plugins, the controller, the protection task and (in
//! simulation) the simulated rack, on one clock.
//!
//! A site with `[sim]` drives the simulated rack and its contactors. A
//! hardware site (no `[sim]`) reads its rack on `can.interface` and drives
//! real coils through `[outputs]`; it runs paced at real time only.
//!
//! Two ways to run:
//! - **Lock-step** ([`Speed::Max`]): one thread steps the simulator,
//!   acquisition and protection every protection period on a virtual clock,
//!   and the plugin cycle every control period. Deterministic; used by the
//!   demo and most tests.
//! - **Paced** ([`Speed::Factor`]): protection, with acquisition, runs on
//!   its own thread at its fixed period on a scaled wall clock, as on a real
//!   site; the simulated rack runs on a thread of its own
//!   ([`simthread`]); the main thread runs the plugin cycle and watches
//!   protection's liveness ([`supervise`]).
//!
//! Owns: wiring and the run loops (pacing, status lines, summary). May not
//! touch: anything inside the stages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::bank::{Bank, RackHandle};
use crate::clock::{Clock, SiteClock};
use crate::config::OutputsConfig;
use crate::config::SiteConfig;
use crate::control::{Controller, CycleReport};
use crate::io::can::acquire::Acquisition;
use crate::io::can::bus::{CanPort, VirtualBus};
use crate::io::can::dbc::Dbc;
use crate::io::can::frontend::CanFrontEnd;
use crate::io::can::mapping::RackMap;
use crate::io::can::port::BusPort;
use crate::io::can::socketcan::SocketCanBus;
use crate::io::coils::{CoilLink, CoilLinkStatus, ModbusCoilOutput};
use crate::io::contactor::{ContactorOutput, SimulatedContactor};
use crate::plugins::reload::{ReloadHandle, Reloader, ReloaderParts};
use crate::plugins::{PluginEngine, PluginManager, Role};
use crate::protection::events::EventLog;
use crate::protection::task::{self, Liveness, ProtectionTask, ProtectionThread, Shared};
use crate::protection::{HoldKind, HoldSource, Latch, Protection, ResetError};
use crate::sim::{SimTruth, Simulator};
use crate::snapshot::PackSnapshot;
use crate::telemetry::{self, SimAccuracy, Summary};

pub mod bank;
mod field;
pub mod simthread;
pub mod supervise;

pub use bank::BankSite;
pub use field::FieldIo;

/// Window over which the final cell voltages are averaged, in ms.
const FINAL_AVERAGE_MS: u64 = 30_000;

/// Cycle times kept for the summary's percentiles (8 MiB; about 29 h at
/// 100 ms): a hardware site runs for months.
const MAX_CYCLE_SAMPLES: u64 = 1 << 20;

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the host can cycle (lock-step).
    Max,
    /// This many simulated seconds per wall-clock second (paced, threaded).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("speed must be a number > 0 or `max`, got `{s}`")),
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub speed: Speed,
    /// Simulated seconds to run; default: the sim profile's length.
    pub duration_s: Option<f64>,
    /// Print status lines to stdout.
    pub print_status: bool,
    /// Set to end the run at the next cycle (a signal handler, a test).
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            speed: Speed::Max,
            duration_s: None,
            print_status: false,
            stop: None,
        }
    }
}

/// What a run observer sees every protection tick.
pub struct Observation<'a> {
    pub t_ms: u64,
    /// Present on ticks that ended a control cycle.
    pub cycle: Option<&'a CycleReport>,
    /// The snapshot protection evaluated and its resulting status. In a
    /// paced run the status is the latest the protection thread published.
    pub snapshot: &'a PackSnapshot,
    pub status: &'a crate::protection::Status,
    /// The simulated rack (none on a hardware site).
    pub sim: Option<&'a mut Simulator>,
    /// The protection thread of a paced run (fault injection in tests).
    pub thread: Option<&'a ProtectionThread>,
}

/// One rack: simulated, or on hardware.
pub struct RackSite {
    pub cfg: SiteConfig,
    pub controller: Controller,
    /// The simulated rack; `None` on a hardware site. Paced, it runs on
    /// its own thread (`sim_thread`).
    pub sim: Option<simthread::SharedSim>,
    sim_thread: Option<simthread::SimThread>,
    /// The contactor output link of a hardware site.
    outputs: Option<CoilLink>,
    pub shared: Arc<Shared>,
    /// The site clock (shared by every rack of a bank): set by the run
    /// loop in lock-step, scaled wall time when paced.
    pub clock: Arc<SiteClock>,
    /// Protection's liveness, watched from the control side.
    pub liveness: Liveness,
    supervisor: supervise::Supervisor,
    /// Protection, shared with the protection thread and the control API.
    pub protection: Arc<Mutex<Protection>>,
    /// A copy of protection's event record for readers (the control API):
    /// reading it never takes `protection`'s lock.
    pub events: Arc<Mutex<crate::journal::Feed<crate::protection::events::EventRecord>>>,
    /// Every attempt to change this site (`audit.jsonl`).
    pub audit: Arc<crate::audit::Audit>,
    /// Present until a run starts: lock-step runs tick it directly, paced
    /// runs move it onto its thread.
    task: Option<ProtectionTask>,
    thread: Option<ProtectionThread>,
    /// First event sequence number of this run (the record file also holds
    /// earlier runs).
    first_seq: u64,
    first_plugin_seq: u64,
    reloader: Reloader,
    /// The host's side of a simulated PCS (`[sim.pcs]`).
    pcs_driver: Option<crate::sim::PcsDriver>,
    /// Modbus and the PCS link of a single-rack site (a rack of a bank has
    /// none: the bank's serves every rack).
    field: FieldIo,
}

impl RackSite {
    /// Build everything from a validated config. `state_dir` overrides the
    /// config's (tests use a temporary directory).
    pub fn assemble(cfg: SiteConfig) -> Result<Self> {
        let state_dir = cfg.resolve(&cfg.site.state_dir);
        Self::assemble_in(cfg, state_dir)
    }

    pub fn assemble_in(cfg: SiteConfig, state_dir: PathBuf) -> Result<Self> {
        Self::assemble_with(cfg, state_dir, RackParts::default())
    }

    /// As [`Self::assemble_in`], with the parts a rack of a bank shares
    /// with the others.
    pub fn assemble_with(cfg: SiteConfig, state_dir: PathBuf, parts: RackParts) -> Result<Self> {
        let dbc = Arc::new(
            load_dbc(&cfg).with_context(|| format!("{}: `can.dbc`", cfg.source.display()))?,
        );
        let map = Arc::new(RackMap::resolve(&cfg, dbc)?);
        warn_unsupervised(&cfg, &map);
        let clock = parts.clock.unwrap_or_default();
        let mut pcs_driver = None;
        let (host_port, contactor, sim, outputs) = if cfg.sim.is_some() {
            if parts.port.is_some() {
                bail!("a site with [sim] makes its own CAN ports");
            }
            let bus = parts
                .bus
                .unwrap_or_else(|| VirtualBus::with_clock(clock.clone()));
            let (host_port, sim_port) = ports(&cfg, &bus, &clock)?;
            let (contactor, wiring) = SimulatedContactor::new();
            pcs_driver = crate::sim::PcsDriver::for_site(&cfg, &wiring);
            let sim = crate::sim::for_site(&cfg, map.dbc.clone(), sim_port, wiring)?;
            let contactor: Box<dyn ContactorOutput> = Box::new(contactor);
            (host_port, contactor, Some(Arc::new(Mutex::new(sim))), None)
        } else {
            let host_port = match parts.port {
                Some(port) => port,
                None => hardware_port(&cfg, &clock)?,
            };
            let (contactor, link) = outputs(&cfg)?;
            (host_port, contactor, None, Some(link))
        };
        let engine = match parts.engine {
            Some(e) => e,
            None => PluginEngine::new()
                .context("starting the wasm engine")?
                .with_cache(state_dir.join("cache")),
        };
        let plugins = PluginManager::start(&engine, &cfg.plugins, &cfg.base_dir, Some(&state_dir))?;
        let first_plugin_seq = plugins.first_seq;
        let reloader = Reloader::spawn(ReloaderParts {
            engine: engine.clone(),
            cfg: cfg.clone(),
            history: plugins.history.clone(),
            orders: plugins.orders(),
            journal: plugins.journal.clone(),
            board: plugins.board.clone(),
        })
        .context("starting the plugin reloader")?;
        let events_path = state_dir.join("events.jsonl");
        let mut log = EventLog::open_with(&events_path, cfg.journal)?;
        let events = Arc::new(Mutex::new(log.feed()));
        let data_timeout_ms = cfg.can.module_timeout_ms.max(cfg.can.current_timeout_ms);
        let first_seq = log.records().last().map_or(1, |r| r.seq + 1);
        let protection = Protection::new(cfg.protection.clone(), data_timeout_ms, log);
        let shared = Shared::new(PackSnapshot::empty(
            cfg.rack.cell_count(),
            cfg.rack.cells_per_module,
        ));
        let front_end = CanFrontEnd::new(
            Acquisition::new(&cfg, map),
            host_port,
            cfg.can.heartbeat.as_ref().map(|h| h.period_ms),
            cfg.rack.bleed_resistance_ohm,
        );
        let task = ProtectionTask::new(protection, contactor, Box::new(front_end), shared.clone());
        let controller = Controller::new(&cfg, shared.clone(), plugins);
        let liveness = Liveness::new(
            shared.clone(),
            clock.clone(),
            cfg.protection.period_ms,
            cfg.protection.supervision_periods,
        );
        let supervisor = supervise::Supervisor::open(&cfg.site.name, liveness.clone(), &state_dir)?;
        let bank = Arc::new(Bank::new(
            None,
            vec![RackHandle {
                name: cfg.site.name.clone(),
                capacity_ah: cfg.rack.capacity_ah,
                shared: shared.clone(),
                liveness: liveness.clone(),
            }],
        ));
        let audit = Arc::new(crate::audit::Audit::open(&state_dir, cfg.journal)?);
        let field = FieldIo::new(
            &cfg,
            bank,
            vec![(task.protection.clone(), shared.clone())],
            audit.clone(),
            &state_dir,
        );
        Ok(Self {
            protection: task.protection.clone(),
            events,
            audit,
            task: Some(task),
            thread: None,
            first_seq,
            first_plugin_seq,
            field,
            cfg,
            controller,
            sim,
            sim_thread: None,
            outputs,
            shared,
            clock,
            liveness,
            supervisor,
            reloader,
            pcs_driver,
        })
    }

    /// The contactor output link's status (hardware sites).
    pub fn outputs_status(&self) -> Option<CoilLinkStatus> {
        self.outputs.as_ref().map(CoilLink::status)
    }

    /// Start the SunSpec Modbus TCP server of `[modbus]` (None without
    /// one). The image is refreshed every control cycle of [`Self::run`].
    pub fn start_modbus(&self) -> Result<Option<crate::io::modbus::server::SunSpecServer>> {
        self.field.start_modbus(&self.cfg)
    }

    /// Start the PCS link of `[pcs]` (None without one).
    pub fn start_pcs_link(&self) -> Result<Option<crate::io::modbus::pcs::PcsLink>> {
        self.field.start_pcs_link(&self.cfg)
    }

    /// The register board, when `[modbus]` is configured.
    pub fn modbus_board(&self) -> Option<Arc<crate::io::modbus::server::RegisterBoard>> {
        self.field.board()
    }

    /// Local or remote control of the site (`LocRemCtl`).
    pub fn control_mode(&self) -> Arc<crate::io::modbus::mode::ControlMode> {
        self.field.mode.clone()
    }

    /// Operator reloads (also what the control API uses).
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reloader.handle()
    }

    /// What the control API needs to list and steer plugins.
    pub fn plugin_control(&self, guard: Arc<crate::auth::Guard>) -> crate::api::PluginControl {
        crate::api::PluginControl {
            board: self.controller.plugins.board.clone(),
            guard,
            audit: self.audit.clone(),
            events: self.controller.plugins.feed.clone(),
            orders: self.controller.plugins.orders(),
            reload: self.reload_handle(),
        }
    }

    /// Errors of enabled plugins that failed to load (their roles run on
    /// the native fallback).
    pub fn plugin_load_errors(&self) -> Vec<String> {
        self.controller
            .plugins
            .slots
            .iter()
            .filter(|p| self.cfg.plugins.slot(p.role).enabled && p.info().is_none())
            .filter_map(|p| p.last_error.clone())
            .collect()
    }

    /// The protection thread of a paced run, for fault injection in tests.
    pub fn protection_thread(&self) -> Option<&ProtectionThread> {
        self.thread.as_ref()
    }

    /// Authorised reset of latched faults at host time `now_ms` (the caller
    /// has verified the operator's credential); `by` names who and how.
    pub fn reset(&self, now_ms: u64, by: &str) -> Result<Vec<Latch>, ResetError> {
        let snap = self.shared.snapshot();
        self.protection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reset(&snap, now_ms, by)
    }

    /// Run for the configured duration; `observe` sees every protection
    /// tick (tests use it to time trips against the simulator's truth).
    pub fn run(
        &mut self,
        opts: &RunOptions,
        mut observe: impl FnMut(Observation<'_>),
    ) -> Result<Summary> {
        if self.sim.is_none() && opts.speed != Speed::Factor(1.0) {
            bail!(
                "{}: a hardware site (no [sim]) runs in real time; --speed must be 1",
                self.cfg.source.display()
            );
        }
        let mut run = self.start_run(opts)?;
        for tick in 1..=run.ticks {
            if let Some(clock) = run.paced.then(|| self.clock.scaled()).flatten() {
                std::thread::sleep(clock.wall_until(tick * run.period_ms));
            }
            if self.step(&mut run, tick, &mut observe)? == Step::Stopped {
                break;
            }
        }
        self.finish(run)
    }

    /// Prepare a run: paced (`opts.speed` a factor), the site clock starts
    /// on scaled wall time and protection moves onto its thread.
    pub fn start_run(&mut self, opts: &RunOptions) -> Result<Run> {
        let period_ms = self.cfg.protection.period_ms;
        let cycle_ms = self.cfg.control.cycle_ms;
        let per_cycle = (cycle_ms / period_ms).max(1);
        // A hardware site without a duration runs until stopped.
        let duration_s = opts.duration_s.or_else(|| {
            self.sim
                .as_ref()
                .map(|s| simthread::lock(s).profile_duration_s())
        });
        let cycles = duration_s.map_or(u64::MAX / per_cycle, |d| {
            (d * 1000.0 / cycle_ms as f64).round() as u64
        });
        let start_min = self
            .cfg
            .control
            .start_time
            .as_deref()
            .map(crate::config::parse_hhmm)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or(0);
        let paced = match opts.speed {
            Speed::Factor(f) => {
                self.clock.start_scaled(f);
                if let Some(task) = self.task.take() {
                    self.thread = Some(task::spawn(task, self.clock.clone(), period_ms)?);
                }
                if let (Some(sim), None) = (&self.sim, &self.sim_thread) {
                    // One physics step per protection period: frames and
                    // the watchdog relay are judged as often as protection ticks.
                    let step_ms = period_ms;
                    let t = simthread::SimThread::spawn(sim.clone(), self.clock.clone(), step_ms)?;
                    self.sim_thread = Some(t);
                }
                true
            }
            Speed::Max => false,
        };
        Ok(Run {
            period_ms,
            cycle_ms,
            per_cycle,
            ticks: cycles * per_cycle,
            start_min,
            status_every: (self.cfg.control.status_interval_ms / cycle_ms).max(1),
            print_status: opts.print_status,
            stop: opts.stop.clone(),
            paced,
            wall_start: Instant::now(),
            acc: SimAccuracy::default(),
            initial_spread: None,
            bleed_cell_s: 0.0,
            derated_s: 0.0,
            over_period: 0,
            max_cycle_us: 0,
            missed: 0,
            cycle_us: Vec::with_capacity(cycles.min(MAX_CYCLE_SAMPLES) as usize),
            // The final spread is averaged over the last cycles so one
            // noisy reading does not decide it.
            avg_from: cycles.saturating_sub(FINAL_AVERAGE_MS / cycle_ms).max(1),
            final_sum_v: Vec::new(),
            final_n: 0,
            k: 0,
            end_ms: 0,
            output_link_down: None,
        })
    }

    /// One protection period (`tick` counts from 1), with the control
    /// cycle when one is due.
    pub fn step(
        &mut self,
        run: &mut Run,
        tick: u64,
        observe: &mut impl FnMut(Observation<'_>),
    ) -> Result<Step> {
        let t_ms = tick * run.period_ms;
        if !run.paced {
            // Lock-step: frames the simulator sends now arrive at t_ms.
            self.clock.set_ms(t_ms);
        }
        if let (Some(sim), false) = (&self.sim, run.paced) {
            simthread::lock(sim).advance_to(t_ms);
        }
        // Lock-step: acquire and protect here; paced, the protection
        // thread does both on its own period.
        if let Some(task) = self.task.as_mut() {
            task.tick(t_ms);
        }
        if !tick.is_multiple_of(run.per_cycle) {
            let (snapshot, status) = (self.shared.snapshot(), self.shared.status());
            let mut sim = self.sim.as_ref().map(simthread::lock);
            observe(Observation {
                t_ms,
                cycle: None,
                snapshot: &snapshot,
                status: &status,
                sim: sim.as_deref_mut(),
                thread: self.thread.as_ref(),
            });
            return Ok(Step::Tick);
        }
        if run
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Ok(Step::Stopped);
        }
        run.k += 1;
        run.end_ms = t_ms;
        self.supervisor.check(t_ms);
        let cycle_ms = run.cycle_ms;
        let minute = ((run.start_min as u64 + t_ms / 60_000) % 1440) as u32;
        let began = Instant::now();
        self.controller.cycle(minute);
        let took_us = began.elapsed().as_micros() as u64;
        run.max_cycle_us = run.max_cycle_us.max(took_us);
        if (run.cycle_us.len() as u64) < MAX_CYCLE_SAMPLES {
            run.cycle_us.push(took_us);
        }
        if let Some(link) = &self.outputs {
            // Cannot command the coils: hold open, so nothing resumes
            // closed when the link returns. Handed over only on a change.
            let down = !link.connected();
            if run.output_link_down != Some(down) {
                run.output_link_down = Some(down);
                let hold = down.then(|| {
                    let why = "contactor output link down: the coils cannot be commanded";
                    (HoldKind::Open, why.to_string())
                });
                self.shared.set_hold(HoldSource::OutputLink, hold);
            }
        }
        if took_us > cycle_ms * 1000 {
            run.over_period += 1;
        }
        let late = match self.clock.scaled().filter(|_| run.paced) {
            // Paced: the cycle must be done before the next one is due.
            Some(clock) => clock.wall_until(t_ms + cycle_ms).is_zero(),
            None => took_us > cycle_ms * 1000,
        };
        if late {
            run.missed += 1;
            tracing::debug!(t_ms, took_us, "control cycle missed its deadline");
        }
        let report = self
            .controller
            .last
            .as_ref()
            .context("cycle produced no report")?;
        if let Some(pcs) = &mut self.pcs_driver {
            pcs.write(
                t_ms,
                self.shared.status().allowed,
                self.liveness.alive(),
                report,
            );
        }
        // A one-rack site aggregates only for its Modbus image.
        if self.field.serves_modbus() {
            let status = self.shared.status();
            let racks = [crate::io::modbus::RackReport {
                report,
                status: &status,
                protection_alive: self.liveness.alive(),
            }];
            let state = self.field.state(&racks);
            self.field.publish(&self.cfg, &racks, &state);
        }
        let t_s = t_ms as f64 / 1000.0;
        if run.k >= run.avg_from {
            run.final_sum_v
                .resize(report.snapshot.cell_voltage_v.len(), 0.0);
            for (acc, v) in run
                .final_sum_v
                .iter_mut()
                .zip(&report.snapshot.cell_voltage_v)
            {
                *acc += *v as f64;
            }
            run.final_n += 1;
        }
        if derated(&self.cfg, report) {
            run.derated_s += cycle_ms as f64 / 1000.0;
        }
        run.bleed_cell_s +=
            report.bleed.iter().filter(|b| **b).count() as f64 * cycle_ms as f64 / 1000.0;
        if let Some(sim) = &self.sim {
            let truth = simthread::lock(sim).truth();
            run.initial_spread
                .get_or_insert_with(|| spread(&truth.soc_pct));
            track_soc_error(&mut run.acc, t_s, report, &truth);
        }
        let (snapshot, status) = (self.shared.snapshot(), self.shared.status());
        let mut sim = self.sim.as_ref().map(simthread::lock);
        observe(Observation {
            t_ms,
            cycle: Some(report),
            snapshot: &snapshot,
            status: &status,
            sim: sim.as_deref_mut(),
            thread: self.thread.as_ref(),
        });
        drop(sim);
        if run.print_status && (run.k.is_multiple_of(run.status_every) || run.k == 1) {
            println!(
                "{}",
                telemetry::status_line(t_s, report, &self.controller.plugins.slots)
            );
        }
        Ok(Step::Cycle)
    }

    /// End a run: save plugin state and build the summary.
    pub fn finish(&mut self, mut run: Run) -> Result<Summary> {
        let cycle_ms = run.cycle_ms;
        let cycles = run.k;
        self.controller.plugins.save_all(run.end_ms);
        run.cycle_us.sort_unstable();
        let cycle_us = &run.cycle_us;
        let pct = |p: f64| {
            cycle_us
                .get(((cycle_us.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        let sim = self.sim.as_ref().map(|sim| {
            let truth = simthread::lock(sim).truth();
            let mut acc = run.acc;
            acc.initial_true_soc_spread_pct = run.initial_spread.unwrap_or(0.0);
            acc.final_true_soc_spread_pct = spread(&truth.soc_pct);
            acc.true_mean_capacity_ah =
                truth.capacity_ah.iter().sum::<f64>() / truth.capacity_ah.len().max(1) as f64;
            acc.true_min_capacity_ah = truth.capacity_ah.iter().copied().fold(f64::NAN, f64::min);
            acc.true_pack_soc_range_pct = truth.pack_soc_range_pct;
            acc.pcs = truth.pcs;
            acc
        });
        let last = self
            .controller
            .last
            .clone()
            .context("the run had no cycles")?;
        let final_avg: Vec<f32> = run
            .final_sum_v
            .iter()
            .map(|s| (s / run.final_n.max(1) as f64) as f32)
            .collect();
        let (vmin, vmax) = PackSnapshot::min_max(&final_avg);
        let status = self.shared.status();
        let protection = self.protection.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Summary {
            site: self.cfg.site.name.clone(),
            simulated_s: cycles as f64 * cycle_ms as f64 / 1000.0,
            wall_s: run.wall_start.elapsed().as_secs_f64(),
            cycles,
            cycles_over_period: run.over_period,
            missed_deadlines: run.missed,
            max_cycle_us: run.max_cycle_us,
            cycle_p50_us: pct(0.5),
            cycle_p99_us: pct(0.99),
            final_pack_soc_pct: last.pack_soc_pct,
            final_pack_soh_pct: last.pack_soh_pct,
            final_cell_voltage_spread_mv: (vmax - vmin) * 1000.0,
            final_cell_voltage_min_v: vmin,
            final_cell_voltage_max_v: vmax,
            final_contactor_state: status.contactor_state,
            latched: protection.latched().to_vec(),
            protection_events: protection
                .events()
                .iter()
                .filter(|e| e.seq >= self.first_seq)
                .cloned()
                .collect(),
            clamp: self.controller.clamp.stats,
            acquisition: self.controller.acquire_stats(),
            bleed_cell_s: run.bleed_cell_s,
            derated_s: run.derated_s,
            plugins: self.controller.plugins.board.statuses(),
            plugin_events: self
                .controller
                .plugins
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .records()
                .iter()
                .filter(|e| e.seq >= self.first_plugin_seq)
                .cloned()
                .collect(),
            sim,
            outputs: self.outputs_status(),
            supervision: self.supervisor.records(),
            protection_jitter: self.thread.as_ref().map(ProtectionThread::jitter),
        })
    }
}

/// Whether current flows in a direction protection allows less of than
/// its rating (derating held it back, or could have).
fn derated(cfg: &SiteConfig, report: &CycleReport) -> bool {
    let d = &cfg.protection.derating;
    let a = &report.protection.allowed;
    let i = report.snapshot.current_a;
    let rest = cfg.protection.rest_current_a;
    report.protection.closed()
        && ((i > rest && a.charge_a < d.max_charge_current_a)
            || (i < -rest && a.discharge_a < d.max_discharge_current_a))
}

/// What [`RackSite::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A protection period without a control cycle.
    Tick,
    /// A protection period that ended with a control cycle.
    Cycle,
    /// The stop flag was set: the run ends here.
    Stopped,
}

/// A run in progress: its timing and what the summary accumulates.
pub struct Run {
    pub period_ms: u64,
    pub cycle_ms: u64,
    /// Protection periods in the run.
    pub ticks: u64,
    per_cycle: u64,
    start_min: u32,
    status_every: u64,
    print_status: bool,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Paced on the site's scaled clock (else lock-step).
    pub paced: bool,
    wall_start: Instant,
    acc: SimAccuracy,
    initial_spread: Option<f64>,
    bleed_cell_s: f64,
    derated_s: f64,
    over_period: u64,
    max_cycle_us: u64,
    missed: u64,
    cycle_us: Vec<u64>,
    avg_from: u64,
    final_sum_v: Vec<f64>,
    final_n: u32,
    k: u64,
    end_ms: u64,
    /// Last output-link state handed to protection (hardware sites).
    output_link_down: Option<bool>,
}

/// Everything a start would check, short of running: the DBC, the signal
/// mapping, and every enabled plugin's load and `init`. Returns the problems.
pub fn check(cfg: &SiteConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let racks: Vec<(String, SiteConfig)> = match &cfg.bank {
        None => vec![(String::new(), cfg.clone())],
        Some(b) => (0..b.racks.len())
            .map(|i| (format!("rack {}: ", b.racks[i].name), b.rack_config(cfg, i)))
            .collect(),
    };
    for (rack, cfg) in &racks {
        match load_dbc(cfg) {
            Ok(dbc) => {
                if let Err(e) = RackMap::resolve(cfg, Arc::new(dbc)) {
                    problems.push(format!("{rack}{e}"));
                }
            }
            Err(e) => problems.push(format!("{rack}`can.dbc`: {e}")),
        }
    }
    match PluginEngine::new() {
        Ok(engine) => {
            for role in Role::ALL {
                let slot = cfg.plugins.slot(role);
                if !slot.enabled {
                    continue;
                }
                let json = serde_json::to_string(&slot.config).unwrap_or_default();
                if let Err(e) = crate::plugins::PluginInstance::load(
                    &engine,
                    role,
                    &cfg.resolve(&slot.path),
                    &json,
                    cfg.plugins.sandbox_for(role),
                ) {
                    problems.push(format!("`plugins.{role}`: {e}"));
                }
            }
        }
        Err(e) => problems.push(format!("wasm engine: {e:#}")),
    }
    problems
}

/// The host's and the simulated BMUs' ends of the CAN wire: two nodes of
/// `bus`, or two sockets on `can.interface`.
fn ports(
    cfg: &SiteConfig,
    bus: &VirtualBus,
    clock: &Arc<SiteClock>,
) -> Result<(Box<dyn CanPort>, Box<dyn CanPort>)> {
    let Some(ifname) = &cfg.can.interface else {
        return Ok((Box::new(bus.endpoint()), Box::new(bus.endpoint())));
    };
    let open = |who: &str| {
        let stamp: Arc<dyn Clock> = clock.clone();
        BusPort::open_with_clock(&format!("{ifname}-{who}"), Some(stamp), || {
            SocketCanBus::open(ifname)
        })
        .with_context(|| format!("{}: `can.interface`", cfg.source.display()))
    };
    Ok((Box::new(open("host")?), Box::new(open("sim")?)))
}

/// Inbound messages without a period are caught only by the per-value
/// timeouts; say so once at start-up so an integrator can add one.
fn warn_unsupervised(cfg: &SiteConfig, map: &RackMap) {
    let names: Vec<&str> = map.unsupervised().collect();
    if !names.is_empty() {
        tracing::warn!(
            site = %cfg.source.display(),
            messages = ?names,
            "inbound CAN messages without an expected period (no GenMsgCycleTime in the DBC, \
             no can.message_period_ms): only can.module_timeout_ms / can.current_timeout_ms \
             supervise them"
        );
    }
}

/// The CAN port of a hardware site: its SocketCAN interface.
fn hardware_port(cfg: &SiteConfig, clock: &Arc<SiteClock>) -> Result<Box<dyn CanPort>> {
    let Some(ifname) = &cfg.can.interface else {
        bail!(
            "{}: `can.interface`: a hardware site (no [sim]) reads its rack on a SocketCAN \
             interface, e.g. interface = \"can0\"",
            cfg.source.display()
        );
    };
    let stamp: Arc<dyn Clock> = clock.clone();
    let port = BusPort::open_with_clock(ifname, Some(stamp), || SocketCanBus::open(ifname))
        .with_context(|| format!("{}: `can.interface`", cfg.source.display()))?;
    Ok(Box::new(port))
}

/// The contactor driver of a hardware site, from `[outputs]`.
fn outputs(cfg: &SiteConfig) -> Result<(Box<dyn ContactorOutput>, CoilLink)> {
    match &cfg.outputs {
        Some(OutputsConfig::ModbusCoils(c)) => {
            let (out, link) = ModbusCoilOutput::start(c.clone()).with_context(|| {
                format!(
                    "{}: `outputs`: starting the coil link",
                    cfg.source.display()
                )
            })?;
            Ok((Box::new(out), link))
        }
        None => bail!(
            "{}: `outputs`: a hardware site (no [sim]) needs a contactor driver",
            cfg.source.display()
        ),
    }
}

/// The site's DBC with its `can.id_offset` applied.
pub fn load_dbc(cfg: &SiteConfig) -> Result<Dbc, crate::io::can::dbc::DbcError> {
    Dbc::from_file(cfg.resolve(&cfg.can.dbc))?.with_id_offset(cfg.can.id_offset)
}

/// What the racks of one bank share: the engine (one compile cache) and,
/// for racks on one bus, the bus. `port` gives a hardware site its CAN
/// port instead of opening `can.interface` (tests put a simulated rack on
/// the other end).
#[derive(Default)]
pub struct RackParts {
    /// The bank's clock (a bank runs its racks on one).
    pub clock: Option<Arc<SiteClock>>,
    pub bus: Option<VirtualBus>,
    pub engine: Option<PluginEngine>,
    pub port: Option<Box<dyn CanPort>>,
}

fn spread(v: &[f64]) -> f64 {
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if lo.is_finite() {
        hi - lo
    } else {
        0.0
    }
}

fn track_soc_error(acc: &mut SimAccuracy, t_s: f64, report: &CycleReport, truth: &SimTruth) {
    if report.pack_soc_pct.is_none() {
        acc.cycles_without_estimate += 1;
        return;
    }
    acc.cycles_compared += 1;
    let cells = truth.soc_pct.len();
    acc.max_abs_soc_error_pct_per_cell.resize(cells, 0.0);
    acc.final_abs_soc_error_pct_per_cell.resize(cells, 0.0);
    let mut worst = (0.0f64, 0usize);
    for (i, tru) in truth.soc_pct.iter().enumerate() {
        // A missing estimate counts as wrong, not as skipped.
        let e = report
            .cell_soc_pct
            .get(i)
            .map_or(100.0, |est| (*est as f64 - tru).abs());
        let e = if e.is_finite() { e } else { 100.0 };
        acc.final_abs_soc_error_pct_per_cell[i] = e;
        let m = &mut acc.max_abs_soc_error_pct_per_cell[i];
        *m = m.max(e);
        if e > worst.0 {
            worst = (e, i);
        }
    }
    if worst.0 > acc.max_abs_soc_error_pct {
        acc.max_abs_soc_error_pct = worst.0;
        acc.max_abs_soc_error_cell = worst.1;
        acc.max_abs_soc_error_time_s = t_s;
    }
    acc.final_abs_soc_error_pct = worst.0;
}
