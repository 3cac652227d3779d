//! The replica operations on this node's own store.
//!
//! Each operation's meaning is written here once: a [`Replica`](super::Replica) on this
//! node calls these in place, and the replica API server ([`super::service`]) calls them
//! for a peer after decoding its request.

use std::sync::Arc;

use ringkv_ring::{NodeId, Position};
use ringkv_storage::{Key, KeyState};

use super::{GcCheck, ReplicaError};
use crate::membership::LocalState;
use crate::node_core::NodeCore;
use crate::store::LeafPage;

pub(super) async fn read(core: &NodeCore, key: &Key) -> Result<KeyState, ReplicaError> {
    if core.membership.local_state() == LocalState::Joining {
        return Err(ReplicaError::Joining {
            node: core.me().clone(),
        });
    }
    Ok(core.store.get(key.clone()).await?.unwrap_or_default())
}

/// Merges into the store, or into the hint store for `hint_for`. A hint for this node
/// itself (a coordinator whose liveness view was stale) is merged as a plain copy.
pub(super) async fn merge(
    core: &NodeCore,
    key: Key,
    state: KeyState,
    hint_for: Option<NodeId>,
) -> Result<(), ReplicaError> {
    match hint_for {
        Some(target) if target != *core.me() => core
            .store
            .put_hint(target, key, state)
            .await
            .map_err(ReplicaError::HintRefused),
        _ => {
            core.store.merge(key, state).await?;
            Ok(())
        }
    }
}

pub(super) async fn merge_batch(core: &NodeCore, entries: Vec<(Key, KeyState)>) -> Result<(), ReplicaError> {
    Ok(core.store.merge_batch(entries).await?)
}

pub(super) async fn scan(
    core: &NodeCore,
    first: Position,
    last: Position,
    after: Option<Key>,
    limit: usize,
) -> Result<Vec<(Key, KeyState)>, ReplicaError> {
    Ok(core.store.scan(first, last, after, limit).await?)
}

/// The index of the segment ending at `end`, if this node's trees have one.
fn segment(core: &NodeCore, end: Position) -> Result<usize, ReplicaError> {
    core.store.index().with(|trees| {
        let index = trees.segment_of(end);
        if trees.segment_ends()[index] == end {
            Ok(index)
        } else {
            Err(ReplicaError::NoSuchSegment { end })
        }
    })
}

pub(super) fn segment_roots(core: &NodeCore, ends: &[Position]) -> Result<Vec<u64>, ReplicaError> {
    let segments = ends
        .iter()
        .map(|end| segment(core, *end))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(core
        .store
        .index()
        .with(|trees| segments.iter().map(|s| trees.root(*s)).collect()))
}

pub(super) fn segment_leaves(core: &NodeCore, end: Position) -> Result<Vec<u64>, ReplicaError> {
    let segment = segment(core, end)?;
    Ok(core.store.index().with(|trees| trees.leaves(segment).to_vec()))
}

pub(super) async fn leaf_digests(
    core: &NodeCore,
    end: Position,
    leaf: usize,
    after: Option<Key>,
) -> Result<LeafPage, ReplicaError> {
    core.store
        .leaf_digests(end, leaf, after)
        .await?
        .ok_or(ReplicaError::NoSuchSegment { end })
}

pub(super) async fn gc_check(core: &Arc<NodeCore>, key: Key) -> Result<GcCheck, ReplicaError> {
    let targets = core.membership.possible_holders();
    let holds_hint = core.store.holds_hint(key.clone(), targets).await?;
    let state = core.store.get(key).await?;
    Ok(GcCheck {
        state,
        holds_hint,
        wall_ms: core.clock.wall_ms(),
    })
}

pub(super) async fn purge(core: &NodeCore, key: Key, expected: KeyState) -> Result<bool, ReplicaError> {
    Ok(core.store.remove_if_unchanged(key, expected).await?)
}
