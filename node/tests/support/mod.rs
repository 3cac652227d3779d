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
        Client::builder()
            .endpoints([self.address(i).to_string()])
            .request_timeout(Duration::from_secs(3))
            .retries(0)
            .build()
            .unwrap()
    }

    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await;
        }
    }

    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        let config = self.configs[i].clone();
        // The port was just released; retry binding briefly.
        let listener = eventually(Duration::from_secs(5), || async {
            TcpListener::bind(config.listen).await.ok()
        })
        .await;
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        self.nodes[i] = Some(RunningNode::start_with(config, options).await.unwrap());
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
