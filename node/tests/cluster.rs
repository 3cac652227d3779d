//! A replicated cluster on loopback: quorums, sloppy quorum with hinted hand-off,
//! siblings, read-your-writes, restarts, metrics and bad input.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_client::{ClientError, Consistency, Context, ReadOptions, WriteOptions};
use ringkv_ring::key_position;
use ringkv_storage::Limits;
use support::{eventually, http_get, TestCluster};

fn values(read: &ringkv_client::ReadResult) -> Vec<String> {
    let mut v: Vec<String> = read
        .siblings
        .iter()
        .map(|s| String::from_utf8_lossy(&s.value).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_values_survive_a_restart_of_every_node() {
    let mut cluster = TestCluster::start(3, 3).await;
    let client = cluster.client();
    for i in 0..50 {
        client
            .put(format!("key-{i}"), format!("value-{i}"), &Context::empty())
            .await
            .unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            values(&client.get(format!("key-{i}")).await.unwrap()),
            [format!("value-{i}")]
        );
    }
    for i in 0..3 {
        cluster.stop(i).await;
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    let client = cluster.client();
    let all = ReadOptions {
        consistency: Some(Consistency::All),
        ..ReadOptions::default()
    };
    for i in 0..50 {
        let read = client.get_with(format!("key-{i}"), all).await.unwrap();
        assert_eq!(values(&read), [format!("value-{i}")], "key-{i} after restart");
        assert_eq!(read.replicas_replied, 3);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_quorum_hint_is_delivered_after_the_replica_returns() {
    let mut cluster = TestCluster::start(4, 3).await;
    let key = "hinted-key";
    let ring = cluster.node(0).inspect().ring();
    let pref = ring.preference_list(key_position(key.as_bytes()), 3);
    let down = cluster.index_of(&pref.nodes()[1]);
    let coordinator = cluster.index_of(&pref.nodes()[0]);
    let stand_in = (0..4).find(|i| !pref.contains(&cluster.configs()[*i].node_id)).unwrap();
    cluster.stop(down).await;

    let all = WriteOptions {
        consistency: Some(Consistency::All),
        ..WriteOptions::default()
    };
    let client = cluster.client_for(coordinator);
    client
        .put_with(key, "written while a replica was down", &Context::empty(), all)
        .await
        .unwrap();
    // The answer says that one of its three acks is a stand-in's hint, not a replica.
    let mut kv = ringkv_client::proto::kv_client::KvClient::connect(format!("http://{}", cluster.address(coordinator)))
        .await
        .unwrap();
    let written = kv
        .put(ringkv_client::proto::PutRequest {
            key: Bytes::from(key),
            value: Bytes::from_static(b"written again"),
            context: Bytes::from(client.get(key).await.unwrap().context.as_bytes().to_vec()),
            consistency: Some(ringkv_client::proto::Consistency {
                level: ringkv_client::proto::Level::All as i32,
                count: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((written.replicas_acked, written.replicas_hinted), (3, 1), "{written:?}");

    // The node outside the preference list holds the copy as a hint for the stopped one.
    let hints = cluster.node(stand_in).inspect().hint_counts().await.unwrap();
    assert_eq!(
        hints,
        vec![(cluster.configs()[down].node_id.clone(), 1)],
        "one hint on the stand-in, holding both writes"
    );

    cluster.restart(down).await;
    let down_id = cluster.configs()[down].node_id.clone();
    eventually(Duration::from_secs(10), || {
        let store = cluster.node(stand_in).inspect();
        async move { store.hint_counts().await.unwrap().is_empty().then_some(()) }
    })
    .await;
    let key = Limits::default().key(key).unwrap();
    let held = cluster
        .node(down)
        .inspect()
        .stored(&key)
        .await
        .unwrap()
        .expect("the restarted replica holds the value");
    let values: Vec<Bytes> = held.visible(u64::MAX / 2).filter_map(|s| s.value().cloned()).collect();
    assert_eq!(
        values,
        vec![Bytes::from("written again")],
        "the second write replaced the first"
    );
    assert_eq!(down_id, cluster.configs()[down].node_id);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_make_siblings_and_a_merged_context_resolves_them() {
    let cluster = TestCluster::start(3, 3).await;
    let (alice, bob) = (cluster.client_for(0), cluster.client_for(1));
    alice.put("doc", "v0", &Context::empty()).await.unwrap();
    let seen = alice.get("doc").await.unwrap();
    alice.put("doc", "alice", &seen.context).await.unwrap();
    bob.put("doc", "bob", &seen.context).await.unwrap();
    let both = cluster.client_for(2).get("doc").await.unwrap();
    assert_eq!(values(&both), ["alice", "bob"]);
    alice.put("doc", "merged", &both.context).await.unwrap();
    let all = ReadOptions {
        consistency: Some(Consistency::All),
        ..ReadOptions::default()
    };
    assert_eq!(values(&bob.get_with("doc", all).await.unwrap()), ["merged"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_quorums_read_their_writes() {
    let cluster = TestCluster::start(3, 3).await;
    for (r, w) in [(2, 2), (1, 3), (3, 1)] {
        let read = ReadOptions {
            consistency: Some(Consistency::Count(r)),
            ..ReadOptions::default()
        };
        let write = WriteOptions {
            consistency: Some(Consistency::Count(w)),
            ..WriteOptions::default()
        };
        let mut context = Context::empty();
        for i in 0..60 {
            let writer = cluster.client_for(i % 3);
            let reader = cluster.client_for((i + 1) % 3);
            let value = format!("r{r}w{w}-{i}");
            let key = format!("ryw-r{r}-w{w}");
            writer
                .put_with(key.clone(), value.clone(), &context, write)
                .await
                .unwrap();
            let got = reader.get_with(key, read).await.unwrap();
            assert_eq!(values(&got), [value], "R={r} W={w} step {i}");
            context = got.context;
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let cluster = TestCluster::start(3, 3).await;
    let client = cluster.client_for(0);
    let expect_invalid = |result: Result<(), ClientError>, needle: &str| match result {
        Err(ClientError::InvalidArgument(message)) => {
            assert!(message.contains(needle), "{message:?} should mention {needle:?}")
        }
        other => panic!("expected invalid argument mentioning {needle:?}, got {other:?}"),
    };
    expect_invalid(client.get("").await.map(|_| ()), "key is empty");
    expect_invalid(
        client.put(vec![b'k'; 1025], "v", &Context::empty()).await.map(|_| ()),
        "the limit is 1024",
    );
    expect_invalid(
        client
            .put("k", vec![0u8; (1 << 20) + 1], &Context::empty())
            .await
            .map(|_| ()),
        "the limit is 1048576",
    );
    expect_invalid(
        client
            .put("k", "v", &Context::from_bytes(&b"garbage"[..]))
            .await
            .map(|_| ()),
        "malformed context",
    );
    let four = ReadOptions {
        consistency: Some(Consistency::Count(4)),
        ..ReadOptions::default()
    };
    expect_invalid(client.get_with("k", four).await.map(|_| ()), "r=4 is outside 1..=3");
    let four = WriteOptions {
        consistency: Some(Consistency::Count(4)),
        ..WriteOptions::default()
    };
    expect_invalid(
        client.put_with("k", "v", &Context::empty(), four).await.map(|_| ()),
        "w=4 is outside 1..=3",
    );

    // An endpoint nobody listens on: a clear error, quickly, no hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = ringkv_client::Client::builder()
        .endpoints([closed.to_string()])
        .request_timeout(Duration::from_secs(1))
        .retries(1)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = nowhere.get("k").await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(ringkv_client::Client::builder()
        .endpoints(["not an endpoint"])
        .build()
        .is_err());

    // The cluster is unaffected.
    client.put("k", "fine", &Context::empty()).await.unwrap();
    assert_eq!(values(&client.get("k").await.unwrap()), ["fine"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_failure_is_unavailable_naming_the_count() {
    let mut cluster = TestCluster::start(3, 3).await;
    cluster.stop(1).await;
    cluster.stop(2).await;
    let client = cluster.client_for(0);
    let all = WriteOptions {
        consistency: Some(Consistency::All),
        timeout: Some(Duration::from_millis(800)),
        ..WriteOptions::default()
    };
    match client.put_with("k", "v", &Context::empty(), all).await {
        Err(ClientError::Unavailable { message, .. }) => {
            assert!(message.contains("1 of 3"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // W=1 still succeeds: the write is kept, with hints for the two stopped replicas.
    let one = WriteOptions {
        consistency: Some(Consistency::One),
        ..WriteOptions::default()
    };
    client.put_with("k", "v", &Context::empty(), one).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_metrics_and_health() {
    let cluster = TestCluster::start(3, 3).await;
    let client = cluster.client_for(0);
    client.put("m", "v", &Context::empty()).await.unwrap();
    client.get("m").await.unwrap();
    let _ = client.get("").await;
    let admin = cluster.node(0).admin_address().unwrap();
    let (code, body) = http_get(admin, "/health").await;
    assert_eq!((code, body.trim()), (200, "ok n1"));
    let (code, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "ringkv_requests_total{op=\"Put\",outcome=\"Ok\"} 1",
        "ringkv_requests_total{op=\"Get\",outcome=\"Ok\"} 1",
        "ringkv_requests_total{op=\"Get\",outcome=\"Invalid\"} 1",
        "ringkv_request_duration_seconds_count{op=\"Put\"} 1",
        "ringkv_hints_pending",
        "ringkv_read_repairs_total",
        "ringkv_replica_rpc_errors_total",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle:?}:\n{metrics}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_repair_fixes_a_stale_replica() {
    let cluster = TestCluster::start(3, 3).await;
    let key = Limits::default().key("repair-me").unwrap();
    // Write straight into one replica's store, as if the others missed the write.
    let mut state = ringkv_storage::KeyState::new();
    state.put(
        ringkv_storage::ActorId::new(7),
        &ringkv_storage::VersionVector::new(),
        ringkv_storage::Write {
            value: Some(Bytes::from("only on n1")),
            hlc: ringkv_storage::Hlc::new(1, 0),
            expires_at_ms: None,
        },
    );
    cluster
        .node(0)
        .inspect()
        .merge_locally(key.clone(), state.clone())
        .await
        .unwrap();
    let all = ReadOptions {
        consistency: Some(Consistency::All),
        ..ReadOptions::default()
    };
    assert_eq!(
        values(&cluster.client_for(1).get_with("repair-me", all).await.unwrap()),
        ["only on n1"]
    );
    for i in 1..3 {
        let store = cluster.node(i).inspect();
        let key = key.clone();
        let expected = state.clone();
        eventually(Duration::from_secs(5), || {
            let (store, key, expected) = (store.clone(), key.clone(), expected.clone());
            async move { (store.stored(&key).await.unwrap() == Some(expected)).then_some(()) }
        })
        .await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_values_expire() {
    let cluster = TestCluster::start(3, 3).await;
    let client = cluster.client();
    let ttl = WriteOptions {
        ttl: Some(Duration::from_millis(300)),
        ..WriteOptions::default()
    };
    client
        .put_with("cached", "soon gone", &Context::empty(), ttl)
        .await
        .unwrap();
    let read = client.get("cached").await.unwrap();
    assert_eq!(values(&read), ["soon gone"]);
    assert!(read.siblings[0].expires_at_ms.is_some());
    eventually(Duration::from_secs(5), || {
        let client = client.clone();
        async move { client.get("cached").await.unwrap().is_empty().then_some(()) }
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_reach_the_replicas_in_batches_and_all_land() {
    let cluster = TestCluster::start(3, 3).await;
    let client = cluster.client_for(0);
    const WRITES: usize = 200;
    let writes = (0..WRITES).map(|i| {
        let client = client.clone();
        async move { client.put(format!("b{i}"), format!("v{i}"), &Context::empty()).await }
    });
    for written in futures::future::join_all(writes).await {
        written.unwrap();
    }
    // Every write is readable from every node at R=3 (all replicas hold it).
    for node in 0..3 {
        let reader = cluster.client_for(node);
        let read = reader
            .get_with(
                "b7",
                ReadOptions {
                    consistency: Some(Consistency::All),
                    ..ReadOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(values(&read), vec!["v7".to_owned()]);
    }
    // n1 coordinated every write: its two peers received each copy through `Apply`, and
    // with 200 writes in flight at once some calls carried more than one.
    let mut batches = 0;
    let mut ops = 0;
    for node in 1..3 {
        let admin = cluster.node(node).admin_address().unwrap();
        let (_, metrics) = http_get(admin, "/metrics").await;
        batches += metric(&metrics, "ringkv_replica_batches_total");
        ops += metric(&metrics, "ringkv_replica_batched_ops_total");
    }
    assert!(ops >= 2 * WRITES as u64, "{ops} batched operations for {WRITES} writes");
    assert!(
        batches < ops,
        "{batches} calls for {ops} operations: nothing was batched"
    );
    cluster.shutdown().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_asks_r_replicas_and_replaces_one_that_is_down() {
    let mut cluster = TestCluster::start(3, 3).await;
    let key = "asked-key";
    let ring = cluster.node(0).inspect().ring();
    let pref = ring.preference_list(key_position(key.as_bytes()), 3);
    let [coordinator, first_peer, second_peer] = [0, 1, 2].map(|i| cluster.index_of(&pref.nodes()[i]));
    let all = WriteOptions {
        consistency: Some(Consistency::All),
        ..WriteOptions::default()
    };
    let client = cluster.client_for(coordinator);
    client.put_with(key, "v1", &Context::empty(), all).await.unwrap();
    let served = |cluster: &TestCluster, i: usize| cluster.node(i).inspect().metrics().replica_batched_ops.get();

    // R=2 (the default): the coordinator's own copy and one peer, the one after it in
    // the preference list. The other peer is not asked.
    let before = [served(&cluster, first_peer), served(&cluster, second_peer)];
    let read = client.get(key).await.unwrap();
    assert_eq!(values(&read), ["v1"]);
    let after = [served(&cluster, first_peer), served(&cluster, second_peer)];
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 0],
        "replica operations served"
    );

    // With that peer stopped, the read goes to the other one and still meets R=2.
    cluster.stop(first_peer).await;
    let before = served(&cluster, second_peer);
    let read = client.get(key).await.unwrap();
    assert_eq!(values(&read), ["v1"]);
    assert_eq!(
        served(&cluster, second_peer) - before,
        1,
        "the second peer answered instead"
    );
    cluster.shutdown().await;
}

/// A key whose preference list (N=3 of 4 nodes) leaves out node `outsider`.
fn key_not_on(cluster: &TestCluster, outsider: usize) -> String {
    let ring = cluster.node(0).inspect().ring();
    let id = cluster.configs()[outsider].node_id.clone();
    (0..1000)
        .map(|i| format!("forwarded-{i}"))
        .find(|k| !ring.preference_list(key_position(k.as_bytes()), 3).contains(&id))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_refusal_of_a_forwarded_write_is_the_answer_and_no_other_replica_orders_it() {
    // Without hints a write at W=3 fails while one replica is down. The node outside the
    // key's replicas forwards it; the replica that orders it answers "quorum not met",
    // and that verdict must come back as it is: trying the next replica would order the
    // same write a second time, under another dot.
    let mut cluster = TestCluster::start_with(4, 3, |c| c.hinted_handoff = false).await;
    let key = key_not_on(&cluster, 0);
    let ring = cluster.node(0).inspect().ring();
    let pref = ring.preference_list(key_position(key.as_bytes()), 3);
    let down = cluster.index_of(&pref.nodes()[2]);
    cluster.stop(down).await;
    eventually(Duration::from_secs(5), || {
        let view = cluster.node(0).inspect();
        let id = cluster.configs()[down].node_id.clone();
        async move { (!view.is_alive(&id)).then_some(()) }
    })
    .await;

    let mut kv = ringkv_client::proto::kv_client::KvClient::connect(format!("http://{}", cluster.address(0)))
        .await
        .unwrap();
    let all = ringkv_client::proto::Consistency {
        level: ringkv_client::proto::Level::All as i32,
        count: 0,
    };
    let status = kv
        .put(ringkv_client::proto::PutRequest {
            key: Bytes::from(key.clone()),
            value: Bytes::from_static(b"refused at W=3"),
            consistency: Some(all),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status.metadata().get("ringkv-error").and_then(|v| v.to_str().ok()),
        Some("quorum-not-met"),
        "{status:?}"
    );

    // The write was ordered once: the two live replicas hold one sibling, one dot.
    let replicas: Vec<usize> = pref.nodes()[..2].iter().map(|id| cluster.index_of(id)).collect();
    let k = Limits::default().key(key.clone()).unwrap();
    let mut dots = std::collections::BTreeSet::new();
    for i in replicas {
        let inspector = cluster.node(i).inspect();
        let stored = eventually(Duration::from_secs(5), || {
            let (inspector, k) = (inspector.clone(), k.clone());
            async move { inspector.stored(&k).await.unwrap() }
        })
        .await;
        dots.extend(stored.siblings().iter().map(|s| s.dot().to_string()));
    }
    assert_eq!(dots.len(), 1, "one write, one dot: {dots:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_whose_first_replica_is_unreachable_goes_to_the_next() {
    let mut cluster = TestCluster::start(4, 3).await;
    let key = key_not_on(&cluster, 0);
    let ring = cluster.node(0).inspect().ring();
    let pref = ring.preference_list(key_position(key.as_bytes()), 3);
    // The first replica goes away before node 0's failure detector has noticed: the
    // forward finds its connection refused and moves on.
    let first = cluster.index_of(&pref.nodes()[0]);
    cluster.stop(first).await;
    let client = cluster.client_for(0);
    let written = client
        .put(key.clone(), "forwarded past a dead replica", &Context::empty())
        .await;
    assert!(written.is_ok(), "{written:?}");
    let read = client.get(key.clone()).await.unwrap();
    assert_eq!(values(&read), ["forwarded past a dead replica"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writes_copies_land_even_when_its_client_gives_up_first() {
    // A member that accepts connections and never answers: a copy to it stays out until
    // the peer connection's timeout. The client's deadline is shorter, so the request is
    // dropped while that copy is out. The copy must still end somewhere: with no node
    // left to stand in, as a hint kept by the coordinator.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let n3 = ringkv_ring::NodeId::try_from("n3").unwrap();
    let seed = ringkv_node::Seed {
        id: n3.clone(),
        address: silent.local_addr().unwrap(),
    };
    let cluster = TestCluster::start_with(2, 2, move |c| {
        c.seeds.push(seed.clone());
        c.replicas = 3;
        // The failure detector must not see n3 as down during the test.
        c.probe_interval = Duration::from_secs(3600);
    })
    .await;
    let client = ringkv_client::Client::builder()
        .endpoints([cluster.address(0).to_string()])
        .request_timeout(Duration::from_millis(100))
        .retries(0)
        .build()
        .unwrap();
    let all = WriteOptions {
        consistency: Some(Consistency::All),
        ..WriteOptions::default()
    };
    let written = client
        .put_with("given-up-on", "must still reach n3", &Context::empty(), all)
        .await;
    assert!(written.is_err(), "W=3 cannot be met with n3 silent: {written:?}");
    let coordinator = cluster.node(0).inspect();
    eventually(Duration::from_secs(5), || {
        let (coordinator, n3) = (coordinator.clone(), n3.clone());
        async move {
            let hints = coordinator.hint_counts().await.unwrap();
            hints
                .iter()
                .any(|(target, count)| *target == n3 && *count == 1)
                .then_some(())
        }
    })
    .await;
    drop(silent);
    cluster.shutdown().await;
}

/// Fields a client sets that the SDK would never send: an unknown consistency level was
/// served as the default, and a TTL near `u64::MAX` ms overflowed the expiry time (a panic
/// in a debug build; in a release build an acknowledged write that expired at once). Both
/// are refused now, and nothing was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_with_fields_out_of_range_are_refused() {
    use ringkv_client::proto;
    let cluster = TestCluster::start(3, 3).await;
    let mut kv = proto::kv_client::KvClient::connect(format!("http://{}", cluster.address(0)))
        .await
        .unwrap();
    let unknown_level = Some(proto::Consistency { level: 99, count: 0 });
    let read = kv
        .get(proto::GetRequest {
            key: Bytes::from_static(b"k"),
            consistency: unknown_level,
            ..Default::default()
        })
        .await;
    let status = read.expect_err("an unknown read level is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("level 99"), "{status:?}");
    let written = kv
        .put(proto::PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            consistency: unknown_level,
            ..Default::default()
        })
        .await;
    let status = written.expect_err("an unknown write level is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    for ttl_ms in [u64::MAX, u64::MAX / 2] {
        let written = kv
            .put(proto::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                ttl_ms,
                ..Default::default()
            })
            .await;
        let status = written.expect_err("a TTL past the limit is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{ttl_ms}: {status:?}");
        assert!(status.message().contains("ttl"), "{status:?}");
    }
    let client = cluster.client_for(0);
    assert!(
        client.get("k").await.unwrap().siblings.is_empty(),
        "nothing was written"
    );
    client.put("k", "fine", &Context::empty()).await.unwrap();
    assert_eq!(values(&client.get("k").await.unwrap()), ["fine"]);
    cluster.shutdown().await;
}

/// A scan page size outside `1..=SCAN_PAGE_MAX` was clamped into it; it is refused now,
/// as every other limit is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_page_size_outside_the_limit_is_refused() {
    use ringkv_client::proto;
    let cluster = TestCluster::start(1, 1).await;
    let mut replica = proto::replica_client::ReplicaClient::connect(format!("http://{}", cluster.address(0)))
        .await
        .unwrap();
    let scan = |limit: u32| proto::ScanRangeRequest {
        first: 0,
        last: u64::MAX,
        after_key: Bytes::new(),
        limit,
    };
    let page_max = u32::try_from(ringkv_storage::SCAN_PAGE_MAX).unwrap();
    for limit in [0, page_max + 1, u32::MAX] {
        let status = replica.scan_range(scan(limit)).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{limit}: {status:?}");
        assert!(status.message().contains("page"), "{status:?}");
    }
    for limit in [1, page_max] {
        replica
            .scan_range(scan(limit))
            .await
            .expect("a page size within the limit is served");
    }
    cluster.shutdown().await;
}
