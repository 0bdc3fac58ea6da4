//! A SOC estimator that misbehaves on purpose (`{"mode": ...}`):
//! `nan` (NaN SOC), `huge` (1e9 %), `trap` (panics on every step),
//! `hang` (never returns), `slow` (returns, but only after far more CPU
//! than any deadline), `hog` (allocates until the memory cap stops it),
//! `short` (too few cells), `honest` (50 %), `picky` (honest, but its
//! state format is one no other version writes or reads).

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
}

pub struct HostileSoc {
    mode: String,
}

impl Plugin for HostileSoc {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        match c.mode.as_str() {
            "nan" | "huge" | "trap" | "hang" | "slow" | "hog" | "short" | "honest" | "picky" => {
                Ok(Self { mode: c.mode })
            }
            m => Err(format!("mode: unknown mode `{m}`")),
        }
    }
    fn save_state(&self) -> Vec<u8> {
        bms_plugin_sdk::state::encode(PICKY_STATE_VERSION, &self.mode)
    }
    fn restore_state(&mut self, blob: &[u8]) -> Result<(), String> {
        if self.mode == "picky" {
            let _: String = bms_plugin_sdk::state::decode(PICKY_STATE_VERSION, blob)?;
        }
        Ok(())
    }
}

/// A state format version no reference plugin uses.
const PICKY_STATE_VERSION: u16 = 9;

impl SocEstimator for HostileSoc {
    fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
        let n = s.cell_count();
        let v = match self.mode.as_str() {
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
