//! One way to talk to a replica: this node's store or a peer, through the same handle.
//!
//! Everything that asks a replica for something (a client read or write, read repair,
//! hint hand-off, range transfer, ownership hand-off, anti-entropy, tombstone GC) goes
//! through a [`Replica`]. It is either this node's own store, reached in place with no
//! RPC ([`local`]), or a peer, reached through its batcher or its replica API client on
//! the one connection to it (`crate::peers`; [`remote`]). The operations are typed (`read`, `merge` with
//! an optional hint target, `merge_batch`, `scan`, the three levels of hash-tree digests,
//! the GC check and purge, the liveness probe) and fail with [`ReplicaError`]. The handle
//! alone reports call outcomes to the failure detector and counts failed calls, so a
//! caller only decides what an answer means.
//!
//! What this module does not decide: which nodes hold a key (the ring does) and how many
//! must answer ([`quorum::QuorumCall`] calls a set of replicas and stops after enough
//! answers, for whoever asks). The replica API server ([`service`]) is the remote end of
//! the same operations: it decodes a peer's request and runs it on the local handle, so
//! each operation's local meaning is written once, in [`local`].
//!
//! Start reading at [`Replica`], then [`quorum::QuorumCall`].

pub(crate) mod fence;
mod local;
pub(crate) mod quorum;
mod remote;
pub(crate) mod service;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_ring::{NodeId, Position};
use ringkv_storage::{Key, KeyState, RecordError};
use tokio::time::Instant;

use crate::node_core::NodeCore;
use crate::store::{LeafPage, StoreError};

/// Why a call to a replica failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicaError {
    /// The failure detector believes the peer is down; nothing was sent.
    #[error("{node} is believed down")]
    Down {
        /// The peer.
        node: NodeId,
    },
    /// The peer is not a member this node knows an address for.
    #[error("{node} has no known address")]
    NoAddress {
        /// The peer.
        node: NodeId,
    },
    /// The replica is still pulling its ranges and does not serve reads yet.
    #[error("{node} is joining: its ranges are still being transferred")]
    Joining {
        /// The replica.
        node: NodeId,
    },
    /// The replica is leaving the cluster and takes no new copies (a coordinator whose
    /// ring still holds it asks the next node instead).
    #[error("{node} is leaving the cluster and takes no new copies")]
    Leaving {
        /// The replica.
        node: NodeId,
    },
    /// No answer before the deadline.
    #[error("{node} did not answer in time")]
    TimedOut {
        /// The peer.
        node: NodeId,
    },
    /// The call failed: the connection did, or the peer answered with an error.
    #[error("{node} answered {}: {}", .status.code(), .status.message())]
    Failed {
        /// The peer.
        node: NodeId,
        /// What the call returned.
        status: tonic::Status,
    },
    /// The peer sent bytes that are not a valid state.
    #[error("{node} sent an invalid state: {source}")]
    BadState {
        /// The peer.
        node: NodeId,
        /// What is wrong with it.
        source: RecordError,
    },
    /// The peer sent an answer that does not fit the question.
    #[error("{node} sent an invalid answer: {reason}")]
    BadAnswer {
        /// The peer.
        node: NodeId,
        /// What is wrong with it.
        reason: String,
    },
    /// No segment of the replica's hash trees ends at this position: its ring view differs
    /// from the caller's.
    #[error("no segment ends at {end:016x}: ring views differ")]
    NoSuchSegment {
        /// The position asked for.
        end: Position,
    },
    /// This node's hint store refused a hint (full, or failing).
    #[error("cannot store a hint: {0}")]
    HintRefused(StoreError),
    /// This node's store failed.
    #[error("local store: {0}")]
    Store(#[from] StoreError),
}

/// What a replica answered to a GC check of one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GcCheck {
    /// Its state of the key, if it stores one.
    pub state: Option<KeyState>,
    /// Whether it holds a hint about the key for any member.
    pub holds_hint: bool,
    /// Its wall clock when it answered (Unix milliseconds).
    pub wall_ms: u64,
}

/// Protobuf bytes sent and received through a handle made by [`Replica::counting_traffic`].
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    bytes: AtomicU64,
}

impl Traffic {
    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One replica as this node talks to it: its own store, or a peer.
///
/// Cheap to clone and `'static`, so a call can outlive the request that started it (the
/// copies of a write that go on after the client has its answer).
#[derive(Clone)]
pub(crate) struct Replica {
    core: Arc<NodeCore>,
    node: NodeId,
    local: bool,
    traffic: Option<Arc<Traffic>>,
}

impl Replica {
    /// The replica on `node`; this node's own store when `node` is this node.
    pub fn new(core: &Arc<NodeCore>, node: NodeId) -> Replica {
        let local = node == *core.me();
        Replica {
            core: Arc::clone(core),
            node,
            local,
            traffic: None,
        }
    }

    /// This node's own store.
    pub fn local(core: &Arc<NodeCore>) -> Replica {
        Replica::new(core, core.me().clone())
    }

    /// The same replica, counting the protobuf bytes of every remote call (anti-entropy
    /// reports its traffic this way).
    pub fn counting_traffic(mut self) -> (Replica, Arc<Traffic>) {
        let traffic = Arc::new(Traffic::default());
        self.traffic = Some(Arc::clone(&traffic));
        (self, traffic)
    }

    /// Its state of `key` (empty when it stores none).
    ///
    /// A peer believed down fails at once with [`ReplicaError::Down`], so a quorum moves
    /// on to the next replica without waiting out a timeout.
    pub async fn read(&self, key: &Key, deadline: Instant) -> Result<KeyState, ReplicaError> {
        if self.local {
            return local::read(&self.core, key).await;
        }
        remote::read(self, key, deadline).await
    }

    /// Merges `state` (whose record encoding is `encoded`) into its store, or into its
    /// hint store when `hint_for` names another node: the replica then holds the copy for
    /// that node until hand-off delivers it. Fails at once for a peer believed down.
    pub async fn merge(
        &self,
        key: &Key,
        state: &KeyState,
        encoded: &Bytes,
        hint_for: Option<&NodeId>,
        deadline: Instant,
    ) -> Result<(), ReplicaError> {
        if self.local {
            return local::merge(&self.core, key.clone(), state.clone(), hint_for.cloned()).await;
        }
        remote::merge(self, key, encoded, hint_for, deadline).await
    }

    /// Merges many states in one call (hint hand-off). Fails at once for a peer believed
    /// down.
    pub async fn merge_batch(&self, entries: Vec<(Key, KeyState)>, deadline: Instant) -> Result<(), ReplicaError> {
        if self.local {
            return local::merge_batch(&self.core, entries).await;
        }
        remote::merge_batch(self, &entries, deadline).await
    }

    /// A page of the keys it stores in the position interval `[first, last]`, after `after`.
    /// Asked of a peer whatever the failure detector says (a joining node's view of
    /// liveness may be behind).
    pub async fn scan(
        &self,
        first: Position,
        last: Position,
        after: Option<&Key>,
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<(Key, KeyState)>, ReplicaError> {
        if self.local {
            return local::scan(&self.core, first, last, after.cloned(), limit).await;
        }
        remote::scan(self, first, last, after, limit, deadline).await
    }

    /// The roots of its hash trees of the segments ending at `ends`, in order.
    pub async fn segment_roots(&self, ends: Vec<Position>, deadline: Instant) -> Result<Vec<u64>, ReplicaError> {
        if self.local {
            return local::segment_roots(&self.core, &ends);
        }
        remote::segment_roots(self, ends, deadline).await
    }

    /// The leaf hashes of its tree of the segment ending at `end`.
    pub async fn segment_leaves(&self, end: Position, deadline: Instant) -> Result<Vec<u64>, ReplicaError> {
        if self.local {
            return local::segment_leaves(&self.core, end);
        }
        remote::segment_leaves(self, end, deadline).await
    }

    /// A page of the keys it stores in one leaf of the segment ending at `end`, with their
    /// digests, from after `after` in the leaf's order (`crate::store::leaf_order`).
    pub async fn leaf_digests(
        &self,
        end: Position,
        leaf: usize,
        after: Option<Key>,
        deadline: Instant,
    ) -> Result<LeafPage, ReplicaError> {
        if self.local {
            return local::leaf_digests(&self.core, end, leaf, after).await;
        }
        remote::leaf_digests(self, end, leaf, after, deadline).await
    }

    /// Its state of `key` and whether it holds a hint about it (tombstone GC).
    pub async fn gc_check(&self, key: &Key, deadline: Instant) -> Result<GcCheck, ReplicaError> {
        if self.local {
            return local::gc_check(&self.core, key.clone()).await;
        }
        remote::gc_check(self, key, deadline).await
    }

    /// Deletes its record of `key` if the record still equals `expected`; whether it did.
    pub async fn purge(
        &self,
        key: &Key,
        expected: &KeyState,
        encoded: &Bytes,
        deadline: Instant,
    ) -> Result<bool, ReplicaError> {
        if self.local {
            return local::purge(&self.core, key.clone(), expected.clone()).await;
        }
        remote::purge(self, key, encoded, deadline).await
    }

    /// Whether the peer answers a ping as itself, in this cluster, within `timeout`. The
    /// verdict goes to the failure detector; this is the static membership's probe.
    pub async fn probe(&self, timeout: Duration) -> bool {
        if self.local {
            return true;
        }
        remote::probe(self, timeout).await
    }

    fn count_traffic(&self, bytes: usize) {
        if let Some(traffic) = &self.traffic {
            traffic.add(bytes);
        }
    }
}
