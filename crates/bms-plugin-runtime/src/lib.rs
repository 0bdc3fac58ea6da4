//! bms-plugin-runtime: strategy plugins as WebAssembly components behind
//! the `bms:plugin` WIT contract.
//!
//! Owns: the wasmtime runtime ([`runtime`]) and its native-code cache
//! ([`cache`]), component validation ([`validate`]), conversion between
//! protection's snapshot and the WIT types ([`convert`]), native fallbacks
//! that serve a role when its plugin is missing or broken ([`fallback`]),
//! the per-role slot that chooses between them ([`slot`]), canaries
//! ([`canary`]), output checks ([`check`]), state files ([`persist`]), the
//! plugin event record ([`events`]), the `[plugins]` config ([`config`])
//! and the manager that runs all four roles on the control thread
//! ([`manager`]).
//!
//! May not touch: protection, contactors, limits, I/O, the site file. It
//! depends on `bms-protection` only for the snapshot type; plugin outputs
//! leave this crate unclamped and the host's control cycle passes them
//! through protection.

pub mod bindings;
pub mod cache;
pub mod canary;
pub mod check;
pub mod config;
pub mod convert;
pub mod events;
pub mod fallback;
pub mod manager;
pub mod orders;
pub mod persist;
pub mod runtime;
pub mod slot;
pub mod trust;
pub mod validate;

pub use manager::{PluginManager, PluginSet};
pub use runtime::{Artifact, EngineError, PluginEngine, PluginError, PluginInfo, PluginInstance};
pub use slot::RoleSlot;

/// The four plugin roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Soc,
    Soh,
    Balancer,
    Ems,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Soc, Role::Soh, Role::Balancer, Role::Ems];

    /// The WIT world a plugin for this role must target.
    pub fn world(self) -> &'static str {
        match self {
            Role::Soc => "soc-estimator",
            Role::Soh => "soh-estimator",
            Role::Balancer => "balancer",
            Role::Ems => "ems-advisor",
        }
    }

    /// Key of the role in the site config's `[plugins]` table.
    pub fn key(self) -> &'static str {
        match self {
            Role::Soc => "soc",
            Role::Soh => "soh",
            Role::Balancer => "balancer",
            Role::Ems => "ems",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes` as lower-case hex: how components, state and
/// credentials are identified.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected soc, soh, balancer or ems")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.key() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}
