//! Node configuration: a TOML file, overridden by environment variables and flags.
//!
//! [`NodeConfig`] is the validated result; the CLI builds it from the three sources.
//! Every field has a default that works for a single local node, so `ringkv node` with
//! no arguments starts something useful. Validation happens here, once, before anything
//! is opened or bound, so a bad config never leaves a half-started node behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringkv_ring::{NodeId, REPLICAS_MAX, VNODES_DEFAULT};
use ringkv_storage::{Durability, Limits};
use serde::Deserialize;

/// Which storage engine a node runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// RocksDB under `data_dir` (the default).
    #[default]
    Rocksdb,
    /// In memory: fast, lost on restart (cache tier, simulation).
    Memory,
}

/// A statically configured cluster member: `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The member's node id.
    pub id: NodeId,
    /// Its gRPC address.
    pub address: SocketAddr,
}

impl std::str::FromStr for Seed {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Seed, ConfigError> {
        let bad = |reason: &str| ConfigError::BadSeed {
            seed: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (id, address) = s
            .split_once('@')
            .ok_or_else(|| bad("expected ID@HOST:PORT, e.g. n2@127.0.0.1:7102"))?;
        let id = NodeId::try_from(id).map_err(|e| bad(&e.to_string()))?;
        let address = address
            .parse()
            .map_err(|e: std::net::AddrParseError| bad(&e.to_string()))?;
        Ok(Seed { id, address })
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.id, self.address)
    }
}

/// Errors in a node's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A seed entry does not parse.
    #[error("invalid seed {seed:?}: {reason}")]
    BadSeed {
        /// The entry as given.
        seed: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range or inconsistent with another.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// The setting's name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The config file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// Path of the file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A node's validated configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub node_id: NodeId,
    /// Name of the cluster; nodes refuse peers of another cluster.
    pub cluster_name: String,
    /// gRPC address (client and replica APIs).
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this node (defaults to `listen`).
    pub advertise: SocketAddr,
    /// Admin HTTP address (`/metrics`, `/health`); `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Where RocksDB keeps its files.
    pub data_dir: PathBuf,
    /// Storage engine.
    pub engine: EngineKind,
    /// Static cluster members (this node may be listed too). Empty with gossip.
    pub seeds: Vec<Seed>,
    /// gRPC addresses (`host:port`) of running members to join through, with gossip.
    pub join: Vec<String>,
    /// UDP address to gossip on; `Some` selects gossip membership.
    pub gossip_listen: Option<SocketAddr>,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// How long gossip keeps a member it has seen dead before forgetting it (chitchat's
    /// dead-node grace period; an hour by default).
    pub gossip_dead_grace: Duration,
    /// How long a joining node tries to reach its seeds.
    pub join_timeout: Duration,
    /// Virtual nodes this node places on the ring (its weight).
    pub vnodes: u16,
    /// Zone, for zone-aware placement.
    pub zone: Option<String>,
    /// Replicas per key (N).
    pub replicas: u8,
    /// Default read quorum (R).
    pub read_quorum: u8,
    /// Default write quorum (W).
    pub write_quorum: u8,
    /// Default client request timeout.
    pub request_timeout: Duration,
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Key and value size limits.
    pub limits: Limits,
    /// How often peers are probed for liveness.
    pub probe_interval: Duration,
    /// How often hints are handed off.
    pub handoff_interval: Duration,
    /// Whether a write for an unreachable replica is kept as a hint (sloppy quorum).
    pub hinted_handoff: bool,
    /// How often this node runs an anti-entropy exchange with one peer.
    pub anti_entropy_interval: Duration,
    /// How often a tombstone GC round runs.
    pub gc_interval: Duration,
    /// How long a key stays dead before its tombstone may be purged.
    pub tombstone_grace: Duration,
    /// The most two members' wall clocks may differ. Expiry and tombstone GC wait this
    /// long past their time, and run only while the key's holders' clocks agree within
    /// it; a hybrid timestamp further ahead than this is not followed.
    pub clock_skew_max: Duration,
    /// Start as a new incarnation (after restoring the data directory from a copy).
    pub new_incarnation: bool,
}

/// The TOML file's shape; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub node_id: Option<String>,
    pub cluster_name: Option<String>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub engine: Option<EngineKind>,
    pub seeds: Option<Vec<String>>,
    pub gossip_listen: Option<SocketAddr>,
    pub vnodes: Option<u16>,
    pub zone: Option<String>,
    pub replicas: Option<u8>,
    pub read_quorum: Option<u8>,
    pub write_quorum: Option<u8>,
    #[serde(default, with = "humantime_serde_opt")]
    pub request_timeout: Option<Duration>,
    pub fsync: Option<bool>,
    pub hinted_handoff: Option<bool>,
    #[serde(default, with = "humantime_serde_opt")]
    pub anti_entropy_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub gc_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub tombstone_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub clock_skew_max: Option<Duration>,
    pub key_bytes_max: Option<u32>,
    pub value_bytes_max: Option<u32>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl ConfigFile {
    /// Reads a TOML config file.
    pub fn load(path: &std::path::Path) -> Result<ConfigFile, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(e.to_string()))
    }
}

/// Default gRPC port of the first node; `ringkv dev` counts up from it.
pub const CLIENT_PORT_DEFAULT: u16 = 7101;
/// A node's default gossip port is its gRPC port plus this.
pub const GOSSIP_PORT_OFFSET: u16 = 200;
/// Default admin port of the first node.
pub const ADMIN_PORT_DEFAULT: u16 = 7201;
/// Default bound on the difference between members' wall clocks. NTP keeps servers
/// within milliseconds of each other; this leaves room for a node whose NTP is briefly
/// off, and costs only that much delay on expiry and purges.
pub const CLOCK_SKEW_MAX_DEFAULT: Duration = Duration::from_secs(5);

/// Longest request timeout a client may ask for.
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(60);

impl NodeConfig {
    /// A single-node configuration with defaults, for tests and `ringkv dev`.
    pub fn local(node_id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            node_id,
            cluster_name: "ringkv".to_owned(),
            listen,
            advertise: listen,
            admin_listen: None,
            data_dir,
            engine: EngineKind::Rocksdb,
            seeds: Vec::new(),
            join: Vec::new(),
            gossip_listen: None,
            gossip_interval: Duration::from_millis(200),
            gossip_dead_grace: ringkv_gossip::DEAD_NODE_GRACE_PERIOD_DEFAULT,
            join_timeout: Duration::from_secs(10),
            vnodes: VNODES_DEFAULT,
            zone: None,
            replicas: 3,
            read_quorum: 2,
            write_quorum: 2,
            request_timeout: Duration::from_secs(2),
            durability: Durability::Buffered,
            limits: Limits::default(),
            probe_interval: Duration::from_millis(500),
            handoff_interval: Duration::from_millis(500),
            hinted_handoff: true,
            anti_entropy_interval: Duration::from_secs(10),
            gc_interval: Duration::from_secs(10),
            tombstone_grace: Duration::from_secs(3600),
            clock_skew_max: CLOCK_SKEW_MAX_DEFAULT,
            new_incarnation: false,
        }
    }

    /// Checks relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.replicas == 0 || self.replicas > REPLICAS_MAX {
            return invalid("replicas", format!("{} is outside 1..={REPLICAS_MAX}", self.replicas));
        }
        if self.read_quorum == 0 || self.read_quorum > self.replicas {
            return invalid(
                "read_quorum",
                format!("{} is outside 1..={}", self.read_quorum, self.replicas),
            );
        }
        if self.write_quorum == 0 || self.write_quorum > self.replicas {
            return invalid(
                "write_quorum",
                format!("{} is outside 1..={}", self.write_quorum, self.replicas),
            );
        }
        if self.vnodes == 0 {
            return invalid("vnodes", "must be at least 1".to_owned());
        }
        if self.request_timeout.is_zero() || self.request_timeout > REQUEST_TIMEOUT_MAX {
            return invalid(
                "request_timeout",
                format!("{:?} is outside (0, {:?}]", self.request_timeout, REQUEST_TIMEOUT_MAX),
            );
        }
        if self.tombstone_grace < self.request_timeout {
            return invalid(
                "tombstone_grace",
                format!(
                    "{:?} is shorter than request_timeout {:?}: a write in flight could revive a purged key",
                    self.tombstone_grace, self.request_timeout
                ),
            );
        }
        for (field, value) in [
            ("clock_skew_max", self.clock_skew_max),
            ("probe_interval", self.probe_interval),
            ("handoff_interval", self.handoff_interval),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("gc_interval", self.gc_interval),
        ] {
            if value.is_zero() {
                return invalid(field, "must be greater than zero".to_owned());
            }
        }
        if self.gossip_listen.is_some() && !self.seeds.is_empty() {
            return invalid(
                "seeds",
                "give either static members (ID@HOST:PORT) or members to join (HOST:PORT), not both".to_owned(),
            );
        }
        if !self.join.is_empty() && self.gossip_listen.is_none() {
            return invalid(
                "gossip_listen",
                "joining through seeds needs a gossip address".to_owned(),
            );
        }
        let mut ids: Vec<&NodeId> = self.seeds.iter().map(|s| &s.id).collect();
        ids.sort();
        if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
            return invalid("seeds", format!("node id {} is listed twice", pair[0]));
        }
        if let Some(me) = self.seeds.iter().find(|s| s.id == self.node_id) {
            if me.address != self.advertise {
                return invalid(
                    "seeds",
                    format!(
                        "this node ({}) is listed at {} but advertises {}",
                        self.node_id, me.address, self.advertise
                    ),
                );
            }
        }
        if let Some(clash) = self
            .seeds
            .iter()
            .find(|s| s.address == self.advertise && s.id != self.node_id)
        {
            return invalid(
                "seeds",
                format!("{} is listed at this node's address {}", clash.id, self.advertise),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig::local(
            NodeId::try_from("n1").expect("id"),
            "127.0.0.1:7101".parse().expect("addr"),
            "/tmp/x".into(),
        )
    }

    #[test]
    fn seeds_parse_and_refuse_garbage() {
        let seed: Seed = "n2@127.0.0.1:7102".parse().expect("valid seed");
        assert_eq!(seed.to_string(), "n2@127.0.0.1:7102");
        for bad in ["127.0.0.1:7102", "n2@nowhere", "@127.0.0.1:1", "bad id@127.0.0.1:1"] {
            assert!(bad.parse::<Seed>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        let check = |change: &dyn Fn(&mut NodeConfig), field: &str| {
            let mut c = config();
            change(&mut c);
            let err = c.validate().expect_err("invalid");
            assert!(err.to_string().contains(field), "{err} should name {field}");
        };
        check(&|c| c.replicas = 0, "replicas");
        check(&|c| c.write_quorum = 4, "write_quorum");
        check(&|c| c.read_quorum = 0, "read_quorum");
        check(&|c| c.request_timeout = Duration::ZERO, "request_timeout");
        check(&|c| c.tombstone_grace = Duration::from_millis(1), "tombstone_grace");
        check(&|c| c.gc_interval = Duration::ZERO, "gc_interval");
        check(
            &|c| {
                c.seeds = vec![
                    "n2@127.0.0.1:1".parse().expect("seed"),
                    "n2@127.0.0.1:2".parse().expect("seed"),
                ]
            },
            "seeds",
        );
        assert!(config().validate().is_ok());
    }

    #[test]
    fn config_file_refuses_unknown_fields() {
        let err = toml::from_str::<ConfigFile>("node_id = \"n1\"\nreplica = 3\n").expect_err("unknown field");
        assert!(err.to_string().contains("replica"), "{err}");
        let ok: ConfigFile = toml::from_str("node_id = \"n1\"\nrequest_timeout = \"1500ms\"\n").expect("valid");
        assert_eq!(ok.request_timeout, Some(Duration::from_millis(1500)));
    }
}
