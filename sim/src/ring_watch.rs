//! Ring agreement while a run goes on: gossip spreads a membership change in about a
//! second, so running members whose rings still differ after [`RING_SETTLE`] hold a split
//! view of who owns what (writes then land on different replica sets).

use std::time::Duration;

use crate::checker::{MemberRing, Violation, ViolationKind};

/// How long running members may disagree on the ring before it counts as a split.
pub const RING_SETTLE: Duration = Duration::from_secs(10);
/// How often the rings are compared.
pub const RING_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Compares the running members' rings once a second; reports (once) a disagreement that
/// lasts longer than [`RING_SETTLE`].
#[derive(Default)]
pub(crate) struct RingWatch {
    next: Duration,
    split_since: Option<Duration>,
    reported: bool,
}

impl RingWatch {
    pub(crate) fn check(&mut self, now: Duration, rings: impl FnOnce() -> Vec<MemberRing>) -> Option<Violation> {
        if now < self.next || self.reported {
            return None;
        }
        self.next = now + RING_CHECK_EVERY;
        let rings = rings();
        let agree = rings.windows(2).all(|pair| pair[0].members == pair[1].members);
        if agree {
            self.split_since = None;
            return None;
        }
        let since = *self.split_since.get_or_insert(now);
        if now.saturating_sub(since) < RING_SETTLE {
            return None;
        }
        self.reported = true;
        let views: Vec<String> = rings
            .iter()
            .map(|r| format!("n{} sees {:?}", r.node + 1, r.members))
            .collect();
        Some(Violation {
            kind: ViolationKind::RingSplit,
            detail: format!(
                "running members have disagreed on the ring for {} ms (since {} ms): {}",
                now.saturating_sub(since).as_millis(),
                since.as_millis(),
                views.join("; ")
            ),
        })
    }
}
