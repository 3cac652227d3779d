//! The [`Engine`] trait: what the node needs from a local store.
//!
//! An engine keeps three things: key states (ordered by ring position, so a ring range is
//! one contiguous scan), hints (states held for another node while it is unreachable,
//! keyed by that node), and a little metadata. Every write is a read-merge-write under a
//! per-key lock, so concurrent writers to one key never lose each other's siblings.
//! Engines are synchronous; the async node calls them from blocking tasks, except reads
//! and writes an engine can do from memory alone (`Engine::get_in_memory`,
//! `Engine::update_in_memory`); such writes are made durable in groups
//! (`Engine::sync_wal`).

use ringkv_ring::{NodeId, Position};

use crate::key_state::KeyState;
use crate::limits::Key;
use crate::record::RecordError;

/// Most hints one node holds for one unreachable target; beyond it writes that would need
/// a hint for that target fail instead of growing the store without bound.
pub const HINTS_PER_TARGET_MAX: u64 = 100_000;
/// Most entries one scan or hint page returns.
pub const SCAN_PAGE_MAX: usize = 10_000;

/// How hard an acknowledged write must be on disk before the call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// In the engine's write-ahead log, flushed by the OS later: survives a process crash,
    /// not a power loss.
    #[default]
    Buffered,
    /// `fsync`ed before returning: survives a power loss.
    Sync,
}

/// Errors from a storage engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A stored record failed its checksum or did not decode; the record is left as it is.
    #[error("stored record for key {key} is corrupt: {source}")]
    Corrupt {
        /// The key, lossily printed.
        key: String,
        /// What is wrong with it.
        source: RecordError,
    },
    /// A stored key does not follow the engine's key layout.
    #[error("stored key in {column} is malformed: {reason}")]
    MalformedKey {
        /// Which column family.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The hint store for a target is at its limit.
    #[error("hint store for {target} is full: {count} hints, the limit is {HINTS_PER_TARGET_MAX}")]
    HintsFull {
        /// The unreachable node.
        target: NodeId,
        /// Hints held for it.
        count: u64,
    },
    /// The database could not be opened.
    #[error("cannot open database at {path}: {reason}")]
    Open {
        /// The data directory.
        path: String,
        /// Why (for example: another process holds its lock).
        reason: String,
    },
    /// Any other error from the underlying store.
    #[error("storage I/O error: {0}")]
    Io(String),
}

/// One key's state before and after a batched write (empty when absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The key.
    pub key: Key,
    /// Its state before the write.
    pub before: KeyState,
    /// Its state after the write.
    pub after: KeyState,
}

/// A local store of key states, hints and metadata.
pub trait Engine: Send + Sync + 'static {
    /// The state stored for `key`, if any.
    fn get(&self, key: &Key) -> Result<Option<KeyState>, EngineError>;

    /// Whether every call returns without blocking on I/O, so async callers may run it
    /// in place instead of on a blocking thread (the in-memory engine; this also keeps a
    /// simulation on one thread, which its determinism needs).
    fn runs_in_place(&self) -> bool {
        false
    }

    /// The stored state of a key if it can be read from memory alone, without blocking on
    /// I/O; `None` when the read would have to touch the disk, and the caller then uses
    /// [`Engine::get`] from a thread that may block. The default never answers in place.
    fn get_in_memory(&self, _key: &Key) -> Option<Result<Option<KeyState>, EngineError>> {
        None
    }

    /// [`Engine::update`] done without waiting on the disk: with the key's state in memory,
    /// and when the engine would not stall the write. The write reaches the write-ahead
    /// log but is not fsynced: a caller that needs [`Durability::Sync`] calls
    /// [`Engine::sync_wal`] (once for many such writes, see the node's group commit)
    /// before acknowledging it. Until then the write is visible to readers of this engine
    /// though a power loss could still undo it. Returns `None` when the key is not in
    /// memory or the write would stall, with nothing written and `change` possibly called
    /// on a copy that was thrown away; the caller then uses [`Engine::update`] from a
    /// thread that may block. The default never answers in place.
    fn update_in_memory(
        &self,
        _key: &Key,
        _change: &mut dyn FnMut(&mut KeyState),
    ) -> Option<Result<KeyState, EngineError>> {
        None
    }

    /// Makes every write already in the write-ahead log durable (`fsync`). Blocks; many
    /// writes made by [`Engine::update_in_memory`] share one call. The default has no log
    /// and nothing to do.
    fn sync_wal(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Reads the key's state (empty if absent), lets `change` modify it, and stores the
    /// result, all under the key's lock. Returns the stored state.
    fn update(
        &self,
        key: &Key,
        durability: Durability,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Result<KeyState, EngineError>;

    /// Merges a state received from another replica; returns the merged state.
    fn merge(&self, key: &Key, incoming: &KeyState, durability: Durability) -> Result<KeyState, EngineError> {
        self.update(key, durability, &mut |state| state.merge(incoming))
    }

    /// Merges many states in one atomic batch (hand-off, range transfers, repairs) and
    /// reports each distinct key's state before and after.
    fn merge_batch(&self, entries: &[(Key, KeyState)], durability: Durability)
        -> Result<Vec<StateChange>, EngineError>;

    /// Up to `limit` states with positions in `lo..=hi`, in (position, key) order,
    /// starting after `after` when given. A wrapping ring range is two calls. Fewer than
    /// `limit` (capped at [`SCAN_PAGE_MAX`]) only when no more are in the range: callers
    /// take a short page as the range's end.
    fn scan(
        &self,
        lo: Position,
        hi: Position,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, KeyState)>, EngineError>;

    /// Deletes the key's record if it still equals `expected`; returns whether it did.
    /// Used to drop a handed-off range or purge garbage without racing a new write.
    fn remove_if_unchanged(&self, key: &Key, expected: &KeyState, durability: Durability) -> Result<bool, EngineError>;

    /// Stores (merging) a state meant for `target`, to hand off when it is reachable.
    fn put_hint(&self, target: &NodeId, key: &Key, state: &KeyState, durability: Durability)
        -> Result<(), EngineError>;

    /// The hint held for `target` about `key`, if any.
    fn hint(&self, target: &NodeId, key: &Key) -> Result<Option<KeyState>, EngineError>;

    /// Up to `limit` hints held for `target`, in key order.
    fn hints(&self, target: &NodeId, limit: usize) -> Result<Vec<(Key, KeyState)>, EngineError>;

    /// Deletes a delivered hint unless a newer write was merged into it meanwhile.
    fn remove_hint_if_unchanged(&self, target: &NodeId, key: &Key, delivered: &KeyState) -> Result<bool, EngineError>;

    /// Targets that have hints waiting, with their counts, in id order.
    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, EngineError>;

    /// A metadata value.
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError>;

    /// Sets a metadata value.
    fn put_meta(&self, name: &str, value: &[u8], durability: Durability) -> Result<(), EngineError>;
}

/// Striped locks so that read-merge-write on one key is atomic without a global lock.
pub(crate) struct KeyLocks {
    stripes: Vec<std::sync::Mutex<()>>,
}

const LOCK_STRIPES: usize = 1024;

impl KeyLocks {
    pub(crate) fn new() -> KeyLocks {
        KeyLocks {
            stripes: (0..LOCK_STRIPES).map(|_| std::sync::Mutex::new(())).collect(),
        }
    }

    pub(crate) fn stripe(position: Position) -> usize {
        (position % LOCK_STRIPES as u64) as usize
    }

    /// Locks one stripe. A poisoned stripe only means another writer panicked; the data
    /// it guards is in the store, not in the mutex, so it is safe to go on.
    pub(crate) fn lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the stripes of several keys in ascending order (no deadlock between batches).
    pub(crate) fn lock_many(&self, positions: impl Iterator<Item = Position>) -> Vec<std::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = positions.map(KeyLocks::stripe).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.lock(s)).collect()
    }
}
