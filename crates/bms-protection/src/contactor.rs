//! The contactor state machine: open → precharge → closed → opening → open.
//!
//! Protection decides whether the pack may be connected ([`Permit`]);
//! this machine sequences the relays and supervises them with the
//! measurements it gets every tick:
//! - **Precharge** closes the precharge relay and waits for the DC-link
//!   voltage to reach `precharge_fraction` of the pack voltage within
//!   `precharge_timeout_ms`; otherwise it faults (a shorted link or a
//!   failed precharge resistor would weld the main contactor).
//! - **Closed** closes the main contactor and opens the precharge relay.
//! - **Opening** drops both and, after `open_timeout_ms`, checks that
//!   current has stopped; current still flowing while commanded open means
//!   a welded contactor.
//! - **Open** keeps checking: current or link voltage present while open is
//!   a weld fault.
//!
//! Every fault here is reported to the caller, which latches it as an MSL
//! fault: a contactor problem always ends with everything commanded open.

use serde::Serialize;

use super::limits::ContactorConfig;

/// Relay outputs. `false` is the de-energised, open state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct RelayOutputs {
    pub precharge: bool,
    pub main: bool,
}

impl RelayOutputs {
    pub const OPEN: RelayOutputs = RelayOutputs {
        precharge: false,
        main: false,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactorState {
    Open,
    Precharge,
    Closed,
    Opening,
}

/// A supervision failure of the contactors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactorFault {
    /// The link did not reach the precharge fraction in time.
    PrechargeTimeout { link_v: f32, pack_v: f32 },
    /// Current flows (or the link stays charged) while commanded open.
    Welded { current_a: f32, link_v: f32 },
}

/// What one tick produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactorStep {
    pub outputs: RelayOutputs,
    /// State change this tick, (from, to).
    pub transition: Option<(ContactorState, ContactorState)>,
    pub fault: Option<ContactorFault>,
}

/// Protection's permission: `close` to start connecting (from open),
/// `keep` to go on connecting or stay connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub close: bool,
    pub keep: bool,
}

impl Permit {
    pub const CLOSED: Permit = Permit {
        close: true,
        keep: true,
    };
    pub const OPEN: Permit = Permit {
        close: false,
        keep: false,
    };
}

/// Measurements the machine supervises with; NaN means unknown.
#[derive(Debug, Clone, Copy)]
pub struct ContactorInputs {
    pub pack_v: f32,
    pub link_v: f32,
    pub current_a: f32,
}

#[derive(Debug, Clone)]
pub struct ContactorFsm {
    cfg: ContactorConfig,
    state: ContactorState,
    since_ms: u64,
    /// No open has happened yet: the first close needs no reclose delay.
    first_close: bool,
}

impl ContactorFsm {
    pub fn new(cfg: ContactorConfig, now_ms: u64) -> Self {
        Self {
            cfg,
            state: ContactorState::Open,
            since_ms: now_ms,
            first_close: true,
        }
    }

    pub fn state(&self) -> ContactorState {
        self.state
    }

    /// How long the machine has been in its current state.
    pub fn in_state_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.since_ms)
    }

    fn go(&mut self, to: ContactorState, now_ms: u64, step: &mut ContactorStep) {
        step.transition = Some((self.state, to));
        self.state = to;
        self.since_ms = now_ms;
    }

    /// Advance one tick under protection's permission.
    pub fn tick(&mut self, permit: Permit, m: ContactorInputs, now_ms: u64) -> ContactorStep {
        let mut step = ContactorStep {
            outputs: RelayOutputs::OPEN,
            transition: None,
            fault: None,
        };
        let elapsed = now_ms.saturating_sub(self.since_ms);
        let c = self.cfg;
        // Unknown (NaN) measurements never raise a weld: missing sensor data
        // is the communication-loss check's fault, and it opens too.
        let current_flows = m.current_a.abs() >= c.weld_current_a;
        let link_charged = m.link_v > c.weld_voltage_fraction * m.pack_v;
        match self.state {
            ContactorState::Open => {
                // Before any close (including the first after start-up, when the
                // host may have died with the contacts welded under load) the
                // link must be discharged and no current flowing; otherwise
                // the check runs once an opening has settled.
                let checking = permit.close || elapsed >= c.open_timeout_ms;
                if checking && (current_flows || link_charged) {
                    step.fault = Some(ContactorFault::Welded {
                        current_a: m.current_a,
                        link_v: m.link_v,
                    });
                } else if permit.close && (self.first_close || elapsed >= c.reclose_delay_ms) {
                    self.first_close = false;
                    self.go(ContactorState::Precharge, now_ms, &mut step);
                    step.outputs.precharge = true;
                }
            }
            ContactorState::Precharge => {
                if !permit.keep {
                    self.go(ContactorState::Opening, now_ms, &mut step);
                } else if m.pack_v > 0.0 && m.link_v >= c.precharge_fraction * m.pack_v {
                    self.go(ContactorState::Closed, now_ms, &mut step);
                    step.outputs.main = true;
                } else if elapsed >= c.precharge_timeout_ms {
                    step.fault = Some(ContactorFault::PrechargeTimeout {
                        link_v: m.link_v,
                        pack_v: m.pack_v,
                    });
                    self.go(ContactorState::Opening, now_ms, &mut step);
                } else {
                    step.outputs.precharge = true;
                }
            }
            ContactorState::Closed => {
                if permit.keep {
                    step.outputs.main = true;
                } else {
                    self.go(ContactorState::Opening, now_ms, &mut step);
                }
            }
            ContactorState::Opening => {
                if elapsed >= c.open_timeout_ms {
                    if current_flows {
                        step.fault = Some(ContactorFault::Welded {
                            current_a: m.current_a,
                            link_v: m.link_v,
                        });
                    }
                    self.go(ContactorState::Open, now_ms, &mut step);
                }
            }
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContactorConfig {
        ContactorConfig {
            precharge_fraction: 0.95,
            precharge_timeout_ms: 2000,
            open_timeout_ms: 200,
            weld_current_a: 5.0,
            weld_voltage_fraction: 0.5,
            reclose_delay_ms: 1000,
        }
    }

    fn m(link_v: f32, current_a: f32) -> ContactorInputs {
        ContactorInputs {
            pack_v: 400.0,
            link_v,
            current_a,
        }
    }

    #[test]
    fn sequence_open_precharge_closed_opening_open() {
        let mut f = ContactorFsm::new(cfg(), 0);
        let s = f.tick(Permit::CLOSED, m(0.0, 0.0), 0);
        assert_eq!(
            s.transition,
            Some((ContactorState::Open, ContactorState::Precharge))
        );
        assert_eq!(
            s.outputs,
            RelayOutputs {
                precharge: true,
                main: false
            }
        );
        let s = f.tick(Permit::CLOSED, m(200.0, 0.0), 100);
        assert_eq!(
            s.outputs,
            RelayOutputs {
                precharge: true,
                main: false
            }
        );
        let s = f.tick(Permit::CLOSED, m(385.0, 0.0), 200);
        assert_eq!(
            s.transition,
            Some((ContactorState::Precharge, ContactorState::Closed))
        );
        assert_eq!(
            s.outputs,
            RelayOutputs {
                precharge: false,
                main: true
            }
        );
        let s = f.tick(Permit::OPEN, m(400.0, 50.0), 300);
        assert_eq!(
            s.transition,
            Some((ContactorState::Closed, ContactorState::Opening))
        );
        assert_eq!(s.outputs, RelayOutputs::OPEN);
        let s = f.tick(Permit::OPEN, m(10.0, 0.0), 500);
        assert_eq!(
            s.transition,
            Some((ContactorState::Opening, ContactorState::Open))
        );
        assert_eq!(s.fault, None);
        // Reclose only after the reclose delay.
        assert_eq!(f.tick(Permit::CLOSED, m(0.0, 0.0), 1400).transition, None);
        assert!(f
            .tick(Permit::CLOSED, m(0.0, 0.0), 1500)
            .transition
            .is_some());
    }

    #[test]
    fn precharge_timeout_faults_and_opens() {
        let mut f = ContactorFsm::new(cfg(), 0);
        f.tick(Permit::CLOSED, m(0.0, 0.0), 0);
        assert_eq!(f.tick(Permit::CLOSED, m(100.0, 0.0), 1999).fault, None);
        let s = f.tick(Permit::CLOSED, m(100.0, 0.0), 2000);
        assert!(matches!(
            s.fault,
            Some(ContactorFault::PrechargeTimeout { .. })
        ));
        assert_eq!(s.outputs, RelayOutputs::OPEN);
    }

    #[test]
    fn current_while_opened_is_a_weld() {
        let mut f = ContactorFsm::new(cfg(), 0);
        f.tick(Permit::CLOSED, m(0.0, 0.0), 0);
        f.tick(Permit::CLOSED, m(390.0, 0.0), 100);
        f.tick(Permit::OPEN, m(400.0, 100.0), 200);
        let s = f.tick(Permit::OPEN, m(400.0, 100.0), 400);
        assert!(
            matches!(s.fault, Some(ContactorFault::Welded { .. })),
            "{s:?}"
        );
        assert_eq!(s.outputs, RelayOutputs::OPEN);
        // And while open, it keeps reporting.
        assert!(f.tick(Permit::OPEN, m(400.0, 100.0), 700).fault.is_some());
    }

    #[test]
    fn unknown_measurements_do_not_fake_a_weld() {
        let mut f = ContactorFsm::new(cfg(), 10_000);
        assert!(f
            .tick(Permit::OPEN, m(f32::NAN, f32::NAN), 10_000)
            .fault
            .is_none());
    }
}
