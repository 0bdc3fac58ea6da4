//! Modbus: the SunSpec view of the battery for EMS, SCADA and PCS.
//!
//! Owns: the SunSpec register image ([`sunspec`]). May not touch:
//! protection decisions; the image is built from what protection and the
//! control cycle published.

pub mod client;
pub mod idle;
pub mod mode;
pub mod pcs;
pub mod server;
pub mod sunspec;

use std::sync::Arc;

use crate::bank::BankState;
use crate::config::{HeartbeatLoss, SiteConfig};
use crate::control::CycleReport;
use crate::protection::task::Shared;
use crate::protection::{HoldKind, HoldSource, Status};
use sunspec::{BankView, RackView};

/// One rack's latest cycle and protection status.
#[derive(Clone, Copy)]
pub struct RackReport<'a> {
    pub report: &'a CycleReport,
    pub status: &'a Status,
    /// The rack's protection is ticking. If not, its last status is not
    /// trusted: the string shows disconnected with an alarm.
    pub protection_alive: bool,
}

fn rack_view(modules: u16, r: &RackReport<'_>) -> RackView {
    let (report, status) = (r.report, r.status);
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
    let (vmax, vmin) = (ext(&s.cell_voltage_v, true), ext(&s.cell_voltage_v, false));
    let (tmax, tmin) = (ext(&s.cell_temp_c, true), ext(&s.cell_temp_c, false));
    RackView {
        modules,
        connected: status.closed() && r.protection_alive,
        soc_pct: report.pack_soc_pct,
        soh_pct: report.pack_soh_pct,
        current_a: s.current_a,
        cell_v_max: vmax.map_or(f32::NAN, |x| x.0),
        cell_v_max_module: vmax.map_or(0, |x| x.1),
        cell_v_min: vmin.map_or(f32::NAN, |x| x.0),
        cell_v_min_module: vmin.map_or(0, |x| x.1),
        cell_v_avg: mean(s.cell_voltage_v.iter().copied()),
        temp_max_c: tmax.map_or(f32::NAN, |x| x.0),
        temp_max_module: tmax.map_or(0, |x| x.1),
        temp_min_c: tmin.map_or(f32::NAN, |x| x.0),
        temp_min_module: tmin.map_or(0, |x| x.1),
        temp_avg_c: mean(s.cell_temp_c.iter().copied()),
        events: rack_events(r),
        bleeding_cells: report.bleed.iter().filter(|b| **b).count() as u16,
    }
}

fn rack_events(r: &RackReport<'_>) -> u32 {
    let latched: Vec<_> = r.status.latched.iter().map(|l| l.quantity).collect();
    let dead = if r.protection_alive {
        0
    } else {
        1 << sunspec::evt1::OTHER_ALARM
    };
    sunspec::events(&r.status.active, &latched) | dead
}

/// Mean of the finite values (NaN if none).
fn mean(v: impl Iterator<Item = f32>) -> f32 {
    let (sum, n) = v
        .filter(|x| x.is_finite())
        .fold((0.0f32, 0u32), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f32::NAN
    } else {
        sum / n as f32
    }
}

/// Nameplate of the whole bank: capacity, energy and power ratings.
struct Ratings {
    capacity_ah: f32,
    energy_wh: f32,
    max_charge_w: f32,
    max_discharge_w: f32,
}

fn ratings(cfg: &SiteConfig) -> Ratings {
    let caps = crate::bank::rack_capacities(cfg);
    // Nominal bus voltage: 3.2 V per cell in series.
    let nominal_v = cfg.rack.cell_count() as f32 * 3.2;
    let d = &cfg.protection.derating;
    let n = caps.len() as f32;
    let capacity_ah: f32 = caps.iter().sum();
    Ratings {
        capacity_ah,
        energy_wh: capacity_ah * nominal_v,
        max_charge_w: d.max_charge_current_a * nominal_v * n,
        max_discharge_w: d.max_discharge_current_a * nominal_v * n,
    }
}

/// The SunSpec view of one cycle: the bank (802) and one 803 string per
/// rack. Bank values come from [`crate::bank::aggregate`].
pub fn bank_view(
    cfg: &SiteConfig,
    racks: &[RackReport<'_>],
    bank: &BankState,
    heartbeat: u16,
) -> BankView {
    let r = ratings(cfg);
    let connected: Vec<&RackReport<'_>> = racks.iter().filter(|x| x.status.closed()).collect();
    let pool = if connected.is_empty() {
        racks.iter().collect()
    } else {
        connected
    };
    let events = racks.iter().fold(0, |e, x| e | rack_events(x));
    let any_latched = racks.iter().any(|x| !x.status.latched.is_empty());
    let current: Vec<f32> = racks
        .iter()
        .map(|x| x.report.snapshot.current_a)
        .filter(|i| i.is_finite())
        .collect();
    BankView {
        manufacturer: cfg
            .modbus
            .as_ref()
            .map_or("bmshost".into(), |m| m.manufacturer.clone()),
        model: format!(
            "{} x {} x {} cells",
            racks.len(),
            cfg.rack.modules,
            cfg.rack.cells_per_module
        ),
        serial: cfg.site.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        capacity_ah: r.capacity_ah,
        energy_wh: r.energy_wh,
        max_charge_w: r.max_charge_w,
        max_discharge_w: r.max_discharge_w,
        soc_pct: bank.soc_pct,
        soh_pct: bank.soh_pct,
        // Racks in parallel share the bus: its voltage is theirs.
        pack_v: mean(pool.iter().map(|x| x.report.snapshot.pack_voltage_v)),
        current_a: if current.is_empty() {
            f32::NAN
        } else {
            current.iter().sum()
        },
        allowed_charge_a: bank.allowed.charge_a,
        allowed_discharge_a: bank.allowed.discharge_a,
        contactors: pool.first().map(|x| x.status.contactor_state),
        // An isolated faulted rack is an alarm (its string and Evt1 say
        // so), not a faulted bank, while other racks carry on.
        // A rack whose protection stopped is a faulted bank: nothing is
        // allowed until it is back.
        faulted: (any_latched && bank.connected == 0) || !bank.protection_dead.is_empty(),
        events,
        heartbeat,
        local_control: false,
        racks: racks
            .iter()
            .map(|x| rack_view(cfg.rack.modules as u16, x))
            .collect(),
    }
}

/// Publishes the image every cycle and supervises the controller
/// heartbeat.
pub struct Publisher {
    pub board: Arc<server::RegisterBoard>,
    scales: sunspec::Scales,
    base: u16,
    heartbeat: u16,
    hb_timeout: Option<std::time::Duration>,
    on_hb_loss: HeartbeatLoss,
    hb_lost: bool,
    racks: Vec<Arc<Shared>>,
}

impl Publisher {
    /// The board for `cfg.modbus` with an initial image (nothing known).
    /// `racks` receive the hold a lost controller heartbeat asks for.
    pub fn new(
        cfg: &SiteConfig,
        racks: Vec<Arc<Shared>>,
        mode: Arc<mode::ControlMode>,
    ) -> Option<Self> {
        let m = cfg.modbus.as_ref()?;
        let r = ratings(cfg);
        let probe = BankView {
            capacity_ah: r.capacity_ah,
            energy_wh: r.energy_wh,
            max_charge_w: r.max_charge_w,
            max_discharge_w: r.max_discharge_w,
            ..BankView::default()
        };
        let d = &cfg.protection.derating;
        let n = racks.len().max(1) as f32;
        let max_current = d.max_charge_current_a.max(d.max_discharge_current_a) * n;
        let cells = cfg.rack.cell_count() as f32;
        let scales = sunspec::Scales::for_bank(&probe, cells * 4.5, max_current);
        let (regs, writable) = sunspec::image(&probe, &scales);
        Some(Self {
            board: server::RegisterBoard::new(
                server::Image {
                    base: m.base,
                    regs,
                    writable,
                },
                mode,
            ),
            scales,
            base: m.base,
            heartbeat: 0,
            hb_timeout: m
                .heartbeat_timeout_s
                .map(std::time::Duration::from_secs_f64),
            on_hb_loss: m.on_heartbeat_loss,
            hb_lost: false,
            racks,
        })
    }

    pub fn publish(&mut self, cfg: &SiteConfig, racks: &[RackReport<'_>], bank: &BankState) {
        self.heartbeat = self.heartbeat.wrapping_add(1);
        let mut view = bank_view(cfg, racks, bank, self.heartbeat);
        let local = self.board.mode.is_local();
        view.local_control = local;
        let (regs, writable) = sunspec::image(&view, &self.scales);
        self.board.publish(server::Image {
            base: self.base,
            regs,
            writable,
        });
        if let Some(timeout) = self.hb_timeout {
            // Under local control the remote controller is not in charge:
            // its heartbeat is not supervised (and cannot be written).
            let lost = !local && self.board.ctrl_hb().is_none_or(|(_, age)| age > timeout);
            if lost != self.hb_lost {
                let hold = match (lost, self.on_hb_loss) {
                    (true, HeartbeatLoss::ZeroCurrent) => Some(HoldKind::ZeroCurrent),
                    (true, HeartbeatLoss::Open) => Some(HoldKind::Open),
                    _ => None,
                }
                .map(|kind| {
                    (
                        kind,
                        format!(
                            "SunSpec controller heartbeat (CtrlHb) silent for more than {} s",
                            timeout.as_secs_f64()
                        ),
                    )
                });
                if lost {
                    tracing::warn!(timeout_s = timeout.as_secs_f64(), action = ?self.on_hb_loss, "SunSpec controller heartbeat (CtrlHb) lost");
                } else {
                    tracing::info!("SunSpec controller heartbeat (CtrlHb) back");
                }
                for r in &self.racks {
                    r.set_hold(HoldSource::ControllerHeartbeat, hold.clone());
                }
            }
            self.hb_lost = lost;
        }
    }

    /// Whether the controller heartbeat is currently lost.
    pub fn heartbeat_lost(&self) -> bool {
        self.hb_lost
    }
}
