//! Checkers over a run's history and final state.
//!
//! Causality is judged exactly, not guessed from timing: every sibling read back carries
//! its dot, and every context is a version vector the checker decodes, so "write `w` is
//! covered by context `c`" means `c` contains `w`'s dot. A context can only cover a write
//! that some read (or the final state) showed, so an unknown dot is never covered.
//!
//! The properties (docs/simulation.md):
//! - **no lost write**: an acknowledged put is in the final state, or a write known to
//!   have taken effect covers it (it was overwritten or deleted on purpose);
//! - **convergence**: after healing, every replica of a key holds the same whole state
//!   (siblings, tombstones and clock), and every member has the same ring;
//! - **exact siblings**: every final sibling was written by a client (no phantom) and no
//!   acknowledged write's context covers it (no resurrection);
//! - **fresh reads**: when R+W>N and no fault touched the interval from a write's start to
//!   a read's end, the read reflects the acknowledged write (shows it or covers it) and
//!   shows nothing an acknowledged delete covered;
//! - **unique dots**: no dot ever names two different writes, and no context covers a
//!   write that began after the read that returned the context ended;
//! - **expiry**: no read shows a value after its TTL ran out, allowing for clock skew.

use std::collections::BTreeMap;
use std::fmt;

use ringkv_storage::{ActorId, Dot, KeyState, VersionVector};

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
    /// One dot named two different writes.
    ReusedDot,
    /// A write's context covered a write that began after the context was read.
    FutureContext,
    /// A read showed a value whose TTL had run out.
    ExpiredRead,
    /// Members disagree on the ring after gossip settled.
    RingSplit,
    /// A node configured to sync lost key state it had written in a power loss.
    LostSyncedWrite,
    /// With anti-entropy off, an acknowledged write is missing on one of its key's
    /// replicas after healing: hinted hand-off should have brought it there.
    UnreplicatedWrite,
    /// At the end a member holds hints for a node that is no longer a member, or a node
    /// left holding hints: nothing will ever deliver them.
    OrphanedHint,
    /// At the end a member that no fault keeps down is not running: it could not start
    /// again after a crash or power loss.
    MemberDown,
    /// The simulation itself failed (a host's software returned an error).
    SimulationError,
}

impl ViolationKind {
    /// Every kind, in report order.
    pub const ALL: [ViolationKind; 14] = [
        ViolationKind::LostWrite,
        ViolationKind::Divergence,
        ViolationKind::Phantom,
        ViolationKind::Resurrection,
        ViolationKind::StaleRead,
        ViolationKind::ReusedDot,
        ViolationKind::FutureContext,
        ViolationKind::ExpiredRead,
        ViolationKind::RingSplit,
        ViolationKind::LostSyncedWrite,
        ViolationKind::UnreplicatedWrite,
        ViolationKind::OrphanedHint,
        ViolationKind::MemberDown,
        ViolationKind::SimulationError,
    ];

    /// The kind a name (as printed) stands for.
    pub fn from_name(name: &str) -> Option<ViolationKind> {
        ViolationKind::ALL.into_iter().find(|k| k.to_string() == name)
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::LostWrite => "lost-write",
            ViolationKind::Divergence => "divergence",
            ViolationKind::Phantom => "phantom",
            ViolationKind::Resurrection => "resurrection",
            ViolationKind::StaleRead => "stale-read",
            ViolationKind::ReusedDot => "reused-dot",
            ViolationKind::FutureContext => "future-context",
            ViolationKind::ExpiredRead => "expired-read",
            ViolationKind::RingSplit => "ring-split",
            ViolationKind::LostSyncedWrite => "lost-synced-write",
            ViolationKind::UnreplicatedWrite => "unreplicated-write",
            ViolationKind::OrphanedHint => "orphaned-hint",
            ViolationKind::MemberDown => "member-down",
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

/// The final state of one key: each replica's live siblings and whole state.
#[derive(Debug, Clone, Default)]
pub struct FinalKey {
    /// `(node index, sorted live siblings)` for each replica of the key.
    pub replicas: Vec<(usize, Vec<SeenSibling>)>,
    /// `(node index, whole stored state)` for each replica (`None`: no record).
    pub states: Vec<(usize, Option<KeyState>)>,
}

impl FinalKey {
    /// Whether every replica holds the same whole state.
    pub fn agrees(&self) -> bool {
        self.states.windows(2).all(|pair| pair[0].1 == pair[1].1)
            && self.replicas.windows(2).all(|pair| pair[0].1 == pair[1].1)
    }
}

/// The hints a node holds at the end of a run.
#[derive(Debug, Clone)]
pub struct HeldHints {
    /// The node (index).
    pub node: usize,
    /// Whether it is still a member (`false`: it left).
    pub member: bool,
    /// `(target id, count)` for every target it holds hints for.
    pub hints: Vec<(String, u64)>,
}

/// No hint is stranded: every hint a member holds is for a member, and a node that left
/// handed all of its hints on.
pub fn orphaned_hints(held: &[HeldHints], members: &[String]) -> Vec<Violation> {
    let mut found = Vec::new();
    for node in held {
        for (target, count) in &node.hints {
            let stranded = !node.member || !members.contains(target);
            if stranded && *count > 0 {
                found.push(Violation {
                    kind: ViolationKind::OrphanedHint,
                    detail: format!(
                        "n{} ({}) holds {count} hints for {target}{}",
                        node.node + 1,
                        if node.member { "a member" } else { "left the cluster" },
                        if members.contains(target) {
                            ""
                        } else {
                            ", which is no longer a member"
                        }
                    ),
                });
            }
        }
    }
    found
}

/// What a member believes the ring is, at the end of the run.
#[derive(Debug, Clone)]
pub struct MemberRing {
    /// The member (node index).
    pub node: usize,
    /// The ids of the ring's members, sorted.
    pub members: Vec<String>,
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
    /// Each running member's ring after the run, and the members it should hold.
    pub rings: &'a [MemberRing],
    /// The ids of the members the ring should hold at the end, sorted.
    pub expected_members: &'a [String],
    /// Whether acknowledged writes survive a power loss (synced durability).
    pub synced: bool,
    /// Power losses, as `(node, simulated ms)`.
    pub power_losses: &'a [(usize, u64)],
    /// Members that died for good (and were removed), as `(node, simulated ms)`.
    pub deaths: &'a [(usize, u64)],
    /// How long a buffered write may stay in the page cache, in ms.
    pub write_back_ms: u64,
    /// The largest clock difference between nodes at a given simulated ms.
    pub skew_bound_ms: &'a dyn Fn(u64) -> u64,
    /// Whether anti-entropy ran. Without it replicas may legitimately differ in writes
    /// that failed part-way, so convergence is not required; every acknowledged write
    /// must instead reach every replica, through the write itself or hinted hand-off.
    pub anti_entropy: bool,
}

/// Dots of every value ever seen, and the write each dot names.
struct Causality {
    /// Value -> every dot it was seen under (an SDK retry may store a value twice).
    dots: BTreeMap<String, Vec<Dot>>,
    /// (key, dot) -> what it named (a value, or `None` for a tombstone), where first
    /// seen. A dot is an actor's counter for one key, so it is unique per key.
    named: BTreeMap<(usize, Dot), (Option<String>, String)>,
    reused: Vec<Violation>,
}

impl Causality {
    fn learn(ops: &[Op], finals: &BTreeMap<usize, FinalKey>) -> Causality {
        let mut causality = Causality {
            dots: BTreeMap::new(),
            named: BTreeMap::new(),
            reused: Vec::new(),
        };
        for op in ops {
            if let Outcome::Read { siblings, .. } = &op.outcome {
                for s in siblings {
                    let place = format!("a read of k{} by c{} at {} ms", op.key, op.client, op.completed_ms);
                    causality.see(op.key, &s.dot, Some(&s.value), &place);
                }
            }
        }
        causality.learn_states(finals, "the final state");
        causality
    }

    fn learn_states(&mut self, views: &BTreeMap<usize, FinalKey>, when: &str) {
        let causality = self;
        for (key, state) in views {
            for (node, stored) in &state.states {
                for sibling in stored.iter().flat_map(|s| s.siblings()) {
                    // An expired value becomes a tombstone under the same dot; what it
                    // held is gone, so it names nothing to compare.
                    if sibling.is_tombstone() && sibling.expires_at_ms().is_some() {
                        continue;
                    }
                    let value = sibling.value().map(|v| String::from_utf8_lossy(v).into_owned());
                    let place = format!("{when} of k{key} on n{}", node + 1);
                    causality.see(*key, &sibling.dot().to_string(), value.as_deref(), &place);
                }
            }
        }
    }

    fn see(&mut self, key: usize, dot_text: &str, value: Option<&str>, place: &str) {
        let Some(dot) = parse_dot(dot_text) else { return };
        if let Some(value) = value {
            let dots = self.dots.entry(value.to_owned()).or_default();
            if !dots.contains(&dot) {
                dots.push(dot);
            }
        }
        match self.named.get(&(key, dot)) {
            None => {
                self.named
                    .insert((key, dot), (value.map(str::to_owned), place.to_owned()));
            }
            Some((named, first)) if named.as_deref() != value => {
                let show = |v: Option<&str>| v.map_or_else(|| "a delete".to_owned(), |v| v.to_owned());
                let detail = format!(
                    "k{key}: dot {dot_text} names {} in {first} and {} in {place}",
                    show(named.as_deref()),
                    show(value)
                );
                if !self
                    .reused
                    .iter()
                    .any(|v| v.detail.starts_with(&format!("k{key}: dot {dot_text} ")))
                {
                    self.reused.push(Violation {
                        kind: ViolationKind::ReusedDot,
                        detail,
                    });
                }
            }
            Some(_) => {}
        }
    }

    /// Whether `context` covers the write of `value`: every dot it was seen under.
    fn covers(&self, context: &[u8], value: &str) -> bool {
        if context.is_empty() {
            return false;
        }
        let (Some(dots), Ok(vv)) = (self.dots.get(value), VersionVector::decode(context)) else {
            return false;
        };
        !dots.is_empty() && dots.iter().all(|d| vv.contains(*d))
    }

    /// Whether `context` covers any dot `value` was seen under.
    fn covers_any(&self, context: &[u8], value: &str) -> bool {
        let (Some(dots), Ok(vv)) = (self.dots.get(value), VersionVector::decode(context)) else {
            return false;
        };
        dots.iter().any(|d| vv.contains(*d))
    }

    fn seen(&self, value: &str) -> bool {
        self.dots.contains_key(value)
    }
}

fn parse_dot(text: &str) -> Option<Dot> {
    let (actor, counter) = text.split_once(':')?;
    let actor = u64::from_str_radix(actor, 16).ok()?;
    let counter = counter.parse::<u64>().ok().filter(|c| *c >= 1)?;
    Some(Dot::new(ActorId::new(actor), counter))
}

/// The checks that need no history, only the cluster's final state: no dot names two
/// writes, every replica of a key holds the same whole state, every member has the same
/// ring. What a directed scenario (`crate::scenario`) reports.
///
/// `observed` holds earlier views of the replicas (a scenario's snapshots): a dot that
/// named one write there and another at the end was issued twice, even if the replicas
/// agree by now.
pub fn check_state(
    finals: &BTreeMap<usize, FinalKey>,
    observed: &[BTreeMap<usize, FinalKey>],
    rings: &[MemberRing],
    expected_members: &[String],
) -> Vec<Violation> {
    let mut causality = Causality::learn(&[], finals);
    for view in observed {
        causality.learn_states(view, "a snapshot");
    }
    let none = |_: u64| 0;
    let evidence = Evidence {
        ops: &[],
        finals,
        unquiet: &[],
        replicas: 0,
        rings,
        expected_members,
        synced: true,
        power_losses: &[],
        deaths: &[],
        write_back_ms: 0,
        skew_bound_ms: &none,
        anti_entropy: true,
    };
    let mut found = causality.reused.clone();
    convergence(&evidence, &mut found);
    self::rings(&evidence, &mut found);
    found
}

/// Runs every checker; returns what broke.
pub fn check(evidence: &Evidence<'_>) -> Vec<Violation> {
    let causality = Causality::learn(evidence.ops, evidence.finals);
    let mut found = causality.reused.clone();
    if evidence.anti_entropy {
        convergence(evidence, &mut found);
    } else {
        replicated_writes(evidence, &causality, &mut found);
    }
    rings(evidence, &mut found);
    lost_writes(evidence, &causality, &mut found);
    exact_siblings(evidence, &causality, &mut found);
    fresh_reads(evidence, &causality, &mut found);
    future_contexts(evidence, &causality, &mut found);
    expired_reads(evidence, &mut found);
    found
}

/// The final siblings of a key: the first replica's (they are equal when converged).
/// The live siblings of `key` at the end as a read of every replica returns them: the
/// merge of the replicas' final states. (When they agree it is any replica's; when they
/// do not, e.g. with anti-entropy off after a replica lost unsynced writes, it is what the
/// cluster answers, rather than whatever one replica happens to hold.)
fn final_siblings(finals: &BTreeMap<usize, FinalKey>, key: usize) -> Vec<SeenSibling> {
    let Some(final_key) = finals.get(&key) else {
        return Vec::new();
    };
    let mut merged: Option<ringkv_storage::KeyState> = None;
    for state in final_key.states.iter().filter_map(|(_, s)| s.as_ref()) {
        match &mut merged {
            Some(m) => m.merge(state),
            None => merged = Some(state.clone()),
        }
    }
    crate::harness::live_siblings(merged.as_ref())
}

fn convergence(evidence: &Evidence<'_>, found: &mut Vec<Violation>) {
    for (key, state) in evidence.finals {
        if let Some((first_node, first)) = state.states.first() {
            let differs = state.states[1..].iter().find(|(_, s)| s != first);
            let siblings_agree = state.replicas.windows(2).all(|p| p[0].1 == p[1].1);
            if let (Some((node, other)), true) = (differs, siblings_agree) {
                found.push(Violation {
                    kind: ViolationKind::Divergence,
                    detail: format!(
                        "k{key}: n{} and n{} show the same siblings but hold different states \
                         (clocks {} and {}; {} and {} records incl. tombstones)",
                        first_node + 1,
                        node + 1,
                        clock_text(first),
                        clock_text(other),
                        first.as_ref().map_or(0, |s| s.siblings().len()),
                        other.as_ref().map_or(0, |s| s.siblings().len()),
                    ),
                });
            }
        }
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

fn clock_text(state: &Option<KeyState>) -> String {
    state
        .as_ref()
        .map_or_else(|| "absent".to_owned(), |s| format!("{:?}", s.context()))
}

fn rings(evidence: &Evidence<'_>, found: &mut Vec<Violation>) {
    for ring in evidence.rings {
        if ring.members != evidence.expected_members {
            found.push(Violation {
                kind: ViolationKind::RingSplit,
                detail: format!(
                    "n{}'s ring holds {:?}; the members are {:?}",
                    ring.node + 1,
                    ring.members,
                    evidence.expected_members
                ),
            });
        }
    }
}

fn values(siblings: &[SeenSibling]) -> Vec<&str> {
    siblings.iter().map(|s| s.value.as_str()).collect()
}

/// Whether `op` is known to have taken effect: it was acknowledged, or it is a failed put
/// whose value was seen. A failed delete leaves no value to see, and a failed put with a
/// TTL may have expired before anyone read it, so either may have.
fn took_effect(op: &Op, causality: &Causality) -> bool {
    match &op.kind {
        _ if op.ok() => true,
        OpKind::Put { ttl_ms, .. } if *ttl_ms > 0 => true,
        OpKind::Put { value, .. } => causality.seen(value),
        OpKind::Delete { .. } => true,
        OpKind::Get => false,
    }
}

/// Whether a lost disk may have taken an acknowledged write with it: as many nodes as
/// acknowledged it lost their disk soon after (power, with buffered durability, before
/// the write-back; or death, before hand-off could copy the write elsewhere). W copies
/// promise nothing once W disks are gone.
fn disk_lost(evidence: &Evidence<'_>, op: &Op) -> bool {
    let power_until = op.completed_ms + 2 * evidence.write_back_ms + 2_000;
    let powered = if evidence.synced {
        0
    } else {
        evidence
            .power_losses
            .iter()
            .filter(|(_, at)| *at + 1_000 >= op.invoked_ms && *at <= power_until)
            .count()
    };
    let death_until = op.completed_ms + 30_000;
    let died = evidence
        .deaths
        .iter()
        .filter(|(_, at)| *at + 1_000 >= op.invoked_ms && *at <= death_until)
        .count();
    powered + died >= usize::from(op.quorum.max(1))
}

/// Whether replica `node` lost power under buffered durability while its copy of `op`
/// may still have been unsynced (the window `disk_lost` uses).
fn replica_lost_power(evidence: &Evidence<'_>, op: &Op, node: usize) -> bool {
    let power_until = op.completed_ms + 2 * evidence.write_back_ms + 2_000;
    !evidence.synced
        && evidence
            .power_losses
            .iter()
            .any(|(lost, at)| *lost == node && *at + 1_000 >= op.invoked_ms && *at <= power_until)
}

/// Whether a write known to have taken effect covers the put of `value` (`op`).
fn replaced(evidence: &Evidence<'_>, causality: &Causality, op: &Op, value: &str) -> bool {
    evidence.ops.iter().any(|other| {
        other.key == op.key
            && !std::ptr::eq(other, op)
            && took_effect(other, causality)
            && other.write_context().is_some_and(|ctx| causality.covers(ctx, value))
    })
}

fn lost_writes(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    for op in evidence.ops.iter().filter(|op| op.ok()) {
        let OpKind::Put { value, .. } = &op.kind else { continue };
        if op.ttl_ms().is_some() || disk_lost(evidence, op) {
            continue;
        }
        // In the merge of the replicas: one replica that lost an unsynced copy makes the
        // write under-replicated (`unreplicated-write` judges that), not lost.
        let present = final_siblings(evidence.finals, op.key)
            .iter()
            .any(|s| &s.value == value);
        if !present && !replaced(evidence, causality, op, value) {
            found.push(Violation {
                kind: ViolationKind::LostWrite,
                detail: format!(
                    "k{}: {value} (c{} via {}, w={}, acked at {} ms) is in no replica and no write covers it",
                    op.key,
                    op.client,
                    op.via(),
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
                && !may_have_expired(evidence, w, read.completed_ms)
                && !disk_lost(evidence, w)
        }) {
            match &write.kind {
                OpKind::Put { value, .. } => {
                    // A write an acknowledged later write replaced before the read began
                    // need not show: once its key is purged, nothing remembers its dot.
                    let replaced = evidence.ops.iter().any(|other| {
                        other.ok()
                            && other.key == read.key
                            && other.completed_event < read.invoked_event
                            && other.write_context().is_some_and(|ctx| causality.covers(ctx, value))
                    });
                    if replaced {
                        continue;
                    }
                    let seen = siblings.iter().any(|s| &s.value == value) || causality.covers(context, value);
                    if !seen {
                        found.push(Violation {
                            kind: ViolationKind::StaleRead,
                            detail: format!(
                                "k{}: read by c{} via {} (r={}, {}..{} ms) missed {value} (w={}, acked at {} ms)",
                                read.key,
                                read.client,
                                read.via(),
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

/// Every acknowledged put that no write replaced is on every replica of its key at the
/// end: shown, or covered by that replica's clock.
fn replicated_writes(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    for op in evidence.ops.iter().filter(|op| op.ok()) {
        let OpKind::Put { value, .. } = &op.kind else { continue };
        if op.ttl_ms().is_some() || disk_lost(evidence, op) || replaced(evidence, causality, op, value) {
            continue;
        }
        let Some(dots) = causality.dots.get(value) else {
            continue;
        };
        let Some(key) = evidence.finals.get(&op.key) else {
            continue;
        };
        for (node, state) in &key.states {
            if replica_lost_power(evidence, op, *node) {
                // Its acknowledged copy may have gone with the unsynced log tail; with
                // anti-entropy off nothing brings it back, and no hint was kept for it.
                continue;
            }
            let held = state.as_ref().is_some_and(|s| {
                s.siblings().iter().any(|sib| dots.contains(&sib.dot()))
                    || dots.iter().all(|d| s.context().contains(*d))
            });
            if !held {
                found.push(Violation {
                    kind: ViolationKind::UnreplicatedWrite,
                    detail: format!(
                        "k{}: {value} (c{} via {}, w={}, acked at {} ms) never reached replica n{}",
                        op.key,
                        op.client,
                        op.via(),
                        op.quorum,
                        op.completed_ms,
                        node + 1
                    ),
                });
            }
        }
    }
}

/// Whether a put with a TTL may have expired by `at_ms` on some node's clock (a read is
/// judged at its completion: the replicas may evaluate expiry at any moment before it).
fn may_have_expired(evidence: &Evidence<'_>, write: &Op, at_ms: u64) -> bool {
    write
        .ttl_ms()
        .is_some_and(|ttl| at_ms + (evidence.skew_bound_ms)(at_ms) >= write.invoked_ms + ttl)
}

/// No context covers a write that began after the read that returned the context ended:
/// when one does, a dot was issued twice, and the old context silently erases the new
/// write.
fn future_contexts(evidence: &Evidence<'_>, causality: &Causality, found: &mut Vec<Violation>) {
    for write in evidence.ops {
        let (Some(context), Some(read_end)) = (write.write_context(), write.context_from) else {
            continue;
        };
        if context.is_empty() {
            continue;
        }
        for later in evidence
            .ops
            .iter()
            .filter(|p| p.key == write.key && p.invoked_event > read_end)
        {
            let OpKind::Put { value, .. } = &later.kind else {
                continue;
            };
            if causality.covers_any(context, value) {
                found.push(Violation {
                    kind: ViolationKind::FutureContext,
                    detail: format!(
                        "k{}: the context c{} sent with its {} at {} ms covers {value}, written by c{} at {} ms, \
                         after the read that returned the context",
                        write.key,
                        write.client,
                        if matches!(write.kind, OpKind::Delete { .. }) {
                            "delete"
                        } else {
                            "put"
                        },
                        write.invoked_ms,
                        later.client,
                        later.invoked_ms
                    ),
                });
            }
        }
    }
}

/// No read shows a value after its TTL ran out on every node's clock.
fn expired_reads(evidence: &Evidence<'_>, found: &mut Vec<Violation>) {
    let slack_ms = 1_000;
    for read in evidence.ops.iter().filter(|op| op.ok()) {
        let Outcome::Read { siblings, .. } = &read.outcome else {
            continue;
        };
        for shown in siblings {
            let Some(write) = evidence
                .ops
                .iter()
                .find(|w| w.key == read.key && matches!(&w.kind, OpKind::Put { value, .. } if *value == shown.value))
            else {
                continue;
            };
            let Some(ttl) = write.ttl_ms() else { continue };
            let dead_at = write.completed_ms + ttl + (evidence.skew_bound_ms)(read.invoked_ms) + slack_ms;
            if read.invoked_ms > dead_at {
                found.push(Violation {
                    kind: ViolationKind::ExpiredRead,
                    detail: format!(
                        "k{}: read by c{} at {} ms shows {} (ttl {ttl} ms, acked at {} ms)",
                        read.key, read.client, read.invoked_ms, shown.value, write.completed_ms
                    ),
                });
            }
        }
    }
}
