//! Who is in the cluster, where they are, and whether they are alive.
//!
//! The coordinator sees membership only through the [`Membership`] trait: a ring view
//! (placement) plus a liveness view (who to try first, who needs a stand-in). Ring
//! membership changes only on explicit configuration; liveness changes with probes, the
//! way Dynamo separates the two. [`StaticMembership`] is the implementation for a fixed
//! member list given as seeds; gossip plugs in behind the same trait.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use ringkv_ring::{Member, NodeId, Ring, RingError};

use crate::config::Seed;

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
pub struct MemberSummary {
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
pub enum MembershipError {
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
pub trait Membership: Send + Sync + 'static {
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
}

#[derive(Debug)]
struct Liveness {
    alive: bool,
    consecutive_failures: u32,
}

/// Consecutive failed contacts after which a member is considered down.
pub const FAILURES_TO_SUSPECT: u32 = 2;

/// A fixed member list; liveness from probes and RPC outcomes.
#[derive(Debug)]
pub struct StaticMembership {
    me: NodeId,
    ring: Arc<Ring>,
    ring_changes: watch::Receiver<Arc<Ring>>,
    addresses: BTreeMap<NodeId, SocketAddr>,
    liveness: RwLock<BTreeMap<NodeId, Liveness>>,
}

impl StaticMembership {
    /// Builds the ring from the seeds plus this node (if the seeds omit it).
    pub fn new(
        me: &NodeId,
        my_address: SocketAddr,
        vnodes: u16,
        zone: Option<String>,
        seeds: &[Seed],
    ) -> Result<StaticMembership, RingError> {
        let mut addresses: BTreeMap<NodeId, SocketAddr> = seeds.iter().map(|s| (s.id.clone(), s.address)).collect();
        addresses.insert(me.clone(), my_address);
        // Static seeds carry no vnode count or zone of their own: every member is assumed
        // configured like this node (gossip carries each member's own values).
        let members = addresses.keys().map(|id| Member {
            id: id.clone(),
            vnodes,
            zone: zone.clone(),
        });
        let ring = Arc::new(Ring::new(members)?);
        let liveness = addresses
            .keys()
            .map(|id| {
                (
                    id.clone(),
                    Liveness {
                        alive: true,
                        consecutive_failures: 0,
                    },
                )
            })
            .collect();
        // The ring never changes: the sender is dropped and receivers see only this value.
        let (_, ring_changes) = watch::channel(Arc::clone(&ring));
        Ok(StaticMembership {
            me: me.clone(),
            ring,
            ring_changes,
            addresses,
            liveness: RwLock::new(liveness),
        })
    }

    /// The other members, to probe.
    pub fn peers(&self) -> Vec<NodeId> {
        self.addresses.keys().filter(|id| **id != self.me).cloned().collect()
    }
}

impl Membership for StaticMembership {
    fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.ring)
    }

    fn ring_changes(&self) -> watch::Receiver<Arc<Ring>> {
        self.ring_changes.clone()
    }

    fn members(&self) -> Vec<MemberSummary> {
        self.addresses
            .iter()
            .map(|(id, address)| MemberSummary {
                id: id.clone(),
                address: Some(*address),
                state: "up".to_owned(),
                alive: self.is_alive(id),
                generation: 0,
                in_ring: true,
            })
            .collect()
    }

    fn local_state(&self) -> LocalState {
        LocalState::Up
    }

    fn set_local_state(&self, _state: LocalState) {}

    fn remove(&self, _node: &NodeId) -> Result<(), MembershipError> {
        Err(MembershipError::Static)
    }

    fn gossip_address(&self) -> Option<SocketAddr> {
        None
    }

    fn address(&self, node: &NodeId) -> Option<SocketAddr> {
        self.addresses.get(node).copied()
    }

    fn is_alive(&self, node: &NodeId) -> bool {
        if *node == self.me {
            return true;
        }
        let liveness = self.liveness.read().unwrap_or_else(|p| p.into_inner());
        liveness.get(node).is_some_and(|l| l.alive)
    }

    fn report(&self, node: &NodeId, reachable: bool) {
        let mut liveness = self.liveness.write().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = liveness.get_mut(node) else {
            return;
        };
        if reachable {
            if !entry.alive {
                tracing::info!(%node, "peer is up");
            }
            *entry = Liveness {
                alive: true,
                consecutive_failures: 0,
            };
        } else {
            entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
            if entry.alive && entry.consecutive_failures >= FAILURES_TO_SUSPECT {
                tracing::warn!(%node, failures = entry.consecutive_failures, "peer is down");
                entry.alive = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::try_from(s).expect("valid id")
    }

    #[test]
    fn liveness_needs_repeated_failures_and_one_success() {
        let seeds: Vec<Seed> = vec!["n2@127.0.0.1:2".parse().expect("seed")];
        let m = StaticMembership::new(&id("n1"), "127.0.0.1:1".parse().expect("addr"), 8, None, &seeds).expect("ring");
        assert_eq!(m.ring().physical_node_count(), 2);
        assert!(m.is_alive(&id("n2")));
        m.report(&id("n2"), false);
        assert!(m.is_alive(&id("n2")), "one failure is not enough");
        m.report(&id("n2"), false);
        assert!(!m.is_alive(&id("n2")));
        m.report(&id("n2"), true);
        assert!(m.is_alive(&id("n2")));
        assert!(m.is_alive(&id("n1")), "a node is always alive to itself");
        assert_eq!(m.peers(), vec![id("n2")]);
    }
}
