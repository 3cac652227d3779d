//! A node's disk in the simulation: what the engine shows now, and what would survive a
//! power loss.
//!
//! RocksDB writes every change to its write-ahead log. A change written with
//! `Durability::Buffered` sits in the OS page cache until the kernel writes it back (or a
//! later synced write, or `sync_wal`, flushes the log up to it); one written with
//! `Durability::Sync` is on the platter when the call returns, and so is every change
//! logged before it. A process crash loses nothing that reached the log; a power loss
//! loses the log's unsynced tail. [`SimDisk`] models exactly that: a live engine (what
//! readers see), a durable image, and the changes logged since the last flush, in order.
//! [`SimDisk::write_back`] is the kernel's periodic write-back, which the harness calls
//! on a schedule drawn from the seed; [`SimDisk::lose_power`] throws the tail away.
//!
//! The engine reports `runs_in_place` (no blocking pool: the simulation stays on one
//! thread) but not `update_in_memory`, so every write reaches [`Engine::update`] with
//! the node's durability and is synced, or not, as the node asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ringkv_ring::{NodeId, Position};
use ringkv_storage::{Durability, Engine, EngineError, Key, KeyState, MemoryEngine, StateChange};

/// Changes logged but not yet durable, at most; beyond it the oldest are written back, as
/// a kernel does under memory pressure.
pub const PENDING_CHANGES_MAX: usize = 100_000;

/// One change as the log records it: the new value of one record (`None`: deleted).
#[derive(Clone, Debug)]
enum Change {
    Data(Key, Option<KeyState>),
    Hint(NodeId, Key, Option<KeyState>),
    Meta(String, Vec<u8>),
}

#[derive(Default, Clone)]
struct Image {
    data: BTreeMap<Key, KeyState>,
    hints: BTreeMap<NodeId, BTreeMap<Key, KeyState>>,
    meta: BTreeMap<String, Vec<u8>>,
}

impl Image {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Data(key, Some(state)) => {
                self.data.insert(key, state);
            }
            Change::Data(key, None) => {
                self.data.remove(&key);
            }
            Change::Hint(target, key, Some(state)) => {
                self.hints.entry(target).or_default().insert(key, state);
            }
            Change::Hint(target, key, None) => {
                if let Some(hints) = self.hints.get_mut(&target) {
                    hints.remove(&key);
                    if hints.is_empty() {
                        self.hints.remove(&target);
                    }
                }
            }
            Change::Meta(name, value) => {
                self.meta.insert(name, value);
            }
        }
    }

    /// A fresh live engine holding exactly this image.
    fn restore(&self) -> MemoryEngine {
        let engine = MemoryEngine::new();
        for (key, state) in &self.data {
            let _ = engine.update(key, Durability::Buffered, &mut |s| *s = state.clone());
        }
        for (target, hints) in &self.hints {
            for (key, state) in hints {
                let _ = engine.put_hint(target, key, state, Durability::Buffered);
            }
        }
        for (name, value) in &self.meta {
            let _ = engine.put_meta(name, value, Durability::Buffered);
        }
        engine
    }
}

struct DiskState {
    live: Arc<MemoryEngine>,
    durable: Image,
    pending: Vec<Change>,
}

/// What a power loss threw away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LostTail {
    /// Key states written but not synced.
    pub key_states: usize,
    /// Hint and metadata records written but not synced.
    pub other: usize,
}

impl LostTail {
    /// Every change lost.
    pub fn total(&self) -> usize {
        self.key_states + self.other
    }
}

/// The simulated disk of one node (see the module docs). Cheap to share: the node's
/// host and the harness hold the same one.
pub struct SimDisk {
    state: Mutex<DiskState>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk {
            state: Mutex::new(DiskState {
                live: Arc::new(MemoryEngine::new()),
                durable: Image::default(),
                pending: Vec::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> Arc<MemoryEngine> {
        Arc::clone(&self.state().live)
    }

    /// Logs changes; a synced write flushes the whole log with it.
    fn log(&self, changes: impl IntoIterator<Item = Change>, durability: Durability) {
        let mut state = self.state();
        state.pending.extend(changes);
        if durability == Durability::Sync {
            flush(&mut state, usize::MAX);
        } else if state.pending.len() > PENDING_CHANGES_MAX {
            let excess = state.pending.len() - PENDING_CHANGES_MAX;
            flush(&mut state, excess);
        }
    }

    /// The kernel writes the page cache back: every logged change becomes durable.
    pub fn write_back(&self) {
        flush(&mut self.state(), usize::MAX);
    }

    /// Changes logged but not durable yet.
    pub fn pending_changes(&self) -> usize {
        self.state().pending.len()
    }

    /// Power is lost: the unsynced tail of the log is gone and the engine shows the
    /// durable image. Returns what was lost. Call it only while the node is down (its
    /// host crashed), as a real power loss also stops the process.
    pub fn lose_power(&self) -> LostTail {
        let mut state = self.state();
        let mut lost = LostTail::default();
        for change in state.pending.drain(..) {
            match change {
                Change::Data(..) => lost.key_states += 1,
                Change::Hint(..) | Change::Meta(..) => lost.other += 1,
            }
        }
        state.live = Arc::new(state.durable.restore());
        lost
    }

    /// What the node's engine holds now, for a key (the checkers read replicas this way).
    pub fn stored(&self, key: &Key) -> Option<KeyState> {
        self.live().get(key).ok().flatten()
    }

    /// Every key state held, in key order.
    pub fn all_states(&self) -> Vec<(Key, KeyState)> {
        let live = self.live();
        let mut out = Vec::new();
        let mut after: Option<Key> = None;
        loop {
            let Ok(page) = live.scan(0, Position::MAX, after.as_ref(), ringkv_storage::SCAN_PAGE_MAX) else {
                break;
            };
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            out.extend(page);
        }
        out
    }

    /// Hints held, per target, with their counts.
    pub fn hint_counts(&self) -> Vec<(NodeId, u64)> {
        self.live().hint_counts().unwrap_or_default()
    }
}

fn flush(state: &mut DiskState, count: usize) {
    let count = count.min(state.pending.len());
    let flushed: Vec<Change> = state.pending.drain(..count).collect();
    for change in flushed {
        state.durable.apply(change);
    }
}

fn data_change(key: &Key, state: &KeyState) -> Change {
    Change::Data(key.detached(), (!state.is_empty()).then(|| state.clone()))
}

impl Engine for SimDisk {
    fn runs_in_place(&self) -> bool {
        true
    }

    fn get(&self, key: &Key) -> Result<Option<KeyState>, EngineError> {
        self.live().get(key)
    }

    fn update(
        &self,
        key: &Key,
        durability: Durability,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Result<KeyState, EngineError> {
        let after = self.live().update(key, durability, change)?;
        self.log([data_change(key, &after)], durability);
        Ok(after)
    }

    fn merge_batch(
        &self,
        entries: &[(Key, KeyState)],
        durability: Durability,
    ) -> Result<Vec<StateChange>, EngineError> {
        let changes = self.live().merge_batch(entries, durability)?;
        self.log(changes.iter().map(|c| data_change(&c.key, &c.after)), durability);
        Ok(changes)
    }

    fn scan(
        &self,
        lo: Position,
        hi: Position,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, KeyState)>, EngineError> {
        self.live().scan(lo, hi, after, limit)
    }

    fn remove_if_unchanged(&self, key: &Key, expected: &KeyState, durability: Durability) -> Result<bool, EngineError> {
        let removed = self.live().remove_if_unchanged(key, expected, durability)?;
        if removed {
            self.log([Change::Data(key.detached(), None)], durability);
        }
        Ok(removed)
    }

    fn put_hint(
        &self,
        target: &NodeId,
        key: &Key,
        state: &KeyState,
        durability: Durability,
    ) -> Result<(), EngineError> {
        let live = self.live();
        live.put_hint(target, key, state, durability)?;
        let merged = live.hint(target, key)?;
        self.log([Change::Hint(target.clone(), key.detached(), merged)], durability);
        Ok(())
    }

    fn hint(&self, target: &NodeId, key: &Key) -> Result<Option<KeyState>, EngineError> {
        self.live().hint(target, key)
    }

    fn hints(&self, target: &NodeId, limit: usize) -> Result<Vec<(Key, KeyState)>, EngineError> {
        self.live().hints(target, limit)
    }

    fn remove_hint_if_unchanged(&self, target: &NodeId, key: &Key, delivered: &KeyState) -> Result<bool, EngineError> {
        let removed = self.live().remove_hint_if_unchanged(target, key, delivered)?;
        if removed {
            // The engine trait gives hint removal no durability; RocksDB writes it buffered.
            self.log(
                [Change::Hint(target.clone(), key.detached(), None)],
                Durability::Buffered,
            );
        }
        Ok(removed)
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, EngineError> {
        self.live().hint_counts()
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError> {
        self.live().get_meta(name)
    }

    fn put_meta(&self, name: &str, value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.live().put_meta(name, value, durability)?;
        self.log([Change::Meta(name.to_owned(), value.to_vec())], durability);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_storage::{ActorId, Hlc, Limits, VersionVector, Write};

    fn put(disk: &SimDisk, key: &Key, value: &str, durability: Durability) {
        disk.update(key, durability, &mut |s| {
            s.put(
                ActorId::new(1),
                &VersionVector::default(),
                Write {
                    value: Some(bytes::Bytes::from(value.to_owned())),
                    hlc: Hlc::new(1, 0),
                    expires_at_ms: None,
                },
            );
        })
        .expect("in-memory update");
    }

    fn values(disk: &SimDisk, key: &Key) -> usize {
        disk.stored(key).map(|s| s.visible(0).count()).unwrap_or(0)
    }

    #[test]
    fn power_loss_keeps_synced_writes_and_everything_logged_before_them() {
        let limits = Limits::default();
        let (a, b, c) = (
            limits.key("a").expect("key"),
            limits.key("b").expect("key"),
            limits.key("c").expect("key"),
        );
        let disk = SimDisk::new();
        put(&disk, &a, "1", Durability::Buffered);
        put(&disk, &b, "1", Durability::Sync);
        put(&disk, &c, "1", Durability::Buffered);
        assert_eq!(disk.pending_changes(), 1);
        assert_eq!(disk.lose_power().key_states, 1);
        assert_eq!(values(&disk, &a), 1, "flushed by the later synced write");
        assert_eq!(values(&disk, &b), 1);
        assert_eq!(values(&disk, &c), 0, "the unsynced tail is lost");
    }

    #[test]
    fn write_back_makes_buffered_writes_survive_and_a_process_crash_loses_nothing() {
        let limits = Limits::default();
        let a = limits.key("a").expect("key");
        let disk = SimDisk::new();
        put(&disk, &a, "1", Durability::Buffered);
        assert_eq!(values(&disk, &a), 1, "visible before it is durable");
        disk.write_back();
        put(&disk, &a, "2", Durability::Buffered);
        assert_eq!(disk.lose_power().total(), 1);
        assert_eq!(
            values(&disk, &a),
            1,
            "the written-back state, not the lost second write"
        );
    }
}
