//! CAN: frames, the DBC codec, buses, the rack signal mapping, acquisition
//! and outbound commands.
//!
//! Layering (driver → engine, as in foxBMS): `frame` and `dbc` are pure
//! codecs; `bus` moves frames (async [`bus::CanBus`] with the virtual and
//! the [`socketcan`] backends, pumped for the control thread by
//! [`port::BusPort`]); `mapping` binds DBC signals to rack
//! quantities; `acquire` builds the snapshot and encodes bleed commands.

pub mod acquire;
pub mod bus;
pub mod dbc;
pub mod frame;
pub mod mapping;
pub mod port;
pub mod socketcan;

pub use frame::{CanFrame, CanId};
