//! A test cluster of in-process nodes on loopback, each with its own RocksDB.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use ringkv_client::Client;
use ringkv_node::{NodeConfig, RunningNode, Seed, StartOptions};
use ringkv_ring::NodeId;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub struct TestCluster {
    _dir: tempfile::TempDir,
    pub configs: Vec<NodeConfig>,
    pub nodes: Vec<Option<RunningNode>>,
}

impl TestCluster {
    /// Starts `count` nodes keeping `replicas` copies of each key.
    pub async fn start(count: usize, replicas: u8) -> TestCluster {
        TestCluster::start_with(count, replicas, |_| {}).await
    }

    /// Like [`TestCluster::start`], with each node's config adjusted by `customize`.
    pub async fn start_with(count: usize, replicas: u8, customize: impl Fn(&mut NodeConfig)) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut seeds = Vec::new();
        for i in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let id = NodeId::try_from(format!("n{}", i + 1).as_str()).unwrap();
            seeds.push(Seed {
                id,
                address: listener.local_addr().unwrap(),
            });
            listeners.push(listener);
        }
        let mut configs = Vec::new();
        for seed in &seeds {
            let mut config = NodeConfig::local(seed.id.clone(), seed.address, dir.path().join(seed.id.as_str()));
            config.seeds = seeds.clone();
            config.replicas = replicas;
            config.read_quorum = replicas / 2 + 1;
            config.write_quorum = replicas / 2 + 1;
            config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
            config.probe_interval = Duration::from_millis(100);
            config.handoff_interval = Duration::from_millis(100);
            customize(&mut config);
            configs.push(config);
        }
        let mut nodes = Vec::new();
        for (config, listener) in configs.iter().zip(listeners) {
            let options = StartOptions {
                listener: Some(listener),
                ..StartOptions::default()
            };
            nodes.push(Some(RunningNode::start_with(config.clone(), options).await.unwrap()));
        }
        TestCluster {
            _dir: dir,
            configs,
            nodes,
        }
    }

    pub fn node(&self, i: usize) -> &RunningNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn index_of(&self, id: &NodeId) -> usize {
        self.configs.iter().position(|c| c.node_id == *id).unwrap()
    }

    pub fn address(&self, i: usize) -> SocketAddr {
        self.configs[i].listen
    }

    /// A client that knows every node.
    pub fn client(&self) -> Client {
        let endpoints: Vec<String> = self.configs.iter().map(|c| c.listen.to_string()).collect();
        Client::builder()
            .endpoints(endpoints)
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }

    /// A client that talks to node `i` only (no failover).
    pub fn client_for(&self, i: usize) -> Client {
        single_endpoint_client(self.address(i))
    }

    pub async fn stop(&mut self, i: usize) {
        stop_node(&mut self.nodes[i]).await;
    }

    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let config = self.configs[i].clone();
        self.nodes[i] = Some(start_on_its_port(config).await);
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Starts a node on the address in its config, which a stopped node just released:
/// binding is retried briefly.
pub async fn start_on_its_port(config: NodeConfig) -> RunningNode {
    let listener = eventually(Duration::from_secs(5), || async {
        TcpListener::bind(config.listen).await.ok()
    })
    .await;
    let options = StartOptions {
        listener: Some(listener),
        ..StartOptions::default()
    };
    RunningNode::start_with(config, options).await.unwrap()
}

/// A client for one node only: no failover, no retries.
pub fn single_endpoint_client(address: SocketAddr) -> Client {
    Client::builder()
        .endpoints([address.to_string()])
        .request_timeout(Duration::from_secs(3))
        .retries(0)
        .build()
        .unwrap()
}

/// Shuts a node down if it is running.
pub async fn stop_node(slot: &mut Option<RunningNode>) {
    if let Some(node) = slot.take() {
        node.shutdown().await;
    }
}

/// A free UDP port on loopback (bound and released; gossip binds it next).
pub fn free_udp_address() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A cluster whose members find each other by gossip; node 0 founds it and the others
/// join through it.
pub struct GossipCluster {
    pub dir: tempfile::TempDir,
    pub configs: Vec<NodeConfig>,
    pub nodes: Vec<Option<RunningNode>>,
}

impl GossipCluster {
    /// The config of a new member `n<i+1>` joining through `seeds`.
    pub async fn config(dir: &std::path::Path, i: usize, seeds: &[String]) -> (NodeConfig, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let id = NodeId::try_from(format!("n{}", i + 1).as_str()).unwrap();
        let mut config = NodeConfig::local(id.clone(), listener.local_addr().unwrap(), dir.join(id.as_str()));
        config.gossip_listen = Some(free_udp_address());
        config.join = seeds.to_vec();
        config.gossip_interval = Duration::from_millis(50);
        config.probe_interval = Duration::from_millis(100);
        config.handoff_interval = Duration::from_millis(100);
        config.anti_entropy_interval = Duration::from_millis(200);
        config.join_timeout = Duration::from_secs(2);
        (config, listener)
    }

    /// Starts `count` members, each joining through node 0, and waits until every node
    /// sees all of them up in its ring.
    pub async fn start(count: usize) -> GossipCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = GossipCluster {
            dir,
            configs: Vec::new(),
            nodes: Vec::new(),
        };
        for _ in 0..count {
            cluster.add().await;
        }
        cluster.wait_for_ring(count).await;
        cluster
    }

    /// Starts one more member joining through node 0; returns its index.
    pub async fn add(&mut self) -> usize {
        let i = self.configs.len();
        let seeds = if i == 0 {
            Vec::new()
        } else {
            vec![self.configs[0].listen.to_string()]
        };
        let (config, listener) = GossipCluster::config(self.dir.path(), i, &seeds).await;
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        let node = RunningNode::start_with(config.clone(), options).await.unwrap();
        self.configs.push(config);
        self.nodes.push(Some(node));
        i
    }

    pub fn node(&self, i: usize) -> &RunningNode {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = &RunningNode> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node's ring has `members` members and reports itself up.
    pub async fn wait_for_ring(&self, members: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = self.running().all(|n| {
                n.core().membership.ring().physical_node_count() == members
                    && n.core().membership.local_state() == ringkv_node::membership::LocalState::Up
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let views: Vec<String> = self
            .running()
            .map(|n| {
                let m = &n.core().membership;
                format!(
                    "{}: {:?} ring={} members={:?}",
                    n.core().me(),
                    m.local_state(),
                    m.ring().physical_node_count(),
                    m.members()
                )
            })
            .collect();
        panic!("ring of {members} not reached within 30 s:\n{}", views.join("\n"));
    }

    pub fn client(&self) -> Client {
        let endpoints: Vec<String> = self.running().map(|n| n.address().to_string()).collect();
        Client::builder()
            .endpoints(endpoints)
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }

    pub fn client_for(&self, i: usize) -> Client {
        single_endpoint_client(self.configs[i].listen)
    }

    pub async fn stop(&mut self, i: usize) {
        stop_node(&mut self.nodes[i]).await;
    }

    pub async fn restart(&mut self, i: usize) {
        let mut config = self.configs[i].clone();
        config.join = vec![self.configs[if i == 0 { 1 } else { 0 }].listen.to_string()];
        self.nodes[i] = Some(start_on_its_port(config).await);
    }

    /// How many of `key`'s current replicas (by node 0's ring) hold a live value for it.
    pub async fn copies(&self, key: &ringkv_storage::Key) -> usize {
        let ring = self.running().next().unwrap().core().membership.ring();
        let pref = ring.preference_list(key.position(), 3);
        let mut copies = 0;
        for node in self.running().filter(|n| pref.contains(n.core().me())) {
            if node
                .core()
                .store
                .get(key.clone())
                .await
                .unwrap()
                .is_some_and(|s| !s.is_dead(0))
            {
                copies += 1;
            }
        }
        copies
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.0 GET, enough for the admin port.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}
