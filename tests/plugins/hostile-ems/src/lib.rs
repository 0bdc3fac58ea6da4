//! An EMS advisor that misbehaves on purpose (`{"mode": ...}`): `nan`,
//! `huge` (+1e12 W), `huge-discharge` (−1e12 W), `inf`, `spin` (0 W, but
//! every `step` and `save_state` first burns `spin_iterations` of CPU).

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    spin_iterations: u64,
}

pub struct HostileEms {
    power_w: f32,
    spin_iterations: u64,
}

fn spin(iterations: u64) {
    let mut x = 0u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

impl Plugin for HostileEms {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        let power_w = match c.mode.as_str() {
            "nan" => f32::NAN,
            "huge" => 1e12,
            "huge-discharge" => -1e12,
            "inf" => f32::INFINITY,
            "spin" => 0.0,
            m => return Err(format!("mode: unknown mode `{m}`")),
        };
        let spin_iterations = if c.mode == "spin" {
            c.spin_iterations
        } else {
            0
        };
        Ok(Self {
            power_w,
            spin_iterations,
        })
    }
    fn save_state(&self) -> Vec<u8> {
        spin(self.spin_iterations);
        Vec::new()
    }
}

impl EmsAdvisor for HostileEms {
    fn step(&mut self, _: &EmsInput) -> Result<EmsOutput, String> {
        spin(self.spin_iterations);
        Ok(EmsOutput {
            power_w: self.power_w,
            reason: "hostile".into(),
        })
    }
}

bms_plugin_sdk::export_ems_advisor!(HostileEms);
