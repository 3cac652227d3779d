//! Membership learned by gossip (chitchat, through `ringkv-gossip`).
//!
//! Each node publishes its addresses, vnode count, zone and state; this module folds
//! what gossip reports into the [`Membership`] the coordinator uses:
//!
//! - **The ring** holds every member that is joining or up and was not removed. A member
//!   that dies stays in the ring (its ranges are served by fallbacks and come back to it
//!   by hand-off): as in Dynamo, placement changes only on an explicit join, leave or
//!   remove, never on a failure-detector verdict. A member that announced it is leaving
//!   is out of the ring at once, so new writes go to the new owners while it hands its
//!   data over.
//! - **Liveness** is chitchat's phi-accrual failure detector; connection errors alone do
//!   not mark a node down.
//! - **Removed** node ids are published by the node that received the remove command and
//!   unioned by everyone; a removed id stays out of the ring for good.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ringkv_gossip::{Gossip, MemberInfo, MemberStatus, MemberView};
use ringkv_ring::{Member, NodeId, Ring};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{LocalState, MemberSummary, Membership, MembershipError};

#[derive(Clone, Debug)]
struct Known {
    info: MemberInfo,
    alive: bool,
}

#[derive(Debug)]
struct Derived {
    ring: Arc<Ring>,
    known: BTreeMap<NodeId, Known>,
    removed: BTreeSet<NodeId>,
}

/// Membership driven by gossip.
pub(crate) struct GossipMembership {
    me: NodeId,
    gossip_address: SocketAddr,
    gossip: Arc<Gossip>,
    derived: RwLock<Derived>,
    ring_tx: watch::Sender<Arc<Ring>>,
    local: RwLock<LocalState>,
    removed_here: std::sync::Mutex<BTreeSet<String>>,
    watcher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

fn status_of(state: LocalState) -> MemberStatus {
    match state {
        LocalState::Joining => MemberStatus::Joining,
        LocalState::Up => MemberStatus::Up,
        LocalState::Leaving => MemberStatus::Leaving,
    }
}

impl GossipMembership {
    /// Wraps a started gossip instance; `state` is what this node announced at start.
    pub fn start(me: NodeId, gossip: Gossip, gossip_address: SocketAddr, state: LocalState) -> Arc<GossipMembership> {
        let mut view = gossip.members();
        let empty = Arc::new(Ring::new(std::iter::empty()).unwrap_or_else(|_| unreachable!("an empty ring is valid")));
        let (ring_tx, _) = watch::channel(Arc::clone(&empty));
        let membership = Arc::new(GossipMembership {
            me,
            gossip_address,
            gossip: Arc::new(gossip),
            derived: RwLock::new(Derived {
                ring: empty,
                known: BTreeMap::new(),
                removed: BTreeSet::new(),
            }),
            ring_tx,
            local: RwLock::new(state),
            removed_here: std::sync::Mutex::new(BTreeSet::new()),
            watcher: std::sync::Mutex::new(None),
        });
        membership.apply(&view.borrow_and_update());
        let weak = Arc::downgrade(&membership);
        let watcher = tokio::spawn(async move {
            while view.changed().await.is_ok() {
                let Some(membership) = weak.upgrade() else { return };
                let snapshot = view.borrow_and_update().clone();
                membership.apply(&snapshot);
            }
        });
        *membership.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
        membership
    }

    /// Folds a gossip view into the ring and liveness.
    fn apply(&self, view: &MemberView) {
        let mut derived = self.derived.write().unwrap_or_else(|p| p.into_inner());
        for known in derived.known.values_mut() {
            known.alive = false;
        }
        for (id, entry) in &view.members {
            let Ok(id) = NodeId::try_from(id.as_str()) else {
                continue;
            };
            derived.known.insert(
                id,
                Known {
                    info: entry.info.clone(),
                    alive: entry.alive,
                },
            );
        }
        for id in view
            .removed
            .iter()
            .chain(self.removed_here.lock().unwrap_or_else(|p| p.into_inner()).iter())
        {
            if let Ok(id) = NodeId::try_from(id.as_str()) {
                derived.removed.insert(id);
            }
        }
        let members = derived
            .known
            .iter()
            .filter(|(id, k)| !derived.removed.contains(*id) && k.info.status != MemberStatus::Leaving)
            .map(|(id, k)| Member {
                id: id.clone(),
                vnodes: k.info.vnodes,
                zone: k.info.zone.clone(),
            });
        match Ring::new(members) {
            Ok(ring) if ring != *derived.ring => {
                let ring = Arc::new(ring);
                tracing::info!(node = %self.me, members = ring.physical_node_count(), "ring changed");
                derived.ring = Arc::clone(&ring);
                self.ring_tx.send_replace(ring);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "gossip view does not form a ring; keeping the previous one"),
        }
    }

    /// Stops gossiping (the node leaves the others' view as dead).
    pub async fn shutdown(&self) {
        if let Some(watcher) = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            watcher.abort();
        }
        self.gossip.stop().await;
    }
}

impl Membership for GossipMembership {
    fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.derived.read().unwrap_or_else(|p| p.into_inner()).ring)
    }

    fn ring_changes(&self) -> watch::Receiver<Arc<Ring>> {
        self.ring_tx.subscribe()
    }

    fn address(&self, node: &NodeId) -> Option<SocketAddr> {
        self.derived
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .known
            .get(node)
            .map(|k| k.info.replica_addr)
    }

    fn is_alive(&self, node: &NodeId) -> bool {
        *node == self.me
            || self
                .derived
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .known
                .get(node)
                .is_some_and(|k| k.alive)
    }

    fn report(&self, _node: &NodeId, _reachable: bool) {
        // Liveness is the failure detector's call; one failed RPC is not a verdict.
    }

    fn members(&self) -> Vec<MemberSummary> {
        let derived = self.derived.read().unwrap_or_else(|p| p.into_inner());
        derived
            .known
            .iter()
            .map(|(id, k)| {
                let removed = derived.removed.contains(id);
                MemberSummary {
                    id: id.clone(),
                    address: Some(k.info.client_addr),
                    state: if removed {
                        "removed".to_owned()
                    } else {
                        k.info.status.as_str().to_owned()
                    },
                    alive: k.alive || *id == self.me,
                    generation: k.info.generation,
                    in_ring: derived.ring.contains(id),
                }
            })
            .collect()
    }

    fn local_state(&self) -> LocalState {
        *self.local.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set_local_state(&self, state: LocalState) {
        *self.local.write().unwrap_or_else(|p| p.into_inner()) = state;
        let gossip = Arc::clone(&self.gossip);
        tokio::spawn(async move { gossip.set_status(status_of(state)).await });
    }

    fn remove(&self, node: &NodeId) -> Result<(), MembershipError> {
        if *node == self.me {
            return Err(MembershipError::RemoveSelf);
        }
        let (known, alive) = {
            let derived = self.derived.read().unwrap_or_else(|p| p.into_inner());
            (
                derived.known.contains_key(node),
                derived.known.get(node).is_some_and(|k| k.alive),
            )
        };
        if !known {
            return Err(MembershipError::UnknownNode(node.clone()));
        }
        if alive {
            return Err(MembershipError::StillAlive(node.clone()));
        }
        let removed: Vec<String> = {
            let mut here = self.removed_here.lock().unwrap_or_else(|p| p.into_inner());
            here.insert(node.to_string());
            here.iter().cloned().collect()
        };
        let gossip = Arc::clone(&self.gossip);
        tokio::spawn(async move { gossip.set_removed(removed).await });
        let view = self.gossip.members().borrow().clone();
        self.apply(&view);
        Ok(())
    }

    fn gossip_address(&self) -> Option<SocketAddr> {
        Some(self.gossip_address)
    }
}
