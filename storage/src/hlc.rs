//! Hybrid logical clocks: a timestamp per sibling for callers who want last-writer-wins.
//!
//! A timestamp packs wall-clock milliseconds (high 48 bits) and a logical counter (low 16
//! bits). It never goes backwards on one node even if the wall clock does, and it moves
//! past any timestamp the node has observed. The clock takes the wall time as an argument:
//! this crate reads no clock, so the simulation can drive it.

/// A hybrid logical timestamp.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hlc(u64);

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest wall time an [`Hlc`] can carry (about the year 10889).
pub const HLC_PHYSICAL_MS_MAX: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

impl Hlc {
    /// Packs wall milliseconds and a logical counter.
    pub fn new(physical_ms: u64, logical: u16) -> Hlc {
        assert!(physical_ms <= HLC_PHYSICAL_MS_MAX);
        Hlc((physical_ms << LOGICAL_BITS) | u64::from(logical))
    }

    /// Rebuilds a timestamp from its raw encoding.
    pub const fn from_raw(raw: u64) -> Hlc {
        Hlc(raw)
    }

    /// The raw encoding, as stored.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Wall-clock milliseconds part.
    pub const fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// Logical counter part.
    pub const fn logical(self) -> u16 {
        (self.0 & LOGICAL_MAX) as u16
    }
}

/// One node's hybrid logical clock.
#[derive(Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that has issued nothing yet.
    pub fn new() -> HlcClock {
        HlcClock::default()
    }

    /// A new timestamp, greater than every one issued or observed before.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let wall_ms = wall_ms.min(HLC_PHYSICAL_MS_MAX);
        let next = if wall_ms > self.last.physical_ms() {
            Hlc::new(wall_ms, 0)
        } else {
            // Wall clock behind or equal: count logically; a full counter moves physical on.
            Hlc(self.last.0 + 1)
        };
        debug_assert!(next > self.last);
        self.last = next;
        next
    }

    /// Moves the clock past a timestamp seen from another node.
    pub fn observe(&mut self, remote: Hlc) {
        self.last = self.last.max(remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_when_wall_clock_goes_back() {
        let mut clock = HlcClock::new();
        let a = clock.now(1_000);
        let b = clock.now(500);
        let c = clock.now(1_000);
        assert!(a < b && b < c);
        assert_eq!(b.physical_ms(), 1_000);
        assert_eq!(b.logical(), 1);
    }

    #[test]
    fn observe_moves_past_remote() {
        let mut clock = HlcClock::new();
        clock.observe(Hlc::new(9_000, 3));
        let t = clock.now(1_000);
        assert!(t > Hlc::new(9_000, 3));
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let mut clock = HlcClock::new();
        clock.observe(Hlc::new(10, u16::MAX));
        let t = clock.now(10);
        assert_eq!(t.physical_ms(), 11);
        assert_eq!(t.logical(), 0);
    }
}
