//! Validation of a component before it may serve a role.
//!
//! Owns: the three checks every candidate passes, in this order, each with
//! an error that names what does not match:
//! 1. imports: only `bms:plugin/log` and `bms:plugin/types`, nothing else
//!    (no WASI, no other capability);
//! 2. version: every `bms:plugin` name is semver-compatible with the
//!    host's package version;
//! 3. world: the component exports the role's world with the host's types
//!    (a component of another role's world is named as such).
//!
//! May not touch: instances. Validation only reads component types.

use semver::Version;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::Component;
use wasmtime::Engine;

use super::Role;

/// The `bms:plugin` package version this host implements (see `wit/`).
pub const HOST_WIT_VERSION: &str = "0.1.0";

/// Interfaces the host provides to plugins.
const PROVIDED: [&str; 2] = ["log", "types"];

/// Functions every world exports.
const WORLD_EXPORTS: [&str; 5] = ["info", "init", "step", "save-state", "restore-state"];

/// Same semver track: equal major, and for 0.x equal minor (0.0.x: equal
/// patch). A plugin built against a newer minor may call functions this
/// host lacks; the link check names them.
pub fn compatible(host: &Version, plugin: &Version) -> bool {
    if host.major != plugin.major {
        return false;
    }
    if host.major > 0 {
        return true;
    }
    host.minor == plugin.minor && (host.minor > 0 || host.patch == plugin.patch)
}

/// Why a component does not fit this host: the message names the import,
/// export or version that does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Mismatch(pub String);

impl From<String> for Mismatch {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Check imports and their versions (steps 1 and 2).
pub fn check_imports(engine: &Engine, component: &Component) -> Result<(), Mismatch> {
    imports_fit(engine, component).map_err(Mismatch)
}

fn imports_fit(engine: &Engine, component: &Component) -> Result<(), String> {
    let host = Version::parse(HOST_WIT_VERSION).expect("valid constant");
    let ty = component.component_type();
    for (name, item) in ty.imports(engine) {
        let Some(rest) = name.strip_prefix("bms:plugin/") else {
            return Err(format!(
                "imports `{name}`, which this host does not provide: plugins get no WASI and no \
                 other ambient capability, only `bms:plugin/log@{HOST_WIT_VERSION}`"
            ));
        };
        let (iface, version) = match rest.split_once('@') {
            Some((i, v)) => (i, Some(v)),
            None => (rest, None),
        };
        if !PROVIDED.contains(&iface) {
            return Err(format!(
                "imports `{name}`: package bms:plugin has no `{iface}` interface on this host \
                 (it provides {})",
                PROVIDED.join(", ")
            ));
        }
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(format!(
                "imports `{name}` as something other than an interface"
            ));
        }
        let Some(version) = version else {
            return Err(format!(
                "imports `{name}` without a version; this host implements bms:plugin@{HOST_WIT_VERSION}"
            ));
        };
        let v = Version::parse(version)
            .map_err(|e| format!("imports `{name}`: version `{version}` is not semver: {e}"))?;
        if !compatible(&host, &v) {
            return Err(format!(
                "imports `{name}`: bms:plugin@{v} is not semver-compatible with this host's \
                 bms:plugin@{host}; rebuild the plugin against the host's SDK"
            ));
        }
    }
    Ok(())
}

/// The role whose world the component's exports fit, found by trying each.
pub type WorldProbe<'a> = &'a dyn Fn(Role) -> Result<(), String>;

/// Check the exports (step 3): the names first, then the types through
/// `fits`, which tries the generated bindings of a role's world.
pub fn check_world(
    engine: &Engine,
    component: &Component,
    role: Role,
    fits: WorldProbe<'_>,
) -> Result<(), Mismatch> {
    world_fits(engine, component, role, fits).map_err(Mismatch)
}

fn world_fits(
    engine: &Engine,
    component: &Component,
    role: Role,
    fits: WorldProbe<'_>,
) -> Result<(), String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let missing: Vec<&str> = WORLD_EXPORTS
        .iter()
        .copied()
        .filter(|f| !exports.iter().any(|e| e == f))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "does not export {} (world `{}` exports {}; the component exports [{}])",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", "),
            role.world(),
            WORLD_EXPORTS.join(", "),
            exports.join(", ")
        ));
    }
    let Err(own) = fits(role) else {
        return Ok(());
    };
    if let Some(other) = Role::ALL
        .into_iter()
        .find(|r| *r != role && fits(*r).is_ok())
    {
        return Err(format!(
            "is a `{}` plugin (its exports fit that world), not `{}`: assign it to `plugins.{other}`",
            other.world(),
            role.world()
        ));
    }
    Err(format!("does not fit the `{}` world: {own}", role.world()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_tracks() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(compatible(&v("0.1.0"), &v("0.1.0")));
        assert!(compatible(&v("0.1.0"), &v("0.1.7")));
        assert!(!compatible(&v("0.1.0"), &v("0.2.0")));
        assert!(!compatible(&v("0.1.0"), &v("1.1.0")));
        assert!(compatible(&v("1.2.0"), &v("1.0.3")));
        assert!(!compatible(&v("0.0.1"), &v("0.0.2")));
    }

    #[test]
    fn host_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/bms-plugin.wit");
        assert!(
            wit.contains(&format!("package bms:plugin@{HOST_WIT_VERSION};")),
            "update HOST_WIT_VERSION with the WIT package"
        );
    }
}
