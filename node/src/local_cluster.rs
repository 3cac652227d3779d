//! Several nodes in one process on loopback: the one way to start a local cluster.
//!
//! `ringkv dev`, the node's integration tests and the benchmark's in-process target all
//! start their clusters here, so a change to how a node starts (a new option, a new
//! default) reaches all three at once. Node `i` (0-based) is `n<i+1>`, stores under
//! `<data dir>/n<i+1>`, and listens on `127.0.0.1`: on ports counted up from a base when
//! one is given (`ringkv dev`), otherwise on ports the OS picks (tests, benchmarks),
//! bound before any node starts so that every node's member list is known up front.
//!
//! Two kinds of membership: a static member list (every node knows every other from the
//! start; the default), or gossip, where node 0 founds the cluster and each other node
//! joins through it, as an operator would start them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ringkv_node::local_cluster::LocalClusterError> {
//! use ringkv_node::LocalCluster;
//!
//! let cluster = LocalCluster::builder().nodes(3).start().await?;
//! let endpoints = cluster.endpoints(); // hand these to `ringkv_client::Client`
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringkv_ring::NodeId;
use ringkv_storage::Durability;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::{ConfigError, EngineKind, NodeConfig, Seed};
use crate::server::{RunningNode, StartError, StartOptions};

/// Most nodes one local cluster runs.
pub const LOCAL_NODES_MAX: usize = 64;
/// How long a restarted node tries to bind the port its earlier run just released.
const REBIND_WAIT_MAX: Duration = Duration::from_secs(5);

/// Why a local cluster could not start (or a node of it restart).
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// The node count is outside `1..=LOCAL_NODES_MAX`.
    #[error("{got} nodes is outside 1..={LOCAL_NODES_MAX}")]
    NodeCount {
        /// Requested.
        got: usize,
    },
    /// More replicas per key than nodes to hold them.
    #[error("{replicas} replicas per key is outside 1..={nodes}: the cluster has {nodes} nodes")]
    Replicas {
        /// Requested.
        replicas: u8,
        /// Nodes.
        nodes: usize,
    },
    /// A port counted up from its base is above 65535.
    #[error("port {base} + {offset} is above 65535")]
    PortRange {
        /// The base port.
        base: u16,
        /// The node's offset.
        offset: usize,
    },
    /// Only a gossiping cluster can grow.
    #[error("a cluster with a static member list cannot add nodes: start it with gossip membership")]
    StaticMembers,
    /// A node's configuration is invalid (replicas above the node count, say).
    #[error("node {node}: {source}")]
    Config {
        /// The node.
        node: NodeId,
        /// What is wrong.
        source: ConfigError,
    },
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The temporary data directory could not be made.
    #[error("cannot create a data directory under {parent}: {source}")]
    DataDir {
        /// Where.
        parent: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A node failed to start.
    #[error("node {node}: {source}")]
    Start {
        /// The node.
        node: NodeId,
        /// Why.
        source: StartError,
    },
}

/// How the nodes learn of each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalMembership {
    /// Every node is given the whole member list (`--seeds`).
    #[default]
    Static,
    /// Node 0 founds the cluster; the others join through it by gossip.
    Gossip,
}

/// Where the nodes keep their data.
enum DataDir {
    /// A temporary directory (under this parent, or the system's), removed at the end.
    Temporary(Option<PathBuf>),
    /// A directory that stays.
    At(PathBuf),
}

type Configure = Box<dyn Fn(&mut NodeConfig) + Send + Sync>;

/// How to start a [`LocalCluster`]; from [`LocalCluster::builder`].
pub struct LocalClusterBuilder {
    nodes: usize,
    replicas: Option<u8>,
    base_ports: Option<(u16, Option<u16>)>,
    admin: bool,
    data_dir: DataDir,
    engine: EngineKind,
    durability: Option<Durability>,
    membership: LocalMembership,
    configure: Option<Configure>,
}

impl LocalClusterBuilder {
    /// How many nodes (default 3).
    pub fn nodes(mut self, count: usize) -> Self {
        self.nodes = count;
        self
    }

    /// Replicas per key (default: 3, or the node count if smaller). R and W default to a
    /// majority of it.
    pub fn replicas(mut self, replicas: u8) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Node `i` listens on `client_base + i`, and its admin HTTP server on
    /// `admin_base + i` when given (default: ports the OS picks, admin off).
    pub fn base_ports(mut self, client_base: u16, admin_base: Option<u16>) -> Self {
        self.base_ports = Some((client_base, admin_base));
        self
    }

    /// Serves each node's admin HTTP port on a port the OS picks (with OS-picked ports).
    pub fn admin(mut self, on: bool) -> Self {
        self.admin = on;
        self
    }

    /// Keeps the data under `dir` (`dir/n1`, `dir/n2`, ...) instead of a temporary
    /// directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = DataDir::At(dir.into());
        self
    }

    /// Makes the temporary data directory under `parent` (a disk to measure, say).
    pub fn temporary_dir_in(mut self, parent: impl Into<PathBuf>) -> Self {
        self.data_dir = DataDir::Temporary(Some(parent.into()));
        self
    }

    /// The storage engine (default RocksDB).
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = engine;
        self
    }

    /// When a write is durable (default: the node's default).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// How the nodes learn of each other (default a static member list).
    pub fn membership(mut self, membership: LocalMembership) -> Self {
        self.membership = membership;
        self
    }

    /// Adjusts every node's configuration last, after the builder's own settings.
    pub fn configure(mut self, configure: impl Fn(&mut NodeConfig) + Send + Sync + 'static) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts every node, in order; on a failure, stops the ones already started.
    pub async fn start(self) -> Result<LocalCluster, LocalClusterError> {
        if self.nodes == 0 || self.nodes > LOCAL_NODES_MAX {
            return Err(LocalClusterError::NodeCount { got: self.nodes });
        }
        let replicas = self
            .replicas
            .unwrap_or_else(|| u8::try_from(self.nodes.min(3)).unwrap_or(3));
        if replicas == 0 || usize::from(replicas) > self.nodes {
            return Err(LocalClusterError::Replicas {
                replicas,
                nodes: self.nodes,
            });
        }
        let (temporary, root) = match &self.data_dir {
            DataDir::At(dir) => (None, dir.clone()),
            DataDir::Temporary(parent) => {
                let parent = parent.clone().unwrap_or_else(std::env::temp_dir);
                let dir = tempfile::Builder::new()
                    .prefix("ringkv-")
                    .tempdir_in(&parent)
                    .map_err(|source| LocalClusterError::DataDir { parent, source })?;
                let root = dir.path().to_path_buf();
                (Some(dir), root)
            }
        };
        let mut listeners = Vec::with_capacity(self.nodes);
        let mut seeds = Vec::with_capacity(self.nodes);
        for i in 0..self.nodes {
            let port = match self.base_ports {
                Some((base, _)) => counted_port(base, i)?,
                None => 0,
            };
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
            let address = listener.local_addr().map_err(|source| LocalClusterError::Bind {
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                source,
            })?;
            seeds.push(Seed {
                id: node_id(i),
                address,
            });
            listeners.push(listener);
        }
        let mut configs = Vec::with_capacity(self.nodes);
        for (i, seed) in seeds.iter().enumerate() {
            let config = self.config(i, seed, &seeds, &root, replicas)?;
            configs.push(config);
        }
        let mut cluster = LocalCluster {
            _temporary: temporary,
            root,
            replicas,
            configs,
            nodes: Vec::with_capacity(self.nodes),
            settings: Box::new(self),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let options = StartOptions {
                listener: Some(listener),
                ..StartOptions::default()
            };
            match RunningNode::start_with(cluster.configs[i].clone(), options).await {
                Ok(node) => cluster.nodes.push(Some(node)),
                Err(source) => {
                    let node = cluster.configs[i].node_id.clone();
                    cluster.shutdown().await;
                    return Err(LocalClusterError::Start { node, source });
                }
            }
        }
        Ok(cluster)
    }

    fn config(
        &self,
        i: usize,
        seed: &Seed,
        seeds: &[Seed],
        root: &Path,
        replicas: u8,
    ) -> Result<NodeConfig, LocalClusterError> {
        let mut config = NodeConfig::local(seed.id.clone(), seed.address, root.join(seed.id.as_str()));
        config.engine = self.engine;
        config.replicas = replicas;
        config.read_quorum = replicas / 2 + 1;
        config.write_quorum = replicas / 2 + 1;
        if let Some(durability) = self.durability {
            config.durability = durability;
        }
        config.admin_listen = match self.base_ports {
            Some((_, Some(admin_base))) => Some(SocketAddr::from(([127, 0, 0, 1], counted_port(admin_base, i)?))),
            _ if self.admin => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            _ => None,
        };
        match self.membership {
            LocalMembership::Static => config.seeds = seeds.to_vec(),
            LocalMembership::Gossip => {
                config.gossip_listen = Some(free_udp_address().map_err(|source| LocalClusterError::Bind {
                    address: SocketAddr::from(([127, 0, 0, 1], 0)),
                    source,
                })?);
                if i > 0 {
                    config.join = vec![seeds[0].address.to_string()];
                }
            }
        }
        if let Some(configure) = &self.configure {
            configure(&mut config);
        }
        config.validate().map_err(|source| LocalClusterError::Config {
            node: seed.id.clone(),
            source,
        })?;
        Ok(config)
    }
}

/// Nodes running in this process; see the module docs.
pub struct LocalCluster {
    _temporary: Option<tempfile::TempDir>,
    root: PathBuf,
    replicas: u8,
    configs: Vec<NodeConfig>,
    nodes: Vec<Option<RunningNode>>,
    /// How the cluster was built, for nodes added later.
    settings: Box<LocalClusterBuilder>,
}

impl LocalCluster {
    /// A builder with the defaults: 3 nodes, N = 3, RocksDB in a temporary directory,
    /// ports the OS picks, a static member list.
    pub fn builder() -> LocalClusterBuilder {
        LocalClusterBuilder {
            nodes: 3,
            replicas: None,
            base_ports: None,
            admin: false,
            data_dir: DataDir::Temporary(None),
            engine: EngineKind::Rocksdb,
            durability: None,
            membership: LocalMembership::Static,
            configure: None,
        }
    }

    /// How many nodes the cluster has (running or stopped).
    pub fn len(&self) -> usize {
        self.configs.len()
    }

    /// Whether the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Node `i`, if it is running.
    pub fn try_node(&self, i: usize) -> Option<&RunningNode> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Node `i`.
    ///
    /// # Panics
    /// If node `i` is stopped or does not exist (a test's mistake).
    pub fn node(&self, i: usize) -> &RunningNode {
        match self.try_node(i) {
            Some(node) => node,
            None => panic!("node {i} is not running"),
        }
    }

    /// The running nodes, in order.
    pub fn running(&self) -> impl Iterator<Item = &RunningNode> {
        self.nodes.iter().flatten()
    }

    /// Every node's configuration, running or not.
    pub fn configs(&self) -> &[NodeConfig] {
        &self.configs
    }

    /// Node `i`'s client API address.
    pub fn address(&self, i: usize) -> SocketAddr {
        self.configs[i].listen
    }

    /// Every node's client API address, as SDK endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        self.configs.iter().map(|c| c.listen.to_string()).collect()
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.configs.iter().position(|c| c.node_id == *id)
    }

    /// Stops node `i` (nothing if it is stopped).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.shutdown().await;
        }
    }

    /// Starts node `i` again on its port and data, which a stopped node just released
    /// (binding is retried briefly). A gossiping node rejoins through another member.
    pub async fn restart(&mut self, i: usize) -> Result<(), LocalClusterError> {
        self.stop(i).await;
        let mut config = self.configs[i].clone();
        if self.settings.membership == LocalMembership::Gossip && self.configs.len() > 1 {
            let other = if i == 0 { 1 } else { 0 };
            config.join = vec![self.configs[other].listen.to_string()];
        }
        let listener = rebind(config.listen).await?;
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        let node = RunningNode::start_with(config.clone(), options)
            .await
            .map_err(|source| LocalClusterError::Start {
                node: config.node_id.clone(),
                source,
            })?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Starts one more node, which joins through node 0 by gossip; returns its index.
    /// A cluster with a static member list cannot grow: its members are fixed at start.
    pub async fn add(&mut self) -> Result<usize, LocalClusterError> {
        let i = self.configs.len();
        if self.settings.membership != LocalMembership::Gossip {
            return Err(LocalClusterError::StaticMembers);
        }
        if i >= LOCAL_NODES_MAX {
            return Err(LocalClusterError::NodeCount { got: i + 1 });
        }
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr().map_err(|source| LocalClusterError::Bind {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
        let seed = Seed {
            id: node_id(i),
            address,
        };
        let founder = Seed {
            id: self.configs[0].node_id.clone(),
            address: self.configs[0].listen,
        };
        let config = self.settings.config(i, &seed, &[founder], &self.root, self.replicas)?;
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        let node = RunningNode::start_with(config.clone(), options)
            .await
            .map_err(|source| LocalClusterError::Start {
                node: config.node_id.clone(),
                source,
            })?;
        self.configs.push(config);
        self.nodes.push(Some(node));
        Ok(i)
    }

    /// Stops every node, in order.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

fn node_id(i: usize) -> NodeId {
    let name = format!("n{}", i + 1);
    NodeId::try_from(name.as_str()).unwrap_or_else(|e| unreachable!("{name} is a valid node id: {e}"))
}

fn counted_port(base: u16, offset: usize) -> Result<u16, LocalClusterError> {
    u16::try_from(offset)
        .ok()
        .and_then(|offset| base.checked_add(offset))
        .ok_or(LocalClusterError::PortRange { base, offset })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, LocalClusterError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| LocalClusterError::Bind { address, source })
}

/// Binds `address`, retrying while the node stopped a moment ago still holds it.
async fn rebind(address: SocketAddr) -> Result<TcpListener, LocalClusterError> {
    let deadline = Instant::now() + REBIND_WAIT_MAX;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(source) if Instant::now() >= deadline => return Err(LocalClusterError::Bind { address, source }),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A free UDP port on loopback (bound and released; gossip binds it next).
fn free_udp_address() -> std::io::Result<SocketAddr> {
    std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()
}
