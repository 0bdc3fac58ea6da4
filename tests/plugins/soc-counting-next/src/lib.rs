//! The next version of `soc-counting`, as an integrator would ship it: the
//! same algorithm and state format under a new version number. The hot-swap
//! tests alternate between the two while the rack runs.

use bms_plugin_sdk::prelude::*;
use soc_counting::SocCounting;

pub struct SocCountingNext(SocCounting);

impl Plugin for SocCountingNext {
    type Config = <SocCounting as Plugin>::Config;
    fn info() -> PluginInfo {
        bms_plugin_sdk::plugin_info!()
    }
    fn init(c: Self::Config) -> Result<Self, String> {
        SocCounting::init(c).map(Self)
    }
    fn save_state(&self) -> Vec<u8> {
        self.0.save_state()
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        self.0.restore_state(state)
    }
}

impl SocEstimator for SocCountingNext {
    fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
        self.0.step(s)
    }
}

bms_plugin_sdk::export_soc_estimator!(SocCountingNext);
