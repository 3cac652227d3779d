//! The one quorum primitive: call a set of replicas, return after enough answers, finish
//! the rest later.
//!
//! Every "ask replicas and count answers" in the node is a [`QuorumCall`]: a client read
//! (R answers, hedged), a write's copies (W−1 answers, failed replicas replaced by
//! stand-ins that keep a hint), forwarding a write (the first replica that takes it), read
//! repair, tombstone GC (every member must answer), ownership and hint hand-off. The call
//! knows nothing about what an operation means: it is given the nodes to call first, the
//! spares to replace failures with (in order), and a function that makes one call.
//!
//! A call runs as futures polled by whoever waits on it, not as spawned tasks: the
//! coordinator's own replica (this node's store) answers in place while the peers'
//! requests are out. [`QuorumCall::wait_for`] returns once `need` answers are in (or no
//! answer can come, or the deadline passed); the calls still out are then either dropped
//! (a read nobody needs) or handed to [`QuorumCall::finish`], which the caller runs in the
//! background through the node's bounded pool (`crate::background::Background`), so a
//! write's slow copies still land.
//!
//! Limits: a call holds at most one future per node it was given (first plus spares, so
//! at most the ring's size); the pool bounds how many finishes run at once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use ringkv_ring::NodeId;
use tokio::time::Instant;

/// One call's place in a quorum: the node called, and the node it stands in for when it
/// replaces one that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The node called.
    pub node: NodeId,
    /// The node first called for this place, when `node` replaces it.
    pub stands_in_for: Option<NodeId>,
}

/// Whether a failed call may be replaced by a spare, or ends the whole quorum call (a
/// replica's verdict on a forwarded write is the answer, not a reason to ask another).
pub(crate) trait Failure {
    /// `false` ends the quorum call with this failure.
    fn replaceable(&self) -> bool {
        true
    }
}

impl Failure for super::ReplicaError {}

type Pending<T, E> = Pin<Box<dyn Future<Output = (Slot, Result<T, E>)> + Send>>;

/// A boxed call to one replica.
pub(crate) type CallFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// What makes the call for one slot.
type MakeCall<T, E> = Box<dyn Fn(&Slot) -> CallFuture<T, E> + Send + Sync>;

/// Calls to a set of replicas, with answers counted as they come.
pub(crate) struct QuorumCall<T, E> {
    call: MakeCall<T, E>,
    in_flight: FuturesUnordered<Pending<T, E>>,
    spares: VecDeque<NodeId>,
    answers: Vec<(Slot, T)>,
    /// Places that failed with no spare left to replace them, and the last failure.
    failures: Vec<(Slot, E)>,
    /// The failure that ended the call, if one did.
    final_failure: Option<(Slot, E)>,
    /// The first failure a spare replaced, for an error message.
    first_replaced: Option<E>,
    /// The places of the calls still out.
    out: Vec<Slot>,
    asked: Vec<NodeId>,
    hedged: bool,
}

impl<T: Send + 'static, E: Failure + Send + 'static> QuorumCall<T, E> {
    /// Calls every node of `first` now; `spares` replace failed calls, in order.
    pub fn start(
        first: impl IntoIterator<Item = NodeId>,
        spares: impl IntoIterator<Item = NodeId>,
        call: impl Fn(&Slot) -> CallFuture<T, E> + Send + Sync + 'static,
    ) -> QuorumCall<T, E> {
        let mut quorum = QuorumCall {
            call: Box::new(call),
            in_flight: FuturesUnordered::new(),
            spares: spares.into_iter().collect(),
            answers: Vec::new(),
            failures: Vec::new(),
            final_failure: None,
            first_replaced: None,
            out: Vec::new(),
            asked: Vec::new(),
            hedged: false,
        };
        for node in first {
            quorum.ask(Slot {
                node,
                stands_in_for: None,
            });
        }
        quorum
    }

    fn ask(&mut self, slot: Slot) {
        // Callers give disjoint first and spare lists: a node asked twice would count twice.
        assert!(!self.asked.contains(&slot.node), "{} asked twice", slot.node);
        self.asked.push(slot.node.clone());
        self.out.push(slot.clone());
        let call = (self.call)(&slot);
        self.in_flight.push(Box::pin(async move { (slot, call.await) }));
    }

    /// Takes one finished call into account: an answer, or a failure that the next spare
    /// replaces (standing in for the place the failed call had).
    fn absorb(&mut self, (slot, outcome): (Slot, Result<T, E>)) {
        self.out.retain(|out| out.node != slot.node);
        match outcome {
            Ok(answer) => self.answers.push((slot, answer)),
            Err(failure) if !failure.replaceable() => self.final_failure = Some((slot, failure)),
            Err(failure) => match self.spares.pop_front() {
                Some(spare) => {
                    let place = slot.stands_in_for.clone().unwrap_or_else(|| slot.node.clone());
                    self.failures_replaced(failure);
                    self.ask(Slot {
                        node: spare,
                        stands_in_for: Some(place),
                    });
                }
                None => self.failures.push((slot, failure)),
            },
        }
    }

    /// A failure that a spare replaced is not the quorum's failure; it is kept only as
    /// the first one seen, for error messages, when nothing else failed.
    fn failures_replaced(&mut self, failure: E) {
        if self.first_replaced.is_none() {
            self.first_replaced = Some(failure);
        }
    }

    /// Waits until `need` calls have answered, a failure ended the call, no call is left
    /// to answer, or `deadline` passed, whichever comes first. If answers are still
    /// missing after `hedge_after`, every spare is asked at once (they no longer wait for
    /// a failure). Returns the number of answers.
    pub async fn wait_for(&mut self, need: usize, hedge_after: Option<Duration>, deadline: Instant) -> usize {
        let hedge_at = hedge_after.map(|after| Instant::now() + after);
        let hedge = tokio::time::sleep_until(hedge_at.unwrap_or(deadline));
        let expiry = tokio::time::sleep_until(deadline);
        tokio::pin!(hedge, expiry);
        while self.answers.len() < need && self.final_failure.is_none() && !self.in_flight.is_empty() {
            tokio::select! {
                // Answers first: never hedge while an answer is already waiting.
                biased;
                Some(done) = self.in_flight.next() => self.absorb(done),
                () = &mut hedge, if hedge_at.is_some() && !self.hedged && !self.spares.is_empty() => {
                    self.hedged = true;
                    while let Some(spare) = self.spares.pop_front() {
                        self.ask(Slot { node: spare, stands_in_for: None });
                    }
                }
                () = &mut expiry => break,
            }
        }
        self.answers.len()
    }

    /// Waits for every call still out (replacing failures with spares as before), until
    /// `deadline`; the calls not done by then are dropped, and their places reported as
    /// unanswered. For the background.
    pub async fn finish(mut self, deadline: Instant) -> Finished<T, E> {
        let _ = self.wait_for(usize::MAX, None, deadline).await;
        debug_assert_eq!(self.out.len(), self.in_flight.len());
        Finished {
            answers: self.answers,
            failures: self.failures,
            unanswered: self.out,
        }
    }

    /// No more spares: failures from now on are not replaced (a read's repair collects
    /// the answers of the replicas the read asked, and asks no others).
    pub fn forget_spares(&mut self) {
        self.spares.clear();
    }

    /// The answers so far, in the order they came.
    pub fn answers(&self) -> &[(Slot, T)] {
        &self.answers
    }

    /// Calls still out.
    pub fn outstanding(&self) -> usize {
        self.in_flight.len()
    }

    /// How many places failed with no spare to replace them.
    pub fn failures_count(&self) -> usize {
        self.failures.len()
    }

    /// Places that failed with no spare to replace them.
    #[cfg(test)]
    pub fn failures(&self) -> &[(Slot, E)] {
        &self.failures
    }

    /// Whether the spares were asked early because answers were slow.
    pub fn hedged(&self) -> bool {
        self.hedged
    }

    /// Nodes asked so far, in the order they were asked.
    pub fn asked(&self) -> &[NodeId] {
        &self.asked
    }

    /// The failure that ended the call early, if any.
    pub fn take_final_failure(&mut self) -> Option<(Slot, E)> {
        self.final_failure.take()
    }

    /// The first failure seen, for an error message: one that ended a place, else one a
    /// spare replaced.
    pub fn take_first_failure(&mut self) -> Option<E> {
        if self.failures.is_empty() {
            return self.first_replaced.take();
        }
        Some(self.failures.remove(0).1)
    }
}

/// Everything a quorum call got once it finished.
pub(crate) struct Finished<T, E> {
    /// Every answer.
    pub answers: Vec<(Slot, T)>,
    /// Places that failed for good.
    pub failures: Vec<(Slot, E)>,
    /// Places whose call was still out at the deadline.
    pub unanswered: Vec<Slot>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Fake {
        Fails,
        Final,
    }

    impl Failure for Fake {
        fn replaceable(&self) -> bool {
            *self == Fake::Fails
        }
    }

    fn id(name: &str) -> NodeId {
        NodeId::try_from(name).expect("valid id")
    }

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| id(n)).collect()
    }

    /// How each node answers: after a delay, with success or a failure.
    type Script = BTreeMap<&'static str, (u64, Result<(), Fake>)>;

    fn quorum(first: &[&str], spares: &[&str], script: Script) -> (QuorumCall<(), Fake>, Arc<Mutex<Vec<Slot>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let call = QuorumCall::start(ids(first), ids(spares), move |slot: &Slot| {
            seen.lock().expect("lock").push(slot.clone());
            let (delay_ms, outcome) = script.get(slot.node.as_str()).cloned().unwrap_or((0, Ok(())));
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                outcome
            })
        });
        (call, calls)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test(start_paused = true)]
    async fn stops_after_need_answers_and_finishes_the_rest_later() {
        let script = Script::from([("a", (1, Ok(()))), ("b", (2, Ok(()))), ("c", (50, Ok(())))]);
        let (mut call, _) = quorum(&["a", "b", "c"], &[], script);
        assert_eq!(call.wait_for(2, None, soon()).await, 2);
        assert_eq!(call.outstanding(), 1, "c is still out");
        let finished = call.finish(soon()).await;
        assert_eq!(finished.answers.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_replaced_by_the_next_spare_standing_in_for_its_place() {
        let script = Script::from([("b", (1, Err(Fake::Fails))), ("x", (1, Err(Fake::Fails)))]);
        let (mut call, calls) = quorum(&["a", "b"], &["x", "y", "z"], script);
        assert_eq!(call.wait_for(2, None, soon()).await, 2);
        let calls = calls.lock().expect("lock").clone();
        let stand_ins: Vec<_> = calls
            .iter()
            .filter(|s| s.stands_in_for.is_some())
            .map(|s| (s.node.as_str().to_owned(), s.stands_in_for.clone()))
            .collect();
        assert_eq!(
            stand_ins,
            vec![("x".to_owned(), Some(id("b"))), ("y".to_owned(), Some(id("b")))],
            "each replacement stands in for b, the place first called"
        );
        assert_eq!(call.asked(), &ids(&["a", "b", "x", "y"])[..], "z was never needed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_without_spares_is_a_failure_and_the_call_ends_when_nothing_can_answer() {
        let script = Script::from([("b", (1, Err(Fake::Fails)))]);
        let (mut call, _) = quorum(&["a", "b"], &[], script);
        assert_eq!(call.wait_for(2, None, soon()).await, 1);
        assert_eq!(call.failures().len(), 1);
        assert_eq!(call.failures()[0].0.node, id("b"));
        assert_eq!(call.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_answers_hedge_to_every_spare_once() {
        let script = Script::from([("a", (100, Ok(()))), ("x", (5, Ok(()))), ("y", (50, Ok(())))]);
        let (mut call, calls) = quorum(&["a"], &["x", "y"], script);
        assert_eq!(call.wait_for(1, Some(Duration::from_millis(25)), soon()).await, 1);
        assert!(call.hedged());
        assert_eq!(calls.lock().expect("lock").len(), 3, "both spares asked at the hedge");
        assert_eq!(call.answers()[0].0.node, id("x"), "the hedge answered first");
    }

    #[tokio::test(start_paused = true)]
    async fn fast_answers_never_hedge() {
        let (mut call, calls) = quorum(&["a"], &["x"], Script::new());
        assert_eq!(call.wait_for(1, Some(Duration::from_millis(25)), soon()).await, 1);
        assert!(!call.hedged());
        assert_eq!(calls.lock().expect("lock").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_ends_the_call_without_asking_spares() {
        let script = Script::from([("a", (1, Err(Fake::Final)))]);
        let (mut call, calls) = quorum(&["a"], &["x"], script);
        assert_eq!(call.wait_for(1, None, soon()).await, 0);
        assert_eq!(
            call.take_final_failure().map(|(s, e)| (s.node, e)),
            Some((id("a"), Fake::Final))
        );
        assert_eq!(calls.lock().expect("lock").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_wait_with_the_answers_so_far() {
        let script = Script::from([("a", (1, Ok(()))), ("b", (5_000, Ok(())))]);
        let (mut call, _) = quorum(&["a", "b"], &[], script);
        let deadline = Instant::now() + Duration::from_millis(100);
        assert_eq!(call.wait_for(2, None, deadline).await, 1);
        assert_eq!(call.outstanding(), 1);
        let finished = call.finish(Instant::now() + Duration::from_millis(100)).await;
        assert_eq!(finished.answers.len(), 1, "b is dropped at the finish's deadline");
        assert_eq!(finished.unanswered.len(), 1);
        assert_eq!(finished.unanswered[0].node, id("b"), "and reported as unanswered");
    }
}
