//! Anti-entropy: replicas compare hash trees and repair exactly the keys that differ.
//!
//! Every interval this node picks the next live peer (round-robin in id order) and runs
//! [`exchange`] with it over the ring segments both replicate: compare segment roots,
//! fetch the leaves of segments that differ, fetch the key digests of leaves that differ,
//! and for each differing key merge the two states and send the merge to whichever side
//! lacked it. Merging follows the causality rules, so a repair never overwrites a
//! concurrent sibling. A round repairs at most [`REPAIRS_PER_ROUND_MAX`] keys, and rounds
//! are sequential, so repair traffic stays a trickle beside client requests.

use std::sync::Arc;

use bytes::Bytes;
use proto::replica_client::ReplicaClient;
use ringkv_client::{proto, Connection};
use ringkv_ring::{NodeId, Position};
use ringkv_storage::merkle::{differing_keys, LeafId};
use ringkv_storage::{record, Key, KeyState, SCAN_PAGE_MAX, SEGMENT_LEAVES};
use tokio::sync::watch;

use crate::background::Rounds;
use crate::merkle_index::digest;
use crate::node_core::NodeCore;

/// Most keys one exchange repairs; the rest wait for the next round.
pub const REPAIRS_PER_ROUND_MAX: usize = 1000;
/// Most segments compared by root in one request.
pub const SEGMENTS_PER_REQUEST_MAX: usize = 4096;
/// Most keys one leaf may hold for an exchange (beyond it the leaf is skipped and logged).
pub const LEAF_KEYS_MAX: usize = SCAN_PAGE_MAX;

/// What one exchange did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Segments both sides replicate.
    pub segments_compared: usize,
    /// Segments whose roots differed.
    pub segments_differing: usize,
    /// Keys found different.
    pub keys_differing: usize,
    /// Keys repaired on either side.
    pub keys_repaired: usize,
    /// Protobuf bytes sent and received by the exchange.
    pub bytes: u64,
}

/// Why an exchange stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The peer is not a member.
    #[error("{0} is not a member")]
    UnknownPeer(NodeId),
    /// An RPC failed.
    #[error("{peer}: {status}")]
    Rpc {
        /// The peer.
        peer: NodeId,
        /// What it answered.
        status: tonic::Status,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] crate::local_store::StoreError),
    /// The peer sent something unusable.
    #[error("{peer} sent an invalid answer: {reason}")]
    BadAnswer {
        /// The peer.
        peer: NodeId,
        /// What was wrong.
        reason: String,
    },
}

struct Peer<'a> {
    id: &'a NodeId,
    client: ReplicaClient<Connection>,
    bytes: u64,
}

impl Peer<'_> {
    /// Sends one RPC to the peer, counting the protobuf bytes both ways.
    async fn call<Req: prost::Message, Resp: prost::Message>(
        &mut self,
        request: Req,
        send: impl AsyncFnOnce(ReplicaClient<Connection>, Req) -> Result<tonic::Response<Resp>, tonic::Status>,
    ) -> Result<Resp, ExchangeError> {
        self.bytes += request.encoded_len() as u64;
        let response = send(self.client.clone(), request)
            .await
            .map_err(|s| self.rpc_error(s))?
            .into_inner();
        self.bytes += response.encoded_len() as u64;
        Ok(response)
    }

    fn rpc_error(&self, status: tonic::Status) -> ExchangeError {
        ExchangeError::Rpc {
            peer: self.id.clone(),
            status,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> ExchangeError {
        ExchangeError::BadAnswer {
            peer: self.id.clone(),
            reason: reason.into(),
        }
    }
}

/// Runs one anti-entropy exchange with `peer` and returns what it did.
pub async fn exchange(core: &NodeCore, peer_id: &NodeId) -> Result<ExchangeStats, ExchangeError> {
    let address = core
        .membership
        .address(peer_id)
        .ok_or_else(|| ExchangeError::UnknownPeer(peer_id.clone()))?;
    let mut peer = Peer {
        id: peer_id,
        client: core.peers.replica(peer_id, address),
        bytes: 0,
    };
    let ring = core.membership.ring();
    let n = core.config.replicas;
    let me = core.me();
    let shared: Vec<(usize, Position)> = core.store.index().with(|trees| {
        trees
            .segment_ends()
            .iter()
            .enumerate()
            .filter(|(_, end)| {
                let pref = ring.preference_list(**end, n);
                pref.contains(me) && pref.contains(peer_id)
            })
            .map(|(i, end)| (i, *end))
            .collect()
    });
    let mut stats = ExchangeStats {
        segments_compared: shared.len(),
        ..ExchangeStats::default()
    };
    let mut differing_segments = Vec::new();
    for chunk in shared.chunks(SEGMENTS_PER_REQUEST_MAX) {
        let request = proto::SegmentRootsRequest {
            segment_ends: chunk.iter().map(|(_, end)| *end).collect(),
        };
        let roots = peer
            .call(request, async |mut c, r| c.segment_roots(r).await)
            .await?
            .roots;
        if roots.len() != chunk.len() {
            return Err(peer.bad(format!("{} roots for {} segments", roots.len(), chunk.len())));
        }
        let mine: Vec<u64> = core
            .store
            .index()
            .with(|trees| chunk.iter().map(|(i, _)| trees.root(*i)).collect());
        differing_segments.extend(
            chunk
                .iter()
                .zip(mine.iter().zip(&roots))
                .filter(|(_, (a, b))| a != b)
                .map(|(s, _)| *s),
        );
    }
    stats.segments_differing = differing_segments.len();

    for (segment, end) in differing_segments {
        if stats.keys_repaired >= REPAIRS_PER_ROUND_MAX {
            break;
        }
        let request = proto::SegmentLeavesRequest { segment_end: end };
        let theirs = peer
            .call(request, async |mut c, r| c.segment_leaves(r).await)
            .await?
            .leaves;
        if theirs.len() != SEGMENT_LEAVES {
            return Err(peer.bad(format!("{} leaves, expected {SEGMENT_LEAVES}", theirs.len())));
        }
        let leaves = core
            .store
            .index()
            .with(|trees| trees.differing_leaves(segment, &theirs));
        for leaf in leaves {
            let request = proto::LeafDigestsRequest {
                segment_end: end,
                leaf: leaf as u32,
            };
            let response = peer.call(request, async |mut c, r| c.leaf_digests(r).await).await?;
            let theirs: Vec<(Vec<u8>, u64)> = response
                .entries
                .into_iter()
                .map(|e| (e.key.to_vec(), e.digest))
                .collect();
            let mine = leaf_digests(core, LeafId { segment, leaf }).await?;
            let keys = differing_keys(&mine, &theirs);
            stats.keys_differing += keys.len();
            for key in keys {
                let key = core.config.limits.key(key).map_err(|e| peer.bad(e.to_string()))?;
                if repair_key(core, &mut peer, key).await? {
                    stats.keys_repaired += 1;
                }
            }
        }
    }
    stats.bytes = peer.bytes;
    core.metrics.anti_entropy_exchanges.inc();
    core.metrics
        .anti_entropy_keys_repaired
        .inc_by(stats.keys_repaired as u64);
    core.metrics.anti_entropy_bytes.inc_by(stats.bytes);
    Ok(stats)
}

/// The keys this node stores in one leaf, with their digests.
pub async fn leaf_digests(
    core: &NodeCore,
    leaf: LeafId,
) -> Result<Vec<(Vec<u8>, u64)>, crate::local_store::StoreError> {
    let (first, last) = core.store.index().with(|trees| trees.leaf_bounds(leaf));
    let intervals = if first <= last {
        vec![(first, last)]
    } else {
        vec![(first, Position::MAX), (0, last)]
    };
    let mut out = Vec::new();
    for (lo, hi) in intervals {
        let page = core.store.scan(lo, hi, None, LEAF_KEYS_MAX).await?;
        if page.len() == LEAF_KEYS_MAX {
            tracing::warn!(
                ?leaf,
                "leaf holds {LEAF_KEYS_MAX}+ keys; anti-entropy sees only the first"
            );
        }
        out.extend(
            page.into_iter()
                .filter_map(|(k, s)| digest(&s).map(|d| (k.as_bytes().to_vec(), d))),
        );
    }
    Ok(out)
}

/// Merges this node's and the peer's state of `key` and gives each side what it lacks.
async fn repair_key(core: &NodeCore, peer: &mut Peer<'_>, key: Key) -> Result<bool, ExchangeError> {
    let request = proto::ReplicaReadRequest {
        key: key.bytes().clone(),
    };
    let response = peer.call(request, async |mut c, r| c.read(r).await).await?;
    let theirs = if response.state.is_empty() {
        KeyState::new()
    } else {
        record::decode(&response.state).map_err(|e| peer.bad(e.to_string()))?
    };
    let mine = core.store.get(key.clone()).await?.unwrap_or_default();
    let mut merged = mine.clone();
    merged.merge(&theirs);
    let mut repaired = false;
    if merged != mine {
        core.store.merge(key.clone(), theirs.clone()).await?;
        repaired = true;
    }
    if merged != theirs {
        let request = proto::ReplicaMergeRequest {
            key: key.bytes().clone(),
            state: Bytes::from(record::encode(&merged)),
            hint_for: String::new(),
        };
        peer.call(request, async |mut c, r| c.merge(r).await).await?;
        repaired = true;
    }
    Ok(repaired)
}

/// Exchanges with one live peer per interval, round-robin.
pub async fn anti_entropy_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.anti_entropy_interval, shutdown);
    let mut next = 0usize;
    while rounds.next().await {
        let ring = core.membership.ring();
        let peers: Vec<&NodeId> = ring
            .members()
            .iter()
            .map(|m| &m.id)
            .filter(|id| *id != core.me())
            .collect();
        // The next live peer after the last one; at most one exchange per round.
        let Some(index) = (0..peers.len())
            .map(|offset| (next + offset) % peers.len())
            .find(|i| core.membership.is_alive(peers[*i]))
        else {
            continue;
        };
        next = index + 1;
        let peer = peers[index];
        match exchange(&core, peer).await {
            Ok(stats) if stats.keys_repaired > 0 => tracing::info!(%peer, ?stats, "anti-entropy repaired keys"),
            Ok(_) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "anti-entropy exchange failed"),
        }
    }
}
