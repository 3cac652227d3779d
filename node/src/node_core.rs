//! The handles every part of a running node shares.
//!
//! One [`NodeCore`] per node, behind an `Arc`: configuration, identity, the local store,
//! membership, peer connections, metrics and the clock. It holds no logic of its own;
//! the coordinator, the replica service and the background loops borrow from it.

use std::sync::Arc;

use ringkv_ring::NodeId;

use crate::background::Background;
use crate::clock::NodeClock;
use crate::config::NodeConfig;
use crate::identity::DotIssuer;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::store::LocalStore;

/// Shared state of one node.
pub(crate) struct NodeCore {
    /// Validated configuration.
    pub config: NodeConfig,
    /// This node's actor and the leased counters it issues dots from.
    pub dots: DotIssuer,
    /// The local engine.
    pub store: LocalStore,
    /// Ring and liveness views.
    pub membership: Arc<dyn Membership>,
    /// Connections to other nodes.
    pub peers: Peers,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Wall clock and hybrid logical clock.
    pub clock: Arc<NodeClock>,
    /// The bounded pool of background work (late copies of writes, read repairs).
    pub background: Background,
    /// Set to `true` once a leaving node has handed all its data over.
    pub left: tokio::sync::watch::Sender<bool>,
    /// Whether the removal of this node was logged (once).
    pub removed_logged: std::sync::atomic::AtomicBool,
}

impl NodeCore {
    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.config.node_id
    }

    /// Whether an operator removed this node from the cluster (it learns so by gossip).
    /// A removed node pushes nothing to its former peers; its id cannot come back.
    pub fn removed_from_cluster(&self) -> bool {
        let removed = self.membership.is_removed(self.me());
        if removed && !self.removed_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(
                node = %self.me(),
                "this node was removed from the cluster: it no longer pushes data to its former \
                 peers; stop it (to rejoin, start it with an empty data directory and a new id)"
            );
        }
        removed
    }
}
