//! Plain Rust mirrors of the WIT records in `wit/bms-plugin.wit`.
//!
//! Plugins see only these types; the export macros convert to and from the
//! generated bindings. Field units are in the names: `_v` volts, `_a`
//! amperes, `_w` watts, `_c` degrees Celsius, `_pct` percent, `_ms`
//! milliseconds. Current and power are positive when charging.

/// Identity of a plugin, shown to operators by `bmsctl plugins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Short machine-friendly name, e.g. `soc-counting`.
    pub name: String,
    /// Semantic version of the plugin, e.g. `1.2.0`.
    pub version: String,
    /// One line for humans.
    pub description: String,
}

/// Communication status of one battery-management unit (module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommStatus {
    /// Fresh data within the expected period.
    Ok,
    /// No fresh data: the module's values are the last ones received.
    Stale,
}

/// The process image of one control cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct PackSnapshot {
    /// Monotonic time in milliseconds since the host started.
    pub timestamp_ms: u64,
    /// Pack current in A, positive = charging.
    pub current_a: f32,
    /// Pack voltage in V.
    pub pack_voltage_v: f32,
    /// Cell voltages in V, module-major.
    pub cell_voltage_v: Vec<f32>,
    /// Cell temperatures in °C, module-major.
    pub cell_temp_c: Vec<f32>,
    /// Series cells per module.
    pub cells_per_module: u32,
    /// Communication status per module.
    pub module_comm: Vec<CommStatus>,
    /// Current drawn by each cell's bleed resistor over the last cycle, A
    /// (>= 0). A cell's own current is `current_a - cell_bleed_a[i]`.
    pub cell_bleed_a: Vec<f32>,
    /// True when the main contactors are closed.
    pub contactors_closed: bool,
}

impl PackSnapshot {
    /// A snapshot with `cells` cells at one voltage and temperature, all
    /// modules communicating and contactors closed. Handy in tests.
    pub fn uniform(
        timestamp_ms: u64,
        cells: usize,
        cells_per_module: u32,
        cell_v: f32,
        temp_c: f32,
        current_a: f32,
    ) -> Self {
        let modules = cells.div_ceil(cells_per_module.max(1) as usize);
        Self {
            timestamp_ms,
            current_a,
            pack_voltage_v: cell_v * cells as f32,
            cell_voltage_v: vec![cell_v; cells],
            cell_temp_c: vec![temp_c; cells],
            cells_per_module,
            module_comm: vec![CommStatus::Ok; modules],
            cell_bleed_a: vec![0.0; cells],
            contactors_closed: true,
        }
    }

    /// The current through cell `index`, A: pack current minus its bleed.
    pub fn cell_current_a(&self, index: usize) -> f32 {
        self.current_a - self.cell_bleed_a.get(index).copied().unwrap_or(0.0)
    }

    /// Number of cells.
    pub fn cell_count(&self) -> usize {
        self.cell_voltage_v.len()
    }

    /// Whether cell `index` belongs to a module whose data is stale.
    pub fn cell_is_stale(&self, index: usize) -> bool {
        let per = self.cells_per_module.max(1) as usize;
        self.module_comm
            .get(index / per)
            .is_none_or(|s| *s == CommStatus::Stale)
    }
}

/// Limits the protection layer enforces now. Read-only for plugins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProtectionLimits {
    pub max_charge_current_a: f32,
    pub max_discharge_current_a: f32,
    pub max_charge_power_w: f32,
    pub max_discharge_power_w: f32,
    pub cell_min_voltage_v: f32,
    pub cell_max_voltage_v: f32,
}

/// Output of a SOC estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct SocOutput {
    /// SOC per cell in percent.
    pub cell_soc_pct: Vec<f32>,
    /// Pack SOC in percent.
    pub pack_soc_pct: f32,
}

/// Output of a SOH estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct SohOutput {
    /// Pack SOH in percent of rated capacity.
    pub pack_soh_pct: f32,
    /// Usable capacity per cell in Ah.
    pub cell_capacity_ah: Vec<f32>,
    /// DC internal resistance per cell in mΩ.
    pub cell_resistance_mohm: Vec<f32>,
}

/// Input of the balancing policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceInput {
    pub snapshot: PackSnapshot,
    /// SOC per cell from this cycle's estimator, in percent.
    pub cell_soc_pct: Vec<f32>,
}

/// Output of the balancing policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BalanceOutput {
    /// Bleed request per cell.
    pub bleed: Vec<bool>,
}

/// Input of the EMS advisor.
#[derive(Debug, Clone, PartialEq)]
pub struct EmsInput {
    pub snapshot: PackSnapshot,
    pub soc: SocOutput,
    pub soh: SohOutput,
    pub limits: ProtectionLimits,
    /// Local time of day in minutes since midnight (0..1440).
    pub minute_of_day: u32,
}

/// A scheduling hint for the EMS / PCS.
#[derive(Debug, Clone, PartialEq)]
pub struct EmsOutput {
    /// Recommended power in W: positive = charge, negative = discharge.
    pub power_w: f32,
    /// Short human-readable reason.
    pub reason: String,
}
