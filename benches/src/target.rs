//! The systems under test: ringkv, redis-server and etcd, behind one enum each for the
//! running system ([`Target`]) and for one client task's connection ([`Session`]).
//!
//! Enum dispatch rather than a trait object keeps the hot loop free of boxing and
//! `async-trait`. Each target is reached through its native client protocol: the ringkv
//! SDK over gRPC, the `redis` crate over RESP, and etcd's v3 gRPC API (`KV.Range`,
//! `KV.Put`) with a client generated here from `proto/etcd_kv.proto` (the `etcd-client`
//! crate needs `protoc` at build time, which this workspace avoids). An earlier version
//! used etcd's HTTP/JSON gateway, which proxies every call through a second gRPC hop
//! inside etcd and made etcd look slower than its users see it.
//! Peers are started on free loopback ports in temporary directories and killed by
//! [`ChildGuard`] when the target is dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use redis::AsyncCommands as _;
use ringkv_client::{Client, Context};
use ringkv_node::LocalCluster;
use ringkv_storage::Durability;

use crate::etcd_proto::{self, kv_client::KvClient};
use crate::process::{find_program, free_loopback_address, ChildGuard, STARTUP_TIMEOUT};

/// Which system a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An in-process ringkv cluster, through the SDK.
    Ringkv,
    /// A `redis-server` process, through the `redis` crate.
    Redis,
    /// An `etcd` process or 3-member cluster, through its v3 gRPC API.
    Etcd,
}

impl TargetKind {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Ringkv => "ringkv",
            TargetKind::Redis => "redis",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// How a target is set up: shared by all targets of one run, so they are comparable.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// Nodes (ringkv) or members (etcd); redis is always one process.
    pub nodes: usize,
    /// Fsync every acknowledged write before answering.
    pub fsync: bool,
    /// Number of records; sizes per-task state such as ringkv's contexts.
    pub records: u64,
    /// Where the data directories are created (a temporary directory inside it).
    pub data_root: std::path::PathBuf,
}

/// The key of record `index`, the same for every target.
pub fn record_key(index: u64) -> String {
    format!("user{index:012}")
}

/// A started system, ready for [`Target::session`].
pub enum Target {
    /// ringkv.
    Ringkv(RingkvTarget),
    /// redis-server.
    Redis(RedisTarget),
    /// etcd.
    Etcd(EtcdTarget),
}

/// The outcome of trying to start a target.
pub enum Started {
    /// Running.
    Ready(Target),
    /// Not installed: the message says what to install.
    Skipped(String),
}

impl Target {
    /// Starts `kind` with `options`, or says why it is skipped.
    pub async fn start(kind: TargetKind, options: &TargetOptions) -> anyhow::Result<Started> {
        Ok(match kind {
            TargetKind::Ringkv => Started::Ready(Target::Ringkv(RingkvTarget::start(options).await?)),
            TargetKind::Redis => match find_program("redis-server") {
                None => Started::Skipped(
                    "redis-server is not installed (not on PATH); install it with \
                     `bash scripts/install-peers.sh` or `apt-get install redis-server`"
                        .to_owned(),
                ),
                Some(_) => Started::Ready(Target::Redis(RedisTarget::start(options).await?)),
            },
            TargetKind::Etcd => match find_program("etcd") {
                None => Started::Skipped(
                    "etcd is not installed (not on PATH); install it with \
                     `bash scripts/install-peers.sh` or `apt-get install etcd-server`"
                        .to_owned(),
                ),
                Some(_) => Started::Ready(Target::Etcd(EtcdTarget::start(options).await?)),
            },
        })
    }

    /// What was started, for the report: nodes, replication, durability.
    pub fn description(&self) -> String {
        match self {
            Target::Ringkv(t) => t.description.clone(),
            Target::Redis(t) => t.description.clone(),
            Target::Etcd(t) => t.description.clone(),
        }
    }

    /// A new connection for client task `task_index`.
    pub async fn session(&self, task_index: usize) -> anyhow::Result<Session> {
        Ok(match self {
            Target::Ringkv(t) => Session::Ringkv(t.session(task_index)?),
            Target::Redis(t) => Session::Redis(t.session().await?),
            Target::Etcd(t) => Session::Etcd(t.session(task_index).await?),
        })
    }

    /// Takes back what a session learned during the load (ringkv's contexts), so later
    /// sessions start from it.
    pub fn absorb(&self, session: Session) {
        if let (Target::Ringkv(target), Session::Ringkv(session)) = (self, session) {
            target.absorb(session);
        }
    }

    /// Stops the target and removes its data.
    pub async fn shutdown(self) {
        match self {
            Target::Ringkv(t) => t.shutdown().await,
            // Dropping the guards kills the processes, then the temporary directory goes.
            Target::Redis(_) | Target::Etcd(_) => {}
        }
    }
}

/// One client task's connection to a target.
pub enum Session {
    /// ringkv.
    Ringkv(RingkvSession),
    /// redis-server.
    Redis(RedisSession),
    /// etcd.
    Etcd(EtcdSession),
}

impl Session {
    /// Reads record `index`; a missing record is an error (every record is loaded first).
    pub async fn read(&mut self, index: u64) -> anyhow::Result<()> {
        match self {
            Session::Ringkv(s) => s.read(index).await,
            Session::Redis(s) => s.read(index).await,
            Session::Etcd(s) => s.read(index).await,
        }
    }

    /// Overwrites record `index` with `value`.
    pub async fn update(&mut self, index: u64, value: &Bytes) -> anyhow::Result<()> {
        match self {
            Session::Ringkv(s) => s.update(index, value).await,
            Session::Redis(s) => s.update(index, value).await,
            Session::Etcd(s) => s.update(index, value).await,
        }
    }

    /// Most siblings one read returned (ringkv only; 0 elsewhere).
    pub fn siblings_max(&self) -> usize {
        match self {
            Session::Ringkv(s) => s.siblings_max,
            Session::Redis(_) | Session::Etcd(_) => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// ringkv

/// An in-process ringkv cluster on loopback, RocksDB in a temporary directory.
pub struct RingkvTarget {
    cluster: LocalCluster,
    endpoints: Vec<String>,
    /// The context each record was last written or read with, gathered from the load.
    contexts: Mutex<Vec<Context>>,
    description: String,
}

/// Starts `count` ringkv nodes in this process on RocksDB in a temporary directory under
/// `data_root`: N = min(3, count), R = W = N/2 + 1.
pub async fn start_ringkv_cluster(
    count: usize,
    durability: Durability,
    data_root: &Path,
) -> anyhow::Result<LocalCluster> {
    Ok(LocalCluster::builder()
        .nodes(count)
        .durability(durability)
        .temporary_dir_in(data_root)
        .start()
        .await?)
}

impl RingkvTarget {
    async fn start(options: &TargetOptions) -> anyhow::Result<RingkvTarget> {
        let durability = if options.fsync {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        let cluster = start_ringkv_cluster(options.nodes, durability, &options.data_root)
            .await
            .context("starting the ringkv cluster")?;
        let endpoints = cluster.endpoints();
        let n = options.nodes.min(3);
        let quorum = n / 2 + 1;
        let description = format!(
            "ringkv {} node(s), N={n} R={quorum} W={quorum}, RocksDB, {}",
            options.nodes,
            if options.fsync {
                "fsync per write (Durability::Sync)"
            } else {
                "WAL without fsync (Durability::Buffered)"
            }
        );
        Ok(RingkvTarget {
            cluster,
            endpoints,
            contexts: Mutex::new(vec![Context::empty(); usize::try_from(options.records)?]),
            description,
        })
    }

    fn session(&self, task_index: usize) -> anyhow::Result<RingkvSession> {
        // Each task has its own client, hence its own HTTP/2 connection, and starts on a
        // different node so coordination is spread over the cluster.
        let mut endpoints = self.endpoints.clone();
        endpoints.rotate_left(task_index % self.endpoints.len());
        let client = Client::builder()
            .endpoints(endpoints)
            .request_timeout(Duration::from_secs(5))
            .build()?;
        let contexts = self
            .contexts
            .lock()
            .map_err(|_| anyhow::anyhow!("context table poisoned"))?
            .clone();
        Ok(RingkvSession {
            client,
            contexts,
            siblings_max: 0,
        })
    }

    fn absorb(&self, session: RingkvSession) {
        let Ok(mut contexts) = self.contexts.lock() else {
            return;
        };
        for (shared, learned) in contexts.iter_mut().zip(session.contexts) {
            if !learned.is_empty() {
                *shared = learned;
            }
        }
    }

    async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// One task's ringkv client. Updates carry the context of this task's last read or write
/// of the key (seeded from the load), never a blind empty context: concurrent updates of
/// one key by different tasks still make siblings, at most one per task, and the next
/// read folds them; `siblings_max` reports how many one read saw.
pub struct RingkvSession {
    client: Client,
    contexts: Vec<Context>,
    siblings_max: usize,
}

impl RingkvSession {
    async fn read(&mut self, index: u64) -> anyhow::Result<()> {
        let read = self.client.get(record_key(index)).await?;
        anyhow::ensure!(!read.is_empty(), "record {index} is missing");
        self.siblings_max = self.siblings_max.max(read.siblings.len());
        self.contexts[index as usize] = read.context;
        Ok(())
    }

    async fn update(&mut self, index: u64, value: &Bytes) -> anyhow::Result<()> {
        let slot = &mut self.contexts[index as usize];
        *slot = self.client.put(record_key(index), value.clone(), slot).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// redis

/// A `redis-server` on a free loopback port, its directory temporary.
pub struct RedisTarget {
    url: String,
    description: String,
    // Declared before the directory so the process dies before its files are removed.
    _process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl RedisTarget {
    async fn start(options: &TargetOptions) -> anyhow::Result<RedisTarget> {
        let dir = tempfile::Builder::new()
            .prefix("redis-bench-")
            .tempdir_in(&options.data_root)?;
        let address = free_loopback_address()?;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(address.port().to_string())
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"]);
        if options.fsync {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let mut process = ChildGuard::spawn("redis-server", command, &dir.path().join("redis.log"))?;
        let url = format!("redis://{address}/");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            process.check_running()?;
            let ping = async {
                let mut connection = redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?;
                redis::cmd("PING").query_async::<String>(&mut connection).await
            };
            match ping.await {
                Ok(_) => break,
                Err(error) if Instant::now() > deadline => {
                    anyhow::bail!("redis-server did not answer within {STARTUP_TIMEOUT:?}: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let mut description = format!(
            "redis-server 1 process, {}",
            if options.fsync {
                "appendonly with appendfsync always"
            } else {
                "in memory (no RDB, no AOF)"
            }
        );
        if options.nodes > 1 {
            description.push_str(&format!(
                "; single node (redis has no replication here), not {}",
                options.nodes
            ));
        }
        Ok(RedisTarget {
            url,
            description,
            _process: process,
            _dir: dir,
        })
    }

    async fn session(&self) -> anyhow::Result<RedisSession> {
        // One multiplexed connection per task: as many TCP connections as ringkv gets.
        let connection = redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("connecting to redis-server")?;
        Ok(RedisSession { connection })
    }
}

/// One task's redis connection.
pub struct RedisSession {
    connection: redis::aio::MultiplexedConnection,
}

impl RedisSession {
    async fn read(&mut self, index: u64) -> anyhow::Result<()> {
        let value: Option<Vec<u8>> = self.connection.get(record_key(index)).await?;
        anyhow::ensure!(value.is_some(), "record {index} is missing");
        Ok(())
    }

    async fn update(&mut self, index: u64, value: &Bytes) -> anyhow::Result<()> {
        let () = self.connection.set(record_key(index), value.as_ref()).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// etcd

/// An etcd member or cluster on free loopback ports, data directories temporary.
pub struct EtcdTarget {
    client_addresses: Vec<SocketAddr>,
    description: String,
    // Declared before the directory so the processes die before their files are removed.
    _processes: Vec<ChildGuard>,
    _dir: tempfile::TempDir,
}

impl EtcdTarget {
    async fn start(options: &TargetOptions) -> anyhow::Result<EtcdTarget> {
        let count = options.nodes;
        anyhow::ensure!(count >= 1, "etcd needs at least one member");
        let dir = tempfile::Builder::new()
            .prefix("etcd-bench-")
            .tempdir_in(&options.data_root)?;
        let mut client_addresses = Vec::new();
        let mut peer_addresses = Vec::new();
        for _ in 0..count {
            client_addresses.push(free_loopback_address()?);
            peer_addresses.push(free_loopback_address()?);
        }
        let initial_cluster: Vec<String> = peer_addresses
            .iter()
            .enumerate()
            .map(|(i, peer)| format!("m{}=http://{peer}", i + 1))
            .collect();
        let initial_cluster = initial_cluster.join(",");
        let mut processes = Vec::new();
        for (i, (client, peer)) in client_addresses.iter().zip(&peer_addresses).enumerate() {
            let name = format!("m{}", i + 1);
            let mut command = Command::new("etcd");
            command
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .arg("--listen-client-urls")
                .arg(format!("http://{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://{peer}"))
                .arg("--initial-cluster")
                .arg(&initial_cluster)
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "ringkv-bench",
                ]);
            if !options.fsync {
                command.arg("--unsafe-no-fsync");
            }
            let log = dir.path().join(format!("{name}.log"));
            processes.push(ChildGuard::spawn(&format!("etcd {name}"), command, &log)?);
        }
        // Ready when a write through every member commits: that needs a leader and a quorum.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for (i, address) in client_addresses.iter().enumerate() {
            loop {
                for process in &mut processes {
                    process.check_running()?;
                }
                let probe = async {
                    let mut session = EtcdSession::connect(*address).await?;
                    session.put("ringkv-bench-ready", b"1").await
                };
                match probe.await {
                    Ok(()) => break,
                    Err(error) if Instant::now() > deadline => anyhow::bail!(
                        "etcd member m{} did not accept a write within {STARTUP_TIMEOUT:?}: {error:#}\n{}",
                        i + 1,
                        processes[i].log_tail()
                    ),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        let description = format!(
            "etcd {count} member(s) (Raft), linearizable reads, {}",
            if options.fsync {
                "fsync per commit (default)"
            } else {
                "--unsafe-no-fsync"
            }
        );
        Ok(EtcdTarget {
            client_addresses,
            description,
            _processes: processes,
            _dir: dir,
        })
    }

    async fn session(&self, task_index: usize) -> anyhow::Result<EtcdSession> {
        // Tasks are spread over the members, as ringkv's are over its nodes.
        let address = self.client_addresses[task_index % self.client_addresses.len()];
        EtcdSession::connect(address).await
    }
}

/// One task's gRPC connection (HTTP/2) to an etcd member, as etcd's Go client makes.
pub struct EtcdSession {
    client: KvClient<tonic::transport::Channel>,
}

impl EtcdSession {
    async fn connect(address: SocketAddr) -> anyhow::Result<EtcdSession> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to etcd at {address}"))?;
        Ok(EtcdSession {
            client: KvClient::new(channel),
        })
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let request = etcd_proto::PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value),
        };
        self.client.put(request).await.context("etcd put")?;
        Ok(())
    }

    async fn read(&mut self, index: u64) -> anyhow::Result<()> {
        // Linearizable, etcd's default: the guarantee etcd's users get unless they ask
        // for less.
        let request = etcd_proto::RangeRequest {
            key: Bytes::from(record_key(index)),
            serializable: false,
        };
        let response = self.client.range(request).await.context("etcd range")?.into_inner();
        anyhow::ensure!(!response.kvs.is_empty(), "record {index} is missing");
        Ok(())
    }

    async fn update(&mut self, index: u64, value: &Bytes) -> anyhow::Result<()> {
        self.put(&record_key(index), value).await
    }
}
