//! The precompiled-artifact cache: `.cwasm` files in the host's state
//! directory.
//!
//! Owns: the cache directory and the entry format. An entry is native code,
//! so the rules are strict:
//! - only this host writes entries, and only for a component that passed
//!   validation ([`ArtifactCache::store`] is called after it);
//! - the key is the component's sha256 plus the engine's compatibility hash
//!   (wasmtime version, target, compiler settings), so a different engine
//!   never finds another engine's code;
//! - every entry carries an HMAC-SHA256, under this host's key
//!   ([`HostKey`], `host.key` in the cache directory), over its key and
//!   payload: an entry renamed to another component's key, copied from
//!   another host or written by anyone without the key fails; a mismatch,
//!   a truncated file or an engine mismatch reported by wasmtime is a miss:
//!   the entry is deleted, the component recompiled and the entry
//!   rewritten;
//! - the file name is an HMAC of the component sha256 and the engine hash,
//!   so it reveals neither;
//! - the directory is created 0700 and checked (owner, mode, ancestors,
//!   [`trust::check_private`]) before every read; in a directory that
//!   fails, the entry is deleted, nothing is loaded and nothing is
//!   written, and the directory is left for the operator to fix (tightening
//!   it would bless whatever was planted while it was open).
//!
//! May not touch: anything but its directory.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

pub use super::trust::write_atomic;
use super::trust::{self, HostKey, TrustError};

const MAGIC: &[u8; 8] = b"BMSCW01\n";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Largest entry read: native code of a plugin is a few MiB; anything far
/// bigger is planted or corrupt and is rejected before it is read.
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// Result of a lookup.
pub enum Lookup {
    Hit(Component),
    Miss,
    /// An entry existed but was not trusted; why.
    Rejected(String),
}

/// `.cwasm` files keyed by component sha256 and engine compatibility.
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    key: HostKey,
}

/// Feeds `Hash` output into sha256, for a key that is stable across runs.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    /// Open (creating it 0700) the cache in `dir`, with its host key.
    pub fn open(dir: PathBuf, engine: &Engine) -> Result<Self, TrustError> {
        let key = HostKey::load_or_create(&dir)?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = super::hex(&h.0.finalize()[..8]);
        Ok(Self {
            dir,
            engine_key,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File of the entry for a component.
    pub fn entry_path(&self, component_sha256: &str) -> PathBuf {
        let name = self.key.mac(&[
            b"entry",
            component_sha256.as_bytes(),
            self.engine_key.as_bytes(),
        ]);
        self.dir.join(format!("{}.cwasm", super::hex(&name[..16])))
    }

    /// Find a trusted entry for the component with this sha256.
    pub fn load(&self, engine: &Engine, component_sha256: &str) -> Lookup {
        let path = self.entry_path(component_sha256);
        if let Err(e) = trust::check_private(&self.dir) {
            tracing::warn!(error = %e, "plugin cache directory not trusted; compiling");
            let _ = std::fs::remove_file(&path);
            return Lookup::Rejected(e.to_string());
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_ENTRY_BYTES => {
                return self.reject(
                    &path,
                    format!(
                        "entry of {} bytes is over the {MAX_ENTRY_BYTES}-byte limit",
                        m.len()
                    ),
                )
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return self.reject(&path, format!("cannot read: {e}")),
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return self.reject(&path, format!("cannot read: {e}")),
        };
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return self.reject(&path, "not a bmshost cache entry (bad header)".into());
        }
        let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
        if !self.key.verify(&self.parts(component_sha256, payload), sum) {
            return self.reject(
                &path,
                "checksum mismatch: corrupt, or not written by this host".into(),
            );
        }
        // SAFETY: the payload is byte-for-byte what `store` wrote from a
        // component this engine configuration compiled and the host
        // validated (checked by the HMAC under this host's key, in a
        // directory only this user can write); wasmtime additionally
        // checks the engine compatibility header.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(c) => Lookup::Hit(c),
            Err(e) => self.reject(&path, format!("wasmtime refused it: {e:#}")),
        }
    }

    fn parts<'a>(&'a self, component_sha256: &'a str, payload: &'a [u8]) -> [&'a [u8]; 4] {
        [
            b"cwasm",
            component_sha256.as_bytes(),
            self.engine_key.as_bytes(),
            payload,
        ]
    }

    fn reject(&self, path: &Path, why: String) -> Lookup {
        tracing::warn!(path = %path.display(), reason = %why, "plugin cache entry rejected; recompiling");
        let _ = std::fs::remove_file(path);
        Lookup::Rejected(format!("{}: {why}", path.display()))
    }

    /// Write the entry for a validated component (temp file, fsync, rename).
    pub fn store(&self, component_sha256: &str, component: &Component) -> std::io::Result<()> {
        trust::private_dir(&self.dir).map_err(std::io::Error::other)?;
        let payload = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.key.mac(&self.parts(component_sha256, &payload)));
        out.extend_from_slice(&payload);
        write_atomic(&self.entry_path(component_sha256), &out)
    }
}
