//! Hinted hand-off: hints go to their targets once those are alive, then are deleted.
//!
//! A hint is a copy this node keeps for a replica that was down or failed when a write
//! came (sloppy quorum). Each round delivers one page of hints to every live target at
//! once ([`QuorumCall`] over the targets), and deletes only what was delivered and did not
//! change meanwhile, so a hint that gained a write stays for the next round.
//!
//! A hint always has a live destination (DESIGN.md, "Identity and durability of
//! causality"). When its target is no longer a member (removed, or left), waiting for it
//! would strand the copy forever, so the hint is *re-homed* ([`rehome`]): merged into
//! every current replica of its key that is alive, and kept as a hint for each one that
//! is down. A node that is leaving re-homes every hint it cannot deliver now, giving the
//! hints for a down target to a live replica of the key instead of keeping them, and it
//! does not count as left while it holds any (`transfer::ownership_loop`).

use std::sync::Arc;

use bytes::Bytes;
use ringkv_ring::NodeId;
use ringkv_storage::injected_bug::{self, Bug};
use ringkv_storage::{record, Key, KeyState};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rounds::Rounds;
use crate::membership::LocalState;
use crate::node_core::NodeCore;
use crate::replica::quorum::{QuorumCall, Slot};
use crate::replica::{Replica, ReplicaError};
use crate::store::StoreError;

/// Hints sent to one target per hand-off round.
pub(crate) const HANDOFF_BATCH_MAX: usize = 256;

/// Hands hints off every interval until shutdown.
pub(crate) async fn handoff_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.handoff_interval, shutdown);
    while rounds.next().await {
        if core.removed_from_cluster() {
            // Its peers refuse its replica traffic (`crate::replica::fence`): pushing
            // would only be refused again.
            continue;
        }
        if let Err(e) = handoff_round(&core).await {
            tracing::warn!(error = %e, "hint hand-off round failed");
        }
    }
}

/// One round: every live target gets one page of its hints. Returns the hints delivered.
pub(crate) async fn handoff_round(core: &Arc<NodeCore>) -> Result<u64, StoreError> {
    let counts = core.store.hint_counts().await?;
    core.metrics
        .hints_pending
        .set(counts.iter().map(|(_, c)| *c as i64).sum());
    let ring = core.membership.ring();
    let leaving = core.membership.local_state() == LocalState::Leaving;
    let deadline = Instant::now() + core.config.request_timeout;
    let mut targets = Vec::new();
    let mut rehomed = 0;
    for (target, _) in counts {
        if core.membership.is_alive(&target) {
            targets.push(target);
        } else if !ring.contains(&target) || leaving {
            match rehome(core, target.clone(), deadline).await {
                Ok(moved) => rehomed += moved,
                Err(e) => tracing::debug!(%target, error = %e, "re-homing hints failed"),
            }
        }
    }
    if targets.is_empty() {
        return Ok(rehomed);
    }
    let handing = Arc::clone(core);
    let call = QuorumCall::start(targets, [], move |slot: &Slot| {
        let (core, target) = (Arc::clone(&handing), slot.node.clone());
        Box::pin(async move { deliver(&core, target, deadline).await })
    });
    let finished = call.finish(deadline).await;
    for (slot, failure) in &finished.failures {
        match failure {
            // This node's own store failed: that is news, not a peer being away.
            ReplicaError::Store(_) => tracing::warn!(target = %slot.node, error = %failure, "hint hand-off failed"),
            _ => tracing::debug!(target = %slot.node, error = %failure, "hint hand-off failed"),
        }
    }
    let delivered: u64 = finished.answers.iter().map(|(_, removed)| removed).sum();
    Ok(delivered + rehomed)
}

/// One page of the hints for `target`, which this node cannot deliver (the target is not
/// a member any more, or this node is leaving and the target is down), moved to where
/// they can be: each key's state goes to every current replica of the key (merged into
/// a live one, kept as a hint for a down one). Returns how many hints were moved and
/// deleted here.
async fn rehome(core: &Arc<NodeCore>, target: NodeId, deadline: Instant) -> Result<u64, ReplicaError> {
    let hints = core.store.hints(target.clone(), HANDOFF_BATCH_MAX).await?;
    let mut moved = Vec::with_capacity(hints.len());
    for (key, state) in hints {
        match place_everywhere(core, &key, &state, deadline).await {
            Ok(()) => moved.push((key, state)),
            Err(e) => tracing::debug!(%target, error = %e, "a hint could not be re-homed yet"),
        }
    }
    let removed = core.store.remove_delivered_hints(target.clone(), moved).await?;
    core.metrics.hints_rehomed.inc_by(removed);
    if removed > 0 {
        tracing::info!(%target, removed, "hints re-homed to their keys' current replicas");
    }
    Ok(removed)
}

/// Gives `state` to every replica of `key` in this node's current ring: merged into each
/// one that is alive (this node included, unless it is leaving); for one that is down,
/// kept as a hint here, or (when this node is leaving) by another live member.
async fn place_everywhere(
    core: &Arc<NodeCore>,
    key: &Key,
    state: &KeyState,
    deadline: Instant,
) -> Result<(), ReplicaError> {
    let ring = core.membership.ring();
    let leaving = core.membership.local_state() == LocalState::Leaving;
    let encoded = Bytes::from(record::encode(state));
    let pref = ring.preference_list(key.position(), core.config.replicas);
    if pref.is_empty() {
        // An empty ring has no replica to give the hint to: it stays until one forms.
        return Err(ReplicaError::NoAddress {
            node: core.me().clone(),
        });
    }
    for replica in pref.iter() {
        let me = replica == core.me();
        if (me && !leaving) || (!me && core.membership.is_alive(replica)) {
            Replica::new(core, replica.clone())
                .merge(key, state, &encoded, None, deadline)
                .await?;
        } else if !leaving {
            core.store.put_hint(replica.clone(), key.clone(), state.clone()).await?;
        } else {
            let keeper = ring
                .members()
                .iter()
                .map(|m| &m.id)
                .find(|id| *id != core.me() && *id != replica && core.membership.is_alive(id))
                // No live member can keep the hint: it stays here for the next round.
                .ok_or_else(|| ReplicaError::Down { node: replica.clone() })?;
            Replica::new(core, keeper.clone())
                .merge(key, state, &encoded, Some(replica), deadline)
                .await?;
        }
    }
    Ok(())
}

/// One page of `target`'s hints to `target`; returns how many were deleted after.
async fn deliver(core: &Arc<NodeCore>, target: NodeId, deadline: Instant) -> Result<u64, ReplicaError> {
    let hints = core.store.hints(target.clone(), HANDOFF_BATCH_MAX).await?;
    if hints.is_empty() {
        return Ok(0);
    }
    if !injected_bug::active(Bug::HintDroppedBeforeDelivery) {
        Replica::new(core, target.clone())
            .merge_batch(hints.clone(), deadline)
            .await?;
    }
    let removed = core.store.remove_delivered_hints(target.clone(), hints).await?;
    core.metrics.hints_delivered.inc_by(removed);
    tracing::debug!(%target, removed, "hints handed off");
    Ok(removed)
}
