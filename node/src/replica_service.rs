//! The replica API: what other nodes ask of this node's store.
//!
//! Every state arriving here is a storage record; it is decoded (checksum and
//! invariants verified) before it touches the engine, so a corrupt or hostile message
//! is refused with `INVALID_ARGUMENT` and never merged.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_client::proto::{self, replica_server::Replica};
use ringkv_ring::NodeId;
use ringkv_storage::{record, Key, KeyState};
use tonic::{Request, Response, Status};

use crate::node_core::NodeCore;

/// Most entries in one `MergeBatch` call.
pub const MERGE_BATCH_ENTRIES_MAX: usize = 4096;

/// Serves the replica API over a node's store.
pub struct ReplicaService {
    core: Arc<NodeCore>,
}

impl ReplicaService {
    /// A service over a node's shared state.
    pub fn new(core: Arc<NodeCore>) -> ReplicaService {
        ReplicaService { core }
    }

    fn key(&self, bytes: Bytes) -> Result<Key, Status> {
        self.core
            .config
            .limits
            .key(bytes)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    fn state(&self, bytes: &[u8]) -> Result<KeyState, Status> {
        let state = record::decode(bytes)
            .map_err(|e| Status::invalid_argument(format!("invalid state: {e}")))?;
        if let Some(latest) = state.siblings().iter().map(|s| s.hlc()).max() {
            self.core.clock.observe(latest);
        }
        Ok(state)
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
        let key = self.key(request.into_inner().key)?;
        let state = self.core.store.get(key).await.map_err(internal)?;
        let state = state
            .map(|s| Bytes::from(record::encode(&s)))
            .unwrap_or_default();
        Ok(Response::new(proto::ReplicaReadResponse { state }))
    }

    async fn merge(
        &self,
        request: Request<proto::ReplicaMergeRequest>,
    ) -> Result<Response<proto::ReplicaMergeResponse>, Status> {
        let request = request.into_inner();
        let key = self.key(request.key)?;
        let state = self.state(&request.state)?;
        if request.hint_for.is_empty() {
            self.core.store.merge(key, state).await.map_err(internal)?;
        } else {
            let target = NodeId::try_from(request.hint_for.as_str())
                .map_err(|e| Status::invalid_argument(format!("hint_for: {e}")))?;
            if target == *self.core.me() {
                // We are the intended owner after all (a stale liveness view elsewhere).
                self.core.store.merge(key, state).await.map_err(internal)?;
            } else {
                self.core
                    .store
                    .put_hint(target, key, state)
                    .await
                    .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            }
        }
        Ok(Response::new(proto::ReplicaMergeResponse {}))
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

    async fn ping(
        &self,
        request: Request<proto::PingRequest>,
    ) -> Result<Response<proto::PingResponse>, Status> {
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
        }))
    }
}
