//! [`Connection`]: the SDK's HTTP/2 connection to one node, under tonic's generated client.
//!
//! Why not tonic's `Channel`: measured on the single-node read benchmark
//! (`docs/benchmarks.md`), every call through a `Channel` cost the client two `writev`s,
//! one for the HEADERS frame and one for the DATA frame, and two task hand-offs (the
//! channel's buffer task, then hyper's dispatch task) before the bytes reached the
//! connection. hyper waits for h2 to grant the new stream send capacity before it sends
//! the body, and h2 grants it only once the connection task has opened the stream and
//! written its headers. Here the caller's task encodes the request, then hands h2 the
//! headers and the whole body at once (h2 buffers data regardless of capacity), so the
//! connection task writes both in one `writev`, and no task sits in between.
//!
//! tonic still does everything gRPC (paths, encoding, status, grpc-timeout); this module
//! only carries `http::Request`s over an `h2` connection:
//! - connects lazily on the first call (with a connect timeout and `TCP_NODELAY`), and
//!   again on the next call after the connection failed;
//! - sends HTTP/2 keep-alive pings every [`KEEP_ALIVE_INTERVAL`] and drops a connection
//!   whose ping is not answered within [`KEEP_ALIVE_TIMEOUT`], so a peer that vanished
//!   behind a partition is noticed without waiting for TCP;
//! - turns every transport failure into an error tonic reports with a source, which the
//!   SDK's retry rule treats as "this node may be down, try another".
//!
//! Nodes use the same connection for their calls to each other
//! ([`Connection::with_dialer`]): a node dials through its pluggable network, so the
//! simulation can run it over turmoil's TCP instead of real sockets.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::message_stream::MessageStream;

/// How often an idle or busy connection of the SDK is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping of the SDK may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 receive windows (per stream and per connection): large enough that a value of
/// the maximum size arrives without waiting for a window update.
const WINDOW_BYTES: u32 = 8 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A byte stream an HTTP/2 connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A stream being opened.
pub type Dialing = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// Opens byte streams to one peer, each time the connection (re)connects.
pub trait Dialer: Send + Sync + 'static {
    /// Opens a new stream to the peer.
    fn dial(&self) -> Dialing;
}

impl Dialer for Box<dyn Dialer> {
    fn dial(&self) -> Dialing {
        self.as_ref().dial()
    }
}

/// Dials `host:port` over TCP with `TCP_NODELAY` (the SDK's dialer, and a node's on a
/// real network).
pub struct TcpDialer {
    address: String,
}

impl TcpDialer {
    /// A dialer of `address` (`host:port`, resolved at each dial).
    pub fn new(address: String) -> TcpDialer {
        TcpDialer { address }
    }
}

impl Dialer for TcpDialer {
    fn dial(&self) -> Dialing {
        let address = self.address.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(address.as_str()).await?;
            tcp.set_nodelay(true)?;
            Ok(Box::new(tcp) as Box<dyn Io>)
        })
    }
}

/// Timeouts of a [`Connection`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionTimeouts {
    /// How long dialing and the HTTP/2 handshake may take together.
    pub connect: Duration,
    /// How often the connection is pinged, busy or idle.
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection is dropped.
    pub keep_alive: Duration,
}

/// A lazily connected, reconnecting HTTP/2 connection to one peer; cheap to clone
/// (clones share the connection).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    /// Headers added to every request (see [`Connection::with_header`]).
    headers: Arc<http::HeaderMap>,
}

struct Shared {
    /// The peer, for messages (`host:port`).
    address: String,
    dialer: Box<dyn Dialer>,
    timeouts: ConnectionTimeouts,
    /// The live connection's sender, if any, with the number of the connect that made it.
    sender: Mutex<Cached>,
    /// Held while connecting, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

/// The sender of the live connection, numbered so a failure forgets only the connection
/// that failed, not a newer one another caller has made since.
#[derive(Default)]
struct Cached {
    sender: Option<(u64, h2::client::SendRequest<Bytes>)>,
    connects: u64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.shared.address)
            .finish()
    }
}

impl Connection {
    /// A TCP connection to `address` (`host:port`) that connects on first use, with the
    /// SDK's keep-alive settings.
    pub fn lazy(address: String, connect_timeout: Duration) -> Connection {
        let dialer = TcpDialer::new(address.clone());
        let timeouts = ConnectionTimeouts {
            connect: connect_timeout,
            keep_alive_interval: KEEP_ALIVE_INTERVAL,
            keep_alive: KEEP_ALIVE_TIMEOUT,
        };
        Connection::with_dialer(address, dialer, timeouts)
    }

    /// A connection to the peer `address` names, whose streams `dialer` opens; connects
    /// on first use.
    pub fn with_dialer(address: String, dialer: impl Dialer, timeouts: ConnectionTimeouts) -> Connection {
        assert!(
            !timeouts.keep_alive_interval.is_zero() && !timeouts.keep_alive.is_zero(),
            "keep-alive interval and timeout must be positive"
        );
        Connection {
            shared: Arc::new(Shared {
                address,
                dialer: Box::new(dialer),
                timeouts,
                sender: Mutex::new(Cached::default()),
                connecting: tokio::sync::Mutex::new(()),
            }),
            headers: Arc::new(http::HeaderMap::new()),
        }
    }

    /// The same connection, adding `name: value` to every request sent through this
    /// handle and its clones (a node names itself to its peers this way).
    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Connection {
        Arc::make_mut(&mut self.headers).insert(name, value);
        self
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cached> {
        // Nothing panics while holding this lock; a poisoned one still holds a valid sender.
        self.shared.sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self) -> Option<(u64, h2::client::SendRequest<Bytes>)> {
        self.cache().sender.clone()
    }

    /// Drops the sender of connect number `connect` after it failed, unless a newer one
    /// replaced it already; the next call connects again.
    fn forget(&self, connect: u64) {
        let mut cache = self.cache();
        if cache.sender.as_ref().is_some_and(|(number, _)| *number == connect) {
            cache.sender = None;
        }
    }

    /// The live connection's sender and its connect number, connecting if there is none.
    async fn sender(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), BoxError> {
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(cached) = self.cached() {
            return Ok(cached);
        }
        let sender = self.connect().await?;
        let mut cache = self.cache();
        cache.connects += 1;
        cache.sender = Some((cache.connects, sender.clone()));
        Ok((cache.connects, sender))
    }

    /// A sender ready for a new request, with its connect number. A kept connection that
    /// is found closed (the peer restarted, or shut down and sent GOAWAY) is forgotten and
    /// replaced once: no request has left on it, so nothing is sent twice, and the call
    /// reaches a restarted peer instead of failing on the connection it left behind.
    async fn ready_sender(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), BoxError> {
        let (connect, sender) = self.sender().await?;
        if let Ok(ready) = sender.ready().await {
            return Ok((connect, ready));
        }
        self.forget(connect);
        let (connect, sender) = self.sender().await?;
        let ready = sender.ready().await.inspect_err(|_| self.forget(connect))?;
        Ok((connect, ready))
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, BoxError> {
        let address = &self.shared.address;
        let timeout = self.shared.timeouts.connect;
        let handshake = async {
            let io = self
                .shared
                .dialer
                .dial()
                .await
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            h2::client::Builder::new()
                .initial_window_size(WINDOW_BYTES)
                .initial_connection_window_size(WINDOW_BYTES)
                .handshake::<_, Bytes>(io)
                .await
                .map_err(|e| format!("HTTP/2 handshake with {address} failed: {e}"))
        };
        let (sender, mut connection) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| format!("connecting to {address} timed out after {timeout:?}"))??;
        let ping_pong = connection.ping_pong();
        let address = address.clone();
        let ConnectionTimeouts {
            keep_alive_interval,
            keep_alive,
            ..
        } = self.shared.timeouts;
        tokio::spawn(async move {
            let keep_alive = async move {
                let Some(mut ping_pong) = ping_pong else {
                    return std::future::pending::<()>().await;
                };
                loop {
                    tokio::time::sleep(keep_alive_interval).await;
                    match tokio::time::timeout(keep_alive, ping_pong.ping(h2::Ping::opaque())).await {
                        Ok(Ok(_pong)) => {}
                        Ok(Err(_)) | Err(_) => return,
                    }
                }
            };
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%address, %error, "connection to node closed");
                    }
                }
                () = keep_alive => tracing::debug!(%address, "keep-alive ping unanswered; connection dropped"),
            }
        });
        Ok(sender)
    }

    /// Opens a bidirectional gRPC stream to `uri` (the peer's origin and the method's
    /// path, e.g. `http://10.0.0.1:7000/ringkv.v1.Replica/ApplyStream`) whose messages, both
    /// ways, are at most `message_bytes_max` bytes. A connection-level failure is
    /// `UNAVAILABLE` and makes the next call connect again.
    pub async fn open_stream<Req, Resp>(
        &self,
        uri: http::Uri,
        message_bytes_max: usize,
    ) -> Result<MessageStream<Req, Resp>, tonic::Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let unavailable = |e: &dyn std::fmt::Display| tonic::Status::unavailable(e.to_string());
        let mut request = crate::message_stream::open_request(uri)?;
        for (name, value) in self.headers.iter() {
            request.headers_mut().insert(name, value.clone());
        }
        let (connect, mut sender) = self.ready_sender().await.map_err(|e| unavailable(&e))?;
        let (response, send) = sender.send_request(request, false).map_err(|e| {
            self.forget(connect);
            unavailable(&e)
        })?;
        Ok(MessageStream::new(send, response, message_bytes_max))
    }

    async fn send(self, request: http::Request<tonic::body::Body>) -> Result<http::Response<ResponseBody>, BoxError> {
        let (mut parts, body) = request.into_parts();
        for (name, value) in self.headers.iter() {
            parts.headers.insert(name, value.clone());
        }
        // Encode first, so the headers and the body reach h2 together (module docs).
        let mut body = std::pin::pin!(body);
        let mut chunks: Vec<Bytes> = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Ok(data) = frame?.into_data() {
                chunks.push(data);
            }
        }
        let (connect, mut sender) = self.ready_sender().await?;
        let (response, mut stream) = sender
            .send_request(http::Request::from_parts(parts, ()), chunks.is_empty())
            .inspect_err(|_| self.forget(connect))?;
        let last = chunks.len().saturating_sub(1);
        for (index, chunk) in chunks.into_iter().enumerate() {
            stream.send_data(chunk, index == last)?;
        }
        let response = response.await.inspect_err(|error| {
            // The connection itself failed: the next call should not wait on it to learn so.
            if error.is_io() || error.is_go_away() {
                self.forget(connect);
            }
        })?;
        Ok(response.map(|recv| ResponseBody { recv, data_done: false }))
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness (connecting, the peer's stream limit) is awaited inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}

/// A response body read from an h2 stream: data, then trailers (where gRPC puts the status).
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Give the window back at once: tonic copies or keeps the bytes itself.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
