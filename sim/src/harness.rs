//! One simulated run: a turmoil world with N node hosts running the real `RunningNode`,
//! client hosts running a random workload, the seed's fault schedule, and at the end a
//! healed cluster whose replicas the checkers compare.
//!
//! The harness owns the turmoil `Sim` and steps it one tick at a time, applying and
//! healing faults between ticks, so when anything happens is a function of the seed
//! alone. Each node's in-memory engine lives outside its host: a crash kills the host's
//! tasks (a process crash) and a restart opens the same engine again (what the engine
//! held is what a RocksDB WAL would have kept through a process crash).

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
use ringkv_node::clock::NodeClock;
use ringkv_node::network::Network;
use ringkv_node::{EngineKind, NodeConfig, RunningNode, StartOptions};
use ringkv_ring::{Member, NodeId, Ring};
use ringkv_storage::injected_bug::Bug;
use ringkv_storage::{Engine, Limits, MemoryEngine};
use tonic::transport::{Channel, Endpoint};

use crate::checker::{check, Evidence, FinalKey, Violation, ViolationKind};
use crate::history::{EventLog, Op, OpKind, Outcome, SeenSibling};
use crate::network::{incoming, GossipNet, TurmoilConnector};
use crate::plan::{Fault, Plan, ScheduledFault};

const GRPC_PORT: u16 = 7000;
const GOSSIP_PORT: u16 = 7946;
/// Wall clock of simulated time zero (2026-01-01T00:00:00Z), so runs do not depend on
/// the real date.
const EPOCH_MS: u64 = 1_767_225_600_000;
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

fn node_name(i: usize) -> String {
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

struct NodeSlot {
    engine: Arc<MemoryEngine>,
    /// The running node's clock (to step it); dangling while the node is down.
    clock: Rc<RefCell<Weak<NodeClock>>>,
    crashed: bool,
}

struct Shared {
    log: RefCell<EventLog>,
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
}

fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

impl Run {
    fn new(plan: Plan) -> Run {
        let slots = (0..plan.nodes)
            .map(|_| NodeSlot {
                engine: Arc::new(MemoryEngine::new()),
                clock: Rc::new(RefCell::new(Weak::new())),
                crashed: false,
            })
            .collect();
        Run {
            plan,
            slots,
            shared: Rc::new(Shared {
                log: RefCell::new(EventLog::default()),
                ops: RefCell::new(Vec::new()),
                ready_clients: Cell::new(0),
                finished_clients: Cell::new(0),
                events: Rc::new(Cell::new(0)),
            }),
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
        for i in 0..self.plan.nodes {
            self.add_node(&mut sim, i, &gossip);
        }
        for c in 0..self.plan.clients {
            self.add_client(&mut sim, c);
        }
        let mut violations = Vec::new();
        let mut workload_start = None;
        let mut active: Vec<ScheduledFault> = Vec::new();
        let mut pending: Vec<ScheduledFault> = self.plan.faults.clone();
        let mut unquiet: Vec<(u64, u64)> = Vec::new();
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
            if workload_start.is_none() && self.shared.ready_clients.get() == self.plan.clients {
                workload_start = Some(now);
                self.log(now, "workload starts");
            }
            if let Some(start) = workload_start {
                let since = now.saturating_sub(start);
                while pending.first().is_some_and(|f| f.at <= since) {
                    let fault = pending.remove(0);
                    self.apply(&mut sim, &fault.fault, now);
                    active.push(fault);
                }
                let (due, keep): (Vec<_>, Vec<_>) = active.drain(..).partition(|f| f.until <= since);
                active = keep;
                for fault in due {
                    self.heal(&mut sim, &fault.fault, now);
                    unquiet.push(((start + fault.at).as_millis() as u64, (now + SETTLE).as_millis() as u64));
                }
            }
            if self.shared.finished_clients.get() == self.plan.clients {
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
        if violations.is_empty() {
            let deadline = workload_end + CONVERGE_MAX;
            let mut next_check = workload_end;
            while sim.elapsed() < deadline {
                if sim.elapsed() >= next_check {
                    if self.converged(&ring) {
                        converged_after = Some(sim.elapsed() - workload_end);
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
        drop(sim);
        let finals = self.finals(&ring);
        for (key, state) in &finals {
            for (node, siblings) in &state.replicas {
                let values: Vec<String> = siblings.iter().map(|s| format!("{}@{}", s.value, s.dot)).collect();
                self.log(simulated, format!("final k{key} n{} [{}]", node + 1, values.join(" ")));
            }
        }
        let ops = self.shared.ops.borrow().clone();
        violations.extend(check(&Evidence {
            ops: &ops,
            finals: &finals,
            unquiet: &unquiet,
            replicas: self.plan.replicas,
        }));
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

    fn log(&self, at: Duration, line: impl std::fmt::Display) {
        self.shared.log.borrow_mut().push(at.as_millis() as u64, line);
    }

    fn ring(&self) -> Ring {
        let members = (0..self.plan.nodes).filter_map(|i| {
            NodeId::new(&node_name(i))
                .ok()
                .map(|id| Member::new(id, ringkv_ring::VNODES_DEFAULT))
        });
        Ring::new(members).unwrap_or_else(|e| panic!("the simulated members form a ring: {e}"))
    }

    fn replicas_of(&self, ring: &Ring, k: usize) -> Vec<usize> {
        let Ok(key) = Limits::default().key(key_bytes(k)) else {
            return Vec::new();
        };
        ring.preference_list(key.position(), self.plan.replicas)
            .nodes()
            .iter()
            .filter_map(|id| (0..self.plan.nodes).find(|i| node_name(*i) == id.as_str()))
            .collect()
    }

    fn siblings_on(&self, node: usize, k: usize) -> Vec<SeenSibling> {
        let Ok(key) = Limits::default().key(key_bytes(k)) else {
            return Vec::new();
        };
        let Ok(Some(state)) = self.slots[node].engine.get(&key) else {
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

    fn finals(&self, ring: &Ring) -> BTreeMap<usize, FinalKey> {
        (0..self.plan.keys)
            .map(|k| {
                let replicas = self
                    .replicas_of(ring, k)
                    .into_iter()
                    .map(|node| (node, self.siblings_on(node, k)))
                    .collect();
                (k, FinalKey { replicas })
            })
            .collect()
    }

    fn converged(&self, ring: &Ring) -> bool {
        self.finals(ring).values().all(FinalKey::agrees)
    }

    /// The host pairs a partition with `side` on one side cuts.
    fn links_across(&self, side: &[usize]) -> Vec<(String, String)> {
        side.iter()
            .flat_map(|a| {
                (0..self.plan.nodes)
                    .filter(|b| !side.contains(b))
                    .map(move |b| (node_name(*a), node_name(b)))
            })
            .collect()
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, fault: &Fault, now: Duration) {
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
            Fault::Crash { node } => {
                if !self.slots[*node].crashed {
                    sim.crash(node_name(*node));
                    self.slots[*node].crashed = true;
                }
            }
            Fault::ClockJump { node, delta_ms } => {
                if let Some(clock) = self.slots[*node].clock.borrow().upgrade() {
                    clock.jump(*delta_ms);
                }
            }
        }
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
            Fault::Crash { node } => {
                if self.slots[*node].crashed {
                    sim.bounce(node_name(*node));
                    self.slots[*node].crashed = false;
                }
            }
            // A stepped clock stays stepped, as after NTP stepped it.
            Fault::ClockJump { .. } => {}
        }
    }

    fn add_node(&self, sim: &mut turmoil::Sim<'_>, i: usize, gossip: &GossipNet) {
        let engine = Arc::clone(&self.slots[i].engine);
        let clock_slot = Rc::clone(&self.slots[i].clock);
        let gossip = gossip.clone();
        let nodes = self.plan.nodes;
        let replicas = self.plan.replicas;
        let boots = Rc::new(Cell::new(0u32));
        sim.host(node_name(i), move || {
            let (engine, clock_slot, gossip, boots) = (
                Arc::clone(&engine),
                Rc::clone(&clock_slot),
                gossip.clone(),
                Rc::clone(&boots),
            );
            run_node(NodeHost {
                index: i,
                nodes,
                replicas,
                engine,
                clock_slot,
                gossip,
                boots,
            })
        });
    }

    fn add_client(&self, sim: &mut turmoil::Sim<'_>, c: usize) {
        let shared = Rc::clone(&self.shared);
        let plan = self.plan.clone();
        sim.client(format!("c{}", c + 1), async move {
            let mut client = WorkloadClient::new(c, &plan, Rc::clone(&shared.events));
            client.wait_for_cluster(&plan).await;
            shared.ready_clients.set(shared.ready_clients.get() + 1);
            // Start together: the harness measures fault times from this moment.
            while shared.ready_clients.get() < plan.clients {
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

struct NodeHost {
    index: usize,
    nodes: usize,
    replicas: u8,
    engine: Arc<MemoryEngine>,
    clock_slot: Rc<RefCell<Weak<NodeClock>>>,
    gossip: GossipNet,
    boots: Rc<Cell<u32>>,
}

/// The software of a node host: start the node (retrying while its seeds are
/// unreachable) and keep it running until the host is crashed.
async fn run_node(host: NodeHost) -> turmoil::Result {
    let i = host.index;
    let boot = host.boots.get();
    host.boots.set(boot + 1);
    if boot == 0 {
        // Members join one after another through n1, as an operator would start them.
        tokio::time::sleep(Duration::from_millis(1_500) * i as u32).await;
    }
    let me = turmoil::lookup(node_name(i));
    let join: Vec<String> = if boot == 0 {
        if i == 0 {
            Vec::new()
        } else {
            vec![SocketAddr::new(turmoil::lookup(node_name(0)), GRPC_PORT).to_string()]
        }
    } else {
        // A restart: any other member will do.
        (0..host.nodes)
            .filter(|j| *j != i)
            .map(|j| SocketAddr::new(turmoil::lookup(node_name(j)), GRPC_PORT).to_string())
            .collect()
    };
    let config = node_config(i, me, join, host.replicas);
    loop {
        let clock = Arc::new(NodeClock::starting_at(EPOCH_MS + now_ms()));
        let options = StartOptions {
            incoming: Some(incoming(GRPC_PORT).await?),
            network: Network::with_connector(Arc::new(TurmoilConnector)),
            gossip_transport: Some(Arc::new(host.gossip.clone())),
            engine: Some(Arc::clone(&host.engine) as Arc<dyn Engine>),
            clock: Some(Arc::clone(&clock)),
            listener: None,
        };
        match RunningNode::start_with(config.clone(), options).await {
            Ok(node) => {
                *host.clock_slot.borrow_mut() = Arc::downgrade(&clock);
                // Runs until the host is crashed, which drops this task and the node.
                let _running = node;
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
    config.gossip_interval = Duration::from_millis(100);
    config.join_timeout = Duration::from_secs(30);
    config.request_timeout = REQUEST_TIMEOUT;
    config.probe_interval = Duration::from_millis(200);
    config.handoff_interval = Duration::from_millis(200);
    config.anti_entropy_interval = Duration::from_millis(500);
    config.gc_interval = Duration::from_millis(500);
    config.tombstone_grace = Duration::from_secs(2);
    config
}

struct WorkloadClient {
    id: usize,
    rng: ChaCha8Rng,
    channels: Vec<KvClient<Channel>>,
    contexts: BTreeMap<usize, Vec<u8>>,
    seq: u32,
    events: Rc<Cell<u64>>,
}

fn consistency(count: u8) -> proto::Consistency {
    proto::Consistency {
        level: proto::Level::Count as i32,
        count: u32::from(count),
    }
}

impl WorkloadClient {
    fn new(id: usize, plan: &Plan, events: Rc<Cell<u64>>) -> WorkloadClient {
        let network = Network::with_connector(Arc::new(TurmoilConnector));
        let channels = (0..plan.nodes)
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
            .collect();
        WorkloadClient {
            id,
            rng: ChaCha8Rng::seed_from_u64(plan.seed.wrapping_mul(31).wrapping_add(id as u64 + 1)),
            channels,
            contexts: BTreeMap::new(),
            seq: 0,
            events,
        }
    }

    /// Waits until every node reports every member up and alive.
    async fn wait_for_cluster(&mut self, plan: &Plan) {
        let deadline = tokio::time::Instant::now() + FORM_MAX;
        while tokio::time::Instant::now() < deadline {
            let mut all = true;
            for channel in &mut self.channels {
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

    /// The next operation: a read of `read_back` (key, R) if given, else a random one.
    async fn next_op(&mut self, plan: &Plan, read_back: Option<(usize, u8)>) -> Op {
        let key = match read_back {
            Some((key, _)) => key,
            None => self.rng.random_range(0..plan.keys),
        };
        let node = self.rng.random_range(0..plan.nodes);
        let quorum = match read_back {
            Some((_, r)) => r,
            None => self.quorum(),
        };
        let roll: u32 = if read_back.is_some() {
            0
        } else {
            self.rng.random_range(0..100)
        };
        let known = self.contexts.get(&key).cloned();
        let kind = match known {
            _ if roll < 40 => OpKind::Get,
            Some(context) if roll >= 85 => OpKind::Delete { context },
            known => {
                self.seq += 1;
                let context = match known {
                    Some(context) if self.rng.random_bool(0.7) => context,
                    _ => Vec::new(),
                };
                OpKind::Put {
                    value: format!("c{}.{}", self.id + 1, self.seq),
                    context,
                }
            }
        };
        let invoked_ms = now_ms();
        let invoked_event = self.next_event();
        let outcome = self.execute(key, node, quorum, &kind).await;
        let completed_event = self.next_event();
        if let Outcome::Read { context, .. } = &outcome {
            self.contexts.insert(key, context.clone());
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
            outcome,
        }
    }

    fn next_event(&self) -> u64 {
        let event = self.events.get();
        self.events.set(event + 1);
        event
    }

    async fn execute(&mut self, key: usize, node: usize, quorum: u8, kind: &OpKind) -> Outcome {
        let channel = &mut self.channels[node];
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
                        let mut siblings: Vec<SeenSibling> = r
                            .siblings
                            .into_iter()
                            .map(|s| SeenSibling {
                                value: String::from_utf8_lossy(&s.value).into_owned(),
                                dot: s.dot,
                            })
                            .collect();
                        siblings.sort();
                        Outcome::Read {
                            siblings,
                            context: r.context.to_vec(),
                        }
                    }),
                OpKind::Put { value, context } => channel
                    .put(proto::PutRequest {
                        key: key_bytes(key),
                        value: Bytes::from(value.clone()),
                        context: Bytes::from(context.clone()),
                        consistency: Some(consistency(quorum)),
                        timeout_ms,
                        ttl_ms: 0,
                        forwarded: false,
                    })
                    .await
                    .map(|r| Outcome::Written {
                        acks: r.get_ref().replicas_acked,
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
                        acks: r.get_ref().replicas_acked,
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
