//! Probe writes during a partition, and the time replicas take to agree after the heal.
//!
//! During each partition the driver writes `probe_keys` keys from one node on every side
//! (blind puts, W=1, so each side's write is accepted through a sloppy quorum and the
//! sides' writes are concurrent). After the heal it polls every live node's own copy of
//! every probe key through the replica API (`Replica/Read`: the node's stored state, no
//! coordination and no read repair, so polling does not speed convergence up).
//!
//! **Converged** means: for every probe key, at least min(N, live nodes) nodes hold a
//! state, all of those states are identical, and the state contains every acknowledged
//! probe write as a sibling. The convergence time is the first poll at which that holds,
//! minus the heal time; it is at most the poll interval late.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto::replica_client::ReplicaClient;
use ringkv_client::proto::ReplicaReadRequest;
use ringkv_client::{Client, Consistency, Context, WriteOptions};
use ringkv_storage::KeyState;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// How often replicas are compared after a heal.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_ATTEMPTS: u32 = 5;

/// Probe keys with the values acknowledged for each.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// (key, acknowledged values).
    pub keys: Vec<(String, Vec<Bytes>)>,
}

impl Probes {
    /// How many probe writes were acknowledged.
    pub(crate) fn acked(&self) -> usize {
        self.keys.iter().map(|(_, v)| v.len()).sum()
    }
}

/// Writes `count` probe keys for fault number `fault` through one node of each side
/// (`writers`: node endpoints, one per side), retrying each write a few times.
pub(crate) async fn write_probes(fault: usize, count: u32, writers: &[(usize, SocketAddr)]) -> Probes {
    let mut probes = Probes::default();
    let clients: Vec<(usize, Option<Client>)> = writers
        .iter()
        .map(|(side, address)| {
            let client = Client::builder()
                .endpoints([address.to_string()])
                .request_timeout(CALL_TIMEOUT)
                .retries(0)
                .build()
                .ok();
            (*side, client)
        })
        .collect();
    for j in 0..count {
        let key = format!("probe-{fault}-{j}");
        let mut acked = Vec::new();
        for (side, client) in &clients {
            let Some(client) = client else { continue };
            let value = Bytes::from(format!("probe-{fault}-{j}-side{side}"));
            let options = WriteOptions {
                consistency: Some(Consistency::One),
                timeout: Some(CALL_TIMEOUT),
                ttl: None,
            };
            for _ in 0..PROBE_ATTEMPTS {
                if client
                    .put_with(key.clone(), value.clone(), &Context::empty(), options)
                    .await
                    .is_ok()
                {
                    acked.push(value.clone());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        probes.keys.push((key, acked));
    }
    probes
}

fn channel(address: SocketAddr) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{address}"))
        .ok()?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect_lazy()
        .into()
}

/// Polls `nodes` (live node endpoints) until every probe key has converged or `deadline`
/// passes; returns the time from `healed_at`, or `None` on the deadline.
pub async fn time_to_converge(
    nodes: &[SocketAddr],
    replicas: u8,
    probes: &Probes,
    healed_at: Instant,
    deadline: Instant,
) -> Option<Duration> {
    let channels: Vec<Channel> = nodes.iter().filter_map(|a| channel(*a)).collect();
    let holders_needed = usize::from(replicas).min(channels.len());
    loop {
        let polled_at = Instant::now();
        let mut all = true;
        for (key, acked) in &probes.keys {
            if !key_converged(&channels, key, acked, holders_needed).await {
                all = false;
                break;
            }
        }
        if all {
            return Some(polled_at.duration_since(healed_at));
        }
        if Instant::now() + POLL_INTERVAL > deadline {
            return None;
        }
        tokio::time::sleep_until(polled_at + POLL_INTERVAL).await;
    }
}

async fn key_converged(channels: &[Channel], key: &str, acked: &[Bytes], holders_needed: usize) -> bool {
    let mut states: Vec<KeyState> = Vec::new();
    for channel in channels {
        let mut replica = ReplicaClient::new(channel.clone());
        let request = ReplicaReadRequest {
            key: Bytes::from(key.to_owned()),
        };
        let Ok(response) = replica.read(request).await else {
            // A node that does not answer cannot be shown to agree.
            return false;
        };
        let bytes = response.into_inner().state;
        if bytes.is_empty() {
            continue;
        }
        match ringkv_storage::record::decode(&bytes) {
            Ok(state) => states.push(state),
            Err(_) => return false,
        }
    }
    if states.len() < holders_needed {
        return false;
    }
    let first = &states[0];
    if states.iter().any(|s| s != first) {
        return false;
    }
    acked
        .iter()
        .all(|value| first.siblings().iter().any(|s| s.value() == Some(value)))
}
