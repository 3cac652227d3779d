//! The two seed lists kept in `sim/seeds/`: known violations (seeds that break a property
//! because of a known, not yet fixed finding) and regressions (seeds that must pass).
//!
//! Both are plain text, one seed per line (`#` starts a comment), so a bug report adds a
//! line, and the tests and `ringkv-sim explore` read the same files.

use ringkv_storage::Durability;

use crate::checker::ViolationKind;
use crate::plan::{Fault, Plan};

const KNOWN: &str = include_str!("../seeds/known-violations.txt");
const REGRESSIONS: &str = include_str!("../seeds/regressions.txt");

/// A seed, or a directed scenario, that shows a known finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownViolation {
    /// The seed; `None` for a directed scenario (`sim/tests/known_findings.rs`), written
    /// `scenario:<test name>` in the file.
    pub seed: Option<u64>,
    /// The test name, for a directed scenario.
    pub scenario: Option<String>,
    /// The violation the checker must still report for it.
    pub kind: ViolationKind,
    /// Which finding it shows, in words.
    pub finding: String,
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
}

/// The known violations, in file order.
///
/// # Panics
/// On a malformed line (the file is part of the source: a test parses it).
pub fn known_violations() -> Vec<KnownViolation> {
    lines(KNOWN)
        .map(|line| {
            let mut fields = line.split_whitespace();
            let (first, kind) = (
                fields.next().unwrap_or(""),
                fields.next().and_then(ViolationKind::from_name),
            );
            let finding = fields.collect::<Vec<_>>().join(" ");
            let (seed, scenario) = match first.strip_prefix("scenario:") {
                Some(name) => (None, Some(name.to_owned())),
                None => (first.parse().ok(), None),
            };
            match (seed.is_some() || scenario.is_some(), kind) {
                (true, Some(kind)) => KnownViolation {
                    seed,
                    scenario,
                    kind,
                    finding,
                },
                _ => panic!("malformed line in sim/seeds/known-violations.txt: {line:?}"),
            }
        })
        .collect()
}

/// The regression seeds, in file order.
///
/// # Panics
/// On a malformed line.
pub fn regression_seeds() -> Vec<u64> {
    lines(REGRESSIONS)
        .map(|line| {
            let seed = line.split_whitespace().next().unwrap_or("");
            seed.parse()
                .unwrap_or_else(|_| panic!("malformed line in sim/seeds/regressions.txt: {line:?}"))
        })
        .collect()
}

/// Whether every kind a seed broke is known for that seed.
pub fn all_known(seed: u64, kinds: &[ViolationKind]) -> bool {
    let known = known_violations();
    !kinds.is_empty()
        && kinds
            .iter()
            .all(|k| known.iter().any(|v| v.seed == Some(seed) && v.kind == *k))
}

/// Violations a lost log tail can cause once a node reissues dots (finding 3): the same
/// dot names two writes and merges keep one, with every consequence that has.
const DOT_REUSE_CONSEQUENCES: [ViolationKind; 7] = [
    ViolationKind::LostWrite,
    ViolationKind::UnreplicatedWrite,
    ViolationKind::StaleRead,
    ViolationKind::Resurrection,
    ViolationKind::Divergence,
    ViolationKind::ReusedDot,
    ViolationKind::FutureContext,
];

/// The finding a failing run is attributed to, while the known-violation list still holds
/// a seed for it: `None` means the run shows a new bug.
///
/// - by evidence: the run reports `reused-dot` or `future-context` (findings 1 and 3),
///   `ring-split` (finding 4) or `orphaned-hint` (finding 5), whatever else it broke as
///   the consequence;
/// - by circumstance: a node lost power under buffered durability and everything the run
///   broke is a consequence of a reissued dot (finding 3), even where no read happened to
///   see both writes of the dot.
///
/// Once the findings are fixed, their seeds leave the list and nothing is attributed.
pub fn known_finding(plan: &Plan, kinds: &[ViolationKind]) -> Option<&'static str> {
    let known = known_violations();
    let listed = |finding: &str| known.iter().any(|k| k.finding.starts_with(finding));
    if kinds.is_empty() {
        return None;
    }
    if kinds.contains(&ViolationKind::RingSplit) && listed("4") {
        return Some("4: ring split after gossip forgets a dead member");
    }
    if kinds.contains(&ViolationKind::MemberDown) && listed("4") {
        return Some("4: membership lives in memory (a restarted member needs a live seed)");
    }
    if kinds.contains(&ViolationKind::OrphanedHint) && listed("5") {
        return Some("5: hints orphaned");
    }
    let lost_power = plan.durability == Durability::Buffered
        && plan.faults.iter().any(|f| matches!(f.fault, Fault::PowerLoss { .. }));
    let consequences = kinds.iter().all(|k| DOT_REUSE_CONSEQUENCES.contains(k));
    if lost_power && consequences && listed("3") {
        return Some("3: dots issued twice after the log tail is lost");
    }
    let reused = kinds.contains(&ViolationKind::ReusedDot) || kinds.contains(&ViolationKind::FutureContext);
    if reused && consequences && listed("1") {
        return Some("1: counter reuse after a tombstone purge");
    }
    None
}
