//! [`MessageStream`]: one bidirectional gRPC stream on a [`Connection`], one message at a
//! time.
//!
//! Why: a unary call costs a whole HTTP/2 stream: HEADERS both ways, trailers, stream
//! state opened and closed on both ends, and a task on the server. For a node's replica
//! batches to a peer that was the largest cost per call that ringkv controlled
//! (`docs/benchmarks.md`). On one long-lived stream a batch is one DATA frame out and one
//! back.
//!
//! tonic's generated client cannot carry it: [`Connection`] hands h2 a request only once
//! its body is complete (so headers and body leave in one write, see its module docs), and
//! a stream's body never completes. So this module does gRPC's framing itself, which is
//! small: each message is a 5-byte prefix (a compression flag, always 0 here, and the
//! big-endian length) followed by its protobuf encoding, and the call's status arrives in
//! the trailers, or in the headers of a response that has no body (`UNIMPLEMENTED` from a
//! peer that does not know the method, for one). The server side is tonic's, unchanged.
//!
//! Limits: a message, either way, is at most the `message_bytes_max` the stream was
//! opened with; a longer one is an error, never a truncation. The stream holds at most one
//! partly received message.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Uri;
use prost::Message;
use tonic::Status;

/// Bytes of gRPC's message prefix: compression flag, then a big-endian u32 length.
const PREFIX_BYTES: usize = 5;

/// A bidirectional gRPC stream sending `Req` messages and receiving `Resp` messages.
///
/// Errors are [`Status`]es: the server's own, or `UNAVAILABLE` when the connection or the
/// stream failed. After an error the stream is of no further use; open a new one.
pub struct MessageStream<Req, Resp> {
    send: h2::SendStream<Bytes>,
    /// The response headers, until they have arrived.
    response: Option<h2::client::ResponseFuture>,
    recv: Option<h2::RecvStream>,
    /// Received bytes not yet decoded: at most one partial message.
    received: BytesMut,
    message_bytes_max: usize,
    _messages: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message, Resp: Message + Default> MessageStream<Req, Resp> {
    /// A stream over an h2 request just sent (see `Connection::open_stream`).
    pub(crate) fn new(
        send: h2::SendStream<Bytes>,
        response: h2::client::ResponseFuture,
        message_bytes_max: usize,
    ) -> MessageStream<Req, Resp> {
        MessageStream {
            send,
            response: Some(response),
            recv: None,
            received: BytesMut::new(),
            message_bytes_max,
            _messages: PhantomData,
        }
    }

    /// Sends one message. It is queued in the connection at once (h2 buffers it until the
    /// peer's flow-control window lets it go), so this does not wait.
    pub fn send(&mut self, message: &Req) -> Result<(), Status> {
        let len = message.encoded_len();
        if len > self.message_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "a message of {len} bytes, the limit is {}",
                self.message_bytes_max
            )));
        }
        let len32 = u32::try_from(len)
            .map_err(|_| Status::resource_exhausted(format!("a message of {len} bytes does not fit gRPC framing")))?;
        let mut frame = BytesMut::with_capacity(PREFIX_BYTES + len);
        frame.put_u8(0);
        frame.put_u32(len32);
        message
            .encode(&mut frame)
            .map_err(|e| Status::internal(format!("cannot encode a message: {e}")))?;
        debug_assert_eq!(frame.len(), PREFIX_BYTES + len);
        self.send
            .send_data(frame.freeze(), false)
            .map_err(|e| Status::unavailable(format!("stream failed: {e}")))
    }

    /// Receives the next message. A stream the server ended is an error: its status, or
    /// `UNAVAILABLE` when it ended with OK (a stream of this kind never ends by itself).
    pub async fn recv(&mut self) -> Result<Resp, Status> {
        loop {
            if let Some(message) = self.decode_one()? {
                return Ok(message);
            }
            if self.recv.is_none() {
                let body = self.response_body().await?;
                self.recv = Some(body);
            }
            let Some(recv) = self.recv.as_mut() else {
                return Err(Status::unavailable("stream already failed"));
            };
            match recv.data().await {
                Some(Ok(chunk)) => {
                    // Give the window back at once: the bytes are copied out here.
                    let _ = recv.flow_control().release_capacity(chunk.len());
                    self.received.extend_from_slice(&chunk);
                }
                Some(Err(error)) => return Err(Status::unavailable(format!("stream failed: {error}"))),
                None => {
                    let trailers = recv
                        .trailers()
                        .await
                        .map_err(|e| Status::unavailable(format!("stream failed: {e}")))?;
                    return Err(ended(trailers.as_ref().and_then(Status::from_header_map)));
                }
            }
        }
    }

    /// Waits for the response headers; a status in them (a response without a body) is the
    /// stream's end.
    async fn response_body(&mut self) -> Result<h2::RecvStream, Status> {
        let response = self
            .response
            .take()
            .ok_or_else(|| Status::unavailable("stream already failed"))?;
        let response = response
            .await
            .map_err(|e| Status::unavailable(format!("stream failed: {e}")))?;
        if let Some(status) = Status::from_header_map(response.headers()) {
            return Err(ended(Some(status)));
        }
        if response.status() != http::StatusCode::OK {
            return Err(Status::unavailable(format!(
                "the peer answered HTTP {}",
                response.status()
            )));
        }
        Ok(response.into_body())
    }

    /// Takes one whole message off the front of the received bytes, if there is one.
    fn decode_one(&mut self) -> Result<Option<Resp>, Status> {
        let Some(prefix) = self.received.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        if prefix[0] != 0 {
            return Err(Status::internal(
                "the peer sent a compressed message; none was asked for",
            ));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.message_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "the peer sent a message of {len} bytes, the limit is {}",
                self.message_bytes_max
            )));
        }
        if self.received.len() < PREFIX_BYTES + len {
            self.received.reserve(PREFIX_BYTES + len - self.received.len());
            return Ok(None);
        }
        self.received.advance(PREFIX_BYTES);
        let body = self.received.split_to(len).freeze();
        Resp::decode(body)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode the peer's message: {e}")))
    }
}

/// The error for a stream that ended, given the status it ended with.
fn ended(status: Option<Status>) -> Status {
    match status {
        Some(status) if status.code() != tonic::Code::Ok => status,
        _ => Status::unavailable("the peer ended the stream"),
    }
}

/// The request that opens a stream to `uri` (the peer's origin and the method's path).
pub(crate) fn open_request(uri: Uri) -> Result<http::Request<()>, Status> {
    http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(())
        .map_err(|e| Status::internal(format!("cannot build the stream's request: {e}")))
}
