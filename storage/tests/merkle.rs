//! Property test: descending the segment trees of two replicas finds exactly the keys
//! whose states differ.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use ringkv_ring::key_position;
use ringkv_storage::merkle::{differing_keys, LeafId};
use ringkv_storage::SegmentTrees;

type Entries = BTreeMap<Vec<u8>, u64>;

fn trees(ends: &[u64], entries: &Entries) -> SegmentTrees {
    let mut trees = SegmentTrees::new(ends.iter().copied());
    for (key, digest) in entries {
        trees.apply(key_position(key), key, None, Some(*digest));
    }
    trees
}

/// What an exchange finds: roots, then leaves, then the keys of differing leaves.
fn diff(ends: &[u64], a: &Entries, b: &Entries) -> BTreeSet<Vec<u8>> {
    let (ta, tb) = (trees(ends, a), trees(ends, b));
    let leaf_entries = |entries: &Entries, trees: &SegmentTrees, id: LeafId| -> Vec<(Vec<u8>, u64)> {
        entries
            .iter()
            .filter(|(k, _)| trees.leaf_of(key_position(k)) == id)
            .map(|(k, d)| (k.clone(), *d))
            .collect()
    };
    let mut found = BTreeSet::new();
    for segment in 0..ta.segment_ends().len() {
        if ta.root(segment) == tb.root(segment) {
            continue;
        }
        for leaf in ta.differing_leaves(segment, tb.leaves(segment)) {
            let id = LeafId { segment, leaf };
            found.extend(differing_keys(&leaf_entries(a, &ta, id), &leaf_entries(b, &tb, id)));
        }
    }
    found
}

fn truth(a: &Entries, b: &Entries) -> BTreeSet<Vec<u8>> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

#[derive(Debug, Clone)]
enum Change {
    Remove(usize),
    Redigest(usize, u64),
    Add(Vec<u8>, u64),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<usize>().prop_map(Change::Remove),
        (any::<usize>(), any::<u64>()).prop_map(|(i, d)| Change::Redigest(i, d)),
        (proptest::collection::vec(any::<u8>(), 1..12), any::<u64>()).prop_map(|(k, d)| Change::Add(k, d)),
    ]
}

fn apply(base: &Entries, changes: &[Change]) -> Entries {
    let mut out = base.clone();
    for change in changes {
        let keys: Vec<Vec<u8>> = out.keys().cloned().collect();
        match change {
            Change::Remove(i) if !keys.is_empty() => {
                out.remove(&keys[i % keys.len()]);
            }
            Change::Redigest(i, d) if !keys.is_empty() => {
                out.insert(keys[i % keys.len()].clone(), *d);
            }
            Change::Add(k, d) => {
                out.insert(k.clone(), *d);
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(Config { cases: 256, rng_seed: RngSeed::Fixed(0x003e_4c1e), ..Config::default() })]

    #[test]
    fn diff_is_exactly_the_differing_keys(
        ends in proptest::collection::vec(any::<u64>(), 0..12),
        base in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..12), any::<u64>(), 0..200),
        changes in proptest::collection::vec(change(), 0..20),
    ) {
        let other = apply(&base, &changes);
        prop_assert_eq!(diff(&ends, &base, &other), truth(&base, &other));
        prop_assert!(diff(&ends, &base, &base).is_empty());
    }

    #[test]
    fn trees_do_not_depend_on_write_order(
        ends in proptest::collection::vec(any::<u64>(), 0..12),
        base in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..12), any::<u64>(), 0..100),
    ) {
        let forward = trees(&ends, &base);
        let mut backward = SegmentTrees::new(ends.iter().copied());
        for (key, digest) in base.iter().rev() {
            backward.apply(key_position(key), key, None, Some(*digest));
        }
        prop_assert_eq!(forward, backward);
    }
}
