//! DBC codec: loads a CAN database and turns frame bytes into physical
//! signal values and back.
//!
//! Owns: parsing DBC text (through the `can-dbc` crate, whose types never
//! leave this module), validating it into our own owned model ([`Dbc`],
//! [`MessageDef`], [`SignalDef`]), the bit layout of Intel (little-endian)
//! and Motorola (big-endian) signals, multiplexing, scaling (`raw * factor +
//! offset`) and the DBC `[min|max]` plausibility flag.
//!
//! May not touch: any I/O other than reading the DBC file in
//! [`Dbc::from_file`], buses or sockets, and any knowledge of racks, modules
//! or cells (binding signals to quantities is `mapping`'s job). Decoding is
//! total: no frame, however hostile, can make it panic; it either yields
//! values (each flagged in or out of its DBC range) or a [`DecodeError`].
//!
//! Bit numbering follows the DBC convention. Intel (`@1`): the start bit is
//! the LSB, bit `b` lives in byte `b / 8` at bit `b % 8`, and the signal
//! grows towards higher bit numbers. Motorola (`@0`): the start bit is the
//! MSB in the "sawtooth" numbering; from bit 0 of byte `k` the next (less
//! significant) bit is bit 7 of byte `k + 1` (DBC bit `8k + 15`).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::frame::{CanFrame, CanId, FrameError, CLASSIC_MAX_DATA_BYTES, STANDARD_ID_MAX};

/// Placeholder message some DBC editors use to hold unassigned signals.
const INDEPENDENT_SIGNALS_MESSAGE: &str = "VECTOR__INDEPENDENT_SIG_MSG";
/// Attribute holding a signal's full name when it exceeds 32 characters.
const LONG_SIGNAL_NAME_ATTRIBUTE: &str = "SystemSignalLongSymbol";
/// Message attribute holding the send period in ms.
pub const CYCLE_TIME_ATTRIBUTE: &str = "GenMsgCycleTime";
/// Bit 31 of a DBC message id marks an extended (29-bit) identifier.
const DBC_EXTENDED_FLAG: u64 = 0x8000_0000;

/// Byte order of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Intel, `@1` in DBC: start bit is the LSB.
    LittleEndian,
    /// Motorola, `@0` in DBC: start bit is the MSB (sawtooth numbering).
    BigEndian,
}

/// The role of a signal in a multiplexed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MuxRole {
    /// Always present.
    Plain,
    /// The multiplexor switch (`M`): always present, selects the group.
    Multiplexor,
    /// Present only when the multiplexor's raw value equals this (`m<n>`).
    Multiplexed(u64),
}

/// One signal of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    pub name: String,
    /// DBC start bit: the LSB for Intel, the MSB (sawtooth) for Motorola.
    pub start_bit: u16,
    /// Width, 1..=64 for loaded DBCs.
    pub size_bits: u8,
    pub byte_order: ByteOrder,
    /// Two's complement raw value.
    pub signed: bool,
    pub factor: f64,
    pub offset: f64,
    /// DBC plausibility range, physical units; `min == max == 0` = unbounded.
    pub min: f64,
    pub max: f64,
    pub unit: String,
    pub mux: MuxRole,
}

/// One message (frame layout) of the DBC.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    pub name: String,
    pub id: CanId,
    /// Exact data length of the frame (DLC), 0..=8.
    pub size_bytes: u8,
    /// Sending node, `None` for `Vector__XXX`.
    pub transmitter: Option<String>,
    pub signals: Vec<SignalDef>,
    /// Index in `signals` of the multiplexor switch, if any.
    pub multiplexor: Option<usize>,
    /// Send period in ms from the `GenMsgCycleTime` attribute (its
    /// `BA_DEF_DEF_` default when the message has none); `None` when it is
    /// absent or 0, which DBC tools use for event-driven messages.
    pub cycle_time_ms: Option<u32>,
}

/// Position of a signal in a [`Dbc`]: message index and signal index
/// within that message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalRef {
    pub message: usize,
    pub signal: usize,
}

/// One decoded signal of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodedValue {
    /// Index of the signal in [`MessageDef::signals`].
    pub signal: usize,
    /// Raw bits as on the wire (not sign-extended).
    pub raw: u64,
    /// Physical value, `raw * factor + offset` (raw sign-extended if signed).
    pub value: f64,
    /// False when `value` is outside the signal's DBC `[min|max]`: the
    /// caller must count and drop it, never use it.
    pub in_range: bool,
}

/// The signals present in one frame, in DBC order.
pub type DecodedSignals = Vec<DecodedValue>;

/// Loading or querying a DBC failed.
#[derive(Debug, thiserror::Error)]
pub enum DbcError {
    #[error("cannot read DBC file `{path}`: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{origin}:{line}: DBC syntax not understood near `{near}`")]
    Parse {
        origin: String,
        line: usize,
        near: String,
    },
    #[error("{origin}: message `{message}`: {reason}")]
    InvalidMessage {
        origin: String,
        message: String,
        reason: String,
    },
    #[error("{origin}: message `{message}`, signal `{signal}`: {reason}")]
    InvalidSignal {
        origin: String,
        message: String,
        signal: String,
        reason: String,
    },
    #[error("signal `{name}` not found in {origin}")]
    NotFound { origin: String, name: String },
    #[error(
        "signal `{name}` is ambiguous in {origin}: defined in messages {}",
        .messages.join(", ")
    )]
    Ambiguous {
        origin: String,
        name: String,
        messages: Vec<String>,
    },
    #[error("message `{name}` not found in {origin}")]
    MessageNotFound { origin: String, name: String },
}

/// Decoding a frame failed; the frame must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message `{message}` ({id}): expected {expected} data bytes, got {got}")]
    WrongLength {
        message: String,
        id: CanId,
        expected: u8,
        got: usize,
    },
    /// Only possible for hand-built definitions; loaded DBCs are validated.
    #[error("message `{message}`: signal `{signal}` does not fit in {size_bytes} bytes")]
    SignalDoesNotFit {
        message: String,
        signal: String,
        size_bytes: u8,
    },
}

/// Encoding a value or a frame failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("signal `{signal}`: cannot encode non-finite value {value}")]
    NonFinite { signal: String, value: f64 },
    #[error(
        "signal `{signal}`: {value} {unit} is not representable; \
         {size_bits}-bit {} range is [{min}, {max}] {unit}",
        signedness(*.signed)
    )]
    NotRepresentable {
        signal: String,
        value: f64,
        unit: String,
        size_bits: u8,
        signed: bool,
        min: f64,
        max: f64,
    },
    #[error("signal `{signal}`: raw value {raw:#X} does not fit in {size_bits} bits")]
    RawTooWide {
        signal: String,
        raw: u64,
        size_bits: u8,
    },
    #[error(
        "signal `{signal}` (start bit {start_bit}, {size_bits} bits) \
         does not fit in {len_bytes} data bytes"
    )]
    DoesNotFit {
        signal: String,
        start_bit: u16,
        size_bits: u8,
        len_bytes: usize,
    },
    #[error("message `{message}` has no signal index {index}")]
    UnknownSignal { message: String, index: usize },
    #[error("message `{message}`: signal `{signal}` given twice")]
    DuplicateSignal { message: String, signal: String },
    #[error(
        "message `{message}`: signal `{signal}` belongs to mux group {group}, \
         but the multiplexor is {}",
        mux_text(*.mux)
    )]
    MuxMismatch {
        message: String,
        signal: String,
        group: u64,
        mux: Option<u64>,
    },
    #[error("message `{message}`: {source}")]
    Frame { message: String, source: FrameError },
}

fn signedness(signed: bool) -> &'static str {
    if signed {
        "signed"
    } else {
        "unsigned"
    }
}

fn mux_text(mux: Option<u64>) -> String {
    mux.map_or_else(|| "not given".to_string(), |m| m.to_string())
}

fn low_mask(bits: usize) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// `[first, first + size)` in the signal's linear bit space, checked
/// against `len_bytes`. Intel linear bit `k` is byte `k / 8`, bit `k % 8`
/// (LSB first); Motorola linear bit `p` is byte `p / 8`, bit `7 - p % 8`
/// (MSB first), so a Motorola signal is a contiguous MSB-to-LSB run.
fn span(
    start_bit: u16,
    size_bits: u8,
    order: ByteOrder,
    len_bytes: usize,
) -> Option<(usize, usize)> {
    let size = usize::from(size_bits);
    if size == 0 || size > 64 {
        return None;
    }
    let s = usize::from(start_bit);
    let first = match order {
        ByteOrder::LittleEndian => s,
        ByteOrder::BigEndian => (s / 8) * 8 + (7 - s % 8),
    };
    let end = first.checked_add(size)?;
    (end <= len_bytes.checked_mul(8)?).then_some((first, end))
}

fn read_bits(data: &[u8], order: ByteOrder, first: usize, end: usize) -> Option<u64> {
    let mut value = 0u64;
    let mut pos = first;
    let mut shift = 0usize;
    while pos < end {
        let byte = u64::from(*data.get(pos / 8)?);
        let off = pos % 8;
        let take = (8 - off).min(end - pos);
        match order {
            ByteOrder::LittleEndian => {
                value |= ((byte >> off) & low_mask(take)) << shift;
                shift += take;
            }
            ByteOrder::BigEndian => {
                let chunk = (byte >> (8 - off - take)) & low_mask(take);
                value = (value << take) | chunk;
            }
        }
        pos += take;
    }
    Some(value)
}

/// Writes the low `end - first` bits of `value`; `span` has checked bounds.
fn write_bits(
    data: &mut [u8],
    order: ByteOrder,
    first: usize,
    end: usize,
    value: u64,
) -> Option<()> {
    let mut pos = first;
    let mut shift = 0usize;
    while pos < end {
        let byte = data.get_mut(pos / 8)?;
        let off = pos % 8;
        let take = (8 - off).min(end - pos);
        let (chunk, at) = match order {
            ByteOrder::LittleEndian => {
                let chunk = (value >> shift) & low_mask(take);
                shift += take;
                (chunk, off)
            }
            ByteOrder::BigEndian => {
                let remaining = end - pos;
                (
                    (value >> (remaining - take)) & low_mask(take),
                    8 - off - take,
                )
            }
        };
        // `take + at <= 8`, so both fit in a byte.
        let mask = (low_mask(take) << at) as u8;
        *byte = (*byte & !mask) | ((chunk << at) as u8 & mask);
        pos += take;
    }
    Some(())
}

fn sign_extend(raw: u64, bits: u8) -> i64 {
    if bits == 0 || bits >= 64 {
        return raw as i64;
    }
    let shift = 64 - u32::from(bits);
    ((raw << shift) as i64) >> shift
}

impl SignalDef {
    fn span(&self, len_bytes: usize) -> Option<(usize, usize)> {
        span(self.start_bit, self.size_bits, self.byte_order, len_bytes)
    }

    /// Whether the signal lies within `len_bytes` data bytes.
    pub fn fits(&self, len_bytes: usize) -> bool {
        self.span(len_bytes).is_some()
    }

    /// Raw bits of the signal (not sign-extended); `None` if the signal does
    /// not fit in `data` (or its width is not 1..=64).
    pub fn extract_raw(&self, data: &[u8]) -> Option<u64> {
        let (first, end) = self.span(data.len())?;
        read_bits(data, self.byte_order, first, end)
    }

    /// Physical value of a raw bit pattern: sign-extended if signed, then
    /// `raw * factor + offset`.
    pub fn raw_to_physical(&self, raw: u64) -> f64 {
        let raw = raw & low_mask(usize::from(self.size_bits));
        let raw = if self.signed {
            sign_extend(raw, self.size_bits) as f64
        } else {
            raw as f64
        };
        raw * self.factor + self.offset
    }

    /// Physical value of the signal in `data`; `None` if it does not fit.
    pub fn decode(&self, data: &[u8]) -> Option<f64> {
        self.extract_raw(data).map(|raw| self.raw_to_physical(raw))
    }

    /// Smallest and largest physical values the bit width can carry.
    pub fn representable_range(&self) -> (f64, f64) {
        let bits = i32::from(self.size_bits.min(64));
        let (lo, hi) = if self.signed {
            let half = 2f64.powi(bits - 1);
            (-half, half - 1.0)
        } else {
            (0.0, 2f64.powi(bits) - 1.0)
        };
        let (a, b) = (
            lo * self.factor + self.offset,
            hi * self.factor + self.offset,
        );
        (a.min(b), a.max(b))
    }

    /// The raw bit pattern for `physical`, rounded to the nearest raw step.
    /// Errors if the value is not finite or the rounded raw value does not
    /// fit the width and signedness. The DBC `[min|max]` is not enforced
    /// here (use [`SignalDef::in_range`]), so fault injection can produce
    /// implausible values on purpose.
    pub fn physical_to_raw(&self, physical: f64) -> Result<u64, EncodeError> {
        if !physical.is_finite() {
            return Err(EncodeError::NonFinite {
                signal: self.name.clone(),
                value: physical,
            });
        }
        let bits = self.size_bits;
        let scaled = ((physical - self.offset) / self.factor).round();
        let (lo, hi_excl) = if self.signed {
            let half = 2f64.powi(i32::from(bits) - 1);
            (-half, half)
        } else {
            (0.0, 2f64.powi(i32::from(bits)))
        };
        if bits == 0 || bits > 64 || !(lo..hi_excl).contains(&scaled) {
            let (min, max) = self.representable_range();
            return Err(EncodeError::NotRepresentable {
                signal: self.name.clone(),
                value: physical,
                unit: self.unit.clone(),
                size_bits: bits,
                signed: self.signed,
                min,
                max,
            });
        }
        // `scaled` is an integer within [lo, hi_excl), so the casts are exact.
        let raw = if self.signed {
            (scaled as i64) as u64
        } else {
            scaled as u64
        };
        Ok(raw & low_mask(usize::from(bits)))
    }

    /// Writes `physical` into `data`, leaving all other bits untouched.
    pub fn encode(&self, physical: f64, data: &mut [u8]) -> Result<(), EncodeError> {
        let raw = self.physical_to_raw(physical)?;
        self.encode_raw(raw, data)
    }

    /// Writes a raw bit pattern (two's complement for signed signals) into
    /// `data`, leaving all other bits untouched.
    pub fn encode_raw(&self, raw: u64, data: &mut [u8]) -> Result<(), EncodeError> {
        let len_bytes = data.len();
        let does_not_fit = || EncodeError::DoesNotFit {
            signal: self.name.clone(),
            start_bit: self.start_bit,
            size_bits: self.size_bits,
            len_bytes,
        };
        let (first, end) = self.span(data.len()).ok_or_else(does_not_fit)?;
        if raw & !low_mask(end - first) != 0 {
            return Err(EncodeError::RawTooWide {
                signal: self.name.clone(),
                raw,
                size_bits: self.size_bits,
            });
        }
        write_bits(data, self.byte_order, first, end, raw).ok_or_else(does_not_fit)
    }

    /// Whether `physical` is finite and within the DBC `[min|max]` (`[0|0]`
    /// means unbounded, as in cantools). Bounds get a tolerance of a
    /// millionth of a raw step so float rounding of `raw * factor` cannot
    /// flag an exact boundary value.
    pub fn in_range(&self, physical: f64) -> bool {
        if !physical.is_finite() {
            return false;
        }
        if self.min == 0.0 && self.max == 0.0 {
            return true;
        }
        let tol = self.factor.abs() * 1e-6;
        (self.min - tol..=self.max + tol).contains(&physical)
    }

    /// Bits occupied in an 8-byte frame, as a mask over `byte * 8 + bit`.
    fn occupied_mask(&self) -> Option<u64> {
        let (first, end) = self.span(CLASSIC_MAX_DATA_BYTES)?;
        Some((first..end).fold(0u64, |mask, p| {
            let bit = match self.byte_order {
                ByteOrder::LittleEndian => p,
                ByteOrder::BigEndian => (p / 8) * 8 + (7 - p % 8),
            };
            mask | (1u64 << bit)
        }))
    }
}

impl MessageDef {
    /// Index of the signal called `name` in this message.
    pub fn signal_index(&self, name: &str) -> Option<usize> {
        self.signals.iter().position(|s| s.name == name)
    }

    /// The signal called `name` in this message.
    pub fn signal(&self, name: &str) -> Option<&SignalDef> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// Raw multiplexor value in `data`, if the message is multiplexed.
    pub fn mux_value(&self, data: &[u8]) -> Option<u64> {
        self.signals.get(self.multiplexor?)?.extract_raw(data)
    }

    /// Decodes a frame's data: the plain signals, the multiplexor, and the
    /// multiplexed signals of the active group, each flagged in/out of its
    /// DBC range. The length must equal `size_bytes`.
    pub fn decode(&self, data: &[u8]) -> Result<DecodedSignals, DecodeError> {
        let mut out = Vec::with_capacity(self.signals.len());
        self.decode_into(data, &mut out)?;
        Ok(out)
    }

    /// As [`MessageDef::decode`], reusing `out` (cleared first).
    pub fn decode_into(&self, data: &[u8], out: &mut Vec<DecodedValue>) -> Result<(), DecodeError> {
        out.clear();
        if data.len() != usize::from(self.size_bytes) {
            return Err(DecodeError::WrongLength {
                message: self.name.clone(),
                id: self.id,
                expected: self.size_bytes,
                got: data.len(),
            });
        }
        let mux = self.mux_value(data);
        for (index, signal) in self.signals.iter().enumerate() {
            if let MuxRole::Multiplexed(group) = signal.mux {
                if mux != Some(group) {
                    continue;
                }
            }
            let Some(raw) = signal.extract_raw(data) else {
                out.clear();
                return Err(DecodeError::SignalDoesNotFit {
                    message: self.name.clone(),
                    signal: signal.name.clone(),
                    size_bytes: self.size_bytes,
                });
            };
            let value = signal.raw_to_physical(raw);
            out.push(DecodedValue {
                signal: index,
                raw,
                value,
                in_range: signal.in_range(value),
            });
        }
        Ok(())
    }

    /// Encodes `(signal index, physical value)` pairs into `size_bytes`
    /// bytes, starting from zeros. For multiplexed signals the caller must
    /// include the multiplexor with the matching group value.
    pub fn encode(&self, values: &[(usize, f64)]) -> Result<Vec<u8>, EncodeError> {
        let mut data = vec![0u8; usize::from(self.size_bytes)];
        let mut given = vec![false; self.signals.len()];
        for &(index, value) in values {
            let signal = self
                .signals
                .get(index)
                .ok_or_else(|| EncodeError::UnknownSignal {
                    message: self.name.clone(),
                    index,
                })?;
            if std::mem::replace(&mut given[index], true) {
                return Err(EncodeError::DuplicateSignal {
                    message: self.name.clone(),
                    signal: signal.name.clone(),
                });
            }
            signal.encode(value, &mut data)?;
        }
        let mux = self
            .multiplexor
            .filter(|&m| given.get(m).copied().unwrap_or(false))
            .and_then(|_| self.mux_value(&data));
        for (signal, _) in self.signals.iter().zip(&given).filter(|(_, &g)| g) {
            if let MuxRole::Multiplexed(group) = signal.mux {
                if mux != Some(group) {
                    return Err(EncodeError::MuxMismatch {
                        message: self.name.clone(),
                        signal: signal.name.clone(),
                        group,
                        mux,
                    });
                }
            }
        }
        Ok(data)
    }

    /// As [`MessageDef::encode`], wrapped in a frame with this message's id.
    pub fn encode_frame(&self, values: &[(usize, f64)]) -> Result<CanFrame, EncodeError> {
        let data = self.encode(values)?;
        CanFrame::new(self.id, &data).map_err(|source| EncodeError::Frame {
            message: self.name.clone(),
            source,
        })
    }
}

/// A loaded, validated CAN database.
#[derive(Debug, Clone)]
pub struct Dbc {
    origin: String,
    messages: Vec<MessageDef>,
    by_id: HashMap<CanId, usize>,
    by_name: HashMap<String, usize>,
    signals_by_name: HashMap<String, Vec<SignalRef>>,
}

impl Dbc {
    /// Reads and parses a DBC file; errors name the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DbcError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|cause| DbcError::Io {
            path: path.display().to_string(),
            cause,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parses DBC bytes. `origin` (usually the file name) is used in every
    /// error message. Accepts UTF-8 (with or without BOM) and, failing
    /// that, Latin-1; tolerates CRLF line ends, tabs and trailing blanks.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, DbcError> {
        let text = normalize(bytes);
        let parsed = match can_dbc::DBC::try_from(text.as_str()) {
            Ok(parsed) => parsed,
            Err(err) => return Err(parse_error(&text, origin, err)),
        };
        convert(&parsed, &text, origin)
    }

    /// Where this DBC came from (as given to [`Dbc::parse`] / the path).
    /// This database with `offset` added to every message id: how racks
    /// that share one bus use disjoint id ranges with the same DBC (BMUs
    /// addressed by a rack DIP switch). An id pushed out of its format's
    /// range is an error naming the message.
    pub fn with_id_offset(&self, offset: u32) -> Result<Self, DbcError> {
        if offset == 0 {
            return Ok(self.clone());
        }
        let mut out = self.clone();
        out.by_id.clear();
        for (i, m) in out.messages.iter_mut().enumerate() {
            let raw = m.id.raw().checked_add(offset);
            m.id = raw
                .and_then(|r| CanId::new(r, m.id.is_extended()).ok())
                .ok_or_else(|| DbcError::InvalidMessage {
                    origin: self.origin.clone(),
                    message: m.name.clone(),
                    reason: format!(
                        "id {:#x} + offset {offset:#x} is outside the {} id range",
                        m.id.raw(),
                        if m.id.is_extended() {
                            "29-bit"
                        } else {
                            "11-bit"
                        }
                    ),
                })?;
            out.by_id.insert(m.id, i);
        }
        Ok(out)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// All messages, in DBC order; indices match [`SignalRef::message`].
    pub fn messages(&self) -> &[MessageDef] {
        &self.messages
    }

    pub fn message(&self, name: &str) -> Option<&MessageDef> {
        self.message_index(name).map(|i| &self.messages[i])
    }

    pub fn message_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Like [`Dbc::message_index`], with an error naming the DBC.
    pub fn resolve_message(&self, name: &str) -> Result<usize, DbcError> {
        self.message_index(name)
            .ok_or_else(|| DbcError::MessageNotFound {
                origin: self.origin.clone(),
                name: name.to_string(),
            })
    }

    /// The message with this id (hash lookup).
    pub fn message_by_id(&self, id: CanId) -> Option<&MessageDef> {
        self.message_index_by_id(id).map(|i| &self.messages[i])
    }

    pub fn message_index_by_id(&self, id: CanId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The message at `index`.
    ///
    /// # Panics
    /// If `index` is not a message index of this DBC (a programming error;
    /// use [`Dbc::get_message_at`] for untrusted indices).
    pub fn message_at(&self, index: usize) -> &MessageDef {
        &self.messages[index]
    }

    pub fn get_message_at(&self, index: usize) -> Option<&MessageDef> {
        self.messages.get(index)
    }

    /// The signal called `name`, if exactly one message defines it.
    pub fn find_signal(&self, name: &str) -> Option<SignalRef> {
        match self.signals_by_name.get(name)?.as_slice() {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// The signal called `name`; errors if it is missing or defined in
    /// several messages.
    pub fn resolve_signal(&self, name: &str) -> Result<SignalRef, DbcError> {
        match self.signals_by_name.get(name).map(Vec::as_slice) {
            Some([only]) => Ok(*only),
            Some(refs) if !refs.is_empty() => Err(DbcError::Ambiguous {
                origin: self.origin.clone(),
                name: name.to_string(),
                messages: refs
                    .iter()
                    .map(|r| self.messages[r.message].name.clone())
                    .collect(),
            }),
            _ => Err(DbcError::NotFound {
                origin: self.origin.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// The signal a [`SignalRef`] from this DBC points at.
    ///
    /// # Panics
    /// If `r` did not come from this DBC (a programming error; use
    /// [`Dbc::get_signal`] for untrusted references).
    pub fn signal(&self, r: SignalRef) -> &SignalDef {
        &self.messages[r.message].signals[r.signal]
    }

    pub fn get_signal(&self, r: SignalRef) -> Option<&SignalDef> {
        self.messages.get(r.message)?.signals.get(r.signal)
    }
}

/// Bytes → text `can-dbc` accepts: UTF-8 or else Latin-1, no BOM, LF line
/// ends, tabs as spaces, no trailing blanks, final newline. Line numbers
/// are preserved.
fn normalize(bytes: &[u8]) -> String {
    let decoded: String = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    let decoded = decoded.strip_prefix('\u{FEFF}').unwrap_or(&decoded);
    let mut out = String::with_capacity(decoded.len() + 1);
    // Lines folded into a wrapped VAL_ statement; emitted as blank lines
    // after it so later line numbers stay right.
    let mut folded = 0;
    let mut in_val = false;
    for line in decoded.lines() {
        let line = line.trim_end_matches(['\r', ' ', '\t']).replace('\t', " ");
        if in_val {
            // `can-dbc` wants one VAL_ statement per line; vendors wrap
            // long value tables.
            out.push(' ');
            out.push_str(line.trim_start());
            folded += 1;
        } else {
            out.push_str(&line);
            in_val = line.trim_start().starts_with("VAL_ ");
        }
        if in_val && ends_statement(&line) {
            in_val = false;
        }
        if !in_val {
            out.push('\n');
            for _ in 0..folded {
                out.push('\n');
            }
            folded = 0;
        }
    }
    if in_val {
        out.push('\n');
    }
    out
}

/// Whether `line` ends with `;` outside a quoted string.
fn ends_statement(line: &str) -> bool {
    let mut quoted = false;
    let mut last = None;
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if !c.is_whitespace() {
            last = Some(c);
        }
    }
    !quoted && last == Some(';')
}

fn parse_error(text: &str, origin: &str, err: can_dbc::Error<'_>) -> DbcError {
    let remaining = match err {
        can_dbc::Error::Incomplete(_, remaining) => remaining,
        can_dbc::Error::Nom(e) => {
            // `nom` is not a direct dependency; `map` reaches the inner
            // error (and its position) of the Error/Failure variants.
            let mut at = "";
            let _ = e.map(|inner| {
                at = inner.input;
                inner
            });
            at
        }
        can_dbc::Error::MultipleMultiplexors => "",
    };
    let offset = text.len().saturating_sub(remaining.len());
    let line = 1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let near: String = remaining
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(60)
        .collect();
    DbcError::Parse {
        origin: origin.to_string(),
        line,
        near: if near.is_empty() {
            "<end of file>".to_string()
        } else {
            near
        },
    }
}

/// Message ids as written in the text (`BO_ <id> <name>:`). `can-dbc`
/// silently truncates standard ids to 16 bits; this catches that.
fn scan_message_ids(text: &str) -> HashMap<&str, u64> {
    let mut ids = HashMap::new();
    for line in text.lines() {
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("BO_") {
            continue;
        }
        if let (Some(id), Some(name)) = (tokens.next(), tokens.next()) {
            if let Ok(id) = id.parse::<u64>() {
                ids.insert(name.trim_end_matches(':'), id);
            }
        }
    }
    ids
}

fn message_id(parsed: can_dbc::MessageId, written: Option<u64>) -> Result<CanId, String> {
    let raw = written.unwrap_or(u64::from(parsed.raw()));
    if raw & DBC_EXTENDED_FLAG != 0 {
        let id = raw & !DBC_EXTENDED_FLAG;
        u32::try_from(id)
            .ok()
            .and_then(|id| CanId::extended(id).ok())
            .ok_or_else(|| {
                format!("extended id {raw} ({id:#X} without bit 31) does not fit in 29 bits")
            })
    } else {
        u16::try_from(raw)
            .ok()
            .and_then(|id| CanId::standard(id).ok())
            .ok_or_else(|| {
                format!(
                    "id {raw} ({raw:#X}) does not fit in 11 bits (max {STANDARD_ID_MAX:#X}); \
                     extended ids must have bit 31 set (add 0x80000000)"
                )
            })
    }
}

fn convert_signal(sig: &can_dbc::Signal, size_bytes: u8) -> Result<SignalDef, String> {
    let size_bits = u8::try_from(sig.signal_size)
        .ok()
        .filter(|b| (1..=64).contains(b))
        .ok_or_else(|| format!("width of {} bits is outside 1..=64", sig.signal_size))?;
    let start_bit = u16::try_from(sig.start_bit)
        .map_err(|_| format!("start bit {} is too large", sig.start_bit))?;
    let byte_order = match sig.byte_order() {
        can_dbc::ByteOrder::LittleEndian => ByteOrder::LittleEndian,
        can_dbc::ByteOrder::BigEndian => ByteOrder::BigEndian,
    };
    let mux = match *sig.multiplexer_indicator() {
        can_dbc::MultiplexIndicator::Plain => MuxRole::Plain,
        can_dbc::MultiplexIndicator::Multiplexor => MuxRole::Multiplexor,
        can_dbc::MultiplexIndicator::MultiplexedSignal(v) => MuxRole::Multiplexed(v),
        can_dbc::MultiplexIndicator::MultiplexorAndMultiplexedSignal(_) => {
            return Err("extended (nested) multiplexing is not supported".to_string())
        }
    };
    let def = SignalDef {
        name: sig.name().clone(),
        start_bit,
        size_bits,
        byte_order,
        signed: *sig.value_type() == can_dbc::ValueType::Signed,
        factor: sig.factor,
        offset: sig.offset,
        min: sig.min,
        max: sig.max,
        unit: sig.unit().clone(),
        mux,
    };
    if !def.fits(usize::from(size_bytes)) {
        return Err(format!(
            "start bit {start_bit} with {size_bits} bits ({}) does not fit in the {size_bytes}-byte message",
            match byte_order {
                ByteOrder::LittleEndian => "Intel",
                ByteOrder::BigEndian => "Motorola",
            }
        ));
    }
    if !def.factor.is_finite() || def.factor == 0.0 {
        return Err(format!("factor {} must be finite and non-zero", def.factor));
    }
    if !def.offset.is_finite() || !def.min.is_finite() || !def.max.is_finite() {
        return Err("offset, minimum and maximum must be finite".to_string());
    }
    if def.min > def.max {
        return Err(format!("minimum {} exceeds maximum {}", def.min, def.max));
    }
    Ok(def)
}

fn convert(parsed: &can_dbc::DBC, text: &str, origin: &str) -> Result<Dbc, DbcError> {
    let written_ids = scan_message_ids(text);
    let non_integer: HashSet<(u32, &str)> = parsed
        .signal_extended_value_type_list()
        .iter()
        .filter(|v| {
            *v.signal_extended_value_type()
                != can_dbc::SignalExtendedValueType::SignedOrUnsignedInteger
        })
        .map(|v| (v.message_id().raw(), v.signal_name().as_str()))
        .collect();
    let extended_mux: HashSet<u32> = parsed
        .extended_multiplex()
        .iter()
        .map(|e| e.message_id().raw())
        .collect();

    let mut raw_ids: HashMap<u32, usize> = HashMap::new();
    let mut dbc = Dbc {
        origin: origin.to_string(),
        messages: Vec::new(),
        by_id: HashMap::new(),
        by_name: HashMap::new(),
        signals_by_name: HashMap::new(),
    };
    for msg in parsed.messages() {
        let name = msg.message_name();
        if name == INDEPENDENT_SIGNALS_MESSAGE {
            continue;
        }
        let invalid = |reason: String| DbcError::InvalidMessage {
            origin: origin.to_string(),
            message: name.clone(),
            reason,
        };
        let invalid_signal = |signal: &str, reason: String| DbcError::InvalidSignal {
            origin: origin.to_string(),
            message: name.clone(),
            signal: signal.to_string(),
            reason,
        };
        let id = message_id(*msg.message_id(), written_ids.get(name.as_str()).copied())
            .map_err(invalid)?;
        let size_bytes = u8::try_from(*msg.message_size())
            .ok()
            .filter(|&n| usize::from(n) <= CLASSIC_MAX_DATA_BYTES)
            .ok_or_else(|| {
                invalid(format!(
                    "size of {} bytes exceeds the classic CAN maximum of 8 (CAN FD is not supported)",
                    msg.message_size()
                ))
            })?;
        if extended_mux.contains(&msg.message_id().raw()) {
            return Err(invalid(
                "extended multiplexing (SG_MUL_VAL_) is not supported".to_string(),
            ));
        }
        let mut signals: Vec<SignalDef> = Vec::with_capacity(msg.signals().len());
        for sig in msg.signals() {
            if non_integer.contains(&(msg.message_id().raw(), sig.name().as_str())) {
                return Err(invalid_signal(
                    sig.name(),
                    "IEEE float signals (SIG_VALTYPE_) are not supported".to_string(),
                ));
            }
            let def = convert_signal(sig, size_bytes)
                .map_err(|reason| invalid_signal(sig.name(), reason))?;
            if signals.iter().any(|s| s.name == def.name) {
                return Err(invalid_signal(
                    &def.name,
                    "defined twice in the message".to_string(),
                ));
            }
            signals.push(def);
        }
        let multiplexors: Vec<usize> = signals
            .iter()
            .enumerate()
            .filter(|(_, s)| s.mux == MuxRole::Multiplexor)
            .map(|(i, _)| i)
            .collect();
        if multiplexors.len() > 1 {
            return Err(invalid("more than one multiplexor signal".to_string()));
        }
        let multiplexor = multiplexors.first().copied();
        if multiplexor.is_none() {
            if let Some(s) = signals
                .iter()
                .find(|s| matches!(s.mux, MuxRole::Multiplexed(_)))
            {
                return Err(invalid_signal(
                    &s.name,
                    "multiplexed signal in a message without multiplexor".to_string(),
                ));
            }
        }
        check_overlaps(&signals).map_err(invalid)?;
        let def = MessageDef {
            name: name.clone(),
            id,
            size_bytes,
            transmitter: match msg.transmitter() {
                can_dbc::Transmitter::NodeName(node) => Some(node.clone()),
                can_dbc::Transmitter::VectorXXX => None,
            },
            signals,
            multiplexor,
            cycle_time_ms: None,
        };
        let index = dbc.messages.len();
        if let Some(&other) = dbc.by_id.get(&id) {
            return Err(invalid(format!(
                "id {id} is also used by message `{}`",
                dbc.messages[other].name
            )));
        }
        if dbc.by_name.contains_key(name) {
            return Err(invalid("message defined twice".to_string()));
        }
        dbc.by_id.insert(id, index);
        dbc.by_name.insert(name.clone(), index);
        for (signal, s) in def.signals.iter().enumerate() {
            dbc.signals_by_name
                .entry(s.name.clone())
                .or_default()
                .push(SignalRef {
                    message: index,
                    signal,
                });
        }
        raw_ids.insert(msg.message_id().raw(), index);
        dbc.messages.push(def);
    }
    add_long_names(parsed, &raw_ids, &mut dbc);
    add_cycle_times(parsed, &raw_ids, &mut dbc);
    Ok(dbc)
}

/// `GenMsgCycleTime` (Vector's attribute for a cyclic message's period)
/// onto each message, the default first and per-message values over it.
/// Values that are not a whole number of ms in `1..=u32::MAX` mean "not
/// cyclic", as 0 does.
fn add_cycle_times(parsed: &can_dbc::DBC, raw_ids: &HashMap<u32, usize>, dbc: &mut Dbc) {
    fn ms(v: &can_dbc::AttributeValue) -> Option<u32> {
        let x = match v {
            can_dbc::AttributeValue::AttributeValueU64(x) => *x as f64,
            can_dbc::AttributeValue::AttributeValueI64(x) => *x as f64,
            can_dbc::AttributeValue::AttributeValueF64(x) => *x,
            can_dbc::AttributeValue::AttributeValueCharString(s) => s.trim().parse().ok()?,
        };
        (x.fract() == 0.0 && x >= 1.0 && x <= u32::MAX as f64).then_some(x as u32)
    }
    let default = parsed
        .attribute_defaults()
        .iter()
        .find(|d| d.attribute_name() == CYCLE_TIME_ATTRIBUTE)
        .and_then(|d| ms(d.attribute_value()));
    for m in &mut dbc.messages {
        m.cycle_time_ms = default;
    }
    for attr in parsed.attribute_values() {
        if attr.attribute_name() != CYCLE_TIME_ATTRIBUTE {
            continue;
        }
        if let can_dbc::AttributeValuedForObjectType::MessageDefinitionAttributeValue(id, value) =
            attr.attribute_value()
        {
            if let Some(&message) = raw_ids.get(&id.raw()) {
                dbc.messages[message].cycle_time_ms = value.as_ref().and_then(ms);
            }
        }
    }
}

/// DBC names are limited to 32 characters; tools keep the real, longer name
/// of a signal in the `SystemSignalLongSymbol` attribute. Make the long
/// name resolve too, so a mapping can use the name the vendor documents.
fn add_long_names(parsed: &can_dbc::DBC, raw_ids: &HashMap<u32, usize>, dbc: &mut Dbc) {
    for attr in parsed.attribute_values() {
        if attr.attribute_name() != LONG_SIGNAL_NAME_ATTRIBUTE {
            continue;
        }
        let can_dbc::AttributeValuedForObjectType::SignalAttributeValue(
            id,
            short,
            can_dbc::AttributeValue::AttributeValueCharString(long),
        ) = attr.attribute_value()
        else {
            continue;
        };
        let Some(&message) = raw_ids.get(&id.raw()) else {
            continue;
        };
        let Some(signal) = dbc.messages[message].signal_index(short) else {
            continue;
        };
        if long != short && !long.is_empty() {
            dbc.signals_by_name
                .entry(long.clone())
                .or_default()
                .push(SignalRef { message, signal });
        }
    }
}

/// Signals that can appear in the same frame must not share bits.
fn check_overlaps(signals: &[SignalDef]) -> Result<(), String> {
    let masks: Vec<u64> = signals
        .iter()
        .map(|s| s.occupied_mask().unwrap_or(0))
        .collect();
    for (i, a) in signals.iter().enumerate() {
        for (j, b) in signals.iter().enumerate().skip(i + 1) {
            let coexist = match (a.mux, b.mux) {
                (MuxRole::Multiplexed(x), MuxRole::Multiplexed(y)) => x == y,
                _ => true,
            };
            if coexist && masks[i] & masks[j] != 0 {
                return Err(format!("signals `{}` and `{}` overlap", a.name, b.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "VERSION \"\"\n\nNS_ :\n\tCM_\n\nBS_:\n\nBU_: PCM1 FOO\n\n";

    fn dbc(body: &str) -> Dbc {
        Dbc::parse(format!("{HEADER}{body}").as_bytes(), "test.dbc").unwrap()
    }

    fn sig(start_bit: u16, size_bits: u8, byte_order: ByteOrder, signed: bool) -> SignalDef {
        SignalDef {
            name: "S".to_string(),
            start_bit,
            size_bits,
            byte_order,
            signed,
            factor: 1.0,
            offset: 0.0,
            min: 0.0,
            max: 0.0,
            unit: String::new(),
            mux: MuxRole::Plain,
        }
    }

    /// Independent reference: walk bits one by one with the DBC rules
    /// (Motorola: after bit 8k comes bit 8k + 15, otherwise bit b - 1).
    fn reference_extract(data: &[u8], s: &SignalDef) -> u64 {
        let mut v = 0u64;
        let mut b = usize::from(s.start_bit);
        for i in 0..usize::from(s.size_bits) {
            let bit = u64::from((data[b / 8] >> (b % 8)) & 1);
            match s.byte_order {
                ByteOrder::LittleEndian => {
                    v |= bit << i;
                    b += 1;
                }
                ByteOrder::BigEndian => {
                    v = (v << 1) | bit;
                    b = if b % 8 == 0 { b + 15 } else { b - 1 };
                }
            }
        }
        v
    }

    const MOTOHAWK: &str = "BO_ 496 ExampleMessage: 8 PCM1
 SG_ Enable : 7|1@0+ (1,0) [0|0] \"-\" Vector__XXX
 SG_ AverageRadius : 6|6@0+ (0.1,0) [0|5] \"m\" Vector__XXX
 SG_ Temperature : 0|12@0- (0.01,250) [229.52|270.47] \"degK\" PCM1,FOO
";

    #[test]
    fn an_id_offset_moves_every_message_and_overflow_names_the_message() {
        let d = dbc(MOTOHAWK);
        let moved = d.with_id_offset(0x200).unwrap();
        assert_eq!(
            moved.message("ExampleMessage").unwrap().id,
            CanId::Standard(496 + 0x200)
        );
        assert_eq!(moved.message_index_by_id(CanId::Standard(496)), None);
        assert!(moved
            .message_index_by_id(CanId::Standard(496 + 0x200))
            .is_some());
        let e = d.with_id_offset(0x700).unwrap_err().to_string();
        assert!(e.contains("ExampleMessage") && e.contains("11-bit"), "{e}");
    }

    #[test]
    fn cycle_times_come_from_gen_msg_cycle_time_with_its_default() {
        let body = "BO_ 1 Fast: 1 PCM1
 SG_ A : 0|8@1+ (1,0) [0|0] \"\" FOO

BO_ 2 Default: 1 PCM1
 SG_ B : 0|8@1+ (1,0) [0|0] \"\" FOO

BO_ 3 OnEvent: 1 PCM1
 SG_ C : 0|8@1+ (1,0) [0|0] \"\" FOO

BA_DEF_ BO_ \"GenMsgCycleTime\" INT 0 65535;
BA_DEF_DEF_ \"GenMsgCycleTime\" 100;
BA_ \"GenMsgCycleTime\" BO_ 1 20;
BA_ \"GenMsgCycleTime\" BO_ 3 0;
";
        let d = dbc(body);
        let period = |n: &str| d.message(n).unwrap().cycle_time_ms;
        assert_eq!(period("Fast"), Some(20));
        assert_eq!(period("Default"), Some(100));
        assert_eq!(period("OnEvent"), None, "0 means not cyclic");
        // Without the attribute no message has a period.
        assert_eq!(dbc(MOTOHAWK).messages()[0].cycle_time_ms, None);
    }

    #[test]
    fn motorola_12_bit_known_answer() {
        let d = dbc(MOTOHAWK);
        let m = d.message("ExampleMessage").unwrap();
        assert_eq!(m.id, CanId::Standard(496));
        let t = m.signal_index("Temperature").unwrap();
        // raw = (250.1 - 250) / 0.01 = 10 = 0b0000_0000_1010, MSB at byte 0
        // bit 0: byte 0 bit 0 = raw bit 11 (0), byte 1 = raw bits 10..3
        // (0x01), byte 2 bits 7..5 = raw bits 2..0 (0b010 -> 0x40).
        let bytes = m.encode(&[(t, 250.1)]).unwrap();
        assert_eq!(bytes, [0x00, 0x01, 0x40, 0, 0, 0, 0, 0]);
        let decoded = m.decode(&bytes).unwrap();
        let temp = decoded.iter().find(|v| v.signal == t).unwrap();
        assert_eq!(temp.raw, 10);
        assert!((temp.value - 250.1).abs() < 1e-9);
        assert!(temp.in_range);

        // The cantools README vector for the full message.
        let e = m.signal_index("Enable").unwrap();
        let r = m.signal_index("AverageRadius").unwrap();
        let bytes = m.encode(&[(e, 1.0), (r, 3.2), (t, 250.55)]).unwrap();
        assert_eq!(bytes, [0xC0, 0x06, 0xE0, 0, 0, 0, 0, 0]);
        let decoded = m.decode(&bytes).unwrap();
        let values: Vec<f64> = decoded.iter().map(|v| v.value).collect();
        assert_eq!(values.len(), 3);
        assert!((values[0] - 1.0).abs() < 1e-9);
        assert!((values[1] - 3.2).abs() < 1e-9);
        assert!((values[2] - 250.55).abs() < 1e-9);
    }

    #[test]
    fn motorola_sign_extension() {
        let d = dbc(MOTOHAWK);
        let s = d.signal(d.resolve_signal("Temperature").unwrap());
        // raw 0xFFF = -1 -> 249.99
        let data = [0x01, 0xFF, 0xE0, 0, 0, 0, 0, 0];
        assert_eq!(s.extract_raw(&data), Some(0xFFF));
        assert!((s.decode(&data).unwrap() - 249.99).abs() < 1e-9);
        // raw 0x800 = -2048 -> 229.52, the DBC minimum.
        let data = [0x01, 0x00, 0x00, 0, 0, 0, 0, 0];
        assert_eq!(s.extract_raw(&data), Some(0x800));
        let v = s.decode(&data).unwrap();
        assert!((v - 229.52).abs() < 1e-9);
        assert!(s.in_range(v));
        let mut buf = [0u8; 8];
        s.encode(229.52, &mut buf).unwrap();
        assert_eq!(buf, data);
    }

    #[test]
    fn intel_known_answers() {
        let d = dbc("BO_ 768 Cells: 8 PCM1
 SG_ Lo : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX
 SG_ Mid : 22|14@1+ (1,0) [0|8000] \"mV\" Vector__XXX
 SG_ T : 48|16@1- (0.1,0) [-40|125] \"degC\" Vector__XXX
");
        let m = d.message_at(0);
        // 3700 << 22 = 0x3_9D00_0000 -> bytes 3..4 = 9D 03.
        // -12.5 degC = raw -125 = 0xFF83 -> bytes 6..7 = 83 FF.
        let bytes = m
            .encode(&[(0, f64::from(0xABu8)), (1, 3700.0), (2, -12.5)])
            .unwrap();
        assert_eq!(bytes, [0xAB, 0, 0, 0x9D, 0x03, 0, 0x83, 0xFF]);
        let d = m.decode(&bytes).unwrap();
        assert_eq!(
            d.iter().map(|v| v.raw).collect::<Vec<_>>(),
            [0xAB, 3700, 0xFF83]
        );
        assert!((d[2].value + 12.5).abs() < 1e-9);
        assert!(d.iter().all(|v| v.in_range));
    }

    #[test]
    fn sixty_four_bit_signals() {
        let data = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];
        let le = sig(0, 64, ByteOrder::LittleEndian, false);
        let be = sig(7, 64, ByteOrder::BigEndian, true);
        assert_eq!(le.extract_raw(&data), Some(0xEFCD_AB89_6745_2301));
        assert_eq!(be.extract_raw(&data), Some(0x0123_4567_89AB_CDEF));
        let mut buf = [0u8; 8];
        be.encode_raw(0x0123_4567_89AB_CDEF, &mut buf).unwrap();
        assert_eq!(buf, data);
        assert_eq!(be.extract_raw(&data[..7]), None);
        assert_eq!(
            sig(0, 1, ByteOrder::LittleEndian, true).raw_to_physical(1),
            -1.0
        );
    }

    #[test]
    fn extended_id() {
        // 2566869221 = 0x80000000 | 0x18FF50E5
        let d = dbc(
            "BO_ 2566869221 Ext: 8 Vector__XXX\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\n",
        );
        let m = d.message_by_id(CanId::Extended(0x18FF_50E5)).unwrap();
        assert_eq!(m.name, "Ext");
        assert_eq!(m.transmitter, None);
        assert!(d.message_by_id(CanId::Standard(0x50E5 & 0x7FF)).is_none());
    }

    #[test]
    fn standard_id_must_fit_11_bits() {
        // 0x18FF0123 without bit 31: can-dbc would truncate it to 0x123.
        let text = format!("{HEADER}BO_ 419365155 Bad: 8 Vector__XXX\n");
        let err = Dbc::parse(text.as_bytes(), "ids.dbc")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ids.dbc") && err.contains("`Bad`") && err.contains("11 bits"),
            "{err}"
        );
    }

    const MUXED: &str = "BO_ 1 Muxed: 8 PCM1
 SG_ Mux M : 0|8@1+ (1,0) [0|1] \"\" Vector__XXX
 SG_ Always : 56|8@1+ (1,0) [0|0] \"\" Vector__XXX
 SG_ A0 m0 : 8|16@1+ (1,0) [0|0] \"\" Vector__XXX
 SG_ A1 m1 : 8|16@1+ (1,0) [0|0] \"\" Vector__XXX
 SG_ B1 m1 : 24|16@1+ (1,0) [0|0] \"\" Vector__XXX
";

    #[test]
    fn multiplexed_decode_selects_active_group() {
        let d = dbc(MUXED);
        let m = d.message("Muxed").unwrap();
        assert_eq!(m.multiplexor, Some(0));
        assert_eq!(m.signals[2].mux, MuxRole::Multiplexed(0));
        let data = [1, 0x34, 0x12, 0x78, 0x56, 0, 0, 9];
        let got: Vec<(usize, f64)> = m
            .decode(&data)
            .unwrap()
            .iter()
            .map(|v| (v.signal, v.value))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1.0),
                (1, 9.0),
                (3, f64::from(0x1234u16)),
                (4, f64::from(0x5678u16))
            ]
        );
        let data = [0, 0x34, 0x12, 0x78, 0x56, 0, 0, 9];
        let got: Vec<usize> = m.decode(&data).unwrap().iter().map(|v| v.signal).collect();
        assert_eq!(got, [0, 1, 2]);
        // An unknown group yields only the always-present signals, and the
        // multiplexor itself is flagged out of its [0|1] range.
        let d7 = m.decode(&[7, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(d7.iter().map(|v| v.signal).collect::<Vec<_>>(), [0, 1]);
        assert!(!d7[0].in_range);

        // Encoding: the group must match the multiplexor value.
        assert_eq!(
            m.encode(&[
                (0, 1.0),
                (3, f64::from(0x1234u16)),
                (4, f64::from(0x5678u16))
            ])
            .unwrap(),
            [1, 0x34, 0x12, 0x78, 0x56, 0, 0, 0]
        );
        let err = m.encode(&[(0, 0.0), (3, 1.0)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message `Muxed`: signal `A1` belongs to mux group 1, but the multiplexor is 0"
        );
        let err = m.encode(&[(3, 1.0)]).unwrap_err();
        assert!(err.to_string().contains("not given"), "{err}");
        let err = m.encode(&[(1, 1.0), (1, 2.0)]).unwrap_err();
        assert!(matches!(err, EncodeError::DuplicateSignal { .. }));
        let err = m.encode(&[(9, 1.0)]).unwrap_err();
        assert_eq!(err.to_string(), "message `Muxed` has no signal index 9");
    }

    #[test]
    fn wrong_length_is_an_error() {
        let d = dbc(MOTOHAWK);
        let m = d.message_at(0);
        let err = m.decode(&[0; 7]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::WrongLength {
                message: "ExampleMessage".to_string(),
                id: CanId::Standard(496),
                expected: 8,
                got: 7
            }
        );
        assert_eq!(
            err.to_string(),
            "message `ExampleMessage` (0x1F0): expected 8 data bytes, got 7"
        );
        assert!(m.decode(&[0; 9]).is_err());
        assert!(m.decode(&[]).is_err());
    }

    #[test]
    fn out_of_range_is_flagged_not_hidden() {
        let d = dbc(MOTOHAWK);
        let m = d.message_at(0);
        let r = m.signal_index("AverageRadius").unwrap();
        // 6.3 m is representable (raw 63) but outside [0|5].
        let bytes = m.encode(&[(r, 6.3)]).unwrap();
        let v = m
            .decode(&bytes)
            .unwrap()
            .into_iter()
            .find(|v| v.signal == r)
            .unwrap();
        assert!((v.value - 6.3).abs() < 1e-9);
        assert!(!v.in_range);
        let s = &m.signals[r];
        assert!(s.in_range(5.0) && s.in_range(0.0) && !s.in_range(-0.1) && !s.in_range(f64::NAN));
        // [0|0] is unbounded.
        assert!(m.signals[0].in_range(1e9));
    }

    #[test]
    fn encode_errors_name_signal_and_range() {
        let d = dbc(MOTOHAWK);
        let s = d.signal(d.resolve_signal("AverageRadius").unwrap());
        let mut buf = [0u8; 8];
        let err = s.encode(6.4, &mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signal `AverageRadius`: 6.4 m is not representable; 6-bit unsigned range is [0, 6.300000000000001] m"
        );
        assert!(s.encode(-0.1, &mut buf).is_err());
        let mut ok = [0u8; 8];
        s.encode(6.34, &mut ok).unwrap(); // rounds to raw 63
        assert_eq!(s.extract_raw(&ok), Some(63));
        let err = s.encode(f64::NAN, &mut buf).unwrap_err();
        assert!(
            err.to_string().contains("`AverageRadius`") && err.to_string().contains("non-finite")
        );
        assert!(s.encode(f64::INFINITY, &mut buf).is_err());
        let t = d.signal(d.resolve_signal("Temperature").unwrap());
        let err = t.encode(300.0, &mut buf).unwrap_err().to_string();
        assert!(
            err.contains("`Temperature`")
                && err.contains("12-bit signed")
                && err.contains("229.52"),
            "{err}"
        );
        let err = t.encode(250.0, &mut buf[..2]).unwrap_err().to_string();
        assert!(
            err.contains("`Temperature`") && err.contains("2 data bytes"),
            "{err}"
        );
        let err = s.encode_raw(64, &mut buf).unwrap_err().to_string();
        assert!(
            err.contains("`AverageRadius`") && err.contains("6 bits"),
            "{err}"
        );
        assert_eq!(buf, [0u8; 8], "failed encodes must not touch the buffer");
    }

    #[test]
    fn lookups_and_lookup_errors() {
        let d = dbc(&format!(
            "{MOTOHAWK}\nBO_ 497 Other: 1 FOO\n SG_ Enable : 0|1@1+ (1,0) [0|1] \"\" Vector__XXX\n"
        ));
        assert_eq!(d.messages().len(), 2);
        assert_eq!(d.origin(), "test.dbc");
        assert_eq!(d.message_index("Other"), Some(1));
        assert_eq!(d.message_index_by_id(CanId::Standard(497)), Some(1));
        assert!(d.message_by_id(CanId::Standard(498)).is_none());
        assert!(d.get_message_at(2).is_none());
        let r = d.resolve_signal("AverageRadius").unwrap();
        assert_eq!(
            r,
            SignalRef {
                message: 0,
                signal: 1
            }
        );
        assert_eq!(d.find_signal("AverageRadius"), Some(r));
        assert_eq!(d.signal(r).unit, "m");
        assert!(d
            .get_signal(SignalRef {
                message: 0,
                signal: 3
            })
            .is_none());
        assert_eq!(d.find_signal("Enable"), None);
        assert_eq!(
            d.resolve_signal("Enable").unwrap_err().to_string(),
            "signal `Enable` is ambiguous in test.dbc: defined in messages ExampleMessage, Other"
        );
        assert_eq!(
            d.resolve_signal("Nope").unwrap_err().to_string(),
            "signal `Nope` not found in test.dbc"
        );
        assert_eq!(
            d.resolve_message("Nope").unwrap_err().to_string(),
            "message `Nope` not found in test.dbc"
        );
        assert_eq!(d.resolve_message("Other").unwrap(), 1);
    }

    #[test]
    fn latin1_and_crlf() {
        let mut bytes =
            format!("{HEADER}BO_ 5 T: 2 PCM1\n SG_ Temp : 0|16@1- (0.1,0) [-40|125] \"")
                .replace('\n', "\r\n")
                .into_bytes();
        bytes.extend_from_slice(&[0xB0, b'C']);
        bytes.extend_from_slice(b"\"\tVector__XXX \r\n");
        assert!(std::str::from_utf8(&bytes).is_err());
        let d = Dbc::parse(&bytes, "latin1.dbc").unwrap();
        assert_eq!(d.message("T").unwrap().signals[0].unit, "\u{B0}C");
        // The same file in UTF-8 with a BOM parses identically.
        let utf8 = [
            b"\xEF\xBB\xBF".as_slice(),
            String::from_utf8_lossy(&bytes)
                .replace('\u{FFFD}', "\u{B0}")
                .as_bytes(),
        ]
        .concat();
        let d2 = Dbc::parse(&utf8, "utf8.dbc").unwrap();
        assert_eq!(d2.messages(), d.messages());
    }

    #[test]
    fn wrapped_value_tables_parse_and_keep_line_numbers() {
        let body = "BO_ 1 M: 8 PCM1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\n\n\
                    VAL_ 1 A 0 \"off;\"\n   1 \"on\"\n   2 \"fault\" ;\n";
        let dbc = Dbc::parse(format!("{HEADER}{body}").as_bytes(), "wrapped.dbc").unwrap();
        assert!(dbc.find_signal("A").is_some());
        // An error after the wrapped table (a message after the value
        // tables) is reported on its own line: 10 BO_, 13-15 VAL_, 16.
        let text = format!("{HEADER}{body}BO_ 2 N: 8 PCM1\n");
        let err = Dbc::parse(text.as_bytes(), "wrapped.dbc")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "wrapped.dbc:16: DBC syntax not understood near `BO_ 2 N: 8 PCM1`"
        );
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let text = format!("{HEADER}BO_ 1 M: 8 PCM1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" Vector__XXX\n SG_ B : oops\n");
        let err = Dbc::parse(text.as_bytes(), "broken.dbc")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "broken.dbc:12: DBC syntax not understood near `SG_ B : oops`"
        );
        let err = Dbc::parse(b"", "empty.dbc").unwrap_err().to_string();
        assert!(err.starts_with("empty.dbc:1:"), "{err}");
        let err = Dbc::from_file("/nonexistent/x.dbc")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read DBC file `/nonexistent/x.dbc`"),
            "{err}"
        );
    }

    #[test]
    fn invalid_definitions_are_rejected() {
        let cases = [
            ("BO_ 1 M: 9 PCM1\n", "classic CAN maximum"),
            ("BO_ 1 M: 2 PCM1\n SG_ A : 8|16@1+ (1,0) [0|0] \"\" X\n", "does not fit"),
            ("BO_ 1 M: 2 PCM1\n SG_ A : 7|16@0+ (1,0) [0|0] \"\" X\n SG_ B : 15|1@0+ (1,0) [0|0] \"\" X\n", "overlap"),
            ("BO_ 1 M: 8 PCM1\n SG_ A : 0|65@1+ (1,0) [0|0] \"\" X\n", "outside 1..=64"),
            ("BO_ 1 M: 8 PCM1\n SG_ A : 0|8@1+ (0,0) [0|0] \"\" X\n", "non-zero"),
            ("BO_ 1 M: 8 PCM1\n SG_ A : 0|8@1+ (1,0) [5|1] \"\" X\n", "exceeds maximum"),
            ("BO_ 1 M: 8 PCM1\n SG_ A m1 : 0|8@1+ (1,0) [0|0] \"\" X\n", "without multiplexor"),
            ("BO_ 1 M: 8 PCM1\n SG_ A M : 0|8@1+ (1,0) [0|0] \"\" X\n SG_ B M : 8|8@1+ (1,0) [0|0] \"\" X\n", "more than one"),
            ("BO_ 1 M: 8 PCM1\n SG_ A : 0|8@1+ (1,0) [0|0] \"\" X\n SG_ A : 8|8@1+ (1,0) [0|0] \"\" X\n", "defined twice"),
            ("BO_ 1 M: 8 PCM1\nBO_ 1 N: 8 PCM1\n", "also used by message `M`"),
            ("BO_ 1 M: 8 PCM1\n SG_ A : 0|32@1- (1,0) [0|0] \"\" X\n\nSIG_VALTYPE_ 1 A : 1;\n", "IEEE float"),
        ];
        for (body, needle) in cases {
            let err = Dbc::parse(format!("{HEADER}{body}").as_bytes(), "bad.dbc")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("bad.dbc: message `"), "{err}");
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn hostile_layouts_never_panic() {
        let data = [0xFFu8; 8];
        for order in [ByteOrder::LittleEndian, ByteOrder::BigEndian] {
            for (start, size) in [(0, 0), (0, 65), (0, 255), (u16::MAX, 8), (60, 8), (56, 64)] {
                let mut s = sig(start, size, order, true);
                assert_eq!(s.extract_raw(&data), None);
                assert_eq!(s.decode(&[]), None);
                let mut buf = data;
                assert!(s.encode(0.0, &mut buf).is_err());
                assert!(s.encode_raw(0, &mut buf).is_err());
                s.factor = 0.0;
                assert!(s.physical_to_raw(1.0).is_err());
                let _ = s.representable_range();
            }
        }
    }

    #[test]
    fn bmu_demo_round_trip() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/bmu-demo.dbc");
        let d = Dbc::from_file(path).unwrap();
        // Per BMU: cell voltages, temperatures, balance; BMS_Status; 3 IVT.
        assert_eq!(d.messages().len(), 8 * 3 + 1 + 3);

        let msg = |name: &str| d.message_at(d.resolve_message(name).unwrap());
        let idx = |m: &MessageDef, s: &str| m.signal_index(s).unwrap();
        let check = |m: &MessageDef, values: &[(usize, f64)], expect: &[u8]| {
            let frame = m.encode_frame(values).unwrap();
            assert_eq!(frame.data(), expect, "{}", m.name);
            assert_eq!(d.message_by_id(frame.id()).unwrap().name, m.name);
            let decoded = m.decode(frame.data()).unwrap();
            assert_eq!(decoded.len(), values.len(), "{}", m.name);
            for (v, &(i, want)) in decoded.iter().zip(values) {
                assert_eq!(v.signal, i);
                assert!(
                    (v.value - want).abs() < 1e-9,
                    "{}: {} vs {want}",
                    m.signals[i].name,
                    v.value
                );
                assert!(v.in_range);
            }
        };

        // Cell voltages of BMU3, group 2 = cells 8..11.
        let m = msg("BMU3_CellVoltage");
        assert_eq!(m.id, CanId::Standard(0x303));
        assert_eq!(m.transmitter.as_deref(), Some("BMU3"));
        assert_eq!(m.signals.len(), 18);
        let mux = m.multiplexor.unwrap();
        assert_eq!(m.signals[mux].name, "BMU3_VoltMux");
        let alive = idx(m, "BMU3_VoltAlive");
        assert_eq!(m.signals[alive].mux, MuxRole::Plain);
        let cells: Vec<usize> = (8..12)
            .map(|c| idx(m, &format!("BMU3_Cell{c:02}_mV")))
            .collect();
        assert!(cells
            .iter()
            .all(|&c| m.signals[c].mux == MuxRole::Multiplexed(2)));
        // 2 | alive 9 << 4 | 3700 << 8 | 3701 << 22 | 0 << 36 | 8000 << 50 (LE).
        let raw: u64 = 2 | 9 << 4 | 3700 << 8 | 3701 << 22 | 8000 << 50;
        check(
            m,
            &[
                (mux, 2.0),
                (alive, 9.0),
                (cells[0], 3700.0),
                (cells[1], 3701.0),
                (cells[2], 0.0),
                (cells[3], 8000.0),
            ],
            &raw.to_le_bytes(),
        );

        let m = msg("BMU7_Temperature");
        assert_eq!(m.id, CanId::Standard(0x317));
        let t: Vec<usize> = (0..4).map(|s| idx(m, &format!("BMU7_Temp{s}"))).collect();
        check(
            m,
            &[(t[0], 25.0), (t[1], -12.5), (t[2], 125.0), (t[3], -40.0)],
            &[0xFA, 0x00, 0x83, 0xFF, 0xE2, 0x04, 0x70, 0xFE],
        );

        let m = msg("BMS_Balance5");
        assert_eq!((m.id, m.size_bytes), (CanId::Standard(0x405), 2));
        check(
            m,
            &[(idx(m, "BMU5_BleedMask"), f64::from(0x8001u16))],
            &[0x01, 0x80],
        );

        let m = msg("IVT_Current");
        assert_eq!((m.id, m.size_bytes), (CanId::Standard(0x521), 7));
        check(
            m,
            &[
                (idx(m, "IVT_MuxID"), 0.0),
                (idx(m, "IVT_Current_Count"), 5.0),
                (idx(m, "IVT_Current_mA"), -1_234_567.0),
                (idx(m, "IVT_Current_CRC"), 171.0),
            ],
            &[0x00, 0x50, 0xFF, 0xED, 0x29, 0x79, 0xAB],
        );

        let m = msg("IVT_Voltage");
        assert_eq!((m.id, m.size_bytes), (CanId::Standard(0x522), 7));
        check(
            m,
            &[
                (idx(m, "IVT_Voltage_Count"), 15.0),
                (idx(m, "IVT_Voltage_mV"), 812_345.0),
                (idx(m, "IVT_Voltage_CRC"), 1.0),
            ],
            &[0, 0xF0, 0x00, 0x0C, 0x65, 0x39, 1],
        );

        // Units the mapping layer relies on.
        assert_eq!(
            d.signal(d.resolve_signal("BMU0_Cell15_mV").unwrap()).unit,
            "mV"
        );
        assert_eq!(
            d.signal(d.resolve_signal("BMU0_Temp3").unwrap()).unit,
            "degC"
        );
        assert_eq!(
            d.signal(d.resolve_signal("IVT_Current_mA").unwrap()).unit,
            "mA"
        );
    }

    fn layout(max_bits: u8) -> impl Strategy<Value = SignalDef> {
        (any::<bool>(), any::<bool>(), 1u8..=max_bits, any::<u16>()).prop_map(
            |(big, signed, size, seed)| {
                let first = usize::from(seed) % (64 - usize::from(size) + 1);
                let (order, start) = if big {
                    (ByteOrder::BigEndian, (first / 8) * 8 + 7 - first % 8)
                } else {
                    (ByteOrder::LittleEndian, first)
                };
                sig(start as u16, size, order, signed)
            },
        )
    }

    proptest! {
        #[test]
        fn raw_round_trip(s in layout(64), raw in any::<u64>(), background in any::<[u8; 8]>()) {
            let raw = raw & low_mask(usize::from(s.size_bits));
            let mut data = background;
            s.encode_raw(raw, &mut data).unwrap();
            prop_assert_eq!(s.extract_raw(&data), Some(raw));
            prop_assert_eq!(reference_extract(&data, &s), raw);
            let mask = s.occupied_mask().unwrap();
            prop_assert_eq!(u64::from_le_bytes(data) & !mask, u64::from_le_bytes(background) & !mask);
            prop_assert_eq!(mask.count_ones(), u32::from(s.size_bits));
            // Physical path (exact in f64 up to 53 bits).
            if s.size_bits <= 53 {
                let physical = s.decode(&data).unwrap();
                let mut fresh = [0u8; 8];
                s.encode(physical, &mut fresh).unwrap();
                prop_assert_eq!(s.extract_raw(&fresh), Some(raw));
            }
        }

        #[test]
        fn scaled_round_trip(
            mut s in layout(32),
            raw in any::<u64>(),
            factor in prop::sample::select(vec![0.1, 0.01, 0.5, 3.0, -0.25, 1e-3]),
            offset in -1000.0f64..1000.0,
        ) {
            prop_assume!(s.size_bits <= 32);
            s.factor = factor;
            s.offset = offset;
            let raw = raw & low_mask(usize::from(s.size_bits));
            let mut data = [0u8; 8];
            s.encode_raw(raw, &mut data).unwrap();
            let physical = s.decode(&data).unwrap();
            let mut again = [0u8; 8];
            s.encode(physical, &mut again).unwrap();
            prop_assert_eq!(again, data);
        }

        #[test]
        fn reference_agrees_on_random_bytes(s in layout(64), data in any::<[u8; 8]>()) {
            prop_assert_eq!(s.extract_raw(&data), Some(reference_extract(&data, &s)));
        }

        #[test]
        fn hostile_frames_never_panic(
            start in any::<u16>(),
            size in any::<u8>(),
            big in any::<bool>(),
            data in prop::collection::vec(any::<u8>(), 0..12),
            physical in any::<f64>(),
        ) {
            let order = if big { ByteOrder::BigEndian } else { ByteOrder::LittleEndian };
            let s = sig(start, size, order, size % 2 == 0);
            let _ = s.decode(&data);
            let mut buf = data.clone();
            let _ = s.encode(physical, &mut buf);
            let m = MessageDef {
                name: "M".to_string(),
                id: CanId::Standard(1),
                size_bytes: data.len() as u8,
                transmitter: None,
                signals: vec![s],
                multiplexor: Some(0),
                cycle_time_ms: None,
            };
            let _ = m.decode(&data);
            let _ = m.encode(&[(0, physical)]);
        }
    }
}
