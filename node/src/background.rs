//! The node's background loops: liveness probes and hint hand-off.
//!
//! Each loop runs on a fixed interval until the node's shutdown signal fires, and does a
//! bounded amount of work per round (one page of hints per target), so a large backlog
//! drains steadily without starving client requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::NodeId;
use ringkv_storage::record;
use tokio::sync::watch;

use crate::node_core::NodeCore;

/// Hints sent to one target per hand-off round.
pub const HANDOFF_BATCH_MAX: usize = 256;
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The ticks of a background loop: one per interval until the node shuts down. A slow
/// round delays the next tick instead of piling rounds up.
pub struct Rounds {
    ticker: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl Rounds {
    /// Ticks every `interval` until `shutdown` changes.
    pub fn new(interval: Duration, shutdown: watch::Receiver<bool>) -> Rounds {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Rounds { ticker, shutdown }
    }

    /// Waits for the next round; `false` once the node is shutting down.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.shutdown.changed() => false,
        }
    }
}

/// Pings every peer each interval and reports the outcome to the membership.
pub async fn probe_loop(core: Arc<NodeCore>, peers: Vec<NodeId>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.probe_interval, shutdown);
    while rounds.next().await {
        for peer in &peers {
            let reachable = probe(&core, peer).await;
            core.membership.report(peer, reachable);
        }
    }
}

async fn probe(core: &NodeCore, peer: &NodeId) -> bool {
    let Some(address) = core.membership.address(peer) else {
        return false;
    };
    let mut client = core.peers.replica(peer, address);
    let request = proto::PingRequest {
        from: core.me().to_string(),
        cluster_name: core.config.cluster_name.clone(),
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.ping(request)).await {
        Ok(Ok(response)) => {
            let answered = response.into_inner().node_id;
            if answered != peer.as_str() {
                tracing::warn!(%peer, %answered, %address, "a different node answers at this peer's address");
                return false;
            }
            true
        }
        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
            tracing::warn!(%peer, message = status.message(), "peer refused our probe");
            false
        }
        _ => false,
    }
}

/// Hands hints off to their targets when they are alive, then deletes them.
pub async fn handoff_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.handoff_interval, shutdown);
    while rounds.next().await {
        if let Err(e) = handoff_round(&core).await {
            tracing::warn!(error = %e, "hint hand-off round failed");
        }
    }
}

/// One round: for each live target, deliver one page of its hints.
pub async fn handoff_round(core: &NodeCore) -> Result<u64, String> {
    let counts = core.store.hint_counts().await.map_err(|e| e.to_string())?;
    core.metrics
        .hints_pending
        .set(counts.iter().map(|(_, c)| *c as i64).sum());
    let mut delivered = 0;
    for (target, _) in counts {
        if !core.membership.is_alive(&target) {
            continue;
        }
        let Some(address) = core.membership.address(&target) else {
            // Not a member any more; its hints wait for an operator's remove (see docs).
            continue;
        };
        let hints = core
            .store
            .hints(target.clone(), HANDOFF_BATCH_MAX)
            .await
            .map_err(|e| e.to_string())?;
        if hints.is_empty() {
            continue;
        }
        let entries = hints
            .iter()
            .map(|(key, state)| proto::KeyStateEntry {
                key: key.bytes().clone(),
                state: Bytes::from(record::encode(state)),
            })
            .collect();
        let mut client = core.peers.replica(&target, address);
        let sent = tokio::time::timeout(
            core.config.request_timeout,
            client.merge_batch(proto::ReplicaMergeBatchRequest { entries }),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {
                // Delete only what was delivered; a hint that gained a write meanwhile
                // stays for the next round.
                let removed = core
                    .store
                    .remove_delivered_hints(target.clone(), hints)
                    .await
                    .map_err(|e| e.to_string())?;
                core.metrics.hints_delivered.inc_by(removed);
                delivered += removed;
                tracing::debug!(%target, removed, "hints handed off");
            }
            Ok(Err(status)) => {
                core.metrics.replica_rpc_errors.inc();
                tracing::debug!(%target, message = status.message(), "hint hand-off refused");
            }
            Err(_) => {
                core.metrics.replica_rpc_errors.inc();
            }
        }
    }
    Ok(delivered)
}
