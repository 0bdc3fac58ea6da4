//! Contactor outputs. Protection decides; this drives the coil.
//!
//! Fail-safe: every implementation must open on drop, so a host that
//! exits or unwinds leaves the contactors open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Drives the main contactors.
pub trait ContactorOutput: Send {
    fn set_closed(&mut self, closed: bool);
    fn is_closed(&self) -> bool;
}

/// The simulator's contactor: a shared flag the simulated rack reads to
/// decide whether current can flow.
pub struct SimulatedContactor {
    closed: Arc<AtomicBool>,
}

impl SimulatedContactor {
    /// Starts open.
    pub fn new() -> (Self, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        (
            Self {
                closed: closed.clone(),
            },
            closed,
        )
    }
}

impl ContactorOutput for SimulatedContactor {
    fn set_closed(&mut self, closed: bool) {
        self.closed.store(closed, Ordering::Release);
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for SimulatedContactor {
    fn drop(&mut self) {
        self.closed.store(false, Ordering::Release);
    }
}
