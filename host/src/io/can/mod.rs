//! CAN: frames, the DBC codec, buses, the rack signal mapping, acquisition
//! and outbound commands.
//!
//! Layering (driver → engine, as in foxBMS): `frame` and `dbc` are pure
//! codecs; `bus` moves frames (async [`bus::CanBus`] with the virtual and
//! the [`socketcan`] backends, pumped for the protection thread by
//! [`port::BusPort`]); `mapping` binds DBC signals to rack
//! quantities; `e2e` checks alive counters and CRCs of protected
//! messages; `acquire` builds the snapshot and encodes bleed commands;
//! `frontend` runs both on the protection thread over the host's port.

pub mod acquire;
pub mod bus;
pub mod e2e;
pub mod frontend;
pub mod mapping;
pub mod port;
pub mod socketcan;

/// The pure codecs live in the `bms-can` crate.
pub use bms_can::{dbc, frame};
pub use frame::{CanFrame, CanId};
