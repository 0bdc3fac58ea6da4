//! Contactor and watchdog outputs. Protection decides; this drives the
//! coils and the heartbeat line.
//!
//! Fail-safe: every implementation de-energises (opens) on drop, so a host
//! that exits or unwinds leaves the contactors open. An external watchdog
//! relay in series with the coils opens them when the heartbeat stops
//! toggling, which covers a hung or dead protection thread.

use std::sync::Arc;

use crate::protection::contactor::RelayOutputs;

/// Drives the precharge relay, the main contactor and the watchdog line.
pub trait ContactorOutput: Send {
    fn set(&mut self, outputs: RelayOutputs);
    /// Toggle the watchdog heartbeat at host time `now_ms`.
    fn toggle_heartbeat(&mut self, now_ms: u64);
}

pub use bms_sim::SimWiring;

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
        self.wiring.command(bms_sim::Coils {
            precharge: o.precharge,
            main: o.main,
        });
    }

    fn toggle_heartbeat(&mut self, now_ms: u64) {
        self.wiring.toggle_heartbeat(now_ms);
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
        assert_eq!(wiring.commanded(), bms_sim::Coils::default());
        assert_eq!(wiring.last_heartbeat_ms(), None);
        out.set(RelayOutputs {
            precharge: false,
            main: true,
        });
        out.toggle_heartbeat(10);
        assert!(wiring.commanded().main);
        assert_eq!(wiring.last_heartbeat_ms(), Some(10));
        drop(out);
        assert_eq!(wiring.commanded(), bms_sim::Coils::default());
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
        assert_eq!(wiring.commanded(), bms_sim::Coils::default());
    }
}
