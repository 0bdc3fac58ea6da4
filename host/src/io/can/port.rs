//! [`BusPort`]: any [`CanBus`] pumped on an I/O thread of its own, seen by
//! the protection thread as a non-blocking [`CanPort`].
//!
//! Owns: the I/O thread and its tokio runtime, the bounded receive queue
//! (overflow drops the oldest frame and counts it), the transmit queue and
//! the bus counters. May not touch: frame contents.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::bus::{count_error, BusError, BusEvent, BusStats, CanBus, CanPort, Received};
use super::CanFrame;
use crate::clock::Clock;

/// Receive queue depth: at 1 Mbit/s a bus carries ~8,000 frames/s, so
/// this holds about one second.
const RX_DEPTH: usize = 8192;
/// Transmit queue depth.
const TX_DEPTH: usize = 1024;

#[derive(Default)]
struct Rx {
    frames: VecDeque<Received>,
    overflows: u64,
    stats: BusStats,
}

pub struct BusPort {
    name: String,
    rx: Arc<Mutex<Rx>>,
    tx: mpsc::Sender<CanFrame>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl BusPort {
    /// Start pumping `bus` (named `name` in logs and errors).
    pub fn spawn<B: CanBus>(bus: B, name: &str) -> Result<Self, BusError> {
        Self::open(name, move || Ok(bus))
    }

    /// Open a bus inside the port's runtime (sockets register with its
    /// reactor) and start pumping it.
    pub fn open<B: CanBus>(
        name: &str,
        open: impl FnOnce() -> Result<B, BusError>,
    ) -> Result<Self, BusError> {
        Self::open_with_clock(name, None, open)
    }

    /// As [`Self::open`]; the I/O thread stamps each frame with `clock`'s
    /// time as it arrives.
    pub fn open_with_clock<B: CanBus>(
        name: &str,
        clock: Option<Arc<dyn Clock>>,
        open: impl FnOnce() -> Result<B, BusError>,
    ) -> Result<Self, BusError> {
        let io = |source| BusError::Io {
            interface: name.to_string(),
            source,
        };
        let rx = Arc::new(Mutex::new(Rx::default()));
        let (tx, mut tx_queue) = mpsc::channel::<CanFrame>(TX_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io)?;
        let bus = {
            let _in_runtime = rt.enter();
            open()?
        };
        let (rx2, stop2, name2) = (rx.clone(), stop.clone(), name.to_string());
        let handle = std::thread::Builder::new()
            .name(format!("can-{name}"))
            .spawn(move || {
                rt.block_on(async move {
                    let tick = std::time::Duration::from_millis(50);
                    while !stop2.load(Ordering::Relaxed) {
                        tokio::select! {
                            ev = bus.recv() => match ev {
                                Ok(BusEvent::Frame(frame)) => {
                                    let rx_ms = clock.as_ref().map(|c| c.now_ms());
                                    let mut r = rx2.lock().unwrap_or_else(|e| e.into_inner());
                                    if r.frames.len() >= RX_DEPTH {
                                        r.frames.pop_front();
                                        r.overflows += 1;
                                    }
                                    r.frames.push_back(Received { frame, rx_ms });
                                }
                                Ok(BusEvent::ErrorFrame { bus_off }) => {
                                    let mut r = rx2.lock().unwrap_or_else(|e| e.into_inner());
                                    count_error(&mut r.stats, bus_off);
                                }
                                Err(e) => {
                                    tracing::error!(bus = %name2, error = %e, "CAN receive failed");
                                    tokio::time::sleep(tick).await;
                                }
                            },
                            Some(frame) = tx_queue.recv() => {
                                if let Err(e) = bus.send(frame).await {
                                    rx2.lock().unwrap_or_else(|e| e.into_inner()).stats.tx_errors += 1;
                                    tracing::warn!(bus = %name2, %frame, error = %e, "CAN send failed");
                                }
                            }
                            _ = tokio::time::sleep(tick) => {}
                        }
                    }
                })
            })
            .map_err(io)?;
        Ok(Self {
            name: name.to_string(),
            rx,
            tx,
            stop,
            handle: Some(handle),
        })
    }
}

impl CanPort for BusPort {
    fn send(&self, frame: &CanFrame) -> Result<(), BusError> {
        self.tx.try_send(*frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => {
                self.rx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .stats
                    .tx_errors += 1;
                BusError::TxQueueFull(format!("{f} on {}", self.name))
            }
            mpsc::error::TrySendError::Closed(_) => BusError::Closed,
        })
    }

    fn drain_stamped(&self, out: &mut Vec<Received>) {
        out.extend(
            self.rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .frames
                .drain(..),
        );
    }

    fn overflows(&self) -> u64 {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).overflows
    }

    fn bus_stats(&self) -> BusStats {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).stats
    }
}

impl Drop for BusPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::can::bus::VirtualBus;
    use crate::io::can::CanId;
    use std::time::{Duration, Instant};

    fn wait_for(port: &BusPort, n: usize) -> Vec<CanFrame> {
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while got.len() < n && Instant::now() < until {
            port.drain(&mut got);
            std::thread::sleep(Duration::from_millis(2));
        }
        got
    }

    /// The async path (a port pumping a virtual endpoint through
    /// [`CanBus`]) carries exactly what the direct path carries, both ways,
    /// and counts error frames and bus-off.
    #[test]
    fn a_pumped_bus_carries_the_same_frames_and_counts_errors() {
        let bus = VirtualBus::new();
        let direct = bus.endpoint();
        let port = BusPort::spawn(bus.endpoint(), "virtual").unwrap();
        let frames: Vec<CanFrame> = (0..500u32)
            .map(|i| {
                let id = if i % 2 == 0 {
                    CanId::standard((i % 0x7ff) as u16).unwrap()
                } else {
                    CanId::extended(0x1800_0000 + i).unwrap()
                };
                CanFrame::new(id, &i.to_le_bytes()[..(i % 5) as usize]).unwrap()
            })
            .collect();
        for f in &frames {
            CanPort::send(&direct, f).unwrap();
        }
        assert_eq!(wait_for(&port, frames.len()), frames, "in order, unchanged");
        for f in &frames[..10] {
            port.send(f).unwrap();
        }
        let mut back = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while back.len() < 10 && Instant::now() < until {
            direct.drain(&mut back);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(back, frames[..10]);
        bus.inject_error(false);
        bus.inject_error(true);
        let until = Instant::now() + Duration::from_secs(5);
        while port.bus_stats().error_frames < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(port.bus_stats().error_frames, 2);
        assert_eq!(port.bus_stats().bus_off, 1);
        assert_eq!(port.overflows(), 0);
    }
}
