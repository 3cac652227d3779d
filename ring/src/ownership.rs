//! Ownership accounting: which ranges of the key space a node holds, and what
//! share of the key space each node holds, first or as any replica.
//!
//! Everything here is exact, computed from the gaps between tokens, not by
//! sampling keys: every position in a token's segment has the same preference
//! list, so one walk per token decides the whole segment. That makes the
//! figures reproducible to the last bit, which the balance tests and the
//! rebalancer both rely on. This module reports; it does not decide moves
//! (that is `diff.rs`) nor stream data (that is the node's rebalancer).

use std::collections::BTreeMap;

use crate::position::{fraction_of_ring, merge_adjacent};
use crate::ring::NodeIndex;
use crate::{NodeId, PositionRange, Ring, REPLICAS_MAX};

impl Ring {
    /// The ranges whose preference list (of size `n`) contains `node`,
    /// adjacent ranges merged, sorted by start (so a range that wraps through 0
    /// comes last). A node outside the ring holds nothing; a node that is in
    /// every list (fewer than `n + 1` nodes) holds the full ring.
    ///
    /// # Panics
    /// If `n` is 0 or above [`REPLICAS_MAX`].
    ///
    /// ```
    /// use ringkv_ring::{Member, Ring};
    ///
    /// let ids = ["n1", "n2", "n3", "n4"];
    /// let ring = Ring::new(ids.map(|id| Member::new(id.parse().expect("valid id"), 16)))?;
    /// let n1 = "n1".parse()?;
    /// let ranges = ring.ranges_of(&n1, 2);
    /// let held: u128 = ranges.iter().map(|range| range.width()).sum();
    /// assert!(held > 0 && held < 1 << 64);
    /// for range in &ranges {
    ///     assert!(ring.preference_list(range.end(), 2).contains(&n1));
    /// }
    /// # Ok::<(), ringkv_ring::RingError>(())
    /// ```
    pub fn ranges_of(&self, node: &NodeId, n: u8) -> Vec<PositionRange> {
        assert!(n >= 1, "replica count n must be at least 1");
        assert!(n <= REPLICAS_MAX, "replica count n={n} is above REPLICAS_MAX");
        let Some(node) = self.node_index(node) else {
            return Vec::new();
        };
        let held = (0..self.token_count()).filter_map(|token| {
            let segment = self.token_segment(token)?;
            self.walk(token, n).as_slice().contains(&node).then_some((segment, ()))
        });
        merge_adjacent(held).into_iter().map(|(range, ())| range).collect()
    }

    /// The fraction of the key space each member holds a replica of, with
    /// preference lists of size `n`. Every member appears, possibly with 0.
    /// The fractions sum to `min(n, node count)`.
    ///
    /// # Panics
    /// If `n` is 0 or above [`REPLICAS_MAX`].
    pub fn replica_share(&self, n: u8) -> BTreeMap<NodeId, f64> {
        assert!(n >= 1, "replica count n must be at least 1");
        assert!(n <= REPLICAS_MAX, "replica count n={n} is above REPLICAS_MAX");
        let mut widths = vec![0u128; self.physical_node_count()];
        for token in 0..self.token_count() {
            if let Some(segment) = self.token_segment(token) {
                for &node in self.walk(token, n).as_slice() {
                    widths[usize::from(node)] += segment.width();
                }
            }
        }
        debug_assert_eq!(
            widths.iter().sum::<u128>(),
            crate::RING_WIDTH * (usize::from(n).min(self.physical_node_count()) as u128)
        );
        self.shares(&widths)
    }

    /// The fraction of the key space each member is first in the preference
    /// list for, i.e. owns by token. Every member appears; the fractions sum
    /// to 1 (0 on an empty ring).
    pub fn primary_share(&self) -> BTreeMap<NodeId, f64> {
        let mut widths = vec![0u128; self.physical_node_count()];
        for (token, &(_, node)) in self.token_table().iter().enumerate() {
            if let Some(segment) = self.token_segment(token) {
                widths[usize::from(node)] += segment.width();
            }
        }
        self.shares(&widths)
    }

    fn shares(&self, widths: &[u128]) -> BTreeMap<NodeId, f64> {
        widths
            .iter()
            .zip(0..)
            .map(|(&width, node): (&u128, NodeIndex)| (self.node_id(node).clone(), fraction_of_ring(width)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, Position, RING_WIDTH};

    fn ring(ids: &[&str], vnodes: u16) -> Ring {
        Ring::new(
            ids.iter()
                .map(|id| Member::new(NodeId::new(id).expect("valid id"), vnodes)),
        )
        .expect("valid membership")
    }

    fn id(text: &str) -> NodeId {
        NodeId::new(text).expect("valid id")
    }

    /// Checks `ranges_of(node, n)` against the preference lists at every
    /// token boundary and its neighbours, and the total width.
    fn check(ring: &Ring, node: &str, n: u8, expected_width: Option<u128>) {
        let node = id(node);
        let ranges = ring.ranges_of(&node, n);
        let width: u128 = ranges.iter().map(PositionRange::width).sum();
        if let Some(expected) = expected_width {
            assert_eq!(width, expected);
        }
        assert!(ranges.windows(2).all(|pair| pair[0].start() < pair[1].start()));
        let mut probes: Vec<Position> = vec![0, u64::MAX];
        for (position, _) in ring.tokens() {
            probes.extend([position.wrapping_sub(1), position, position.wrapping_add(1)]);
        }
        for position in probes {
            let listed = ring.preference_list(position, n).contains(&node);
            let ranged = ranges.iter().any(|range| range.contains(position));
            assert_eq!(listed, ranged, "{node} at {position:#x}");
        }
    }

    #[test]
    fn ranges_match_lists() {
        let ring = ring(&["a", "b", "c", "d", "e"], 8);
        for node in ["a", "c", "e"] {
            check(&ring, node, 1, None);
            check(&ring, node, 3, None);
        }
        // With no more nodes than replicas every node holds everything.
        check(&ring, "b", 5, Some(RING_WIDTH));
        let full = ring.ranges_of(&id("b"), 5);
        assert_eq!(full.len(), 1);
        assert!(full[0].is_full());
        check(&ring, "zz", 3, Some(0));
    }

    #[test]
    fn shares_sum_up() {
        let ring = ring(&["a", "b", "c", "d"], 16);
        for n in [1u8, 2, 3, 4, 6] {
            let total: f64 = ring.replica_share(n).values().sum();
            let expected = f64::from(n.min(4));
            assert!((total - expected).abs() < 1e-9, "n={n}: {total}");
        }
        let primary = ring.primary_share();
        assert_eq!(primary.len(), 4);
        assert!((primary.values().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(primary, ring.replica_share(1));
    }

    #[test]
    fn single_node_holds_all() {
        let ring = ring(&["solo"], 3);
        assert_eq!(ring.primary_share().get("solo"), Some(&1.0));
        assert_eq!(ring.replica_share(3).get("solo"), Some(&1.0));
        check(&ring, "solo", 3, Some(RING_WIDTH));
        let empty = Ring::new([]).expect("empty");
        assert!(empty.primary_share().is_empty());
        assert!(empty.ranges_of(&id("a"), 3).is_empty());
    }
}
