//! One simulated run: a turmoil world with N node hosts running the real `RunningNode`,
//! client hosts running a random workload, the seed's fault schedule, and at the end a
//! healed cluster whose replicas the checkers compare.
//!
//! The harness owns the turmoil `Sim` and steps it one tick at a time, applying and
//! healing faults between ticks, so when anything happens is a function of the seed
//! alone. Each node's disk ([`SimDisk`]) lives outside its host: a crash kills the host's
//! tasks (a process crash) and a restart opens the same disk again; a power loss also
//! throws away the unsynced tail of its log first. An operator host runs membership
//! changes (leave, remove) through the SDK, as a person with the CLI would.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringkv_client::proto;
use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::{Client, Consistency, Context, ReadOptions, WriteOptions};
use ringkv_node::clock::NodeClock;
use ringkv_node::network::Network;
use ringkv_node::{EngineKind, Inspector, NodeConfig, RunningNode, StartOptions};
use ringkv_ring::{Member, NodeId, Ring};
use ringkv_storage::injected_bug::Bug;
use ringkv_storage::{Durability, Engine, Limits};
use tonic::transport::{Channel, Endpoint};

use crate::checker::{check, orphaned_hints, Evidence, FinalKey, HeldHints, MemberRing, Violation, ViolationKind};
use crate::disk::SimDisk;
use crate::history::{EventLog, Op, OpKind, Outcome, SeenSibling};
use crate::network::{incoming, sdk_dialer, GossipNet, TurmoilConnector};
use crate::operator::{Command, Operator, OPERATOR};
use crate::plan::{ClientKind, Fault, Plan, ScheduledFault, GOSSIP_DEAD_GRACE};
use crate::ring_watch::RingWatch;

pub(crate) const GRPC_PORT: u16 = 7000;
const GOSSIP_PORT: u16 = 7946;
/// Wall clock of simulated time zero (2026-01-01T00:00:00Z), so runs do not depend on
/// the real date.
pub(crate) const EPOCH_MS: u64 = 1_767_225_600_000;
/// How long after a fault heals the cluster is still considered unsettled (failure
/// detector, hint hand-off): reads in that time are not held to read-your-writes.
pub const SETTLE: Duration = Duration::from_secs(5);
/// How long the healed cluster gets to converge before divergence is a violation.
pub const CONVERGE_MAX: Duration = Duration::from_secs(60);
/// Simulated time a whole run may take, at most.
pub const RUN_MAX: Duration = Duration::from_secs(400);
/// How long clients wait for the cluster to form.
const FORM_MAX: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
const CLIENT_TIMEOUT: Duration = Duration::from_millis(3_000);
/// How long an SDK operation may take, retries and backoff included.
const SDK_TIMEOUT: Duration = Duration::from_millis(6_000);
/// How long after a membership change reads are not held to read-your-writes (ranges
/// move between owners meanwhile).
const MEMBERSHIP_UNSETTLED: Duration = Duration::from_secs(30);
/// What one run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The plan the seed stood for.
    pub plan: Plan,
    /// Operations, in completion order.
    pub ops: Vec<Op>,
    /// The event log (operations, faults, final state).
    pub log: EventLog,
    /// Broken properties.
    pub violations: Vec<Violation>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Simulated time from the end of the workload until every replica agreed.
    pub converged_after: Option<Duration>,
}

impl RunReport {
    /// The command that replays this run.
    pub fn replay_command(&self, bug: Option<Bug>) -> String {
        let bug = bug.map(|b| format!(" --bug {}", b.name())).unwrap_or_default();
        format!("cargo run -p ringkv-sim -- run --seed {}{bug}", self.plan.seed)
    }
}

/// How to run one seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// A deliberate bug to switch on (the checkers should catch it).
    pub bug: Option<Bug>,
}

pub(crate) fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

fn key_bytes(k: usize) -> Bytes {
    Bytes::from(format!("key-{k}"))
}

/// Runs one seed to the end on the current thread (see [`run_seed`] for a fresh one).
pub fn run_on_this_thread(plan: Plan, options: RunOptions) -> RunReport {
    crate::entropy::seed_this_thread(plan.seed);
    ringkv_storage::injected_bug::inject(options.bug);
    let report = Run::new(plan).execute();
    ringkv_storage::injected_bug::inject(None);
    report
}

/// Runs one seed on a fresh thread, so that thread's hash-map keys and RNGs come from
/// the seed, and with tokio's task ids where a fresh process has them
/// ([`crate::task_ids`]); one run at a time per process.
pub fn run_seed(seed: u64, options: RunOptions) -> RunReport {
    let plan = Plan::from_seed(seed);
    crate::task_ids::exclusive()
        .and_then(|_run| {
            std::thread::Builder::new()
                .name(format!("sim-{seed}"))
                .stack_size(64 << 20)
                .spawn(move || run_on_this_thread(plan, options))
                .and_then(|handle| {
                    handle
                        .join()
                        .map_err(|_| std::io::Error::other(format!("simulation of seed {seed} panicked")))
                })
        })
        .unwrap_or_else(|e| RunReport {
            plan: Plan::from_seed(seed),
            ops: Vec::new(),
            log: EventLog::default(),
            violations: vec![Violation {
                kind: ViolationKind::SimulationError,
                detail: e.to_string(),
            }],
            simulated: Duration::ZERO,
            converged_after: None,
        })
}

/// Where a node stands in the cluster, as the harness (the operator) knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    /// Not started yet; a `Join` fault starts it.
    Spare,
    /// A member of the cluster.
    Member,
    /// Left on request.
    Left,
    /// Died and was removed.
    Removed,
}

struct NodeSlot {
    disk: Arc<SimDisk>,
    /// The running node's clock (to step it); dangling while the node is down.
    clock: Rc<RefCell<Weak<NodeClock>>>,
    /// The running node's inspector; `None` while the node is down.
    inspector: Rc<RefCell<Option<Inspector>>>,
    /// Set when a spare should start and join.
    start: Rc<Cell<bool>>,
    crashed: bool,
    membership: Membership,
}

struct Shared {
    log: Rc<RefCell<EventLog>>,
    ops: RefCell<Vec<Op>>,
    ready_clients: Cell<usize>,
    finished_clients: Cell<usize>,
    /// Counts operation invocations and completions, in the order they happen.
    events: Rc<Cell<u64>>,
}

struct Run {
    plan: Plan,
    slots: Vec<NodeSlot>,
    shared: Rc<Shared>,
    power_losses: Vec<(usize, u64)>,
    deaths: Vec<(usize, u64)>,
    durability_breaches: Vec<Violation>,
    operator: Operator,
}

pub(crate) fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

impl Run {
    fn new(plan: Plan) -> Run {
        let slots = (0..plan.hosts())
            .map(|i| NodeSlot {
                disk: Arc::new(SimDisk::new()),
                clock: Rc::new(RefCell::new(Weak::new())),
                inspector: Rc::new(RefCell::new(None)),
                start: Rc::new(Cell::new(i < plan.nodes)),
                crashed: false,
                membership: if i < plan.nodes {
                    Membership::Member
                } else {
                    Membership::Spare
                },
            })
            .collect();
        Run {
            plan,
            slots,
            shared: Rc::new(Shared {
                log: Rc::new(RefCell::new(EventLog::default())),
                ops: RefCell::new(Vec::new()),
                ready_clients: Cell::new(0),
                finished_clients: Cell::new(0),
                events: Rc::new(Cell::new(0)),
            }),
            power_losses: Vec::new(),
            deaths: Vec::new(),
            durability_breaches: Vec::new(),
            operator: Operator::default(),
        }
    }

    fn execute(mut self) -> RunReport {
        let mut sim = turmoil::Builder::new()
            .rng_seed(self.plan.seed)
            .simulation_duration(RUN_MAX)
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(self.plan.latency.0)
            .max_message_latency(self.plan.latency.1)
            .repair_rate(0.02)
            .tcp_capacity(1024)
            .build();
        sim.set_message_latency_curve(self.plan.latency_curve);
        let gossip = GossipNet::new();
        for i in 0..self.plan.hosts() {
            self.add_node(&mut sim, i, &gossip);
        }
        for c in 0..self.plan.clients.len() {
            self.add_client(&mut sim, c);
        }
        self.operator
            .start(&mut sim, self.plan.seed, Rc::clone(&self.shared.log));
        let mut violations = Vec::new();
        let mut workload_start = None;
        let mut active: Vec<ScheduledFault> = Vec::new();
        let mut pending: Vec<ScheduledFault> = self.plan.faults.clone();
        let mut unquiet: Vec<(u64, u64)> = Vec::new();
        let mut next_write_back = self.plan.write_back;
        let mut rings = RingWatch::default();
        // Phase 1: the workload, with faults.
        loop {
            if let Err(e) = sim.step() {
                violations.push(Violation {
                    kind: ViolationKind::SimulationError,
                    detail: e.to_string(),
                });
                break;
            }
            let now = sim.elapsed();
            self.write_back_if_due(now, &mut next_write_back);
            if let Some(split) = rings.check(now, || self.member_rings()) {
                self.log(now, format!("ring split: {}", split.detail));
                violations.push(split);
            }
            if workload_start.is_none() && self.shared.ready_clients.get() == self.plan.clients.len() {
                workload_start = Some(now);
                self.log(now, "workload starts");
            }
            if let Some(start) = workload_start {
                let since = now.saturating_sub(start);
                while pending.first().is_some_and(|f| f.at <= since) {
                    let fault = pending.remove(0);
                    let lasting = self.apply(&mut sim, &fault.fault, now);
                    if lasting {
                        active.push(fault);
                    } else {
                        let end = now + MEMBERSHIP_UNSETTLED;
                        unquiet.push((now.as_millis() as u64, end.as_millis() as u64));
                    }
                }
                let (due, keep): (Vec<_>, Vec<_>) = active.drain(..).partition(|f| f.until <= since);
                active = keep;
                for fault in due {
                    self.heal(&mut sim, &fault.fault, now);
                    unquiet.push(((start + fault.at).as_millis() as u64, (now + SETTLE).as_millis() as u64));
                }
            }
            if self.shared.finished_clients.get() == self.plan.clients.len() {
                break;
            }
        }
        // Phase 2: heal everything, then let hints and anti-entropy converge the replicas.
        let workload_end = sim.elapsed();
        for fault in std::mem::take(&mut active) {
            self.heal(&mut sim, &fault.fault, workload_end);
            let start = workload_start.unwrap_or_default() + fault.at;
            unquiet.push((start.as_millis() as u64, (workload_end + SETTLE).as_millis() as u64));
        }
        let ring = self.ring();
        let mut converged_after = None;
        if violations.iter().all(|v| v.kind != ViolationKind::SimulationError) {
            let deadline = workload_end + CONVERGE_MAX;
            let mut next_check = workload_end;
            while sim.elapsed() < deadline {
                if sim.elapsed() >= next_check {
                    if self.converged(&ring) {
                        converged_after = Some(sim.elapsed() - workload_end);
                        break;
                    }
                    // Without anti-entropy replicas may keep differing in failed writes;
                    // the run is settled once every hint is handed off.
                    if !self.plan.anti_entropy && sim.elapsed() >= workload_end + SETTLE && self.no_hints_left() {
                        self.log(sim.elapsed(), "every hint handed off (anti-entropy is off)");
                        break;
                    }
                    next_check = sim.elapsed() + Duration::from_millis(250);
                }
                if let Err(e) = sim.step() {
                    violations.push(Violation {
                        kind: ViolationKind::SimulationError,
                        detail: e.to_string(),
                    });
                    break;
                }
                self.write_back_if_due(sim.elapsed(), &mut next_write_back);
            }
        }
        let simulated = sim.elapsed();
        match converged_after {
            Some(after) => self.log(
                simulated,
                format!("converged {} ms after the workload", after.as_millis()),
            ),
            None => self.log(simulated, "did not converge"),
        }
        let rings = self.member_rings();
        violations.extend(self.members_down());
        self.operator.stop();
        drop(sim);
        let finals = self.finals(&ring);
        for (key, state) in &finals {
            for (node, siblings) in &state.replicas {
                let values: Vec<String> = siblings.iter().map(|s| format!("{}@{}", s.value, s.dot)).collect();
                self.log(simulated, format!("final k{key} n{} [{}]", node + 1, values.join(" ")));
            }
        }
        let ops = self.shared.ops.borrow().clone();
        let expected_members = self.expected_members();
        let plan = self.plan.clone();
        let skew = move |at_ms: u64| plan.skew_bound_ms(Duration::from_millis(at_ms));
        violations.extend(check(&Evidence {
            ops: &ops,
            finals: &finals,
            unquiet: &unquiet,
            replicas: self.plan.replicas,
            rings: &rings,
            expected_members: &expected_members,
            synced: self.plan.durability == Durability::Sync,
            power_losses: &self.power_losses,
            deaths: &self.deaths,
            write_back_ms: self.plan.write_back.as_millis() as u64,
            skew_bound_ms: &skew,
            anti_entropy: self.plan.anti_entropy,
        }));
        violations.append(&mut self.durability_breaches);
        violations.extend(orphaned_hints(&self.held_hints(), &expected_members));
        let log = self.shared.log.borrow().clone();
        RunReport {
            plan: self.plan,
            ops,
            log,
            violations,
            simulated,
            converged_after,
        }
    }

    /// The kernel's periodic write-back of every node's buffered log pages.
    fn write_back_if_due(&self, now: Duration, next: &mut Duration) {
        if now >= *next {
            for slot in &self.slots {
                slot.disk.write_back();
            }
            *next = now + self.plan.write_back;
        }
    }

    fn log(&self, at: Duration, line: impl std::fmt::Display) {
        self.shared.log.borrow_mut().push(at.as_millis() as u64, line);
    }

    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|i| self.slots[*i].membership == Membership::Member)
    }

    /// Members that no fault keeps down at the end and that are not running: they could
    /// not start again (a restarted node retries every second while its seeds do not
    /// answer).
    fn members_down(&self) -> Vec<Violation> {
        self.members()
            .filter(|m| !self.slots[*m].crashed && self.slots[*m].inspector.borrow().is_none())
            .map(|m| Violation {
                kind: ViolationKind::MemberDown,
                detail: format!(
                    "n{} is a member, no fault keeps it down, and it is not running at the end: it could not start \
                     again",
                    m + 1
                ),
            })
            .collect()
    }

    fn expected_members(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.members().map(node_name).collect();
        ids.sort();
        ids
    }

    fn ring(&self) -> Ring {
        let members = self.members().filter_map(|i| {
            NodeId::new(&node_name(i))
                .ok()
                .map(|id| Member::new(id, ringkv_ring::VNODES_DEFAULT))
        });
        Ring::new(members).unwrap_or_else(|e| panic!("the simulated members form a ring: {e}"))
    }

    /// What each running member believes the ring is.
    fn member_rings(&self) -> Vec<MemberRing> {
        rings_of(
            self.members()
                .filter(|i| !self.slots[*i].crashed)
                .map(|node| (node, &*self.slots[node].inspector)),
        )
    }

    fn replicas_of(&self, ring: &Ring, k: usize) -> Vec<usize> {
        let Ok(key) = Limits::default().key(key_bytes(k)) else {
            return Vec::new();
        };
        ring.preference_list(key.position(), self.plan.replicas)
            .nodes()
            .iter()
            .filter_map(|id| (0..self.slots.len()).find(|i| node_name(*i) == id.as_str()))
            .collect()
    }

    fn finals(&self, ring: &Ring) -> BTreeMap<usize, FinalKey> {
        (0..self.plan.keys)
            .map(|k| {
                let Ok(key) = Limits::default().key(key_bytes(k)) else {
                    return (k, FinalKey::default());
                };
                let nodes = self.replicas_of(ring, k);
                let states: Vec<_> = nodes.iter().map(|n| (*n, self.slots[*n].disk.stored(&key))).collect();
                let replicas = states
                    .iter()
                    .map(|(node, state)| (*node, live_siblings(state.as_ref())))
                    .collect();
                (k, FinalKey { replicas, states })
            })
            .collect()
    }

    /// The hints every member, and every node that left, still holds.
    fn held_hints(&self) -> Vec<HeldHints> {
        hints_of(
            self.slots
                .iter()
                .enumerate()
                .map(|(node, slot)| (node, slot.membership, &*slot.disk)),
        )
    }

    fn no_hints_left(&self) -> bool {
        self.members().all(|m| self.slots[m].disk.hint_counts().is_empty())
    }

    /// Every key agrees on every replica, and no hint is stranded yet (a hint for a node
    /// that is gone takes a hand-off round or two to be re-homed).
    fn converged(&self, ring: &Ring) -> bool {
        self.finals(ring).values().all(FinalKey::agrees)
            && orphaned_hints(&self.held_hints(), &self.expected_members()).is_empty()
            // A member restarted by the last heal may still be starting: wait for it.
            && self.members_down().is_empty()
            // And one the last heal resumed (or reconnected) may not have heard the latest
            // membership yet: wait for every running member's ring to hold the members.
            && {
                let expected = self.expected_members();
                self.member_rings().iter().all(|r| r.members == expected)
            }
    }

    /// The host pairs a partition with `side` on one side cuts.
    fn links_across(&self, side: &[usize]) -> Vec<(String, String)> {
        side.iter()
            .flat_map(|a| {
                (0..self.slots.len())
                    .filter(|b| !side.contains(b))
                    .map(move |b| (node_name(*a), node_name(b)))
            })
            .collect()
    }

    /// Every other host a node talks to (nodes, clients, the operator).
    fn hosts_besides(&self, node: usize) -> Vec<String> {
        (0..self.slots.len())
            .filter(|n| *n != node)
            .map(node_name)
            .chain((0..self.plan.clients.len()).map(client_name))
            .chain(std::iter::once(OPERATOR.to_owned()))
            .collect()
    }

    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, node: usize) {
        if !self.slots[node].crashed {
            sim.crash(node_name(node));
            self.slots[node].crashed = true;
            *self.slots[node].inspector.borrow_mut() = None;
        }
    }

    /// A fault on a node that is not a running member (a spare, or one that left) has
    /// nothing to act on.
    fn acts_on(&self, fault: &Fault) -> bool {
        let member = |n: &usize| self.slots[*n].membership == Membership::Member;
        match fault {
            Fault::Crash { node }
            | Fault::PowerLoss { node }
            | Fault::Pause { node }
            | Fault::ClockJump { node, .. }
            | Fault::Leave { node }
            | Fault::Remove { node } => member(node),
            Fault::Join { node } => self.slots[*node].membership == Membership::Spare,
            _ => true,
        }
    }

    /// Applies a fault; returns whether it lasts until its heal time.
    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) -> bool {
        if !self.acts_on(fault) {
            self.log(now, format!("fault skipped (its node is not a member): {fault}"));
            return false;
        }
        self.log(now, format!("fault: {fault}"));
        match fault {
            Fault::Partition { side } => {
                for (a, b) in self.links_across(side) {
                    sim.partition(a, b);
                }
            }
            Fault::OneWayCut { from, to } => sim.partition_oneway(node_name(*from), node_name(*to)),
            Fault::Delay { a, b, max_ms } => {
                sim.set_link_max_message_latency(node_name(*a), node_name(*b), Duration::from_millis(*max_ms))
            }
            Fault::Loss { a, b, per_mille } => {
                sim.set_link_fail_rate(node_name(*a), node_name(*b), f64::from(*per_mille) / 100_000.0)
            }
            Fault::Crash { node } => self.crash(sim, *node),
            Fault::PowerLoss { node } => {
                self.crash(sim, *node);
                let lost = self.slots[*node].disk.lose_power();
                self.power_losses.push((*node, now.as_millis() as u64));
                self.log(
                    now,
                    format!(
                        "n{} lost {} unsynced key states and {} other log records",
                        node + 1,
                        lost.key_states,
                        lost.other
                    ),
                );
                // A node that syncs every write acknowledges nothing the disk could lose.
                if self.plan.durability == Durability::Sync && lost.key_states > 0 {
                    self.durability_breaches.push(Violation {
                        kind: ViolationKind::LostSyncedWrite,
                        detail: format!(
                            "n{} is configured to sync, yet a power loss at {} ms took {} key states it had written",
                            node + 1,
                            now.as_millis(),
                            lost.key_states
                        ),
                    });
                }
            }
            Fault::Pause { node } => {
                for other in self.hosts_besides(*node) {
                    sim.hold(node_name(*node), other);
                }
            }
            Fault::ClockJump { node, delta_ms } => {
                if let Some(clock) = self.slots[*node].clock.borrow().upgrade() {
                    clock.jump(*delta_ms);
                }
            }
            Fault::ClientCut { client, node } => sim.partition(client_name(*client), node_name(*node)),
            Fault::Join { node } => {
                self.slots[*node].start.set(true);
                self.slots[*node].membership = Membership::Member;
                return false;
            }
            Fault::Leave { node } => {
                self.slots[*node].membership = Membership::Left;
                self.operator.order(Command::Leave(*node));
                return false;
            }
            Fault::Remove { node } => {
                self.crash(sim, *node);
                self.deaths.push((*node, now.as_millis() as u64));
                self.slots[*node].membership = Membership::Removed;
                let through = self.members().find(|m| !self.slots[*m].crashed).unwrap_or(0);
                self.operator.order(Command::Remove { node: *node, through });
                return false;
            }
        }
        true
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
        self.log(now, format!("heal: {fault}"));
        match fault {
            Fault::Partition { side } => {
                for (a, b) in self.links_across(side) {
                    sim.repair(a, b);
                }
            }
            Fault::OneWayCut { from, to } => sim.repair_oneway(node_name(*from), node_name(*to)),
            Fault::Delay { a, b, .. } => {
                sim.set_link_max_message_latency(node_name(*a), node_name(*b), self.plan.latency.1)
            }
            Fault::Loss { a, b, .. } => {
                sim.set_link_fail_rate(node_name(*a), node_name(*b), 0.0);
                sim.repair(node_name(*a), node_name(*b));
            }
            Fault::Crash { node } | Fault::PowerLoss { node } => {
                // A node removed meanwhile stays dead. One asked to leave while it was down
                // starts again, as an operator would start it: it must run to hand its
                // data over, or it stays a (dead) member of every ring.
                if self.slots[*node].crashed
                    && matches!(self.slots[*node].membership, Membership::Member | Membership::Left)
                {
                    sim.bounce(node_name(*node));
                    self.slots[*node].crashed = false;
                }
            }
            Fault::Pause { node } => {
                for other in self.hosts_besides(*node) {
                    sim.release(node_name(*node), other);
                }
            }
            Fault::ClientCut { client, node } => sim.repair(client_name(*client), node_name(*node)),
            // A stepped clock stays stepped, as after NTP stepped it; membership changes
            // are not undone.
            Fault::ClockJump { .. } | Fault::Join { .. } | Fault::Leave { .. } | Fault::Remove { .. } => {}
        }
    }

    fn add_node(&self, sim: &mut turmoil::Sim<'_>, i: usize, gossip: &GossipNet) {
        let slot = &self.slots[i];
        let disk = Arc::clone(&slot.disk);
        let clock_slot = Rc::clone(&slot.clock);
        let inspector_slot = Rc::clone(&slot.inspector);
        let start = Rc::clone(&slot.start);
        let gossip = gossip.clone();
        let spec = NodeSpec {
            members_at_start: self.plan.nodes,
            hosts: self.plan.hosts(),
            replicas: self.plan.replicas,
            durability: self.plan.durability,
            skew: self.plan.clocks.get(i).copied().unwrap_or_default(),
            anti_entropy: self.plan.anti_entropy,
            configure: None,
        };
        let boots = Rc::new(Cell::new(0u32));
        sim.host(node_name(i), move || {
            run_node(NodeHost {
                index: i,
                spec: spec.clone(),
                disk: Arc::clone(&disk),
                clock_slot: Rc::clone(&clock_slot),
                inspector_slot: Rc::clone(&inspector_slot),
                start: Rc::clone(&start),
                gossip: gossip.clone(),
                boots: Rc::clone(&boots),
            })
        });
    }

    fn add_client(&self, sim: &mut turmoil::Sim<'_>, c: usize) {
        let shared = Rc::clone(&self.shared);
        let plan = self.plan.clone();
        sim.client(client_name(c), async move {
            let mut client = WorkloadClient::new(c, &plan, Rc::clone(&shared.events));
            client.wait_for_cluster(&plan).await;
            shared.ready_clients.set(shared.ready_clients.get() + 1);
            // Start together: the harness measures fault times from this moment.
            while shared.ready_clients.get() < plan.clients.len() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut read_back = None;
            for _ in 0..plan.ops_per_client {
                let op = client.next_op(&plan, read_back.take()).await;
                // Half the acknowledged puts are read back at once through a random
                // node, at the smallest R with R+W>N (read-your-writes).
                let coin = client.rng.random_bool(0.5);
                if matches!(op.kind, OpKind::Put { .. }) && op.ok() && coin {
                    read_back = Some((op.key, (plan.replicas + 1).saturating_sub(op.quorum).max(1)));
                }
                shared.log.borrow_mut().op(&op);
                shared.ops.borrow_mut().push(op);
                if read_back.is_none() {
                    let think = client.rng.random_range(0..60);
                    tokio::time::sleep(Duration::from_millis(think)).await;
                }
            }
            shared.finished_clients.set(shared.finished_clients.get() + 1);
            Ok(())
        });
    }
}

fn client_name(c: usize) -> String {
    format!("c{}", c + 1)
}

/// What each of these running members (`(node, its inspector)`) believes the ring is.
pub(crate) fn rings_of<'a>(members: impl Iterator<Item = (usize, &'a RefCell<Option<Inspector>>)>) -> Vec<MemberRing> {
    members
        .filter_map(|(node, inspector)| {
            let ring = inspector.borrow().as_ref()?.ring();
            let mut members: Vec<String> = ring.members().iter().map(|m| m.id.to_string()).collect();
            members.sort();
            Some(MemberRing { node, members })
        })
        .collect()
}

/// The hints every member, and every node that left, still holds (spares and removed
/// nodes are skipped: a removed node's disk is gone with it).
pub(crate) fn hints_of<'a>(nodes: impl Iterator<Item = (usize, Membership, &'a SimDisk)>) -> Vec<HeldHints> {
    nodes
        .filter_map(|(node, membership, disk)| {
            let member = match membership {
                Membership::Member => true,
                Membership::Left => false,
                Membership::Spare | Membership::Removed => return None,
            };
            let hints = disk
                .hint_counts()
                .into_iter()
                .map(|(target, count)| (target.to_string(), count))
                .collect();
            Some(HeldHints { node, member, hints })
        })
        .collect()
}

/// A read's outcome from the siblings a node returned (`(value, dot)`), sorted.
fn read_outcome(siblings: impl Iterator<Item = (Bytes, String)>, context: Vec<u8>) -> Outcome {
    let mut siblings: Vec<SeenSibling> = siblings
        .map(|(value, dot)| SeenSibling {
            value: String::from_utf8_lossy(&value).into_owned(),
            dot,
        })
        .collect();
    siblings.sort();
    Outcome::Read { siblings, context }
}

pub(crate) fn live_siblings(state: Option<&ringkv_storage::KeyState>) -> Vec<SeenSibling> {
    let Some(state) = state else {
        return Vec::new();
    };
    let mut siblings: Vec<SeenSibling> = state
        .visible(0)
        .map(|s| SeenSibling {
            value: s
                .value()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            dot: s.dot().to_string(),
        })
        .collect();
    siblings.sort();
    siblings
}

/// An SDK client of the given nodes over the simulated network.
pub(crate) fn sdk_client(nodes: &[usize], seed: u64) -> Result<Client, ringkv_client::ClientError> {
    let endpoints: Vec<String> = nodes
        .iter()
        .map(|n| SocketAddr::new(turmoil::lookup(node_name(*n)), GRPC_PORT).to_string())
        .collect();
    Client::builder()
        .endpoints(endpoints)
        .dialer(sdk_dialer)
        .request_timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_millis(500))
        .retries(2)
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .jitter_seed(seed)
        .build()
}

/// A scenario's change to every node's configuration.
pub(crate) type Configure = dyn Fn(&mut NodeConfig) + Send + Sync;

/// What a node host needs to know of its cluster.
#[derive(Clone)]
pub(crate) struct NodeSpec {
    /// Members at the start (they join one after another through the first).
    pub members_at_start: usize,
    /// Node hosts in all (later ones join when told to start).
    pub hosts: usize,
    pub replicas: u8,
    pub durability: Durability,
    pub skew: crate::plan::ClockSkew,
    /// Whether anti-entropy runs.
    pub anti_entropy: bool,
    /// A scenario's own changes to every node's configuration.
    pub configure: Option<Arc<Configure>>,
}

pub(crate) struct NodeHost {
    pub index: usize,
    pub spec: NodeSpec,
    pub disk: Arc<SimDisk>,
    pub clock_slot: Rc<RefCell<Weak<NodeClock>>>,
    pub inspector_slot: Rc<RefCell<Option<Inspector>>>,
    pub start: Rc<Cell<bool>>,
    pub gossip: GossipNet,
    pub boots: Rc<Cell<u32>>,
}

/// The software of a node host: start the node (retrying while its seeds are
/// unreachable) and keep it running until the host is crashed or the node has left.
pub(crate) async fn run_node(host: NodeHost) -> turmoil::Result {
    let i = host.index;
    let boot = host.boots.get();
    host.boots.set(boot + 1);
    if boot == 0 {
        // A spare waits for its join; members join one after another through n1, as an
        // operator would start them.
        while !host.start.get() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if i < host.spec.members_at_start {
            tokio::time::sleep(Duration::from_millis(1_500) * i as u32).await;
        }
    }
    let me = turmoil::lookup(node_name(i));
    let join: Vec<String> = if boot == 0 && i == 0 {
        Vec::new()
    } else if boot == 0 && i < host.spec.members_at_start {
        vec![SocketAddr::new(turmoil::lookup(node_name(0)), GRPC_PORT).to_string()]
    } else {
        // A restart, or a late joiner: any other member will do.
        (0..host.spec.hosts)
            .filter(|j| *j != i)
            .map(|j| SocketAddr::new(turmoil::lookup(node_name(j)), GRPC_PORT).to_string())
            .collect()
    };
    let mut config = node_config(i, me, join, host.spec.replicas);
    config.durability = host.spec.durability;
    if !host.spec.anti_entropy {
        // Hand-off and read repair are then the only ways a missed write comes back.
        config.anti_entropy_interval = Duration::from_secs(24 * 3600);
    }
    if let Some(configure) = &host.spec.configure {
        configure(&mut config);
    }
    let skew = host.spec.skew;
    loop {
        let wall = (EPOCH_MS + now_ms()).saturating_add_signed(skew.offset_ms);
        let clock = Arc::new(NodeClock::drifting(wall, skew.drift_ppm));
        let options = StartOptions {
            incoming: Some(incoming(GRPC_PORT).await?),
            network: Network::with_connector(Arc::new(TurmoilConnector)),
            gossip_transport: Some(Arc::new(host.gossip.clone())),
            engine: Some(Arc::clone(&host.disk) as Arc<dyn Engine>),
            clock: Some(Arc::clone(&clock)),
            listener: None,
        };
        match RunningNode::start_with(config.clone(), options).await {
            Ok(node) => {
                *host.clock_slot.borrow_mut() = Arc::downgrade(&clock);
                *host.inspector_slot.borrow_mut() = Some(node.inspect());
                // Runs until the host is crashed, which drops this task and the node, or
                // until the node has left the cluster.
                let mut left = node.left();
                let _ = left.wait_for(|left| *left).await;
                *host.inspector_slot.borrow_mut() = None;
                drop(node);
                std::future::pending::<()>().await;
            }
            Err(e) => {
                tracing::warn!(node = i + 1, error = %e, "start failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn node_config(i: usize, me: IpAddr, join: Vec<String>, replicas: u8) -> NodeConfig {
    let id = NodeId::new(&node_name(i)).unwrap_or_else(|e| panic!("node names are valid ids: {e}"));
    let mut config = NodeConfig::local(
        id,
        SocketAddr::new(me, GRPC_PORT),
        std::path::PathBuf::from("/nonexistent"),
    );
    config.engine = EngineKind::Memory;
    config.gossip_listen = Some(SocketAddr::new(me, GOSSIP_PORT));
    config.join = join;
    config.replicas = replicas;
    config.read_quorum = replicas / 2 + 1;
    config.write_quorum = replicas / 2 + 1;
    config.gossip_interval = Duration::from_millis(100);
    config.gossip_dead_grace = GOSSIP_DEAD_GRACE;
    config.join_timeout = Duration::from_secs(30);
    config.request_timeout = REQUEST_TIMEOUT;
    config.probe_interval = Duration::from_millis(200);
    config.handoff_interval = Duration::from_millis(200);
    config.anti_entropy_interval = Duration::from_millis(500);
    config.gc_interval = Duration::from_millis(500);
    config.tombstone_grace = Duration::from_secs(2);
    config
}

/// How a workload client reaches the cluster.
enum Transport {
    /// One raw gRPC channel per node; each operation picks a node.
    Raw(Vec<KvClient<Channel>>),
    /// The SDK, over every node.
    Sdk(Client),
}

struct WorkloadClient {
    id: usize,
    rng: ChaCha8Rng,
    transport: Transport,
    /// The context of the last read of each key, with that read's completion event.
    contexts: BTreeMap<usize, (Vec<u8>, u64)>,
    /// The context of the first read of each key, kept for the whole run: a client that
    /// holds on to an old context (a browser tab left open) and writes with it later.
    old_contexts: BTreeMap<usize, (Vec<u8>, u64)>,
    seq: u32,
    events: Rc<Cell<u64>>,
}

fn consistency(count: u8) -> proto::Consistency {
    proto::Consistency {
        level: proto::Level::Count as i32,
        count: u32::from(count),
    }
}

fn raw_channels(plan: &Plan) -> Vec<KvClient<Channel>> {
    let network = Network::with_connector(Arc::new(TurmoilConnector));
    (0..plan.hosts())
        .map(|n| {
            let address = SocketAddr::new(turmoil::lookup(node_name(n)), GRPC_PORT);
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .unwrap_or_else(|_| unreachable!("ip:port is a valid URI"))
                .connect_timeout(Duration::from_millis(500))
                .http2_keep_alive_interval(Duration::from_secs(1))
                .keep_alive_timeout(Duration::from_secs(1))
                .keep_alive_while_idle(true);
            KvClient::new(network.lazy_channel(endpoint))
        })
        .collect()
}

impl WorkloadClient {
    fn new(id: usize, plan: &Plan, events: Rc<Cell<u64>>) -> WorkloadClient {
        let client_seed = plan.seed.wrapping_mul(31).wrapping_add(id as u64 + 1);
        let transport = match plan.clients[id] {
            ClientKind::Raw => Transport::Raw(raw_channels(plan)),
            ClientKind::Sdk => {
                let nodes: Vec<usize> = (0..plan.hosts()).collect();
                match sdk_client(&nodes, client_seed) {
                    Ok(client) => Transport::Sdk(client),
                    Err(e) => panic!("the simulation's SDK settings are valid: {e}"),
                }
            }
        };
        WorkloadClient {
            id,
            rng: ChaCha8Rng::seed_from_u64(client_seed),
            transport,
            contexts: BTreeMap::new(),
            old_contexts: BTreeMap::new(),
            seq: 0,
            events,
        }
    }

    /// Waits until every initial member reports every initial member up and alive.
    async fn wait_for_cluster(&mut self, plan: &Plan) {
        let deadline = tokio::time::Instant::now() + FORM_MAX;
        let mut channels = raw_channels(plan);
        channels.truncate(plan.nodes);
        while tokio::time::Instant::now() < deadline {
            let mut all = true;
            for channel in &mut channels {
                let formed = match channel.status(proto::StatusRequest {}).await {
                    Ok(status) => {
                        let members = &status.get_ref().members;
                        members.len() == plan.nodes && members.iter().all(|m| m.state == "up" && m.alive)
                    }
                    Err(_) => false,
                };
                all &= formed;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!(
            client = self.id,
            "cluster did not form in time; running the workload anyway"
        );
    }

    fn quorum(&mut self) -> u8 {
        match self.rng.random_range(0..10) {
            0..=1 => 1,
            2..=7 => 2,
            _ => 3,
        }
    }

    /// The context a write sends: the last read's (mostly), the first read's (a client
    /// that kept an old one), or none.
    fn pick_context(&mut self, key: usize) -> Option<(Vec<u8>, u64)> {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=9 => self.old_contexts.get(&key).cloned(),
            10..=69 => self.contexts.get(&key).cloned(),
            _ => None,
        }
    }

    /// The next operation: a read of `read_back` (key, R) if given, else a random one.
    async fn next_op(&mut self, plan: &Plan, read_back: Option<(usize, u8)>) -> Op {
        let key = match read_back {
            Some((key, _)) => key,
            None => self.rng.random_range(0..plan.keys),
        };
        let node = self.rng.random_range(0..plan.hosts());
        let quorum = match read_back {
            Some((_, r)) => r,
            None => self.quorum(),
        };
        let roll: u32 = if read_back.is_some() {
            0
        } else {
            self.rng.random_range(0..100)
        };
        let known = self.contexts.contains_key(&key);
        let mut context_from = None;
        let kind = if roll < 40 {
            OpKind::Get
        } else if known && roll >= 85 {
            let (context, from) = self
                .pick_context(key)
                .or_else(|| self.contexts.get(&key).cloned())
                .unwrap_or_default();
            context_from = Some(from);
            OpKind::Delete { context }
        } else {
            self.seq += 1;
            let context = match self.pick_context(key) {
                Some((context, from)) => {
                    context_from = Some(from);
                    context
                }
                None => Vec::new(),
            };
            let ttl_ms = if self.rng.random_range(0..1000) < plan.ttl_per_mille {
                self.rng.random_range(500..=5_000)
            } else {
                0
            };
            OpKind::Put {
                value: format!("c{}.{}", self.id + 1, self.seq),
                context,
                ttl_ms,
            }
        };
        let invoked_ms = now_ms();
        let invoked_event = self.next_event();
        let (outcome, node) = match &self.transport {
            Transport::Raw(_) => (self.execute_raw(key, node, quorum, &kind).await, Some(node)),
            Transport::Sdk(_) => (self.execute_sdk(key, quorum, &kind).await, None),
        };
        let completed_event = self.next_event();
        if let Outcome::Read { context, .. } = &outcome {
            self.contexts.insert(key, (context.clone(), completed_event));
            self.old_contexts
                .entry(key)
                .or_insert_with(|| (context.clone(), completed_event));
        }
        Op {
            client: self.id + 1,
            key,
            node,
            kind,
            quorum,
            invoked_ms,
            completed_ms: now_ms(),
            invoked_event,
            completed_event,
            context_from,
            outcome,
        }
    }

    fn next_event(&self) -> u64 {
        let event = self.events.get();
        self.events.set(event + 1);
        event
    }

    async fn execute_sdk(&self, key: usize, quorum: u8, kind: &OpKind) -> Outcome {
        let Transport::Sdk(client) = &self.transport else {
            unreachable!("called for SDK clients only")
        };
        let consistency = Some(Consistency::Count(u32::from(quorum)));
        let call = async {
            match kind {
                OpKind::Get => client
                    .get_with(
                        key_bytes(key),
                        ReadOptions {
                            consistency,
                            timeout: None,
                        },
                    )
                    .await
                    .map(|r| {
                        let context = r.context.as_bytes().to_vec();
                        read_outcome(r.siblings.into_iter().map(|s| (s.value, s.dot)), context)
                    }),
                OpKind::Put { value, context, ttl_ms } => {
                    let options = WriteOptions {
                        consistency,
                        timeout: None,
                        ttl: (*ttl_ms > 0).then(|| Duration::from_millis(*ttl_ms)),
                    };
                    let context = Context::from_bytes(context.clone());
                    client
                        .put_with(key_bytes(key), Bytes::from(value.clone()), &context, options)
                        .await
                        .map(|_| Outcome::Written { acks: None })
                }
                OpKind::Delete { context } => {
                    let options = WriteOptions {
                        consistency,
                        ..WriteOptions::default()
                    };
                    let context = Context::from_bytes(context.clone());
                    client
                        .delete_with(key_bytes(key), &context, options)
                        .await
                        .map(|()| Outcome::Written { acks: None })
                }
            }
        };
        match tokio::time::timeout(SDK_TIMEOUT, call).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("client timeout".to_owned()),
        }
    }

    async fn execute_raw(&mut self, key: usize, node: usize, quorum: u8, kind: &OpKind) -> Outcome {
        let Transport::Raw(channels) = &mut self.transport else {
            unreachable!("called for raw clients only")
        };
        let channel = &mut channels[node];
        let timeout_ms = REQUEST_TIMEOUT.as_millis() as u32;
        let call = async {
            match kind {
                OpKind::Get => channel
                    .get(proto::GetRequest {
                        key: key_bytes(key),
                        consistency: Some(consistency(quorum)),
                        timeout_ms,
                    })
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        read_outcome(r.siblings.into_iter().map(|s| (s.value, s.dot)), r.context.to_vec())
                    }),
                OpKind::Put { value, context, ttl_ms } => channel
                    .put(proto::PutRequest {
                        key: key_bytes(key),
                        value: Bytes::from(value.clone()),
                        context: Bytes::from(context.clone()),
                        consistency: Some(consistency(quorum)),
                        timeout_ms,
                        ttl_ms: *ttl_ms,
                        forwarded: false,
                    })
                    .await
                    .map(|r| Outcome::Written {
                        acks: Some(r.get_ref().replicas_acked),
                    }),
                OpKind::Delete { context } => channel
                    .delete(proto::DeleteRequest {
                        key: key_bytes(key),
                        context: Bytes::from(context.clone()),
                        consistency: Some(consistency(quorum)),
                        timeout_ms,
                        forwarded: false,
                    })
                    .await
                    .map(|r| Outcome::Written {
                        acks: Some(r.get_ref().replicas_acked),
                    }),
            }
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, call).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(status)) => Outcome::Failed(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Outcome::Failed("client timeout".to_owned()),
        }
    }
}
