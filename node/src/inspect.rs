//! A look inside a running node, for tests and the simulation.
//!
//! Tests of a cluster need to see what no client API shows (which node holds which
//! copy, how many hints wait, what the failure detector believes) and sometimes to set
//! up what no client could (a divergence between replicas). [`Inspector`] is that
//! window, and the only one: the node's internals stay private, so a refactoring inside
//! the node does not break the tests that watch it.

use std::sync::Arc;

use ringkv_ring::{NodeId, Position, Ring};
use ringkv_storage::{Key, KeyState};

use crate::maintenance::anti_entropy;
use crate::membership::LocalState;
use crate::metrics::Metrics;
use crate::node_core::NodeCore;

pub use crate::maintenance::anti_entropy::ExchangeStats;

/// Why an inspection failed: the node's store (or, for an exchange, its peer) did.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct InspectError(Box<dyn std::error::Error + Send + Sync>);

impl InspectError {
    fn from(error: impl std::error::Error + Send + Sync + 'static) -> InspectError {
        InspectError(Box::new(error))
    }
}

/// A handle on one running node's internals. Cheap to clone.
#[derive(Clone)]
pub struct Inspector {
    core: Arc<NodeCore>,
}

impl Inspector {
    pub(crate) fn new(core: Arc<NodeCore>) -> Inspector {
        Inspector { core }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        self.core.me()
    }

    /// The ring as this node sees it.
    pub fn ring(&self) -> Arc<Ring> {
        self.core.membership.ring()
    }

    /// Whether this node's failure detector believes `node` is up.
    pub fn is_alive(&self, node: &NodeId) -> bool {
        self.core.membership.is_alive(node)
    }

    /// The generation (incarnation) this node has seen for member `node`, if it knows it.
    pub fn generation_of(&self, node: &NodeId) -> Option<u64> {
        self.core
            .membership
            .members()
            .into_iter()
            .find(|m| m.id == *node)
            .map(|m| m.generation)
    }

    /// The ring positions where this node's anti-entropy hash-tree segments end.
    pub fn segment_ends(&self) -> Vec<Position> {
        self.core.store.index().with(|trees| trees.segment_ends().to_vec())
    }

    /// Where this node stands in the ring.
    pub fn local_state(&self) -> LocalState {
        self.core.membership.local_state()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    /// This node's own stored state of `key`, if any (no quorum, no repair).
    pub async fn stored(&self, key: &Key) -> Result<Option<KeyState>, InspectError> {
        self.core.store.get(key.clone()).await.map_err(InspectError::from)
    }

    /// Merges `state` into this node's own store only, as a replica merge would, but
    /// without telling any other node: the way to set up a divergence.
    pub async fn merge_locally(&self, key: Key, state: KeyState) -> Result<(), InspectError> {
        self.core
            .store
            .merge(key, state)
            .await
            .map(|_| ())
            .map_err(InspectError::from)
    }

    /// [`Inspector::merge_locally`] for many keys in one batch.
    pub async fn merge_batch_locally(&self, entries: Vec<(Key, KeyState)>) -> Result<(), InspectError> {
        self.core.store.merge_batch(entries).await.map_err(InspectError::from)
    }

    /// Hints this node holds, per target node.
    pub async fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, InspectError> {
        self.core.store.hint_counts().await.map_err(InspectError::from)
    }

    /// Runs one anti-entropy exchange with `peer` now, outside the node's own rounds.
    pub async fn exchange_with(&self, peer: &NodeId) -> Result<ExchangeStats, InspectError> {
        anti_entropy::exchange(&self.core, peer)
            .await
            .map_err(InspectError::from)
    }
}
