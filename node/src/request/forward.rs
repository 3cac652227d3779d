//! Forwarding a write to a replica of its key.
//!
//! Only a replica may order a write (it assigns the dot), so a node outside the key's
//! preference list hands the write to the first replica that takes it: live replicas
//! first, then the others in case the failure detector is wrong, one at a time (a
//! [`QuorumCall`] of one answer, the rest as spares). A replica that cannot be reached is
//! replaced by the next; any answer from a replica, success or refusal, is the answer.
//! Which is which is decided by the status's origin, never by its text: every status a
//! node's client API returns carries [`ERROR_KIND_HEADER`](super::client_api::ERROR_KIND_HEADER),
//! and a status without it came from the connection.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::{NodeId, PreferenceList};
use tokio::time::Instant;

use super::client_api::is_node_verdict;
use super::{Coordinator, RequestError, WriteOutcome, WriteRequest};
use crate::node_core::NodeCore;
use crate::replica::quorum::{Failure, QuorumCall, Slot};

/// Why one replica did not take a forwarded write.
#[derive(Debug)]
enum ForwardFailure {
    /// It could not be reached (no address, a connection failure, the deadline).
    Unreachable,
    /// It answered with an error: the write's outcome, passed back as it is.
    Verdict(tonic::Status),
}

impl Failure for ForwardFailure {
    fn replaceable(&self) -> bool {
        matches!(self, ForwardFailure::Unreachable)
    }
}

impl Coordinator {
    /// Hands a write to the first reachable replica of its key.
    pub(super) async fn forward(
        &self,
        pref: &PreferenceList,
        request: WriteRequest,
    ) -> Result<WriteOutcome, RequestError> {
        let deadline = Instant::now() + request.timeout;
        let core = &self.core;
        let membership = &core.membership;
        let (live, others): (Vec<&NodeId>, Vec<&NodeId>) = pref.iter().partition(|n| membership.is_alive(n));
        let mut order = live.into_iter().chain(others).cloned();
        let first: Vec<NodeId> = order.next().into_iter().collect();
        let (forwarding, request) = (Arc::clone(core), Arc::new(request));
        let mut call = QuorumCall::start(first, order, move |slot: &Slot| {
            let (core, request, node) = (Arc::clone(&forwarding), Arc::clone(&request), slot.node.clone());
            Box::pin(async move { forward_to(&core, &node, &request, deadline).await })
        });
        call.wait_for(1, None, deadline).await;
        if let Some((_, ForwardFailure::Verdict(status))) = call.take_final_failure() {
            return Err(RequestError::Remote(status));
        }
        if let Some((_, outcome)) = call.answers().first() {
            return Ok(outcome.clone());
        }
        Err(RequestError::NoReplicaReachable {
            tried: call
                .asked()
                .iter()
                .map(NodeId::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Sends the write to `node`'s client API, marked as forwarded.
async fn forward_to(
    core: &NodeCore,
    node: &NodeId,
    request: &WriteRequest,
    deadline: Instant,
) -> Result<WriteOutcome, ForwardFailure> {
    let Some(address) = core.membership.address(node) else {
        return Err(ForwardFailure::Unreachable);
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ForwardFailure::Unreachable);
    }
    let mut client = core.peers.kv(node, address);
    let timeout_ms = u32::try_from(remaining.as_millis()).unwrap_or(u32::MAX).max(1);
    let answer = match &request.value {
        Some(value) => {
            let put = proto::PutRequest {
                key: request.key.bytes().clone(),
                value: value.clone(),
                context: request.context_bytes.clone(),
                consistency: request.consistency,
                timeout_ms,
                ttl_ms: request.ttl.map(|t| t.as_millis() as u64).unwrap_or(0),
                forwarded: true,
            };
            tokio::time::timeout_at(deadline, client.put(put)).await.map(|r| {
                r.map(|ok| {
                    let ok = ok.into_inner();
                    (ok.context, ok.replicas_acked, ok.replicas_hinted)
                })
            })
        }
        None => {
            let delete = proto::DeleteRequest {
                key: request.key.bytes().clone(),
                context: request.context_bytes.clone(),
                consistency: request.consistency,
                timeout_ms,
                forwarded: true,
            };
            tokio::time::timeout_at(deadline, client.delete(delete)).await.map(|r| {
                r.map(|ok| {
                    let ok = ok.into_inner();
                    (Bytes::new(), ok.replicas_acked, ok.replicas_hinted)
                })
            })
        }
    };
    match answer {
        Ok(Ok((context, acks, hinted))) => {
            core.membership.report(node, true);
            Ok(WriteOutcome {
                context,
                acks: acks as usize,
                hinted: hinted.min(acks) as usize,
            })
        }
        // The node's own verdict on the write goes back to the client as it is. Any other
        // status was made on the way (a refused or reset connection, whatever code it
        // carries: the SDK's connection reports a refused connect as UNKNOWN): the
        // replica did not take the write, so the next one is asked.
        Ok(Err(status)) if is_node_verdict(&status) => Err(ForwardFailure::Verdict(status)),
        Ok(Err(status)) => {
            tracing::debug!(%node, code = ?status.code(), message = status.message(), "forward: replica unreachable");
            core.metrics.replica_rpc_errors.inc();
            core.membership.report(node, false);
            Err(ForwardFailure::Unreachable)
        }
        Err(_) => Err(ForwardFailure::Unreachable),
    }
}
