//! `ringkv-bench`: measures put and get latency against a ringkv cluster.
//!
//! `ringkv-bench latency --nodes 3 --ops 10000` starts a local cluster in this process
//! (RocksDB in a temporary directory), runs a closed loop of puts then gets of 100-byte
//! values through the SDK, and prints throughput and p50/p99/p99.9/max latency from an
//! HdrHistogram. `--endpoints` measures an already running cluster instead.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use ringkv_client::{Client, Context};
use ringkv_node::{NodeConfig, RunningNode, Seed};
use ringkv_ring::NodeId;

#[derive(Debug, Parser)]
#[command(name = "ringkv-bench", about = "Latency and throughput measurements for ringkv")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

struct Cluster {
    nodes: Vec<RunningNode>,
    _dir: tempfile::TempDir,
}

async fn start_cluster(count: usize) -> anyhow::Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let mut listeners = Vec::new();
    let mut seeds = Vec::new();
    for i in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        seeds.push(Seed {
            id: NodeId::try_from(format!("n{}", i + 1).as_str())?,
            address: listener.local_addr()?,
        });
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (seed, listener) in seeds.iter().zip(listeners) {
        let mut config = NodeConfig::local(seed.id.clone(), seed.address, dir.path().join(seed.id.as_str()));
        config.seeds = seeds.clone();
        config.replicas = 3.min(count as u8);
        config.read_quorum = config.replicas / 2 + 1;
        config.write_quorum = config.replicas / 2 + 1;
        let options = ringkv_node::StartOptions {
            listener: Some(listener),
            ..Default::default()
        };
        nodes.push(RunningNode::start_with(config, options).await?);
    }
    Ok(Cluster { nodes, _dir: dir })
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
        let cluster = start_cluster(nodes).await.context("starting the local cluster")?;
        let endpoints = cluster.nodes.iter().map(|n| n.address().to_string()).collect();
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
        for node in cluster.nodes {
            node.shutdown().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Latency {
            ops,
            keys,
            value_bytes,
            nodes,
            endpoints,
        } => latency(ops, keys, value_bytes, nodes, endpoints).await,
    }
}
