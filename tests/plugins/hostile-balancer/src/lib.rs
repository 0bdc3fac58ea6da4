//! A balancer that asks to bleed every cell, always (`{"mode": "all"}`),
//! or bleeds nothing but first burns `spin_iterations` of CPU in every
//! `step` and `save_state` (`{"mode": "spin"}`).

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
    #[serde(default)]
    spin_iterations: u64,
}

pub struct HostileBalancer {
    all: bool,
    spin_iterations: u64,
}

fn spin(iterations: u64) {
    let mut x = 0u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_add(i));
    }
    std::hint::black_box(x);
}

impl Plugin for HostileBalancer {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        match c.mode.as_str() {
            "all" => Ok(Self {
                all: true,
                spin_iterations: 0,
            }),
            "spin" => Ok(Self {
                all: false,
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

impl Balancer for HostileBalancer {
    fn step(&mut self, i: &BalanceInput) -> Result<BalanceOutput, String> {
        spin(self.spin_iterations);
        Ok(BalanceOutput {
            bleed: vec![self.all; i.snapshot.cell_count()],
        })
    }
}

bms_plugin_sdk::export_balancer!(HostileBalancer);
