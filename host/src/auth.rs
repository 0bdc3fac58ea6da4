//! Operator identity: who may change the running host.
//!
//! Owns: the users file (`[operator] users_file`: one `[[user]]` per
//! person, with a role and an argon2id hash of their secret), checking a
//! user and secret against it, the role each request needs, and the
//! backoff after wrong attempts. May not touch: what the requests do (the
//! API decides, after [`Guard::authorize`]), or the audit record
//! ([`crate::audit`]).
//!
//! Roles, lowest first: `viewer` (read), `operator` (reset, reload,
//! rollback), `admin` (everything an operator may, and configuration).
//!
//! The users file of a hardware site must be mode 0600 and owned by the
//! host's user; a site without `[sim]` refuses to start when any user's
//! secret is one of the published examples ([`PUBLISHED_SECRETS`]).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

/// Secrets that appear in this project's examples and docs: accepted on a
/// simulated site only.
pub const PUBLISHED_SECRETS: &[&str] = &["demo-reset", "demo-admin", "demo-viewer"];

/// Wrong attempts before the backoff starts.
const FREE_ATTEMPTS: u32 = 3;
/// Longest backoff after wrong attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// Why a user was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("users file {path}: {reason}")]
    UsersFile { path: PathBuf, reason: String },
    #[error("no user given: this needs an {need} (bmsctl --user NAME; the secret from $BMS_SECRET, --secret-file or the prompt)")]
    NoUser { need: Role },
    #[error("not authorised: wrong user or secret for `{user}`")]
    WrongSecret { user: String },
    #[error("not authorised: too many wrong attempts for `{user}`; retry in {retry_in_s} s")]
    Backoff { user: String, retry_in_s: u64 },
    #[error("not authorised: `{user}` is a {role}; this needs an {need}")]
    Forbidden {
        user: String,
        role: Role,
        need: Role,
    },
    #[error("{path}: user `{user}` has the published example secret; a site without [sim] must not start with it (bmsctl hash-secret makes a new hash)")]
    PublishedSecret { path: PathBuf, user: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    role: Role,
    /// PHC string of the argon2id hash.
    argon2id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<UserEntry>,
}

/// The users of a site.
#[derive(Debug, Clone)]
pub struct Users {
    path: PathBuf,
    users: Vec<UserEntry>,
}

impl Users {
    /// Read `path`. `strict` (hardware sites): the file must be a regular
    /// file of the host's user, mode 0600.
    pub fn load(path: &Path, strict: bool) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::UsersFile {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::symlink_metadata(path).map_err(|e| bad(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if strict && (!meta.file_type().is_file() || mode & 0o077 != 0 || meta.uid() != uid) {
            return Err(bad(format!(
                "must be a regular file of uid {uid} with mode 0600 (is mode {mode:o}, uid {})",
                meta.uid()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: UsersFile = toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        for (i, u) in file.users.iter().enumerate() {
            PasswordHash::new(&u.argon2id)
                .map_err(|e| bad(format!("user[{i}] `{}`: argon2id: {e}", u.name)))?;
            if !u.argon2id.starts_with("$argon2id$") {
                return Err(bad(format!(
                    "user[{i}] `{}`: argon2id: not an argon2id hash",
                    u.name
                )));
            }
            if file.users[..i].iter().any(|o| o.name == u.name) {
                return Err(bad(format!("user[{i}]: `{}` is listed twice", u.name)));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            users: file.users,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The role of `user` if `secret` is theirs.
    pub fn verify(&self, user: &str, secret: &str) -> Option<Role> {
        let entry = self.users.iter().find(|u| u.name == user);
        // An unknown user costs as much as a known one.
        let hash = entry.map_or(DUMMY_HASH, |u| u.argon2id.as_str());
        let ok = PasswordHash::new(hash).ok().is_some_and(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        });
        entry.filter(|_| ok).map(|u| u.role)
    }

    /// Refuse a published example secret (hardware sites).
    pub fn check_no_published_secret(&self) -> Result<(), AuthError> {
        for u in &self.users {
            if PUBLISHED_SECRETS
                .iter()
                .any(|s| self.verify(&u.name, s).is_some())
            {
                return Err(AuthError::PublishedSecret {
                    path: self.path.clone(),
                    user: u.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Hash of "x" (any valid argon2id hash): verified against for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1pUN8bKQ5qPL8k2QvEy5nWBqGcLxW1xQv4c2m1f5v8E";

/// An argon2id PHC string for `secret`, with a random salt.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    use std::io::Read;
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt));
    let salt = SaltString::encode_b64(&salt).expect("16 bytes encode");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

struct Failures {
    count: u32,
    blocked_until: Option<Instant>,
}

/// Users plus the wrong-attempt backoff; shared by every request path.
pub struct Guard {
    users: Mutex<Option<Users>>,
    failures: Mutex<HashMap<String, Failures>>,
    /// Where the users came from, to reload them when the file changes.
    source: Option<Source>,
}

/// The users file a guard watches, and how it was checked.
struct Source {
    path: PathBuf,
    /// Hardware site: 0600 and no published secret.
    strict: bool,
    /// (mtime, size, inode) when last loaded.
    stamp: Mutex<Option<(std::time::SystemTime, u64, u64)>>,
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

impl Guard {
    /// `users` is `None` when the site has no users file: every request
    /// that needs a role is then refused.
    pub fn new(users: Option<Users>) -> Self {
        Self {
            users: Mutex::new(users),
            failures: Mutex::new(HashMap::new()),
            source: None,
        }
    }

    /// The users of `path`, checked as [`Users::load`] does (and, when
    /// `strict`, with no published secret). The file is read again when
    /// it changes: edits take effect at the next request, without a
    /// restart; an edit that does not pass the checks is refused with an
    /// error in the log, and the users loaded before stay.
    pub fn from_file(path: &Path, strict: bool) -> Result<Self, AuthError> {
        let users = Self::load_checked(path, strict)?;
        Ok(Self {
            users: Mutex::new(Some(users)),
            failures: Mutex::new(HashMap::new()),
            source: Some(Source {
                path: path.to_owned(),
                strict,
                stamp: Mutex::new(stamp(path)),
            }),
        })
    }

    fn load_checked(path: &Path, strict: bool) -> Result<Users, AuthError> {
        let users = Users::load(path, strict)?;
        if strict {
            users.check_no_published_secret()?;
        }
        Ok(users)
    }

    /// Reload the users file if it changed since it was last read.
    fn refresh(&self) {
        let Some(src) = &self.source else {
            return;
        };
        let now = stamp(&src.path);
        let mut seen = src.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if now == *seen {
            return;
        }
        *seen = now;
        match Self::load_checked(&src.path, src.strict) {
            Ok(users) => {
                tracing::warn!(path = %src.path.display(), users = users.users.len(), "users file changed: reloaded");
                *self.users.lock().unwrap_or_else(|e| e.into_inner()) = Some(users);
            }
            Err(e) => {
                tracing::error!(error = %e, "users file changed but cannot be used: the users loaded before stay")
            }
        }
    }

    /// Let `user` in if `secret` is theirs and their role is at least
    /// `need`. After [`FREE_ATTEMPTS`] wrong attempts the user is blocked
    /// for 1 s, doubling per further wrong attempt up to 5 minutes.
    pub fn authorize(&self, user: &str, secret: &str, need: Role) -> Result<Role, AuthError> {
        if user.is_empty() {
            return Err(AuthError::NoUser { need });
        }
        let now = Instant::now();
        if let Some(until) = self.blocked_until(user) {
            if until > now {
                return Err(AuthError::Backoff {
                    user: user.into(),
                    retry_in_s: (until - now).as_secs().max(1),
                });
            }
        }
        self.refresh();
        let role = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|u| u.verify(user, secret));
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(role) = role else {
            let f = failures.entry(user.into()).or_insert(Failures {
                count: 0,
                blocked_until: None,
            });
            f.count += 1;
            if f.count >= FREE_ATTEMPTS {
                let backoff = Duration::from_secs(1 << (f.count - FREE_ATTEMPTS).min(9));
                f.blocked_until = Some(now + backoff.min(MAX_BACKOFF));
            }
            return Err(AuthError::WrongSecret { user: user.into() });
        };
        failures.remove(user);
        if role < need {
            return Err(AuthError::Forbidden {
                user: user.into(),
                role,
                need,
            });
        }
        Ok(role)
    }

    fn blocked_until(&self, user: &str) -> Option<Instant> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .and_then(|f| f.blocked_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users_file(dir: &Path, entries: &[(&str, &str, &str)]) -> PathBuf {
        let mut text = String::new();
        for (name, role, secret) in entries {
            text.push_str(&format!(
                "[[user]]\nname = \"{name}\"\nrole = \"{role}\"\nargon2id = \"{}\"\n",
                hash_secret(secret)
            ));
        }
        let p = dir.join("users.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn roles_secrets_and_backoff() {
        let d = tempfile::tempdir().unwrap();
        let p = users_file(
            d.path(),
            &[("ana", "operator", "s3cret"), ("vic", "viewer", "look")],
        );
        let g = Guard::new(Some(Users::load(&p, true).unwrap()));
        assert_eq!(
            g.authorize("ana", "s3cret", Role::Operator),
            Ok(Role::Operator)
        );
        assert_eq!(
            g.authorize("vic", "look", Role::Operator),
            Err(AuthError::Forbidden {
                user: "vic".into(),
                role: Role::Viewer,
                need: Role::Operator
            })
        );
        assert!(matches!(
            g.authorize("", "x", Role::Operator),
            Err(AuthError::NoUser { .. })
        ));
        for _ in 0..FREE_ATTEMPTS {
            assert!(matches!(
                g.authorize("ana", "guess", Role::Operator),
                Err(AuthError::WrongSecret { .. })
            ));
        }
        // Blocked now, even with the right secret; others are not.
        assert!(matches!(
            g.authorize("ana", "s3cret", Role::Operator),
            Err(AuthError::Backoff { .. })
        ));
        assert_eq!(g.authorize("vic", "look", Role::Viewer), Ok(Role::Viewer));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            g.authorize("ana", "s3cret", Role::Operator),
            Ok(Role::Operator)
        );
        // Unknown users are refused like wrong secrets.
        assert!(matches!(
            g.authorize("mallory", "s3cret", Role::Viewer),
            Err(AuthError::WrongSecret { .. })
        ));
        // No users file: nobody.
        let none = Guard::new(None);
        assert!(none.authorize("ana", "s3cret", Role::Viewer).is_err());
    }

    #[test]
    fn an_edited_users_file_takes_effect_without_a_restart_and_a_bad_edit_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = users_file(d.path(), &[("ana", "operator", "s3cret")]);
        let g = Guard::from_file(&p, true).unwrap();
        assert!(g.authorize("ana", "s3cret", Role::Operator).is_ok());
        assert!(g.authorize("bo", "n3wcomer", Role::Operator).is_err());
        // Bo joins, Ana leaves.
        users_file(d.path(), &[("bo", "operator", "n3wcomer")]);
        assert_eq!(
            g.authorize("bo", "n3wcomer", Role::Operator),
            Ok(Role::Operator)
        );
        assert!(matches!(
            g.authorize("ana", "s3cret", Role::Operator),
            Err(AuthError::WrongSecret { .. })
        ));
        // A broken edit, a published secret, or a file others may read:
        // refused, Bo stays.
        std::fs::write(&p, "[[user]]\nname = \"bo\"\n").unwrap();
        assert_eq!(
            g.authorize("bo", "n3wcomer", Role::Operator),
            Ok(Role::Operator)
        );
        users_file(d.path(), &[("eve", "admin", "demo-admin")]);
        assert!(g.authorize("eve", "demo-admin", Role::Operator).is_err());
        assert_eq!(
            g.authorize("bo", "n3wcomer", Role::Operator),
            Ok(Role::Operator)
        );
        users_file(d.path(), &[("mal", "admin", "0pen-file")]);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(g.authorize("mal", "0pen-file", Role::Operator).is_err());
        assert_eq!(
            g.authorize("bo", "n3wcomer", Role::Operator),
            Ok(Role::Operator)
        );
    }

    #[test]
    fn an_open_users_file_or_a_published_secret_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = users_file(d.path(), &[("op", "operator", "demo-reset")]);
        let u = Users::load(&p, true).unwrap();
        let e = u.check_no_published_secret().unwrap_err().to_string();
        assert!(e.contains("`op`") && e.contains("users.toml"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Users::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("mode 644"), "{e}");
        assert!(
            Users::load(&p, false).is_ok(),
            "a simulated site only warns"
        );
        std::fs::write(
            &p,
            "[[user]]\nname = \"x\"\nrole = \"admin\"\nargon2id = \"plain\"\n",
        )
        .unwrap();
        let e = Users::load(&p, false).unwrap_err().to_string();
        assert!(e.contains("user[0] `x`: argon2id"), "{e}");
    }
}
