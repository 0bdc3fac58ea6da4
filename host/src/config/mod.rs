//! Site configuration: one TOML file per site, loaded and validated once at
//! start-up.
//!
//! Owns: parsing, `include` resolution, path resolution relative to the
//! config file, and every validation rule. Errors name the file and the
//! field (`protection.cell_over_voltage_v.msl.limit`). May not touch: hardware,
//! plugins, or the running control cycle; it produces plain data.
//!
//! `extends = "base.toml"` at the top of a site file starts from that file
//! (relative to the site file; it may extend another, up to 8 deep): tables
//! merge key by key, anything else (values, arrays, arrays of tables) is
//! replaced. Paths in the merged result resolve against the extending
//! file, so keep a base and its sites in one directory.
//!
//! `include`: any table of the form `{ include = "file.toml" }` inside a
//! plugin's `config` section is replaced by the contents of that TOML file
//! (relative to the site file). That is how OCV tables in `configs/` reach
//! plugins, which cannot read files themselves.

mod template;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plugins::Role;
pub use bms_plugin_runtime::config::{
    PluginPolicy, PluginSlot, PluginsConfig, SandboxConfig, SandboxOverride, StateRejectedPolicy,
};

pub use template::{expand as expand_template, parse_hhmm};

/// Why a site configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: `{field}`: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A validated site configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub site: SiteSection,
    pub rack: RackConfig,
    pub can: CanConfig,
    #[serde(default)]
    pub control: ControlConfig,
    pub protection: crate::protection::limits::ProtectionConfig,
    pub operator: OperatorConfig,
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub sim: Option<crate::sim::SimConfig>,
    /// The SunSpec Modbus TCP server; absent: not served.
    #[serde(default)]
    pub modbus: Option<ModbusConfig>,
    /// The PCS link (Modbus TCP client writing the limits); absent: none.
    #[serde(default)]
    pub pcs: Option<crate::io::modbus::pcs::PcsConfig>,
    /// Several racks in parallel (group level); absent: one rack.
    #[serde(default)]
    pub bank: Option<crate::bank::BankConfig>,
    /// The contactor driver of a hardware site (no `[sim]`); a simulated
    /// site drives the simulator's contactors.
    #[serde(default)]
    pub outputs: Option<OutputsConfig>,
    /// How the event and audit records bound memory and disk (segment
    /// size, sealed segments kept, records in memory).
    #[serde(default)]
    pub journal: bms_journal::Retention,
    /// Directory of the config file; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself, for error messages.
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    pub name: String,
    /// Where the host keeps its durable state (event record, control
    /// socket), relative to the site file.
    pub state_dir: PathBuf,
}

/// `[operator]`: who may act on the running host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The users and their roles (relative to the site file): one
    /// `[[user]]` with `name`, `role` (viewer, operator, admin) and the
    /// `argon2id` hash of their secret (`bmsctl hash-secret`). Mode 0600 on
    /// a hardware site. Absent: nobody may reset, reload or roll back.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
}

/// Geometry and rating of one rack.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RackConfig {
    pub modules: u32,
    pub cells_per_module: u32,
    pub temp_sensors_per_module: u32,
    /// Rated capacity of one cell (the string), in Ah.
    pub capacity_ah: f32,
    /// The BMU's bleed resistor per cell, in Ω: lets the host tell
    /// estimators how much current balancing drew from each cell.
    pub bleed_resistance_ohm: f32,
    #[serde(default)]
    pub chemistry: Option<String>,
}

impl RackConfig {
    pub fn cell_count(&self) -> usize {
        (self.modules * self.cells_per_module) as usize
    }
    /// Temperature sensor index (within the module) that covers `cell`
    /// (within the module): sensors are spread evenly along the module.
    pub fn sensor_for_cell(&self, cell_in_module: u32) -> u32 {
        (cell_in_module * self.temp_sensors_per_module / self.cells_per_module)
            .min(self.temp_sensors_per_module - 1)
    }
}

/// CAN mapping: which DBC signals carry which rack quantity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanConfig {
    /// DBC file, relative to the site file.
    pub dbc: PathBuf,
    /// A SocketCAN interface (`can0`, `vcan0`) to carry the frames. In
    /// simulation the simulated BMUs then send on it too, so the rack runs
    /// over a real (virtual) bus; use a paced `--speed`. Default: the
    /// in-process virtual bus.
    #[serde(default)]
    pub interface: Option<String>,
    /// A module whose cell voltages or temperatures are older than this is stale.
    pub module_timeout_ms: u64,
    /// Current / pack-voltage data older than this is stale.
    pub current_timeout_ms: u64,
    /// Added to every DBC message id (racks sharing one bus each use their
    /// own id range with the same DBC). Default 0.
    #[serde(default)]
    pub id_offset: u32,
    pub signals: CanSignals,
    /// An alive counter the host sends, encoded from the DBC; absent: none.
    #[serde(default)]
    pub heartbeat: Option<CanHeartbeat>,
    /// A mapped inbound message is silent, and every module or sensor it
    /// carries stale, once this many of its periods pass without it.
    /// Default 3.
    #[serde(default = "default_stale_after_periods")]
    pub stale_after_periods: u32,
    /// Expected period in ms per DBC message name, over the DBC's
    /// `GenMsgCycleTime`. A mapped message with neither is supervised by
    /// `module_timeout_ms` / `current_timeout_ms` alone.
    #[serde(default)]
    pub message_period_ms: std::collections::BTreeMap<String, u64>,
    /// End-to-end checks of inbound messages; absent: none.
    #[serde(default)]
    pub e2e: Vec<CanE2e>,
}

fn default_stale_after_periods() -> u32 {
    3
}

/// `[[can.e2e]]`: one protected inbound message (or one per module, with
/// `{module}` in a signal name). A frame whose counter repeats, jumps by
/// more than `max_counter_jump`, or whose CRC is wrong is dropped; after
/// `max_bad` such frames in a row (per multiplexed page) the message
/// counts as lost and every module or sensor it carries is stale, until
/// `max_bad` good frames in a row. See `bms_can::e2e` for the CRC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanE2e {
    /// DBC signal of the alive counter (2..=16 bits, in every page).
    #[serde(default)]
    pub counter: Option<String>,
    /// DBC signal of the CRC-8/SAE-J1850 byte.
    #[serde(default)]
    pub crc8: Option<String>,
    /// Bad frames in a row before the message counts as lost. Default 3.
    #[serde(default = "default_e2e_max_bad")]
    pub max_bad: u32,
    /// Largest counter step still accepted (lost frames). Default 3.
    #[serde(default = "default_e2e_max_counter_jump")]
    pub max_counter_jump: u16,
}

fn default_e2e_max_bad() -> u32 {
    3
}

fn default_e2e_max_counter_jump() -> u16 {
    3
}

/// `[can.heartbeat]`: the host's alive counter, for BMUs that open their
/// own relays or stop balancing when the host falls silent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanHeartbeat {
    /// DBC signal that carries the counter (it counts 0..=max raw, then
    /// wraps); its message is sent alone.
    pub signal: String,
    /// Send every this many ms (rounded up to the protection period).
    pub period_ms: u64,
}

/// Signal-name templates. `{module}`, `{cell}` (cell within module) and
/// `{sensor}` (sensor within module) are substituted; `{cell:02}` pads.
/// Scaling comes from the DBC; the DBC unit (`mV`/`V`, `mA`/`A`,
/// `degC`/`°C`) decides the conversion to volts, amperes and °C.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanSignals {
    pub cell_voltage: String,
    pub temperature: String,
    pub current: String,
    pub pack_voltage: String,
    /// DC-link voltage behind the contactors (precharge and weld checks).
    pub link_voltage: String,
    /// Outbound bleed bitmask per module (bit n = cell n of the module).
    pub bleed_mask: String,
}

/// Control-cycle timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Control-cycle period in ms.
    #[serde(default = "default_cycle_ms")]
    pub cycle_ms: u64,
    /// Print a status line every this many ms of (simulated) time.
    #[serde(default = "default_status_ms")]
    pub status_interval_ms: u64,
    /// Time of day at host start, `HH:MM`, for time-of-use schedules in
    /// simulation. Real sites use the system clock.
    #[serde(default)]
    pub start_time: Option<String>,
}

fn default_cycle_ms() -> u64 {
    100
}
fn default_status_ms() -> u64 {
    60_000
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            cycle_ms: default_cycle_ms(),
            status_interval_ms: default_status_ms(),
            start_time: None,
        }
    }
}

/// `[modbus]`: the SunSpec Modbus TCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// Listen address, e.g. `127.0.0.1:1502` (port 0: any free port).
    pub bind: std::net::SocketAddr,
    /// Modbus unit id the server answers to.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// Register address of the `SunS` marker (SunSpec: 0, 40000 or 50000).
    #[serde(default = "default_sunspec_base")]
    pub base: u16,
    /// Client addresses that may write (`CtrlHb`, `AlmRst`); empty: none.
    #[serde(default)]
    pub allowed_writers: Vec<std::net::IpAddr>,
    /// A controller heartbeat (`CtrlHb`) older than this is reported as
    /// lost; absent: not supervised.
    #[serde(default)]
    pub heartbeat_timeout_s: Option<f64>,
    /// What a lost heartbeat does: `alarm` (log and report), `zero-current`
    /// (hold every rack at 0 A, connected) or `open` (hold every rack
    /// open). Withdrawn when the heartbeat comes back.
    #[serde(default)]
    pub on_heartbeat_loss: HeartbeatLoss,
    /// Let an allowed writer's `AlmRst` clear MSL latches. Off (default):
    /// a latch needs an authenticated operator reset over the control
    /// socket, whoever can reach the Modbus port. On: warned at start-up.
    #[serde(default)]
    pub remote_msl_reset: bool,
    /// Clients served at once; a connection beyond is closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A client that sends no request for this long is disconnected, s.
    #[serde(default = "default_idle_timeout_s")]
    pub idle_timeout_s: f64,
    #[serde(default = "default_manufacturer")]
    pub manufacturer: String,
}

/// `[outputs]`: how a hardware site drives its contactors and watchdog
/// line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "driver", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OutputsConfig {
    /// Coils of a Modbus TCP remote I/O module.
    ModbusCoils(crate::io::coils::CoilConfig),
}

/// `modbus.on_heartbeat_loss`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeartbeatLoss {
    #[default]
    Alarm,
    ZeroCurrent,
    Open,
}

fn default_unit_id() -> u8 {
    1
}
fn default_sunspec_base() -> u16 {
    40000
}
fn default_max_connections() -> usize {
    64
}
fn default_idle_timeout_s() -> f64 {
    60.0
}

fn default_manufacturer() -> String {
    "bmshost".into()
}

impl SiteConfig {
    /// Read, parse, resolve includes and validate a site file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse `text` as if read from `path` (which anchors relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut table = with_extends(text, path, 0)?;
        // Protection's OCV table may be an include, like a plugin's.
        if let Some(soc) = table
            .get_mut("protection")
            .and_then(|p| p.as_table_mut())
            .and_then(|p| p.get_mut("soc"))
        {
            resolve_includes(soc, &base_dir, path, "protection.soc")?;
        }
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            field: String::new(),
            message: e.to_string(),
        })?;
        let de = toml::Deserializer::new(&merged);
        let mut cfg: SiteConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                path: path.to_owned(),
                field,
                message: inner.message().trim().to_string(),
            }
        })?;
        cfg.base_dir = base_dir;
        cfg.source = path.to_owned();
        cfg.protection.soc.capacity_ah = cfg.rack.capacity_ah;
        cfg.validate()?;
        for role in Role::ALL {
            let base = cfg.base_dir.clone();
            let slot = cfg.plugins.slot_mut(role);
            resolve_includes(
                &mut slot.config,
                &base,
                path,
                &format!("plugins.{role}.config"),
            )?;
        }
        Ok(cfg)
    }

    /// Resolve `p` relative to the config file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rack;
        if r.modules == 0 || r.modules > 64 {
            return Err(self.invalid("rack.modules", format!("must be 1..=64, got {}", r.modules)));
        }
        if r.cells_per_module == 0 || r.cells_per_module > 32 {
            return Err(self.invalid(
                "rack.cells_per_module",
                format!(
                    "must be 1..=32 (bleed mask width), got {}",
                    r.cells_per_module
                ),
            ));
        }
        if r.temp_sensors_per_module == 0 || r.temp_sensors_per_module > r.cells_per_module {
            return Err(self.invalid(
                "rack.temp_sensors_per_module",
                format!(
                    "must be 1..=cells_per_module, got {}",
                    r.temp_sensors_per_module
                ),
            ));
        }
        positive(self, "rack.capacity_ah", r.capacity_ah)?;
        let j = &self.journal;
        if j.segment_bytes < 4096 || j.memory_records == 0 {
            return Err(self.invalid(
                "journal",
                format!(
                    "segment_bytes must be >= 4096 and memory_records >= 1, got {} and {}",
                    j.segment_bytes, j.memory_records
                ),
            ));
        }
        positive(self, "rack.bleed_resistance_ohm", r.bleed_resistance_ohm)?;
        if self.control.cycle_ms == 0 || self.control.cycle_ms > 10_000 {
            return Err(self.invalid(
                "control.cycle_ms",
                format!("must be 1..=10000, got {}", self.control.cycle_ms),
            ));
        }
        if let Some(t) = &self.control.start_time {
            template::parse_hhmm(t).map_err(|m| self.invalid("control.start_time", m))?;
        }
        if self
            .can
            .heartbeat
            .as_ref()
            .is_some_and(|h| h.period_ms == 0)
        {
            return Err(self.invalid("can.heartbeat.period_ms", "must be > 0"));
        }
        if let Some(i) = &self.can.interface {
            // IFNAMSIZ is 16 with the terminating NUL.
            if i.is_empty() || i.len() > 15 || i.contains(['/', ' ']) {
                return Err(self.invalid(
                    "can.interface",
                    format!("`{i}` is not a network interface name (1..=15 characters, no `/` or spaces)"),
                ));
            }
        }
        if !(1..=100).contains(&self.can.stale_after_periods) {
            return Err(self.invalid(
                "can.stale_after_periods",
                format!("must be 1..=100, got {}", self.can.stale_after_periods),
            ));
        }
        if let Some((name, _)) = self.can.message_period_ms.iter().find(|(_, &v)| v == 0) {
            return Err(self.invalid(&format!("can.message_period_ms.{name}"), "must be > 0"));
        }
        for (field, v) in [
            ("can.module_timeout_ms", self.can.module_timeout_ms),
            ("can.current_timeout_ms", self.can.current_timeout_ms),
        ] {
            if v < self.control.cycle_ms {
                return Err(self.invalid(
                    field,
                    format!(
                        "must be at least control.cycle_ms ({}), got {v}",
                        self.control.cycle_ms
                    ),
                ));
            }
        }
        self.protection
            .validate()
            .map_err(|e| self.invalid(&format!("protection.{}", e.field()), e.message()))?;
        let mut deadline_sum_ms = 0;
        for role in Role::ALL {
            let sb = self.plugins.sandbox_for(role);
            let field = |f: &str| {
                if self.plugins.slot(role).sandbox == SandboxOverride::default() {
                    format!("plugins.sandbox.{f}")
                } else {
                    format!("plugins.{role}.sandbox.{f}")
                }
            };
            if sb.memory_mib == 0 {
                return Err(self.invalid(&field("memory_mib"), "must be > 0"));
            }
            if sb.deadline_ms == 0 {
                return Err(self.invalid(&field("deadline_ms"), "must be > 0"));
            }
            if !(1..=65_536).contains(&sb.max_state_kib) {
                return Err(self.invalid(&field("max_state_kib"), "must be 1..=65536 KiB"));
            }
            deadline_sum_ms += sb.deadline_ms + 1;
        }
        // The four plugin calls run back to back each cycle; all of them at
        // their deadline (+1 ms epoch granularity) must still fit.
        if deadline_sum_ms >= self.control.cycle_ms {
            return Err(self.invalid(
                "plugins.sandbox.deadline_ms",
                format!(
                    "the four roles' deadlines (+1 ms each) add up to {deadline_sum_ms} ms, \
                     which does not fit in control.cycle_ms ({}): four plugins run per cycle",
                    self.control.cycle_ms
                ),
            ));
        }
        let pol = &self.plugins.policy;
        for (f, v) in [
            ("restart_backoff_ms", pol.restart_backoff_ms),
            ("restart_backoff_max_ms", pol.restart_backoff_max_ms),
            ("quarantine_window_s", pol.quarantine_window_s),
            ("state_save_interval_s", pol.state_save_interval_s),
            ("quarantine_crashes", u64::from(pol.quarantine_crashes)),
            ("checkpoint_cycles", u64::from(pol.checkpoint_cycles)),
        ] {
            if v == 0 {
                return Err(self.invalid(&format!("plugins.policy.{f}"), "must be > 0"));
            }
        }
        if pol.restart_backoff_max_ms < pol.restart_backoff_ms {
            return Err(self.invalid(
                "plugins.policy.restart_backoff_max_ms",
                "must be at least restart_backoff_ms",
            ));
        }
        if let Some(m) = &self.modbus {
            if ![0u16, 40000, 50000].contains(&m.base) {
                return Err(self.invalid(
                    "modbus.base",
                    format!(
                        "must be 0, 40000 or 50000 (SunSpec base addresses), got {}",
                        m.base
                    ),
                ));
            }
            if m.unit_id == 0 || m.unit_id > 247 {
                return Err(self.invalid(
                    "modbus.unit_id",
                    format!("must be 1..=247, got {}", m.unit_id),
                ));
            }
            if !(1..=4096).contains(&m.max_connections) {
                return Err(self.invalid(
                    "modbus.max_connections",
                    format!("must be 1..=4096, got {}", m.max_connections),
                ));
            }
            if !(m.idle_timeout_s.is_finite() && (0.1..=86_400.0).contains(&m.idle_timeout_s)) {
                return Err(self.invalid(
                    "modbus.idle_timeout_s",
                    format!("must be 0.1..=86400 s, got {}", m.idle_timeout_s),
                ));
            }
            if m.heartbeat_timeout_s
                .is_some_and(|t| !(t.is_finite() && t > 0.0))
            {
                return Err(self.invalid(
                    "modbus.heartbeat_timeout_s",
                    "must be a number of seconds > 0",
                ));
            }
        }
        if let Some(b) = &self.bank {
            b.validate()
                .map_err(|(field, msg)| self.invalid(&format!("bank.{field}"), msg))?;
            // Per-rack simulation overrides must make a valid simulation.
            for i in 0..b.racks.len() {
                if let Some(sim) = &b.rack_config(self, i).sim {
                    sim.validate().map_err(|e| {
                        self.invalid(&format!("bank.racks[{i}] (sim.{})", e.field), e.message)
                    })?;
                }
            }
        }
        if let Some(p) = &self.pcs {
            p.validate()
                .map_err(|(field, msg)| self.invalid(&format!("pcs.{field}"), msg))?;
        }
        if let Some(sim) = &self.sim {
            sim.validate()
                .map_err(|e| self.invalid(&format!("sim.{}", e.field), e.message))?;
            if sim.pcs.is_some() && self.pcs.is_none() {
                return Err(self.invalid(
                    "sim.pcs",
                    "a simulated PCS needs [pcs]: the register map the host writes its limits to",
                ));
            }
            if sim.pcs.is_some() && self.bank.is_some() {
                return Err(self.invalid(
                    "sim.pcs",
                    "a simulated PCS is for a one-rack site; a bank's racks share no simulated PCS yet",
                ));
            }
        }
        match (&self.sim, &self.outputs) {
            (Some(_), Some(_)) => return Err(self.invalid(
                "outputs",
                "a site with [sim] drives the simulator's contactors; remove [outputs] or [sim]",
            )),
            (None, None) if self.bank.is_none() => {
                return Err(self.invalid(
                    "outputs",
                    "a hardware site (no [sim]) needs [outputs] to drive its contactors, e.g. \
                     driver = \"modbus-coils\"",
                ))
            }
            (None, _) if self.bank.is_some() => {
                return Err(self.invalid(
                    "bank",
                    "a bank runs on the simulator only in this version: add [sim], or run each \
                     rack as its own hardware site",
                ))
            }
            (_, Some(OutputsConfig::ModbusCoils(c))) => c
                .validate()
                .map_err(|(field, msg)| self.invalid(&format!("outputs.{field}"), msg))?,
            _ => {}
        }
        Ok(())
    }
}

fn positive(cfg: &SiteConfig, field: &str, v: f32) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(cfg.invalid(field, format!("must be a finite number > 0, got {v}")))
    }
}

/// `text` (read from `path`) as a table with its `extends` chain merged in.
fn with_extends(text: &str, path: &Path, depth: u32) -> Result<toml::Table, ConfigError> {
    let parse_err = |field: &str, message: String| ConfigError::Parse {
        path: path.to_owned(),
        field: field.into(),
        message,
    };
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| parse_err("", e.message().to_string()))?;
    let Some(base) = table.remove("extends") else {
        return Ok(table);
    };
    let Some(base) = base.as_str() else {
        return Err(parse_err("extends", "must be a file name (string)".into()));
    };
    if depth >= 8 {
        return Err(parse_err(
            "extends",
            "more than 8 files deep (a loop?)".into(),
        ));
    }
    let base_path = path.parent().unwrap_or(Path::new(".")).join(base);
    let base_text = std::fs::read_to_string(&base_path).map_err(|source| ConfigError::Read {
        path: base_path.clone(),
        source,
    })?;
    let mut merged = with_extends(&base_text, &base_path, depth + 1)?;
    merge(&mut merged, table);
    Ok(merged)
}

/// Overlay `over` onto `base`: tables merge, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Replace every `{ include = "file.toml" }` table under `value` with the
/// parsed contents of that file.
fn resolve_includes(
    value: &mut toml::Value,
    base: &Path,
    site: &Path,
    field: &str,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::Table(t) => {
            if let (1, Some(toml::Value::String(file))) = (t.len(), t.get("include")) {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let included: toml::Value =
                    toml::from_str(&text).map_err(|e| ConfigError::Parse {
                        path: path.clone(),
                        field: format!("{field} (included by {})", site.display()),
                        message: e.message().to_string(),
                    })?;
                *value = included;
                return Ok(());
            }
            for (k, v) in t.iter_mut() {
                resolve_includes(v, base, site, &format!("{field}.{k}"))?;
            }
            Ok(())
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                resolve_includes(v, base, site, &format!("{field}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
