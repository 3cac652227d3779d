//! Bad input: configs and member infos that must be refused at start, seeds
//! that lead nowhere, and peers that publish garbage.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use chitchat::transport::UdpTransport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use common::{config, free_udp_addr, info, init_tracing, observe_for, start, wait_for, INTERVAL};
use ringkv_gossip::{Gossip, GossipError};

#[tokio::test]
async fn unparsable_seed_is_refused_at_start() {
    init_tracing();
    let me = info("n1", 1, 1);
    for seed in ["not a seed", "127.0.0.1", "127.0.0.1:99999", ":7946", "[::1:7946"] {
        let mut config = config("seeds", &me, free_udp_addr(), &[]);
        config.seeds = vec![seed.to_string()];
        match Gossip::start(config, me.clone()).await {
            Err(error @ GossipError::InvalidSeed { .. }) => {
                let message = error.to_string();
                assert!(message.starts_with("invalid seed"), "{message}");
                assert!(message.contains(seed), "{message}");
            }
            other => panic!("seed {seed:?}: expected InvalidSeed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_config_or_member_is_refused_at_start() {
    init_tracing();
    let me = info("n1", 1, 1);
    let addr = free_udp_addr();
    let refused = |config: ringkv_gossip::GossipConfig, me: ringkv_gossip::MemberInfo, fragment: &'static str| async move {
        match Gossip::start(config, me).await {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            Ok(gossip) => panic!("started {gossip:?}, expected an error with {fragment:?}"),
        }
    };
    let mut bad = config("bad", &me, addr, &[]);
    bad.gossip_interval = Duration::ZERO;
    refused(bad, me.clone(), "invalid gossip config: gossip_interval").await;
    let mut bad = config("bad", &me, addr, &[]);
    bad.cluster_name = "two words".into();
    refused(bad, me.clone(), "cluster_name has byte 0x20").await;
    refused(
        config("bad", &me, addr, &[]),
        info("n2", 1, 1),
        "the config's node id is \"n1\"",
    )
    .await;
    refused(
        config("bad", &me, addr, &[]),
        info("n1", 2, 1),
        "generation is 2, the config's is 1",
    )
    .await;
    let mut zero_vnodes = me.clone();
    zero_vnodes.vnodes = 0;
    refused(config("bad", &me, addr, &[]), zero_vnodes, "vnodes is 0").await;
    let mut bad_zone = me.clone();
    bad_zone.zone = Some(String::new());
    refused(config("bad", &me, addr, &[]), bad_zone, "invalid zone").await;
}

#[tokio::test]
async fn address_in_use_is_a_bind_error() {
    init_tracing();
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local addr");
    let me = info("n1", 1, 1);
    match Gossip::start(config("bind", &me, addr, &[]), me).await {
        Err(error @ GossipError::Bind { .. }) => {
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("cannot open the gossip socket on {addr}: ")),
                "{message}"
            );
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

/// A seed on a closed port: the node starts, sees only itself, and shuts
/// down promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_seed_leaves_the_node_alone() {
    init_tracing();
    let closed = free_udp_addr();
    let me = info("n1", 1, 1);
    let (gossip, _) = tokio::time::timeout(Duration::from_secs(5), start("lonely", me.clone(), &[closed], |_| {}))
        .await
        .expect("start does not hang on an unreachable seed");
    observe_for(&mut gossip.members(), INTERVAL * 5, |view| {
        assert_eq!(view.members.len(), 1, "{view:#?}");
        assert_eq!(view.members["n1"].info, me);
        assert!(view.members["n1"].alive);
        assert!(view.conflicts.is_empty());
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), gossip.shutdown())
        .await
        .expect("shutdown within 5 s")
        .expect("clean shutdown");
}

/// Peers speaking chitchat with our cluster name but not our schema. Each is
/// skipped; the good members are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_peers_is_ignored() {
    init_tracing();
    let cluster = "garbage";
    let good = [info("n0", 1, 0), info("n1", 1, 1)];
    let (n0, n0_addr) = start(cluster, good[0].clone(), &[], |_| {}).await;
    let (n1, _) = start(cluster, good[1].clone(), &[n0_addr], |_| {}).await;
    let valid = |id: &str| info(id, 1, 9);
    let garbage_peers: Vec<(&str, Vec<(String, String)>)> = vec![
        ("g-addr", with(valid("g-addr"), "client_addr", "not an address")),
        ("g-vnodes", with(valid("g-vnodes"), "vnodes", "lots")),
        ("g-status", with(valid("g-status"), "status", "zombie")),
        ("g-zone", with(valid("g-zone"), "zone", "no spaces allowed")),
        ("g-long", with(valid("g-long"), "zone", &"z".repeat(1_000))),
        ("g-missing", without(valid("g-missing"), "replica_addr")),
        ("g-empty", Vec::new()),
        ("bad id!", key_values(valid("bad-id"))),
        ("", key_values(valid("empty-id"))),
    ];
    let mut raw = Vec::new();
    for (node_id, key_values) in garbage_peers {
        raw.push(raw_peer(cluster, node_id, n0_addr, key_values).await);
    }
    // A peer that starts valid and turns to garbage drops out of the view.
    let turncoat = raw_peer(cluster, "g-later", n0_addr, key_values(valid("g-later"))).await;

    for node in [&n0, &n1] {
        wait_for(
            &mut node.members(),
            Duration::from_secs(10),
            "n0, n1 and g-later",
            |view| {
                view.members.len() == 3
                    && view.members.values().all(|entry| entry.alive)
                    && view.members.contains_key("g-later")
            },
        )
        .await;
    }
    // Every raw peer has exchanged state with the cluster (it holds n0's
    // values), so ours hold its garbage, and still skip it.
    for peer in &raw {
        wait_for_raw_peer_to_know(peer, "n0").await;
    }
    turncoat
        .with_chitchat(|chitchat| chitchat.self_node_state().set("status", "zombie"))
        .await;
    for node in [&n0, &n1] {
        wait_for(
            &mut node.members(),
            Duration::from_secs(10),
            "g-later skipped",
            |view| !view.members.contains_key("g-later"),
        )
        .await;
        observe_for(&mut node.members(), INTERVAL * 3, |view| {
            assert_eq!(view.members.keys().collect::<Vec<_>>(), ["n0", "n1"], "{view:#?}");
            assert!(view.conflicts.is_empty());
        })
        .await;
    }
    for peer in raw.into_iter().chain([turncoat]) {
        peer.shutdown().await.expect("raw peer shutdown");
    }
    n0.shutdown().await.expect("clean shutdown");
    n1.shutdown().await.expect("clean shutdown");
}

fn key_values(info: ringkv_gossip::MemberInfo) -> Vec<(String, String)> {
    vec![
        ("client_addr".into(), info.client_addr.to_string()),
        ("replica_addr".into(), info.replica_addr.to_string()),
        ("vnodes".into(), info.vnodes.to_string()),
        ("zone".into(), info.zone.unwrap_or_default()),
        ("status".into(), info.status.as_str().into()),
    ]
}

fn with(info: ringkv_gossip::MemberInfo, key: &str, value: &str) -> Vec<(String, String)> {
    let mut key_values = key_values(info);
    for (k, v) in &mut key_values {
        if k == key {
            *v = value.to_string();
        }
    }
    key_values
}

fn without(info: ringkv_gossip::MemberInfo, key: &str) -> Vec<(String, String)> {
    let mut key_values = key_values(info);
    key_values.retain(|(k, _)| k != key);
    key_values
}

/// A bare chitchat node that publishes exactly `key_values`.
async fn raw_peer(cluster: &str, node_id: &str, seed: SocketAddr, key_values: Vec<(String, String)>) -> ChitchatHandle {
    let addr = free_udp_addr();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(node_id, 1, addr),
        cluster_id: cluster.to_string(),
        gossip_interval: INTERVAL,
        listen_addr: addr,
        seed_nodes: vec![seed.to_string()],
        failure_detector_config: FailureDetectorConfig {
            initial_interval: INTERVAL,
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(3_600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    spawn_chitchat(config, key_values, &UdpTransport)
        .await
        .expect("raw peer starts")
}

async fn wait_for_raw_peer_to_know(peer: &ChitchatHandle, node_id: &str) {
    let knows = || async {
        peer.with_chitchat(|chitchat| {
            chitchat
                .node_states()
                .iter()
                .any(|(id, state)| &*id.node_id == node_id && state.get("status").is_some())
        })
        .await
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !knows().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} never learnt {node_id}",
            peer.chitchat_id()
        );
        tokio::time::sleep(INTERVAL / 4).await;
    }
}
