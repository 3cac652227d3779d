//! Liveness probes of a static member list.
//!
//! Gossip has its own failure detector; a node with a fixed member list pings every peer
//! each interval instead, and the replica handle reports each verdict
//! ([`Replica::probe`]).

use std::sync::Arc;
use std::time::Duration;

use ringkv_ring::NodeId;
use tokio::sync::watch;

use super::rounds::Rounds;
use crate::node_core::NodeCore;
use crate::replica::Replica;

/// How long a probe waits for the peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Pings every peer each interval until shutdown.
pub(crate) async fn probe_loop(core: Arc<NodeCore>, peers: Vec<NodeId>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.probe_interval, shutdown);
    let peers: Vec<Replica> = peers.into_iter().map(|peer| Replica::new(&core, peer)).collect();
    while rounds.next().await {
        for peer in &peers {
            peer.probe(PROBE_TIMEOUT).await;
        }
    }
}
