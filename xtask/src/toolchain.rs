//! Picks the toolchain that builds plugins for `wasm32-unknown-unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

const TARGET: &str = "wasm32-unknown-unknown";

pub enum Toolchain {
    /// rustup with the wasm32 target installed.
    Rustup,
    /// Debian's rustc-web: builds std from source (`-Zbuild-std`).
    Debian { cargo: PathBuf, rustc: PathBuf },
}

impl Toolchain {
    pub fn describe(&self) -> String {
        match self {
            Self::Rustup => format!("rustup target {TARGET}"),
            Self::Debian { rustc, .. } => {
                format!("Debian toolchain {} with -Zbuild-std", rustc.display())
            }
        }
    }

    /// Cargo's target dir for this toolchain: separate per toolchain so
    /// neither invalidates the other's build cache.
    pub fn target_dir(&self, base: &Path) -> PathBuf {
        match self {
            Self::Rustup => base.join("rustup"),
            Self::Debian { .. } => base.join("debian"),
        }
    }

    /// `cargo build` of workspace member `package` with the `wasm` profile.
    pub fn cargo_build(&self, root: &Path, base: &Path, package: &str) -> Command {
        self.cargo_build_in(root, base, &["--profile", "wasm", "-p", package])
    }

    /// `cargo build --target wasm32-unknown-unknown` in `dir` (a workspace
    /// or a standalone crate) with `extra` arguments, into `base`.
    pub fn cargo_build_in(&self, dir: &Path, base: &Path, extra: &[&str]) -> Command {
        let target_dir = self.target_dir(base);
        let mut args = vec!["build", "--target", TARGET];
        args.extend_from_slice(extra);
        let root = dir;
        match self {
            Self::Rustup => {
                let mut cmd =
                    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                cmd.current_dir(root)
                    .args(args)
                    .env("CARGO_TARGET_DIR", &target_dir);
                cmd
            }
            Self::Debian { cargo, rustc } => {
                let mut cmd = Command::new(cargo);
                let path = std::env::var("PATH").unwrap_or_default();
                cmd.current_dir(root)
                    .args(args)
                    .args(["-Zbuild-std=std,panic_abort"])
                    // cargo itself must accept -Z, not only rustc.
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", rustc)
                    .env("PATH", format!("/usr/bin:{path}"))
                    .env("CARGO_TARGET_DIR", &target_dir)
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTC_WRAPPER")
                    .env_remove("RUSTDOC");
                cmd
            }
        }
    }
}

pub fn detect() -> Result<Toolchain> {
    let forced = std::env::var("BMS_WASM_TOOLCHAIN").ok();
    let rustup_ok = rustup_has_target();
    let debian = debian_toolchain();
    match forced.as_deref() {
        Some("rustup") if rustup_ok => return Ok(Toolchain::Rustup),
        Some("rustup") => {
            bail!("BMS_WASM_TOOLCHAIN=rustup but `rustup target list --installed` lacks {TARGET}")
        }
        Some("debian") => return debian.ok_or_else(|| anyhow::anyhow!(missing_message())),
        Some(other) => bail!("BMS_WASM_TOOLCHAIN must be `rustup` or `debian`, not `{other}`"),
        None => {}
    }
    if rustup_ok {
        return Ok(Toolchain::Rustup);
    }
    debian.ok_or_else(|| anyhow::anyhow!(missing_message()))
}

fn rustup_has_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false)
}

fn debian_toolchain() -> Option<Toolchain> {
    let cargo = PathBuf::from("/usr/bin/cargo");
    let rustc = PathBuf::from("/usr/bin/rustc");
    let std_src = Path::new("/usr/lib/rustlib/src/rust/library/std");
    let lld = Path::new("/usr/bin/rust-lld");
    (cargo.is_file() && rustc.is_file() && std_src.is_dir() && lld.exists())
        .then_some(Toolchain::Debian { cargo, rustc })
}

fn missing_message() -> String {
    format!(
        "no toolchain can build plugins for {TARGET}.\n\
         Install one of:\n  \
         - with internet: rustup target add {TARGET}\n  \
         - offline, Debian 12: apt-get install rustc-web cargo-web rust-web-src lld-22\n    \
           (provides /usr/bin/cargo, /usr/bin/rustc, /usr/lib/rustlib/src/rust/library, /usr/bin/rust-lld)"
    )
}
