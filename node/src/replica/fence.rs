//! The fence: replica traffic from a node an operator removed is refused.
//!
//! A node removed while it was only cut off (the operator believed it dead) still runs,
//! still holds its copies, and once the partition heals its hand-off, anti-entropy and
//! transfer rounds would push them back, including values the survivors have since
//! deleted and purged. Nothing can ask it whether it holds a key (it is not a member),
//! so tombstone GC cannot wait for it; instead its traffic is refused at the door.
//!
//! Every node names itself in a header on each request to a peer
//! ([`SENDER_HEADER`], set once on the connection, `crate::peers`); the replica server
//! refuses a request whose sender the roster records as removed, with
//! `PERMISSION_DENIED`, and counts it. This is a fence between honest nodes, not
//! authentication: proving who the sender is belongs to mutual TLS.

use std::sync::Arc;

use ringkv_ring::NodeId;
use tonic::{Request, Status};

use crate::node_core::NodeCore;

/// The request header that carries the sending node's id.
pub(crate) const SENDER_HEADER: &str = "ringkv-node";

/// A tonic interceptor that refuses replica requests from removed nodes.
#[derive(Clone)]
pub(crate) struct RemovedNodeFence {
    core: Arc<NodeCore>,
}

impl RemovedNodeFence {
    /// A fence that asks `core`'s membership.
    pub fn new(core: Arc<NodeCore>) -> RemovedNodeFence {
        RemovedNodeFence { core }
    }
}

/// The sending node a request names, if it names a valid one.
pub(crate) fn sender_of(metadata: &tonic::metadata::MetadataMap) -> Option<NodeId> {
    metadata
        .get(SENDER_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|id| NodeId::try_from(id).ok())
}

/// Refuses traffic from `sender` if it was removed, counting it. Streams check every
/// message: a stream opened before the removal lives on after it.
pub(crate) fn check(core: &NodeCore, sender: Option<&NodeId>) -> Result<(), Status> {
    match sender {
        Some(sender) if core.membership.is_removed(sender) => {
            core.metrics.removed_sender_refused.inc();
            tracing::debug!(%sender, "refused replica traffic from a removed node");
            Err(Status::permission_denied(format!(
                "{sender} was removed from the cluster: its replica traffic is refused"
            )))
        }
        _ => Ok(()),
    }
}

impl tonic::service::Interceptor for RemovedNodeFence {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        check(&self.core, sender_of(request.metadata()).as_ref())?;
        Ok(request)
    }
}
