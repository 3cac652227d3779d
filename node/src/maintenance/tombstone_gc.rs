//! Tombstone garbage collection.
//!
//! A deleted (or expired) key keeps a tombstone so that a replica that missed the delete
//! cannot bring the old value back. A tombstone may go only when nothing can bring the old
//! value back any more. This node purges a dead key when, and only when:
//!
//! 1. it is the first node of the key's preference list (one coordinator per key),
//! 2. the key has been dead for at least the grace period (`tombstone_grace`, which is at
//!    least the request timeout, so no write that began before the delete is in flight),
//!    by this node's clock less `clock_skew_max`, and every holder's clock (read in its
//!    `Replica/GcCheck` answer) is within `clock_skew_max` of this node's: so the grace
//!    has passed by every holder's clock too,
//! 3. every node that may hold a copy is alive and answered: the ring's members and the
//!    members still leaving (or stopped while leaving: their leave is not done until
//!    they have handed everything over, `Fate::Gone`). Every replica holds exactly the
//!    same state; any other node holds nothing for the key or exactly that state (a
//!    displaced node still handing a key over after a join blocks the purge until it has
//!    dropped its copy); and no node holds a hint for the key.
//!
//! Then each holder deletes its record if it is still unchanged (`Replica/Purge`). A
//! node that is down blocks the purge until it is back and has the tombstone (by
//! hand-off or anti-entropy). A node an operator removed cannot be asked (it may still
//! run, cut off, with old copies); its replica traffic is refused instead
//! (`crate::replica::fence`), so it cannot push a purged value back. Keys written again
//! after a purge take dot counters from the node's node-wide sequence
//! (`crate::identity`), so old contexts cannot cover them.
//!
//! Expiry is judged the same way. A value whose TTL ran out becomes a tombstone (which
//! wins over the value on every replica it reaches), so one node that judged it early
//! would delete it early everywhere. Only the key's coordinator turns expired values
//! into tombstones, only once the TTL is `clock_skew_max` past by its clock, and only
//! while every replica answers with a clock within that bound; it then hands the
//! tombstones to the replicas. Reads hide an expired value by the reading node's own
//! clock meanwhile.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_ring::{NodeId, Position};
use ringkv_storage::injected_bug::{self, Bug};
use ringkv_storage::{record, Key, KeyState};
use tokio::sync::watch;
use tokio::time::Instant;

use super::rounds::Rounds;
use crate::node_core::NodeCore;
use crate::replica::quorum::{QuorumCall, Slot};
use crate::replica::{GcCheck, Replica};
use crate::store::StoreError;

/// Keys examined per GC round.
pub(crate) const GC_KEYS_PER_ROUND_MAX: usize = 1000;

/// What a GC round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GcStats {
    /// Keys examined.
    pub examined: usize,
    /// Siblings whose TTL ran out, turned into tombstones.
    pub expired: usize,
    /// Dead keys past the grace period that this node coordinates.
    pub candidates: usize,
    /// Keys purged from every replica.
    pub purged: usize,
}

/// Since when a dead key is dead: its latest write or expiry, in wall milliseconds.
pub(crate) fn dead_since_ms(state: &KeyState) -> u64 {
    state
        .siblings()
        .iter()
        .map(|s| s.hlc().physical_ms().max(s.expires_at_ms().unwrap_or(0)))
        .max()
        .unwrap_or(0)
}

/// One GC round over the next page of keys; `cursor` carries the position between rounds.
pub(crate) async fn gc_round(core: &Arc<NodeCore>, cursor: &mut Option<Key>) -> Result<GcStats, StoreError> {
    let page = core
        .store
        .scan(0, Position::MAX, cursor.clone(), GC_KEYS_PER_ROUND_MAX)
        .await?;
    *cursor = page.last().map(|(k, _)| k.clone());
    let mut stats = GcStats {
        examined: page.len(),
        ..GcStats::default()
    };
    let skew_max_ms = millis(core.config.clock_skew_max);
    let grace_ms = millis(core.config.tombstone_grace);
    for (key, state) in page {
        let ring = core.membership.ring();
        let pref = ring.preference_list(key.position(), core.config.replicas);
        if pref.first() != Some(core.me()) {
            continue;
        }
        // A time every holder whose clock is within the bound of this one has passed.
        let judged_ms = core.clock.wall_ms().saturating_sub(skew_max_ms);
        let expiring = state
            .siblings()
            .iter()
            .filter(|s| s.value().is_some() && s.is_expired(judged_ms))
            .count();
        let purgeable = expiring == 0
            && !state.is_empty()
            && state.is_dead(judged_ms)
            && judged_ms >= dead_since_ms(&state).saturating_add(grace_ms);
        if expiring == 0 && !purgeable {
            continue;
        }
        let replicas: Vec<NodeId> = pref.iter().cloned().collect();
        if expiring > 0 {
            if !clocks_agree(core, &replicas, &key).await {
                continue;
            }
            let expired = core
                .store
                .update(key.clone(), move |s| {
                    s.purge_expired(judged_ms);
                })
                .await?;
            hand_to_replicas(core, &replicas, &key, &expired).await;
            stats.expired += expiring;
            // The purge comes in a later round: the key is dead only from now on.
            continue;
        }
        stats.candidates += 1;
        let holders = core.membership.possible_holders();
        if try_purge(core, holders, replicas, &key, &state).await {
            stats.purged += 1;
        }
    }
    core.metrics.tombstones_purged.inc_by(stats.purged as u64);
    Ok(stats)
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `theirs_ms`, a node's wall clock read while this node's went from `sent_ms` to
/// now, is within `clock_skew_max` of this node's clock; counted and logged when not.
fn clock_agrees(core: &NodeCore, node: &NodeId, sent_ms: u64, theirs_ms: u64) -> bool {
    let skew_max_ms = millis(core.config.clock_skew_max);
    let received_ms = core.clock.wall_ms();
    if theirs_ms.saturating_add(skew_max_ms) >= sent_ms && theirs_ms <= received_ms.saturating_add(skew_max_ms) {
        return true;
    }
    core.metrics.gc_clock_skew_refused.inc();
    let offset_ms = i128::from(theirs_ms) - i128::from(sent_ms);
    tracing::warn!(
        node = %node,
        offset_ms,
        skew_max_ms,
        "a member's clock is further from this node's than clock_skew_max: expiry and purges of the keys both hold wait"
    );
    false
}

/// Whether every one of `replicas` answers and its clock agrees with this node's within
/// `clock_skew_max`: the condition for judging `key`'s expiry by this node's clock.
async fn clocks_agree(core: &Arc<NodeCore>, replicas: &[NodeId], key: &Key) -> bool {
    let deadline = Instant::now() + core.config.request_timeout;
    for node in replicas.iter().filter(|n| *n != core.me()) {
        let sent_ms = core.clock.wall_ms();
        match Replica::new(core, node.clone()).gc_check(key, deadline).await {
            Ok(check) if clock_agrees(core, node, sent_ms, check.wall_ms) => {}
            _ => return false,
        }
    }
    true
}

/// Sends `state` (a key whose expired values this node just turned into tombstones) to
/// the key's other replicas; one that misses it gets it from anti-entropy, and until then
/// its copy blocks the purge.
async fn hand_to_replicas(core: &Arc<NodeCore>, replicas: &[NodeId], key: &Key, state: &KeyState) {
    let deadline = Instant::now() + core.config.request_timeout;
    let encoded = Bytes::from(record::encode(state));
    for node in replicas.iter().filter(|n| *n != core.me()) {
        if let Err(e) = Replica::new(core, node.clone())
            .merge(key, state, &encoded, None, deadline)
            .await
        {
            tracing::debug!(%node, error = %e, "expired state not handed over; anti-entropy will");
        }
    }
}

/// Purges `key` from every holder if every node that may hold a copy (`members`)
/// answers that nothing can bring its old value back: every replica holds exactly
/// `state`, every other node nothing or exactly `state`, and nobody holds a hint for it.
async fn try_purge(
    core: &Arc<NodeCore>,
    members: Vec<NodeId>,
    replicas: Vec<NodeId>,
    key: &Key,
    state: &KeyState,
) -> bool {
    if injected_bug::active(Bug::GcSkipsReplicaCheck) {
        return purge_everywhere(core, replicas, key, state).await;
    }
    if members.iter().any(|m| !core.membership.is_alive(m)) {
        return false;
    }
    let deadline = Instant::now() + core.config.request_timeout;
    let sent_ms = core.clock.wall_ms();
    // Every member must answer (no spares: a member that does not answer blocks the purge).
    let member_count = members.len();
    let (checking, checked_key) = (Arc::clone(core), key.clone());
    let checks = QuorumCall::start(members, [], move |slot: &Slot| {
        let (member, key) = (Replica::new(&checking, slot.node.clone()), checked_key.clone());
        Box::pin(async move { member.gc_check(&key, deadline).await })
    });
    let checks = checks.finish(deadline).await;
    if checks.answers.len() != member_count {
        return false;
    }
    // The grace was judged by this node's clock: every holder's must agree with it.
    if !checks
        .answers
        .iter()
        .all(|(slot, check)| clock_agrees(core, &slot.node, sent_ms, check.wall_ms))
    {
        return false;
    }
    let unchanged = |check: &GcCheck| check.state.as_ref() == Some(state);
    let safe = checks.answers.iter().all(|(slot, check)| {
        !check.holds_hint && (unchanged(check) || (!replicas.contains(&slot.node) && check.state.is_none()))
    });
    if !safe {
        return false;
    }
    // Every holder holds exactly this tombstone and nobody holds a hint: purge it
    // everywhere it is.
    let mut holders = replicas;
    for (slot, check) in &checks.answers {
        if check.state.is_some() && !holders.contains(&slot.node) {
            holders.push(slot.node.clone());
        }
    }
    purge_everywhere(core, holders, key, state).await
}

/// Purges `key` from every replica that still holds exactly `state`, with a time budget
/// of its own; returns whether every replica did.
async fn purge_everywhere(core: &Arc<NodeCore>, replicas: Vec<NodeId>, key: &Key, state: &KeyState) -> bool {
    let deadline = Instant::now() + core.config.request_timeout;
    let replica_count = replicas.len();
    let encoded = Bytes::from(record::encode(state));
    let (purging, purged_key, expected) = (Arc::clone(core), key.clone(), state.clone());
    let purges = QuorumCall::start(replicas, [], move |slot: &Slot| {
        let replica = Replica::new(&purging, slot.node.clone());
        let (key, expected, encoded) = (purged_key.clone(), expected.clone(), encoded.clone());
        Box::pin(async move { replica.purge(&key, &expected, &encoded, deadline).await })
    });
    let purges = purges.finish(deadline).await;
    let all = purges.answers.len() == replica_count && purges.answers.iter().all(|(_, purged)| *purged);
    if all {
        tracing::debug!(?key, "tombstone purged");
    }
    all
}

/// Runs GC rounds every interval until shutdown.
pub(crate) async fn gc_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.gc_interval, shutdown);
    let mut cursor = None;
    while rounds.next().await {
        if core.removed_from_cluster() {
            // Its peers refuse its replica traffic (`crate::replica::fence`): pushing
            // would only be refused again.
            continue;
        }
        if let Err(e) = gc_round(&core, &mut cursor).await {
            tracing::warn!(error = %e, "tombstone GC round failed");
        }
    }
}
