//! The RocksDB engine: the default, embedded store.
//!
//! Three column families: `data` (key states), `hints` (states held for unreachable
//! nodes) and `meta`. Data keys are `position (8 bytes, big-endian) ++ key bytes`, so a
//! ring range is one contiguous iterator and keys of one position sort by their bytes, the
//! same order as [`Key`]. Hint keys are `target id length (1 byte) ++ target id ++ data
//! key`, so one target's hints are one contiguous scan. Values are [`crate::record`]s.
//!
//! Read-merge-write runs under striped per-key locks; a write with
//! [`Durability::Sync`] is fsynced through the write-ahead log before returning.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use ringkv_ring::{NodeId, Position};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, ErrorKind, IteratorMode, Options, ReadOptions, ReadTier,
    WriteBatch, WriteOptions, DB,
};

use crate::engine::{Durability, Engine, EngineError, KeyLocks, StateChange, HINTS_PER_TARGET_MAX, SCAN_PAGE_MAX};
use crate::key_state::KeyState;
use crate::limits::{Key, KEY_BYTES_CEILING};
use crate::record;

const CF_DATA: &str = "data";
const CF_HINTS: &str = "hints";
const CF_META: &str = "meta";
const POSITION_BYTES: usize = 8;
/// Largest total size of the write-ahead log before the oldest memtables are flushed.
const WAL_BYTES_MAX: u64 = 64 << 20;
/// Old write-ahead log files kept for reuse (see `RocksEngine::open`).
const WAL_FILES_RECYCLED: usize = 4;
/// Memtable size of the data column family (two may exist at once).
const DATA_MEMTABLE_BYTES: usize = 16 << 20;
/// Memtable size of the hints and meta column families.
const SMALL_MEMTABLE_BYTES: usize = 4 << 20;

/// A RocksDB-backed engine.
pub struct RocksEngine {
    db: DB,
    locks: KeyLocks,
    // Hint counts per target, loaded at open and kept under `hint_counts`' lock together
    // with every hint insert and delete, so the limit check cannot race.
    hint_counts: Mutex<BTreeMap<NodeId, u64>>,
    // Reads that answer from the memtables and block cache only (`Incomplete` otherwise).
    memory_only: ReadOptions,
}

fn io(e: rocksdb::Error) -> EngineError {
    EngineError::Io(e.into_string())
}

fn data_key(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(POSITION_BYTES + key.as_bytes().len());
    out.extend_from_slice(&key.position().to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn parse_data_key(column: &'static str, raw: &[u8]) -> Result<Key, EngineError> {
    let malformed = |reason: &str| EngineError::MalformedKey {
        column,
        reason: reason.to_owned(),
    };
    let Some((position, bytes)) = raw.split_first_chunk::<POSITION_BYTES>() else {
        return Err(malformed("shorter than a position"));
    };
    if bytes.is_empty() || bytes.len() > KEY_BYTES_CEILING as usize {
        return Err(malformed("key length out of bounds"));
    }
    let key = Key::from_validated(Bytes::copy_from_slice(bytes));
    if key.position() != Position::from_be_bytes(*position) {
        return Err(malformed("position prefix does not match the key's hash"));
    }
    Ok(key)
}

fn hint_prefix(target: &NodeId) -> Vec<u8> {
    let id = target.as_str().as_bytes();
    debug_assert!(id.len() <= usize::from(u8::MAX));
    let mut out = Vec::with_capacity(1 + id.len());
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out
}

fn hint_key(target: &NodeId, key: &Key) -> Vec<u8> {
    let mut out = hint_prefix(target);
    out.extend_from_slice(&data_key(key));
    out
}

fn parse_hint_key(raw: &[u8]) -> Result<(NodeId, Key), EngineError> {
    let malformed = |reason: &str| EngineError::MalformedKey {
        column: CF_HINTS,
        reason: reason.to_owned(),
    };
    let Some((&len, rest)) = raw.split_first() else {
        return Err(malformed("empty"));
    };
    let len = usize::from(len);
    if rest.len() < len {
        return Err(malformed("shorter than its target id"));
    }
    let (target, data) = rest.split_at(len);
    let target = std::str::from_utf8(target)
        .ok()
        .and_then(|t| NodeId::try_from(t).ok())
        .ok_or_else(|| malformed("target is not a valid node id"))?;
    Ok((target, parse_data_key(CF_HINTS, data)?))
}

fn decode_record(key: &Key, bytes: &[u8]) -> Result<KeyState, EngineError> {
    record::decode(bytes).map_err(|source| EngineError::Corrupt {
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        source,
    })
}

fn write_options(durability: Durability) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(durability == Durability::Sync);
    options
}

impl RocksEngine {
    /// Opens (creating if needed) the database in `path`.
    pub fn open(path: &Path) -> Result<RocksEngine, EngineError> {
        let open_error = |reason: String| EngineError::Open {
            path: path.display().to_string(),
            reason,
        };
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Bound the write-ahead log: a rarely written column family (meta, hints) would
        // otherwise pin every log file since its last flush, and the log grows without end.
        options.set_max_total_wal_size(WAL_BYTES_MAX);
        // Reuse old log files instead of creating new ones: the blocks are already
        // allocated, so the fdatasync of a synced write (group commit) flushes data only,
        // without an inode update and journal commit each time. Works with the default
        // recovery mode (point in time); RocksDB turns it off for the two modes it does
        // not support, so it can never weaken recovery.
        options.set_recycle_log_file_num(WAL_FILES_RECYCLED);
        let mut data_options = Options::default();
        data_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        data_options.set_write_buffer_size(DATA_MEMTABLE_BYTES);
        data_options.set_max_write_buffer_number(2);
        let mut small_options = Options::default();
        small_options.set_write_buffer_size(SMALL_MEMTABLE_BYTES);
        small_options.set_max_write_buffer_number(2);
        let families = vec![
            ColumnFamilyDescriptor::new(CF_DATA, data_options),
            ColumnFamilyDescriptor::new(CF_HINTS, small_options.clone()),
            ColumnFamilyDescriptor::new(CF_META, small_options),
        ];
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|e| open_error(e.into_string()))?;
        let engine = RocksEngine {
            db,
            locks: KeyLocks::new(),
            hint_counts: Mutex::new(BTreeMap::new()),
            memory_only: {
                let mut read = ReadOptions::default();
                read.set_read_tier(ReadTier::BlockCache);
                read
            },
        };
        let counts = engine.count_hints()?;
        *engine.counts() = counts;
        Ok(engine)
    }

    fn cf(&self, name: &'static str) -> &ColumnFamily {
        // The families are created at open; a missing one is a bug in `open`.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| unreachable!("column family {name} is created at open"))
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, u64>> {
        self.hint_counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count_hints(&self) -> Result<BTreeMap<NodeId, u64>, EngineError> {
        let mut counts = BTreeMap::new();
        for item in self.db.iterator_cf(self.cf(CF_HINTS), IteratorMode::Start) {
            let (raw, _) = item.map_err(io)?;
            let (target, _) = parse_hint_key(&raw)?;
            *counts.entry(target).or_insert(0) += 1;
        }
        Ok(counts)
    }

    fn read(&self, cf: &'static str, raw_key: &[u8], key: &Key) -> Result<Option<KeyState>, EngineError> {
        match self.db.get_pinned_cf(self.cf(cf), raw_key).map_err(io)? {
            Some(bytes) => Ok(Some(decode_record(key, &bytes)?)),
            None => Ok(None),
        }
    }
}

impl Engine for RocksEngine {
    fn get(&self, key: &Key) -> Result<Option<KeyState>, EngineError> {
        self.read(CF_DATA, &data_key(key), key)
    }

    fn get_in_memory(&self, key: &Key) -> Option<Result<Option<KeyState>, EngineError>> {
        match self
            .db
            .get_pinned_cf_opt(self.cf(CF_DATA), data_key(key), &self.memory_only)
        {
            Ok(Some(bytes)) => Some(decode_record(key, &bytes).map(Some)),
            Ok(None) => Some(Ok(None)),
            // Not in memory: the caller reads it from a thread that may block.
            Err(e) if e.kind() == ErrorKind::Incomplete => None,
            Err(e) => Some(Err(io(e))),
        }
    }

    fn update_in_memory(
        &self,
        key: &Key,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Option<Result<KeyState, EngineError>> {
        let raw_key = data_key(key);
        let _guard = self.locks.lock(KeyLocks::stripe(key.position()));
        let before = match self.db.get_pinned_cf_opt(self.cf(CF_DATA), &raw_key, &self.memory_only) {
            Ok(Some(bytes)) => match decode_record(key, &bytes) {
                Ok(state) => state,
                Err(e) => return Some(Err(e)),
            },
            Ok(None) => KeyState::default(),
            Err(e) if e.kind() == ErrorKind::Incomplete => return None,
            Err(e) => return Some(Err(io(e))),
        };
        let mut state = before.clone();
        change(&mut state);
        if state == before {
            return Some(Ok(state));
        }
        // A write the engine would delay (memtables or L0 full) fails with `Incomplete`
        // instead of sleeping, and is then redone by `update` off the async threads.
        // Not synced here: the caller syncs the log for many writes at once (`sync_wal`).
        let mut options = write_options(Durability::Buffered);
        options.set_no_slowdown(true);
        let written = if state.is_empty() {
            self.db.delete_cf_opt(self.cf(CF_DATA), &raw_key, &options)
        } else {
            self.db
                .put_cf_opt(self.cf(CF_DATA), &raw_key, record::encode(&state), &options)
        };
        match written {
            Ok(()) => Some(Ok(state)),
            Err(e) if e.kind() == ErrorKind::Incomplete => None,
            Err(e) => Some(Err(io(e))),
        }
    }

    fn sync_wal(&self) -> Result<(), EngineError> {
        self.db.flush_wal(true).map_err(io)
    }

    fn update(
        &self,
        key: &Key,
        durability: Durability,
        change: &mut dyn FnMut(&mut KeyState),
    ) -> Result<KeyState, EngineError> {
        let raw_key = data_key(key);
        let _guard = self.locks.lock(KeyLocks::stripe(key.position()));
        let before = self.read(CF_DATA, &raw_key, key)?.unwrap_or_default();
        let mut state = before.clone();
        change(&mut state);
        if state == before {
            return Ok(state);
        }
        let options = write_options(durability);
        if state.is_empty() {
            self.db
                .delete_cf_opt(self.cf(CF_DATA), &raw_key, &options)
                .map_err(io)?;
        } else {
            self.db
                .put_cf_opt(self.cf(CF_DATA), &raw_key, record::encode(&state), &options)
                .map_err(io)?;
        }
        Ok(state)
    }

    fn merge_batch(
        &self,
        entries: &[(Key, KeyState)],
        durability: Durability,
    ) -> Result<Vec<StateChange>, EngineError> {
        let _guards = self.locks.lock_many(entries.iter().map(|(k, _)| k.position()));
        // Entries may repeat a key; merge them in memory first so the batch writes each once.
        let mut merged: BTreeMap<&Key, (KeyState, KeyState)> = BTreeMap::new();
        for (key, incoming) in entries {
            let (_, state) = match merged.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let before = self.read(CF_DATA, &data_key(key), key)?.unwrap_or_default();
                    e.insert((before.clone(), before))
                }
            };
            state.merge(incoming);
        }
        let mut batch = WriteBatch::default();
        for (key, (before, after)) in &merged {
            if before != after {
                batch.put_cf(self.cf(CF_DATA), data_key(key), record::encode(after));
            }
        }
        self.db.write_opt(batch, &write_options(durability)).map_err(io)?;
        Ok(merged
            .into_iter()
            .map(|(key, (before, after))| StateChange {
                key: key.clone(),
                before,
                after,
            })
            .collect())
    }

    fn scan(
        &self,
        lo: Position,
        hi: Position,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<(Key, KeyState)>, EngineError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        let start = match after {
            Some(after) if after.position() >= lo => data_key(after),
            _ => lo.to_be_bytes().to_vec(),
        };
        let mut page = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(CF_DATA), IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            if page.len() >= limit {
                break;
            }
            let (raw_key, value) = item.map_err(io)?;
            let key = parse_data_key(CF_DATA, &raw_key)?;
            if key.position() > hi {
                break;
            }
            if after.is_some_and(|a| key <= *a) {
                continue;
            }
            let state = decode_record(&key, &value)?;
            page.push((key, state));
        }
        Ok(page)
    }

    fn remove_if_unchanged(&self, key: &Key, expected: &KeyState, durability: Durability) -> Result<bool, EngineError> {
        let raw_key = data_key(key);
        let _guard = self.locks.lock(KeyLocks::stripe(key.position()));
        if self.read(CF_DATA, &raw_key, key)?.as_ref() != Some(expected) {
            return Ok(false);
        }
        self.db
            .delete_cf_opt(self.cf(CF_DATA), &raw_key, &write_options(durability))
            .map_err(io)?;
        Ok(true)
    }

    fn put_hint(
        &self,
        target: &NodeId,
        key: &Key,
        state: &KeyState,
        durability: Durability,
    ) -> Result<(), EngineError> {
        let raw_key = hint_key(target, key);
        let _guard = self.locks.lock(KeyLocks::stripe(key.position()));
        let mut counts = self.counts();
        let existing = self.read(CF_HINTS, &raw_key, key)?;
        let count = counts.get(target).copied().unwrap_or(0);
        if existing.is_none() && count >= HINTS_PER_TARGET_MAX {
            return Err(EngineError::HintsFull {
                target: target.clone(),
                count,
            });
        }
        let mut merged = existing.clone().unwrap_or_default();
        merged.merge(state);
        self.db
            .put_cf_opt(
                self.cf(CF_HINTS),
                &raw_key,
                record::encode(&merged),
                &write_options(durability),
            )
            .map_err(io)?;
        if existing.is_none() {
            *counts.entry(target.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    fn hint(&self, target: &NodeId, key: &Key) -> Result<Option<KeyState>, EngineError> {
        self.read(CF_HINTS, &hint_key(target, key), key)
    }

    fn hints(&self, target: &NodeId, limit: usize) -> Result<Vec<(Key, KeyState)>, EngineError> {
        let limit = limit.min(SCAN_PAGE_MAX);
        let prefix = hint_prefix(target);
        let mut page = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(CF_HINTS), IteratorMode::From(&prefix, Direction::Forward));
        for item in iter {
            if page.len() >= limit {
                break;
            }
            let (raw_key, value) = item.map_err(io)?;
            if !raw_key.starts_with(&prefix) {
                break;
            }
            let (_, key) = parse_hint_key(&raw_key)?;
            let state = decode_record(&key, &value)?;
            page.push((key, state));
        }
        Ok(page)
    }

    fn remove_hint_if_unchanged(&self, target: &NodeId, key: &Key, delivered: &KeyState) -> Result<bool, EngineError> {
        let raw_key = hint_key(target, key);
        let _guard = self.locks.lock(KeyLocks::stripe(key.position()));
        let mut counts = self.counts();
        if self.read(CF_HINTS, &raw_key, key)?.as_ref() != Some(delivered) {
            return Ok(false);
        }
        // Deleting a delivered hint need not be synced: if it comes back after a crash it
        // is delivered again, and merging it twice changes nothing.
        self.db.delete_cf(self.cf(CF_HINTS), &raw_key).map_err(io)?;
        if let Some(count) = counts.get_mut(target) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(target);
            }
        }
        Ok(true)
    }

    fn hint_counts(&self) -> Result<Vec<(NodeId, u64)>, EngineError> {
        Ok(self.counts().iter().map(|(t, c)| (t.clone(), *c)).collect())
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError> {
        self.db.get_cf(self.cf(CF_META), name.as_bytes()).map_err(io)
    }

    fn put_meta(&self, name: &str, value: &[u8], durability: Durability) -> Result<(), EngineError> {
        self.db
            .put_cf_opt(self.cf(CF_META), name.as_bytes(), value, &write_options(durability))
            .map_err(io)
    }
}
