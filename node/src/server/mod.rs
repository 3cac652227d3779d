//! Starting and stopping a node: open the engine, bind the ports, spawn the loops.
//!
//! [`RunningNode::start`] validates everything it can before binding anything, so a bad
//! configuration fails with one clear error and leaves nothing behind. Shutdown stops the
//! gRPC and admin servers and the background loops, then waits (bounded) for in-flight
//! work to release the engine, so the same data directory can be reopened at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringkv_client::proto::kv_server::KvServer;
use ringkv_client::proto::replica_server::ReplicaServer;
use ringkv_ring::RingError;
use ringkv_storage::{Engine, EngineError, MemoryEngine, RocksEngine};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::background::Background;
use crate::clock::NodeClock;
use crate::config::{ConfigError, EngineKind, NodeConfig};
use crate::identity::{DotIssuer, IdentityError, Incarnation};
use crate::inspect::Inspector;
use crate::maintenance::anti_entropy::anti_entropy_loop;
use crate::maintenance::hint_handoff::handoff_loop;
use crate::maintenance::probe::probe_loop;
use crate::maintenance::ring_watch::ring_watch_loop;
use crate::maintenance::tombstone_gc::gc_loop;
use crate::maintenance::transfer::{gained_ranges_loop, ownership_loop, pull_own_ranges};
use crate::membership::gossip::{self, GossipMembership};
use crate::membership::join::{self, JoinError};
use crate::membership::static_list::StaticMembership;
use crate::membership::{LocalState, Membership};
use crate::metrics::Metrics;
use crate::network::{Incoming, Network};
use crate::node_core::NodeCore;
use crate::peers::{Peers, REPLICA_MESSAGE_BYTES_MAX};
use crate::replica::fence::RemovedNodeFence;
use crate::replica::service::ReplicaService;
use crate::request::client_api::KvService;
use crate::request::Coordinator;
use crate::store::merkle_index::MerkleIndex;
use crate::store::{off_runtime, LocalStore};
use ringkv_gossip::{Fate, Gossip, GossipConfig, MemberInfo, MemberStatus};
use tonic::service::interceptor::InterceptedService;

mod admin;

/// How long shutdown waits for in-flight requests to let go of the engine.
pub const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(10);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The member list does not form a ring.
    #[error("membership: {0}")]
    Ring(#[from] RingError),
    /// The storage engine failed to open.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The node's identity could not be read or set up.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The seeds could not be joined (none answered, another cluster, a taken id).
    #[error(transparent)]
    Join(#[from] JoinError),
    /// Gossip could not start.
    #[error("gossip: {0}")]
    Gossip(#[from] ringkv_gossip::GossipError),
    /// The member roster kept in the data directory could not be read.
    #[error(transparent)]
    Roster(#[from] crate::membership::gossip::RosterLoadError),
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Things a caller (tests, `ringkv dev`, the simulation) may inject instead of defaults.
#[derive(Default)]
pub struct StartOptions {
    /// A pre-bound gRPC listener (otherwise `config.listen` is bound).
    pub listener: Option<TcpListener>,
    /// An engine to use instead of opening one from the config.
    pub engine: Option<Arc<dyn Engine>>,
    /// A clock to use instead of the system clock. The caller may keep a clone to step it
    /// (the simulation's clock jumps).
    pub clock: Option<Arc<NodeClock>>,
    /// Accepted gRPC connections from a substitute network (instead of a listener).
    /// `config.listen` is then only the address the node advertises.
    pub incoming: Option<Incoming>,
    /// How to dial peers and seeds (default: TCP).
    pub network: Network,
    /// The gossip network (default: chitchat's UDP transport).
    pub gossip_transport: Option<Arc<dyn ringkv_gossip::transport::Transport>>,
}

/// A started node.
pub struct RunningNode {
    core: Arc<NodeCore>,
    address: SocketAddr,
    admin_address: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    gossip: Option<Arc<GossipMembership>>,
}

async fn bind(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })
}

fn open_engine(config: &NodeConfig) -> Result<Arc<dyn Engine>, StartError> {
    Ok(match config.engine {
        EngineKind::Memory => Arc::new(MemoryEngine::new()),
        EngineKind::Rocksdb => {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| EngineError::Open {
                path: config.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
            Arc::new(RocksEngine::open(&config.data_dir)?)
        }
    })
}

/// The gRPC server over any stream of accepted connections.
fn serve<IO, S>(
    incoming: S,
    kv: KvServer<KvService>,
    replica: InterceptedService<ReplicaServer<ReplicaService>, RemovedNodeFence>,
    mut stop: watch::Receiver<bool>,
) -> futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Send + Unpin + 'static,
    S: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
{
    Box::pin(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(5)))
            .http2_keepalive_timeout(Some(Duration::from_secs(3)))
            .add_service(kv)
            .add_service(replica)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.changed().await;
            }),
    )
}

impl RunningNode {
    /// Starts a node with default options.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, StartError> {
        RunningNode::start_with(config, StartOptions::default()).await
    }

    /// Starts a node.
    pub async fn start_with(config: NodeConfig, options: StartOptions) -> Result<RunningNode, StartError> {
        config.validate()?;
        let clock = options.clock.unwrap_or_else(|| Arc::new(NodeClock::system()));
        // The engine first: it remembers whether this node is a member already, which
        // decides whether it may start without a seed answering.
        let engine = match options.engine {
            Some(engine) => engine,
            None => {
                let config = config.clone();
                tokio::task::spawn_blocking(move || open_engine(&config))
                    .await
                    .map_err(|e| EngineError::Io(e.to_string()))??
            }
        };
        let (membership, gossip, discovery) = match config.gossip_listen {
            None => {
                let membership = StaticMembership::new(
                    &config.node_id,
                    config.advertise,
                    config.vnodes,
                    config.zone.clone(),
                    &config.seeds,
                )?;
                (Arc::new(membership) as Arc<dyn Membership>, None, None)
            }
            Some(gossip_address) => {
                let roster = gossip::load_roster(engine.as_ref())?;
                let own = roster.get(config.node_id.as_str());
                // A member that left and handed everything over (or was removed) joins afresh.
                let own_fate = own.map(|e| e.fate);
                let remembered = match own_fate {
                    Some(Fate::Gone | Fate::Removed) => None,
                    _ => join::remembered(engine.as_ref())?,
                };
                let discovery = join::discover(&config, &options.network, remembered).await?;
                // A member that stopped while leaving goes on leaving.
                let state = if own_fate == Some(Fate::Left) {
                    LocalState::Leaving
                } else if config.join.is_empty() || discovery.known_member {
                    LocalState::Up
                } else {
                    LocalState::Joining
                };
                // Every start is a newer generation than the last, whatever the clock says:
                // the roster orders a member's incarnations by it.
                let generation = clock.wall_ms().max(own.map_or(0, |e| e.generation.saturating_add(1)));
                let mut gossip_config = GossipConfig::new(
                    config.node_id.as_str(),
                    config.cluster_name.as_str(),
                    generation,
                    gossip_address,
                );
                gossip_config.seeds = discovery.gossip_seeds.clone();
                gossip_config.gossip_interval = config.gossip_interval;
                gossip_config.dead_node_grace_period = config.gossip_dead_grace;
                let me = MemberInfo {
                    node_id: config.node_id.to_string(),
                    generation,
                    client_addr: config.advertise,
                    replica_addr: config.advertise,
                    vnodes: config.vnodes,
                    zone: config.zone.clone(),
                    status: match state {
                        LocalState::Joining => MemberStatus::Joining,
                        LocalState::Up => MemberStatus::Up,
                        LocalState::Leaving => MemberStatus::Leaving,
                    },
                };
                let gossip = match &options.gossip_transport {
                    Some(transport) => Gossip::start_with_transport(gossip_config, me, transport.as_ref()).await?,
                    None => Gossip::start(gossip_config, me).await?,
                };
                if state == LocalState::Up {
                    join::remember(engine.as_ref(), &discovery.gossip_seeds)?;
                }
                let membership = GossipMembership::start(
                    config.node_id.clone(),
                    gossip,
                    gossip_address,
                    state,
                    roster,
                    Arc::clone(&engine),
                );
                (
                    Arc::clone(&membership) as Arc<dyn Membership>,
                    Some(membership),
                    Some(discovery),
                )
            }
        };
        let listener = match (options.listener, options.incoming.is_some()) {
            (Some(listener), _) => Some(listener),
            (None, true) => None,
            (None, false) => Some(bind(config.listen).await?),
        };
        let admin_listener = match config.admin_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let incarnation = if config.new_incarnation {
            Incarnation::New
        } else {
            Incarnation::KeepIfClean
        };
        let (dots, start) = DotIssuer::open(
            config.node_id.as_str(),
            &config.data_dir.display().to_string(),
            engine.as_ref(),
            incarnation,
        )?;
        tracing::info!(node = %config.node_id, actor = %dots.actor(), ?start, "identity");
        let address = match &listener {
            Some(listener) => listener.local_addr().map_err(|source| StartError::Bind {
                address: config.listen,
                source,
            })?,
            None => config.listen,
        };
        let admin_address = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let peers: Vec<ringkv_ring::NodeId> = membership
            .members()
            .into_iter()
            .map(|m| m.id)
            .filter(|id| *id != config.node_id)
            .collect();
        // Hash trees for anti-entropy: rebuilt from the store by one scan at every start.
        let index = Arc::new(MerkleIndex::for_ring(&membership.ring()));
        let rebuild = {
            let (index, engine) = (Arc::clone(&index), Arc::clone(&engine));
            off_runtime(engine.as_ref().runs_in_place(), move || index.rebuild(engine.as_ref()))
                .await
                .map_err(|e| EngineError::Io(e.to_string()))??
        };
        tracing::info!(
            keys = rebuild.0,
            seconds = rebuild.1.as_secs_f64(),
            "hash trees rebuilt"
        );
        let store = LocalStore::new(engine, config.durability, index).map_err(|e| EngineError::Io(e.to_string()))?;
        let core = Arc::new(NodeCore {
            store,
            dots,
            membership,
            peers: Peers::new(options.network.clone(), &config.node_id),
            metrics: Metrics::new(),
            clock,
            background: Background::new(),
            left: watch::channel(false).0,
            removed_logged: std::sync::atomic::AtomicBool::new(false),
            config,
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let kv = KvServer::new(KvService::new(Coordinator::new(Arc::clone(&core)))).max_decoding_message_size(
            core.config.limits.value_bytes_max() as usize + core.config.limits.key_bytes_max() as usize + (64 << 10),
        );
        let replica = InterceptedService::new(
            ReplicaServer::new(ReplicaService::new(Arc::clone(&core), shutdown_rx.clone()))
                .max_decoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(REPLICA_MESSAGE_BYTES_MAX),
            RemovedNodeFence::new(Arc::clone(&core)),
        );
        let stop = shutdown_rx.clone();
        let grpc = match (listener, options.incoming) {
            (Some(listener), _) => {
                // With an incoming stream tonic does not configure sockets itself: turn
                // Nagle off here, or small replies wait for the peer's delayed ACK (~40 ms).
                let incoming =
                    tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |conn| {
                        if let Ok(stream) = &conn {
                            let _ = stream.set_nodelay(true);
                        }
                        conn
                    });
                serve(incoming, kv, replica, stop)
            }
            (None, Some(incoming)) => serve(incoming, kv, replica, stop),
            (None, None) => unreachable!("a listener is bound whenever no incoming stream is given"),
        };
        let node_id = core.me().clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(node = %node_id, error = %e, "gRPC server failed");
            }
        }));
        if let Some(listener) = admin_listener {
            let mut stop = shutdown_rx.clone();
            let router = admin::router(Arc::clone(&core));
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "admin server failed");
                }
            }));
        }
        core.metrics.anti_entropy_rebuild_seconds.set(rebuild.1.as_secs_f64());
        tasks.push(tokio::spawn(anti_entropy_loop(Arc::clone(&core), shutdown_rx.clone())));
        tasks.push(tokio::spawn(ownership_loop(Arc::clone(&core), shutdown_rx.clone())));
        tasks.push(tokio::spawn(gained_ranges_loop(Arc::clone(&core), shutdown_rx.clone())));
        tasks.push(tokio::spawn(ring_watch_loop(Arc::clone(&core), shutdown_rx.clone())));
        if let (Some(discovery), LocalState::Joining) = (discovery, core.membership.local_state()) {
            let core = Arc::clone(&core);
            tasks.push(tokio::spawn(async move {
                match pull_own_ranges(&core, &discovery).await {
                    Ok(stats) => {
                        tracing::info!(node = %core.me(), ?stats, "joined: ranges pulled, now up");
                        if let Err(e) = join::remember(core.store.engine().as_ref(), &discovery.gossip_seeds) {
                            tracing::warn!(node = %core.me(), error = %e, "join: cannot record the membership");
                        }
                    }
                    Err(e) => {
                        tracing::error!(node = %core.me(), error = %e, "join: pulling ranges failed; staying joining")
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(gc_loop(Arc::clone(&core), shutdown_rx.clone())));
        if gossip.is_none() {
            // Static membership probes its peers; gossip has its own failure detector.
            tasks.push(tokio::spawn(probe_loop(Arc::clone(&core), peers, shutdown_rx.clone())));
        }
        tasks.push(tokio::spawn(handoff_loop(Arc::clone(&core), shutdown_rx)));
        tracing::info!(node = %core.me(), %address, ?admin_address, "node started");
        Ok(RunningNode {
            core,
            address,
            admin_address,
            shutdown,
            tasks,
            gossip,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &ringkv_ring::NodeId {
        self.core.me()
    }

    /// The gRPC address actually bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The admin HTTP address actually bound, if enabled.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// A look inside the node, for tests and the simulation: its ring and liveness
    /// views, its own store, its metrics.
    pub fn inspect(&self) -> Inspector {
        Inspector::new(Arc::clone(&self.core))
    }

    /// Resolves once this node has left the cluster (after a `Leave` request) and handed
    /// all its data over.
    pub fn left(&self) -> watch::Receiver<bool> {
        self.core.left.subscribe()
    }

    /// Stops only gossip, leaving the servers running (tests of the failure detector).
    pub async fn stop_gossip(&self) {
        if let Some(gossip) = &self.gossip {
            gossip.shutdown().await;
        }
    }

    /// Stops the node and waits until its engine is released.
    pub async fn shutdown(self) {
        if let Some(gossip) = &self.gossip {
            gossip.shutdown().await;
        }
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // Background replication tasks hold the core for at most one request timeout.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN_MAX;
        while Arc::strong_count(&self.core) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.core) > 1 {
            // Something may still issue a dot: the next start takes a new actor.
            tracing::warn!(node = %self.core.me(), "shutdown: in-flight work still holds the store");
        } else if let Err(e) = self.core.dots.close(self.core.store.engine().as_ref()) {
            tracing::warn!(node = %self.core.me(), error = %e, "shutdown: the clean stop was not recorded");
        }
        tracing::info!(node = %self.core.me(), "node stopped");
    }
}
