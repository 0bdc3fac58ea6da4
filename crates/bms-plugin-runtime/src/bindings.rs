//! Host-side bindings of the four plugin worlds, generated from `wit/`.
//! The `types` and `log` interfaces are generated once (in `soc`) and
//! shared, so a snapshot converts once for every role.

pub mod soc {
    wasmtime::component::bindgen!({
        world: "soc-estimator",
        path: "../../wit",
    });
}

pub mod soh {
    wasmtime::component::bindgen!({
        world: "soh-estimator",
        path: "../../wit",
        with: {
            "bms:plugin/types": super::soc::bms::plugin::types,
            "bms:plugin/log": super::soc::bms::plugin::log,
        },
    });
}

pub mod balancer {
    wasmtime::component::bindgen!({
        world: "balancer",
        path: "../../wit",
        with: {
            "bms:plugin/types": super::soc::bms::plugin::types,
            "bms:plugin/log": super::soc::bms::plugin::log,
        },
    });
}

pub mod ems {
    wasmtime::component::bindgen!({
        world: "ems-advisor",
        path: "../../wit",
        with: {
            "bms:plugin/types": super::soc::bms::plugin::types,
            "bms:plugin/log": super::soc::bms::plugin::log,
        },
    });
}

pub use soc::bms::plugin::log;
pub use soc::bms::plugin::types;
