//! Native test harness: run a plugin's algorithm with plain `cargo test`,
//! no wasm, through the same config parsing and state handling the host
//! uses.
//!
//! [`Harness`] dereferences to the plugin, so call the role trait's `step`
//! directly on it. [`IdealPack`] produces snapshots with a known true SOC so
//! estimators can be checked for accuracy.

use std::ops::{Deref, DerefMut};

use crate::ocv::OcvTable;
use crate::types::*;
use crate::Plugin;

/// A plugin built from its JSON config, as the host would build it.
pub struct Harness<P: Plugin> {
    config_json: String,
    plugin: P,
}

impl<P: Plugin> Harness<P> {
    /// Parse `config_json` and call `init`, exactly like the host.
    pub fn new(config_json: &str) -> Result<Self, String> {
        let plugin = P::init(crate::__private::parse_config::<P>(config_json)?)?;
        Ok(Self {
            config_json: config_json.to_owned(),
            plugin,
        })
    }

    /// Like [`Harness::new`] from a `serde_json::Value`.
    pub fn from_value(config: serde_json::Value) -> Result<Self, String> {
        Self::new(&config.to_string())
    }

    /// Simulate a hot swap or restart: save the state, build a fresh
    /// instance from the same config and restore the state into it.
    pub fn reload(&mut self) -> Result<(), String> {
        let state = self.plugin.save_state();
        let mut fresh = P::init(crate::__private::parse_config::<P>(&self.config_json)?)?;
        fresh.restore_state(&state)?;
        self.plugin = fresh;
        Ok(())
    }

    /// Log messages the plugin wrote on this thread since the last call.
    pub fn take_logs(&self) -> Vec<(crate::log::Level, String)> {
        crate::log::take_captured()
    }
}

impl<P: Plugin> std::fmt::Debug for Harness<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("plugin", &P::info().name)
            .field("config_json", &self.config_json)
            .finish()
    }
}

impl<P: Plugin> Deref for Harness<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.plugin
    }
}

impl<P: Plugin> DerefMut for Harness<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.plugin
    }
}

/// A deliberately simple pack for estimator tests: each cell is OCV(SOC)
/// plus an ohmic drop, with its own capacity and starting SOC. No noise,
/// no dynamics; the host's simulator is the realistic one.
#[derive(Debug, Clone)]
pub struct IdealPack {
    pub ocv: OcvTable,
    /// True SOC per cell in percent.
    pub soc_pct: Vec<f32>,
    /// Capacity per cell in Ah.
    pub capacity_ah: Vec<f32>,
    /// Ohmic resistance per cell in Ω.
    pub r0_ohm: Vec<f32>,
    pub cells_per_module: u32,
    pub temp_c: f32,
    /// Current in A (positive = charging) of the last step.
    pub current_a: f32,
    pub timestamp_ms: u64,
}

impl IdealPack {
    /// `cells` identical cells at `soc_pct`.
    pub fn new(ocv: OcvTable, cells: usize, capacity_ah: f32, soc_pct: f32, r0_ohm: f32) -> Self {
        Self {
            ocv,
            soc_pct: vec![soc_pct; cells],
            capacity_ah: vec![capacity_ah; cells],
            r0_ohm: vec![r0_ohm; cells],
            cells_per_module: cells.min(16) as u32,
            temp_c: 25.0,
            current_a: 0.0,
            timestamp_ms: 0,
        }
    }

    /// Advance `dt_s` seconds at `current_a` and return the new snapshot.
    pub fn step(&mut self, dt_s: f32, current_a: f32) -> PackSnapshot {
        self.current_a = current_a;
        self.timestamp_ms += (dt_s * 1000.0).round() as u64;
        for (soc, cap) in self.soc_pct.iter_mut().zip(&self.capacity_ah) {
            *soc += current_a * dt_s / 3600.0 / cap * 100.0;
        }
        self.snapshot()
    }

    /// The snapshot a perfect sensor would report now.
    pub fn snapshot(&self) -> PackSnapshot {
        let cell_voltage_v: Vec<f32> = self
            .soc_pct
            .iter()
            .zip(&self.r0_ohm)
            .map(|(soc, r)| self.ocv.ocv_v(*soc) + self.current_a * r)
            .collect();
        let cells = cell_voltage_v.len();
        let modules = cells.div_ceil(self.cells_per_module.max(1) as usize);
        PackSnapshot {
            timestamp_ms: self.timestamp_ms,
            current_a: self.current_a,
            pack_voltage_v: cell_voltage_v.iter().sum(),
            cell_voltage_v,
            cell_temp_c: vec![self.temp_c; cells],
            cells_per_module: self.cells_per_module,
            module_comm: vec![CommStatus::Ok; modules],
            cell_bleed_a: vec![0.0; cells],
            contactors_closed: true,
        }
    }
}
