//! One role's slot: the live plugin instance, or the reason the native
//! fallback is serving instead.

use serde::Serialize;

use super::{PluginEngine, PluginError, PluginInfo, PluginInstance, Role};
use crate::config::{PluginSlot, SandboxConfig};

/// Who serves the role now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum SlotState {
    Active,
    Fallback(String),
}

pub struct RoleSlot {
    pub role: Role,
    instance: Option<PluginInstance>,
    pub state: SlotState,
    pub info: Option<PluginInfo>,
    /// Calls that returned an error or trapped.
    pub errors: u64,
    pub last_error: Option<String>,
}

impl RoleSlot {
    /// Load the configured plugin; on failure the slot starts in fallback
    /// with the error as its reason.
    pub fn load(
        engine: &PluginEngine,
        role: Role,
        slot: &PluginSlot,
        path: &std::path::Path,
        sandbox: SandboxConfig,
    ) -> Self {
        let mut me = Self {
            role,
            instance: None,
            state: SlotState::Fallback("disabled in the site config".into()),
            info: None,
            errors: 0,
            last_error: None,
        };
        if !slot.enabled {
            tracing::warn!(%role, "plugin disabled: native fallback serves the role");
            return me;
        }
        let json = serde_json::to_string(&slot.config).unwrap_or_else(|_| "{}".into());
        match PluginInstance::load(engine, role, path, &json, sandbox) {
            Ok(instance) => {
                let info = instance.info().clone();
                tracing::info!(%role, plugin = %info.name, version = %info.version, sha256 = %info.sha256, "plugin loaded");
                me.info = Some(info);
                me.instance = Some(instance);
                me.state = SlotState::Active;
            }
            Err(e) => {
                tracing::error!(%role, error = %e, "plugin failed to load: native fallback serves the role");
                me.last_error = Some(e.to_string());
                me.state = SlotState::Fallback(e.to_string());
            }
        }
        me
    }

    /// Run `f` on the live instance. `None` means: use the fallback this
    /// cycle. A trap drops the instance for good (until a reload).
    pub fn run<T>(
        &mut self,
        f: impl FnOnce(&mut PluginInstance) -> Result<T, PluginError>,
    ) -> Option<T> {
        let instance = self.instance.as_mut()?;
        match f(instance) {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Record a failure; a trap also drops the instance.
    pub fn fail(&mut self, e: PluginError) {
        self.errors += 1;
        let msg = e.to_string();
        if e.is_trap() {
            tracing::error!(role = %self.role, error = %msg, "plugin trapped: instance dropped, native fallback serves the role");
            self.instance = None;
            self.state = SlotState::Fallback(msg.clone());
        } else if self.last_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(role = %self.role, error = %msg, "plugin call failed: fallback used this cycle");
        }
        self.last_error = Some(msg);
    }

    /// "name version" for status lines, or "fallback".
    pub fn label(&self) -> String {
        match (&self.state, &self.info) {
            (SlotState::Active, Some(i)) => format!("{} {}", i.name, i.version),
            _ => "fallback".into(),
        }
    }
}
