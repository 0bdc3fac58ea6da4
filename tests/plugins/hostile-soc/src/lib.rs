//! A SOC estimator that misbehaves on purpose (`{"mode": ...}`):
//! `nan` (NaN SOC), `huge` (1e9 %), `trap` (panics on every step),
//! `hang` (never returns), `slow` (returns, but only after far more CPU
//! than any deadline), `hog` (allocates until the memory cap stops it),
//! `short` (too few cells), `honest` (50 %), `picky` (honest, but its
//! state format is one no other version writes or reads), `spin` (honest,
//! but every `step` and `save_state` first burns `spin_iterations` of CPU:
//! slow but legal when tests pick it under the deadline), `state-bomb`
//! (honest, but `save_state` returns `state_bytes` bytes), `log-flood`
//! (honest, but logs 2,000 messages per step).

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    /// Behave (50 %) for this many steps first, so the host has a good
    /// estimate and a checkpoint before the misbehaviour starts.
    #[serde(default)]
    after_steps: u32,
    #[serde(default)]
    spin_iterations: u64,
    #[serde(default)]
    state_bytes: usize,
}

pub struct HostileSoc {
    mode: String,
    after_steps: u32,
    steps: u32,
    spin_iterations: u64,
    state_bytes: usize,
}

fn spin(iterations: u64) {
    let mut x = 0u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

impl Plugin for HostileSoc {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        match c.mode.as_str() {
            "nan" | "huge" | "trap" | "hang" | "slow" | "hog" | "short" | "honest" | "picky"
            | "spin" | "state-bomb" | "log-flood" => Ok(Self {
                mode: c.mode,
                after_steps: c.after_steps,
                steps: 0,
                spin_iterations: c.spin_iterations,
                state_bytes: c.state_bytes,
            }),
            m => Err(format!("mode: unknown mode `{m}`")),
        }
    }
    fn save_state(&self) -> Vec<u8> {
        if self.mode == "spin" {
            spin(self.spin_iterations);
        }
        if self.mode == "state-bomb" {
            return vec![0x42; self.state_bytes];
        }
        bms_plugin_sdk::state::encode(PICKY_STATE_VERSION, &self.steps)
    }
    fn restore_state(&mut self, blob: &[u8]) -> Result<(), String> {
        match bms_plugin_sdk::state::decode::<u32>(PICKY_STATE_VERSION, blob) {
            Ok(steps) => self.steps = steps,
            Err(e) if self.mode == "picky" => return Err(e),
            // Another plugin's state: start counting afresh.
            Err(_) => {}
        }
        Ok(())
    }
}

/// A state format version no reference plugin uses.
const PICKY_STATE_VERSION: u16 = 9;

impl SocEstimator for HostileSoc {
    fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
        let n = s.cell_count();
        self.steps = self.steps.saturating_add(1);
        let mode = if self.steps <= self.after_steps {
            "honest"
        } else {
            self.mode.as_str()
        };
        let v = match mode {
            "nan" => f32::NAN,
            "huge" => 1e9,
            "trap" => panic!("hostile-soc: deliberate panic at t={} ms", s.timestamp_ms),
            "hang" =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "slow" => {
                // About a second of pure CPU: far past any call deadline.
                let mut x = 0u64;
                for i in 0..2_000_000_000u64 {
                    x = std::hint::black_box(x.wrapping_add(i));
                }
                std::hint::black_box(x);
                50.0
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "spin" => {
                spin(self.spin_iterations);
                50.0
            }
            "log-flood" => {
                for i in 0..2_000 {
                    bms_plugin_sdk::warn!("hostile-soc: flood message {i} of 2000 this step");
                }
                50.0
            }
            "short" => {
                return Ok(SocOutput {
                    cell_soc_pct: vec![50.0; n / 2],
                    pack_soc_pct: 50.0,
                })
            }
            _ => 50.0,
        };
        Ok(SocOutput {
            cell_soc_pct: vec![v; n],
            pack_soc_pct: v,
        })
    }
}

bms_plugin_sdk::export_soc_estimator!(HostileSoc);
