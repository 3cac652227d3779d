//! [`MemberInfo`]: what each node publishes about itself, and its encoding as
//! chitchat key-values.
//!
//! Each field is its own key, so a change (a status going from `up` to
//! `leaving`) ships one small value, and a key we do not know is ignored,
//! which lets a later version add keys. The node id and generation are not
//! keys: they are part of chitchat's node identity (`ChitchatId`).
//!
//! | key            | value                                   |
//! |----------------|-----------------------------------------|
//! | `client_addr`  | socket address, e.g. `10.0.0.5:7000`    |
//! | `replica_addr` | socket address                          |
//! | `vnodes`       | decimal `u16`, 1..=`VNODES_PER_NODE_MAX`|
//! | `zone`         | zone name, or empty for no zone         |
//! | `status`       | `joining`, `up` or `leaving`            |
//!
//! Decoding is defensive: a peer is anyone who can send us a UDP datagram with
//! our cluster name, so every value is length-checked and parsed, and the
//! whole member is checked against the ring's rules (the same check this node
//! applies before publishing). A member that fails is skipped by the view,
//! never a panic.

use std::fmt;
use std::net::SocketAddr;

use ringkv_ring::{Member, NodeId, Ring, VNODES_PER_NODE_MAX};

use crate::config::check_advertised_addr;

pub(crate) const KEY_CLIENT_ADDR: &str = "client_addr";
pub(crate) const KEY_REPLICA_ADDR: &str = "replica_addr";
pub(crate) const KEY_VNODES: &str = "vnodes";
pub(crate) const KEY_ZONE: &str = "zone";
pub(crate) const KEY_STATUS: &str = "status";

/// The longest value we parse for any of our keys, in bytes. Real values are
/// at most a zone name (64 bytes) or an IPv6 socket address (47 bytes).
pub(crate) const VALUE_BYTES_MAX: usize = 128;

/// How much of a rejected value a log line quotes.
const VALUE_QUOTED_CHARS_MAX: usize = 32;

/// Where a member stands in its lifecycle, as announced by the member itself.
///
/// The status is information for the ring's owner (the `node` crate), which
/// decides when a member enters or leaves the ring; gossip only carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    /// Started, not yet serving: e.g. still receiving its ranges.
    Joining,
    /// Serving its ranges.
    Up,
    /// Handing its ranges off before it goes away.
    Leaving,
}

impl MemberStatus {
    /// The value published under the `status` key.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Up => "up",
            MemberStatus::Leaving => "leaving",
        }
    }

    fn parse(value: &str) -> Option<MemberStatus> {
        match value {
            "joining" => Some(MemberStatus::Joining),
            "up" => Some(MemberStatus::Up),
            "leaving" => Some(MemberStatus::Leaving),
            _ => None,
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node publishes about itself.
///
/// ```
/// use ringkv_gossip::{MemberInfo, MemberStatus};
///
/// let me = MemberInfo {
///     node_id: "n1".to_string(),
///     generation: 1_700_000_000_000,
///     client_addr: "10.0.0.5:7000".parse()?,
///     replica_addr: "10.0.0.5:7001".parse()?,
///     vnodes: 256,
///     zone: Some("eu-west-1a".to_string()),
///     status: MemberStatus::Joining,
/// };
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MemberInfo {
    /// The node's id; the same rules as [`ringkv_ring::NodeId`].
    pub node_id: String,
    /// The node's incarnation (see
    /// [`GossipConfig::generation`](crate::GossipConfig::generation)).
    pub generation: u64,
    /// Where clients (the SDK) reach the node.
    pub client_addr: SocketAddr,
    /// Where other nodes send replica traffic.
    pub replica_addr: SocketAddr,
    /// The node's weight in the ring, 1..=[`VNODES_PER_NODE_MAX`].
    pub vnodes: u16,
    /// The node's failure domain, if it declares one; the same rules as the
    /// ring's zones.
    pub zone: Option<String>,
    /// Where the node stands in its lifecycle.
    pub status: MemberStatus,
}

impl MemberInfo {
    /// Checks the info against the ring's rules and checks that both
    /// addresses can be dialled. The same check runs before publishing and
    /// after decoding a peer's values.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let node_id = NodeId::new(&self.node_id).map_err(|error| error.to_string())?;
        check_advertised_addr(self.client_addr).map_err(|reason| format!("client_addr {reason}"))?;
        check_advertised_addr(self.replica_addr).map_err(|reason| format!("replica_addr {reason}"))?;
        if self.vnodes == 0 || self.vnodes > VNODES_PER_NODE_MAX {
            return Err(format!(
                "vnodes is {}, it must be within 1..={VNODES_PER_NODE_MAX}",
                self.vnodes
            ));
        }
        // The ring is the authority on what a valid zone is; asking it keeps the two
        // crates' rules from drifting apart. One vnode keeps the check cheap.
        let member = Member {
            id: node_id,
            vnodes: 1,
            zone: self.zone.clone(),
        };
        Ring::new([member]).map_err(|error| error.to_string())?;
        Ok(())
    }

    /// The key-values that publish this info (see the module docs).
    pub(crate) fn to_key_values(&self) -> Vec<(String, String)> {
        [
            (KEY_CLIENT_ADDR, self.client_addr.to_string()),
            (KEY_REPLICA_ADDR, self.replica_addr.to_string()),
            (KEY_VNODES, self.vnodes.to_string()),
            (KEY_ZONE, self.zone.clone().unwrap_or_default()),
            (KEY_STATUS, self.status.as_str().to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// Rebuilds a peer's info from its identity and its key-values, looked up
    /// through `get`. Never panics, whatever the values.
    pub(crate) fn decode<'a>(
        node_id: &str,
        generation: u64,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<MemberInfo, DecodeError> {
        let value = |key: &'static str| -> Result<&'a str, DecodeError> {
            let value = get(key).ok_or(DecodeError::Missing { key })?;
            if value.len() > VALUE_BYTES_MAX {
                return Err(DecodeError::invalid(key, value, "is too long"));
            }
            Ok(value)
        };
        let addr = |key: &'static str| -> Result<SocketAddr, DecodeError> {
            let text = value(key)?;
            text.parse()
                .map_err(|_| DecodeError::invalid(key, text, "is not a socket address"))
        };
        let client_addr = addr(KEY_CLIENT_ADDR)?;
        let replica_addr = addr(KEY_REPLICA_ADDR)?;
        let vnodes_text = value(KEY_VNODES)?;
        let vnodes = vnodes_text
            .parse::<u16>()
            .map_err(|_| DecodeError::invalid(KEY_VNODES, vnodes_text, "is not a u16"))?;
        let zone = match value(KEY_ZONE)? {
            "" => None,
            zone => Some(zone.to_string()),
        };
        let status_text = value(KEY_STATUS)?;
        let status = MemberStatus::parse(status_text)
            .ok_or_else(|| DecodeError::invalid(KEY_STATUS, status_text, "is not joining, up or leaving"))?;
        let info = MemberInfo {
            node_id: node_id.to_string(),
            generation,
            client_addr,
            replica_addr,
            vnodes,
            zone,
            status,
        };
        info.validate().map_err(DecodeError::Rejected)?;
        Ok(info)
    }
}

/// Why a peer's key-values do not make a [`MemberInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A key is absent: the peer has not sent it yet, or does not speak our
    /// schema at all.
    Missing { key: &'static str },
    /// A value does not parse.
    Invalid {
        key: &'static str,
        /// The start of the value, enough to recognise it in a log.
        value_prefix: String,
        reason: &'static str,
    },
    /// The values parse but break the ring's rules.
    Rejected(String),
}

impl DecodeError {
    fn invalid(key: &'static str, value: &str, reason: &'static str) -> DecodeError {
        DecodeError::Invalid {
            key,
            value_prefix: value.chars().take(VALUE_QUOTED_CHARS_MAX).collect(),
            reason,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Missing { key } => write!(f, "key {key:?} is missing"),
            DecodeError::Invalid {
                key,
                value_prefix,
                reason,
            } => write!(f, "value {value_prefix:?} of key {key:?} {reason}"),
            DecodeError::Rejected(reason) => f.write_str(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info() -> MemberInfo {
        MemberInfo {
            node_id: "n1".to_string(),
            generation: 7,
            client_addr: "10.0.0.1:7000".parse().expect("valid"),
            replica_addr: "[::1]:7001".parse().expect("valid"),
            vnodes: 256,
            zone: Some("z1".to_string()),
            status: MemberStatus::Up,
        }
    }

    /// Decodes `info`'s key-values after `edit` changed them; `expected` is
    /// `Ok(())` for a round trip or a fragment of the error.
    fn check(edit: impl FnOnce(&mut BTreeMap<String, String>), expected: Result<(), &str>) {
        let info = info();
        let mut key_values: BTreeMap<String, String> = info.to_key_values().into_iter().collect();
        edit(&mut key_values);
        let decoded = MemberInfo::decode(&info.node_id, info.generation, |key| {
            key_values.get(key).map(String::as_str)
        });
        match (decoded, expected) {
            (Ok(decoded), Ok(())) => assert_eq!(decoded, info),
            (Err(error), Err(fragment)) => {
                let message = error.to_string();
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    fn set(key: &'static str, value: &str) -> impl FnOnce(&mut BTreeMap<String, String>) {
        let value = value.to_string();
        move |key_values| {
            key_values.insert(key.to_string(), value);
        }
    }

    #[test]
    fn round_trips() {
        check(|_| {}, Ok(()));
        check(|kv| drop(kv.insert("unknown_key".into(), "x".into())), Ok(()));
        check(set(KEY_ZONE, "z1"), Ok(()));
        for status in [MemberStatus::Joining, MemberStatus::Up, MemberStatus::Leaving] {
            let mut info = info();
            info.status = status;
            info.zone = None;
            let key_values: BTreeMap<String, String> = info.to_key_values().into_iter().collect();
            let decoded = MemberInfo::decode("n1", 7, |key| key_values.get(key).map(String::as_str));
            assert_eq!(decoded, Ok(info));
        }
    }

    #[test]
    fn rejects_garbage() {
        check(|kv| drop(kv.remove(KEY_STATUS)), Err("key \"status\" is missing"));
        check(|kv| drop(kv.remove(KEY_ZONE)), Err("\"zone\" is missing"));
        check(
            set(KEY_CLIENT_ADDR, "nope"),
            Err("\"nope\" of key \"client_addr\" is not a socket address"),
        );
        check(set(KEY_REPLICA_ADDR, ""), Err("is not a socket address"));
        check(
            set(KEY_CLIENT_ADDR, "0.0.0.0:1"),
            Err("client_addr must be a concrete ip"),
        );
        check(
            set(KEY_REPLICA_ADDR, "10.0.0.1:0"),
            Err("replica_addr must have a port"),
        );
        check(set(KEY_VNODES, "-1"), Err("is not a u16"));
        check(set(KEY_VNODES, "65536"), Err("is not a u16"));
        check(set(KEY_VNODES, "0"), Err("vnodes is 0"));
        check(set(KEY_VNODES, "4097"), Err("vnodes is 4097"));
        check(set(KEY_ZONE, "bad zone"), Err("invalid zone"));
        check(set(KEY_STATUS, "UP"), Err("is not joining, up or leaving"));
        check(set(KEY_STATUS, "zombie\u{0}"), Err("is not joining"));
        let long = "é".repeat(VALUE_BYTES_MAX);
        check(set(KEY_ZONE, &long), Err("is too long"));
        // Quoting a long multi-byte value must not split a character.
        let long = format!("{}x", "é".repeat(VALUE_BYTES_MAX / 2));
        check(set(KEY_STATUS, &long), Err("is too long"));
    }

    #[test]
    fn rejects_bad_identity() {
        let info = info();
        let key_values: BTreeMap<String, String> = info.to_key_values().into_iter().collect();
        let decoded = MemberInfo::decode("bad id", 1, |key| key_values.get(key).map(String::as_str));
        let error = decoded.expect_err("invalid id").to_string();
        assert!(error.contains("invalid node id"), "{error}");
    }
}
