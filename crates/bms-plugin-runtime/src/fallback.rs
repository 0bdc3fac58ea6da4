//! Native fallbacks: what serves a role while its plugin is absent,
//! failed or disabled. Deliberately simple and conservative.
//!
//! - SOC: ampere-hour counting from the last good estimate.
//! - SOH: hold the last value.
//! - Balancer: no bleeding.
//! - EMS: no hint (0 W).

use super::bindings::types as w;

/// Coulomb counting from the last estimate, with rated capacity.
#[derive(Debug, Clone)]
pub struct SocFallback {
    capacity_ah: f32,
    last: Option<w::SocOutput>,
    last_ms: Option<u64>,
}

impl SocFallback {
    pub fn new(capacity_ah: f32) -> Self {
        Self {
            capacity_ah,
            last: None,
            last_ms: None,
        }
    }

    /// Remember a good plugin estimate.
    pub fn observe(&mut self, out: &w::SocOutput, timestamp_ms: u64) {
        self.last = Some(out.clone());
        self.last_ms = Some(timestamp_ms);
    }

    /// Estimate by counting from the last good value; `None` if there never
    /// was one (the host then reports SOC as unknown).
    pub fn step(&mut self, snap: &w::PackSnapshot) -> Option<w::SocOutput> {
        let last = self.last.as_mut()?;
        let dt_s = snap
            .timestamp_ms
            .saturating_sub(self.last_ms.unwrap_or(snap.timestamp_ms)) as f32
            / 1000.0;
        self.last_ms = Some(snap.timestamp_ms);
        if snap.current_a.is_finite() {
            let d_pct = snap.current_a * dt_s / 3600.0 / self.capacity_ah * 100.0;
            for s in last.cell_soc_pct.iter_mut() {
                *s = (*s + d_pct).clamp(0.0, 100.0);
            }
            last.pack_soc_pct = (last.pack_soc_pct + d_pct).clamp(0.0, 100.0);
        }
        Some(last.clone())
    }
}

/// Hold the last SOH estimate.
#[derive(Debug, Clone, Default)]
pub struct SohFallback {
    last: Option<w::SohOutput>,
}

impl SohFallback {
    pub fn observe(&mut self, out: &w::SohOutput) {
        self.last = Some(out.clone());
    }
    pub fn step(&self) -> Option<w::SohOutput> {
        self.last.clone()
    }
}
