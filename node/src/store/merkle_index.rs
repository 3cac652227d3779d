//! This node's segment hash trees, kept current as writes land.
//!
//! [`LocalStore`](super::LocalStore) reports every change of a key's state
//! here (digest before, digest after), so the trees never need a rescan while the node
//! runs. They live in memory and are rebuilt by one scan of the store at start
//! ([`MerkleIndex::rebuild`]), which is bounded by the store's size and timed in the
//! `ringkv_anti_entropy_rebuild_seconds` metric.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringkv_ring::{Position, Ring};
use ringkv_storage::merkle::record_digest;
use ringkv_storage::{record, Engine, EngineError, Key, KeyState, SegmentTrees, SCAN_PAGE_MAX};

/// The digest a state contributes to the trees; `None` for an absent key.
pub(crate) fn digest(state: &KeyState) -> Option<u64> {
    (!state.is_empty()).then(|| record_digest(&record::encode(state)))
}

/// Segment trees behind a lock.
pub(crate) struct MerkleIndex {
    trees: Mutex<SegmentTrees>,
}

impl MerkleIndex {
    /// Empty trees for the segments of `ring`.
    pub fn for_ring(ring: &Ring) -> MerkleIndex {
        MerkleIndex {
            trees: Mutex::new(SegmentTrees::new(ring.tokens().map(|(position, _)| position))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SegmentTrees> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a key's state changed.
    pub fn record(&self, key: &Key, before: Option<u64>, after: Option<u64>) {
        if before != after {
            self.lock().apply(key.position(), key.as_bytes(), before, after);
        }
    }

    /// Reads the trees.
    pub fn with<R>(&self, read: impl FnOnce(&SegmentTrees) -> R) -> R {
        read(&self.lock())
    }

    /// Fills the trees from every state in the engine; returns the number of keys and
    /// how long it took.
    pub fn rebuild(&self, engine: &dyn Engine) -> Result<(usize, Duration), EngineError> {
        let ends = self.lock().segment_ends().to_vec();
        self.rebuild_for(engine, ends)
    }

    /// Rebuilds the trees for the segments of a new ring. Writes wait meanwhile, so no
    /// change is lost between the scan and the swap.
    pub fn rebuild_for_ring(&self, engine: &dyn Engine, ring: &Ring) -> Result<(usize, Duration), EngineError> {
        self.rebuild_for(engine, ring.tokens().map(|(position, _)| position).collect())
    }

    fn rebuild_for(&self, engine: &dyn Engine, ends: Vec<Position>) -> Result<(usize, Duration), EngineError> {
        let started = Instant::now();
        let mut trees = self.lock();
        let mut fresh = SegmentTrees::new(ends);
        let mut after: Option<Key> = None;
        let mut keys = 0;
        loop {
            let page = engine.scan(0, Position::MAX, after.as_ref(), SCAN_PAGE_MAX)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, state) in &page {
                fresh.apply(key.position(), key.as_bytes(), None, digest(state));
            }
            keys += page.len();
        }
        *trees = fresh;
        Ok((keys, started.elapsed()))
    }
}
