//! The bank's face to the site: the SunSpec Modbus server with its image,
//! and the PCS link. One per site, whether it has one rack or a bank.
//!
//! Owns: starting the server and the link, and publishing the image every
//! cycle. May not touch: protection beyond the reset and hold paths it
//! hands to the server.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::bank::{Bank, BankState};
use crate::config::SiteConfig;
use crate::io::modbus::mode::ControlMode;
use crate::io::modbus::pcs::PcsLink;
use crate::io::modbus::server::{RackPath, RegisterBoard, ServerConfig, SunSpecServer};
use crate::io::modbus::{Publisher, RackReport};
use crate::protection::task::Shared;
use crate::protection::Protection;

pub struct FieldIo {
    pub bank: Arc<Bank>,
    racks: Vec<RackPath>,
    publisher: Option<Publisher>,
    /// Where Modbus write attempts are recorded.
    audit: Arc<crate::audit::Audit>,
    /// Local or remote control (`LocRemCtl`), switched over the control API.
    pub mode: Arc<ControlMode>,
}

impl FieldIo {
    pub fn new(
        cfg: &SiteConfig,
        bank: Arc<Bank>,
        racks: Vec<(Arc<Mutex<Protection>>, Arc<Shared>)>,
        audit: Arc<crate::audit::Audit>,
        state_dir: &std::path::Path,
    ) -> Self {
        let mode = Arc::new(ControlMode::load(state_dir));
        let racks: Vec<RackPath> = racks
            .into_iter()
            .map(|(protection, shared)| RackPath { protection, shared })
            .collect();
        let publisher = Publisher::new(
            cfg,
            racks.iter().map(|r| r.shared.clone()).collect(),
            mode.clone(),
        );
        Self {
            bank,
            racks,
            publisher,
            audit,
            mode,
        }
    }

    /// Start the SunSpec Modbus TCP server of `[modbus]` (None without
    /// one). The image is refreshed by [`Self::publish`].
    pub fn start_modbus(&self, cfg: &SiteConfig) -> Result<Option<SunSpecServer>> {
        let (Some(m), Some(publisher)) = (&cfg.modbus, &self.publisher) else {
            return Ok(None);
        };
        if m.remote_msl_reset {
            tracing::warn!(
                writers = ?m.allowed_writers,
                "modbus.remote_msl_reset is on: a SunSpec AlmRst from an allowed writer clears MSL latches without an operator"
            );
        }
        let server = SunSpecServer::start(
            ServerConfig {
                bind: m.bind,
                unit_id: m.unit_id,
                allowed_writers: m.allowed_writers.clone(),
                remote_msl_reset: m.remote_msl_reset,
                max_connections: m.max_connections,
                audit: self.audit.clone(),
                idle_timeout: std::time::Duration::from_secs_f64(m.idle_timeout_s),
            },
            publisher.board.clone(),
            self.racks.clone(),
        )
        .with_context(|| format!("starting the Modbus server on {}", m.bind))?;
        Ok(Some(server))
    }

    /// Start the PCS link of `[pcs]` (None without one): it writes the
    /// bank's limits.
    pub fn start_pcs_link(&self, cfg: &SiteConfig) -> Result<Option<PcsLink>> {
        let Some(p) = &cfg.pcs else {
            return Ok(None);
        };
        if cfg.sim.as_ref().is_some_and(|s| s.pcs.is_some()) {
            tracing::info!("[sim.pcs]: the simulated PCS reads the [pcs] registers in-process; no link over Modbus");
            return Ok(None);
        }
        let link = PcsLink::start(p.clone(), self.bank.clone()).context("starting the PCS link")?;
        Ok(Some(link))
    }

    pub fn board(&self) -> Option<Arc<RegisterBoard>> {
        self.publisher.as_ref().map(|p| p.board.clone())
    }

    /// The bank now, with each rack's SOH from its latest cycle.
    pub fn state(&self, racks: &[RackReport<'_>]) -> BankState {
        let soh: Vec<Option<f32>> = racks.iter().map(|r| r.report.pack_soh_pct).collect();
        self.bank.state(&soh)
    }

    /// Refresh the image (if `[modbus]` is served) from `state`.
    pub fn publish(&mut self, cfg: &SiteConfig, racks: &[RackReport<'_>], state: &BankState) {
        if let Some(p) = &mut self.publisher {
            p.publish(cfg, racks, state);
        }
    }

    pub fn serves_modbus(&self) -> bool {
        self.publisher.is_some()
    }
}
