//! Contactor and watchdog outputs. Protection decides; this drives the
//! coils and the heartbeat line.
//!
//! Fail-safe: every implementation de-energises (opens) on drop, so a host
//! that exits or unwinds leaves the contactors open. An external watchdog
//! relay in series with the coils opens them when the heartbeat stops
//! toggling, which covers a hung or dead protection thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::protection::contactor::RelayOutputs;

/// Drives the precharge relay, the main contactor and the watchdog line.
pub trait ContactorOutput: Send {
    fn set(&mut self, outputs: RelayOutputs);
    /// Toggle the watchdog heartbeat at host time `now_ms`.
    fn toggle_heartbeat(&mut self, now_ms: u64);
}

/// The wiring between the host's outputs and the simulated rack: coil
/// commands and the heartbeat line, as atomics the simulator reads.
#[derive(Debug, Default)]
pub struct SimWiring {
    precharge: AtomicBool,
    main: AtomicBool,
    heartbeat_level: AtomicBool,
    last_toggle_ms: AtomicU64,
    heartbeat_seen: AtomicBool,
}

impl SimWiring {
    /// Commanded coil states.
    pub fn commanded(&self) -> RelayOutputs {
        RelayOutputs {
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

/// The simulator's contactor driver.
pub struct SimulatedContactor {
    wiring: Arc<SimWiring>,
}

impl SimulatedContactor {
    /// Starts with every coil open.
    pub fn new() -> (Self, Arc<SimWiring>) {
        let wiring = Arc::new(SimWiring::default());
        (
            Self {
                wiring: wiring.clone(),
            },
            wiring,
        )
    }
}

impl ContactorOutput for SimulatedContactor {
    fn set(&mut self, o: RelayOutputs) {
        self.wiring.precharge.store(o.precharge, Ordering::Release);
        self.wiring.main.store(o.main, Ordering::Release);
    }

    fn toggle_heartbeat(&mut self, now_ms: u64) {
        self.wiring
            .heartbeat_level
            .fetch_xor(true, Ordering::AcqRel);
        self.wiring.last_toggle_ms.store(now_ms, Ordering::Release);
        self.wiring.heartbeat_seen.store(true, Ordering::Release);
    }
}

impl Drop for SimulatedContactor {
    fn drop(&mut self) {
        self.set(RelayOutputs::OPEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_open_and_opens_on_drop() {
        let (mut out, wiring) = SimulatedContactor::new();
        assert_eq!(wiring.commanded(), RelayOutputs::OPEN);
        assert_eq!(wiring.last_heartbeat_ms(), None);
        out.set(RelayOutputs {
            precharge: false,
            main: true,
        });
        out.toggle_heartbeat(10);
        assert!(wiring.commanded().main);
        assert_eq!(wiring.last_heartbeat_ms(), Some(10));
        drop(out);
        assert_eq!(wiring.commanded(), RelayOutputs::OPEN);
    }

    /// The owner of a closed output panics: unwinding drops the output,
    /// which opens every coil.
    #[test]
    fn a_panicking_owner_leaves_the_contactors_open() {
        let (mut out, wiring) = SimulatedContactor::new();
        out.set(RelayOutputs {
            precharge: false,
            main: true,
        });
        assert!(wiring.commanded().main);
        let owner = std::thread::spawn(move || {
            let _out = out;
            panic!("a stage failed while the contactors were closed");
        });
        assert!(owner.join().is_err());
        assert_eq!(wiring.commanded(), RelayOutputs::OPEN);
    }
}
