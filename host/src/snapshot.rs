//! The process image of one period: [`bms_protection::snapshot`],
//! re-exported where the host has always named it.

pub use bms_protection::snapshot::*;
