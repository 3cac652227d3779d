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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::net::TcpStream;

/// How often an idle or busy connection is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 receive windows (per stream and per connection): large enough that a value of
/// the maximum size arrives without waiting for a window update.
const WINDOW_BYTES: u32 = 8 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A lazily connected, reconnecting HTTP/2 connection to one `host:port`; cheap to clone
/// (clones share the connection).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port`, resolved at each connect.
    address: String,
    connect_timeout: Duration,
    /// The live connection's sender, if any.
    sender: Mutex<Option<h2::client::SendRequest<Bytes>>>,
    /// Held while connecting, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("address", &self.shared.address)
            .finish()
    }
}

impl Connection {
    /// A connection to `address` (`host:port`) that connects on first use.
    pub fn lazy(address: String, connect_timeout: Duration) -> Connection {
        Connection {
            shared: Arc::new(Shared {
                address,
                connect_timeout,
                sender: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn cached(&self) -> Option<h2::client::SendRequest<Bytes>> {
        self.shared.sender.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops the cached sender after it failed; the next call connects again.
    fn forget(&self) {
        *self.shared.sender.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn sender(&self) -> Result<h2::client::SendRequest<Bytes>, BoxError> {
        if let Some(sender) = self.cached() {
            return Ok(sender);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(sender) = self.cached() {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        *self.shared.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, BoxError> {
        let address = &self.shared.address;
        let tcp = tokio::time::timeout(self.shared.connect_timeout, TcpStream::connect(address.as_str()))
            .await
            .map_err(|_| {
                format!(
                    "connecting to {address} timed out after {:?}",
                    self.shared.connect_timeout
                )
            })?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        tcp.set_nodelay(true)?;
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(WINDOW_BYTES)
            .initial_connection_window_size(WINDOW_BYTES)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {address} failed: {e}"))?;
        let ping_pong = connection.ping_pong();
        let address = address.clone();
        tokio::spawn(async move {
            let keep_alive = async move {
                let Some(mut ping_pong) = ping_pong else {
                    return std::future::pending::<()>().await;
                };
                loop {
                    tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
                    match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await {
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

    async fn send(self, request: http::Request<tonic::body::Body>) -> Result<http::Response<ResponseBody>, BoxError> {
        let (parts, body) = request.into_parts();
        // Encode first, so the headers and the body reach h2 together (module docs).
        let mut body = std::pin::pin!(body);
        let mut chunks: Vec<Bytes> = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Ok(data) = frame?.into_data() {
                chunks.push(data);
            }
        }
        let mut sender = self.sender().await?;
        sender = match sender.ready().await {
            Ok(ready) => ready,
            Err(error) => {
                self.forget();
                return Err(error.into());
            }
        };
        let (response, mut stream) = sender
            .send_request(http::Request::from_parts(parts, ()), chunks.is_empty())
            .inspect_err(|_| self.forget())?;
        let last = chunks.len().saturating_sub(1);
        for (index, chunk) in chunks.into_iter().enumerate() {
            stream.send_data(chunk, index == last)?;
        }
        let response = response.await.inspect_err(|error| {
            // The connection itself failed: the next call should not wait on it to learn so.
            if error.is_io() || error.is_go_away() {
                self.forget();
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
