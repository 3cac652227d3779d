//! `ringkv-gossip`: cluster membership for ringkv over the chitchat gossip
//! protocol (Scuttlebutt reconciliation with a phi-accrual failure detector).
//!
//! Each node publishes a [`MemberInfo`] (addresses, vnode count, zone, status)
//! and learns everyone else's; [`Gossip::members`] follows the result as a
//! [`MemberView`] with one entry per node id and whether it is alive. Nodes
//! with different cluster names never merge state, and two live processes
//! claiming the same node id are reported as a conflict.
//!
//! What this crate is not: it does not decide ring membership. Liveness here
//! is a hint for routing; as in Dynamo, a member joins or leaves the ring only
//! on an explicit decision taken by the `node` crate, which reads this view.
//! It depends on no other ringkv crate but `ringkv-ring`, whose rules for node
//! ids, zones and vnode counts it applies to what peers publish.
//!
//! Where to start reading: [`Gossip::start`] (in `gossip.rs`) spawns chitchat
//! and the task that turns its state into views; `member.rs` defines the
//! key-value encoding; `roster.rs` the membership record every node publishes and
//! persists, so that ring membership survives chitchat forgetting a dead node;
//! `view.rs` folds a restarted or duplicated node's
//! incarnations into one entry.
//!
//! Time and randomness: chitchat runs on Tokio's clock and draws its gossip
//! peers from an RNG seeded by the OS (`getrandom`) and iterates `std` hash
//! sets. A simulation substitutes the network through
//! [`Gossip::start_with_transport`] (see [`transport`]) and makes the OS's
//! randomness come from its seed (`sim/`, see docs/simulation.md).

mod config;
mod error;
mod gossip;
mod member;
mod roster;
mod view;

pub use config::{
    GossipConfig, CLUSTER_NAME_BYTES_MAX, DEAD_NODE_GRACE_PERIOD_DEFAULT, DEAD_NODE_GRACE_PERIOD_MIN_INTERVALS,
    GOSSIP_INTERVAL_DEFAULT, GOSSIP_INTERVAL_MAX, GOSSIP_INTERVAL_MIN, PHI_THRESHOLD_DEFAULT, PHI_THRESHOLD_MAX,
    SEEDS_MAX, SEED_BYTES_MAX,
};
pub use error::GossipError;
pub use gossip::Gossip;
pub use member::{MemberInfo, MemberStatus};
pub use roster::{Fate, Roster, RosterEntry, RosterError, ROSTER_ENTRIES_MAX};
pub use view::{MemberEntry, MemberView};

/// What a substitute gossip network implements (chitchat's transport traits).
///
/// chitchat's wire encoding is private to it, so a substitute network carries the
/// decoded [`transport::Envelope`]s themselves.
pub mod transport {
    pub use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
    pub use chitchat::ChitchatEnvelope as Envelope;
}
