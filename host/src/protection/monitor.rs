//! Debounced tier monitors. A tier is *raised* when its quantity stays
//! beyond the limit for the tier's delay, and *cleared* only once the value
//! is back inside by the tier's hysteresis. An unknown value (stale source,
//! quantity not applicable) restarts the debounce but never clears a raised
//! tier: not knowing is not the same as being fine.

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
    pub active: bool,
}

impl TierMonitor {
    pub fn new(tier: Tier, dir: Direction) -> Self {
        Self {
            tier,
            dir,
            beyond_since_ms: None,
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

    /// Feed one value at `now_ms`.
    pub fn update(&mut self, value: Option<f32>, now_ms: u64) -> Option<Transition> {
        let Some(v) = value.filter(|v| !v.is_nan()) else {
            self.beyond_since_ms = None;
            return None;
        };
        if self.beyond(v, self.tier.limit) {
            let since = *self.beyond_since_ms.get_or_insert(now_ms);
            if !self.active && now_ms.saturating_sub(since) >= self.tier.delay_ms {
                self.active = true;
                return Some(Transition::Raised);
            }
        } else {
            self.beyond_since_ms = None;
            if self.active && self.released_at(v) {
                self.active = false;
                return Some(Transition::Cleared);
            }
        }
        None
    }
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
