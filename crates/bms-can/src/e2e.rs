//! End-to-end protection of one message: an alive counter and a CRC-8.
//!
//! Owns: the profile of a protected message (which DBC signals carry the
//! counter and the CRC), the check a receiver makes of each frame against
//! the previous frame of the same page, and the seal a sender applies.
//! The checks follow AUTOSAR E2E profile 1 in spirit: a counter that does
//! not advance means a repeated (cached, replayed) frame; one that jumps
//! further than `max_counter_jump` means frames were lost; the CRC covers
//! the frame's identifier, so a frame under the wrong id also fails.
//!
//! May not touch: what to do about a failing message (acquisition decides
//! when a source goes stale) and any bus or clock.
//!
//! The CRC is CRC-8/SAE-J1850 (poly 0x1D, init 0xFF, xorout 0xFF) over the
//! identifier (2 bytes little-endian for a standard id, 4 for an extended
//! one) followed by every data byte except the CRC byte, in order.

use crate::dbc::{ByteOrder, MessageDef, MuxRole};
use crate::frame::CanId;

const CRC8: crc::Crc<u8> = crc::Crc::<u8>::new(&crc::CRC_8_SAE_J1850);

/// The CRC a sender writes into byte `crc_byte` of `data` sent under `id`.
pub fn crc8(id: CanId, data: &[u8], crc_byte: usize) -> u8 {
    let mut digest = CRC8.digest();
    let raw = id.raw().to_le_bytes();
    digest.update(if id.is_extended() { &raw } else { &raw[..2] });
    for (i, b) in data.iter().enumerate() {
        if i != crc_byte {
            digest.update(&[*b]);
        }
    }
    digest.finalize()
}

/// Why a message cannot be protected as declared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum E2eError {
    #[error("message `{message}` has no signal `{signal}`")]
    NoSignal { message: String, signal: String },
    #[error("counter `{signal}` of `{message}` is {bits} bits wide; a counter has 2..=16 bits")]
    CounterWidth {
        message: String,
        signal: String,
        bits: u8,
    },
    #[error("counter `{signal}` of `{message}` is multiplexed; the counter must be in every page")]
    CounterMultiplexed { message: String, signal: String },
    #[error(
        "CRC `{signal}` of `{message}` must be one whole, unsigned byte (8 bits, byte-aligned)"
    )]
    CrcNotAByte { message: String, signal: String },
    #[error("message `{message}`: declare a counter, a CRC or both")]
    Nothing { message: String },
}

/// What was wrong with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2eFault {
    /// The counter did not advance: a repeated frame.
    Repeated { counter: u16 },
    /// The counter jumped by more than the allowed number of lost frames.
    Skipped { from: u16, to: u16 },
    /// The CRC byte does not match the frame.
    BadCrc { expected: u8, got: u8 },
}

/// Counter signal: index in the message, its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    signal: usize,
    modulus: u32,
}

/// How one message is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2eProfile {
    counter: Option<Counter>,
    crc_byte: Option<usize>,
    max_counter_jump: u16,
}

/// The byte a signal occupies when it is exactly one unsigned byte.
fn whole_byte(msg: &MessageDef, index: usize) -> Option<usize> {
    let s = &msg.signals[index];
    let lsb_aligned = match s.byte_order {
        ByteOrder::LittleEndian => s.start_bit.is_multiple_of(8),
        ByteOrder::BigEndian => s.start_bit % 8 == 7,
    };
    let byte = usize::from(s.start_bit / 8);
    (s.size_bits == 8 && !s.signed && lsb_aligned && byte < usize::from(msg.size_bytes))
        .then_some(byte)
}

impl E2eProfile {
    /// The profile of `msg` with the named counter and CRC signals.
    pub fn new(
        msg: &MessageDef,
        counter: Option<&str>,
        crc: Option<&str>,
        max_counter_jump: u16,
    ) -> Result<Self, E2eError> {
        let find = |name: &str| {
            msg.signal_index(name).ok_or_else(|| E2eError::NoSignal {
                message: msg.name.clone(),
                signal: name.to_string(),
            })
        };
        let counter = match counter {
            None => None,
            Some(name) => {
                let signal = find(name)?;
                let def = &msg.signals[signal];
                if !(2..=16).contains(&def.size_bits) {
                    return Err(E2eError::CounterWidth {
                        message: msg.name.clone(),
                        signal: name.to_string(),
                        bits: def.size_bits,
                    });
                }
                if matches!(def.mux, MuxRole::Multiplexed(_)) {
                    return Err(E2eError::CounterMultiplexed {
                        message: msg.name.clone(),
                        signal: name.to_string(),
                    });
                }
                Some(Counter {
                    signal,
                    modulus: 1 << def.size_bits,
                })
            }
        };
        let crc_byte = match crc {
            None => None,
            Some(name) => {
                Some(
                    whole_byte(msg, find(name)?).ok_or_else(|| E2eError::CrcNotAByte {
                        message: msg.name.clone(),
                        signal: name.to_string(),
                    })?,
                )
            }
        };
        if counter.is_none() && crc_byte.is_none() {
            return Err(E2eError::Nothing {
                message: msg.name.clone(),
            });
        }
        Ok(Self {
            counter,
            crc_byte,
            max_counter_jump: max_counter_jump.max(1),
        })
    }

    /// Index (in the message) of the counter signal, and its modulus.
    pub fn counter(&self) -> Option<(usize, u32)> {
        self.counter.map(|c| (c.signal, c.modulus))
    }

    /// The data byte that carries the CRC.
    pub fn crc_byte(&self) -> Option<usize> {
        self.crc_byte
    }

    /// Write the CRC into `data`, once every other byte is final.
    pub fn seal(&self, id: CanId, data: &mut [u8]) {
        if let Some(b) = self.crc_byte.filter(|&b| b < data.len()) {
            data[b] = crc8(id, data, b);
        }
    }

    /// Check one frame of `msg` (already length-checked) against `last`,
    /// the counter of the previous good frame of the same page. On a good
    /// frame, or one whose counter jumped (the sequence resumes from it),
    /// `last` advances; a repeated or corrupt frame leaves it alone.
    pub fn check(
        &self,
        msg: &MessageDef,
        id: CanId,
        data: &[u8],
        last: &mut Option<u16>,
    ) -> Result<(), E2eFault> {
        if let Some(b) = self.crc_byte.filter(|&b| b < data.len()) {
            let expected = crc8(id, data, b);
            if data[b] != expected {
                return Err(E2eFault::BadCrc {
                    expected,
                    got: data[b],
                });
            }
        }
        let Some(c) = self.counter else {
            return Ok(());
        };
        // Cannot fail: the signal fits the message (checked at DBC load)
        // and the counter is at most 16 bits wide.
        let now = msg.signals[c.signal].extract_raw(data).unwrap_or(0) as u16;
        let Some(prev) = last.replace(now) else {
            return Ok(());
        };
        // `prev % modulus`: a caller's state from elsewhere cannot underflow.
        let delta = (u32::from(now) + c.modulus - u32::from(prev) % c.modulus) % c.modulus;
        if delta == 0 {
            return Err(E2eFault::Repeated { counter: now });
        }
        if delta > u32::from(self.max_counter_jump) {
            return Err(E2eFault::Skipped {
                from: prev,
                to: now,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbc::Dbc;

    const DBC: &str = r#"VERSION ""
NS_ :
BS_:
BU_: A B
BO_ 1313 IVT_Current: 7 A
 SG_ IVT_MuxID : 7|8@0+ (1,0) [0|255] "" B
 SG_ IVT_Current_Count : 15|4@0+ (1,0) [0|15] "" B
 SG_ IVT_Current_mA : 23|32@0- (1,0) [-2000000|2000000] "mA" B
 SG_ IVT_Current_CRC : 55|8@0+ (1,0) [0|255] "" B
BO_ 768 Cells: 8 A
 SG_ Mux M : 0|4@1+ (1,0) [0|3] "" B
 SG_ Alive : 4|4@1+ (1,0) [0|15] "" B
 SG_ Wide : 8|1@1+ (1,0) [0|1] "" B
 SG_ Paged m1 : 16|8@1+ (1,0) [0|255] "" B
 SG_ Odd : 33|8@1+ (1,0) [0|255] "" B
"#;

    fn dbc() -> Dbc {
        Dbc::parse(DBC.as_bytes(), "test.dbc").unwrap()
    }

    fn ivt(dbc: &Dbc) -> (&MessageDef, E2eProfile) {
        let m = dbc.message("IVT_Current").unwrap();
        let p = E2eProfile::new(m, Some("IVT_Current_Count"), Some("IVT_Current_CRC"), 3).unwrap();
        (m, p)
    }

    fn frame(m: &MessageDef, p: &E2eProfile, counter: u16, ma: f64) -> Vec<u8> {
        let (sig, _) = p.counter().unwrap();
        let cur = m.signal_index("IVT_Current_mA").unwrap();
        let mut d = m.encode(&[(sig, f64::from(counter)), (cur, ma)]).unwrap();
        p.seal(m.id, &mut d);
        d
    }

    #[test]
    fn a_sealed_sequence_passes_and_a_repeat_a_jump_or_a_flipped_bit_fails() {
        let dbc = dbc();
        let (m, p) = ivt(&dbc);
        let mut last = None;
        for c in [14, 15, 0, 1, 3] {
            assert_eq!(p.check(m, m.id, &frame(m, &p, c, 1.0), &mut last), Ok(()));
        }
        // A gateway replaying its cached frame: the counter stands still.
        let cached = frame(m, &p, 3, 1.0);
        assert_eq!(
            p.check(m, m.id, &cached, &mut last),
            Err(E2eFault::Repeated { counter: 3 })
        );
        // Four or more frames lost (3 → 8): the sequence resumes from 8.
        let f = frame(m, &p, 8, 1.0);
        assert_eq!(
            p.check(m, m.id, &f, &mut last),
            Err(E2eFault::Skipped { from: 3, to: 8 })
        );
        assert_eq!(p.check(m, m.id, &frame(m, &p, 9, 1.0), &mut last), Ok(()));
        // One flipped bit anywhere, the counter left alone.
        let mut bad = frame(m, &p, 10, 1.0);
        bad[3] ^= 0x04;
        assert!(matches!(
            p.check(m, m.id, &bad, &mut last),
            Err(E2eFault::BadCrc { .. })
        ));
        assert_eq!(last, Some(9));
        // The right bytes under another id fail too: the id is in the CRC.
        let other = CanId::standard(0x522).unwrap();
        assert!(p
            .check(m, other, &frame(m, &p, 10, 1.0), &mut last)
            .is_err());
    }

    #[test]
    fn the_crc_is_crc8_sae_j1850_over_the_id_and_the_other_bytes() {
        // Catalogue check value: CRC-8/SAE-J1850 of "123456789" is 0x4B.
        assert_eq!(CRC8.checksum(b"123456789"), 0x4B);
        let id = CanId::standard(0x0201).unwrap();
        let data = [b'3', b'4', 0xAA, b'5', b'6', b'7', b'8', b'9'];
        // Byte 2 is the CRC and is skipped: the digest sees 01 02 "3456789".
        let mut expect = CRC8.digest();
        expect.update(&[0x01, 0x02]);
        expect.update(b"3456789");
        assert_eq!(crc8(id, &data, 2), expect.finalize());
    }

    #[test]
    fn a_profile_that_cannot_work_is_refused_naming_the_signal() {
        let dbc = dbc();
        let m = dbc.message("Cells").unwrap();
        let e = |c: Option<&str>, r: Option<&str>| E2eProfile::new(m, c, r, 3).unwrap_err();
        assert!(matches!(e(Some("Nope"), None), E2eError::NoSignal { .. }));
        assert!(matches!(
            e(Some("Wide"), None),
            E2eError::CounterWidth { bits: 1, .. }
        ));
        assert!(matches!(
            e(Some("Paged"), None),
            E2eError::CounterMultiplexed { .. }
        ));
        let odd = e(None, Some("Odd")).to_string();
        assert!(odd.contains("`Odd`") && odd.contains("whole"), "{odd}");
        assert!(matches!(e(None, None), E2eError::Nothing { .. }));
        assert!(E2eProfile::new(m, Some("Alive"), None, 3).is_ok());
    }
}
