//! The simulated rack, wired to a site: the `bms-sim` crate plus the one
//! step that needs the site file (reading the OCV table it names).
//!
//! Owns: [`for_site`]. May not touch: the simulation itself (see
//! `crates/bms-sim`), which never sees the host's rack map.

use std::sync::Arc;

use anyhow::Context;
use bms_can::dbc::Dbc;

pub use bms_sim::*;

use crate::config::SiteConfig;
use crate::io::can::bus::CanPort;

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
