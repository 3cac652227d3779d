//! The experiment spec: a TOML file naming the cluster, the workload, the fault schedule
//! and the N/R/W settings to sweep.
//!
//! Parsing rejects unknown fields (`deny_unknown_fields`) and [`Spec::parse`] validates
//! everything against the lab's limits before anything is started: node numbers in faults,
//! times inside the run, quorum sizes, rates and sizes. An error names the field at fault.
//! The format is documented with examples in `docs/lab.md` and `container/experiments/`.

use std::time::Duration;

use serde::Deserialize;

use crate::kernel::cgroup::{self, Limits};
use crate::lab::layout::NODES_MAX;
use crate::lab::partition::Partition;

/// The longest run one setting may take.
pub(crate) const DURATION_MAX: Duration = Duration::from_secs(600);
/// The most settings one sweep may hold.
pub(crate) const SWEEP_MAX: usize = 8;
/// The most concurrent clients.
pub(crate) const CLIENTS_MAX: u32 = 64;
/// The most keys the workload spreads over.
pub(crate) const KEYS_MAX: u32 = 100_000;
/// The highest total request rate.
pub(crate) const OPS_PER_SECOND_MAX: u32 = 5_000;
/// The value size bounds (a value carries a 20-digit sequence number).
pub(crate) const VALUE_BYTES_MIN: u32 = 20;
/// Largest value.
pub(crate) const VALUE_BYTES_MAX: u32 = 64 << 10;
/// The most faults in a schedule.
pub(crate) const FAULTS_MAX: usize = 32;
/// Per-request timeout bounds.
pub(crate) const TIMEOUT_MIN: Duration = Duration::from_millis(10);
/// Longest per-request timeout.
pub(crate) const TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// Probe keys written on each side of a partition.
pub(crate) const PROBE_KEYS_MAX: u32 = 1_000;

/// A parsed, validated experiment.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Short name, used in the report title.
    pub(crate) name: String,
    /// What the experiment is for.
    pub(crate) description: String,
    /// The lab.
    pub(crate) nodes: u8,
    /// Per-node limits.
    pub(crate) limits: Limits,
    /// The workload.
    pub(crate) workload: Workload,
    /// How long each run lasts.
    pub(crate) duration: Duration,
    /// How long after a heal convergence is awaited (bounded by the run's end).
    pub(crate) converge_timeout: Duration,
    /// Faults, sorted by time.
    pub(crate) faults: Vec<Fault>,
    /// The settings to run.
    pub(crate) sweep: Vec<Quorum>,
    /// Whether to run etcd as the CP reference when it is installed, and with how many
    /// members.
    pub(crate) etcd_members: Option<u8>,
}

/// What clients do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Workload {
    /// Concurrent clients; client i talks to node `i % nodes + 1` only.
    pub(crate) clients: u32,
    /// Keys, `key-0` .. `key-(keys-1)`, chosen uniformly.
    pub(crate) keys: u32,
    /// Fraction of operations that are reads.
    pub(crate) read_fraction: f64,
    /// Total request rate over all clients.
    pub(crate) ops_per_second: u32,
    /// Size of each written value.
    pub(crate) value_bytes: u32,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
    /// Keys written on each side of each partition, to time convergence after the heal.
    pub(crate) probe_keys: u32,
    /// Seed of the key and operation choices.
    pub(crate) seed: u64,
}

/// One fault at one time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fault {
    /// When, from the start of the run.
    pub(crate) at: Duration,
    /// What.
    pub(crate) action: FaultAction,
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FaultAction {
    /// Cut the network into these groups.
    Partition(Partition),
    /// Undo the partition.
    Heal,
    /// SIGKILL a node.
    Kill(u8),
    /// Restart a killed node.
    Start(u8),
}

impl FaultAction {
    /// How the report names the fault.
    pub(crate) fn label(&self) -> String {
        match self {
            FaultAction::Partition(p) => format!("partition {p}"),
            FaultAction::Heal => "heal".to_owned(),
            FaultAction::Kill(i) => format!("kill n{i}"),
            FaultAction::Start(i) => format!("start n{i}"),
        }
    }
}

/// One N/R/W setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quorum {
    /// Replicas per key.
    pub(crate) n: u8,
    /// Replicas a read waits for.
    pub(crate) r: u8,
    /// Replicas a write waits for.
    pub(crate) w: u8,
}

impl Quorum {
    /// `N=3 R=2 W=2`.
    pub(crate) fn label(&self) -> String {
        format!("N={} R={} W={}", self.n, self.r, self.w)
    }
}

/// A spec that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not TOML, an unknown field, a missing field, a wrong type.
    #[error("{0}")]
    Toml(String),
    /// A value outside what the lab allows.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `schedule.fault[2].kill`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    #[serde(default)]
    description: String,
    cluster: RawCluster,
    workload: RawWorkload,
    schedule: RawSchedule,
    sweep: Vec<RawQuorum>,
    #[serde(default)]
    etcd: Option<RawEtcd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    nodes: u8,
    memory: Option<String>,
    cpus: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    clients: u32,
    keys: u32,
    read_fraction: f64,
    ops_per_second: u32,
    #[serde(default = "value_bytes_default")]
    value_bytes: u32,
    #[serde(default = "timeout_default")]
    timeout: String,
    #[serde(default = "probe_keys_default")]
    probe_keys: u32,
    #[serde(default)]
    seed: u64,
}

fn value_bytes_default() -> u32 {
    64
}
fn timeout_default() -> String {
    "1s".to_owned()
}
fn probe_keys_default() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    duration: String,
    #[serde(default = "converge_timeout_default")]
    converge_timeout: String,
    #[serde(default)]
    fault: Vec<RawFault>,
}

fn converge_timeout_default() -> String {
    "30s".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    partition: Option<String>,
    heal: Option<bool>,
    kill: Option<u8>,
    start: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuorum {
    n: u8,
    r: u8,
    w: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    #[serde(default = "yes")]
    run: bool,
    #[serde(default = "etcd_members_default")]
    members: u8,
}

fn yes() -> bool {
    true
}
fn etcd_members_default() -> u8 {
    3
}

fn duration(field: &str, text: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(text).map_err(|e| invalid(field, format!("{text:?} is not a duration like 10s: {e}")))
}

fn range<T: PartialOrd + std::fmt::Display>(field: &str, value: T, min: T, max: T) -> Result<T, SpecError> {
    if value < min || value > max {
        return Err(invalid(field, format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

impl Spec {
    /// Parses and validates a spec.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Toml(e.to_string()))?;
        if raw.name.is_empty() || raw.name.len() > 64 {
            return Err(invalid("name", "must be 1..=64 characters"));
        }
        let nodes = range("cluster.nodes", raw.cluster.nodes, 1, NODES_MAX)?;
        let limits = Limits {
            memory_bytes: raw
                .cluster
                .memory
                .as_deref()
                .map(cgroup::parse_memory)
                .transpose()
                .map_err(|e| invalid("cluster.memory", e.to_string()))?,
            cpus: raw.cluster.cpus,
        };
        cgroup::check_limits(&limits).map_err(|e| invalid("cluster", e.to_string()))?;
        let w = &raw.workload;
        let workload = Workload {
            clients: range("workload.clients", w.clients, 1, CLIENTS_MAX)?,
            keys: range("workload.keys", w.keys, 1, KEYS_MAX)?,
            read_fraction: {
                if !(0.0..=1.0).contains(&w.read_fraction) {
                    return Err(invalid("workload.read_fraction", "must be within 0..=1"));
                }
                w.read_fraction
            },
            ops_per_second: range("workload.ops_per_second", w.ops_per_second, 1, OPS_PER_SECOND_MAX)?,
            value_bytes: range("workload.value_bytes", w.value_bytes, VALUE_BYTES_MIN, VALUE_BYTES_MAX)?,
            timeout: {
                let t = duration("workload.timeout", &w.timeout)?;
                if t < TIMEOUT_MIN || t > TIMEOUT_MAX {
                    return Err(invalid(
                        "workload.timeout",
                        format!("{t:?} is outside {TIMEOUT_MIN:?}..={TIMEOUT_MAX:?}"),
                    ));
                }
                t
            },
            probe_keys: range("workload.probe_keys", w.probe_keys, 1, PROBE_KEYS_MAX)?,
            seed: w.seed,
        };
        let run_duration = duration("schedule.duration", &raw.schedule.duration)?;
        if run_duration < Duration::from_secs(1) || run_duration > DURATION_MAX {
            return Err(invalid(
                "schedule.duration",
                format!("{run_duration:?} is outside 1s..={DURATION_MAX:?}"),
            ));
        }
        let converge_timeout = duration("schedule.converge_timeout", &raw.schedule.converge_timeout)?;
        if converge_timeout > DURATION_MAX {
            return Err(invalid(
                "schedule.converge_timeout",
                format!("longer than {DURATION_MAX:?}"),
            ));
        }
        if raw.schedule.fault.len() > FAULTS_MAX {
            return Err(invalid("schedule.fault", format!("more than {FAULTS_MAX} faults")));
        }
        let mut faults = Vec::new();
        for (position, fault) in raw.schedule.fault.iter().enumerate() {
            let field = format!("schedule.fault[{position}]");
            let at = duration(&format!("{field}.at"), &fault.at)?;
            if at >= run_duration {
                return Err(invalid(
                    format!("{field}.at"),
                    format!("{at:?} is not before the end of the run ({run_duration:?})"),
                ));
            }
            let mut actions = Vec::new();
            if let Some(text) = &fault.partition {
                let partition =
                    Partition::parse(text, nodes).map_err(|e| invalid(format!("{field}.partition"), e.to_string()))?;
                actions.push(FaultAction::Partition(partition));
            }
            match fault.heal {
                Some(true) => actions.push(FaultAction::Heal),
                Some(false) => return Err(invalid(format!("{field}.heal"), "only `heal = true` means something")),
                None => {}
            }
            if let Some(index) = fault.kill {
                actions.push(FaultAction::Kill(range(&format!("{field}.kill"), index, 1, nodes)?));
            }
            if let Some(index) = fault.start {
                actions.push(FaultAction::Start(range(&format!("{field}.start"), index, 1, nodes)?));
            }
            if actions.len() != 1 {
                return Err(invalid(field, "needs exactly one of partition, heal, kill, start"));
            }
            faults.push(Fault {
                at,
                action: actions.remove(0),
            });
        }
        faults.sort_by_key(|f| f.at);
        check_schedule(&faults)?;
        if raw.sweep.is_empty() || raw.sweep.len() > SWEEP_MAX {
            return Err(invalid("sweep", format!("needs 1..={SWEEP_MAX} settings")));
        }
        let mut sweep = Vec::new();
        for (position, q) in raw.sweep.iter().enumerate() {
            let field = format!("sweep[{position}]");
            let n = range(&format!("{field}.n"), q.n, 1, nodes)?;
            let r = range(&format!("{field}.r"), q.r, 1, n)?;
            let w = range(&format!("{field}.w"), q.w, 1, n)?;
            sweep.push(Quorum { n, r, w });
        }
        let etcd_members = match raw.etcd {
            Some(etcd) if etcd.run => Some(range("etcd.members", etcd.members, 1, nodes)?),
            _ => None,
        };
        Ok(Spec {
            name: raw.name,
            description: raw.description,
            nodes,
            limits,
            workload,
            duration: run_duration,
            converge_timeout,
            faults,
            sweep,
            etcd_members,
        })
    }

    /// Seconds of workload over all runs (ringkv settings plus etcd), for the progress bar.
    pub(crate) fn total_run_seconds(&self, with_etcd: bool) -> u64 {
        let runs = self.sweep.len() as u64 + u64::from(with_etcd);
        runs * self.duration.as_secs()
    }
}

/// Kills only running nodes, starts only killed ones, heals only a partition, and leaves
/// at least one node running.
fn check_schedule(faults: &[Fault]) -> Result<(), SpecError> {
    let mut killed: Vec<u8> = Vec::new();
    let mut partitioned = false;
    for (position, fault) in faults.iter().enumerate() {
        let field = format!("schedule.fault at {:?} ({})", fault.at, fault.action.label());
        let _ = position;
        match &fault.action {
            FaultAction::Partition(_) => partitioned = true,
            FaultAction::Heal if !partitioned => return Err(invalid(field, "heals, but nothing is partitioned then")),
            FaultAction::Heal => partitioned = false,
            FaultAction::Kill(i) if killed.contains(i) => {
                return Err(invalid(field, "kills a node that is already down"))
            }
            FaultAction::Kill(i) => killed.push(*i),
            FaultAction::Start(i) if !killed.contains(i) => {
                return Err(invalid(field, "starts a node that is running"))
            }
            FaultAction::Start(i) => killed.retain(|k| k != i),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[cluster]
nodes = 5
[workload]
clients = 5
keys = 10
read_fraction = 0.5
ops_per_second = 50
[schedule]
duration = "20s"
[[schedule.fault]]
at = "5s"
partition = "1,2/3,4,5"
[[schedule.fault]]
at = "10s"
heal = true
[[sweep]]
n = 3
r = 2
w = 2
"#;

    fn check_error(text: &str, fragment: &str) {
        match Spec::parse(text) {
            Ok(_) => panic!("accepted, expected an error with {fragment:?}"),
            Err(e) => assert!(e.to_string().contains(fragment), "{e}"),
        }
    }

    #[test]
    fn good_spec() {
        let spec = Spec::parse(GOOD).expect("valid");
        assert_eq!(spec.faults.len(), 2);
        assert_eq!(spec.sweep[0].label(), "N=3 R=2 W=2");
        assert_eq!(spec.workload.timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_specs() {
        check_error(
            &GOOD.replace("keys = 10", "keys = 10\nspeed = 3"),
            "unknown field `speed`",
        );
        check_error(&GOOD.replace("1,2/3,4,5", "1,2/3,4,9"), "node 9");
        check_error(&GOOD.replace("at = \"10s\"", "at = \"30s\""), "not before the end");
        check_error(&GOOD.replace("r = 2", "r = 4"), "sweep[0].r");
        check_error(
            &GOOD.replace("nodes = 5", "nodes = 5\nmemory = \"1K\""),
            "below the lab's minimum",
        );
        check_error(&GOOD.replace("heal = true", "kill = 6"), "kill");
        check_error(
            &GOOD.replace("partition = \"1,2/3,4,5\"", "kill = 1\nstart = 1"),
            "exactly one",
        );
    }
}

#[cfg(test)]
mod example_specs {
    use super::Spec;

    #[test]
    fn shipped_examples_parse() {
        for (name, text) in [
            ("partition-2-3", include_str!("../../experiments/partition-2-3.toml")),
            (
                "isolate-and-restart",
                include_str!("../../experiments/isolate-and-restart.toml"),
            ),
        ] {
            let spec = Spec::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.name, name);
        }
    }
}
