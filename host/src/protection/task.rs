//! The protection task: one [`Protection`] tick per period on the latest
//! snapshot, driving the relay outputs and toggling the watchdog heartbeat.
//!
//! It never waits on a plugin or on I/O: it reads the snapshot the
//! acquisition stage last published (a lock held only for a pointer copy)
//! and publishes its [`Status`] the same way. On its own thread
//! ([`spawn`]) it keeps its period whatever the control cycle does; in
//! lock-step simulation the runner calls [`ProtectionTask::tick`] on the
//! virtual clock instead.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Hold, HoldSource, Protection, Status};
use crate::io::contactor::ContactorOutput;
use crate::snapshot::PackSnapshot;

/// What the acquisition / control side and protection exchange.
pub struct Shared {
    snapshot: Mutex<Arc<PackSnapshot>>,
    pack_soc_pct: Mutex<Option<f32>>,
    status: Mutex<Arc<Status>>,
    /// Hold requests from outside protection (Modbus, bank); protection
    /// applies them at its next tick.
    holds: Mutex<Vec<Hold>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of a
    // plain value; the value is still the last one written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(initial: PackSnapshot) -> Arc<Self> {
        Arc::new(Self {
            snapshot: Mutex::new(Arc::new(initial)),
            pack_soc_pct: Mutex::new(None),
            status: Mutex::new(Arc::new(Status::initial())),
            holds: Mutex::new(Vec::new()),
        })
    }
    pub fn publish_snapshot(&self, s: PackSnapshot) {
        *lock(&self.snapshot) = Arc::new(s);
    }
    pub fn snapshot(&self) -> Arc<PackSnapshot> {
        lock(&self.snapshot).clone()
    }
    pub fn publish_soc(&self, soc: Option<f32>) {
        *lock(&self.pack_soc_pct) = soc;
    }
    /// The latest validated pack SOC estimate, %.
    pub fn pack_soc(&self) -> Option<f32> {
        *lock(&self.pack_soc_pct)
    }
    pub fn status(&self) -> Arc<Status> {
        lock(&self.status).clone()
    }
    /// Request (`Some`) or withdraw (`None`) `source`'s hold.
    pub fn set_hold(&self, source: HoldSource, hold: Option<(super::HoldKind, String)>) {
        let mut holds = lock(&self.holds);
        holds.retain(|h| h.source != source);
        if let Some((kind, reason)) = hold {
            holds.push(Hold {
                source,
                kind,
                reason,
            });
            // Kept in protection's order, so an unchanged set compares equal.
            holds.sort_by_key(|h| h.source);
        }
    }
    pub fn holds(&self) -> Vec<Hold> {
        lock(&self.holds).clone()
    }
}

/// Fault injection for the watchdog tests: make the protection thread hang
/// or die. Reachable only from host code (tests, never plugins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InjectedFault {
    None = 0,
    Hang = 1,
    /// The thread vanishes without running any cleanup (outputs stay as
    /// they were): only the external watchdog can open the contactors.
    Kill = 2,
}

pub struct ProtectionTask {
    pub protection: Arc<Mutex<Protection>>,
    output: Box<dyn ContactorOutput>,
    shared: Arc<Shared>,
}

impl ProtectionTask {
    pub fn new(
        protection: Protection,
        mut output: Box<dyn ContactorOutput>,
        shared: Arc<Shared>,
    ) -> Self {
        output.set(super::contactor::RelayOutputs::OPEN);
        Self {
            protection: Arc::new(Mutex::new(protection)),
            output,
            shared,
        }
    }

    /// One period: evaluate, drive the relays, toggle the heartbeat.
    pub fn tick(&mut self, now_ms: u64) {
        let snap = self.shared.snapshot();
        let soc = *lock(&self.shared.pack_soc_pct);
        let holds = self.shared.holds();
        let status = {
            let mut p = lock(&self.protection);
            p.set_holds(&holds, now_ms);
            Arc::new(p.tick(&snap, soc, now_ms).clone())
        };
        self.output.set(status.outputs);
        self.output.toggle_heartbeat(now_ms);
        *lock(&self.shared.status) = status;
    }
}

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
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }
}

/// A running protection thread.
pub struct ProtectionThread {
    stop: Arc<AtomicBool>,
    inject: Arc<AtomicU8>,
    handle: Option<JoinHandle<()>>,
    pub protection: Arc<Mutex<Protection>>,
}

impl ProtectionThread {
    /// Make the thread hang or panic (watchdog tests).
    pub fn inject(&self, fault: InjectedFault) {
        self.inject.store(fault as u8, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}

impl Drop for ProtectionThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.inject
            .store(InjectedFault::None as u8, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Run `task` on its own thread every `period_ms` of `clock` time.
pub fn spawn(
    mut task: ProtectionTask,
    clock: Arc<ScaledClock>,
    period_ms: u64,
) -> std::io::Result<ProtectionThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let inject = Arc::new(AtomicU8::new(0));
    let protection = task.protection.clone();
    let (stop2, inject2) = (stop.clone(), inject.clone());
    let handle = std::thread::Builder::new()
        .name("protection".into())
        .spawn(move || {
            let mut next = clock.now_ms();
            while !stop2.load(Ordering::SeqCst) {
                match inject2.load(Ordering::SeqCst) {
                    1 => {
                        // Hung: no ticks, no heartbeat, until released.
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    2 => {
                        tracing::error!("injected fault: protection thread killed without cleanup");
                        std::mem::forget(task);
                        return;
                    }
                    _ => {}
                }
                task.tick(clock.now_ms());
                next += period_ms;
                std::thread::sleep(clock.wall_until(next));
            }
            // Leaving: drop the task, which de-energises the outputs.
        })?;
    Ok(ProtectionThread {
        stop,
        inject,
        handle: Some(handle),
        protection,
    })
}
