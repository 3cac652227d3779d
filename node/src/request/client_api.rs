//! The client API: validation, quorum resolution, metrics and error mapping around the
//! [`Coordinator`].
//!
//! Everything a client sends is checked here before any replica is contacted; every
//! failure leaves as a gRPC status whose message names what was wrong, and whose
//! [`ERROR_KIND_HEADER`] names the kind of error, for programs (a node forwarding a write
//! tells a replica's refusal from a failed connection by it).

use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto::{self, kv_server::Kv};
use ringkv_storage::{Key, VersionVector};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::{Coordinator, RequestError, WriteRequest, TTL_MAX};
use crate::config::REQUEST_TIMEOUT_MAX;
use crate::membership::{LocalState, MembershipError};
use crate::metrics::{Op, Outcome};

/// The response metadata that carries the kind of a request error (`quorum-not-met`,
/// `invalid-argument`, ...). Every error status the client API returns has it; a status
/// without it did not come from a node's verdict (a connection failure, a proxy).
pub(crate) const ERROR_KIND_HEADER: &str = "ringkv-error";

/// Whether `status` is a node's own answer to a request, rather than a transport failure.
pub(crate) fn is_node_verdict(status: &Status) -> bool {
    status.metadata().contains_key(ERROR_KIND_HEADER)
}

/// Serves the client API.
pub(crate) struct KvService {
    coordinator: Coordinator,
}

impl KvService {
    /// A service running requests through `coordinator`.
    pub fn new(coordinator: Coordinator) -> KvService {
        KvService { coordinator }
    }

    fn key(&self, bytes: Bytes) -> Result<Key, RequestError> {
        Ok(self.coordinator.core().config.limits.key(bytes)?)
    }

    fn timeout(&self, timeout_ms: u32) -> Result<Duration, RequestError> {
        if timeout_ms == 0 {
            return Ok(self.coordinator.core().config.request_timeout);
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        if timeout > REQUEST_TIMEOUT_MAX {
            return Err(RequestError::TimeoutTooLong {
                got_ms: u64::from(timeout_ms),
                max_ms: REQUEST_TIMEOUT_MAX.as_millis() as u64,
            });
        }
        Ok(timeout)
    }

    fn quorum(
        &self,
        consistency: Option<proto::Consistency>,
        what: &'static str,
        default: u8,
    ) -> Result<u8, RequestError> {
        resolve_quorum(consistency, what, default, self.coordinator.core().config.replicas)
    }

    fn record<T>(&self, op: Op, started: Instant, result: &Result<T, RequestError>) {
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => match status(e).code() {
                tonic::Code::InvalidArgument => Outcome::Invalid,
                tonic::Code::Unavailable => Outcome::Unavailable,
                _ => Outcome::Error,
            },
        };
        self.coordinator
            .core()
            .metrics
            .observe_request(op, outcome, started.elapsed().as_secs_f64());
    }

    async fn write(&self, request: WriteRequest) -> Result<proto::PutResponse, RequestError> {
        let outcome = self.coordinator.write(request).await?;
        Ok(proto::PutResponse {
            context: outcome.context,
            replicas_acked: outcome.acks as u32,
            replicas_hinted: outcome.hinted as u32,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_request(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        context: Bytes,
        consistency: Option<proto::Consistency>,
        timeout_ms: u32,
        ttl_ms: u64,
        forwarded: bool,
    ) -> Result<WriteRequest, RequestError> {
        let core = self.coordinator.core();
        let key = self.key(key)?;
        if let Some(value) = &value {
            core.config.limits.check_value(value)?;
        }
        // The value is a slice of the request's receive buffer; an engine that keeps it as
        // it is (the memory engine) would keep the whole buffer alive. Copy it out.
        let value = value.map(|v| Bytes::copy_from_slice(&v));
        Ok(WriteRequest {
            key,
            value,
            context: VersionVector::decode(&context)?,
            context_bytes: context,
            w: self.quorum(consistency, "w", core.config.write_quorum)?,
            consistency,
            timeout: self.timeout(timeout_ms)?,
            ttl: ttl(ttl_ms)?,
            forwarded,
        })
    }
}

/// A write's time to live from its wire value (0: none), within [`TTL_MAX`].
fn ttl(ttl_ms: u64) -> Result<Option<Duration>, RequestError> {
    let ttl = Duration::from_millis(ttl_ms);
    if ttl > TTL_MAX {
        return Err(RequestError::TtlTooLong {
            got_ms: ttl_ms,
            max_ms: TTL_MAX.as_millis() as u64,
        });
    }
    Ok((ttl_ms > 0).then_some(ttl))
}

/// Turns a requested consistency level into a replica count in `1..=n`.
pub(crate) fn resolve_quorum(
    consistency: Option<proto::Consistency>,
    what: &'static str,
    default: u8,
    n: u8,
) -> Result<u8, RequestError> {
    let Some(consistency) = consistency else {
        return Ok(default);
    };
    let level = proto::Level::try_from(consistency.level).map_err(|_| RequestError::UnknownLevel {
        what,
        level: consistency.level,
    })?;
    let count = match level {
        proto::Level::Default => return Ok(default),
        proto::Level::One => 1,
        proto::Level::Quorum => u32::from(n) / 2 + 1,
        proto::Level::All => u32::from(n),
        proto::Level::Count => consistency.count,
    };
    if count == 0 || count > u32::from(n) {
        return Err(RequestError::BadQuorum { what, got: count, n });
    }
    Ok(count as u8)
}

/// The gRPC status for a request error, with its kind in [`ERROR_KIND_HEADER`].
pub(crate) fn status(error: &RequestError) -> Status {
    let message = error.to_string();
    let (code, kind) = match error {
        RequestError::Limit(_) => (tonic::Code::InvalidArgument, "limit"),
        RequestError::Context(_) => (tonic::Code::InvalidArgument, "context"),
        RequestError::FutureContext(_) => (tonic::Code::InvalidArgument, "future-context"),
        RequestError::BadQuorum { .. } => (tonic::Code::InvalidArgument, "bad-quorum"),
        RequestError::UnknownLevel { .. } => (tonic::Code::InvalidArgument, "unknown-level"),
        RequestError::TtlTooLong { .. } => (tonic::Code::InvalidArgument, "ttl-too-long"),
        RequestError::TimeoutTooLong { .. } => (tonic::Code::InvalidArgument, "timeout-too-long"),
        RequestError::QuorumNotMet { .. } => (tonic::Code::Unavailable, "quorum-not-met"),
        RequestError::NoReplicaReachable { .. } => (tonic::Code::Unavailable, "no-replica-reachable"),
        RequestError::EmptyRing => (tonic::Code::Unavailable, "empty-ring"),
        RequestError::NotReplica { .. } => (tonic::Code::FailedPrecondition, "not-replica"),
        RequestError::Store(_) => (tonic::Code::Internal, "store"),
        // A replica's answer to a forwarded write, passed on with its own kind.
        RequestError::Remote(status) => return status.clone(),
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(ERROR_KIND_HEADER, tonic::metadata::MetadataValue::from_static(kind));
    Status::with_metadata(code, message, metadata)
}

fn sibling(s: &ringkv_storage::Sibling) -> proto::Sibling {
    proto::Sibling {
        value: s.value().cloned().unwrap_or_default(),
        hlc: s.hlc().raw(),
        expires_at_ms: s.expires_at_ms(),
        dot: s.dot().to_string(),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<proto::GetRequest>) -> Result<Response<proto::GetResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = async {
            let key = self.key(request.key)?;
            let r = self.quorum(request.consistency, "r", self.coordinator.core().config.read_quorum)?;
            let timeout = self.timeout(request.timeout_ms)?;
            self.coordinator.get(key, r, timeout).await
        }
        .await;
        self.record(Op::Get, started, &result);
        let outcome = result.map_err(|e| status(&e))?;
        let now_ms = self.coordinator.core().clock.wall_ms();
        Ok(Response::new(proto::GetResponse {
            siblings: outcome.state.visible(now_ms).map(sibling).collect(),
            context: Bytes::from(outcome.state.context().encode()),
            replicas_replied: outcome.replied as u32,
        }))
    }

    async fn put(&self, request: Request<proto::PutRequest>) -> Result<Response<proto::PutResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let result = async {
            let write = self.write_request(
                r.key,
                Some(r.value),
                r.context,
                r.consistency,
                r.timeout_ms,
                r.ttl_ms,
                r.forwarded,
            )?;
            self.write(write).await
        }
        .await;
        self.record(Op::Put, started, &result);
        result.map(Response::new).map_err(|e| status(&e))
    }

    async fn delete(&self, request: Request<proto::DeleteRequest>) -> Result<Response<proto::DeleteResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let result = async {
            let write = self.write_request(r.key, None, r.context, r.consistency, r.timeout_ms, 0, r.forwarded)?;
            self.write(write).await
        }
        .await;
        self.record(Op::Delete, started, &result);
        result
            .map(|ok| {
                Response::new(proto::DeleteResponse {
                    replicas_acked: ok.replicas_acked,
                    replicas_hinted: ok.replicas_hinted,
                })
            })
            .map_err(|e| status(&e))
    }

    async fn leave(&self, _request: Request<proto::LeaveRequest>) -> Result<Response<proto::LeaveResponse>, Status> {
        let core = self.coordinator.core();
        if core.membership.gossip_address().is_none() {
            return Err(Status::failed_precondition(MembershipError::Static.to_string()));
        }
        tracing::info!(node = %core.me(), "leaving: handing data to the new owners");
        core.membership.set_local_state(LocalState::Leaving);
        Ok(Response::new(proto::LeaveResponse {
            node_id: core.me().to_string(),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        let id = request.into_inner().node_id;
        let id = ringkv_ring::NodeId::try_from(id.as_str()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.coordinator.core().membership.remove(&id) {
            Ok(()) => {
                tracing::info!(node = %id, "removed from the ring; survivors re-replicate its data");
                Ok(Response::new(proto::RemoveNodeResponse {}))
            }
            Err(MembershipError::UnknownNode(id)) => {
                Err(Status::not_found(format!("{id} is not a member of the cluster")))
            }
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::StatusResponse>, Status> {
        let core = self.coordinator.core();
        let ring = core.membership.ring();
        let shares = ring.replica_share(core.config.replicas);
        let hints: std::collections::BTreeMap<_, _> = core
            .store
            .hint_counts()
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .collect();
        let transfers_pending = core.metrics.transfers_pending.get().max(0) as u64;
        let members = core
            .membership
            .members()
            .into_iter()
            .map(|m| {
                let placed = ring.member(&m.id);
                proto::MemberStatus {
                    id: m.id.to_string(),
                    address: m.address.map(|a| a.to_string()).unwrap_or_default(),
                    vnodes: placed.map_or(0, |p| u32::from(p.vnodes)),
                    zone: placed.and_then(|p| p.zone.clone()).unwrap_or_default(),
                    state: m.state,
                    alive: m.alive,
                    generation: m.generation,
                    ownership_share: shares.get(&m.id).copied().unwrap_or(0.0),
                    hints_pending: hints.get(&m.id).copied().unwrap_or(0),
                    transfers_pending: if m.id == *core.me() { transfers_pending } else { 0 },
                }
            })
            .collect();
        Ok(Response::new(proto::StatusResponse {
            node_id: core.me().to_string(),
            cluster_name: core.config.cluster_name.clone(),
            replicas: u32::from(core.config.replicas),
            members,
            key_bytes_max: core.config.limits.key_bytes_max(),
            value_bytes_max: core.config.limits.value_bytes_max(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(level: proto::Level, count: u32, expected: Result<u8, ()>) {
        let consistency = proto::Consistency {
            level: level as i32,
            count,
        };
        let got = resolve_quorum(Some(consistency), "w", 2, 3).map_err(|_| ());
        assert_eq!(got, expected, "{level:?} {count}");
    }

    #[test]
    fn quorum_levels() {
        check(proto::Level::Default, 0, Ok(2));
        check(proto::Level::One, 0, Ok(1));
        check(proto::Level::Quorum, 0, Ok(2));
        check(proto::Level::All, 0, Ok(3));
        check(proto::Level::Count, 3, Ok(3));
        check(proto::Level::Count, 4, Err(()));
        check(proto::Level::Count, 0, Err(()));
        assert_eq!(resolve_quorum(None, "r", 2, 3).ok(), Some(2));
        let unknown = proto::Consistency { level: 99, count: 0 };
        assert!(matches!(
            resolve_quorum(Some(unknown), "r", 2, 3),
            Err(RequestError::UnknownLevel { level: 99, .. })
        ));
    }
}
