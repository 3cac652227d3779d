//! Version vectors: the causal context a client carries between a read and a write.
//!
//! A vector maps each actor to the highest counter seen; because every actor numbers its
//! writes to a key without gaps (see `key_state`), "seen counter n" means "seen dots
//! 1..=n of that actor". The encoded form is what clients hold as an opaque context:
//! a format byte, a CRC-32 of the body, and a body of (actor, counter) pairs, so a
//! truncated or mangled context is refused instead of silently read as a smaller one.

use std::collections::BTreeMap;

use crate::dot::{ActorId, Dot};

/// Largest number of actors a context may name. Each node incarnation that ever
/// coordinated a write to the key adds one; a cluster is at most `NODES_MAX` nodes.
pub const CONTEXT_ACTORS_MAX: usize = 4096;
const CONTEXT_FORMAT_V1: u8 = 1;
const CONTEXT_ENTRY_BYTES: usize = 16;
const CONTEXT_HEADER_BYTES: usize = 5;

/// Why a context could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Shorter than the fixed header.
    #[error("context is truncated: {got} bytes, a context has at least {CONTEXT_HEADER_BYTES}")]
    Truncated {
        /// Length received.
        got: usize,
    },
    /// Unknown leading format byte.
    #[error("context format {got} is unknown (this version reads format {CONTEXT_FORMAT_V1})")]
    UnknownFormat {
        /// The format byte received.
        got: u8,
    },
    /// The body's length is not a whole number of entries.
    #[error("context body of {got} bytes is not a multiple of {CONTEXT_ENTRY_BYTES}")]
    BadLength {
        /// Body length received.
        got: usize,
    },
    /// Checksum mismatch: the context was altered or cut.
    #[error("context checksum mismatch: it was altered or truncated")]
    Checksum,
    /// More actors than any real cluster produces.
    #[error("context names {got} actors, the limit is {CONTEXT_ACTORS_MAX}")]
    TooManyActors {
        /// Number of actors.
        got: usize,
    },
    /// Entries must be strictly ordered by actor with non-zero counters.
    #[error("context entries are not strictly ordered by actor or hold a zero counter")]
    NotCanonical,
}

/// A version vector: for each actor, the highest counter seen.
///
/// ```
/// use ringkv_storage::{ActorId, Dot, VersionVector};
/// let a = ActorId::new(1);
/// let mut vv = VersionVector::new();
/// vv.add(Dot::new(a, 2));
/// assert!(vv.contains(Dot::new(a, 1)));
/// let decoded = VersionVector::decode(&vv.encode()).expect("round trip");
/// assert_eq!(decoded, vv);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub struct VersionVector {
    // Never holds a zero counter: absence means zero, so equal vectors compare equal.
    counters: BTreeMap<ActorId, u64>,
}

impl VersionVector {
    /// The empty vector: has seen nothing.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// The highest counter seen for `actor` (0 if none).
    pub fn get(&self, actor: ActorId) -> u64 {
        self.counters.get(&actor).copied().unwrap_or(0)
    }

    /// Whether the dot is covered: its counter is at most the one recorded for its actor.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.actor)
    }

    /// Records a dot (and, by the gap-free numbering, every earlier dot of its actor).
    pub fn add(&mut self, dot: Dot) {
        let entry = self.counters.entry(dot.actor).or_insert(0);
        *entry = (*entry).max(dot.counter);
    }

    /// Pointwise maximum with another vector.
    pub fn join(&mut self, other: &VersionVector) {
        for (&actor, &counter) in &other.counters {
            let entry = self.counters.entry(actor).or_insert(0);
            *entry = (*entry).max(counter);
        }
    }

    /// Whether every dot `other` covers is covered by `self`.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .counters
            .iter()
            .all(|(&actor, &counter)| self.get(actor) >= counter)
    }

    /// Whether the vector has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// Number of actors named.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// The (actor, counter) pairs in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.counters.iter().map(|(&actor, &counter)| (actor, counter))
    }

    /// Builds a vector from pairs, refusing unordered, duplicate or zero entries.
    pub fn from_canonical_pairs(
        pairs: impl IntoIterator<Item = (ActorId, u64)>,
    ) -> Result<VersionVector, ContextError> {
        let mut counters = BTreeMap::new();
        let mut previous: Option<ActorId> = None;
        for (actor, counter) in pairs {
            if counter == 0 || previous.is_some_and(|p| p >= actor) {
                return Err(ContextError::NotCanonical);
            }
            if counters.len() == CONTEXT_ACTORS_MAX {
                return Err(ContextError::TooManyActors {
                    got: counters.len() + 1,
                });
            }
            counters.insert(actor, counter);
            previous = Some(actor);
        }
        Ok(VersionVector { counters })
    }

    /// Encodes the vector as an opaque client context.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONTEXT_HEADER_BYTES + self.len() * CONTEXT_ENTRY_BYTES);
        out.push(CONTEXT_FORMAT_V1);
        out.extend_from_slice(&[0; 4]);
        for (actor, counter) in self.iter() {
            out.extend_from_slice(&actor.get().to_be_bytes());
            out.extend_from_slice(&counter.to_be_bytes());
        }
        let crc = crc32fast::hash(&out[CONTEXT_HEADER_BYTES..]);
        out[1..CONTEXT_HEADER_BYTES].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes an opaque client context. An empty byte string is the empty context
    /// ("seen nothing"); anything else must be a well-formed encoding.
    pub fn decode(bytes: &[u8]) -> Result<VersionVector, ContextError> {
        if bytes.is_empty() {
            return Ok(VersionVector::new());
        }
        let Some((&format, rest)) = bytes.split_first() else {
            return Err(ContextError::Truncated { got: bytes.len() });
        };
        if format != CONTEXT_FORMAT_V1 {
            return Err(ContextError::UnknownFormat { got: format });
        }
        let Some((crc_bytes, body)) = rest.split_first_chunk::<4>() else {
            return Err(ContextError::Truncated { got: bytes.len() });
        };
        if body.len() % CONTEXT_ENTRY_BYTES != 0 {
            return Err(ContextError::BadLength { got: body.len() });
        }
        if crc32fast::hash(body) != u32::from_be_bytes(*crc_bytes) {
            return Err(ContextError::Checksum);
        }
        let entry_count = body.len() / CONTEXT_ENTRY_BYTES;
        if entry_count > CONTEXT_ACTORS_MAX {
            return Err(ContextError::TooManyActors { got: entry_count });
        }
        let pairs = body.chunks_exact(CONTEXT_ENTRY_BYTES).map(|chunk| {
            let (actor, counter) = chunk.split_at(8);
            let actor = u64::from_be_bytes(actor.try_into().unwrap_or([0; 8]));
            let counter = u64::from_be_bytes(counter.try_into().unwrap_or([0; 8]));
            (ActorId::new(actor), counter)
        });
        VersionVector::from_canonical_pairs(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(u64, u64)]) -> VersionVector {
        VersionVector::from_canonical_pairs(pairs.iter().map(|&(a, c)| (ActorId::new(a), c))).expect("canonical")
    }

    fn check_decode(bytes: &[u8], expected: Result<VersionVector, ContextError>) {
        assert_eq!(VersionVector::decode(bytes), expected, "decoding {bytes:?}");
    }

    #[test]
    fn round_trip() {
        for v in [vv(&[]), vv(&[(1, 1)]), vv(&[(1, 5), (7, 2), (u64::MAX, u64::MAX)])] {
            check_decode(&v.encode(), Ok(v.clone()));
        }
    }

    #[test]
    fn malformed_contexts_are_errors() {
        let good = vv(&[(1, 5), (2, 3)]).encode();
        check_decode(&good[..3], Err(ContextError::Truncated { got: 3 }));
        check_decode(&good[..good.len() - 1], Err(ContextError::BadLength { got: 31 }));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        check_decode(&flipped, Err(ContextError::Checksum));
        let mut format = good.clone();
        format[0] = 9;
        check_decode(&format, Err(ContextError::UnknownFormat { got: 9 }));
        check_decode(b"not a context at all", Err(ContextError::UnknownFormat { got: b'n' }));
    }

    #[test]
    fn non_canonical_contexts_are_refused() {
        let mut body = Vec::new();
        for (a, c) in [(2u64, 1u64), (1, 1)] {
            body.extend_from_slice(&a.to_be_bytes());
            body.extend_from_slice(&c.to_be_bytes());
        }
        let mut bytes = vec![CONTEXT_FORMAT_V1];
        bytes.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        check_decode(&bytes, Err(ContextError::NotCanonical));
    }

    #[test]
    fn join_and_dominates() {
        let mut a = vv(&[(1, 3), (2, 1)]);
        let b = vv(&[(2, 4), (3, 1)]);
        assert!(!a.dominates(&b));
        a.join(&b);
        assert_eq!(a, vv(&[(1, 3), (2, 4), (3, 1)]));
        assert!(a.dominates(&b));
        assert!(a.contains(Dot::new(ActorId::new(2), 4)));
        assert!(!a.contains(Dot::new(ActorId::new(2), 5)));
    }
}
