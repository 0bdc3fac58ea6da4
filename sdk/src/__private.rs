//! Glue between the generated bindings and the role traits. Shared by the
//! export macros (wasm) and the native harness, so both parse config and
//! handle state identically.

use std::cell::RefCell;
use std::sync::Once;
use std::thread::LocalKey;

use crate::bindings::soc::bms::plugin::types as w;
use crate::types::*;
use crate::Plugin;

pub type Slot<P> = LocalKey<RefCell<Option<P>>>;

static PANIC_HOOK: Once = Once::new();

/// Forward panic messages through the host log; wasm32-unknown-unknown
/// would otherwise drop them and the operator would see only "unreachable".
pub fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log::write(
                crate::log::Level::Error,
                &format!("plugin panicked: {info}"),
            );
        }));
    });
}

/// Parse a plugin config, naming the offending field on error.
pub fn parse_config<P: Plugin>(config_json: &str) -> Result<P::Config, String> {
    let de = &mut serde_json::Deserializer::from_str(config_json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("invalid plugin config: {}", e.inner())
        } else {
            format!("invalid plugin config at `{path}`: {}", e.inner())
        }
    })
}

pub fn info<P: Plugin>() -> w::PluginInfo {
    let i = P::info();
    w::PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
    }
}

pub fn init<P: Plugin>(slot: &'static Slot<P>, config_json: &str) -> Result<(), String> {
    install_panic_hook();
    let plugin = P::init(parse_config::<P>(config_json)?)?;
    slot.with(|s| *s.borrow_mut() = Some(plugin));
    Ok(())
}

pub fn with<P, R>(
    slot: &'static Slot<P>,
    f: impl FnOnce(&mut P) -> Result<R, String>,
) -> Result<R, String> {
    slot.with(|s| match s.borrow_mut().as_mut() {
        Some(p) => f(p),
        None => Err("plugin is not initialised: the host must call init first".into()),
    })
}

pub fn save_state<P: Plugin>(slot: &'static Slot<P>) -> Vec<u8> {
    slot.with(|s| s.borrow().as_ref().map(P::save_state).unwrap_or_default())
}

pub fn restore_state<P: Plugin>(slot: &'static Slot<P>, state: &[u8]) -> Result<(), String> {
    with(slot, |p| p.restore_state(state))
}

pub fn snapshot_in(s: w::PackSnapshot) -> PackSnapshot {
    PackSnapshot {
        timestamp_ms: s.timestamp_ms,
        current_a: s.current_a,
        pack_voltage_v: s.pack_voltage_v,
        cell_voltage_v: s.cell_voltage_v,
        cell_temp_c: s.cell_temp_c,
        cells_per_module: s.cells_per_module,
        module_comm: s
            .module_comm
            .into_iter()
            .map(|c| match c {
                w::CommStatus::Ok => CommStatus::Ok,
                w::CommStatus::Stale => CommStatus::Stale,
            })
            .collect(),
        cell_bleed_a: s.cell_bleed_a,
        contactors_closed: s.contactors_closed,
    }
}

fn soc_in(s: w::SocOutput) -> SocOutput {
    SocOutput {
        cell_soc_pct: s.cell_soc_pct,
        pack_soc_pct: s.pack_soc_pct,
    }
}

fn soh_in(s: w::SohOutput) -> SohOutput {
    SohOutput {
        pack_soh_pct: s.pack_soh_pct,
        cell_capacity_ah: s.cell_capacity_ah,
        cell_resistance_mohm: s.cell_resistance_mohm,
    }
}

pub fn soc_out(s: SocOutput) -> w::SocOutput {
    w::SocOutput {
        cell_soc_pct: s.cell_soc_pct,
        pack_soc_pct: s.pack_soc_pct,
    }
}

pub fn soh_out(s: SohOutput) -> w::SohOutput {
    w::SohOutput {
        pack_soh_pct: s.pack_soh_pct,
        cell_capacity_ah: s.cell_capacity_ah,
        cell_resistance_mohm: s.cell_resistance_mohm,
    }
}

pub fn balance_in(b: w::BalanceInput) -> BalanceInput {
    BalanceInput {
        snapshot: snapshot_in(b.snapshot),
        cell_soc_pct: b.cell_soc_pct,
    }
}

pub fn balance_out(b: BalanceOutput) -> w::BalanceOutput {
    w::BalanceOutput { bleed: b.bleed }
}

pub fn ems_in(e: w::EmsInput) -> EmsInput {
    EmsInput {
        snapshot: snapshot_in(e.snapshot),
        soc: soc_in(e.soc),
        soh: soh_in(e.soh),
        limits: ProtectionLimits {
            max_charge_current_a: e.limits.max_charge_current_a,
            max_discharge_current_a: e.limits.max_discharge_current_a,
            max_charge_power_w: e.limits.max_charge_power_w,
            max_discharge_power_w: e.limits.max_discharge_power_w,
            cell_min_voltage_v: e.limits.cell_min_voltage_v,
            cell_max_voltage_v: e.limits.cell_max_voltage_v,
        },
        minute_of_day: e.minute_of_day,
    }
}

pub fn ems_out(e: EmsOutput) -> w::EmsOutput {
    w::EmsOutput {
        power_w: e.power_w,
        reason: e.reason,
    }
}
