//! The process image of one control cycle.
//!
//! Built by acquisition (`io::can::acquire`) from decoded frames, read by
//! protection, plugins (after conversion to the WIT type) and telemetry.
//! Plain data: no behaviour beyond summary helpers.

/// Communication status of one module or sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommStatus {
    Ok,
    Stale,
}

/// Every measurement of the rack frozen at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PackSnapshot {
    /// Host monotonic time in ms.
    pub timestamp_ms: u64,
    /// Pack current in A, positive = charging.
    pub current_a: f32,
    /// Pack voltage in V (battery side of the contactors).
    pub pack_voltage_v: f32,
    /// DC-link voltage in V (PCS side of the contactors): what precharge
    /// and weld supervision watch.
    pub link_voltage_v: f32,
    /// When the current reading last changed value, host ms: a live sensor
    /// always moves in its last digits.
    pub current_changed_ms: u64,
    /// Cell voltages in V, module-major.
    pub cell_voltage_v: Vec<f32>,
    /// Cell temperatures in °C, module-major (nearest sensor).
    pub cell_temp_c: Vec<f32>,
    pub cells_per_module: u32,
    /// Per-module comm status (cell voltages and temperatures).
    pub module_comm: Vec<CommStatus>,
    /// Comm status of the current sensor.
    pub current_comm: CommStatus,
    /// Whether any data at all has arrived for every source yet.
    pub complete: bool,
    /// Current each cell's bleed resistor drew over the last cycle, A.
    pub cell_bleed_a: Vec<f32>,
    /// Main contactors closed.
    pub contactors_closed: bool,
}

impl PackSnapshot {
    /// An empty snapshot (no data yet, everything stale).
    pub fn empty(cells: usize, cells_per_module: u32) -> Self {
        let modules = cells / cells_per_module.max(1) as usize;
        Self {
            timestamp_ms: 0,
            current_a: 0.0,
            pack_voltage_v: 0.0,
            link_voltage_v: f32::NAN,
            current_changed_ms: 0,
            cell_voltage_v: vec![f32::NAN; cells],
            cell_temp_c: vec![f32::NAN; cells],
            cells_per_module,
            module_comm: vec![CommStatus::Stale; modules],
            current_comm: CommStatus::Stale,
            complete: false,
            cell_bleed_a: vec![0.0; cells],
            contactors_closed: false,
        }
    }

    /// (min, max) over finite values, (NaN, NaN) if none.
    pub fn min_max(values: &[f32]) -> (f32, f32) {
        values
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::NAN, f32::NAN), |(lo, hi), &v| {
                (
                    if lo.is_nan() { v } else { lo.min(v) },
                    if hi.is_nan() { v } else { hi.max(v) },
                )
            })
    }

    /// Pack voltage for power limits: unknown or negative counts as 0 V,
    /// so a missing reading allows no power rather than any.
    pub fn pack_voltage_or_zero(&self) -> f32 {
        if self.pack_voltage_v.is_finite() {
            self.pack_voltage_v.max(0.0)
        } else {
            0.0
        }
    }

    pub fn cell_voltage_range_v(&self) -> (f32, f32) {
        Self::min_max(&self.cell_voltage_v)
    }

    pub fn cell_temp_range_c(&self) -> (f32, f32) {
        Self::min_max(&self.cell_temp_c)
    }
}
