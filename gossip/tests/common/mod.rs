//! Helpers for the gossip tests: nodes on loopback UDP with ports the OS
//! picked, and waits on a node's `MemberView` bounded by a deadline.
//!
//! Every test uses its own cluster name: a port freed by one test (a stopped
//! node) can be handed to a node of another test running in parallel, and the
//! cluster name is what keeps the two clusters from merging.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ringkv_gossip::{Gossip, GossipConfig, GossipError, MemberInfo, MemberStatus, MemberView};
use tokio::sync::watch;

/// Gossip interval of every test node.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Attempts at finding a free port before a test gives up.
const BIND_ATTEMPTS_MAX: u32 = 10;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A loopback UDP address that was free a moment ago: bound, read, released.
pub fn free_udp_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().expect("local addr")
}

/// The info node `index` publishes. Its addresses are data only, never bound.
pub fn info(node_id: &str, generation: u64, index: u16) -> MemberInfo {
    MemberInfo {
        node_id: node_id.to_string(),
        generation,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 20_000 + 2 * index)),
        replica_addr: SocketAddr::from(([127, 0, 0, 1], 20_001 + 2 * index)),
        vnodes: 16 + index,
        zone: Some(format!("zone-{}", index % 3)),
        status: MemberStatus::Up,
    }
}

pub fn config(cluster: &str, me: &MemberInfo, addr: SocketAddr, seeds: &[SocketAddr]) -> GossipConfig {
    let mut config = GossipConfig::new(me.node_id.clone(), cluster, me.generation, addr);
    config.seeds = seeds.iter().map(SocketAddr::to_string).collect();
    config.gossip_interval = INTERVAL;
    config.dead_node_grace_period = Duration::from_secs(60);
    config
}

/// Starts a node on a fresh loopback port, retrying if another test took
/// the port between our probe and chitchat's bind.
pub async fn start(
    cluster: &str,
    me: MemberInfo,
    seeds: &[SocketAddr],
    tune: impl Fn(&mut GossipConfig),
) -> (Gossip, SocketAddr) {
    for _ in 0..BIND_ATTEMPTS_MAX {
        let addr = free_udp_addr();
        let mut config = config(cluster, &me, addr, seeds);
        tune(&mut config);
        match Gossip::start(config, me.clone()).await {
            Ok(gossip) => return (gossip, addr),
            Err(GossipError::Bind { .. }) => continue,
            Err(error) => panic!("cannot start {}: {error}", me.node_id),
        }
    }
    panic!("no free port for {} after {BIND_ATTEMPTS_MAX} attempts", me.node_id);
}

/// Waits until `view` satisfies `done`, at most `within`; returns how long it
/// took. Panics with the last view on timeout.
pub async fn wait_for(
    members: &mut watch::Receiver<MemberView>,
    within: Duration,
    what: &str,
    done: impl Fn(&MemberView) -> bool,
) -> Duration {
    let start = Instant::now();
    let outcome = tokio::time::timeout(within, members.wait_for(|view| done(view)))
        .await
        .map(|waited| waited.is_ok());
    match outcome {
        Ok(true) => start.elapsed(),
        Ok(false) => panic!("view closed while waiting for {what}"),
        Err(_) => panic!(
            "timed out after {within:?} waiting for {what}; last view: {:#?}",
            *members.borrow()
        ),
    }
}

/// Checks every view `members` publishes during `window` (the current one
/// included) with `check`.
pub async fn observe_for(members: &mut watch::Receiver<MemberView>, window: Duration, check: impl Fn(&MemberView)) {
    let end = tokio::time::Instant::now() + window;
    loop {
        check(&members.borrow_and_update());
        match tokio::time::timeout_at(end, members.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => panic!("view closed while observing"),
            Ok(Ok(())) => {}
        }
    }
}

/// True when `view` has exactly the members `expected`, all alive, each with
/// exactly the expected info.
pub fn has_exactly_alive(view: &MemberView, expected: &[MemberInfo]) -> bool {
    view.members.len() == expected.len()
        && expected.iter().all(|info| {
            view.members
                .get(&info.node_id)
                .is_some_and(|entry| entry.alive && entry.info == *info)
        })
}

pub fn is_alive(view: &MemberView, node_id: &str) -> bool {
    view.members.get(node_id).is_some_and(|entry| entry.alive)
}

pub fn is_dead(view: &MemberView, node_id: &str) -> bool {
    view.members.get(node_id).is_some_and(|entry| !entry.alive)
}

/// Waits on every receiver at once (so that none misses a short-lived view
/// while another is being waited on) until each satisfies `done`; returns,
/// per receiver, the time from `since` until it did.
pub async fn wait_for_all(
    receivers: Vec<watch::Receiver<MemberView>>,
    since: Instant,
    within: Duration,
    what: &'static str,
    done: impl Fn(&MemberView) -> bool + Clone + Send + Sync + 'static,
) -> Vec<Duration> {
    let waits: Vec<_> = receivers
        .into_iter()
        .map(|mut members| {
            let done = done.clone();
            tokio::spawn(async move {
                wait_for(&mut members, within, what, done).await;
                since.elapsed()
            })
        })
        .collect();
    let mut took = Vec::with_capacity(waits.len());
    for wait in waits {
        took.push(wait.await.expect("wait task"));
    }
    took
}
