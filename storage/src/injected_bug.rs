//! Deliberate bugs, for proving that the simulation's checkers can fail.
//!
//! A checker that never fires proves nothing. With the `bug-injection` feature, the
//! simulation (`sim/`) switches one of these on for the thread it runs a cluster on, and
//! expects its checkers to catch it within a bounded number of seeds. Without the feature
//! [`active`] is a constant `false` and the optimiser removes every call site's branch;
//! with it, the switch is per thread and off unless [`inject`] was called on that thread,
//! so a real node sharing the process is never affected.

/// A bug the code can be told to have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// The coordinator acknowledges a write as soon as it stored its own copy, before W
    /// replicas replied (breaks read-your-writes at R+W>N).
    AckBeforeQuorum,
    /// Merging two states with concurrent siblings silently drops one of them (loses an
    /// acknowledged write).
    MergeDropsSibling,
    /// The coordinator ignores the client's causal context, so a write never replaces
    /// the siblings it was meant to (overwritten and deleted values come back).
    PutIgnoresContext,
    /// Hint hand-off deletes a page of hints without delivering it (a replica that was
    /// down never gets those writes by hand-off).
    HintDroppedBeforeDelivery,
    /// Tombstone GC purges without asking the other members whether they still hold the
    /// old value or a hint (deleted values come back).
    GcSkipsReplicaCheck,
    /// A write's counter is taken from the actor's newest live sibling instead of the
    /// key's clock, so an actor whose siblings were all overwritten issues a dot again.
    DotFromSiblings,
    /// The store writes with buffered durability even when the node is configured to
    /// sync, so an acknowledged write can be lost with the unsynced log tail.
    AckBeforeSync,
}

impl Bug {
    /// Every injectable bug.
    pub const ALL: [Bug; 7] = [
        Bug::AckBeforeQuorum,
        Bug::MergeDropsSibling,
        Bug::PutIgnoresContext,
        Bug::HintDroppedBeforeDelivery,
        Bug::GcSkipsReplicaCheck,
        Bug::DotFromSiblings,
        Bug::AckBeforeSync,
    ];

    /// What the bug does, in one line.
    pub fn describe(self) -> &'static str {
        match self {
            Bug::AckBeforeQuorum => "the coordinator acknowledges a write before W replicas replied",
            Bug::MergeDropsSibling => "a merge that adds a concurrent sibling drops the oldest one",
            Bug::PutIgnoresContext => "the coordinator drops the client's context",
            Bug::HintDroppedBeforeDelivery => "hint hand-off deletes hints without delivering them",
            Bug::GcSkipsReplicaCheck => "tombstone GC purges without asking the other members",
            Bug::DotFromSiblings => "a write's counter comes from the actor's live siblings, not the clock",
            Bug::AckBeforeSync => "the store writes buffered although the node is configured to sync",
        }
    }

    /// Kebab-case name, as the simulation's command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeQuorum => "ack-before-quorum",
            Bug::MergeDropsSibling => "merge-drops-sibling",
            Bug::PutIgnoresContext => "put-ignores-context",
            Bug::HintDroppedBeforeDelivery => "hint-dropped-before-delivery",
            Bug::GcSkipsReplicaCheck => "gc-skips-replica-check",
            Bug::DotFromSiblings => "dot-from-siblings",
            Bug::AckBeforeSync => "ack-before-sync",
        }
    }
}

#[cfg(feature = "bug-injection")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Switches `bug` on (or every bug off, with `None`) for the calling thread.
#[cfg(feature = "bug-injection")]
pub fn inject(bug: Option<Bug>) {
    ACTIVE.with(|active| active.set(bug));
}

/// Whether `bug` is switched on for the calling thread.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "bug-injection")]
    {
        ACTIVE.with(|active| active.get() == Some(bug))
    }
    #[cfg(not(feature = "bug-injection"))]
    {
        let _ = bug;
        false
    }
}
