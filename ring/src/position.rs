//! The key space: [`Position`]s on a ring of 2^64 points and the
//! [`PositionRange`]s between them.
//!
//! A key's position is the xxh3-64 hash of its bytes. Ranges are half-open
//! arcs `(start, end]` walked clockwise (towards larger numbers, wrapping from
//! `u64::MAX` to 0), the convention of Dynamo and Cassandra: a token owns the
//! arc that ends at it. This module knows nothing of nodes; `ring.rs` places
//! tokens on these positions.

use std::fmt;

/// A point on the ring. Keys and tokens both live here.
pub type Position = u64;

/// The number of positions on the ring, 2^64: the width of the whole ring.
pub const RING_WIDTH: u128 = 1 << 64;

/// The position of a key: xxh3-64 of its bytes.
///
/// Stable across versions and platforms; changing it would move every key.
///
/// ```
/// use ringkv_ring::key_position;
///
/// assert_eq!(key_position(b"user:42"), key_position(b"user:42"));
/// assert_ne!(key_position(b"user:42"), key_position(b"user:43"));
/// ```
pub fn key_position(key: &[u8]) -> Position {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The clockwise arc `(start, end]` of the ring.
///
/// `start` is excluded and `end` included, so the arcs that tokens own tile the
/// ring with no gap and no overlap. `start == end` means the **whole ring**
/// (there is no empty range: an empty arc owns nothing and is never produced);
/// it is stored as `(0, 0]` so that all full ranges compare equal.
/// When `start > end` the arc wraps through `u64::MAX` to 0.
///
/// ```
/// use ringkv_ring::PositionRange;
///
/// let wrapping = PositionRange::new(u64::MAX - 9, 10);
/// assert!(wrapping.contains(0));
/// assert!(!wrapping.contains(u64::MAX - 9));
/// assert_eq!(wrapping.width(), 20);
/// assert_eq!(wrapping.scan_bounds(), vec![(0, 10), (u64::MAX - 8, u64::MAX)]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositionRange {
    start: Position,
    end: Position,
}

impl PositionRange {
    /// The arc `(start, end]`; `start == end` is the whole ring, `(0, 0]`.
    pub fn new(start: Position, end: Position) -> PositionRange {
        if start == end {
            PositionRange::full()
        } else {
            PositionRange { start, end }
        }
    }

    /// The whole ring, written `(0, 0]`.
    pub fn full() -> PositionRange {
        PositionRange { start: 0, end: 0 }
    }

    /// The excluded lower bound.
    pub fn start(&self) -> Position {
        self.start
    }

    /// The included upper bound.
    pub fn end(&self) -> Position {
        self.end
    }

    /// Whether the range is the whole ring.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Whether the range wraps through `u64::MAX` to 0.
    pub fn wraps(&self) -> bool {
        self.start > self.end
    }

    /// Whether `position` lies in `(start, end]`, clockwise.
    pub fn contains(&self, position: Position) -> bool {
        if self.is_full() {
            true
        } else if self.wraps() {
            position > self.start || position <= self.end
        } else {
            position > self.start && position <= self.end
        }
    }

    /// The number of positions in the range: 1..=2^64 ([`RING_WIDTH`] when full).
    pub fn width(&self) -> u128 {
        if self.is_full() {
            RING_WIDTH
        } else {
            u128::from(self.end.wrapping_sub(self.start))
        }
    }

    /// The range as a fraction of the ring, in `(0, 1]`.
    pub fn fraction(&self) -> f64 {
        fraction_of_ring(self.width())
    }

    /// One or two non-wrapping **inclusive** intervals `[lo, hi]` that cover
    /// exactly this range, in ascending order: what a storage engine that
    /// orders keys by position scans.
    ///
    /// A full range gives `[(0, u64::MAX)]`; a range that wraps gives the part
    /// from 0 first. A range starting at `u64::MAX` is `[0, end]`.
    pub fn scan_bounds(&self) -> Vec<(Position, Position)> {
        let bounds = if self.is_full() {
            vec![(0, Position::MAX)]
        } else if !self.wraps() {
            // start < end, so start + 1 cannot overflow.
            vec![(self.start + 1, self.end)]
        } else if self.start == Position::MAX {
            vec![(0, self.end)]
        } else {
            vec![(0, self.end), (self.start + 1, Position::MAX)]
        };
        debug_assert_eq!(
            bounds.iter().map(|(lo, hi)| u128::from(hi - lo) + 1).sum::<u128>(),
            self.width()
        );
        bounds
    }
}

impl fmt::Debug for PositionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PositionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#018x}, {:#018x}]", self.start, self.end)
    }
}

/// A width in positions as a fraction of the ring.
pub(crate) fn fraction_of_ring(width: u128) -> f64 {
    // Both conversions are exact up to f64's 53-bit mantissa, plenty for shares.
    width as f64 / RING_WIDTH as f64
}

/// Merges consecutive ranges that touch and carry equal payloads, including the
/// last with the first across the wrap, then sorts by start.
///
/// `pieces` must be disjoint and in clockwise order starting anywhere; that is
/// how the ring's segment walks produce them.
pub(crate) fn merge_adjacent<T: PartialEq>(
    pieces: impl IntoIterator<Item = (PositionRange, T)>,
) -> Vec<(PositionRange, T)> {
    let mut merged: Vec<(PositionRange, T)> = Vec::new();
    for (range, payload) in pieces {
        match merged.last_mut() {
            Some((last, last_payload)) if !last.is_full() && last.end == range.start && *last_payload == payload => {
                // Two disjoint arcs that meet: their union is one arc, and if it
                // ends where it started it is the whole ring, which (s, s] means.
                *last = PositionRange::new(last.start, range.end);
            }
            _ => merged.push((range, payload)),
        }
    }
    if merged.len() >= 2 {
        let (first, last) = (&merged[0], &merged[merged.len() - 1]);
        if last.0.end == first.0.start && last.1 == first.1 {
            if let Some((last, _)) = merged.pop() {
                merged[0].0 = PositionRange::new(last.start, merged[0].0.end);
            }
        }
    }
    merged.sort_by_key(|(range, _)| *range);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = u64::MAX;

    /// Checks every observable of `(start, end]` and `contains` on `inside` and `outside`.
    fn check((start, end): (u64, u64), width: u128, bounds: &[(u64, u64)], inside: &[u64], outside: &[u64]) {
        let range = PositionRange::new(start, end);
        if start != end {
            assert_eq!((range.start(), range.end()), (start, end));
        } else {
            assert_eq!(range, PositionRange::full());
            assert_eq!((range.start(), range.end()), (0, 0));
        }
        assert_eq!(range.width(), width, "{range}");
        assert_eq!(range.is_full(), width == RING_WIDTH, "{range}");
        assert_eq!(range.scan_bounds(), bounds, "{range}");
        for &position in inside {
            assert!(range.contains(position), "{range} should contain {position:#x}");
        }
        for &position in outside {
            assert!(!range.contains(position), "{range} should not contain {position:#x}");
        }
    }

    #[test]
    fn plain_ranges() {
        check((10, 20), 10, &[(11, 20)], &[11, 15, 20], &[0, 10, 21, MAX]);
        check((0, 1), 1, &[(1, 1)], &[1], &[0, 2, MAX]);
        check((MAX - 1, MAX), 1, &[(MAX, MAX)], &[MAX], &[0, MAX - 1]);
        check((0, MAX), RING_WIDTH - 1, &[(1, MAX)], &[1, MAX], &[0]);
    }

    #[test]
    fn wrapping_ranges() {
        check(
            (MAX - 9, 10),
            20,
            &[(0, 10), (MAX - 8, MAX)],
            &[MAX, 0, 10, MAX - 8],
            &[MAX - 9, 11, 1 << 63],
        );
        // Starting at MAX excludes only MAX itself from the upper part: nothing is left there.
        check((MAX, 0), 1, &[(0, 0)], &[0], &[MAX, 1]);
        check((MAX, 5), 6, &[(0, 5)], &[0, 5], &[MAX, 6]);
        // Ending at 0 after a wrap.
        check((5, 0), RING_WIDTH - 5, &[(0, 0), (6, MAX)], &[0, 6, MAX], &[1, 5]);
        check((1, 0), RING_WIDTH - 1, &[(0, 0), (2, MAX)], &[0, 2], &[1]);
    }

    #[test]
    fn full_ranges() {
        for position in [0, 1, 1 << 40, MAX] {
            check(
                (position, position),
                RING_WIDTH,
                &[(0, MAX)],
                &[0, 1, position, MAX],
                &[],
            );
        }
        assert!(PositionRange::full().is_full());
        // Every full range is the same range.
        assert_eq!(PositionRange::new(5, 5), PositionRange::new(u64::MAX, u64::MAX));
        assert_eq!(PositionRange::full().fraction(), 1.0);
    }

    #[test]
    fn key_position_is_xxh3_64() {
        assert_eq!(key_position(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(key_position(b"abc"), xxhash_rust::xxh3::xxh3_64(b"abc"));
    }

    fn check_merge(pieces: &[(u64, u64, u8)], expected: &[(u64, u64, u8)]) {
        let merged = merge_adjacent(
            pieces
                .iter()
                .map(|&(start, end, tag)| (PositionRange::new(start, end), tag)),
        );
        let merged: Vec<(u64, u64, u8)> = merged
            .into_iter()
            .map(|(range, tag)| (range.start(), range.end(), tag))
            .collect();
        assert_eq!(merged, expected);
    }

    #[test]
    fn merging() {
        check_merge(&[], &[]);
        check_merge(&[(1, 2, 0), (2, 3, 0), (4, 5, 0)], &[(1, 3, 0), (4, 5, 0)]);
        check_merge(&[(1, 2, 0), (2, 3, 1)], &[(1, 2, 0), (2, 3, 1)]);
        // The last piece meets the first across the wrap.
        check_merge(&[(1, 2, 0), (5, 9, 1), (9, 1, 0)], &[(5, 9, 1), (9, 2, 0)]);
        // Pieces that tile the ring become the full ring.
        check_merge(&[(9, 1, 0), (1, 5, 0), (5, 9, 0)], &[(0, 0, 0)]);
        check_merge(&[(1, 5, 0), (5, 9, 0), (9, 1, 0)], &[(0, 0, 0)]);
    }
}
