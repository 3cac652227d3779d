//! The replica API: what other nodes ask of this node's store.
//!
//! Every state arriving here is a storage record; it is decoded (checksum and
//! invariants verified) before it touches the engine, so a corrupt or hostile message
//! is refused with `INVALID_ARGUMENT` and never merged.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use ringkv_client::proto::{self, replica_server::Replica as ReplicaApi};
use ringkv_ring::NodeId;
use ringkv_storage::{record, Key, KeyState, SEGMENT_LEAVES};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::{Replica, ReplicaError};
use crate::membership::LocalState;
use crate::node_core::NodeCore;

/// Most entries in one `MergeBatch` call.
pub(crate) const MERGE_BATCH_ENTRIES_MAX: usize = 4096;
/// Most operations in one `Apply` call (the batcher's batches are smaller).
pub(crate) const REPLICA_OPS_MAX: usize = 256;
/// Most segments compared by root in one request.
pub(crate) const SEGMENTS_PER_REQUEST_MAX: usize = 4096;

/// Serves the replica API over a node's store.
pub(crate) struct ReplicaService {
    core: Arc<NodeCore>,
    /// This node's store, through the same handle the coordinator uses for it.
    local: Replica,
    /// Turns true when the node stops: open `ApplyStream` calls end then, or the server's
    /// graceful shutdown would wait for them forever.
    stop: watch::Receiver<bool>,
}

/// The status a peer gets for a failed local operation.
fn status(error: ReplicaError) -> Status {
    let message = error.to_string();
    match error {
        ReplicaError::Joining { .. } | ReplicaError::Leaving { .. } => Status::unavailable(message),
        ReplicaError::NoSuchSegment { .. } => Status::failed_precondition(message),
        ReplicaError::HintRefused(_) => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

impl ReplicaService {
    /// A service over a node's shared state, until `stop` turns true.
    pub fn new(core: Arc<NodeCore>, stop: watch::Receiver<bool>) -> ReplicaService {
        let local = Replica::local(&core);
        ReplicaService { core, local, stop }
    }

    fn key(&self, bytes: Bytes) -> Result<Key, Status> {
        self.core
            .config
            .limits
            .key(bytes)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    fn state(&self, bytes: &[u8]) -> Result<KeyState, Status> {
        let state = record::decode(bytes).map_err(|e| Status::invalid_argument(format!("invalid state: {e}")))?;
        if let Some(latest) = state.siblings().iter().map(|s| s.hlc()).max() {
            if let Err(e) = self.core.clock.observe(latest, self.core.config.clock_skew_max) {
                // The state is kept (it is a write some node made); only its timestamp is
                // not followed.
                self.core.metrics.hlc_ahead_refused.inc();
                tracing::debug!(error = %e, "hybrid timestamp not observed");
            }
        }
        Ok(state)
    }

    /// Local operations have no deadline of their own; the caller's bounds the call.
    fn no_deadline() -> Instant {
        Instant::now()
    }

    async fn read_op(&self, request: proto::ReplicaReadRequest) -> Result<Bytes, Status> {
        let key = self.key(request.key)?;
        let state = self.local.read(&key, Self::no_deadline()).await.map_err(status)?;
        Ok(if state.is_empty() {
            Bytes::new()
        } else {
            Bytes::from(record::encode(&state))
        })
    }

    /// Refuses a copy from a peer while this node is leaving. Its last hand-off round
    /// ends the leave once it holds nothing; a copy taken after that (from a coordinator
    /// whose ring still held this node, as a replica or as a hint's stand-in) would leave
    /// with it. Refused, the copy goes to the coordinator's next node.
    fn refuse_copies_while_leaving(&self) -> Result<(), Status> {
        if self.core.membership.local_state() == LocalState::Leaving {
            return Err(status(ReplicaError::Leaving {
                node: self.core.me().clone(),
            }));
        }
        Ok(())
    }

    async fn merge_op(&self, request: proto::ReplicaMergeRequest) -> Result<(), Status> {
        self.refuse_copies_while_leaving()?;
        let key = self.key(request.key)?;
        let state = self.state(&request.state)?;
        let hint_for = match request.hint_for.as_str() {
            "" => None,
            target => Some(NodeId::try_from(target).map_err(|e| Status::invalid_argument(format!("hint_for: {e}")))?),
        };
        let encoded = request.state;
        self.local
            .merge(&key, &state, &encoded, hint_for.as_ref(), Self::no_deadline())
            .await
            .map_err(status)
    }
}

/// The answers of an `ApplyStream` call, one per batch (the generated trait's `BoxStream`).
pub(crate) type AnswerStream = Pin<Box<dyn Stream<Item = Result<proto::ReplicaOpsResponse, Status>> + Send + 'static>>;

impl ReplicaService {
    /// One batch of `Apply` or `ApplyStream`: every operation applied as its unary call
    /// would be, concurrently, with one result each, in order.
    async fn apply_ops(&self, ops: Vec<proto::ReplicaOp>) -> Result<Vec<proto::ReplicaOpResult>, Status> {
        if ops.len() > REPLICA_OPS_MAX {
            return Err(Status::invalid_argument(format!(
                "{} operations in one call, the limit is {REPLICA_OPS_MAX}",
                ops.len()
            )));
        }
        self.core.metrics.replica_batches.inc();
        self.core.metrics.replica_batched_ops.inc_by(ops.len() as u64);
        // Concurrently, so that synced merges share log flushes (group commit).
        let results = futures::future::join_all(ops.into_iter().map(|op| async move {
            let outcome = match op.op {
                Some(proto::replica_op::Op::Read(read)) => self.read_op(read).await,
                Some(proto::replica_op::Op::Merge(merge)) => self.merge_op(merge).await.map(|()| Bytes::new()),
                None => Err(Status::invalid_argument("an operation with neither read nor merge")),
            };
            match outcome {
                Ok(state) => proto::ReplicaOpResult {
                    code: 0,
                    message: String::new(),
                    state,
                },
                Err(status) => proto::ReplicaOpResult {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    state: Bytes::new(),
                },
            }
        }))
        .await;
        Ok(results)
    }
}

#[tonic::async_trait]
impl ReplicaApi for ReplicaService {
    async fn read(
        &self,
        request: Request<proto::ReplicaReadRequest>,
    ) -> Result<Response<proto::ReplicaReadResponse>, Status> {
        let state = self.read_op(request.into_inner()).await?;
        Ok(Response::new(proto::ReplicaReadResponse { state }))
    }

    async fn merge(
        &self,
        request: Request<proto::ReplicaMergeRequest>,
    ) -> Result<Response<proto::ReplicaMergeResponse>, Status> {
        self.merge_op(request.into_inner()).await?;
        Ok(Response::new(proto::ReplicaMergeResponse {}))
    }

    async fn apply(
        &self,
        request: Request<proto::ReplicaOpsRequest>,
    ) -> Result<Response<proto::ReplicaOpsResponse>, Status> {
        let results = self.apply_ops(request.into_inner().ops).await?;
        Ok(Response::new(proto::ReplicaOpsResponse { results }))
    }

    async fn apply_stream(
        &self,
        request: Request<Streaming<proto::ReplicaOpsRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        // One batch at a time, answered in order: the next one is read only after this one
        // is answered, so HTTP/2 flow control is all the queue there is.
        let service = ReplicaService::new(Arc::clone(&self.core), self.stop.clone());
        let sender = super::fence::sender_of(request.metadata());
        let state = (service, request.into_inner());
        let answers = futures::stream::unfold(Some(state), move |state| {
            let sender = sender.clone();
            async move {
                let (mut service, mut batches) = state?;
                let message = tokio::select! {
                    biased;
                    // The node is stopping: end the stream between batches. A batch already
                    // read is always answered.
                    _ = service.stop.wait_for(|stopping| *stopping) => return None,
                    message = batches.message() => message,
                };
                let batch = match message {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return None, // the peer closed its side
                    Err(status) => return Some((Err(status), None)),
                };
                if let Err(status) = super::fence::check(&service.core, sender.as_ref()) {
                    return Some((Err(status), None));
                }
                match service.apply_ops(batch.ops).await {
                    Ok(results) => Some((Ok(proto::ReplicaOpsResponse { results }), Some((service, batches)))),
                    // A refused batch ends the stream: the peer opens a new one.
                    Err(status) => Some((Err(status), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn merge_batch(
        &self,
        request: Request<proto::ReplicaMergeBatchRequest>,
    ) -> Result<Response<proto::ReplicaMergeResponse>, Status> {
        self.refuse_copies_while_leaving()?;
        let entries = request.into_inner().entries;
        if entries.len() > MERGE_BATCH_ENTRIES_MAX {
            return Err(Status::invalid_argument(format!(
                "batch of {} entries, the limit is {MERGE_BATCH_ENTRIES_MAX}",
                entries.len()
            )));
        }
        let mut batch = Vec::with_capacity(entries.len());
        for entry in entries {
            batch.push((self.key(entry.key)?, self.state(&entry.state)?));
        }
        self.local
            .merge_batch(batch, Self::no_deadline())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ReplicaMergeResponse {}))
    }

    async fn segment_roots(
        &self,
        request: Request<proto::SegmentRootsRequest>,
    ) -> Result<Response<proto::SegmentRootsResponse>, Status> {
        let ends = request.into_inner().segment_ends;
        if ends.len() > SEGMENTS_PER_REQUEST_MAX {
            return Err(Status::invalid_argument(format!(
                "{} segments, the limit is {SEGMENTS_PER_REQUEST_MAX}",
                ends.len(),
            )));
        }
        let roots = self
            .local
            .segment_roots(ends, Self::no_deadline())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::SegmentRootsResponse { roots }))
    }

    async fn segment_leaves(
        &self,
        request: Request<proto::SegmentLeavesRequest>,
    ) -> Result<Response<proto::SegmentLeavesResponse>, Status> {
        let end = request.into_inner().segment_end;
        let leaves = self
            .local
            .segment_leaves(end, Self::no_deadline())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::SegmentLeavesResponse { leaves }))
    }

    async fn leaf_digests(
        &self,
        request: Request<proto::LeafDigestsRequest>,
    ) -> Result<Response<proto::LeafDigestsResponse>, Status> {
        let request = request.into_inner();
        let leaf = request.leaf as usize;
        if leaf >= SEGMENT_LEAVES {
            return Err(Status::invalid_argument(format!(
                "leaf {leaf} is outside 0..{SEGMENT_LEAVES}"
            )));
        }
        let after = if request.after.is_empty() {
            None
        } else {
            Some(self.key(request.after)?)
        };
        let page = self
            .local
            .leaf_digests(request.segment_end, leaf, after, Self::no_deadline())
            .await
            .map_err(status)?;
        let entries = page
            .entries
            .into_iter()
            .map(|(key, digest)| proto::KeyDigest {
                key: key.bytes().clone(),
                digest,
            })
            .collect();
        let next = page.next.map(|k| k.bytes().clone()).unwrap_or_default();
        Ok(Response::new(proto::LeafDigestsResponse { entries, next }))
    }

    async fn gc_check(
        &self,
        request: Request<proto::GcCheckRequest>,
    ) -> Result<Response<proto::GcCheckResponse>, Status> {
        let key = self.key(request.into_inner().key)?;
        let check = self.local.gc_check(&key, Self::no_deadline()).await.map_err(status)?;
        let state = check.state.map(|s| Bytes::from(record::encode(&s))).unwrap_or_default();
        Ok(Response::new(proto::GcCheckResponse {
            state,
            holds_hint: check.holds_hint,
            wall_ms: check.wall_ms,
        }))
    }

    async fn purge(&self, request: Request<proto::PurgeRequest>) -> Result<Response<proto::PurgeResponse>, Status> {
        let request = request.into_inner();
        let key = self.key(request.key)?;
        let expected = record::decode(&request.expected_state)
            .map_err(|e| Status::invalid_argument(format!("invalid state: {e}")))?;
        let purged = self
            .local
            .purge(&key, &expected, &request.expected_state, Self::no_deadline())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::PurgeResponse { purged }))
    }

    async fn ping(&self, request: Request<proto::PingRequest>) -> Result<Response<proto::PingResponse>, Status> {
        let request = request.into_inner();
        if request.cluster_name != self.core.config.cluster_name {
            return Err(Status::failed_precondition(format!(
                "cluster name mismatch: this node is in {:?}, the caller in {:?}",
                self.core.config.cluster_name, request.cluster_name
            )));
        }
        Ok(Response::new(proto::PingResponse {
            node_id: self.core.me().to_string(),
            cluster_name: self.core.config.cluster_name.clone(),
            gossip_address: self
                .core
                .membership
                .gossip_address()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            state: self.core.membership.local_state().as_str().to_owned(),
        }))
    }

    async fn scan_range(
        &self,
        request: Request<proto::ScanRangeRequest>,
    ) -> Result<Response<proto::ScanRangeResponse>, Status> {
        let request = request.into_inner();
        if request.first > request.last {
            return Err(Status::invalid_argument(format!(
                "range [{:016x}, {:016x}] is empty: first must not exceed last",
                request.first, request.last
            )));
        }
        let after = if request.after_key.is_empty() {
            None
        } else {
            Some(self.key(request.after_key)?)
        };
        let limit = request.limit as usize;
        if !(1..=ringkv_storage::SCAN_PAGE_MAX).contains(&limit) {
            return Err(Status::invalid_argument(format!(
                "a scan page of {limit} keys: the page size must be within 1..={}",
                ringkv_storage::SCAN_PAGE_MAX
            )));
        }
        let page = self
            .local
            .scan(request.first, request.last, after.as_ref(), limit, Self::no_deadline())
            .await
            .map_err(status)?;
        let entries = page
            .into_iter()
            .map(|(key, state)| proto::KeyStateEntry {
                key: key.bytes().clone(),
                state: Bytes::from(record::encode(&state)),
            })
            .collect();
        Ok(Response::new(proto::ScanRangeResponse { entries }))
    }
}
