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
}

impl Bug {
    /// Every injectable bug.
    pub const ALL: [Bug; 3] = [Bug::AckBeforeQuorum, Bug::MergeDropsSibling, Bug::PutIgnoresContext];

    /// Kebab-case name, as the simulation's command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeQuorum => "ack-before-quorum",
            Bug::MergeDropsSibling => "merge-drops-sibling",
            Bug::PutIgnoresContext => "put-ignores-context",
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
