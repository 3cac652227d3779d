//! The local engine as seen from async code.
//!
//! Engines are synchronous (RocksDB blocks on I/O and fsync), so every call runs on
//! tokio's blocking pool, except reads and writes the engine can do from memory alone
//! (`Engine::get_in_memory`, `Engine::update_in_memory`), which run in place. A write made
//! in place with `Durability::Sync` then waits for the node's [`GroupCommit`], which
//! fsyncs the log once for every write that finished before the flush began. This wrapper
//! is the only place that does that, which keeps the rest of the node free of
//! `spawn_blocking` and gives one spot to change the policy.
//! It is also the one path by which the node writes, so it keeps the anti-entropy hash
//! trees ([`MerkleIndex`]) in step with every change.
//!
//! This is the store as a thing on disk (or in memory); what a replica *does* with it is
//! in `crate::replica`, whose local handle is the store's one caller on the request path.

pub(crate) mod group_commit;
pub(crate) mod merkle_index;

use std::sync::Arc;

use ringkv_ring::{NodeId, Position};
use ringkv_storage::injected_bug::{self, Bug};
use ringkv_storage::merkle::LeafId;
use ringkv_storage::{Durability, Engine, EngineError, Key, KeyState, SCAN_PAGE_MAX};

use self::group_commit::{GroupCommit, SyncError};
use self::merkle_index::{digest, MerkleIndex};

/// Most keys one page of a hash-tree leaf holds; a leaf with more is read page by page.
pub(crate) const LEAF_PAGE_KEYS_MAX: usize = SCAN_PAGE_MAX;

/// One page of the keys this node stores in a hash-tree leaf, with their digests, in the
/// leaf's order ([`leaf_order`]).
#[derive(Debug, Default)]
pub(crate) struct LeafPage {
    pub entries: Vec<(Key, u64)>,
    /// Where the next page starts (pass it as `after`); `None` when this page ends the leaf.
    pub next: Option<Key>,
}

/// A key's place in the order of a leaf whose first position is `first`: by position from
/// `first` (a leaf may wrap past the ring's end), then by key bytes, as engines scan.
pub(crate) fn leaf_order(first: Position, key: &Key) -> (Position, &[u8]) {
    (key.position().wrapping_sub(first), key.as_bytes())
}

/// Errors from the local store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The blocking task died (a panic in the engine, or runtime shutdown).
    #[error("storage task failed: {0}")]
    Task(String),
    /// The write could not be made durable.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The node's dot counters reached the end of their range (2^64 writes).
    #[error("this node's write counters are exhausted: restart it with --new-incarnation")]
    CountersExhausted,
}

/// Runs `f` on tokio's blocking pool, or in place when `in_place` (an engine that never
/// blocks: see `Engine::runs_in_place`).
pub(crate) async fn off_runtime<T: Send + 'static>(
    in_place: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    if in_place {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))
}

/// What a write made by [`LocalStore::update_then_sync`] still needs before it may be
/// acknowledged: nothing, or a flush of the log by the group commit.
#[must_use = "a synced write is durable only once `wait` returns"]
pub(crate) struct PendingSync {
    group_commit: Option<Arc<GroupCommit>>,
}

impl PendingSync {
    /// Waits until the write is durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.group_commit {
            Some(group_commit) => Ok(group_commit.durable().await?),
            None => Ok(()),
        }
    }
}

/// An engine shared by the node's tasks.
#[derive(Clone)]
pub(crate) struct LocalStore {
    engine: Arc<dyn Engine>,
    durability: Durability,
    index: Arc<MerkleIndex>,
    // Present for `Durability::Sync` on an engine with a log (not one that runs in place).
    group_commit: Option<Arc<GroupCommit>>,
}

impl LocalStore {
    /// Wraps an engine; writes use `durability` and are reported to `index`. Starts the
    /// log syncer thread for `Durability::Sync` on an engine that does not run in place.
    pub fn new(
        engine: Arc<dyn Engine>,
        durability: Durability,
        index: Arc<MerkleIndex>,
    ) -> Result<LocalStore, StoreError> {
        let group_commit = if durability == Durability::Sync && !engine.runs_in_place() {
            let log = Arc::clone(&engine);
            let syncer = GroupCommit::start(move || log.sync_wal())
                .map_err(|e| StoreError::Task(format!("cannot start the log sync thread: {e}")))?;
            Some(Arc::new(syncer))
        } else {
            None
        };
        Ok(LocalStore {
            engine,
            durability,
            index,
            group_commit,
        })
    }

    /// The hash trees kept in step with this store.
    pub fn index(&self) -> &Arc<MerkleIndex> {
        &self.index
    }

    /// The engine itself, for synchronous use at startup.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Engine, Durability) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let engine = Arc::clone(&self.engine);
        let durability = if injected_bug::active(Bug::AckBeforeSync) {
            Durability::Buffered
        } else {
            self.durability
        };
        off_runtime(self.engine.runs_in_place(), move || f(engine.as_ref(), durability))
            .await?
            .map_err(StoreError::from)
    }

    /// The stored state of a key: in place when the engine has it in memory, otherwise
    /// from the blocking pool.
    pub async fn get(&self, key: Key) -> Result<Option<KeyState>, StoreError> {
        if let Some(found) = self.engine.get_in_memory(&key) {
            return found.map_err(StoreError::from);
        }
        self.run(move |e, _| e.get(&key)).await
    }

    /// Read-modify-write of a key; `change` runs under the key's lock (in place when the
    /// engine can, see `Engine::update_in_memory`; it may then run more than once).
    /// Returns once the write is as durable as the store's `Durability` asks.
    pub async fn update(
        &self,
        key: Key,
        change: impl FnMut(&mut KeyState) + Send + 'static,
    ) -> Result<KeyState, StoreError> {
        let (state, sync) = self.update_then_sync(key, change).await?;
        sync.wait().await?;
        Ok(state)
    }

    /// [`LocalStore::update`] in two steps: the change, applied and visible, then its
    /// [`PendingSync`], which the caller must wait on before acknowledging the write. The
    /// coordinator uses the gap to send the new state to the other replicas while the
    /// local log flush runs.
    pub async fn update_then_sync(
        &self,
        key: Key,
        mut change: impl FnMut(&mut KeyState) + Send + 'static,
    ) -> Result<(KeyState, PendingSync), StoreError> {
        // In place only when no rebuild page is being scanned: a runtime thread must not
        // wait for one (the blocking pool waits instead).
        let in_place = match self.index.try_writing() {
            Some(writing) => {
                let mut before = None;
                let result = self.engine.update_in_memory(&key, &mut |state| {
                    before = digest(state);
                    change(state);
                });
                match result {
                    Some(Ok(after)) => {
                        writing.record(&key, before, digest(&after));
                        Some(Ok(after))
                    }
                    other => other,
                }
            }
            None => None,
        };
        if let Some(result) = in_place {
            let after = result?;
            // Even when `change` altered nothing, the state it saw may come from a write
            // that is not durable yet: wait for a flush in every case.
            let sync = PendingSync {
                group_commit: self.group_commit.clone(),
            };
            return Ok((after, sync));
        }
        let index = Arc::clone(&self.index);
        let after = self
            .run(move |e, d| {
                let mut before = None;
                let writing = index.writing();
                let after = e.update(&key, d, &mut |state| {
                    before = digest(state);
                    change(state);
                })?;
                writing.record(&key, before, digest(&after));
                Ok(after)
            })
            .await?;
        // The engine synced it itself (`update` with the store's durability).
        Ok((after, PendingSync { group_commit: None }))
    }

    /// Merges a state from another replica.
    pub async fn merge(&self, key: Key, state: KeyState) -> Result<KeyState, StoreError> {
        self.update(key, move |s| s.merge(&state)).await
    }

    /// Merges many states in one batch.
    pub async fn merge_batch(&self, entries: Vec<(Key, KeyState)>) -> Result<(), StoreError> {
        let index = Arc::clone(&self.index);
        self.run(move |e, d| {
            let writing = index.writing();
            for change in e.merge_batch(&entries, d)? {
                writing.record(&change.key, digest(&change.before), digest(&change.after));
            }
            Ok(())
        })
        .await
    }

    /// Deletes a key's record if it still equals `expected`; returns whether it did.
    pub async fn remove_if_unchanged(&self, key: Key, expected: KeyState) -> Result<bool, StoreError> {
        let index = Arc::clone(&self.index);
        self.run(move |e, d| {
            let writing = index.writing();
            let removed = e.remove_if_unchanged(&key, &expected, d)?;
            if removed {
                writing.record(&key, digest(&expected), None);
            }
            Ok(removed)
        })
        .await
    }

    /// Scans a position interval.
    pub async fn scan(
        &self,
        lo: Position,
        hi: Position,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<(Key, KeyState)>, StoreError> {
        self.run(move |e, _| e.scan(lo, hi, after.as_ref(), limit)).await
    }

    /// Stores a hint for `target`.
    pub async fn put_hint(&self, target: NodeId, key: Key, state: KeyState) -> Result<(), StoreError> {
        self.run(move |e, d| e.put_hint(&target, &key, &state, d)).await
    }

    /// Whether any hint about `key` is held, for any of `targets`.
    pub async fn holds_hint(&self, key: Key, targets: Vec<NodeId>) -> Result<bool, StoreError> {
        self.run(move |e, _| {
            for target in &targets {
                if e.hint(target, &key)?.is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    /// A page of hints for `target`.
    pub async fn hints(&self, target: NodeId, limit: usize) -> Result<Vec<(Key, KeyState)>, StoreError> {
        self.run(move |e, _| e.hints(&target, limit)).await
    }

    /// Deletes delivered hints that did not change meanwhile; returns how many went.
    pub async fn remove_delivered_hints(
        &self,
        target: NodeId,
        delivered: Vec<(Key, KeyState)>,
    ) -> Result<u64, StoreError> {
        self.run(move |e, _| {
            let mut removed = 0;
            for (key, state) in &delivered {
                if e.remove_hint_if_unchanged(&target, key, state)? {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Hint counts per target.
    pub async fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, StoreError> {
        self.run(|e, _| e.hint_counts()).await
    }

    /// A page of the keys this node stores in leaf `leaf` of the segment ending at `end`,
    /// with their digests, from after `after` (in [`leaf_order`]); `None` when no segment
    /// ends at `end` (the ring changed): the segment is looked up under the same lock that
    /// reads the leaf's bounds, so a rebuild in between cannot make it name another
    /// segment.
    pub async fn leaf_digests(
        &self,
        end: Position,
        leaf: usize,
        after: Option<Key>,
    ) -> Result<Option<LeafPage>, StoreError> {
        let bounds = self.index.with(|trees| {
            let segment = trees.segment_ends().binary_search(&end).ok()?;
            (leaf < ringkv_storage::SEGMENT_LEAVES).then(|| trees.leaf_bounds(LeafId { segment, leaf }))
        });
        let Some((first, last)) = bounds else {
            return Ok(None);
        };
        // A segment narrower than its leaf count has empty leaves, whose bounds come out as
        // `last = first - 1`: not a leaf that wraps the whole ring.
        if last.wrapping_add(1) == first {
            return Ok(Some(LeafPage::default()));
        }
        // A wrapping leaf is two position intervals, scanned in the leaf's order.
        let intervals = if first <= last {
            vec![(first, last)]
        } else {
            vec![(first, Position::MAX), (0, last)]
        };
        let cursor = after.as_ref().map(|a| a.position().wrapping_sub(first));
        let mut out = LeafPage::default();
        for (lo, hi) in intervals {
            // Intervals wholly before the cursor hold nothing after it; the one holding it
            // is read from after it; later ones from their start.
            let scan_after = match cursor {
                Some(at) if at > hi.wrapping_sub(first) => continue,
                Some(at) if at >= lo.wrapping_sub(first) => after.clone(),
                _ => None,
            };
            let room = LEAF_PAGE_KEYS_MAX - out.entries.len();
            let page = self.scan(lo, hi, scan_after, room).await?;
            let full = page.len() == room;
            let scanned_to = page.last().map(|(k, _)| k.clone());
            out.entries
                .extend(page.into_iter().filter_map(|(k, s)| digest(&s).map(|d| (k, d))));
            if full {
                // Perhaps more in this interval or the next: the next page says.
                out.next = scanned_to;
                break;
            }
        }
        debug_assert!(out.entries.len() <= LEAF_PAGE_KEYS_MAX);
        Ok(Some(out))
    }
}
