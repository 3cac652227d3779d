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
}

impl NodeCore {
    /// This node's id.
    pub fn me(&self) -> &NodeId {
        &self.config.node_id
    }
}
