//! The node's network, pluggable so the same code runs over real sockets and over a
//! simulated network.
//!
//! A node makes three kinds of connection: it accepts gRPC connections, it dials HTTP/2
//! connections to its peers (and tonic channels to seeds when joining), and it exchanges
//! gossip datagrams.
//! By default these are tokio TCP sockets and chitchat's UDP transport. The simulation
//! (`sim/`) replaces all three with turmoil's network through [`Network`]: an incoming
//! stream of accepted connections, a [`Connector`] for outgoing ones, and a gossip
//! transport. Nothing else in the node touches a socket, so nothing else needs to know.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use ringkv_client::{Connection, ConnectionTimeouts, Dialer, Dialing, Io, TcpDialer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// A byte stream the node can run HTTP/2 over.
pub trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncIo for T {}

/// One connection of a pluggable network (boxed, so one type fits every network).
pub struct NetStream(Box<dyn AsyncIo>);

impl NetStream {
    /// Wraps a connection.
    pub fn new(io: impl AsyncIo) -> NetStream {
        NetStream(Box::new(io))
    }
}

impl AsyncRead for NetStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for NetStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// A future that yields a connection.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<NetStream>> + Send>>;

/// Dials outgoing connections on a pluggable network.
pub trait Connector: Send + Sync + 'static {
    /// Opens a connection to `to`.
    fn connect(&self, to: SocketAddr) -> Connecting;
}

/// Accepted connections, for a node whose server does not bind a real socket.
pub type Incoming = Pin<Box<dyn futures::Stream<Item = io::Result<NetStream>> + Send>>;

/// How a node reaches its peers: real TCP (the default) or an injected [`Connector`].
#[derive(Clone, Default)]
pub struct Network {
    connector: Option<Arc<dyn Connector>>,
}

impl Network {
    /// Real TCP sockets.
    pub fn tcp() -> Network {
        Network::default()
    }

    /// Every outgoing connection through `connector`.
    pub fn with_connector(connector: Arc<dyn Connector>) -> Network {
        Network {
            connector: Some(connector),
        }
    }

    /// An HTTP/2 connection to `address` that connects on first use (and again after a
    /// failure): the SDK's [`Connection`], dialing through this network.
    pub fn connection(&self, address: SocketAddr, timeouts: ConnectionTimeouts) -> Connection {
        match &self.connector {
            None => Connection::with_dialer(address.to_string(), TcpDialer::new(address.to_string()), timeouts),
            Some(connector) => {
                let dialer = ConnectorDialer {
                    address,
                    connector: Arc::clone(connector),
                };
                Connection::with_dialer(address.to_string(), dialer, timeouts)
            }
        }
    }

    /// A channel that connects on first use (and reconnects after failures).
    pub fn lazy_channel(&self, endpoint: Endpoint) -> Channel {
        match &self.connector {
            None => endpoint.connect_lazy(),
            Some(connector) => endpoint.connect_with_connector_lazy(service(Arc::clone(connector))),
        }
    }

    /// A channel connected now.
    pub async fn channel(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        match &self.connector {
            None => endpoint.connect().await,
            Some(connector) => endpoint.connect_with_connector(service(Arc::clone(connector))).await,
        }
    }
}

/// Dials one peer through the injected connector.
struct ConnectorDialer {
    address: SocketAddr,
    connector: Arc<dyn Connector>,
}

impl Dialer for ConnectorDialer {
    fn dial(&self) -> Dialing {
        let connecting = self.connector.connect(self.address);
        Box::pin(async move { Ok(Box::new(connecting.await?) as Box<dyn Io>) })
    }
}

/// The tower service tonic dials through: parses `http://ip:port` and asks the connector.
fn service(
    connector: Arc<dyn Connector>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<NetStream>,
    Error = io::Error,
    Future = impl Future<Output = io::Result<TokioIo<NetStream>>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: Uri| {
        let connector = Arc::clone(&connector);
        async move {
            let address = uri
                .authority()
                .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not an ip:port URI: {uri}")))?;
            Ok(TokioIo::new(connector.connect(address).await?))
        }
    })
}
