//! The request path: how a client request becomes replica reads and writes.
//!
//! [`client_api`] takes a request off the wire and validates it, then hands it to the
//! [`Coordinator`]:
//!
//! - [`read`]: `Coordinator::get` asks R replicas (this node's copy first), answers once
//!   R replied with the merge of their states, and repairs the replicas it found stale.
//! - [`write`]: a write is *ordered* by a replica of its key, which assigns the write's
//!   dot from the key's full local state (see `ringkv_storage::key_state`). On a replica,
//!   `Coordinator::write` applies it locally and sends the new state to the other N−1
//!   replicas, answering once W copies are stored (stand-ins with hints replace replicas
//!   that are down: sloppy quorum).
//! - [`forward`]: a node outside the key's preference list hands the write to the first
//!   replica that takes it.
//!
//! Each step calls replicas only through `crate::replica` (a [`Replica`] handle, local
//! or remote, and one [`QuorumCall`]); placement comes from `ringkv_ring`, and how many
//! must answer from the request. The two never mix.
//!
//! [`Replica`]: crate::replica::Replica
//! [`QuorumCall`]: crate::replica::quorum::QuorumCall

pub(crate) mod client_api;
mod forward;
mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::{NodeId, PreferenceList, Ring};
use ringkv_storage::{ContextError, Key, KeyState, LimitError, VersionVector};

use crate::identity::FutureCounter;
use crate::node_core::NodeCore;
use crate::replica::ReplicaError;
use crate::store::StoreError;

/// The longest time to live a write may ask for: ten years. Bounding it keeps the
/// expiry time (now plus the TTL, in wall milliseconds) far from overflow.
pub const TTL_MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// Key or value outside the limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The context is not one this cluster produced.
    #[error("malformed context: {0}")]
    Context(#[from] ContextError),
    /// The context names a counter of this node's actor it never issued.
    #[error(transparent)]
    FutureContext(#[from] FutureCounter),
    /// R or W out of range.
    #[error("{what}={got} is outside 1..={n}: the cluster keeps n={n} replicas")]
    BadQuorum {
        /// `r` or `w`.
        what: &'static str,
        /// Requested value.
        got: u32,
        /// Replica count.
        n: u8,
    },
    /// A consistency level this node does not know (a newer client, or a hand-made
    /// request); never taken as the default.
    #[error("{what}: unknown consistency level {level}")]
    UnknownLevel {
        /// "r" or "w".
        what: &'static str,
        /// The level's wire value.
        level: i32,
    },
    /// Requested time to live too long.
    #[error("ttl of {got_ms} ms is above the limit of {max_ms} ms")]
    TtlTooLong {
        /// Requested.
        got_ms: u64,
        /// Limit ([`TTL_MAX`]).
        max_ms: u64,
    },
    /// Requested timeout too long.
    #[error("timeout of {got_ms} ms is above the limit of {max_ms} ms")]
    TimeoutTooLong {
        /// Requested.
        got_ms: u64,
        /// Limit.
        max_ms: u64,
    },
    /// Not enough replicas answered in time.
    #[error("{op} quorum not met: {replied} of {needed} replicas answered within {timeout_ms} ms{}", FirstFailure(.first_failure))]
    QuorumNotMet {
        /// `read` or `write`.
        op: &'static str,
        /// Replicas that answered.
        replied: usize,
        /// Replicas required.
        needed: u8,
        /// The request's time budget.
        timeout_ms: u64,
        /// The first failure seen, if any, for the message.
        first_failure: Option<ReplicaError>,
    },
    /// No replica of the key could order a write.
    #[error("no replica of the key is reachable to order the write (tried {tried})")]
    NoReplicaReachable {
        /// Nodes tried, comma-separated.
        tried: String,
    },
    /// A forwarded write reached a node that is not a replica in its view.
    #[error("node {node} is not a replica of this key in its ring view")]
    NotReplica {
        /// This node.
        node: NodeId,
    },
    /// The ring is empty.
    #[error("the cluster has no members")]
    EmptyRing,
    /// The local store failed.
    #[error("local storage: {0}")]
    Store(#[from] StoreError),
    /// A node this write was forwarded to answered with an error.
    #[error("{}", .0.message())]
    Remote(tonic::Status),
}

/// A resolved write (put or delete), validated.
#[derive(Debug, Clone)]
pub(crate) struct WriteRequest {
    /// The key.
    pub key: Key,
    /// The value, or `None` to delete.
    pub value: Option<Bytes>,
    /// What the client had seen.
    pub context: VersionVector,
    /// The raw context bytes, to forward unchanged.
    pub context_bytes: Bytes,
    /// Copies that must be stored before answering.
    pub w: u8,
    /// The client's consistency request, to forward unchanged.
    pub consistency: Option<proto::Consistency>,
    /// Time budget.
    pub timeout: Duration,
    /// Expiry after the write, if any.
    pub ttl: Option<Duration>,
    /// Whether another node forwarded this write here.
    pub forwarded: bool,
}

/// The answer to a write.
#[derive(Debug, Clone)]
pub(crate) struct WriteOutcome {
    /// Context covering the write.
    pub context: Bytes,
    /// Copies stored when answering.
    pub acks: usize,
    /// How many of `acks` are stand-ins holding a hint (sloppy quorum).
    pub hinted: usize,
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub(crate) struct ReadOutcome {
    /// Merged state of the replicas that answered.
    pub state: KeyState,
    /// Replicas that answered before the reply.
    pub replied: usize,
}

/// `: <failure>` after a quorum error's message, when there was one.
struct FirstFailure<'a>(&'a Option<ReplicaError>);

impl std::fmt::Display for FirstFailure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(failure) => write!(f, ": {failure}"),
            None => Ok(()),
        }
    }
}

/// Runs client requests against the cluster.
#[derive(Clone)]
pub(crate) struct Coordinator {
    core: Arc<NodeCore>,
}

impl Coordinator {
    /// A coordinator over a node's shared state.
    pub fn new(core: Arc<NodeCore>) -> Coordinator {
        Coordinator { core }
    }

    /// The shared node state.
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }
}

/// The key's preference list in `ring`: its N replicas.
fn preference_list(ring: &Ring, key: &Key, replicas: u8) -> Result<PreferenceList, RequestError> {
    if ring.physical_node_count() == 0 {
        return Err(RequestError::EmptyRing);
    }
    Ok(ring.preference_list(key.position(), replicas))
}
