//! One conformance suite run against both engines, plus RocksDB-only checks
//! (persistence across reopen, corrupt records).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use ringkv_ring::{NodeId, Position};
use ringkv_storage::{
    ActorId, Durability, Engine, EngineError, Hlc, Key, KeyState, Limits, MemoryEngine, RocksEngine, VersionVector,
    Write,
};

fn key(name: &str) -> Key {
    Limits::default().key(name.to_owned()).unwrap()
}

fn state(actor: u64, value: &str) -> KeyState {
    let mut s = KeyState::new();
    s.put(
        ActorId::new(actor),
        &VersionVector::new(),
        Write {
            value: Some(Bytes::from(value.to_owned())),
            hlc: Hlc::new(1, 0),
            expires_at_ms: None,
        },
    );
    s
}

fn values(state: &KeyState) -> Vec<String> {
    let mut v: Vec<String> = state
        .visible(0)
        .map(|s| String::from_utf8_lossy(s.value().unwrap()).into_owned())
        .collect();
    v.sort();
    v
}

fn node(id: &str) -> NodeId {
    NodeId::try_from(id).unwrap()
}

fn check_conformance(engine: &dyn Engine) {
    // Get of a missing key.
    assert!(engine.get(&key("missing")).unwrap().is_none());

    // Update writes, merge keeps concurrent siblings.
    let k = key("k1");
    engine.merge(&k, &state(1, "a"), Durability::Sync).unwrap();
    let merged = engine.merge(&k, &state(2, "b"), Durability::Buffered).unwrap();
    assert_eq!(values(&merged), ["a", "b"]);
    assert_eq!(engine.get(&k).unwrap().unwrap(), merged);

    // A put through update with the read context replaces both.
    let context = merged.context().clone();
    let after = engine
        .update(&k, Durability::Sync, &mut |s| {
            s.put(
                ActorId::new(1),
                &context,
                Write {
                    value: Some(Bytes::from("c")),
                    hlc: Hlc::new(2, 0),
                    expires_at_ms: None,
                },
            );
        })
        .unwrap();
    assert_eq!(values(&after), ["c"]);

    // Batches merge, including a key repeated within the batch.
    let batch: Vec<(Key, KeyState)> = (0..50)
        .map(|i| (key(&format!("b{i}")), state(3, &format!("x{i}"))))
        .collect();
    let mut with_repeat = batch.clone();
    with_repeat.push((key("b0"), state(4, "y0")));
    let changes = engine.merge_batch(&with_repeat, Durability::Sync).unwrap();
    assert_eq!(changes.len(), 50, "one change per distinct key");
    let b0 = changes.iter().find(|c| c.key.as_bytes() == b"b0").unwrap();
    assert!(b0.before.is_empty());
    assert_eq!(values(&b0.after), ["x0", "y0"]);
    assert_eq!(values(&engine.get(&key("b0")).unwrap().unwrap()), ["x0", "y0"]);

    // Scans return keys in position order, bounded, resumable, and exactly the range.
    let all = scan_all(engine, 0, Position::MAX);
    assert_eq!(all.len(), 51);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    let mid = all[25].position();
    let low = scan_all(engine, 0, mid);
    let high = scan_all(engine, mid.wrapping_add(1), Position::MAX);
    assert_eq!(low.len() + high.len(), all.len());
    assert!(low.iter().all(|k| k.position() <= mid));
    let first_page = engine.scan(0, Position::MAX, None, 7).unwrap();
    assert_eq!(first_page.len(), 7);

    // remove_if_unchanged refuses when the state moved on.
    let stale = engine.get(&key("b1")).unwrap().unwrap();
    engine.merge(&key("b1"), &state(9, "newer"), Durability::Sync).unwrap();
    assert!(!engine
        .remove_if_unchanged(&key("b1"), &stale, Durability::Sync)
        .unwrap());
    let current = engine.get(&key("b1")).unwrap().unwrap();
    assert!(engine
        .remove_if_unchanged(&key("b1"), &current, Durability::Sync)
        .unwrap());
    assert!(engine.get(&key("b1")).unwrap().is_none());

    // Hints: merged per (target, key), listed per target, removed only if unchanged.
    let (n2, n3) = (node("n2"), node("n3"));
    engine
        .put_hint(&n2, &key("h1"), &state(1, "a"), Durability::Sync)
        .unwrap();
    engine
        .put_hint(&n2, &key("h1"), &state(2, "b"), Durability::Sync)
        .unwrap();
    engine
        .put_hint(&n2, &key("h2"), &state(1, "c"), Durability::Sync)
        .unwrap();
    engine
        .put_hint(&n3, &key("h1"), &state(1, "d"), Durability::Sync)
        .unwrap();
    assert_eq!(engine.hint_counts().unwrap(), vec![(n2.clone(), 2), (n3.clone(), 1)]);
    let hints = engine.hints(&n2, 100).unwrap();
    assert_eq!(hints.len(), 2);
    let (hk, hs) = hints.iter().find(|(k, _)| k.as_bytes() == b"h1").unwrap().clone();
    assert_eq!(values(&hs), ["a", "b"]);
    engine.put_hint(&n2, &hk, &state(5, "late"), Durability::Sync).unwrap();
    assert!(
        !engine.remove_hint_if_unchanged(&n2, &hk, &hs).unwrap(),
        "a hint that changed is kept"
    );
    let fresh = engine
        .hints(&n2, 100)
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == hk)
        .unwrap()
        .1;
    assert!(engine.remove_hint_if_unchanged(&n2, &hk, &fresh).unwrap());
    assert_eq!(engine.hint_counts().unwrap(), vec![(n2.clone(), 1), (n3.clone(), 1)]);
    assert_eq!(engine.hints(&n3, 100).unwrap().len(), 1);
    assert_eq!(values(&engine.hint(&n3, &key("h1")).unwrap().unwrap()), ["d"]);
    assert!(engine.hint(&n3, &key("h2")).unwrap().is_none());

    // Metadata.
    assert!(engine.get_meta("incarnation").unwrap().is_none());
    engine.put_meta("incarnation", b"42", Durability::Sync).unwrap();
    assert_eq!(engine.get_meta("incarnation").unwrap().as_deref(), Some(&b"42"[..]));
}

fn scan_all(engine: &dyn Engine, lo: Position, hi: Position) -> Vec<Key> {
    let mut out: Vec<Key> = Vec::new();
    loop {
        let page = engine.scan(lo, hi, out.last(), 4).unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page.into_iter().map(|(k, _)| k));
    }
}

#[test]
fn memory_engine_conforms() {
    check_conformance(&MemoryEngine::new());
}

#[test]
fn rocks_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    check_conformance(&RocksEngine::open(dir.path()).unwrap());
}

#[test]
fn rocks_engine_keeps_data_and_hints_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = RocksEngine::open(dir.path()).unwrap();
        engine.merge(&key("k"), &state(1, "kept"), Durability::Sync).unwrap();
        engine
            .put_hint(&node("n9"), &key("k"), &state(1, "kept"), Durability::Sync)
            .unwrap();
    }
    let engine = RocksEngine::open(dir.path()).unwrap();
    assert_eq!(values(&engine.get(&key("k")).unwrap().unwrap()), ["kept"]);
    assert_eq!(engine.hint_counts().unwrap(), vec![(node("n9"), 1)]);
}

#[test]
fn rocks_engine_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksEngine::open(dir.path()).unwrap();
    match RocksEngine::open(dir.path()) {
        Err(EngineError::Open { reason, .. }) => {
            assert!(reason.to_lowercase().contains("lock"), "{reason}")
        }
        other => panic!("expected an open error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn corrupt_records_are_typed_errors_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = RocksEngine::open(dir.path()).unwrap();
        engine.merge(&key("good"), &state(1, "fine"), Durability::Sync).unwrap();
        engine
            .merge(&key("bad"), &state(1, "soon corrupt"), Durability::Sync)
            .unwrap();
    }
    {
        // Flip a byte of the stored record for "bad" behind the engine's back.
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let db = rocksdb::DB::open_cf(&options, dir.path(), ["data", "hints", "meta"]).unwrap();
        let cf = db.cf_handle("data").unwrap();
        let bad = key("bad");
        let mut raw_key = bad.position().to_be_bytes().to_vec();
        raw_key.extend_from_slice(bad.as_bytes());
        let mut record = db.get_cf(cf, &raw_key).unwrap().unwrap();
        let last = record.len() - 1;
        record[last] ^= 0x40;
        db.put_cf(cf, &raw_key, record).unwrap();
    }
    let engine = RocksEngine::open(dir.path()).unwrap();
    let err = engine.get(&key("bad")).unwrap_err();
    assert!(matches!(err, EngineError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("bad") && err.to_string().contains("checksum"),
        "{err}"
    );
    // A write to the corrupt key fails rather than replacing what is there.
    assert!(engine.merge(&key("bad"), &state(2, "x"), Durability::Sync).is_err());
    assert!(matches!(engine.get(&key("bad")), Err(EngineError::Corrupt { .. })));
    assert_eq!(values(&engine.get(&key("good")).unwrap().unwrap()), ["fine"]);
}
