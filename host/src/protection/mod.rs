//! Protection in the host: the [`bms_protection`] crate (re-exported here,
//! so `crate::protection::*` names its types) run on its own thread with
//! the rack's acquisition ([`task`]), recording durably ([`events`]).
//!
//! May not touch: the protection logic itself, which lives in the crate
//! and cannot see a plugin, a socket or a thread.

pub use bms_protection::*;

pub mod events;
pub mod task;
