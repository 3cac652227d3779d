//! A run's scenario, drawn entirely from its seed: cluster size, workload, network
//! latencies and the fault schedule.
//!
//! The plan uses its own RNG (ChaCha8 from the seed), separate from the stream that
//! feeds the nodes' OS randomness, so changing a node's use of randomness does not
//! change which faults a seed means.

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Nodes in a simulated cluster, at most (members at the start plus those joining later).
pub const NODES_MAX: usize = 7;
/// Faults in one run, at most.
pub const FAULTS_MAX: usize = 6;
/// How long gossip remembers a dead member in the simulation (chitchat's dead-node grace
/// period; an hour on a real node): a crash drawn "long" outlasts it.
pub const GOSSIP_DEAD_GRACE: Duration = Duration::from_secs(8);
/// Largest clock offset between a node and simulated time at start, in ms.
pub const CLOCK_OFFSET_MAX_MS: i64 = 2_000;
/// Largest clock drift, in parts per million (1%: 1 s of skew every 100 s).
pub const CLOCK_DRIFT_MAX_PPM: i32 = 10_000;

/// One fault the network or a node suffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The nodes split into two sides that cannot reach each other.
    Partition {
        /// One side (node indexes); the rest form the other.
        side: Vec<usize>,
    },
    /// Messages from `from` to `to` are dropped; the other direction works.
    OneWayCut {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
    },
    /// Messages between two nodes are delayed by up to `max_ms`.
    Delay {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Largest extra latency.
        max_ms: u64,
    },
    /// Messages between two nodes are lost with this probability (per mille).
    Loss {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Loss rate in 1/1000.
        per_mille: u32,
    },
    /// The node's process dies (what its engine logged survives) and restarts at the heal.
    Crash {
        /// Which node.
        node: usize,
    },
    /// The node loses power: its process dies and the unsynced tail of its log is lost
    /// (`sim/src/disk.rs`); it restarts at the heal.
    PowerLoss {
        /// Which node.
        node: usize,
    },
    /// The node stops being scheduled: nothing it sends leaves and nothing sent to it
    /// arrives until it resumes, when everything held is delivered at once. (Turmoil
    /// cannot stop one host's timers, so its own clock and timeouts keep running.)
    Pause {
        /// Which node.
        node: usize,
    },
    /// The node's wall clock steps by `delta_ms`.
    ClockJump {
        /// Which node.
        node: usize,
        /// The step (negative: backwards).
        delta_ms: i64,
    },
    /// A client cannot reach one node (its requests there fail; the SDK fails over).
    ClientCut {
        /// Which client (index).
        client: usize,
        /// Which node.
        node: usize,
    },
    /// A node not yet in the cluster starts and joins it (`until` is unused).
    Join {
        /// Which node (an index at or above the plan's initial members).
        node: usize,
    },
    /// A member leaves the cluster on an operator's request, handing its data over,
    /// and stops (`until` is unused).
    Leave {
        /// Which node.
        node: usize,
    },
    /// A member dies for good and an operator removes it through another member
    /// (`until` is unused).
    Remove {
        /// Which node.
        node: usize,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |nodes: &[usize]| {
            nodes
                .iter()
                .map(|n| format!("n{}", n + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Partition { side } => write!(f, "partition {{{}}} from the rest", names(side)),
            Fault::OneWayCut { from, to } => write!(f, "cut n{} -> n{}", from + 1, to + 1),
            Fault::Delay { a, b, max_ms } => write!(f, "delay n{} <-> n{} up to {max_ms} ms", a + 1, b + 1),
            Fault::Loss { a, b, per_mille } => write!(f, "loss n{} <-> n{} {per_mille}/1000", a + 1, b + 1),
            Fault::Crash { node } => write!(f, "crash n{}", node + 1),
            Fault::PowerLoss { node } => write!(f, "power loss n{}", node + 1),
            Fault::Pause { node } => write!(f, "pause n{}", node + 1),
            Fault::ClockJump { node, delta_ms } => write!(f, "clock n{} jumps {delta_ms:+} ms", node + 1),
            Fault::ClientCut { client, node } => write!(f, "cut c{} from n{}", client + 1, node + 1),
            Fault::Join { node } => write!(f, "n{} joins", node + 1),
            Fault::Leave { node } => write!(f, "n{} leaves", node + 1),
            Fault::Remove { node } => write!(f, "n{} dies and is removed", node + 1),
        }
    }
}

/// A fault and when it acts, relative to the start of the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledFault {
    /// When it starts.
    pub at: Duration,
    /// When it is healed (a crashed node restarts then).
    pub until: Duration,
    /// What it is.
    pub fault: Fault,
}

/// One node's clock against simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockSkew {
    /// Offset at start, in ms.
    pub offset_ms: i64,
    /// Drift, in parts per million.
    pub drift_ppm: i32,
}

/// How the simulated clients talk to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Raw gRPC calls to one chosen node per operation, no retry.
    Raw,
    /// The `ringkv_client::Client` SDK over every node, with its retries and failover.
    Sdk,
}

/// Everything a seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Members at the start.
    pub nodes: usize,
    /// Nodes that exist but are not members yet (a `Join` fault starts one).
    pub spares: usize,
    /// Replicas per key.
    pub replicas: u8,
    /// Client hosts, and how each talks to the cluster.
    pub clients: Vec<ClientKind>,
    /// Operations each client issues.
    pub ops_per_client: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Link latency bounds.
    pub latency: (Duration, Duration),
    /// Rate of the exponential distribution latencies are drawn from, as a fraction of
    /// the range above the minimum (smaller: more messages near the maximum).
    pub latency_curve: f64,
    /// How the nodes write to disk.
    pub durability: ringkv_storage::Durability,
    /// How often the kernel writes buffered log pages back to disk.
    pub write_back: Duration,
    /// Each node's clock (index: node).
    pub clocks: Vec<ClockSkew>,
    /// Puts written with a TTL, per mille.
    pub ttl_per_mille: u32,
    /// Whether anti-entropy runs (off in a quarter of the seeds: hinted hand-off and
    /// read repair must then bring every missed write back on their own).
    pub anti_entropy: bool,
    /// The fault schedule, sorted by start.
    pub faults: Vec<ScheduledFault>,
}

impl Plan {
    /// The plan a seed stands for.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = rng.random_range(3..=5);
        let client_count = rng.random_range(2..=3);
        let ops_per_client = rng.random_range(60..=120);
        let keys = rng.random_range(3..=8);
        let min_latency = Duration::from_millis(rng.random_range(1..=3));
        let max_latency = min_latency + Duration::from_millis(rng.random_range(10..=100));
        let latency_curve = [1.5, 5.0, 10.0][rng.random_range(0..3)];
        let spares = usize::from(rng.random_bool(0.3));
        let clients = (0..client_count)
            .map(|_| {
                if rng.random_bool(0.4) {
                    ClientKind::Sdk
                } else {
                    ClientKind::Raw
                }
            })
            .collect();
        let durability = if rng.random_bool(0.5) {
            ringkv_storage::Durability::Sync
        } else {
            ringkv_storage::Durability::Buffered
        };
        let write_back = Duration::from_millis(rng.random_range(500..=5_000));
        let skewed = rng.random_bool(0.5);
        let clocks = (0..nodes + spares)
            .map(|_| {
                if skewed {
                    ClockSkew {
                        offset_ms: rng.random_range(-CLOCK_OFFSET_MAX_MS..=CLOCK_OFFSET_MAX_MS),
                        drift_ppm: rng.random_range(-CLOCK_DRIFT_MAX_PPM..=CLOCK_DRIFT_MAX_PPM),
                    }
                } else {
                    ClockSkew::default()
                }
            })
            .collect();
        let ttl_per_mille = [0, 0, 100, 300][rng.random_range(0..4)];
        let anti_entropy = rng.random_bool(0.75);
        let fault_count = rng.random_range(0..=5usize).min(FAULTS_MAX);
        let mut membership_changed = false;
        let mut faults: Vec<ScheduledFault> = Vec::with_capacity(fault_count);
        for _ in 0..fault_count {
            let fault = draw_fault(&mut rng, nodes, spares, client_count, &mut membership_changed);
            faults.push(fault);
        }
        faults.sort_by_key(|f| (f.at, f.until));
        Plan {
            seed,
            nodes,
            spares,
            replicas: 3,
            clients,
            ops_per_client,
            keys,
            latency: (min_latency, max_latency),
            latency_curve,
            durability,
            write_back,
            clocks,
            ttl_per_mille,
            anti_entropy,
            faults,
        }
    }

    /// Every node host of the run: members at the start and spares.
    pub fn hosts(&self) -> usize {
        self.nodes + self.spares
    }

    /// The largest difference between two nodes' clocks the plan allows by `at`
    /// (offsets, drift and clock jumps), in ms: what expiry checks must tolerate.
    pub fn skew_bound_ms(&self, at: Duration) -> u64 {
        let drift = |c: &ClockSkew| c.offset_ms + (i128::from(c.drift_ppm) * at.as_millis() as i128 / 1_000_000) as i64;
        let (lo, hi) = self
            .clocks
            .iter()
            .map(drift)
            .fold((0i64, 0i64), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let jumps: u64 = self
            .faults
            .iter()
            .map(|f| match f.fault {
                Fault::ClockJump { delta_ms, .. } => delta_ms.unsigned_abs(),
                _ => 0,
            })
            .sum();
        (hi - lo).unsigned_abs() + jumps
    }
}

fn draw_fault(
    rng: &mut ChaCha8Rng,
    nodes: usize,
    spares: usize,
    clients: usize,
    membership_changed: &mut bool,
) -> ScheduledFault {
    let at = Duration::from_millis(rng.random_range(500..=9_000));
    let mut until = at + Duration::from_millis(rng.random_range(500..=5_000));
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    let (a, b) = (order[0], order[1]);
    let fault = match rng.random_range(0..12) {
        0 => {
            let size = rng.random_range(1..nodes);
            let mut side = order[..size].to_vec();
            side.sort_unstable();
            Fault::Partition { side }
        }
        1 => Fault::OneWayCut { from: a, to: b },
        2 => Fault::Delay {
            a,
            b,
            max_ms: rng.random_range(50..=400),
        },
        3 => Fault::Loss {
            a,
            b,
            per_mille: rng.random_range(10..=200),
        },
        4 => {
            // One crash in three outlasts gossip's memory of dead members.
            if rng.random_bool(1.0 / 3.0) {
                until = at + GOSSIP_DEAD_GRACE + Duration::from_millis(rng.random_range(2_000..=15_000));
            }
            Fault::Crash { node: a }
        }
        5 => Fault::ClockJump {
            node: a,
            delta_ms: rng.random_range(-30_000i64..=30_000),
        },
        6 | 7 => Fault::PowerLoss { node: a },
        8 => Fault::Pause { node: a },
        9 => Fault::ClientCut {
            client: rng.random_range(0..clients),
            node: a,
        },
        _ => {
            // At most one membership change per run; a member leaves or is removed only
            // when N members remain.
            let change = rng.random_range(0..3);
            if *membership_changed {
                Fault::Crash { node: a }
            } else if change == 0 && spares > 0 {
                *membership_changed = true;
                Fault::Join { node: nodes }
            } else if nodes > 3 && change == 1 {
                *membership_changed = true;
                Fault::Leave { node: a }
            } else if nodes > 3 {
                *membership_changed = true;
                Fault::Remove { node: a }
            } else {
                Fault::PowerLoss { node: a }
            }
        }
    };
    ScheduledFault { at, until, fault }
}
