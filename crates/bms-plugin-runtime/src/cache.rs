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
//! - every entry carries a sha256 over its key (component sha256 and engine
//!   hash) and its payload, so an entry renamed to another component's key
//!   fails too; a mismatch, a truncated file or an engine mismatch reported
//!   by wasmtime is a miss: the entry is deleted, the component recompiled
//!   and the entry rewritten;
//! - the directory is created 0700, and a directory that group or others
//!   may write is not trusted at all.
//!
//! The checksum catches corruption and mix-ups, not forgery by someone who
//! can write the host's state directory (they could replace the binary
//! too).
//!
//! May not touch: anything but its directory.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"BMSCW01\n";
const HEADER_LEN: usize = MAGIC.len() + 32;

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
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = super::hex(&h.0.finalize()[..8]);
        Self { dir, engine_key }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File of the entry for a component.
    pub fn entry_path(&self, component_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{component_sha256}-{}.cwasm", self.engine_key))
    }

    /// Find a trusted entry for the component with this sha256.
    pub fn load(&self, engine: &Engine, component_sha256: &str) -> Lookup {
        let path = self.entry_path(component_sha256);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return self.reject(&path, format!("cannot read: {e}")),
        };
        if let Err(why) = self.dir_is_private() {
            return Lookup::Rejected(why);
        }
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return self.reject(&path, "not a bmshost cache entry (bad header)".into());
        }
        let (sum, payload) = bytes[MAGIC.len()..].split_at(32);
        if self.checksum(component_sha256, payload).as_slice() != sum {
            return self.reject(&path, "checksum mismatch: the entry is corrupt".into());
        }
        // SAFETY: the payload is byte-for-byte what `store` wrote from a
        // component this engine configuration compiled and the host
        // validated (checked by the sha256 above); wasmtime additionally
        // checks the engine compatibility header.
        match unsafe { Component::deserialize(engine, payload) } {
            Ok(c) => Lookup::Hit(c),
            Err(e) => self.reject(&path, format!("wasmtime refused it: {e:#}")),
        }
    }

    fn checksum(&self, component_sha256: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(component_sha256.as_bytes());
        h.update(b"/");
        h.update(self.engine_key.as_bytes());
        h.update(b"/");
        h.update(payload);
        h.finalize().to_vec()
    }

    /// Native code is loaded only from a directory no one else can write.
    fn dir_is_private(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            tracing::warn!(dir = %self.dir.display(), mode = format!("{mode:o}"), "plugin cache directory is writable by group or others; not using it");
            return Err(format!(
                "{}: mode {:o} lets group or others write native code; not trusted",
                self.dir.display(),
                mode & 0o777
            ));
        }
        Ok(())
    }

    fn reject(&self, path: &Path, why: String) -> Lookup {
        tracing::warn!(path = %path.display(), reason = %why, "plugin cache entry rejected; recompiling");
        let _ = std::fs::remove_file(path);
        Lookup::Rejected(format!("{}: {why}", path.display()))
    }

    /// Write the entry for a validated component (temp file, fsync, rename).
    pub fn store(&self, component_sha256: &str, component: &Component) -> std::io::Result<()> {
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            // Tighten a directory an older version (or a person) left open.
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let payload = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.checksum(component_sha256, &payload));
        out.extend_from_slice(&payload);
        write_atomic(&self.entry_path(component_sha256), &out)
    }
}

/// Write `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a mix: temp file in the same directory, fsync, rename, fsync
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
