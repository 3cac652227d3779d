//! The node's wall clock, derived from tokio's clock.
//!
//! Wall time matters for two things only: hybrid logical timestamps and TTL expiry.
//! Reading it as "wall time at start + tokio's elapsed time" means every clock read goes
//! through tokio, so a simulation that pauses or drives tokio's clock drives this one
//! too, and a start time injected by the simulation makes runs repeatable.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use ringkv_storage::{Hlc, HlcClock, TooFarAhead};
use tokio::time::Instant;

/// Wall-clock milliseconds and hybrid logical timestamps for one node.
#[derive(Debug)]
pub struct NodeClock {
    start_wall_ms: u64,
    start: Instant,
    /// A step applied to the wall clock (NTP stepping it, or a simulated clock jump).
    jump_ms: AtomicI64,
    /// How fast this clock runs against tokio's, in parts per million (an oscillator's
    /// drift: a simulation skews nodes' clocks apart with it; 0 on a real node).
    drift_ppm: i32,
    hlc: std::sync::Mutex<HlcClock>,
}

impl NodeClock {
    /// A clock starting at the system's current wall time.
    pub fn system() -> NodeClock {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        NodeClock::starting_at(wall_ms)
    }

    /// A clock that reads `start_wall_ms` now (simulation, tests).
    pub fn starting_at(start_wall_ms: u64) -> NodeClock {
        NodeClock::drifting(start_wall_ms, 0)
    }

    /// A clock that reads `start_wall_ms` now and gains `drift_ppm` microseconds per
    /// second (loses, when negative): skew that grows, as between real oscillators.
    pub fn drifting(start_wall_ms: u64, drift_ppm: i32) -> NodeClock {
        NodeClock {
            start_wall_ms,
            start: Instant::now(),
            jump_ms: AtomicI64::new(0),
            drift_ppm,
            hlc: std::sync::Mutex::new(HlcClock::new()),
        }
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> u64 {
        let elapsed_ms = self.start.elapsed().as_millis() as u64;
        let drift_ms = (i128::from(elapsed_ms) * i128::from(self.drift_ppm) / 1_000_000) as i64;
        let read = self
            .start_wall_ms
            .saturating_add(elapsed_ms)
            .saturating_add_signed(drift_ms);
        read.saturating_add_signed(self.jump_ms.load(Ordering::Relaxed))
    }

    /// Steps the wall clock by `delta_ms` (negative: backwards), as an NTP step would.
    /// Hybrid timestamps stay monotonic; TTL expiry follows the stepped clock.
    pub fn jump(&self, delta_ms: i64) {
        self.jump_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    /// A fresh hybrid logical timestamp.
    pub fn hlc_now(&self) -> Hlc {
        let wall_ms = self.wall_ms();
        self.hlc.lock().unwrap_or_else(|p| p.into_inner()).now(wall_ms)
    }

    /// Moves the hybrid clock past a timestamp seen in a replica's state, unless it is
    /// more than `skew_max` ahead of this clock.
    pub fn observe(&self, remote: Hlc, skew_max: Duration) -> Result<(), TooFarAhead> {
        let wall_ms = self.wall_ms();
        let bound_ms = u64::try_from(skew_max.as_millis()).unwrap_or(u64::MAX);
        self.hlc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe_within(remote, wall_ms, bound_ms)
    }
}
