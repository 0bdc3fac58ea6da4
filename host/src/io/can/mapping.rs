//! Binds DBC signals to rack quantities, from the site config's signal
//! templates. Resolved once at start-up: every template is expanded for
//! every module / cell / sensor and looked up in the DBC, and a missing
//! signal is an error naming both the signal and the DBC file.
//!
//! The simulator does not use this mapping: it encodes through its own
//! layout (`bms_sim::layout`), so the two sides agree only by sharing a
//! DBC file, as a real BMU and host do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::dbc::{Dbc, DbcError, MuxRole, SignalRef};
use crate::config::{expand_template, SiteConfig};

/// What a mapped signal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// Voltage of cell `n` (rack index, module-major).
    CellVoltage(usize),
    /// Temperature sensor `n` (rack index, module-major).
    Temperature(usize),
    PackCurrent,
    PackVoltage,
    /// DC-link voltage behind the contactors.
    LinkVoltage,
    /// Outbound bleed bitmask of module `n`.
    BleedMask(usize),
    /// Outbound alive counter of the host (`can.heartbeat`).
    Heartbeat,
}

/// A mapped signal and the factor from its DBC unit to SI (V, A, °C).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub signal: SignalRef,
    pub to_si: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("{site}: `can.{field}`: {message}")]
    Template {
        site: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error("{site}: `can.{field}` maps {quantity:?} to `{signal}`: {source}")]
    Signal {
        site: PathBuf,
        field: &'static str,
        quantity: Quantity,
        signal: String,
        source: Box<DbcError>,
    },
    #[error("{site}: `can.{field}`: signal `{signal}` has unit `{unit}` in the DBC; expected one of {expected}")]
    Unit {
        site: PathBuf,
        field: &'static str,
        signal: String,
        unit: String,
        expected: &'static str,
    },
    #[error("{site}: `can.signals.bleed_mask`: signal `{signal}` has {bits} bits but a module has {cells} cells (one bit per cell)")]
    MaskTooNarrow {
        site: PathBuf,
        signal: String,
        bits: u8,
        cells: u32,
    },
    #[error("{site}: `{field}`: message `{message}`: {reason} (DBC {dbc})")]
    Period {
        site: PathBuf,
        field: String,
        message: String,
        dbc: String,
        reason: String,
    },
    #[error("{site}: `{field}`: {message} (DBC {dbc})")]
    E2e {
        site: PathBuf,
        field: String,
        message: String,
        dbc: String,
    },
    #[error("{site}: signal `{signal}` is mapped twice ({first:?} and {second:?})")]
    Duplicate {
        site: PathBuf,
        signal: String,
        first: Quantity,
        second: Quantity,
    },
}

/// The resolved mapping of one rack.
#[derive(Debug)]
pub struct RackMap {
    pub dbc: Arc<Dbc>,
    pub slots: HashMap<Quantity, Slot>,
    by_signal: HashMap<SignalRef, Quantity>,
    pub cells: usize,
    pub sensors: usize,
    pub modules: usize,
    /// Every inbound mapped message, with what it carries and its deadline.
    pub watched: Vec<WatchedMessage>,
    /// Inbound messages with end-to-end checks (`can.e2e`).
    pub protected: Vec<super::e2e::Protected>,
}

/// An inbound message the host expects, and who goes stale without it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchedMessage {
    pub message: usize,
    /// Expected period (config over DBC), `None` when neither gives one.
    pub period_ms: Option<u64>,
    /// `period_ms × can.stale_after_periods`.
    pub deadline_ms: Option<u64>,
    /// Modules with a cell voltage or temperature in this message.
    pub modules: Vec<usize>,
    /// Carries the current sensor's current or voltages.
    pub current_sensor: bool,
}

impl RackMap {
    pub fn resolve(cfg: &SiteConfig, dbc: Arc<Dbc>) -> Result<Self, MappingError> {
        let r = &cfg.rack;
        let s = &cfg.can.signals;
        let site = cfg.source.clone();
        let mut map = Self {
            dbc,
            slots: HashMap::new(),
            by_signal: HashMap::new(),
            cells: r.cell_count(),
            sensors: (r.modules * r.temp_sensors_per_module) as usize,
            modules: r.modules as usize,
            watched: Vec::new(),
            protected: Vec::new(),
        };
        const VOLT: &[(&str, f64)] = &[("mV", 1e-3), ("V", 1.0)];
        const AMP: &[(&str, f64)] = &[("mA", 1e-3), ("A", 1.0)];
        const DEG: &[(&str, f64)] = &[("degC", 1.0), ("°C", 1.0), ("C", 1.0), ("deg C", 1.0)];
        for m in 0..r.modules {
            for c in 0..r.cells_per_module {
                let q = Quantity::CellVoltage((m * r.cells_per_module + c) as usize);
                let vars = [("module", m), ("cell", c)];
                map.add(
                    &site,
                    "signals.cell_voltage",
                    &s.cell_voltage,
                    &vars,
                    q,
                    VOLT,
                    "mV, V",
                )?;
            }
            for t in 0..r.temp_sensors_per_module {
                let q = Quantity::Temperature((m * r.temp_sensors_per_module + t) as usize);
                let vars = [("module", m), ("sensor", t)];
                map.add(
                    &site,
                    "signals.temperature",
                    &s.temperature,
                    &vars,
                    q,
                    DEG,
                    "degC, °C",
                )?;
            }
            let vars = [("module", m)];
            let q = Quantity::BleedMask(m as usize);
            map.add(
                &site,
                "signals.bleed_mask",
                &s.bleed_mask,
                &vars,
                q,
                &[("", 1.0)],
                "no unit",
            )?;
        }
        map.add(
            &site,
            "signals.current",
            &s.current,
            &[],
            Quantity::PackCurrent,
            AMP,
            "mA, A",
        )?;
        map.add(
            &site,
            "signals.pack_voltage",
            &s.pack_voltage,
            &[],
            Quantity::PackVoltage,
            VOLT,
            "mV, V",
        )?;
        map.add(
            &site,
            "signals.link_voltage",
            &s.link_voltage,
            &[],
            Quantity::LinkVoltage,
            VOLT,
            "mV, V",
        )?;
        if let Some(hb) = &cfg.can.heartbeat {
            map.add(
                &site,
                "heartbeat.signal",
                &hb.signal,
                &[],
                Quantity::Heartbeat,
                &[("", 1.0)],
                "no unit",
            )?;
        }
        for m in 0..map.modules {
            let sig = map.dbc.signal(map.slot(Quantity::BleedMask(m)).signal);
            if u32::from(sig.size_bits) < r.cells_per_module {
                return Err(MappingError::MaskTooNarrow {
                    site: site.clone(),
                    signal: sig.name.clone(),
                    bits: sig.size_bits,
                    cells: r.cells_per_module,
                });
            }
        }
        map.watched = map.watch(cfg)?;
        map.protected = super::e2e::resolve(cfg, &map.dbc, &map.watched)?;
        Ok(map)
    }

    /// Group inbound slots by message and give each its period: the config
    /// override, else the DBC's `GenMsgCycleTime`.
    fn watch(&self, cfg: &SiteConfig) -> Result<Vec<WatchedMessage>, MappingError> {
        let site = &cfg.source;
        let mut by_message: std::collections::BTreeMap<usize, WatchedMessage> = Default::default();
        for (q, slot) in &self.slots {
            let module = match *q {
                Quantity::CellVoltage(i) => Some(i / cfg.rack.cells_per_module as usize),
                Quantity::Temperature(i) => Some(i / cfg.rack.temp_sensors_per_module as usize),
                Quantity::PackCurrent | Quantity::PackVoltage | Quantity::LinkVoltage => None,
                Quantity::BleedMask(_) | Quantity::Heartbeat => continue,
            };
            let w = by_message
                .entry(slot.signal.message)
                .or_insert_with(|| WatchedMessage {
                    message: slot.signal.message,
                    period_ms: None,
                    deadline_ms: None,
                    modules: Vec::new(),
                    current_sensor: false,
                });
            match module {
                Some(m) if !w.modules.contains(&m) => w.modules.push(m),
                Some(_) => {}
                None => w.current_sensor = true,
            }
        }
        let err = |message: &str, reason: String| MappingError::Period {
            site: site.clone(),
            field: if cfg.can.message_period_ms.contains_key(message) {
                format!("can.message_period_ms.{message}")
            } else {
                "can.stale_after_periods".to_string()
            },
            message: message.to_string(),
            dbc: self.dbc.origin().to_string(),
            reason,
        };
        for name in cfg.can.message_period_ms.keys() {
            let index = self
                .dbc
                .message_index(name)
                .ok_or_else(|| err(name, "the DBC has no message of that name".to_string()))?;
            if !by_message.contains_key(&index) {
                return Err(err(
                    name,
                    "no mapped signal is received in that message; only inbound messages are supervised"
                        .to_string(),
                ));
            }
        }
        let n = u64::from(cfg.can.stale_after_periods);
        let floor_ms = 2 * cfg.protection.period_ms;
        for w in by_message.values_mut() {
            w.modules.sort_unstable();
            let msg = self.dbc.message_at(w.message);
            w.period_ms = cfg
                .can
                .message_period_ms
                .get(&msg.name)
                .copied()
                .or(msg.cycle_time_ms.map(u64::from));
            w.deadline_ms = w.period_ms.map(|p| p.saturating_mul(n));
            if let Some(d) = w.deadline_ms.filter(|&d| d < floor_ms) {
                return Err(err(
                    &msg.name,
                    format!(
                        "a deadline of {d} ms (period × can.stale_after_periods) is shorter than two \
                         protection periods ({floor_ms} ms): it would be stale between reads"
                    ),
                ));
            }
        }
        Ok(by_message.into_values().collect())
    }

    /// Inbound messages with neither a configured nor a DBC period: only
    /// the per-value source timeouts supervise them.
    pub fn unsupervised(&self) -> impl Iterator<Item = &str> {
        self.watched
            .iter()
            .filter(|w| w.period_ms.is_none())
            .map(|w| self.dbc.message_at(w.message).name.as_str())
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        site: &std::path::Path,
        field: &'static str,
        template: &str,
        vars: &[(&str, u32)],
        quantity: Quantity,
        units: &[(&str, f64)],
        expected: &'static str,
    ) -> Result<(), MappingError> {
        let name = expand_template(template, vars).map_err(|message| MappingError::Template {
            site: site.to_owned(),
            field,
            message,
        })?;
        let signal = self
            .dbc
            .resolve_signal(&name)
            .map_err(|source| MappingError::Signal {
                site: site.to_owned(),
                field,
                quantity,
                signal: name.clone(),
                source: Box::new(source),
            })?;
        let unit = self.dbc.signal(signal).unit.trim().to_string();
        let to_si = units
            .iter()
            // Case matters: `MV` is megavolt, not millivolt.
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .or_else(|| units.iter().any(|(u, _)| u.is_empty()).then_some(1.0))
            .ok_or_else(|| MappingError::Unit {
                site: site.to_owned(),
                field,
                signal: name.clone(),
                unit: unit.clone(),
                expected,
            })?;
        if let Some(first) = self.by_signal.insert(signal, quantity) {
            return Err(MappingError::Duplicate {
                site: site.to_owned(),
                signal: name,
                first,
                second: quantity,
            });
        }
        self.slots.insert(quantity, Slot { signal, to_si });
        Ok(())
    }

    /// The quantity a decoded signal carries, if mapped.
    pub fn quantity_of(&self, signal: SignalRef) -> Option<Quantity> {
        self.by_signal.get(&signal).copied()
    }

    pub fn slot(&self, q: Quantity) -> Slot {
        // Every quantity of the rack's geometry is resolved in `resolve`.
        self.slots[&q]
    }

    /// Group mapped signals by the frame that carries them: (message index,
    /// mux value) → quantities. What a transmitter needs to build frames.
    pub fn frames(&self, filter: impl Fn(Quantity) -> bool) -> Vec<FrameLayout> {
        let mut groups: HashMap<(usize, Option<u64>), Vec<FrameEntry>> = HashMap::new();
        for (q, slot) in &self.slots {
            if !filter(*q) {
                continue;
            }
            let sig = self.dbc.signal(slot.signal);
            let mux = match sig.mux {
                MuxRole::Multiplexed(v) => Some(v),
                _ => None,
            };
            groups.entry((slot.signal.message, mux)).or_default().push((
                slot.signal.signal,
                *q,
                slot.to_si,
            ));
        }
        let mut out: Vec<FrameLayout> = groups
            .into_iter()
            .map(|((message, mux), mut entries)| {
                entries.sort_by_key(|e| e.0);
                FrameLayout {
                    message,
                    mux: mux.and_then(|v| self.dbc.message_at(message).multiplexor.map(|m| (m, v))),
                    entries,
                }
            })
            .collect();
        out.sort_by_key(|f| (f.message, f.mux.map(|m| m.1)));
        out
    }
}

/// (signal index, quantity, DBC-unit → SI factor).
pub type FrameEntry = (usize, Quantity, f64);

/// The signals of one frame (one message, one mux value).
#[derive(Debug, Clone)]
pub struct FrameLayout {
    pub message: usize,
    /// (multiplexor signal index, value) for multiplexed groups.
    pub mux: Option<(usize, u64)>,
    pub entries: Vec<FrameEntry>,
}
