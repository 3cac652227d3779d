//! `ringkv node`: one node from a config file, environment variables and flags.
//!
//! Precedence: flag or environment variable (clap reads both) over the TOML file over the
//! built-in default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ringkv_node::config::{ConfigFile, CLIENT_PORT_DEFAULT, GOSSIP_PORT_OFFSET};
use ringkv_node::{EngineKind, NodeConfig, RunningNode, Seed};
use ringkv_ring::NodeId;
use ringkv_storage::{Durability, Limits};

use super::{CommandResult, Failure};

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML config file; flags and RINGKV_* variables override its values.
    #[arg(long, env = "RINGKV_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (letters, digits, '.', '_', '-'), unique in the cluster [default: n1].
    #[arg(long, env = "RINGKV_NODE_ID")]
    id: Option<String>,
    /// gRPC address to listen on [default: 127.0.0.1:7101].
    #[arg(long, env = "RINGKV_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address other nodes use to reach this one [default: the listen address].
    #[arg(long, env = "RINGKV_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// Admin HTTP address for /metrics and /health [default: none].
    #[arg(long, env = "RINGKV_ADMIN")]
    admin: Option<SocketAddr>,
    /// Data directory for RocksDB [default: ./ringkv-data/<id>].
    #[arg(long, env = "RINGKV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Storage engine [default: rocksdb].
    #[arg(long, env = "RINGKV_ENGINE", value_enum)]
    engine: Option<EngineKind>,
    /// Either running members to join through, as HOST:PORT (gossip membership), or a
    /// static member list as ID@HOST:PORT (this node may be listed); comma-separated.
    #[arg(long, env = "RINGKV_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// UDP address to gossip on; turns on gossip membership [default with HOST:PORT
    /// seeds: the listen address with the port + 200].
    #[arg(long, env = "RINGKV_GOSSIP")]
    gossip: Option<SocketAddr>,
    /// Cluster name; nodes of different clusters refuse each other [default: ringkv].
    #[arg(long, env = "RINGKV_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Replicas per key, N [default: 3].
    #[arg(long, env = "RINGKV_REPLICAS")]
    replicas: Option<u8>,
    /// Default read quorum R [default: 2].
    #[arg(long, env = "RINGKV_READ_QUORUM")]
    read_quorum: Option<u8>,
    /// Default write quorum W [default: 2].
    #[arg(long, env = "RINGKV_WRITE_QUORUM")]
    write_quorum: Option<u8>,
    /// Virtual nodes (ring weight) of this node [default: 256].
    #[arg(long, env = "RINGKV_VNODES")]
    vnodes: Option<u16>,
    /// Zone of this node, for zone-aware placement.
    #[arg(long, env = "RINGKV_ZONE")]
    zone: Option<String>,
    /// fsync every acknowledged write (survives power loss, slower).
    #[arg(long, env = "RINGKV_FSYNC")]
    fsync: Option<bool>,
    /// How long a deleted key keeps its tombstone before GC may purge it [default: 1h].
    #[arg(long, env = "RINGKV_TOMBSTONE_GRACE", value_parser = humantime::parse_duration)]
    tombstone_grace: Option<Duration>,
    /// Default request timeout, e.g. 2s or 500ms [default: 2s].
    #[arg(long, env = "RINGKV_REQUEST_TIMEOUT", value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// Start as a new incarnation (a new actor for this node's writes). Use it once after
    /// restoring the data directory from an earlier copy: the copy's write counters are
    /// behind the ones the node issued since, and must not be issued again.
    #[arg(long)]
    new_incarnation: bool,
}

/// Builds the node configuration from file, environment and flags.
fn config(args: NodeArgs) -> Result<NodeConfig, Failure> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path).map_err(Failure::invalid)?,
        None => ConfigFile::default(),
    };
    let id_text = args.id.or(file.node_id).unwrap_or_else(|| "n1".to_owned());
    let node_id = NodeId::try_from(id_text.as_str()).map_err(Failure::invalid)?;
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], CLIENT_PORT_DEFAULT)));
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("ringkv-data").join(node_id.as_str()));
    let mut config = NodeConfig::local(node_id, listen, data_dir);
    config.advertise = args.advertise.or(file.advertise).unwrap_or(listen);
    config.admin_listen = args.admin.or(file.admin_listen);
    config.engine = args.engine.or(file.engine).unwrap_or_default();
    let seeds = if args.seeds.is_empty() {
        file.seeds.unwrap_or_default()
    } else {
        args.seeds
    };
    let (statics, joins): (Vec<String>, Vec<String>) = seeds.into_iter().partition(|s| s.contains('@'));
    if !statics.is_empty() && !joins.is_empty() {
        return Err(Failure::invalid(anyhow::anyhow!(
            "--seeds mixes ID@HOST:PORT (static members) with HOST:PORT (members to join): use one form"
        )));
    }
    config.seeds = statics
        .iter()
        .map(|s| s.parse::<Seed>())
        .collect::<Result<_, _>>()
        .map_err(Failure::invalid)?;
    config.join = joins;
    config.gossip_listen = args.gossip.or(file.gossip_listen);
    if config.gossip_listen.is_none() && !config.join.is_empty() {
        let port = listen.port().checked_add(GOSSIP_PORT_OFFSET).ok_or_else(|| {
            Failure::invalid(anyhow::anyhow!(
                "listen port {} + {GOSSIP_PORT_OFFSET} is above 65535: set --gossip",
                listen.port()
            ))
        })?;
        config.gossip_listen = Some(SocketAddr::new(listen.ip(), port));
    }
    if let Some(name) = args.cluster_name.or(file.cluster_name) {
        config.cluster_name = name;
    }
    config.replicas = args.replicas.or(file.replicas).unwrap_or(config.replicas);
    config.read_quorum = args.read_quorum.or(file.read_quorum).unwrap_or(config.read_quorum);
    config.write_quorum = args.write_quorum.or(file.write_quorum).unwrap_or(config.write_quorum);
    config.vnodes = args.vnodes.or(file.vnodes).unwrap_or(config.vnodes);
    config.zone = args.zone.or(file.zone);
    config.new_incarnation = args.new_incarnation;
    if args.fsync.or(file.fsync).unwrap_or(false) {
        config.durability = Durability::Sync;
    }
    config.request_timeout = args
        .request_timeout
        .or(file.request_timeout)
        .unwrap_or(config.request_timeout);
    config.hinted_handoff = file.hinted_handoff.unwrap_or(config.hinted_handoff);
    config.anti_entropy_interval = file.anti_entropy_interval.unwrap_or(config.anti_entropy_interval);
    config.gc_interval = file.gc_interval.unwrap_or(config.gc_interval);
    config.tombstone_grace = args
        .tombstone_grace
        .or(file.tombstone_grace)
        .unwrap_or(config.tombstone_grace);
    config.clock_skew_max = file.clock_skew_max.unwrap_or(config.clock_skew_max);
    config.limits = Limits::new(
        file.key_bytes_max.unwrap_or(config.limits.key_bytes_max()),
        file.value_bytes_max.unwrap_or(config.limits.value_bytes_max()),
    )
    .map_err(Failure::invalid)?;
    config.validate().map_err(Failure::invalid)?;
    Ok(config)
}

pub async fn run(args: NodeArgs) -> CommandResult {
    let config = config(args)?;
    let node = RunningNode::start(config).await?;
    eprintln!("ringkv node {} listening on {}", node.node_id(), node.address());
    if let Some(admin) = node.admin_address() {
        eprintln!("admin: http://{admin}/metrics and http://{admin}/health");
    }
    let mut left = node.left();
    tokio::select! {
        _ = wait_for_signal() => eprintln!("stopping"),
        _ = left.wait_for(|done| *done) => eprintln!("left the cluster: all data handed over; stopping"),
    }
    node.shutdown().await;
    Ok(super::exit::OK)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
