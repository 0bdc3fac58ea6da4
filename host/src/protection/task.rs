//! The protection task: every period, acquire the rack's data, run one
//! [`Protection`] tick on it, drive the relay outputs and toggle the
//! watchdog heartbeat.
//!
//! Acquisition (draining the bus, decoding, freezing the snapshot) happens
//! here, on the protection thread, through a [`SnapshotSource`]: the data
//! protection judges never waits on a plugin. The control thread only
//! reads copies through [`Shared`], whose every field is swapped or read
//! without a lock (`arc-swap`, atomics), so nothing the control thread
//! does can hold up a tick. On its own thread ([`spawn`]) the task keeps
//! its period whatever the control cycle does; in lock-step simulation
//! the runner calls [`ProtectionTask::tick`] on the virtual clock instead.
//!
//! May not touch: plugins. It reads the plugin's SOC only as a number the
//! control thread left in [`Shared`], which protection treats as advisory.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Hold, HoldKind, HoldSource, Protection, Status};
use crate::clock::{Clock, SiteClock};
use crate::io::can::acquire::AcquireStats;
use crate::io::contactor::ContactorOutput;
use crate::snapshot::PackSnapshot;

/// Bleed switches the control thread commanded, numbered so the
/// protection thread sends each command once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BleedCommand {
    pub seq: u64,
    pub cells: Vec<bool>,
}

/// What acquires the rack's data on the protection thread.
pub trait SnapshotSource: Send {
    /// Drain and decode what arrived, send what is due (bleed commands,
    /// the CAN heartbeat), and freeze the snapshot at `now_ms`.
    fn acquire(
        &mut self,
        now_ms: u64,
        contactors_closed: bool,
        bleed: &BleedCommand,
    ) -> PackSnapshot;
    /// What acquisition rejected so far.
    fn stats(&self) -> AcquireStats;
}

/// What protection and the rest of the host exchange. Lock-free: a reader
/// gets the latest published value, a writer never waits on a reader.
pub struct Shared {
    snapshot: ArcSwap<PackSnapshot>,
    status: ArcSwap<Status>,
    /// The SOC plugin's latest validated pack SOC, f32 bits (NaN: none).
    reported_soc_bits: AtomicU32,
    /// Hold requests from outside protection (Modbus, bank); protection
    /// applies them at its next tick.
    holds: ArcSwap<Vec<Hold>>,
    bleed: ArcSwap<BleedCommand>,
    acquire_stats: ArcSwap<AcquireStats>,
    /// Clock time of protection's last tick, for [`Liveness`].
    last_tick_ms: AtomicU64,
    /// Ticks published so far.
    ticks: AtomicU64,
}

impl Shared {
    pub fn new(initial: PackSnapshot) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(initial),
            status: ArcSwap::from_pointee(Status::initial()),
            reported_soc_bits: AtomicU32::new(f32::NAN.to_bits()),
            holds: ArcSwap::from_pointee(Vec::new()),
            bleed: ArcSwap::from_pointee(BleedCommand::default()),
            acquire_stats: ArcSwap::from_pointee(AcquireStats::default()),
            last_tick_ms: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
        })
    }

    /// The snapshot protection judged last.
    pub fn snapshot(&self) -> Arc<PackSnapshot> {
        self.snapshot.load_full()
    }

    /// Record the SOC plugin's latest estimate (advisory for protection).
    pub fn publish_soc(&self, soc: Option<f32>) {
        let bits = soc.filter(|s| s.is_finite()).unwrap_or(f32::NAN).to_bits();
        self.reported_soc_bits.store(bits, Ordering::Release);
    }

    /// The SOC plugin's latest validated pack estimate, %.
    pub fn pack_soc(&self) -> Option<f32> {
        Some(f32::from_bits(
            self.reported_soc_bits.load(Ordering::Acquire),
        ))
        .filter(|s| !s.is_nan())
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.load_full()
    }

    /// Command the bleed switches (the protection thread sends them).
    pub fn command_bleed(&self, cells: &[bool]) {
        let seq = self.bleed.load().seq + 1;
        self.bleed.store(Arc::new(BleedCommand {
            seq,
            cells: cells.to_vec(),
        }));
    }

    /// What acquisition rejected, as of the last tick.
    pub fn acquire_stats(&self) -> AcquireStats {
        **self.acquire_stats.load()
    }

    /// Request (`Some`) or withdraw (`None`) `source`'s hold.
    pub fn set_hold(&self, source: HoldSource, hold: Option<(HoldKind, String)>) {
        self.holds.rcu(|holds| {
            let mut next: Vec<Hold> = holds
                .iter()
                .filter(|h| h.source != source)
                .cloned()
                .collect();
            if let Some((kind, reason)) = &hold {
                next.push(Hold {
                    source,
                    kind: *kind,
                    reason: reason.clone(),
                });
                // Kept in protection's order, so an unchanged set compares equal.
                next.sort_by_key(|h| h.source);
            }
            next
        });
    }

    pub fn holds(&self) -> Vec<Hold> {
        self.holds.load().as_ref().clone()
    }

    fn publish(&self, snapshot: Arc<PackSnapshot>, status: Arc<Status>, now_ms: u64) {
        self.snapshot.store(snapshot);
        self.status.store(status);
        self.last_tick_ms.store(now_ms, Ordering::Release);
        self.ticks.fetch_add(1, Ordering::AcqRel);
    }

    /// Wait (up to `timeout`) until protection has published a status
    /// evaluated wholly after this call, so a change made to protection
    /// just before (a reset) shows in [`Shared::status`]. The tick in
    /// flight may have evaluated before the change; the one after it has
    /// not. False if protection did not tick twice in time.
    pub fn await_fresh_status(&self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        let target = self.ticks.load(Ordering::Acquire) + 2;
        while self.ticks.load(Ordering::Acquire) < target {
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Clock time of protection's last tick, ms (0 before the first).
    pub fn last_tick_ms(&self) -> u64 {
        self.last_tick_ms.load(Ordering::Acquire)
    }
}

/// Protection's liveness as seen from outside its thread: the clock time
/// since its last tick against a bound. The control side, the PCS link and
/// the bank use it to stop trusting a rack whose protection stopped.
#[derive(Clone)]
pub struct Liveness {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
    max_silence_ms: u64,
}

impl Liveness {
    /// Dead once `periods` protection periods pass without a tick.
    pub fn new(shared: Arc<Shared>, clock: Arc<dyn Clock>, period_ms: u64, periods: u32) -> Self {
        Self {
            shared,
            clock,
            max_silence_ms: period_ms * u64::from(periods),
        }
    }

    /// Clock ms since protection's last tick (since start before the first).
    pub fn silent_ms(&self) -> u64 {
        self.clock
            .now_ms()
            .saturating_sub(self.shared.last_tick_ms())
    }

    pub fn alive(&self) -> bool {
        self.silent_ms() <= self.max_silence_ms
    }

    pub fn max_silence_ms(&self) -> u64 {
        self.max_silence_ms
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of a
    // plain value; the value is still the last one written.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    source: Box<dyn SnapshotSource>,
    shared: Arc<Shared>,
}

impl ProtectionTask {
    pub fn new(
        protection: Protection,
        mut output: Box<dyn ContactorOutput>,
        source: Box<dyn SnapshotSource>,
        shared: Arc<Shared>,
    ) -> Self {
        output.set(super::contactor::RelayOutputs::OPEN);
        Self {
            protection: Arc::new(Mutex::new(protection)),
            output,
            source,
            shared,
        }
    }

    /// One period: acquire, evaluate, drive the relays, toggle the
    /// heartbeat, publish.
    pub fn tick(&mut self, now_ms: u64) {
        let closed = self.shared.status.load().closed();
        let bleed = self.shared.bleed.load_full();
        let snap = Arc::new(self.source.acquire(now_ms, closed, &bleed));
        let soc = self.shared.pack_soc();
        let holds = self.shared.holds.load_full();
        let status = {
            let mut p = lock(&self.protection);
            p.set_holds(&holds, now_ms);
            Arc::new(p.tick(&snap, soc, now_ms).clone())
        };
        self.output.set(status.outputs);
        self.output.toggle_heartbeat(now_ms);
        self.shared
            .acquire_stats
            .store(Arc::new(self.source.stats()));
        self.shared.publish(snap, status, now_ms);
    }
}

/// How late each tick of a paced protection thread started, against its
/// schedule: a histogram the thread fills without a lock (10 µs buckets up
/// to 100 ms, then one overflow bucket).
pub struct TickTiming {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 10_000;

/// Period jitter of the protection thread: lateness of a tick's start
/// against its schedule, µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct JitterStats {
    pub ticks: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl TickTiming {
    fn new() -> Self {
        Self {
            buckets: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, late: Duration) {
        let us = late.as_micros() as u64;
        let i = ((us / BUCKET_US) as usize).min(BUCKETS);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Percentiles so far (bucket upper bounds, so at most 10 µs high).
    pub fn stats(&self) -> JitterStats {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let ticks: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Ordering::Relaxed);
        let pct = |p: f64| {
            let rank = ((ticks as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return ((i as u64 + 1) * BUCKET_US).min(max_us);
                }
            }
            max_us
        };
        JitterStats {
            ticks,
            p50_us: pct(0.5),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us,
        }
    }
}

/// A running protection thread.
pub struct ProtectionThread {
    stop: Arc<AtomicBool>,
    inject: Arc<AtomicU8>,
    handle: Option<JoinHandle<()>>,
    pub protection: Arc<Mutex<Protection>>,
    timing: Arc<TickTiming>,
}

impl ProtectionThread {
    /// Make the thread hang or die (watchdog and supervision tests).
    pub fn inject(&self, fault: InjectedFault) {
        self.inject.store(fault as u8, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// How late its ticks started so far.
    pub fn jitter(&self) -> JitterStats {
        self.timing.stats()
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

/// Run `task` on its own thread every `period_ms` of `clock` time (paced:
/// [`SiteClock::start_scaled`] has been called; otherwise wall ms).
pub fn spawn(
    mut task: ProtectionTask,
    clock: Arc<SiteClock>,
    period_ms: u64,
) -> std::io::Result<ProtectionThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let inject = Arc::new(AtomicU8::new(0));
    let protection = task.protection.clone();
    let timing = Arc::new(TickTiming::new());
    let (stop2, inject2, timing2) = (stop.clone(), inject.clone(), timing.clone());
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
                if let Some(c) = clock.scaled() {
                    timing2.record(c.late_by(next));
                }
                task.tick(clock.now_ms());
                next += period_ms;
                let wait = clock
                    .scaled()
                    .map_or(Duration::from_millis(period_ms), |c| c.wall_until(next));
                std::thread::sleep(wait);
            }
            // Leaving: drop the task, which de-energises the outputs.
        })?;
    Ok(ProtectionThread {
        stop,
        inject,
        handle: Some(handle),
        protection,
        timing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_one(shared: &Shared, now_ms: u64) {
        shared.publish(
            Arc::new(PackSnapshot::empty(4, 1)),
            Arc::new(Status::initial()),
            now_ms,
        );
    }

    #[test]
    fn a_fresh_status_needs_two_ticks_after_the_call() {
        let shared = Shared::new(PackSnapshot::empty(4, 1));
        publish_one(&shared, 1);
        // One tick after the call is not enough: it may have evaluated before.
        let s = shared.clone();
        let waiter = std::thread::spawn(move || s.await_fresh_status(Duration::from_millis(300)));
        std::thread::sleep(Duration::from_millis(50));
        publish_one(&shared, 2);
        assert!(!waiter.join().unwrap(), "one tick counted as fresh");

        let s = shared.clone();
        let waiter = std::thread::spawn(move || s.await_fresh_status(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        publish_one(&shared, 3);
        publish_one(&shared, 4);
        assert!(waiter.join().unwrap());
    }
}
