//! The site clock: one time base in ms for every thread of a run.
//!
//! Owns: [`Clock`], the scaled wall clock of a paced run ([`ScaledClock`])
//! and the [`SiteClock`] every part of a site reads (the CAN receive
//! stamps, protection, the supervision of protection). A lock-step run sets
//! it by hand each period; a paced run switches it to scaled wall time once,
//! at start.
//!
//! May not touch: anything else. It is a time source, not a scheduler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A time source in ms shared by every thread of a run.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// Wall-clock time scaled by a speed factor (simulated ms per wall ms).
pub struct ScaledClock {
    start: Instant,
    speed: f64,
}

impl ScaledClock {
    pub fn new(speed: f64) -> Self {
        Self {
            start: Instant::now(),
            speed,
        }
    }

    /// Wall time until simulated `t_ms`.
    pub fn wall_until(&self, t_ms: u64) -> Duration {
        let due = self.start + Duration::from_secs_f64(t_ms as f64 / 1000.0 / self.speed);
        due.saturating_duration_since(Instant::now())
    }

    /// How late the wall clock is for simulated `t_ms` (zero if early).
    pub fn late_by(&self, t_ms: u64) -> Duration {
        let due = self.start + Duration::from_secs_f64(t_ms as f64 / 1000.0 / self.speed);
        Instant::now().saturating_duration_since(due)
    }

    /// Wall time that `ms` of clock time take.
    pub fn wall_for(&self, ms: u64) -> Duration {
        Duration::from_secs_f64(ms as f64 / 1000.0 / self.speed)
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }
}

/// The clock of one site: set by hand (lock-step) until a paced run
/// starts it on scaled wall time.
#[derive(Default)]
pub struct SiteClock {
    manual_ms: AtomicU64,
    scaled: OnceLock<ScaledClock>,
}

impl SiteClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lock-step: the time is `t_ms` until set again. Ignored once paced.
    pub fn set_ms(&self, t_ms: u64) {
        self.manual_ms.store(t_ms, Ordering::Release);
    }

    /// Switch to scaled wall time (first call wins; later calls return the
    /// running clock).
    pub fn start_scaled(&self, speed: f64) -> &ScaledClock {
        self.scaled.get_or_init(|| ScaledClock::new(speed))
    }

    /// The scaled clock of a paced run, if one started.
    pub fn scaled(&self) -> Option<&ScaledClock> {
        self.scaled.get()
    }
}

impl Clock for SiteClock {
    fn now_ms(&self) -> u64 {
        match self.scaled.get() {
            Some(c) => c.now_ms(),
            None => self.manual_ms.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_until_started_then_scaled() {
        let c = SiteClock::new();
        c.set_ms(1234);
        assert_eq!(c.now_ms(), 1234);
        c.start_scaled(1000.0);
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.now_ms() >= 5000, "scaled: {}", c.now_ms());
        c.set_ms(0);
        assert!(c.now_ms() >= 5000, "a paced clock ignores manual sets");
    }
}
