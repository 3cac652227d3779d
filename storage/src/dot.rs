//! Actors and dots: the identity of one write.
//!
//! An [`ActorId`] names who assigned a write's counter: a node *incarnation* (a node id
//! plus a random value drawn when its data directory was created), so a node whose disk
//! was wiped can never hand out a dot it already used. A [`Dot`] is `(actor, counter)`;
//! each actor numbers the writes it coordinates for one key 1, 2, 3, ... so a version
//! vector can summarise "all dots of this actor up to n".

use std::fmt;

/// The identity that assigns dots: one per node incarnation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(u64);

impl ActorId {
    /// Wraps a raw actor id.
    pub const fn new(raw: u64) -> ActorId {
        ActorId(raw)
    }

    /// Derives the actor id of a node incarnation: xxh3 of the node id and the
    /// incarnation value stored in the node's metadata.
    pub fn for_incarnation(node_id: &str, incarnation: u64) -> ActorId {
        let mut bytes = Vec::with_capacity(node_id.len() + 9);
        bytes.extend_from_slice(node_id.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&incarnation.to_le_bytes());
        ActorId(xxhash_rust::xxh3::xxh3_64(&bytes))
    }

    /// The raw value, as written on disk and on the wire.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One write's identity: the actor that assigned it and that actor's counter for the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Dot {
    /// Who assigned the counter.
    pub actor: ActorId,
    /// The actor's counter for this key, starting at 1.
    pub counter: u64,
}

impl Dot {
    /// A dot; counters start at 1.
    pub fn new(actor: ActorId, counter: u64) -> Dot {
        assert!(counter >= 1, "dot counters start at 1");
        Dot { actor, counter }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor, self.counter)
    }
}
