//! `ringkv dev`: a local cluster in one process, for trying ringkv out.
//!
//! Node i (1-based) is `n<i>` on `127.0.0.1:<base-port + i - 1>` with its admin port at
//! `<admin-base-port + i - 1>` and RocksDB under `<data-dir>/n<i>`. After starting it runs
//! a put and a get through the SDK and prints the result, so a new user sees it work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ringkv_client::Client;
use ringkv_node::config::{ADMIN_PORT_DEFAULT, CLIENT_PORT_DEFAULT};
use ringkv_node::local_cluster::LocalClusterError;
use ringkv_node::{EngineKind, LocalCluster};

use super::{CommandResult, Failure};

/// Most nodes `ringkv dev` starts.
const DEV_NODES_MAX: u16 = 32;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Number of nodes (1..=32).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Port of the first node's gRPC API; the others count up.
    #[arg(long, default_value_t = CLIENT_PORT_DEFAULT)]
    base_port: u16,
    /// Port of the first node's admin HTTP server; the others count up.
    #[arg(long, default_value_t = ADMIN_PORT_DEFAULT)]
    admin_base_port: u16,
    /// Directory holding one RocksDB per node.
    #[arg(long, default_value = "ringkv-data")]
    data_dir: PathBuf,
    /// Storage engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Rocksdb)]
    engine: EngineKind,
    /// Replicas per key (at most the number of nodes) [default: min(3, nodes)].
    #[arg(long)]
    replicas: Option<u8>,
    /// Start, run the put/get check, stop and exit (for scripts and CI).
    #[arg(long)]
    check_only: bool,
}

pub async fn run(args: DevArgs) -> CommandResult {
    if args.nodes == 0 || args.nodes > DEV_NODES_MAX {
        return Err(Failure::invalid(anyhow::anyhow!(
            "--nodes {} is outside 1..={DEV_NODES_MAX}",
            args.nodes
        )));
    }
    let mut builder = LocalCluster::builder()
        .nodes(usize::from(args.nodes))
        .base_ports(args.base_port, Some(args.admin_base_port))
        .data_dir(&args.data_dir)
        .engine(args.engine);
    if let Some(replicas) = args.replicas {
        builder = builder.replicas(replicas);
    }
    let cluster = builder.start().await.map_err(|e| match e {
        LocalClusterError::Start { source, .. } => Failure::from(source),
        LocalClusterError::Bind { .. } | LocalClusterError::DataDir { .. } => Failure::other(e),
        _ => Failure::invalid(e),
    })?;
    let config = &cluster.configs()[0];
    let (n, r, w) = (config.replicas, config.read_quorum, config.write_quorum);
    println!(
        "ringkv dev cluster: {} nodes, N={n} R={r} W={w}, {:?} engine, data under {}",
        cluster.len(),
        args.engine,
        args.data_dir.display()
    );
    for node in cluster.running() {
        let admin = node
            .admin_address()
            .map(|a| format!("http://{a}/metrics"))
            .unwrap_or_default();
        println!("  {:<4} {}   {}", node.node_id().as_str(), node.address(), admin);
    }
    let check = self_check(&cluster.endpoints()).await;
    match &check {
        Ok(report) => println!("{report}"),
        Err(e) => eprintln!("self-check failed: {e:#}"),
    }
    if args.check_only {
        cluster.shutdown().await;
        return check.map(|_| super::exit::OK).map_err(Failure::other);
    }
    println!(
        "\nTry it (another terminal):\n  scripts/ringkv put greeting hello\n  scripts/ringkv get greeting\n  scripts/ringkv status\nCtrl-C stops the cluster."
    );
    super::node_command::wait_for_signal().await;
    println!("stopping {} nodes", cluster.len());
    cluster.shutdown().await;
    Ok(super::exit::OK)
}

/// Writes and reads one key through the SDK and reports how it went.
async fn self_check(endpoints: &[String]) -> anyhow::Result<String> {
    let client = Client::builder()
        .endpoints(endpoints.iter().cloned())
        .request_timeout(Duration::from_secs(5))
        .build()?;
    let key = "ringkv:dev:self-check";
    let started = Instant::now();
    let before = client.get(key).await?;
    let value = format!("hello from ringkv at {:?}", std::time::SystemTime::now());
    client.put(key, value.clone(), &before.context).await?;
    let read = client.get(key).await?;
    let got = read.value().map(|v| String::from_utf8_lossy(v).into_owned());
    anyhow::ensure!(
        got.as_deref() == Some(value.as_str()),
        "read back {got:?}, expected {value:?}"
    );
    Ok(format!(
        "self-check: put + get of {key:?} through {} ok in {:.1} ms ({} replicas answered the read)",
        endpoints[0],
        started.elapsed().as_secs_f64() * 1000.0,
        read.replicas_replied
    ))
}
