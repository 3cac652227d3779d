//! Moving data when the ring changes.
//!
//! Two mechanisms, one per direction:
//!
//! - **Pull** ([`pull_ranges`]): a node that gains ranges computes which
//!   ([`Ring::diff`]) and streams each from every live node that held it, page by page
//!   ([`Replica::scan`]), merging each page as one batch. Every holder, not one: a write
//!   acknowledged by W of the old replicas may be on only W of them, so any one source
//!   may lack it. Paging is the back-pressure: the next page is asked for only after the
//!   last one is stored. [`pull_own_ranges`] is the whole join: wait for gossip to show
//!   the members, pull, announce up. [`gained_ranges_loop`] does the same for a member
//!   that is up when the ring changes under it (a member removed or gone, another's
//!   tokens moved): without it the new replica of a removed node's ranges would hold
//!   nothing until anti-entropy, and with anti-entropy off, never.
//! - **Hand-off** ([`handoff_foreign_round`]): every node looks for keys it stores but no
//!   longer replicates (after a join displaced it, or while it is leaving). For each, it
//!   makes sure every current replica holds the key (pushing its copy where missing) and
//!   only then deletes its own, so a range is dropped only after the new holders
//!   confirmed it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_ring::{Member, NodeId, Position, RangeMove, Ring};
use ringkv_storage::{record, Key, KeyState};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rounds::Rounds;
use crate::membership::join::Discovery;
use crate::membership::LocalState;
use crate::node_core::NodeCore;
use crate::replica::quorum::{QuorumCall, Slot};
use crate::replica::{Replica, ReplicaError};
use crate::store::StoreError;

/// Keys per `ScanRange` page.
pub(crate) const TRANSFER_PAGE_KEYS: usize = 512;
/// Ranges pulled at the same time by a joining node.
pub(crate) const PULLS_IN_FLIGHT_MAX: usize = 8;
/// Keys examined per hand-off round.
pub(crate) const HANDOFF_KEYS_PER_ROUND_MAX: usize = 1000;
/// How long a new node waits for gossip to show the members its seeds reported.
pub(crate) const MEMBERS_WAIT_MAX: Duration = Duration::from_secs(20);
/// Attempts at pulling a joining node's ranges before it gives up (and stays joining).
pub(crate) const PULL_ATTEMPTS_MAX: u32 = 20;

/// What a pull moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PullStats {
    /// Ranges pulled.
    pub ranges: usize,
    /// Keys received: for each range, the most any one holder sent (copies of a key
    /// from several holders count once, as nearly as a count without a set can).
    pub keys: u64,
    /// Record bytes received.
    pub bytes: u64,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
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
    Store(#[from] StoreError),
}

/// Waits until this node's ring holds the members the seeds reported, then pulls this
/// node's ranges and announces it up.
pub(crate) async fn pull_own_ranges(core: &Arc<NodeCore>, discovery: &Discovery) -> Result<PullStats, TransferError> {
    let deadline = Instant::now() + MEMBERS_WAIT_MAX;
    loop {
        let ring = core.membership.ring();
        let seen = discovery
            .members
            .iter()
            .all(|m| ring.members().iter().any(|r| r.id.as_str() == m));
        if (seen && ring.contains(core.me())) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut attempt = 0;
    loop {
        let new = core.membership.ring();
        let others: Vec<Member> = new.members().iter().filter(|m| m.id != *core.me()).cloned().collect();
        let old = Ring::new(others).unwrap_or_else(|_| unreachable!("a subset of a valid ring is valid"));
        match pull_ranges(core, &old, &new).await {
            Ok(stats) => {
                core.membership.set_local_state(LocalState::Up);
                return Ok(stats);
            }
            // Merging the same ranges again is harmless: a retry starts over.
            Err(e) if attempt < PULL_ATTEMPTS_MAX => {
                attempt += 1;
                tracing::warn!(node = %core.me(), error = %e, attempt, "join: pulling ranges failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pulls every range this node gains going from `old` to `new`.
pub(crate) async fn pull_ranges(core: &Arc<NodeCore>, old: &Ring, new: &Ring) -> Result<PullStats, TransferError> {
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

/// Pulls one range from the nodes that held it before: from each live one, or, when none
/// of those answers, from the first of the others that does (the failure detector may
/// not have seen them yet: a joining node's view is minutes old at most, seconds at best).
/// A removed node is never asked: its copies may be older than a purge.
async fn pull_range(core: &Arc<NodeCore>, change: &RangeMove) -> Result<PullStats, TransferError> {
    let mut stats = PullStats {
        ranges: 1,
        ..PullStats::default()
    };
    let holders = change
        .from
        .iter()
        .filter(|n| *n != core.me() && !core.membership.is_removed(n));
    let (live, others): (Vec<NodeId>, Vec<NodeId>) = holders.cloned().partition(|n| core.membership.is_alive(n));
    let no_source = |tried: String| TransferError::NoSource {
        range: change.range.to_string(),
        tried,
    };
    for (first, last) in change.range.scan_bounds() {
        let mut pulled = 0;
        let mut most_keys = 0;
        for source in &live {
            let mut from_source = PullStats::default();
            let outcome = pull_interval(core, std::slice::from_ref(source), first, last, &mut from_source).await;
            stats.bytes += from_source.bytes;
            most_keys = most_keys.max(from_source.keys);
            match outcome {
                Ok(()) => pulled += 1,
                Err(PullError::Store(e)) => return Err(TransferError::Store(e)),
                Err(PullError::NoSource { tried }) => {
                    tracing::debug!(node = %core.me(), range = %change.range, %tried, "a holder did not answer a pull");
                }
            }
        }
        stats.keys += most_keys;
        if pulled == 0 {
            pull_interval(core, &others, first, last, &mut stats)
                .await
                .map_err(|error| match error {
                    PullError::Store(e) => TransferError::Store(e),
                    PullError::NoSource { tried } => no_source(tried),
                })?;
        }
    }
    Ok(stats)
}

/// Pulls the ranges this node gains when the ring changes while it is up, until shutdown
/// (a joining node pulls its own in [`pull_own_ranges`]; a leaving one gains nothing).
/// Each change is pulled, with retries, before the next is looked at; the next diff
/// starts from the ring this one ended at, so changes that came meanwhile are not lost.
pub(crate) async fn gained_ranges_loop(core: Arc<NodeCore>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = core.membership.ring_changes();
    let mut current = core.membership.ring();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let ring = changes.borrow_and_update().clone();
        let old = std::mem::replace(&mut current, Arc::clone(&ring));
        if core.membership.local_state() != LocalState::Up || core.removed_from_cluster() || !old.contains(core.me()) {
            continue;
        }
        for attempt in 1..=PULL_ATTEMPTS_MAX {
            match pull_ranges(&core, &old, &ring).await {
                Ok(stats) => {
                    if stats.ranges > 0 {
                        tracing::info!(node = %core.me(), ?stats, "pulled the ranges a ring change gave this node");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(node = %core.me(), error = %e, attempt, "pulling gained ranges failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

enum PullError {
    NoSource { tried: String },
    Store(StoreError),
}

/// Pulls `[first, last]` page by page. Each page is one quorum call of one answer: the
/// source that gave the last page first, the holders not yet tried as spares; a source
/// that fails is not asked again, and the next one resumes after the last key stored.
async fn pull_interval(
    core: &Arc<NodeCore>,
    sources: &[NodeId],
    first: Position,
    last: Position,
    stats: &mut PullStats,
) -> Result<(), PullError> {
    let mut after: Option<Key> = None;
    let mut sources: VecDeque<NodeId> = sources.iter().cloned().collect();
    let mut tried: Vec<String> = Vec::new();
    let timeout = core.config.request_timeout;
    while let Some(source) = sources.pop_front() {
        // Each source gets a whole request timeout (one that hangs does not use up the
        // next one's), and the page as many as it has sources.
        let attempts = u32::try_from(sources.len() + 1).unwrap_or(u32::MAX);
        let page_deadline = Instant::now() + timeout.saturating_mul(attempts);
        let (asking, resume) = (Arc::clone(core), after.clone());
        let mut page = QuorumCall::start([source], sources.iter().cloned(), move |slot: &Slot| {
            let replica = Replica::new(&asking, slot.node.clone());
            let resume = resume.clone();
            let deadline = Instant::now() + timeout;
            Box::pin(async move {
                replica
                    .scan(first, last, resume.as_ref(), TRANSFER_PAGE_KEYS, deadline)
                    .await
            })
        });
        page.wait_for(1, None, page_deadline).await;
        for node in page.asked() {
            if !tried.contains(&node.to_string()) {
                tried.push(node.to_string());
            }
        }
        let Some((answered, entries)) = page.answers().first() else {
            break;
        };
        // One answer at a time: every source asked before the one that answered failed,
        // and is not asked again; the one that answered gives the next page.
        sources.retain(|n| !page.asked().contains(n));
        sources.push_front(answered.node.clone());
        if entries.is_empty() {
            return Ok(());
        }
        stats.bytes += entries.iter().map(|(_, s)| record::encode(s).len() as u64).sum::<u64>();
        stats.keys += entries.len() as u64;
        after = entries.last().map(|(k, _)| k.clone());
        core.store
            .merge_batch(entries.clone())
            .await
            .map_err(PullError::Store)?;
    }
    Err(PullError::NoSource {
        tried: tried.join(", "),
    })
}

/// What a hand-off round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandoffStats {
    /// Keys examined.
    pub examined: usize,
    /// Keys stored here that this node no longer replicates.
    pub foreign: usize,
    /// Copies pushed to replicas that lacked them.
    pub pushed: usize,
    /// Foreign keys deleted after every replica confirmed them.
    pub dropped: usize,
}

/// Hands keys this node no longer replicates to their owners, then drops them; once a
/// leaving node holds nothing (no key and no hint: hint hand-off re-homes those), marks
/// it as left.
pub(crate) async fn ownership_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.handoff_interval, shutdown);
    let mut cursor = None;
    let mut foreign_this_pass = 0u64;
    while rounds.next().await {
        if core.removed_from_cluster() {
            // Its peers refuse its replica traffic (`crate::replica::fence`): pushing
            // would only be refused again.
            continue;
        }
        match handoff_foreign_round(&core, &mut cursor).await {
            Ok(stats) => {
                foreign_this_pass += stats.foreign as u64;
                if cursor.is_none() {
                    // A full pass over the store ended: publish what is still to move.
                    core.metrics.transfers_pending.set(foreign_this_pass as i64);
                    foreign_this_pass = 0;
                }
                if core.membership.local_state() == LocalState::Leaving
                    && stats.examined == 0
                    && matches!(core.store.scan(0, Position::MAX, None, 1).await, Ok(page) if page.is_empty())
                    && matches!(core.store.hint_counts().await, Ok(counts) if counts.iter().all(|(_, n)| *n == 0))
                {
                    if !*core.left.borrow() {
                        tracing::info!(node = %core.me(), "left the cluster: all data handed over");
                        core.membership.handed_everything_over();
                    }
                    core.left.send_replace(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ownership hand-off round failed"),
        }
    }
}

/// One hand-off round over the next page of keys; `cursor` carries the position.
pub(crate) async fn handoff_foreign_round(
    core: &Arc<NodeCore>,
    cursor: &mut Option<Key>,
) -> Result<HandoffStats, TransferError> {
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
        // Every owner must confirm the key (holding it already, or after a push).
        let deadline = Instant::now() + core.config.request_timeout;
        let owners: Vec<NodeId> = pref.iter().cloned().collect();
        let (pushing, key_for_call) = (Arc::clone(core), key.clone());
        let encoded = Bytes::from(record::encode(&state));
        let state_for_call = state.clone();
        let confirm = QuorumCall::start(owners, [], move |slot: &Slot| {
            let owner = Replica::new(&pushing, slot.node.clone());
            let (key, state, encoded) = (key_for_call.clone(), state_for_call.clone(), encoded.clone());
            Box::pin(async move { confirm_or_push(&owner, &key, &state, &encoded, deadline).await })
        });
        let confirmed = confirm.finish(deadline).await;
        stats.pushed += confirmed.answers.iter().filter(|(_, pushed)| *pushed).count();
        if confirmed.answers.len() == pref.len() && core.store.remove_if_unchanged(key, state).await? {
            stats.dropped += 1;
        }
    }
    core.metrics.transfer_keys_handed_off.inc_by(stats.dropped as u64);
    Ok(stats)
}

/// Makes sure `owner` holds everything of `state`. Returns whether a push was needed.
async fn confirm_or_push(
    owner: &Replica,
    key: &Key,
    state: &KeyState,
    encoded: &Bytes,
    deadline: Instant,
) -> Result<bool, ReplicaError> {
    let theirs = owner.read(key, deadline).await?;
    if theirs.covers(state) {
        return Ok(false);
    }
    owner.merge(key, state, encoded, None, deadline).await?;
    Ok(true)
}
