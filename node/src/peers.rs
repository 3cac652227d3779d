//! One HTTP/2 connection per peer, shared by every request to it.
//!
//! Channels are created lazily on first use and kept: tonic multiplexes concurrent RPCs
//! over the one connection, and reconnects by itself after the peer restarts. The
//! coordinator's replica reads and merges go through the peer's [`ReplicaBatcher`] on the
//! same connection. Keep-alive
//! pings make a connection that silently died (a cut network) fail fast instead of
//! hanging until the request timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use ringkv_client::proto::kv_client::KvClient;
use ringkv_client::proto::replica_client::ReplicaClient;
use ringkv_ring::NodeId;
use tonic::transport::{Channel, Endpoint};

use crate::network::Network;
use crate::replica_batcher::ReplicaBatcher;

/// Largest message a replica RPC may carry (a batch of states).
pub const REPLICA_MESSAGE_BYTES_MAX: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Lazily connected channels to peers, by node id.
pub struct Peers {
    network: Network,
    channels: Mutex<BTreeMap<NodeId, Connection>>,
}

struct Connection {
    address: SocketAddr,
    channel: Channel,
    batcher: ReplicaBatcher,
}

impl Peers {
    /// An empty pool dialing through `network`.
    pub fn new(network: Network) -> Peers {
        Peers {
            network,
            channels: Mutex::new(BTreeMap::new()),
        }
    }

    fn connection<T>(&self, node: &NodeId, address: SocketAddr, pick: impl FnOnce(&Connection) -> T) -> T {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = channels.get(node) {
            if known.address == address {
                return pick(known);
            }
        }
        let channel = self.network.lazy_channel(endpoint(address));
        let batcher = ReplicaBatcher::start(replica_client(channel.clone()));
        let connection = Connection {
            address,
            channel,
            batcher,
        };
        let picked = pick(&connection);
        channels.insert(node.clone(), connection);
        picked
    }

    /// The channel to `node` at `address`, created if needed (or if the address changed).
    pub fn channel(&self, node: &NodeId, address: SocketAddr) -> Channel {
        self.connection(node, address, |c| c.channel.clone())
    }

    /// The batching sender of replica reads and merges to `node`.
    pub fn batcher(&self, node: &NodeId, address: SocketAddr) -> ReplicaBatcher {
        self.connection(node, address, |c| c.batcher.clone())
    }

    /// A replica API client for `node`.
    pub fn replica(&self, node: &NodeId, address: SocketAddr) -> ReplicaClient<Channel> {
        replica_client(self.channel(node, address))
    }

    /// A client API client for `node` (used to forward a write to a replica of its key).
    pub fn kv(&self, node: &NodeId, address: SocketAddr) -> KvClient<Channel> {
        KvClient::new(self.channel(node, address))
            .max_decoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
    }
}

fn replica_client(channel: Channel) -> ReplicaClient<Channel> {
    ReplicaClient::new(channel)
        .max_decoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(REPLICA_MESSAGE_BYTES_MAX)
}

fn endpoint(address: SocketAddr) -> Endpoint {
    // A SocketAddr always forms a valid URI.
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap_or_else(|_| unreachable!("http://{address} is a valid URI"))
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
}
