//! Strategy plugins in the host: the `bms-plugin-runtime` crate (runtime,
//! slots, manager, persistence) plus the reloader, which watches the site
//! file and plugin files and is the one part that reads the whole site
//! config.
//!
//! Owns: [`reload`]. May not touch: protection, contactors, limits, I/O.

pub use bms_plugin_runtime::*;

pub mod reload;
