//! The declarative limit table: one row per protected quantity, in the
//! order of [`Quantity`].
//!
//! Owns: what each quantity *is* — its config key and unit, the direction
//! it trips in and the current it blocks, where its value comes from, when
//! its MSL applies, whether its latch survives a restart, what a reset
//! needs, and which tiers it has. Validation, evaluation, the event
//! records' actions and the table in `SAFETY.md` are driven from here (a
//! test keeps `SAFETY.md` equal to [`markdown`]).
//!
//! May not touch: limits (the site's numbers are in [`crate::limits`]) or
//! state. Plain data.

use crate::limits::Direction;
use crate::Quantity;

/// Which current a raised RSL forbids (an MSL opens the contactors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    Charge,
    Discharge,
    Both,
    /// A warning only (MOL-only quantities).
    Nothing,
}

/// Where a quantity's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    MaxCellVoltage,
    MinCellVoltage,
    MaxCellTemp,
    MinCellTemp,
    /// Highest minus lowest cell temperature.
    CellTempSpread,
    /// Highest minus lowest cell voltage.
    CellVoltageSpread,
    /// Pack current while charging (positive).
    ChargeCurrent,
    /// Pack current magnitude while discharging.
    DischargeCurrent,
    /// |Σ cell voltages − pack voltage|.
    PackVoltageMismatch,
    /// Per-source and per-message freshness (acquisition).
    Freshness,
    /// Every reading against its sensor's physical range.
    SensorRanges,
    /// The current reading's last change.
    CurrentChanges,
    /// The DC-link voltage and the current against the contactor command.
    ContactorFeedback,
    /// Protection's own SOC against the SOC plugin's.
    SocEstimates,
    /// The event sink's report of records not on disk.
    EventRecord,
}

/// When a raised MSL may latch. Charge temperature limits apply while
/// charging, discharge limits otherwise; MOL and RSL always shape the
/// permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MslWhen {
    Always,
    Charging,
    NotCharging,
}

/// What an authorised reset needs, besides fresh data from every source
/// for the arming window (which every reset needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetRule {
    /// The MSL monitor has released: the value is back past its hysteresis.
    TierReleased,
    /// Nothing more: fresh data is the cleared condition.
    FreshData,
    /// Every reading back inside its sensor range.
    RangesBack,
    /// The current reading changed within the last second.
    CurrentMoving,
    /// Open for `open_timeout_ms`, no current, the link discharged.
    WeldCleared,
    /// The quantity never latches.
    NeverLatches,
}

/// Which tiers the quantity has. Anything but [`Tiering::Three`] is an
/// exception, listed in `SAFETY.md` with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiering {
    /// MOL, RSL and MSL, all required.
    Three,
    /// An MSL only (its config is one tier).
    MslOnly,
    /// A MOL warning only.
    MolOnly,
    /// Not tiered: its own timeout or check, then open and latch.
    Untiered,
}

/// One quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub quantity: Quantity,
    /// Its tiers' key below `[protection]`, or where its settings live.
    pub key: &'static str,
    pub unit: &'static str,
    pub direction: Direction,
    pub blocks: Blocks,
    pub source: Source,
    pub msl_when: MslWhen,
    /// The latch survives a host restart (restored from the event record).
    pub persistent: bool,
    pub reset: ResetRule,
    pub tiering: Tiering,
}

const fn tiered(
    quantity: Quantity,
    key: &'static str,
    unit: &'static str,
    direction: Direction,
    blocks: Blocks,
    source: Source,
    msl_when: MslWhen,
) -> Row {
    Row {
        quantity,
        key,
        unit,
        direction,
        blocks,
        source,
        msl_when,
        persistent: false,
        reset: ResetRule::TierReleased,
        tiering: Tiering::Three,
    }
}

const fn untiered(quantity: Quantity, key: &'static str, source: Source, reset: ResetRule) -> Row {
    Row {
        quantity,
        key,
        unit: "-",
        direction: Direction::Above,
        blocks: Blocks::Both,
        source,
        msl_when: MslWhen::Always,
        persistent: false,
        reset,
        tiering: Tiering::Untiered,
    }
}

use Blocks as B;
use Direction::{Above, Below};
use MslWhen as W;
use Quantity as Q;
use Source as S;

/// Every quantity, in [`Quantity`] order.
pub const TABLE: [Row; 19] = [
    tiered(
        Q::CellOverVoltage,
        "cell_over_voltage_v",
        "V",
        Above,
        B::Charge,
        S::MaxCellVoltage,
        W::Always,
    ),
    tiered(
        Q::CellUnderVoltage,
        "cell_under_voltage_v",
        "V",
        Below,
        B::Discharge,
        S::MinCellVoltage,
        W::Always,
    ),
    Row {
        persistent: true,
        tiering: Tiering::MslOnly,
        ..tiered(
            Q::CellDeepUnderVoltage,
            "cell_deep_under_voltage_v",
            "V",
            Below,
            B::Both,
            S::MinCellVoltage,
            W::Always,
        )
    },
    tiered(
        Q::CellOverTempCharge,
        "cell_over_temp_charge_c",
        "°C",
        Above,
        B::Charge,
        S::MaxCellTemp,
        W::Charging,
    ),
    tiered(
        Q::CellOverTempDischarge,
        "cell_over_temp_discharge_c",
        "°C",
        Above,
        B::Discharge,
        S::MaxCellTemp,
        W::NotCharging,
    ),
    tiered(
        Q::CellUnderTempCharge,
        "cell_under_temp_charge_c",
        "°C",
        Below,
        B::Charge,
        S::MinCellTemp,
        W::Charging,
    ),
    tiered(
        Q::CellUnderTempDischarge,
        "cell_under_temp_discharge_c",
        "°C",
        Below,
        B::Discharge,
        S::MinCellTemp,
        W::NotCharging,
    ),
    tiered(
        Q::CellTempSpread,
        "cell_temp_spread_c",
        "°C",
        Above,
        B::Both,
        S::CellTempSpread,
        W::Always,
    ),
    tiered(
        Q::CellVoltageSpread,
        "cell_voltage_spread_v",
        "V",
        Above,
        B::Both,
        S::CellVoltageSpread,
        W::Always,
    ),
    tiered(
        Q::ChargeOverCurrent,
        "charge_over_current_a",
        "A",
        Above,
        B::Charge,
        S::ChargeCurrent,
        W::Always,
    ),
    tiered(
        Q::DischargeOverCurrent,
        "discharge_over_current_a",
        "A",
        Above,
        B::Discharge,
        S::DischargeCurrent,
        W::Always,
    ),
    tiered(
        Q::PackVoltageMismatch,
        "pack_voltage_mismatch_v",
        "V",
        Above,
        B::Both,
        S::PackVoltageMismatch,
        W::Always,
    ),
    untiered(
        Q::CommunicationLoss,
        "can.*_timeout_ms, can.stale_after_periods",
        S::Freshness,
        ResetRule::FreshData,
    ),
    untiered(
        Q::SensorOutOfRange,
        "plausibility.*_range_*, plausibility.range_delay_ms",
        S::SensorRanges,
        ResetRule::RangesBack,
    ),
    untiered(
        Q::CurrentSensorFrozen,
        "plausibility.current_frozen_ms",
        S::CurrentChanges,
        ResetRule::CurrentMoving,
    ),
    Row {
        persistent: true,
        ..untiered(
            Q::ContactorWelded,
            "contactors.weld_*",
            S::ContactorFeedback,
            ResetRule::WeldCleared,
        )
    },
    untiered(
        Q::PrechargeFailed,
        "contactors.precharge_*",
        S::ContactorFeedback,
        ResetRule::FreshData,
    ),
    Row {
        unit: "pp",
        blocks: B::Nothing,
        tiering: Tiering::MolOnly,
        ..untiered(
            Q::SocDisagreement,
            "soc.disagreement_pct",
            S::SocEstimates,
            ResetRule::NeverLatches,
        )
    },
    Row {
        blocks: B::Nothing,
        tiering: Tiering::MolOnly,
        ..untiered(
            Q::EventRecordFailing,
            "(none: raised by the event sink)",
            S::EventRecord,
            ResetRule::NeverLatches,
        )
    },
];

/// The row of `q`.
pub fn row(q: Quantity) -> &'static Row {
    &TABLE[q as usize]
}

/// The rows whose tiers come from `[protection]` (three tiers or MSL only).
pub fn tiered_rows() -> impl Iterator<Item = &'static Row> {
    TABLE
        .iter()
        .filter(|r| matches!(r.tiering, Tiering::Three | Tiering::MslOnly))
}

impl Blocks {
    /// What a raised RSL does, for the event record.
    pub fn rsl_action(self) -> &'static str {
        match self {
            Blocks::Charge => "zero charge current",
            Blocks::Discharge => "zero discharge current",
            Blocks::Both => "zero current",
            Blocks::Nothing => "warn",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Blocks::Charge => "charge",
            Blocks::Discharge => "discharge",
            Blocks::Both => "both",
            Blocks::Nothing => "none (warning)",
        }
    }
}

impl Tiering {
    fn label(self) -> &'static str {
        match self {
            Tiering::Three => "MOL, RSL, MSL",
            Tiering::MslOnly => "MSL only",
            Tiering::MolOnly => "MOL only",
            Tiering::Untiered => "own check, then open + latch",
        }
    }
}

impl ResetRule {
    fn label(self) -> &'static str {
        match self {
            ResetRule::TierReleased => "value back past the MSL hysteresis",
            ResetRule::FreshData => "fresh data for the arming window",
            ResetRule::RangesBack => "every reading back in range",
            ResetRule::CurrentMoving => "current reading moving again",
            ResetRule::WeldCleared => "open, no current, link discharged",
            ResetRule::NeverLatches => "never latches",
        }
    }
}

/// The table as the Markdown `SAFETY.md` carries.
pub fn markdown() -> String {
    let mut out = String::from(
        "| quantity | config | unit | trips | blocks | tiers | MSL applies | latch survives restart | reset needs |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &TABLE {
        let trips = match (r.tiering, r.direction) {
            (Tiering::Untiered, _) => "-",
            (_, Above) => "above",
            (_, Below) => "below",
        };
        let when = match r.msl_when {
            W::Always => "always",
            W::Charging => "while charging",
            W::NotCharging => "unless charging",
        };
        out.push_str(&format!(
            "| {:?} | `{}` | {} | {trips} | {} | {} | {when} | {} | {} |\n",
            r.quantity,
            r.key,
            r.unit,
            r.blocks.label(),
            r.tiering.label(),
            if r.persistent { "yes" } else { "no" },
            r.reset.label(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_quantity_in_enum_order() {
        for (i, r) in TABLE.iter().enumerate() {
            assert_eq!(r.quantity as usize, i, "{:?} is out of order", r.quantity);
        }
    }

    #[test]
    fn safety_md_carries_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../SAFETY.md");
        let safety = std::fs::read_to_string(path).expect("SAFETY.md");
        assert!(
            safety.contains(&markdown()),
            "SAFETY.md's limit table differs from the code; paste this:\n{}",
            markdown()
        );
    }
}
