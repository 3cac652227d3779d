//! The two seed lists kept in `sim/seeds/`: known violations (seeds that break a property
//! because of a known, not yet fixed finding) and regressions (seeds that must pass).
//!
//! Both are plain text, one seed per line (`#` starts a comment), so a bug report adds a
//! line, and the tests and `ringkv-sim explore` read the same files.

use crate::checker::ViolationKind;

const KNOWN: &str = include_str!("../seeds/known-violations.txt");
const REGRESSIONS: &str = include_str!("../seeds/regressions.txt");

/// A seed that shows a known finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownViolation {
    /// The seed.
    pub seed: u64,
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
            let mut fields = line.splitn(3, char::is_whitespace).map(str::trim);
            let seed = fields.next().and_then(|s| s.parse().ok());
            let kind = fields.next().and_then(ViolationKind::from_name);
            let finding = fields.next().unwrap_or("").trim().to_owned();
            match (seed, kind) {
                (Some(seed), Some(kind)) => KnownViolation { seed, kind, finding },
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
            .all(|k| known.iter().any(|v| v.seed == seed && v.kind == *k))
}

/// Whether a run's violations include the evidence of a known, unfixed finding (a kind
/// the known-violation list holds for some seed and only such findings produce:
/// `reused-dot`, `future-context`, `ring-split`, `orphaned-hint`). Such a seed shows that finding again,
/// with whatever else it broke as its consequence; a run without that evidence is a new
/// bug. Once the findings are fixed the list is empty and nothing is attributed.
pub fn shows_known_finding(kinds: &[ViolationKind]) -> bool {
    const EVIDENCE: [ViolationKind; 4] = [
        ViolationKind::ReusedDot,
        ViolationKind::FutureContext,
        ViolationKind::RingSplit,
        ViolationKind::OrphanedHint,
    ];
    let known = known_violations();
    kinds
        .iter()
        .any(|k| EVIDENCE.contains(k) && known.iter().any(|v| v.kind == *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lists_parse() {
        let _ = known_violations();
        let _ = regression_seeds();
    }
}
