//! The reloader: prepares swap candidates off the control thread.
//!
//! Owns: the `notify` watcher on the site file and the plugin files, the
//! reload requests of operators, and the pipeline read → compile (or cache)
//! → validate → canary. A candidate that passes is sent to the control
//! thread as an [`Order`], which commits it at the next cycle boundary; one
//! that fails is journaled and never reaches a slot.
//!
//! A site-file edit reloads only the roles whose section (`path`,
//! `enabled`, `config`, `sandbox`) changed; a plugin-file change reloads the
//! roles that use that file, unless its bytes are those already running.
//! Files included by the site file (OCV tables) are read on reload but not
//! watched. Replace files atomically (write elsewhere, then `mv`): a
//! half-written component fails validation and is refused, which is safe
//! but noisy.
//!
//! May not touch: live instances (only the control thread does).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::canary::{self, SharedHistory};
use super::events::{record, PluginEventKind as K, PluginJournal};
use super::manager::Board;
use super::{Artifact, PluginEngine, Role};
use crate::config::SiteConfig;

/// Quiet time after a file event before acting: editors and `cp` write in
/// several steps.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub use bms_plugin_runtime::orders::{Order, Refused, Reply};

enum Request {
    Reload(Role, Option<Reply>),
    Files(Vec<PathBuf>),
    Stop,
}

/// Handle of the reloader thread; stops it on drop.
pub struct Reloader {
    tx: Sender<Request>,
    handle: Option<std::thread::JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

/// What the reloader works with.
pub struct ReloaderParts {
    pub engine: PluginEngine,
    pub cfg: SiteConfig,
    pub history: SharedHistory,
    pub orders: Sender<Order>,
    pub journal: PluginJournal,
    pub board: Arc<Board>,
}

impl Reloader {
    /// Start the thread and, if `plugins.policy.watch`, the file watcher.
    pub fn spawn(parts: ReloaderParts) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let watcher = if parts.cfg.plugins.policy.watch {
            match watch(&parts.cfg, tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch plugin files; reload on operator request only");
                    None
                }
            }
        } else {
            None
        };
        let mut worker = Worker {
            parts,
            sent: Default::default(),
            installs_sent: [0; 4],
        };
        let handle = std::thread::Builder::new()
            .name("plugin-reloader".into())
            .spawn(move || {
                lower_priority();
                worker.run(rx)
            })?;
        Ok(Self {
            tx,
            handle: Some(handle),
            _watcher: watcher,
        })
    }

    /// A sender for operator reloads (the control API holds one).
    pub fn handle(&self) -> ReloadHandle {
        ReloadHandle(self.tx.clone())
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Asks the reloader for a reload; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle(Sender<Request>);

impl ReloadHandle {
    /// Re-read the site file and reload `role` from it, even if nothing
    /// changed (this also lifts a quarantine). The outcome arrives on the
    /// returned channel once the control thread has committed or refused.
    pub fn reload(&self, role: Role) -> Receiver<Result<String, Refused>> {
        let (tx, rx) = mpsc::channel();
        if self
            .0
            .send(Request::Reload(role, Some(tx.clone())))
            .is_err()
        {
            let _ = tx.send(Err(Refused("the reloader has stopped".into())));
        }
        rx
    }
}

fn watch(cfg: &SiteConfig, tx: Sender<Request>) -> notify::Result<notify::RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, EventKind::Access(_)) {
                let _ = tx.send(Request::Files(ev.paths));
            }
        }
    })?;
    let mut dirs = BTreeSet::new();
    dirs.insert(parent(&canonical(&cfg.source)));
    for role in Role::ALL
        .into_iter()
        .filter(|r| cfg.plugins.slot(*r).enabled)
    {
        dirs.insert(parent(&canonical(
            &cfg.resolve(&cfg.plugins.slot(role).path),
        )));
    }
    // One missing directory must not switch off the others' watches.
    for d in dirs {
        if let Err(e) = w.watch(&d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch; changes there need `bmsctl reload`");
        }
    }
    Ok(w)
}

/// Compiles and canaries yield to the control and protection threads.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; Linux keeps a nice
    // value per thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the reloader's priority");
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// `p` with its directory resolved (the file itself may not exist yet).
fn canonical(p: &Path) -> PathBuf {
    match (
        p.parent().and_then(|d| d.canonicalize().ok()),
        p.file_name(),
    ) {
        (Some(d), Some(f)) => d.join(f),
        _ => p.to_path_buf(),
    }
}

struct Worker {
    parts: ReloaderParts,
    /// sha256 of the last candidate sent per role.
    sent: [Option<String>; 4],
    /// Install orders sent per role.
    installs_sent: [u64; 4],
}

impl Worker {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(req) = rx.recv() {
            match req {
                Request::Stop => return,
                Request::Reload(role, reply) => self.operator_reload(role, reply),
                Request::Files(mut paths) => {
                    // Gather the burst of events one save produces.
                    let mut later = Vec::new();
                    loop {
                        match rx.recv_timeout(DEBOUNCE) {
                            Ok(Request::Files(p)) => paths.extend(p),
                            Ok(other) => later.push(other),
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    self.files_changed(&paths);
                    for r in later {
                        match r {
                            Request::Stop => return,
                            Request::Reload(role, reply) => self.operator_reload(role, reply),
                            Request::Files(p) => self.files_changed(&p),
                        }
                    }
                }
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.parts.board.time_ms()
    }

    fn reread_config(&mut self) -> Option<SiteConfig> {
        match SiteConfig::load(&self.parts.cfg.source) {
            Ok(c) => Some(c),
            Err(e) => {
                record(
                    &self.parts.journal,
                    self.now_ms(),
                    None,
                    K::ConfigRejected,
                    None,
                    format!("site file edit not applied, every role keeps its plugin: {e}"),
                );
                None
            }
        }
    }

    fn operator_reload(&mut self, role: Role, reply: Option<Reply>) {
        let Some(cfg) = self.reread_config() else {
            if let Some(r) = reply {
                let _ = r.send(Err(Refused(format!(
                    "{}: the site file does not load; see `bmsctl events`",
                    self.parts.cfg.source.display()
                ))));
            }
            return;
        };
        self.parts.cfg = cfg;
        self.prepare(role, "operator".into(), reply, true);
    }

    fn files_changed(&mut self, paths: &[PathBuf]) {
        let paths: Vec<PathBuf> = paths.iter().map(|p| canonical(p)).collect();
        // (role, trigger, force): a site-file change always applies; a file
        // event whose bytes are already running (editors emit several)
        // does not.
        let mut todo: Vec<(Role, &str, bool)> = Vec::new();
        if paths.contains(&canonical(&self.parts.cfg.source)) {
            if let Some(new) = self.reread_config() {
                for role in Role::ALL {
                    let (a, b) = (&self.parts.cfg.plugins, &new.plugins);
                    if a.slot(role) != b.slot(role) || a.sandbox_for(role) != b.sandbox_for(role) {
                        todo.push((role, "site file change", true));
                    }
                }
                if new.plugins.policy != self.parts.cfg.plugins.policy {
                    record(
                        &self.parts.journal,
                        self.now_ms(),
                        None,
                        K::ConfigRejected,
                        None,
                        "`plugins.policy` changed in the site file: it takes effect at the next \
                         start of bmsd, not on a live reload"
                            .into(),
                    );
                }
                self.parts.cfg = new;
            }
        }
        for role in Role::ALL {
            let file = canonical(
                &self
                    .parts
                    .cfg
                    .resolve(&self.parts.cfg.plugins.slot(role).path),
            );
            if paths.contains(&file) && !todo.iter().any(|(r, _, _)| *r == role) {
                todo.push((role, "plugin file change", false));
            }
        }
        for (role, trigger, force) in todo {
            self.prepare(role, trigger.into(), None, force);
        }
    }

    /// Build, validate and canary a candidate for `role` from the current
    /// config, and send it to the control thread.
    fn prepare(&mut self, role: Role, trigger: String, reply: Option<Reply>, force: bool) {
        let cfg = &self.parts.cfg;
        let slot = cfg.plugins.slot(role);
        if !slot.enabled {
            let _ = self.parts.orders.send(Order::Disable(
                role,
                format!("disabled in the site file ({trigger})"),
                reply,
            ));
            return;
        }
        let path = cfg.resolve(&slot.path);
        let refuse = |message: String, reply: Option<Reply>| {
            record(
                &self.parts.journal,
                self.now_ms(),
                Some(role),
                K::SwapRefused,
                None,
                format!(
                    "{} ({trigger}): {message}; the running version stays",
                    path.display()
                ),
            );
            if let Some(r) = reply {
                let _ = r.send(Err(Refused(message)));
            }
        };
        let artifact = match Artifact::load(&self.parts.engine, role, &path) {
            Ok(a) => a,
            Err(e) => return refuse(e.to_string(), reply),
        };
        if !force && self.parts.board.pinned(role).as_deref() == Some(artifact.sha256.as_str()) {
            tracing::info!(%role, "plugin file holds the version an operator rolled back from; not applied (change the file or `bmsctl reload`)");
            return;
        }
        // While an install is queued, compare with what was sent (it is not
        // on the board yet); once decided, with what runs, so the file can
        // be re-applied after a refusal or a rollback.
        let i = super::canary::role_index(role);
        let queued = self.installs_sent[i] > self.parts.board.installs_decided(role);
        let last = match (&self.sent[i], queued) {
            (Some(sha), true) => Some(sha.clone()),
            _ => self.parts.board.running_sha256(role),
        };
        if !force && last.as_deref() == Some(artifact.sha256.as_str()) {
            tracing::debug!(%role, "plugin file event with unchanged bytes; nothing to do");
            return;
        }
        let json = serde_json::to_string(&slot.config).unwrap_or_else(|_| "{}".into());
        let candidate = canary::run(
            &self.parts.engine,
            artifact,
            json,
            cfg.plugins.sandbox_for(role),
            &self.parts.history,
            cfg.plugins.policy.canary_snapshots,
            trigger.clone(),
        );
        self.parts.board.set_canary(role, candidate.canary.clone());
        if !candidate.canary.passed {
            let why = format!("canary {}", candidate.canary.summary());
            return refuse(why, reply);
        }
        self.sent[i] = Some(candidate.artifact.sha256.clone());
        self.installs_sent[i] += 1;
        if self
            .parts
            .orders
            .send(Order::Install(Box::new(candidate), reply))
            .is_err()
        {
            tracing::warn!(%role, "control thread gone; candidate dropped");
        }
    }
}
