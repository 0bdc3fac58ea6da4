//! # bms-plugin-sdk
//!
//! Write bmshost strategy plugins (SOC, SOH, balancing, EMS hints) as plain
//! Rust, test them natively with `cargo test`, and build them into
//! WebAssembly components with `cargo xtask build-plugins`. You never touch
//! WIT or wit-bindgen.
//!
//! A plugin is a type that implements [`Plugin`] and one role trait, plus
//! one export macro:
//!
//! ```
//! use bms_plugin_sdk::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config { capacity_ah: f32 }
//!
//! pub struct MeanVoltageSoc { capacity_ah: f32 }
//!
//! impl Plugin for MeanVoltageSoc {
//!     type Config = Config;
//!     fn info() -> PluginInfo { bms_plugin_sdk::plugin_info!() }
//!     fn init(c: Config) -> Result<Self, String> {
//!         if c.capacity_ah <= 0.0 { return Err("capacity_ah must be > 0".into()); }
//!         Ok(Self { capacity_ah: c.capacity_ah })
//!     }
//! }
//!
//! impl SocEstimator for MeanVoltageSoc {
//!     fn step(&mut self, s: &PackSnapshot) -> Result<SocOutput, String> {
//!         let soc: Vec<f32> = s.cell_voltage_v.iter().map(|v| ((v - 3.0) * 200.0).clamp(0.0, 100.0)).collect();
//!         let pack = soc.iter().cloned().fold(f32::INFINITY, f32::min);
//!         Ok(SocOutput { cell_soc_pct: soc, pack_soc_pct: pack })
//!     }
//! }
//!
//! bms_plugin_sdk::export_soc_estimator!(MeanVoltageSoc);
//!
//! // Native test through the same config path the host uses:
//! let mut h = bms_plugin_sdk::harness::Harness::<MeanVoltageSoc>::new(r#"{"capacity_ah": 280}"#).unwrap();
//! let out = h.step(&PackSnapshot::uniform(0, 4, 4, 3.25, 25.0, 0.0)).unwrap();
//! assert_eq!(out.cell_soc_pct.len(), 4);
//! ```
//!
//! Rules the host enforces whatever a plugin does: outputs pass through the
//! protection layer (a plugin can lower a limit, never raise one), a panic
//! or trap only kills the plugin instance, and plugins have no files,
//! clock, network or threads. Time comes in as
//! [`PackSnapshot::timestamp_ms`].

pub mod harness;
pub mod log;
pub mod ocv;
mod plugin;
pub mod rest;
pub mod state;
pub mod types;

pub use plugin::*;
pub use types::*;

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::ocv::OcvTable;
    pub use crate::plugin::{Balancer, EmsAdvisor, Plugin, SocEstimator, SohEstimator};
    pub use crate::rest::{PackState, RestDetector};
    pub use crate::types::*;
}

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    pub mod soc {
        wit_bindgen::generate!({
            world: "soc-estimator",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "__export_soc_estimator_world",
            default_bindings_module: "bms_plugin_sdk::bindings::soc",
        });
    }
    pub mod soh {
        wit_bindgen::generate!({
            world: "soh-estimator",
            path: "../wit",
            with: {
                "bms:plugin/types@0.1.0": crate::bindings::soc::bms::plugin::types,
                "bms:plugin/log@0.1.0": crate::bindings::soc::bms::plugin::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_soh_estimator_world",
            default_bindings_module: "bms_plugin_sdk::bindings::soh",
        });
    }
    pub mod balancer {
        wit_bindgen::generate!({
            world: "balancer",
            path: "../wit",
            with: {
                "bms:plugin/types@0.1.0": crate::bindings::soc::bms::plugin::types,
                "bms:plugin/log@0.1.0": crate::bindings::soc::bms::plugin::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_balancer_world",
            default_bindings_module: "bms_plugin_sdk::bindings::balancer",
        });
    }
    pub mod ems {
        wit_bindgen::generate!({
            world: "ems-advisor",
            path: "../wit",
            with: {
                "bms:plugin/types@0.1.0": crate::bindings::soc::bms::plugin::types,
                "bms:plugin/log@0.1.0": crate::bindings::soc::bms::plugin::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_ems_advisor_world",
            default_bindings_module: "bms_plugin_sdk::bindings::ems",
        });
    }
}

#[doc(hidden)]
pub mod __private;

/// Generates the component exports of one role. Used by the
/// `export_*!` macros; not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_role {
    ($plugin:ty, $world:ident, $export:ident, $role:ident, $in:ty, $out:ty, $conv_in:path, $conv_out:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::$world as __w;
            ::std::thread_local! {
                static __BMS_INSTANCE: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }
            struct __BmsExport;
            impl __w::Guest for __BmsExport {
                fn info() -> __w::PluginInfo {
                    $crate::__private::info::<$plugin>()
                }
                fn init(
                    config_json: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(&__BMS_INSTANCE, &config_json)
                }
                fn step(input: $in) -> ::std::result::Result<$out, ::std::string::String> {
                    let input = $conv_in(input);
                    $crate::__private::with(&__BMS_INSTANCE, |p: &mut $plugin| {
                        <$plugin as $crate::$role>::step(p, &input).map($conv_out)
                    })
                }
                fn save_state() -> ::std::vec::Vec<u8> {
                    $crate::__private::save_state::<$plugin>(&__BMS_INSTANCE)
                }
                fn restore_state(
                    state: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::restore_state::<$plugin>(&__BMS_INSTANCE, &state)
                }
            }
    $crate::bindings::$world::$export!(__BmsExport with_types_in $crate::bindings::$world);
        };
    };
}

/// Export a [`SocEstimator`] as the plugin's component world.
/// Expands to nothing outside wasm, so native tests link normally.
#[macro_export]
macro_rules! export_soc_estimator {
    ($plugin:ty) => {
        $crate::__export_role!(
            $plugin,
            soc,
            __export_soc_estimator_world,
            SocEstimator,
            __w::PackSnapshot,
            __w::SocOutput,
            $crate::__private::snapshot_in,
            $crate::__private::soc_out
        );
    };
}

/// Export a [`SohEstimator`] as the plugin's component world.
#[macro_export]
macro_rules! export_soh_estimator {
    ($plugin:ty) => {
        $crate::__export_role!(
            $plugin,
            soh,
            __export_soh_estimator_world,
            SohEstimator,
            __w::PackSnapshot,
            __w::SohOutput,
            $crate::__private::snapshot_in,
            $crate::__private::soh_out
        );
    };
}

/// Export a [`Balancer`] as the plugin's component world.
#[macro_export]
macro_rules! export_balancer {
    ($plugin:ty) => {
        $crate::__export_role!(
            $plugin,
            balancer,
            __export_balancer_world,
            Balancer,
            __w::BalanceInput,
            __w::BalanceOutput,
            $crate::__private::balance_in,
            $crate::__private::balance_out
        );
    };
}

/// Export an [`EmsAdvisor`] as the plugin's component world.
#[macro_export]
macro_rules! export_ems_advisor {
    ($plugin:ty) => {
        $crate::__export_role!(
            $plugin,
            ems,
            __export_ems_advisor_world,
            EmsAdvisor,
            __w::EmsInput,
            __w::EmsOutput,
            $crate::__private::ems_in,
            $crate::__private::ems_out
        );
    };
}
