//! Plugin state on disk: one file per role, so a restart keeps SOC.
//!
//! Owns: the state-file format and its atomic write. A file is
//! `BMSPST02` + HMAC-SHA256 + body, where the body is a `u32` little-endian
//! length, a JSON header ([`StateMeta`]: role, plugin, version, the sha256
//! of the component that saved it) and the plugin's own blob. The HMAC is
//! under this host's key (`host.key` in the private state directory,
//! [`crate::trust`]) over the role and the body, so a file copied from
//! another role, another host, or written without the key is rejected. A
//! file that fails the check or does not parse is reported as corrupt; the
//! caller then starts the plugin from `init`. Nothing here panics on bad
//! input.
//!
//! May not touch: plugin instances; it stores bytes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::trust::{self, write_atomic, HostKey, TrustError};
use super::Role;

const MAGIC: &[u8; 8] = b"BMSPST02";

/// Who wrote a state blob, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMeta {
    pub role: Role,
    pub plugin: String,
    pub version: String,
    /// sha256 of the component that saved it.
    pub component_sha256: String,
    /// Host time of the save, ms.
    pub time_ms: u64,
}

/// Why a state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("plugin state file {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin state file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The state directory's plugin files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    key: HostKey,
}

impl StateStore {
    /// Open (creating it 0700) the state directory `dir` and its key.
    pub fn open(dir: PathBuf) -> Result<Self, TrustError> {
        let key = HostKey::load_or_create(&dir)?;
        Ok(Self { dir, key })
    }

    pub fn path(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{role}.state"))
    }

    /// Write atomically (temp + fsync + rename).
    pub fn save(&self, meta: &StateMeta, blob: &[u8]) -> std::io::Result<()> {
        let header = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        let mut body = Vec::with_capacity(4 + header.len() + blob.len());
        body.extend_from_slice(&(header.len() as u32).to_le_bytes());
        body.extend_from_slice(&header);
        body.extend_from_slice(blob);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.key.mac(&[b"state", meta.role.key().as_bytes(), &body]));
        out.extend_from_slice(&body);
        write_atomic(&self.path(meta.role), &out)
    }

    /// The saved state of `role`; `Ok(None)` when there is none.
    pub fn load(&self, role: Role) -> Result<Option<(StateMeta, Vec<u8>)>, StateFileError> {
        let path = self.path(role);
        if let Err(e) = trust::check_private(&self.dir) {
            return Err(StateFileError::Corrupt {
                path,
                reason: e.to_string(),
            });
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateFileError::Read { path, source }),
        };
        self.decode(role, &bytes)
            .map(Some)
            .map_err(|reason| StateFileError::Corrupt { path, reason })
    }

    fn decode(&self, role: Role, bytes: &[u8]) -> Result<(StateMeta, Vec<u8>), String> {
        let (meta, blob) = decode(bytes, |sum, body| {
            self.key
                .verify(&[b"state", role.key().as_bytes(), body], sum)
        })?;
        if meta.role != role {
            return Err(format!("written for the {} role, not {role}", meta.role));
        }
        Ok((meta, blob))
    }
}

fn decode(
    bytes: &[u8],
    authentic: impl Fn(&[u8], &[u8]) -> bool,
) -> Result<(StateMeta, Vec<u8>), String> {
    let head = MAGIC.len() + 32;
    if bytes.len() < head + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(format!(
            "not a bmshost state file (expected a `BMSPST02` header, file has {} bytes)",
            bytes.len()
        ));
    }
    let (sum, body) = bytes[MAGIC.len()..].split_at(32);
    if !authentic(sum, body) {
        return Err(
            "checksum mismatch (torn write, tampering, or written for another role or host)".into(),
        );
    }
    let len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let rest = &body[4..];
    if len > rest.len() {
        return Err(format!(
            "header length {len} exceeds the file ({} bytes)",
            rest.len()
        ));
    }
    let meta: StateMeta =
        serde_json::from_slice(&rest[..len]).map_err(|e| format!("header: {e}"))?;
    Ok((meta, rest[len..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz target (bolero): any bytes, with the MAC check passed so the
    /// parser behind it is reached, and with the real key: an error or a
    /// value, never a panic; a decoded blob always fits the file.
    #[test]
    fn fuzz_state_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("plugins")).unwrap();
        let runs = std::sync::atomic::AtomicU64::new(0);
        bolero::check!().for_each(|bytes: &[u8]| {
            runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The magic in front, so most inputs reach the header parser.
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(bytes);
            for input in [bytes, &file[..]] {
                if let Ok((_, blob)) = decode(input, |_, _| true) {
                    assert!(blob.len() <= input.len());
                }
                assert!(
                    store.decode(Role::Soc, input).is_err(),
                    "forged without the key"
                );
            }
        });
        println!(
            "fuzz target state_blob: {} executions",
            runs.load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    fn meta() -> StateMeta {
        StateMeta {
            role: Role::Soc,
            plugin: "soc-counting".into(),
            version: "0.1.0".into(),
            component_sha256: "ab".repeat(32),
            time_ms: 1234,
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("plugins")).unwrap();
        assert!(store.load(Role::Soc).unwrap().is_none());
        store.save(&meta(), b"BMSS\x01\x00{\"soc\":42}").unwrap();
        let (m, blob) = store.load(Role::Soc).unwrap().unwrap();
        assert_eq!(m, meta());
        assert_eq!(blob, b"BMSS\x01\x00{\"soc\":42}");

        let good = std::fs::read(store.path(Role::Soc)).unwrap();
        // Flip every byte once: each must be caught, none may panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            std::fs::write(store.path(Role::Soc), &bad).unwrap();
            let err = store.load(Role::Soc).unwrap_err().to_string();
            assert!(
                err.contains("corrupt") && err.contains("soc.state"),
                "{err}"
            );
        }
        for len in 0..good.len() {
            std::fs::write(store.path(Role::Soc), &good[..len]).unwrap();
            assert!(store.load(Role::Soc).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn a_state_file_is_bound_to_its_role_and_its_host() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path().join("plugins")).unwrap();
        store.save(&meta(), b"soc state").unwrap();
        // Planted as the SOH state: refused, though the file is intact.
        std::fs::copy(store.path(Role::Soc), store.path(Role::Soh)).unwrap();
        let e = store.load(Role::Soh).unwrap_err().to_string();
        assert!(e.contains("another role or host"), "{e}");
        // Written by another host (another key): refused.
        let other = StateStore::open(dir.path().join("elsewhere")).unwrap();
        other.save(&meta(), b"foreign").unwrap();
        std::fs::copy(other.path(Role::Soc), store.path(Role::Soc)).unwrap();
        assert!(store.load(Role::Soc).is_err());
        // A directory others may write is not read at all.
        use std::os::unix::fs::PermissionsExt;
        store.save(&meta(), b"soc state").unwrap();
        std::fs::set_permissions(
            dir.path().join("plugins"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = store.load(Role::Soc).unwrap_err().to_string();
        assert!(e.contains("not trusted"), "{e}");
    }
}
