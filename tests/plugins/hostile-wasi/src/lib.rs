//! A SOC plugin that imports `wasi:random/random@0.2.0`. The host must
//! refuse to load it and name the import. Written against raw wit-bindgen
//! because the SDK, rightly, cannot produce such a component.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "test:hostile-wasi/soc-with-wasi",
        path: ["../../../wit", "wit"],
        generate_all,
    });

    struct HostileWasi;

    impl Guest for HostileWasi {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "hostile-wasi".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: env!("CARGO_PKG_DESCRIPTION").into(),
            }
        }
        fn init(_config_json: String) -> Result<(), String> {
            Ok(())
        }
        fn step(input: PackSnapshot) -> Result<SocOutput, String> {
            let r = (wasi::random::random::get_random_u64() % 100) as f32;
            Ok(SocOutput {
                cell_soc_pct: vec![r; input.cell_voltage_v.len()],
                pack_soc_pct: r,
            })
        }
        fn save_state() -> Vec<u8> {
            Vec::new()
        }
        fn restore_state(_state: Vec<u8>) -> Result<(), String> {
            Ok(())
        }
    }

    export!(HostileWasi);
}
