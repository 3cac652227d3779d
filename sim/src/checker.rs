//! Checkers over a run's history and final state.
//!
//! Causality is judged exactly, not guessed from timing: every sibling read back carries
//! its dot, and every context is a version vector the checker decodes, so "write `w` is
//! covered by context `c`" means `c` contains `w`'s dot. A context can only cover a write
//! that some read (or the final state) showed, so an unknown dot is never covered.
//!
//! The four properties (docs/simulation.md):
//! - **no lost write**: an acknowledged put is in the final state, or some write's
//!   context covers it (it was overwritten or deleted on purpose);
//! - **convergence**: after healing, every replica of a key holds the same siblings;
//! - **exact siblings**: every final sibling was written by a client (no phantom) and no
//!   acknowledged write's context covers it (no resurrection);
//! - **fresh reads**: when R+W>N and no fault touched the interval from a write's start to
//!   a read's end, the read reflects the acknowledged write (shows it or covers it) and
//!   shows nothing an acknowledged delete covered.

use std::collections::BTreeMap;
use std::fmt;

use ringkv_storage::{ActorId, Dot, VersionVector};

use crate::history::{Op, OpKind, Outcome, SeenSibling};

/// What kind of property a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// An acknowledged write vanished without being overwritten.
    LostWrite,
    /// Replicas of a key still differ after healing.
    Divergence,
    /// A final sibling no client wrote.
    Phantom,
    /// A final sibling that an acknowledged write had replaced or deleted.
    Resurrection,
    /// A read at R+W>N in a quiet window missed an acknowledged write or delete.
    StaleRead,
    /// The simulation itself failed (a host's software returned an error).
    SimulationError,
}

impl ViolationKind {
    /// Every kind, in report order.
    pub const ALL: [ViolationKind; 6] = [
        ViolationKind::LostWrite,
        ViolationKind::Divergence,
        ViolationKind::Phantom,
        ViolationKind::Resurrection,
        ViolationKind::StaleRead,
        ViolationKind::SimulationError,
    ];
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::LostWrite => "lost-write",
            ViolationKind::Divergence => "divergence",
            ViolationKind::Phantom => "phantom",
            ViolationKind::Resurrection => "resurrection",
            ViolationKind::StaleRead => "stale-read",
            ViolationKind::SimulationError => "simulation-error",
        };
        f.write_str(name)
    }
}

/// One broken property, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub kind: ViolationKind,
    /// Which key, write or read, in words.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// The final state of one key: each replica's live siblings.
#[derive(Debug, Clone, Default)]
pub struct FinalKey {
    /// `(node index, sorted live siblings)` for each replica of the key.
    pub replicas: Vec<(usize, Vec<SeenSibling>)>,
}

impl FinalKey {
    /// Whether every replica holds the same siblings.
    pub fn agrees(&self) -> bool {
        self.replicas.windows(2).all(|pair| pair[0].1 == pair[1].1)
    }
}

/// Everything the checkers look at.
pub struct Evidence<'a> {
    /// The operations, in completion order.
    pub ops: &'a [Op],
    /// Final state per key index.
    pub finals: &'a BTreeMap<usize, FinalKey>,
    /// Intervals `[start, end)` (simulated ms) in which a fault was active or settling.
    pub unquiet: &'a [(u64, u64)],
    /// The replication factor.
    pub replicas: u8,
}

/// Dots of every value ever seen, and decoded contexts.
struct Causality {
    dots: BTreeMap<String, Dot>,
}

impl Causality {
    fn learn(ops: &[Op], finals: &BTreeMap<usize, FinalKey>) -> Causality {
        let mut dots = BTreeMap::new();
        let mut add = |s: &SeenSibling| {
            if let Some(dot) = parse_dot(&s.dot) {
                dots.insert(s.value.clone(), dot);
            }
        };
        for op in ops {
            if let Outcome::Read { siblings, .. } = &op.outcome {
                siblings.iter().for_each(&mut add);
            }
        }
        for key in finals.values() {
            for (_, siblings) in &key.replicas {
                siblings.iter().for_each(&mut add);
            }
        }
        Causality { dots }
    }

    /// Whether `context` covers the write of `value`.
    fn covers(&self, context: &[u8], value: &str) -> bool {
        if context.is_empty() {
            return false;
        }
        let (Some(dot), Ok(vv)) = (self.dots.get(value), VersionVector::decode(context)) else {
            return false;
        };
        vv.contains(*dot)
    }
}

fn parse_dot(text: &str) -> Option<Dot> {
    let (actor, counter) = text.split_once(':')?;
    let actor = u64::from_str_radix(actor, 16).ok()?;
    let counter = counter.parse::<u64>().ok().filter(|c| *c >= 1)?;
    Some(Dot::new(ActorId::new(actor), counter))
}

/// Runs every checker; returns what broke.
pub fn check(evidence: &Evidence<'_>) -> Vec<Violation> {
    let causality = Causality::learn(evidence.ops, evidence.finals);
    let mut found = Vec::new();
    convergence(evidence, &mut found);
    lost_writes(evidence, &causality, &mut found);
    exact_siblings(evidence, &causality, &mut found);
    fresh_reads(evidence, &causality, &mut found);
    found
}

/// The final siblings of a key: the first replica's (they are equal when converged).
fn final_siblings(finals: &BTreeMap<usize, FinalKey>, key: usize) -> Vec<SeenSibling> {
    finals
        .get(&key)
        .and_then(|k| k.replicas.first())
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

fn convergence(evidence: &Evidence<'_>, found: &mut Vec<Violation>) {
    for (key, state) in evidence.finals {
        let Some((first_node, first)) = state.replicas.first() else {
            continue;
        };
        for (node, siblings) in &state.replicas[1..] {
            if siblings != first {
                found.push(Violation {
                    kind: ViolationKind::Divergence,
                    detail: format!(
                        "k{key}: n{} holds {:?} but n{} holds {:?}",
                        first_node + 1,
                        values(first),
                        node + 1,
                        values(siblings)
                    ),
                });
            }
        }
    }
}

fn values(siblings: &[SeenSibling]) -> Vec<&str> {
    siblings.iter().map(|s| s.value.as_str()).collect()
}

fn lost_writes(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    for op in evidence.ops.iter().filter(|op| op.ok()) {
        let OpKind::Put { value, .. } = &op.kind else { continue };
        let present = final_siblings(evidence.finals, op.key)
            .iter()
            .any(|s| &s.value == value);
        let covered = evidence.ops.iter().any(|other| {
            other.key == op.key
                && !std::ptr::eq(other, op)
                && other.write_context().is_some_and(|ctx| causality.covers(ctx, value))
        });
        if !present && !covered {
            found.push(Violation {
                kind: ViolationKind::LostWrite,
                detail: format!(
                    "k{}: {value} (c{} via n{}, w={}, acked at {} ms) is in no replica and no write covers it",
                    op.key,
                    op.client,
                    op.node + 1,
                    op.quorum,
                    op.completed_ms
                ),
            });
        }
    }
}

fn exact_siblings(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    for key in evidence.finals.keys() {
        for sibling in final_siblings(evidence.finals, *key) {
            let written = evidence
                .ops
                .iter()
                .any(|op| op.key == *key && matches!(&op.kind, OpKind::Put { value, .. } if *value == sibling.value));
            if !written {
                found.push(Violation {
                    kind: ViolationKind::Phantom,
                    detail: format!("k{key}: final sibling {} was never written", sibling.value),
                });
                continue;
            }
            if let Some(killer) = evidence.ops.iter().find(|op| {
                op.key == *key
                    && op.ok()
                    && op
                        .write_context()
                        .is_some_and(|ctx| causality.covers(ctx, &sibling.value))
            }) {
                found.push(Violation {
                    kind: ViolationKind::Resurrection,
                    detail: format!(
                        "k{key}: final sibling {} was replaced by an acknowledged {} of c{} at {} ms",
                        sibling.value,
                        if matches!(killer.kind, OpKind::Delete { .. }) {
                            "delete"
                        } else {
                            "put"
                        },
                        killer.client,
                        killer.completed_ms
                    ),
                });
            }
        }
    }
}

fn quiet(unquiet: &[(u64, u64)], from: u64, to: u64) -> bool {
    unquiet.iter().all(|(start, end)| to < *start || from >= *end)
}

fn fresh_reads(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    let n = evidence.replicas;
    for read in evidence.ops.iter().filter(|op| op.ok()) {
        let Outcome::Read { siblings, context } = &read.outcome else {
            continue;
        };
        for write in evidence.ops.iter().filter(|w| {
            w.ok()
                && w.key == read.key
                && w.completed_event < read.invoked_event
                && u16::from(w.quorum) + u16::from(read.quorum) > u16::from(n)
                && quiet(evidence.unquiet, w.invoked_ms, read.completed_ms)
        }) {
            match &write.kind {
                OpKind::Put { value, .. } => {
                    let seen = siblings.iter().any(|s| &s.value == value) || causality.covers(context, value);
                    if !seen {
                        found.push(Violation {
                            kind: ViolationKind::StaleRead,
                            detail: format!(
                                "k{}: read by c{} via n{} (r={}, {}..{} ms) missed {value} (w={}, acked at {} ms)",
                                read.key,
                                read.client,
                                read.node + 1,
                                read.quorum,
                                read.invoked_ms,
                                read.completed_ms,
                                write.quorum,
                                write.completed_ms
                            ),
                        });
                    }
                }
                OpKind::Delete { context: deleted } => {
                    for shown in siblings.iter().filter(|s| causality.covers(deleted, &s.value)) {
                        found.push(Violation {
                            kind: ViolationKind::StaleRead,
                            detail: format!(
                                "k{}: read by c{} at {} ms shows {} deleted by c{} (acked at {} ms)",
                                read.key, read.client, read.invoked_ms, shown.value, write.client, write.completed_ms
                            ),
                        });
                    }
                }
                OpKind::Get => {}
            }
        }
    }
}
