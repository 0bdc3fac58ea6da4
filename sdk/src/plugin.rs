//! The role traits a plugin implements.
//!
//! Every plugin implements [`Plugin`] (identity, configuration, state) and
//! exactly one role trait. Errors are plain strings: the host shows them to
//! the operator verbatim, so make them say what is wrong and where.

use serde::de::DeserializeOwned;

use crate::types::*;

/// What every plugin provides, whatever its role.
pub trait Plugin: Sized {
    /// The plugin's own config section from the site file, deserialized
    /// from JSON. Use `#[serde(deny_unknown_fields)]` so typos are caught.
    type Config: DeserializeOwned;

    /// Name, version and description. [`plugin_info!`](crate::plugin_info)
    /// fills them from `Cargo.toml`.
    fn info() -> PluginInfo;

    /// Build the plugin from its configuration. Return an error that names
    /// the offending field.
    fn init(config: Self::Config) -> Result<Self, String>;

    /// Serialize the algorithm state so that it survives a hot swap or a
    /// host restart. The default saves nothing.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restore state produced by [`Plugin::save_state`] of this or an
    /// earlier version. Called right after `init`. The default accepts only
    /// an empty state.
    fn restore_state(&mut self, state: &[u8]) -> Result<(), String> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "this plugin keeps no state but was given {} bytes",
                state.len()
            ))
        }
    }
}

/// Estimates state of charge.
pub trait SocEstimator: Plugin {
    fn step(&mut self, input: &PackSnapshot) -> Result<SocOutput, String>;
}

/// Estimates state of health.
pub trait SohEstimator: Plugin {
    fn step(&mut self, input: &PackSnapshot) -> Result<SohOutput, String>;
}

/// Decides which cells bleed.
pub trait Balancer: Plugin {
    fn step(&mut self, input: &BalanceInput) -> Result<BalanceOutput, String>;
}

/// Recommends charge / discharge power.
pub trait EmsAdvisor: Plugin {
    fn step(&mut self, input: &EmsInput) -> Result<EmsOutput, String>;
}

/// Build a [`PluginInfo`] from the calling crate's `Cargo.toml`.
#[macro_export]
macro_rules! plugin_info {
    () => {{
        const _: () = assert!(
            !env!("CARGO_PKG_DESCRIPTION").is_empty(),
            "set `description` in the plugin's Cargo.toml: operators see it"
        );
        $crate::types::PluginInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: env!("CARGO_PKG_DESCRIPTION").to_string(),
        }
    }};
}
