//! Test clusters of in-process nodes on loopback, each with its own RocksDB, started by
//! the node's one cluster builder (`ringkv_node::LocalCluster`) with short intervals.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ringkv_client::Client;
use ringkv_node::local_cluster::LocalMembership;
use ringkv_node::{LocalCluster, LocalState, NodeConfig};
use ringkv_ring::NodeId;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A cluster with a static member list.
pub struct TestCluster {
    cluster: LocalCluster,
}

impl Deref for TestCluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl TestCluster {
    /// Starts `count` nodes keeping `replicas` copies of each key.
    pub async fn start(count: usize, replicas: u8) -> TestCluster {
        TestCluster::start_with(count, replicas, |_| {}).await
    }

    /// Like [`TestCluster::start`], with each node's config adjusted by `customize`.
    pub async fn start_with(
        count: usize,
        replicas: u8,
        customize: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
    ) -> TestCluster {
        let cluster = LocalCluster::builder()
            .nodes(count)
            .replicas(replicas)
            .admin(true)
            .configure(move |config| {
                config.probe_interval = Duration::from_millis(100);
                config.handoff_interval = Duration::from_millis(100);
                customize(config);
            })
            .start()
            .await
            .unwrap();
        TestCluster { cluster }
    }

    pub fn index_of(&self, id: &NodeId) -> usize {
        self.cluster.index_of(id).unwrap()
    }

    /// A client that knows every node.
    pub fn client(&self) -> Client {
        Client::builder()
            .endpoints(self.cluster.endpoints())
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }

    /// A client that talks to node `i` only (no failover).
    pub fn client_for(&self, i: usize) -> Client {
        single_endpoint_client(self.address(i))
    }

    pub async fn restart(&mut self, i: usize) {
        self.cluster.restart(i).await.unwrap();
    }

    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
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

/// Short gossip, probe, hand-off and anti-entropy intervals for tests.
fn fast_gossip(config: &mut NodeConfig) {
    config.gossip_interval = Duration::from_millis(50);
    config.probe_interval = Duration::from_millis(100);
    config.handoff_interval = Duration::from_millis(100);
    config.anti_entropy_interval = Duration::from_millis(200);
    config.join_timeout = Duration::from_secs(2);
}

/// A cluster whose members find each other by gossip; node 0 founds it and the others
/// join through it.
pub struct GossipCluster {
    cluster: LocalCluster,
}

impl Deref for GossipCluster {
    type Target = LocalCluster;

    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for GossipCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl GossipCluster {
    /// The config of a node `n<i+1>` (not started) joining through `seeds`, with its
    /// listener bound: for tests of joins that must be refused.
    pub async fn config(dir: &std::path::Path, i: usize, seeds: &[String]) -> (NodeConfig, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let id = NodeId::try_from(format!("n{}", i + 1).as_str()).unwrap();
        let mut config = NodeConfig::local(id.clone(), listener.local_addr().unwrap(), dir.join(id.as_str()));
        config.gossip_listen = Some(std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
        config.join = seeds.to_vec();
        fast_gossip(&mut config);
        (config, listener)
    }

    /// Starts `count` members, each joining through node 0, and waits until every node
    /// sees all of them up in its ring.
    pub async fn start(count: usize) -> GossipCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let cluster = LocalCluster::builder()
            .nodes(count)
            .membership(LocalMembership::Gossip)
            .configure(fast_gossip)
            .start()
            .await
            .unwrap();
        let cluster = GossipCluster { cluster };
        cluster.wait_for_ring(count).await;
        cluster
    }

    /// Starts one more member joining through node 0; returns its index.
    pub async fn add(&mut self) -> usize {
        self.cluster.add().await.unwrap()
    }

    /// Waits until every running node's ring has `members` members and reports itself up.
    pub async fn wait_for_ring(&self, members: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let done = self.running().all(|n| {
                let view = n.inspect();
                view.ring().physical_node_count() == members && view.local_state() == LocalState::Up
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let views: Vec<String> = self
            .running()
            .map(|n| {
                let view = n.inspect();
                format!(
                    "{}: {:?} ring={}",
                    n.node_id(),
                    view.local_state(),
                    view.ring().physical_node_count(),
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
        single_endpoint_client(self.configs()[i].listen)
    }

    pub async fn restart(&mut self, i: usize) {
        self.cluster.restart(i).await.unwrap();
    }

    /// How many of `key`'s current replicas (by node 0's ring) hold a live value for it.
    pub async fn copies(&self, key: &ringkv_storage::Key) -> usize {
        let ring = self.running().next().unwrap().inspect().ring();
        let pref = ring.preference_list(key.position(), 3);
        let mut copies = 0;
        for node in self.running().filter(|n| pref.contains(n.node_id())) {
            if node.inspect().stored(key).await.unwrap().is_some_and(|s| !s.is_dead(0)) {
                copies += 1;
            }
        }
        copies
    }

    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
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
