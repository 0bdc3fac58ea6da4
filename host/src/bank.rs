//! The bank (group level): several racks in parallel on one DC bus. Each
//! rack keeps its own BMUs, bus, protection, contactors and plugins; the
//! bank aggregates them into the one battery the EMS and the PCS see.
//!
//! Owns: the `[bank]` config, the aggregation rules (capacity-weighted SOC
//! and SOH, summed limits derated for imbalance) and the bank trip that
//! holds every rack open when one faults and isolation is off.
//!
//! May not touch: a rack's protection beyond [`Shared::set_hold`], which can
//! only open contactors or zero a rack's current, never close, clear or
//! raise anything; and the racks' plugins.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::SiteConfig;
use crate::io::modbus::pcs::LimitSource;
use crate::protection::limits::Curve;
use crate::protection::task::{Liveness, Shared};
use crate::protection::{AllowedCurrent, HoldKind, HoldSource, Status};

/// `[bank]`: the racks of a group and how they are combined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// A rack with a latched fault opens alone and the others carry on
    /// (true), or every rack is held open until it is reset (false).
    #[serde(default = "yes")]
    pub isolate_faulted_racks: bool,
    /// `[SOC spread between connected racks in pp, factor]` points: the
    /// bank limits are the sum of the rack limits times this factor, so
    /// racks far apart in SOC (which share current unevenly) are not
    /// driven to the sum of their limits.
    #[serde(default = "default_imbalance")]
    pub imbalance_derating: Curve,
    pub racks: Vec<BankRack>,
}

/// One rack of `[[bank.racks]]`. Geometry, limits and plugins come from
/// the site's `[rack]`, `[protection]` and `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankRack {
    /// Short name (`R1`): used in logs, events and its state directory.
    pub name: String,
    /// The CAN bus its BMUs are on. Racks naming the same bus share it (and
    /// need distinct `id_offset`s); in simulation each name is one virtual
    /// bus. Default: a bus of its own.
    #[serde(default)]
    pub bus: Option<String>,
    /// Added to every DBC message id for this rack (`can.id_offset`).
    #[serde(default)]
    pub id_offset: u32,
    /// Rated capacity, Ah; default `rack.capacity_ah`.
    #[serde(default)]
    pub capacity_ah: Option<f32>,
    /// Simulation only: this rack's initial SOC, % (default `sim.initial_soc_pct`).
    #[serde(default)]
    pub sim_initial_soc_pct: Option<f64>,
    /// Simulation only: faults injected into this rack (replacing
    /// `sim.faults`, which otherwise apply to every rack).
    #[serde(default)]
    pub sim_faults: Option<Vec<crate::sim::Fault>>,
}

fn yes() -> bool {
    true
}

fn default_imbalance() -> Curve {
    Curve(vec![[2.0, 1.0], [10.0, 0.5], [20.0, 0.0]])
}

impl BankConfig {
    /// Check the section; errors are `(field, message)` under `bank.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.racks.is_empty() {
            return Err(("racks".into(), "needs at least one rack".into()));
        }
        for (i, r) in self.racks.iter().enumerate() {
            let f = |k: &str| format!("racks[{i}].{k}");
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err((
                    f("name"),
                    format!(
                        "`{}`: use letters, digits, `-` and `_` (it names a directory)",
                        r.name
                    ),
                ));
            }
            if let Some(j) = self.racks[..i].iter().position(|o| o.name == r.name) {
                return Err((f("name"), format!("`{}` is also racks[{j}]", r.name)));
            }
            if let Some(j) = self.racks[..i]
                .iter()
                .position(|o| o.bus.is_some() && o.bus == r.bus && o.id_offset == r.id_offset)
            {
                return Err((
                    f("id_offset"),
                    format!(
                        "racks[{j}] is on bus `{}` with the same id_offset {:#x}: racks sharing a bus need distinct id ranges",
                        r.bus.as_deref().unwrap_or_default(),
                        r.id_offset
                    ),
                ));
            }
            if r.capacity_ah.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return Err((f("capacity_ah"), "must be a finite number > 0".into()));
            }
            if r.sim_initial_soc_pct
                .is_some_and(|s| !(0.0..=100.0).contains(&s))
            {
                return Err((f("sim_initial_soc_pct"), "must be 0..=100".into()));
            }
        }
        self.imbalance_derating
            .check("imbalance_derating", Some(false))
            .map_err(|e| (e.field().to_string(), e.message().to_string()))?;
        if let Some(p) = self
            .imbalance_derating
            .0
            .iter()
            .position(|p| !(0.0..=1.0).contains(&p[1]))
        {
            return Err((
                format!("imbalance_derating[{p}]"),
                "the factor must be within 0..=1".into(),
            ));
        }
        Ok(())
    }

    /// The site config of rack `i`: the site's, with this rack's name,
    /// bus offset, capacity and simulation seed. Modbus, the PCS link and
    /// `[bank]` belong to the bank, not to a rack.
    pub fn rack_config(&self, site: &SiteConfig, i: usize) -> SiteConfig {
        let r = &self.racks[i];
        let mut cfg = site.clone();
        cfg.site.name = format!("{}/{}", site.site.name, r.name);
        cfg.can.id_offset = site.can.id_offset + r.id_offset;
        if let Some(c) = r.capacity_ah {
            cfg.rack.capacity_ah = c;
            cfg.protection.soc.capacity_ah = c;
        }
        if let Some(sim) = &mut cfg.sim {
            sim.seed = sim.seed.wrapping_add(i as u64);
            if let Some(soc) = r.sim_initial_soc_pct {
                sim.initial_soc_pct = soc;
            }
            if let Some(faults) = &r.sim_faults {
                sim.faults = faults.clone();
            }
        }
        cfg.modbus = None;
        cfg.pcs = None;
        cfg.bank = None;
        cfg
    }
}

/// Rated capacity of every rack, Ah (one entry without `[bank]`).
pub fn rack_capacities(cfg: &SiteConfig) -> Vec<f32> {
    match &cfg.bank {
        None => vec![cfg.rack.capacity_ah],
        Some(b) => b
            .racks
            .iter()
            .map(|r| r.capacity_ah.unwrap_or(cfg.rack.capacity_ah))
            .collect(),
    }
}

/// What the bank needs from one rack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RackInput {
    pub capacity_ah: f32,
    /// The SOC plugin's estimate: what the bank reports, %.
    pub soc_pct: Option<f32>,
    /// Protection's own SOC (mean cell): what the imbalance derating is
    /// judged on, so a plugin cannot relax it, %.
    pub protection_soc_pct: Option<f32>,
    pub soh_pct: Option<f32>,
    /// Contactors closed.
    pub connected: bool,
    /// Protection's allowed current (zero unless connected).
    pub allowed: AllowedCurrent,
    /// The rack's protection ticked recently. A rack whose protection
    /// stopped counts as faulted and disconnected, whatever it last said.
    pub protection_alive: bool,
}

/// The bank as one battery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BankState {
    pub racks: usize,
    pub connected: usize,
    /// Capacity-weighted SOC of the connected racks (of every rack with an
    /// estimate while none is connected), %.
    pub soc_pct: Option<f32>,
    /// Capacity-weighted SOH, same racks, %.
    pub soh_pct: Option<f32>,
    /// Capacity of the connected racks, Ah.
    pub connected_capacity_ah: f32,
    /// Max − min SOC among connected racks with an estimate, pp.
    pub soc_spread_pct: f32,
    /// Applied to the summed limits (1 = no derating).
    pub imbalance_factor: f32,
    /// Racks whose protection stopped ticking (indices): while any has,
    /// the bank allows nothing.
    pub protection_dead: Vec<usize>,
    /// Σ connected racks' allowed current × `imbalance_factor`, A.
    pub allowed: AllowedCurrent,
}

/// Combine the racks. `imbalance` is `None` for a single-rack site (no
/// derating).
pub fn aggregate(imbalance: Option<&Curve>, racks: &[RackInput]) -> BankState {
    let dead: Vec<usize> = (0..racks.len())
        .filter(|&i| !racks[i].protection_alive)
        .collect();
    let connected: Vec<&RackInput> = racks
        .iter()
        .filter(|r| r.connected && r.protection_alive)
        .collect();
    let pool: Vec<&RackInput> = if connected.is_empty() {
        racks.iter().collect()
    } else {
        connected.clone()
    };
    let weighted = |f: fn(&RackInput) -> Option<f32>| {
        let (sum, cap) = pool
            .iter()
            .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (v, r.capacity_ah)))
            .fold((0.0f32, 0.0f32), |(s, c), (v, cap)| (s + v * cap, c + cap));
        (cap > 0.0).then(|| sum / cap)
    };
    let socs: Vec<f32> = connected
        .iter()
        .filter_map(|r| r.protection_soc_pct.filter(|s| s.is_finite()))
        .collect();
    let spread = match (
        socs.iter().copied().reduce(f32::max),
        socs.iter().copied().reduce(f32::min),
    ) {
        (Some(hi), Some(lo)) => hi - lo,
        _ => 0.0,
    };
    // A dead protection thread leaves the host in an undefined state:
    // nothing is allowed until it is back (its rack's watchdog opens it).
    let factor = if dead.is_empty() {
        imbalance.map_or(1.0, |c| c.eval(spread).clamp(0.0, 1.0))
    } else {
        0.0
    };
    let sum = |f: fn(&AllowedCurrent) -> f32| {
        connected
            .iter()
            .map(|r| f(&r.allowed))
            .filter(|a| a.is_finite() && *a > 0.0)
            // fold from +0.0: an empty f32 `sum` is -0.0.
            .fold(0.0, |s, a| s + a)
    };
    BankState {
        racks: racks.len(),
        connected: connected.len(),
        soc_pct: weighted(|r| r.soc_pct),
        soh_pct: weighted(|r| r.soh_pct),
        connected_capacity_ah: connected.iter().fold(0.0, |s, r| s + r.capacity_ah),
        soc_spread_pct: spread,
        imbalance_factor: factor,
        protection_dead: dead,
        allowed: AllowedCurrent {
            charge_a: sum(|a| a.charge_a) * factor,
            discharge_a: sum(|a| a.discharge_a) * factor,
        },
    }
}

/// One rack as the bank sees it: its name, rating, protection exchange and
/// protection's liveness.
#[derive(Clone)]
pub struct RackHandle {
    pub name: String,
    pub capacity_ah: f32,
    pub shared: Arc<Shared>,
    pub liveness: Liveness,
}

/// The live bank: aggregation on demand from the racks' latest published
/// status, and the bank trip.
pub struct Bank {
    isolate: bool,
    imbalance: Option<Curve>,
    pub racks: Vec<RackHandle>,
}

impl Bank {
    pub fn new(cfg: Option<&BankConfig>, racks: Vec<RackHandle>) -> Self {
        Self {
            isolate: cfg.is_none_or(|c| c.isolate_faulted_racks),
            imbalance: cfg.map(|c| c.imbalance_derating.clone()),
            racks,
        }
    }

    fn input(r: &RackHandle, status: &Status, soh_pct: Option<f32>) -> RackInput {
        RackInput {
            capacity_ah: r.capacity_ah,
            soc_pct: r.shared.pack_soc(),
            protection_soc_pct: status.soc.native_mean_pct,
            soh_pct,
            connected: status.closed(),
            allowed: status.allowed,
            protection_alive: r.liveness.alive(),
        }
    }

    /// Whether every rack's protection is ticking.
    pub fn protection_alive(&self) -> bool {
        self.racks.iter().all(|r| r.liveness.alive())
    }

    /// The bank now. `soh_pct` per rack comes from the control cycle
    /// (protection does not track SOH); missing entries count as unknown.
    pub fn state(&self, soh_pct: &[Option<f32>]) -> BankState {
        let inputs: Vec<RackInput> = self
            .racks
            .iter()
            .enumerate()
            .map(|(i, r)| Self::input(r, &r.shared.status(), soh_pct.get(i).copied().flatten()))
            .collect();
        aggregate(self.imbalance.as_ref(), &inputs)
    }

    /// The bank trip: without isolation, a latched fault in one rack holds
    /// every other rack open until that rack is reset. Returns the rack
    /// that trips the bank, if any. Called every protection period.
    pub fn supervise(&self) -> Option<usize> {
        if self.isolate {
            return None;
        }
        let statuses: Vec<Arc<Status>> = self.racks.iter().map(|r| r.shared.status()).collect();
        let tripping = statuses.iter().position(|s| !s.latched.is_empty());
        for (i, r) in self.racks.iter().enumerate() {
            let hold = match tripping {
                Some(t) if t != i => Some((
                    HoldKind::Open,
                    format!(
                        "bank trip: rack {} latched ({}); isolate_faulted_racks = false",
                        self.racks[t].name, statuses[t].latched[0].message
                    ),
                )),
                _ => None,
            };
            // Unchanged holds are not re-sent (protection records changes).
            let current = r
                .shared
                .holds()
                .into_iter()
                .find(|h| h.source == HoldSource::Bank)
                .map(|h| (h.kind, h.reason));
            if current != hold {
                r.shared.set_hold(HoldSource::Bank, hold);
            }
        }
        tripping
    }
}

impl LimitSource for Bank {
    fn allowed(&self) -> AllowedCurrent {
        self.state(&[]).allowed
    }
    fn protection_alive(&self) -> bool {
        Bank::protection_alive(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rack(cap: f32, soc: f32, connected: bool, charge_a: f32) -> RackInput {
        RackInput {
            capacity_ah: cap,
            soc_pct: Some(soc),
            protection_soc_pct: Some(soc),
            soh_pct: Some(100.0),
            connected,
            protection_alive: true,
            allowed: if connected {
                AllowedCurrent {
                    charge_a,
                    discharge_a: charge_a,
                }
            } else {
                AllowedCurrent::ZERO
            },
        }
    }

    #[test]
    fn soc_is_capacity_weighted_and_limits_add_up() {
        let s = aggregate(
            Some(&default_imbalance()),
            &[
                rack(280.0, 50.0, true, 100.0),
                rack(140.0, 51.0, true, 50.0),
            ],
        );
        assert!((s.soc_pct.unwrap() - (280.0 * 50.0 + 140.0 * 51.0) / 420.0).abs() < 1e-4);
        assert_eq!(s.imbalance_factor, 1.0);
        assert_eq!(s.allowed.charge_a, 150.0);
        assert_eq!(s.connected_capacity_ah, 420.0);
    }

    #[test]
    fn an_isolated_rack_drops_out_of_soc_and_limits() {
        let s = aggregate(
            Some(&default_imbalance()),
            &[
                rack(280.0, 50.0, true, 100.0),
                rack(280.0, 10.0, false, 100.0),
            ],
        );
        assert_eq!(s.connected, 1);
        assert_eq!(s.soc_pct, Some(50.0));
        assert_eq!(s.soc_spread_pct, 0.0);
        assert_eq!(s.allowed.charge_a, 100.0);
        // Nothing connected: SOC over every rack, nothing allowed.
        let s = aggregate(
            None,
            &[rack(280.0, 50.0, false, 0.0), rack(280.0, 10.0, false, 0.0)],
        );
        assert_eq!(s.soc_pct, Some(30.0));
        assert_eq!(s.allowed, AllowedCurrent::ZERO);
        assert!(s.allowed.charge_a.is_sign_positive(), "+0 A, not -0 A");
    }

    #[test]
    fn imbalance_derates_the_sum() {
        // 6 pp apart: halfway between (2, 1.0) and (10, 0.5) -> 0.75.
        let s = aggregate(
            Some(&default_imbalance()),
            &[
                rack(280.0, 50.0, true, 100.0),
                rack(280.0, 56.0, true, 100.0),
            ],
        );
        assert!((s.imbalance_factor - 0.75).abs() < 1e-5);
        assert!((s.allowed.charge_a - 150.0).abs() < 1e-3);
    }

    #[test]
    fn plugins_that_hide_an_imbalance_do_not_relax_the_derating() {
        // The plugins say both racks are at 53 %; protection counts 50 and 56.
        let mut a = rack(280.0, 53.0, true, 100.0);
        let mut b = rack(280.0, 53.0, true, 100.0);
        a.protection_soc_pct = Some(50.0);
        b.protection_soc_pct = Some(56.0);
        let s = aggregate(Some(&default_imbalance()), &[a, b]);
        assert_eq!(s.soc_pct, Some(53.0), "the bank still reports the estimate");
        assert!((s.soc_spread_pct - 6.0).abs() < 1e-5);
        assert!((s.imbalance_factor - 0.75).abs() < 1e-5);
    }

    #[test]
    fn a_rack_whose_protection_stopped_is_faulted_and_the_bank_allows_nothing() {
        let mut dead = rack(280.0, 50.0, true, 100.0);
        dead.protection_alive = false;
        let s = aggregate(
            Some(&default_imbalance()),
            &[rack(280.0, 50.0, true, 100.0), dead],
        );
        assert_eq!(s.protection_dead, vec![1]);
        assert_eq!(s.connected, 1, "a dead rack is not counted as connected");
        assert_eq!(s.allowed, AllowedCurrent::ZERO);
    }

    proptest! {
        /// The bank never allows more than the sum of what its connected
        /// racks' protection allows, nor anything when none is connected.
        #[test]
        fn never_above_the_connected_racks(
            racks in prop::collection::vec(
                (1.0f32..500.0, 0.0f32..100.0, any::<bool>(), prop_oneof![0.0f32..400.0, Just(f32::NAN)]),
                1..6)
        ) {
            let inputs: Vec<RackInput> = racks.iter().map(|&(c, s, on, a)| rack(c, s, on, a)).collect();
            let st = aggregate(Some(&default_imbalance()), &inputs);
            let cap: f32 = inputs.iter().filter(|r| r.connected)
                .map(|r| if r.allowed.charge_a.is_finite() { r.allowed.charge_a } else { 0.0 }).sum();
            prop_assert!(st.allowed.charge_a >= 0.0 && st.allowed.charge_a <= cap + 1e-3);
            prop_assert!(st.allowed.charge_a.is_finite());
            if st.connected == 0 {
                prop_assert_eq!(st.allowed, AllowedCurrent::ZERO);
            }
            if let Some(soc) = st.soc_pct {
                prop_assert!((0.0..=100.0).contains(&soc));
            }
        }
    }
}
