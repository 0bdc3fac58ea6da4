//! Local or remote control: SunSpec 802 `LocRemCtl`.
//!
//! Owns: the site's control mode and its file in the state directory
//! (`control-mode`), so a site put under local control by an operator
//! stays local across a restart. Under `LOCAL` the Modbus server refuses
//! every remote write except a `SetOp` disconnect (opening is never
//! refused), and the controller heartbeat is not supervised: the remote
//! controller is not in charge.
//!
//! May not touch: who may switch (the control API authorises and audits)
//! or the writes themselves (the server applies the mode).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The file's name in the state directory.
pub const FILE: &str = "control-mode";

/// What `LocRemCtl` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Remote,
    Local,
}

impl Mode {
    /// The SunSpec 802 `LocRemCtl` enumeration.
    pub fn loc_rem_ctl(self) -> u16 {
        match self {
            Mode::Remote => 0,
            Mode::Local => 1,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Mode::Remote => "remote",
            Mode::Local => "local",
        }
    }
}

/// The mode, shared by the API, the publisher and the server.
#[derive(Debug)]
pub struct ControlMode {
    local: AtomicBool,
    file: Option<PathBuf>,
}

impl ControlMode {
    /// Remote, not persisted (tests, sites without a state directory).
    pub fn remote() -> Self {
        Self {
            local: AtomicBool::new(false),
            file: None,
        }
    }

    /// The mode recorded in `state_dir`; remote when none is. A file that
    /// cannot be read or says something else means local: an unknown
    /// mode refuses remote writes rather than allowing them.
    pub fn load(state_dir: &Path) -> Self {
        let file = state_dir.join(FILE);
        let local = match std::fs::read_to_string(&file) {
            Ok(s) if s.trim() == Mode::Remote.key() => false,
            Ok(s) if s.trim() == Mode::Local.key() => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Ok(s) => {
                tracing::error!(file = %file.display(), content = %s.trim(), "control mode file says neither `local` nor `remote`: local control, remote writes refused");
                true
            }
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read the control mode: local control, remote writes refused");
                true
            }
        };
        Self {
            local: AtomicBool::new(local),
            file: Some(file),
        }
    }

    pub fn mode(&self) -> Mode {
        if self.local.load(Ordering::Acquire) {
            Mode::Local
        } else {
            Mode::Remote
        }
    }

    pub fn is_local(&self) -> bool {
        self.mode() == Mode::Local
    }

    /// Switch to `mode`, on disk first: a mode that could not be recorded
    /// is not taken (except local, which is taken anyway: it only refuses).
    pub fn set(&self, mode: Mode) -> std::io::Result<()> {
        let written = match &self.file {
            Some(f) => bms_plugin_runtime::trust::write_atomic(f, mode.key().as_bytes()),
            None => Ok(()),
        };
        if written.is_ok() || mode == Mode::Local {
            self.local.store(mode == Mode::Local, Ordering::Release);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_survives_a_restart_and_garbage_means_local() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ControlMode::load(dir.path()).mode(), Mode::Remote);
        ControlMode::load(dir.path()).set(Mode::Local).unwrap();
        assert_eq!(ControlMode::load(dir.path()).mode(), Mode::Local);
        ControlMode::load(dir.path()).set(Mode::Remote).unwrap();
        assert_eq!(ControlMode::load(dir.path()).mode(), Mode::Remote);
        std::fs::write(dir.path().join(FILE), "remtoe").unwrap();
        assert_eq!(ControlMode::load(dir.path()).mode(), Mode::Local);
    }

    #[test]
    fn remote_is_not_taken_when_it_cannot_be_recorded() {
        let dir = tempfile::tempdir().unwrap();
        // A "state dir" that is a file: nothing can be read or written.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let m = ControlMode::load(&blocker);
        assert!(m.is_local(), "an unreadable mode is local");
        assert!(m.set(Mode::Local).is_err());
        assert!(m.is_local(), "local is taken even unrecorded");
        assert!(m.set(Mode::Remote).is_err());
        assert!(m.is_local(), "remote needs the record");
    }
}
