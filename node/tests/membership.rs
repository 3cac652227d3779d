//! Gossip membership on loopback: joining, leaving and removing nodes under load,
//! failure detection, and refused joins.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringkv_client::{ClientError, Consistency, Context, ReadOptions, WriteOptions};
use ringkv_node::LocalState;
use ringkv_node::{JoinError, RunningNode, StartError, StartOptions};
use ringkv_storage::{Key, Limits};
use support::{eventually, GossipCluster};

fn key(name: &str) -> Key {
    Limits::default().key(name.to_owned()).unwrap()
}

async fn load(cluster: &GossipCluster, prefix: &str, count: usize) -> Vec<String> {
    let client = cluster.client();
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let k = format!("{prefix}-{i}");
        client
            .put(k.clone(), format!("value of {k}"), &Context::empty())
            .await
            .unwrap();
        keys.push(k);
    }
    keys
}

/// Background load: a writer of new keys and a reader of loaded keys, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    read_errors: Arc<Mutex<Vec<String>>>,
    reads: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &GossipCluster, endpoints: Vec<String>, loaded: Vec<String>) -> Load {
        let _ = cluster;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let read_errors = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(AtomicU64::new(0));
        let client = ringkv_client::Client::builder()
            .endpoints(endpoints)
            .request_timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let writer = {
            let (stop, acked, client) = (Arc::clone(&stop), Arc::clone(&acked), client.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 5_000 {
                    let k = format!("live-{i}");
                    if client
                        .put(k.clone(), format!("value of {k}"), &Context::empty())
                        .await
                        .is_ok()
                    {
                        acked.lock().unwrap().push(k);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let reader = {
            let (stop, errors, reads) = (Arc::clone(&stop), Arc::clone(&read_errors), Arc::clone(&reads));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    let k = &loaded[i % loaded.len()];
                    match client.get(k.clone()).await {
                        Ok(read) if read.value().is_some() => {}
                        Ok(read) => errors
                            .lock()
                            .unwrap()
                            .push(format!("{k}: {} siblings", read.siblings.len())),
                        Err(e) => errors.lock().unwrap().push(format!("{k}: {e}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Load {
            stop,
            acked,
            read_errors,
            reads,
            tasks: vec![writer, reader],
        }
    }

    async fn stop(self) -> (Vec<String>, Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let errors = self.read_errors.lock().unwrap().clone();
        (acked, errors, self.reads.load(Ordering::Relaxed))
    }
}

/// Waits until every key has 3 live copies on its current replicas.
async fn wait_for_full_replication(cluster: &GossipCluster, keys: &[String], within: Duration) -> Duration {
    let started = Instant::now();
    eventually(within, || async {
        for k in keys {
            if cluster.copies(&key(k)).await < 3 {
                return None;
            }
        }
        Some(())
    })
    .await;
    started.elapsed()
}

/// Every loaded and acknowledged key ends with 3 copies and reads back its value;
/// returns how long replication took to settle.
async fn assert_every_write_kept(cluster: &GossipCluster, loaded: &[String], acked: &[String]) -> Duration {
    let all: Vec<String> = loaded.iter().chain(acked).cloned().collect();
    let took = wait_for_full_replication(cluster, &all, Duration::from_secs(60)).await;
    assert_all_readable(cluster, &all).await;
    took
}

/// The generation node `observer` has seen for `node`.
fn generation_seen_by(cluster: &GossipCluster, observer: usize, node: &ringkv_ring::NodeId) -> u64 {
    cluster.node(observer).inspect().generation_of(node).unwrap()
}

async fn assert_all_readable(cluster: &GossipCluster, keys: &[String]) {
    let client = cluster.client();
    let quorum = ReadOptions {
        consistency: Some(Consistency::Quorum),
        ..ReadOptions::default()
    };
    for k in keys {
        let read = client.get_with(k.clone(), quorum).await.unwrap();
        assert_eq!(
            read.value().map(|v| v.to_vec()),
            Some(format!("value of {k}").into_bytes()),
            "acknowledged write {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixth_node_joins_under_load_and_takes_its_share() {
    let mut cluster = GossipCluster::start(5).await;
    let loaded = load(&cluster, "loaded", 3_000).await;
    let endpoints: Vec<String> = cluster.running().map(|n| n.address().to_string()).collect();
    let traffic = Load::start(&cluster, endpoints, loaded.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let joined = cluster.add().await;
    eventually(Duration::from_secs(60), || async {
        (cluster.node(joined).inspect().local_state() == LocalState::Up).then_some(())
    })
    .await;
    let join_time = started.elapsed();
    cluster.wait_for_ring(6).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acked, read_errors, reads) = traffic.stop().await;

    let received = cluster.node(joined).inspect().metrics().transfer_keys_received.get();
    let ring = cluster.node(0).inspect().ring();
    let me = cluster.node(joined).node_id().clone();
    let should_move = loaded
        .iter()
        .filter(|k| ring.preference_list(key(k).position(), 3).contains(&me))
        .count();
    let ideal = loaded.len() as f64 * 3.0 / 6.0;
    let ratio = received as f64 / ideal;
    println!(
        "join: n6 up after {:.2} s; pulled {received} keys ({:.0} keys/s); ideal share N/(S+1) = {ideal:.0} keys, ratio {ratio:.3}; \
         {should_move} loaded keys now list n6; {reads} reads and {} writes ran during the join, {} read errors",
        join_time.as_secs_f64(),
        received as f64 / join_time.as_secs_f64(),
        acked.len(),
        read_errors.len()
    );
    assert!(
        read_errors.is_empty(),
        "reads failed during the join: {:?}",
        &read_errors[..read_errors.len().min(5)]
    );
    assert!((0.8..=1.25).contains(&ratio), "moved {received} keys, ideal {ideal}");
    let took = assert_every_write_kept(&cluster, &loaded, &acked).await;
    println!(
        "join: every key has 3 copies on its new replicas {:.2} s after the load stopped",
        took.as_secs_f64()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaves_under_load_without_losing_writes() {
    let mut cluster = GossipCluster::start(5).await;
    let loaded = load(&cluster, "loaded", 1_000).await;
    let endpoints: Vec<String> = (0..4).map(|i| cluster.configs()[i].listen.to_string()).collect();
    let traffic = Load::start(&cluster, endpoints, loaded.clone());
    let started = Instant::now();
    let leaving = cluster.client_for(4).leave().await.unwrap();
    assert_eq!(leaving, "n5");
    let mut left = cluster.node(4).left();
    tokio::time::timeout(Duration::from_secs(60), left.wait_for(|done| *done))
        .await
        .unwrap()
        .unwrap();
    println!(
        "leave: n5 handed everything over in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    cluster.stop(4).await;
    let (acked, read_errors, _) = traffic.stop().await;
    assert!(
        read_errors.is_empty(),
        "reads failed during the leave: {:?}",
        &read_errors[..read_errors.len().min(5)]
    );
    cluster.wait_for_ring(4).await;
    assert_every_write_kept(&cluster, &loaded, &acked).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_removed_and_its_data_re_replicated() {
    let mut cluster = GossipCluster::start(5).await;
    let loaded = load(&cluster, "loaded", 1_000).await;
    cluster.stop(4).await;
    eventually(Duration::from_secs(30), || async {
        (!cluster.node(0).inspect().is_alive(&cluster.configs()[4].node_id)).then_some(())
    })
    .await;
    let client = cluster.client_for(0);
    match client.remove_node("n1").await {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, tonic::Code::FailedPrecondition, "removing itself"),
        other => panic!("removing a live node must fail, got {other:?}"),
    }
    assert!(matches!(
        client.remove_node("n2").await,
        Err(ClientError::Rpc {
            code: tonic::Code::FailedPrecondition,
            ..
        })
    ));
    assert!(matches!(
        client.remove_node("n42").await,
        Err(ClientError::Rpc {
            code: tonic::Code::NotFound,
            ..
        })
    ));
    let started = Instant::now();
    client.remove_node("n5").await.unwrap();
    cluster.wait_for_ring(4).await;
    let took = wait_for_full_replication(&cluster, &loaded, Duration::from_secs(60)).await;
    println!(
        "remove: 1,000 keys back to 3 copies {:.2} s after the remove",
        (started.elapsed()).as_secs_f64().max(took.as_secs_f64())
    );
    assert_all_readable(&cluster, &loaded).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_detector_marks_stopped_and_silent_nodes_down() {
    let mut cluster = GossipCluster::start(4).await;
    let n3 = cluster.configs()[2].node_id.clone();
    let generation_before = generation_seen_by(&cluster, 0, &n3);

    cluster.stop(2).await;
    let started = Instant::now();
    eventually(Duration::from_secs(30), || async {
        (!cluster.node(0).inspect().is_alive(&n3)).then_some(())
    })
    .await;
    println!(
        "failure detection: a stopped node was marked down after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        cluster.node(0).inspect().ring().contains(&n3),
        "a dead node stays in the ring until removed"
    );

    cluster.restart(2).await;
    let started = Instant::now();
    eventually(Duration::from_secs(30), || async {
        cluster.node(0).inspect().is_alive(&n3).then_some(())
    })
    .await;
    let generation_after = generation_seen_by(&cluster, 0, &n3);
    println!(
        "failure detection: restarted node marked up after {:.2} s, generation {generation_before} -> {generation_after}",
        started.elapsed().as_secs_f64()
    );
    assert!(generation_after > generation_before);

    // A node whose gossip stops while its process (and gRPC) lives is treated the same.
    let n2 = cluster.configs()[1].node_id.clone();
    cluster.node(1).stop_gossip().await;
    let started = Instant::now();
    eventually(Duration::from_secs(30), || async {
        (!cluster.node(0).inspect().is_alive(&n2)).then_some(())
    })
    .await;
    println!(
        "failure detection: a node with silent gossip was marked down after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for i in [0, 2, 3] {
        eventually(Duration::from_secs(30), || async {
            (!cluster.node(i).inspect().is_alive(&n2)).then_some(())
        })
        .await;
    }
    // Writes for its keys go to a stand-in with a hint, as for a dead node.
    let ring = cluster.node(0).inspect().ring();
    let k = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| ring.preference_list(key(k).position(), 3).contains(&n2))
        .unwrap();
    let all = WriteOptions {
        consistency: Some(Consistency::All),
        ..WriteOptions::default()
    };
    cluster
        .client_for(0)
        .put_with(k, "v", &Context::empty(), all)
        .await
        .unwrap();
    let hinted: u64 = cluster
        .running()
        .map(|n| n.inspect().metrics().hinted_writes.get())
        .sum();
    assert!(hinted >= 1, "the silent node's copy went to a stand-in");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_joins_are_refused_and_the_cluster_is_unaffected() {
    let cluster = GossipCluster::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let start = |config: ringkv_node::NodeConfig, listener| async move {
        RunningNode::start_with(
            config,
            StartOptions {
                listener: Some(listener),
                ..StartOptions::default()
            },
        )
        .await
    };

    // Seeds nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (config, listener) = GossipCluster::config(dir.path(), 10, &[closed]).await;
    let started = Instant::now();
    match start(config, listener).await {
        Err(e @ StartError::Join(JoinError::NoSeedReachable { .. })) => println!("refused: {e}"),
        other => panic!("expected no seed reachable, got {:?}", other.map(|_| ())),
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // A seed of another cluster.
    let (mut config, listener) =
        GossipCluster::config(dir.path(), 11, &[cluster.configs()[0].listen.to_string()]).await;
    config.cluster_name = "other".to_owned();
    match start(config, listener).await {
        Err(e @ StartError::Join(JoinError::ClusterMismatch { .. })) => {
            assert!(e.to_string().contains("cluster name mismatch"), "{e}");
            println!("refused: {e}");
        }
        other => panic!("expected a cluster mismatch, got {:?}", other.map(|_| ())),
    }

    // A node id a running member already uses.
    let (mut config, listener) =
        GossipCluster::config(dir.path(), 12, &[cluster.configs()[0].listen.to_string()]).await;
    config.node_id = cluster.configs()[1].node_id.clone();
    match start(config, listener).await {
        Err(e @ StartError::Join(JoinError::DuplicateNodeId { .. })) => println!("refused: {e}"),
        other => panic!("expected a duplicate id error, got {:?}", other.map(|_| ())),
    }

    // The cluster did not notice.
    assert!(cluster.running().all(|n| n.inspect().ring().physical_node_count() == 3));
    let client = cluster.client();
    client.put("still", "works", &Context::empty()).await.unwrap();
    assert_eq!(
        client.get("still").await.unwrap().value().map(|v| v.to_vec()),
        Some(b"works".to_vec())
    );
    cluster.shutdown().await;
}
