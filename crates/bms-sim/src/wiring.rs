//! The wires between the host's contactor outputs and the simulated rack.
//!
//! Owns: the commanded coil states and the watchdog heartbeat line, as
//! atomics (the host's driver writes them on the protection thread; the
//! simulator reads them on its own). May not touch: the contactor state
//! machine; the simulator only sees what a relay board would.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Commanded coil states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coils {
    pub precharge: bool,
    pub main: bool,
}

/// Coil commands and the heartbeat line, as the simulator reads them.
#[derive(Debug, Default)]
pub struct SimWiring {
    precharge: AtomicBool,
    main: AtomicBool,
    heartbeat_level: AtomicBool,
    last_toggle_ms: AtomicU64,
    heartbeat_seen: AtomicBool,
}

impl SimWiring {
    /// Drive the coils (the host's output driver).
    pub fn command(&self, coils: Coils) {
        self.precharge.store(coils.precharge, Ordering::Release);
        self.main.store(coils.main, Ordering::Release);
    }

    /// Toggle the watchdog line at host time `now_ms`.
    pub fn toggle_heartbeat(&self, now_ms: u64) {
        self.heartbeat_level.fetch_xor(true, Ordering::AcqRel);
        self.last_toggle_ms.store(now_ms, Ordering::Release);
        self.heartbeat_seen.store(true, Ordering::Release);
    }

    /// Commanded coil states.
    pub fn commanded(&self) -> Coils {
        Coils {
            precharge: self.precharge.load(Ordering::Acquire),
            main: self.main.load(Ordering::Acquire),
        }
    }

    /// Host time of the last heartbeat toggle, if any.
    pub fn last_heartbeat_ms(&self) -> Option<u64> {
        self.heartbeat_seen
            .load(Ordering::Acquire)
            .then(|| self.last_toggle_ms.load(Ordering::Acquire))
    }
}
