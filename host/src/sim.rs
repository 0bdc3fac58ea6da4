//! The simulated rack, wired to a site: the `bms-sim` crate plus the one
//! step that needs the site file (reading the OCV table it names), and the
//! host's side of the simulated PCS.
//!
//! Owns: [`for_site`]; [`PcsDriver`]: what the host's PCS link writes to a
//! PCS (the allowed currents, encoded through `[pcs]`'s register map; 0 A
//! once protection stops) written into the simulated PCS's registers every
//! control cycle of site time, and the EMS's setpoint (its clamped hint
//! over the pack voltage). May not touch: the simulation itself (see
//! `crates/bms-sim`), which never sees the host's rack map or limits.

use std::sync::Arc;

use anyhow::Context;
use bms_can::dbc::Dbc;

pub use bms_sim::*;

use crate::config::SiteConfig;
use crate::control::CycleReport;
use crate::io::can::bus::CanPort;
use crate::io::modbus::pcs::PcsConfig;
use crate::protection::AllowedCurrent;

/// Build the simulated rack of `site` (its `[sim]` section) on `port`.
pub fn for_site(
    site: &SiteConfig,
    dbc: Arc<Dbc>,
    port: Box<dyn CanPort>,
    wiring: Arc<SimWiring>,
) -> anyhow::Result<Simulator> {
    let cfg = site.sim.clone().with_context(|| {
        format!(
            "{}: site config has no [sim] section",
            site.source.display()
        )
    })?;
    let ocv_path = site.resolve(&cfg.ocv_table);
    let text = std::fs::read_to_string(&ocv_path)
        .with_context(|| format!("reading sim.ocv_table {}", ocv_path.display()))?;
    let ocv: OcvCurve = toml::from_str(&text)
        .with_context(|| format!("{}: not a valid OCV table", ocv_path.display()))?;
    let r = &site.rack;
    let shape = RackShape {
        modules: r.modules as usize,
        cells_per_module: r.cells_per_module as usize,
        temp_sensors_per_module: r.temp_sensors_per_module as usize,
        capacity_ah: r.capacity_ah as f64,
        watchdog_timeout_ms: site.protection.period_ms * site.protection.watchdog_periods as u64,
    };
    Simulator::new(cfg, shape, ocv, dbc, port, wiring)
        .with_context(|| site.source.display().to_string())
}

/// The host's half of a simulated PCS in the loop (`[sim.pcs]` with the
/// host's `[pcs]` register map). A real site's `PcsLink` writes the same
/// registers over Modbus TCP on its own period; here they are written in
/// site time, so a run at any speed sees the limits a PCS would.
pub struct PcsDriver {
    wiring: Arc<SimWiring>,
    map: PcsConfig,
    heartbeat: u16,
    /// Site time of the last register write.
    last_write_ms: Option<u64>,
}

impl PcsDriver {
    /// A driver when `site` simulates its PCS.
    pub fn for_site(site: &SiteConfig, wiring: &Arc<SimWiring>) -> Option<Self> {
        site.sim.as_ref()?.pcs.as_ref()?;
        Some(Self {
            wiring: wiring.clone(),
            map: site.pcs.clone()?,
            heartbeat: 0,
            last_write_ms: None,
        })
    }

    /// One control cycle at `now_ms`: pass the EMS's setpoint on, and
    /// every `[pcs] period_ms` write `allowed` (0 A unless
    /// `protection_alive`), as the link would.
    pub fn write(
        &mut self,
        now_ms: u64,
        allowed: AllowedCurrent,
        protection_alive: bool,
        report: &CycleReport,
    ) {
        let pack_v = report.snapshot.pack_voltage_or_zero();
        let setpoint = (report.ems_hint && pack_v > 1.0)
            .then(|| f64::from(report.ems_power_w) / f64::from(pack_v));
        self.wiring.set_setpoint_a(setpoint);
        if self
            .last_write_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.map.period_ms)
        {
            return;
        }
        self.last_write_ms = Some(now_ms);
        let (charge_a, discharge_a) = if protection_alive {
            (allowed.charge_a, allowed.discharge_a)
        } else {
            (0.0, 0.0)
        };
        let m = &self.map;
        let mut regs = vec![
            (
                m.max_charge_current.address,
                m.max_charge_current.encode(charge_a),
            ),
            (
                m.max_discharge_current.address,
                m.max_discharge_current.encode(discharge_a),
            ),
        ];
        if let Some(hb) = &m.heartbeat {
            if protection_alive {
                self.heartbeat = self.heartbeat.wrapping_add(1);
            }
            regs.push((hb.address, self.heartbeat));
        }
        self.wiring.pcs_registers().write(now_ms, &regs);
    }
}
