//! The ringkv server.
//!
//! A node serves two gRPC services on one port (see `client/proto/ringkv.proto`): the
//! client API, where any node acts as [`coordinator`] for a request, and the replica API
//! ([`replica_service`]) other nodes use to read and merge states. Background loops
//! probe peers and hand hints off ([`background`]), compare hash trees and repair
//! ([`anti_entropy`]), and purge old tombstones ([`tombstone_gc`]). [`server::RunningNode`] wires it all.
//!
//! Start reading at [`coordinator`]: it is the path of every request.

pub mod admin;
pub mod anti_entropy;
pub mod background;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod gossip_membership;
pub mod group_commit;
pub mod join;
pub mod kv_service;
pub mod local_store;
pub mod membership;
pub mod merkle_index;
pub mod metrics;
pub mod network;
pub mod node_core;
pub mod peers;
pub mod replica_batcher;
pub mod replica_service;
pub mod server;
pub mod tombstone_gc;
pub mod transfer;

pub use config::{EngineKind, NodeConfig, Seed};
pub use server::{RunningNode, StartError, StartOptions};
