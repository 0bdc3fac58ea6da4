//! The simulated rack's own frame layout: which DBC signal carries which
//! simulated measurement, and which carries the bleed command back.
//!
//! Owns: the simulated BMUs' and current sensor's "firmware" view of the
//! DBC, built from the signal names in `[sim.signals]` (defaults: the demo
//! BMU firmware) and each signal's DBC unit. It shares only the codec
//! (`bms-can`) with the host, never the host's `RackMap` or acquisition
//! code, so a mapping bug in the host cannot be hidden by the same bug on
//! the simulated side.
//!
//! May not touch: the host's configuration of its signals (`[can.signals]`)
//! or any host state.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use bms_can::dbc::{Dbc, MuxRole, SignalRef};
use bms_can::e2e::E2eProfile;

/// `[sim.signals]`: the names the simulated firmware sends under.
/// `{module}`, `{cell}`, `{cell:02}` and `{sensor}` are substituted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSignals {
    pub cell_voltage: String,
    pub temperature: String,
    pub current: String,
    pub pack_voltage: String,
    pub link_voltage: String,
    pub bleed_mask: String,
    /// Messages the firmware protects end to end, by counter and CRC
    /// signal (`{module}` expands per BMU).
    pub e2e: Vec<SimE2e>,
}

/// One protected message as the firmware seals it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimE2e {
    /// Alive counter signal: +1 per send period, the same in every page.
    #[serde(default)]
    pub counter: Option<String>,
    /// CRC-8 signal, one whole byte (`bms_can::e2e::crc8`).
    #[serde(default)]
    pub crc8: Option<String>,
}

fn e2e(counter: &str, crc8: Option<&str>) -> SimE2e {
    SimE2e {
        counter: Some(counter.into()),
        crc8: crc8.map(Into::into),
    }
}

impl Default for SimSignals {
    fn default() -> Self {
        Self {
            cell_voltage: "BMU{module}_Cell{cell:02}_mV".into(),
            temperature: "BMU{module}_Temp{sensor}".into(),
            current: "IVT_Current_mA".into(),
            pack_voltage: "IVT_Voltage_mV".into(),
            link_voltage: "IVT_LinkVoltage_mV".into(),
            bleed_mask: "BMU{module}_BleedMask".into(),
            e2e: vec![
                e2e("BMU{module}_VoltAlive", None),
                e2e("IVT_Current_Count", Some("IVT_Current_CRC")),
                e2e("IVT_Voltage_Count", Some("IVT_Voltage_CRC")),
                e2e("IVT_LinkVoltage_Count", Some("IVT_LinkVoltage_CRC")),
            ],
        }
    }
}

/// A simulated measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimValue {
    CellVoltage(usize),
    Temperature(usize),
    Current,
    PackVoltage,
    LinkVoltage,
}

/// One frame the simulation sends: a message (and multiplexor value) with
/// the measurements it carries, each with its SI → DBC physical factor.
#[derive(Debug, Clone)]
pub struct OutFrame {
    pub message: usize,
    pub mux: Option<(usize, u64)>,
    pub values: Vec<Carried>,
}

/// (signal index, measurement, SI → DBC physical factor).
pub type Carried = (usize, SimValue, f64);

/// Why the simulation cannot send or read its frames.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("`sim.signals.{field}`: the DBC {dbc} has no signal `{name}`")]
    Missing {
        field: &'static str,
        name: String,
        dbc: String,
    },
    #[error(
        "`sim.signals.{field}`: signal `{name}` has unit `{unit}`; the simulation sends {expects}"
    )]
    Unit {
        field: &'static str,
        name: String,
        unit: String,
        expects: &'static str,
    },
    #[error("`sim.signals.e2e[{index}]`: {source}")]
    E2e {
        index: usize,
        source: bms_can::e2e::E2eError,
    },
    #[error("`sim.signals.e2e[{index}]`: counter and CRC are in different messages")]
    E2eSplit { index: usize },
    #[error("`sim.signals.e2e[{index}]`: give a `counter`, a `crc8` or both")]
    E2eEmpty { index: usize },
}

/// The whole layout.
#[derive(Debug, Clone)]
pub struct SimLayout {
    pub bmu: Vec<OutFrame>,
    pub sensor: Vec<OutFrame>,
    /// Bleed-mask signals by message: (signal, module).
    bleed: HashMap<usize, Vec<(usize, usize)>>,
    /// Protected messages by message index.
    pub e2e: HashMap<usize, E2eProfile>,
}

fn expand(template: &str, module: usize, cell: usize, sensor: usize) -> String {
    template
        .replace("{module}", &module.to_string())
        .replace("{cell:02}", &format!("{cell:02}"))
        .replace("{cell}", &cell.to_string())
        .replace("{sensor}", &sensor.to_string())
}

/// SI → DBC physical factor for a unit the firmware sends in.
fn factor(unit: &str, kind: &'static str) -> Option<f64> {
    let u = unit.trim();
    match kind {
        "V" => match u {
            "V" => Some(1.0),
            "mV" => Some(1000.0),
            _ => None,
        },
        "A" => match u {
            "A" => Some(1.0),
            "mA" => Some(1000.0),
            _ => None,
        },
        _ => matches!(u, "degC" | "°C" | "C" | "deg C" | "Cel").then_some(1.0),
    }
}

struct Builder<'a> {
    dbc: &'a Dbc,
    /// By (message, multiplexor value).
    groups: HashMap<(usize, Option<u64>), Vec<Carried>>,
}

impl Builder<'_> {
    fn find(&self, field: &'static str, name: String) -> Result<SignalRef, LayoutError> {
        self.dbc
            .find_signal(&name)
            .ok_or_else(|| LayoutError::Missing {
                field,
                name,
                dbc: self.dbc.origin().to_string(),
            })
    }

    fn add(
        &mut self,
        field: &'static str,
        name: String,
        kind: &'static str,
        value: SimValue,
    ) -> Result<(), LayoutError> {
        let r = self.find(field, name.clone())?;
        let sig = self.dbc.signal(r);
        let f = factor(&sig.unit, kind).ok_or_else(|| LayoutError::Unit {
            field,
            name,
            unit: sig.unit.clone(),
            expects: match kind {
                "V" => "V or mV",
                "A" => "A or mA",
                _ => "degC",
            },
        })?;
        let mux = match sig.mux {
            MuxRole::Multiplexed(v) => Some(v),
            _ => None,
        };
        self.groups
            .entry((r.message, mux))
            .or_default()
            .push((r.signal, value, f));
        Ok(())
    }

    fn frames(&mut self, keep: impl Fn(SimValue) -> bool) -> Vec<OutFrame> {
        let mut out: Vec<OutFrame> = self
            .groups
            .iter()
            .filter(|(_, v)| v.iter().any(|e| keep(e.1)))
            .map(|(&(message, mux), values)| {
                let mut values = values.clone();
                values.sort_by_key(|e| e.0);
                OutFrame {
                    message,
                    mux: mux.and_then(|v| self.dbc.message_at(message).multiplexor.map(|m| (m, v))),
                    values,
                }
            })
            .collect();
        out.sort_by_key(|f| (f.message, f.mux.map(|m| m.1)));
        out
    }
}

/// The profile of every message `entries` protect, for every module.
fn protected(
    b: &Builder<'_>,
    entries: &[SimE2e],
    modules: usize,
) -> Result<HashMap<usize, E2eProfile>, LayoutError> {
    let mut out = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let templated = [&entry.counter, &entry.crc8]
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains("{module}")));
        for m in 0..if templated { modules } else { 1 } {
            let find = |t: &Option<String>| {
                t.as_ref()
                    .map(|t| b.find("e2e", expand(t, m, 0, 0)))
                    .transpose()
            };
            let (counter, crc) = (find(&entry.counter)?, find(&entry.crc8)?);
            let message = match (counter, crc) {
                (Some(c), Some(r)) if c.message != r.message => {
                    return Err(LayoutError::E2eSplit { index })
                }
                (Some(r), _) | (None, Some(r)) => r.message,
                (None, None) => return Err(LayoutError::E2eEmpty { index }),
            };
            let msg = b.dbc.message_at(message);
            let name = |r: Option<SignalRef>| r.map(|r| msg.signals[r.signal].name.as_str());
            let profile = E2eProfile::new(msg, name(counter), name(crc), 1)
                .map_err(|source| LayoutError::E2e { index, source })?;
            out.insert(message, profile);
        }
    }
    Ok(out)
}

impl SimLayout {
    /// The layout of a rack of `modules` × `cells_per_module` cells with
    /// `sensors_per_module` temperature sensors each.
    pub fn build(
        dbc: &Dbc,
        names: &SimSignals,
        modules: usize,
        cells_per_module: usize,
        sensors_per_module: usize,
    ) -> Result<Self, LayoutError> {
        let mut b = Builder {
            dbc,
            groups: HashMap::new(),
        };
        for m in 0..modules {
            for c in 0..cells_per_module {
                let name = expand(&names.cell_voltage, m, c, 0);
                b.add(
                    "cell_voltage",
                    name,
                    "V",
                    SimValue::CellVoltage(m * cells_per_module + c),
                )?;
            }
            for s in 0..sensors_per_module {
                let name = expand(&names.temperature, m, 0, s);
                b.add(
                    "temperature",
                    name,
                    "C",
                    SimValue::Temperature(m * sensors_per_module + s),
                )?;
            }
        }
        b.add("current", names.current.clone(), "A", SimValue::Current)?;
        b.add(
            "pack_voltage",
            names.pack_voltage.clone(),
            "V",
            SimValue::PackVoltage,
        )?;
        b.add(
            "link_voltage",
            names.link_voltage.clone(),
            "V",
            SimValue::LinkVoltage,
        )?;
        let bmu = b.frames(|v| matches!(v, SimValue::CellVoltage(_) | SimValue::Temperature(_)));
        let sensor = b.frames(|v| {
            matches!(
                v,
                SimValue::Current | SimValue::PackVoltage | SimValue::LinkVoltage
            )
        });
        let mut bleed: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for m in 0..modules {
            let r = b.find("bleed_mask", expand(&names.bleed_mask, m, 0, 0))?;
            bleed.entry(r.message).or_default().push((r.signal, m));
        }
        let e2e = protected(&b, &names.e2e, modules)?;
        Ok(Self {
            bmu,
            sensor,
            bleed,
            e2e,
        })
    }

    /// Apply a bleed-command frame (message index and data) to `bleed`:
    /// bit `c` of module `m`'s mask switches cell `m * per + c`.
    pub fn apply_bleed(
        &self,
        dbc: &Dbc,
        message: usize,
        data: &[u8],
        per: usize,
        bleed: &mut [bool],
    ) {
        let Some(signals) = self.bleed.get(&message) else {
            return;
        };
        let msg = dbc.message_at(message);
        let Ok(decoded) = msg.decode(data) else {
            return;
        };
        for v in decoded {
            let Some(&(_, m)) = signals.iter().find(|(s, _)| *s == v.signal) else {
                continue;
            };
            if !v.in_range || !v.value.is_finite() {
                continue;
            }
            let mask = v.value as u64;
            for c in 0..per {
                if let Some(b) = bleed.get_mut(m * per + c) {
                    *b = mask & (1 << c) != 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_dbc() -> Dbc {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/bmu-demo.dbc");
        Dbc::from_file(p).unwrap()
    }

    #[test]
    fn the_demo_firmware_layout_covers_every_cell_sensor_and_mask() {
        let dbc = demo_dbc();
        let l = SimLayout::build(&dbc, &SimSignals::default(), 8, 16, 4).unwrap();
        // 4 multiplexed cell-voltage pages and one temperature frame per BMU.
        assert_eq!(l.bmu.len(), 8 * 5);
        assert_eq!(l.sensor.len(), 3);
        let cells: usize = l
            .bmu
            .iter()
            .flat_map(|f| &f.values)
            .filter(|v| matches!(v.1, SimValue::CellVoltage(_)))
            .count();
        assert_eq!(cells, 128);
        // mV signals: 1000 per V.
        let f = l.bmu.iter().flat_map(|f| &f.values).next().unwrap();
        assert!(f.2 == 1000.0 || f.2 == 1.0, "{f:?}");
        let mut bleed = vec![false; 128];
        let msg = dbc.message_index("BMS_Balance3").unwrap();
        l.apply_bleed(&dbc, msg, &[0b101, 0], 16, &mut bleed);
        assert!(bleed[48] && !bleed[49] && bleed[50]);
    }

    #[test]
    fn a_missing_signal_or_a_foreign_unit_names_the_field_and_the_signal() {
        let dbc = demo_dbc();
        let mut names = SimSignals {
            temperature: "BMU{module}_Tmp{sensor}".into(),
            ..SimSignals::default()
        };
        let e = SimLayout::build(&dbc, &names, 8, 16, 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sim.signals.temperature") && e.contains("BMU0_Tmp0"),
            "{e}"
        );
        names.temperature = "BMU{module}_Cell{sensor:02}_mV".replace("{sensor:02}", "0{sensor}");
        let e = SimLayout::build(&dbc, &names, 8, 16, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unit `mV`") && e.contains("degC"), "{e}");
    }
}
