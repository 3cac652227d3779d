//! What a node does in the background, round by round, to keep its replicas right.
//!
//! Each loop runs on a [`rounds::Rounds`] ticker until the node's shutdown signal fires,
//! and does a bounded amount of work per round (one page of hints per target, a page of
//! keys, one exchange), so a large backlog drains steadily without starving clients:
//!
//! - [`hint_handoff`]: hints go to their targets once those are alive;
//! - [`transfer`]: a joining node pulls its ranges; every node hands keys it no longer
//!   replicates to their owners (and a leaving node leaves once it holds nothing);
//! - [`anti_entropy`]: hash-tree exchanges with one peer per round;
//! - [`tombstone_gc`]: expiry, and the purge of tombstones nothing can undo any more;
//! - [`ring_watch`]: hash trees rebuilt when the ring changes;
//! - [`probe`]: liveness probes, for a static member list.
//!
//! Every call to a replica goes through `crate::replica`, like the request path's.

pub(crate) mod anti_entropy;
pub(crate) mod hint_handoff;
pub(crate) mod probe;
pub(crate) mod ring_watch;
pub(crate) mod rounds;
pub(crate) mod tombstone_gc;
pub(crate) mod transfer;
