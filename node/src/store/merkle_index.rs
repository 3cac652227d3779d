//! This node's segment hash trees, kept current as writes land.
//!
//! [`LocalStore`](super::LocalStore) reports every change of a key's state
//! here (digest before, digest after), so the trees never need a rescan while the node
//! runs. They live in memory and are rebuilt by a scan of the store at start and for
//! every new ring ([`MerkleIndex::rebuild`]), which is bounded by the store's size and
//! timed in the `ringkv_anti_entropy_rebuild_seconds` metric.
//!
//! A rebuild runs while the node writes, and must count every write exactly once. A
//! writer holds the shared side of the index's *gate* from before its engine write
//! until it has recorded the change ([`MerkleIndex::writing`]); the rebuild holds the
//! exclusive side only while it scans one page and moves its cursor past it. So a write
//! falls wholly between two pages: when its key is at or before the cursor the scan has
//! passed it and the change goes into the new trees as well, otherwise the scan will
//! read the written state itself. Writes wait for at most one page scan, not for the
//! whole store (the trees in use meanwhile are the old ones, kept current as before).

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ringkv_ring::{Position, Ring};
use ringkv_storage::merkle::record_digest;
use ringkv_storage::{record, Engine, EngineError, Key, KeyState, SegmentTrees, SCAN_PAGE_MAX};

/// The digest a state contributes to the trees; `None` for an absent key.
pub(crate) fn digest(state: &KeyState) -> Option<u64> {
    (!state.is_empty()).then(|| record_digest(&record::encode(state)))
}

/// Segment trees kept in step with the store, and rebuilt beside it.
pub(crate) struct MerkleIndex {
    // Shared: a write between its engine change and its `record`. Exclusive: one page of
    // a rebuild. Always taken before any engine lock, never held across an await.
    gate: RwLock<()>,
    trees: Mutex<Trees>,
    // One rebuild at a time (a start and a ring change may overlap).
    rebuilding: Mutex<()>,
}

struct Trees {
    // The trees anti-entropy reads.
    live: SegmentTrees,
    // The trees a rebuild fills, present while it runs.
    fresh: Option<Fresh>,
}

struct Fresh {
    trees: SegmentTrees,
    // The last key the scan has read; keys up to it are in `trees`.
    scanned_through: Option<Key>,
}

/// A write's hold on the index: taken before the engine write, it lets the write's change
/// be recorded exactly once even while a rebuild runs.
pub(crate) struct Writing<'a> {
    index: &'a MerkleIndex,
    _gate: RwLockReadGuard<'a, ()>,
}

impl Writing<'_> {
    /// Records that a key's state changed from digest `before` to `after`.
    pub fn record(&self, key: &Key, before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        let mut trees = self.index.trees();
        trees.live.apply(key.position(), key.as_bytes(), before, after);
        if let Some(fresh) = &mut trees.fresh {
            // Under the gate the cursor cannot move: a key past it is still to be scanned,
            // and the scan will read this write's result.
            if fresh.scanned_through.as_ref().is_some_and(|through| key <= through) {
                fresh.trees.apply(key.position(), key.as_bytes(), before, after);
            }
        }
    }
}

impl MerkleIndex {
    /// Empty trees for the segments of `ring`.
    pub fn for_ring(ring: &Ring) -> MerkleIndex {
        MerkleIndex {
            gate: RwLock::new(()),
            trees: Mutex::new(Trees {
                live: SegmentTrees::new(ring.tokens().map(|(position, _)| position)),
                fresh: None,
            }),
            rebuilding: Mutex::new(()),
        }
    }

    fn trees(&self) -> MutexGuard<'_, Trees> {
        self.trees.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Begins a write: hold the result from before the engine write until its change is
    /// recorded.
    pub fn writing(&self) -> Writing<'_> {
        Writing {
            index: self,
            _gate: self.gate.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// [`MerkleIndex::writing`] if no rebuild page is being scanned now (or waits to be).
    pub fn try_writing(&self) -> Option<Writing<'_>> {
        let gate = match self.gate.try_read() {
            Ok(gate) => gate,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Writing {
            index: self,
            _gate: gate,
        })
    }

    /// Reads the trees.
    pub fn with<R>(&self, read: impl FnOnce(&SegmentTrees) -> R) -> R {
        read(&self.trees().live)
    }

    /// Fills the trees from every state in the engine; returns the number of keys and
    /// how long it took.
    pub fn rebuild(&self, engine: &dyn Engine) -> Result<(usize, Duration), EngineError> {
        let ends = self.trees().live.segment_ends().to_vec();
        self.rebuild_for(engine, ends)
    }

    /// Rebuilds the trees for the segments of a new ring; the old trees serve (and follow
    /// writes) until the new ones are complete.
    pub fn rebuild_for_ring(&self, engine: &dyn Engine, ring: &Ring) -> Result<(usize, Duration), EngineError> {
        self.rebuild_for(engine, ring.tokens().map(|(position, _)| position).collect())
    }

    fn rebuild_for(&self, engine: &dyn Engine, ends: Vec<Position>) -> Result<(usize, Duration), EngineError> {
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        self.trees().fresh = Some(Fresh {
            trees: SegmentTrees::new(ends),
            scanned_through: None,
        });
        let mut keys = 0;
        loop {
            match self.scan_page(engine) {
                Ok(page) => {
                    keys += page.read;
                    if page.last {
                        return Ok((keys, started.elapsed()));
                    }
                }
                Err(e) => {
                    self.trees().fresh = None;
                    return Err(e);
                }
            }
        }
    }

    /// Scans the page after the rebuild's cursor into the fresh trees, holding writes off
    /// meanwhile (but not readers of the trees in use); the last page puts the fresh trees
    /// in use.
    fn scan_page(&self, engine: &dyn Engine) -> Result<Page, EngineError> {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let after = self.trees().fresh.as_ref().and_then(|f| f.scanned_through.clone());
        let page = engine.scan(0, Position::MAX, after.as_ref(), SCAN_PAGE_MAX)?;
        let mut trees = self.trees();
        let fresh = trees
            .fresh
            .as_mut()
            .expect("only its rebuild takes the fresh trees, and one rebuild runs at a time");
        for (key, state) in &page {
            debug_assert!(after.as_ref().is_none_or(|a| key > a), "a scan moves forward");
            fresh.trees.apply(key.position(), key.as_bytes(), None, digest(state));
        }
        fresh.scanned_through = page.last().map(|(key, _)| key.clone()).or(after);
        // An empty page is the last (a short one would do, by `Engine::scan`'s contract;
        // one more scan under the gate is cheap). No write can add a key behind it before
        // the swap, under this same gate.
        let last = page.is_empty();
        if last {
            if let Some(done) = trees.fresh.take() {
                trees.live = done.trees;
            }
        }
        Ok(Page { read: page.len(), last })
    }
}

/// What one page of a rebuild read.
struct Page {
    read: usize,
    // Whether it was the last, and the fresh trees are in use now.
    last: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use ringkv_ring::{Member, NodeId, Ring};
    use ringkv_storage::{ActorId, Durability, Engine, Hlc, Key, Limits, MemoryEngine, SegmentTrees, Write};

    use super::MerkleIndex;
    use crate::store::LocalStore;

    // More keys than one scan page, so a rebuild takes several pages.
    const KEYS: u64 = 25_000;

    fn ring() -> Ring {
        let members = ["a", "b", "c"].map(|id| Member::new(NodeId::new(id).expect("a valid id"), 8));
        Ring::new(members).expect("a valid ring")
    }

    fn key(i: u64) -> Key {
        Limits::default().key(format!("k{i}")).expect("a valid key")
    }

    fn trees(index: &MerkleIndex) -> SegmentTrees {
        index.with(SegmentTrees::clone)
    }

    /// The trees a rebuild makes of the engine when nothing writes meanwhile.
    fn quiet_trees(engine: &dyn Engine) -> SegmentTrees {
        let index = MerkleIndex::for_ring(&ring());
        index.rebuild(engine).expect("the rebuild scans");
        trees(&index)
    }

    fn new_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    }

    /// Writes `value` to `key` through the store, as a replica does.
    fn write(runtime: &tokio::runtime::Runtime, store: &LocalStore, key: Key, value: u64) {
        runtime
            .block_on(store.update(key, move |state| {
                let context = state.context().clone();
                state.put(
                    ActorId::new(1),
                    &context,
                    Write {
                        value: Some(Bytes::from(value.to_le_bytes().to_vec())),
                        hlc: Hlc::default(),
                        expires_at_ms: None,
                    },
                );
            }))
            .expect("the write lands");
    }

    /// Finding 6: a write that lands while a rebuild scans must be counted once. Before the
    /// fix a write whose key the scan had not reached yet was seen by the scan and then
    /// recorded again into the new trees, which then showed the key's old digest.
    #[test]
    fn writes_during_rebuilds_leave_the_trees_equal_to_a_quiet_rebuild() {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let index = Arc::new(MerkleIndex::for_ring(&ring()));
        let store = LocalStore::new(Arc::clone(&engine), Durability::Buffered, Arc::clone(&index)).expect("a store");
        let runtime = new_runtime();
        for i in 0..KEYS {
            write(&runtime, &store, key(i), 0);
        }
        assert_eq!(
            trees(&index),
            quiet_trees(engine.as_ref()),
            "the trees follow the writes"
        );

        let writing = Arc::new(AtomicBool::new(true));
        let rebuilds = {
            let (index, engine, writing) = (Arc::clone(&index), Arc::clone(&engine), Arc::clone(&writing));
            std::thread::spawn(move || {
                let mut rebuilds = 0;
                while writing.load(Ordering::Relaxed) && rebuilds < 100 {
                    index.rebuild(engine.as_ref()).expect("the rebuild scans");
                    rebuilds += 1;
                }
                rebuilds
            })
        };
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    // A fixed walk over the keys, different for each writer.
                    let runtime = new_runtime();
                    let mut x = w + 1;
                    for round in 1..=5_000u64 {
                        x = x
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        write(&runtime, &store, key((x >> 33) % KEYS), round);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("the writer finished");
        }
        writing.store(false, Ordering::Relaxed);
        let rebuilds = rebuilds.join().expect("the rebuilds finished");
        assert!(rebuilds > 0, "at least one rebuild ran during the writes");
        let (kept, quiet) = (trees(&index), quiet_trees(engine.as_ref()));
        let differing = (0..quiet.segment_ends().len())
            .filter(|&s| kept.root(s) != quiet.root(s))
            .count();
        assert_eq!(
            differing, 0,
            "after {rebuilds} rebuilds during writes, {differing} segment trees differ from the store"
        );
        assert_eq!(kept, quiet);
    }
}
