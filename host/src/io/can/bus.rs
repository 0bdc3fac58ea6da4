//! CAN buses. [`VirtualBus`] is the in-process wire used in simulation:
//! every frame sent by one endpoint is delivered to every other endpoint,
//! like a real bus. Queues are bounded; overflow drops the oldest frame and
//! is counted, as a controller's receive FIFO would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::CanFrame;

/// Receive queue depth per endpoint.
const QUEUE_DEPTH: usize = 8192;

/// Something frames can be sent on and received from.
pub trait CanPort: Send {
    /// Send one frame. A virtual bus never fails; hardware may.
    fn send(&self, frame: &CanFrame) -> Result<(), BusError>;
    /// Move every received frame into `out`, oldest first.
    fn drain(&self, out: &mut Vec<CanFrame>);
    /// Frames lost to receive-queue overflow so far.
    fn overflows(&self) -> u64;
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("CAN bus is off")]
    BusOff,
}

#[derive(Default)]
struct Shared {
    queues: Vec<VecDeque<CanFrame>>,
    overflows: Vec<u64>,
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

    /// Attach a new node to the bus.
    pub fn endpoint(&self) -> VirtualEndpoint {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.queues.push(VecDeque::new());
        s.overflows.push(0);
        VirtualEndpoint {
            shared: self.shared.clone(),
            index: s.queues.len() - 1,
        }
    }
}

/// One node on a [`VirtualBus`].
pub struct VirtualEndpoint {
    shared: Arc<Mutex<Shared>>,
    index: usize,
}

impl CanPort for VirtualEndpoint {
    fn send(&self, frame: &CanFrame) -> Result<(), BusError> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Shared { queues, overflows } = &mut *s;
        for (i, q) in queues.iter_mut().enumerate() {
            if i == self.index {
                continue;
            }
            if q.len() >= QUEUE_DEPTH {
                q.pop_front();
                overflows[i] += 1;
            }
            q.push_back(*frame);
        }
        Ok(())
    }

    fn drain(&self, out: &mut Vec<CanFrame>) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(s.queues[self.index].drain(..));
    }

    fn overflows(&self) -> u64 {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.overflows[self.index]
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
        a.send(&f).unwrap();
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
            a.send(&f).unwrap();
        }
        let mut got = Vec::new();
        b.drain(&mut got);
        assert_eq!(got.len(), QUEUE_DEPTH);
        assert_eq!(b.overflows(), 5);
        assert_eq!(got[0].data()[0], 5);
    }
}
