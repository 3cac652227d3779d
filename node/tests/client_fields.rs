//! Every field a client controls, generated at random against a running cluster: any
//! request gets an answer or a node's own clear error (a gRPC status that names its kind),
//! never a panic or a dropped connection, and a write the node acknowledges is visible to
//! the next read of all replicas.
//!
//! The `forwarded` flag is among the fields: a client that sets it reaches a replica
//! that coordinates the write as it would an unforwarded one, or a node outside the key's
//! replicas that refuses it (`not-replica`, the only `FailedPrecondition` allowed here)
//! instead of writing: the flag stops a second forward, and nothing else.
//!
//! `PROPTEST_CASES=5000 cargo test -p ringkv-node --test client_fields` runs a longer
//! search than the default.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use ringkv_client::proto::{self, kv_client::KvClient};
use ringkv_storage::{KEY_BYTES_DEFAULT, VALUE_BYTES_DEFAULT};
use support::TestCluster;
use tonic::transport::Channel;

/// Nodes, and copies of each key: fewer copies than nodes, so some nodes are not replicas
/// of a key and a request that claims to be forwarded can reach a node outside its list.
const NODES: usize = 4;
const REPLICAS: u8 = 2;
/// A TTL long enough that an acknowledged write cannot expire before it is read back.
const TTL_READABLE_MS: u64 = 60_000;
/// Contexts kept from earlier answers, to send again as they are or damaged.
const CONTEXTS_KEPT: usize = 64;

#[derive(Clone, Debug)]
enum Op {
    Put,
    Delete,
    Get,
}

#[derive(Clone, Debug)]
enum ContextChoice {
    Empty,
    Arbitrary(Vec<u8>),
    /// The n-th kept context (modulo how many are kept), unchanged.
    Kept(usize),
    /// A kept context with one bit flipped.
    KeptFlipped(usize, usize),
    /// A kept context cut short.
    KeptTruncated(usize, usize),
}

#[derive(Clone, Debug)]
struct Case {
    node: usize,
    op: Op,
    key: Vec<u8>,
    value: Vec<u8>,
    context: ContextChoice,
    consistency: Option<proto::Consistency>,
    timeout_ms: u32,
    ttl_ms: u64,
    forwarded: bool,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // A few keys again and again, so writes meet earlier ones and their contexts.
        4 => (0..6u8).prop_map(|i| format!("k{i}").into_bytes()),
        2 => proptest::collection::vec(any::<u8>(), 1..40),
        1 => Just(Vec::new()),
        // Around the key limit.
        1 => (KEY_BYTES_DEFAULT as usize - 2..KEY_BYTES_DEFAULT as usize + 3).prop_map(|n| vec![b'x'; n]),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..32),
        2 => Just(Vec::new()),
        // Around the value limit.
        1 => (VALUE_BYTES_DEFAULT as usize - 1..VALUE_BYTES_DEFAULT as usize + 2).prop_map(|n| vec![7; n]),
    ]
}

fn context() -> impl Strategy<Value = ContextChoice> {
    prop_oneof![
        2 => Just(ContextChoice::Empty),
        1 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(ContextChoice::Arbitrary),
        4 => any::<usize>().prop_map(ContextChoice::Kept),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(n, bit)| ContextChoice::KeptFlipped(n, bit)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(n, cut)| ContextChoice::KeptTruncated(n, cut)),
    ]
}

fn consistency() -> impl Strategy<Value = Option<proto::Consistency>> {
    let level = prop_oneof![4 => 0..5i32, 1 => any::<i32>()];
    let count = prop_oneof![4 => 0..4u32, 1 => any::<u32>()];
    proptest::option::of((level, count).prop_map(|(level, count)| proto::Consistency { level, count }))
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..NODES,
        prop_oneof![3 => Just(Op::Put), 1 => Just(Op::Delete), 2 => Just(Op::Get)],
        key(),
        value(),
        context(),
        consistency(),
        prop_oneof![4 => Just(0u32), 2 => 1..5_000u32, 1 => any::<u32>()],
        prop_oneof![
            4 => Just(0u64),
            1 => 1..1_000u64,
            1 => TTL_READABLE_MS..TTL_READABLE_MS * 1_000,
            1 => any::<u64>()
        ],
        any::<bool>(),
    )
        .prop_map(
            |(node, op, key, value, context, consistency, timeout_ms, ttl_ms, forwarded)| Case {
                node,
                op,
                key,
                value,
                context,
                consistency,
                timeout_ms,
                ttl_ms,
                forwarded,
            },
        )
}

/// The context bytes a case sends.
fn context_bytes(choice: &ContextChoice, kept: &[Bytes]) -> Bytes {
    let pick = |n: usize| kept.get(n % kept.len().max(1)).cloned().unwrap_or_default();
    match choice {
        ContextChoice::Empty => Bytes::new(),
        ContextChoice::Arbitrary(bytes) => Bytes::from(bytes.clone()),
        ContextChoice::Kept(n) => pick(*n),
        ContextChoice::KeptFlipped(n, bit) => {
            let mut bytes = pick(*n).to_vec();
            if !bytes.is_empty() {
                let bit = bit % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            Bytes::from(bytes)
        }
        ContextChoice::KeptTruncated(n, cut) => {
            let bytes = pick(*n);
            let cut = cut % (bytes.len() + 1);
            bytes.slice(..cut)
        }
    }
}

/// Fails unless `status` is a node's own verdict: a known code with the error-kind header.
fn check_verdict(status: &tonic::Status, case: &Case) -> Result<(), TestCaseError> {
    prop_assert!(
        status.metadata().contains_key("ringkv-error"),
        "not a node's verdict (a panic or a dropped connection?): {status:?} for {case:?}"
    );
    prop_assert!(
        matches!(
            status.code(),
            tonic::Code::InvalidArgument | tonic::Code::Unavailable | tonic::Code::FailedPrecondition
        ),
        "unexpected code: {status:?} for {case:?}"
    );
    if status.code() == tonic::Code::FailedPrecondition {
        prop_assert!(
            case.forwarded,
            "only a forwarded request may be refused as not-replica: {status:?}"
        );
    }
    Ok(())
}

struct Harness {
    clients: Vec<KvClient<Channel>>,
    kept: Arc<Mutex<Vec<Bytes>>>,
    /// How many answers of each kind the run saw ("ok put read back", "ok get", or an
    /// error's kind), so the test can tell it reached what it means to test.
    seen: Mutex<std::collections::BTreeMap<String, usize>>,
}

impl Harness {
    fn saw(&self, what: &str) {
        *self.seen.lock().unwrap().entry(what.to_owned()).or_default() += 1;
    }

    fn saw_error(&self, status: &tonic::Status) {
        let kind = status
            .metadata()
            .get("ringkv-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        self.saw(&kind);
    }

    fn keep(&self, context: Bytes) {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() == CONTEXTS_KEPT {
            kept.remove(0);
        }
        kept.push(context);
    }

    async fn run(&self, case: Case) -> Result<(), TestCaseError> {
        let mut kv = self.clients[case.node].clone();
        let context = context_bytes(&case.context, &self.kept.lock().unwrap());
        match case.op {
            Op::Put => {
                let value = Bytes::from(case.value.clone());
                let written = kv
                    .put(proto::PutRequest {
                        key: Bytes::from(case.key.clone()),
                        value: value.clone(),
                        context,
                        consistency: case.consistency,
                        timeout_ms: case.timeout_ms,
                        ttl_ms: case.ttl_ms,
                        forwarded: case.forwarded,
                    })
                    .await;
                match written {
                    Err(status) => {
                        self.saw_error(&status);
                        check_verdict(&status, &case)
                    }
                    Ok(response) => {
                        let response = response.into_inner();
                        prop_assert!(response.replicas_acked >= 1, "an ack counts its copies: {response:?}");
                        self.keep(response.context.clone());
                        if case.ttl_ms == 0 || case.ttl_ms >= TTL_READABLE_MS {
                            self.check_visible(&case, &value).await?;
                            self.saw("put read back");
                        }
                        Ok(())
                    }
                }
            }
            Op::Delete => {
                let deleted = kv
                    .delete(proto::DeleteRequest {
                        key: Bytes::from(case.key.clone()),
                        context,
                        consistency: case.consistency,
                        timeout_ms: case.timeout_ms,
                        forwarded: case.forwarded,
                    })
                    .await;
                match deleted {
                    Err(status) => {
                        self.saw_error(&status);
                        check_verdict(&status, &case)
                    }
                    Ok(response) => {
                        prop_assert!(response.into_inner().replicas_acked >= 1);
                        self.saw("delete");
                        Ok(())
                    }
                }
            }
            Op::Get => {
                let read = kv
                    .get(proto::GetRequest {
                        key: Bytes::from(case.key.clone()),
                        consistency: case.consistency,
                        timeout_ms: case.timeout_ms,
                    })
                    .await;
                match read {
                    Err(status) => {
                        self.saw_error(&status);
                        check_verdict(&status, &case)
                    }
                    Ok(response) => {
                        self.keep(response.into_inner().context);
                        self.saw("get");
                        Ok(())
                    }
                }
            }
        }
    }

    /// An acknowledged write is among the values a read of every replica returns, from
    /// another node than the one that took it.
    async fn check_visible(&self, case: &Case, value: &Bytes) -> Result<(), TestCaseError> {
        let mut kv = self.clients[(case.node + 1) % NODES].clone();
        let read = kv
            .get(proto::GetRequest {
                key: Bytes::from(case.key.clone()),
                consistency: Some(proto::Consistency {
                    level: proto::Level::All as i32,
                    count: 0,
                }),
                timeout_ms: 0,
            })
            .await;
        let read = match read {
            Ok(read) => read.into_inner(),
            Err(status) => {
                return Err(TestCaseError::fail(format!(
                    "read-back failed: {status:?} for {case:?}"
                )))
            }
        };
        prop_assert!(
            read.siblings.iter().any(|s| s.value == *value),
            "an acknowledged write is missing from a read of all replicas: {case:?}, read {read:?}"
        );
        Ok(())
    }
}

#[test]
fn every_client_field_gets_an_answer_or_a_clear_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = runtime.block_on(TestCluster::start(NODES, REPLICAS));
    let clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for i in 0..NODES {
            clients.push(
                KvClient::connect(format!("http://{}", cluster.address(i)))
                    .await
                    .unwrap(),
            );
        }
        clients
    });
    let harness = Harness {
        clients,
        kept: Arc::new(Mutex::new(Vec::new())),
        seen: Mutex::new(std::collections::BTreeMap::new()),
    };
    let mut runner = TestRunner::new(Config {
        // Failures are reported with the case; no regression file is written in the tree.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| runtime.block_on(harness.run(case)));
    // Every node still answers after all that.
    runtime.block_on(async {
        for i in 0..NODES {
            cluster.client_for(i).status().await.unwrap();
        }
    });
    runtime.block_on(cluster.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = harness.seen.into_inner().unwrap();
    println!("answers: {seen:?}");
    // The run reached each kind of answer it exists to check.
    for what in [
        "put read back",
        "get",
        "delete",
        "limit",
        "context",
        "bad-quorum",
        "unknown-level",
        "not-replica",
        "ttl-too-long",
        "timeout-too-long",
    ] {
        assert!(seen.contains_key(what), "no case led to `{what}`: {seen:?}");
    }
}
