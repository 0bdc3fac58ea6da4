//! Debounced tier monitors. A tier is *raised* when its quantity stays
//! beyond the limit for the tier's delay, and *cleared* only once the value
//! is back inside by the tier's hysteresis, on complete data. An unknown
//! value (stale source) holds the debounce and never clears a raised tier:
//! not knowing is not the same as being fine.

use super::limits::{Direction, Tier, TierLevel, Tiers};

/// A change of a tier's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raised,
    Cleared,
}

#[derive(Debug, Clone)]
pub struct TierMonitor {
    pub tier: Tier,
    dir: Direction,
    beyond_since_ms: Option<u64>,
    /// The tier applied (see [`Gate`]) during the current exceedance.
    applied_during_exceedance: bool,
    pub active: bool,
}

impl TierMonitor {
    pub fn new(tier: Tier, dir: Direction) -> Self {
        Self {
            tier,
            dir,
            beyond_since_ms: None,
            applied_during_exceedance: false,
            active: false,
        }
    }

    fn beyond(&self, v: f32, threshold: f32) -> bool {
        match self.dir {
            Direction::Above => v > threshold,
            Direction::Below => v < threshold,
        }
    }

    /// The value the quantity must come back past to clear.
    pub fn release(&self) -> f32 {
        match self.dir {
            Direction::Above => self.tier.limit - self.tier.hysteresis,
            Direction::Below => self.tier.limit + self.tier.hysteresis,
        }
    }

    /// Whether `value` is back at or inside the release point.
    pub fn released_at(&self, value: f32) -> bool {
        value.is_finite() && !self.beyond(value, self.release())
    }

    /// Whether the value is beyond the limit right now (debounce running
    /// or tier raised), whatever the delay.
    pub fn is_beyond(&self) -> bool {
        self.beyond_since_ms.is_some()
    }

    /// Feed one value at `now_ms` with no gating.
    pub fn update(&mut self, value: Option<f32>, now_ms: u64) -> Option<Transition> {
        self.update_gated(value, now_ms, Gate::OPEN)
    }

    /// Feed one value at `now_ms`.
    ///
    /// The debounce runs on the value alone. `gate.raise_applies` says
    /// whether the tier applies now (e.g. a charge-temperature MSL applies
    /// only while charging): the tier is raised once the delay has passed
    /// *and* it applied at some point of the exceedance, so alternating the
    /// current direction cannot dodge it. `gate.may_clear` is false while
    /// part of the data is stale: not knowing is not being fine.
    pub fn update_gated(
        &mut self,
        value: Option<f32>,
        now_ms: u64,
        gate: Gate,
    ) -> Option<Transition> {
        let Some(v) = value.filter(|v| !v.is_nan()) else {
            // Unknown: hold the debounce where it is; never clear.
            return None;
        };
        if self.beyond(v, self.tier.limit) {
            let since = *self.beyond_since_ms.get_or_insert(now_ms);
            self.applied_during_exceedance |= gate.raise_applies;
            if !self.active
                && self.applied_during_exceedance
                && now_ms.saturating_sub(since) >= self.tier.delay_ms
            {
                self.active = true;
                return Some(Transition::Raised);
            }
        } else {
            self.beyond_since_ms = None;
            self.applied_during_exceedance = false;
            if self.active && gate.may_clear && self.released_at(v) {
                self.active = false;
                return Some(Transition::Cleared);
            }
        }
        None
    }
}

/// Conditions of one monitor update.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub raise_applies: bool,
    pub may_clear: bool,
}

impl Gate {
    pub const OPEN: Gate = Gate {
        raise_applies: true,
        may_clear: true,
    };
}

/// The (up to) three tier monitors of one quantity.
#[derive(Debug, Clone)]
pub struct QuantityMonitor {
    pub tiers: [Option<TierMonitor>; 3],
}

impl QuantityMonitor {
    pub fn new(t: &Tiers, dir: Direction) -> Self {
        Self {
            tiers: TierLevel::ALL.map(|l| t.get(l).map(|x| TierMonitor::new(*x, dir))),
        }
    }

    pub fn get(&self, level: TierLevel) -> Option<&TierMonitor> {
        self.tiers[level as usize].as_ref()
    }

    pub fn is_active(&self, level: TierLevel) -> bool {
        self.get(level).is_some_and(|m| m.active)
    }
}
