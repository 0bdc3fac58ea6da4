//! CAN buses: one async interface ([`CanBus`]) with two backends, and the
//! synchronous face the protection thread drains ([`CanPort`]).
//!
//! - [`VirtualBus`] is the in-process wire used in simulation: every frame
//!   sent by one endpoint is delivered to every other endpoint, like a real
//!   bus. Queues are bounded; overflow drops the oldest frame and is
//!   counted, as a controller's receive FIFO would. Error frames (and
//!   bus-off) can be injected to exercise the supervision.
//! - [`super::socketcan::SocketCanBus`] is a Linux SocketCAN interface
//!   (hardware or `vcan`).
//!
//! The protection thread never waits on a bus: a lock-step simulation reads a
//! [`VirtualEndpoint`] directly, and any [`CanBus`] can be pumped by a
//! [`super::port::BusPort`] on an I/O thread of its own.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::CanFrame;
use crate::clock::Clock;
pub use bms_can::port::{BusError, BusStats, CanPort, Received};

/// Receive queue depth per endpoint.
const QUEUE_DEPTH: usize = 8192;

/// What a bus delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusEvent {
    Frame(CanFrame),
    /// An error frame from the controller; `bus_off` when it reports that
    /// the controller went bus-off (it stops sending and receiving).
    ErrorFrame {
        bus_off: bool,
    },
}

/// The async interface of a CAN bus; both backends carry the same
/// [`CanFrame`]s.
pub trait CanBus: Send + Sync + 'static {
    /// The next frame or error frame.
    fn recv(&self) -> impl Future<Output = Result<BusEvent, BusError>> + Send;
    /// Send one frame.
    fn send(&self, frame: CanFrame) -> impl Future<Output = Result<(), BusError>> + Send;
}

#[derive(Default)]
struct Shared {
    /// Per endpoint: events with their arrival stamps.
    queues: Vec<VecDeque<(BusEvent, Option<u64>)>>,
    clock: Option<Arc<dyn Clock>>,
    overflows: Vec<u64>,
    stats: Vec<BusStats>,
    notify: Vec<Arc<Notify>>,
}

/// An in-process CAN bus.
#[derive(Clone, Default)]
pub struct VirtualBus {
    shared: Arc<Mutex<Shared>>,
}

impl VirtualBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus that stamps every delivered frame with `clock`'s time.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let bus = Self::default();
        bus.shared.lock().unwrap_or_else(|e| e.into_inner()).clock = Some(clock);
        bus
    }

    /// Attach a new node to the bus.
    pub fn endpoint(&self) -> VirtualEndpoint {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.queues.push(VecDeque::new());
        s.overflows.push(0);
        s.stats.push(BusStats::default());
        let notify = Arc::new(Notify::new());
        s.notify.push(notify.clone());
        VirtualEndpoint {
            shared: self.shared.clone(),
            index: s.queues.len() - 1,
            notify,
        }
    }

    /// Deliver an error frame to every node (a disturbed wire, or with
    /// `bus_off` a controller that left the bus).
    pub fn inject_error(&self, bus_off: bool) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.push_from(None, BusEvent::ErrorFrame { bus_off });
    }
}

impl Shared {
    fn push_from(&mut self, sender: Option<usize>, ev: BusEvent) {
        let Shared {
            queues,
            overflows,
            notify,
            clock,
            ..
        } = self;
        let rx_ms = clock.as_ref().map(|c| c.now_ms());
        for (i, q) in queues.iter_mut().enumerate() {
            if Some(i) == sender {
                continue;
            }
            if q.len() >= QUEUE_DEPTH {
                q.pop_front();
                overflows[i] += 1;
            }
            q.push_back((ev, rx_ms));
            notify[i].notify_one();
        }
    }
}

/// One node on a [`VirtualBus`].
pub struct VirtualEndpoint {
    shared: Arc<Mutex<Shared>>,
    index: usize,
    notify: Arc<Notify>,
}

impl VirtualEndpoint {
    fn pop(&self) -> Option<BusEvent> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.queues[self.index].pop_front().map(|(ev, _)| ev)
    }
}

impl CanPort for VirtualEndpoint {
    fn send(&self, frame: &CanFrame) -> Result<(), BusError> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.push_from(Some(self.index), BusEvent::Frame(*frame));
        Ok(())
    }

    fn drain_stamped(&self, out: &mut Vec<Received>) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Shared { queues, stats, .. } = &mut *s;
        for (ev, rx_ms) in queues[self.index].drain(..) {
            match ev {
                BusEvent::Frame(frame) => out.push(Received { frame, rx_ms }),
                BusEvent::ErrorFrame { bus_off } => count_error(&mut stats[self.index], bus_off),
            }
        }
    }

    fn overflows(&self) -> u64 {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.overflows[self.index]
    }

    fn bus_stats(&self) -> BusStats {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.stats[self.index]
    }
}

impl CanBus for VirtualEndpoint {
    async fn recv(&self) -> Result<BusEvent, BusError> {
        loop {
            // A permit stored by a send between the pop and the wait is
            // kept by `Notify`, so no frame is missed.
            if let Some(ev) = self.pop() {
                return Ok(ev);
            }
            self.notify.notified().await;
        }
    }

    async fn send(&self, frame: CanFrame) -> Result<(), BusError> {
        CanPort::send(self, &frame)
    }
}

/// Count one error frame.
pub(crate) fn count_error(stats: &mut BusStats, bus_off: bool) {
    stats.error_frames += 1;
    if bus_off {
        stats.bus_off += 1;
        tracing::error!("CAN controller reports bus-off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::can::CanId;

    #[test]
    fn frames_reach_every_other_node_but_not_the_sender() {
        let bus = VirtualBus::new();
        let (a, b, c) = (bus.endpoint(), bus.endpoint(), bus.endpoint());
        let f = CanFrame::new(CanId::standard(0x123).unwrap(), &[1, 2, 3]).unwrap();
        CanPort::send(&a, &f).unwrap();
        let mut got = Vec::new();
        a.drain(&mut got);
        assert!(got.is_empty());
        b.drain(&mut got);
        c.drain(&mut got);
        assert_eq!(got, vec![f, f]);
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let bus = VirtualBus::new();
        let (a, b) = (bus.endpoint(), bus.endpoint());
        for i in 0..(QUEUE_DEPTH + 5) {
            let f = CanFrame::new(CanId::standard(0x100).unwrap(), &[(i % 256) as u8]).unwrap();
            CanPort::send(&a, &f).unwrap();
        }
        let mut got = Vec::new();
        b.drain(&mut got);
        assert_eq!(got.len(), QUEUE_DEPTH);
        assert_eq!(b.overflows(), 5);
        assert_eq!(got[0].data()[0], 5);
    }

    #[test]
    fn error_frames_are_counted_not_delivered_as_data() {
        let bus = VirtualBus::new();
        let (a, b) = (bus.endpoint(), bus.endpoint());
        let f = CanFrame::new(CanId::standard(0x10).unwrap(), &[1]).unwrap();
        CanPort::send(&a, &f).unwrap();
        bus.inject_error(false);
        bus.inject_error(true);
        let mut got = Vec::new();
        b.drain(&mut got);
        assert_eq!(got, vec![f]);
        assert_eq!(
            b.bus_stats(),
            BusStats {
                error_frames: 2,
                bus_off: 1,
                tx_errors: 0
            }
        );
        a.drain(&mut got);
        assert_eq!(a.bus_stats().error_frames, 2, "every node sees them");
    }
}
