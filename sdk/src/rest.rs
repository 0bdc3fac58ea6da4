//! Rest detection: a cell is "rested" when the pack current has stayed
//! below a threshold for long enough that the terminal voltage is close to
//! the open-circuit voltage.

/// Tracks how long the pack current has been near zero.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RestDetector {
    threshold_a: f32,
    min_rest_ms: u64,
    /// Start of the current rest period, if resting.
    rest_since_ms: Option<u64>,
}

impl RestDetector {
    /// Rest means `|current_a| < threshold_a` for at least `min_rest_s`.
    pub fn new(threshold_a: f32, min_rest_s: f32) -> Self {
        Self {
            threshold_a: threshold_a.abs(),
            min_rest_ms: (min_rest_s.max(0.0) * 1000.0) as u64,
            rest_since_ms: None,
        }
    }

    /// Feed one sample; returns whether the pack is rested now.
    pub fn update(&mut self, timestamp_ms: u64, current_a: f32) -> bool {
        if current_a.abs() < self.threshold_a {
            self.rest_since_ms.get_or_insert(timestamp_ms);
        } else {
            self.rest_since_ms = None;
        }
        self.is_rested(timestamp_ms)
    }

    /// Whether the pack has rested for the minimum time at `timestamp_ms`.
    pub fn is_rested(&self, timestamp_ms: u64) -> bool {
        self.rest_duration_ms(timestamp_ms) >= self.min_rest_ms && self.rest_since_ms.is_some()
    }

    /// How long the current rest period has lasted, 0 when not resting.
    pub fn rest_duration_ms(&self, timestamp_ms: u64) -> u64 {
        self.rest_since_ms
            .map_or(0, |since| timestamp_ms.saturating_sub(since))
    }

    /// Whether the current is below the threshold right now.
    pub fn is_resting(&self) -> bool {
        self.rest_since_ms.is_some()
    }
}

/// Operating state of the pack derived from the current sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackState {
    Charge,
    Discharge,
    Rest,
}

impl PackState {
    /// Classify `current_a` with a dead band of `rest_threshold_a`.
    ///
    /// A NaN current (failed sensor) classifies as `Rest`; plugins that
    /// act on rest should check `current_a.is_finite()` first.
    pub fn classify(current_a: f32, rest_threshold_a: f32) -> Self {
        if current_a > rest_threshold_a.abs() {
            Self::Charge
        } else if current_a < -rest_threshold_a.abs() {
            Self::Discharge
        } else {
            Self::Rest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_needs_the_full_duration_below_threshold() {
        let mut d = RestDetector::new(2.0, 60.0);
        assert!(!d.update(0, 0.5));
        assert!(!d.update(59_999, 0.5));
        assert!(d.update(60_000, -0.5));
        // A current pulse restarts the clock.
        assert!(!d.update(61_000, 10.0));
        assert!(!d.update(62_000, 0.0));
        assert!(d.update(122_000, 0.0));
        assert_eq!(d.rest_duration_ms(122_000), 60_000);
    }

    #[test]
    fn classify_uses_dead_band() {
        assert_eq!(PackState::classify(5.0, 1.0), PackState::Charge);
        assert_eq!(PackState::classify(-5.0, 1.0), PackState::Discharge);
        assert_eq!(PackState::classify(0.5, 1.0), PackState::Rest);
    }
}
