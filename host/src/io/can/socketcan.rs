//! The SocketCAN backend of [`CanBus`]: a Linux CAN interface (hardware
//! or `vcan`) through the `socketcan` crate's tokio socket.
//!
//! Owns: the socket, frame conversion both ways, and error-frame decoding
//! (every error class is requested, bus-off is told apart). May not touch:
//! frame contents.

use socketcan::{EmbeddedFrame, Id, SocketOptions};

use super::bus::{BusError, BusEvent, CanBus};
use super::{CanFrame, CanId};

pub struct SocketCanBus {
    interface: String,
    sock: socketcan::tokio::CanSocket,
}

impl SocketCanBus {
    /// Open `interface` (e.g. `can0`, `vcan0`) and ask for error frames.
    /// Must be called inside a tokio runtime.
    pub fn open(interface: &str) -> Result<Self, BusError> {
        let io = |source| BusError::Io {
            interface: interface.to_string(),
            source,
        };
        let sock = socketcan::tokio::CanSocket::open(interface).map_err(io)?;
        sock.set_error_mask(socketcan::id::ERR_MASK_ALL)
            .map_err(io)?;
        Ok(Self {
            interface: interface.to_string(),
            sock,
        })
    }

    fn io(&self, source: std::io::Error) -> BusError {
        BusError::Io {
            interface: self.interface.clone(),
            source,
        }
    }
}

/// Our frame from a SocketCAN data frame.
pub fn from_socketcan(f: &socketcan::CanDataFrame) -> Option<CanFrame> {
    let id = match f.id() {
        Id::Standard(s) => CanId::standard(s.as_raw()).ok()?,
        Id::Extended(e) => CanId::extended(e.as_raw()).ok()?,
    };
    CanFrame::new(id, f.data()).ok()
}

/// A SocketCAN data frame from ours.
pub fn to_socketcan(f: &CanFrame) -> Option<socketcan::CanDataFrame> {
    let id: Id = match f.id() {
        CanId::Standard(s) => socketcan::StandardId::new(s)?.into(),
        CanId::Extended(e) => socketcan::ExtendedId::new(e)?.into(),
    };
    socketcan::CanDataFrame::new(id, f.data())
}

impl CanBus for SocketCanBus {
    async fn recv(&self) -> Result<BusEvent, BusError> {
        loop {
            match self.sock.read_frame().await.map_err(|e| self.io(e))? {
                socketcan::CanFrame::Data(f) => {
                    if let Some(frame) = from_socketcan(&f) {
                        return Ok(BusEvent::Frame(frame));
                    }
                }
                // Nothing here is requested by remote frames.
                socketcan::CanFrame::Remote(_) => {}
                socketcan::CanFrame::Error(e) => {
                    let bus_off = e
                        .into_error()
                        .causes()
                        .any(|c| *c == socketcan::ErrorCause::BusOff);
                    return Ok(BusEvent::ErrorFrame { bus_off });
                }
            }
        }
    }

    async fn send(&self, frame: CanFrame) -> Result<(), BusError> {
        let f = to_socketcan(&frame).ok_or_else(|| {
            self.io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("frame {frame} has no SocketCAN form"),
            ))
        })?;
        self.sock
            .write_frame(socketcan::CanFrame::Data(f))
            .await
            .map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_convert_both_ways_unchanged() {
        for (id, data) in [
            (CanId::standard(0x7ff).unwrap(), &[][..]),
            (CanId::standard(0x123).unwrap(), &[1, 2, 3][..]),
            (CanId::extended(0x1fff_ffff).unwrap(), &[0xff; 8][..]),
        ] {
            let f = CanFrame::new(id, data).unwrap();
            let s = to_socketcan(&f).unwrap();
            assert_eq!(s.is_extended(), matches!(id, CanId::Extended(_)));
            assert_eq!(from_socketcan(&s), Some(f));
        }
    }
}
