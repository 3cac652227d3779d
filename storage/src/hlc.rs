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

    /// [`HlcClock::observe`], unless `remote` is more than `ahead_max_ms` ahead of this
    /// node's wall clock (`wall_ms`): a clock that far ahead is wrong, and following it
    /// would carry every later timestamp of this node (and of those that observe this
    /// node) as far into the future.
    pub fn observe_within(&mut self, remote: Hlc, wall_ms: u64, ahead_max_ms: u64) -> Result<(), TooFarAhead> {
        let ahead_ms = remote.physical_ms().saturating_sub(wall_ms);
        if ahead_ms > ahead_max_ms {
            return Err(TooFarAhead { ahead_ms, ahead_max_ms });
        }
        self.observe(remote);
        Ok(())
    }
}

/// A remote timestamp [`HlcClock::observe_within`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a timestamp {ahead_ms} ms ahead of this node's clock, past the bound of {ahead_max_ms} ms")]
pub struct TooFarAhead {
    /// How far ahead of this node's wall clock it was.
    pub ahead_ms: u64,
    /// The bound.
    pub ahead_max_ms: u64,
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
    fn a_timestamp_too_far_ahead_is_not_observed() {
        let mut clock = HlcClock::new();
        let far = Hlc::new(1_000 + 60_000, 0);
        assert_eq!(
            clock.observe_within(far, 1_000, 5_000),
            Err(TooFarAhead {
                ahead_ms: 60_000,
                ahead_max_ms: 5_000
            })
        );
        assert_eq!(clock.now(1_000).physical_ms(), 1_000, "the clock did not move");
        let near = Hlc::new(1_000 + 5_000, 7);
        assert_eq!(clock.observe_within(near, 1_000, 5_000), Ok(()));
        assert!(clock.now(1_000) > near, "a timestamp within the bound is observed");
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
