//! The `run` subcommand: a YCSB-style closed-loop load against one or more targets.
//!
//! [`run`] loads `records` records, then runs `concurrency` client tasks, each with its own
//! connection, that pick a key (uniform or zipfian), read or update it by the workload's
//! mix, and record each operation's latency in an HdrHistogram. A warm-up is run first and
//! not recorded. Every loop is bounded by the duration or the op budget. The result is a
//! [`Report`]: a table for people and JSON for tools. Start at [`run`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::target::{Session, Started, Target, TargetKind, TargetOptions};
use crate::zipfian::ScrambledZipfian;

/// Most concurrent client tasks.
pub const CONCURRENCY_MAX: usize = 4096;
/// Most records loaded.
pub const RECORDS_MAX: u64 = 100_000_000;
/// Largest value.
pub const VALUE_BYTES_MAX: usize = 1 << 20;
/// Highest latency the histograms hold; slower operations are clamped to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Most rounds of one run.
pub const ROUNDS_MAX: usize = 20;
/// Errors kept as examples in a result (all are counted).
const ERROR_EXAMPLES_MAX: usize = 5;

/// YCSB's core workloads, plus a write-only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// 50% read, 50% update.
    A,
    /// 95% read, 5% update.
    B,
    /// 100% read.
    C,
    /// 100% update.
    Write,
}

impl Workload {
    /// The share of operations that are reads.
    pub fn read_proportion(self) -> f64 {
        match self {
            Workload::A => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
            Workload::Write => 0.0,
        }
    }
}

/// How keys are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every record equally likely.
    Uniform,
    /// YCSB's scrambled Zipfian with constant 0.99.
    Zipfian,
}

/// When the measured phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// After this long.
    Duration(Duration),
    /// After this many operations over all tasks.
    Ops(u64),
}

/// One run's settings, the same for every target.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Operation mix.
    pub workload: Workload,
    /// Key choice.
    pub distribution: Distribution,
    /// Records loaded before measuring.
    pub records: u64,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Client tasks, each with its own connection.
    pub concurrency: usize,
    /// End of the measured phase.
    pub limit: Limit,
    /// Unrecorded load before measuring.
    pub warmup: Duration,
    /// Targets, run one after the other.
    pub targets: Vec<TargetKind>,
    /// Times the whole list of targets is run, one round after the other (ringkv, redis,
    /// etcd, ringkv, redis, etcd, ...), so that a drift of the machine's speed hits every
    /// target alike; ratios are paired by round.
    pub rounds: usize,
    /// ringkv nodes and etcd members.
    pub nodes: usize,
    /// Fsync each acknowledged write, on every target.
    pub fsync: bool,
    /// Seed of the key and operation choice.
    pub seed: u64,
    /// Where temporary data directories are created.
    pub data_root: PathBuf,
}

impl RunConfig {
    /// Checks the settings against each other and the limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.records >= 1, "--records must be at least 1");
        anyhow::ensure!(self.records <= RECORDS_MAX, "--records is over {RECORDS_MAX}");
        anyhow::ensure!(self.value_bytes >= 1, "--value-bytes must be at least 1");
        anyhow::ensure!(
            self.value_bytes <= VALUE_BYTES_MAX,
            "--value-bytes is over {VALUE_BYTES_MAX}"
        );
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.concurrency <= CONCURRENCY_MAX,
            "--concurrency is over {CONCURRENCY_MAX}"
        );
        anyhow::ensure!((1..=3).contains(&self.nodes), "--nodes must be 1, 2 or 3");
        anyhow::ensure!(!self.targets.is_empty(), "no target given");
        anyhow::ensure!(
            (1..=ROUNDS_MAX).contains(&self.rounds),
            "--rounds must be between 1 and {ROUNDS_MAX}"
        );
        match self.limit {
            Limit::Duration(d) => anyhow::ensure!(!d.is_zero(), "--duration must be positive"),
            Limit::Ops(n) => anyhow::ensure!(n >= 1, "--ops must be at least 1"),
        }
        Ok(())
    }
}

/// Latency figures of one operation type, in microseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OpStats {
    /// Successful operations (each recorded in the histogram).
    pub ops: u64,
    /// Failed operations (not in the histogram).
    pub errors: u64,
    /// Successful operations per second of the measured phase.
    pub throughput_ops_s: f64,
    /// Histogram count; equals `ops`.
    pub histogram_count: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest operation.
    pub max_us: u64,
}

/// One target's result.
#[derive(Clone, Debug, Serialize)]
pub struct TargetResult {
    /// `ringkv`, `redis` or `etcd`.
    pub target: TargetKind,
    /// Which round measured it, from 1.
    pub round: usize,
    /// What was started: nodes, replication, durability.
    pub description: String,
    /// Length of the measured phase, seconds.
    pub elapsed_s: f64,
    /// All operations.
    pub all: OpStats,
    /// Reads.
    pub read: OpStats,
    /// Updates.
    pub update: OpStats,
    /// Most siblings one ringkv read returned (0 for peers).
    pub siblings_max: usize,
    /// A few of the errors, if any.
    pub error_examples: Vec<String>,
}

/// A target that was not measured.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// Which target.
    pub target: TargetKind,
    /// Why, and what to install.
    pub reason: String,
}

/// ringkv against one peer: each ratio is taken within one round (ringkv and the peer
/// measured minutes apart at most), then summarised over the rounds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Comparison {
    /// The peer.
    pub peer: TargetKind,
    /// Rounds in which both ringkv and the peer were measured.
    pub rounds: usize,
    /// Median over the rounds of ringkv's throughput over the peer's (above 1: ringkv is
    /// faster).
    pub throughput_ratio: f64,
    /// Lowest throughput ratio of a round.
    pub throughput_ratio_min: f64,
    /// Highest throughput ratio of a round.
    pub throughput_ratio_max: f64,
    /// Median over the rounds of ringkv's p99 over the peer's, all operations (below 1:
    /// ringkv is faster).
    pub p99_ratio: f64,
}

/// The settings, as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigSummary {
    /// Operation mix.
    pub workload: Workload,
    /// Read share of the mix.
    pub read_proportion: f64,
    /// Key choice.
    pub distribution: Distribution,
    /// Records loaded.
    pub records: u64,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Client tasks.
    pub concurrency: usize,
    /// Measured phase length, if bounded by time.
    pub duration_s: Option<f64>,
    /// Operation budget, if bounded by count.
    pub ops: Option<u64>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// ringkv nodes and etcd members.
    pub nodes: usize,
    /// Fsync per acknowledged write.
    pub fsync: bool,
    /// Rounds over the targets.
    pub rounds: usize,
    /// Seed.
    pub seed: u64,
}

/// Everything one `run` measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings.
    pub config: ConfigSummary,
    /// One per measured target and round, in the order run.
    pub results: Vec<TargetResult>,
    /// Targets not installed.
    pub skipped: Vec<Skipped>,
    /// ringkv against each measured peer (when ringkv was measured).
    pub comparisons: Vec<Comparison>,
}

/// Runs `config`'s workload against each of its targets in turn.
pub async fn run(config: &RunConfig) -> anyhow::Result<Report> {
    config.validate()?;
    let options = TargetOptions {
        nodes: config.nodes,
        fsync: config.fsync,
        records: config.records,
        data_root: config.data_root.clone(),
    };
    let mut results = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    for round in 1..=config.rounds {
        for &kind in &config.targets {
            if skipped.iter().any(|s| s.target == kind) {
                continue; // not installed: said once, in the first round
            }
            let target = match Target::start(kind, &options)
                .await
                .with_context(|| format!("starting {}", kind.name()))?
            {
                Started::Ready(target) => target,
                Started::Skipped(reason) => {
                    eprintln!("skipping {}: {reason}", kind.name());
                    skipped.push(Skipped { target: kind, reason });
                    continue;
                }
            };
            if config.rounds > 1 {
                eprintln!("round {round} of {}: {}", config.rounds, kind.name());
            }
            let outcome = measure(kind, &target, config).await;
            target.shutdown().await;
            let mut result = outcome.with_context(|| format!("measuring {} in round {round}", kind.name()))?;
            result.round = round;
            results.push(result);
        }
    }
    let comparisons = compare(&results);
    Ok(Report {
        config: summary(config),
        results,
        skipped,
        comparisons,
    })
}

fn summary(config: &RunConfig) -> ConfigSummary {
    ConfigSummary {
        workload: config.workload,
        read_proportion: config.workload.read_proportion(),
        distribution: config.distribution,
        records: config.records,
        value_bytes: config.value_bytes,
        concurrency: config.concurrency,
        duration_s: match config.limit {
            Limit::Duration(d) => Some(d.as_secs_f64()),
            Limit::Ops(_) => None,
        },
        ops: match config.limit {
            Limit::Duration(_) => None,
            Limit::Ops(n) => Some(n),
        },
        warmup_s: config.warmup.as_secs_f64(),
        nodes: config.nodes,
        fsync: config.fsync,
        rounds: config.rounds,
        seed: config.seed,
    }
}

/// ringkv against each peer, ratios paired by round (a round without both is left out).
fn compare(results: &[TargetResult]) -> Vec<Comparison> {
    let mut peers: Vec<TargetKind> = Vec::new();
    for result in results {
        if result.target != TargetKind::Ringkv && !peers.contains(&result.target) {
            peers.push(result.target);
        }
    }
    let mut comparisons = Vec::new();
    for peer in peers {
        let mut throughput = Vec::new();
        let mut p99 = Vec::new();
        for theirs in results.iter().filter(|r| r.target == peer) {
            let ours = results
                .iter()
                .find(|r| r.target == TargetKind::Ringkv && r.round == theirs.round);
            if let Some(ours) = ours {
                throughput.push(ratio(ours.all.throughput_ops_s, theirs.all.throughput_ops_s));
                p99.push(ratio(ours.all.p99_us as f64, theirs.all.p99_us as f64));
            }
        }
        if throughput.is_empty() {
            continue;
        }
        debug_assert_eq!(throughput.len(), p99.len());
        comparisons.push(Comparison {
            peer,
            rounds: throughput.len(),
            throughput_ratio: median(&mut throughput),
            throughput_ratio_min: throughput.first().copied().unwrap_or(f64::NAN),
            throughput_ratio_max: throughput.last().copied().unwrap_or(f64::NAN),
            p99_ratio: median(&mut p99),
        });
    }
    comparisons
}

/// The median of `values`, which it sorts (NaN last); the mean of the middle two for an
/// even count.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan())));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn ratio(ours: f64, theirs: f64) -> f64 {
    if theirs > 0.0 {
        ours / theirs
    } else {
        f64::NAN
    }
}

/// Writes every record once, spread over `concurrency` tasks.
async fn load(target: &Target, config: &RunConfig, value: &Bytes) -> anyhow::Result<()> {
    let tasks = config.concurrency.min(usize::try_from(config.records)?);
    let mut sessions = Vec::with_capacity(tasks);
    for task_index in 0..tasks {
        sessions.push(target.session(task_index).await?);
    }
    let mut handles = Vec::with_capacity(tasks);
    for (task_index, mut session) in sessions.into_iter().enumerate() {
        let value = value.clone();
        let (records, stride) = (config.records, tasks as u64);
        handles.push(tokio::spawn(async move {
            let mut index = task_index as u64;
            while index < records {
                session
                    .update(index, &value)
                    .await
                    .with_context(|| format!("loading record {index}"))?;
                index += stride;
            }
            anyhow::Ok(session)
        }));
    }
    for handle in handles {
        target.absorb(handle.await??);
    }
    Ok(())
}

/// One task's share of the measured phase.
struct TaskOutcome {
    read: Histogram<u64>,
    update: Histogram<u64>,
    read_errors: u64,
    update_errors: u64,
    error_examples: Vec<String>,
    finished: Instant,
    siblings_max: usize,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?)
}

async fn measure(kind: TargetKind, target: &Target, config: &RunConfig) -> anyhow::Result<TargetResult> {
    let value = Bytes::from(vec![b'x'; config.value_bytes]);
    let load_started = Instant::now();
    load(target, config, &value).await.context("loading records")?;
    eprintln!(
        "{}: loaded {} records in {:.1} s; warming up {:?}, then measuring",
        kind.name(),
        config.records,
        load_started.elapsed().as_secs_f64(),
        config.warmup
    );

    let mut sessions = Vec::with_capacity(config.concurrency);
    for task_index in 0..config.concurrency {
        sessions.push(target.session(task_index).await?);
    }
    let measure_start = Instant::now() + config.warmup;
    let deadline = match config.limit {
        Limit::Duration(d) => Some(measure_start + d),
        Limit::Ops(_) => None,
    };
    let ops_budget = match config.limit {
        Limit::Duration(_) => None,
        Limit::Ops(n) => Some(n),
    };
    let ops_started = Arc::new(AtomicU64::new(0));
    let keys = match config.distribution {
        Distribution::Uniform => None,
        Distribution::Zipfian => Some(ScrambledZipfian::new(config.records)),
    };
    let mut handles = Vec::with_capacity(config.concurrency);
    for (task_index, session) in sessions.into_iter().enumerate() {
        let task = Task {
            session,
            rng: StdRng::seed_from_u64(config.seed.wrapping_add(task_index as u64)),
            keys: keys.clone(),
            records: config.records,
            read_proportion: config.workload.read_proportion(),
            value: value.clone(),
        };
        let ops_started = Arc::clone(&ops_started);
        handles.push(tokio::spawn(task.run(measure_start, deadline, ops_budget, ops_started)));
    }
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await??);
    }
    summarise(kind, target, measure_start, outcomes)
}

fn summarise(
    kind: TargetKind,
    target: &Target,
    measure_start: Instant,
    outcomes: Vec<TaskOutcome>,
) -> anyhow::Result<TargetResult> {
    let mut read = histogram()?;
    let mut update = histogram()?;
    let (mut read_errors, mut update_errors, mut siblings_max) = (0, 0, 0);
    let mut error_examples = Vec::new();
    let mut finished = measure_start;
    for outcome in outcomes {
        read.add(&outcome.read)?;
        update.add(&outcome.update)?;
        read_errors += outcome.read_errors;
        update_errors += outcome.update_errors;
        siblings_max = siblings_max.max(outcome.siblings_max);
        finished = finished.max(outcome.finished);
        for example in outcome.error_examples {
            if error_examples.len() < ERROR_EXAMPLES_MAX {
                error_examples.push(example);
            }
        }
    }
    let elapsed = finished.duration_since(measure_start).max(Duration::from_micros(1));
    let mut all = histogram()?;
    all.add(&read)?;
    all.add(&update)?;
    Ok(TargetResult {
        target: kind,
        round: 1,
        description: target.description(),
        elapsed_s: elapsed.as_secs_f64(),
        all: stats(&all, read_errors + update_errors, elapsed),
        read: stats(&read, read_errors, elapsed),
        update: stats(&update, update_errors, elapsed),
        siblings_max,
        error_examples,
    })
}

fn stats(histogram: &Histogram<u64>, errors: u64, elapsed: Duration) -> OpStats {
    let ops = histogram.len();
    OpStats {
        ops,
        errors,
        throughput_ops_s: ops as f64 / elapsed.as_secs_f64(),
        histogram_count: histogram.len(),
        mean_us: if ops == 0 { 0.0 } else { histogram.mean() },
        p50_us: histogram.value_at_quantile(0.50),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    }
}

/// One client task of the measured phase.
struct Task {
    session: Session,
    rng: StdRng,
    keys: Option<ScrambledZipfian>,
    records: u64,
    read_proportion: f64,
    value: Bytes,
}

impl Task {
    /// Runs the warm-up until `measure_start`, then the measured loop until `deadline` or
    /// until `ops_budget` operations were started over all tasks.
    async fn run(
        mut self,
        measure_start: Instant,
        deadline: Option<Instant>,
        ops_budget: Option<u64>,
        ops_started: Arc<AtomicU64>,
    ) -> anyhow::Result<TaskOutcome> {
        while Instant::now() < measure_start {
            // Warm-up errors are not counted; the measured phase will show them.
            let _ = self.one_op().await;
        }
        let mut outcome = TaskOutcome {
            read: histogram()?,
            update: histogram()?,
            read_errors: 0,
            update_errors: 0,
            error_examples: Vec::new(),
            finished: measure_start,
            siblings_max: 0,
        };
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if let Some(budget) = ops_budget {
                if ops_started.fetch_add(1, Ordering::Relaxed) >= budget {
                    break;
                }
            }
            let started = Instant::now();
            let (is_read, result) = self.one_op().await;
            let latency_us = (started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
            match (is_read, result) {
                (true, Ok(())) => outcome.read.record(latency_us)?,
                (false, Ok(())) => outcome.update.record(latency_us)?,
                (is_read, Err(error)) => {
                    if is_read {
                        outcome.read_errors += 1;
                    } else {
                        outcome.update_errors += 1;
                    }
                    if outcome.error_examples.len() < ERROR_EXAMPLES_MAX {
                        outcome.error_examples.push(format!("{error:#}"));
                    }
                }
            }
        }
        outcome.finished = Instant::now();
        outcome.siblings_max = self.session.siblings_max();
        Ok(outcome)
    }

    /// Picks a key and an operation and runs it; says whether it was a read.
    async fn one_op(&mut self) -> (bool, anyhow::Result<()>) {
        let index = match &self.keys {
            Some(zipfian) => zipfian.sample(&mut self.rng),
            None => self.rng.random_range(0..self.records),
        };
        let is_read = self.read_proportion >= 1.0 || self.rng.random::<f64>() < self.read_proportion;
        let result = if is_read {
            self.session.read(index).await
        } else {
            self.session.update(index, &self.value).await
        };
        (is_read, result)
    }
}

impl Report {
    /// The results as an aligned text table, with ratios against ringkv.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let c = &self.config;
        let mut out = String::new();
        let limit = match (c.duration_s, c.ops) {
            (Some(d), _) => format!("{d} s"),
            (None, Some(n)) => format!("{n} ops"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "workload {:?} ({:.0}% read), {:?} keys, {} records x {} B, concurrency {}, {limit} after {} s warm-up, nodes {}, fsync {}, rounds {}",
            c.workload,
            c.read_proportion * 100.0,
            c.distribution,
            c.records,
            c.value_bytes,
            c.concurrency,
            c.warmup_s,
            c.nodes,
            if c.fsync { "on" } else { "off" },
            c.rounds,
        );
        let _ = writeln!(
            out,
            "{:<5} {:<7} {:<6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "round", "target", "op", "ops", "ops/s", "p50 us", "p99 us", "p99.9 us", "max us", "errors"
        );
        for result in &self.results {
            for (op, s) in [("all", &result.all), ("read", &result.read), ("update", &result.update)] {
                if op != "all" && s.ops == 0 && s.errors == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{:<5} {:<7} {:<6} {:>9} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>7}",
                    result.round,
                    result.target.name(),
                    op,
                    s.ops,
                    s.throughput_ops_s,
                    s.p50_us,
                    s.p99_us,
                    s.p999_us,
                    s.max_us,
                    s.errors
                );
            }
        }
        for result in &self.results {
            if result.round == 1 {
                let _ = writeln!(out, "  {}: {}", result.target.name(), result.description);
            }
            if result.siblings_max > 1 {
                let _ = writeln!(
                    out,
                    "    round {}, {}: most siblings seen on one read: {}",
                    result.round,
                    result.target.name(),
                    result.siblings_max
                );
            }
            for example in &result.error_examples {
                let _ = writeln!(
                    out,
                    "    round {}, {}: error: {example}",
                    result.round,
                    result.target.name()
                );
            }
        }
        for comparison in &self.comparisons {
            let spread = if comparison.rounds > 1 {
                format!(
                    " (median of {} rounds, x{:.2} to x{:.2})",
                    comparison.rounds, comparison.throughput_ratio_min, comparison.throughput_ratio_max
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "ringkv/{}: throughput x{:.2}{spread}, p99 x{:.2}",
                comparison.peer.name(),
                comparison.throughput_ratio,
                comparison.p99_ratio
            );
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "skipped {}: {}", skipped.target.name(), skipped.reason);
        }
        out
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: TargetKind, round: usize, throughput: f64, p99_us: u64) -> TargetResult {
        let stats = OpStats {
            ops: 1,
            errors: 0,
            throughput_ops_s: throughput,
            histogram_count: 1,
            mean_us: 1.0,
            p50_us: 1,
            p99_us,
            p999_us: p99_us,
            max_us: p99_us,
        };
        TargetResult {
            target,
            round,
            description: String::new(),
            elapsed_s: 1.0,
            all: stats.clone(),
            read: stats.clone(),
            update: stats,
            siblings_max: 0,
            error_examples: Vec::new(),
        }
    }

    #[test]
    fn ratios_pair_ringkv_and_a_peer_within_each_round_then_take_the_median() {
        use TargetKind::{Etcd, Redis, Ringkv};
        // Round 2 runs everything twice as fast: a pooled mean would mix rounds, pairing
        // does not. Round 3 has no redis (as if it had failed to start).
        let results = [
            result(Ringkv, 1, 300.0, 10),
            result(Redis, 1, 600.0, 5),
            result(Etcd, 1, 100.0, 40),
            result(Ringkv, 2, 600.0, 10),
            result(Redis, 2, 1000.0, 5),
            result(Etcd, 2, 150.0, 20),
            result(Ringkv, 3, 300.0, 10),
            result(Etcd, 3, 120.0, 100),
        ];
        let comparisons = compare(&results);
        assert_eq!(comparisons.len(), 2);
        let redis = &comparisons[0];
        assert_eq!((redis.peer, redis.rounds), (Redis, 2));
        assert!((redis.throughput_ratio - 0.55).abs() < 1e-9, "{redis:?}");
        assert!((redis.throughput_ratio_min - 0.5).abs() < 1e-9);
        assert!((redis.throughput_ratio_max - 0.6).abs() < 1e-9);
        assert!((redis.p99_ratio - 2.0).abs() < 1e-9);
        let etcd = &comparisons[1];
        assert_eq!((etcd.peer, etcd.rounds), (Etcd, 3));
        // Ratios 3, 4 and 2.5: the median is 3, not the mean of 3.17.
        assert!((etcd.throughput_ratio - 3.0).abs() < 1e-9, "{etcd:?}");
        assert!((etcd.throughput_ratio_min - 2.5).abs() < 1e-9);
        assert!((etcd.throughput_ratio_max - 4.0).abs() < 1e-9);
        // p99 ratios 0.25, 0.5 and 0.1.
        assert!((etcd.p99_ratio - 0.25).abs() < 1e-9);
    }

    #[test]
    fn no_ringkv_result_means_no_comparison() {
        let results = [result(TargetKind::Redis, 1, 600.0, 5)];
        assert!(compare(&results).is_empty());
    }
}
