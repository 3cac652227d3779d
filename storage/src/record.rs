//! The versioned byte format of a [`KeyState`], on disk and between replicas.
//!
//! Layout: one format byte, a CRC-32 (big-endian) of the body, then the body as a protobuf
//! message (prost). Protobuf lets later formats add fields that older readers skip; the
//! format byte is for changes protobuf cannot express. The checksum is verified on every
//! read, so a flipped bit on disk becomes [`RecordError::Checksum`], not a wrong value.
//! Replicas exchange these same bytes, so a state read from disk is never re-encoded on
//! its way to another node.

use bytes::Bytes;

use crate::dot::{ActorId, Dot};
use crate::hlc::Hlc;
use crate::key_state::{KeyState, Sibling, StateError};
use crate::version_vector::VersionVector;

/// The record format this version writes.
pub const RECORD_FORMAT_V1: u8 = 1;
const HEADER_BYTES: usize = 5;

/// Why stored or received bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Shorter than the header.
    #[error("record is truncated: {got} bytes")]
    Truncated {
        /// Length found.
        got: usize,
    },
    /// Written by a format this version cannot read.
    #[error("record format {got} is unknown (this version reads format {RECORD_FORMAT_V1})")]
    UnknownFormat {
        /// The format byte found.
        got: u8,
    },
    /// Body does not match its checksum.
    #[error("record checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the body as read.
        computed: u32,
    },
    /// Body is not a valid protobuf message.
    #[error("record body does not decode: {0}")]
    Decode(String),
    /// Decoded fine but breaks a state invariant.
    #[error("record holds an invalid state: {0}")]
    Invalid(#[from] StateError),
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyStateBody {
    #[prost(message, repeated, tag = "1")]
    clock: Vec<ClockEntry>,
    #[prost(message, repeated, tag = "2")]
    siblings: Vec<SiblingBody>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClockEntry {
    #[prost(fixed64, tag = "1")]
    actor: u64,
    #[prost(uint64, tag = "2")]
    counter: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SiblingBody {
    #[prost(fixed64, tag = "1")]
    actor: u64,
    #[prost(uint64, tag = "2")]
    counter: u64,
    #[prost(fixed64, tag = "3")]
    hlc: u64,
    #[prost(fixed64, optional, tag = "4")]
    expires_at_ms: Option<u64>,
    #[prost(bytes = "bytes", optional, tag = "5")]
    value: Option<Bytes>,
}

/// Encodes a state as a record.
pub fn encode(state: &KeyState) -> Vec<u8> {
    use prost::Message as _;
    let body = KeyStateBody {
        clock: state
            .context()
            .iter()
            .map(|(a, c)| ClockEntry {
                actor: a.get(),
                counter: c,
            })
            .collect(),
        siblings: state
            .siblings()
            .iter()
            .map(|s| SiblingBody {
                actor: s.dot().actor.get(),
                counter: s.dot().counter,
                hlc: s.hlc().raw(),
                expires_at_ms: s.expires_at_ms(),
                value: s.value().cloned(),
            })
            .collect(),
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + body.encoded_len());
    out.push(RECORD_FORMAT_V1);
    out.extend_from_slice(&[0; 4]);
    body.encode(&mut out)
        .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
    let crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[1..HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a record, verifying its format, checksum and state invariants.
pub fn decode(bytes: &[u8]) -> Result<KeyState, RecordError> {
    use prost::Message as _;
    let Some((&format, rest)) = bytes.split_first() else {
        return Err(RecordError::Truncated { got: 0 });
    };
    if format != RECORD_FORMAT_V1 {
        return Err(RecordError::UnknownFormat { got: format });
    }
    let Some((crc_bytes, body)) = rest.split_first_chunk::<4>() else {
        return Err(RecordError::Truncated { got: bytes.len() });
    };
    let stored = u32::from_be_bytes(*crc_bytes);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let body = KeyStateBody::decode(body).map_err(|e| RecordError::Decode(e.to_string()))?;
    let clock = VersionVector::from_canonical_pairs(body.clock.iter().map(|e| (ActorId::new(e.actor), e.counter)))
        .map_err(|e| RecordError::Decode(e.to_string()))?;
    let mut siblings = Vec::with_capacity(body.siblings.len());
    for s in body.siblings {
        if s.counter == 0 {
            return Err(RecordError::Decode("sibling with counter 0".to_owned()));
        }
        let dot = Dot::new(ActorId::new(s.actor), s.counter);
        siblings.push(Sibling::new(dot, Hlc::from_raw(s.hlc), s.expires_at_ms, s.value));
    }
    Ok(KeyState::from_parts(clock, siblings)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_state::Write;

    fn sample() -> KeyState {
        let mut state = KeyState::new();
        let write = |v: Option<&'static str>, ttl| Write {
            value: v.map(Bytes::from),
            hlc: Hlc::new(7, 1),
            expires_at_ms: ttl,
        };
        state.put(ActorId::new(1), &VersionVector::new(), write(Some("a"), None));
        state.put(ActorId::new(2), &VersionVector::new(), write(Some(""), Some(99)));
        state.put(ActorId::new(3), &VersionVector::new(), write(None, None));
        state
    }

    #[test]
    fn round_trip() {
        for state in [KeyState::new(), sample()] {
            assert_eq!(decode(&encode(&state)), Ok(state));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() * 8 {
            let mut corrupt = bytes.clone();
            corrupt[i / 8] ^= 1 << (i % 8);
            assert!(decode(&corrupt).is_err(), "bit {i} flipped went unnoticed");
        }
    }

    #[test]
    fn truncation_and_unknown_format_are_errors() {
        let bytes = encode(&sample());
        assert_eq!(decode(&[]), Err(RecordError::Truncated { got: 0 }));
        assert_eq!(decode(&bytes[..3]), Err(RecordError::Truncated { got: 3 }));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(RecordError::Checksum { .. })
        ));
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(decode(&other), Err(RecordError::UnknownFormat { got: 2 }));
    }

    #[test]
    fn valid_checksum_over_garbage_is_a_decode_error() {
        let body = [0xff_u8, 0xff, 0xff];
        let mut bytes = vec![RECORD_FORMAT_V1];
        bytes.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        assert!(matches!(decode(&bytes), Err(RecordError::Decode(_))));
    }
}
