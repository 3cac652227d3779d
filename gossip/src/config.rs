//! [`GossipConfig`]: who this node is to the gossip layer, whom it contacts
//! first, and how fast it gossips and gives up on silent peers.
//!
//! The config is plain data with public fields; [`Gossip::start`] validates it
//! (`validate`) and translates it to chitchat's own config (`to_chitchat`), so
//! the rest of ringkv never names a chitchat type. Defaults suit a LAN.
//!
//! [`Gossip::start`]: crate::Gossip::start

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use ringkv_ring::NodeId;

use crate::GossipError;

/// The longest cluster name, in bytes.
pub const CLUSTER_NAME_BYTES_MAX: usize = 64;

/// The most seeds a config may list.
pub const SEEDS_MAX: usize = 64;

/// The longest seed, in bytes: a 253-byte DNS name, a colon and a port.
pub const SEED_BYTES_MAX: usize = 253 + 1 + 5;

/// How often a node gossips unless configured otherwise.
pub const GOSSIP_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);

/// The shortest gossip interval accepted.
pub const GOSSIP_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// The longest gossip interval accepted.
pub const GOSSIP_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// The failure detector's threshold unless configured otherwise.
pub const PHI_THRESHOLD_DEFAULT: f64 = 8.0;

/// The largest phi threshold accepted.
pub const PHI_THRESHOLD_MAX: f64 = 1_000.0;

/// How long a dead member stays in the view unless configured otherwise.
pub const DEAD_NODE_GRACE_PERIOD_DEFAULT: Duration = Duration::from_secs(60 * 60);

/// The dead-node grace period must cover at least this many gossip intervals:
/// chitchat stops sharing a dead node after half of it, and the news that the
/// node is dead needs a few rounds to spread first.
pub const DEAD_NODE_GRACE_PERIOD_MIN_INTERVALS: u32 = 4;

/// How long chitchat keeps a deleted key's tombstone. We never delete keys (a
/// member overwrites its own values), so this only has to be finite.
const MARKED_FOR_DELETION_GRACE_PERIOD: Duration = Duration::from_secs(60 * 60);

/// Heartbeat gaps longer than this are left out of the failure detector's
/// statistics, so one long pause does not make the node look slow forever.
const HEARTBEAT_INTERVAL_SAMPLED_MAX: Duration = Duration::from_secs(10);

/// Heartbeat intervals the failure detector averages over, per peer.
const HEARTBEAT_SAMPLES_MAX: usize = 1_000;

/// How this node takes part in gossip.
///
/// Build one with [`GossipConfig::new`], then adjust the public fields;
/// [`Gossip::start`](crate::Gossip::start) checks them.
///
/// ```
/// use std::time::Duration;
/// use ringkv_gossip::GossipConfig;
///
/// let mut config = GossipConfig::new("n1", "prod", 1_700_000_000_000, "127.0.0.1:7946".parse()?);
/// config.seeds = vec!["10.0.0.5:7946".to_string(), "gossip.internal:7946".to_string()];
/// config.gossip_interval = Duration::from_millis(200);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// This node's id; the same rules as [`ringkv_ring::NodeId`].
    pub node_id: String,
    /// Nodes gossip only with nodes of the same cluster name: a node of
    /// another cluster that is listed as a seed (or sends to us) is answered
    /// with a rejection and its state is never merged. 1..=
    /// [`CLUSTER_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9._-]`.
    pub cluster_name: String,
    /// This incarnation of the node: it must be new every time the node
    /// starts, and should grow (the start time in milliseconds since the Unix
    /// epoch is the usual choice). Peers track each (node id, generation,
    /// gossip address) separately: a restart under a new generation is seen
    /// alive within a few gossip rounds and replaces the old incarnation in
    /// the view, while the old one is declared dead and later forgotten.
    ///
    /// A restart that reuses the generation on the same gossip address is
    /// taken for the previous run: peers keep its old values until this node
    /// notices and republishes its own (it logs a warning), and see it dead
    /// until its heartbeat counter passes the old run's, which takes about as
    /// long as the old run lasted.
    pub generation: u64,
    /// Where this node receives gossip (UDP), and the address it tells peers
    /// to use, so it must be reachable from them: not a wildcard address and
    /// not port 0.
    pub gossip_addr: SocketAddr,
    /// Gossip addresses of nodes to contact first, as `ip:port` or
    /// `host:port`. Host names are resolved now and again every minute, so a
    /// seed may come up after us. At most [`SEEDS_MAX`]; an unreachable seed
    /// is not an error (the node then only sees itself until someone finds
    /// it).
    pub seeds: Vec<String>,
    /// Time between two gossip rounds (each round contacts up to three live
    /// peers, maybe a dead one and maybe a seed).
    pub gossip_interval: Duration,
    /// How suspicious a silence must be before a peer is declared dead.
    /// chitchat's phi is the time since the peer's last heartbeat divided by
    /// the mean interval between its heartbeats, so a threshold of 8 declares
    /// a peer dead after about 8 of its usual heartbeat intervals.
    pub phi_threshold: f64,
    /// How long a dead member stays in the view (with `alive == false`)
    /// before it is forgotten. At least
    /// [`DEAD_NODE_GRACE_PERIOD_MIN_INTERVALS`] gossip intervals.
    pub dead_node_grace_period: Duration,
}

impl GossipConfig {
    /// A config with LAN defaults: gossip every [`GOSSIP_INTERVAL_DEFAULT`],
    /// phi threshold [`PHI_THRESHOLD_DEFAULT`], dead members forgotten after
    /// [`DEAD_NODE_GRACE_PERIOD_DEFAULT`], and no seeds.
    pub fn new(
        node_id: impl Into<String>,
        cluster_name: impl Into<String>,
        generation: u64,
        gossip_addr: SocketAddr,
    ) -> GossipConfig {
        GossipConfig {
            node_id: node_id.into(),
            cluster_name: cluster_name.into(),
            generation,
            gossip_addr,
            seeds: Vec::new(),
            gossip_interval: GOSSIP_INTERVAL_DEFAULT,
            phi_threshold: PHI_THRESHOLD_DEFAULT,
            dead_node_grace_period: DEAD_NODE_GRACE_PERIOD_DEFAULT,
        }
    }

    /// Checks every field; the first problem found is the error.
    pub(crate) fn validate(&self) -> Result<(), GossipError> {
        let invalid = |field: &'static str, reason: String| GossipError::InvalidConfig { field, reason };
        if let Err(error) = NodeId::new(&self.node_id) {
            return Err(invalid("node_id", error.to_string()));
        }
        if let Err(reason) = check_name(&self.cluster_name, CLUSTER_NAME_BYTES_MAX) {
            return Err(invalid("cluster_name", reason));
        }
        check_advertised_addr(self.gossip_addr).map_err(|reason| invalid("gossip_addr", reason.to_string()))?;
        if self.seeds.len() > SEEDS_MAX {
            return Err(invalid(
                "seeds",
                format!("has {} entries, the limit is {SEEDS_MAX}", self.seeds.len()),
            ));
        }
        for seed in &self.seeds {
            check_seed(seed).map_err(|reason| GossipError::InvalidSeed {
                seed: seed.clone(),
                reason,
            })?;
        }
        if !(GOSSIP_INTERVAL_MIN..=GOSSIP_INTERVAL_MAX).contains(&self.gossip_interval) {
            return Err(invalid(
                "gossip_interval",
                format!(
                    "must be within {GOSSIP_INTERVAL_MIN:?}..={GOSSIP_INTERVAL_MAX:?}, got {:?}",
                    self.gossip_interval
                ),
            ));
        }
        // Written so that NaN fails too.
        if !(self.phi_threshold > 0.0 && self.phi_threshold <= PHI_THRESHOLD_MAX) {
            return Err(invalid(
                "phi_threshold",
                format!(
                    "must be above 0 and at most {PHI_THRESHOLD_MAX}, got {}",
                    self.phi_threshold
                ),
            ));
        }
        let grace_min = self.gossip_interval * DEAD_NODE_GRACE_PERIOD_MIN_INTERVALS;
        if self.dead_node_grace_period < grace_min {
            return Err(invalid(
                "dead_node_grace_period",
                format!(
                    "must be at least {DEAD_NODE_GRACE_PERIOD_MIN_INTERVALS} gossip intervals \
                     ({grace_min:?}), got {:?}",
                    self.dead_node_grace_period
                ),
            ));
        }
        Ok(())
    }

    /// chitchat's config for this node. Call only after `validate`.
    pub(crate) fn to_chitchat(&self) -> ChitchatConfig {
        ChitchatConfig {
            chitchat_id: self.chitchat_id(),
            cluster_id: self.cluster_name.clone(),
            gossip_interval: self.gossip_interval,
            listen_addr: self.gossip_addr,
            seed_nodes: self.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: self.phi_threshold,
                sampling_window_size: HEARTBEAT_SAMPLES_MAX,
                max_interval: HEARTBEAT_INTERVAL_SAMPLED_MAX.max(self.gossip_interval * 4),
                // The prior for the mean heartbeat interval (weighted like five
                // samples): peers heartbeat at least once per gossip round, so a
                // new peer is judged by our own pace until it has a history.
                initial_interval: self.gossip_interval,
                dead_node_grace_period: self.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: MARKED_FOR_DELETION_GRACE_PERIOD,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // V1 compresses digests but must not be sent until every node can
            // read it; V0 is what every chitchat 0.13 node reads.
            protocol_version: ProtocolVersion::V0,
        }
    }

    pub(crate) fn chitchat_id(&self) -> ChitchatId {
        ChitchatId::new(self.node_id.as_str(), self.generation, self.gossip_addr)
    }
}

/// Checks a name against ringkv's name alphabet (the ring's rule for node ids
/// and zones) and a byte limit.
fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_string());
    }
    if name.len() > max {
        return Err(format!("is {} bytes, the limit is {max}", name.len()));
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    match name.bytes().position(|byte| !allowed(byte)) {
        Some(offset) => Err(format!(
            "has byte 0x{:02x} at offset {offset}, only A-Z a-z 0-9 . _ - are allowed",
            name.as_bytes()[offset]
        )),
        None => Ok(()),
    }
}

/// An address we tell peers to use must be one they can send to.
pub(crate) fn check_advertised_addr(addr: SocketAddr) -> Result<(), &'static str> {
    if addr.ip().is_unspecified() {
        return Err("must be a concrete ip address that peers can reach, not a wildcard");
    }
    if addr.port() == 0 {
        return Err("must have a port other than 0");
    }
    Ok(())
}

/// Checks that `seed` is `ip:port`, `[ipv6]:port` or `host:port`. Host names
/// are only checked for shape: resolving them is chitchat's job, and retried.
fn check_seed(seed: &str) -> Result<(), &'static str> {
    if seed.len() > SEED_BYTES_MAX {
        return Err("is longer than a host name, a colon and a port");
    }
    if let Ok(addr) = seed.parse::<SocketAddr>() {
        return check_advertised_addr(addr);
    }
    let Some((host, port)) = seed.rsplit_once(':') else {
        return Err("has no port, expected host:port");
    };
    match port.parse::<u16>() {
        Ok(0) => return Err("has port 0"),
        Ok(_) => {}
        Err(_) => return Err("has a port that is not a number in 1..=65535"),
    }
    if host.is_empty() {
        return Err("has no host, expected host:port");
    }
    let host_byte = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_');
    if !host.bytes().all(host_byte) {
        return Err("has a host that is neither an ip address nor a dns name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GossipConfig {
        GossipConfig::new("n1", "test", 1, "127.0.0.1:7946".parse().expect("valid"))
    }

    /// Runs `validate` on the default config changed by `edit`; `expected`
    /// is `None` for success or a fragment of the error message.
    fn check(edit: impl FnOnce(&mut GossipConfig), expected: Option<&str>) {
        let mut config = config();
        edit(&mut config);
        match (config.validate(), expected) {
            (Ok(()), None) => {}
            (Err(error), Some(fragment)) => {
                let message = error.to_string();
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
                assert!(!message.ends_with('.'), "{message:?}");
            }
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn accepts_defaults_and_good_seeds() {
        check(|_| {}, None);
        check(
            |c| {
                c.seeds = ["10.0.0.1:7946", "[::1]:7946", "gossip-0.svc.local:7946", "h:1"]
                    .map(String::from)
                    .to_vec()
            },
            None,
        );
        check(|c| c.gossip_interval = GOSSIP_INTERVAL_MIN, None);
    }

    #[test]
    fn rejects_bad_seeds() {
        let bad = |seed: &str, fragment: &str| {
            let seed = seed.to_string();
            check(move |c| c.seeds = vec![seed], Some(fragment));
        };
        bad("not a seed", "no port");
        bad("10.0.0.1", "no port");
        bad("10.0.0.1:", "not a number");
        bad("10.0.0.1:99999", "not a number");
        bad("10.0.0.1:0", "port other than 0");
        bad("host:0", "port 0");
        bad(":7946", "no host");
        bad("bad host:7946", "neither an ip address nor a dns name");
        bad("::1:7946", "neither");
        bad("0.0.0.0:7946", "wildcard");
        bad(&format!("{}:1", "h".repeat(SEED_BYTES_MAX)), "longer");
    }

    #[test]
    fn rejects_bad_fields() {
        check(|c| c.node_id = String::new(), Some("node_id"));
        check(|c| c.node_id = "n 1".into(), Some("node_id"));
        check(|c| c.cluster_name = String::new(), Some("cluster_name is empty"));
        check(
            |c| c.cluster_name = "x".repeat(CLUSTER_NAME_BYTES_MAX + 1),
            Some("the limit is 64"),
        );
        check(|c| c.cluster_name = "a/b".into(), Some("0x2f at offset 1"));
        check(
            |c| c.gossip_addr = "0.0.0.0:7946".parse().expect("valid"),
            Some("gossip_addr must be a concrete ip"),
        );
        check(
            |c| c.gossip_addr = "127.0.0.1:0".parse().expect("valid"),
            Some("port other than 0"),
        );
        check(
            |c| c.seeds = vec!["h:1".to_string(); SEEDS_MAX + 1],
            Some("the limit is 64"),
        );
        check(|c| c.gossip_interval = Duration::ZERO, Some("gossip_interval"));
        check(|c| c.gossip_interval = GOSSIP_INTERVAL_MAX * 2, Some("gossip_interval"));
        check(|c| c.phi_threshold = 0.0, Some("phi_threshold"));
        check(|c| c.phi_threshold = f64::NAN, Some("phi_threshold"));
        check(|c| c.phi_threshold = f64::INFINITY, Some("phi_threshold"));
        check(
            |c| c.dead_node_grace_period = c.gossip_interval,
            Some("dead_node_grace_period must be at least 4 gossip intervals"),
        );
    }

    #[test]
    fn translates_to_chitchat() {
        let mut config = config();
        config.seeds = vec!["h:1".into()];
        let chitchat = config.to_chitchat();
        assert_eq!(&*chitchat.chitchat_id.node_id, "n1");
        assert_eq!(chitchat.chitchat_id.generation_id, 1);
        assert_eq!(chitchat.chitchat_id.gossip_advertise_addr, config.gossip_addr);
        assert_eq!(chitchat.listen_addr, config.gossip_addr);
        assert_eq!(chitchat.cluster_id, "test");
        assert_eq!(chitchat.seed_nodes, config.seeds);
        let detector = &chitchat.failure_detector_config;
        assert_eq!(detector.initial_interval, config.gossip_interval);
        assert_eq!(detector.phi_threshold, config.phi_threshold);
        assert_eq!(detector.dead_node_grace_period, config.dead_node_grace_period);
    }
}
