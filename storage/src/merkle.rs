//! Hash trees over ring segments, for anti-entropy between replicas.
//!
//! The ring's tokens cut the key space into *segments* `(previous token, token]`; every
//! replica of a segment agrees on its boundaries because they come from the same ring.
//! Each segment gets a fixed-shape binary tree of [`SEGMENT_LEAVES`] leaves, a leaf per
//! equal slice of the segment's positions. A leaf holds the XOR of `entry_hash(key,
//! digest)` over the keys in its slice, and every inner node the XOR of its children.
//!
//! XOR makes the trees **incremental**: a write that changes a key's digest from `old` to
//! `new` XORs `entry_hash(key, old) ^ entry_hash(key, new)` into one leaf and its
//! ancestors, in any order, with no rescan. Two replicas compare segment roots, then the
//! leaves of segments that differ, then the keys of leaves that differ, so the traffic of
//! an exchange grows with the difference, not with the data.
//!
//! This module is pure: the node feeds it writes and asks it for hashes.

use ringkv_ring::Position;

/// Leaves per segment tree (a power of two).
pub const SEGMENT_LEAVES: usize = 64;
const _: () = assert!(SEGMENT_LEAVES.is_power_of_two());

/// The hash a key contributes to its leaf, for a given state digest.
pub fn entry_hash(key: &[u8], digest: u64) -> u64 {
    let mut input = Vec::with_capacity(key.len() + 8);
    input.extend_from_slice(&digest.to_le_bytes());
    input.extend_from_slice(key);
    xxhash_rust::xxh3::xxh3_64(&input)
}

/// The digest of a stored record's bytes.
pub fn record_digest(record: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(record)
}

/// Where a position falls: which segment (by index) and which leaf of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeafId {
    /// Index of the segment in [`SegmentTrees::segment_ends`].
    pub segment: usize,
    /// Leaf index within the segment, `0..SEGMENT_LEAVES`.
    pub leaf: usize,
}

/// One hash tree per ring segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTrees {
    // Sorted, distinct token positions; segment i is (ends[i-1], ends[i]], segment 0 wraps.
    ends: Vec<Position>,
    // Heap layout per segment: index 1 is the root, leaves at SEGMENT_LEAVES..2*SEGMENT_LEAVES.
    nodes: Vec<[u64; 2 * SEGMENT_LEAVES]>,
}

impl SegmentTrees {
    /// Empty trees for the segments ending at `ends` (ring token positions; duplicates
    /// are merged). With no tokens there is one segment: the whole ring.
    pub fn new(ends: impl IntoIterator<Item = Position>) -> SegmentTrees {
        let mut ends: Vec<Position> = ends.into_iter().collect();
        ends.sort_unstable();
        ends.dedup();
        if ends.is_empty() {
            ends.push(Position::MAX);
        }
        let nodes = vec![[0; 2 * SEGMENT_LEAVES]; ends.len()];
        SegmentTrees { ends, nodes }
    }

    /// Segment end positions, ascending.
    pub fn segment_ends(&self) -> &[Position] {
        &self.ends
    }

    /// Index of the segment holding `position`.
    pub fn segment_of(&self, position: Position) -> usize {
        let index = self.ends.partition_point(|&end| end < position);
        if index == self.ends.len() {
            0
        } else {
            index
        }
    }

    /// The exclusive start of segment `segment`.
    fn start(&self, segment: usize) -> Position {
        let previous = if segment == 0 { self.ends.len() - 1 } else { segment - 1 };
        self.ends[previous]
    }

    /// Width of a segment in positions (the whole ring when there is one segment).
    fn width(&self, segment: usize) -> u128 {
        let (start, end) = (self.start(segment), self.ends[segment]);
        if start == end {
            1u128 << 64
        } else {
            u128::from(end.wrapping_sub(start))
        }
    }

    /// The leaf holding `position`.
    pub fn leaf_of(&self, position: Position) -> LeafId {
        let segment = self.segment_of(position);
        // Offset within (start, end], from 0.
        let offset = u128::from(position.wrapping_sub(self.start(segment)).wrapping_sub(1));
        let leaf = (offset * SEGMENT_LEAVES as u128 / self.width(segment)) as usize;
        debug_assert!(leaf < SEGMENT_LEAVES);
        LeafId { segment, leaf }
    }

    /// The inclusive, possibly wrapping, position bounds `(first, last)` of a leaf.
    pub fn leaf_bounds(&self, id: LeafId) -> (Position, Position) {
        assert!(id.segment < self.ends.len());
        assert!(id.leaf < SEGMENT_LEAVES);
        let width = self.width(id.segment);
        let start = self.start(id.segment);
        // Smallest offset o with o * LEAVES / width == leaf is ceil(leaf * width / LEAVES).
        let first_offset = (id.leaf as u128 * width).div_ceil(SEGMENT_LEAVES as u128);
        let last_offset = ((id.leaf as u128 + 1) * width).div_ceil(SEGMENT_LEAVES as u128) - 1;
        let at = |offset: u128| start.wrapping_add(1).wrapping_add(offset as u64);
        (at(first_offset), at(last_offset))
    }

    /// Records that `key` (at `position`) changed from digest `old` to `new`
    /// (`None` = absent).
    pub fn apply(&mut self, position: Position, key: &[u8], old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        let delta = old.map_or(0, |d| entry_hash(key, d)) ^ new.map_or(0, |d| entry_hash(key, d));
        let id = self.leaf_of(position);
        let tree = &mut self.nodes[id.segment];
        let mut node = SEGMENT_LEAVES + id.leaf;
        while node >= 1 {
            tree[node] ^= delta;
            node /= 2;
        }
    }

    /// Root hash of a segment.
    pub fn root(&self, segment: usize) -> u64 {
        self.nodes[segment][1]
    }

    /// Leaf hashes of a segment.
    pub fn leaves(&self, segment: usize) -> &[u64] {
        &self.nodes[segment][SEGMENT_LEAVES..]
    }

    /// Leaves of `segment` whose hash differs from `theirs` (a peer's leaves).
    pub fn differing_leaves(&self, segment: usize, theirs: &[u64]) -> Vec<usize> {
        assert_eq!(theirs.len(), SEGMENT_LEAVES);
        self.leaves(segment)
            .iter()
            .zip(theirs)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Keys whose digests differ between two sides' entries of one leaf (present on one
/// side only counts as differing). Inputs need not be sorted; output is sorted.
pub fn differing_keys(mine: &[(Vec<u8>, u64)], theirs: &[(Vec<u8>, u64)]) -> Vec<Vec<u8>> {
    let mine: std::collections::BTreeMap<&[u8], u64> = mine.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
    let theirs: std::collections::BTreeMap<&[u8], u64> = theirs.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
    let mut keys: Vec<Vec<u8>> = mine
        .iter()
        .filter(|(k, d)| theirs.get(*k) != Some(d))
        .map(|(k, _)| k.to_vec())
        .chain(theirs.keys().filter(|k| !mine.contains_key(*k)).map(|k| k.to_vec()))
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_leaf(trees: &SegmentTrees, position: Position) {
        let id = trees.leaf_of(position);
        let (first, last) = trees.leaf_bounds(id);
        let inside = if first <= last {
            first <= position && position <= last
        } else {
            position >= first || position <= last
        };
        assert!(inside, "{position} not in leaf {id:?} = [{first}, {last}]");
    }

    #[test]
    fn leaves_partition_their_segment() {
        let trees = SegmentTrees::new([100, 1000, u64::MAX - 5]);
        for p in [
            0,
            1,
            99,
            100,
            101,
            999,
            1000,
            1001,
            u64::MAX - 5,
            u64::MAX - 4,
            u64::MAX,
        ] {
            check_leaf(&trees, p);
        }
        for segment in 0..3 {
            let mut next = trees.leaf_bounds(LeafId { segment, leaf: 0 }).0;
            for leaf in 0..SEGMENT_LEAVES {
                let (first, last) = trees.leaf_bounds(LeafId { segment, leaf });
                assert_eq!(
                    first, next,
                    "segment {segment} leaf {leaf} starts where the previous ended"
                );
                next = last.wrapping_add(1);
            }
            assert_eq!(next.wrapping_sub(1), trees.segment_ends()[segment]);
        }
    }

    #[test]
    fn single_segment_covers_the_ring() {
        let trees = SegmentTrees::new([]);
        for p in [0, 1, u64::MAX / 2, u64::MAX] {
            check_leaf(&trees, p);
        }
    }

    #[test]
    fn apply_is_order_independent_and_reversible() {
        let mut a = SegmentTrees::new([10, 20]);
        let mut b = a.clone();
        a.apply(5, b"x", None, Some(1));
        a.apply(5, b"x", Some(1), Some(2));
        a.apply(15, b"y", None, Some(3));
        b.apply(15, b"y", None, Some(3));
        b.apply(5, b"x", None, Some(2));
        assert_eq!(a, b);
        a.apply(5, b"x", Some(2), None);
        a.apply(15, b"y", Some(3), None);
        assert_eq!(a, SegmentTrees::new([10, 20]));
    }
}
