//! The wires between the host's outputs and the simulated rack.
//!
//! Owns: the commanded coil states and the watchdog heartbeat line, as
//! atomics (the host's driver writes them on the protection thread; the
//! simulator reads them on its own); the simulated PCS's holding registers
//! (the host's PCS link writes them) and its setpoint line from the EMS.
//! May not touch: the contactor state machine; the simulator only sees
//! what a relay board and a PCS would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Commanded coil states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coils {
    pub precharge: bool,
    pub main: bool,
}

/// Coil commands and the heartbeat line, as the simulator reads them.
#[derive(Debug)]
pub struct SimWiring {
    precharge: AtomicBool,
    main: AtomicBool,
    heartbeat_level: AtomicBool,
    last_toggle_ms: AtomicU64,
    heartbeat_seen: AtomicBool,
    pcs: PcsRegisters,
    /// The EMS's setpoint for the PCS, A as f64 bits (NaN: none).
    setpoint_bits: AtomicU64,
}

impl Default for SimWiring {
    fn default() -> Self {
        Self {
            precharge: AtomicBool::new(false),
            main: AtomicBool::new(false),
            heartbeat_level: AtomicBool::new(false),
            last_toggle_ms: AtomicU64::new(0),
            heartbeat_seen: AtomicBool::new(false),
            pcs: PcsRegisters::default(),
            setpoint_bits: AtomicU64::new(f64::NAN.to_bits()),
        }
    }
}

/// The simulated PCS's holding registers, as its Modbus map would hold
/// them, and when they were last written.
#[derive(Debug, Default)]
pub struct PcsRegisters {
    regs: Mutex<BTreeMap<u16, u16>>,
    written_ms: AtomicU64,
    written: AtomicBool,
}

impl PcsRegisters {
    /// Write `values` (address, raw) at host time `now_ms`.
    pub fn write(&self, now_ms: u64, values: &[(u16, u16)]) {
        let mut regs = self.regs.lock().unwrap_or_else(|e| e.into_inner());
        regs.extend(values.iter().copied());
        self.written_ms.store(now_ms, Ordering::Release);
        self.written.store(true, Ordering::Release);
    }

    pub fn read(&self, address: u16) -> Option<u16> {
        self.regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .copied()
    }

    /// Host time of the last write, if any.
    pub fn written_ms(&self) -> Option<u64> {
        self.written
            .load(Ordering::Acquire)
            .then(|| self.written_ms.load(Ordering::Acquire))
    }
}

impl SimWiring {
    /// Drive the coils (the host's output driver).
    pub fn command(&self, coils: Coils) {
        self.precharge.store(coils.precharge, Ordering::Release);
        self.main.store(coils.main, Ordering::Release);
    }

    /// Toggle the watchdog line at host time `now_ms`.
    pub fn toggle_heartbeat(&self, now_ms: u64) {
        self.heartbeat_level.fetch_xor(true, Ordering::AcqRel);
        self.last_toggle_ms.store(now_ms, Ordering::Release);
        self.heartbeat_seen.store(true, Ordering::Release);
    }

    /// Commanded coil states.
    pub fn commanded(&self) -> Coils {
        Coils {
            precharge: self.precharge.load(Ordering::Acquire),
            main: self.main.load(Ordering::Acquire),
        }
    }

    /// The PCS's registers.
    pub fn pcs_registers(&self) -> &PcsRegisters {
        &self.pcs
    }

    /// The EMS's setpoint for the PCS, A (positive: charge); `None`: the
    /// EMS gives none.
    pub fn set_setpoint_a(&self, a: Option<f64>) {
        let bits = a.filter(|a| a.is_finite()).unwrap_or(f64::NAN).to_bits();
        self.setpoint_bits.store(bits, Ordering::Release);
    }

    pub fn setpoint_a(&self) -> Option<f64> {
        let a = f64::from_bits(self.setpoint_bits.load(Ordering::Acquire));
        (!a.is_nan()).then_some(a)
    }

    /// Host time of the last heartbeat toggle, if any.
    pub fn last_heartbeat_ms(&self) -> Option<u64> {
        self.heartbeat_seen
            .load(Ordering::Acquire)
            .then(|| self.last_toggle_ms.load(Ordering::Acquire))
    }
}
