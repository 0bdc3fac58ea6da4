//! Modbus: the SunSpec view of the battery for EMS, SCADA and PCS.
//!
//! Owns: the SunSpec register image ([`sunspec`]). May not touch:
//! protection decisions; the image is built from what protection and the
//! control cycle published.

pub mod pcs;
pub mod server;
pub mod sunspec;

use crate::config::SiteConfig;
use crate::control::CycleReport;
use crate::protection::Status;
use sunspec::{BankView, RackView};

/// The SunSpec view of one cycle: the rack as one string of the bank.
pub fn bank_view(
    cfg: &SiteConfig,
    report: &CycleReport,
    status: &Status,
    heartbeat: u16,
) -> BankView {
    let s = &report.snapshot;
    let per = s.cells_per_module.max(1) as usize;
    let module_of = |i: usize| (i / per) as u16 + 1;
    let ext = |v: &[f32], max: bool| {
        v.iter()
            .enumerate()
            .filter(|(_, x)| x.is_finite())
            .reduce(|a, b| {
                if (b.1 > a.1) == max && b.1 != a.1 {
                    b
                } else {
                    a
                }
            })
            .map(|(i, x)| (*x, module_of(i)))
    };
    let mean = |v: &[f32]| {
        let f: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if f.is_empty() {
            f32::NAN
        } else {
            f.iter().sum::<f32>() / f.len() as f32
        }
    };
    let (vmax, vmin) = (ext(&s.cell_voltage_v, true), ext(&s.cell_voltage_v, false));
    let (tmax, tmin) = (ext(&s.cell_temp_c, true), ext(&s.cell_temp_c, false));
    let latched: Vec<_> = status.latched.iter().map(|l| l.quantity).collect();
    let events = sunspec::events(&status.active, &latched);
    let d = &cfg.protection.derating;
    let nominal_v = s.cell_voltage_v.len() as f32 * 3.2;
    let closed = status.closed();
    let rack = RackView {
        modules: cfg.rack.modules as u16,
        connected: closed,
        soc_pct: report.pack_soc_pct,
        soh_pct: report.pack_soh_pct,
        current_a: s.current_a,
        cell_v_max: vmax.map_or(f32::NAN, |x| x.0),
        cell_v_max_module: vmax.map_or(0, |x| x.1),
        cell_v_min: vmin.map_or(f32::NAN, |x| x.0),
        cell_v_min_module: vmin.map_or(0, |x| x.1),
        cell_v_avg: mean(&s.cell_voltage_v),
        temp_max_c: tmax.map_or(f32::NAN, |x| x.0),
        temp_max_module: tmax.map_or(0, |x| x.1),
        temp_min_c: tmin.map_or(f32::NAN, |x| x.0),
        temp_min_module: tmin.map_or(0, |x| x.1),
        temp_avg_c: mean(&s.cell_temp_c),
        events,
        bleeding_cells: report.bleed.iter().filter(|b| **b).count() as u16,
    };
    BankView {
        manufacturer: cfg
            .modbus
            .as_ref()
            .map_or("bmshost".into(), |m| m.manufacturer.clone()),
        model: format!("{} x {} cells", cfg.rack.modules, cfg.rack.cells_per_module),
        serial: cfg.site.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        capacity_ah: cfg.rack.capacity_ah,
        energy_wh: cfg.rack.capacity_ah * nominal_v,
        max_charge_w: d.max_charge_current_a * nominal_v,
        max_discharge_w: d.max_discharge_current_a * nominal_v,
        soc_pct: report.pack_soc_pct,
        soh_pct: report.pack_soh_pct,
        pack_v: s.pack_voltage_v,
        current_a: s.current_a,
        allowed_charge_a: status.allowed.charge_a,
        allowed_discharge_a: status.allowed.discharge_a,
        contactors: Some(status.contactor_state),
        faulted: !status.latched.is_empty(),
        events,
        heartbeat,
        racks: vec![rack],
    }
}

/// Publishes the image every cycle and supervises the controller
/// heartbeat.
pub struct Publisher {
    pub board: std::sync::Arc<server::RegisterBoard>,
    scales: sunspec::Scales,
    base: u16,
    heartbeat: u16,
    hb_timeout: Option<std::time::Duration>,
    hb_lost: bool,
}

impl Publisher {
    /// The board for `cfg.modbus` with an initial image (nothing known).
    pub fn new(cfg: &SiteConfig) -> Option<Self> {
        let m = cfg.modbus.as_ref()?;
        let d = &cfg.protection.derating;
        let cells = cfg.rack.cell_count() as f32;
        let probe = BankView {
            capacity_ah: cfg.rack.capacity_ah,
            energy_wh: cfg.rack.capacity_ah * cells * 3.2,
            max_charge_w: d.max_charge_current_a * cells * 3.2,
            max_discharge_w: d.max_discharge_current_a * cells * 3.2,
            ..BankView::default()
        };
        let max_current = d.max_charge_current_a.max(d.max_discharge_current_a);
        let scales = sunspec::Scales::for_bank(&probe, cells * 4.5, max_current);
        let (regs, writable) = sunspec::image(&probe, &scales);
        Some(Self {
            board: server::RegisterBoard::new(server::Image {
                base: m.base,
                regs,
                writable,
            }),
            scales,
            base: m.base,
            heartbeat: 0,
            hb_timeout: m
                .heartbeat_timeout_s
                .map(std::time::Duration::from_secs_f64),
            hb_lost: false,
        })
    }

    pub fn publish(&mut self, cfg: &SiteConfig, report: &CycleReport, status: &Status) {
        self.heartbeat = self.heartbeat.wrapping_add(1);
        let view = bank_view(cfg, report, status, self.heartbeat);
        let (regs, writable) = sunspec::image(&view, &self.scales);
        self.board.publish(server::Image {
            base: self.base,
            regs,
            writable,
        });
        if let Some(timeout) = self.hb_timeout {
            let lost = self.board.ctrl_hb().is_none_or(|(_, age)| age > timeout);
            if lost && !self.hb_lost {
                tracing::warn!(
                    timeout_s = timeout.as_secs_f64(),
                    "SunSpec controller heartbeat (CtrlHb) lost"
                );
            } else if !lost && self.hb_lost {
                tracing::info!("SunSpec controller heartbeat (CtrlHb) back");
            }
            self.hb_lost = lost;
        }
    }

    /// Whether the controller heartbeat is currently lost.
    pub fn heartbeat_lost(&self) -> bool {
        self.hb_lost
    }
}
