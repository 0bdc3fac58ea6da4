//! Acquisition: decoded frames → the cycle's [`PackSnapshot`], and bleed
//! commands → frames.
//!
//! Every value carries the time it arrived. A module whose values are
//! older than `can.module_timeout_ms` is `Stale`; so is the current sensor
//! after `can.current_timeout_ms`. Malformed frames (wrong length) and
//! values outside the DBC range are counted and dropped: they never turn
//! into plausible-looking numbers.

use std::sync::Arc;

use super::dbc::SignalRef;
use super::mapping::{FrameLayout, Quantity, RackMap};
use super::CanFrame;
use crate::config::SiteConfig;
use crate::snapshot::{CommStatus, PackSnapshot};

/// Counters for everything acquisition rejected.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct AcquireStats {
    pub frames: u64,
    pub unknown_id: u64,
    pub wrong_length: u64,
    pub out_of_range: u64,
    /// Frames lost to the receive queue overflowing.
    pub rx_overflows: u64,
    /// Error frames, bus-off and send failures reported by the bus.
    #[serde(flatten)]
    pub bus: super::bus::BusStats,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f32,
    at_ms: Option<u64>,
}

const NONE: Sample = Sample {
    value: f32::NAN,
    at_ms: None,
};

pub struct Acquisition {
    map: Arc<RackMap>,
    cells_per_module: usize,
    sensors_per_module: usize,
    /// Sensor (rack index) that covers each cell.
    sensor_of_cell: Vec<usize>,
    module_timeout_ms: u64,
    current_timeout_ms: u64,
    cell_v: Vec<Sample>,
    temp_c: Vec<Sample>,
    current_a: Sample,
    pack_v: Sample,
    link_v: Sample,
    current_changed_ms: u64,
    bleed_frames: Vec<FrameLayout>,
    pub stats: AcquireStats,
}

impl Acquisition {
    pub fn new(cfg: &SiteConfig, map: Arc<RackMap>) -> Self {
        let r = &cfg.rack;
        let sensor_of_cell = (0..r.cell_count() as u32)
            .map(|i| {
                let (m, c) = (i / r.cells_per_module, i % r.cells_per_module);
                (m * r.temp_sensors_per_module + r.sensor_for_cell(c)) as usize
            })
            .collect();
        let bleed_frames = map.frames(|q| matches!(q, Quantity::BleedMask(_)));
        Self {
            cells_per_module: r.cells_per_module as usize,
            sensors_per_module: r.temp_sensors_per_module as usize,
            sensor_of_cell,
            module_timeout_ms: cfg.can.module_timeout_ms,
            current_timeout_ms: cfg.can.current_timeout_ms,
            cell_v: vec![NONE; map.cells],
            temp_c: vec![NONE; map.sensors],
            current_a: NONE,
            pack_v: NONE,
            link_v: NONE,
            current_changed_ms: 0,
            bleed_frames,
            map,
            stats: AcquireStats::default(),
        }
    }

    /// Decode `frames` received up to `now_ms`.
    pub fn ingest(&mut self, frames: &[CanFrame], now_ms: u64) {
        for frame in frames {
            self.stats.frames += 1;
            let Some(index) = self.map.dbc.message_index_by_id(frame.id()) else {
                self.stats.unknown_id += 1;
                continue;
            };
            let msg = self.map.dbc.message_at(index);
            let decoded = match msg.decode(frame.data()) {
                Ok(d) => d,
                Err(_) => {
                    self.stats.wrong_length += 1;
                    continue;
                }
            };
            for v in decoded {
                let sref = SignalRef {
                    message: index,
                    signal: v.signal,
                };
                let Some(q) = self.map.quantity_of(sref) else {
                    continue;
                };
                if !v.in_range || !v.value.is_finite() {
                    self.stats.out_of_range += 1;
                    continue;
                }
                let sample = Sample {
                    value: (v.value * self.map.slot(q).to_si) as f32,
                    at_ms: Some(now_ms),
                };
                match q {
                    Quantity::CellVoltage(i) => self.cell_v[i] = sample,
                    Quantity::Temperature(i) => self.temp_c[i] = sample,
                    Quantity::PackCurrent => {
                        if sample.value.to_bits() != self.current_a.value.to_bits() {
                            self.current_changed_ms = now_ms;
                        }
                        self.current_a = sample;
                    }
                    Quantity::PackVoltage => self.pack_v = sample,
                    Quantity::LinkVoltage => self.link_v = sample,
                    Quantity::BleedMask(_) | Quantity::Heartbeat => {}
                }
            }
        }
    }

    fn fresh(s: &Sample, now_ms: u64, timeout_ms: u64) -> bool {
        s.at_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= timeout_ms)
    }

    /// Freeze the latest values into a snapshot at `now_ms`.
    pub fn snapshot(&self, now_ms: u64, contactors_closed: bool) -> PackSnapshot {
        let modules = self.map.modules;
        let module_comm = (0..modules)
            .map(|m| {
                let cells =
                    &self.cell_v[m * self.cells_per_module..(m + 1) * self.cells_per_module];
                let temps =
                    &self.temp_c[m * self.sensors_per_module..(m + 1) * self.sensors_per_module];
                let ok = cells
                    .iter()
                    .chain(temps)
                    .all(|s| Self::fresh(s, now_ms, self.module_timeout_ms));
                if ok {
                    CommStatus::Ok
                } else {
                    CommStatus::Stale
                }
            })
            .collect();
        let current_ok = [&self.current_a, &self.pack_v, &self.link_v]
            .iter()
            .all(|s| Self::fresh(s, now_ms, self.current_timeout_ms));
        let complete = self
            .cell_v
            .iter()
            .chain(&self.temp_c)
            .chain([&self.current_a, &self.pack_v, &self.link_v])
            .all(|s| s.at_ms.is_some());
        PackSnapshot {
            timestamp_ms: now_ms,
            // A stale current sensor reads NaN: counting on its last value
            // would integrate a current nobody measured.
            current_a: if current_ok {
                self.current_a.value
            } else {
                f32::NAN
            },
            pack_voltage_v: if current_ok {
                self.pack_v.value
            } else {
                f32::NAN
            },
            link_voltage_v: if current_ok {
                self.link_v.value
            } else {
                f32::NAN
            },
            current_changed_ms: self.current_changed_ms,
            cell_voltage_v: self.cell_v.iter().map(|s| s.value).collect(),
            cell_temp_c: self
                .sensor_of_cell
                .iter()
                .map(|&s| self.temp_c[s].value)
                .collect(),
            cells_per_module: self.cells_per_module as u32,
            module_comm,
            current_comm: if current_ok {
                CommStatus::Ok
            } else {
                CommStatus::Stale
            },
            complete,
            cell_bleed_a: vec![0.0; self.cell_v.len()],
            contactors_closed,
        }
    }

    /// Encode per-cell bleed commands into the mapped bleed-mask frames.
    pub fn encode_bleed(&self, bleed: &[bool]) -> Vec<CanFrame> {
        let per = self.cells_per_module;
        let mut out = Vec::with_capacity(self.bleed_frames.len());
        for layout in &self.bleed_frames {
            let msg = self.map.dbc.message_at(layout.message);
            let values: Vec<(usize, f64)> = layout
                .entries
                .iter()
                .map(|&(sig, q, _)| {
                    let Quantity::BleedMask(m) = q else {
                        unreachable!("filtered to bleed masks")
                    };
                    let mask = (0..per)
                        .filter(|c| bleed.get(m * per + c).copied().unwrap_or(false))
                        .fold(0u64, |acc, c| acc | (1 << c));
                    (sig, mask as f64)
                })
                .collect();
            match msg.encode_frame(&values) {
                Ok(frame) => out.push(frame),
                Err(e) => {
                    tracing::error!(message = %msg.name, error = %e, "cannot encode bleed command")
                }
            }
        }
        out
    }

    /// The heartbeat frame carrying `count` (wrapped to the signal's
    /// range), if `can.heartbeat` is configured.
    pub fn encode_heartbeat(&self, count: u64) -> Option<CanFrame> {
        let slot = self.map.slots.get(&Quantity::Heartbeat)?;
        let msg = self.map.dbc.message_at(slot.signal.message);
        let sig = self.map.dbc.signal(slot.signal);
        let span = (sig.max - sig.min).max(0.0) as u64 + 1;
        let value = sig.min + (count % span) as f64;
        match msg.encode_frame(&[(slot.signal.signal, value)]) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(message = %msg.name, error = %e, "cannot encode the heartbeat");
                None
            }
        }
    }

    /// Decode a bleed-mask frame back into per-cell flags (used by the
    /// simulated BMUs, which obey these frames).
    pub fn decode_bleed(
        map: &RackMap,
        frame: &CanFrame,
        cells_per_module: usize,
        bleed: &mut [bool],
    ) {
        let Some(index) = map.dbc.message_index_by_id(frame.id()) else {
            return;
        };
        let msg = map.dbc.message_at(index);
        let Ok(decoded) = msg.decode(frame.data()) else {
            return;
        };
        for v in decoded {
            let sref = SignalRef {
                message: index,
                signal: v.signal,
            };
            if let (Some(Quantity::BleedMask(m)), true) = (map.quantity_of(sref), v.in_range) {
                let mask = v.value as u64;
                for c in 0..cells_per_module {
                    if let Some(b) = bleed.get_mut(m * cells_per_module + c) {
                        *b = mask & (1 << c) != 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::can::dbc::Dbc;

    fn demo(heartbeat: &str) -> Result<(SiteConfig, Arc<RackMap>), String> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "signal = \"BMS_Alive\"",
            &format!("signal = \"{heartbeat}\""),
        );
        let cfg = SiteConfig::parse(&text, &path).map_err(|e| e.to_string())?;
        let dbc = Arc::new(Dbc::from_file(cfg.resolve(&cfg.can.dbc)).unwrap());
        let map = RackMap::resolve(&cfg, dbc).map_err(|e| e.to_string())?;
        Ok((cfg, Arc::new(map)))
    }

    #[test]
    fn the_heartbeat_counts_in_its_dbc_signal_and_wraps() {
        let (cfg, map) = demo("BMS_Alive").unwrap();
        let acq = Acquisition::new(&cfg, map.clone());
        for (count, expect) in [(0u64, 0.0), (1, 1.0), (255, 255.0), (256, 0.0), (300, 44.0)] {
            let f = acq.encode_heartbeat(count).unwrap();
            assert_eq!(f.id().raw(), 0x410);
            let i = map.dbc.message_index_by_id(f.id()).unwrap();
            let v = map.dbc.message_at(i).decode(f.data()).unwrap();
            assert_eq!(v[0].value, expect, "count {count}");
        }
    }

    #[test]
    fn a_heartbeat_signal_the_dbc_lacks_names_both() {
        let e = demo("BMS_Nope").unwrap_err();
        assert!(
            e.contains("can.heartbeat.signal")
                && e.contains("BMS_Nope")
                && e.contains("bmu-demo.dbc"),
            "{e}"
        );
    }
}
