//! What the host's Modbus TCP client links share (the PCS link, the
//! contactor coil driver): connecting with a timeout, exponential
//! reconnect backoff, and the validation of those timings.
//!
//! May not touch: what a link writes or its status.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

/// Connect to `unit` at `address` within `timeout`; the error says why.
pub async fn connect(address: SocketAddr, unit: u8, timeout: Duration) -> Result<Context, String> {
    match tokio::time::timeout(timeout, tcp::connect_slave(address, Slave(unit))).await {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Err(_) => Err(format!("no connection within {} ms", timeout.as_millis())),
    }
}

/// Reconnect delay: doubles after each failure up to a ceiling, back to
/// the floor after a success.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(floor_ms: u64, ceiling_ms: u64) -> Self {
        let floor = Duration::from_millis(floor_ms);
        Self {
            floor,
            ceiling: Duration::from_millis(ceiling_ms).max(floor),
            next: floor,
        }
    }

    /// The delay to wait now; the one after it is twice as long.
    pub fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.floor;
    }
}

/// Checks the timings every link has; errors are (field, message).
pub fn validate_timing(
    timings: &[(&str, u64)],
    backoff_ms: u64,
    backoff_max_ms: u64,
) -> Result<(), (String, String)> {
    for &(f, v) in timings
        .iter()
        .chain(&[("reconnect_backoff_ms", backoff_ms)])
    {
        if v == 0 {
            return Err((f.into(), "must be > 0".into()));
        }
    }
    if backoff_max_ms < backoff_ms {
        return Err((
            "reconnect_backoff_max_ms".into(),
            "must be at least reconnect_backoff_ms".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(200, 1000);
        let ms: Vec<u128> = (0..5).map(|_| b.failed().as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.failed().as_millis(), 200);
    }

    #[test]
    fn timings_must_be_positive_and_the_ceiling_above_the_floor() {
        assert_eq!(
            validate_timing(&[("timeout_ms", 0)], 1, 1).unwrap_err().0,
            "timeout_ms"
        );
        assert_eq!(
            validate_timing(&[], 0, 1).unwrap_err().0,
            "reconnect_backoff_ms"
        );
        assert_eq!(
            validate_timing(&[], 500, 100).unwrap_err().0,
            "reconnect_backoff_max_ms"
        );
        assert!(validate_timing(&[("timeout_ms", 1)], 100, 100).is_ok());
    }
}
