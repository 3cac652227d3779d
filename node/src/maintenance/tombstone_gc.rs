//! Tombstone garbage collection.
//!
//! A deleted (or expired) key keeps a tombstone so that a replica that missed the delete
//! cannot bring the old value back. A tombstone may go only when nothing can bring the old
//! value back any more. This node purges a dead key when, and only when:
//!
//! 1. it is the first node of the key's preference list (one coordinator per key),
//! 2. the key has been dead for at least the grace period (`tombstone_grace`, which is at
//!    least the request timeout, so no write that began before the delete is in flight),
//! 3. every member of the cluster is alive and answered: every replica holds exactly the
//!    same state, and no node holds a hint for the key.
//!
//! Then each replica deletes its record if it is still unchanged (`Replica/Purge`). A
//! replica that is down blocks the purge until it is back and has the tombstone (by
//! hand-off or anti-entropy). Keys written again after a purge take dot counters from the
//! node's hybrid clock (`KeyState::put_with_floor`), so old contexts cannot cover them.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::Position;
use ringkv_storage::{record, Key, KeyState};
use tokio::sync::watch;

use crate::background::Rounds;
use crate::node_core::NodeCore;

/// Keys examined per GC round.
pub const GC_KEYS_PER_ROUND_MAX: usize = 1000;

/// What a GC round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcStats {
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
pub fn dead_since_ms(state: &KeyState) -> u64 {
    state
        .siblings()
        .iter()
        .map(|s| s.hlc().physical_ms().max(s.expires_at_ms().unwrap_or(0)))
        .max()
        .unwrap_or(0)
}

/// One GC round over the next page of keys; `cursor` carries the position between rounds.
pub async fn gc_round(core: &NodeCore, cursor: &mut Option<Key>) -> Result<GcStats, String> {
    let page = core
        .store
        .scan(0, Position::MAX, cursor.clone(), GC_KEYS_PER_ROUND_MAX)
        .await
        .map_err(|e| e.to_string())?;
    *cursor = page.last().map(|(k, _)| k.clone());
    let mut stats = GcStats {
        examined: page.len(),
        ..GcStats::default()
    };
    for (key, mut state) in page {
        let now_ms = core.clock.wall_ms();
        let expiring = state
            .siblings()
            .iter()
            .filter(|s| s.value().is_some() && s.is_expired(now_ms))
            .count();
        if expiring > 0 {
            state = core
                .store
                .update(key.clone(), move |s| {
                    s.purge_expired(now_ms);
                })
                .await
                .map_err(|e| e.to_string())?;
            stats.expired += expiring;
        }
        if !state.is_dead(now_ms) || state.is_empty() {
            continue;
        }
        if now_ms < dead_since_ms(&state).saturating_add(core.config.tombstone_grace.as_millis() as u64) {
            continue;
        }
        let ring = core.membership.ring();
        let pref = ring.preference_list(key.position(), core.config.replicas);
        if pref.first() != Some(core.me()) {
            continue;
        }
        stats.candidates += 1;
        if try_purge(core, &ring, &pref, &key, &state).await {
            stats.purged += 1;
        }
    }
    core.metrics.tombstones_purged.inc_by(stats.purged as u64);
    Ok(stats)
}

async fn try_purge(
    core: &NodeCore,
    ring: &ringkv_ring::Ring,
    pref: &ringkv_ring::PreferenceList,
    key: &Key,
    state: &KeyState,
) -> bool {
    let members: Vec<_> = ring.members().iter().map(|m| m.id.clone()).collect();
    if members.iter().any(|m| !core.membership.is_alive(m)) {
        return false;
    }
    let targets: Vec<_> = pref.iter().cloned().collect();
    match core.store.holds_hint(key.clone(), targets).await {
        Ok(false) => {}
        _ => return false,
    }
    for member in members.iter().filter(|m| *m != core.me()) {
        let Some(address) = core.membership.address(member) else {
            return false;
        };
        let mut client = core.peers.replica(member, address);
        let request = proto::GcCheckRequest {
            key: key.bytes().clone(),
        };
        let answer = match tokio::time::timeout(core.config.request_timeout, client.gc_check(request)).await {
            Ok(Ok(answer)) => answer.into_inner(),
            _ => return false,
        };
        if answer.holds_hint {
            return false;
        }
        if pref.contains(member) {
            let theirs = if answer.state.is_empty() {
                None
            } else {
                record::decode(&answer.state).ok()
            };
            if theirs.as_ref() != Some(state) {
                return false;
            }
        }
    }
    // Every replica holds exactly this tombstone and nobody holds a hint: purge.
    let expected = Bytes::from(record::encode(state));
    let mut all = true;
    for member in pref.iter() {
        let purged = if member == core.me() {
            core.store
                .remove_if_unchanged(key.clone(), state.clone())
                .await
                .unwrap_or(false)
        } else {
            let Some(address) = core.membership.address(member) else {
                return false;
            };
            let mut client = core.peers.replica(member, address);
            let request = proto::PurgeRequest {
                key: key.bytes().clone(),
                expected_state: expected.clone(),
            };
            matches!(
                tokio::time::timeout(core.config.request_timeout, client.purge(request)).await,
                Ok(Ok(ref answer)) if answer.get_ref().purged
            )
        };
        all &= purged;
    }
    if all {
        tracing::debug!(?key, "tombstone purged");
    }
    all
}

/// Runs GC rounds every interval until shutdown.
pub async fn gc_loop(core: Arc<NodeCore>, shutdown: watch::Receiver<bool>) {
    let mut rounds = Rounds::new(core.config.gc_interval, shutdown);
    let mut cursor = None;
    while rounds.next().await {
        if let Err(e) = gc_round(&core, &mut cursor).await {
            tracing::warn!(error = %e, "tombstone GC round failed");
        }
    }
}
