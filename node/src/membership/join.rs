//! Joining a running cluster through seed nodes.
//!
//! Before anything is announced, the new node asks its seeds (gRPC `host:port`
//! addresses of running members) who they are: a seed of another cluster, or a running
//! member that already uses this node's id, is a clear error and nothing is started. The
//! seeds' gossip addresses then become chitchat's seeds. After gossip has shown the
//! members the seeds reported, `crate::maintenance::transfer::pull_own_ranges` streams
//! this node's ranges from their holders and the node announces itself up.
//!
//! A node that is a member already records so in its data directory, with the gossip
//! addresses it joined through ([`remember`]). When it restarts and no seed answers
//! when asked once (the whole cluster, or most of it, is restarting, say after a power
//! cut: each node would wait for another to be up first), it starts as the member it is,
//! gossiping to those addresses, instead of waiting out the join timeout or refusing to
//! start.

use std::time::Duration;

use ringkv_client::proto;
use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::proto::replica_client::ReplicaClient;
use tokio::time::Instant;

use ringkv_storage::{Durability, Engine, EngineError};

use crate::config::NodeConfig;
use crate::network::Network;

/// Why a node could not join through its seeds.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No seed answered.
    #[error("no seed answered within {waited:?} (tried {seeds}): {last_error}")]
    NoSeedReachable {
        /// The seeds.
        seeds: String,
        /// How long the node tried.
        waited: Duration,
        /// The last failure.
        last_error: String,
    },
    /// A seed address does not parse.
    #[error("invalid seed address {seed:?}: {reason}")]
    BadSeedAddress {
        /// The seed.
        seed: String,
        /// Why.
        reason: String,
    },
    /// A seed belongs to another cluster (or cannot be joined).
    #[error("seed {seed} refused to be joined: {message}")]
    ClusterMismatch {
        /// The seed.
        seed: String,
        /// What it said.
        message: String,
    },
    /// The node id is taken by a running member.
    #[error("node id {id} is already used by {address}: pick another id")]
    DuplicateNodeId {
        /// The id.
        id: String,
        /// Who has it.
        address: String,
    },
}

const SEED_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// What the seeds told a starting node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovery {
    /// Gossip addresses of the seeds that answered.
    pub gossip_seeds: Vec<String>,
    /// Whether this node id is already a (dead) member: a restart, not a join.
    pub known_member: bool,
    /// Members the seeds' ring holds (including this node if known).
    pub members: Vec<String>,
}

/// The data directory's record that this node is a member: the gossip addresses it may
/// restart through, one per line.
const META_MEMBER_SEEDS: &str = "member_gossip_seeds";

/// Records that this node is a member of its cluster, reachable through `gossip_seeds`.
pub(crate) fn remember(engine: &dyn Engine, gossip_seeds: &[String]) -> Result<(), EngineError> {
    engine.put_meta(META_MEMBER_SEEDS, gossip_seeds.join("\n").as_bytes(), Durability::Sync)
}

/// The gossip addresses a member recorded with [`remember`]; `None` for a node that was
/// never a member here.
pub(crate) fn remembered(engine: &dyn Engine) -> Result<Option<Vec<String>>, EngineError> {
    Ok(engine.get_meta(META_MEMBER_SEEDS)?.map(|bytes| {
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }))
}

/// Asks the configured seeds about the cluster. No seeds: a new cluster of one. A node
/// that is a member already (`remembered`) starts as one when no seed answers in time.
pub(crate) async fn discover(
    config: &NodeConfig,
    network: &Network,
    remembered: Option<Vec<String>>,
) -> Result<Discovery, JoinError> {
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
        // A member restarting asks each seed once: its seeds may be restarting too, each
        // asking the others, and none serves before it has its answer. Waiting out the
        // join timeout here kept a cluster whose members restarted together unavailable
        // for that long, with enough replicas running (seed 114317178650).
        if remembered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(gossip_seeds) = remembered {
        tracing::warn!(
            node = %config.node_id,
            seeds = %config.join.join(", "),
            last_error,
            "no seed answered: starting as the member this node already is"
        );
        return Ok(Discovery {
            gossip_seeds,
            known_member: true,
            members: Vec::new(),
        });
    }
    Err(JoinError::NoSeedReachable {
        seeds: config.join.join(", "),
        waited: config.join_timeout,
        last_error,
    })
}

enum SeedAnswer {
    Refused(JoinError),
    Unreachable(String),
}

async fn ask_seed(config: &NodeConfig, network: &Network, seed: &str) -> Result<Option<Discovery>, SeedAnswer> {
    let uri = format!("http://{seed}");
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| {
            SeedAnswer::Refused(JoinError::BadSeedAddress {
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
            return Err(SeedAnswer::Refused(JoinError::ClusterMismatch {
                seed: seed.to_owned(),
                message: status.message().to_owned(),
            }))
        }
        Err(status) => return Err(SeedAnswer::Unreachable(status.message().to_owned())),
    };
    if pong.gossip_address.is_empty() {
        return Err(SeedAnswer::Refused(JoinError::ClusterMismatch {
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
                return Err(SeedAnswer::Refused(JoinError::DuplicateNodeId {
                    id: me.to_owned(),
                    address: "a removed member (ids of removed nodes cannot be reused)".to_owned(),
                }));
            }
            continue;
        }
        if member.state == "left" {
            // Gone: not waited for; this node, if it is the one, joins afresh.
            continue;
        }
        if member.id == me {
            if member.alive && member.address != config.advertise.to_string() {
                return Err(SeedAnswer::Refused(JoinError::DuplicateNodeId {
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
