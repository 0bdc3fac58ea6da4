//! A SOC estimator that misbehaves on purpose (`{"mode": ...}`):
//! `nan` (NaN SOC), `huge` (1e9 %), `trap` (panics on every step),
//! `hang` (never returns), `short` (too few cells), `honest` (50 %).

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
            "nan" | "huge" | "trap" | "hang" | "short" | "honest" => Ok(Self { mode: c.mode }),
            m => Err(format!("mode: unknown mode `{m}`")),
        }
    }
}

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
