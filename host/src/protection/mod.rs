//! The protection layer: the host's hardware-protection-board equivalent.
//!
//! Owns: limit checks with debounce, fault latching, the contactor command,
//! current derating (state of function), and the clamping of every plugin
//! output before it reaches hardware or the PCS.
//!
//! May not touch: plugins (it never calls or waits on one), I/O (it reads a
//! finished snapshot and returns commands). Plugins cannot reach anything
//! in here: the WIT contract gives them no handle to contactors, limits or
//! faults, and every value they return passes through [`Protection::clamp_bleed`]
//! or [`Protection::clamp_power_w`].
//!
//! Invariants (see ARCHITECTURE.md):
//! 1. Contactors are open unless the latest snapshot is complete, every
//!    source is fresh and no fault is latched.
//! 2. A limit exceeded for its delay latches a fault and opens the
//!    contactors in the same evaluation.
//! 3. Allowed currents are zero while the contactors are open and never
//!    exceed the configured ratings.
//! 4. Non-finite plugin outputs are replaced by the safe value and counted.

mod clamp;
mod monitor;

use serde::Serialize;

use crate::config::ProtectionConfig;
use crate::snapshot::{CommStatus, PackSnapshot};
pub use clamp::ClampStats;
use monitor::{Direction, Monitor};

/// A protected quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    CellOverVoltage,
    CellUnderVoltage,
    CellOverTemperature,
    /// A module's BMU or the current sensor stopped delivering fresh data.
    CommunicationLoss,
}

/// Where in the rack a value was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Location {
    pub module: usize,
    /// Cell within the module.
    pub cell: usize,
}

/// What protection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    OpenContactors,
    CloseContactors,
}

/// One protection event for the record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtectionEvent {
    pub time_ms: u64,
    pub quantity: Option<Quantity>,
    pub location: Option<Location>,
    pub value: f32,
    pub limit: f32,
    pub action: Action,
    pub message: String,
}

/// The contactor command protection issues every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactorCommand {
    Open,
    Closed,
}

/// Current limits allowed now, in A (both >= 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllowedCurrent {
    pub charge_a: f32,
    pub discharge_a: f32,
}

/// Result of one evaluation.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub contactors: ContactorCommand,
    pub allowed: AllowedCurrent,
    /// Why the contactors are open, if they are.
    pub open_reason: Option<String>,
}

/// The protection state machine of one rack.
pub struct Protection {
    cfg: ProtectionConfig,
    over_voltage: Monitor,
    under_voltage: Monitor,
    over_temp: Monitor,
    latched: Option<ProtectionEvent>,
    contactors: ContactorCommand,
    events: Vec<ProtectionEvent>,
    pub clamp_stats: ClampStats,
}

impl Protection {
    /// Contactors start open (invariant 1).
    pub fn new(cfg: ProtectionConfig) -> Self {
        Self {
            over_voltage: Monitor::new(cfg.cell_over_voltage_v, Direction::Above),
            under_voltage: Monitor::new(cfg.cell_under_voltage_v, Direction::Below),
            over_temp: Monitor::new(cfg.cell_over_temp_c, Direction::Above),
            cfg,
            latched: None,
            contactors: ContactorCommand::Open,
            events: Vec::new(),
            clamp_stats: ClampStats::default(),
        }
    }

    /// Check `snap` and decide the contactor command and allowed currents.
    pub fn evaluate(&mut self, snap: &PackSnapshot) -> Verdict {
        let now = snap.timestamp_ms;
        let per = snap.cells_per_module.max(1) as usize;
        let loc = |i: usize| Location {
            module: i / per,
            cell: i % per,
        };
        // Stale modules are excluded from the extremes; comm loss itself
        // is the fault for them.
        let fresh = |i: &usize| snap.module_comm.get(i / per) == Some(&CommStatus::Ok);
        let vmax = extreme(&snap.cell_voltage_v, fresh, f32::max);
        let vmin = extreme(&snap.cell_voltage_v, fresh, f32::min);
        let tmax = extreme(&snap.cell_temp_c, fresh, f32::max);

        let mut trips = Vec::new();
        for (mon, q, ext) in [
            (&mut self.over_voltage, Quantity::CellOverVoltage, vmax),
            (&mut self.under_voltage, Quantity::CellUnderVoltage, vmin),
            (&mut self.over_temp, Quantity::CellOverTemperature, tmax),
        ] {
            if let Some((i, v)) = ext {
                if mon.update(v, now) {
                    trips.push((q, Some(loc(i)), v, mon.limit()));
                }
            }
        }
        if snap.complete {
            if let Some(m) = snap
                .module_comm
                .iter()
                .position(|c| *c == CommStatus::Stale)
            {
                trips.push((
                    Quantity::CommunicationLoss,
                    Some(Location { module: m, cell: 0 }),
                    f32::NAN,
                    f32::NAN,
                ));
            } else if snap.current_comm == CommStatus::Stale {
                trips.push((Quantity::CommunicationLoss, None, f32::NAN, f32::NAN));
            }
        }
        for (q, location, value, limit) in trips {
            if self.latched.is_none() {
                let message = match (q, location) {
                    (Quantity::CommunicationLoss, Some(l)) => {
                        format!("module {} stopped communicating", l.module)
                    }
                    (Quantity::CommunicationLoss, None) => {
                        "current sensor stopped communicating".to_string()
                    }
                    (q, Some(l)) => format!(
                        "{q:?} at module {} cell {}: {value:.3} beyond {limit:.3} for {} ms",
                        l.module,
                        l.cell,
                        self.delay_of(q)
                    ),
                    (q, None) => format!("{q:?}"),
                };
                let ev = ProtectionEvent {
                    time_ms: now,
                    quantity: Some(q),
                    location,
                    value,
                    limit,
                    action: Action::OpenContactors,
                    message,
                };
                tracing::error!(quantity = ?q, ?location, value, limit, "protection trip: fault latched");
                self.latched = Some(ev);
            }
        }

        let ready = snap.complete
            && snap.current_comm == CommStatus::Ok
            && snap.module_comm.iter().all(|c| *c == CommStatus::Ok);
        let open_reason = if let Some(f) = &self.latched {
            Some(format!("fault latched: {}", f.message))
        } else if !ready {
            Some("waiting for fresh data from every BMU and the current sensor".to_string())
        } else {
            None
        };
        let command = if open_reason.is_none() {
            ContactorCommand::Closed
        } else {
            ContactorCommand::Open
        };
        if command != self.contactors {
            let (action, message) = match command {
                ContactorCommand::Open => (
                    Action::OpenContactors,
                    open_reason.clone().unwrap_or_default(),
                ),
                ContactorCommand::Closed => (
                    Action::CloseContactors,
                    "all sources fresh, no fault".to_string(),
                ),
            };
            let latched = self.latched.clone();
            self.events.push(ProtectionEvent {
                time_ms: now,
                quantity: latched.as_ref().and_then(|l| l.quantity),
                location: latched.as_ref().and_then(|l| l.location),
                value: latched.as_ref().map_or(f32::NAN, |l| l.value),
                limit: latched.as_ref().map_or(f32::NAN, |l| l.limit),
                action,
                message,
            });
            tracing::info!(?command, "contactor command changed");
            self.contactors = command;
        }
        let allowed = if command == ContactorCommand::Closed {
            self.derate(vmax.map(|x| x.1), vmin.map(|x| x.1))
        } else {
            AllowedCurrent {
                charge_a: 0.0,
                discharge_a: 0.0,
            }
        };
        Verdict {
            contactors: command,
            allowed,
            open_reason,
        }
    }

    fn delay_of(&self, q: Quantity) -> u64 {
        match q {
            Quantity::CellOverVoltage => self.cfg.cell_over_voltage_v.delay_ms,
            Quantity::CellUnderVoltage => self.cfg.cell_under_voltage_v.delay_ms,
            Quantity::CellOverTemperature => self.cfg.cell_over_temp_c.delay_ms,
            Quantity::CommunicationLoss => 0,
        }
    }

    /// Linear derating towards the voltage limits.
    fn derate(&self, vmax: Option<f32>, vmin: Option<f32>) -> AllowedCurrent {
        let c = &self.cfg;
        let ramp = |x: f32, from: f32, to: f32| ((to - x) / (to - from)).clamp(0.0, 1.0);
        let charge = vmax.map_or(0.0, |v| {
            ramp(v, c.charge_derate_start_v, c.cell_over_voltage_v.limit)
        });
        let discharge = vmin.map_or(0.0, |v| {
            ramp(v, c.discharge_derate_start_v, c.cell_under_voltage_v.limit)
        });
        AllowedCurrent {
            charge_a: c.max_charge_current_a * charge,
            discharge_a: c.max_discharge_current_a * discharge,
        }
    }

    /// The fault currently latched, if any.
    pub fn latched(&self) -> Option<&ProtectionEvent> {
        self.latched.as_ref()
    }

    /// Every contactor transition so far (the trips are in their messages).
    pub fn events(&self) -> &[ProtectionEvent] {
        &self.events
    }

    pub fn config(&self) -> &ProtectionConfig {
        &self.cfg
    }
}

/// Index and value of the extreme finite value among cells passing `keep`.
fn extreme(
    values: &[f32],
    keep: impl Fn(&usize) -> bool,
    pick: fn(f32, f32) -> f32,
) -> Option<(usize, f32)> {
    values
        .iter()
        .enumerate()
        .filter(|(i, v)| v.is_finite() && keep(i))
        .fold(None, |acc: Option<(usize, f32)>, (i, &v)| match acc {
            Some((_, best)) if pick(best, v) == best => acc,
            _ => Some((i, v)),
        })
}

#[cfg(test)]
mod tests;
