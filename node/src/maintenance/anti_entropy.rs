//! Anti-entropy: replicas compare hash trees and repair exactly the keys that differ.
//!
//! Every interval this node picks the next live peer (round-robin in id order) and runs
//! [`exchange`] with it over the ring segments both replicate: compare segment roots,
//! fetch the leaves of segments that differ, fetch the key digests of leaves that differ,
//! and for each differing key merge the two states and send the merge to whichever side
//! lacked it. Merging follows the causality rules, so a repair never overwrites a
//! concurrent sibling. A round repairs at most [`REPAIRS_PER_ROUND_MAX`] keys, and rounds
//! are sequential, so repair traffic stays a trickle beside client requests.
//!
//! An exchange is a conversation with one peer, so it talks to it through the peer's
//! [`Replica`] handle directly (counting the traffic); no quorum is involved.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_ring::{NodeId, Position};
use ringkv_storage::merkle::{differing_keys, LeafId};
use ringkv_storage::SegmentTrees;
use ringkv_storage::{record, Key};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rounds::Rounds;
use crate::node_core::NodeCore;
use crate::replica::service::SEGMENTS_PER_REQUEST_MAX;
use crate::replica::{Replica, ReplicaError};
use crate::store::{leaf_order, StoreError};

/// Most keys one exchange repairs; the rest wait for the next round.
pub(crate) const REPAIRS_PER_ROUND_MAX: usize = 1000;

/// Most pages of one leaf an exchange reads (of `LEAF_PAGE_KEYS_MAX` keys each: a leaf of
/// ten million keys, 640 million per segment).
const LEAF_PAGES_MAX: usize = 1000;

/// Most keys one exchange examines as different (read from the peer to repair).
const DIFFERING_PER_ROUND_MAX: usize = 10 * REPAIRS_PER_ROUND_MAX;

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
pub(crate) enum ExchangeError {
    /// A call to the peer failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] StoreError),
    /// The ring changed during the exchange, so its segments are not the ones it
    /// compared; the next round starts over on the new ring.
    #[error("the ring changed during the exchange")]
    RingChanged,
}

/// The index of the segment ending at `end` in today's trees. Segments are named by their
/// end across every await of an exchange: the trees are rebuilt when the ring changes,
/// and an index taken before would then name another segment, or none.
fn segment_index(trees: &SegmentTrees, end: Position) -> Result<usize, ExchangeError> {
    trees
        .segment_ends()
        .binary_search(&end)
        .map_err(|_| ExchangeError::RingChanged)
}

/// Runs one anti-entropy exchange with `peer_id` and returns what it did.
pub(crate) async fn exchange(core: &Arc<NodeCore>, peer_id: &NodeId) -> Result<ExchangeStats, ExchangeError> {
    let (peer, traffic) = Replica::new(core, peer_id.clone()).counting_traffic();
    let deadline = || Instant::now() + core.config.request_timeout;
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
        let ends = chunk.iter().map(|(_, end)| *end).collect();
        let roots = peer.segment_roots(ends, deadline()).await?;
        let mine: Vec<u64> = core.store.index().with(|trees| {
            chunk
                .iter()
                .map(|(_, end)| segment_index(trees, *end).map(|i| trees.root(i)))
                .collect::<Result<_, _>>()
        })?;
        differing_segments.extend(
            chunk
                .iter()
                .zip(mine.iter().zip(&roots))
                .filter(|(_, (a, b))| a != b)
                .map(|(s, _)| *s),
        );
    }
    stats.segments_differing = differing_segments.len();

    'segments: for (_, end) in differing_segments {
        if stats.keys_repaired >= REPAIRS_PER_ROUND_MAX {
            break;
        }
        let theirs = peer.segment_leaves(end, deadline()).await?;
        let leaves = core
            .store
            .index()
            .with(|trees| segment_index(trees, end).map(|segment| trees.differing_leaves(segment, &theirs)))?;
        for leaf in leaves {
            if !compare_leaf(core, &peer, peer_id, end, leaf, &mut stats).await? {
                break 'segments;
            }
        }
    }
    stats.bytes = traffic.bytes();
    core.metrics.anti_entropy_exchanges.inc();
    core.metrics
        .anti_entropy_keys_repaired
        .inc_by(stats.keys_repaired as u64);
    core.metrics.anti_entropy_bytes.inc_by(stats.bytes);
    Ok(stats)
}

/// Compares one leaf with the peer's, page by page, and repairs the keys that differ;
/// returns whether the round may go on (false once it repaired its most).
///
/// A page of either side ends where that side's `next` says; the keys both sides have
/// listed completely are those up to the nearer of the two, so each step compares those
/// and starts the next from there. A leaf of any size is compared whole, two pages of
/// memory at a time.
async fn compare_leaf(
    core: &NodeCore,
    peer: &Replica,
    peer_id: &NodeId,
    end: Position,
    leaf: usize,
    stats: &mut ExchangeStats,
) -> Result<bool, ExchangeError> {
    let deadline = || Instant::now() + core.config.request_timeout;
    let (first, last) = core
        .store
        .index()
        .with(|trees| segment_index(trees, end).map(|segment| trees.leaf_bounds(LeafId { segment, leaf })))?;
    // A key's offset from the leaf's start; within the leaf when at most `span`.
    let span = last.wrapping_sub(first);
    let in_leaf = |key: &Key| key.position().wrapping_sub(first) <= span;
    let mut after: Option<Key> = None;
    for _ in 0..LEAF_PAGES_MAX {
        let theirs = peer.leaf_digests(end, leaf, after.clone(), deadline()).await?;
        let mine = core
            .store
            .leaf_digests(end, leaf, after.clone())
            .await?
            .ok_or(ExchangeError::RingChanged)?;
        // A peer whose leaf is not ours (its ring differs: its pages are cut elsewhere)
        // cannot be compared with this leaf until the rings agree.
        if theirs.next.as_ref().is_some_and(|next| !in_leaf(next)) {
            return Err(ExchangeError::RingChanged);
        }
        let upto = match (mine.next, theirs.next) {
            (None, None) => None,
            (Some(next), None) | (None, Some(next)) => Some(next),
            (Some(a), Some(b)) => Some(if leaf_order(first, &a) <= leaf_order(first, &b) {
                a
            } else {
                b
            }),
        };
        // The keys both sides have listed completely: after `after`, up to `upto`, in the
        // leaf (a peer's entries outside that are not taken on trust).
        let listed = |entries: Vec<(Key, u64)>| -> Vec<(Vec<u8>, u64)> {
            entries
                .into_iter()
                .filter(|(k, _)| {
                    in_leaf(k)
                        && after
                            .as_ref()
                            .is_none_or(|a| leaf_order(first, k) > leaf_order(first, a))
                        && upto
                            .as_ref()
                            .is_none_or(|u| leaf_order(first, k) <= leaf_order(first, u))
                })
                .map(|(k, digest)| (k.as_bytes().to_vec(), digest))
                .collect()
        };
        let keys = differing_keys(&listed(mine.entries), &listed(theirs.entries));
        for key in keys {
            // Keys that differ and those repaired are both bounded: a key found different
            // can turn out the same once read (it changed meanwhile), and a peer could
            // list keys it does not have.
            if stats.keys_repaired >= REPAIRS_PER_ROUND_MAX || stats.keys_differing >= DIFFERING_PER_ROUND_MAX {
                return Ok(false);
            }
            stats.keys_differing += 1;
            let key = core.config.limits.key(key).map_err(|e| ReplicaError::BadAnswer {
                node: peer_id.clone(),
                reason: format!("key: {e}"),
            })?;
            if repair_key(core, peer, key, deadline()).await? {
                stats.keys_repaired += 1;
            }
        }
        let Some(upto) = upto else {
            return Ok(true);
        };
        // A page always moves on (it holds at least one key past `after`); one that does
        // not comes from a peer whose leaf is cut differently (or that answers wrongly).
        if after
            .as_ref()
            .is_some_and(|a| leaf_order(first, &upto) <= leaf_order(first, a))
        {
            return Err(ExchangeError::RingChanged);
        }
        after = Some(upto);
    }
    tracing::warn!(
        leaf,
        pages = LEAF_PAGES_MAX,
        "leaf larger than the page bound; compared in part this round"
    );
    Ok(true)
}

/// Merges this node's and the peer's state of `key` and gives each side what it lacks.
async fn repair_key(core: &NodeCore, peer: &Replica, key: Key, deadline: Instant) -> Result<bool, ExchangeError> {
    let theirs = peer.read(&key, deadline).await?;
    let mine = core.store.get(key.clone()).await?.unwrap_or_default();
    let mut merged = mine.clone();
    merged.merge(&theirs);
    let mut repaired = false;
    if merged != mine {
        core.store.merge(key.clone(), theirs.clone()).await?;
        repaired = true;
    }
    if merged != theirs {
        let encoded = Bytes::from(record::encode(&merged));
        peer.merge(&key, &merged, &encoded, None, deadline).await?;
        repaired = true;
    }
    Ok(repaired)
}

/// Exchanges with one live peer per interval, round-robin.
pub(crate) async fn anti_entropy_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.anti_entropy_interval, shutdown);
    let mut next = 0usize;
    while rounds.next().await {
        if core.removed_from_cluster() {
            // Its peers refuse its replica traffic (`crate::replica::fence`): pushing
            // would only be refused again.
            continue;
        }
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
