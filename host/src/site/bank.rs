//! A bank site: every rack of `[bank]` assembled as its own rack stack
//! (bus, simulated rack, acquisition, protection, plugins, state directory
//! `racks/<name>/`), run on one clock, with one [`FieldIo`] serving the
//! bank.
//!
//! Owns: the wiring of the racks and the bank run loop (the bank trip is
//! supervised every protection period, the image refreshed every cycle).
//! May not touch: anything inside a rack's stages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{FieldIo, Observation, RackParts, RackSite, RunOptions, Speed, Step};
use crate::bank::{Bank, BankState, RackHandle};
use crate::clock::SiteClock;
use crate::config::SiteConfig;
use crate::io::can::bus::VirtualBus;
use crate::io::modbus::RackReport;
use crate::plugins::PluginEngine;
use crate::telemetry::Summary;

/// The end of a bank run.
#[derive(Debug, Clone, Serialize)]
pub struct BankSummary {
    pub site: String,
    /// The bank at the end of the run.
    pub bank: BankState,
    /// Lowest and highest bank SOC seen, %.
    pub bank_soc_range_pct: Option<(f32, f32)>,
    /// Protection periods during which a rack's latch held the others open.
    pub bank_trip_periods: u64,
    pub missed_deadlines: u64,
    pub racks: Vec<RackSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RackSummary {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

pub struct BankSite {
    pub cfg: SiteConfig,
    /// The one clock every rack runs on.
    pub clock: Arc<SiteClock>,
    pub names: Vec<String>,
    pub racks: Vec<RackSite>,
    field: FieldIo,
}

impl BankSite {
    /// Assemble every rack of `cfg.bank` under `state_dir`.
    pub fn assemble_in(cfg: SiteConfig, state_dir: PathBuf) -> Result<Self> {
        let bank_cfg = cfg
            .bank
            .clone()
            .with_context(|| format!("{}: no [bank] section", cfg.source.display()))?;
        // One engine: the racks compile (or load from the cache) each
        // component once.
        let engine = PluginEngine::new()
            .context("starting the wasm engine")?
            .with_cache(state_dir.join("cache"));
        let clock = Arc::new(SiteClock::new());
        let mut buses: HashMap<String, VirtualBus> = HashMap::new();
        let mut racks = Vec::with_capacity(bank_cfg.racks.len());
        for (i, r) in bank_cfg.racks.iter().enumerate() {
            let bus = r.bus.as_ref().map(|b| {
                buses
                    .entry(b.clone())
                    .or_insert_with(|| VirtualBus::with_clock(clock.clone()))
                    .clone()
            });
            let site = RackSite::assemble_with(
                bank_cfg.rack_config(&cfg, i),
                state_dir.join("racks").join(&r.name),
                RackParts {
                    clock: Some(clock.clone()),
                    bus,
                    engine: Some(engine.clone()),
                    port: None,
                },
            )
            .with_context(|| format!("rack `{}` (bank.racks[{i}])", r.name))?;
            racks.push(site);
        }
        let names: Vec<String> = bank_cfg.racks.iter().map(|r| r.name.clone()).collect();
        let handles = racks
            .iter()
            .zip(&names)
            .map(|(s, name)| RackHandle {
                name: name.clone(),
                capacity_ah: s.cfg.rack.capacity_ah,
                shared: s.shared.clone(),
                liveness: s.liveness.clone(),
            })
            .collect();
        let bank = Arc::new(Bank::new(Some(&bank_cfg), handles));
        let audit = Arc::new(crate::audit::Audit::open(&state_dir, cfg.journal)?);
        let field = FieldIo::new(
            &cfg,
            bank,
            racks
                .iter()
                .map(|s| (s.protection.clone(), s.shared.clone()))
                .collect(),
            audit,
            &state_dir,
        );
        Ok(Self {
            cfg,
            clock,
            names,
            racks,
            field,
        })
    }

    pub fn bank(&self) -> &Arc<Bank> {
        &self.field.bank
    }

    pub fn start_modbus(&self) -> Result<Option<crate::io::modbus::server::SunSpecServer>> {
        self.field.start_modbus(&self.cfg)
    }

    pub fn start_pcs_link(&self) -> Result<Option<crate::io::modbus::pcs::PcsLink>> {
        self.field.start_pcs_link(&self.cfg)
    }

    pub fn modbus_board(&self) -> Option<Arc<crate::io::modbus::server::RegisterBoard>> {
        self.field.board()
    }

    /// Run every rack for the configured duration on one clock. `observe`
    /// sees every protection tick of every rack (with the rack's index)
    /// and, after each cycle of the whole bank, the bank state.
    pub fn run(
        &mut self,
        opts: &RunOptions,
        mut observe: impl FnMut(usize, Observation<'_>),
        mut on_bank: impl FnMut(u64, &BankState),
    ) -> Result<BankSummary> {
        let mut runs = Vec::with_capacity(self.racks.len());
        for rack in &mut self.racks {
            // Racks print their own lines only if asked; the bank line is ours.
            let rack_opts = RunOptions {
                print_status: false,
                ..opts.clone()
            };
            runs.push(rack.start_run(&rack_opts)?);
        }
        let paced = matches!(opts.speed, Speed::Factor(_));
        let (ticks, period_ms, cycle_ms) = (runs[0].ticks, runs[0].period_ms, runs[0].cycle_ms);
        let status_every = (self.cfg.control.status_interval_ms / cycle_ms).max(1);
        let mut trip_periods = 0;
        let mut soc_range: Option<(f32, f32)> = None;
        let mut cycles = 0u64;
        let mut last_state = None;
        'run: for tick in 1..=ticks {
            if let Some(clock) = self.clock.scaled().filter(|_| paced) {
                std::thread::sleep(clock.wall_until(tick * period_ms));
            }
            let mut cycled = false;
            for (i, (rack, run)) in self.racks.iter_mut().zip(&mut runs).enumerate() {
                let mut f = |o: Observation<'_>| observe(i, o);
                match rack.step(run, tick, &mut f)? {
                    Step::Stopped => break 'run,
                    Step::Cycle => cycled = true,
                    Step::Tick => {}
                }
            }
            if self.field.bank.supervise().is_some() {
                trip_periods += 1;
            }
            if !cycled {
                continue;
            }
            cycles += 1;
            let statuses: Vec<_> = self.racks.iter().map(|r| r.shared.status()).collect();
            let reports: Vec<RackReport<'_>> = self
                .racks
                .iter()
                .zip(&statuses)
                .filter_map(|(r, status)| {
                    Some(RackReport {
                        report: r.controller.last.as_ref()?,
                        status,
                        protection_alive: r.liveness.alive(),
                    })
                })
                .collect();
            let state = self.field.state(&reports);
            self.field.publish(&self.cfg, &reports, &state);
            if let Some(soc) = state.soc_pct {
                let (lo, hi) = soc_range.unwrap_or((soc, soc));
                soc_range = Some((lo.min(soc), hi.max(soc)));
            }
            if opts.print_status && (cycles.is_multiple_of(status_every) || cycles == 1) {
                println!(
                    "{}",
                    crate::telemetry::bank_line(tick * period_ms, &self.names, &reports, &state)
                );
            }
            on_bank(tick * period_ms, &state);
            last_state = Some(state);
        }
        let mut racks = Vec::with_capacity(self.racks.len());
        for ((rack, run), name) in self.racks.iter_mut().zip(runs).zip(&self.names) {
            racks.push(RackSummary {
                name: name.clone(),
                summary: rack.finish(run)?,
            });
        }
        Ok(BankSummary {
            site: self.cfg.site.name.clone(),
            bank: last_state.context("the run had no cycles")?,
            bank_soc_range_pct: soc_range,
            bank_trip_periods: trip_periods,
            missed_deadlines: racks.iter().map(|r| r.summary.missed_deadlines).sum(),
            racks,
        })
    }
}
