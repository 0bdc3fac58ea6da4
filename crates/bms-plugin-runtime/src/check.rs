//! Range checks of plugin outputs, shared by the control cycle and the
//! swap canary. An output that fails is a [`PluginError::BadOutput`] naming
//! the field and value; protection's clamp still applies afterwards.

use super::bindings::types as w;
use super::{PluginError, Role};

/// A SOC output must cover every cell with finite values in 0..=100.
pub fn soc(
    role: Role,
    plugin: &str,
    o: w::SocOutput,
    n: usize,
) -> Result<w::SocOutput, PluginError> {
    let bad = |message: String| PluginError::BadOutput {
        role,
        plugin: plugin.to_string(),
        message,
    };
    if o.cell_soc_pct.len() != n {
        return Err(bad(format!(
            "cell-soc-pct has {} entries for {n} cells",
            o.cell_soc_pct.len()
        )));
    }
    let in_range = |v: &f32| v.is_finite() && (0.0..=100.0).contains(v);
    if let Some((i, v)) = o
        .cell_soc_pct
        .iter()
        .enumerate()
        .find(|(_, v)| !in_range(v))
    {
        return Err(bad(format!("cell-soc-pct[{i}] = {v} is not in 0..=100")));
    }
    if !in_range(&o.pack_soc_pct) {
        return Err(bad(format!(
            "pack-soc-pct = {} is not in 0..=100",
            o.pack_soc_pct
        )));
    }
    Ok(o)
}

/// A SOH output must cover every cell with finite, non-negative values.
pub fn soh(
    role: Role,
    plugin: &str,
    o: w::SohOutput,
    n: usize,
) -> Result<w::SohOutput, PluginError> {
    let bad = |message: String| PluginError::BadOutput {
        role,
        plugin: plugin.to_string(),
        message,
    };
    if o.cell_capacity_ah.len() != n || o.cell_resistance_mohm.len() != n {
        return Err(bad(format!(
            "per-cell lists have {} / {} entries for {n} cells",
            o.cell_capacity_ah.len(),
            o.cell_resistance_mohm.len()
        )));
    }
    let ok = |v: &f32| v.is_finite() && *v >= 0.0;
    if !ok(&o.pack_soh_pct) || o.pack_soh_pct > 200.0 {
        return Err(bad(format!(
            "pack-soh-pct = {} is not in 0..=200",
            o.pack_soh_pct
        )));
    }
    if let Some(i) = o.cell_capacity_ah.iter().position(|v| !ok(v)) {
        return Err(bad(format!(
            "cell-capacity-ah[{i}] = {} is invalid",
            o.cell_capacity_ah[i]
        )));
    }
    if let Some(i) = o.cell_resistance_mohm.iter().position(|v| !ok(v)) {
        return Err(bad(format!(
            "cell-resistance-mohm[{i}] = {} is invalid",
            o.cell_resistance_mohm[i]
        )));
    }
    Ok(o)
}

/// One bleed flag per cell.
pub fn bleed(plugin: &str, bleed: Vec<bool>, n: usize) -> Result<Vec<bool>, PluginError> {
    if bleed.len() != n {
        return Err(PluginError::BadOutput {
            role: Role::Balancer,
            plugin: plugin.to_string(),
            message: format!("bleed has {} entries for {n} cells", bleed.len()),
        });
    }
    Ok(bleed)
}

/// A finite power hint.
pub fn ems(plugin: &str, o: w::EmsOutput) -> Result<w::EmsOutput, PluginError> {
    if !o.power_w.is_finite() {
        return Err(PluginError::BadOutput {
            role: Role::Ems,
            plugin: plugin.to_string(),
            message: format!("power-w = {} is not finite", o.power_w),
        });
    }
    Ok(o)
}
