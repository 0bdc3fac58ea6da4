//! An EMS advisor that misbehaves on purpose (`{"mode": ...}`): `nan`,
//! `huge` (+1e12 W), `huge-discharge` (−1e12 W), `inf`.

use bms_plugin_sdk::prelude::*;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    mode: String,
}

pub struct HostileEms {
    power_w: f32,
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
            m => return Err(format!("mode: unknown mode `{m}`")),
        };
        Ok(Self { power_w })
    }
}

impl EmsAdvisor for HostileEms {
    fn step(&mut self, _: &EmsInput) -> Result<EmsOutput, String> {
        Ok(EmsOutput {
            power_w: self.power_w,
            reason: "hostile".into(),
        })
    }
}

bms_plugin_sdk::export_ems_advisor!(HostileEms);
