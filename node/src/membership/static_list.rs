//! A fixed member list, given as seeds; liveness from probes and call outcomes.
//!
//! The ring never changes while the node runs: members are whatever `--seeds` named.
//! Liveness is this node's own view, fed by the probe loop
//! (`crate::maintenance::probe`) and by the outcome of every replica call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ringkv_ring::{Member, NodeId, Ring, RingError};
use tokio::sync::watch;

use super::{LocalState, MemberSummary, Membership, MembershipError};
use crate::config::Seed;

#[derive(Debug)]
struct Liveness {
    alive: bool,
    consecutive_failures: u32,
}

/// Consecutive failed contacts after which a member is considered down.
pub(crate) const FAILURES_TO_SUSPECT: u32 = 2;

/// A fixed member list; liveness from probes and RPC outcomes.
#[derive(Debug)]
pub(crate) struct StaticMembership {
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

    fn is_removed(&self, _node: &NodeId) -> bool {
        false
    }

    fn possible_holders(&self) -> Vec<NodeId> {
        self.ring().members().iter().map(|m| m.id.clone()).collect()
    }

    fn handed_everything_over(&self) {}

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
    }
}
