//! Replica reads and merges to one peer, sent in batches on one long-lived stream.
//!
//! Every client read and write makes the coordinator call N−1 peers, and on a busy node
//! the cost of those calls is mostly per call, not per byte: syscalls, thread wake-ups and
//! HTTP/2 framing (the profile in `docs/benchmarks.md`). So the coordinator hands each
//! operation for a peer to that peer's batcher, and the batcher sends every operation
//! that queued while its previous batch was out as the next batch. Nothing waits on a
//! timer: an operation that finds the batcher idle goes out at once, alone, and batches
//! form only when a batch is already in flight, which is when they pay.
//!
//! The batches travel on one `ApplyStream` call per peer, opened on first use and kept:
//! a batch is then one message out and one back, without the HTTP/2 stream a unary call
//! opens and closes (headers, trailers, a task on the server). A stream that fails or
//! times out is dropped and the next batch opens a new one; a batch that finds its kept
//! stream dead goes once more on a new one. A peer that does not know the method
//! (`UNIMPLEMENTED`, an older version) gets each batch as a unary `Apply` instead.
//!
//! Limits: one batch in flight per peer (the stream answers in order; on the 3-node
//! benchmark one gave 5-8% more throughput than two, with the same p99, because while one
//! batch is out the next one fills up), at most [`BATCH_OPS_MAX`] operations or about
//! [`BATCH_BYTES_MAX`] bytes per batch, and at most [`QUEUE_MAX`] operations waiting; a
//! caller that finds the queue full waits for room (within its own deadline), so a slow
//! peer pushes back on its coordinators instead of growing a queue.
//!
//! The batch changes nothing about what each operation means: the replica applies each one
//! as its unary call would (`Read` or `Merge`), concurrently, and returns one result each.

use bytes::Bytes;
use ringkv_client::proto::{self, replica_client::ReplicaClient};
use ringkv_client::{Connection, MessageStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::Uri;
use tonic::{Code, Status};

/// Operations in one batch.
pub(crate) const BATCH_OPS_MAX: usize = 128;
/// A batch stops taking operations once they hold this many bytes (one larger operation
/// still goes, alone).
pub(crate) const BATCH_BYTES_MAX: usize = 4 << 20;
/// Operations waiting for a batch, per peer.
pub(crate) const QUEUE_MAX: usize = 1024;
/// The path of the streaming method.
const APPLY_STREAM_PATH: &str = "/ringkv.v1.Replica/ApplyStream";

/// One operation waiting for its call.
struct Queued {
    op: proto::ReplicaOp,
    bytes: usize,
    deadline: Instant,
    reply: oneshot::Sender<Result<proto::ReplicaOpResult, Status>>,
}

/// The batching sender of replica operations to one peer. Cheap to clone; the sending
/// task ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct ReplicaBatcher {
    queue: mpsc::Sender<Queued>,
}

impl ReplicaBatcher {
    /// Starts the sending task (on the current runtime) for the peer at `origin`
    /// (`http://ip:port`) over `connection`; the batches it sends run inside it. `unary`
    /// is the replica API client on the same connection, for a peer without the stream;
    /// no message either way may exceed `message_bytes_max`.
    pub fn start(
        connection: Connection,
        origin: Uri,
        unary: ReplicaClient<Connection>,
        message_bytes_max: usize,
    ) -> ReplicaBatcher {
        let (queue, waiting) = mpsc::channel(QUEUE_MAX);
        let link = Link::new(connection, origin, unary, message_bytes_max);
        tokio::spawn(send_batches(link, waiting));
        ReplicaBatcher { queue }
    }

    /// The peer's stored state of `key` (an encoded record, empty when absent).
    pub async fn read(&self, key: Bytes, deadline: Instant) -> Result<Bytes, Status> {
        let op = proto::replica_op::Op::Read(proto::ReplicaReadRequest { key });
        self.call(op, deadline).await.map(|result| result.state)
    }

    /// Merges `request`'s state on the peer (or in its hint store, see `hint_for`).
    pub async fn merge(&self, request: proto::ReplicaMergeRequest, deadline: Instant) -> Result<(), Status> {
        let op = proto::replica_op::Op::Merge(request);
        self.call(op, deadline).await.map(|_| ())
    }

    async fn call(&self, op: proto::replica_op::Op, deadline: Instant) -> Result<proto::ReplicaOpResult, Status> {
        let bytes = match &op {
            proto::replica_op::Op::Read(read) => read.key.len(),
            proto::replica_op::Op::Merge(merge) => merge.key.len() + merge.state.len(),
        };
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            op: proto::ReplicaOp { op: Some(op) },
            bytes,
            deadline,
            reply,
        };
        let sent = tokio::time::timeout_at(deadline, self.queue.send(queued)).await;
        match sent {
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "timed out waiting for room in the peer's queue",
                ))
            }
            Ok(Err(_)) => return Err(Status::unavailable("the peer's batcher stopped")),
            Ok(Ok(())) => {}
        }
        let result = match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => return Err(Status::deadline_exceeded("timed out")),
            Ok(Err(_)) => return Err(Status::unavailable("the peer's batcher stopped")),
            Ok(Ok(result)) => result?,
        };
        if result.code == 0 {
            return Ok(result);
        }
        Err(Status::new(Code::from_i32(result.code), result.message))
    }
}

/// The way batches reach the peer: its stream, or unary calls for an older peer.
struct Link {
    connection: Connection,
    /// `ApplyStream` at the peer.
    stream_uri: Uri,
    /// For `Apply`, when the peer has no `ApplyStream`.
    unary: ReplicaClient<Connection>,
    stream: Option<MessageStream<proto::ReplicaOpsRequest, proto::ReplicaOpsResponse>>,
    /// The peer answered `UNIMPLEMENTED` to `ApplyStream`.
    unary_only: bool,
    message_bytes_max: usize,
}

impl Link {
    fn new(connection: Connection, origin: Uri, unary: ReplicaClient<Connection>, message_bytes_max: usize) -> Link {
        let mut parts = origin.clone().into_parts();
        parts.path_and_query = Some(tonic::codegen::http::uri::PathAndQuery::from_static(APPLY_STREAM_PATH));
        let stream_uri =
            Uri::from_parts(parts).unwrap_or_else(|_| unreachable!("an origin and a path form a valid URI"));
        Link {
            connection,
            stream_uri,
            unary,
            stream: None,
            unary_only: false,
            message_bytes_max,
        }
    }

    /// Sends one batch and waits for its answer.
    async fn apply(&mut self, batch: &proto::ReplicaOpsRequest) -> Result<proto::ReplicaOpsResponse, Status> {
        if !self.unary_only {
            match self.over_stream(batch).await {
                Err(status) if status.code() == Code::Unimplemented => {
                    tracing::info!(peer = %self.stream_uri, "the peer has no ApplyStream; sending it unary Apply calls");
                    self.unary_only = true;
                    self.stream = None;
                    // The peer refused the method, so it applied nothing: send the batch again.
                }
                Err(status) => {
                    self.stream = None;
                    return Err(status);
                }
                Ok(answer) => return Ok(answer),
            }
        }
        self.unary.apply(batch.clone()).await.map(tonic::Response::into_inner)
    }

    /// The batch on the open stream, or on a new one. A kept stream may have died while
    /// idle (the peer restarted, or stopped and ended it): then the batch goes once more on
    /// a new stream, which reconnects if need be. Sending a batch twice is safe: reads
    /// change nothing and merges are idempotent.
    async fn over_stream(&mut self, batch: &proto::ReplicaOpsRequest) -> Result<proto::ReplicaOpsResponse, Status> {
        if let Some(stream) = self.stream.as_mut() {
            let answer = match stream.send(batch) {
                Ok(()) => stream.recv().await,
                Err(status) => Err(status),
            };
            match answer {
                Err(status) if status.code() == Code::Unavailable => self.stream = None,
                answer => return answer,
            }
        }
        let stream = self
            .connection
            .open_stream(self.stream_uri.clone(), self.message_bytes_max)
            .await?;
        let stream = self.stream.insert(stream);
        stream.send(batch)?;
        stream.recv().await
    }
}

async fn send_batches(mut link: Link, mut waiting: mpsc::Receiver<Queued>) {
    // One batch at a time, sent from this task: while it is out, operations gather in the
    // queue for the next one.
    while let Some(first) = waiting.recv().await {
        let batch = gather(first, &mut waiting);
        if !batch.is_empty() {
            send_batch(&mut link, batch).await;
        }
    }
}

/// `first` and whatever else is queued, up to a batch's limits, less callers that gave up.
fn gather(first: Queued, waiting: &mut mpsc::Receiver<Queued>) -> Vec<Queued> {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < BATCH_OPS_MAX && bytes < BATCH_BYTES_MAX {
        match waiting.try_recv() {
            Ok(next) => {
                bytes += next.bytes;
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    // Callers that gave up need no answer.
    batch.retain(|queued| !queued.reply.is_closed());
    debug_assert!(batch.len() <= BATCH_OPS_MAX);
    batch
}

/// One batch on `link`; answers every caller in it.
async fn send_batch(link: &mut Link, batch: Vec<Queued>) {
    let deadline = batch.iter().map(|q| q.deadline).max().unwrap_or_else(Instant::now);
    let mut replies = Vec::with_capacity(batch.len());
    let mut ops = Vec::with_capacity(batch.len());
    for queued in batch {
        ops.push(queued.op);
        replies.push(queued.reply);
    }
    let request = proto::ReplicaOpsRequest { ops };
    let outcome = tokio::time::timeout_at(deadline, link.apply(&request)).await;
    let results = match outcome {
        Ok(Ok(response)) => response.results,
        Ok(Err(status)) => return fail_all(replies, &status),
        Err(_) => {
            // Its answer may still come: the stream is out of step, so it goes.
            link.stream = None;
            return fail_all(replies, &Status::deadline_exceeded("timed out"));
        }
    };
    if results.len() != replies.len() {
        link.stream = None;
        let status = Status::internal(format!(
            "the peer answered {} results for {} operations",
            results.len(),
            replies.len()
        ));
        return fail_all(replies, &status);
    }
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(Ok(result));
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<proto::ReplicaOpResult, Status>>>, status: &Status) {
    for reply in replies {
        let _ = reply.send(Err(Status::new(status.code(), status.message())));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use ringkv_client::proto::replica_server::{Replica, ReplicaServer};
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::{Request, Response, Streaming};

    use super::*;

    type AnswerStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<proto::ReplicaOpsResponse, Status>> + Send + 'static>>;

    /// A peer that answers every operation with OK and counts how batches reach it. Without
    /// `has_stream` it is an older version that does not know `ApplyStream`.
    #[derive(Clone, Default)]
    struct FakePeer {
        has_stream: bool,
        /// Ends each stream after answering this many batches, as a stopping node does.
        batches_per_stream: Option<usize>,
        unary_calls: Arc<AtomicUsize>,
        streams: Arc<AtomicUsize>,
        stream_batches: Arc<AtomicUsize>,
    }

    fn answers(batch: &proto::ReplicaOpsRequest) -> proto::ReplicaOpsResponse {
        let ok = proto::ReplicaOpResult {
            code: 0,
            message: String::new(),
            state: Bytes::from_static(b"state"),
        };
        proto::ReplicaOpsResponse {
            results: vec![ok; batch.ops.len()],
        }
    }

    #[tonic::async_trait]
    impl Replica for FakePeer {
        async fn apply(
            &self,
            request: Request<proto::ReplicaOpsRequest>,
        ) -> Result<Response<proto::ReplicaOpsResponse>, Status> {
            self.unary_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(answers(request.get_ref())))
        }

        async fn apply_stream(
            &self,
            request: Request<Streaming<proto::ReplicaOpsRequest>>,
        ) -> Result<Response<AnswerStream>, Status> {
            if !self.has_stream {
                return Err(Status::unimplemented("no ApplyStream in this version"));
            }
            self.streams.fetch_add(1, Ordering::SeqCst);
            let counted = Arc::clone(&self.stream_batches);
            let last = self.batches_per_stream.unwrap_or(usize::MAX);
            let replies = futures::stream::unfold((request.into_inner(), 0), move |(mut batches, answered)| {
                let counted = Arc::clone(&counted);
                async move {
                    if answered == last {
                        return None;
                    }
                    let batch = batches.message().await.ok()??;
                    counted.fetch_add(1, Ordering::SeqCst);
                    Some((Ok(answers(&batch)), (batches, answered + 1)))
                }
            });
            Ok(Response::new(Box::pin(replies)))
        }
    }

    /// Serves `peer` on a loopback port; returns a batcher for it.
    async fn batcher_for(peer: FakePeer) -> ReplicaBatcher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ReplicaServer::new(peer))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let connection = Connection::lazy(address.to_string(), Duration::from_secs(1));
        let origin = Uri::try_from(format!("http://{address}")).expect("origin");
        let unary = ReplicaClient::with_origin(connection.clone(), origin.clone());
        ReplicaBatcher::start(connection, origin, unary, 1 << 20)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn batches_share_one_stream_and_each_caller_gets_its_own_answer() {
        let peer = FakePeer {
            has_stream: true,
            ..FakePeer::default()
        };
        let batcher = batcher_for(peer.clone()).await;
        for i in 0..20u8 {
            let state = batcher.read(Bytes::from(vec![i]), soon()).await.expect("read");
            assert_eq!(state, Bytes::from_static(b"state"));
        }
        // Concurrent callers: they gather into fewer batches, each still answered.
        let reads = (0..50u8).map(|i| batcher.read(Bytes::from(vec![i]), soon()));
        for read in futures::future::join_all(reads).await {
            assert_eq!(read.expect("read"), Bytes::from_static(b"state"));
        }
        assert_eq!(peer.streams.load(Ordering::SeqCst), 1, "one stream for every batch");
        assert_eq!(peer.unary_calls.load(Ordering::SeqCst), 0);
        let batches = peer.stream_batches.load(Ordering::SeqCst);
        assert!((21..70).contains(&batches), "{batches} batches for 70 reads");
    }

    #[tokio::test]
    async fn a_batch_that_finds_its_stream_ended_goes_again_on_a_new_one() {
        let peer = FakePeer {
            has_stream: true,
            batches_per_stream: Some(3),
            ..FakePeer::default()
        };
        let batcher = batcher_for(peer.clone()).await;
        for i in 0..10u8 {
            let state = batcher.read(Bytes::from(vec![i]), soon()).await.expect("read");
            assert_eq!(state, Bytes::from_static(b"state"));
        }
        assert_eq!(peer.stream_batches.load(Ordering::SeqCst), 10);
        assert_eq!(
            peer.streams.load(Ordering::SeqCst),
            4,
            "a new stream after every third batch"
        );
    }

    #[tokio::test]
    async fn a_peer_without_the_stream_gets_unary_calls_and_nothing_is_lost() {
        let peer = FakePeer::default();
        let batcher = batcher_for(peer.clone()).await;
        for i in 0..5u8 {
            let merge = proto::ReplicaMergeRequest {
                key: Bytes::from(vec![i]),
                state: Bytes::new(),
                hint_for: String::new(),
            };
            batcher.merge(merge, soon()).await.expect("merge");
        }
        // The first batch was refused as UNIMPLEMENTED, then sent again as `Apply`.
        assert_eq!(peer.unary_calls.load(Ordering::SeqCst), 5);
        assert_eq!(peer.stream_batches.load(Ordering::SeqCst), 0);
    }
}
