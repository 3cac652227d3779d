//! Directed scenarios: a cluster, client code on client hosts, and faults at chosen
//! times, in the shape of turmoil's builder.
//!
//! Random seeds ([`crate::harness`]) find bugs nobody thought of; a scenario reproduces
//! one somebody did, in a few lines, and is what a bug report becomes. It is also for
//! application developers: the client code is the real [`ringkv_client::Client`] SDK
//! (retries, failover and all) running over the simulated network, so a service can be
//! tested against an eventually consistent store under partitions, crashes and power
//! loss, deterministically, from its own crate.
//!
//! ```no_run
//! use std::time::Duration;
//! use ringkv_client::Context;
//! use ringkv_sim::scenario::{Scenario, Step};
//!
//! let report = Scenario::new(7)
//!     .nodes(3)
//!     .client("app", |client| async move {
//!         client.put("greeting", "hello", &Context::empty()).await.map_err(|e| e.to_string())?;
//!         tokio::time::sleep(Duration::from_secs(3)).await;
//!         let read = client.get("greeting").await.map_err(|e| e.to_string())?;
//!         assert_eq!(read.siblings.len(), 1);
//!         Ok(())
//!     })
//!     .at(Duration::from_secs(1), Step::Partition(vec![0]))
//!     .at(Duration::from_secs(2), Step::Heal)
//!     .run()
//!     .expect("the scenario runs");
//! assert!(report.passed(), "{report}");
//! ```
//!
//! When every client is done, the scenario heals every fault, restarts crashed nodes and
//! waits for the replicas to agree; the report then carries each client's result, the
//! cluster checks (whole-state convergence, one ring on every member, no dot naming two
//! writes), the event log and the final state of every key.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::Client;
use ringkv_node::clock::NodeClock;
use ringkv_node::network::Network;
use ringkv_node::{Inspector, NodeConfig};
use ringkv_ring::{Member, NodeId, Ring};
use ringkv_storage::{Durability, Key, KeyState};
use tonic::transport::Endpoint;

use crate::checker::{check_state, orphaned_hints, FinalKey, HeldHints, MemberRing, Violation, ViolationKind};
use crate::disk::SimDisk;
use crate::harness::{
    hints_of, live_siblings, node_name, rings_of, run_node, sdk_client, Configure, Membership, NodeHost, NodeSpec,
    GRPC_PORT,
};
use crate::history::EventLog;
use crate::network::{GossipNet, TurmoilConnector};
use crate::operator::{Command, Operator, OPERATOR};
use crate::plan::ClockSkew;
use crate::ring_watch::RingWatch;

/// Nodes in a scenario, at most.
pub const SCENARIO_NODES_MAX: usize = 9;
/// Client hosts in a scenario, at most.
pub const SCENARIO_CLIENTS_MAX: usize = 16;
/// Simulated time a scenario may take, at most (clients included).
pub const SCENARIO_RUN_MAX: Duration = Duration::from_secs(600);
/// How long the healed cluster gets to agree.
pub const SCENARIO_CONVERGE_MAX: Duration = Duration::from_secs(60);
const FORM_MAX: Duration = Duration::from_secs(60);
/// How often the kernel writes buffered log pages back in a scenario, by default.
pub const SCENARIO_WRITE_BACK: Duration = Duration::from_secs(5);

/// What a scenario does to the cluster at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// These nodes (indexes from 0) are cut off from the other nodes.
    Partition(Vec<usize>),
    /// Every partition, cut and pause between nodes and clients is healed.
    Heal,
    /// The node's process dies; what its log holds survives.
    Crash(usize),
    /// The node loses power: the process dies and its unsynced log tail is lost.
    PowerLoss(usize),
    /// A crashed node starts again.
    Restart(usize),
    /// Nothing reaches or leaves the node until [`Step::Resume`] (a process pause).
    Pause(usize),
    /// A paused node runs again; what was held is delivered.
    Resume(usize),
    /// The node's wall clock steps by this many ms.
    ClockJump {
        /// Which node.
        node: usize,
        /// The step (negative: backwards).
        delta_ms: i64,
    },
    /// Records every node's stored state of every key under this label, for the test
    /// to look at afterwards ([`ScenarioReport::snapshot`]).
    Snapshot(String),
    /// Messages between two nodes are dropped, both ways, until [`Step::Heal`].
    Cut(usize, usize),
    /// A spare node (an index at or above [`Scenario::nodes`]) starts and joins.
    Join(usize),
    /// The member leaves the cluster on an operator's request (through the SDK).
    Leave(usize),
    /// The member dies for good and an operator removes it through another member.
    Remove(usize),
    /// An operator removes the member through another member while its process still
    /// runs (it may only be cut off): what an operator does who believes it dead.
    RemoveAlive(usize),
    /// The named client can no longer reach the node.
    CutClient {
        /// The client's name.
        client: String,
        /// Which node.
        node: usize,
    },
}

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// OS randomness is not intercepted in this executable, so runs would not repeat.
    #[error(
        "OS randomness is not intercepted in this executable, so runs would not repeat; \
         add the build script from docs/simulation.md (\"Scenarios from your own crate\")"
    )]
    NotDeterministic,
    /// The scenario is not well formed.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The simulation thread failed.
    #[error("the simulation failed: {0}")]
    Failed(String),
}

type ClientCode = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = Result<(), String>>>> + Send>;

struct ClientSpec {
    name: String,
    nodes: Option<Vec<usize>>,
    code: ClientCode,
}

/// A directed scenario (see the module docs).
#[must_use]
pub struct Scenario {
    seed: u64,
    nodes: usize,
    spares: usize,
    write_back: Duration,
    replicas: u8,
    durability: Durability,
    latency: (Duration, Duration),
    clients: Vec<ClientSpec>,
    steps: Vec<(Duration, Step)>,
    configure: Option<Arc<Configure>>,
    bug: Option<ringkv_storage::injected_bug::Bug>,
}

/// What a scenario run produced.
#[derive(Debug)]
pub struct ScenarioReport {
    /// The seed.
    pub seed: u64,
    /// Each client's result, by name (`Err`: what its code returned, or that it panicked).
    pub clients: BTreeMap<String, Result<(), String>>,
    /// Cluster checks that failed.
    pub violations: Vec<Violation>,
    /// Simulated time from the clients' end until every replica agreed.
    pub converged_after: Option<Duration>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Steps, heals and final states, in order.
    pub log: EventLog,
    finals: BTreeMap<Bytes, Option<KeyState>>,
    snapshots: BTreeMap<String, Snapshot>,
}

/// Every node's stored state of every key at one moment (`None`: the node holds no
/// record of the key, or was down).
pub type Snapshot = BTreeMap<Bytes, Vec<(usize, Option<KeyState>)>>;

impl ScenarioReport {
    /// Whether every client succeeded, the cluster converged and no check failed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.converged_after.is_some() && self.clients.values().all(Result::is_ok)
    }

    /// The live values of `key` in the converged cluster (empty: absent or deleted).
    pub fn final_values(&self, key: impl AsRef<[u8]>) -> Vec<Bytes> {
        self.finals
            .get(key.as_ref())
            .and_then(Option::as_ref)
            .map(|state| state.visible(0).filter_map(|s| s.value().cloned()).collect())
            .unwrap_or_default()
    }

    /// Every key the cluster holds at the end.
    pub fn final_keys(&self) -> impl Iterator<Item = &Bytes> {
        self.finals.keys()
    }

    /// What each node stored of `key` when the [`Step::Snapshot`] named `label` ran:
    /// `(node, state)` for every node (empty if no such snapshot or no node held it).
    pub fn snapshot(&self, label: &str, key: impl AsRef<[u8]>) -> Vec<(usize, Option<KeyState>)> {
        self.snapshots
            .get(label)
            .and_then(|s| s.get(key.as_ref()))
            .cloned()
            .unwrap_or_default()
    }
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario seed {}: {:.1} simulated s, converged after {:?}",
            self.seed,
            self.simulated.as_secs_f64(),
            self.converged_after
        )?;
        for (name, result) in &self.clients {
            match result {
                Ok(()) => writeln!(f, "  client {name}: ok")?,
                Err(e) => writeln!(f, "  client {name}: FAILED: {e}")?,
            }
        }
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if !self.passed() {
            for line in self.log.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// A scenario of 3 nodes, N = 3, buffered durability, 1-10 ms links; `seed` fixes
    /// every latency and every random choice the nodes make.
    pub fn new(seed: u64) -> Scenario {
        Scenario {
            seed,
            nodes: 3,
            spares: 0,
            write_back: SCENARIO_WRITE_BACK,
            replicas: 3,
            durability: Durability::Buffered,
            latency: (Duration::from_millis(1), Duration::from_millis(10)),
            clients: Vec::new(),
            steps: Vec::new(),
            configure: None,
            bug: None,
        }
    }

    /// Switches a deliberate bug on in every node of this run (`ringkv-sim bugs` lists
    /// them), to see a scenario's checks catch it. The run's own thread carries it.
    pub fn bug(mut self, bug: ringkv_storage::injected_bug::Bug) -> Scenario {
        self.bug = Some(bug);
        self
    }

    /// Changes every node's configuration after the simulation's own settings (gossip
    /// every 100 ms, 1 s request timeout, 2 s tombstone grace, anti-entropy every 500 ms;
    /// see `sim/src/harness.rs`), for example to switch hinted hand-off off.
    pub fn configure(mut self, configure: impl Fn(&mut NodeConfig) + Send + Sync + 'static) -> Scenario {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// How many nodes (at most [`SCENARIO_NODES_MAX`]).
    pub fn nodes(mut self, nodes: usize) -> Scenario {
        self.nodes = nodes;
        self
    }

    /// Nodes that exist but are not members until a [`Step::Join`] starts them (their
    /// indexes follow the members'). At most [`SCENARIO_NODES_MAX`] nodes in all.
    pub fn spares(mut self, spares: usize) -> Scenario {
        self.spares = spares;
        self
    }

    /// Replicas per key (N).
    pub fn replicas(mut self, replicas: u8) -> Scenario {
        self.replicas = replicas;
        self
    }

    /// How the nodes write to disk (what a [`Step::PowerLoss`] can take).
    pub fn durability(mut self, durability: Durability) -> Scenario {
        self.durability = durability;
        self
    }

    /// How often the kernel writes buffered log pages back to disk (default
    /// [`SCENARIO_WRITE_BACK`]); a buffered write is lost in a power loss only until then.
    pub fn write_back(mut self, every: Duration) -> Scenario {
        self.write_back = every;
        self
    }

    /// Link latency bounds.
    pub fn latency(mut self, min: Duration, max: Duration) -> Scenario {
        self.latency = (min, max);
        self
    }

    /// A client host running `code` with an SDK client of every node. Clients start
    /// together once the cluster has formed; step times count from then.
    pub fn client<F, Fut>(self, name: &str, code: F) -> Scenario
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        self.client_with(name, None, code)
    }

    /// A client host whose SDK client knows only `nodes` (in that order).
    pub fn client_of<F, Fut>(self, name: &str, nodes: &[usize], code: F) -> Scenario
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        self.client_with(name, Some(nodes.to_vec()), code)
    }

    fn client_with<F, Fut>(mut self, name: &str, nodes: Option<Vec<usize>>, code: F) -> Scenario
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        self.clients.push(ClientSpec {
            name: name.to_owned(),
            nodes,
            code: Box::new(move |client| Box::pin(code(client))),
        });
        self
    }

    /// Does `step` at `at` after the clients started.
    pub fn at(mut self, at: Duration, step: Step) -> Scenario {
        self.steps.push((at, step));
        self
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |why: String| Err(ScenarioError::Invalid(why));
        let hosts = self.nodes + self.spares;
        if self.nodes == 0 || hosts > SCENARIO_NODES_MAX {
            return invalid(format!(
                "{} nodes and {} spares; 1 to {SCENARIO_NODES_MAX} in all are allowed",
                self.nodes, self.spares
            ));
        }
        if self.replicas == 0 || usize::from(self.replicas) > self.nodes {
            return invalid(format!("{} replicas on {} nodes", self.replicas, self.nodes));
        }
        if self.clients.is_empty() || self.clients.len() > SCENARIO_CLIENTS_MAX {
            return invalid(format!(
                "{} clients; 1 to {SCENARIO_CLIENTS_MAX} are allowed",
                self.clients.len()
            ));
        }
        if self.latency.0 > self.latency.1 {
            return invalid("minimum latency above the maximum".to_owned());
        }
        let mut names: Vec<&str> = self.clients.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) || names.iter().any(|n| n.is_empty() || n.starts_with('n')) {
            return invalid("client names must be unique, non-empty and not start with 'n' (node hosts)".to_owned());
        }
        for (at, step) in &self.steps {
            let node_ok = |n: &usize| *n < hosts;
            let ok = match step {
                Step::Partition(side) => side.iter().all(node_ok) && !side.is_empty() && side.len() < hosts,
                Step::Heal => true,
                Step::Crash(n) | Step::PowerLoss(n) | Step::Restart(n) | Step::Pause(n) | Step::Resume(n) => node_ok(n),
                Step::ClockJump { node, .. } => node_ok(node),
                Step::Snapshot(_) => true,
                Step::Cut(a, b) => node_ok(a) && node_ok(b) && a != b,
                Step::Join(n) => *n >= self.nodes && node_ok(n),
                Step::Leave(n) | Step::Remove(n) | Step::RemoveAlive(n) => node_ok(n),
                Step::CutClient { client, node } => node_ok(node) && names.contains(&client.as_str()),
            };
            if !ok || *at > SCENARIO_RUN_MAX {
                return invalid(format!(
                    "step {step:?} at {at:?} names a node or client that does not exist"
                ));
            }
        }
        for client in &self.clients {
            if let Some(nodes) = &client.nodes {
                if nodes.is_empty() || nodes.iter().any(|n| *n >= hosts) {
                    return invalid(format!("client {} names nodes that do not exist", client.name));
                }
            }
        }
        Ok(())
    }

    /// Runs the scenario on a fresh thread (one simulation at a time per process).
    ///
    /// # Errors
    /// [`ScenarioError::NotDeterministic`] when OS randomness is not intercepted in
    /// this executable, [`ScenarioError::Invalid`] for a malformed scenario,
    /// [`ScenarioError::Failed`] when the simulation itself broke.
    pub fn run(self) -> Result<ScenarioReport, ScenarioError> {
        if !crate::entropy::is_intercepted() {
            return Err(ScenarioError::NotDeterministic);
        }
        self.validate()?;
        let seed = self.seed;
        let _exclusive = crate::task_ids::exclusive().map_err(|e| ScenarioError::Failed(e.to_string()))?;
        std::thread::Builder::new()
            .name(format!("scenario-{seed}"))
            .stack_size(64 << 20)
            .spawn(move || {
                crate::entropy::seed_this_thread(seed);
                ringkv_storage::injected_bug::inject(self.bug);
                ScenarioRun::new(self).execute()
            })
            .map_err(|e| ScenarioError::Failed(e.to_string()))?
            .join()
            .map_err(|_| ScenarioError::Failed(format!("the simulation of scenario seed {seed} panicked")))?
    }
}

struct Slot {
    disk: Arc<SimDisk>,
    clock: Rc<RefCell<Weak<NodeClock>>>,
    inspector: Rc<RefCell<Option<Inspector>>>,
    start: Rc<Cell<bool>>,
    crashed: bool,
    paused: bool,
    membership: Membership,
}

struct ScenarioRun {
    scenario: Scenario,
    slots: Vec<Slot>,
    log: Rc<RefCell<EventLog>>,
    ready: Rc<Cell<usize>>,
    results: Rc<RefCell<BTreeMap<String, Result<(), String>>>>,
    cuts: Vec<(String, usize)>,
    partitioned: Vec<(String, String)>,
    client_names: Vec<String>,
    snapshots: BTreeMap<String, Snapshot>,
    operator: Operator,
    ring_watch: RingWatch,
    violations: Vec<Violation>,
}

impl ScenarioRun {
    fn new(scenario: Scenario) -> ScenarioRun {
        let slots = (0..scenario.nodes + scenario.spares)
            .map(|i| Slot {
                disk: Arc::new(SimDisk::new()),
                clock: Rc::new(RefCell::new(Weak::new())),
                inspector: Rc::new(RefCell::new(None)),
                start: Rc::new(Cell::new(i < scenario.nodes)),
                crashed: false,
                paused: false,
                membership: if i < scenario.nodes {
                    Membership::Member
                } else {
                    Membership::Spare
                },
            })
            .collect();
        let client_names = scenario.clients.iter().map(|c| c.name.clone()).collect();
        ScenarioRun {
            client_names,
            scenario,
            slots,
            log: Rc::new(RefCell::new(EventLog::default())),
            ready: Rc::new(Cell::new(0)),
            results: Rc::new(RefCell::new(BTreeMap::new())),
            cuts: Vec::new(),
            partitioned: Vec::new(),
            snapshots: BTreeMap::new(),
            operator: Operator::default(),
            ring_watch: RingWatch::default(),
            violations: Vec::new(),
        }
    }

    fn log(&self, at: Duration, line: impl fmt::Display) {
        self.log.borrow_mut().push(at.as_millis() as u64, line);
    }

    fn execute(mut self) -> Result<ScenarioReport, ScenarioError> {
        let mut sim = turmoil::Builder::new()
            .rng_seed(self.scenario.seed)
            .simulation_duration(SCENARIO_RUN_MAX + SCENARIO_CONVERGE_MAX + FORM_MAX)
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(self.scenario.latency.0)
            .max_message_latency(self.scenario.latency.1)
            .tcp_capacity(1024)
            .build();
        let gossip = GossipNet::new();
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let start = Rc::clone(&slot.start);
            let (disk, clock, inspector) = (
                Arc::clone(&slot.disk),
                Rc::clone(&slot.clock),
                Rc::clone(&slot.inspector),
            );
            let spec = NodeSpec {
                members_at_start: self.scenario.nodes,
                hosts: self.slots.len(),
                replicas: self.scenario.replicas,
                durability: self.scenario.durability,
                skew: ClockSkew::default(),
                anti_entropy: true,
                configure: self.scenario.configure.clone(),
            };
            let (gossip, boots) = (gossip.clone(), Rc::new(Cell::new(0u32)));
            sim.host(node_name(i), move || {
                run_node(NodeHost {
                    index: i,
                    spec: spec.clone(),
                    disk: Arc::clone(&disk),
                    clock_slot: Rc::clone(&clock),
                    inspector_slot: Rc::clone(&inspector),
                    start: Rc::clone(&start),
                    gossip: gossip.clone(),
                    boots: Rc::clone(&boots),
                })
            });
        }
        self.operator.start(&mut sim, self.scenario.seed, Rc::clone(&self.log));
        let hosts = self.slots.len();
        let clients = std::mem::take(&mut self.scenario.clients);
        let client_count = clients.len();
        for (index, spec) in clients.into_iter().enumerate() {
            let (ready, results, nodes) = (Rc::clone(&self.ready), Rc::clone(&self.results), self.scenario.nodes);
            let seed = self.scenario.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9);
            sim.client(spec.name.clone(), async move {
                let formed = wait_for_cluster(nodes).await;
                ready.set(ready.get() + 1);
                while ready.get() < client_count {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let endpoints = spec.nodes.unwrap_or_else(|| (0..hosts).collect());
                let result = match sdk_client(&endpoints, seed) {
                    _ if !formed => Err(format!("the cluster did not form within {FORM_MAX:?}")),
                    Ok(client) => (spec.code)(client).await,
                    Err(e) => Err(format!("cannot build the SDK client: {e}")),
                };
                results.borrow_mut().insert(spec.name, result);
                Ok(())
            });
        }
        let mut steps = std::mem::take(&mut self.scenario.steps);
        steps.sort_by_key(|(at, _)| *at);
        let mut steps = std::collections::VecDeque::from(steps);
        let mut started = None;
        let client_deadline = SCENARIO_RUN_MAX + FORM_MAX;
        let mut next_write_back = self.scenario.write_back;
        while self.results.borrow().len() < client_count {
            let step = sim.step();
            let now = sim.elapsed();
            if now >= next_write_back {
                for slot in &self.slots {
                    slot.disk.write_back();
                }
                next_write_back = now + self.scenario.write_back;
            }
            if let Err(e) = step {
                // A client host whose code panicked ends the run for that client.
                self.log(now, format!("simulation error: {e}"));
                return Err(ScenarioError::Failed(e.to_string()));
            }
            if started.is_none() && self.ready.get() == client_count {
                started = Some(now);
                self.log(now, "clients start");
            }
            let slots = &self.slots;
            if let Some(split) = self.ring_watch.check(now, || member_rings(slots)) {
                self.log(now, format!("ring split: {}", split.detail));
                self.violations.push(split);
            }
            if let Some(start) = started {
                while steps.front().is_some_and(|(at, _)| start + *at <= now) {
                    if let Some((_, step)) = steps.pop_front() {
                        self.apply(&mut sim, &step, now);
                    }
                }
            }
            if now > client_deadline {
                return Err(ScenarioError::Failed(format!(
                    "clients still running after {client_deadline:?} of simulated time"
                )));
            }
        }
        let clients_done = sim.elapsed();
        self.heal_all(&mut sim, clients_done);
        let ring = self.ring();
        let mut converged_after = None;
        let mut next_check = clients_done;
        while sim.elapsed() < clients_done + SCENARIO_CONVERGE_MAX {
            if sim.elapsed() >= next_check {
                if self.finals(&ring).values().all(FinalKey::agrees) {
                    converged_after = Some(sim.elapsed() - clients_done);
                    break;
                }
                next_check = sim.elapsed() + Duration::from_millis(250);
            }
            sim.step().map_err(|e| ScenarioError::Failed(e.to_string()))?;
        }
        let simulated = sim.elapsed();
        let rings = self.member_rings();
        self.operator.stop();
        drop(sim);
        let finals = self.finals(&ring);
        let names = self.key_names();
        for (index, name) in names.iter().enumerate() {
            self.log(simulated, format!("k{index} is {}", String::from_utf8_lossy(name)));
        }
        let expected = self.expected_members();
        let mut violations = std::mem::take(&mut self.violations);
        let observed = self.observed_states(&names);
        violations.extend(check_state(&finals, &observed, &rings, &expected));
        violations.extend(orphaned_hints(&self.held_hints(), &expected));
        if converged_after.is_none() {
            violations.push(Violation {
                kind: ViolationKind::Divergence,
                detail: format!("replicas did not agree within {SCENARIO_CONVERGE_MAX:?} of healing"),
            });
        }
        let first_states = names
            .into_iter()
            .enumerate()
            .map(|(index, name)| {
                let state = finals
                    .get(&index)
                    .and_then(|f| f.states.first())
                    .and_then(|(_, s)| s.clone());
                (name, state)
            })
            .collect();
        let log = self.log.borrow().clone();
        let clients = self.results.borrow().clone();
        Ok(ScenarioReport {
            seed: self.scenario.seed,
            clients,
            violations,
            converged_after,
            simulated,
            log,
            finals: first_states,
            snapshots: std::mem::take(&mut self.snapshots),
        })
    }

    fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|i| self.slots[*i].membership == Membership::Member)
    }

    fn expected_members(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.members().map(node_name).collect();
        ids.sort();
        ids
    }

    /// What each running member believes the ring is.
    fn member_rings(&self) -> Vec<MemberRing> {
        member_rings(&self.slots)
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

    fn ring(&self) -> Ring {
        let members = self.members().filter_map(|i| {
            NodeId::new(&node_name(i))
                .ok()
                .map(|id| Member::new(id, ringkv_ring::VNODES_DEFAULT))
        });
        Ring::new(members).unwrap_or_else(|e| panic!("the scenario's nodes form a ring: {e}"))
    }

    /// The snapshots' states, indexed like the finals (`names`), for the checks.
    fn observed_states(&self, names: &[Bytes]) -> Vec<BTreeMap<usize, FinalKey>> {
        self.snapshots
            .values()
            .map(|snapshot| {
                snapshot
                    .iter()
                    .filter_map(|(name, states)| {
                        let index = names.iter().position(|n| n == name)?;
                        let replicas = states.iter().map(|(n, s)| (*n, live_siblings(s.as_ref()))).collect();
                        Some((
                            index,
                            FinalKey {
                                replicas,
                                states: states.clone(),
                            },
                        ))
                    })
                    .collect()
            })
            .collect()
    }

    /// Every key any node holds, sorted.
    fn key_names(&self) -> Vec<Bytes> {
        let mut keys: Vec<Bytes> = self
            .slots
            .iter()
            .flat_map(|slot| slot.disk.all_states())
            .map(|(key, _)| Bytes::copy_from_slice(key.as_bytes()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn finals(&self, ring: &Ring) -> BTreeMap<usize, FinalKey> {
        let limits = ringkv_storage::Limits::default();
        self.key_names()
            .into_iter()
            .enumerate()
            .filter_map(|(index, name)| {
                let key: Key = limits.key(name).ok()?;
                let nodes: Vec<usize> = ring
                    .preference_list(key.position(), self.scenario.replicas)
                    .nodes()
                    .iter()
                    .filter_map(|id| (0..self.slots.len()).find(|i| node_name(*i) == id.as_str()))
                    .collect();
                let states: Vec<(usize, Option<KeyState>)> =
                    nodes.iter().map(|n| (*n, self.slots[*n].disk.stored(&key))).collect();
                let replicas = states.iter().map(|(n, s)| (*n, live_siblings(s.as_ref()))).collect();
                Some((index, FinalKey { replicas, states }))
            })
            .collect()
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, step: &Step, now: Duration) {
        self.log(now, format!("step: {step:?}"));
        match step {
            Step::Partition(side) => {
                for a in side {
                    for b in (0..self.slots.len()).filter(|b| !side.contains(b)) {
                        sim.partition(node_name(*a), node_name(b));
                        self.partitioned.push((node_name(*a), node_name(b)));
                    }
                }
            }
            Step::Heal => self.heal_links(sim),
            Step::Crash(node) | Step::PowerLoss(node) => {
                if !self.slots[*node].crashed {
                    sim.crash(node_name(*node));
                    self.slots[*node].crashed = true;
                    *self.slots[*node].inspector.borrow_mut() = None;
                }
                if matches!(step, Step::PowerLoss(_)) {
                    let lost = self.slots[*node].disk.lose_power();
                    self.log(now, format!("n{} lost {} unsynced log records", node + 1, lost.total()));
                }
            }
            Step::Restart(node) => {
                if self.slots[*node].crashed && self.slots[*node].membership == Membership::Member {
                    sim.bounce(node_name(*node));
                    self.slots[*node].crashed = false;
                }
            }
            Step::Pause(node) => {
                if !self.slots[*node].paused {
                    for other in self.others(*node) {
                        sim.hold(node_name(*node), other);
                    }
                    self.slots[*node].paused = true;
                }
            }
            Step::Resume(node) => self.resume(sim, *node),
            Step::ClockJump { node, delta_ms } => {
                if let Some(clock) = self.slots[*node].clock.borrow().upgrade() {
                    clock.jump(*delta_ms);
                }
            }
            Step::CutClient { client, node } => {
                sim.partition(client.as_str(), node_name(*node));
                self.cuts.push((client.clone(), *node));
            }
            Step::Cut(a, b) => {
                sim.partition(node_name(*a), node_name(*b));
                self.partitioned.push((node_name(*a), node_name(*b)));
            }
            Step::Join(node) => {
                if self.slots[*node].membership == Membership::Spare {
                    self.slots[*node].start.set(true);
                    self.slots[*node].membership = Membership::Member;
                }
            }
            Step::Leave(node) => {
                if self.slots[*node].membership == Membership::Member {
                    self.slots[*node].membership = Membership::Left;
                    self.operator.order(Command::Leave(*node));
                }
            }
            Step::Remove(node) | Step::RemoveAlive(node) => {
                if self.slots[*node].membership == Membership::Member {
                    if matches!(step, Step::Remove(_)) && !self.slots[*node].crashed {
                        sim.crash(node_name(*node));
                        self.slots[*node].crashed = true;
                        *self.slots[*node].inspector.borrow_mut() = None;
                    }
                    self.slots[*node].membership = Membership::Removed;
                    let through = self
                        .members()
                        .find(|m| !self.slots[*m].crashed && !self.partitioned_from_others(*m))
                        .unwrap_or(0);
                    self.operator.order(Command::Remove { node: *node, through });
                }
            }
            Step::Snapshot(label) => {
                let snapshot = self
                    .key_names()
                    .into_iter()
                    .filter_map(|name| {
                        let key = ringkv_storage::Limits::default().key(name.clone()).ok()?;
                        let states = (0..self.slots.len())
                            .map(|n| (n, self.slots[n].disk.stored(&key).filter(|_| !self.slots[n].crashed)))
                            .collect();
                        Some((name, states))
                    })
                    .collect();
                self.snapshots.insert(label.clone(), snapshot);
            }
        }
    }

    /// Whether a partition or cut of this scenario isolates the node from some node.
    fn partitioned_from_others(&self, node: usize) -> bool {
        let name = node_name(node);
        self.partitioned.iter().any(|(a, b)| *a == name || *b == name)
    }

    fn others(&self, node: usize) -> Vec<String> {
        (0..self.slots.len())
            .filter(|n| *n != node)
            .map(node_name)
            .chain(self.client_names.iter().cloned())
            .chain(std::iter::once(OPERATOR.to_owned()))
            .collect()
    }

    fn resume(&mut self, sim: &mut turmoil::Sim<'_>, node: usize) {
        if self.slots[node].paused {
            for other in self.others(node) {
                sim.release(node_name(node), other);
            }
            self.slots[node].paused = false;
        }
    }

    fn heal_links(&mut self, sim: &mut turmoil::Sim<'_>) {
        for (a, b) in std::mem::take(&mut self.partitioned) {
            sim.repair(a, b);
        }
        for (client, node) in std::mem::take(&mut self.cuts) {
            sim.repair(client.as_str(), node_name(node));
        }
        for node in 0..self.slots.len() {
            self.resume(sim, node);
        }
    }

    fn heal_all(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        self.log(now, "clients done: healing everything");
        self.heal_links(sim);
        for node in 0..self.slots.len() {
            if self.slots[node].crashed && self.slots[node].membership == Membership::Member {
                sim.bounce(node_name(node));
                self.slots[node].crashed = false;
            }
        }
    }
}

/// What each running member among `slots` believes the ring is.
fn member_rings(slots: &[Slot]) -> Vec<MemberRing> {
    rings_of(
        slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.membership == Membership::Member && !slot.crashed)
            .map(|(node, slot)| (node, &*slot.inspector)),
    )
}

/// Waits until every node reports every node up and alive; returns whether they did.
async fn wait_for_cluster(nodes: usize) -> bool {
    let network = Network::with_connector(Arc::new(TurmoilConnector));
    let mut channels: Vec<KvClient<_>> = (0..nodes)
        .map(|n| {
            let address = SocketAddr::new(turmoil::lookup(node_name(n)), GRPC_PORT);
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .unwrap_or_else(|_| unreachable!("ip:port is a valid URI"))
                .connect_timeout(Duration::from_millis(500));
            KvClient::new(network.lazy_channel(endpoint))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + FORM_MAX;
    while tokio::time::Instant::now() < deadline {
        let mut formed = true;
        for channel in &mut channels {
            formed &= match channel.status(proto::StatusRequest {}).await {
                Ok(status) => {
                    let members = &status.get_ref().members;
                    members.len() == nodes && members.iter().all(|m| m.state == "up" && m.alive)
                }
                Err(_) => false,
            };
        }
        if formed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
