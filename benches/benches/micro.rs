//! Micro-benchmarks of the hot paths below the network: ring lookup, version-vector and
//! key-state merge, and engine put/get of 100-byte values on both engines.
//!
//! Run: `cargo bench -p ringkv-bench --bench micro`. Figures go to docs/benchmarks.md.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringkv_ring::{key_position, Member, NodeId, Ring};
use ringkv_storage::{
    ActorId, Durability, Engine, Hlc, KeyState, Limits, MemoryEngine, RocksEngine, VersionVector, Write,
};

fn ring(nodes: usize) -> Ring {
    Ring::new((0..nodes).map(|i| Member::new(NodeId::try_from(format!("node-{i}").as_str()).unwrap(), 256))).unwrap()
}

fn ring_lookup(c: &mut Criterion) {
    let ring = ring(10);
    let positions: Vec<u64> = (0..1024u64).map(|i| key_position(&i.to_le_bytes())).collect();
    let mut i = 0;
    c.bench_function("ring/preference_list n=3, 10 nodes x 256 vnodes", |b| {
        b.iter(|| {
            i = (i + 1) % positions.len();
            black_box(ring.preference_list(positions[i], 3))
        })
    });
}

fn write(value: &'static str) -> Write {
    Write {
        value: Some(Bytes::from_static(value.as_bytes())),
        hlc: Hlc::new(1, 0),
        expires_at_ms: None,
    }
}

fn merges(c: &mut Criterion) {
    let mut a = VersionVector::new();
    let mut b = VersionVector::new();
    for actor in 0..5u64 {
        a.add(ringkv_storage::Dot::new(ActorId::new(actor), actor + 3));
        b.add(ringkv_storage::Dot::new(ActorId::new(actor + 2), actor + 1));
    }
    c.bench_function("version_vector/join 5 actors", |bench| {
        bench.iter_batched(
            || a.clone(),
            |mut x| {
                x.join(&b);
                x
            },
            BatchSize::SmallInput,
        )
    });
    let mut left = KeyState::new();
    left.put(ActorId::new(1), &VersionVector::new(), write("left"));
    let mut right = left.clone();
    right.put(ActorId::new(2), &VersionVector::new(), write("right"));
    left.put(ActorId::new(1), &VersionVector::new(), write("left again"));
    c.bench_function("key_state/merge 2 replicas, 3 siblings", |bench| {
        bench.iter_batched(
            || left.clone(),
            |mut x| {
                x.merge(&right);
                x
            },
            BatchSize::SmallInput,
        )
    });
}

fn engine_ops(c: &mut Criterion, name: &str, engine: &dyn Engine) {
    let limits = Limits::default();
    let keys: Vec<_> = (0..10_000)
        .map(|i| limits.key(format!("bench-key-{i}")).unwrap())
        .collect();
    let value = Bytes::from(vec![b'x'; 100]);
    let mut i = 0;
    c.bench_function(&format!("engine/{name} put 100 B (buffered)"), |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let value = value.clone();
            engine
                .update(&keys[i], Durability::Buffered, &mut |s| {
                    s.put(
                        ActorId::new(1),
                        &s.context().clone(),
                        Write {
                            value: Some(value.clone()),
                            hlc: Hlc::new(1, 0),
                            expires_at_ms: None,
                        },
                    );
                })
                .unwrap()
        })
    });
    c.bench_function(&format!("engine/{name} get 100 B"), |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(engine.get(&keys[i]).unwrap())
        })
    });
}

fn engines(c: &mut Criterion) {
    engine_ops(c, "memory", &MemoryEngine::new());
    let dir = tempfile::tempdir().unwrap();
    engine_ops(c, "rocksdb", &RocksEngine::open(dir.path()).unwrap());
}

criterion_group!(benches, ring_lookup, merges, engines);
criterion_main!(benches);
