//! `ringkv-bench`: the command line of the load generator and the latency loop.
//!
//! `ringkv-bench run --workload a --target all` loads records into ringkv, redis-server
//! and etcd in turn (peers that are not installed are skipped with a message), runs a
//! YCSB-style closed loop against each and prints a table with ringkv's ratios against each
//! peer; `--json FILE` writes the same as JSON. The logic lives in the library
//! (`ringkv_bench::run`); this file parses flags and prints.
//!
//! `ringkv-bench latency --nodes 3 --ops 10000` starts a local cluster in this process
//! (RocksDB in a temporary directory), runs a closed loop of puts then gets of 100-byte
//! values through the SDK, and prints throughput and p50/p99/p99.9/max latency from an
//! HdrHistogram. `--endpoints` measures an already running cluster instead.
//!
//! `ringkv-bench idle --nodes 1 --seconds 30` starts an in-process cluster, leaves it idle
//! and prints this process's resident memory (`VmRSS`) before and after; `run
//! --rss-every 30s` prints it to stderr during a run, to watch for growth.

/// The same allocator as the `ringkv` binary (see node/src/main.rs), so that the nodes
/// this process starts run as they would in production.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use ringkv_bench::target::start_ringkv_cluster;
use ringkv_bench::{Distribution, Limit, RunConfig, TargetKind, Workload};
use ringkv_client::{Client, Context};
use ringkv_storage::Durability;

#[derive(Debug, Parser)]
#[command(name = "ringkv-bench", about = "Latency and throughput measurements for ringkv")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// YCSB-style load against ringkv and its peers; prints a table, optionally JSON.
    Run(RunArgs),
    /// Sequential puts then gets; prints latency percentiles.
    Latency {
        /// Operations of each kind.
        #[arg(long, default_value_t = 10_000)]
        ops: u64,
        /// Distinct keys written (and read).
        #[arg(long, default_value_t = 1_000)]
        keys: u64,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        /// Nodes of the in-process cluster (ignored with --endpoints).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Measure a running cluster at these HOST:PORT endpoints instead.
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
    },
    /// Starts an idle in-process cluster and prints this process's resident memory.
    Idle {
        /// Nodes of the in-process cluster.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// How long to leave the cluster idle before measuring.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Operation mix: a (50% read, 50% update), b (95/5), c (100% read), write (100% update).
    #[arg(long, value_enum, default_value = "a")]
    workload: Workload,
    /// Key choice: uniform, or YCSB's scrambled zipfian (constant 0.99).
    #[arg(long, value_enum, default_value = "zipfian")]
    distribution: Distribution,
    /// Records loaded before measuring.
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Client tasks, each with its own connection.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the measured phase (e.g. 10s, 1m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", conflicts_with = "ops")]
    duration: Duration,
    /// Measure this many operations instead of a duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Unrecorded load before measuring.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// System(s) to measure; all = ringkv, redis, etcd one after the other.
    #[arg(long, value_enum, default_value = "ringkv")]
    target: TargetChoice,
    /// ringkv nodes (N = min(3, nodes), R = W = N/2+1) and etcd members; redis is always one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    /// Fsync every acknowledged write on every target (equal durability).
    #[arg(long)]
    fsync: bool,
    /// Run the list of targets this many times, one round after the other; each ratio
    /// is taken within a round and the table gives their median, lowest and highest.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Seed of the key and operation choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory in which the temporary data directories are created.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: std::path::PathBuf,
    /// Print this process's resident memory (VmRSS) to stderr at this interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    rss_every: Option<Duration>,
}

/// This process's resident set size in KiB, from `/proc/self/status` (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_text() -> String {
    match rss_kib() {
        Some(kib) => format!("{:.1} MiB", kib as f64 / 1024.0),
        None => "unknown".to_owned(),
    }
}

async fn idle(nodes: usize, seconds: u64) -> anyhow::Result<()> {
    println!("before starting: VmRSS {}", rss_text());
    let cluster = start_ringkv_cluster(nodes, Durability::Buffered, &std::env::temp_dir())
        .await
        .context("starting the local cluster")?;
    println!("{nodes} node(s) started: VmRSS {}", rss_text());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!("after {seconds} s idle: VmRSS {}", rss_text());
    cluster.shutdown().await;
    Ok(())
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TargetChoice {
    Ringkv,
    Redis,
    Etcd,
    All,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let targets = match args.target {
        TargetChoice::Ringkv => vec![TargetKind::Ringkv],
        TargetChoice::Redis => vec![TargetKind::Redis],
        TargetChoice::Etcd => vec![TargetKind::Etcd],
        TargetChoice::All => vec![TargetKind::Ringkv, TargetKind::Redis, TargetKind::Etcd],
    };
    let config = RunConfig {
        workload: args.workload,
        distribution: args.distribution,
        records: args.records,
        value_bytes: args.value_bytes,
        concurrency: args.concurrency,
        limit: match args.ops {
            Some(ops) => Limit::Ops(ops),
            None => Limit::Duration(args.duration),
        },
        warmup: args.warmup,
        targets,
        rounds: args.rounds,
        nodes: usize::from(args.nodes),
        fsync: args.fsync,
        seed: args.seed,
        data_root: args.data_root,
    };
    let started = Instant::now();
    let sampler = args.rss_every.map(|every| {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                eprintln!("rss t={:>5.0}s VmRSS {}", started.elapsed().as_secs_f64(), rss_text());
            }
        })
    });
    let report = ringkv_bench::run(&config).await;
    if let Some(sampler) = sampler {
        sampler.abort();
        eprintln!(
            "rss end t={:>5.0}s VmRSS {}",
            started.elapsed().as_secs_f64(),
            rss_text()
        );
    }
    let report = report?;
    print!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, report.to_json()?).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    let us = |q: f64| histogram.value_at_quantile(q) as f64;
    println!(
        "{name:<4} ops={:<7} throughput={:>8.0} ops/s  p50={:>7.0} us  p99={:>7.0} us  p99.9={:>7.0} us  max={:>7} us",
        histogram.len(),
        histogram.len() as f64 / elapsed.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        histogram.max()
    );
}

async fn latency(ops: u64, keys: u64, value_bytes: usize, nodes: usize, endpoints: Vec<String>) -> anyhow::Result<()> {
    anyhow::ensure!(ops > 0 && keys > 0, "--ops and --keys must be positive");
    let (cluster, endpoints) = if endpoints.is_empty() {
        let cluster = start_ringkv_cluster(nodes, Durability::Buffered, &std::env::temp_dir())
            .await
            .context("starting the local cluster")?;
        let endpoints = cluster.endpoints();
        (Some(cluster), endpoints)
    } else {
        (None, endpoints)
    };
    let client = Client::builder()
        .endpoints(endpoints.clone())
        .request_timeout(Duration::from_secs(5))
        .build()?;
    let value = bytes::Bytes::from(vec![b'v'; value_bytes]);
    println!(
        "{} ops each of put and get, {keys} keys, {value_bytes}-byte values, 1 client, against {}",
        ops,
        endpoints.join(",")
    );
    // Warm-up: connections and the keys' first versions.
    for k in 0..keys.min(ops) {
        client
            .put(format!("bench-{k}"), value.clone(), &Context::empty())
            .await?;
    }
    let mut contexts: Vec<Context> = Vec::with_capacity(keys as usize);
    for k in 0..keys {
        contexts.push(client.get(format!("bench-{k}")).await?.context);
    }
    let mut puts = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for i in 0..ops {
        let k = (i % keys) as usize;
        let t = Instant::now();
        contexts[k] = client.put(format!("bench-{k}"), value.clone(), &contexts[k]).await?;
        puts.record(t.elapsed().as_micros() as u64)?;
    }
    report("put", &puts, started.elapsed());
    let mut gets = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        let read = client.get(format!("bench-{}", i % keys)).await?;
        gets.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(
            read.siblings.len() == 1,
            "expected one sibling, found {}",
            read.siblings.len()
        );
    }
    report("get", &gets, started.elapsed());
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

/// Exit code after Ctrl-C, as shells report a process ended by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let work = async {
        match Cli::parse().command {
            Command::Run(args) => run(args).await,
            Command::Latency {
                ops,
                keys,
                value_bytes,
                nodes,
                endpoints,
            } => latency(ops, keys, value_bytes, nodes, endpoints).await,
            Command::Idle { nodes, seconds } => idle(nodes, seconds).await,
        }
    };
    // On Ctrl-C the work future is dropped, and with it the peers' process guards, which
    // kill the peers: nothing started here outlives the command.
    let result = tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("ringkv-bench: interrupted; peers stopped");
            return std::process::ExitCode::from(EXIT_INTERRUPTED);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringkv-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
