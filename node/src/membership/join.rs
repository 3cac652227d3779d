//! Joining a running cluster through seed nodes.
//!
//! Before anything is announced, the new node asks its seeds (gRPC `host:port`
//! addresses of running members) who they are: a seed of another cluster, or a running
//! member that already uses this node's id, is a clear error and nothing is started. The
//! seeds' gossip addresses then become chitchat's seeds. After gossip has shown the
//! members the seeds reported, [`pull_own_ranges`] streams this node's ranges from their
//! holders and the node announces itself up.

use std::time::Duration;

use ringkv_client::proto;
use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::proto::replica_client::ReplicaClient;
use ringkv_ring::{Member, Ring};
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::membership::LocalState;
use crate::network::Network;
use crate::node_core::NodeCore;
use crate::server::StartError;
use crate::transfer::{pull_ranges, PullStats, TransferError};

/// How long a new node waits for gossip to show the members its seeds reported.
pub const MEMBERS_WAIT_MAX: Duration = Duration::from_secs(20);
/// Attempts at pulling a joining node's ranges before it gives up (and stays joining).
pub const PULL_ATTEMPTS_MAX: u32 = 20;
const SEED_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// What the seeds told a starting node.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Gossip addresses of the seeds that answered.
    pub gossip_seeds: Vec<String>,
    /// Whether this node id is already a (dead) member: a restart, not a join.
    pub known_member: bool,
    /// Members the seeds' ring holds (including this node if known).
    pub members: Vec<String>,
}

/// Asks the configured seeds about the cluster. No seeds: a new cluster of one.
pub async fn discover(config: &NodeConfig, network: &Network) -> Result<Discovery, StartError> {
    if config.join.is_empty() {
        return Ok(Discovery::default());
    }
    let deadline = Instant::now() + config.join_timeout;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        for seed in &config.join {
            match ask_seed(config, network, seed).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(SeedAnswer::Refused(e)) => return Err(e),
                Err(SeedAnswer::Unreachable(e)) => last_error = format!("{seed}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(StartError::NoSeedReachable {
        seeds: config.join.join(", "),
        waited: config.join_timeout,
        last_error,
    })
}

enum SeedAnswer {
    Refused(StartError),
    Unreachable(String),
}

async fn ask_seed(config: &NodeConfig, network: &Network, seed: &str) -> Result<Option<Discovery>, SeedAnswer> {
    let uri = format!("http://{seed}");
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| {
            SeedAnswer::Refused(StartError::BadSeedAddress {
                seed: seed.to_owned(),
                reason: e.to_string(),
            })
        })?
        .connect_timeout(SEED_RPC_TIMEOUT)
        .timeout(SEED_RPC_TIMEOUT);
    let channel = network
        .channel(endpoint)
        .await
        .map_err(|e| SeedAnswer::Unreachable(e.to_string()))?;
    let ping = proto::PingRequest {
        from: config.node_id.to_string(),
        cluster_name: config.cluster_name.clone(),
    };
    let pong = match ReplicaClient::new(channel.clone()).ping(ping).await {
        Ok(pong) => pong.into_inner(),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            return Err(SeedAnswer::Refused(StartError::ClusterMismatch {
                seed: seed.to_owned(),
                message: status.message().to_owned(),
            }))
        }
        Err(status) => return Err(SeedAnswer::Unreachable(status.message().to_owned())),
    };
    if pong.gossip_address.is_empty() {
        return Err(SeedAnswer::Refused(StartError::ClusterMismatch {
            seed: seed.to_owned(),
            message: format!("{} runs with a static member list and cannot be joined", pong.node_id),
        }));
    }
    let status = KvClient::new(channel)
        .status(proto::StatusRequest {})
        .await
        .map_err(|s| SeedAnswer::Unreachable(s.message().to_owned()))?
        .into_inner();
    let me = config.node_id.as_str();
    let mut discovery = Discovery {
        gossip_seeds: vec![pong.gossip_address],
        ..Discovery::default()
    };
    for member in &status.members {
        if member.state == "removed" {
            if member.id == me {
                return Err(SeedAnswer::Refused(StartError::DuplicateNodeId {
                    id: me.to_owned(),
                    address: "a removed member (ids of removed nodes cannot be reused)".to_owned(),
                }));
            }
            continue;
        }
        if member.id == me {
            if member.alive && member.address != config.advertise.to_string() {
                return Err(SeedAnswer::Refused(StartError::DuplicateNodeId {
                    id: me.to_owned(),
                    address: member.address.clone(),
                }));
            }
            discovery.known_member = true;
        }
        discovery.members.push(member.id.clone());
    }
    Ok(Some(discovery))
}

/// Waits until this node's ring holds the members the seeds reported, then pulls this
/// node's ranges and announces it up.
pub async fn pull_own_ranges(core: &NodeCore, discovery: &Discovery) -> Result<PullStats, TransferError> {
    let deadline = Instant::now() + MEMBERS_WAIT_MAX;
    loop {
        let ring = core.membership.ring();
        let seen = discovery
            .members
            .iter()
            .all(|m| ring.members().iter().any(|r| r.id.as_str() == m));
        if (seen && ring.contains(core.me())) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut attempt = 0;
    loop {
        let new = core.membership.ring();
        let others: Vec<Member> = new.members().iter().filter(|m| m.id != *core.me()).cloned().collect();
        let old = Ring::new(others).unwrap_or_else(|_| unreachable!("a subset of a valid ring is valid"));
        match pull_ranges(core, &old, &new).await {
            Ok(stats) => {
                core.membership.set_local_state(LocalState::Up);
                return Ok(stats);
            }
            // Merging the same ranges again is harmless: a retry starts over.
            Err(e) if attempt < PULL_ATTEMPTS_MAX => {
                attempt += 1;
                tracing::warn!(node = %core.me(), error = %e, attempt, "join: pulling ranges failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
