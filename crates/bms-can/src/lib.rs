//! bms-can: classic CAN frames and the DBC codec of bmshost.
//!
//! Owns: [`frame`] (identifiers and frames, range checked) and [`dbc`]
//! (a DBC file parsed into an owned model; encode and decode of Intel and
//! Motorola, signed and multiplexed signals, value tables, long names),
//! [`e2e`] (alive counters and CRCs of protected messages) and [`port`]
//! (the never-blocking bus face, [`port::CanPort`]).
//!
//! May not touch: any bus, socket, thread or runtime, and any knowledge of
//! racks or cells. The host maps signals to rack quantities
//! (`bmshost::io::can::mapping`); the simulated BMUs encode their own
//! frames with this codec.

pub mod dbc;
pub mod e2e;
pub mod frame;
pub mod port;

pub use dbc::{Dbc, DbcError};
pub use frame::{CanFrame, CanId, FrameError};
