//! A balancer that asks to bleed every cell, always (`{"mode": "all"}`).

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
}

pub struct HostileBalancer;

impl Plugin for HostileBalancer {
    type Config = Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Config) -> Result<Self, String> {
        match c.mode.as_str() {
            "all" => Ok(Self),
            m => Err(format!("mode: unknown mode `{m}`")),
        }
    }
}

impl Balancer for HostileBalancer {
    fn step(&mut self, i: &BalanceInput) -> Result<BalanceOutput, String> {
        Ok(BalanceOutput {
            bleed: vec![true; i.snapshot.cell_count()],
        })
    }
}

bms_plugin_sdk::export_balancer!(HostileBalancer);
