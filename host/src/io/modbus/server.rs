//! The Modbus TCP server (tokio-modbus) serving the SunSpec image.
//!
//! Owns: the listening socket, its tokio runtime on a thread of its own,
//! request handling with Modbus exception codes, write authorisation by
//! client address, and the writable points:
//! - `CtrlHb` (controller heartbeat): stored with its arrival time; a
//!   heartbeat that stops for `heartbeat_timeout_s` is logged as lost;
//! - `AlmRst` = 1: asks each rack's protection for a reset, which succeeds
//!   only if protection allows it (every latched condition cleared);
//! - `SetOp` = 2 (disconnect): an operator hold on every rack, which opens
//!   the contactors; `SetOp` = 1 (connect) withdraws it. Connect never
//!   closes anything by itself: protection closes when its own conditions
//!   hold, as after any other hold;
//! - anything else read-only → `ILLEGAL DATA ADDRESS`.
//!
//! Exception codes: unknown function `01`; address outside the image or a
//! write to a read-only point `02`; bad quantity or value `03`; a write from
//! a client not in `allowed_writers` `01` (the function is not available to
//! it); a reset protection refused `04`.
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
}

/// What the server shares with the control cycle.
pub struct RegisterBoard {
    image: Mutex<Arc<Image>>,
    ctrl_hb: Mutex<Option<(u16, Instant)>>,
    pub stats: ServerStats,
}

impl RegisterBoard {
    pub fn new(image: Image) -> Arc<Self> {
        Arc::new(Self {
            image: Mutex::new(Arc::new(image)),
            ctrl_hb: Mutex::new(None),
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
        let handle = std::thread::Builder::new()
            .name("modbus-server".into())
            .spawn(move || {
                let server = Server::new(listener);
                let cfg = Arc::new(cfg);
                let new_service = |peer: SocketAddr| {
                    Ok(Some(Connection {
                        peer,
                        cfg: cfg.clone(),
                        board: board.clone(),
                        racks: racks.clone(),
                    }))
                };
                let on_connected = |stream, peer| {
                    let r = accept_tcp_connection(stream, peer, new_service);
                    async move { r }
                };
                let on_error = |e| tracing::debug!(error = %e, "modbus connection ended");
                let abort = Box::pin(async move {
                    let _ = stopped.await;
                });
                if let Err(e) = rt.block_on(server.serve_until(&on_connected, on_error, abort)) {
                    tracing::error!(error = %e, "modbus server stopped");
                }
            })?;
        tracing::info!(%local_addr, "SunSpec Modbus TCP server listening");
        Ok(Self {
            local_addr,
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
        ops.sort_by_key(|(off, _)| *off != w.alm_rst);
        for (off, v) in ops {
            if off == w.alm_rst {
                self.alarm_reset(v)?;
            } else if off == w.ctrl_hb {
                *self.board.ctrl_hb.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((v, Instant::now()));
            } else {
                self.set_op(v)?;
            }
        }
        self.board.stats.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn alarm_reset(&self, v: u16) -> Result<(), ExceptionCode> {
        if v != 1 {
            return Err(ExceptionCode::IllegalDataValue);
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
            match p.reset(&snap, now_ms) {
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
            }),
            board: RegisterBoard::new(Image {
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
            }),
            racks: Arc::new(vec![RackPath {
                protection: Arc::new(Mutex::new(Protection::new(
                    cfg.protection.clone(),
                    500,
                    EventLog::memory(),
                ))),
                shared: Shared::new(PackSnapshot::empty(128, 16)),
            }]),
        }
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
}
