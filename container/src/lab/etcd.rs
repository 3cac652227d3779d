//! A minimal etcd v3 client over its HTTP/JSON gateway, for the CP reference run.
//!
//! The experiment needs two calls, a put and a linearizable range read of one key, so a
//! keep-alive HTTP/1.1 connection and two JSON bodies do; the `etcd-client` crate would
//! need `protoc` at build time, which this workspace avoids. Keys and values travel
//! base64-encoded, as the gateway requires.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The largest etcd response this client reads.
pub(crate) const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// A failed etcd call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    /// Connecting, sending or receiving failed.
    #[error("etcd at {address}: {message}")]
    Transport {
        /// The member's client address.
        address: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The call did not finish in time.
    #[error("etcd at {address}: no answer within {timeout:?}")]
    Timeout {
        /// The member's client address.
        address: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// etcd answered with an error status or a body this client does not understand.
    #[error("etcd at {address} answered {status}: {body}")]
    Answer {
        /// The member's client address.
        address: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// One keep-alive connection to one etcd member; reconnects after a failure.
pub(crate) struct EtcdSession {
    address: SocketAddr,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl EtcdSession {
    /// A session with `address` whose calls each take at most `timeout`. Connects lazily.
    pub(crate) fn new(address: SocketAddr, timeout: Duration) -> EtcdSession {
        EtcdSession {
            address,
            timeout,
            sender: None,
        }
    }

    /// Writes `value` under `key`.
    pub(crate) async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key), "value": b64.encode(value) });
        self.post("/v3/kv/put", body).await.map(|_| ())
    }

    /// Reads `key` linearizably; `None` when it is absent.
    pub(crate) async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": b64.encode(key) });
        let answer = self.post("/v3/kv/range", body).await?;
        let Some(value) = answer["kvs"][0]["value"].as_str() else {
            return Ok(None);
        };
        b64.decode(value)
            .map(Some)
            .map_err(|_| self.bad_answer(200, "a value that is not base64"))
    }

    fn bad_answer(&self, status: u16, body: &str) -> EtcdError {
        EtcdError::Answer {
            address: self.address,
            status,
            body: body.chars().take(200).collect(),
        }
    }

    async fn post(&mut self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, EtcdError> {
        let timeout = self.timeout;
        let address = self.address;
        match tokio::time::timeout(timeout, self.post_once(path, body)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.sender = None;
                Err(error)
            }
            Err(_) => {
                // The connection may hold a half-sent request: start afresh next time.
                self.sender = None;
                Err(EtcdError::Timeout { address, timeout })
            }
        }
    }

    async fn post_once(&mut self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, EtcdError> {
        let address = self.address;
        let transport = |message: String| EtcdError::Transport { address, message };
        if self.sender.is_none() {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| transport(format!("connect: {e}")))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| transport(format!("handshake: {e}")))?;
            // The connection task ends when the sender is dropped.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(transport("no connection".to_owned()));
        };
        sender.ready().await.map_err(|e| transport(e.to_string()))?;
        let bytes = serde_json::to_vec(&body).map_err(|e| transport(e.to_string()))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, address.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| transport(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if status != 200 {
            return Err(self.bad_answer(status, &String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|_| self.bad_answer(status, &String::from_utf8_lossy(&body)))
    }
}
