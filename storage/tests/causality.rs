//! Property tests for the causality algebra: histories of puts, deletes and replica
//! syncs are generated at random, and the replicas' states are checked against a ground
//! truth of which write has seen which.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use ringkv_storage::{ActorId, Dot, Hlc, KeyState, VersionVector, Write};

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// Replica `at` coordinates a write whose client read `context_from` (or nothing).
    Put {
        at: usize,
        context_from: Option<usize>,
        delete: bool,
    },
    /// Replica `to` merges the state of replica `from`.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..REPLICAS, proptest::option::of(0..REPLICAS), proptest::bool::weighted(0.15))
            .prop_map(|(at, context_from, delete)| Op::Put { at, context_from, delete }),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// Replica states plus the ground truth: every write with the dots its client had seen,
/// and for each replica the set of writes it has received.
struct History {
    states: Vec<KeyState>,
    writes: BTreeMap<Dot, BTreeSet<Dot>>,
    known: Vec<BTreeSet<Dot>>,
}

fn run(ops: &[Op]) -> History {
    let mut h = History {
        states: vec![KeyState::new(); REPLICAS],
        writes: BTreeMap::new(),
        known: vec![BTreeSet::new(); REPLICAS],
    };
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Put {
                at,
                context_from,
                delete,
            } => {
                let (context, seen) = match context_from {
                    Some(j) => (h.states[j].context().clone(), h.known[j].clone()),
                    None => (VersionVector::new(), BTreeSet::new()),
                };
                let value = (!delete).then(|| Bytes::from(format!("v{i}")));
                let write = Write {
                    value,
                    hlc: Hlc::new(i as u64, 0),
                    expires_at_ms: None,
                };
                let dot = h.states[at].put(ActorId::new(at as u64 + 1), &context, write);
                assert!(!h.writes.contains_key(&dot), "dot {dot} assigned twice");
                h.writes.insert(dot, seen.clone());
                h.known[at].extend(seen);
                h.known[at].insert(dot);
            }
            Op::Sync { from, to } => {
                let incoming = h.states[from].clone();
                h.states[to].merge(&incoming);
                let known_from = h.known[from].clone();
                h.known[to].extend(known_from);
            }
        }
    }
    h
}

/// The writes no other write's client had seen: what must survive as siblings.
fn maximal(writes: &BTreeMap<Dot, BTreeSet<Dot>>, among: &BTreeSet<Dot>) -> BTreeSet<Dot> {
    among
        .iter()
        .copied()
        .filter(|d| !among.iter().any(|other| writes[other].contains(d)))
        .collect()
}

fn dots(state: &KeyState) -> BTreeSet<Dot> {
    state.siblings().iter().map(|s| s.dot()).collect()
}

fn config() -> Config {
    Config {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x5eed_0001),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_is_commutative_associative_idempotent(ops in proptest::collection::vec(op(), 0..40)) {
        let h = run(&ops);
        let (a, b, c) = (&h.states[0], &h.states[1], &h.states[2]);
        let join = |x: &KeyState, y: &KeyState| { let mut z = x.clone(); z.merge(y); z };
        prop_assert_eq!(join(a, b), join(b, a));
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
        prop_assert_eq!(join(a, a), a.clone());
    }

    #[test]
    fn siblings_are_exactly_the_causally_maximal_writes(ops in proptest::collection::vec(op(), 0..40)) {
        let h = run(&ops);
        // Each replica holds the maximal writes among those it received...
        for (state, known) in h.states.iter().zip(&h.known) {
            prop_assert_eq!(dots(state), maximal(&h.writes, known));
        }
        // ...and after a full exchange no acknowledged write is lost: every write is a
        // sibling or was seen by a later write's client.
        let mut all = KeyState::new();
        for state in &h.states { all.merge(state); }
        let everything: BTreeSet<Dot> = h.writes.keys().copied().collect();
        prop_assert_eq!(dots(&all), maximal(&h.writes, &everything));
    }

    #[test]
    fn a_context_covers_exactly_what_it_saw(ops in proptest::collection::vec(op(), 0..40)) {
        let h = run(&ops);
        for (state, known) in h.states.iter().zip(&h.known) {
            for dot in h.writes.keys() {
                prop_assert_eq!(state.context().contains(*dot), known.contains(dot), "dot {}", dot);
            }
            let decoded = VersionVector::decode(&state.context().encode()).unwrap();
            prop_assert_eq!(&decoded, state.context());
        }
    }

    #[test]
    fn merge_order_does_not_matter(ops in proptest::collection::vec(op(), 0..30), order in Just(()).prop_perturb(|_, mut rng| {
        let mut order: Vec<usize> = (0..REPLICAS).collect();
        for i in (1..order.len()).rev() { order.swap(i, (rng.next_u32() as usize) % (i + 1)); }
        order
    })) {
        let h = run(&ops);
        let mut forward = KeyState::new();
        for state in &h.states { forward.merge(state); }
        let mut shuffled = KeyState::new();
        for &i in &order { shuffled.merge(&h.states[i]); }
        prop_assert_eq!(forward, shuffled);
    }

    #[test]
    fn garbage_contexts_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = VersionVector::decode(&bytes);
    }
}
