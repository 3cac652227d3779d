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

/// Hands keys this node no longer replicates to their owners, then drops them; once a
/// leaving node holds nothing, marks it as left.
pub async fn ownership_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.handoff_interval, shutdown);
    let mut cursor = None;
    let mut foreign_this_pass = 0u64;
    while rounds.next().await {
        match crate::transfer::handoff_foreign_round(&core, &mut cursor).await {
            Ok(stats) => {
                foreign_this_pass += stats.foreign as u64;
                if cursor.is_none() {
                    // A full pass over the store ended: publish what is still to move.
                    core.metrics.transfers_pending.set(foreign_this_pass as i64);
                    foreign_this_pass = 0;
                }
                if core.membership.local_state() == crate::membership::LocalState::Leaving
                    && stats.examined == 0
                    && matches!(core.store.scan(0, ringkv_ring::Position::MAX, None, 1).await, Ok(page) if page.is_empty())
                {
                    if !*core.left.borrow() {
                        tracing::info!(node = %core.me(), "left the cluster: all data handed over");
                    }
                    core.left.send_replace(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ownership hand-off round failed"),
        }
    }
}

/// Rebuilds the anti-entropy hash trees whenever the ring changes (their segments are
/// the ring's).
pub async fn ring_watch_loop(core: Arc<NodeCore>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = core.membership.ring_changes();
    let mut current = core.membership.ring();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let ring = changes.borrow_and_update().clone();
        if ring.tokens().map(|(p, _)| p).eq(current.tokens().map(|(p, _)| p)) {
            current = ring;
            continue;
        }
        current = Arc::clone(&ring);
        let (index, engine) = (Arc::clone(core.store.index()), Arc::clone(core.store.engine()));
        let in_place = engine.runs_in_place();
        match crate::local_store::off_runtime(in_place, move || index.rebuild_for_ring(engine.as_ref(), &ring)).await {
            Ok(Ok((keys, took))) => {
                core.metrics.anti_entropy_rebuild_seconds.set(took.as_secs_f64());
                tracing::info!(node = %core.me(), keys, seconds = took.as_secs_f64(), "hash trees rebuilt for a new ring");
            }
            Ok(Err(e)) => tracing::error!(error = %e, "hash tree rebuild failed"),
            Err(e) => tracing::error!(error = %e, "hash tree rebuild task failed"),
        }
    }
}
