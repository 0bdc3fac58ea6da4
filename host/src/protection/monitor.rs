//! Debounced limit monitor: a value beyond `limit` for `delay_ms` trips;
//! a tripped monitor releases only once the value is back beyond
//! `release` (hysteresis).

use crate::config::TripLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Trips above the limit (over-voltage, over-temperature).
    Above,
    /// Trips below the limit (under-voltage).
    Below,
}

#[derive(Debug, Clone)]
pub struct Monitor {
    limit: TripLimit,
    dir: Direction,
    /// When the value first went beyond the limit, while it stays there.
    beyond_since_ms: Option<u64>,
    tripped: bool,
}

impl Monitor {
    pub fn new(limit: TripLimit, dir: Direction) -> Self {
        Self {
            limit,
            dir,
            beyond_since_ms: None,
            tripped: false,
        }
    }

    pub fn limit(&self) -> f32 {
        self.limit.limit
    }

    fn beyond(&self, v: f32, threshold: f32) -> bool {
        match self.dir {
            Direction::Above => v > threshold,
            Direction::Below => v < threshold,
        }
    }

    /// Feed the extreme value at `now_ms`; returns whether the monitor is
    /// tripped.
    pub fn update(&mut self, value: f32, now_ms: u64) -> bool {
        if self.beyond(value, self.limit.limit) {
            let since = *self.beyond_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= self.limit.delay_ms {
                self.tripped = true;
            }
        } else {
            self.beyond_since_ms = None;
            if self.tripped && !self.beyond(value, self.limit.release) {
                self.tripped = false;
            }
        }
        self.tripped
    }
}
