//! The quorum coordinator: how a client request becomes replica reads and writes.
//!
//! Any node coordinates a read. A write is *ordered* by a replica of its key — the
//! replica assigns the write's dot from the key's full local state (see
//! `ringkv_storage::key_state`) — so a node outside the preference list forwards writes
//! to the first live replica. From there:
//!
//! - [`Coordinator::put`]: apply locally, send the new state to the other N-1 replicas in
//!   parallel, and answer once W copies (this one included) are stored. A replica that is
//!   down or fails is replaced by the next live node after the preference list, which
//!   stores the copy as a *hint* for it (sloppy quorum). Replication keeps going in the
//!   background after the answer, so slow replicas still get the write.
//! - [`Coordinator::get`]: ask R replicas (this node's copy first), answer once R replied
//!   with the merge of their states, and send the merged state to every replica asked that
//!   was found stale (read repair). A replica that fails is replaced by the next at once;
//!   one that is slow, after [`READ_HEDGE_AFTER`], by asking all the others. Replicas not
//!   asked are brought up to date by anti-entropy (see `docs/design-decisions.md` for why
//!   reads do not ask all N, as Dynamo's do).
//!
//! Placement (which nodes) comes from `ringkv_ring`; how many must answer is decided
//! here. The two never mix.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::proto;
use ringkv_ring::{NodeId, PreferenceList, Ring};
use ringkv_storage::{record, ContextError, Key, KeyState, LimitError, VersionVector, Write, SIBLINGS_WARN};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::local_store::StoreError;
use crate::node_core::NodeCore;

/// How long a read waits for the R replicas it asked before it asks the others too.
///
/// Longer than a replica read takes on a loaded node (a few milliseconds in the 3-node
/// benchmark), so that hedging stays the exception; short against the request timeout,
/// so a replica that hangs without failing costs a read this much and no more.
pub const READ_HEDGE_AFTER: Duration = Duration::from_millis(25);

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Key or value outside the limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The context is not one this cluster produced.
    #[error("malformed context: {0}")]
    Context(#[from] ContextError),
    /// R or W out of range.
    #[error("{what}={got} is outside 1..={n}: the cluster keeps n={n} replicas")]
    BadQuorum {
        /// `r` or `w`.
        what: &'static str,
        /// Requested value.
        got: u32,
        /// Replica count.
        n: u8,
    },
    /// Requested timeout too long.
    #[error("timeout of {got_ms} ms is above the limit of {max_ms} ms")]
    TimeoutTooLong {
        /// Requested.
        got_ms: u64,
        /// Limit.
        max_ms: u64,
    },
    /// Not enough replicas answered in time.
    #[error("{op} quorum not met: {replied} of {needed} replicas answered within {timeout_ms} ms{detail}")]
    QuorumNotMet {
        /// `read` or `write`.
        op: &'static str,
        /// Replicas that answered.
        replied: usize,
        /// Replicas required.
        needed: u8,
        /// The request's time budget.
        timeout_ms: u64,
        /// The first failure seen, if any, for the log line.
        detail: String,
    },
    /// No replica of the key could order a write.
    #[error("no replica of the key is reachable to order the write (tried {tried})")]
    NoReplicaReachable {
        /// Nodes tried, comma-separated.
        tried: String,
    },
    /// A forwarded write reached a node that is not a replica in its view.
    #[error("node {node} is not a replica of this key in its ring view")]
    NotReplica {
        /// This node.
        node: NodeId,
    },
    /// The ring is empty.
    #[error("the cluster has no members")]
    EmptyRing,
    /// A replica answered with bytes that are not a valid state.
    #[error("replica {node} sent an invalid state: {reason}")]
    BadReplicaState {
        /// The replica.
        node: NodeId,
        /// What is wrong.
        reason: String,
    },
    /// The local store failed.
    #[error("local storage: {0}")]
    Store(#[from] StoreError),
    /// A node this write was forwarded to answered with an error.
    #[error("{}", .0.message())]
    Remote(tonic::Status),
}

/// A resolved write (put or delete), validated.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The key.
    pub key: Key,
    /// The value, or `None` to delete.
    pub value: Option<Bytes>,
    /// What the client had seen.
    pub context: VersionVector,
    /// The raw context bytes, to forward unchanged.
    pub context_bytes: Bytes,
    /// Copies that must be stored before answering.
    pub w: u8,
    /// The client's consistency request, to forward unchanged.
    pub consistency: Option<proto::Consistency>,
    /// Time budget.
    pub timeout: Duration,
    /// Expiry after the write, if any.
    pub ttl: Option<Duration>,
    /// Whether another node forwarded this write here.
    pub forwarded: bool,
}

/// The answer to a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// Context covering the write.
    pub context: Bytes,
    /// Copies stored when answering.
    pub acks: usize,
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Merged state of the replicas that answered.
    pub state: KeyState,
    /// Replicas that answered before the reply.
    pub replied: usize,
}

/// Runs client requests against the cluster.
#[derive(Clone)]
pub struct Coordinator {
    core: Arc<NodeCore>,
}

type ReplicaReply = (NodeId, Result<KeyState, String>);

/// The replies of a read so far: the states, their merge, and the first failure.
struct Gathered {
    replies: Vec<(NodeId, KeyState)>,
    merged: KeyState,
    first_error: String,
}

impl Gathered {
    fn new(replicas: usize) -> Gathered {
        Gathered {
            replies: Vec::with_capacity(replicas),
            merged: KeyState::new(),
            first_error: String::new(),
        }
    }

    fn absorb(&mut self, (node, reply): ReplicaReply) {
        match reply {
            Ok(state) => {
                self.merged.merge(&state);
                self.replies.push((node, state));
            }
            Err(e) => {
                if self.first_error.is_empty() {
                    self.first_error = format!(": {node}: {e}");
                }
            }
        }
    }
}

impl Coordinator {
    /// A coordinator over a node's shared state.
    pub fn new(core: Arc<NodeCore>) -> Coordinator {
        Coordinator { core }
    }

    /// The shared node state.
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    fn preference_list(&self, ring: &Ring, key: &Key) -> Result<PreferenceList, RequestError> {
        if ring.physical_node_count() == 0 {
            return Err(RequestError::EmptyRing);
        }
        Ok(ring.preference_list(key.position(), self.core.config.replicas))
    }

    /// Reads `key` from `r` replicas.
    ///
    /// Asks this node's copy (when it holds one) and just enough peers for `r` answers, in
    /// [`peer_read_order`]. A peer that fails is replaced by the next one at once; if the
    /// answers are not all in after [`READ_HEDGE_AFTER`], every remaining replica is asked
    /// too, and the first `r` answers win.
    pub async fn get(&self, key: Key, r: u8, timeout: Duration) -> Result<ReadOutcome, RequestError> {
        let deadline = Instant::now() + timeout;
        let needed = usize::from(r);
        let ring = self.core.membership.ring();
        let pref = self.preference_list(&ring, &key)?;
        let me = self.core.me();
        let holds_copy = pref.contains(me);
        let membership = &self.core.membership;
        let mut unasked: VecDeque<NodeId> = peer_read_order(pref.nodes(), me, |n| membership.is_alive(n)).into();
        // Room for every peer's answer, so no sender ever waits.
        let (tx, mut rx) = mpsc::channel::<ReplicaReply>(pref.len());
        let mut outstanding = 0usize;
        for _ in 0..needed.saturating_sub(usize::from(holds_copy)) {
            if let Some(peer) = unasked.pop_front() {
                self.ask_replica(peer, &key, deadline, &tx);
                outstanding += 1;
            }
        }

        let mut gathered = Gathered::new(pref.len());
        // The local copy is read here, without a task of its own, while the peers answer.
        if holds_copy {
            let reply = self.read_replica(me, &key, deadline).await;
            gathered.absorb((me.clone(), reply));
        }
        let hedge = tokio::time::sleep_until(Instant::now() + READ_HEDGE_AFTER);
        let expiry = tokio::time::sleep_until(deadline);
        tokio::pin!(hedge, expiry);
        while gathered.replies.len() < needed {
            // Failures leave fewer answers coming than still needed: ask the next peers.
            let missing = needed - gathered.replies.len();
            while outstanding < missing {
                let Some(peer) = unasked.pop_front() else { break };
                self.ask_replica(peer, &key, deadline, &tx);
                outstanding += 1;
            }
            if outstanding == 0 {
                break; // nobody left to ask
            }
            tokio::select! {
                // Answers first: a read never hedges while an answer is already waiting.
                biased;
                reply = rx.recv() => {
                    let Some(reply) = reply else { break };
                    outstanding -= 1;
                    gathered.absorb(reply);
                }
                // Hedging empties `unasked`, so this fires at most once.
                () = &mut hedge, if !unasked.is_empty() => {
                    self.core.metrics.read_hedges.inc();
                    while let Some(peer) = unasked.pop_front() {
                        self.ask_replica(peer, &key, deadline, &tx);
                        outstanding += 1;
                    }
                }
                () = &mut expiry => break,
            }
        }
        drop(tx);
        debug_assert!(gathered.replies.len() + outstanding <= pref.len());
        let Gathered {
            replies,
            merged,
            first_error,
        } = gathered;
        let replied = replies.len();
        if replied < needed {
            return Err(RequestError::QuorumNotMet {
                op: "read",
                replied,
                needed: r,
                timeout_ms: timeout.as_millis() as u64,
                detail: first_error,
            });
        }
        let siblings = merged.visible(self.core.clock.wall_ms()).count();
        if siblings > SIBLINGS_WARN {
            self.core.metrics.sibling_explosions.inc();
            tracing::warn!(key = ?key, siblings, "key has many siblings: resolve them with a context");
        }
        // Every replica asked has answered, and they agree: nothing to repair.
        let settled = outstanding == 0 && replies.iter().all(|(_, state)| *state == merged);
        if !settled {
            let repair = self.clone();
            tokio::spawn(async move { repair.read_repair(key, replies, rx, deadline).await });
        }
        Ok(ReadOutcome { state: merged, replied })
    }

    /// Reads `node`'s copy of `key` in a task of its own, answering on `replies`.
    fn ask_replica(&self, node: NodeId, key: &Key, deadline: Instant, replies: &mpsc::Sender<ReplicaReply>) {
        let (replies, this, key) = (replies.clone(), self.clone(), key.clone());
        tokio::spawn(async move {
            let reply = this.read_replica(&node, &key, deadline).await;
            let _ = replies.send((node, reply)).await;
        });
    }

    async fn read_replica(&self, node: &NodeId, key: &Key, deadline: Instant) -> Result<KeyState, String> {
        if node == self.core.me() {
            if self.core.membership.local_state() == crate::membership::LocalState::Joining {
                return Err("joining: ranges still being transferred".to_owned());
            }
            return self
                .core
                .store
                .get(key.clone())
                .await
                .map(Option::unwrap_or_default)
                .map_err(|e| e.to_string());
        }
        if !self.core.membership.is_alive(node) {
            return Err("down".to_owned());
        }
        let address = self.core.membership.address(node).ok_or("no address")?;
        let batcher = self.core.peers.batcher(node, address);
        match batcher.read(key.bytes().clone(), deadline).await {
            Ok(bytes) => {
                self.core.membership.report(node, true);
                if bytes.is_empty() {
                    return Ok(KeyState::new());
                }
                record::decode(&bytes).map_err(|e| format!("invalid state: {e}"))
            }
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                self.core.metrics.replica_rpc_errors.inc();
                Err("timed out".to_owned())
            }
            Err(status) => {
                self.replica_failed(node, &status);
                Err(status.message().to_owned())
            }
        }
    }

    fn replica_failed(&self, node: &NodeId, status: &tonic::Status) {
        self.core.metrics.replica_rpc_errors.inc();
        if status.code() == tonic::Code::Unavailable {
            self.core.membership.report(node, false);
        }
    }

    /// Waits for the replies still coming from the replicas asked, then sends the merge of
    /// all to those found stale.
    async fn read_repair(
        &self,
        key: Key,
        mut replies: Vec<(NodeId, KeyState)>,
        mut rx: mpsc::Receiver<ReplicaReply>,
        deadline: Instant,
    ) {
        while let Ok(Some((node, reply))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let Ok(state) = reply {
                replies.push((node, state));
            }
        }
        let mut merged = KeyState::new();
        for (_, state) in &replies {
            merged.merge(state);
        }
        let stale: Vec<NodeId> = replies
            .into_iter()
            .filter(|(_, s)| *s != merged)
            .map(|(n, _)| n)
            .collect();
        if stale.is_empty() {
            return;
        }
        let encoded = Bytes::from(record::encode(&merged));
        for node in stale {
            let repaired = self
                .store_copy(
                    &node,
                    &key,
                    &merged,
                    &encoded,
                    None,
                    Instant::now() + self.core.config.request_timeout,
                )
                .await;
            if repaired.is_ok() {
                self.core.metrics.read_repairs.inc();
                tracing::debug!(%node, ?key, "read repair");
            }
        }
    }

    /// Writes (or deletes) through a replica of the key.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, RequestError> {
        let ring = self.core.membership.ring();
        let pref = self.preference_list(&ring, &request.key)?;
        if !pref.contains(self.core.me()) {
            if request.forwarded {
                return Err(RequestError::NotReplica {
                    node: self.core.me().clone(),
                });
            }
            return self.forward(&pref, request).await;
        }
        let deadline = Instant::now() + request.timeout;
        let hlc = self.core.clock.hlc_now();
        let expires_at_ms = request
            .ttl
            .map(|ttl| self.core.clock.wall_ms() + ttl.as_millis() as u64);
        let actor = self.core.actor;
        let context = if ringkv_storage::injected_bug::active(ringkv_storage::injected_bug::Bug::PutIgnoresContext) {
            VersionVector::new()
        } else {
            request.context.clone()
        };
        let value = request.value.clone();
        let (state, local_sync) = self
            .core
            .store
            .update_then_sync(request.key.clone(), move |s| {
                s.put_with_floor(
                    actor,
                    &context,
                    Write {
                        value: value.clone(),
                        hlc,
                        expires_at_ms,
                    },
                    hlc.raw(),
                );
            })
            .await?;
        // With the injected bug the copies still go out, but nobody waits for them.
        let ack_early = ringkv_storage::injected_bug::active(ringkv_storage::injected_bug::Bug::AckBeforeQuorum);
        let needed = if ack_early { 0 } else { request.w.saturating_sub(1) };
        // The copies go out while the local log flush (if any) runs; the local copy counts
        // only once it is durable.
        let (local, remote) = tokio::join!(
            local_sync.wait(),
            self.replicate(&ring, &pref, &request.key, &state, needed, deadline)
        );
        local?;
        let mut acks = 1 + remote?;
        if ack_early {
            acks = usize::from(request.w);
        }
        if acks < usize::from(request.w) {
            return Err(RequestError::QuorumNotMet {
                op: "write",
                replied: acks,
                needed: request.w,
                timeout_ms: request.timeout.as_millis() as u64,
                detail: String::new(),
            });
        }
        Ok(WriteOutcome {
            context: Bytes::from(state.context().encode()),
            acks,
        })
    }

    /// Sends `state` to the other replicas (or stand-ins) and waits for `needed` of them.
    async fn replicate(
        &self,
        ring: &Ring,
        pref: &PreferenceList,
        key: &Key,
        state: &KeyState,
        needed: u8,
        deadline: Instant,
    ) -> Result<usize, RequestError> {
        let targets: Vec<NodeId> = pref.iter().filter(|n| *n != self.core.me()).cloned().collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let membership = &self.core.membership;
        let fallbacks: VecDeque<NodeId> = ring
            .fallbacks(key.position(), self.core.config.replicas)
            .filter(|n| membership.is_alive(n))
            .cloned()
            .collect();
        let fallbacks = Arc::new(Mutex::new(fallbacks));
        let encoded = Bytes::from(record::encode(state));
        let (tx, mut rx) = mpsc::channel::<bool>(targets.len());
        for target in targets {
            let (tx, this, fallbacks) = (tx.clone(), self.clone(), Arc::clone(&fallbacks));
            let (key, state, encoded) = (key.clone(), state.clone(), encoded.clone());
            // Each copy runs to completion even after the client has its answer, bounded
            // by the replica timeout.
            let replica_deadline = Instant::now() + self.core.config.request_timeout;
            tokio::spawn(async move {
                let stored = this
                    .store_copy_or_hint(&target, &key, &state, &encoded, &fallbacks, replica_deadline)
                    .await;
                let _ = tx.send(stored).await;
            });
        }
        drop(tx);
        let mut acks = 0usize;
        while acks < usize::from(needed) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(true)) => acks += 1,
                Ok(Some(false)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Ok(acks)
    }

    /// Stores a copy on `target`, or on a stand-in with a hint for it. Returns whether a
    /// copy that counts towards W was stored.
    async fn store_copy_or_hint(
        &self,
        target: &NodeId,
        key: &Key,
        state: &KeyState,
        encoded: &Bytes,
        fallbacks: &Mutex<VecDeque<NodeId>>,
        deadline: Instant,
    ) -> bool {
        if self.core.membership.is_alive(target)
            && self
                .store_copy(target, key, state, encoded, None, deadline)
                .await
                .is_ok()
        {
            return true;
        }
        if !self.core.config.hinted_handoff {
            // Hints disabled: the replica catches up through anti-entropy instead.
            return false;
        }
        loop {
            let next = fallbacks.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(stand_in) = next else { break };
            if self
                .store_copy(&stand_in, key, state, encoded, Some(target), deadline)
                .await
                .is_ok()
            {
                self.core.metrics.hinted_writes.inc();
                return true;
            }
        }
        // No stand-in took it: keep the hint here so the write still reaches its home.
        // It does not count towards W: this node already holds a copy.
        if let Err(e) = self
            .core
            .store
            .put_hint(target.clone(), key.clone(), state.clone())
            .await
        {
            tracing::error!(%target, ?key, error = %e, "could not store a hint");
        }
        false
    }

    /// Sends one state to one node (to its store, or its hint store for `hint_for`).
    async fn store_copy(
        &self,
        node: &NodeId,
        key: &Key,
        state: &KeyState,
        encoded: &Bytes,
        hint_for: Option<&NodeId>,
        deadline: Instant,
    ) -> Result<(), String> {
        if node == self.core.me() {
            let result = match hint_for {
                Some(target) => {
                    self.core
                        .store
                        .put_hint(target.clone(), key.clone(), state.clone())
                        .await
                }
                None => self.core.store.merge(key.clone(), state.clone()).await.map(|_| ()),
            };
            return result.map_err(|e| e.to_string());
        }
        let address = self.core.membership.address(node).ok_or("no address")?;
        let batcher = self.core.peers.batcher(node, address);
        let request = proto::ReplicaMergeRequest {
            key: key.bytes().clone(),
            state: encoded.clone(),
            hint_for: hint_for.map(|t| t.to_string()).unwrap_or_default(),
        };
        match batcher.merge(request, deadline).await {
            Ok(()) => {
                self.core.membership.report(node, true);
                Ok(())
            }
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                self.core.metrics.replica_rpc_errors.inc();
                self.core.membership.report(node, false);
                Err("timed out".to_owned())
            }
            Err(status) => {
                self.replica_failed(node, &status);
                Err(status.message().to_owned())
            }
        }
    }

    /// Hands a write to the first reachable replica of its key.
    async fn forward(&self, pref: &PreferenceList, request: WriteRequest) -> Result<WriteOutcome, RequestError> {
        let deadline = Instant::now() + request.timeout;
        let membership = &self.core.membership;
        // Live replicas first, then the others in case the failure detector is wrong.
        let mut order: Vec<&NodeId> = pref.iter().filter(|n| membership.is_alive(n)).collect();
        order.extend(pref.iter().filter(|n| !membership.is_alive(n)));
        let mut tried = Vec::new();
        for node in order {
            tried.push(node.to_string());
            let Some(address) = membership.address(node) else {
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let mut client = self.core.peers.kv(node, address);
            let timeout_ms = remaining.as_millis().max(1) as u32;
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
                            (ok.context, ok.replicas_acked)
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
                    tokio::time::timeout_at(deadline, client.delete(delete))
                        .await
                        .map(|r| r.map(|ok| (Bytes::new(), ok.into_inner().replicas_acked)))
                }
            };
            match answer {
                Ok(Ok((context, acks))) => {
                    membership.report(node, true);
                    return Ok(WriteOutcome {
                        context,
                        acks: acks as usize,
                    });
                }
                // Unreachable: try the next replica. Any other answer is the replica's
                // verdict on the write and goes back to the client as it is.
                Ok(Err(status)) if status.code() == tonic::Code::Unavailable && is_transport_failure(&status) => {
                    self.replica_failed(node, &status);
                }
                Ok(Err(status)) => return Err(RequestError::Remote(status)),
                Err(_) => break,
            }
        }
        Err(RequestError::NoReplicaReachable {
            tried: tried.join(", "),
        })
    }
}

/// The peers a read asks, in the order it asks them: live peers first, starting after this
/// node's place in the preference list (or, when it holds no copy, at a place derived from
/// its id), so that the coordinators of one key send their reads to different replicas;
/// then the peers believed down, in case the failure detector is wrong.
fn peer_read_order(pref: &[NodeId], me: &NodeId, alive: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
    let nodes = pref;
    if nodes.is_empty() {
        return Vec::new();
    }
    let start = match nodes.iter().position(|n| n == me) {
        Some(mine) => mine + 1,
        None => {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(me.as_str(), &mut hasher);
            (std::hash::Hasher::finish(&hasher) % nodes.len() as u64) as usize
        }
    };
    let peers = nodes[start..]
        .iter()
        .chain(&nodes[..start])
        .filter(|n| *n != me)
        .cloned();
    let (mut order, down): (Vec<NodeId>, Vec<NodeId>) = peers.partition(|n| alive(n));
    order.extend(down);
    debug_assert_eq!(order.len(), nodes.len() - usize::from(nodes.contains(me)));
    order
}

/// Whether an UNAVAILABLE status came from the connection rather than from the peer's
/// own answer (which always carries our error text).
fn is_transport_failure(status: &tonic::Status) -> bool {
    !status.message().contains("quorum not met") && !status.message().contains("no replica of the key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::try_from(*n).expect("valid id")).collect()
    }

    #[test]
    fn reads_start_after_the_coordinators_place_so_coordinators_spread_them() {
        let pref = ids(&["a", "b", "c"]);
        let all_alive = |_: &NodeId| true;
        assert_eq!(peer_read_order(&pref, &pref[0], all_alive), ids(&["b", "c"]));
        assert_eq!(peer_read_order(&pref, &pref[1], all_alive), ids(&["c", "a"]));
        assert_eq!(peer_read_order(&pref, &pref[2], all_alive), ids(&["a", "b"]));
        // The first peer each coordinator asks is a different replica.
        let firsts: Vec<NodeId> = pref
            .iter()
            .map(|me| peer_read_order(&pref, me, all_alive)[0].clone())
            .collect();
        assert_eq!(firsts, ids(&["b", "c", "a"]));
    }

    #[test]
    fn peers_believed_down_come_last_and_nobody_is_left_out() {
        let pref = ids(&["a", "b", "c", "d"]);
        let down = ids(&["c"]);
        let order = peer_read_order(&pref, &pref[0], |n| !down.contains(n));
        assert_eq!(order, ids(&["b", "d", "c"]));
    }

    #[test]
    fn a_coordinator_without_a_copy_asks_every_replica() {
        let pref = ids(&["a", "b", "c"]);
        let outsider = NodeId::try_from("z").expect("valid id");
        let mut order = peer_read_order(&pref, &outsider, |_| true);
        assert_eq!(order.len(), 3);
        order.sort();
        assert_eq!(order, pref);
        assert!(peer_read_order(&[], &outsider, |_| true).is_empty());
    }
}
