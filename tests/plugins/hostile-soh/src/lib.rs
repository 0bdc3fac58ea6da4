//! A SOH estimator that is slow on purpose (`{"mode": "spin",
//! "spin_iterations": N}`): every `step` and every `save_state` burns N
//! iterations of CPU, then it reports 100 %. Tests pick N to land just
//! under the call deadline.

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    spin_iterations: u64,
}

pub struct HostileSoh {
    spin_iterations: u64,
}

fn spin(iterations: u64) {
    let mut x = 0u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

impl Plugin for HostileSoh {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        match c.mode.as_str() {
            "spin" => Ok(Self {
                spin_iterations: c.spin_iterations,
            }),
            m => Err(format!("mode: unknown mode `{m}`")),
        }
    }
    fn save_state(&self) -> Vec<u8> {
        spin(self.spin_iterations);
        Vec::new()
    }
}

impl SohEstimator for HostileSoh {
    fn step(&mut self, s: &PackSnapshot) -> Result<SohOutput, String> {
        spin(self.spin_iterations);
        let n = s.cell_count();
        Ok(SohOutput {
            pack_soh_pct: 100.0,
            cell_capacity_ah: vec![280.0; n],
            cell_resistance_mohm: vec![0.3; n],
        })
    }
}

bms_plugin_sdk::export_soh_estimator!(HostileSoh);
