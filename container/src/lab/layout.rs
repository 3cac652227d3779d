//! The lab's names and addresses: which network namespace, interface, IP address and
//! cgroup each node gets, all derived from the lab's name and the node's index.
//!
//! Everything the lab creates in the kernel carries the prefix `ringkv-<lab>-`, so `down`
//! can find and remove it from the names alone, even when the state file is gone. Nothing
//! here touches the system: it is pure naming, tested below.
//!
//! Addresses (all inside namespaces the lab created, never in the host's):
//! - the bridge network `10.77.0.0/24`: node `i` is `10.77.0.i`; nodes talk to each other
//!   here, and a partition cuts it;
//! - one point-to-point link per node from the `client` namespace, `10.78.i.0/30`: the
//!   client side is `10.78.i.1`, the node side `10.78.i.2`. Clients reach every node on
//!   its own link, like Jepsen's control node, so a partition cuts nodes from each other
//!   and never a client from its node.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The most nodes one lab may run (node indexes are 1..=NODES_MAX).
pub(crate) const NODES_MAX: u8 = 16;
/// The longest lab name: interface and namespace names must stay short.
pub(crate) const NAME_BYTES_MAX: usize = 12;
/// The prefix of every kernel object and directory name a lab creates.
pub(crate) const PREFIX: &str = "ringkv-";

/// The ringkv client (gRPC) port every node listens on, on all of its addresses.
pub const RINGKV_CLIENT_PORT: u16 = 7100;
// Nothing uses this one: it stays `pub`, where an unused item is no warning, until it is
// either passed to the nodes or removed.
/// The ringkv gossip (UDP) port, on the bridge address.
pub const RINGKV_GOSSIP_PORT: u16 = 7300;
/// The ringkv admin HTTP port (/metrics, /health).
pub(crate) const RINGKV_ADMIN_PORT: u16 = 7200;
/// etcd's client port.
pub(crate) const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer (Raft) port, on the bridge address.
pub(crate) const ETCD_PEER_PORT: u16 = 2380;

/// Bridges in the hub namespace: `br0` joins everybody; a partition adds `br1`, `br2`, ...
pub(crate) const BRIDGE_MAIN: &str = "br0";

/// A validated lab name: 1..=12 of `[a-z0-9]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabName(String);

/// A name that cannot be a lab name.
#[derive(Debug, thiserror::Error)]
#[error("lab name {name:?} is not 1..={NAME_BYTES_MAX} characters of a-z and 0-9")]
pub struct LabNameError {
    /// The rejected name.
    pub(crate) name: String,
}

impl LabName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<LabName, LabNameError> {
        let ok = !name.is_empty()
            && name.len() <= NAME_BYTES_MAX
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(LabName(name.to_owned()))
        } else {
            Err(LabNameError { name: name.to_owned() })
        }
    }

    /// The name as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of every network namespace of this lab: `ringkv-<name>-`.
    pub fn netns_prefix(&self) -> String {
        format!("{PREFIX}{}-", self.0)
    }

    /// The namespace holding the bridges.
    pub(crate) fn hub_netns(&self) -> String {
        format!("{}hub", self.netns_prefix())
    }

    /// The namespace clients (the experiment driver, `lab exec`) run in.
    pub fn client_netns(&self) -> String {
        format!("{}client", self.netns_prefix())
    }

    /// Node `index`'s namespace.
    pub(crate) fn node_netns(&self, index: u8) -> String {
        format!("{}n{index}", self.netns_prefix())
    }

    /// The cgroup path of the whole lab, relative to a hierarchy's root.
    pub(crate) fn cgroup_dir(&self) -> String {
        format!("ringkv-lab/{}", self.0)
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Node `index`'s address on the bridge network.
pub(crate) fn bridge_ip(index: u8) -> Ipv4Addr {
    assert!((1..=NODES_MAX).contains(&index));
    Ipv4Addr::new(10, 77, 0, index)
}

/// The client-side address of node `index`'s client link.
pub(crate) fn client_link_ip(index: u8) -> Ipv4Addr {
    assert!((1..=NODES_MAX).contains(&index));
    Ipv4Addr::new(10, 78, index, 1)
}

/// The node-side address of node `index`'s client link: where clients connect.
pub(crate) fn node_link_ip(index: u8) -> Ipv4Addr {
    assert!((1..=NODES_MAX).contains(&index));
    Ipv4Addr::new(10, 78, index, 2)
}

/// Where a client in the client namespace reaches node `index` on `port`.
pub fn node_client_address(index: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(node_link_ip(index), port))
}

/// The hub-side veth name of node `index` (its bridge port).
pub(crate) fn hub_port(index: u8) -> String {
    format!("n{index}")
}

/// The client-side veth name of node `index`'s client link.
pub(crate) fn client_port(index: u8) -> String {
    format!("to-n{index}")
}

/// Interface names inside a node's namespace.
pub(crate) const NODE_BRIDGE_IF: &str = "eth0";
/// The node end of its client link.
pub(crate) const NODE_CLIENT_IF: &str = "client0";

/// Node `index`'s host name inside its UTS namespace.
pub(crate) fn hostname(index: u8) -> String {
    format!("n{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(LabName::new(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn names() {
        check("lab", true);
        check("t1", true);
        check("", false);
        check("Lab", false);
        check("a-b", false);
        check("abcdefghijklm", false);
        let name = LabName::new("t1").expect("valid");
        assert_eq!(name.node_netns(3), "ringkv-t1-n3");
        assert_eq!(name.hub_netns(), "ringkv-t1-hub");
        assert!(name.client_netns().starts_with(&name.netns_prefix()));
        // Interface names must fit IFNAMSIZ (15 bytes).
        assert!(client_port(NODES_MAX).len() <= 15);
        assert!(hub_port(NODES_MAX).len() <= 15);
    }

    #[test]
    fn addresses() {
        assert_eq!(bridge_ip(2).to_string(), "10.77.0.2");
        assert_eq!(node_client_address(3, 7100).to_string(), "10.78.3.2:7100");
        assert_eq!(client_link_ip(3).to_string(), "10.78.3.1");
    }
}
