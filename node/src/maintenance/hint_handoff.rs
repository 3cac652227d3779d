//! Hinted hand-off: hints go to their targets once those are alive, then are deleted.
//!
//! A hint is a copy this node keeps for a replica that was down or failed when a write
//! came (sloppy quorum). Each round delivers one page of hints to every live target at
//! once ([`QuorumCall`] over the targets), and deletes only what was delivered and did not
//! change meanwhile, so a hint that gained a write stays for the next round.

use std::sync::Arc;

use ringkv_ring::NodeId;
use ringkv_storage::injected_bug::{self, Bug};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rounds::Rounds;
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
    // A target that is not a member any more has no address and is never alive: its
    // hints wait for an operator's remove (docs/membership.md).
    let targets: Vec<NodeId> = counts
        .into_iter()
        .map(|(target, _)| target)
        .filter(|target| core.membership.is_alive(target))
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let deadline = Instant::now() + core.config.request_timeout;
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
    let delivered = finished.answers.iter().map(|(_, removed)| removed).sum();
    Ok(delivered)
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
