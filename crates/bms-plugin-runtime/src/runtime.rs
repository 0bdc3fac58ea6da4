//! The wasmtime runtime for strategy plugins.
//!
//! Owns: the engine (deterministic settings, epoch interruption), the
//! linker (which provides only `bms:plugin/log`: no WASI, nothing else),
//! loading and instantiating components, and calling them under a memory
//! cap and a CPU deadline.
//!
//! May not touch: protection or I/O. A plugin instance can only compute and
//! log; whatever it returns goes back to the control cycle, which clamps it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::{balancer, ems, log, soc, soh, types};
use super::cache::{ArtifactCache, Lookup};
use super::validate::{self, Mismatch};
use super::Role;
use crate::config::SandboxConfig;

/// Epoch ticker period: the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Longest log message a plugin may write; longer ones are truncated.
const MAX_LOG_BYTES: usize = 1024;

/// Log messages a plugin may write per call; the rest are dropped and
/// counted, so a plugin logging in a loop cannot flood the host log.
const MAX_LOGS_PER_CALL: u32 = 16;

/// Everything that can go wrong with a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{role} plugin {path}: cannot read: {source}")]
    Read {
        role: Role,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{role} plugin {path}: not a valid component: {message}")]
    Compile {
        role: Role,
        path: PathBuf,
        message: String,
    },
    /// Validation failed: wrong world, incompatible version, or an import
    /// the host does not provide. `message` names what does not match.
    #[error("{role} plugin {path}: {message}")]
    Rejected {
        role: Role,
        path: PathBuf,
        message: String,
    },
    #[error("{role} plugin `{plugin}`: init rejected its config: {message}")]
    Init {
        role: Role,
        plugin: String,
        message: String,
    },
    #[error("{role} plugin `{plugin}`: `{call}` returned an error: {message}")]
    Returned {
        role: Role,
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error("{role} plugin `{plugin}`: `{call}` trapped: {message}")]
    Trap {
        role: Role,
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error("{role} plugin `{plugin}`: output rejected: {message}")]
    BadOutput {
        role: Role,
        plugin: String,
        message: String,
    },
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot set up the wasmtime engine: {0}")]
    Wasmtime(String),
    #[error("cannot start the plugin-epoch thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl PluginError {
    /// Whether the instance is unusable after this error.
    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Trap { .. })
    }
}

/// Per-instance host state.
pub struct PluginCtx {
    limits: StoreLimits,
    role: Role,
    plugin: String,
    /// Messages logged during the current call.
    logs_this_call: u32,
    /// The last error-level message of the current call: a panic's text
    /// (the SDK's panic hook logs it just before the trap).
    last_error_log: Option<String>,
    /// Messages dropped over the instance's life for exceeding the budget.
    pub logs_dropped: u64,
}

impl log::Host for PluginCtx {
    fn log(&mut self, level: log::Level, message: String) {
        self.logs_this_call += 1;
        if self.logs_this_call > MAX_LOGS_PER_CALL {
            self.logs_dropped += 1;
            if self.logs_this_call == MAX_LOGS_PER_CALL + 1 {
                tracing::warn!(role = %self.role, plugin = %self.plugin, "plugin exceeded {MAX_LOGS_PER_CALL} log messages in one call; dropping the rest of this call's");
            }
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        if level == log::Level::Error {
            self.last_error_log = Some(message.clone());
        }
        let (role, plugin) = (self.role, self.plugin.as_str());
        match level {
            log::Level::Trace => tracing::trace!(%role, plugin, "{message}"),
            log::Level::Debug => tracing::debug!(%role, plugin, "{message}"),
            log::Level::Info => tracing::info!(%role, plugin, "{message}"),
            log::Level::Warn => tracing::warn!(%role, plugin, "{message}"),
            log::Level::Error => tracing::error!(%role, plugin, "{message}"),
        }
    }
}

impl types::Host for PluginCtx {}

/// The shared engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<PluginCtx>>,
    cache: Option<Arc<ArtifactCache>>,
    _ticker: Arc<Ticker>,
}

/// Advances the engine epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    pub fn new() -> Result<Self, EngineError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            // Deterministic execution: the same plugin gives the same
            // numbers on every host.
            // Threads are compiled out (no `threads` feature); relaxed SIMD
            // is the one remaining source of cross-host differences.
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            // Hot-swap compiles run beside the control and protection
            // threads: one core for Cranelift, never all of them.
            .parallel_compilation(false);
        let engine = Engine::new(&config).map_err(wt)?;
        let mut linker = Linker::new(&engine);
        log::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(wt)?;
        types::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(wt)?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache: None,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// Keep precompiled `.cwasm` artifacts in `dir` (see [`super::cache`]).
    /// A cache directory that cannot be trusted (see [`super::trust`])
    /// disables the cache: every load compiles.
    pub fn with_cache(mut self, dir: PathBuf) -> Self {
        match ArtifactCache::open(dir, &self.engine) {
            Ok(c) => self.cache = Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(error = %e, "plugin cache disabled: every load compiles");
                self.cache = None;
            }
        }
        self
    }

    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_deref()
    }

    /// Compile a component and check that every import is one this host
    /// provides. The host's linker defines only `bms:plugin/log` (and the
    /// type-only `bms:plugin/types`), so anything else — a contactor, a
    /// limit, WASI — fails here, and the error names the import.
    pub fn check_linkable(&self, bytes: &[u8]) -> Result<(), Mismatch> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| Mismatch(format!("not a valid component: {e:#}")))?;
        validate::check_imports(&self.engine, &component)?;
        self.linker
            .instantiate_pre(&component)
            .map(|_| ())
            .map_err(|e| Mismatch(format!("{e:#}")))
    }

    /// What a component imports: each imported instance with the names it
    /// exports to the component (functions and types).
    pub fn describe_imports(&self, bytes: &[u8]) -> Result<Vec<(String, Vec<String>)>, Mismatch> {
        use wasmtime::component::types::ComponentItem;
        let component =
            Component::new(&self.engine, bytes).map_err(|e| Mismatch(format!("{e:#}")))?;
        let ty = component.component_type();
        Ok(ty
            .imports(&self.engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentInstance(inst) => Some((
                    name.to_string(),
                    inst.exports(&self.engine)
                        .map(|(n, _)| n.to_string())
                        .collect(),
                )),
                _ => None,
            })
            .collect())
    }
}

enum Bindings {
    Soc(soc::SocEstimator),
    Soh(soh::SohEstimator),
    Balancer(balancer::Balancer),
    Ems(ems::EmsAdvisor),
}

/// Pre-linked component of one world: instantiating it is cheap.
enum RolePre {
    Soc(soc::SocEstimatorPre<PluginCtx>),
    Soh(soh::SohEstimatorPre<PluginCtx>),
    Balancer(balancer::BalancerPre<PluginCtx>),
    Ems(ems::EmsAdvisorPre<PluginCtx>),
}

impl RolePre {
    fn new(role: Role, pre: wasmtime::component::InstancePre<PluginCtx>) -> Result<Self, String> {
        let e = |e: wasmtime::Error| format!("{e:#}");
        Ok(match role {
            Role::Soc => Self::Soc(soc::SocEstimatorPre::new(pre).map_err(e)?),
            Role::Soh => Self::Soh(soh::SohEstimatorPre::new(pre).map_err(e)?),
            Role::Balancer => Self::Balancer(balancer::BalancerPre::new(pre).map_err(e)?),
            Role::Ems => Self::Ems(ems::EmsAdvisorPre::new(pre).map_err(e)?),
        })
    }

    fn instantiate(&self, store: &mut Store<PluginCtx>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Self::Soc(p) => Bindings::Soc(p.instantiate(store)?),
            Self::Soh(p) => Bindings::Soh(p.instantiate(store)?),
            Self::Balancer(p) => Bindings::Balancer(p.instantiate(store)?),
            Self::Ems(p) => Bindings::Ems(p.instantiate(store)?),
        })
    }
}

/// Where an artifact's native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeSource {
    Compiled,
    Cache,
}

/// A component compiled and validated for one role: the unit that is
/// instantiated, restarted after a crash, swapped in and rolled back to.
pub struct Artifact {
    pub role: Role,
    pub path: PathBuf,
    /// sha256 of the component file, hex.
    pub sha256: String,
    pub source: CodeSource,
    /// Time to compile (or load from the cache) and validate, in µs.
    pub prepare_us: u64,
    /// Why a cache entry was not used, if one existed.
    pub cache_note: Option<String>,
    pre: RolePre,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("role", &self.role)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .finish()
    }
}

impl Artifact {
    /// Read, compile (or take from the cache), validate and pre-link the
    /// component at `path` for `role`. Call off the control thread: a
    /// compile takes tens of ms.
    pub fn load(engine: &PluginEngine, role: Role, path: &Path) -> Result<Arc<Self>, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            role,
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(engine, role, path, &bytes)
    }

    pub fn from_bytes(
        engine: &PluginEngine,
        role: Role,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Arc<Self>, PluginError> {
        let began = Instant::now();
        let sha256 = super::sha256_hex(bytes);
        let rejected = |message: String| PluginError::Rejected {
            role,
            path: path.to_owned(),
            message,
        };
        let (mut source, mut cache_note) = (CodeSource::Compiled, None);
        let cached = match engine.cache() {
            Some(cache) => match cache.load(&engine.engine, &sha256) {
                Lookup::Hit(c) => Some(c),
                Lookup::Miss => None,
                Lookup::Rejected(why) => {
                    cache_note = Some(why);
                    None
                }
            },
            None => None,
        };
        let component = match cached {
            Some(c) => {
                source = CodeSource::Cache;
                c
            }
            None => Component::new(&engine.engine, bytes).map_err(|e| PluginError::Compile {
                role,
                path: path.to_owned(),
                message: format!("{e:#}"),
            })?,
        };
        validate::check_imports(&engine.engine, &component).map_err(|m| rejected(m.0))?;
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| rejected(format!("cannot be linked: {e:#}")))?;
        let fits = |r: Role| RolePre::new(r, pre.clone()).map(|_| ());
        validate::check_world(&engine.engine, &component, role, &fits)
            .map_err(|m| rejected(m.0))?;
        let pre = RolePre::new(role, pre).map_err(rejected)?;
        if let (Some(cache), CodeSource::Compiled) = (engine.cache(), source) {
            // Only now, after validation, may native code reach the disk.
            if let Err(e) = cache.store(&sha256, &component) {
                tracing::warn!(%role, error = %e, dir = %cache.dir().display(), "cannot write the plugin cache; continuing without it");
            }
        }
        Ok(Arc::new(Self {
            role,
            path: path.to_owned(),
            sha256,
            source,
            prepare_us: began.elapsed().as_micros() as u64,
            cache_note,
            pre,
        }))
    }
}

/// Name, version and description a plugin reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// sha256 of the component file, hex.
    pub sha256: String,
    pub path: PathBuf,
}

/// One live plugin instance.
pub struct PluginInstance {
    role: Role,
    store: Store<PluginCtx>,
    bindings: Bindings,
    info: PluginInfo,
    sandbox: SandboxConfig,
    artifact: Arc<Artifact>,
}

/// Call a method present in every world.
macro_rules! each_world {
    ($bindings:ident, $b:ident => $call:expr) => {
        match $bindings {
            Bindings::Soc($b) => $call,
            Bindings::Soh($b) => $call,
            Bindings::Balancer($b) => $call,
            Bindings::Ems($b) => $call,
        }
    };
}

impl PluginInstance {
    /// Load, compile, validate, instantiate and `init` a component.
    pub fn load(
        engine: &PluginEngine,
        role: Role,
        path: &Path,
        config_json: &str,
        sandbox: SandboxConfig,
    ) -> Result<Self, PluginError> {
        let artifact = Artifact::load(engine, role, path)?;
        Self::instantiate(engine, &artifact, config_json, sandbox)
    }

    /// A fresh instance of an artifact in its own store, `init`ed with
    /// `config_json` (tens of µs plus the plugin's `init`).
    pub fn instantiate(
        engine: &PluginEngine,
        artifact: &Arc<Artifact>,
        config_json: &str,
        sandbox: SandboxConfig,
    ) -> Result<Self, PluginError> {
        let role = artifact.role;
        let path = &artifact.path;
        let ctx = PluginCtx {
            limits: StoreLimitsBuilder::new()
                .memory_size(sandbox.memory_mib as usize * 1024 * 1024)
                .instances(4)
                .table_elements(100_000)
                .tables(8)
                .memories(1)
                .trap_on_grow_failure(true)
                .build(),
            role,
            logs_this_call: 0,
            last_error_log: None,
            logs_dropped: 0,
            plugin: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let mut store = Store::new(&engine.engine, ctx);
        store.limiter(|c| &mut c.limits);
        store.set_epoch_deadline(deadline_ticks(sandbox));
        let bindings = artifact
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Trap {
                role,
                plugin: path.display().to_string(),
                call: "instantiate",
                message: trap_message(&e, sandbox),
            })?;
        let mut instance = Self {
            role,
            store,
            bindings,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                sha256: artifact.sha256.clone(),
                path: path.to_owned(),
            },
            sandbox,
            artifact: artifact.clone(),
        };
        let info = instance.call("info", |b, s| each_world!(b, w => w.call_info(s)))?;
        instance.info.name = info.name.clone();
        instance.info.version = info.version;
        instance.info.description = info.description;
        instance.store.data_mut().plugin = info.name;
        let json = config_json.to_owned();
        instance
            .call(
                "init",
                |b, s| each_world!(b, w => w.call_init(&mut *s, &json)),
            )?
            .map_err(|message| PluginError::Init {
                role,
                plugin: instance.info.name.clone(),
                message,
            })?;
        Ok(instance)
    }

    pub fn artifact(&self) -> &Arc<Artifact> {
        &self.artifact
    }

    pub fn sandbox(&self) -> SandboxConfig {
        self.sandbox
    }

    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Run one export under the deadline, mapping traps to errors.
    fn call<R>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&Bindings, &mut Store<PluginCtx>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.store.set_epoch_deadline(deadline_ticks(self.sandbox));
        self.store.data_mut().logs_this_call = 0;
        self.store.data_mut().last_error_log = None;
        let result = f(&self.bindings, &mut self.store);
        result.map_err(|e| {
            let mut message = trap_message(&e, self.sandbox);
            // Name the cause the plugin gave, so an operator reading
            // `bmsctl plugins` needs no log.
            if let Some(log) = self.store.data_mut().last_error_log.take() {
                message.push_str(&format!("; its last error log: {log}"));
            }
            PluginError::Trap {
                role: self.role,
                plugin: self.info.name.clone(),
                call: name,
                message,
            }
        })
    }

    fn returned<T>(&self, call: &'static str, r: Result<T, String>) -> Result<T, PluginError> {
        r.map_err(|message| PluginError::Returned {
            role: self.role,
            plugin: self.info.name.clone(),
            call,
            message,
        })
    }

    /// Log messages dropped so far for exceeding the per-call allowance.
    pub fn logs_dropped(&self) -> u64 {
        self.store.data().logs_dropped
    }

    /// The plugin's state, refused (not a crash) when it is larger than
    /// the sandbox's `max_state_kib`: the previous checkpoint stays.
    pub fn save_state(&mut self) -> Result<Vec<u8>, PluginError> {
        let blob = self.call(
            "save-state",
            |b, s| each_world!(b, w => w.call_save_state(&mut *s)),
        )?;
        let cap = self.sandbox.max_state_kib as usize * 1024;
        if blob.len() > cap {
            return Err(PluginError::BadOutput {
                role: self.role,
                plugin: self.info.name.clone(),
                message: format!(
                    "save-state returned {} bytes, over the {} KiB cap \
                     (plugins.sandbox.max_state_kib); state not kept",
                    blob.len(),
                    self.sandbox.max_state_kib
                ),
            });
        }
        Ok(blob)
    }

    pub fn restore_state(&mut self, state: &[u8]) -> Result<(), PluginError> {
        let state = state.to_vec();
        let r = self.call(
            "restore-state",
            |b, s| each_world!(b, w => w.call_restore_state(&mut *s, &state)),
        )?;
        self.returned("restore-state", r)
    }

    pub fn step_soc(
        &mut self,
        input: &types::PackSnapshot,
    ) -> Result<types::SocOutput, PluginError> {
        let r = self.call("step", |b, s| match b {
            Bindings::Soc(w) => w.call_step(s, input),
            _ => unreachable!("role checked at load"),
        })?;
        self.returned("step", r)
    }

    pub fn step_soh(
        &mut self,
        input: &types::PackSnapshot,
    ) -> Result<types::SohOutput, PluginError> {
        let r = self.call("step", |b, s| match b {
            Bindings::Soh(w) => w.call_step(s, input),
            _ => unreachable!("role checked at load"),
        })?;
        self.returned("step", r)
    }

    pub fn step_balancer(
        &mut self,
        input: &types::BalanceInput,
    ) -> Result<types::BalanceOutput, PluginError> {
        let r = self.call("step", |b, s| match b {
            Bindings::Balancer(w) => w.call_step(s, input),
            _ => unreachable!("role checked at load"),
        })?;
        self.returned("step", r)
    }

    pub fn step_ems(&mut self, input: &types::EmsInput) -> Result<types::EmsOutput, PluginError> {
        let r = self.call("step", |b, s| match b {
            Bindings::Ems(w) => w.call_step(s, input),
            _ => unreachable!("role checked at load"),
        })?;
        self.returned("step", r)
    }
}

fn deadline_ticks(sandbox: SandboxConfig) -> u64 {
    // +1: the current tick may be nearly over when the call starts.
    (sandbox.deadline_ms.max(1) / EPOCH_TICK.as_millis() as u64) + 1
}

fn trap_message(e: &wasmtime::Error, sandbox: SandboxConfig) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!("exceeded its CPU deadline of {} ms", sandbox.deadline_ms)
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "panicked or aborted (wasm `unreachable`)".to_string()
        }
        Some(t) => format!("{t}"),
        // StoreLimits refuses the growth and, with trap-on-grow-failure,
        // turns it into this error.
        None if format!("{e:#}").contains("growing memory") => format!(
            "exceeded its memory cap of {} MiB ({e:#})",
            sandbox.memory_mib
        ),
        None => format!("{e:#}"),
    }
}

/// wasmtime's error type is not `std::error::Error`; keep its full chain.
fn wt(e: wasmtime::Error) -> EngineError {
    EngineError::Wasmtime(format!("{e:#}"))
}
