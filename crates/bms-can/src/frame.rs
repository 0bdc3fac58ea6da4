//! Classic CAN frames and identifiers.
//!
//! Owns: the [`CanId`] (11-bit standard / 29-bit extended identifier, range
//! checked) and the [`CanFrame`] value type (identifier plus at most 8 data
//! bytes), nothing else.
//!
//! May not touch: any I/O (sockets, buses, files), the DBC, or any knowledge
//! of racks, modules or cells. This is a pure value type; every constructor
//! validates its input and returns an error instead of panicking.

use std::fmt;

/// Largest 11-bit standard identifier.
pub const STANDARD_ID_MAX: u16 = 0x7FF;
/// Largest 29-bit extended identifier.
pub const EXTENDED_ID_MAX: u32 = 0x1FFF_FFFF;
/// Maximum payload of a classic CAN frame, in bytes.
pub const CLASSIC_MAX_DATA_BYTES: usize = 8;

/// Errors building identifiers and frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("standard CAN id {0:#X} does not fit in 11 bits (max 0x7FF)")]
    StandardIdOutOfRange(u32),
    #[error("extended CAN id {0:#X} does not fit in 29 bits (max 0x1FFFFFFF)")]
    ExtendedIdOutOfRange(u32),
    #[error("CAN frame {id}: {len_bytes} data bytes exceed the classic CAN maximum of 8")]
    TooLong { id: CanId, len_bytes: usize },
}

/// A CAN identifier. Construct through [`CanId::standard`] /
/// [`CanId::extended`] to get range checking; a hand-built out-of-range
/// value is rejected by [`CanFrame::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanId {
    /// 11-bit identifier (0..=0x7FF).
    Standard(u16),
    /// 29-bit identifier (0..=0x1FFF_FFFF), without any "extended" flag bit.
    Extended(u32),
}

impl CanId {
    /// An 11-bit standard identifier.
    pub fn standard(id: u16) -> Result<Self, FrameError> {
        if id > STANDARD_ID_MAX {
            return Err(FrameError::StandardIdOutOfRange(u32::from(id)));
        }
        Ok(Self::Standard(id))
    }

    /// A 29-bit extended identifier.
    pub fn extended(id: u32) -> Result<Self, FrameError> {
        if id > EXTENDED_ID_MAX {
            return Err(FrameError::ExtendedIdOutOfRange(id));
        }
        Ok(Self::Extended(id))
    }

    /// Standard or extended identifier from a raw number and a format flag
    /// (e.g. from a driver that reports the IDE bit separately).
    pub fn new(raw: u32, extended: bool) -> Result<Self, FrameError> {
        if extended {
            Self::extended(raw)
        } else {
            u16::try_from(raw)
                .map_err(|_| FrameError::StandardIdOutOfRange(raw))
                .and_then(Self::standard)
        }
    }

    /// The identifier bits, without any format flag.
    pub fn raw(self) -> u32 {
        match self {
            Self::Standard(id) => u32::from(id),
            Self::Extended(id) => id,
        }
    }

    /// True for 29-bit identifiers.
    pub fn is_extended(self) -> bool {
        matches!(self, Self::Extended(_))
    }

    /// `Ok(self)` if the identifier is within its format's range.
    pub fn validate(self) -> Result<Self, FrameError> {
        match self {
            Self::Standard(id) => Self::standard(id),
            Self::Extended(id) => Self::extended(id),
        }
    }
}

impl fmt::Display for CanId {
    /// `0x123` for standard ids, `0x1234567x` (trailing `x`) for extended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard(id) => write!(f, "0x{id:03X}"),
            Self::Extended(id) => write!(f, "0x{id:X}x"),
        }
    }
}

/// A classic CAN data frame: identifier and 0..=8 data bytes. Bytes past
/// `len` are always zero, so equality and hashing only see the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CanFrame {
    id: CanId,
    len: u8,
    data: [u8; CLASSIC_MAX_DATA_BYTES],
}

impl CanFrame {
    /// A frame carrying `data` (at most 8 bytes) with a valid `id`.
    pub fn new(id: CanId, data: &[u8]) -> Result<Self, FrameError> {
        let id = id.validate()?;
        if data.len() > CLASSIC_MAX_DATA_BYTES {
            return Err(FrameError::TooLong {
                id,
                len_bytes: data.len(),
            });
        }
        let mut buf = [0u8; CLASSIC_MAX_DATA_BYTES];
        buf[..data.len()].copy_from_slice(data);
        Ok(Self {
            id,
            // Cannot truncate: checked <= 8 above.
            len: data.len() as u8,
            data: buf,
        })
    }

    pub fn id(&self) -> CanId {
        self.id
    }

    /// Number of data bytes (the DLC of a classic frame), 0..=8.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `len()` data bytes.
    pub fn data(&self) -> &[u8] {
        // `len` is only ever set from a checked slice length (<= 8).
        &self.data[..self.len()]
    }
}

impl fmt::Display for CanFrame {
    /// candump style: `0x123 [3] 01 02 03`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.id, self.len)?;
        for b in self.data() {
            write!(f, " {b:02X}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges() {
        assert_eq!(CanId::standard(0x7FF), Ok(CanId::Standard(0x7FF)));
        assert_eq!(
            CanId::standard(0x800),
            Err(FrameError::StandardIdOutOfRange(0x800))
        );
        assert_eq!(
            CanId::extended(0x1FFF_FFFF),
            Ok(CanId::Extended(0x1FFF_FFFF))
        );
        assert_eq!(
            CanId::extended(0x2000_0000),
            Err(FrameError::ExtendedIdOutOfRange(0x2000_0000))
        );
        assert_eq!(CanId::new(0x123, false), Ok(CanId::Standard(0x123)));
        assert_eq!(CanId::new(0x123, true), Ok(CanId::Extended(0x123)));
        assert_eq!(
            CanId::new(0x1_0000, false),
            Err(FrameError::StandardIdOutOfRange(0x1_0000))
        );
        assert_eq!(CanId::Extended(0x1234).raw(), 0x1234);
        assert!(CanId::Extended(1).is_extended());
        assert!(!CanId::Standard(1).is_extended());
    }

    #[test]
    fn id_display() {
        assert_eq!(CanId::Standard(0x123).to_string(), "0x123");
        assert_eq!(CanId::Standard(0x5).to_string(), "0x005");
        assert_eq!(CanId::Extended(0x1234567).to_string(), "0x1234567x");
        assert!(CanId::standard(0xFFFF)
            .unwrap_err()
            .to_string()
            .contains("0xFFFF"));
    }

    #[test]
    fn frame_new_and_data() {
        let id = CanId::standard(0x123).unwrap();
        let f = CanFrame::new(id, &[1, 2, 3]).unwrap();
        assert_eq!(f.id(), id);
        assert_eq!(f.len(), 3);
        assert_eq!(f.data(), &[1, 2, 3]);
        assert_eq!(f.to_string(), "0x123 [3] 01 02 03");
        assert!(CanFrame::new(id, &[]).unwrap().is_empty());
        assert_eq!(CanFrame::new(id, &[0; 8]).unwrap().len(), 8);
        let err = CanFrame::new(id, &[0; 9]).unwrap_err();
        assert_eq!(err, FrameError::TooLong { id, len_bytes: 9 });
        assert!(err.to_string().contains("0x123"));
        // Hand-built out-of-range ids are rejected, not carried.
        assert!(CanFrame::new(CanId::Standard(0x800), &[]).is_err());
        assert!(CanFrame::new(CanId::Extended(u32::MAX), &[]).is_err());
    }
}
