//! What makes files loaded from the state directory trustworthy: private
//! directories, a per-host key, keyed checksums and unplantable writes.
//!
//! Owns:
//! - [`private_dir`]: create a directory 0700, then check that it is a real
//!   directory owned by this user, that no one else may write it, and that
//!   no ancestor lets anyone else replace it (a sticky world-writable
//!   ancestor such as `/tmp` is fine). Checked before any read.
//! - [`HostKey`]: 32 random bytes in `host.key` (0600) beside the state
//!   files; HMAC-SHA256 under it authenticates cache entries and state
//!   files, so an entry written elsewhere, or by anyone without the key,
//!   is rejected.
//! - [`write_atomic`]: temp file with an unpredictable name, opened
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` and 0600, fsync, rename, fsync the
//!   directory.
//!
//! May not touch: what the files mean.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a file or directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}; not trusted")]
    Untrusted { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.to_owned(),
        source,
    }
}

fn untrusted(path: &Path, why: impl Into<String>) -> TrustError {
    TrustError::Untrusted {
        path: path.to_owned(),
        why: why.into(),
    }
}

fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Create `dir` (0700) if it is missing, then check it may be trusted.
pub fn private_dir(dir: &Path) -> Result<(), TrustError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    check_private(dir)
}

/// Check without creating or changing anything.
pub fn check_private(dir: &Path) -> Result<(), TrustError> {
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if !meta.file_type().is_dir() {
        return Err(untrusted(dir, "not a directory (a symlink?)"));
    }
    if meta.uid() != my_uid() {
        return Err(untrusted(
            dir,
            format!(
                "owned by uid {}, the host runs as uid {}",
                meta.uid(),
                my_uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(untrusted(
            dir,
            format!("mode {mode:o} lets group or others in (needs 0700)"),
        ));
    }
    let canonical = dir.canonicalize().map_err(io(dir))?;
    for parent in canonical.ancestors().skip(1) {
        let m = std::fs::metadata(parent).map_err(io(parent))?;
        let mode = m.permissions().mode();
        let others_write = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if (m.uid() != 0 && m.uid() != my_uid()) || others_write {
            return Err(untrusted(
                dir,
                format!(
                    "its parent {} (uid {}, mode {:o}) lets someone else replace it",
                    parent.display(),
                    m.uid(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Check that `file` is a regular file of ours that only we can read.
pub fn check_private_file(file: &Path) -> Result<(), TrustError> {
    let meta = std::fs::symlink_metadata(file).map_err(io(file))?;
    if !meta.file_type().is_file() {
        return Err(untrusted(file, "not a regular file (a symlink?)"));
    }
    if meta.uid() != my_uid() {
        return Err(untrusted(file, format!("owned by uid {}", meta.uid())));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(untrusted(
            file,
            format!("mode {:o} (needs 0600)", meta.permissions().mode() & 0o777),
        ));
    }
    Ok(())
}

/// The per-host key that authenticates what this host wrote.
#[derive(Clone)]
pub struct HostKey([u8; 32]);

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKey(..)")
    }
}

impl HostKey {
    /// Load `dir/host.key`, creating it (and `dir`, 0700) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, TrustError> {
        private_dir(dir)?;
        let path = dir.join("host.key");
        let mut key = [0u8; 32];
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(mut f) => {
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .map_err(io(Path::new("/dev/urandom")))?;
                f.write_all(&key)
                    .and_then(|_| f.sync_all())
                    .map_err(io(&path))?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                check_private_file(&path)?;
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| untrusted(&path, "not a 32-byte key"))?;
                Ok(Self(key))
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The HMAC state over `parts`, each length-prefixed (no ambiguity).
    fn keyed(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        m
    }

    /// HMAC-SHA256 of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.keyed(parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is the HMAC of `parts` (constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.keyed(parts).verify_slice(tag).is_ok()
    }
}

/// Write `bytes` to `path` so that a crash leaves the old file or the new
/// one, never a mix, and no one can redirect the write: an unpredictable
/// temp name opened `O_EXCL | O_NOFOLLOW` (a planted file or symlink makes
/// the open fail), 0600, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut nonce = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut nonce)?;
    let name = path.file_name().map_or("f".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_others_can_write_is_not_trusted_and_not_fixed() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("cache");
        private_dir(&d).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&d).unwrap_err().to_string();
        assert!(e.contains("mode 777") && e.contains("cache"), "{e}");
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o777,
            "left as found: trusting it after a chmod would trust what was planted"
        );
        // A symlink to a private directory is not the directory.
        let real = root.path().join("real");
        private_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(check_private(&link)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
    }

    #[test]
    fn the_host_key_persists_and_authenticates() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let k = HostKey::load_or_create(&dir).unwrap();
        let tag = k.mac(&[b"soc", b"blob"]);
        let again = HostKey::load_or_create(&dir).unwrap();
        assert!(again.verify(&[b"soc", b"blob"], &tag));
        assert!(!again.verify(&[b"soh", b"blob"], &tag));
        assert!(
            !again.verify(&[b"socb", b"lob"], &tag),
            "parts are length-prefixed"
        );
        let elsewhere = HostKey::load_or_create(&d.path().join("other")).unwrap();
        assert!(
            !elsewhere.verify(&[b"soc", b"blob"], &tag),
            "another host's key"
        );
        std::fs::set_permissions(dir.join("host.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(
            HostKey::load_or_create(&dir).is_err(),
            "a readable key is refused"
        );
    }

    #[test]
    fn atomic_writes_go_through_a_private_temp_and_leave_none() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("soc.state");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
