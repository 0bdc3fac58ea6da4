//! The rack's CAN front end, run on the protection thread every period:
//! drain what arrived, decode it, freeze the snapshot; send the host's
//! heartbeat frame and the bleed commands the control thread left.
//!
//! Owns: the host's [`CanPort`] and the [`Acquisition`] state. It is the
//! [`SnapshotSource`] of [`crate::protection::task::ProtectionTask`], so
//! the data protection judges is acquired on protection's own schedule,
//! never between two plugin calls.
//!
//! May not touch: protection decisions or plugins. It never blocks: the
//! port is non-blocking and sends are queued.

use super::acquire::{AcquireStats, Acquisition};
use super::bus::{CanPort, Received};
use crate::protection::task::{BleedCommand, SnapshotSource};
use crate::snapshot::PackSnapshot;

pub struct CanFrontEnd {
    acquisition: Acquisition,
    port: Box<dyn CanPort>,
    rx: Vec<Received>,
    /// `can.heartbeat`: period, next due time and count sent.
    heartbeat: Option<(u64, u64, u64)>,
    /// The bleed command last sent, and the resistor each switch closes.
    bleed: BleedCommand,
    bleed_resistance_ohm: f32,
}

impl CanFrontEnd {
    pub fn new(
        acquisition: Acquisition,
        port: Box<dyn CanPort>,
        heartbeat_period_ms: Option<u64>,
        bleed_resistance_ohm: f32,
    ) -> Self {
        Self {
            acquisition,
            port,
            rx: Vec::new(),
            heartbeat: heartbeat_period_ms.map(|p| (p, 0, 0)),
            bleed: BleedCommand::default(),
            bleed_resistance_ohm,
        }
    }

    fn send_heartbeat(&mut self, now_ms: u64) {
        let Some((period_ms, next_ms, count)) = &mut self.heartbeat else {
            return;
        };
        if now_ms < *next_ms {
            return;
        }
        if let Some(frame) = self.acquisition.encode_heartbeat(*count) {
            if let Err(e) = self.port.send(&frame) {
                tracing::warn!(error = %e, "heartbeat frame not sent");
            }
        }
        *count += 1;
        *next_ms = now_ms + *period_ms;
    }

    /// Send a new bleed command once. The control thread commands every
    /// cycle (all-off too), so a BMU that stops hearing them can time out
    /// to no bleeding.
    fn send_bleed(&mut self, cmd: &BleedCommand) {
        if cmd.seq == self.bleed.seq {
            return;
        }
        for frame in self.acquisition.encode_bleed(&cmd.cells) {
            if let Err(e) = self.port.send(&frame) {
                tracing::warn!(error = %e, "cannot send bleed command");
            }
        }
        self.bleed.clone_from(cmd);
    }
}

impl SnapshotSource for CanFrontEnd {
    fn acquire(&mut self, now_ms: u64, closed: bool, bleed: &BleedCommand) -> PackSnapshot {
        self.send_heartbeat(now_ms);
        self.send_bleed(bleed);
        self.rx.clear();
        self.port.drain_stamped(&mut self.rx);
        self.acquisition.ingest(&self.rx, now_ms);
        let mut snap = self.acquisition.snapshot(now_ms, closed);
        for ((bleed_a, on), v) in snap
            .cell_bleed_a
            .iter_mut()
            .zip(&self.bleed.cells)
            .zip(&snap.cell_voltage_v)
        {
            if *on && v.is_finite() {
                *bleed_a = v / self.bleed_resistance_ohm;
            }
        }
        snap
    }

    fn stats(&self) -> AcquireStats {
        let mut s = self.acquisition.stats;
        s.rx_overflows = self.port.overflows();
        s.bus = self.port.bus_stats();
        s
    }
}
