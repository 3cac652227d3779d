//! The node's network on turmoil: gRPC over turmoil's TCP, gossip over turmoil's UDP.
//!
//! gRPC: a [`Connector`] dials `turmoil::net::TcpStream`s and [`incoming`] accepts them,
//! so tonic runs unchanged over the simulated network (partitions, latency, loss and
//! crashes apply to it).
//!
//! Gossip: chitchat's wire encoding is private to it, so its messages cannot be turned
//! into bytes here. [`GossipNet`] keeps each message in a table shared by the
//! simulation's hosts and sends only its 8-byte ticket as a turmoil datagram; the
//! receiver redeems the ticket. Turmoil thus decides, from the seed, whether and when
//! every gossip message arrives, exactly as for any other packet. Tickets of datagrams
//! that never arrive are evicted oldest first ([`GOSSIP_TICKETS_MAX`]).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ringkv_gossip::transport::{Envelope, RecvOutcome, SendOutcome, Socket, Transport};
use ringkv_node::network::{Connecting, Connector, Incoming, NetStream};

/// Gossip messages kept waiting for their datagram, at most.
pub const GOSSIP_TICKETS_MAX: usize = 16_384;
/// What a gossip message is counted as on the wire (its real size is chitchat's secret).
const TICKET_BYTES: usize = 8;

/// Dials turmoil TCP connections.
pub struct TurmoilConnector;

impl Connector for TurmoilConnector {
    fn connect(&self, to: SocketAddr) -> Connecting {
        Box::pin(async move { Ok(NetStream::new(turmoil::net::TcpStream::connect(to).await?)) })
    }
}

/// Connections accepted but not yet taken by the server, at most (more are refused).
pub const ACCEPT_BACKLOG_MAX: usize = 32;

/// Accepts turmoil TCP connections on `port` (all of the host's addresses).
///
/// The port is bound when the server first polls the stream, as a real node binds its
/// port only once it serves: until then connects are refused at once, instead of being
/// accepted into a queue nobody reads (requests then hung for the client's keepalive, and
/// a put the client had given up on was applied when the node began serving: seed
/// 114317178650). From then on a task accepts at once and queues up to
/// [`ACCEPT_BACKLOG_MAX`] connections for the server, refusing the rest, as a kernel's
/// listen backlog does: turmoil itself panics when SYNs pile up unaccepted. A failed bind
/// is the stream's first item. The task stops, releasing the port, once the stream is
/// dropped.
pub async fn incoming(port: u16) -> io::Result<Incoming> {
    // Bound when the server first asks for a connection, not before: a real node binds
    // its port only once it serves (after discovery), so until then connects are refused
    // instead of queueing requests nobody answers.
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<NetStream>>(ACCEPT_BACKLOG_MAX);
    tokio::spawn(async move {
        if wait.await.is_err() {
            return;
        }
        let listener = match turmoil::net::TcpListener::bind(("0.0.0.0", port)).await {
            Ok(listener) => listener,
            Err(e) => {
                let _ = tx.try_send(Err(e));
                return;
            }
        };
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => {
                    let accepted = accepted.map(|(stream, _)| NetStream::new(stream));
                    // A full backlog refuses the connection by dropping it.
                    if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(accepted) {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold((rx, Some(go)), |(mut rx, go)| async move {
        if let Some(go) = go {
            let _ = go.send(());
        }
        rx.recv().await.map(|item| (item, (rx, None)))
    });
    Ok(Box::pin(stream))
}

#[derive(Default)]
struct Tickets {
    next: u64,
    waiting: BTreeMap<u64, (SocketAddr, Envelope)>,
    order: VecDeque<u64>,
}

/// The gossip network of one simulation (shared by all its hosts).
#[derive(Clone, Default)]
pub struct GossipNet {
    tickets: Arc<Mutex<Tickets>>,
}

impl GossipNet {
    /// A network with no messages in flight.
    pub fn new() -> GossipNet {
        GossipNet::default()
    }

    fn park(&self, from: SocketAddr, envelope: Envelope) -> u64 {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = tickets.next;
        tickets.next += 1;
        tickets.waiting.insert(ticket, (from, envelope));
        tickets.order.push_back(ticket);
        while tickets.order.len() > GOSSIP_TICKETS_MAX {
            if let Some(oldest) = tickets.order.pop_front() {
                tickets.waiting.remove(&oldest);
            }
        }
        ticket
    }

    fn redeem(&self, ticket: u64) -> Option<(SocketAddr, Envelope)> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.waiting.remove(&ticket)
    }
}

#[async_trait::async_trait]
impl Transport for GossipNet {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        // turmoil binds UDP to the unspecified address only; the host has one address.
        let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", listen_addr.port())).await?;
        Ok(Box::new(GossipSocket {
            net: self.clone(),
            socket,
            address: listen_addr,
        }))
    }
}

struct GossipSocket {
    net: GossipNet,
    socket: turmoil::net::UdpSocket,
    address: SocketAddr,
}

#[async_trait::async_trait]
impl Socket for GossipSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.address)
    }

    async fn send(&mut self, to: SocketAddr, envelope: Envelope) -> anyhow::Result<SendOutcome> {
        let ticket = self.net.park(self.address, envelope);
        // A datagram to a crashed or cut-off host is lost, as UDP would lose it.
        let _ = self.socket.send_to(&ticket.to_be_bytes(), to).await;
        Ok(SendOutcome {
            num_bytes_sent: TICKET_BYTES,
        })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let mut buf = [0u8; TICKET_BYTES];
        loop {
            let (len, _) = self.socket.recv_from(&mut buf).await?;
            if len != TICKET_BYTES {
                continue;
            }
            if let Some((from_addr, envelope)) = self.net.redeem(u64::from_be_bytes(buf)) {
                return Ok(RecvOutcome {
                    from_addr,
                    envelope,
                    num_bytes_received: TICKET_BYTES,
                });
            }
        }
    }
}

/// The SDK's dialer of `address` over turmoil TCP (for [`ringkv_client::ClientBuilder::dialer`]).
pub fn sdk_dialer(address: &str) -> Box<dyn ringkv_client::Dialer> {
    Box::new(TurmoilDialer {
        address: address.to_owned(),
    })
}

struct TurmoilDialer {
    address: String,
}

impl ringkv_client::Dialer for TurmoilDialer {
    fn dial(&self) -> ringkv_client::Dialing {
        let address = self.address.clone();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(address.as_str()).await?;
            Ok(Box::new(stream) as Box<dyn ringkv_client::Io>)
        })
    }
}
