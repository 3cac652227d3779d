//! [`Client`] and its [`ClientBuilder`]: the SDK's entry point, and the failover loop every
//! call goes through.
//!
//! A client holds one lazily connected HTTP/2 connection per endpoint (`connection.rs`)
//! for its whole life; every node coordinates requests, so any endpoint can serve any call. A call goes to the
//! preferred endpoint (the last one that answered); on a transport error, `UNAVAILABLE` or
//! an attempt timeout it moves to the next endpoint after a jittered exponential backoff, at
//! most `retries` times. Each attempt is bounded by the request timeout, so a call never
//! hangs: it takes at most `(retries + 1) * timeout` plus the backoffs. Start reading at
//! `Client::call`, the private method that carries every request.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;
use tonic::transport::Uri;

use crate::connection::{Connection, ConnectionTimeouts, Dialer, KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT};
use crate::options::{check_timeout, consistency_to_proto, timeout_to_proto, ttl_to_proto};
use crate::proto::kv_client::KvClient;
use crate::received::detach;
use crate::retry::{classify, Backoff, Failure};
use crate::{proto, ClientError, Context, ReadOptions, ReadResult, WriteOptions};

/// The most endpoints one client may be given.
pub const ENDPOINTS_MAX: usize = 1024;
/// The most retries a client may be configured with (attempts = retries + 1).
pub const RETRIES_MAX: u32 = 16;
/// The longest backoff between two attempts a client may be configured with.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The largest response the client accepts: room for many 1 MiB siblings.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;

const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
const RETRIES_DEFAULT: u32 = 2;
const BACKOFF_INITIAL_DEFAULT: Duration = Duration::from_millis(50);
const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);

const _: () = assert!(RETRIES_DEFAULT <= RETRIES_MAX);
const _: () = assert!(BACKOFF_MAX_DEFAULT.as_nanos() <= BACKOFF_MAX.as_nanos());
const _: () = assert!(BACKOFF_INITIAL_DEFAULT.as_nanos() <= BACKOFF_MAX_DEFAULT.as_nanos());

/// A handle to a ringkv cluster. Cheap to clone: clones share the connections and the
/// preferred endpoint.
///
/// ```no_run
/// use std::time::Duration;
/// use ringkv_client::{Client, Context};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), ringkv_client::ClientError> {
/// let client = Client::builder()
///     .endpoints(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"])
///     .request_timeout(Duration::from_secs(2))
///     .retries(3)
///     .backoff(Duration::from_millis(20), Duration::from_millis(500))
///     .build()?;
/// client.put("greeting", "hello", &Context::empty()).await?;
/// let read = client.get("greeting").await?;
/// assert_eq!(read.value().map(|v| v.as_ref()), Some(&b"hello"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Never empty.
    nodes: Vec<Node>,
    /// Index into `nodes` of the endpoint the next call starts with.
    preferred: AtomicUsize,
    request_timeout: Duration,
    retries: u32,
    backoff: Backoff,
    // A seeded generator rather than the thread RNG, so a simulation can replay the jitter.
    rng: Mutex<StdRng>,
}

struct Node {
    /// As the caller wrote it (`host:port`), for error messages.
    address: String,
    /// `http://host:port`: the origin tonic puts on every request.
    origin: Uri,
    connection: Connection,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Client")
            .field("endpoints", &inner.nodes.iter().map(|n| &n.address).collect::<Vec<_>>())
            .field("preferred", &inner.preferred.load(Ordering::Relaxed))
            .field("request_timeout", &inner.request_timeout)
            .field("retries", &inner.retries)
            .field("backoff", &inner.backoff)
            .finish()
    }
}

impl Client {
    /// Starts configuring a client; see [`ClientBuilder`] for the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for `endpoints` (`"host:port"`) with default settings.
    ///
    /// Nothing is dialled yet: connections open on first use, so this succeeds even when no
    /// node is up. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn connect<I, S>(endpoints: I) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().endpoints(endpoints).build()
    }

    /// Reads `key` with the node's default consistency: all live siblings and the context.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a key the server refuses (empty or too long),
    /// [`ClientError::Unavailable`] or [`ClientError::Timeout`] when no attempt succeeded.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<ReadResult, ClientError> {
        self.get_with(key, ReadOptions::default()).await
    }

    /// Reads `key` with explicit options.
    ///
    /// # Errors
    /// As [`Client::get`], plus [`ClientError::InvalidArgument`] for an option out of range.
    pub async fn get_with(&self, key: impl Into<Bytes>, options: ReadOptions) -> Result<ReadResult, ClientError> {
        let request = proto::GetRequest {
            key: key.into(),
            consistency: consistency_to_proto(options.consistency)?,
            timeout_ms: timeout_to_proto(options.timeout)?,
        };
        let response = self
            .call(options.timeout, request, |mut kv, request| async move {
                kv.get(request).await
            })
            .await?;
        Ok(ReadResult::from(response))
    }

    /// Writes `value` under `key`, replacing the siblings `context` has seen, with the
    /// node's default consistency. Returns the context covering this write: a follow-up
    /// `put` with it replaces this value.
    ///
    /// A retried put may reach the store twice (the first attempt can succeed on some
    /// replicas before failing); the second write then stands beside the first as a sibling
    /// with the same value, which any resolver folds back into one.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a key or value the server refuses,
    /// [`ClientError::Unavailable`] or [`ClientError::Timeout`] when no attempt succeeded.
    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        context: &Context,
    ) -> Result<Context, ClientError> {
        self.put_with(key, value, context, WriteOptions::default()).await
    }

    /// Writes `value` under `key` with explicit options (consistency, timeout, TTL).
    ///
    /// # Errors
    /// As [`Client::put`], plus [`ClientError::InvalidArgument`] for an option out of range.
    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        context: &Context,
        options: WriteOptions,
    ) -> Result<Context, ClientError> {
        let request = proto::PutRequest {
            key: key.into(),
            value: value.into(),
            context: context.as_bytes().clone(),
            consistency: consistency_to_proto(options.consistency)?,
            timeout_ms: timeout_to_proto(options.timeout)?,
            ttl_ms: ttl_to_proto(options.ttl)?,
            forwarded: false,
        };
        let response = self
            .call(options.timeout, request, |mut kv, request| async move {
                kv.put(request).await
            })
            .await?;
        Ok(Context::from_bytes(detach(response.context)))
    }

    /// Deletes `key` (writes a tombstone), replacing the siblings `context` has seen, with
    /// the node's default consistency. Siblings written concurrently survive.
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn delete(&self, key: impl Into<Bytes>, context: &Context) -> Result<(), ClientError> {
        self.delete_with(key, context, WriteOptions::default()).await
    }

    /// Deletes `key` with explicit options. `options.ttl` must be `None`.
    ///
    /// # Errors
    /// As [`Client::put`], plus [`ClientError::InvalidArgument`] for an option out of range
    /// or a TTL.
    pub async fn delete_with(
        &self,
        key: impl Into<Bytes>,
        context: &Context,
        options: WriteOptions,
    ) -> Result<(), ClientError> {
        if options.ttl.is_some() {
            return Err(ClientError::InvalidArgument("ttl does not apply to delete".to_owned()));
        }
        let request = proto::DeleteRequest {
            key: key.into(),
            context: context.as_bytes().clone(),
            consistency: consistency_to_proto(options.consistency)?,
            timeout_ms: timeout_to_proto(options.timeout)?,
            forwarded: false,
        };
        self.call(options.timeout, request, |mut kv, request| async move {
            kv.delete(request).await
        })
        .await?;
        Ok(())
    }

    /// The cluster as the answering node sees it: members, liveness, ownership, limits.
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] or [`ClientError::Timeout`] when no attempt succeeded.
    pub async fn status(&self) -> Result<proto::StatusResponse, ClientError> {
        self.call(None, proto::StatusRequest {}, |mut kv, request| async move {
            kv.status(request).await
        })
        .await
    }

    /// Asks the node this client talks to to leave the cluster: it hands its data to the
    /// new owners and then stops. Returns the id of the leaving node.
    ///
    /// # Errors
    /// [`ClientError::InvalidConfig`] unless the client has exactly one endpoint (a
    /// failover must never make another node leave); `FAILED_PRECONDITION` as
    /// [`ClientError::Rpc`] when the node runs with a static member list.
    pub async fn leave(&self) -> Result<String, ClientError> {
        if self.inner.nodes.len() != 1 {
            return Err(ClientError::InvalidConfig(
                "leave needs a client with exactly one endpoint: the node that should leave".to_owned(),
            ));
        }
        let response = self
            .call(None, proto::LeaveRequest {}, |mut kv, request| async move {
                kv.leave(request).await
            })
            .await?;
        Ok(response.node_id)
    }

    /// Removes a dead member from the ring; the survivors re-replicate its data.
    ///
    /// # Errors
    /// `NOT_FOUND` or `FAILED_PRECONDITION` as [`ClientError::Rpc`] when the node is not a
    /// member or is still alive.
    pub async fn remove_node(&self, node_id: &str) -> Result<(), ClientError> {
        let request = proto::RemoveNodeRequest {
            node_id: node_id.to_owned(),
        };
        self.call(
            None,
            request,
            |mut kv, request| async move { kv.remove_node(request).await },
        )
        .await?;
        Ok(())
    }

    /// Sends `request` with failover: see the module documentation.
    async fn call<Req, Resp, F, Fut>(
        &self,
        timeout: Option<Duration>,
        request: Req,
        send: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(KvClient<Connection>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let inner = &*self.inner;
        let attempt_timeout = timeout.unwrap_or(inner.request_timeout);
        let attempts_max = inner.retries + 1;
        let started = Instant::now();
        let mut index = inner.preferred.load(Ordering::Relaxed) % inner.nodes.len();
        let mut endpoints_tried: Vec<String> = Vec::new();
        // The last retryable failure: `Some(text)` for unavailable, `None` for a timeout.
        let mut last_unavailable: Option<String> = None;

        for attempt in 1..=attempts_max {
            if attempt > 1 {
                let delay = {
                    let mut rng = inner.rng.lock().unwrap_or_else(|e| e.into_inner());
                    inner.backoff.delay(attempt - 1, &mut *rng)
                };
                tokio::time::sleep(delay).await;
            }
            let node = &inner.nodes[index];
            if !endpoints_tried.contains(&node.address) {
                endpoints_tried.push(node.address.clone());
            }
            let kv = KvClient::with_origin(node.connection.clone(), node.origin.clone())
                .max_decoding_message_size(RESPONSE_BYTES_MAX);
            let mut attempt_request = tonic::Request::new(request.clone());
            // Also tell the server (grpc-timeout), so it stops working for a caller that
            // has already given up.
            attempt_request.set_timeout(attempt_timeout);

            let failure = match tokio::time::timeout(attempt_timeout, send(kv, attempt_request)).await {
                Ok(Ok(response)) => {
                    inner.preferred.store(index, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) => classify(&status),
                Err(_elapsed) => Failure::Timeout,
            };
            if let Failure::Fatal(error) = failure {
                return Err(error);
            }
            tracing::debug!(
                endpoint = %node.address,
                attempt,
                attempts_max,
                failure = ?failure,
                "ringkv request attempt failed"
            );
            last_unavailable = match failure {
                Failure::Unavailable(message) => Some(message),
                Failure::Timeout | Failure::Fatal(_) => None,
            };
            // Move the shared preference off the failed endpoint, unless a concurrent call
            // has already moved it elsewhere.
            let next = (index + 1) % inner.nodes.len();
            let _ = inner
                .preferred
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
            index = next;
        }

        Err(match last_unavailable {
            Some(message) => ClientError::Unavailable {
                message,
                attempts: attempts_max,
                endpoints: endpoints_tried,
            },
            None => ClientError::Timeout {
                after: started.elapsed(),
                attempts: attempts_max,
            },
        })
    }
}

/// Configures a [`Client`]. Every setting has a default; only the endpoints are required.
///
/// | setting | default |
/// |---|---|
/// | [`request_timeout`](Self::request_timeout) | 5 s per attempt |
/// | [`connect_timeout`](Self::connect_timeout) | 2 s |
/// | [`retries`](Self::retries) | 2 (3 attempts) |
/// | [`backoff`](Self::backoff) | 50 ms doubling up to 1 s, with jitter |
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    backoff: Backoff,
    jitter_seed: Option<u64>,
    dialer: Option<DialerFactory>,
}

/// Makes the [`Dialer`] of the endpoint it is given (see [`ClientBuilder::dialer`]).
type MakeDialer = dyn Fn(&str) -> Box<dyn Dialer> + Send + Sync;

/// A shared [`MakeDialer`].
#[derive(Clone)]
struct DialerFactory(Arc<MakeDialer>);

impl std::fmt::Debug for DialerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialerFactory")
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            retries: RETRIES_DEFAULT,
            backoff: Backoff {
                initial: BACKOFF_INITIAL_DEFAULT,
                max: BACKOFF_MAX_DEFAULT,
            },
            jitter_seed: None,
            dialer: None,
        }
    }
}

impl ClientBuilder {
    /// The nodes to send requests to, as `"host:port"` (an `http://` prefix is accepted).
    /// Replaces any endpoints set before. The first one is tried first.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.endpoints = endpoints.into_iter().map(|e| e.as_ref().to_owned()).collect();
        self
    }

    /// How long one attempt may take, connecting included; at most [`crate::TIMEOUT_MAX`].
    /// A request's own [`ReadOptions::timeout`] or [`WriteOptions::timeout`] overrides it.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long opening a connection may take; at most [`crate::TIMEOUT_MAX`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many times a failed attempt is retried on the next endpoint; at most
    /// [`RETRIES_MAX`]. Zero sends every request exactly once.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The backoff before the first retry, doubling for each further retry up to `max`;
    /// each delay is drawn at random from its upper half. `initial <= max <= BACKOFF_MAX`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// Seeds the backoff jitter, so a test or a simulation replays the same delays.
    /// Without a seed, it is drawn from the operating system.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// How connections are opened: `make(address)` returns the [`Dialer`] for the endpoint
    /// `address` (`host:port`), called once per endpoint. By default the client dials TCP.
    /// A deterministic simulation passes its own network here, so the real SDK (its
    /// retries, failover and backoff) runs over simulated links.
    pub fn dialer(mut self, make: impl Fn(&str) -> Box<dyn Dialer> + Send + Sync + 'static) -> Self {
        self.dialer = Some(DialerFactory(Arc::new(make)));
        self
    }

    /// Checks the settings and creates the client's connections, without connecting.
    /// Must be called inside a Tokio runtime (each connection runs a background task).
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] when the list is empty, an endpoint is not a
    /// `host:port` address or appears twice; [`ClientError::InvalidConfig`] for a setting
    /// out of range or when there is no Tokio runtime.
    pub fn build(self) -> Result<Client, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given".to_owned(),
            });
        }
        if self.endpoints.len() > ENDPOINTS_MAX {
            return Err(ClientError::InvalidConfig(format!(
                "{} endpoints given, the limit is {ENDPOINTS_MAX}",
                self.endpoints.len()
            )));
        }
        check_timeout(self.request_timeout)
            .map_err(|reason| ClientError::InvalidConfig(format!("request {reason}")))?;
        check_timeout(self.connect_timeout)
            .map_err(|reason| ClientError::InvalidConfig(format!("connect {reason}")))?;
        if self.retries > RETRIES_MAX {
            return Err(ClientError::InvalidConfig(format!(
                "retries is {}, the limit is {RETRIES_MAX}",
                self.retries
            )));
        }
        if self.backoff.initial > self.backoff.max {
            return Err(ClientError::InvalidConfig(format!(
                "initial backoff {:?} is above the maximum backoff {:?}",
                self.backoff.initial, self.backoff.max
            )));
        }
        if self.backoff.max > BACKOFF_MAX {
            return Err(ClientError::InvalidConfig(format!(
                "maximum backoff is {:?}, the limit is {BACKOFF_MAX:?}",
                self.backoff.max
            )));
        }

        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (index, address) in self.endpoints.iter().enumerate() {
            if self.endpoints[..index].contains(address) {
                return Err(ClientError::InvalidEndpoint {
                    endpoint: address.clone(),
                    reason: "listed twice".to_owned(),
                });
            }
            endpoints.push(parse_endpoint(address)?);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::InvalidConfig(
                "a client must be built inside a tokio runtime".to_owned(),
            ));
        }

        let nodes = self
            .endpoints
            .into_iter()
            .zip(endpoints)
            .map(|(address, origin)| {
                let authority = origin.authority().map_or_else(String::new, |a| a.as_str().to_owned());
                let connection = match &self.dialer {
                    Some(DialerFactory(make)) => {
                        let timeouts = ConnectionTimeouts {
                            connect: self.connect_timeout,
                            keep_alive_interval: KEEP_ALIVE_INTERVAL,
                            keep_alive: KEEP_ALIVE_TIMEOUT,
                        };
                        let dialer = make(&authority);
                        Connection::with_dialer(authority, dialer, timeouts)
                    }
                    None => Connection::lazy(authority, self.connect_timeout),
                };
                Node {
                    address,
                    connection,
                    origin,
                }
            })
            .collect();
        let rng = match self.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                nodes,
                preferred: AtomicUsize::new(0),
                request_timeout: self.request_timeout,
                retries: self.retries,
                backoff: self.backoff,
                rng: Mutex::new(rng),
            }),
        })
    }
}

/// Parses `"host:port"` (or `"http://host:port"`) into the origin of its requests.
fn parse_endpoint(address: &str) -> Result<Uri, ClientError> {
    let invalid = |reason: String| ClientError::InvalidEndpoint {
        endpoint: address.to_owned(),
        reason,
    };
    if address.is_empty() {
        return Err(invalid("empty".to_owned()));
    }
    let uri_text = if address.starts_with("http://") {
        address.to_owned()
    } else if address.contains("://") {
        return Err(invalid("only plain http is supported; write host:port".to_owned()));
    } else {
        format!("http://{address}")
    };
    let uri = Uri::try_from(uri_text).map_err(|error| invalid(format!("not a host:port address: {error}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host".to_owned()));
    }
    // The port is read from the text: `Uri` only says "no port" for one out of range.
    let authority = uri.authority().map_or("", |a| a.as_str());
    let port_text = match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port,
        _ => "",
    };
    match port_text.parse::<u16>() {
        _ if port_text.is_empty() => return Err(invalid("missing port".to_owned())),
        Ok(0) => return Err(invalid("port 0 is not a server port".to_owned())),
        Ok(_) => {}
        Err(_) => return Err(invalid(format!("port {port_text:?} is not a number from 1 to 65535"))),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("unexpected path after host:port".to_owned()));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_endpoint(address: &str, expected: Result<&str, &str>) {
        let got = parse_endpoint(address).map(|e| e.to_string());
        match (got, expected) {
            (Ok(uri), Ok(expected_uri)) => assert_eq!(uri, expected_uri),
            (Err(ClientError::InvalidEndpoint { endpoint, reason }), Err(expected_reason)) => {
                assert_eq!(endpoint, address);
                assert!(
                    reason.contains(expected_reason),
                    "{address:?}: {reason:?} lacks {expected_reason:?}"
                );
            }
            (got, expected) => panic!("{address:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn endpoints_are_host_and_port() {
        check_endpoint("127.0.0.1:7101", Ok("http://127.0.0.1:7101/"));
        check_endpoint("node-1.example:80", Ok("http://node-1.example:80/"));
        check_endpoint("[::1]:7101", Ok("http://[::1]:7101/"));
        check_endpoint("http://127.0.0.1:7101", Ok("http://127.0.0.1:7101/"));
        check_endpoint("", Err("empty"));
        check_endpoint("127.0.0.1", Err("missing port"));
        check_endpoint("127.0.0.1:", Err("missing port"));
        check_endpoint(":7101", Err(""));
        check_endpoint("127.0.0.1:0", Err("port 0"));
        check_endpoint("127.0.0.1:99999", Err("port \"99999\" is not a number from 1 to 65535"));
        check_endpoint("[::1]", Err("missing port"));
        check_endpoint("has space:1", Err("not a host:port address"));
        check_endpoint("https://127.0.0.1:7101", Err("only plain http"));
        check_endpoint("127.0.0.1:7101/path", Err("unexpected path"));
    }

    fn check_config(builder: ClientBuilder, expected_reason: &str) {
        match builder.endpoints(["127.0.0.1:7101"]).build() {
            Err(ClientError::InvalidConfig(reason)) => {
                assert!(reason.contains(expected_reason), "{reason:?} lacks {expected_reason:?}")
            }
            other => panic!("expected InvalidConfig({expected_reason:?}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn settings_out_of_range_are_rejected() {
        let builder = Client::builder;
        check_config(
            builder().request_timeout(Duration::ZERO),
            "request timeout must be positive",
        );
        check_config(builder().request_timeout(Duration::from_secs(7200)), "the limit is");
        check_config(builder().connect_timeout(Duration::ZERO), "connect timeout");
        check_config(builder().retries(RETRIES_MAX + 1), "retries is 17, the limit is 16");
        check_config(
            builder().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            "initial backoff",
        );
        check_config(
            builder().backoff(Duration::ZERO, Duration::from_secs(61)),
            "maximum backoff",
        );
        assert!(builder()
            .retries(RETRIES_MAX)
            .backoff(Duration::ZERO, BACKOFF_MAX)
            .endpoints(["127.0.0.1:7101"])
            .build()
            .is_ok());
    }

    #[test]
    fn building_outside_a_runtime_is_an_error_not_a_panic() {
        match Client::connect(["127.0.0.1:7101"]) {
            Err(ClientError::InvalidConfig(reason)) => assert!(reason.contains("tokio runtime")),
            other => panic!("{other:?}"),
        }
    }
}
