//! The in-memory engine: same semantics as RocksDB, nothing on disk.
//!
//! It serves the cache tier (where losing data on restart is acceptable) and the
//! deterministic simulation. One mutex guards all of it: operations are short, and a
//! single lock keeps behaviour independent of thread scheduling.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use ringkv_ring::{NodeId, Position};

use crate::engine::{Durability, Engine, EngineError, StateChange, HINTS_PER_TARGET_MAX, SCAN_PAGE_MAX};
use crate::key_state::KeyState;
use crate::limits::Key;

#[derive(Default)]
struct Tables {
    data: BTreeMap<Key, KeyState>,
    hints: BTreeMap<NodeId, BTreeMap<Key, KeyState>>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// A volatile engine.
///
/// ```
/// use ringkv_storage::{Durability, Engine, Limits, MemoryEngine};
/// let engine = MemoryEngine::new();
/// let key = Limits::default().key("k").expect("valid key");
/// assert!(engine.get(&key).expect("get").is_none());
/// ```
#[derive(Default)]
pub struct MemoryEngine {
    tables: Mutex<Tables>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables are only changed by complete assignments, so a panic elsewhere
        // cannot leave them half-written.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Engine for MemoryEngine {
    fn runs_in_place(&self) -> bool {
        true
    }

    fn get(&self, key: &Key) -> Result<Option<KeyState>, EngineError> {
        Ok(self.tables().data.get(key).cloned())
    }

    fn get_in_memory(&self, key: &Key) -> Option<Result<Option<KeyState>, EngineError>> {
        Some(self.get(key))
    }

    fn update_in_memory(
        &self,
        key: &Key,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Option<Result<KeyState, EngineError>> {
        Some(self.update(key, Durability::Buffered, change))
    }

    fn update(
        &self,
        key: &Key,
        _durability: Durability,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Result<KeyState, EngineError> {
        let mut tables = self.tables();
        let mut state = tables.data.get(key).cloned().unwrap_or_default();
        change(&mut state);
        if state.is_empty() {
            tables.data.remove(key);
        } else if let Some(stored) = tables.data.get_mut(key) {
            *stored = state.clone();
        } else {
            tables.data.insert(key.detached(), state.clone());
        }
        Ok(state)
    }

    fn merge_batch(
        &self,
        entries: &[(Key, KeyState)],
        _durability: Durability,
    ) -> Result<Vec<StateChange>, EngineError> {
        let mut tables = self.tables();
        let mut changes: BTreeMap<Key, StateChange> = BTreeMap::new();
        for (key, incoming) in entries {
            // Only a key new to the map is copied out of its request buffer.
            if !tables.data.contains_key(key) {
                tables.data.insert(key.detached(), KeyState::default());
            }
            let state = tables.data.entry(key.clone()).or_default();
            let before = state.clone();
            state.merge(incoming);
            let after = state.clone();
            changes
                .entry(key.clone())
                .and_modify(|c| c.after = after.clone())
                .or_insert(StateChange {
                    key: key.clone(),
                    before,
                    after,
                });
        }
        Ok(changes.into_values().collect())
    }

    fn scan(
        &self,
        lo: Position,
        hi: Position,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, KeyState)>, EngineError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        let tables = self.tables();
        let start = match after {
            Some(after) if after.position() >= lo => Bound::Excluded(after.clone()),
            _ => Bound::Included(Key::lower_bound(lo)),
        };
        let page = tables
            .data
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.position() <= hi)
            .take(limit)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        Ok(page)
    }

    fn remove_if_unchanged(
        &self,
        key: &Key,
        expected: &KeyState,
        _durability: Durability,
    ) -> Result<bool, EngineError> {
        let mut tables = self.tables();
        if tables.data.get(key) == Some(expected) {
            tables.data.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    fn put_hint(
        &self,
        target: &NodeId,
        key: &Key,
        state: &KeyState,
        _durability: Durability,
    ) -> Result<(), EngineError> {
        let mut tables = self.tables();
        let hints = tables.hints.entry(target.clone()).or_default();
        if !hints.contains_key(key) && hints.len() as u64 >= HINTS_PER_TARGET_MAX {
            return Err(EngineError::HintsFull {
                target: target.clone(),
                count: hints.len() as u64,
            });
        }
        hints.entry(key.clone()).or_default().merge(state);
        Ok(())
    }

    fn hint(&self, target: &NodeId, key: &Key) -> Result<Option<KeyState>, EngineError> {
        Ok(self.tables().hints.get(target).and_then(|h| h.get(key)).cloned())
    }

    fn hints(&self, target: &NodeId, limit: usize) -> Result<Vec<(Key, KeyState)>, EngineError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        let tables = self.tables();
        Ok(tables
            .hints
            .get(target)
            .map(|h| h.iter().take(limit).map(|(k, s)| (k.clone(), s.clone())).collect())
            .unwrap_or_default())
    }

    fn remove_hint_if_unchanged(&self, target: &NodeId, key: &Key, delivered: &KeyState) -> Result<bool, EngineError> {
        let mut tables = self.tables();
        let Some(hints) = tables.hints.get_mut(target) else {
            return Ok(false);
        };
        if hints.get(key) != Some(delivered) {
            return Ok(false);
        }
        hints.remove(key);
        if hints.is_empty() {
            tables.hints.remove(target);
        }
        Ok(true)
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, EngineError> {
        Ok(self
            .tables()
            .hints
            .iter()
            .map(|(t, h)| (t.clone(), h.len() as u64))
            .collect())
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.tables().meta.get(name).cloned())
    }

    fn put_meta(&self, name: &str, value: &[u8], _durability: Durability) -> Result<(), EngineError> {
        self.tables().meta.insert(name.to_owned(), value.to_vec());
        Ok(())
    }
}
