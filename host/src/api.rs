//! The local control API: a Unix socket in the host's state directory,
//! one JSON request per line, one JSON response per line.
//!
//! Owns: the socket, request parsing, and which role each request needs
//! (checked by [`Guard::authorize`], recorded in the [`Audit`] record,
//! allowed or not). May not touch: protection internals; it calls only
//! [`Protection::reset`] and reads the published status and the event
//! record. Plugin requests go to the reloader or, as orders, to the
//! control thread: the API never touches a plugin instance.
//!
//! Requests (`user`/`secret` where a role is needed):
//! - `{"cmd": "status"}` → protection status (contactors, limits, latches)
//! - `{"cmd": "events", "since_seq": 0}` → event records after `since_seq`
//! - `{"cmd": "audit", "since_seq": 0}` → the audit record
//! - `{"cmd": "reset", "user": .., "secret": ..}` (operator) → clears
//!   latched faults, only if every latched condition has cleared.
//! - `{"cmd": "open", "reason": .., "user": ..}` (no role: opening is
//!   never refused) → an `open` hold; `{"cmd": "release", ..}` (operator)
//!   withdraws it
//! - `{"cmd": "plugins"}` → per role: plugin, version, sha256, state,
//!   crashes, last swap, canary
//! - `{"cmd": "reload", "role": "soc", ..}` (operator) → re-read the site
//!   file and swap the role's plugin through validation and canary; waits
//!   for the outcome
//! - `{"cmd": "rollback", "role": "soc", ..}` (operator) → back to the
//!   previous version
//! - `{"cmd": "plugin_events", "since_seq": 0}` → the plugin runtime record
//!
//! Reads need no user: the socket is created with mode 0600 in the state
//! directory, and access to it is the authority to read.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::auth::{Guard, Role as AuthRole};
use crate::io::modbus::mode::{ControlMode, Mode};
use crate::journal::Feed;
use crate::plugins::events::PluginEvent;
use crate::plugins::manager::Board;
use crate::plugins::reload::{Order, Refused, ReloadHandle};
use crate::plugins::Role;
use crate::protection::events::EventRecord;
use crate::protection::task::Shared;
use crate::protection::{HoldKind, HoldSource, Protection};

/// How long a reload or rollback request waits for the control thread.
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Event records after `since_seq`, at most `limit` (default
    /// [`PAGE`]); page on with the last `seq` received.
    Events {
        #[serde(default)]
        since_seq: u64,
        #[serde(default = "page")]
        limit: usize,
    },
    Audit {
        #[serde(default)]
        since_seq: u64,
        #[serde(default = "page")]
        limit: usize,
    },
    Reset {
        #[serde(flatten)]
        who: Who,
    },
    /// Hold the contactors open (no user needed: opening is never
    /// refused; recorded with the user if one is given).
    Open {
        #[serde(default)]
        reason: String,
        #[serde(default)]
        user: String,
    },
    /// Withdraw the `open` hold (operator).
    Release {
        #[serde(flatten)]
        who: Who,
    },
    Plugins,
    Reload {
        role: Role,
        #[serde(flatten)]
        who: Who,
    },
    Rollback {
        role: Role,
        #[serde(flatten)]
        who: Who,
    },
    PluginEvents {
        #[serde(default)]
        since_seq: u64,
        #[serde(default = "page")]
        limit: usize,
    },
    /// Local or remote control: `mode` absent reads it (anyone), present
    /// switches it (operator; audited).
    Control {
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(flatten)]
        who: Who,
    },
}

/// Records per answer when a request gives no `limit`.
pub const PAGE: usize = 1000;

fn page() -> usize {
    PAGE
}

fn records<R: Serialize>(r: Result<Vec<R>, bms_journal::JournalError>) -> Response {
    match r {
        Ok(recs) => Response::ok(recs),
        Err(e) => Response::err(format!("cannot read the record: {e}")),
    }
}

/// Who asks: a user of `[operator] users_file` and their secret.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Who {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub secret: String,
}

impl std::fmt::Debug for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Who")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The answer: `ok` plus a result or an error message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Response {
    fn ok(v: impl Serialize) -> Self {
        Self {
            ok: true,
            error: None,
            result: serde_json::to_value(v).ok(),
        }
    }
    fn err(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            result: None,
        }
    }
}

/// The plugin side of the API.
#[derive(Clone)]
pub struct PluginControl {
    pub board: Arc<Board>,
    pub guard: Arc<Guard>,
    pub audit: Arc<Audit>,
    /// The plugin record's reader copy (not the journal: its lock is the
    /// control thread's).
    pub events: Arc<Mutex<Feed<PluginEvent>>>,
    pub orders: std::sync::mpsc::Sender<Order>,
    pub reload: ReloadHandle,
}

/// What the API serves from.
#[derive(Clone)]
pub struct ApiContext {
    /// Taken only by a reset (which must judge protection's own state).
    pub protection: Arc<Mutex<Protection>>,
    /// Protection's event record, a reader copy: listing it never takes
    /// the lock the protection tick takes.
    pub events: Arc<Mutex<Feed<EventRecord>>>,
    pub shared: Arc<Shared>,
    pub guard: Arc<Guard>,
    pub audit: Arc<Audit>,
    /// Local or remote control (`LocRemCtl`).
    pub control_mode: Arc<ControlMode>,
    pub plugins: Option<PluginControl>,
}

/// Authorise `who` for `need`, recording a refusal; the caller records
/// the outcome of an allowed request.
fn admit(
    guard: &Guard,
    audit: &Audit,
    who: &Who,
    need: AuthRole,
    action: &str,
    target: &str,
) -> Result<(), Response> {
    guard
        .authorize(&who.user, &who.secret, need)
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(user = %who.user, action, error = %e, "control request refused");
            audit.record(&who.user, "socket", action, target, &Err::<(), _>(&e));
            Response::err(e.to_string())
        })
}

fn wait(rx: std::sync::mpsc::Receiver<Result<String, Refused>>) -> Response {
    match rx.recv_timeout(ORDER_TIMEOUT) {
        Ok(Ok(msg)) => Response::ok(msg),
        Ok(Err(e)) => Response::err(e.0),
        Err(_) => Response::err(format!(
            "no answer within {} s: is the control cycle running?",
            ORDER_TIMEOUT.as_secs()
        )),
    }
}

impl ApiContext {
    fn admit(&self, who: &Who, action: &str, target: &str) -> Result<(), Response> {
        admit(
            &self.guard,
            &self.audit,
            who,
            AuthRole::Operator,
            action,
            target,
        )
    }

    fn set_control_mode(&self, mode: Mode, who: &Who) -> Response {
        let target = match mode {
            Mode::Local => "local",
            Mode::Remote => "remote",
        };
        if let Err(r) = self.admit(who, "control", target) {
            return r;
        }
        let outcome = self.control_mode.set(mode);
        self.audit
            .record(&who.user, "socket", "control", target, &outcome);
        match outcome {
            Ok(()) => {
                tracing::warn!(user = %who.user, ?mode, "control mode switched");
                Response::ok(match mode {
                    Mode::Local => {
                        "local control: remote (Modbus) writes are refused, except a disconnect"
                    }
                    Mode::Remote => "remote control: allowed Modbus writers may write again",
                })
            }
            Err(e) => Response::err(format!(
                "cannot record the control mode: {e}{}",
                if mode == Mode::Local {
                    " (local control is in force until restart)"
                } else {
                    ""
                }
            )),
        }
    }

    /// Handle one request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => Response::ok(&*self.shared.status()),
            Request::Events { since_seq, limit } => records(
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .since(since_seq, limit),
            ),
            Request::Audit { since_seq, limit } => records(self.audit.since(since_seq, limit)),
            Request::Open { reason, user } => {
                let user = if user.is_empty() {
                    "(anyone)".to_string()
                } else {
                    user
                };
                let why = format!("bmsctl open by {user}: {reason}");
                self.shared
                    .set_hold(HoldSource::ControlSocket, Some((HoldKind::Open, why)));
                tracing::warn!(%user, %reason, "contactors held open from the control socket");
                self.audit
                    .record(&user, "socket", "open", "contactors", &Ok::<(), String>(()));
                Response::ok("held open: protection opens the contactors at its next tick")
            }
            Request::Release { who } => {
                let (action, target) = ("release", "contactors");
                if let Err(r) = self.admit(&who, action, target) {
                    return r;
                }
                self.shared.set_hold(HoldSource::ControlSocket, None);
                self.audit
                    .record(&who.user, "socket", action, target, &Ok::<(), String>(()));
                Response::ok("released: protection closes again on its own conditions")
            }
            Request::Plugins
            | Request::Reload { .. }
            | Request::Rollback { .. }
            | Request::PluginEvents { .. } => match &self.plugins {
                Some(p) => p.handle(req),
                None => Response::err("this daemon runs without plugin control"),
            },
            Request::Control { mode: None, .. } => Response::ok(self.control_mode.mode()),
            Request::Control {
                mode: Some(mode),
                who,
            } => self.set_control_mode(mode, &who),
            Request::Reset { who } => {
                let (action, target) = ("reset", "protection");
                if let Err(r) = self.admit(&who, action, target) {
                    return r;
                }
                let now_ms = self.shared.status().time_ms;
                let snap = self.shared.snapshot();
                let by = format!("operator `{}` over the control socket", who.user);
                let outcome = self
                    .protection
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reset(&snap, now_ms, &by);
                self.audit
                    .record(&who.user, "socket", action, target, &outcome);
                match outcome {
                    Ok(cleared) => {
                        tracing::warn!(user = %who.user, count = cleared.len(), "protection reset by operator");
                        // So that `bmsctl status` right after shows the reset.
                        self.shared.await_fresh_status(Duration::from_secs(2));
                        Response::ok(cleared)
                    }
                    Err(e) => Response::err(format!("reset refused: {e}")),
                }
            }
        }
    }
}

impl PluginControl {
    fn admit(&self, who: &Who, action: &str, target: &str) -> Result<(), Response> {
        admit(
            &self.guard,
            &self.audit,
            who,
            AuthRole::Operator,
            action,
            target,
        )
    }

    fn audit_outcome(&self, who: &Who, action: &str, role: Role, r: &Response) {
        let outcome: Result<(), &str> = match &r.error {
            None => Ok(()),
            Some(e) => Err(e.as_str()),
        };
        self.audit
            .record(&who.user, "socket", action, role.key(), &outcome);
    }

    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Plugins => Response::ok(self.board.statuses()),
            Request::Reload { role, who } => {
                if let Err(r) = self.admit(&who, "reload", role.key()) {
                    return r;
                }
                let outcome = wait(self.reload.reload(role));
                self.audit_outcome(&who, "reload", role, &outcome);
                outcome
            }
            Request::Rollback { role, who } => {
                if let Err(r) = self.admit(&who, "rollback", role.key()) {
                    return r;
                }
                let (tx, rx) = std::sync::mpsc::channel();
                let outcome = if self.orders.send(Order::Rollback(role, Some(tx))).is_err() {
                    Response::err("the control cycle has stopped")
                } else {
                    wait(rx)
                };
                self.audit_outcome(&who, "rollback", role, &outcome);
                outcome
            }
            Request::PluginEvents { since_seq, limit } => records(
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .since(since_seq, limit),
            ),
            _ => Response::err("not a plugin request"),
        }
    }
}

/// A running control-socket server; stops and removes the socket on drop.
pub struct ApiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Listen on `path` (a stale socket file from a dead daemon is replaced).
    pub fn start(path: &Path, ctx: ApiContext) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() && UnixStream::connect(path).is_err() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("control-api".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let ctx = ctx.clone();
                            std::thread::spawn(move || serve(stream, &ctx));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "control socket accept failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            handle: Some(handle),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, ctx: &ApiContext) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => ctx.handle(req),
            Err(e) => Response::err(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// Client side: send one request and read the response.
pub fn call(path: &Path, req: &Request) -> std::io::Result<Response> {
    let mut stream = UnixStream::connect(path)?;
    // Longer than a reload may wait for the control thread.
    stream.set_read_timeout(Some(ORDER_TIMEOUT + Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    let mut resp = String::new();
    reader.read_line(&mut resp)?;
    serde_json::from_str(&resp).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo site's protection on a real event file, its tick lock
    /// held by another thread (a long tick, or a hung one).
    #[test]
    fn events_are_listed_while_the_protection_lock_is_held() {
        use crate::protection::events::{EventKind, EventLog};
        let cfg = crate::config::SiteConfig::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(&dir.path().join("events.jsonl")).unwrap();
        let events = Arc::new(Mutex::new(log.feed()));
        let mut p = Protection::new(cfg.protection.clone(), 500, log);
        p.set_holds(
            &[crate::protection::Hold {
                source: crate::protection::HoldSource::Operator,
                kind: crate::protection::HoldKind::Open,
                reason: "test".into(),
            }],
            0,
        );
        let ctx = ApiContext {
            protection: Arc::new(Mutex::new(p)),
            events,
            shared: Shared::new(crate::snapshot::PackSnapshot::empty(128, 16)),
            guard: Arc::new(Guard::new(None)),
            audit: Arc::new(Audit::memory()),
            control_mode: Arc::new(ControlMode::remote()),
            plugins: None,
        };
        let held = ctx.protection.clone();
        let _tick = held.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let c = ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(
                serde_json::to_value(c.handle(Request::Events {
                    since_seq: 0,
                    limit: PAGE,
                }))
                .unwrap(),
            );
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("`events` waited on the protection lock");
        assert_eq!(got["ok"], true, "{got}");
        let kinds: Vec<_> = got["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].clone())
            .collect();
        assert_eq!(
            kinds,
            [serde_json::to_value(EventKind::Hold).unwrap()],
            "{got}"
        );
    }
}
