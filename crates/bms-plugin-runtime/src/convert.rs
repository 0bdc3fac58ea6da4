//! Host snapshot → WIT types.

use super::bindings::types as w;
use bms_protection::snapshot::{CommStatus, PackSnapshot};

pub fn snapshot(s: &PackSnapshot) -> w::PackSnapshot {
    w::PackSnapshot {
        timestamp_ms: s.timestamp_ms,
        current_a: s.current_a,
        pack_voltage_v: s.pack_voltage_v,
        cell_voltage_v: s.cell_voltage_v.clone(),
        cell_temp_c: s.cell_temp_c.clone(),
        cells_per_module: s.cells_per_module,
        module_comm: s
            .module_comm
            .iter()
            .map(|c| match c {
                CommStatus::Ok => w::CommStatus::Ok,
                CommStatus::Stale => w::CommStatus::Stale,
            })
            .collect(),
        cell_bleed_a: s.cell_bleed_a.clone(),
        contactors_closed: s.contactors_closed,
    }
}
