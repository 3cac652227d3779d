//! Property tests of placement over whole rings with random node ids:
//! balance, movement on a join, determinism, preference lists and fallbacks,
//! zones, weights and ranges.
//!
//! These are the measured promises of DESIGN.md's "Placement" section. Each
//! test uses a fixed proptest seed so a failure reproduces on every machine;
//! case counts are small because each case builds rings of thousands of tokens
//! in a debug build. The figures the design promises are printed; run with
//! `cargo test -p ringkv-ring --test properties -- --nocapture` to see them.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use ringkv_ring::{key_position, Member, NodeId, Position, PositionRange, Ring, RING_WIDTH, VNODES_DEFAULT};

/// A reproducible configuration: fixed seed, no regression files (the seed
/// already replays a failure).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x7269_6e67_6b76),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `count` distinct random valid node ids, 1..=64 bytes of the id alphabet.
fn node_ids(count: usize) -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::btree_set("[A-Za-z0-9._-]{1,64}", count).prop_map(|ids| {
        ids.into_iter()
            .map(|id| NodeId::new(&id).expect("strategy yields valid ids"))
            .collect()
    })
}

/// Positions to probe a ring at: random ones, the ends of the key space, and
/// each token's position and its neighbours (where off-by-one errors live).
fn probes(ring: &Ring, random: &[Position]) -> Vec<Position> {
    let mut probes: Vec<Position> = random.to_vec();
    probes.extend([0, 1, u64::MAX]);
    for (position, _) in ring.tokens().step_by(7) {
        probes.extend([position.wrapping_sub(1), position, position.wrapping_add(1)]);
    }
    probes
}

fn ring_of(ids: &[NodeId], vnodes: u16) -> Ring {
    Ring::new(ids.iter().map(|id| Member::new(id.clone(), vnodes))).expect("valid membership")
}

/// Busiest share over mean share.
fn max_over_mean(shares: &BTreeMap<NodeId, f64>) -> f64 {
    let mean = shares.values().sum::<f64>() / shares.len() as f64;
    shares.values().copied().fold(0.0, f64::max) / mean
}

/// The owner of `position` computed the slow, obvious way from the token list.
fn owner_by_scan(ring: &Ring, position: Position) -> Option<NodeId> {
    let tokens: Vec<(Position, &NodeId)> = ring.tokens().collect();
    tokens
        .iter()
        .find(|(token, _)| *token >= position)
        .or(tokens.first())
        .map(|(_, node)| (*node).clone())
}

// Balance, measured over 300 random id sets of 10 nodes x 256 vnodes
// (release build, a one-off experiment):
//   replica share (n=3) max/mean: p50 1.056, p95 1.091, p99 1.108, max 1.113
//   primary share       max/mean: p50 1.096, p95 1.155, p99 1.239, max 1.251
// So the design's 15% promise is asserted on the replica share, which is
// what a node stores and serves: a node's replica share sums three arcs
// per token, which averages out much of the randomness of single arcs.
// The primary share (what a node coordinates) misses 15% for about 1 id set
// in 20, so it is only held to a looser 1.30 bound and printed.
proptest! {
    #![proptest_config(config(64))]

    /// **Asserted:** the replica share (n=3) of the busiest of 10 nodes with
    /// 256 vnodes is at most 1.15x the mean. **Printed:** the same ratio for
    /// the primary share, which is held only to 1.30x (see the figures above).
    #[test]
    fn balance_of_ten_nodes(ids in node_ids(10)) {
        let ring = ring_of(&ids, VNODES_DEFAULT);
        let replica = max_over_mean(&ring.replica_share(3));
        let primary = max_over_mean(&ring.primary_share());
        println!("balance: replica (n=3) max/mean {replica:.3}, primary max/mean {primary:.3}");
        prop_assert!(replica <= 1.15, "replica max/mean {replica}");
        prop_assert!(primary <= 1.30, "primary max/mean {primary}");
    }

    /// Adding an 11th node moves about 3/11 of the key space, and every moved
    /// range gains exactly the new node and loses exactly one old node.
    #[test]
    fn adding_a_node_moves_only_to_it(ids in node_ids(11), newcomer in 0..11usize) {
        let old_ids: Vec<NodeId> =
            ids.iter().enumerate().filter(|(i, _)| *i != newcomer).map(|(_, id)| id.clone()).collect();
        let new_node = ids[newcomer].clone();
        let old = ring_of(&old_ids, VNODES_DEFAULT);
        let new = ring_of(&ids, VNODES_DEFAULT);
        let diff = old.diff(&new, 3);
        for moved in &diff.moves {
            prop_assert!(moved.to.contains(&new_node), "{moved:?}");
            prop_assert!(!moved.from.contains(&new_node), "{moved:?}");
            prop_assert_eq!(moved.gained(), vec![new_node.clone()]);
            prop_assert_eq!(moved.lost().len(), 1);
        }
        let ratio = diff.moved_fraction() / (3.0 / 11.0);
        println!("movement: moved fraction {:.4} = {ratio:.3} x 3/11", diff.moved_fraction());
        prop_assert!((0.8..=1.25).contains(&ratio), "moved {ratio} x 3/11");
        // Nothing else moves: the moved share is exactly what the newcomer holds.
        let held = new.replica_share(3)[&new_node];
        prop_assert!((diff.moved_fraction() - held).abs() < 1e-9);
    }

    /// The same members in any order build an equal ring with equal lists.
    #[test]
    fn insertion_order_does_not_matter(
        (members, shuffled) in node_ids(6).prop_flat_map(|ids| {
            let members: Vec<Member> = ids
                .into_iter()
                .zip([1u16, 3, 64, 7, 32, 100])
                .zip([Some("a"), None, Some("b"), Some("a"), None, Some("c")])
                .map(|((id, vnodes), zone)| Member {
                    id,
                    vnodes,
                    zone: zone.map(str::to_owned),
                })
                .collect();
            (Just(members.clone()), Just(members).prop_shuffle())
        }),
        positions in proptest::collection::vec(any::<u64>(), 32),
    ) {
        let ring = Ring::new(members.clone()).expect("valid membership");
        let other = Ring::new(shuffled).expect("valid membership");
        prop_assert_eq!(&ring, &other);
        prop_assert!(ring.members().windows(2).all(|pair| pair[0].id < pair[1].id));
        for position in probes(&ring, &positions) {
            for n in [1u8, 3, 6] {
                prop_assert_eq!(ring.preference_list(position, n), other.preference_list(position, n));
            }
        }
    }

    /// Lists are distinct, of length min(n, nodes), start at the owner, and
    /// with the fallbacks name every node exactly once.
    #[test]
    fn preference_lists_and_fallbacks(
        ids in node_ids(7),
        vnodes in 1u16..=48,
        positions in proptest::collection::vec(any::<u64>(), 24),
    ) {
        let ring = ring_of(&ids, vnodes);
        let everyone: BTreeSet<NodeId> = ids.iter().cloned().collect();
        for position in probes(&ring, &positions) {
            for n in [1u8, 2, 3, 5, 7, 9, 16] {
                let list = ring.preference_list(position, n);
                prop_assert!(list.has_distinct_physical_nodes());
                prop_assert_eq!(list.len(), usize::from(n).min(ids.len()));
                prop_assert_eq!(list.first().cloned(), owner_by_scan(&ring, position));

                let fallbacks: Vec<NodeId> = ring.fallbacks(position, n).cloned().collect();
                prop_assert!(fallbacks.iter().all(|node| !list.contains(node)));
                let mut all: Vec<NodeId> = list.nodes().to_vec();
                all.extend(fallbacks);
                let distinct: BTreeSet<NodeId> = all.iter().cloned().collect();
                prop_assert_eq!(all.len(), distinct.len(), "a node is named twice");
                prop_assert_eq!(&distinct, &everyone);
            }
            // A longer list extends a shorter one: without zones it is a prefix walk.
            let short = ring.preference_list(position, 2);
            let long = ring.preference_list(position, 4);
            prop_assert_eq!(short.nodes(), &long.nodes()[..2]);
        }
    }

    /// Three zones and n=3: every list has one node per zone. Two zones and
    /// n=3: every list spans both zones with three distinct nodes.
    #[test]
    fn lists_spread_over_zones(
        ids in node_ids(9),
        zones_of in proptest::collection::vec(0..3usize, 9),
        positions in proptest::collection::vec(any::<u64>(), 24),
    ) {
        // Pin the first three nodes to distinct zones so every zone is used.
        let zone_of = |i: usize| if i < 3 { i } else { zones_of[i] };
        let three = Ring::new(ids.iter().enumerate().map(|(i, id)| {
            Member::new(id.clone(), 64).with_zone(format!("az-{}", zone_of(i)))
        }))
        .expect("valid membership");
        let two = Ring::new(ids.iter().enumerate().map(|(i, id)| {
            Member::new(id.clone(), 64).with_zone(format!("az-{}", zone_of(i) % 2))
        }))
        .expect("valid membership");
        let zones = |ring: &Ring, list: &ringkv_ring::PreferenceList| -> BTreeSet<String> {
            list.iter()
                .map(|node| ring.member(node).and_then(|m| m.zone.clone()).expect("zoned"))
                .collect()
        };
        for position in probes(&three, &positions) {
            let list = three.preference_list(position, 3);
            prop_assert_eq!(zones(&three, &list).len(), 3, "{:?}", list);

            let list = two.preference_list(position, 3);
            prop_assert_eq!(list.len(), 3);
            prop_assert!(list.has_distinct_physical_nodes());
            prop_assert_eq!(zones(&two, &list).len(), 2, "{:?}", list);
            prop_assert_eq!(list.first(), two.owner(position));
        }
    }

    /// A node with twice the vnodes gets about twice the primary share.
    #[test]
    fn weight_scales_share(ids in node_ids(10), heavy in 0..10usize) {
        let ring = Ring::new(ids.iter().enumerate().map(|(i, id)| {
            Member::new(id.clone(), if i == heavy { 2 * VNODES_DEFAULT } else { VNODES_DEFAULT })
        }))
        .expect("valid membership");
        let shares = ring.primary_share();
        let heavy_share = shares[&ids[heavy]];
        let others_mean = (1.0 - heavy_share) / 9.0;
        let ratio = heavy_share / others_mean;
        println!("weight: 2x vnodes gives {ratio:.3}x the primary share");
        prop_assert!((1.6..=2.4).contains(&ratio), "ratio {ratio}");
    }

    /// `ranges_of` covers n copies of the ring in total and agrees with the
    /// preference lists position by position.
    #[test]
    fn ranges_agree_with_lists(
        ids in node_ids(6),
        vnodes in 1u16..=40,
        n in 1u8..=4,
        positions in proptest::collection::vec(any::<u64>(), 16),
    ) {
        let ring = ring_of(&ids, vnodes);
        let ranges: BTreeMap<NodeId, Vec<PositionRange>> =
            ids.iter().map(|id| (id.clone(), ring.ranges_of(id, n))).collect();
        let total: u128 = ranges.values().flatten().map(PositionRange::width).sum();
        prop_assert_eq!(total, u128::from(n) * RING_WIDTH);
        for (node, held) in &ranges {
            // Merged: no range ends where another starts, across the wrap too.
            for (i, left) in held.iter().enumerate() {
                for (j, right) in held.iter().enumerate() {
                    prop_assert!(i == j || left.end() != right.start(), "{:?}", held);
                }
            }
            prop_assert!(held.windows(2).all(|pair| pair[0].start() < pair[1].start()));
            let share = ring.replica_share(n)[node];
            let width: u128 = held.iter().map(PositionRange::width).sum();
            prop_assert!((width as f64 / RING_WIDTH as f64 - share).abs() < 1e-12);
        }
        for position in probes(&ring, &positions) {
            let list = ring.preference_list(position, n);
            for (node, held) in &ranges {
                let ranged = held.iter().any(|range| range.contains(position));
                prop_assert_eq!(ranged, list.contains(node), "{} at {:#x}", node, position);
            }
        }
    }

    /// `diff` is exact: a position is in a move iff its lists differ, and the
    /// move carries exactly those lists. Random membership changes: joins,
    /// leaves and reweights at once.
    #[test]
    fn diff_is_exact(
        ids in node_ids(8),
        old_vnodes in proptest::collection::vec(0u16..=24, 8),
        new_vnodes in proptest::collection::vec(0u16..=24, 8),
        n in 1u8..=3,
        positions in proptest::collection::vec(any::<u64>(), 16),
    ) {
        // 0 vnodes here means "not a member".
        let build = |vnodes: &[u16]| {
            Ring::new(ids.iter().zip(vnodes).filter(|(_, v)| **v > 0).map(|(id, v)| Member::new(id.clone(), *v)))
                .expect("valid membership")
        };
        let (old, new) = (build(&old_vnodes), build(&new_vnodes));
        let diff = old.diff(&new, n);
        let mut probes = probes(&old, &positions);
        probes.extend(self::probes(&new, &[]));
        for position in probes {
            let from = old.preference_list(position, n).into_vec();
            let to = new.preference_list(position, n).into_vec();
            let covering: Vec<_> = diff.moves.iter().filter(|m| m.range.contains(position)).collect();
            prop_assert!(covering.len() <= 1);
            match covering.first() {
                Some(moved) => {
                    prop_assert_eq!(&moved.from, &from);
                    prop_assert_eq!(&moved.to, &to);
                }
                None => prop_assert_eq!(&from, &to),
            }
        }
        prop_assert!((0.0..=1.0).contains(&diff.moved_fraction()));
        prop_assert_eq!(new.diff(&old, n).moved_fraction(), diff.moved_fraction());
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// `contains`, `width` and `scan_bounds` describe the same set of positions.
    #[test]
    fn position_range_views_agree(
        start in prop_oneof![any::<u64>(), Just(0u64), Just(1), Just(u64::MAX - 1), Just(u64::MAX)],
        end in prop_oneof![any::<u64>(), Just(0u64), Just(1), Just(u64::MAX - 1), Just(u64::MAX)],
        samples in proptest::collection::vec(any::<u64>(), 16),
    ) {
        let end = if samples[0] % 8 == 0 { start } else { end }; // full ranges too
        let range = PositionRange::new(start, end);
        let bounds = range.scan_bounds();
        prop_assert!(!bounds.is_empty() && bounds.len() <= 2);
        prop_assert!(bounds.iter().all(|(lo, hi)| lo <= hi));
        if bounds.len() == 2 {
            prop_assert!(bounds[0].1 < bounds[1].0, "ascending and disjoint");
        }
        let width: u128 = bounds.iter().map(|(lo, hi)| u128::from(hi - lo) + 1).sum();
        prop_assert_eq!(width, range.width());
        prop_assert!(range.contains(end));
        prop_assert_eq!(range.contains(start), range.is_full());
        let mut probes = samples.clone();
        probes.extend([0, u64::MAX, start, end, start.wrapping_add(1), end.wrapping_add(1)]);
        for position in probes {
            let bounded = bounds.iter().any(|(lo, hi)| (*lo..=*hi).contains(&position));
            prop_assert_eq!(range.contains(position), bounded, "{} at {:#x}", range, position);
        }
    }
}

/// The balance and movement figures for a fixed, readable cluster
/// (`node-0` .. `node-10`), printed for the docs; asserted like the random ones.
#[test]
fn figures_for_named_cluster() {
    let ids: Vec<NodeId> = (0..11)
        .map(|i| NodeId::new(&format!("node-{i}")).expect("valid id"))
        .collect();
    let ten = ring_of(&ids[..10], VNODES_DEFAULT);
    let eleven = ring_of(&ids, VNODES_DEFAULT);
    let replica = max_over_mean(&ten.replica_share(3));
    let primary = max_over_mean(&ten.primary_share());
    let moved = ten.diff(&eleven, 3).moved_fraction();
    println!(
        "named cluster: replica (n=3) max/mean {replica:.3}, primary max/mean {primary:.3}, \
         10->11 moved {moved:.4} = {:.3} x 3/11",
        moved / (3.0 / 11.0)
    );
    assert!(replica <= 1.15);
    assert!((0.8..=1.25).contains(&(moved / (3.0 / 11.0))));
}

/// Looking a key up goes through its hash; equal keys land on equal lists.
#[test]
fn keys_place_through_their_hash() {
    let ids: Vec<NodeId> = (0..5)
        .map(|i| NodeId::new(&format!("n{i}")).expect("valid id"))
        .collect();
    let ring = ring_of(&ids, 32);
    for key in [&b""[..], b"a", b"user:42", &[0xff; 1024]] {
        assert_eq!(
            ring.preference_list(key_position(key), 3),
            ring.preference_list(xxhash_rust::xxh3::xxh3_64(key), 3)
        );
    }
}
