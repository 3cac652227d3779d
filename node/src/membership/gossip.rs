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
//! - **Who is a member** is the [`Roster`], not chitchat's live view: chitchat forgets a
//!   node that stays dead past its grace period, and a node restarting (or joining) later
//!   would build a ring without it while the others keep it. Every node merges the
//!   rosters all nodes publish, publishes the result, and keeps it in its data directory
//!   (`member_roster`), so the ring survives restarts and agrees everywhere. Forgetting a
//!   member is only ever the operator's `remove`; a removed id stays out for good, a
//!   member that left comes back only under a newer generation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ringkv_gossip::{Fate, Gossip, MemberStatus, MemberView, Roster, RosterError};
use ringkv_ring::{Member, NodeId, Ring};
use ringkv_storage::{Durability, Engine, EngineError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{LocalState, MemberSummary, Membership, MembershipError};

/// The data directory's copy of the roster ([`Roster::encode`]).
const META_ROSTER: &str = "member_roster";

/// Why the roster kept in the data directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RosterLoadError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The record does not decode.
    #[error("the member roster in the data directory is unreadable: {0}")]
    Corrupt(#[from] RosterError),
}

/// The roster this node kept in its data directory (empty for a new node).
pub(crate) fn load_roster(engine: &dyn Engine) -> Result<Roster, RosterLoadError> {
    match engine.get_meta(META_ROSTER)? {
        None => Ok(Roster::default()),
        Some(bytes) => Ok(Roster::decode(&String::from_utf8_lossy(&bytes))?),
    }
}

#[derive(Debug)]
struct Derived {
    ring: Arc<Ring>,
    roster: Roster,
    /// The failure detector's verdict on the members gossip currently holds.
    live: BTreeMap<NodeId, bool>,
}

/// Membership driven by gossip.
pub(crate) struct GossipMembership {
    me: NodeId,
    gossip_address: SocketAddr,
    gossip: Arc<Gossip>,
    engine: Arc<dyn Engine>,
    derived: RwLock<Derived>,
    ring_tx: watch::Sender<Arc<Ring>>,
    local: RwLock<LocalState>,
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
    /// Wraps a started gossip instance; `state` is what this node announced at start,
    /// `roster` what [`load_roster`] read from `engine`, where changes are kept.
    pub fn start(
        me: NodeId,
        gossip: Gossip,
        gossip_address: SocketAddr,
        state: LocalState,
        roster: Roster,
        engine: Arc<dyn Engine>,
    ) -> Arc<GossipMembership> {
        let mut view = gossip.members();
        let empty = Arc::new(Ring::new(std::iter::empty()).unwrap_or_else(|_| unreachable!("an empty ring is valid")));
        let (ring_tx, _) = watch::channel(Arc::clone(&empty));
        let membership = Arc::new(GossipMembership {
            me,
            gossip_address,
            gossip: Arc::new(gossip),
            engine,
            derived: RwLock::new(Derived {
                ring: empty,
                roster,
                live: BTreeMap::new(),
            }),
            ring_tx,
            local: RwLock::new(state),
            watcher: std::sync::Mutex::new(None),
        });
        membership.apply(&view.borrow_and_update());
        // What the data directory remembers goes out even if this view added nothing.
        membership.publish(
            membership
                .derived
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .roster
                .clone(),
        );
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

    /// Folds a gossip view into the roster, the ring and liveness.
    fn apply(&self, view: &MemberView) {
        let mut derived = self.derived.write().unwrap_or_else(|p| p.into_inner());
        derived.live = view
            .members
            .iter()
            .filter_map(|(id, entry)| Some((NodeId::try_from(id.as_str()).ok()?, entry.alive)))
            .collect();
        let changed = match derived.roster.merge(&view.roster) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!(node = %self.me, error = %e, "members past the roster's limit are not seen");
                true
            }
        };
        if changed {
            self.roster_changed(&mut derived);
        } else if derived.ring.physical_node_count() == 0 {
            self.rebuild_ring(&mut derived);
        }
    }

    /// Keeps a changed roster, publishes it and rebuilds the ring from it.
    fn roster_changed(&self, derived: &mut Derived) {
        let encoded = derived.roster.encode();
        if let Err(e) = self.engine.put_meta(META_ROSTER, encoded.as_bytes(), Durability::Sync) {
            tracing::error!(node = %self.me, error = %e, "cannot keep the member roster in the data directory");
        }
        self.publish(derived.roster.clone());
        self.rebuild_ring(derived);
    }

    fn publish(&self, roster: Roster) {
        let gossip = Arc::clone(&self.gossip);
        tokio::spawn(async move {
            if let Err(e) = gossip.set_roster(&roster).await {
                tracing::error!(error = %e, "cannot publish the member roster");
            }
        });
    }

    fn rebuild_ring(&self, derived: &mut Derived) {
        let members = derived
            .roster
            .iter()
            .filter(|(_, e)| e.fate.in_ring())
            .filter_map(|(id, e)| {
                Some(Member {
                    id: NodeId::try_from(id).ok()?,
                    vnodes: e.vnodes,
                    zone: e.zone.clone(),
                })
            });
        match Ring::new(members) {
            Ok(ring) if ring != *derived.ring => {
                let ring = Arc::new(ring);
                tracing::info!(node = %self.me, members = ring.physical_node_count(), "ring changed");
                derived.ring = Arc::clone(&ring);
                self.ring_tx.send_replace(ring);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the roster does not form a ring; keeping the previous one"),
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
            .roster
            .get(node.as_str())
            .map(|e| e.replica_addr)
    }

    fn is_alive(&self, node: &NodeId) -> bool {
        *node == self.me
            || self
                .derived
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .live
                .get(node)
                .is_some_and(|alive| *alive)
    }

    fn report(&self, _node: &NodeId, _reachable: bool) {
        // Liveness is the failure detector's call; one failed RPC is not a verdict.
    }

    fn members(&self) -> Vec<MemberSummary> {
        let derived = self.derived.read().unwrap_or_else(|p| p.into_inner());
        derived
            .roster
            .iter()
            .filter_map(|(id, entry)| {
                let id = NodeId::try_from(id).ok()?;
                let alive = derived.live.get(&id).copied().unwrap_or(false) || id == self.me;
                // A member still handing its data over is leaving (whether it runs or
                // stopped before it was done); one that handed everything over has left.
                let state = match entry.fate {
                    Fate::Left => "leaving",
                    Fate::Gone => "left",
                    fate => fate.as_str(),
                };
                Some(MemberSummary {
                    in_ring: derived.ring.contains(&id),
                    id,
                    address: Some(entry.client_addr),
                    state: state.to_owned(),
                    alive,
                    generation: entry.generation,
                })
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
        let mut derived = self.derived.write().unwrap_or_else(|p| p.into_inner());
        if derived.roster.get(node.as_str()).is_none() {
            return Err(MembershipError::UnknownNode(node.clone()));
        }
        if derived.live.get(node).is_some_and(|alive| *alive) {
            return Err(MembershipError::StillAlive(node.clone()));
        }
        if derived.roster.remove(node.as_str()) {
            self.roster_changed(&mut derived);
        }
        Ok(())
    }

    fn gossip_address(&self) -> Option<SocketAddr> {
        Some(self.gossip_address)
    }

    fn is_removed(&self, node: &NodeId) -> bool {
        let derived = self.derived.read().unwrap_or_else(|p| p.into_inner());
        derived
            .roster
            .get(node.as_str())
            .is_some_and(|e| e.fate == Fate::Removed)
    }

    fn possible_holders(&self) -> Vec<NodeId> {
        let derived = self.derived.read().unwrap_or_else(|p| p.into_inner());
        derived
            .roster
            .iter()
            .filter(|(_, e)| e.fate.may_hold_data())
            .filter_map(|(id, _)| NodeId::try_from(id).ok())
            .collect()
    }

    fn handed_everything_over(&self) {
        let mut derived = self.derived.write().unwrap_or_else(|p| p.into_inner());
        if derived.roster.gone(self.me.as_str()) {
            self.roster_changed(&mut derived);
        }
    }
}
