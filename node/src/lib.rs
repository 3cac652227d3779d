//! The ringkv server.
//!
//! A node serves two gRPC services on one port (see `client/proto/ringkv.proto`): the
//! client API, where any node coordinates a request (`request`), and the replica API
//! other nodes use to read and merge states (`replica`). The parts, each a folder:
//!
//! - `request`: the path of a client request: the client API, then the coordinator's
//!   read, write and forward;
//! - `replica`: one way to talk to a replica, local or remote (`Replica`), the one
//!   quorum primitive (`QuorumCall`), and the replica API server;
//! - `peers`: one HTTP/2 connection per peer, and the batcher of its replica calls;
//! - `store`: the local engine from async code, group commit, the hash trees;
//! - `membership`: the ring and liveness views (static or gossip), and the join handshake;
//! - `maintenance`: background rounds: hint hand-off, range transfer, anti-entropy,
//!   tombstone GC, ring watch, probes;
//! - `server`: starting and stopping a node ([`RunningNode`]).
//!
//! Start reading at `request`: it is the path of every request.
//!
//! The public surface is what other crates need: [`RunningNode`] and [`StartOptions`] to
//! run a node, [`NodeConfig`] (and [`config`]) to configure it, [`network`] to run it on
//! another network (the simulation's), [`clock`] to drive its clock, [`LocalCluster`] to
//! start several on loopback, and [`inspect`] to look inside one from a test.

mod background;
pub mod clock;
pub mod config;
mod identity;
pub mod inspect;
pub mod local_cluster;
mod maintenance;
mod membership;
pub mod metrics;
pub mod network;
mod node_core;
mod peers;
mod replica;
mod request;
mod server;
mod store;

pub use config::{EngineKind, NodeConfig, Seed};
pub use inspect::Inspector;
pub use local_cluster::LocalCluster;
pub use membership::{JoinError, LocalState};
pub use server::{RunningNode, StartError, StartOptions};
