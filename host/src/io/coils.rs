//! Contactor outputs on a Modbus TCP remote I/O module: the precharge
//! relay, the main contactor and the watchdog heartbeat line as coils
//! (`[outputs] driver = "modbus-coils"`).
//!
//! Owns: the client connection on a thread of its own (tokio current-thread
//! runtime), break-before-make write order, the refresh period, reconnection
//! with backoff, the link status and its alarm.
//!
//! May not touch: protection. The protection thread hands each command to
//! [`ModbusCoilOutput`] through a watch channel and never waits for the
//! network. A link that is down cannot open anything, so the installation
//! must de-energise the coils without the host: the external watchdog relay
//! on the heartbeat coil, and the module's own communication-loss timeout.
//! The site also holds protection open while the link is down (SAFETY.md),
//! so the contactors never resume closed when it returns.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_modbus::prelude::*;

use super::contactor::ContactorOutput;
use crate::io::modbus::client::{connect, Backoff};
use crate::protection::contactor::RelayOutputs;

/// `[outputs]` with `driver = "modbus-coils"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoilConfig {
    /// The remote I/O module, `host:port`.
    pub address: SocketAddr,
    #[serde(default = "default_unit")]
    pub unit_id: u8,
    /// Coil address of the precharge relay.
    pub precharge_coil: u16,
    /// Coil address of the main contactor.
    pub main_coil: u16,
    /// Coil the external watchdog relay watches; toggled every protection
    /// period.
    pub heartbeat_coil: u16,
    /// Per-request and connect timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Every coil is rewritten at least this often, so a module that
    /// restarted is brought back to the commanded state.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    #[serde(default = "default_backoff_ms")]
    pub reconnect_backoff_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
}

fn default_unit() -> u8 {
    1
}
fn default_timeout_ms() -> u64 {
    100
}
fn default_refresh_ms() -> u64 {
    500
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    5_000
}

impl CoilConfig {
    /// Field-naming validation (called by the site config).
    pub fn validate(&self) -> Result<(), (String, String)> {
        crate::io::modbus::client::validate_timing(
            &[
                ("timeout_ms", self.timeout_ms),
                ("refresh_ms", self.refresh_ms),
            ],
            self.reconnect_backoff_ms,
            self.reconnect_backoff_max_ms,
        )?;
        let coils = [
            ("precharge_coil", self.precharge_coil),
            ("main_coil", self.main_coil),
            ("heartbeat_coil", self.heartbeat_coil),
        ];
        for (i, (f, c)) in coils.iter().enumerate() {
            if let Some((g, _)) = coils[..i].iter().find(|(_, d)| d == c) {
                return Err(((*f).into(), format!("coil {c} is also `{g}`")));
            }
        }
        Ok(())
    }
}

/// What the output link reports (summary, tests, the site's hold).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoilLinkStatus {
    /// The module answered the last write.
    pub connected: bool,
    /// The module cannot be reached: an alarm, and protection holds open.
    pub alarm: Option<String>,
    pub writes: u64,
    pub failures: u64,
    pub reconnects: u64,
    /// The coil states the module last acknowledged.
    pub acknowledged: Option<RelayOutputs>,
}

/// What the protection thread commands.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Command {
    outputs: RelayOutputs,
    heartbeat: bool,
    /// Write everything open one last time, then stop.
    shutdown: bool,
}

/// The contactor driver; de-energises every coil on drop.
pub struct ModbusCoilOutput {
    tx: watch::Sender<Command>,
    status: Arc<Mutex<CoilLinkStatus>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// Read access to a running output link's status.
#[derive(Clone)]
pub struct CoilLink(Arc<Mutex<CoilLinkStatus>>);

impl CoilLink {
    /// Whether the module answered the last write (no clone).
    pub fn connected(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).connected
    }

    pub fn status(&self) -> CoilLinkStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ModbusCoilOutput {
    /// Start the link thread; every coil is commanded open until
    /// protection says otherwise.
    pub fn start(cfg: CoilConfig) -> std::io::Result<(Self, CoilLink)> {
        let (tx, rx) = watch::channel(Command {
            outputs: RelayOutputs::OPEN,
            heartbeat: false,
            shutdown: false,
        });
        let status = Arc::new(Mutex::new(CoilLinkStatus::default()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let st = status.clone();
        let handle = std::thread::Builder::new()
            .name("coil-link".into())
            .spawn(move || rt.block_on(run(cfg, rx, st)))?;
        let link = CoilLink(status.clone());
        Ok((
            Self {
                tx,
                status,
                handle: Some(handle),
            },
            link,
        ))
    }
}

impl ContactorOutput for ModbusCoilOutput {
    fn set(&mut self, outputs: RelayOutputs) {
        self.tx.send_if_modified(|c| {
            let changed = c.outputs != outputs;
            c.outputs = outputs;
            changed
        });
    }

    fn toggle_heartbeat(&mut self, _now_ms: u64) {
        self.tx.send_modify(|c| c.heartbeat = !c.heartbeat);
    }
}

impl Drop for ModbusCoilOutput {
    fn drop(&mut self) {
        self.tx.send_modify(|c| {
            c.outputs = RelayOutputs::OPEN;
            c.shutdown = true;
        });
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if s.acknowledged != Some(RelayOutputs::OPEN) {
            tracing::error!(
                alarm = ?s.alarm,
                "contactor coils not confirmed open at exit: the watchdog relay and the module's \
                 communication timeout must open them"
            );
        }
    }
}

/// (coil, level) in break-before-make order: every coil that opens is
/// written before any coil that closes.
fn writes(cfg: &CoilConfig, c: &Command) -> [(u16, bool); 3] {
    let mut w = [
        (cfg.main_coil, c.outputs.main),
        (cfg.precharge_coil, c.outputs.precharge),
        (cfg.heartbeat_coil, c.heartbeat),
    ];
    w.sort_by_key(|&(_, on)| on);
    w
}

async fn run(
    cfg: CoilConfig,
    mut rx: watch::Receiver<Command>,
    status: Arc<Mutex<CoilLinkStatus>>,
) {
    let timeout = Duration::from_millis(cfg.timeout_ms);
    let refresh = Duration::from_millis(cfg.refresh_ms);
    let mut backoff = Backoff::new(cfg.reconnect_backoff_ms, cfg.reconnect_backoff_max_ms);
    let set =
        |f: &dyn Fn(&mut CoilLinkStatus)| f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
    loop {
        if rx.borrow().shutdown {
            return;
        }
        let mut ctx = match connect(cfg.address, cfg.unit_id, timeout).await {
            Ok(ctx) => {
                set(&|s| s.reconnects += 1);
                tracing::info!(module = %cfg.address, "contactor output link connected");
                backoff.reset();
                ctx
            }
            Err(why) => {
                fail(&status, &cfg, why);
                wait(&mut rx, backoff.failed()).await;
                continue;
            }
        };
        loop {
            let cmd = *rx.borrow_and_update();
            if let Err(why) = write_all(&mut ctx, &cfg, &cmd, timeout).await {
                fail(&status, &cfg, why);
                break;
            }
            set(&|s| {
                s.writes += 1;
                s.connected = true;
                s.alarm = None;
                s.acknowledged = Some(cmd.outputs);
            });
            if cmd.shutdown {
                let _ = ctx.disconnect().await;
                return;
            }
            // A change, or the refresh period.
            let _ = tokio::time::timeout(refresh, rx.changed()).await;
        }
        let _ = ctx.disconnect().await;
        wait(&mut rx, backoff.failed()).await;
    }
}

async fn write_all(
    ctx: &mut client::Context,
    cfg: &CoilConfig,
    cmd: &Command,
    timeout: Duration,
) -> Result<(), String> {
    for (coil, on) in writes(cfg, cmd) {
        match tokio::time::timeout(timeout, ctx.write_single_coil(coil, on)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(code))) => {
                return Err(format!("coil {coil} refused with exception {code:?}"))
            }
            Ok(Err(e)) => return Err(format!("write to coil {coil} failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "coil {coil}: no answer within {} ms",
                    cfg.timeout_ms
                ))
            }
        }
    }
    Ok(())
}

fn fail(status: &Mutex<CoilLinkStatus>, cfg: &CoilConfig, why: String) {
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    s.failures += 1;
    s.connected = false;
    s.acknowledged = None;
    if s.alarm.is_none() {
        tracing::error!(module = %cfg.address, reason = %why,
            "ALARM: contactor output link down; protection holds the contactors open");
    }
    s.alarm = Some(format!(
        "contactor I/O module {} unreachable: {why}",
        cfg.address
    ));
}

/// Sleep `d`, cut short by a shutdown request.
async fn wait(rx: &mut watch::Receiver<Command>, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while !rx.borrow().shutdown {
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CoilConfig {
        CoilConfig {
            address: "127.0.0.1:1".parse().unwrap(),
            unit_id: 1,
            precharge_coil: 0,
            main_coil: 1,
            heartbeat_coil: 2,
            timeout_ms: 100,
            refresh_ms: 500,
            reconnect_backoff_ms: 200,
            reconnect_backoff_max_ms: 5000,
        }
    }

    #[test]
    fn opening_coils_are_written_before_closing_ones() {
        let cmd = |precharge, main, heartbeat| Command {
            outputs: RelayOutputs { precharge, main },
            heartbeat,
            shutdown: false,
        };
        // Precharge → closed: main closes only after precharge opened.
        assert_eq!(
            writes(&cfg(), &cmd(false, true, false)),
            [(0, false), (2, false), (1, true)]
        );
        // Closing precharge while main is open.
        assert_eq!(
            writes(&cfg(), &cmd(true, false, true)),
            [(1, false), (0, true), (2, true)]
        );
    }

    #[test]
    fn coil_addresses_must_differ_and_timings_be_positive() {
        let mut c = cfg();
        c.heartbeat_coil = 1;
        let (field, msg) = c.validate().unwrap_err();
        assert_eq!(field, "heartbeat_coil");
        assert!(msg.contains("main_coil"), "{msg}");
        let mut c = cfg();
        c.refresh_ms = 0;
        assert_eq!(c.validate().unwrap_err().0, "refresh_ms");
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn an_unreachable_module_raises_the_alarm_and_drop_does_not_hang() {
        // Port 1 on loopback refuses connections.
        let (out, link) = ModbusCoilOutput::start(cfg()).unwrap();
        let t0 = std::time::Instant::now();
        while link.status().alarm.is_none() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = link.status();
        assert!(!s.connected && s.failures >= 1, "{s:?}");
        assert!(s.alarm.as_deref().unwrap().contains("127.0.0.1:1"), "{s:?}");
        let t = std::time::Instant::now();
        drop(out);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "drop waited {:?}",
            t.elapsed()
        );
    }
}
