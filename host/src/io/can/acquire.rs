//! Acquisition: decoded frames → the cycle's [`PackSnapshot`], and bleed
//! commands → frames.
//!
//! Staleness is supervised at two grains:
//! - per message: each inbound mapped message with an expected period
//!   (`can.message_period_ms`, else the DBC's `GenMsgCycleTime`) is silent
//!   once `can.stale_after_periods` periods pass without it, and every
//!   module (or the current sensor) it carries is `Stale` at once;
//! - per value: a cell voltage or temperature older than
//!   `can.module_timeout_ms`, or a current-sensor value older than
//!   `can.current_timeout_ms`, makes its source `Stale`. This catches a
//!   multiplexed page that stops while its message keeps coming.
//!
//! A protected message (`can.e2e`) whose alive counter repeats or whose
//! CRC fails has those frames dropped, and once it counts as lost (see
//! [`super::e2e`]) its sources are `Stale` as if it were silent.
//!
//! Protection acts on `Stale` (communication loss). Malformed frames
//! (wrong length) and values outside the DBC range are counted and
//! dropped: they never turn into plausible-looking numbers.

use std::sync::Arc;

use super::bus::Received;
use super::dbc::SignalRef;
use super::e2e::{E2eStats, E2eSupervisor};
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
    /// Times a supervised message went silent past its deadline.
    pub message_timeouts: u64,
    /// Frames lost to the receive queue overflowing.
    pub rx_overflows: u64,
    /// Largest gap between a frame's arrival and the tick that decoded
    /// it, ms: how stale acquisition let data get before protection saw it.
    pub max_rx_to_decode_ms: u64,
    /// Error frames, bus-off and send failures reported by the bus.
    #[serde(flatten)]
    pub bus: super::bus::BusStats,
    /// Frames dropped by end-to-end checks, and messages lost to them.
    #[serde(flatten)]
    pub e2e: E2eStats,
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
    /// Per DBC message index: its entry in `map.watched`.
    watch_of_message: Vec<Option<usize>>,
    /// Per watched message: when it last arrived, and whether it is
    /// currently reported silent.
    last_rx_ms: Vec<Option<u64>>,
    reported_silent: Vec<bool>,
    e2e: E2eSupervisor,
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
        let mut watch_of_message = vec![None; map.dbc.messages().len()];
        for (i, w) in map.watched.iter().enumerate() {
            watch_of_message[w.message] = Some(i);
        }
        Self {
            watch_of_message,
            last_rx_ms: vec![None; map.watched.len()],
            reported_silent: vec![false; map.watched.len()],
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
            e2e: E2eSupervisor::new(map.dbc.messages().len(), &map.protected),
            map,
            stats: AcquireStats::default(),
        }
    }

    /// Decode `frames` received up to `now_ms`. Each value is as old as
    /// its frame's arrival stamp (drain time for an unstamped frame).
    pub fn ingest(&mut self, frames: &[Received], now_ms: u64) {
        for rx in frames {
            let frame = &rx.frame;
            let at_ms = rx.rx_ms.map_or(now_ms, |t| t.min(now_ms));
            self.stats.frames += 1;
            self.stats.max_rx_to_decode_ms = self.stats.max_rx_to_decode_ms.max(now_ms - at_ms);
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
            let e2e = &mut self.stats.e2e;
            if self
                .e2e
                .check(index, msg, frame.id(), frame.data(), at_ms, e2e)
                .is_err()
            {
                continue;
            }
            if let Some(w) = self.watch_of_message[index] {
                self.last_rx_ms[w] = Some(at_ms);
            }
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
                    at_ms: Some(at_ms),
                };
                match q {
                    Quantity::CellVoltage(i) => self.cell_v[i] = sample,
                    Quantity::Temperature(i) => self.temp_c[i] = sample,
                    Quantity::PackCurrent => {
                        if sample.value.to_bits() != self.current_a.value.to_bits() {
                            self.current_changed_ms = at_ms;
                        }
                        self.current_a = sample;
                    }
                    Quantity::PackVoltage => self.pack_v = sample,
                    Quantity::LinkVoltage => self.link_v = sample,
                    Quantity::BleedMask(_) | Quantity::Heartbeat => {}
                }
            }
        }
        self.report_silence(now_ms);
    }

    /// Whether watched message `w` is past its deadline at `now_ms`.
    fn silent(&self, w: usize, now_ms: u64) -> bool {
        self.map.watched[w].deadline_ms.is_some_and(|deadline| {
            self.last_rx_ms[w].is_none_or(|t| now_ms.saturating_sub(t) > deadline)
        })
    }

    /// Count and log each message going silent or coming back.
    fn report_silence(&mut self, now_ms: u64) {
        for w in 0..self.last_rx_ms.len() {
            // Before its first frame a message is missing, not lost.
            if self.last_rx_ms[w].is_none() {
                continue;
            }
            let silent = self.silent(w, now_ms);
            if silent == self.reported_silent[w] {
                continue;
            }
            self.reported_silent[w] = silent;
            let watched = &self.map.watched[w];
            let message = &self.map.dbc.message_at(watched.message).name;
            if silent {
                self.stats.message_timeouts += 1;
                tracing::warn!(
                    %message,
                    period_ms = watched.period_ms,
                    last_rx_ms = self.last_rx_ms[w],
                    now_ms,
                    modules = ?watched.modules,
                    current_sensor = watched.current_sensor,
                    "CAN message silent past its deadline: its sources are stale"
                );
            } else {
                tracing::info!(%message, now_ms, "CAN message back");
            }
        }
    }

    /// Names of the supervised messages silent at `now_ms`.
    pub fn silent_messages(&self, now_ms: u64) -> Vec<&str> {
        (0..self.last_rx_ms.len())
            .filter(|&w| self.silent(w, now_ms))
            .map(|w| {
                self.map
                    .dbc
                    .message_at(self.map.watched[w].message)
                    .name
                    .as_str()
            })
            .collect()
    }

    fn fresh(s: &Sample, now_ms: u64, timeout_ms: u64) -> bool {
        s.at_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= timeout_ms)
    }

    /// Freeze the latest values into a snapshot at `now_ms`.
    pub fn snapshot(&self, now_ms: u64, contactors_closed: bool) -> PackSnapshot {
        let modules = self.map.modules;
        let mut module_silent = vec![false; modules];
        let mut current_silent = false;
        for (w, watched) in self.map.watched.iter().enumerate() {
            if self.silent(w, now_ms) || self.e2e.lost(watched.message) {
                current_silent |= watched.current_sensor;
                for &m in &watched.modules {
                    module_silent[m] = true;
                }
            }
        }
        let module_comm = (0..modules)
            .map(|m| {
                let cells =
                    &self.cell_v[m * self.cells_per_module..(m + 1) * self.cells_per_module];
                let temps =
                    &self.temp_c[m * self.sensors_per_module..(m + 1) * self.sensors_per_module];
                let ok = !module_silent[m]
                    && cells
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
        let current_ok = !current_silent
            && [&self.current_a, &self.pack_v, &self.link_v]
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
                // A multiplexed bleed message carries its selector too.
                .chain(layout.mux.map(|(sig, v)| (sig, v as f64)))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::can::dbc::Dbc;

    fn demo(heartbeat: &str) -> Result<(SiteConfig, Arc<RackMap>), String> {
        demo_with(|t| {
            t.replace(
                "signal = \"BMS_Alive\"",
                &format!("signal = \"{heartbeat}\""),
            )
        })
    }

    fn demo_with(edit: impl Fn(String) -> String) -> Result<(SiteConfig, Arc<RackMap>), String> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml");
        let text = edit(std::fs::read_to_string(&path).unwrap());
        let cfg = SiteConfig::parse(&text, &path).map_err(|e| e.to_string())?;
        let dbc = Arc::new(Dbc::from_file(cfg.resolve(&cfg.can.dbc)).unwrap());
        let map = RackMap::resolve(&cfg, dbc).map_err(|e| e.to_string())?;
        Ok((cfg, Arc::new(map)))
    }

    /// The demo with `[can.message_period_ms]` entries.
    fn with_periods(entries: &str) -> Result<(SiteConfig, Arc<RackMap>), String> {
        let entries = entries.to_string();
        demo_with(move |t| {
            t.replace(
                "[can.heartbeat]",
                &format!("[can.message_period_ms]\n{entries}\n\n[can.heartbeat]"),
            )
        })
    }

    /// Every inbound mapped frame with mid-range values.
    fn rx(frames: &[CanFrame]) -> Vec<Received> {
        frames.iter().map(|f| (*f).into()).collect()
    }

    /// Every inbound mapped frame of send period `seq`, with mid-range
    /// values, alive counters and CRCs as the firmware sends them.
    fn all_inbound(map: &RackMap, seq: u32) -> Vec<CanFrame> {
        map.frames(|q| !matches!(q, Quantity::BleedMask(_) | Quantity::Heartbeat))
            .iter()
            .map(|l| {
                let msg = map.dbc.message_at(l.message);
                let mut values: Vec<(usize, f64)> = l
                    .entries
                    .iter()
                    .map(|&(s, _, _)| {
                        let sig = &msg.signals[s];
                        (s, (sig.min + sig.max) / 2.0)
                    })
                    .collect();
                values.extend(l.mux.map(|(s, v)| (s, v as f64)));
                let e2e = map.protected.iter().find(|p| p.message == l.message);
                let e2e = e2e.map(|p| &p.profile);
                if let Some((s, modulus)) = e2e.and_then(|p| p.counter()) {
                    values.push((s, f64::from(seq % modulus)));
                }
                let mut data = msg.encode(&values).unwrap();
                if let Some(p) = e2e {
                    p.seal(msg.id, &mut data);
                }
                CanFrame::new(msg.id, &data).unwrap()
            })
            .collect()
    }

    #[test]
    fn inbound_messages_are_watched_with_their_dbc_periods() {
        let (cfg, map) = demo("BMS_Alive").unwrap();
        assert_eq!(cfg.can.stale_after_periods, 3);
        let watched = |name: &str| {
            let i = map.dbc.message_index(name).unwrap();
            map.watched.iter().find(|w| w.message == i).cloned()
        };
        let cells = watched("BMU2_CellVoltage").unwrap();
        assert_eq!((cells.period_ms, cells.deadline_ms), (Some(100), Some(300)));
        assert_eq!(
            (cells.modules.as_slice(), cells.current_sensor),
            (&[2][..], false)
        );
        let ivt = watched("IVT_Current").unwrap();
        assert_eq!((ivt.deadline_ms, ivt.current_sensor), (Some(60), true));
        // Outbound messages are the host's to send, not to supervise.
        assert!(watched("BMS_Balance0").is_none() && watched("BMS_Status").is_none());
        assert_eq!(map.watched.len(), 8 + 8 + 3);
        assert_eq!(map.unsupervised().count(), 0);
        let (_, map) = with_periods("BMU2_CellVoltage = 250").unwrap();
        let i = map.dbc.message_index("BMU2_CellVoltage").unwrap();
        let w = map.watched.iter().find(|w| w.message == i).unwrap();
        assert_eq!((w.period_ms, w.deadline_ms), (Some(250), Some(750)));
    }

    #[test]
    fn bad_message_periods_name_the_field_the_message_and_the_dbc() {
        for (entries, expect) in [
            ("BMU9_Nope = 100", "the DBC has no message of that name"),
            ("BMS_Balance0 = 100", "only inbound messages are supervised"),
            ("IVT_Current = 5", "shorter than two protection periods"),
        ] {
            let e = with_periods(entries).unwrap_err();
            let message = entries.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("can.message_period_ms.{message}"))
                    && e.contains(expect)
                    && e.contains("bmu-demo.dbc"),
                "{entries}: {e}"
            );
        }
        let e = with_periods("BMU0_CellVoltage = 0").unwrap_err();
        assert!(
            e.contains("can.message_period_ms.BMU0_CellVoltage") && e.contains("> 0"),
            "{e}"
        );
    }

    #[test]
    fn a_silent_message_stales_only_what_it_carries() {
        let (cfg, map) = demo("BMS_Alive").unwrap();
        assert_eq!(cfg.can.module_timeout_ms, 500);
        let mut acq = Acquisition::new(&cfg, map.clone());
        let frames = |t: u64| all_inbound(&map, (t / 20) as u32);
        let temp2 = map.dbc.message("BMU2_Temperature").unwrap().id;
        let all_but =
            |t| -> Vec<CanFrame> { frames(t).into_iter().filter(|f| f.id() != temp2).collect() };
        // Everything for 200 ms, then BMU2_Temperature stops.
        for t in (0..=200).step_by(20) {
            acq.ingest(&rx(&frames(t)), t);
        }
        let mut stale_at = None;
        for t in (220..=700).step_by(20) {
            acq.ingest(&rx(&all_but(t)), t);
            let snap = acq.snapshot(t, false);
            let stale: Vec<usize> = (0..map.modules)
                .filter(|&m| snap.module_comm[m] == CommStatus::Stale)
                .collect();
            if stale.is_empty() {
                continue;
            }
            assert_eq!(stale, [2], "at {t} ms");
            assert_eq!(snap.current_comm, CommStatus::Ok);
            stale_at.get_or_insert(t);
        }
        // Last frame at 200 ms. The 500 ms value timeout would make the
        // module stale at 720 ms; the 300 ms message deadline does at 520.
        assert_eq!(stale_at, Some(520));
        assert_eq!(acq.silent_messages(700), ["BMU2_Temperature"]);
        assert_eq!(acq.stats.message_timeouts, 1);
        acq.ingest(&rx(&frames(720)), 720);
        assert!(acq
            .snapshot(720, false)
            .module_comm
            .iter()
            .all(|c| *c == CommStatus::Ok));
        assert!(acq.silent_messages(720).is_empty());
        assert_eq!(acq.stats.message_timeouts, 1, "counted once per silence");
    }

    /// Period `seq` at `seq × 20` ms, with `edit` applied to the frames.
    fn period(
        acq: &mut Acquisition,
        map: &RackMap,
        seq: u32,
        edit: impl Fn(&mut Vec<CanFrame>),
    ) -> PackSnapshot {
        let mut frames = all_inbound(map, seq);
        edit(&mut frames);
        let t = u64::from(seq) * 20;
        acq.ingest(&rx(&frames), t);
        acq.snapshot(t, false)
    }

    #[test]
    fn a_replayed_message_is_dropped_and_its_module_goes_stale_until_it_counts_again() {
        let (cfg, map) = demo("BMS_Alive").unwrap();
        let mut acq = Acquisition::new(&cfg, map.clone());
        for seq in 0..10 {
            period(&mut acq, &map, seq, |_| {});
        }
        // From period 10 a gateway repeats its cached copy of each page of
        // BMU3's cell voltages (period 9's), on time.
        let cells3 = map.dbc.message("BMU3_CellVoltage").unwrap().id;
        let cached: Vec<CanFrame> = all_inbound(&map, 9)
            .into_iter()
            .filter(|f| f.id() == cells3)
            .collect();
        let replay = |f: &mut Vec<CanFrame>| {
            f.retain(|f| f.id() != cells3);
            f.extend(cached.iter().copied());
        };
        let stale = |s: &PackSnapshot| -> Vec<usize> {
            (0..8)
                .filter(|&m| s.module_comm[m] == CommStatus::Stale)
                .collect()
        };
        for seq in 10..12 {
            let s = period(&mut acq, &map, seq, replay);
            assert!(stale(&s).is_empty(), "period {seq}: {:?}", stale(&s));
        }
        // The third repeat in a row (max_bad = 3): module 3 is stale, long
        // before its 300 ms message deadline would notice anything.
        assert_eq!(stale(&period(&mut acq, &map, 12, replay)), [3]);
        assert_eq!(acq.stats.e2e.e2e_repeated, 3 * 4, "3 periods × 4 pages");
        assert_eq!(acq.stats.e2e.e2e_lost, 1);
        // Fresh frames again: the first counter jumps (9 → 13, dropped and
        // resynchronised), then three good in a row before it is trusted.
        for seq in 13..16 {
            assert_eq!(stale(&period(&mut acq, &map, seq, |_| {})), [3], "{seq}");
        }
        assert_eq!(acq.stats.e2e.e2e_skipped, 4);
        assert!(stale(&period(&mut acq, &map, 16, |_| {})).is_empty());
    }

    #[test]
    fn a_bad_crc_drops_the_frame_and_the_current_sensor_goes_stale() {
        let (cfg, map) = demo("BMS_Alive").unwrap();
        let mut acq = Acquisition::new(&cfg, map.clone());
        for seq in 0..10 {
            period(&mut acq, &map, seq, |_| {});
        }
        let ivt = map.dbc.message("IVT_Current").unwrap().id;
        // One flipped bit in the current value, the CRC left as it was.
        let corrupt = |f: &mut Vec<CanFrame>| {
            for frame in f.iter_mut().filter(|f| f.id() == ivt) {
                let mut d = frame.data().to_vec();
                d[4] ^= 0x10;
                *frame = CanFrame::new(ivt, &d).unwrap();
            }
        };
        for seq in 10..12 {
            let s = period(&mut acq, &map, seq, corrupt);
            assert_eq!(s.current_comm, CommStatus::Ok, "period {seq}");
        }
        assert_eq!(acq.stats.e2e.e2e_bad_crc, 2, "each corrupt frame dropped");
        let s = period(&mut acq, &map, 12, corrupt);
        assert_eq!(s.current_comm, CommStatus::Stale);
        assert_eq!(acq.stats.e2e.e2e_bad_crc, 3);
        // The IVT's 60 ms deadline would only have fired at 260 ms.
        assert!(acq.silent_messages(240).is_empty());
    }

    #[test]
    fn an_e2e_entry_that_cannot_work_names_its_field() {
        for (entry, field, needle) in [
            (
                "counter = \"BMU{module}_Nope\"",
                "can.e2e[0].counter",
                "BMU0_Nope",
            ),
            (
                "counter = \"IVT_Current_Count\"\ncrc8 = \"IVT_Voltage_CRC\"",
                "can.e2e[0].crc8",
                "different messages",
            ),
            ("crc8 = \"IVT_Current_mA\"", "can.e2e[0].crc8", "whole"),
            (
                "counter = \"BMS_Alive\"",
                "can.e2e[0].counter",
                "no mapped inbound",
            ),
            ("max_bad = 2", "can.e2e[0].counter", "a `counter`, a `crc8`"),
            (
                "counter = \"IVT_Current_Count\"\nmax_bad = 0",
                "can.e2e[0].max_bad",
                "at least 1",
            ),
        ] {
            let e = demo_with(|t| {
                let start = t.find("[[can.e2e]]").unwrap();
                let end = t.find("[can.signals]").unwrap();
                format!("{}[[can.e2e]]\n{entry}\n\n{}", &t[..start], &t[end..])
            })
            .unwrap_err();
            assert!(e.contains(field) && e.contains(needle), "{entry}: {e}");
        }
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

    /// A BMU that takes every module's bleed mask in one multiplexed
    /// message (selector = module): each frame carries its selector, and
    /// the receiving side decodes what was commanded.
    #[test]
    fn multiplexed_bleed_commands_carry_their_selector() {
        let dir = tempfile::tempdir().unwrap();
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let text = std::fs::read_to_string(demo.join("bmu-demo.dbc")).unwrap();
        let balance_ids = |l: &str| (1024..=1031).any(|id| l.contains(&format!(" {id} ")));
        let mut dbc: String = text
            .lines()
            .filter(|l| {
                let balance_message = l.contains("BO_") && balance_ids(l);
                !(l.contains("BleedMask") || balance_message)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let mut muxed = String::from(
            "BO_ 1024 BMS_Balance: 3 BMS\n SG_ Balance_Module M : 0|8@1+ (1,0) [0|7] \"\" BMU0\n",
        );
        for m in 0..8 {
            muxed += &format!(" SG_ BMU{m}_BleedMask m{m} : 8|16@1+ (1,0) [0|65535] \"\" BMU{m}\n");
        }
        let at = dbc.find("BO_ ").unwrap();
        dbc.insert_str(at, &format!("{muxed}\n"));
        let path = dir.path().join("muxed-bleed.dbc");
        std::fs::write(&path, dbc).unwrap();
        let (cfg, map) = demo_with(|t| {
            t.replace(
                "dbc = \"bmu-demo.dbc\"",
                &format!("dbc = {:?}", path.display().to_string()),
            )
        })
        .unwrap();
        let acq = Acquisition::new(&cfg, map.clone());
        let cells = cfg.rack.cell_count();
        let per = cfg.rack.cells_per_module as usize;
        let wanted: Vec<bool> = (0..cells).map(|i| i % 5 == 0 || i == cells - 1).collect();
        let frames = acq.encode_bleed(&wanted);
        assert_eq!(frames.len(), 8, "one frame per module");
        // Decoded as the simulated BMUs do, with their own layout.
        let bmus = crate::sim::layout::SimLayout::build(
            &map.dbc,
            &crate::sim::layout::SimSignals::default(),
            8,
            per,
            4,
        )
        .unwrap();
        let mut seen = vec![false; cells];
        for (m, f) in frames.iter().enumerate() {
            assert_eq!(f.data()[0] as usize, m, "selector of frame {m}");
            let index = map.dbc.message_index_by_id(f.id()).unwrap();
            bmus.apply_bleed(&map.dbc, index, f.data(), per, &mut seen);
        }
        assert_eq!(seen, wanted);
    }
}
