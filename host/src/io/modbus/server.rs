//! The Modbus TCP server (tokio-modbus) serving the SunSpec image.
//!
//! Owns: the listening socket, its tokio runtime on a thread of its own,
//! request handling with Modbus exception codes, write authorisation by
//! client address, and the writable points:
//! - `CtrlHb` (controller heartbeat): stored with its arrival time; a
//!   heartbeat that stops for `heartbeat_timeout_s` is logged as lost;
//! - `AlmRst` = 1: refused while `modbus.remote_msl_reset` is off (the
//!   default: MSL latches need an authenticated operator reset; MOL and
//!   RSL clear by themselves); with it on, asks each rack's protection for
//!   a reset, which succeeds only if protection allows it (every latched
//!   condition cleared) and is recorded with the client's address;
//! - `SetOp` = 2 (disconnect): an operator hold on every rack, which opens
//!   the contactors; `SetOp` = 1 (connect) withdraws it. Connect never
//!   closes anything by itself: protection closes when its own conditions
//!   hold, as after any other hold;
//! - anything else read-only → `ILLEGAL DATA ADDRESS`.
//!
//! Under local control (`LocRemCtl` = 1, see [`super::mode`]) every write
//! but a `SetOp` disconnect is refused with `01`: opening is never refused.
//!
//! Exception codes: unknown function `01`; address outside the image or a
//! write to a read-only point `02`; bad quantity or value `03`; a write from
//! a client not in `allowed_writers`, or under local control, `01` (the
//! function is not available to it); a reset protection refused `04`.
//!
//! May not touch: protection beyond [`Protection::reset`] and the
//! operator hold; the image is published by the control cycle and only
//! read here.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};

use super::idle::IdleTimeout;
use super::mode::ControlMode;
use super::sunspec::Writable;
use crate::protection::task::Shared;
use crate::protection::{HoldKind, HoldSource, Protection};

/// The current image, swapped in whole by the control cycle.
#[derive(Debug, Clone)]
pub struct Image {
    /// Address of the first register (`SunS`).
    pub base: u16,
    pub regs: Vec<u16>,
    pub writable: Writable,
}

/// Counters for the summary and the load test.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub requests: AtomicU64,
    pub exceptions: AtomicU64,
    pub writes: AtomicU64,
    /// Connections closed on accept because `max_connections` were open.
    pub refused_connections: AtomicU64,
    /// `accept` calls that failed (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Most connections served at once.
    pub peak_connections: AtomicU64,
}

/// What the server shares with the control cycle.
pub struct RegisterBoard {
    image: Mutex<Arc<Image>>,
    ctrl_hb: Mutex<Option<(u16, Instant)>>,
    /// Local or remote control (`LocRemCtl`).
    pub mode: Arc<ControlMode>,
    pub stats: ServerStats,
}

impl RegisterBoard {
    pub fn new(image: Image, mode: Arc<ControlMode>) -> Arc<Self> {
        Arc::new(Self {
            image: Mutex::new(Arc::new(image)),
            ctrl_hb: Mutex::new(None),
            mode,
            stats: ServerStats::default(),
        })
    }

    /// Publish a new image (a pointer swap: readers never wait for a copy).
    pub fn publish(&self, image: Image) {
        *self.image.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(image);
    }

    pub fn image(&self) -> Arc<Image> {
        self.image.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last controller heartbeat value and how long ago it arrived.
    pub fn ctrl_hb(&self) -> Option<(u16, std::time::Duration)> {
        self.ctrl_hb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(v, t)| (v, t.elapsed()))
    }
}

/// Server settings (from `[modbus]`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub unit_id: u8,
    pub allowed_writers: Vec<IpAddr>,
    /// Whether `AlmRst` may clear MSL latches (`modbus.remote_msl_reset`).
    pub remote_msl_reset: bool,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// A connection without a request for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Every write attempt (`AlmRst`, `SetOp`, refused writers) goes here.
    pub audit: Arc<crate::audit::Audit>,
}

/// Wait after a failed `accept` (EMFILE, ENFILE, ENOBUFS...) before the
/// next: the server backs off and keeps listening, never exits.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Counts a connection while its service lives.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One rack's protection, as far as Modbus may reach it: the authorised
/// reset and the operator hold.
#[derive(Clone)]
pub struct RackPath {
    pub protection: Arc<Mutex<Protection>>,
    pub shared: Arc<Shared>,
}

/// SunSpec 802 `SetOp` values.
const SET_OP_CONNECT: u16 = 1;
const SET_OP_DISCONNECT: u16 = 2;

/// A running server; stops on drop.
pub struct SunSpecServer {
    pub local_addr: SocketAddr,
    /// The image and the counters (requests, refused connections, accept
    /// errors).
    pub board: Arc<RegisterBoard>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl SunSpecServer {
    pub fn start(
        cfg: ServerConfig,
        board: Arc<RegisterBoard>,
        racks: Vec<RackPath>,
    ) -> std::io::Result<Self> {
        let racks = Arc::new(racks);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind(cfg.bind))?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shown = board.clone();
        let handle = std::thread::Builder::new()
            .name("modbus-server".into())
            .spawn(move || {
                let server = Server::new(listener);
                let cfg = Arc::new(cfg);
                let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let new_service = |peer: SocketAddr| {
                    let before = open.fetch_add(1, Ordering::AcqRel);
                    if before >= cfg.max_connections {
                        open.fetch_sub(1, Ordering::AcqRel);
                        board.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, max = cfg.max_connections, "modbus connection refused: too many open");
                        return Ok(None);
                    }
                    board
                        .stats
                        .peak_connections
                        .fetch_max(before as u64 + 1, Ordering::Relaxed);
                    Ok(Some(Connection {
                        peer,
                        cfg: cfg.clone(),
                        board: board.clone(),
                        racks: racks.clone(),
                        _slot: Slot(open.clone()),
                    }))
                };
                let on_connected = |stream, peer| {
                    let r = accept_tcp_connection(stream, peer, new_service)
                        .map(|o| o.map(|(svc, s)| (svc, IdleTimeout::new(s, cfg.idle_timeout))));
                    async move { r }
                };
                let on_error = |e| tracing::debug!(error = %e, "modbus connection ended");
                rt.block_on(async {
                    let mut stopped = stopped;
                    loop {
                        tokio::select! {
                            r = server.serve(&on_connected, on_error) => {
                                // Only a failed accept ends `serve`: back off, go on.
                                let n = board.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                                if n.is_multiple_of(100) {
                                    tracing::error!(error = ?r.err(), failures = n + 1, "modbus accept failed; retrying");
                                }
                                tokio::time::sleep(ACCEPT_BACKOFF).await;
                            }
                            _ = &mut stopped => return,
                        }
                    }
                });
            })?;
        tracing::info!(%local_addr, "SunSpec Modbus TCP server listening");
        Ok(Self {
            local_addr,
            board: shown,
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for SunSpecServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Connection {
    peer: SocketAddr,
    cfg: Arc<ServerConfig>,
    board: Arc<RegisterBoard>,
    racks: Arc<Vec<RackPath>>,
    _slot: Slot,
}

impl Connection {
    fn read(&self, addr: u16, qty: u16) -> Result<Vec<u16>, ExceptionCode> {
        if qty == 0 || qty > 125 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let img = self.board.image();
        let start = addr
            .checked_sub(img.base)
            .ok_or(ExceptionCode::IllegalDataAddress)? as usize;
        let end = start + qty as usize;
        img.regs
            .get(start..end)
            .map(<[u16]>::to_vec)
            .ok_or(ExceptionCode::IllegalDataAddress)
    }

    fn write(&self, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        if values.is_empty() || values.len() > 123 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        if !self.cfg.allowed_writers.contains(&self.peer.ip()) {
            tracing::warn!(peer = %self.peer, addr, "modbus write refused: client not in modbus.allowed_writers");
            self.audit(
                "write",
                &format!("register {addr}"),
                &Err::<(), _>("client not in modbus.allowed_writers"),
            );
            return Err(ExceptionCode::IllegalFunction);
        }
        let img = self.board.image();
        let w = img.writable;
        let start = addr
            .checked_sub(img.base)
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        // Check every register and value first, then apply the one write
        // that can still be refused (AlmRst: protection decides) before
        // the others: a write is all or nothing.
        let mut ops = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let off = u16::try_from(i)
                .ok()
                .and_then(|i| start.checked_add(i))
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            let valid = if off == w.ctrl_hb {
                true
            } else if off == w.alm_rst {
                *v == 1
            } else if off == w.set_op {
                matches!(*v, SET_OP_CONNECT | SET_OP_DISCONNECT)
            } else {
                tracing::warn!(peer = %self.peer, register = u32::from(img.base) + u32::from(off), "modbus write to a read-only or unknown register");
                return Err(ExceptionCode::IllegalDataAddress);
            };
            if !valid {
                tracing::warn!(peer = %self.peer, register = u32::from(img.base) + u32::from(off), value = v, "modbus write of an invalid value");
                return Err(ExceptionCode::IllegalDataValue);
            }
            ops.push((off, *v));
        }
        if self.board.mode.is_local() {
            if let Some(&(off, v)) = ops
                .iter()
                .find(|&&(off, v)| !(off == w.set_op && v == SET_OP_DISCONNECT))
            {
                tracing::warn!(peer = %self.peer, register = u32::from(img.base) + u32::from(off), value = v, "modbus write refused: LocRemCtl = LOCAL");
                self.audit(
                    "write",
                    &format!("register {}", u32::from(img.base) + u32::from(off)),
                    &Err::<(), _>("refused: under local control (LocRemCtl = LOCAL)"),
                );
                return Err(ExceptionCode::IllegalFunction);
            }
        }
        ops.sort_by_key(|(off, _)| *off != w.alm_rst);
        for (off, v) in ops {
            if off == w.alm_rst {
                let r = self.alarm_reset(v);
                self.audit(
                    "alm_rst",
                    "protection",
                    &r.as_ref().map_err(|e| format!("exception {e:?}")),
                );
                r?;
            } else if off == w.ctrl_hb {
                *self.board.ctrl_hb.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((v, Instant::now()));
            } else {
                let r = self.set_op(v);
                self.audit(
                    "set_op",
                    &format!("value {v}"),
                    &r.as_ref().map_err(|e| format!("exception {e:?}")),
                );
                r?;
            }
        }
        self.board.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn audit<T, E: std::fmt::Display>(&self, action: &str, target: &str, r: &Result<T, E>) {
        let user = format!("modbus:{}", self.peer.ip());
        self.cfg.audit.record(&user, "modbus", action, target, r);
    }

    fn alarm_reset(&self, v: u16) -> Result<(), ExceptionCode> {
        if v != 1 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        // MOL and RSL clear by themselves (hysteresis); what is latched is
        // MSL, which a network write may clear only where the site opted in.
        if !self.cfg.remote_msl_reset {
            let latched = self
                .racks
                .iter()
                .any(|r| !r.shared.status().latched.is_empty());
            tracing::warn!(peer = %self.peer, latched, "SunSpec AlmRst refused: an MSL latch needs an authenticated operator reset (`bmsctl reset`); modbus.remote_msl_reset is off");
            return Err(ExceptionCode::ServerDeviceFailure);
        }
        // Every rack with a latch is asked; each decides for itself. The
        // write fails if any refused (or nothing was latched anywhere).
        let mut refused = false;
        let mut any_latched = false;
        for (rack, r) in self.racks.iter().enumerate() {
            let now_ms = r.shared.status().time_ms;
            let snap = r.shared.snapshot();
            let mut p = r.protection.lock().unwrap_or_else(|e| e.into_inner());
            if p.latched().is_empty() {
                continue;
            }
            any_latched = true;
            let by = format!(
                "SunSpec AlmRst from {} (modbus.remote_msl_reset)",
                self.peer
            );
            match p.reset(&snap, now_ms, &by) {
                Ok(cleared) => {
                    tracing::warn!(peer = %self.peer, rack, count = cleared.len(), "protection reset by SunSpec AlmRst")
                }
                Err(e) => {
                    refused = true;
                    tracing::warn!(peer = %self.peer, rack, reason = %e, "SunSpec AlmRst refused by protection");
                }
            }
        }
        if refused || !any_latched {
            if !any_latched {
                tracing::warn!(peer = %self.peer, "SunSpec AlmRst refused: nothing is latched");
            }
            return Err(ExceptionCode::ServerDeviceFailure);
        }
        Ok(())
    }

    fn set_op(&self, v: u16) -> Result<(), ExceptionCode> {
        let hold = match v {
            SET_OP_CONNECT => None,
            SET_OP_DISCONNECT => Some((
                HoldKind::Open,
                format!("SunSpec SetOp disconnect from {}", self.peer.ip()),
            )),
            _ => return Err(ExceptionCode::IllegalDataValue),
        };
        tracing::warn!(peer = %self.peer, connect = hold.is_none(), "SunSpec SetOp");
        for r in self.racks.iter() {
            r.shared.set_hold(HoldSource::Operator, hold.clone());
        }
        Ok(())
    }
}

impl tokio_modbus::server::Service for Connection {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Self::Response, Self::Exception>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        // Another unit id on this address is not us: stay silent, as a
        // gateway without that device would.
        if req.slave != self.cfg.unit_id && req.slave != 0 {
            return std::future::ready(Ok(None));
        }
        self.board.stats.requests.fetch_add(1, Ordering::Relaxed);
        let r = match req.request {
            Request::ReadHoldingRegisters(addr, qty) => {
                self.read(addr, qty).map(Response::ReadHoldingRegisters)
            }
            Request::WriteSingleRegister(addr, v) => self
                .write(addr, &[v])
                .map(|()| Response::WriteSingleRegister(addr, v)),
            Request::WriteMultipleRegisters(addr, values) => self
                .write(addr, &values)
                .map(|()| Response::WriteMultipleRegisters(addr, values.len() as u16)),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        if r.is_err() {
            self.board.stats.exceptions.fetch_add(1, Ordering::Relaxed);
        }
        std::future::ready(r.map(Some))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::events::EventLog;
    use crate::snapshot::PackSnapshot;

    fn connection(writers: &[&str]) -> Connection {
        let cfg = crate::config::SiteConfig::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo-site.toml"),
        )
        .unwrap();
        Connection {
            peer: "127.0.0.1:5000".parse().unwrap(),
            cfg: Arc::new(ServerConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                unit_id: 1,
                allowed_writers: writers.iter().map(|w| w.parse().unwrap()).collect(),
                remote_msl_reset: true,
                max_connections: 4,
                idle_timeout: std::time::Duration::from_secs(60),
                audit: Arc::new(crate::audit::Audit::memory()),
            }),
            board: RegisterBoard::new(
                Image {
                    base: 40000,
                    regs: vec![7; 200],
                    writable: super::super::sunspec::Writable {
                        ctrl_hb: 10,
                        alm_rst: 11,
                        set_op: 12,
                        set_inv_state: 13,
                        soc_rsv_max: 14,
                        soc_rsv_min: 15,
                        device_address: 16,
                    },
                },
                Arc::new(ControlMode::remote()),
            ),
            racks: Arc::new(vec![RackPath {
                protection: Arc::new(Mutex::new(Protection::new(
                    cfg.protection.clone(),
                    500,
                    EventLog::memory(),
                ))),
                shared: Shared::new(PackSnapshot::empty(128, 16)),
            }]),
            _slot: Slot(Arc::new(std::sync::atomic::AtomicUsize::new(1))),
        }
    }

    /// Fuzz target (bolero): any read or write, from an allowed writer,
    /// under either control mode: an answer or an exception, never a
    /// panic; a refused write changes nothing.
    #[test]
    fn fuzz_modbus_request() {
        let c = connection(&["127.0.0.1"]);
        let runs = AtomicU64::new(0);
        bolero::check!()
            .with_type::<(bool, bool, u16, u16, Vec<u16>)>()
            .for_each(|(write, local, addr, qty, values)| {
                runs.fetch_add(1, Ordering::Relaxed);
                let mode = if *local {
                    super::super::mode::Mode::Local
                } else {
                    super::super::mode::Mode::Remote
                };
                c.board.mode.set(mode).unwrap();
                // Addresses near the image, mostly: the interesting part.
                let addr = 40000u16.wrapping_add(addr % 256).wrapping_sub(8);
                if !*write {
                    if let Ok(regs) = c.read(addr, *qty) {
                        assert_eq!(regs.len(), usize::from(*qty));
                    }
                    return;
                }
                let hb = c.board.ctrl_hb().map(|(v, _)| v);
                let holds = c.racks[0].shared.holds();
                if c.write(addr, values).is_err() {
                    assert_eq!(
                        c.board.ctrl_hb().map(|(v, _)| v),
                        hb,
                        "refused, yet written"
                    );
                    assert_eq!(c.racks[0].shared.holds(), holds, "refused, yet held");
                }
            });
        println!(
            "fuzz target modbus_request: {} executions",
            runs.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn reads_check_quantity_and_address() {
        let c = connection(&["127.0.0.1"]);
        assert_eq!(c.read(40000, 125).unwrap().len(), 125);
        assert_eq!(c.read(40000, 126), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(c.read(40000, 0), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(c.read(39999, 1), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(c.read(40199, 1).unwrap(), vec![7]);
        assert_eq!(c.read(40199, 2), Err(ExceptionCode::IllegalDataAddress));
    }

    #[test]
    fn writes_are_authorised_checked_and_all_or_nothing() {
        let c = connection(&["127.0.0.1"]);
        assert_eq!(c.write(40010, &[5]), Ok(()));
        assert_eq!(c.board.ctrl_hb().unwrap().0, 5);
        assert_eq!(
            c.write(40009, &[1, 6]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(c.board.ctrl_hb().unwrap().0, 5, "nothing written");
        assert_eq!(c.write(40011, &[3]), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(
            c.write(40011, &[1]),
            Err(ExceptionCode::ServerDeviceFailure)
        );
        // Several registers: an invalid value anywhere, or a reset that
        // protection refuses (nothing is latched), writes none of them.
        assert_eq!(
            c.write(40010, &[9, 3]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            c.write(40010, &[7, 1, 2]),
            Err(ExceptionCode::ServerDeviceFailure)
        );
        assert_eq!(c.board.ctrl_hb().unwrap().0, 5, "nothing written");
        assert!(c.racks[0].shared.holds().is_empty(), "no SetOp applied");
        // SetOp: disconnect holds every rack open, connect withdraws it.
        assert_eq!(c.write(40012, &[2]), Ok(()));
        let holds = c.racks[0].shared.holds();
        assert_eq!(holds.len(), 1);
        assert_eq!(
            (holds[0].source, holds[0].kind),
            (HoldSource::Operator, HoldKind::Open)
        );
        assert!(holds[0].reason.contains("127.0.0.1"), "{:?}", holds[0]);
        assert_eq!(c.write(40012, &[1]), Ok(()));
        assert!(c.racks[0].shared.holds().is_empty());
        assert_eq!(c.write(40012, &[3]), Err(ExceptionCode::IllegalDataValue));
        let stranger = connection(&["10.0.0.9"]);
        assert_eq!(
            stranger.write(40012, &[2]),
            Err(ExceptionCode::IllegalFunction)
        );
        assert!(stranger.racks[0].shared.holds().is_empty());
        assert_eq!(
            stranger.write(40010, &[5]),
            Err(ExceptionCode::IllegalFunction)
        );
    }

    #[test]
    fn under_local_control_only_a_disconnect_is_written_and_every_refusal_is_audited() {
        let c = connection(&["127.0.0.1"]);
        c.board.mode.set(super::super::mode::Mode::Local).unwrap();
        for (addr, v) in [(40010, 5), (40011, 1), (40012, 1)] {
            assert_eq!(
                c.write(addr, &[v]),
                Err(ExceptionCode::IllegalFunction),
                "register {addr}"
            );
        }
        // Heartbeat, reset and disconnect in one write: all or nothing.
        assert_eq!(
            c.write(40010, &[5, 1, 2]),
            Err(ExceptionCode::IllegalFunction)
        );
        assert!(c.board.ctrl_hb().is_none());
        assert!(c.racks[0].shared.holds().is_empty());
        // Opening is never refused.
        assert_eq!(c.write(40012, &[2]), Ok(()));
        assert_eq!(c.racks[0].shared.holds()[0].kind, HoldKind::Open);
        let refused: Vec<_> = c
            .cfg
            .audit
            .since(0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|r| r.result.contains("local control"))
            .collect();
        assert_eq!(refused.len(), 4, "{refused:?}");
        // Back to remote: the connect is taken again.
        c.board.mode.set(super::super::mode::Mode::Remote).unwrap();
        assert_eq!(c.write(40012, &[1]), Ok(()));
        assert!(c.racks[0].shared.holds().is_empty());
    }
}
