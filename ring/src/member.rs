//! [`Member`]: one physical node as the ring sees it, and the limits on a
//! membership.
//!
//! A member is plain data (id, weight, zone) handed in by gossip or config;
//! nothing here knows about addresses or liveness. Liveness decides who answers
//! a request, never who is in the ring: as in Dynamo, ring membership changes
//! only on an explicit join, leave or remove.

use crate::NodeId;

/// Virtual nodes (tokens) a member gets unless configured otherwise.
///
/// 256 tokens per node keep the busiest of 10 nodes within about 15% of the
/// mean replica load while a ring of 20 nodes still builds in well under a
/// millisecond.
pub const VNODES_DEFAULT: u16 = 256;

/// The most virtual nodes one member may have.
pub const VNODES_PER_NODE_MAX: u16 = 4096;

/// The most members one ring may have.
pub const NODES_MAX: usize = 1024;

/// The largest replica count `n` a preference list may be asked for.
pub const REPLICAS_MAX: u8 = 16;

/// The longest zone name, in bytes.
pub const ZONE_BYTES_MAX: usize = 64;

const _: () = assert!(REPLICAS_MAX >= 1);
const _: () = assert!(REPLICAS_MAX as usize <= NODES_MAX);
const _: () = assert!(VNODES_DEFAULT >= 1);
const _: () = assert!(VNODES_DEFAULT <= VNODES_PER_NODE_MAX);
// Tokens store their node as a `u16` index, and zones are numbered the same way.
const _: () = assert!(NODES_MAX <= u16::MAX as usize + 1);
// The whole token table must stay indexable and modest in memory (16 bytes a token).
const _: () = assert!(NODES_MAX * (VNODES_PER_NODE_MAX as usize) <= u32::MAX as usize);

/// One physical node of the ring.
///
/// `vnodes` is the node's weight: a node with twice the vnodes owns about twice
/// the key space. It must be within 1..=[`VNODES_PER_NODE_MAX`]. `zone` names a
/// failure domain (rack, availability zone); preference lists spread over
/// distinct zones first. A member without a zone counts as a zone of its own.
/// [`Ring::new`](crate::Ring::new) validates all of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node's id; it also seeds the node's token positions.
    pub id: NodeId,
    /// The number of tokens, i.e. the node's weight.
    pub vnodes: u16,
    /// The failure domain, if the node declares one.
    pub zone: Option<String>,
}

impl Member {
    /// A member with `vnodes` tokens and no zone.
    pub fn new(id: NodeId, vnodes: u16) -> Member {
        Member { id, vnodes, zone: None }
    }

    /// The same member placed in `zone`.
    pub fn with_zone(self, zone: impl Into<String>) -> Member {
        Member {
            zone: Some(zone.into()),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(member: Member, expected: (&str, u16, Option<&str>)) {
        assert_eq!((member.id.as_str(), member.vnodes, member.zone.as_deref()), expected);
    }

    #[test]
    fn builders() {
        let id = NodeId::new("n1").expect("valid id");
        check(Member::new(id.clone(), 7), ("n1", 7, None));
        check(
            Member::new(id, VNODES_DEFAULT).with_zone("az-1"),
            ("n1", 256, Some("az-1")),
        );
    }
}
