//! The SunSpec register image: what an EMS, SCADA or PCS reads from the
//! battery over Modbus.
//!
//! Owns: the layout of the SunSpec header (`SunS`), the common model 1, the
//! battery model 802, the lithium-ion bank model 803 (one string per rack)
//! and the end marker; the scale factors; and the mapping of protection
//! tiers to the 802 `Evt1` alarm and warning bits. Layouts follow the
//! SunSpec model definitions (`model_1/802/803.json`, as shipped by
//! pysunspec2), point by point.
//!
//! May not touch: sockets (the server serves the image) or protection (it
//! only reads a [`BankView`]).

use crate::protection::contactor::ContactorState;
use crate::protection::limits::TierLevel;
use crate::protection::{ActiveTier, Quantity};

/// SunSpec "not implemented" markers.
pub const NA_U16: u16 = 0xFFFF;
pub const NA_I16: u16 = 0x8000;
pub const NA_U32: u32 = 0xFFFF_FFFF;

/// Lengths (registers after ID and L) of the models served.
pub const LEN_1: u16 = 66;
pub const LEN_802: u16 = 62;
/// Model 803: 26 fixed registers plus 32 per string.
pub const LEN_803_FIXED: u16 = 26;
pub const LEN_803_STRING: u16 = 32;

/// One rack, as a model 803 string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RackView {
    pub modules: u16,
    pub connected: bool,
    pub soc_pct: Option<f32>,
    pub soh_pct: Option<f32>,
    pub current_a: f32,
    pub cell_v_max: f32,
    /// 1-based module of the highest cell.
    pub cell_v_max_module: u16,
    pub cell_v_min: f32,
    pub cell_v_min_module: u16,
    pub cell_v_avg: f32,
    pub temp_max_c: f32,
    pub temp_max_module: u16,
    pub temp_min_c: f32,
    pub temp_min_module: u16,
    pub temp_avg_c: f32,
    /// Model 802 `Evt1` bits for this rack.
    pub events: u32,
    pub bleeding_cells: u16,
}

/// Everything the image shows; built by the report stage every cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BankView {
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub version: String,
    pub capacity_ah: f32,
    pub energy_wh: f32,
    pub max_charge_w: f32,
    pub max_discharge_w: f32,
    pub soc_pct: Option<f32>,
    pub soh_pct: Option<f32>,
    pub pack_v: f32,
    pub current_a: f32,
    pub allowed_charge_a: f32,
    pub allowed_discharge_a: f32,
    pub contactors: Option<ContactorState>,
    /// A fault is latched.
    pub faulted: bool,
    pub events: u32,
    /// Host heartbeat, incremented every cycle (802 `Hb`).
    pub heartbeat: u16,
    /// 802 `LocRemCtl`: under local control remote writes are refused.
    pub local_control: bool,
    pub racks: Vec<RackView>,
}

/// Where the writable points live, as register offsets from the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writable {
    pub ctrl_hb: u16,
    pub alm_rst: u16,
    pub set_op: u16,
    pub set_inv_state: u16,
    pub soc_rsv_max: u16,
    pub soc_rsv_min: u16,
    pub device_address: u16,
}

/// 802 `Evt1` bit numbers.
pub mod evt1 {
    pub const COMMUNICATION_ERROR: u32 = 0;
    pub const OVER_TEMP_ALARM: u32 = 1;
    pub const OVER_TEMP_WARNING: u32 = 2;
    pub const UNDER_TEMP_ALARM: u32 = 3;
    pub const UNDER_TEMP_WARNING: u32 = 4;
    pub const OVER_CHARGE_CURRENT_ALARM: u32 = 5;
    pub const OVER_CHARGE_CURRENT_WARNING: u32 = 6;
    pub const OVER_DISCHARGE_CURRENT_ALARM: u32 = 7;
    pub const OVER_DISCHARGE_CURRENT_WARNING: u32 = 8;
    pub const OVER_VOLT_ALARM: u32 = 9;
    pub const OVER_VOLT_WARNING: u32 = 10;
    pub const UNDER_VOLT_ALARM: u32 = 11;
    pub const UNDER_VOLT_WARNING: u32 = 12;
    pub const VOLTAGE_IMBALANCE_WARNING: u32 = 17;
    pub const TEMPERATURE_IMBALANCE_ALARM: u32 = 18;
    pub const TEMPERATURE_IMBALANCE_WARNING: u32 = 19;
    pub const CONTACTOR_ERROR: u32 = 20;
    pub const OTHER_ALARM: u32 = 25;
    pub const OTHER_WARNING: u32 = 26;
}

/// `Evt1` bit for a quantity: (alarm, warning). RSL and MSL are alarms
/// (current is stopped in that direction or the contactors open), MOL a
/// warning (derating).
fn evt1_bits(q: Quantity) -> (u32, u32) {
    use evt1::*;
    match q {
        Quantity::CellOverVoltage => (OVER_VOLT_ALARM, OVER_VOLT_WARNING),
        Quantity::CellUnderVoltage | Quantity::CellDeepUnderVoltage => {
            (UNDER_VOLT_ALARM, UNDER_VOLT_WARNING)
        }
        Quantity::CellOverTempCharge | Quantity::CellOverTempDischarge => {
            (OVER_TEMP_ALARM, OVER_TEMP_WARNING)
        }
        Quantity::CellUnderTempCharge | Quantity::CellUnderTempDischarge => {
            (UNDER_TEMP_ALARM, UNDER_TEMP_WARNING)
        }
        Quantity::ChargeOverCurrent => (OVER_CHARGE_CURRENT_ALARM, OVER_CHARGE_CURRENT_WARNING),
        Quantity::DischargeOverCurrent => {
            (OVER_DISCHARGE_CURRENT_ALARM, OVER_DISCHARGE_CURRENT_WARNING)
        }
        // 802 has no voltage-imbalance alarm bit; both tiers show the warning.
        Quantity::CellVoltageSpread => (VOLTAGE_IMBALANCE_WARNING, VOLTAGE_IMBALANCE_WARNING),
        Quantity::CellTempSpread => (TEMPERATURE_IMBALANCE_ALARM, TEMPERATURE_IMBALANCE_WARNING),
        Quantity::CommunicationLoss => (COMMUNICATION_ERROR, COMMUNICATION_ERROR),
        Quantity::ContactorWelded | Quantity::PrechargeFailed => (CONTACTOR_ERROR, CONTACTOR_ERROR),
        Quantity::PackVoltageMismatch
        | Quantity::SensorOutOfRange
        | Quantity::CurrentSensorFrozen
        // 802 has no SOC bit: the estimator disagreement is OtherWarning.
        | Quantity::SocDisagreement
        | Quantity::EventRecordFailing => (OTHER_ALARM, OTHER_WARNING),
    }
}

/// `Evt1` from protection's active tiers and latched faults.
pub fn events(active: &[ActiveTier], latched: &[Quantity]) -> u32 {
    let mut bits = 0u32;
    for a in active {
        let (alarm, warning) = evt1_bits(a.quantity);
        bits |= 1
            << if a.tier == TierLevel::Mol {
                warning
            } else {
                alarm
            };
    }
    for q in latched {
        bits |= 1 << evt1_bits(*q).0;
    }
    bits
}

/// Smallest power-of-ten scale factor (≥ `min`) at which `max_abs` fits in
/// a 16-bit register (`i16` if `signed`).
pub fn fit_sf(max_abs: f64, signed: bool, min: i16) -> i16 {
    let limit = if signed { 32767.0 } else { 65534.0 };
    let mut sf = min;
    while sf < 10 && max_abs / 10f64.powi(sf.into()) > limit {
        sf += 1;
    }
    sf
}

/// The scale factors of one image; fixed per site (from the ratings) so a
/// client may cache them, as SunSpec allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scales {
    pub ah: i16,
    pub wh: i16,
    pub w: i16,
    pub soc: i16,
    pub soh: i16,
    pub v: i16,
    pub cell_v: i16,
    pub a: i16,
    pub a_max: i16,
    pub tmp: i16,
}

impl Scales {
    pub fn for_bank(view: &BankView, max_pack_v: f32, max_current_a: f32) -> Self {
        Self {
            ah: fit_sf(view.capacity_ah.into(), false, -1),
            wh: fit_sf(view.energy_wh.into(), false, 0),
            w: fit_sf(
                f64::from(view.max_charge_w.max(view.max_discharge_w)) * 1.5,
                true,
                0,
            ),
            soc: -1,
            soh: -1,
            v: fit_sf(f64::from(max_pack_v) * 1.2, false, -1),
            cell_v: -3,
            a: fit_sf(f64::from(max_current_a) * 2.0, true, -1),
            a_max: fit_sf(f64::from(max_current_a) * 2.0, false, -1),
            tmp: -1,
        }
    }
}

fn scaled(v: f32, sf: i16, signed: bool) -> u16 {
    if !v.is_finite() {
        return if signed { NA_I16 } else { NA_U16 };
    }
    let r = (f64::from(v) / 10f64.powi(sf.into())).round();
    if signed {
        r.clamp(-32767.0, 32767.0) as i16 as u16
    } else {
        r.clamp(0.0, 65534.0) as u16
    }
}

fn opt(v: Option<f32>) -> f32 {
    v.unwrap_or(f32::NAN)
}

/// A register image under construction.
struct Image(Vec<u16>);

impl Image {
    fn u16(&mut self, v: u16) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.push((v >> 16) as u16);
        self.0.push(v as u16);
    }
    fn val(&mut self, v: f32, sf: i16, signed: bool) {
        self.0.push(scaled(v, sf, signed));
    }
    fn sf(&mut self, sf: i16) {
        self.0.push(sf as u16);
    }
    fn string(&mut self, s: &str, regs: usize) {
        let mut b = s.as_bytes().to_vec();
        b.resize(regs * 2, 0);
        for pair in b.chunks(2) {
            self.0.push(u16::from_be_bytes([pair[0], pair[1]]));
        }
    }
    fn len(&self) -> u16 {
        self.0.len() as u16
    }
}

/// Build the whole image (header, models 1, 802, 803, end marker). Offsets
/// are relative to the SunSpec base address.
pub fn image(view: &BankView, sc: &Scales) -> (Vec<u16>, Writable) {
    let mut m = Image(Vec::with_capacity(256));
    m.string("SunS", 2);

    // Model 1: common.
    m.u16(1);
    m.u16(LEN_1);
    m.string(&view.manufacturer, 16);
    m.string(&view.model, 16);
    m.string("", 8);
    m.string(&view.version, 8);
    m.string(&view.serial, 16);
    let device_address = m.len();
    m.u16(1);
    m.u16(NA_U16); // Pad

    // Model 802: battery.
    let start_802 = m.len();
    m.u16(802);
    m.u16(LEN_802);
    m.val(view.capacity_ah, sc.ah, false);
    m.val(view.energy_wh, sc.wh, false);
    m.val(view.max_charge_w, sc.w, false);
    m.val(view.max_discharge_w, sc.w, false);
    m.u16(NA_U16); // DisChaRte
    m.val(100.0, sc.soc, false); // SoCMax
    m.val(0.0, sc.soc, false); // SoCMin
    let soc_rsv_max = m.len();
    m.u16(NA_U16); // SocRsvMax
    let soc_rsv_min = m.len();
    m.u16(NA_U16); // SoCRsvMin
    m.val(opt(view.soc_pct), sc.soc, false);
    m.val(opt(view.soc_pct.map(|s| 100.0 - s)), sc.soc, false); // DoD
    m.val(opt(view.soh_pct), sc.soh, false);
    m.u32(NA_U32); // NCyc: not counted yet
    m.u16(charge_state(view));
    m.u16(u16::from(view.local_control)); // LocRemCtl: 0 remote, 1 local
    m.u16(view.heartbeat);
    let ctrl_hb = m.len();
    m.u16(0); // CtrlHb
    let alm_rst = m.len();
    m.u16(0); // AlmRst
    m.u16(4); // Typ: lithium-ion
    m.u16(state(view));
    m.u16(NA_U16); // StateVnd
    m.u32(NA_U32); // WarrDt
    m.u32(view.events);
    m.u32(0); // Evt2
    m.u32(0); // EvtVnd1
    m.u32(0); // EvtVnd2
    m.val(view.pack_v, sc.v, false);
    m.u16(NA_U16); // VMax
    m.u16(NA_U16); // VMin
    let (hi, lo) = extremes(&view.racks);
    m.val(hi.map_or(f32::NAN, |(r, _)| r.cell_v_max), sc.cell_v, false);
    m.u16(hi.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.u16(hi.map_or(NA_U16, |(r, _)| r.cell_v_max_module));
    m.val(lo.map_or(f32::NAN, |(r, _)| r.cell_v_min), sc.cell_v, false);
    m.u16(lo.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.u16(lo.map_or(NA_U16, |(r, _)| r.cell_v_min_module));
    m.val(
        avg(view.racks.iter().map(|r| r.cell_v_avg)),
        sc.cell_v,
        false,
    );
    m.val(view.current_a, sc.a, true);
    m.val(view.allowed_charge_a, sc.a_max, false);
    m.val(view.allowed_discharge_a, sc.a_max, false);
    m.val(view.pack_v * view.current_a, sc.w, true);
    m.u16(0); // ReqInvState: no request
    m.u16(NA_I16); // ReqW
    let set_op = m.len();
    m.u16(if view.contactors == Some(ContactorState::Closed) {
        1
    } else {
        2
    });
    let set_inv_state = m.len();
    m.u16(NA_U16); // SetInvState
    for sf in [
        sc.ah, sc.wh, sc.w, 0, sc.soc, sc.soc, sc.soh, sc.v, sc.cell_v, sc.a, sc.a_max, sc.w,
    ] {
        m.sf(sf);
    }
    debug_assert_eq!(m.len() - start_802 - 2, LEN_802);

    // Model 803: lithium-ion bank, one string per rack.
    let start_803 = m.len();
    let n = view.racks.len() as u16;
    m.u16(803);
    m.u16(LEN_803_FIXED + LEN_803_STRING * n);
    m.u16(n);
    m.u16(view.racks.iter().filter(|r| r.connected).count() as u16);
    let tmax = pick(&view.racks, |r| r.temp_max_c, true);
    let tmin = pick(&view.racks, |r| r.temp_min_c, false);
    m.val(tmax.map_or(f32::NAN, |(r, _)| r.temp_max_c), sc.tmp, true);
    m.u16(tmax.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.u16(tmax.map_or(NA_U16, |(r, _)| r.temp_max_module));
    m.val(tmin.map_or(f32::NAN, |(r, _)| r.temp_min_c), sc.tmp, true);
    m.u16(tmin.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.u16(tmin.map_or(NA_U16, |(r, _)| r.temp_min_module));
    m.val(avg(view.racks.iter().map(|r| r.temp_avg_c)), sc.tmp, true);
    // String voltages are not measured per rack here: not implemented.
    for _ in 0..5 {
        m.u16(NA_U16);
    }
    let amax = pick(&view.racks, |r| r.current_a, true);
    let amin = pick(&view.racks, |r| r.current_a, false);
    m.val(amax.map_or(f32::NAN, |(r, _)| r.current_a), sc.a, true);
    m.u16(amax.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.val(amin.map_or(f32::NAN, |(r, _)| r.current_a), sc.a, true);
    m.u16(amin.map_or(NA_U16, |(_, i)| i as u16 + 1));
    m.val(avg(view.racks.iter().map(|r| r.current_a)), sc.a, true);
    m.u16(view.racks.iter().map(|r| r.bleeding_cells).sum());
    for sf in [sc.cell_v, sc.tmp, sc.a, sc.soh, sc.soc, sc.v] {
        m.sf(sf);
    }
    debug_assert_eq!(m.len() - start_803 - 2, LEN_803_FIXED);
    for r in &view.racks {
        m.u16(r.modules);
        // StrSt bit 0: string enabled; bit 1: contactor closed.
        m.u32(1 | if r.connected { 2 } else { 0 });
        m.u16(NA_U16); // StrConFail
        m.val(opt(r.soc_pct), sc.soc, false);
        m.val(opt(r.soh_pct), sc.soh, false);
        m.val(r.current_a, sc.a, true);
        m.val(r.cell_v_max, sc.cell_v, false);
        m.u16(r.cell_v_max_module);
        m.val(r.cell_v_min, sc.cell_v, false);
        m.u16(r.cell_v_min_module);
        m.val(r.cell_v_avg, sc.cell_v, false);
        m.val(r.temp_max_c, sc.tmp, true);
        m.u16(r.temp_max_module);
        m.val(r.temp_min_c, sc.tmp, true);
        m.u16(r.temp_min_module);
        m.val(r.temp_avg_c, sc.tmp, true);
        m.u16(NA_U16); // StrDisRsn
        m.u32(NA_U32); // StrConSt
        m.u32(r.events);
        m.u32(0); // StrEvt2
        m.u32(0); // StrEvtVnd1
        m.u32(0); // StrEvtVnd2
        m.u16(NA_U16); // StrSetEna
        m.u16(NA_U16); // StrSetCon
        m.u16(NA_U16); // Pad1
        m.u16(NA_U16); // Pad2
    }
    debug_assert_eq!(m.len() - start_803 - 2, LEN_803_FIXED + LEN_803_STRING * n);

    // End marker.
    m.u16(0xFFFF);
    m.u16(0);
    (
        m.0,
        Writable {
            ctrl_hb,
            alm_rst,
            set_op,
            set_inv_state,
            soc_rsv_max,
            soc_rsv_min,
            device_address,
        },
    )
}

/// 802 `ChaSt` from the current and SOC.
fn charge_state(v: &BankView) -> u16 {
    match (v.contactors, v.soc_pct) {
        (Some(ContactorState::Closed), Some(s)) if s >= 99.5 => 5, // FULL
        (Some(ContactorState::Closed), Some(s)) if s <= 0.5 => 2,  // EMPTY
        (Some(ContactorState::Closed), _) if v.current_a > 1.0 => 4, // CHARGING
        (Some(ContactorState::Closed), _) if v.current_a < -1.0 => 3, // DISCHARGING
        (Some(ContactorState::Closed), _) => 6,                    // HOLDING
        _ => 1,                                                    // OFF
    }
}

/// 802 `State` from the contactors and faults.
fn state(v: &BankView) -> u16 {
    if v.faulted {
        return 99;
    }
    match v.contactors {
        Some(ContactorState::Closed) => 3,
        Some(ContactorState::Precharge) => 2,
        Some(ContactorState::Opening) => 6,
        Some(ContactorState::Open) => 1,
        None => 2,
    }
}

fn avg(it: impl Iterator<Item = f32>) -> f32 {
    let (s, n) = it
        .filter(|v| v.is_finite())
        .fold((0.0f32, 0u32), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f32::NAN
    } else {
        s / n as f32
    }
}

fn pick(racks: &[RackView], f: impl Fn(&RackView) -> f32, max: bool) -> Option<(&RackView, usize)> {
    racks
        .iter()
        .enumerate()
        .filter(|(_, r)| f(r).is_finite())
        .reduce(|a, b| {
            let better = if max {
                f(b.1) > f(a.1)
            } else {
                f(b.1) < f(a.1)
            };
            if better {
                b
            } else {
                a
            }
        })
        .map(|(i, r)| (r, i))
}

#[allow(clippy::type_complexity)]
fn extremes(racks: &[RackView]) -> (Option<(&RackView, usize)>, Option<(&RackView, usize)>) {
    (
        pick(racks, |r| r.cell_v_max, true),
        pick(racks, |r| r.cell_v_min, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(racks: usize) -> BankView {
        BankView {
            manufacturer: "bmshost".into(),
            model: "demo".into(),
            serial: "site-1".into(),
            version: "0.1.0".into(),
            capacity_ah: 280.0,
            energy_wh: 114_688.0,
            max_charge_w: 120_000.0,
            max_discharge_w: 120_000.0,
            soc_pct: Some(55.5),
            soh_pct: Some(98.2),
            pack_v: 420.3,
            current_a: -123.4,
            allowed_charge_a: 280.0,
            allowed_discharge_a: 200.0,
            contactors: Some(ContactorState::Closed),
            racks: (0..racks)
                .map(|i| RackView {
                    modules: 8,
                    connected: true,
                    cell_v_max: 3.301 + i as f32 * 0.01,
                    cell_v_max_module: 3,
                    cell_v_min: 3.201,
                    cell_v_min_module: 5,
                    cell_v_avg: 3.25,
                    temp_max_c: 30.0,
                    temp_min_c: -5.5,
                    temp_avg_c: 20.0,
                    current_a: -123.4,
                    ..RackView::default()
                })
                .collect(),
            ..BankView::default()
        }
    }

    #[test]
    fn layout_matches_the_model_lengths() {
        for racks in [1, 4] {
            let v = view(racks);
            let (img, w) = image(&v, &Scales::for_bank(&v, 500.0, 300.0));
            assert_eq!(&img[..2], &[0x5375, 0x6e53]); // "SunS"
            assert_eq!((img[2], img[3]), (1, LEN_1));
            let m802 = 4 + LEN_1 as usize;
            assert_eq!((img[m802], img[m802 + 1]), (802, LEN_802));
            let m803 = m802 + 2 + LEN_802 as usize;
            assert_eq!(img[m803], 803);
            let len803 = LEN_803_FIXED + LEN_803_STRING * racks as u16;
            assert_eq!(img[m803 + 1], len803);
            let end = m803 + 2 + len803 as usize;
            assert_eq!(&img[end..], &[0xFFFF, 0]);
            // Writable points sit where model 802 defines them.
            assert_eq!(w.ctrl_hb as usize, m802 + 2 + 17);
            assert_eq!(w.alm_rst as usize, m802 + 2 + 18);
            assert_eq!(w.set_op as usize, m802 + 2 + 48);
        }
    }

    #[test]
    fn values_are_scaled_and_signed() {
        let v = view(1);
        let sc = Scales::for_bank(&v, 500.0, 300.0);
        let (img, _) = image(&v, &sc);
        let m802 = 4 + LEN_1 as usize + 2;
        let at = |off: usize| img[m802 + off];
        let sf = |off: usize| at(off) as i16;
        // SoC at offset 9 with SoC_SF at 54.
        assert!((f64::from(at(9)) * 10f64.powi(sf(54).into()) - 55.5).abs() < 1e-9);
        // A (int16) at 42 with A_SF at 59: negative current survives.
        let a = f64::from(at(42) as i16) * 10f64.powi(sf(59).into());
        assert!((a + 123.4).abs() < 1e-9, "{a}");
        // CellVMax with location: rack 1 (string), module 3.
        assert_eq!(at(35), 3301);
        assert_eq!((at(36), at(37)), (1, 3));
        // Unknown SOC is "not implemented", not zero.
        let mut unknown = v.clone();
        unknown.soc_pct = None;
        let (img, _) = image(&unknown, &sc);
        assert_eq!(img[m802 + 9], NA_U16);
    }

    #[test]
    fn protection_tiers_map_to_alarm_and_warning_bits() {
        let bits = events(
            &[
                ActiveTier {
                    quantity: Quantity::CellOverVoltage,
                    tier: TierLevel::Mol,
                },
                ActiveTier {
                    quantity: Quantity::CellOverTempCharge,
                    tier: TierLevel::Rsl,
                },
            ],
            &[Quantity::CommunicationLoss],
        );
        assert_eq!(
            bits,
            1 << evt1::OVER_VOLT_WARNING
                | 1 << evt1::OVER_TEMP_ALARM
                | 1 << evt1::COMMUNICATION_ERROR
        );
    }

    #[test]
    fn scale_factors_fit_the_ratings() {
        assert_eq!(fit_sf(120_000.0 * 1.5, true, 0), 1);
        assert_eq!(fit_sf(4.0 * 120_000.0 * 1.5, true, 0), 2);
        assert_eq!(fit_sf(280.0, false, -1), -1);
        assert_eq!(fit_sf(1500.0 * 1.2, false, -1), -1);
    }
}
