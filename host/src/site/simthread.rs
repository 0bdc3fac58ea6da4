//! The simulated rack of a paced run, on a thread of its own: like real
//! BMUs and a real current sensor, it sends its frames on its own schedule
//! whatever the host's threads are doing.
//!
//! Owns: stepping the [`Simulator`] to the site clock every few ms. A
//! lock-step run steps it from the run loop instead. Tests reach the
//! simulator (fault injection, the contacts) through the same lock, held
//! only for a step or an observation.
//!
//! May not touch: the host. It sees the host only through the bus and the
//! contactor wiring, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, SiteClock};
use crate::sim::Simulator;

/// The simulator, shared between its thread and the run loop.
pub type SharedSim = Arc<Mutex<Simulator>>;

pub fn lock(sim: &SharedSim) -> MutexGuard<'_, Simulator> {
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running simulator thread; stops (and stops the physics) on drop.
pub struct SimThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl SimThread {
    /// Step `sim` to `clock` every `step_ms` of clock time.
    pub fn spawn(sim: SharedSim, clock: Arc<SiteClock>, step_ms: u64) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sim-rack".into())
            .spawn(move || {
                let wall_step = clock
                    .scaled()
                    .map_or(Duration::from_millis(step_ms), |c| c.wall_for(step_ms))
                    .max(Duration::from_micros(500));
                while !stop2.load(Ordering::Relaxed) {
                    lock(&sim).advance_to(clock.now_ms());
                    std::thread::sleep(wall_step);
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
