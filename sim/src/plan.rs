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

/// Nodes in a simulated cluster, at most.
pub const NODES_MAX: usize = 7;
/// Faults in one run, at most.
pub const FAULTS_MAX: usize = 6;

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
    /// The node's process dies (what its engine made durable survives) and restarts later.
    Crash {
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
            Fault::ClockJump { node, delta_ms } => write!(f, "clock n{} jumps {delta_ms:+} ms", node + 1),
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

/// Everything a seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Replicas per key.
    pub replicas: u8,
    /// Client hosts.
    pub clients: usize,
    /// Operations each client issues.
    pub ops_per_client: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Link latency bounds.
    pub latency: (Duration, Duration),
    /// Rate of the exponential distribution latencies are drawn from, as a fraction of
    /// the range above the minimum (smaller: more messages near the maximum).
    pub latency_curve: f64,
    /// The fault schedule, sorted by start.
    pub faults: Vec<ScheduledFault>,
}

impl Plan {
    /// The plan a seed stands for.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nodes = rng.random_range(3..=5);
        let clients = rng.random_range(2..=3);
        let ops_per_client = rng.random_range(60..=120);
        let keys = rng.random_range(3..=8);
        let min_latency = Duration::from_millis(rng.random_range(1..=3));
        let max_latency = min_latency + Duration::from_millis(rng.random_range(10..=100));
        let latency_curve = [1.5, 5.0, 10.0][rng.random_range(0..3)];
        let fault_count = rng.random_range(0..=4usize).min(FAULTS_MAX);
        let mut faults: Vec<ScheduledFault> = (0..fault_count).map(|_| draw_fault(&mut rng, nodes)).collect();
        faults.sort_by_key(|f| (f.at, f.until));
        Plan {
            seed,
            nodes,
            replicas: 3,
            clients,
            ops_per_client,
            keys,
            latency: (min_latency, max_latency),
            latency_curve,
            faults,
        }
    }
}

fn draw_fault(rng: &mut ChaCha8Rng, nodes: usize) -> ScheduledFault {
    let at = Duration::from_millis(rng.random_range(500..=9_000));
    let until = at + Duration::from_millis(rng.random_range(500..=5_000));
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(rng);
    let (a, b) = (order[0], order[1]);
    let fault = match rng.random_range(0..6) {
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
        4 => Fault::Crash { node: a },
        _ => Fault::ClockJump {
            node: a,
            delta_ms: rng.random_range(-30_000i64..=30_000),
        },
    };
    ScheduledFault { at, until, fault }
}
