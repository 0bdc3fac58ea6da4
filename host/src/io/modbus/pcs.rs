//! The PCS link: a Modbus TCP client that writes protection's allowed
//! charge and discharge current to the power conversion system, through the
//! register map in the site's `[pcs]` section.
//!
//! Owns: the client connection on a thread of its own (tokio current-thread
//! runtime), the write period, the per-request timeout, reconnection with
//! exponential backoff, and the link alarm (PCS unreachable).
//!
//! May not touch: protection. The link only reads the published
//! [`Status`](crate::protection::Status); protection never waits for it
//! and does not depend on it: if the PCS ignores or never receives a limit,
//! the protection tiers still stop the current and open the contactors.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_modbus::prelude::*;

use super::client::{connect, Backoff};

use crate::protection::AllowedCurrent;

/// One register of the PCS map: `raw = round(value / scale)`, as `u16`
/// (or two's-complement `i16` when `signed`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcsRegister {
    pub address: u16,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub signed: bool,
}

fn one() -> f32 {
    1.0
}

/// `[pcs]`: where and how to write the limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcsConfig {
    pub address: SocketAddr,
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_backoff_ms")]
    pub reconnect_backoff_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
    pub max_charge_current: PcsRegister,
    pub max_discharge_current: PcsRegister,
    /// Incremented on every write, so the PCS can supervise the BMS.
    #[serde(default)]
    pub heartbeat: Option<PcsRegister>,
}

fn default_unit() -> u8 {
    1
}
fn default_period_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    10_000
}

impl PcsConfig {
    /// Field-naming validation (called by the site config).
    pub fn validate(&self) -> Result<(), (String, String)> {
        super::client::validate_timing(
            &[
                ("period_ms", self.period_ms),
                ("timeout_ms", self.timeout_ms),
            ],
            self.reconnect_backoff_ms,
            self.reconnect_backoff_max_ms,
        )?;
        for (f, r) in [
            ("max_charge_current", Some(self.max_charge_current)),
            ("max_discharge_current", Some(self.max_discharge_current)),
            ("heartbeat", self.heartbeat),
        ] {
            if let Some(r) = r {
                if !(r.scale.is_finite() && r.scale > 0.0) {
                    return Err((format!("{f}.scale"), "must be a number > 0".into()));
                }
            }
        }
        Ok(())
    }
}

/// What the link reports (`bmsctl`, summary, tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PcsLinkStatus {
    pub connected: bool,
    /// The PCS cannot be reached (or stopped answering): an alarm.
    pub alarm: Option<String>,
    pub writes: u64,
    pub failures: u64,
    pub reconnects: u64,
    /// The last limits written, in A.
    pub last_charge_a: Option<f32>,
    pub last_discharge_a: Option<f32>,
    /// Protection stopped ticking: 0 A is written and the heartbeat is
    /// frozen until it is back.
    pub protection_dead: bool,
}

/// Where the link reads the limits it writes: protection's latest
/// status, read at write time, so a derating reaches the PCS within one
/// link period.
pub trait LimitSource: Send + Sync {
    fn allowed(&self) -> AllowedCurrent;
    /// Whether the protection behind these limits is ticking. While it is
    /// not, the link writes 0 A and stops its heartbeat, so the PCS's own
    /// supervision trips too.
    fn protection_alive(&self) -> bool;
}

/// The running link; stops on drop.
pub struct PcsLink {
    status: Arc<Mutex<PcsLinkStatus>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PcsLink {
    /// Start writing the limits of `limits` (one rack's [`Shared`], or a
    /// bank) to the PCS.
    pub fn start(cfg: PcsConfig, limits: Arc<dyn LimitSource>) -> std::io::Result<Self> {
        let status = Arc::new(Mutex::new(PcsLinkStatus::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (status.clone(), stop.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name("pcs-link".into())
            .spawn(move || rt.block_on(run(cfg, limits, st, sp)))?;
        Ok(Self {
            status,
            stop,
            handle: Some(handle),
        })
    }

    pub fn status(&self) -> PcsLinkStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for PcsLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl PcsRegister {
    /// The raw register value for `value` (saturating).
    pub fn encode(&self, value: f32) -> u16 {
        let raw = (f64::from(value) / f64::from(self.scale)).round();
        if self.signed {
            raw.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16 as u16
        } else {
            raw.clamp(0.0, f64::from(u16::MAX)) as u16
        }
    }
}

async fn run(
    cfg: PcsConfig,
    limits: Arc<dyn LimitSource>,
    status: Arc<Mutex<PcsLinkStatus>>,
    stop: Arc<AtomicBool>,
) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let period = Duration::from_millis(cfg.period_ms);
    let mut backoff = Backoff::new(cfg.reconnect_backoff_ms, cfg.reconnect_backoff_max_ms);
    let mut heartbeat: u16 = 0;
    let set =
        |f: &dyn Fn(&mut PcsLinkStatus)| f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
    while !stop.load(Ordering::Relaxed) {
        let mut ctx = match connect(cfg.address, cfg.unit_id, timeout).await {
            Ok(ctx) => {
                set(&|s| {
                    s.connected = true;
                    s.alarm = None;
                    s.reconnects += 1;
                });
                tracing::info!(pcs = %cfg.address, "PCS link connected");
                backoff.reset();
                ctx
            }
            Err(why) => {
                fail(&status, &cfg, why);
                sleep_unless_stopped(backoff.failed(), &stop).await;
                continue;
            }
        };
        // Write the limits every period until the PCS stops answering.
        while !stop.load(Ordering::Relaxed) {
            let alive = limits.protection_alive();
            let allowed = if alive {
                limits.allowed()
            } else {
                AllowedCurrent::ZERO
            };
            if alive {
                heartbeat = heartbeat.wrapping_add(1);
            }
            set(&|s| {
                if s.protection_dead == alive {
                    s.protection_dead = !alive;
                    if alive {
                        tracing::info!("protection ticking again: PCS heartbeat resumes");
                    } else {
                        tracing::error!("protection stopped ticking: writing 0 A to the PCS and freezing its heartbeat");
                    }
                }
            });
            let mut writes = vec![
                (
                    cfg.max_charge_current,
                    cfg.max_charge_current.encode(allowed.charge_a),
                ),
                (
                    cfg.max_discharge_current,
                    cfg.max_discharge_current.encode(allowed.discharge_a),
                ),
            ];
            if let Some(hb) = cfg.heartbeat {
                writes.push((hb, heartbeat));
            }
            let mut ok = true;
            for (reg, raw) in writes {
                match tokio::time::timeout(timeout, ctx.write_single_register(reg.address, raw))
                    .await
                {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(code))) => {
                        fail(
                            &status,
                            &cfg,
                            format!("register {} refused with exception {code:?}", reg.address),
                        );
                        ok = false;
                        break;
                    }
                    Ok(Err(e)) => {
                        fail(
                            &status,
                            &cfg,
                            format!("write to register {} failed: {e}", reg.address),
                        );
                        ok = false;
                        break;
                    }
                    Err(_) => {
                        fail(
                            &status,
                            &cfg,
                            format!("no answer within {} ms", cfg.timeout_ms),
                        );
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                set(&|s| s.connected = false);
                break;
            }
            set(&|s| {
                s.writes += 1;
                s.alarm = None;
                s.last_charge_a = Some(allowed.charge_a);
                s.last_discharge_a = Some(allowed.discharge_a);
            });
            sleep_unless_stopped(period, &stop).await;
        }
        let _ = ctx.disconnect().await;
        sleep_unless_stopped(backoff.failed(), &stop).await;
    }
}

fn fail(status: &Mutex<PcsLinkStatus>, cfg: &PcsConfig, why: String) {
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    s.failures += 1;
    s.connected = false;
    if s.alarm.is_none() {
        tracing::error!(pcs = %cfg.address, reason = %why, "ALARM: PCS unreachable; protection does not depend on it");
    }
    s.alarm = Some(format!("PCS {} unreachable: {why}", cfg.address));
}

async fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let s = left.min(step);
        tokio::time::sleep(s).await;
        left -= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_scaled_and_clamped() {
        let r = PcsRegister {
            address: 1,
            scale: 0.1,
            signed: false,
        };
        assert_eq!(r.encode(123.4), 1234);
        assert_eq!(r.encode(280.0), 2800);
        assert_eq!(r.encode(-5.0), 0);
        assert_eq!(r.encode(1e9), u16::MAX);
        let s = PcsRegister { signed: true, ..r };
        assert_eq!(s.encode(-5.0) as i16, -50);
    }
}
