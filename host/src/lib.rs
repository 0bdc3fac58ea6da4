//! bmshost: the control host of a battery energy-storage system.
//!
//! A native process owns all hardware I/O and a protection layer that
//! behaves like a hardware protection board; site-specific strategies (SOC,
//! SOH, balancing, EMS hints) are WebAssembly components. See
//! `ARCHITECTURE.md` at the repository root for the map and invariants.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bank;
pub mod clock;
pub mod config;
pub mod control;
pub mod io;
pub use bms_journal as journal;
pub mod plugins;
pub mod protection;
pub mod sim;
pub mod site;
pub mod snapshot;
pub mod telemetry;
