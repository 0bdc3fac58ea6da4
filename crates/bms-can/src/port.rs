//! The synchronous face of a CAN bus: what a thread that must never wait
//! (the protection thread, the simulated rack) sends to and drains from.
//!
//! Owns: the [`CanPort`] trait, the arrival-stamped [`Received`] frame,
//! the [`BusStats`] counters and [`BusError`]. May not touch: sockets,
//! threads or runtimes; the backends live in the host (`bmshost::io::can`).

use crate::CanFrame;

/// A frame as the host received it: stamped on arrival (by the bus or the
/// port's I/O thread), so a late drain does not make old data look fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub frame: CanFrame,
    /// Site-clock time of arrival, ms; `None` on a bus without a clock
    /// (then acquisition judges the frame at drain time).
    pub rx_ms: Option<u64>,
}

impl From<CanFrame> for Received {
    /// An unstamped frame (judged at drain time).
    fn from(frame: CanFrame) -> Self {
        Self { frame, rx_ms: None }
    }
}

/// Counters of what a bus reported besides good frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BusStats {
    /// Error frames received (bus errors, error-passive, bus-off, ...).
    pub error_frames: u64,
    /// Times the controller reported bus-off.
    pub bus_off: u64,
    /// Frames that could not be sent.
    pub tx_errors: u64,
}

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("CAN bus is off")]
    BusOff,
    #[error("CAN interface `{interface}`: {source}")]
    Io {
        interface: String,
        source: std::io::Error,
    },
    #[error("CAN transmit queue full: frame {0} dropped")]
    TxQueueFull(String),
    #[error("CAN bus I/O thread has stopped")]
    Closed,
}

/// A bus endpoint that never blocks.
pub trait CanPort: Send {
    /// Send one frame (queued; a full queue or a dead bus is an error).
    fn send(&self, frame: &CanFrame) -> Result<(), BusError>;
    /// Move every received frame, with its arrival stamp, into `out`,
    /// oldest first.
    fn drain_stamped(&self, out: &mut Vec<Received>);
    /// As [`Self::drain_stamped`], without the stamps.
    fn drain(&self, out: &mut Vec<CanFrame>) {
        let mut got = Vec::new();
        self.drain_stamped(&mut got);
        out.extend(got.into_iter().map(|r| r.frame));
    }
    /// Frames lost to receive-queue overflow so far.
    fn overflows(&self) -> u64;
    /// Error frames, bus-off and send failures so far.
    fn bus_stats(&self) -> BusStats;
}
