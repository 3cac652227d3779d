//! Anti-entropy on a loopback cluster: replicas converge with no reads, exchange traffic
//! follows the difference, and the exchange refuses bad input. (That a purged tombstone
//! never resurrects its value is a directed simulation scenario: sim/tests/scenario.rs.)
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_client::Context;
use ringkv_storage::{record, ActorId, Hlc, Key, KeyState, Limits, VersionVector, Write};
use support::{eventually, TestCluster};

fn key(name: &str) -> Key {
    Limits::default().key(name.to_owned()).unwrap()
}

fn state(actor: u64, value: &str) -> KeyState {
    let mut s = KeyState::new();
    let write = Write {
        value: Some(Bytes::from(value.to_owned())),
        hlc: Hlc::new(1, 0),
        expires_at_ms: None,
    };
    s.put(ActorId::new(actor), &VersionVector::new(), write);
    s
}

async fn states(cluster: &TestCluster, key: &Key) -> Vec<Option<KeyState>> {
    let mut out = Vec::new();
    for node in cluster.running() {
        out.push(node.inspect().stored(key).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_replicas_converge_without_reads() {
    let mut cluster = TestCluster::start_with(3, 3, |c| {
        c.hinted_handoff = false;
        c.anti_entropy_interval = Duration::from_millis(200);
    })
    .await;
    cluster.stop(2).await;
    let client = cluster.client_for(0);
    let keys: Vec<String> = (0..200).map(|i| format!("diverged-{i}")).collect();
    for k in &keys {
        client
            .put(k.clone(), format!("value of {k}"), &Context::empty())
            .await
            .unwrap();
    }
    // A concurrent sibling that only the stopped node will hold.
    let concurrent = key("concurrent");
    client
        .put("concurrent", "written while n3 was away", &Context::empty())
        .await
        .unwrap();
    cluster.restart(2).await;
    cluster
        .node(2)
        .inspect()
        .merge_locally(concurrent.clone(), state(99, "only on n3"))
        .await
        .unwrap();

    let started = Instant::now();
    let all_keys: Vec<Key> = keys.iter().map(|k| key(k)).chain([concurrent.clone()]).collect();
    eventually(Duration::from_secs(30), || {
        let cluster = &cluster;
        let all_keys = &all_keys;
        async move {
            for k in all_keys {
                let s = states(cluster, k).await;
                if s.iter().any(|x| x != &s[0]) || s[0].is_none() {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let repaired: u64 = (0..3)
        .map(|i| cluster.node(i).inspect().metrics().anti_entropy_keys_repaired.get())
        .sum();
    let bytes: u64 = (0..3)
        .map(|i| cluster.node(i).inspect().metrics().anti_entropy_bytes.get())
        .sum();
    println!(
        "anti-entropy: 201 keys missing on one replica converged in {:.2} s with no reads; {repaired} keys repaired, {bytes} bytes exchanged",
        started.elapsed().as_secs_f64()
    );
    let both = states(&cluster, &concurrent).await[0].clone().unwrap();
    assert_eq!(both.visible(0).count(), 2, "repair kept both concurrent siblings");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_traffic_follows_the_difference() {
    let cluster = TestCluster::start_with(2, 2, |c| c.anti_entropy_interval = Duration::from_secs(3600)).await;
    let count = 100_000;
    let mut data_bytes = 0u64;
    let mut batch = Vec::with_capacity(1000);
    for i in 0..count {
        let k = key(&format!("bulk-{i:06}"));
        let s = state(1, &format!("value number {i:06} with some padding to look like data"));
        data_bytes += (k.as_bytes().len() + record::encode(&s).len()) as u64;
        batch.push((k, s));
        if batch.len() == 1000 || i == count - 1 {
            for node in 0..2 {
                cluster
                    .node(node)
                    .inspect()
                    .merge_batch_locally(batch.clone())
                    .await
                    .unwrap();
            }
            batch.clear();
        }
    }
    for i in 0..10 {
        let k = key(&format!("bulk-{:06}", i * 9_973));
        cluster
            .node(1)
            .inspect()
            .merge_locally(k, state(2, "a newer concurrent write"))
            .await
            .unwrap();
    }
    let n2 = cluster.configs()[1].node_id.clone();
    let stats = cluster.node(0).inspect().exchange_with(&n2).await.unwrap();
    let ratio = stats.bytes as f64 / data_bytes as f64;
    println!(
        "anti-entropy: {count} keys ({data_bytes} bytes of data), 10 differing: {} bytes exchanged = {:.3}% of the data; {stats:?}",
        stats.bytes,
        ratio * 100.0
    );
    assert_eq!(stats.keys_differing, 10);
    assert_eq!(stats.keys_repaired, 10);
    assert!(ratio < 0.01, "exchange moved {:.3}% of the data", ratio * 100.0);
    let again = cluster.node(0).inspect().exchange_with(&n2).await.unwrap();
    assert_eq!(again.keys_differing, 0, "a second exchange finds nothing: {again:?}");
    println!(
        "anti-entropy: a second exchange with nothing to repair moved {} bytes",
        again.bytes
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_entropy_rpcs_refuse_bad_input() {
    use ringkv_client::proto::{self, replica_client::ReplicaClient};
    let cluster = TestCluster::start(2, 2).await;
    let mut client = ReplicaClient::connect(format!("http://{}", cluster.address(0)))
        .await
        .unwrap();
    // A segment the node's ring does not have: the ring views differ.
    let ends = cluster.node(0).inspect().segment_ends();
    let unknown = (1..u64::MAX).find(|p| !ends.contains(p)).unwrap();
    let status = client
        .segment_leaves(proto::SegmentLeavesRequest { segment_end: unknown })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let status = client
        .leaf_digests(proto::LeafDigestsRequest {
            segment_end: ends[0],
            leaf: 64,
            after: Bytes::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // A cursor that is not a valid key is refused too.
    let status = client
        .leaf_digests(proto::LeafDigestsRequest {
            segment_end: ends[0],
            leaf: 0,
            after: Bytes::from(vec![b'x'; 70_000]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = client
        .purge(proto::PurgeRequest {
            key: Bytes::from("k"),
            expected_state: Bytes::from("garbage"),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = client
        .merge(proto::ReplicaMergeRequest {
            key: Bytes::from("k"),
            state: Bytes::from("garbage"),
            hint_for: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // Roots of known segments come back one per segment.
    let roots = client
        .segment_roots(proto::SegmentRootsRequest {
            segment_ends: ends.clone(),
        })
        .await
        .unwrap();
    assert_eq!(roots.into_inner().roots.len(), ends.len());
    cluster.shutdown().await;
}

/// Finding 7 of "Close every hole": a leaf with more keys than one scan page
/// (`SCAN_PAGE_MAX`) was compared only as far as its first page, so keys past it never
/// converged. Leaves are compared page by page now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_with_more_keys_than_a_page_converges_whole() {
    use ringkv_storage::merkle::LeafId;
    use ringkv_storage::{SegmentTrees, SCAN_PAGE_MAX};
    let cluster = TestCluster::start_with(2, 2, |c| {
        c.hinted_handoff = false;
        c.anti_entropy_interval = Duration::from_millis(100);
    })
    .await;
    // Keys that all fall into one leaf: leaf 0 of segment 0 of the nodes' trees.
    let trees = SegmentTrees::new(cluster.node(0).inspect().segment_ends());
    let target = LeafId { segment: 0, leaf: 0 };
    let wanted = SCAN_PAGE_MAX + 50;
    let mut keys: Vec<Key> = (0u64..)
        .map(|i| key(&format!("crowded-{i}")))
        .filter(|k| trees.leaf_of(k.position()) == target)
        .take(wanted)
        .collect();
    // In the order a scan reads them: the last ones are those past the first page.
    keys.sort();
    // Only n1 holds them.
    for (i, k) in keys.iter().enumerate() {
        cluster
            .node(0)
            .inspect()
            .merge_locally(k.clone(), state(1, &format!("value {i}")))
            .await
            .unwrap();
    }
    let peer = cluster.node(1).inspect();
    eventually(Duration::from_secs(120), || {
        let (keys, peer) = (&keys, &peer);
        async move {
            for k in keys.iter().rev() {
                peer.stored(k).await.unwrap()?;
            }
            Some(())
        }
    })
    .await;
    cluster.shutdown().await;
}
