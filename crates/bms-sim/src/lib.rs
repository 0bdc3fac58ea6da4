//! bms-sim: the simulated rack. Battery physics behind simulated BMUs and a
//! simulated current sensor that talk to the host only through CAN frames
//! on a [`CanPort`].
//!
//! Owns: the cell and thermal models ([`model`]), the current profile,
//! sensor noise, injected faults, the simulated firmware's own frame layout
//! ([`layout`], built from `[sim.signals]` and the DBC through `bms-can`,
//! never from the host's mapping), and the relay wiring ([`wiring`]). Obeys
//! the host's bleed frames and the contactor output (a closed contactor is
//! what lets current flow).
//!
//! May not touch: the host's state, its rack map or its acquisition code, so
//! a mapping bug on one side cannot be hidden by the same bug on the other.
//! The host reads the simulator's internals only through
//! [`Simulator::truth`], to report estimation error in the summary.

pub mod layout;
pub mod model;
pub mod ocv;
pub mod pcs;
pub mod wiring;

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;

use bms_can::dbc::Dbc;

use bms_can::port::CanPort;
use bms_can::CanFrame;
pub use layout::LayoutError;
use layout::{OutFrame, SimLayout, SimSignals, SimValue};
use model::RackModel;
pub use ocv::{OcvCurve, OcvError};
pub use wiring::{Coils, SimWiring};

/// `[sim]` section of a site file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// OCV table file (relative to the site file) the cells follow.
    pub ocv_table: std::path::PathBuf,
    pub initial_soc_pct: f64,
    /// Standard deviation of the initial SOC across cells, in %.
    #[serde(default)]
    pub initial_soc_spread_pct: f64,
    /// Standard deviation of capacity across cells, in % of rated.
    #[serde(default)]
    pub capacity_spread_pct: f64,
    pub r0_mohm: f64,
    pub r1_mohm: f64,
    pub tau1_s: f64,
    /// Standard deviation of R0/R1 across cells, in %.
    #[serde(default)]
    pub resistance_spread_pct: f64,
    #[serde(default)]
    pub self_discharge_pct_per_day: f64,
    #[serde(default)]
    pub self_discharge_spread_pct: f64,
    #[serde(default = "default_ambient")]
    pub ambient_c: f64,
    #[serde(default = "default_ambient")]
    pub initial_temp_c: f64,
    pub module_heat_capacity_j_per_k: f64,
    pub module_thermal_resistance_k_per_w: f64,
    /// Bleed resistor per cell, in Ω.
    pub bleed_resistance_ohm: f64,
    /// Gaussian noise on each cell-voltage reading, σ in mV.
    #[serde(default)]
    pub cell_noise_mv: f64,
    /// Gaussian noise on each temperature reading, σ in °C.
    #[serde(default)]
    pub temp_noise_c: f64,
    /// Gaussian noise on the current reading, σ in A.
    #[serde(default)]
    pub current_noise_a: f64,
    /// Constant offset of the current sensor, in A.
    #[serde(default)]
    pub current_offset_a: f64,
    /// BMU frame period, in ms.
    #[serde(default = "default_bmu_period")]
    pub bmu_period_ms: u64,
    /// Current-sensor frame period, in ms.
    #[serde(default = "default_ivt_period")]
    pub current_period_ms: u64,
    /// Physics integration step, in ms.
    #[serde(default = "default_step")]
    pub step_ms: u64,
    /// The current profile, played once, then rest.
    pub profile: Vec<ProfileStep>,
    /// Faults injected at given times (any order).
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// The signal names the simulated firmware sends under (its own view of
    /// the DBC; defaults: the demo BMUs and IVT).
    #[serde(default)]
    pub signals: SimSignals,
    /// DC-link capacitor charging time constant through the precharge
    /// resistor, ms.
    #[serde(default = "default_precharge_tau")]
    pub precharge_tau_ms: f64,
    /// DC-link discharge time constant (PCS bleed resistor), ms.
    #[serde(default = "default_link_discharge_tau")]
    pub link_discharge_tau_ms: f64,
    /// A simulated PCS in the loop: it follows the EMS (or the profile)
    /// within the limits the host writes to it. Absent: the current
    /// follows the profile whatever protection allows.
    #[serde(default)]
    pub pcs: Option<pcs::SimPcsConfig>,
}

fn default_precharge_tau() -> f64 {
    150.0
}
fn default_link_discharge_tau() -> f64 {
    50.0
}

fn default_seed() -> u64 {
    1
}
fn default_ambient() -> f64 {
    25.0
}
fn default_bmu_period() -> u64 {
    100
}
fn default_ivt_period() -> u64 {
    20
}
fn default_step() -> u64 {
    20
}

/// One segment of the current profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileStep {
    pub duration_s: f64,
    /// Pack current in A, positive = charge; 0 = rest.
    pub current_a: f64,
    /// Free text shown in logs, e.g. "charge 0.5C".
    #[serde(default)]
    pub label: Option<String>,
}

/// A fault injected into the simulated rack at `at_s`.
// No `deny_unknown_fields` here: serde cannot combine it with `flatten`;
// the tagged `FaultKind` rejects unknown fields instead.
#[derive(Debug, Clone, Deserialize)]
pub struct Fault {
    pub at_s: f64,
    #[serde(flatten)]
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// The cell's true SOC jumps (e.g. a mis-assembled cell). Values
    /// beyond 0..100 model over-charge / over-discharge: a real over- or
    /// under-voltage through the physics.
    CellSoc { cell: usize, soc_pct: f64 },
    /// A measurement offset on one cell-voltage channel.
    CellVoltageOffset { cell: usize, offset_mv: f64 },
    /// Extra heat in a module (e.g. a failing busbar joint), in W.
    ModuleHeat { module: usize, power_w: f64 },
    /// The module's BMU stops transmitting.
    ModuleSilent { module: usize },
    /// One DBC message (by name) stops being sent; the rest of its BMU
    /// keeps talking.
    MessageSilent { message: String },
    /// A gateway repeats its cached copy of each page of one message: the
    /// frames keep coming on time, with the values (and the alive
    /// counter) of the last one sent before the fault.
    FrameReplayed { message: String },
    /// One message's CRC byte is corrupted (every frame from now on).
    CrcCorrupted { message: String },
    /// One message's frames arrive one byte short (garbage on the wire).
    FrameTruncated { message: String },
    /// One message's measured values are sent with every bit set (beyond
    /// any DBC range), the multiplexor, counter and CRC still right.
    ValuesOutOfRange { message: String },
    /// An internal short: a leak resistance across one cell, in Ω.
    CellLeak { cell: usize, resistance_ohm: f64 },
    /// The current sensor reads this value whatever flows.
    CurrentStuck { value_a: f64 },
    /// The main contactor welds shut: it stays closed whatever the coil.
    ContactorWelded,
    /// The precharge resistor fails open: the link never charges.
    PrechargeOpen,
}

/// What a fault does to one message's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageFault {
    Silent,
    Replayed,
    CrcCorrupted,
    Truncated,
    OutOfRange,
}

impl FaultKind {
    /// The message a per-message fault names, and what it does to it.
    fn on_message(&self) -> Option<(&str, MessageFault)> {
        let (m, what) = match self {
            Self::MessageSilent { message } => (message, MessageFault::Silent),
            Self::FrameReplayed { message } => (message, MessageFault::Replayed),
            Self::CrcCorrupted { message } => (message, MessageFault::CrcCorrupted),
            Self::FrameTruncated { message } => (message, MessageFault::Truncated),
            Self::ValuesOutOfRange { message } => (message, MessageFault::OutOfRange),
            _ => return None,
        };
        Some((m.as_str(), what))
    }
}

/// A `[sim]` value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SimConfigError {
    /// The field inside `[sim]`, e.g. `profile[2]`.
    pub field: String,
    pub message: String,
}

impl SimConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Why a simulated rack cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("sim: {0}")]
    Config(#[from] SimConfigError),
    #[error("`sim.faults` message_silent: the DBC {dbc} has no message `{message}`")]
    UnknownMessage { dbc: String, message: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// The rack's shape, as the site declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RackShape {
    pub modules: usize,
    pub cells_per_module: usize,
    pub temp_sensors_per_module: usize,
    pub capacity_ah: f64,
    /// The external watchdog relay drops the coils when the heartbeat has
    /// not toggled for this long, ms.
    pub watchdog_timeout_ms: u64,
}

impl SimConfig {
    /// Check values; the error names the field inside `[sim]`.
    pub fn validate(&self) -> Result<(), SimConfigError> {
        let pos = |f: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SimConfigError::new(f, format!("must be > 0, got {v}")))
            }
        };
        pos("tau1_s", self.tau1_s)?;
        pos(
            "module_heat_capacity_j_per_k",
            self.module_heat_capacity_j_per_k,
        )?;
        pos(
            "module_thermal_resistance_k_per_w",
            self.module_thermal_resistance_k_per_w,
        )?;
        pos("bleed_resistance_ohm", self.bleed_resistance_ohm)?;
        pos("bmu_period_ms", self.bmu_period_ms as f64)?;
        pos("current_period_ms", self.current_period_ms as f64)?;
        pos("step_ms", self.step_ms as f64)?;
        if let Some(p) = &self.pcs {
            pos("pcs.ramp_a_per_s", p.ramp_a_per_s)?;
            pos("pcs.limit_timeout_ms", p.limit_timeout_ms as f64)?;
            pos("pcs.max_charge_current.scale", p.max_charge_current.scale)?;
            pos(
                "pcs.max_discharge_current.scale",
                p.max_discharge_current.scale,
            )?;
            if p.response_ms > 60_000 {
                return Err(SimConfigError::new(
                    "pcs.response_ms",
                    "must be at most 60000",
                ));
            }
        }
        if !(0.0..=100.0).contains(&self.initial_soc_pct) {
            return Err(SimConfigError::new(
                "initial_soc_pct",
                format!("must be 0..=100, got {}", self.initial_soc_pct),
            ));
        }
        for (i, s) in self.profile.iter().enumerate() {
            if !(s.duration_s.is_finite() && s.duration_s > 0.0 && s.current_a.is_finite()) {
                return Err(SimConfigError::new(
                    &format!("profile[{i}]"),
                    "duration_s must be > 0 and current_a finite",
                ));
            }
        }
        Ok(())
    }

    /// Total profile length in seconds.
    pub fn profile_duration_s(&self) -> f64 {
        self.profile.iter().map(|s| s.duration_s).sum()
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        toml::from_str(
            r#"
            ocv_table = "x"
            initial_soc_pct = 50
            r0_mohm = 0.3
            r1_mohm = 0.2
            tau1_s = 30
            module_heat_capacity_j_per_k = 50000
            module_thermal_resistance_k_per_w = 0.5
            bleed_resistance_ohm = 2.0
            profile = []
            "#,
        )
        .expect("test sim config")
    }
}

/// What the simulator knows and the host must estimate, for reporting.
#[derive(Debug, Clone)]
pub struct SimTruth {
    pub soc_pct: Vec<f64>,
    pub cell_voltage_v: Vec<f64>,
    pub module_temp_c: Vec<f64>,
    pub current_a: f64,
    pub capacity_ah: Vec<f64>,
    /// Lowest and highest true mean SOC so far, %.
    pub pack_soc_range_pct: (f64, f64),
    /// What the simulated PCS did (with `[sim.pcs]`).
    pub pcs: Option<pcs::PcsStats>,
}

/// The simulated rack on the virtual bus.
pub struct Simulator {
    cfg: SimConfig,
    model: RackModel,
    port: Box<dyn CanPort>,
    /// The codec, and the simulation's own layout on it (not the host's map).
    dbc: Arc<Dbc>,
    layout: SimLayout,
    wiring: Arc<SimWiring>,
    /// The external watchdog relay drops the coils when the heartbeat has
    /// not toggled for this long, ms.
    watchdog_timeout_ms: u64,
    /// DC-link voltage, V.
    link_v: f64,
    main_welded: bool,
    precharge_open: bool,
    /// Whether the watchdog relay has dropped out (latches until restart,
    /// like a hardware relay without auto-reset).
    watchdog_tripped: bool,
    rng: ChaCha8Rng,
    now_ms: u64,
    next_bmu_ms: u64,
    next_current_ms: u64,
    bleed: Vec<bool>,
    bmu_frames: Vec<OutFrame>,
    current_frames: Vec<OutFrame>,
    voltage_offset_v: Vec<f64>,
    silent_modules: Vec<bool>,
    /// Faults on single messages: (DBC message index, what).
    message_faults: Vec<(usize, MessageFault)>,
    /// The last frame sent per entry of `bmu_frames` / `current_frames`.
    last_bmu: Vec<Option<CanFrame>>,
    last_current: Vec<Option<CanFrame>>,
    /// Send periods so far, BMU and current sensor: the alive counters.
    bmu_periods: u32,
    current_periods: u32,
    current_stuck_a: Option<f64>,
    pcs: Option<pcs::SimPcs>,
    pack_soc_range_pct: (f64, f64),
    next_fault: usize,
    current_a: f64,
    cells_per_module: usize,
    sensors_per_module: usize,
    rx: Vec<CanFrame>,
}

impl Simulator {
    /// Build the simulated rack. `wiring` carries the host's coil commands
    /// and heartbeat: current flows only through a closed main contactor,
    /// and only while the watchdog relay sees the heartbeat.
    pub fn new(
        mut cfg: SimConfig,
        rack: RackShape,
        ocv: OcvCurve,
        dbc: Arc<Dbc>,
        port: Box<dyn CanPort>,
        wiring: Arc<SimWiring>,
    ) -> Result<Self, SimError> {
        cfg.validate()?;
        cfg.faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let r = rack;
        let model = RackModel::new(
            &cfg,
            ocv,
            r.modules,
            r.cells_per_module,
            r.capacity_ah,
            &mut rng,
        );
        for f in &cfg.faults {
            if let Some((message, _)) = f.kind.on_message() {
                if dbc.message_index(message).is_none() {
                    return Err(SimError::UnknownMessage {
                        dbc: dbc.origin().to_string(),
                        message: message.to_string(),
                    });
                }
            }
        }
        let cells = r.modules * r.cells_per_module;
        let layout = SimLayout::build(
            &dbc,
            &cfg.signals,
            r.modules,
            r.cells_per_module,
            r.temp_sensors_per_module,
        )?;
        let (bmu_frames, current_frames) = (layout.bmu.clone(), layout.sensor.clone());
        let (bmu_count, current_count) = (bmu_frames.len(), current_frames.len());
        Ok(Self {
            model,
            port,
            dbc,
            layout,
            wiring,
            watchdog_timeout_ms: r.watchdog_timeout_ms,
            link_v: 0.0,
            main_welded: false,
            precharge_open: false,
            watchdog_tripped: false,
            rng,
            now_ms: 0,
            next_bmu_ms: 0,
            next_current_ms: 0,
            bleed: vec![false; cells],
            bmu_frames,
            current_frames,
            voltage_offset_v: vec![0.0; cells],
            silent_modules: vec![false; r.modules],
            message_faults: Vec::new(),
            last_bmu: vec![None; bmu_count],
            last_current: vec![None; current_count],
            bmu_periods: 0,
            current_periods: 0,
            current_stuck_a: None,
            pcs: cfg.pcs.clone().map(pcs::SimPcs::new),
            pack_soc_range_pct: (f64::INFINITY, f64::NEG_INFINITY),
            next_fault: 0,
            current_a: 0.0,
            cells_per_module: r.cells_per_module,
            sensors_per_module: r.temp_sensors_per_module,
            rx: Vec::new(),
            cfg,
        })
    }

    /// Profile current at time `t_ms`, before the contactor.
    fn profile_current_a(&self, t_ms: u64) -> f64 {
        let mut t = t_ms as f64 / 1000.0;
        for s in &self.cfg.profile {
            if t < s.duration_s {
                return s.current_a;
            }
            t -= s.duration_s;
        }
        0.0
    }

    /// Run physics and transmit frames up to `t_ms`.
    pub fn advance_to(&mut self, t_ms: u64) {
        while self.now_ms < t_ms {
            self.receive_commands();
            self.apply_faults();
            let step = self.cfg.step_ms.min(t_ms - self.now_ms);
            let (precharge, main) = self.relays();
            let profile_a = self.profile_current_a(self.now_ms);
            let pack_v = self.model.pack_voltage_v();
            self.current_a = match &mut self.pcs {
                Some(pcs) => pcs.step(self.now_ms, step, profile_a, &self.wiring, main, pack_v),
                None if main => profile_a,
                None => 0.0,
            };
            self.model
                .step(step as f64 / 1000.0, self.current_a, &self.bleed);
            let pack_v = self.model.pack_voltage_v();
            let dt_ms = step as f64;
            self.link_v = if main {
                pack_v
            } else if precharge && !self.precharge_open {
                pack_v + (self.link_v - pack_v) * (-dt_ms / self.cfg.precharge_tau_ms).exp()
            } else {
                self.link_v * (-dt_ms / self.cfg.link_discharge_tau_ms).exp()
            };
            self.now_ms += step;
            if self.now_ms >= self.next_current_ms {
                self.transmit(false);
                self.next_current_ms += self.cfg.current_period_ms;
            }
            if self.now_ms >= self.next_bmu_ms {
                let soc = self.model.soc_pct();
                let mean = soc.iter().sum::<f64>() / soc.len().max(1) as f64;
                let (lo, hi) = self.pack_soc_range_pct;
                self.pack_soc_range_pct = (lo.min(mean), hi.max(mean));
                self.transmit(true);
                self.next_bmu_ms += self.cfg.bmu_period_ms;
            }
        }
    }

    /// Effective (precharge, main) contact states: the host's commands
    /// through the watchdog relay, and a welded main contact.
    fn relays(&mut self) -> (bool, bool) {
        let cmd = self.wiring.commanded();
        if !self.watchdog_tripped {
            if let Some(last) = self.wiring.last_heartbeat_ms() {
                if self.now_ms.saturating_sub(last) > self.watchdog_timeout_ms {
                    tracing::error!(
                        last_heartbeat_ms = last,
                        now_ms = self.now_ms,
                        "sim: watchdog relay dropped out: coils de-energised"
                    );
                    self.watchdog_tripped = true;
                }
            }
        }
        let energised = !self.watchdog_tripped;
        (
            cmd.precharge && energised,
            (cmd.main && energised) || self.main_welded,
        )
    }

    /// Whether the external watchdog relay has dropped out.
    pub fn watchdog_tripped(&self) -> bool {
        self.watchdog_tripped
    }

    /// Whether current can flow now (main contact closed).
    pub fn main_closed(&mut self) -> bool {
        self.relays().1
    }

    fn receive_commands(&mut self) {
        self.rx.clear();
        self.port.drain(&mut self.rx);
        for f in &self.rx {
            if let Some(i) = self.dbc.message_index_by_id(f.id()) {
                let per = self.cells_per_module;
                self.layout
                    .apply_bleed(&self.dbc, i, f.data(), per, &mut self.bleed);
            }
        }
    }

    fn apply_faults(&mut self) {
        while let Some(f) = self.cfg.faults.get(self.next_fault) {
            if (f.at_s * 1000.0) as u64 > self.now_ms {
                break;
            }
            tracing::warn!(at_s = f.at_s, fault = ?f.kind, "sim: injecting fault");
            if let Some((message, what)) = f.kind.on_message() {
                // Known: checked in `new`.
                if let Some(i) = self.dbc.message_index(message) {
                    self.message_faults.push((i, what));
                }
            }
            match f.kind {
                FaultKind::CellSoc { cell, soc_pct } => {
                    if let Some(c) = self.model.cells.get_mut(cell) {
                        c.soc = (soc_pct / 100.0).clamp(model::SOC_MIN, model::SOC_MAX);
                    }
                }
                FaultKind::CellVoltageOffset { cell, offset_mv } => {
                    if let Some(o) = self.voltage_offset_v.get_mut(cell) {
                        *o = offset_mv / 1000.0;
                    }
                }
                FaultKind::ModuleHeat { module, power_w } => {
                    if let Some(h) = self.model.module_extra_heat_w.get_mut(module) {
                        *h = power_w;
                    }
                }
                FaultKind::ModuleSilent { module } => {
                    if let Some(s) = self.silent_modules.get_mut(module) {
                        *s = true;
                    }
                }
                FaultKind::CellLeak {
                    cell,
                    resistance_ohm,
                } => {
                    if let Some(c) = self.model.cells.get_mut(cell) {
                        c.leak_ohm = Some(resistance_ohm);
                    }
                }
                FaultKind::CurrentStuck { value_a } => self.current_stuck_a = Some(value_a),
                FaultKind::MessageSilent { .. }
                | FaultKind::FrameReplayed { .. }
                | FaultKind::CrcCorrupted { .. }
                | FaultKind::FrameTruncated { .. }
                | FaultKind::ValuesOutOfRange { .. } => {}
                FaultKind::ContactorWelded => self.main_welded = true,
                FaultKind::PrechargeOpen => self.precharge_open = true,
            }
            self.next_fault += 1;
        }
    }

    /// Measured value of a quantity: truth + noise + faults.
    fn measure(&mut self, q: SimValue) -> f64 {
        let noise = |rng: &mut ChaCha8Rng, sigma: f64| {
            if sigma > 0.0 {
                Normal::new(0.0, sigma).map_or(0.0, |d| d.sample(rng))
            } else {
                0.0
            }
        };
        match q {
            SimValue::CellVoltage(i) => {
                self.model.terminal_v(i)
                    + self.voltage_offset_v[i]
                    + noise(&mut self.rng, self.cfg.cell_noise_mv / 1000.0)
            }
            SimValue::Temperature(s) => {
                let module = s / self.sensors_per_module;
                self.model.module_temp_c[module] + noise(&mut self.rng, self.cfg.temp_noise_c)
            }
            SimValue::Current => match self.current_stuck_a {
                Some(v) => v,
                None => {
                    self.current_a
                        + self.cfg.current_offset_a
                        + noise(&mut self.rng, self.cfg.current_noise_a)
                }
            },
            SimValue::PackVoltage => self.model.pack_voltage_v(),
            SimValue::LinkVoltage => self.link_v,
        }
    }

    fn transmit(&mut self, bmu: bool) {
        let (layouts, mut last, period) = if bmu {
            self.bmu_periods = self.bmu_periods.wrapping_add(1);
            (
                std::mem::take(&mut self.bmu_frames),
                std::mem::take(&mut self.last_bmu),
                self.bmu_periods,
            )
        } else {
            self.current_periods = self.current_periods.wrapping_add(1);
            (
                std::mem::take(&mut self.current_frames),
                std::mem::take(&mut self.last_current),
                self.current_periods,
            )
        };
        for (layout, last) in layouts.iter().zip(last.iter_mut()) {
            if self.is_silent(layout) {
                continue;
            }
            let cached = last.filter(|_| self.has(layout.message, MessageFault::Replayed));
            if let Some(frame) = cached.or_else(|| self.build_frame(layout, period)) {
                let _ = self.port.send(&frame);
                *last = Some(frame);
            }
        }
        if bmu {
            (self.bmu_frames, self.last_bmu) = (layouts, last);
        } else {
            (self.current_frames, self.last_current) = (layouts, last);
        }
    }

    fn has(&self, message: usize, what: MessageFault) -> bool {
        self.message_faults.contains(&(message, what))
    }

    fn is_silent(&self, layout: &OutFrame) -> bool {
        self.has(layout.message, MessageFault::Silent)
            || layout.values.iter().any(|&(_, q, _)| match q {
                SimValue::CellVoltage(i) => self.silent_modules[i / self.cells_per_module],
                SimValue::Temperature(s) => self.silent_modules[s / self.sensors_per_module],
                _ => false,
            })
    }

    /// One page of a message as the firmware sends it in send period
    /// `period`: measurements, alive counter, CRC.
    fn build_frame(&mut self, layout: &OutFrame, period: u32) -> Option<CanFrame> {
        let mut values: Vec<(usize, f64)> = Vec::with_capacity(layout.values.len() + 2);
        if let Some((sig, v)) = layout.mux {
            values.push((sig, v as f64));
        }
        let e2e = self.layout.e2e.get(&layout.message).cloned();
        if let Some((sig, modulus)) = e2e.as_ref().and_then(|p| p.counter()) {
            values.push((sig, f64::from(period % modulus)));
        }
        for &(sig, q, per_si) in &layout.values {
            values.push((sig, self.measure(q) * per_si));
        }
        let msg = self.dbc.message_at(layout.message);
        let mut data = match msg.encode(&values) {
            Ok(d) => d,
            // Out-of-range physics (e.g. a cell driven far beyond the
            // DBC range) is simply not transmittable: the BMU stays
            // silent and the host sees the module go stale.
            Err(e) => {
                tracing::debug!(message = %msg.name, error = %e, "sim: cannot encode");
                return None;
            }
        };
        if self.has(layout.message, MessageFault::OutOfRange) {
            for &(sig, _, _) in &layout.values {
                let s = &msg.signals[sig];
                let ones = u64::MAX >> (64 - u32::from(s.size_bits));
                let _ = s.encode_raw(ones, &mut data);
            }
        }
        if let Some(p) = &e2e {
            p.seal(msg.id, &mut data);
            if let Some(b) = p
                .crc_byte()
                .filter(|_| self.has(layout.message, MessageFault::CrcCorrupted))
            {
                data[b] ^= 0x5A;
            }
        }
        if self.has(layout.message, MessageFault::Truncated) {
            data.pop();
        }
        CanFrame::new(msg.id, &data).ok()
    }

    /// Ground truth, for reporting only.
    pub fn truth(&self) -> SimTruth {
        SimTruth {
            soc_pct: self.model.soc_pct(),
            cell_voltage_v: (0..self.model.cells.len())
                .map(|i| self.model.terminal_v(i))
                .collect(),
            module_temp_c: self.model.module_temp_c.clone(),
            current_a: self.current_a,
            capacity_ah: self.model.cells.iter().map(|c| c.capacity_ah).collect(),
            pack_soc_range_pct: self.pack_soc_range_pct,
            pcs: self.pcs.as_ref().map(|p| p.stats),
        }
    }

    /// Bleed switches as the simulated BMUs currently hold them.
    pub fn bleeding(&self) -> &[bool] {
        &self.bleed
    }

    pub fn profile_duration_s(&self) -> f64 {
        self.cfg.profile_duration_s()
    }
}
