//! [`GossipError`]: why gossip could not start or stop cleanly.
//!
//! Only the world misbehaving is an error here: a bad config, an address that
//! cannot be bound, a socket that broke. A peer that publishes garbage is not
//! an error of ours: it is skipped (and logged) while building the
//! [`MemberView`](crate::MemberView), because one bad node must not stop the
//! others from seeing each other.

use std::net::SocketAddr;

/// What went wrong starting or stopping [`Gossip`](crate::Gossip).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// A field of [`GossipConfig`](crate::GossipConfig) is out of range.
    #[error("invalid gossip config: {field} {reason}")]
    InvalidConfig {
        /// The field's name, as spelled in `GossipConfig`.
        field: &'static str,
        /// What is wrong with it, as the rest of a sentence ("must be ...").
        reason: String,
    },
    /// A seed is not a `host:port` address.
    #[error("invalid seed {seed:?}: {reason}")]
    InvalidSeed {
        /// The seed as given.
        seed: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The [`MemberInfo`](crate::MemberInfo) this node would publish is
    /// invalid, or does not match the config's node id or generation.
    #[error("invalid member info for node {node_id:?}: {reason}")]
    InvalidMember {
        /// The node id of the rejected info.
        node_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The gossip socket could not be opened (for UDP: bound), typically
    /// because the address is in use or not local.
    #[error("cannot open the gossip socket on {addr}: {reason}")]
    Bind {
        /// The address we tried to open.
        addr: SocketAddr,
        /// The cause, with its chain of context.
        reason: String,
    },
    /// The gossip server stopped on an error (its socket broke) or panicked.
    #[error("gossip server failed: {reason}")]
    ServerFailed {
        /// The cause, with its chain of context.
        reason: String,
    },
}
