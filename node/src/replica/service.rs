//! The replica API: what other nodes ask of this node's store.
//!
//! Every state arriving here is a storage record; it is decoded (checksum and
//! invariants verified) before it touches the engine, so a corrupt or hostile message
//! is refused with `INVALID_ARGUMENT` and never merged.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use ringkv_client::proto::{self, replica_server::Replica};
use ringkv_ring::NodeId;
use ringkv_storage::{record, Key, KeyState};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::anti_entropy::leaf_digests;
use crate::membership::LocalState;
use crate::node_core::NodeCore;
use ringkv_storage::merkle::LeafId;
use ringkv_storage::SEGMENT_LEAVES;

/// Most entries in one `MergeBatch` call.
pub const MERGE_BATCH_ENTRIES_MAX: usize = 4096;
/// Most operations in one `Apply` call (the batcher's batches are smaller).
pub const REPLICA_OPS_MAX: usize = 256;

/// Serves the replica API over a node's store.
pub struct ReplicaService {
    core: Arc<NodeCore>,
    /// Turns true when the node stops: open `ApplyStream` calls end then, or the server's
    /// graceful shutdown would wait for them forever.
    stop: watch::Receiver<bool>,
}

impl ReplicaService {
    fn segment(&self, end: u64) -> Result<usize, Status> {
        self.core.store.index().with(|trees| {
            let index = trees.segment_of(end);
            if trees.segment_ends()[index] == end {
                Ok(index)
            } else {
                Err(Status::failed_precondition(format!(
                    "no segment ends at {end:016x}: ring views differ"
                )))
            }
        })
    }

    /// A service over a node's shared state, until `stop` turns true.
    pub fn new(core: Arc<NodeCore>, stop: watch::Receiver<bool>) -> ReplicaService {
        ReplicaService { core, stop }
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
            self.core.clock.observe(latest);
        }
        Ok(state)
    }

    async fn read_op(&self, request: proto::ReplicaReadRequest) -> Result<Bytes, Status> {
        if self.core.membership.local_state() == LocalState::Joining {
            return Err(Status::unavailable(format!(
                "node {} is joining: its ranges are still being transferred",
                self.core.me()
            )));
        }
        let key = self.key(request.key)?;
        let state = self.core.store.get(key).await.map_err(internal)?;
        Ok(state.map(|s| Bytes::from(record::encode(&s))).unwrap_or_default())
    }

    async fn merge_op(&self, request: proto::ReplicaMergeRequest) -> Result<(), Status> {
        let key = self.key(request.key)?;
        let state = self.state(&request.state)?;
        let hint_for = match request.hint_for.as_str() {
            "" => None,
            target => Some(NodeId::try_from(target).map_err(|e| Status::invalid_argument(format!("hint_for: {e}")))?),
        };
        match hint_for {
            Some(target) if target != *self.core.me() => self
                .core
                .store
                .put_hint(target, key, state)
                .await
                .map_err(|e| Status::resource_exhausted(e.to_string())),
            // No hint, or we are the intended owner after all (a stale liveness view elsewhere).
            _ => self.core.store.merge(key, state).await.map(|_| ()).map_err(internal),
        }
    }
}

/// The answers of an `ApplyStream` call, one per batch (the generated trait's `BoxStream`).
pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<proto::ReplicaOpsResponse, Status>> + Send + 'static>>;

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

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl Replica for ReplicaService {
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
        let state = (service, request.into_inner());
        let answers = futures::stream::unfold(Some(state), |state| async move {
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
            match service.apply_ops(batch.ops).await {
                Ok(results) => Some((Ok(proto::ReplicaOpsResponse { results }), Some((service, batches)))),
                // A refused batch ends the stream: the peer opens a new one.
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn merge_batch(
        &self,
        request: Request<proto::ReplicaMergeBatchRequest>,
    ) -> Result<Response<proto::ReplicaMergeResponse>, Status> {
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
        self.core.store.merge_batch(batch).await.map_err(internal)?;
        Ok(Response::new(proto::ReplicaMergeResponse {}))
    }

    async fn segment_roots(
        &self,
        request: Request<proto::SegmentRootsRequest>,
    ) -> Result<Response<proto::SegmentRootsResponse>, Status> {
        let ends = request.into_inner().segment_ends;
        if ends.len() > crate::anti_entropy::SEGMENTS_PER_REQUEST_MAX {
            return Err(Status::invalid_argument(format!(
                "{} segments, the limit is {}",
                ends.len(),
                crate::anti_entropy::SEGMENTS_PER_REQUEST_MAX
            )));
        }
        let mut segments = Vec::with_capacity(ends.len());
        for end in ends {
            segments.push(self.segment(end)?);
        }
        let roots = self
            .core
            .store
            .index()
            .with(|trees| segments.iter().map(|s| trees.root(*s)).collect());
        Ok(Response::new(proto::SegmentRootsResponse { roots }))
    }

    async fn segment_leaves(
        &self,
        request: Request<proto::SegmentLeavesRequest>,
    ) -> Result<Response<proto::SegmentLeavesResponse>, Status> {
        let segment = self.segment(request.into_inner().segment_end)?;
        let leaves = self.core.store.index().with(|trees| trees.leaves(segment).to_vec());
        Ok(Response::new(proto::SegmentLeavesResponse { leaves }))
    }

    async fn leaf_digests(
        &self,
        request: Request<proto::LeafDigestsRequest>,
    ) -> Result<Response<proto::LeafDigestsResponse>, Status> {
        let request = request.into_inner();
        let segment = self.segment(request.segment_end)?;
        let leaf = request.leaf as usize;
        if leaf >= SEGMENT_LEAVES {
            return Err(Status::invalid_argument(format!(
                "leaf {leaf} is outside 0..{SEGMENT_LEAVES}"
            )));
        }
        let entries = leaf_digests(&self.core, LeafId { segment, leaf })
            .await
            .map_err(internal)?
            .into_iter()
            .map(|(key, digest)| proto::KeyDigest {
                key: Bytes::from(key),
                digest,
            })
            .collect();
        Ok(Response::new(proto::LeafDigestsResponse { entries }))
    }

    async fn gc_check(
        &self,
        request: Request<proto::GcCheckRequest>,
    ) -> Result<Response<proto::GcCheckResponse>, Status> {
        let key = self.key(request.into_inner().key)?;
        let ring = self.core.membership.ring();
        let targets = ring.members().iter().map(|m| m.id.clone()).collect();
        let holds_hint = self
            .core
            .store
            .holds_hint(key.clone(), targets)
            .await
            .map_err(internal)?;
        let state = self.core.store.get(key).await.map_err(internal)?;
        let state = state.map(|s| Bytes::from(record::encode(&s))).unwrap_or_default();
        Ok(Response::new(proto::GcCheckResponse { state, holds_hint }))
    }

    async fn purge(&self, request: Request<proto::PurgeRequest>) -> Result<Response<proto::PurgeResponse>, Status> {
        let request = request.into_inner();
        let key = self.key(request.key)?;
        let expected = record::decode(&request.expected_state)
            .map_err(|e| Status::invalid_argument(format!("invalid state: {e}")))?;
        let purged = self
            .core
            .store
            .remove_if_unchanged(key, expected)
            .await
            .map_err(internal)?;
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
        let limit = (request.limit as usize).clamp(1, ringkv_storage::SCAN_PAGE_MAX);
        let page = self
            .core
            .store
            .scan(request.first, request.last, after, limit)
            .await
            .map_err(internal)?;
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
