//! Replica reads and merges to one peer, sent in batches.
//!
//! Every client read and write makes the coordinator call N−1 peers, and on a busy node
//! the cost of those calls is mostly per call, not per byte: an HTTP/2 stream opened and
//! closed, headers encoded and decoded, a task spawned on the server, and the syscalls and
//! thread wake-ups to carry each one (the profile in `docs/benchmarks.md`). So the
//! coordinator hands each operation for a peer to that peer's batcher, and the batcher
//! sends, in one `Apply` call, every operation that queued while its earlier calls were in
//! flight. Nothing waits on a timer: an operation that finds a free slot goes out at once,
//! alone, and batches form only when calls are already in flight, which is when they pay.
//!
//! Limits: at most [`IN_FLIGHT_MAX`] calls in flight per peer, at most [`BATCH_OPS_MAX`]
//! operations or about [`BATCH_BYTES_MAX`] bytes per call, and at most [`QUEUE_MAX`]
//! operations waiting; a caller that finds the queue full waits for room (within its own
//! deadline), so a slow peer pushes back on its coordinators instead of growing a queue.
//!
//! The batch changes nothing about what each operation means: the replica applies each one
//! as its unary call would (`Read` or `Merge`), concurrently, and returns one result each.

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use ringkv_client::proto::{self, replica_client::ReplicaClient};
use ringkv_client::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::{Code, Status};

/// Calls in flight to one peer at once.
///
/// On the 3-node benchmark (docs/benchmarks.md) 1 gave 5-8% more throughput than 2 with
/// the same p99, and 4 gave less: while one call is out, the next batch fills up.
pub const IN_FLIGHT_MAX: usize = 1;
/// Operations in one call.
pub const BATCH_OPS_MAX: usize = 128;
/// A call stops taking operations once they hold this many bytes (one larger operation
/// still goes, alone).
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// Operations waiting for a call, per peer.
pub const QUEUE_MAX: usize = 1024;

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
pub struct ReplicaBatcher {
    queue: mpsc::Sender<Queued>,
}

impl ReplicaBatcher {
    /// Starts the sending task (on the current runtime) for the peer behind `client`; the
    /// calls it sends run inside it.
    pub fn start(client: ReplicaClient<Connection>) -> ReplicaBatcher {
        let (queue, waiting) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(send_batches(client, waiting));
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

async fn send_batches(client: ReplicaClient<Connection>, mut waiting: mpsc::Receiver<Queued>) {
    // The calls in flight run inside this task rather than as tasks of their own: a call
    // then costs no spawn, and its answer wakes only this task.
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            // Answers first, so a finished call frees its slot before the next batch forms.
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            // While every slot is busy, operations gather in the queue.
            first = waiting.recv(), if in_flight.len() < IN_FLIGHT_MAX => {
                let Some(first) = first else {
                    break; // every sender is gone
                };
                let batch = gather(first, &mut waiting);
                if !batch.is_empty() {
                    in_flight.push(send_batch(client.clone(), batch));
                }
            }
        }
        debug_assert!(in_flight.len() <= IN_FLIGHT_MAX);
    }
    // Callers may still wait on the calls already sent.
    while in_flight.next().await.is_some() {}
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

/// One `Apply` call carrying `batch`; answers every caller in it.
async fn send_batch(mut client: ReplicaClient<Connection>, batch: Vec<Queued>) {
    let deadline = batch.iter().map(|q| q.deadline).max().unwrap_or_else(Instant::now);
    let mut replies = Vec::with_capacity(batch.len());
    let mut ops = Vec::with_capacity(batch.len());
    for queued in batch {
        ops.push(queued.op);
        replies.push(queued.reply);
    }
    let outcome = tokio::time::timeout_at(deadline, client.apply(proto::ReplicaOpsRequest { ops })).await;
    let results = match outcome {
        Ok(Ok(response)) => response.into_inner().results,
        Ok(Err(status)) => return fail_all(replies, &status),
        Err(_) => return fail_all(replies, &Status::deadline_exceeded("timed out")),
    };
    if results.len() != replies.len() {
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
