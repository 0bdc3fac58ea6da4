//! Field I/O. Owns every byte that crosses the host's boundary to
//! hardware: CAN to the battery-management units and the current sensor,
//! and the contactor outputs.
//!
//! May not touch: protection decisions or plugins. I/O turns frames into a
//! [`crate::snapshot::PackSnapshot`] and commands into frames, nothing more.

pub mod can;
pub mod coils;
pub mod contactor;
pub mod modbus;
