//! The local control API: a Unix socket in the host's state directory,
//! one JSON request per line, one JSON response per line.
//!
//! Owns: the socket, request parsing, and operator authorisation (the reset
//! credential is checked here against the sha256 in `[operator]`). May not
//! touch: protection internals; it calls only [`Protection::reset`] and
//! reads the published status and the event record. Plugin requests go to
//! the reloader or, as orders, to the control thread: the API never
//! touches a plugin instance.
//!
//! Requests:
//! - `{"cmd": "status"}` → protection status (contactors, limits, latches)
//! - `{"cmd": "events", "since_seq": 0}` → event records after `since_seq`
//! - `{"cmd": "reset", "credential": "..."}` → clears latched faults, only
//!   if authorised and every latched condition has cleared.
//! - `{"cmd": "plugins"}` → per role: plugin, version, sha256, state,
//!   crashes, last swap, canary
//! - `{"cmd": "reload", "role": "soc"}` → re-read the site file and swap
//!   the role's plugin through validation and canary; waits for the outcome
//! - `{"cmd": "rollback", "role": "soc"}` → back to the previous version
//! - `{"cmd": "plugin_events", "since_seq": 0}` → the plugin runtime record
//!
//! The socket is created with mode 0600 in the state directory: access to
//! it is the authority to reload and roll back plugins (protection does not
//! depend on plugins, so this cannot unsafe the rack).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plugins::events::PluginJournal;
use crate::plugins::manager::Board;
use crate::plugins::reload::{Order, Refused, ReloadHandle};
use crate::plugins::Role;
use crate::protection::task::Shared;
use crate::protection::Protection;

/// How long a reload or rollback request waits for the control thread.
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Events {
        #[serde(default)]
        since_seq: u64,
    },
    Reset {
        credential: String,
    },
    Plugins,
    Reload {
        role: Role,
    },
    Rollback {
        role: Role,
    },
    PluginEvents {
        #[serde(default)]
        since_seq: u64,
    },
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

/// sha256 of a credential, lower-case hex (what `[operator]` stores).
pub fn hash_credential(credential: &str) -> String {
    crate::plugins::sha256_hex(credential.as_bytes())
}

/// Compare without an early exit, so timing does not leak the hash.
fn credential_matches(credential: &str, expected_sha256: &str) -> bool {
    let got = hash_credential(credential);
    let expected = expected_sha256.to_ascii_lowercase();
    got.len() == expected.len()
        && got
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The plugin side of the API.
#[derive(Clone)]
pub struct PluginControl {
    pub board: Arc<Board>,
    pub journal: PluginJournal,
    pub orders: std::sync::mpsc::Sender<Order>,
    pub reload: ReloadHandle,
}

/// What the API serves from.
#[derive(Clone)]
pub struct ApiContext {
    pub protection: Arc<Mutex<Protection>>,
    pub shared: Arc<Shared>,
    pub reset_credential_sha256: String,
    pub plugins: Option<PluginControl>,
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
    /// Handle one request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => Response::ok(&*self.shared.status()),
            Request::Events { since_seq } => {
                let p = self.protection.lock().unwrap_or_else(|e| e.into_inner());
                let recs: Vec<_> = p
                    .events()
                    .iter()
                    .filter(|r| r.seq > since_seq)
                    .cloned()
                    .collect();
                Response::ok(recs)
            }
            Request::Plugins
            | Request::Reload { .. }
            | Request::Rollback { .. }
            | Request::PluginEvents { .. } => match &self.plugins {
                Some(p) => p.handle(req),
                None => Response::err("this daemon runs without plugin control"),
            },
            Request::Reset { credential } => {
                if !credential_matches(&credential, &self.reset_credential_sha256) {
                    tracing::warn!("protection reset refused: wrong credential");
                    return Response::err("not authorised: wrong credential");
                }
                let now_ms = self.shared.status().time_ms;
                let snap = self.shared.snapshot();
                let mut p = self.protection.lock().unwrap_or_else(|e| e.into_inner());
                match p.reset(
                    &snap,
                    now_ms,
                    "an operator (credential) over the control socket",
                ) {
                    Ok(cleared) => {
                        tracing::warn!(count = cleared.len(), "protection reset by operator");
                        Response::ok(cleared)
                    }
                    Err(e) => Response::err(format!("reset refused: {e}")),
                }
            }
        }
    }
}

impl PluginControl {
    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Plugins => Response::ok(self.board.statuses()),
            Request::Reload { role } => wait(self.reload.reload(role)),
            Request::Rollback { role } => {
                let (tx, rx) = std::sync::mpsc::channel();
                if self.orders.send(Order::Rollback(role, Some(tx))).is_err() {
                    return Response::err("the control cycle has stopped");
                }
                wait(rx)
            }
            Request::PluginEvents { since_seq } => {
                // Copy under the lock, serialise after: the control thread
                // journals through the same lock.
                let recs: Vec<_> = {
                    let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
                    j.records()
                        .iter()
                        .filter(|r| r.seq > since_seq)
                        .cloned()
                        .collect()
                };
                Response::ok(recs)
            }
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

    #[test]
    fn credential_check_uses_the_hash() {
        let h = hash_credential("open sesame");
        assert_eq!(h.len(), 64);
        assert!(credential_matches("open sesame", &h));
        assert!(credential_matches("open sesame", &h.to_uppercase()));
        assert!(!credential_matches("open sesame!", &h));
        assert!(!credential_matches("", &h));
    }
}
