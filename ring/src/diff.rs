//! Ring diffs: exactly which ranges of the key space change preference list
//! between two rings, and so which data must move on a membership change.
//!
//! The union of both rings' token positions cuts the ring into elementary
//! ranges inside which neither ring changes owner, so one walk per ring per
//! elementary range decides it exactly. The diff names ranges and lists; it
//! does not stream anything. The node's rebalancer turns each [`RangeMove`]
//! into transfers from `from` to the nodes in `gained()`, and drops a range on
//! the nodes in `lost()` only after the new holders confirmed it.

use crate::position::{fraction_of_ring, merge_adjacent};
use crate::{NodeId, Position, PositionRange, Ring, REPLICAS_MAX};

/// One range whose preference list differs between the old and the new ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeMove {
    /// The positions concerned.
    pub range: PositionRange,
    /// The preference list in the old ring.
    pub from: Vec<NodeId>,
    /// The preference list in the new ring.
    pub to: Vec<NodeId>,
}

impl RangeMove {
    /// The nodes that must receive the range: in `to`, not in `from`.
    pub fn gained(&self) -> Vec<NodeId> {
        self.to
            .iter()
            .filter(|node| !self.from.contains(node))
            .cloned()
            .collect()
    }

    /// The nodes that may drop the range once the new holders have it: in
    /// `from`, not in `to`.
    pub fn lost(&self) -> Vec<NodeId> {
        self.from
            .iter()
            .filter(|node| !self.to.contains(node))
            .cloned()
            .collect()
    }
}

/// The ranges whose preference list changes from one ring to another, from
/// [`Ring::diff`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingDiff {
    /// Disjoint ranges sorted by start; adjacent ranges with the same `from`
    /// and `to` are merged.
    pub moves: Vec<RangeMove>,
}

impl RingDiff {
    /// The fraction of the key space whose preference list changed, in `[0, 1]`.
    pub fn moved_fraction(&self) -> f64 {
        fraction_of_ring(self.moves.iter().map(|m| m.range.width()).sum())
    }

    /// Whether no preference list changed.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

impl Ring {
    /// Every range whose preference list (of size `n`) differs between `self`
    /// (the old ring) and `new`.
    ///
    /// Lists are compared in order, since the order names the coordinator and
    /// the hint targets: a range whose replicas stay the same but swap places
    /// is a move with empty `gained()` and `lost()`. Empty rings are allowed;
    /// their lists are empty.
    ///
    /// # Panics
    /// If `n` is 0 or above [`REPLICAS_MAX`].
    ///
    /// ```
    /// use ringkv_ring::{Member, Ring};
    ///
    /// let member = |id: &str| Member::new(id.parse().expect("valid id"), 64);
    /// let old = Ring::new(["n1", "n2", "n3", "n4"].map(member))?;
    /// let new = Ring::new(["n1", "n2", "n3", "n4", "n5"].map(member))?;
    /// let diff = old.diff(&new, 3);
    /// let n5: ringkv_ring::NodeId = "n5".parse()?;
    /// assert!(diff.moves.iter().all(|m| m.gained() == vec![n5.clone()]));
    /// assert!(diff.moved_fraction() > 0.3 && diff.moved_fraction() < 0.9);
    /// assert!(new.diff(&new, 3).is_empty());
    /// # Ok::<(), ringkv_ring::RingError>(())
    /// ```
    pub fn diff(&self, new: &Ring, n: u8) -> RingDiff {
        assert!(n >= 1, "replica count n must be at least 1");
        assert!(n <= REPLICAS_MAX, "replica count n={n} is above REPLICAS_MAX");
        let cuts = union_positions(self, new);
        let Some(&last) = cuts.last() else {
            return RingDiff::default();
        };
        let mut changed = Vec::new();
        let mut previous = last;
        for &end in &cuts {
            // (previous, end] holds no token of either ring but at `end`, so the
            // owner of `end` owns all of it in each ring. A single cut gives
            // (end, end], the full ring, which is right: one position owns all.
            let range = PositionRange::new(previous, end);
            previous = end;
            let from = list_at(self, end, n);
            let to = list_at(new, end, n);
            if from != to {
                changed.push((range, (from, to)));
            }
        }
        let moves: Vec<RangeMove> = merge_adjacent(changed)
            .into_iter()
            .map(|(range, (from, to))| RangeMove {
                range,
                from: from.into_iter().cloned().collect(),
                to: to.into_iter().cloned().collect(),
            })
            .collect();
        debug_assert!(moves.iter().all(|m| m.from != m.to));
        RingDiff { moves }
    }
}

/// The sorted, distinct token positions of both rings.
fn union_positions(old: &Ring, new: &Ring) -> Vec<Position> {
    let mut positions: Vec<Position> = old
        .token_table()
        .iter()
        .chain(new.token_table())
        .map(|&(position, _)| position)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// The list of `position` in `ring` as node ids, compared across rings by id
/// because node indexes differ between rings. Borrowed to avoid cloning ids
/// for the many ranges that do not change.
fn list_at(ring: &Ring, position: Position, n: u8) -> Vec<&NodeId> {
    match ring.owner_token(position) {
        Some(owner) => ring
            .walk(owner, n)
            .as_slice()
            .iter()
            .map(|&node| ring.node_id(node))
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, RING_WIDTH};

    fn ring(members: &[(&str, u16)]) -> Ring {
        Ring::new(
            members
                .iter()
                .map(|&(id, vnodes)| Member::new(NodeId::new(id).expect("valid id"), vnodes)),
        )
        .expect("valid membership")
    }

    /// Checks that `old.diff(new, n)` is exact at every token boundary of
    /// both rings, and returns it.
    fn check(old: &Ring, new: &Ring, n: u8) -> RingDiff {
        let diff = old.diff(new, n);
        assert!(diff
            .moves
            .windows(2)
            .all(|pair| pair[0].range.start() < pair[1].range.start()));
        let mut probes: Vec<Position> = vec![0, u64::MAX];
        for (position, _) in old.tokens().chain(new.tokens()) {
            probes.extend([position.wrapping_sub(1), position, position.wrapping_add(1)]);
        }
        for position in probes {
            let from = old.preference_list(position, n).into_vec();
            let to = new.preference_list(position, n).into_vec();
            let mut covering = diff.moves.iter().filter(|m| m.range.contains(position));
            match covering.next() {
                Some(moved) => {
                    assert_eq!((&moved.from, &moved.to), (&from, &to), "at {position:#x}");
                    assert!(covering.next().is_none(), "moves overlap at {position:#x}");
                }
                None => assert_eq!(from, to, "unchanged at {position:#x}"),
            }
        }
        diff
    }

    #[test]
    fn same_ring_has_no_moves() {
        let ring = ring(&[("a", 8), ("b", 8), ("c", 8)]);
        let diff = check(&ring, &ring, 2);
        assert!(diff.is_empty());
        assert_eq!(diff.moved_fraction(), 0.0);
    }

    #[test]
    fn adding_and_removing_a_node() {
        let old = ring(&[("a", 8), ("b", 8), ("c", 8), ("d", 8)]);
        let new = ring(&[("a", 8), ("b", 8), ("c", 8), ("d", 8), ("e", 8)]);
        let e = NodeId::new("e").expect("valid id");
        let grown = check(&old, &new, 2);
        assert!(!grown.is_empty());
        for moved in &grown.moves {
            assert_eq!(moved.gained(), vec![e.clone()]);
            assert_eq!(moved.lost().len(), 1);
        }
        let shrunk = check(&new, &old, 2);
        assert_eq!(shrunk.moved_fraction(), grown.moved_fraction());
        for moved in &shrunk.moves {
            assert_eq!(moved.lost(), vec![e.clone()]);
        }
        // The moved share is exactly what the new node holds.
        let held = new.replica_share(2)[&e];
        assert!((grown.moved_fraction() - held).abs() < 1e-12);
    }

    #[test]
    fn from_and_to_empty_rings() {
        let empty = ring(&[]);
        let some = ring(&[("a", 4), ("b", 4)]);
        assert!(check(&empty, &empty, 3).is_empty());
        // Everything moves; the lists still differ in order between ranges
        // (a first or b first), so there is more than one move.
        let created = check(&empty, &some, 3);
        assert!(created.moves.len() >= 2);
        assert_eq!(created.moved_fraction(), 1.0);
        assert!(created.moves.iter().all(|m| m.gained().len() == 2));
        let removed = check(&some, &empty, 3);
        let width: u128 = removed.moves.iter().map(|m| m.range.width()).sum();
        assert_eq!(width, RING_WIDTH);
        assert!(removed.moves.iter().all(|m| m.lost().len() == 2));
        // A one-node ring moves as a single full range.
        let solo = ring(&[("a", 4)]);
        let created = check(&empty, &solo, 3);
        assert_eq!(created.moves.len(), 1);
        assert!(created.moves[0].range.is_full());
    }

    #[test]
    fn reweighting_moves_only_the_changed_node() {
        let old = ring(&[("a", 8), ("b", 8), ("c", 8)]);
        let new = ring(&[("a", 16), ("b", 8), ("c", 8)]);
        let a = NodeId::new("a").expect("valid id");
        let diff = check(&old, &new, 1);
        for moved in &diff.moves {
            assert_eq!(moved.to, vec![a.clone()]);
        }
    }

    #[test]
    fn range_move_sets() {
        let id = |text: &str| NodeId::new(text).expect("valid id");
        let moved = RangeMove {
            range: PositionRange::new(1, 2),
            from: vec![id("a"), id("b"), id("c")],
            to: vec![id("a"), id("d"), id("b")],
        };
        assert_eq!(moved.gained(), vec![id("d")]);
        assert_eq!(moved.lost(), vec![id("c")]);
        let reordered = RangeMove {
            range: PositionRange::new(1, 2),
            from: vec![id("a"), id("b")],
            to: vec![id("b"), id("a")],
        };
        assert!(reordered.gained().is_empty());
        assert!(reordered.lost().is_empty());
    }
}
