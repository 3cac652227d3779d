//! The SDK against an in-process fake node (see `fake/`): requests carry what the caller
//! gave, failover and retries follow the policy, and no call outlives its bound.
//!
//! Time bounds are asserted with generous margins (the machine may be busy); every call is
//! also wrapped in a hard deadline so a regression fails the test instead of hanging it.

mod fake;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use fake::{black_hole_endpoint, dead_endpoint, lock, FakeNode};
use ringkv_client::proto::{self, GetResponse, Level, Sibling, StatusResponse};
use ringkv_client::{
    Client, ClientError, Consistency, Context, LastWriterWins, ReadOptions, SiblingValue, WriteOptions,
};
use tokio::time::Instant;
use tonic::{Code, Status};

/// Runs `call`, failing the test if it takes longer than `bound`; returns its output and
/// how long it took.
async fn within<T>(bound: Duration, call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(bound, call)
        .await
        .unwrap_or_else(|_| panic!("call did not return within {bound:?}"));
    (output, started.elapsed())
}

const BOUND: Duration = Duration::from_secs(4);

fn client(endpoints: &[&str], retries: u32, request_timeout: Duration) -> Client {
    Client::builder()
        .endpoints(endpoints)
        .retries(retries)
        .request_timeout(request_timeout)
        .backoff(Duration::from_millis(5), Duration::from_millis(40))
        .jitter_seed(1)
        .build()
        .expect("valid client settings")
}

fn sibling(value: &'static str, hlc: u64, dot: &str) -> Sibling {
    Sibling {
        value: Bytes::from_static(value.as_bytes()),
        hlc,
        expires_at_ms: None,
        dot: dot.to_owned(),
    }
}

fn consistency(level: Level, count: u32) -> Option<proto::Consistency> {
    Some(proto::Consistency {
        level: level.into(),
        count,
    })
}

#[tokio::test]
async fn get_put_delete_pass_every_field_through() {
    let node = FakeNode::start().await;
    *lock(&node.state.get_response) = GetResponse {
        siblings: vec![Sibling {
            expires_at_ms: Some(1_700_000_000_000),
            ..sibling("v1", 7 << 16, "n1:3")
        }],
        context: Bytes::from_static(b"context-after-get"),
        replicas_replied: 2,
    };
    let client = client(&[&node.endpoint], 2, Duration::from_secs(2));

    let options = ReadOptions {
        consistency: Some(Consistency::Count(2)),
        timeout: Some(Duration::from_millis(750)),
    };
    let (read, _) = within(BOUND, client.get_with("key-1", options)).await;
    let read = read.expect("get");
    assert_eq!(read.value(), Some(&Bytes::from("v1")));
    assert_eq!(
        read.siblings,
        vec![SiblingValue {
            value: Bytes::from("v1"),
            hlc: 7 << 16,
            expires_at_ms: Some(1_700_000_000_000),
            dot: "n1:3".to_owned(),
        }]
    );
    assert_eq!(read.context, Context::from_bytes(&b"context-after-get"[..]));
    assert_eq!(read.replicas_replied, 2);

    let options = WriteOptions {
        consistency: Some(Consistency::All),
        timeout: None,
        ttl: Some(Duration::from_secs(90)),
    };
    let (written, _) = within(BOUND, client.put_with("key-1", b"v2".to_vec(), &read.context, options)).await;
    assert_eq!(written.expect("put"), Context::from_bytes(&b"context-after-put"[..]));

    let (deleted, _) = within(BOUND, client.delete("key-1", &read.context)).await;
    deleted.expect("delete");
    let (plain, _) = within(BOUND, client.get(Bytes::from("key-2"))).await;
    plain.expect("plain get");

    let gets = lock(&node.state.gets).clone();
    assert_eq!(
        gets,
        vec![
            proto::GetRequest {
                key: Bytes::from("key-1"),
                consistency: consistency(Level::Count, 2),
                timeout_ms: 750,
            },
            proto::GetRequest {
                key: Bytes::from("key-2"),
                consistency: consistency(Level::Default, 0),
                timeout_ms: 0,
            },
        ]
    );
    assert_eq!(
        lock(&node.state.puts).clone(),
        vec![proto::PutRequest {
            key: Bytes::from("key-1"),
            value: Bytes::from("v2"),
            context: Bytes::from("context-after-get"),
            consistency: consistency(Level::All, 0),
            timeout_ms: 0,
            ttl_ms: 90_000,
            forwarded: false,
        }]
    );
    assert_eq!(
        lock(&node.state.deletes).clone(),
        vec![proto::DeleteRequest {
            key: Bytes::from("key-1"),
            context: Bytes::from("context-after-get"),
            consistency: consistency(Level::Default, 0),
            timeout_ms: 0,
            forwarded: false,
        }]
    );
    // Every attempt tells the server its deadline, so it can stop work nobody waits for.
    let grpc_timeouts = lock(&node.state.grpc_timeouts).clone();
    assert_eq!(grpc_timeouts.len(), 4);
    assert!(grpc_timeouts.iter().all(Option::is_some), "{grpc_timeouts:?}");
    assert_eq!(node.state.calls(), 4);
}

#[tokio::test]
async fn status_is_passed_through() {
    let node = FakeNode::start().await;
    let status = StatusResponse {
        node_id: "n1".to_owned(),
        cluster_name: "test".to_owned(),
        replicas: 3,
        members: vec![proto::MemberStatus {
            id: "n1".to_owned(),
            address: node.endpoint.clone(),
            vnodes: 256,
            state: "up".to_owned(),
            alive: true,
            ownership_share: 1.0,
            ..Default::default()
        }],
        key_bytes_max: 1024,
        value_bytes_max: 1 << 20,
    };
    *lock(&node.state.status_response) = status.clone();
    let client = client(&[&node.endpoint], 0, Duration::from_secs(2));
    let (got, _) = within(BOUND, client.status()).await;
    assert_eq!(got.expect("status"), status);
}

#[tokio::test]
async fn context_survives_its_text_form_on_the_way_back_to_the_server() {
    let node = FakeNode::start().await;
    *lock(&node.state.get_response) = GetResponse {
        context: Bytes::from_static(&[0, 1, 2, 250, 251, 252, 253, 254, 255]),
        ..Default::default()
    };
    let client = client(&[&node.endpoint], 0, Duration::from_secs(2));
    let (read, _) = within(BOUND, client.get("k")).await;
    let read = read.expect("get");
    assert!(read.is_empty());
    assert_eq!(read.value(), None);
    let text = read.context.to_base64();
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let parsed = Context::from_base64(&text).expect("own text form parses");
    let (put, _) = within(BOUND, client.put("k", "v", &parsed)).await;
    put.expect("put");
    assert_eq!(lock(&node.state.puts)[0].context, read.context.into_bytes());

    match Context::from_base64("*not base64*") {
        Err(ClientError::InvalidContext(message)) => assert!(message.contains("not base64")),
        other => panic!("bad base64 gave {other:?}"),
    }
}

#[tokio::test]
async fn resolvers_pick_among_several_siblings() {
    let node = FakeNode::start().await;
    *lock(&node.state.get_response) = GetResponse {
        siblings: vec![
            sibling("apple", 30 << 16, "n2:4"),
            sibling("cherry", 41 << 16, "n1:9"),
            sibling("banana", 41 << 16, "n3:2"),
            sibling("date", 12 << 16, "n1:1"),
        ],
        context: Bytes::from_static(b"vv"),
        replicas_replied: 3,
    };
    let client = client(&[&node.endpoint], 0, Duration::from_secs(2));
    let (read, _) = within(BOUND, client.get("fruit")).await;
    let read = read.expect("get");

    assert_eq!(read.siblings.len(), 4);
    assert_eq!(read.value(), None, "several siblings have no single value");
    // Newest hlc wins; between the two at 41 the greater dot ("n3:2") breaks the tie.
    let winner = read.last_writer_wins().expect("a winner");
    assert_eq!((winner.value.as_ref(), winner.dot.as_str()), (&b"banana"[..], "n3:2"));
    assert_eq!(read.resolve(&LastWriterWins), Some(Bytes::from("banana")));

    let union = |siblings: &[SiblingValue]| {
        let mut values: Vec<&[u8]> = siblings.iter().map(|s| s.value.as_ref()).collect();
        values.sort_unstable();
        Some(Bytes::from(values.join(&b',')))
    };
    assert_eq!(read.resolve(&union), Some(Bytes::from("apple,banana,cherry,date")));
    let oldest = |siblings: &[SiblingValue]| siblings.iter().min_by_key(|s| s.hlc).map(|s| s.value.clone());
    assert_eq!(read.resolve(&oldest), Some(Bytes::from("date")));
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_next() {
    let node = FakeNode::start().await;
    let dead = dead_endpoint();
    let client = client(&[&dead, &node.endpoint], 2, Duration::from_secs(2));
    let (read, _) = within(BOUND, client.get("k")).await;
    read.expect("the second endpoint answers");
    assert_eq!(node.state.calls(), 1);
    // The live endpoint is now preferred: the next call does not try the dead one first,
    // so it succeeds even with no retries left.
    let no_retries = client.clone();
    let (read, _) = within(BOUND, no_retries.get("k")).await;
    read.expect("preferred endpoint answers");
    assert_eq!(node.state.calls(), 2);
}

#[tokio::test]
async fn failover_moves_the_preference_to_the_endpoint_that_answered() {
    let first = FakeNode::start().await;
    let second = FakeNode::start().await;
    first
        .state
        .fail_next([Status::unavailable("not enough replicas: 1 of 2")]);
    let client = client(&[&first.endpoint, &second.endpoint], 1, Duration::from_secs(2));

    let (read, _) = within(BOUND, client.get("k")).await;
    read.expect("second endpoint answers");
    assert_eq!((first.state.calls(), second.state.calls()), (1, 1));

    let (read, _) = within(BOUND, client.get("k")).await;
    read.expect("preferred endpoint answers");
    assert_eq!((first.state.calls(), second.state.calls()), (1, 2));
}

#[tokio::test]
async fn all_endpoints_dead_is_unavailable_within_a_bound() {
    let dead = [dead_endpoint(), dead_endpoint()];
    let client = client(&[&dead[0], &dead[1]], 3, Duration::from_secs(2));
    let (result, elapsed) = within(BOUND, client.put("k", "v", &Context::empty())).await;
    match result {
        Err(ClientError::Unavailable {
            message,
            attempts,
            endpoints,
        }) => {
            assert_eq!(attempts, 4);
            assert_eq!(endpoints, dead.to_vec());
            // The transport error's text, e.g. "tcp connect error: ... Connection refused".
            assert!(message.contains("connect"), "{message:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Refused connections fail at once: the time is the backoffs (at most 5+10+20 ms)
    // plus connection attempts, far below one request timeout.
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn a_node_restarted_on_its_port_is_reached_again_through_a_new_connection() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (first, served) = FakeNode::start_until("127.0.0.1:0", async {
        let _ = stopped.await;
    })
    .await;
    let client = client(&[&first.endpoint], 2, Duration::from_secs(2));
    let (got, _) = within(BOUND, client.get("k")).await;
    got.expect("the first server answers");
    assert_eq!(first.state.calls(), 1);

    stop.send(()).expect("server still running");
    within(BOUND, served).await.0.expect("server task");
    let (second, _served) = FakeNode::start_until(&first.endpoint, std::future::pending()).await;
    let (got, _) = within(BOUND, client.get("k")).await;
    got.expect("the restarted server answers over a new connection");
    assert_eq!(second.state.calls(), 1);
    assert_eq!(first.state.calls(), 1);
}

#[tokio::test]
async fn the_first_call_after_a_restart_reaches_the_node_without_a_retry() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (first, served) = FakeNode::start_until("127.0.0.1:0", async {
        let _ = stopped.await;
    })
    .await;
    // No retries: the call after the restart must not fail on the closed connection.
    let client = client(&[&first.endpoint], 0, Duration::from_secs(2));
    let (got, _) = within(BOUND, client.get("k")).await;
    got.expect("the first server answers");
    stop.send(()).expect("server still running");
    within(BOUND, served).await.0.expect("server task");
    let (second, _served) = FakeNode::start_until(&first.endpoint, std::future::pending()).await;
    let (got, _) = within(BOUND, client.get("k")).await;
    got.expect("the restarted server answers the first call");
    assert_eq!(second.state.calls(), 1);
}

#[tokio::test]
async fn unavailable_twice_then_ok_is_retried_to_success() {
    let node = FakeNode::start().await;
    node.state.fail_next([
        Status::unavailable("not enough replicas: 1 of 2"),
        Status::unavailable("not enough replicas: 1 of 2"),
    ]);
    let client = client(&[&node.endpoint], 2, Duration::from_secs(2));
    let (put, _) = within(BOUND, client.put("k", "v", &Context::empty())).await;
    assert_eq!(
        put.expect("third attempt succeeds"),
        Context::from_bytes(&b"context-after-put"[..])
    );
    assert_eq!(node.state.calls(), 3);
    assert_eq!(lock(&node.state.puts).len(), 1);
}

#[tokio::test]
async fn unavailable_without_retries_fails_after_one_attempt() {
    let node = FakeNode::start().await;
    node.state.fail_next([
        Status::unavailable("not enough replicas: 1 of 2"),
        Status::unavailable("not enough replicas: 1 of 2"),
    ]);
    let client = client(&[&node.endpoint], 0, Duration::from_secs(2));
    let (result, _) = within(BOUND, client.get("k")).await;
    let error = result.expect_err("no retries left");
    assert!(error.is_retryable());
    assert_eq!(
        error,
        ClientError::Unavailable {
            message: "not enough replicas: 1 of 2".to_owned(),
            attempts: 1,
            endpoints: vec![node.endpoint.clone()],
        }
    );
    assert_eq!(node.state.calls(), 1);
}

#[tokio::test]
async fn invalid_argument_is_returned_at_once_with_the_servers_message() {
    let node = FakeNode::start().await;
    node.state
        .fail_next([Status::invalid_argument("key is 2000 bytes, the limit is 1024")]);
    let client = client(&[&node.endpoint], 3, Duration::from_secs(2));
    let (result, _) = within(BOUND, client.get(vec![b'k'; 2000])).await;
    let error = result.expect_err("rejected");
    assert!(!error.is_retryable());
    assert_eq!(
        error,
        ClientError::InvalidArgument("key is 2000 bytes, the limit is 1024".to_owned())
    );
    assert_eq!(node.state.calls(), 1);
}

#[tokio::test]
async fn other_statuses_are_not_retried_either() {
    let node = FakeNode::start().await;
    node.state
        .fail_next([Status::failed_precondition("node is leaving the ring")]);
    let client = client(&[&node.endpoint], 3, Duration::from_secs(2));
    let (result, _) = within(BOUND, client.delete("k", &Context::empty())).await;
    assert_eq!(
        result,
        Err(ClientError::Rpc {
            code: Code::FailedPrecondition,
            message: "node is leaving the ring".to_owned(),
        })
    );
    assert_eq!(node.state.calls(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_per_attempt() {
    let node = FakeNode::start().await;
    node.state.hang();
    let request_timeout = Duration::from_millis(300);
    let client = client(&[&node.endpoint], 1, request_timeout);
    let (result, elapsed) = within(BOUND, client.get("k")).await;
    match result {
        Err(ClientError::Timeout { after, attempts }) => {
            assert_eq!(attempts, 2);
            assert!(after >= 2 * request_timeout, "after {after:?}");
            assert!(after <= elapsed);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed >= 2 * request_timeout, "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert_eq!(node.state.calls(), 2);
}

#[tokio::test]
async fn a_request_timeout_option_overrides_the_clients() {
    let node = FakeNode::start().await;
    node.state.hang();
    let client = client(&[&node.endpoint], 0, Duration::from_secs(30));
    let options = ReadOptions {
        timeout: Some(Duration::from_millis(200)),
        ..ReadOptions::default()
    };
    let (result, elapsed) = within(BOUND, client.get_with("k", options)).await;
    assert!(
        matches!(result, Err(ClientError::Timeout { attempts: 1, .. })),
        "{result:?}"
    );
    assert!(elapsed >= Duration::from_millis(200), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn a_peer_that_accepts_but_never_speaks_times_out_then_fails_over() {
    let silent = black_hole_endpoint().await;
    let node = FakeNode::start().await;
    let client = client(&[&silent, &node.endpoint], 1, Duration::from_millis(300));
    let (read, elapsed) = within(BOUND, client.get("k")).await;
    read.expect("the second endpoint answers");
    assert!(elapsed >= Duration::from_millis(300), "took {elapsed:?}");
    assert_eq!(node.state.calls(), 1);

    let alone = client_with_only(&silent);
    let (result, elapsed) = within(BOUND, alone.get("k")).await;
    assert!(
        matches!(result, Err(ClientError::Timeout { attempts: 1, .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

fn client_with_only(endpoint: &str) -> Client {
    client(&[endpoint], 0, Duration::from_millis(300))
}

#[tokio::test]
async fn bad_options_are_rejected_before_anything_is_sent() {
    let node = FakeNode::start().await;
    let client = client(&[&node.endpoint], 3, Duration::from_secs(2));
    let cases = [
        client
            .delete_with(
                "k",
                &Context::empty(),
                WriteOptions {
                    ttl: Some(Duration::from_secs(1)),
                    ..WriteOptions::default()
                },
            )
            .await,
        client
            .put_with(
                "k",
                "v",
                &Context::empty(),
                WriteOptions {
                    ttl: Some(Duration::ZERO),
                    ..WriteOptions::default()
                },
            )
            .await
            .map(drop),
        client
            .get_with(
                "k",
                ReadOptions {
                    consistency: Some(Consistency::Count(0)),
                    ..ReadOptions::default()
                },
            )
            .await
            .map(drop),
        client
            .get_with(
                "k",
                ReadOptions {
                    timeout: Some(Duration::ZERO),
                    ..ReadOptions::default()
                },
            )
            .await
            .map(drop),
    ];
    let expected = [
        "ttl does not apply to delete",
        "ttl must be positive",
        "consistency count must be at least 1",
        "timeout must be positive",
    ];
    for (got, expected) in cases.into_iter().zip(expected) {
        assert_eq!(got, Err(ClientError::InvalidArgument(expected.to_owned())));
    }
    assert_eq!(node.state.calls(), 0);
}

#[tokio::test]
async fn invalid_endpoints_are_rejected_at_build() {
    let check = |endpoints: &[&str], expected_endpoint: &str, expected_reason: &str| match Client::connect(endpoints) {
        Err(ClientError::InvalidEndpoint { endpoint, reason }) => {
            assert_eq!(endpoint, expected_endpoint);
            assert!(reason.contains(expected_reason), "{reason:?} lacks {expected_reason:?}");
        }
        other => panic!("{endpoints:?} gave {other:?}"),
    };
    check(&[], "", "no endpoints");
    check(&["127.0.0.1:7101", "nope"], "nope", "missing port");
    check(&["127.0.0.1:7101", "127.0.0.1:7101"], "127.0.0.1:7101", "listed twice");
    check(&["grpc://127.0.0.1:7101"], "grpc://127.0.0.1:7101", "only plain http");
    check(
        &["127.0.0.1:notaport"],
        "127.0.0.1:notaport",
        "port \"notaport\" is not a number from 1 to 65535",
    );
    check(
        &["127.0.0.1:70000"],
        "127.0.0.1:70000",
        "port \"70000\" is not a number from 1 to 65535",
    );
    // Building dials nothing, so endpoints with nothing behind them are fine.
    Client::connect([dead_endpoint()]).expect("lazy client builds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_channels_and_run_concurrently() {
    let node = FakeNode::start().await;
    let client = client(&[&node.endpoint], 0, Duration::from_secs(2));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("key-{i}")).await })
        })
        .collect();
    let (results, _) = within(BOUND, async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        results
    })
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(node.state.calls(), 32);
}

#[tokio::test]
async fn leave_needs_exactly_one_endpoint_and_remove_passes_errors_through() {
    let node = FakeNode::start().await;
    let one = client(&[&node.endpoint], 0, Duration::from_secs(1));
    assert_eq!(one.leave().await.expect("leave"), "fake");
    let second = FakeNode::start().await;
    let two = client(&[&node.endpoint, &second.endpoint], 0, Duration::from_secs(1));
    assert!(matches!(two.leave().await, Err(ClientError::InvalidConfig(_))));
    assert_eq!(second.state.calls(), 0, "a refused leave sends nothing");
    one.remove_node("n9").await.expect("remove");
    match one.remove_node("unknown").await {
        Err(ClientError::Rpc { code, message }) => {
            assert_eq!(code, tonic::Code::NotFound);
            assert!(message.contains("not a member"), "{message}");
        }
        other => panic!("expected not found, got {other:?}"),
    }
}
