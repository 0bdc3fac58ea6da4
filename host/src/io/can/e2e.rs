//! End-to-end supervision of inbound messages (`[[can.e2e]]`).
//!
//! Owns: resolving each configured entry to a DBC message and its
//! [`E2eProfile`], and at run time the per-page counter state, the runs of
//! bad and good frames, and whether each protected message counts as lost.
//! A repeated counter is what a gateway replaying a cached frame looks
//! like: the frames keep coming on time, so without this check they would
//! look fresh forever.
//!
//! May not touch: the values (acquisition drops every frame this rejects)
//! or protection (which sees a lost message as stale sources).

use std::collections::HashMap;

use bms_can::e2e::{E2eFault, E2eProfile};

use super::dbc::{Dbc, MessageDef};
use super::mapping::{MappingError, WatchedMessage};
use super::CanId;
use crate::config::{expand_template, SiteConfig};

/// A protected message, resolved.
#[derive(Debug, Clone)]
pub struct Protected {
    pub message: usize,
    pub profile: E2eProfile,
    pub max_bad: u32,
}

/// Resolve `can.e2e` against the DBC: every entry, for every module when a
/// signal name has `{module}`. Only inbound mapped messages can be
/// protected, and each message at most once.
pub fn resolve(
    cfg: &SiteConfig,
    dbc: &Dbc,
    watched: &[WatchedMessage],
) -> Result<Vec<Protected>, MappingError> {
    let mut out: Vec<Protected> = Vec::new();
    for (i, entry) in cfg.can.e2e.iter().enumerate() {
        let err = |field: &str, message: String| MappingError::E2e {
            site: cfg.source.clone(),
            field: format!("can.e2e[{i}].{field}"),
            message,
            dbc: dbc.origin().to_string(),
        };
        if entry.max_bad == 0 {
            return Err(err("max_bad", "must be at least 1".into()));
        }
        let names = [("counter", &entry.counter), ("crc8", &entry.crc8)];
        let templated = names
            .iter()
            .any(|(_, n)| n.as_deref().is_some_and(|n| n.contains("{module}")));
        let modules = if templated { cfg.rack.modules } else { 1 };
        for m in 0..modules {
            let mut found: Vec<(&str, String, usize)> = Vec::new();
            for (field, name) in names {
                let Some(template) = name else { continue };
                let name =
                    expand_template(template, &[("module", m)]).map_err(|e| err(field, e))?;
                let r = dbc
                    .resolve_signal(&name)
                    .map_err(|e| err(field, e.to_string()))?;
                found.push((field, name, r.message));
            }
            let Some(&(field, _, message)) = found.first() else {
                return Err(err("counter", "give a `counter`, a `crc8` or both".into()));
            };
            if found.iter().any(|f| f.2 != message) {
                return Err(err(
                    "crc8",
                    "the counter and the CRC are in different messages".into(),
                ));
            }
            let msg = dbc.message_at(message);
            if !watched.iter().any(|w| w.message == message) {
                return Err(err(
                    field,
                    format!(
                        "message `{}` carries no mapped inbound signal; only those are supervised",
                        msg.name
                    ),
                ));
            }
            if out.iter().any(|p| p.message == message) {
                return Err(err(
                    field,
                    format!("message `{}` is protected twice", msg.name),
                ));
            }
            let pick = |f: &str| found.iter().find(|x| x.0 == f).map(|x| x.1.as_str());
            let profile =
                E2eProfile::new(msg, pick("counter"), pick("crc8"), entry.max_counter_jump)
                    .map_err(|e| err(field, e.to_string()))?;
            out.push(Protected {
                message,
                profile,
                max_bad: entry.max_bad,
            });
        }
    }
    Ok(out)
}

/// What end-to-end checks rejected, for [`super::acquire::AcquireStats`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct E2eStats {
    pub e2e_repeated: u64,
    pub e2e_skipped: u64,
    pub e2e_bad_crc: u64,
    /// Times a protected message was declared lost.
    pub e2e_lost: u64,
}

#[derive(Debug, Clone, Default)]
struct Page {
    last_counter: Option<u16>,
    bad_run: u32,
    good_run: u32,
    lost: bool,
}

#[derive(Debug)]
struct Entry {
    protected: Protected,
    /// By multiplexor value (`None`: not multiplexed).
    pages: HashMap<Option<u64>, Page>,
}

/// Run-time state of every protected message.
#[derive(Debug, Default)]
pub struct E2eSupervisor {
    /// Per DBC message index: its entry.
    of_message: Vec<Option<usize>>,
    entries: Vec<Entry>,
}

impl E2eSupervisor {
    pub fn new(messages: usize, protected: &[Protected]) -> Self {
        let mut of_message = vec![None; messages];
        for (i, p) in protected.iter().enumerate() {
            of_message[p.message] = Some(i);
        }
        Self {
            of_message,
            entries: protected
                .iter()
                .map(|p| Entry {
                    protected: p.clone(),
                    pages: HashMap::new(),
                })
                .collect(),
        }
    }

    /// Check one length-checked frame of message `index`, counting what
    /// fails in `stats`. `Err`: drop the frame.
    pub fn check(
        &mut self,
        index: usize,
        msg: &MessageDef,
        id: CanId,
        data: &[u8],
        now_ms: u64,
        stats: &mut E2eStats,
    ) -> Result<(), E2eFault> {
        let Some(e) = self.of_message.get(index).copied().flatten() else {
            return Ok(());
        };
        let entry = &mut self.entries[e];
        let was_lost = entry.pages.values().any(|p| p.lost);
        let page_key = msg.mux_value(data);
        let page = entry.pages.entry(page_key).or_default();
        let verdict = entry
            .protected
            .profile
            .check(msg, id, data, &mut page.last_counter);
        let max = entry.protected.max_bad;
        match verdict {
            Ok(()) => {
                page.bad_run = 0;
                page.good_run = page.good_run.saturating_add(1);
                if page.lost && page.good_run >= max {
                    page.lost = false;
                }
            }
            Err(fault) => {
                page.good_run = 0;
                page.bad_run = page.bad_run.saturating_add(1);
                let counter = match fault {
                    E2eFault::Repeated { .. } => &mut stats.e2e_repeated,
                    E2eFault::Skipped { .. } => &mut stats.e2e_skipped,
                    E2eFault::BadCrc { .. } => &mut stats.e2e_bad_crc,
                };
                *counter += 1;
                if page.bad_run >= max {
                    page.lost = true;
                }
            }
        }
        let lost = entry.pages.values().any(|p| p.lost);
        if lost && !was_lost {
            stats.e2e_lost += 1;
            tracing::warn!(message = %msg.name, page = ?page_key, fault = ?verdict.err(), now_ms,
                "CAN message fails its end-to-end check: its sources are stale");
        } else if was_lost && !lost {
            tracing::info!(message = %msg.name, now_ms, "CAN message passes its end-to-end check again");
        }
        verdict
    }

    /// Whether message `index` counts as lost (any page).
    pub fn lost(&self, index: usize) -> bool {
        self.of_message
            .get(index)
            .copied()
            .flatten()
            .is_some_and(|e| self.entries[e].pages.values().any(|p| p.lost))
    }
}
