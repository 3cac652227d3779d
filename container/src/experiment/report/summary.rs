//! Figures and time series from a run's samples: availability, latency, stale reads,
//! siblings and recovery, overall, during partitions, per side and per second.
//!
//! Pure functions of the samples and the applied faults, so the report and the tests see
//! the same numbers. Definitions (also in `docs/lab.md`): availability = successful
//! operations / attempted ones; stale fraction = stale successful reads / successful
//! reads; latency percentiles are over successful operations.
//!
//! What one run produced, [`RunResult`] (and the [`System`] it measured), is defined here
//! too, beside the figures computed from it: the experiment driver fills it in and the
//! report reads it, so the report never needs the driver.

use crate::experiment::spec::{FaultAction, Quorum};
use crate::experiment::workload::Sample;
use crate::lab::partition::Partition;

/// Which system a run measured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum System {
    /// ringkv with this setting.
    Ringkv(Quorum),
    /// etcd with this many members.
    Etcd {
        /// Members.
        members: u8,
    },
}

impl System {
    /// `ringkv N=3 R=2 W=2` or `etcd (3 members)`.
    pub(crate) fn label(&self) -> String {
        match self {
            System::Ringkv(q) => format!("ringkv {}", q.label()),
            System::Etcd { members } => format!("etcd ({members} members)"),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The system and setting.
    pub(crate) system: System,
    /// Nodes in the run's lab.
    pub(crate) nodes: u8,
    /// Every recorded operation.
    pub(crate) samples: Vec<Sample>,
    /// Faults as applied: seconds from the start, and the action (restricted for etcd).
    pub(crate) faults: Vec<(f64, FaultAction)>,
    /// Per heal: seconds until replicas agreed (`None`: not within the timeout; ringkv only).
    pub(crate) convergence: Vec<Option<f64>>,
    /// Probe writes acknowledged per heal.
    pub(crate) probes_acked: Vec<usize>,
    /// Things the reader should know (skipped faults, errors applying one).
    pub(crate) notes: Vec<String>,
}

/// Seconds per time-series bucket.
pub(crate) const BUCKET_S: f64 = 1.0;

/// A ratio with its denominator, so "no operations" is not shown as 0 %.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Ratio {
    /// Numerator.
    pub(crate) part: u64,
    /// Denominator.
    pub(crate) whole: u64,
}

impl Ratio {
    /// part / whole, `None` when whole is 0.
    pub(crate) fn value(&self) -> Option<f64> {
        (self.whole > 0).then(|| self.part as f64 / self.whole as f64)
    }

    /// `97.3 %` or `n/a`.
    pub(crate) fn percent(&self) -> String {
        self.value()
            .map_or_else(|| "n/a".to_owned(), |v| format!("{:.1} %", v * 100.0))
    }
}

/// One side of a partition and how its clients fared.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SideFigures {
    /// The nodes on the side.
    pub(crate) nodes: Vec<u8>,
    /// Reads that succeeded.
    pub(crate) reads: Ratio,
    /// Writes that succeeded.
    pub(crate) writes: Ratio,
    /// Successful reads that were stale.
    pub(crate) stale: Ratio,
}

/// The headline figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Figures {
    /// All operations.
    pub(crate) availability: Ratio,
    /// Reads during partitions.
    pub(crate) partition_reads: Ratio,
    /// Writes during partitions.
    pub(crate) partition_writes: Ratio,
    /// Per side, during the first partition.
    pub(crate) sides: Vec<SideFigures>,
    /// Median latency of successful operations, ms.
    pub(crate) latency_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub(crate) latency_p99_ms: Option<f64>,
    /// Stale successful reads, whole run.
    pub(crate) stale: Ratio,
    /// During partitions.
    pub(crate) stale_partition: Ratio,
    /// From the first heal to the end.
    pub(crate) stale_after_heal: Ratio,
    /// Successful reads with more than one sibling.
    pub(crate) reads_with_siblings: Ratio,
    /// Most siblings one read returned.
    pub(crate) siblings_max: u16,
    /// Per heal: seconds until every node's clients had a success again.
    pub(crate) recovery_s: Vec<Option<f64>>,
}

/// Time windows (seconds) during which a partition was in place.
pub(crate) fn partition_windows(run: &RunResult, duration_s: f64) -> Vec<(f64, f64, Partition)> {
    let mut windows = Vec::new();
    let mut open: Option<(f64, Partition)> = None;
    for (at, action) in &run.faults {
        match action {
            FaultAction::Partition(p) => {
                if let Some((start, previous)) = open.take() {
                    windows.push((start, *at, previous));
                }
                open = Some((*at, p.clone()));
            }
            FaultAction::Heal => {
                if let Some((start, p)) = open.take() {
                    windows.push((start, *at, p));
                }
            }
            _ => {}
        }
    }
    if let Some((start, p)) = open {
        windows.push((start, duration_s, p));
    }
    windows
}

fn seconds(sample: &Sample) -> f64 {
    f64::from(sample.t_ms) / 1000.0
}

fn percentile(sorted: &[u32], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[index]) / 1000.0)
}

fn count(samples: &[&Sample], read: Option<bool>) -> (Ratio, Ratio) {
    let mut ok = Ratio::default();
    let mut stale = Ratio::default();
    for s in samples.iter().filter(|s| read.is_none_or(|r| s.read == r)) {
        ok.whole += 1;
        if s.ok {
            ok.part += 1;
            if s.read {
                stale.whole += 1;
                stale.part += u64::from(s.stale);
            }
        }
    }
    (ok, stale)
}

/// The headline figures of `run`, whose workload lasted `duration_s`.
pub(crate) fn figures(run: &RunResult, duration_s: f64) -> Figures {
    let all: Vec<&Sample> = run.samples.iter().collect();
    let windows = partition_windows(run, duration_s);
    let inside = |s: &&Sample| windows.iter().any(|(a, b, _)| seconds(s) >= *a && seconds(s) < *b);
    let during: Vec<&Sample> = all.iter().copied().filter(inside).collect();
    let first_heal = run
        .faults
        .iter()
        .find(|(_, a)| matches!(a, FaultAction::Heal))
        .map(|(t, _)| *t);
    let after: Vec<&Sample> = match first_heal {
        Some(heal) => all.iter().copied().filter(|s| seconds(s) >= heal).collect(),
        None => Vec::new(),
    };
    let (availability, stale) = count(&all, None);
    let (partition_reads, stale_partition) = count(&during, Some(true));
    let (partition_writes, _) = count(&during, Some(false));
    let (_, stale_after_heal) = count(&after, None);
    let sides = match windows.first() {
        Some((a, b, partition)) => {
            let side_count = partition.groups().len() + 1;
            (0..side_count)
                .filter_map(|side| {
                    let nodes: Vec<u8> = (1..=run.nodes).filter(|&i| partition.side_of(i) == side).collect();
                    if nodes.is_empty() {
                        return None;
                    }
                    let on_side: Vec<&Sample> = all
                        .iter()
                        .copied()
                        .filter(|s| seconds(s) >= *a && seconds(s) < *b && nodes.contains(&s.node))
                        .collect();
                    let (reads, stale) = count(&on_side, Some(true));
                    let (writes, _) = count(&on_side, Some(false));
                    Some(SideFigures {
                        nodes,
                        reads,
                        writes,
                        stale,
                    })
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut latencies: Vec<u32> = all.iter().filter(|s| s.ok).map(|s| s.latency_us).collect();
    latencies.sort_unstable();
    let ok_reads: Vec<&Sample> = all.iter().copied().filter(|s| s.ok && s.read).collect();
    let reads_with_siblings = Ratio {
        part: ok_reads.iter().filter(|s| s.siblings > 1).count() as u64,
        whole: ok_reads.len() as u64,
    };
    let siblings_max = ok_reads.iter().map(|s| s.siblings).max().unwrap_or(0);
    let recovery_s = run
        .faults
        .iter()
        .filter(|(_, a)| matches!(a, FaultAction::Heal))
        .map(|(heal, _)| recovery(&all, *heal, run.nodes))
        .collect();
    Figures {
        availability,
        partition_reads,
        partition_writes,
        sides,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        stale,
        stale_partition,
        stale_after_heal,
        reads_with_siblings,
        siblings_max,
        recovery_s,
    }
}

/// Seconds from `heal` until the clients of every node that saw operations after it had
/// one success; `None` if some never did.
fn recovery(samples: &[&Sample], heal: f64, nodes: u8) -> Option<f64> {
    let mut worst: f64 = 0.0;
    for node in 1..=nodes {
        let mut after = samples
            .iter()
            .filter(|s| s.node == node && seconds(s) >= heal)
            .peekable();
        if after.peek().is_none() {
            continue;
        }
        let first_ok = after.find(|s| s.ok).map(|s| seconds(s) - heal)?;
        worst = worst.max(first_ok);
    }
    Some(worst)
}

/// Per-second series of a run: (bucket middle in seconds, value), buckets without data
/// left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Series {
    /// Successful / attempted operations.
    pub(crate) success: Vec<(f64, f64)>,
    /// p99 latency of successful operations, ms.
    pub(crate) latency_p99_ms: Vec<(f64, f64)>,
    /// Stale / successful reads.
    pub(crate) stale: Vec<(f64, f64)>,
    /// Mean siblings per successful read.
    pub(crate) siblings_mean: Vec<(f64, f64)>,
}

/// The time series of `run` over `duration_s` seconds.
pub(crate) fn series(run: &RunResult, duration_s: f64) -> Series {
    let buckets = (duration_s / BUCKET_S).ceil().max(1.0) as usize;
    let mut by_bucket: Vec<Vec<&Sample>> = vec![Vec::new(); buckets];
    for sample in &run.samples {
        let index = ((seconds(sample) / BUCKET_S) as usize).min(buckets - 1);
        by_bucket[index].push(sample);
    }
    let mut out = Series::default();
    for (index, samples) in by_bucket.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        let x = (index as f64 + 0.5) * BUCKET_S;
        let ok = samples.iter().filter(|s| s.ok).count();
        out.success.push((x, ok as f64 / samples.len() as f64));
        let mut latencies: Vec<u32> = samples.iter().filter(|s| s.ok).map(|s| s.latency_us).collect();
        latencies.sort_unstable();
        if let Some(p99) = percentile(&latencies, 0.99) {
            out.latency_p99_ms.push((x, p99));
        }
        let reads: Vec<&&Sample> = samples.iter().filter(|s| s.ok && s.read).collect();
        if !reads.is_empty() {
            let stale = reads.iter().filter(|s| s.stale).count();
            out.stale.push((x, stale as f64 / reads.len() as f64));
            let siblings: u64 = reads.iter().map(|s| u64::from(s.siblings)).sum();
            out.siblings_mean.push((x, siblings as f64 / reads.len() as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: u32, node: u8, read: bool, ok: bool, stale: bool) -> Sample {
        Sample {
            t_ms,
            latency_us: 1000,
            node,
            read,
            ok,
            stale,
            siblings: u16::from(ok && read),
        }
    }

    #[test]
    fn figures_split_by_window_and_side() {
        let partition = Partition::parse("1/2", 2).expect("valid");
        let run = RunResult {
            system: System::Ringkv(Quorum { n: 2, r: 1, w: 1 }),
            nodes: 2,
            samples: vec![
                sample(500, 1, true, true, false),
                sample(1500, 1, false, false, false),
                sample(1600, 2, true, true, true),
                sample(2500, 1, true, true, false),
            ],
            faults: vec![(1.0, FaultAction::Partition(partition)), (2.0, FaultAction::Heal)],
            convergence: vec![Some(0.4)],
            probes_acked: vec![2],
            notes: vec![],
        };
        let f = figures(&run, 3.0);
        assert_eq!(f.availability, Ratio { part: 3, whole: 4 });
        assert_eq!(f.partition_writes, Ratio { part: 0, whole: 1 });
        assert_eq!(f.stale_partition, Ratio { part: 1, whole: 1 });
        assert_eq!(f.sides.len(), 2);
        assert_eq!(f.sides[0].nodes, vec![1]);
        assert_eq!(f.sides[1].stale, Ratio { part: 1, whole: 1 });
        assert_eq!(f.recovery_s, vec![Some(0.5)]);
        let s = series(&run, 3.0);
        assert_eq!(s.success.len(), 3);
        assert_eq!(s.success[1], (1.5, 0.5));
        assert_eq!(Ratio::default().percent(), "n/a");
    }
}
