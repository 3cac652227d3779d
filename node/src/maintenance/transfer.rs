//! Moving data when the ring changes.
//!
//! Two mechanisms, one per direction:
//!
//! - **Pull** ([`pull_ranges`]): a joining node computes which ranges it gains
//!   ([`Ring::diff`]) and streams each from a current holder, page by page
//!   (`Replica/ScanRange`), merging each page as one batch. Paging is the back-pressure:
//!   the next page is asked for only after the last one is stored.
//! - **Hand-off** ([`handoff_foreign_round`]): every node looks for keys it stores but no
//!   longer replicates (after a join displaced it, or while it is leaving). For each, it
//!   makes sure every current replica holds the key (pushing its copy where missing) and
//!   only then deletes its own, so a range is dropped only after the new holders
//!   confirmed it.

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::{NodeId, Position, RangeMove, Ring};
use ringkv_storage::{record, Key, KeyState};

use crate::node_core::NodeCore;

/// Keys per `ScanRange` page.
pub const TRANSFER_PAGE_KEYS: usize = 512;
/// Ranges pulled at the same time by a joining node.
pub const PULLS_IN_FLIGHT_MAX: usize = 8;
/// Keys examined per hand-off round.
pub const HANDOFF_KEYS_PER_ROUND_MAX: usize = 1000;

/// What a pull moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PullStats {
    /// Ranges pulled.
    pub ranges: usize,
    /// Keys received.
    pub keys: u64,
    /// Record bytes received.
    pub bytes: u64,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// No holder of a range answered.
    #[error("no holder of range {range} answered (tried {tried})")]
    NoSource {
        /// The range.
        range: String,
        /// Nodes tried.
        tried: String,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] crate::local_store::StoreError),
}

/// Pulls every range this node gains going from `old` to `new`.
pub async fn pull_ranges(core: &NodeCore, old: &Ring, new: &Ring) -> Result<PullStats, TransferError> {
    let me = core.me();
    let mut total = PullStats::default();
    if old.physical_node_count() == 0 {
        return Ok(total);
    }
    let diff = old.diff(new, core.config.replicas);
    let gained: Vec<&RangeMove> = diff.moves.iter().filter(|m| m.gained().contains(me)).collect();
    // A few ranges at a time: enough to hide round trips, few enough that clients of
    // this node and of the holders are not crowded out.
    for chunk in gained.chunks(PULLS_IN_FLIGHT_MAX) {
        let mut pulls = Vec::with_capacity(chunk.len());
        for change in chunk {
            pulls.push(pull_range(core, change));
        }
        for result in futures::future::join_all(pulls).await {
            let stats = result?;
            total.ranges += stats.ranges;
            total.keys += stats.keys;
            total.bytes += stats.bytes;
        }
    }
    core.metrics.transfer_keys_received.inc_by(total.keys);
    Ok(total)
}

/// Pulls one range from the nodes that held it before.
async fn pull_range(core: &NodeCore, change: &RangeMove) -> Result<PullStats, TransferError> {
    let mut stats = PullStats {
        ranges: 1,
        ..PullStats::default()
    };
    let sources: Vec<&NodeId> = change.from.iter().filter(|n| *n != core.me()).collect();
    for (first, last) in change.range.scan_bounds() {
        pull_interval(core, &sources, first, last, &mut stats)
            .await
            .map_err(|tried| TransferError::NoSource {
                range: change.range.to_string(),
                tried,
            })?;
    }
    Ok(stats)
}

async fn pull_interval(
    core: &NodeCore,
    sources: &[&NodeId],
    first: Position,
    last: Position,
    stats: &mut PullStats,
) -> Result<(), String> {
    let mut after: Option<Key> = None;
    let mut tried = Vec::new();
    // Live holders first; the others too, in case the failure detector has not yet seen
    // them (a joining node's view is minutes old at most, seconds at best).
    let ordered = sources
        .iter()
        .filter(|n| core.membership.is_alive(n))
        .chain(sources.iter().filter(|n| !core.membership.is_alive(n)));
    'sources: for source in ordered.copied() {
        tried.push(source.to_string());
        let Some(address) = core.membership.address(source) else {
            continue;
        };
        let mut client = core.peers.replica(source, address);
        loop {
            let request = proto::ScanRangeRequest {
                first,
                last,
                after_key: after.as_ref().map(|k| k.bytes().clone()).unwrap_or_default(),
                limit: TRANSFER_PAGE_KEYS as u32,
            };
            let page = match tokio::time::timeout(core.config.request_timeout, client.scan_range(request)).await {
                Ok(Ok(page)) => page.into_inner().entries,
                // Resume from the same key on the next source.
                _ => continue 'sources,
            };
            if page.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::with_capacity(page.len());
            for entry in page {
                stats.bytes += entry.state.len() as u64;
                let (Ok(key), Ok(state)) = (core.config.limits.key(entry.key), record::decode(&entry.state)) else {
                    continue 'sources;
                };
                batch.push((key, state));
            }
            stats.keys += batch.len() as u64;
            after = batch.last().map(|(k, _)| k.clone());
            if core.store.merge_batch(batch).await.is_err() {
                return Err("the local store failed".to_owned());
            }
        }
    }
    Err(tried.join(", "))
}

/// What a hand-off round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HandoffStats {
    /// Keys examined.
    pub examined: usize,
    /// Keys stored here that this node no longer replicates.
    pub foreign: usize,
    /// Copies pushed to replicas that lacked them.
    pub pushed: usize,
    /// Foreign keys deleted after every replica confirmed them.
    pub dropped: usize,
}

/// One hand-off round over the next page of keys; `cursor` carries the position.
pub async fn handoff_foreign_round(core: &NodeCore, cursor: &mut Option<Key>) -> Result<HandoffStats, TransferError> {
    let page = core
        .store
        .scan(0, Position::MAX, cursor.clone(), HANDOFF_KEYS_PER_ROUND_MAX)
        .await?;
    *cursor = page.last().map(|(k, _)| k.clone());
    let ring = core.membership.ring();
    let mut stats = HandoffStats {
        examined: page.len(),
        ..HandoffStats::default()
    };
    for (key, state) in page {
        let pref = ring.preference_list(key.position(), core.config.replicas);
        if pref.is_empty() || pref.contains(core.me()) {
            continue;
        }
        stats.foreign += 1;
        let mut confirmed = 0;
        for owner in pref.iter() {
            match confirm_or_push(core, owner, &key, &state).await {
                Some(pushed) => {
                    confirmed += 1;
                    stats.pushed += usize::from(pushed);
                }
                None => break,
            }
        }
        if confirmed == pref.len() && core.store.remove_if_unchanged(key, state).await? {
            stats.dropped += 1;
        }
    }
    core.metrics.transfer_keys_handed_off.inc_by(stats.dropped as u64);
    Ok(stats)
}

/// Makes sure `owner` holds everything of `state`. Returns whether a push was needed,
/// or `None` if the owner could not be reached.
async fn confirm_or_push(core: &NodeCore, owner: &NodeId, key: &Key, state: &KeyState) -> Option<bool> {
    if !core.membership.is_alive(owner) {
        return None;
    }
    let address = core.membership.address(owner)?;
    let mut client = core.peers.replica(owner, address);
    let timeout = core.config.request_timeout;
    let read = proto::ReplicaReadRequest {
        key: key.bytes().clone(),
    };
    let theirs = match tokio::time::timeout(timeout, client.read(read)).await {
        Ok(Ok(answer)) => answer.into_inner().state,
        _ => return None,
    };
    let theirs = if theirs.is_empty() {
        KeyState::new()
    } else {
        record::decode(&theirs).ok()?
    };
    if theirs.covers(state) {
        return Some(false);
    }
    let merge = proto::ReplicaMergeRequest {
        key: key.bytes().clone(),
        state: Bytes::from(record::encode(state)),
        hint_for: String::new(),
    };
    match tokio::time::timeout(timeout, client.merge(merge)).await {
        Ok(Ok(_)) => Some(true),
        _ => None,
    }
}
