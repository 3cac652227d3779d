//! One HTTP/2 connection per peer, shared by every request to it.
//!
//! Connections are created lazily on first use and kept: concurrent RPCs are multiplexed
//! over the one connection, and the next call after a failure (the peer restarted, say)
//! connects again. The connection is the SDK's own ([`ringkv_client::Connection`]), not
//! tonic's `Channel`, for the reason the SDK has it: each call costs one socket write
//! instead of two, and no task sits between the caller and the connection
//! (`docs/design-decisions.md`). The coordinator's replica reads and merges go through
//! the peer's [`ReplicaBatcher`], on one long-lived stream of the same connection.
//! Keep-alive pings make a connection that silently died (a cut network) fail fast
//! instead of hanging until the request timeout.

pub(crate) mod batcher;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::proto::replica_client::ReplicaClient;
use ringkv_client::{Connection, ConnectionTimeouts};
use ringkv_ring::NodeId;
use tonic::transport::Uri;

use self::batcher::ReplicaBatcher;
use crate::network::Network;
use crate::replica::fence::SENDER_HEADER;

/// Largest message a replica RPC may carry (a batch of states).
pub(crate) const REPLICA_MESSAGE_BYTES_MAX: usize = 256 << 20;
/// Connect timeout, keep-alive interval and keep-alive timeout of peer connections.
pub(crate) const PEER_TIMEOUTS: ConnectionTimeouts = ConnectionTimeouts {
    connect: Duration::from_millis(500),
    keep_alive_interval: Duration::from_secs(5),
    keep_alive: Duration::from_secs(3),
};

/// Lazily connected connections to peers, by node id.
pub(crate) struct Peers {
    network: Network,
    /// This node's id, as the sender header of every request (`crate::replica::fence`).
    sender: tonic::codegen::http::HeaderValue,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
}

struct Peer {
    address: SocketAddr,
    /// `http://address`, the origin requests to the peer carry.
    origin: Uri,
    connection: Connection,
    batcher: ReplicaBatcher,
}

impl Peers {
    /// An empty pool dialing through `network`, naming itself `me` to its peers.
    pub fn new(network: Network, me: &NodeId) -> Peers {
        Peers {
            network,
            sender: tonic::codegen::http::HeaderValue::from_str(me.as_str())
                .unwrap_or_else(|_| unreachable!("a node id is a valid header value")),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    fn peer<T>(&self, node: &NodeId, address: SocketAddr, pick: impl FnOnce(&Peer) -> T) -> T {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = peers.get(node) {
            if known.address == address {
                return pick(known);
            }
        }
        let connection = self.network.connection(address, PEER_TIMEOUTS).with_header(
            tonic::codegen::http::HeaderName::from_static(SENDER_HEADER),
            self.sender.clone(),
        );
        let origin = origin(address);
        let unary = replica_client(connection.clone(), origin.clone());
        let batcher = ReplicaBatcher::start(connection.clone(), origin.clone(), unary, REPLICA_MESSAGE_BYTES_MAX);
        let peer = Peer {
            address,
            origin,
            connection,
            batcher,
        };
        let picked = pick(&peer);
        peers.insert(node.clone(), peer);
        picked
    }

    /// The batching sender of replica reads and merges to `node`.
    pub fn batcher(&self, node: &NodeId, address: SocketAddr) -> ReplicaBatcher {
        self.peer(node, address, |p| p.batcher.clone())
    }

    /// A replica API client for `node` at `address`, on the connection to it (created if
    /// needed, or if the address changed).
    pub fn replica(&self, node: &NodeId, address: SocketAddr) -> ReplicaClient<Connection> {
        self.peer(node, address, |p| {
            replica_client(p.connection.clone(), p.origin.clone())
        })
    }

    /// A client API client for `node` (used to forward a write to a replica of its key).
    pub fn kv(&self, node: &NodeId, address: SocketAddr) -> KvClient<Connection> {
        self.peer(node, address, |p| {
            KvClient::with_origin(p.connection.clone(), p.origin.clone())
                .max_decoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
        })
    }
}

/// A replica API client on `connection`, with the replica message limit both ways.
fn replica_client(connection: Connection, origin: Uri) -> ReplicaClient<Connection> {
    ReplicaClient::with_origin(connection, origin)
        .max_decoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
}

/// `http://ip:port`, the origin requests to a peer carry (scheme and `:authority`).
fn origin(address: SocketAddr) -> Uri {
    // A SocketAddr always forms a valid URI.
    Uri::try_from(format!("http://{address}")).unwrap_or_else(|_| unreachable!("http://{address} is a valid URI"))
}
