//! The replica operations on a peer, over the one connection to it.
//!
//! Reads and merges go through the peer's batcher (they are on every client request's
//! path); the rest are unary calls of the replica API. Every call ends in
//! [`answered`]: the one place that reports a call's outcome to the failure detector and
//! counts failed calls. Every state a peer sends is decoded (checksum and invariants
//! verified) before anyone sees it; empty bytes mean the peer stores nothing.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use ringkv_client::proto::replica_client::ReplicaClient;
use ringkv_client::{proto, Connection};
use ringkv_ring::{NodeId, Position};
use ringkv_storage::{record, Key, KeyState};
use tokio::time::Instant;

use super::{GcCheck, Replica, ReplicaError};
use crate::peers::batcher::ReplicaBatcher;
use crate::store::{LeafPage, LEAF_PAGE_KEYS_MAX};

/// Fails at once for a peer the failure detector believes down (the request path's
/// operations: a quorum then moves on without waiting out a timeout).
fn believed_up(replica: &Replica) -> Result<(), ReplicaError> {
    if replica.core.membership.is_alive(&replica.node) {
        return Ok(());
    }
    Err(ReplicaError::Down {
        node: replica.node.clone(),
    })
}

/// The peer's batcher, unless the peer is believed down or has no address.
fn batcher(replica: &Replica) -> Result<ReplicaBatcher, ReplicaError> {
    believed_up(replica)?;
    let address = address(replica)?;
    Ok(replica.core.peers.batcher(&replica.node, address))
}

fn address(replica: &Replica) -> Result<std::net::SocketAddr, ReplicaError> {
    replica
        .core
        .membership
        .address(&replica.node)
        .ok_or_else(|| ReplicaError::NoAddress {
            node: replica.node.clone(),
        })
}

fn client(replica: &Replica) -> Result<ReplicaClient<Connection>, ReplicaError> {
    let address = address(replica)?;
    Ok(replica.core.peers.replica(&replica.node, address))
}

/// The outcome of one call to the peer, reported and counted.
///
/// A call that answered proves the peer alive; one that timed out or found the peer
/// unavailable counts against it (the static membership suspects a peer after a few such
/// failures in a row; gossip's failure detector decides on its own).
fn answered<T>(replica: &Replica, outcome: Result<T, tonic::Status>) -> Result<T, ReplicaError> {
    let core = &replica.core;
    match outcome {
        Ok(answer) => {
            core.membership.report(&replica.node, true);
            Ok(answer)
        }
        Err(status) => {
            core.metrics.replica_rpc_errors.inc();
            let node = replica.node.clone();
            match status.code() {
                tonic::Code::DeadlineExceeded => {
                    core.membership.report(&node, false);
                    Err(ReplicaError::TimedOut { node })
                }
                tonic::Code::Unavailable => {
                    core.membership.report(&node, false);
                    Err(ReplicaError::Failed { node, status })
                }
                _ => Err(ReplicaError::Failed { node, status }),
            }
        }
    }
}

/// A unary call bounded by `deadline`, counted as traffic and reported.
async fn unary<Req: Message, Resp: Message, F: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>>(
    replica: &Replica,
    request: Req,
    deadline: Instant,
    send: impl FnOnce(ReplicaClient<Connection>, Req) -> F,
) -> Result<Resp, ReplicaError> {
    let client = client(replica)?;
    replica.count_traffic(request.encoded_len());
    let outcome = match tokio::time::timeout_at(deadline, send(client, request)).await {
        Ok(outcome) => outcome.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("timed out")),
    };
    let response = answered(replica, outcome)?;
    replica.count_traffic(response.encoded_len());
    Ok(response)
}

fn decode(replica: &Replica, bytes: &[u8]) -> Result<KeyState, ReplicaError> {
    if bytes.is_empty() {
        return Ok(KeyState::new());
    }
    record::decode(bytes).map_err(|source| ReplicaError::BadState {
        node: replica.node.clone(),
        source,
    })
}

fn bad(replica: &Replica, reason: String) -> ReplicaError {
    ReplicaError::BadAnswer {
        node: replica.node.clone(),
        reason,
    }
}

pub(super) async fn read(replica: &Replica, key: &Key, deadline: Instant) -> Result<KeyState, ReplicaError> {
    let batcher = batcher(replica)?;
    replica.count_traffic(key.bytes().len());
    let bytes = answered(replica, batcher.read(key.bytes().clone(), deadline).await)?;
    replica.count_traffic(bytes.len());
    decode(replica, &bytes)
}

pub(super) async fn merge(
    replica: &Replica,
    key: &Key,
    encoded: &Bytes,
    hint_for: Option<&NodeId>,
    deadline: Instant,
) -> Result<(), ReplicaError> {
    let batcher = batcher(replica)?;
    let request = proto::ReplicaMergeRequest {
        key: key.bytes().clone(),
        state: encoded.clone(),
        hint_for: hint_for.map(|t| t.to_string()).unwrap_or_default(),
    };
    replica.count_traffic(request.encoded_len());
    answered(replica, batcher.merge(request, deadline).await)
}

pub(super) async fn merge_batch(
    replica: &Replica,
    entries: &[(Key, KeyState)],
    deadline: Instant,
) -> Result<(), ReplicaError> {
    believed_up(replica)?;
    let entries = entries
        .iter()
        .map(|(key, state)| proto::KeyStateEntry {
            key: key.bytes().clone(),
            state: Bytes::from(record::encode(state)),
        })
        .collect();
    let request = proto::ReplicaMergeBatchRequest { entries };
    unary(
        replica,
        request,
        deadline,
        |mut c, r| async move { c.merge_batch(r).await },
    )
    .await?;
    Ok(())
}

pub(super) async fn scan(
    replica: &Replica,
    first: Position,
    last: Position,
    after: Option<&Key>,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<(Key, KeyState)>, ReplicaError> {
    let request = proto::ScanRangeRequest {
        first,
        last,
        after_key: after.map(|k| k.bytes().clone()).unwrap_or_default(),
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
    };
    let page = unary(
        replica,
        request,
        deadline,
        |mut c, r| async move { c.scan_range(r).await },
    )
    .await?;
    if page.entries.len() > limit {
        return Err(bad(
            replica,
            format!("{} keys for a page of {limit}", page.entries.len()),
        ));
    }
    let limits = &replica.core.config.limits;
    let mut entries: Vec<(Key, KeyState)> = Vec::with_capacity(page.entries.len());
    for entry in page.entries {
        let key = limits.key(entry.key).map_err(|e| bad(replica, format!("key: {e}")))?;
        if entry.state.is_empty() {
            return Err(bad(replica, format!("an empty state for key {key:?}")));
        }
        // A page moves forward through the interval: a peer that sends keys out of order,
        // again, or outside what was asked would keep a pull going round forever.
        let previous = entries.last().map(|(k, _)| k).or(after);
        if previous.is_some_and(|previous| key <= *previous) {
            return Err(bad(replica, format!("key {key:?} is not after the one before it")));
        }
        if key.position() < first || key.position() > last {
            return Err(bad(
                replica,
                format!("key {key:?} is outside [{first:016x}, {last:016x}]"),
            ));
        }
        entries.push((key, decode(replica, &entry.state)?));
    }
    Ok(entries)
}

pub(super) async fn segment_roots(
    replica: &Replica,
    ends: Vec<Position>,
    deadline: Instant,
) -> Result<Vec<u64>, ReplicaError> {
    let asked = ends.len();
    let request = proto::SegmentRootsRequest { segment_ends: ends };
    let roots = unary(replica, request, deadline, |mut c, r| async move {
        c.segment_roots(r).await
    })
    .await?
    .roots;
    if roots.len() != asked {
        return Err(bad(replica, format!("{} roots for {asked} segments", roots.len())));
    }
    Ok(roots)
}

pub(super) async fn segment_leaves(
    replica: &Replica,
    end: Position,
    deadline: Instant,
) -> Result<Vec<u64>, ReplicaError> {
    let request = proto::SegmentLeavesRequest { segment_end: end };
    let leaves = unary(replica, request, deadline, |mut c, r| async move {
        c.segment_leaves(r).await
    })
    .await?
    .leaves;
    if leaves.len() != ringkv_storage::SEGMENT_LEAVES {
        return Err(bad(
            replica,
            format!("{} leaves, expected {}", leaves.len(), ringkv_storage::SEGMENT_LEAVES),
        ));
    }
    Ok(leaves)
}

pub(super) async fn leaf_digests(
    replica: &Replica,
    end: Position,
    leaf: usize,
    after: Option<Key>,
    deadline: Instant,
) -> Result<LeafPage, ReplicaError> {
    let leaf = u32::try_from(leaf).map_err(|_| bad(replica, format!("leaf {leaf} out of range")))?;
    let request = proto::LeafDigestsRequest {
        segment_end: end,
        leaf,
        after: after.map(|k| k.bytes().clone()).unwrap_or_default(),
    };
    let response = unary(
        replica,
        request,
        deadline,
        |mut c, r| async move { c.leaf_digests(r).await },
    )
    .await?;
    if response.entries.len() > LEAF_PAGE_KEYS_MAX {
        return Err(bad(
            replica,
            format!(
                "{} keys in one leaf page, over {LEAF_PAGE_KEYS_MAX}",
                response.entries.len()
            ),
        ));
    }
    let limits = &replica.core.config.limits;
    let key = |bytes: Bytes| limits.key(bytes).map_err(|e| bad(replica, format!("key: {e}")));
    let entries = response
        .entries
        .into_iter()
        .map(|e| Ok((key(e.key)?, e.digest)))
        .collect::<Result<_, ReplicaError>>()?;
    let next = if response.next.is_empty() {
        None
    } else {
        Some(key(response.next)?)
    };
    Ok(LeafPage { entries, next })
}

pub(super) async fn gc_check(replica: &Replica, key: &Key, deadline: Instant) -> Result<GcCheck, ReplicaError> {
    let request = proto::GcCheckRequest {
        key: key.bytes().clone(),
    };
    let answer = unary(
        replica,
        request,
        deadline,
        |mut c, r| async move { c.gc_check(r).await },
    )
    .await?;
    let state = if answer.state.is_empty() {
        None
    } else {
        Some(decode(replica, &answer.state)?)
    };
    Ok(GcCheck {
        state,
        holds_hint: answer.holds_hint,
        wall_ms: answer.wall_ms,
    })
}

pub(super) async fn purge(
    replica: &Replica,
    key: &Key,
    encoded: &Bytes,
    deadline: Instant,
) -> Result<bool, ReplicaError> {
    let request = proto::PurgeRequest {
        key: key.bytes().clone(),
        expected_state: encoded.clone(),
    };
    let answer = unary(replica, request, deadline, |mut c, r| async move { c.purge(r).await }).await?;
    Ok(answer.purged)
}

/// Pings the peer. It is reachable when it answers as itself in this cluster; an answer
/// from another node id at its address, or a refusal (another cluster), is a failure.
pub(super) async fn probe(replica: &Replica, timeout: Duration) -> bool {
    let core = &replica.core;
    let Ok(client) = client(replica) else {
        return false;
    };
    let request = proto::PingRequest {
        from: core.me().to_string(),
        cluster_name: core.config.cluster_name.clone(),
    };
    let outcome = match tokio::time::timeout(timeout, ping(client, request)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(tonic::Status::deadline_exceeded("timed out")),
    };
    let peer = &replica.node;
    let reachable = match outcome {
        Ok(answer) if answer.node_id == peer.as_str() => true,
        Ok(answer) => {
            tracing::warn!(%peer, answered = %answer.node_id, "a different node answers at this peer's address");
            false
        }
        Err(status) => {
            if status.code() == tonic::Code::FailedPrecondition {
                tracing::warn!(%peer, message = status.message(), "peer refused our probe");
            }
            false
        }
    };
    core.membership.report(peer, reachable);
    reachable
}

async fn ping(
    mut client: ReplicaClient<Connection>,
    request: proto::PingRequest,
) -> Result<proto::PingResponse, tonic::Status> {
    client.ping(request).await.map(tonic::Response::into_inner)
}
