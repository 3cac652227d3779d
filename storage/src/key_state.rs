//! The replicated state of one key: siblings tagged with dots, and a causal context.
//!
//! This is a dotted-version-vector set (the "causal kernel" of Almeida et al., as in
//! Riak 2's DVV sets and Garage's K2V): `clock` covers every write the replica has seen,
//! and `siblings` holds the writes nobody has overwritten yet. Three rules make it work:
//!
//! 1. **Writes are numbered by a key's own replica.** [`KeyState::put`] runs on a replica
//!    that holds the key's full state and takes the next counter of its actor, so an
//!    actor's dots for one key have no gaps and a plain version vector describes exactly
//!    which writes a client has seen. (A non-replica never assigns dots: see `docs/`.)
//! 2. **A put replaces exactly what its context saw.** Siblings whose dot the context
//!    covers are dropped; all others stay as concurrent siblings.
//! 3. **Merge keeps a sibling unless the other side has seen it and dropped it.** This is
//!    commutative, associative and idempotent, so replicas converge in any exchange order.
//!
//! Tombstones are siblings without a value. An expired sibling (TTL) is invisible to
//! reads; [`KeyState::purge_expired`] turns it into a tombstone, which keeps its dot so it
//! cannot come back from a replica that missed the expiry.

use bytes::Bytes;

use crate::dot::{ActorId, Dot};
use crate::hlc::Hlc;
use crate::version_vector::VersionVector;

/// One write to a key that no later write has overwritten.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sibling {
    dot: Dot,
    hlc: Hlc,
    expires_at_ms: Option<u64>,
    value: Option<Bytes>,
}

impl Sibling {
    /// A sibling; `value: None` is a tombstone.
    pub fn new(dot: Dot, hlc: Hlc, expires_at_ms: Option<u64>, value: Option<Bytes>) -> Sibling {
        Sibling {
            dot,
            hlc,
            expires_at_ms,
            value,
        }
    }

    /// The write's identity.
    pub fn dot(&self) -> Dot {
        self.dot
    }

    /// The write's hybrid logical timestamp.
    pub fn hlc(&self) -> Hlc {
        self.hlc
    }

    /// Wall-clock millisecond after which the sibling is invisible, if it has a TTL.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.expires_at_ms
    }

    /// The value, or `None` for a tombstone.
    pub fn value(&self) -> Option<&Bytes> {
        self.value.as_ref()
    }

    /// Whether this sibling records a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether the TTL has run out at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Whether a read at `now_ms` returns this sibling.
    pub fn is_visible(&self, now_ms: u64) -> bool {
        !self.is_tombstone() && !self.is_expired(now_ms)
    }
}

/// What a put writes: a value (or a tombstone) with its timestamp and optional expiry.
#[derive(Clone, Debug)]
pub struct Write {
    /// The value, or `None` to delete.
    pub value: Option<Bytes>,
    /// Timestamp for last-writer-wins readers.
    pub hlc: Hlc,
    /// Absolute expiry in wall-clock milliseconds.
    pub expires_at_ms: Option<u64>,
}

/// The replicated state of one key.
///
/// ```
/// use bytes::Bytes;
/// use ringkv_storage::{ActorId, Hlc, KeyState, VersionVector, Write};
/// let (a, b) = (ActorId::new(1), ActorId::new(2));
/// let write = |v: &'static str| Write { value: Some(Bytes::from(v)), hlc: Hlc::new(1, 0), expires_at_ms: None };
/// // Two clients write without having read: both survive as siblings.
/// let mut replica_a = KeyState::new();
/// replica_a.put(a, &VersionVector::new(), write("x"));
/// let mut replica_b = KeyState::new();
/// replica_b.put(b, &VersionVector::new(), write("y"));
/// replica_a.merge(&replica_b);
/// assert_eq!(replica_a.visible(0).count(), 2);
/// // A write with the context of that read replaces both.
/// let context = replica_a.context().clone();
/// replica_a.put(a, &context, write("z"));
/// assert_eq!(replica_a.visible(0).count(), 1);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct KeyState {
    clock: VersionVector,
    // Sorted by dot, no duplicates, every dot covered by `clock`.
    siblings: Vec<Sibling>,
}

/// Why a stored or received state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A sibling's dot is not covered by the state's clock.
    #[error("sibling {dot} is not covered by the state's clock")]
    DotNotInClock {
        /// The offending dot.
        dot: Dot,
    },
    /// Siblings are not strictly ordered by dot.
    #[error("siblings are not strictly ordered by dot")]
    SiblingsNotOrdered,
}

impl KeyState {
    /// The state of a key nobody wrote.
    pub fn new() -> KeyState {
        KeyState::default()
    }

    /// Builds a state from parts read from disk or the wire, checking its invariants.
    pub fn from_parts(clock: VersionVector, siblings: Vec<Sibling>) -> Result<KeyState, StateError> {
        for pair in siblings.windows(2) {
            if pair[0].dot >= pair[1].dot {
                return Err(StateError::SiblingsNotOrdered);
            }
        }
        if let Some(sibling) = siblings.iter().find(|s| !clock.contains(s.dot)) {
            return Err(StateError::DotNotInClock { dot: sibling.dot });
        }
        Ok(KeyState { clock, siblings })
    }

    /// Every write this replica has seen for the key: the context handed to clients.
    pub fn context(&self) -> &VersionVector {
        &self.clock
    }

    /// All siblings, tombstones and expired ones included, in dot order.
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// The siblings a read at `now_ms` returns.
    pub fn visible(&self, now_ms: u64) -> impl Iterator<Item = &Sibling> + '_ {
        self.siblings.iter().filter(move |s| s.is_visible(now_ms))
    }

    /// Whether nothing was ever written (or the state was purged).
    pub fn is_empty(&self) -> bool {
        self.clock.is_empty() && self.siblings.is_empty()
    }

    /// Whether a read at `now_ms` finds nothing (deleted, expired or never written).
    pub fn is_dead(&self, now_ms: u64) -> bool {
        self.visible(now_ms).next().is_none()
    }

    /// Applies a client write coordinated by `actor` (a replica holding this key's full
    /// state): drops the siblings `context` covers, adds the write under the actor's next
    /// dot, and returns that dot.
    pub fn put(&mut self, actor: ActorId, context: &VersionVector, write: Write) -> Dot {
        self.put_with_floor(actor, context, write, 0)
    }

    /// [`KeyState::put`] with the new counter at least `counter_floor`. The key's own
    /// clock is not enough to pick a fresh counter: after tombstone GC purged the key's
    /// record here, or a power loss took this replica's latest writes, the clock no
    /// longer shows every counter the actor issued for the key, and may not even be
    /// empty (another replica wrote the key again since). The node therefore passes the
    /// next value of a counter sequence of its own that never goes back (see the node's
    /// `identity` module). The skipped counters were never issued, so a context covering
    /// them still covers exactly what its client saw.
    pub fn put_with_floor(&mut self, actor: ActorId, context: &VersionVector, write: Write, counter_floor: u64) -> Dot {
        // Taking the max with the context keeps counters unique even if this replica's
        // state is behind what the client saw of this actor.
        let mut counter = self
            .clock
            .get(actor)
            .max(context.get(actor))
            .saturating_add(1)
            .max(counter_floor);
        if crate::injected_bug::active(crate::injected_bug::Bug::DotFromSiblings) {
            let newest = self
                .siblings
                .iter()
                .filter(|s| s.dot.actor == actor)
                .map(|s| s.dot.counter)
                .max();
            counter = newest.unwrap_or(0).saturating_add(1);
        }
        debug_assert!(counter < u64::MAX, "an actor's counters ran out");
        let dot = Dot::new(actor, counter);
        self.siblings.retain(|s| !context.contains(s.dot));
        self.clock.join(context);
        self.clock.add(dot);
        let sibling = Sibling::new(dot, write.hlc, write.expires_at_ms, write.value);
        // The new dot is the actor's largest, so only siblings of greater actors follow it.
        let index = self.siblings.partition_point(|s| s.dot < dot);
        self.siblings.insert(index, sibling);
        self.debug_check();
        dot
    }

    /// Merges another replica's state into this one.
    pub fn merge(&mut self, other: &KeyState) {
        let mut merged = Vec::with_capacity(self.siblings.len().max(other.siblings.len()));
        let (mut mine, mut theirs) = (self.siblings.iter().peekable(), other.siblings.iter().peekable());
        loop {
            match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) if a.dot == b.dot => {
                    // Same dot means same write; pick deterministically should a bug or a
                    // purge have made them differ, so merge stays commutative.
                    merged.push(pick_same_dot(a, b).clone());
                    mine.next();
                    theirs.next();
                }
                (Some(a), Some(b)) if a.dot < b.dot => {
                    if !other.clock.contains(a.dot) {
                        merged.push((*a).clone());
                    }
                    mine.next();
                }
                (Some(a), None) => {
                    if !other.clock.contains(a.dot) {
                        merged.push((*a).clone());
                    }
                    mine.next();
                }
                (_, Some(b)) => {
                    if !self.clock.contains(b.dot) {
                        merged.push((*b).clone());
                    }
                    theirs.next();
                }
                (None, None) => break,
            }
        }
        if crate::injected_bug::active(crate::injected_bug::Bug::MergeDropsSibling)
            && merged.len() >= 2
            && merged.len() > self.siblings.len()
        {
            merged.remove(0);
        }
        self.siblings = merged;
        self.clock.join(&other.clock);
        self.debug_check();
    }

    /// Turns siblings expired at `now_ms` into tombstones (dropping their values) and
    /// returns how many changed.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let mut purged = 0;
        for sibling in &mut self.siblings {
            if sibling.value.is_some() && sibling.is_expired(now_ms) {
                sibling.value = None;
                purged += 1;
            }
        }
        purged
    }

    /// Whether `other` has nothing this state lacks (merging it would change nothing).
    pub fn covers(&self, other: &KeyState) -> bool {
        let mut merged = self.clone();
        merged.merge(other);
        merged == *self
    }

    fn debug_check(&self) {
        debug_assert!(self.siblings.windows(2).all(|p| p[0].dot < p[1].dot));
        debug_assert!(self.siblings.iter().all(|s| self.clock.contains(s.dot)));
    }
}

/// Of two siblings with the same dot, the one a purge or tombstone left behind wins, so
/// that an expiry applied on one replica is not undone by another.
fn pick_same_dot<'a>(a: &'a Sibling, b: &'a Sibling) -> &'a Sibling {
    debug_assert_eq!(a.dot, b.dot);
    match (a.value.is_some(), b.value.is_some()) {
        (false, true) => a,
        (true, false) => b,
        _ => {
            if (a.hlc, a.expires_at_ms, &a.value) >= (b.hlc, b.expires_at_ms, &b.value) {
                a
            } else {
                b
            }
        }
    }
}

/// Last-writer-wins: the visible sibling with the greatest timestamp (ties broken by dot).
pub fn last_writer_wins(state: &KeyState, now_ms: u64) -> Option<&Sibling> {
    state.visible(now_ms).max_by_key(|s| (s.hlc, s.dot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(value: &str) -> Write {
        Write {
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            hlc: Hlc::new(1, 0),
            expires_at_ms: None,
        }
    }

    fn values(state: &KeyState, now_ms: u64) -> Vec<String> {
        state
            .visible(now_ms)
            .filter_map(|s| s.value().map(|v| String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn check(state: &KeyState, expected: &[&str]) {
        let mut got = values(state, 0);
        got.sort();
        assert_eq!(got, expected);
    }

    const A: ActorId = ActorId::new(1);
    const B: ActorId = ActorId::new(2);

    #[test]
    fn put_with_context_replaces_what_it_saw() {
        let mut state = KeyState::new();
        state.put(A, &VersionVector::new(), write("v1"));
        let seen = state.context().clone();
        state.put(A, &VersionVector::new(), write("v2"));
        check(&state, &["v1", "v2"]);
        state.put(A, &seen, write("v3"));
        check(&state, &["v2", "v3"]);
    }

    #[test]
    fn delete_writes_a_tombstone_that_merges() {
        let mut a = KeyState::new();
        a.put(A, &VersionVector::new(), write("v1"));
        let mut b = a.clone();
        let context = a.context().clone();
        a.put(
            A,
            &context,
            Write {
                value: None,
                hlc: Hlc::new(2, 0),
                expires_at_ms: None,
            },
        );
        assert!(a.is_dead(0));
        b.merge(&a);
        assert!(b.is_dead(0));
        assert_eq!(b.siblings().len(), 1);
        assert!(b.siblings()[0].is_tombstone());
    }

    #[test]
    fn stale_replica_cannot_resurrect_an_overwritten_value() {
        let mut a = KeyState::new();
        a.put(A, &VersionVector::new(), write("old"));
        let stale = a.clone();
        let context = a.context().clone();
        a.put(B, &context, write("new"));
        a.merge(&stale);
        check(&a, &["new"]);
    }

    #[test]
    fn expiry_hides_then_purges_without_resurrection() {
        let mut a = KeyState::new();
        a.put(
            A,
            &VersionVector::new(),
            Write {
                expires_at_ms: Some(100),
                ..write("cached")
            },
        );
        let stale = a.clone();
        assert_eq!(values(&a, 99), ["cached"]);
        assert!(values(&a, 100).is_empty());
        assert_eq!(a.purge_expired(100), 1);
        a.merge(&stale);
        assert!(
            a.siblings()[0].is_tombstone(),
            "purge survives merge with an unpurged copy"
        );
        let mut b = stale.clone();
        b.merge(&a);
        assert_eq!(a, b);
    }

    #[test]
    fn recreated_key_counters_start_at_the_floor() {
        let mut purged = KeyState::new();
        let old_context = {
            let mut c = VersionVector::new();
            c.add(Dot::new(A, 5));
            c
        };
        let dot = purged.put_with_floor(A, &VersionVector::new(), write("fresh"), 1_000);
        assert_eq!(dot, Dot::new(A, 1_000));
        assert!(
            !old_context.contains(dot),
            "an old context does not cover the new write"
        );
        let seen = purged.context().clone();
        let next = purged.put_with_floor(A, &seen, write("next"), 1_000);
        assert_eq!(next, Dot::new(A, 1_001), "the key's clock is above the floor");
    }

    #[test]
    fn a_purged_key_rewritten_through_another_replica_still_gets_counters_above_the_floor() {
        // Finding 1 of "Close every hole": A's record of the key was purged, B wrote it
        // again, and a client still holds a context from the key's earlier life naming
        // A's counters up to 5. A's next write must not get a counter that context covers.
        let old_context = {
            let mut c = VersionVector::new();
            c.add(Dot::new(A, 5));
            c
        };
        let mut recreated = KeyState::new();
        recreated.put(B, &VersionVector::new(), write("through b"));
        let seen = recreated.context().clone();
        let dot = recreated.put_with_floor(A, &seen, write("through a"), 1_000);
        assert_eq!(dot, Dot::new(A, 1_000));
        assert!(
            !old_context.contains(dot),
            "an old context does not cover the new write"
        );
    }

    #[test]
    fn from_parts_checks_invariants() {
        let s = Sibling::new(Dot::new(A, 2), Hlc::new(1, 0), None, None);
        assert_eq!(
            KeyState::from_parts(VersionVector::new(), vec![s.clone()]),
            Err(StateError::DotNotInClock { dot: Dot::new(A, 2) })
        );
        let mut clock = VersionVector::new();
        clock.add(Dot::new(A, 2));
        assert_eq!(
            KeyState::from_parts(clock.clone(), vec![s.clone(), s.clone()]),
            Err(StateError::SiblingsNotOrdered)
        );
        assert!(KeyState::from_parts(clock, vec![s]).is_ok());
    }

    #[test]
    fn last_writer_wins_picks_greatest_timestamp() {
        let mut a = KeyState::new();
        a.put(
            A,
            &VersionVector::new(),
            Write {
                hlc: Hlc::new(5, 0),
                ..write("late")
            },
        );
        a.put(
            B,
            &VersionVector::new(),
            Write {
                hlc: Hlc::new(3, 0),
                ..write("early")
            },
        );
        let winner = last_writer_wins(&a, 0).and_then(|s| s.value().cloned());
        assert_eq!(winner, Some(Bytes::from_static(b"late")));
    }
}
