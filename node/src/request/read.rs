//! Quorum reads and read repair.
//!
//! [`Coordinator::get`] asks this node's copy (when it holds one) and just enough peers
//! for R answers, in [`peer_read_order`], as one [`QuorumCall`]: a replica that fails is
//! replaced by the next at once; if answers are still missing after [`READ_HEDGE_AFTER`],
//! every remaining replica is asked too, and the first R answers win. Replicas not asked
//! are brought up to date by anti-entropy (see `docs/design-decisions.md` for why reads
//! do not ask all N, as Dynamo's do). If the answers disagree, or some are still out, the
//! rest are awaited in the background and the merge of all goes to every replica found
//! stale (read repair).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_ring::NodeId;
use ringkv_storage::{record, Key, KeyState, SIBLINGS_WARN};
use tokio::time::Instant;

use super::{preference_list, Coordinator, ReadOutcome, RequestError};
use crate::replica::quorum::{QuorumCall, Slot};
use crate::replica::{Replica, ReplicaError};

/// How long a read waits for the R replicas it asked before it asks the others too.
///
/// Longer than a replica read takes on a loaded node (a few milliseconds in the 3-node
/// benchmark), so that hedging stays the exception; short against the request timeout,
/// so a replica that hangs without failing costs a read this much and no more.
pub(crate) const READ_HEDGE_AFTER: Duration = Duration::from_millis(25);

type ReadCall = QuorumCall<KeyState, ReplicaError>;

impl Coordinator {
    /// Reads `key` from `r` replicas within `timeout`.
    pub async fn get(&self, key: Key, r: u8, timeout: Duration) -> Result<ReadOutcome, RequestError> {
        let deadline = Instant::now() + timeout;
        let need = usize::from(r);
        let core = &self.core;
        let ring = core.membership.ring();
        let pref = preference_list(&ring, &key, core.config.replicas)?;
        let me = core.me();
        // This node's copy first (it answers in place), then the peers.
        let mut first: Vec<NodeId> = Vec::with_capacity(pref.len());
        if pref.contains(me) {
            first.push(me.clone());
        }
        first.extend(peer_read_order(pref.nodes(), me, |n| core.membership.is_alive(n)));
        let spares = first.split_off(need.min(first.len()));
        let (reading, read_key) = (Arc::clone(core), key.clone());
        let mut call: ReadCall = QuorumCall::start(first, spares, move |slot: &Slot| {
            let (replica, key) = (Replica::new(&reading, slot.node.clone()), read_key.clone());
            Box::pin(async move { replica.read(&key, deadline).await })
        });
        let replied = call.wait_for(need, Some(READ_HEDGE_AFTER), deadline).await;
        if call.hedged() {
            core.metrics.read_hedges.inc();
        }
        debug_assert!(replied + call.outstanding() <= pref.len());
        if replied < need {
            return Err(RequestError::QuorumNotMet {
                op: "read",
                replied,
                needed: r,
                timeout_ms: timeout.as_millis() as u64,
                first_failure: call.take_first_failure(),
            });
        }
        let merged = merge_all(call.answers());
        let siblings = merged.visible(core.clock.wall_ms()).count();
        if siblings > SIBLINGS_WARN {
            core.metrics.sibling_explosions.inc();
            tracing::warn!(key = ?key, siblings, "key has many siblings: resolve them with a context");
        }
        // Every replica asked has answered, and they agree: nothing to repair.
        let settled = call.outstanding() == 0 && call.answers().iter().all(|(_, state)| *state == merged);
        if !settled {
            // The repair hears from the replicas this read asked, and asks no others.
            call.forget_spares();
            let repair = self.clone();
            core.background
                .spawn(async move { repair.read_repair(key, call, deadline).await })
                .await;
        }
        Ok(ReadOutcome { state: merged, replied })
    }

    /// Waits for the answers still coming from the replicas asked, then sends the merge of
    /// all to those found stale.
    async fn read_repair(&self, key: Key, call: ReadCall, deadline: Instant) {
        let answers = call.finish(deadline).await.answers;
        let merged = merge_all(&answers);
        let stale: Vec<NodeId> = answers
            .into_iter()
            .filter(|(_, state)| *state != merged)
            .map(|(slot, _)| slot.node)
            .collect();
        if stale.is_empty() {
            return;
        }
        let core = &self.core;
        let repair_deadline = Instant::now() + core.config.request_timeout;
        let encoded = Bytes::from(record::encode(&merged));
        let (repairing, repaired_key) = (Arc::clone(core), key.clone());
        let repairs = QuorumCall::start(stale, [], move |slot: &Slot| {
            let replica = Replica::new(&repairing, slot.node.clone());
            let (key, merged, encoded) = (repaired_key.clone(), merged.clone(), encoded.clone());
            Box::pin(async move { replica.merge(&key, &merged, &encoded, None, repair_deadline).await })
        });
        for (slot, ()) in repairs.finish(repair_deadline).await.answers {
            core.metrics.read_repairs.inc();
            tracing::debug!(node = %slot.node, ?key, "read repair");
        }
    }
}

fn merge_all(answers: &[(Slot, KeyState)]) -> KeyState {
    let mut merged = KeyState::new();
    for (_, state) in answers {
        merged.merge(state);
    }
    merged
}

/// The peers a read asks, in the order it asks them: live peers first, starting after this
/// node's place in the preference list (or, when it holds no copy, at a place derived from
/// its id), so that the coordinators of one key send their reads to different replicas;
/// then the peers believed down, in case the failure detector is wrong.
pub(super) fn peer_read_order(pref: &[NodeId], me: &NodeId, alive: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
    let nodes = pref;
    if nodes.is_empty() {
        return Vec::new();
    }
    let start = match nodes.iter().position(|n| n == me) {
        Some(mine) => mine + 1,
        None => {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(me.as_str(), &mut hasher);
            (std::hash::Hasher::finish(&hasher) % nodes.len() as u64) as usize
        }
    };
    let peers = nodes[start..]
        .iter()
        .chain(&nodes[..start])
        .filter(|n| *n != me)
        .cloned();
    let (mut order, down): (Vec<NodeId>, Vec<NodeId>) = peers.partition(|n| alive(n));
    order.extend(down);
    debug_assert_eq!(order.len(), nodes.len() - usize::from(nodes.contains(me)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::try_from(*n).expect("valid id")).collect()
    }

    #[test]
    fn reads_start_after_the_coordinators_place_so_coordinators_spread_them() {
        let pref = ids(&["a", "b", "c"]);
        let all_alive = |_: &NodeId| true;
        assert_eq!(peer_read_order(&pref, &pref[0], all_alive), ids(&["b", "c"]));
        assert_eq!(peer_read_order(&pref, &pref[1], all_alive), ids(&["c", "a"]));
        assert_eq!(peer_read_order(&pref, &pref[2], all_alive), ids(&["a", "b"]));
        // The first peer each coordinator asks is a different replica.
        let firsts: Vec<NodeId> = pref
            .iter()
            .map(|me| peer_read_order(&pref, me, all_alive)[0].clone())
            .collect();
        assert_eq!(firsts, ids(&["b", "c", "a"]));
    }

    #[test]
    fn peers_believed_down_come_last_and_nobody_is_left_out() {
        let pref = ids(&["a", "b", "c", "d"]);
        let down = ids(&["c"]);
        let order = peer_read_order(&pref, &pref[0], |n| !down.contains(n));
        assert_eq!(order, ids(&["b", "d", "c"]));
    }

    #[test]
    fn a_coordinator_without_a_copy_asks_every_replica() {
        let pref = ids(&["a", "b", "c"]);
        let outsider = NodeId::try_from("z").expect("valid id");
        let mut order = peer_read_order(&pref, &outsider, |_| true);
        assert_eq!(order.len(), 3);
        order.sort();
        assert_eq!(order, pref);
        assert!(peer_read_order(&[], &outsider, |_| true).is_empty());
    }
}
