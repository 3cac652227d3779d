//! Who is in the cluster, where they are, and whether they are alive.
//!
//! The coordinator sees membership only through the [`Membership`] trait: a ring view
//! (placement) plus a liveness view (who to try first, who needs a stand-in). Ring
//! membership changes only on explicit configuration; liveness changes with probes, the
//! way Dynamo separates the two. Two implementations sit behind the trait:
//! [`static_list::StaticMembership`], a fixed member list given as seeds, and
//! [`gossip::GossipMembership`], the ring folded from chitchat gossip. [`join`] is the
//! seed handshake a gossiping node does before it starts.

pub(crate) mod gossip;
pub(crate) mod join;

pub use join::JoinError;
pub(crate) mod static_list;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use ringkv_ring::{NodeId, Ring};

/// Where this node stands in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalState {
    /// In the ring, still pulling its ranges: takes writes, refuses reads.
    Joining,
    /// A full member.
    Up,
    /// Handing its data to the new owners before it stops.
    Leaving,
}

impl LocalState {
    /// Lowercase name, as shown by `ringkv status`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Joining => "joining",
            LocalState::Up => "up",
            LocalState::Leaving => "leaving",
        }
    }
}

/// One member as this node sees it, for `ringkv status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberSummary {
    /// Node id.
    pub id: NodeId,
    /// gRPC address.
    pub address: Option<SocketAddr>,
    /// joining | up | leaving | removed
    pub state: String,
    /// Failure detector's verdict.
    pub alive: bool,
    /// Incarnation (gossip generation; 0 with static membership).
    pub generation: u64,
    /// Whether the member is in the ring.
    pub in_ring: bool,
}

/// Why a membership change was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MembershipError {
    /// The operation needs gossip membership.
    #[error("this node runs with a static member list (--seeds ID@HOST:PORT): change the list instead")]
    Static,
    /// The node is not a member.
    #[error("{0} is not a member of the cluster")]
    UnknownNode(NodeId),
    /// Removing a live node would lose its writes in flight.
    #[error("{0} is alive: stop it first, or ask it to leave")]
    StillAlive(NodeId),
    /// A node cannot remove itself.
    #[error("a node cannot remove itself: ask it to leave")]
    RemoveSelf,
}

/// Placement and liveness as this node sees them.
pub(crate) trait Membership: Send + Sync + 'static {
    /// The current ring.
    fn ring(&self) -> Arc<Ring>;
    /// Notified with each new ring.
    fn ring_changes(&self) -> watch::Receiver<Arc<Ring>>;
    /// gRPC address of a member.
    fn address(&self, node: &NodeId) -> Option<SocketAddr>;
    /// Whether the failure detector currently believes `node` is up.
    fn is_alive(&self, node: &NodeId) -> bool;
    /// Records the outcome of talking to `node` (a probe or any RPC).
    fn report(&self, node: &NodeId, reachable: bool);
    /// Every known member, in id order.
    fn members(&self) -> Vec<MemberSummary>;
    /// This node's own state.
    fn local_state(&self) -> LocalState;
    /// Announces a new state for this node.
    fn set_local_state(&self, state: LocalState);
    /// Takes a dead member out of the ring.
    fn remove(&self, node: &NodeId) -> Result<(), MembershipError>;
    /// Where this node gossips, if it does.
    fn gossip_address(&self) -> Option<SocketAddr>;
    /// Whether an operator removed `node` from the cluster.
    fn is_removed(&self, node: &NodeId) -> bool;
    /// Every node that may hold a copy of some key: the ring's members and members that
    /// are leaving (or stopped while leaving). Tombstone GC needs every one to answer.
    fn possible_holders(&self) -> Vec<NodeId>;
    /// Records that this node, leaving, has handed everything over and holds nothing.
    fn handed_everything_over(&self);
}
