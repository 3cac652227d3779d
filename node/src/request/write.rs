//! Writes (puts and deletes) on a replica of their key.
//!
//! [`Coordinator::write`] sends a write that reaches a node outside the key's preference
//! list on to a replica ([`super::forward`]). On a replica it orders the write: applies it
//! to this node's store under the key's lock, which assigns its dot from the node's
//! leased counter sequence (`crate::identity`), then sends the resulting state to the other N−1 replicas
//! as one [`QuorumCall`] and answers once W copies (this one included) are stored. A
//! replica that is down or fails is replaced by the next live node after the preference
//! list, which keeps the copy as a *hint* for it (sloppy quorum). Copies still out when
//! W answered go on in the background, and so do they when the request is dropped
//! before that ([`Copies`]); a replica that no stand-in could take gets a hint kept here,
//! so the write still reaches its home.

use std::sync::Arc;

use bytes::Bytes;
use ringkv_ring::{NodeId, PreferenceList, Ring};
use ringkv_storage::injected_bug::{self, Bug};
use ringkv_storage::{record, Key, KeyState, VersionVector, Write};
use tokio::time::Instant;

use super::{preference_list, Coordinator, RequestError, WriteOutcome, WriteRequest};
use crate::node_core::NodeCore;
use crate::replica::quorum::{QuorumCall, Slot};
use crate::replica::{Replica, ReplicaError};
use crate::store::StoreError;

impl Coordinator {
    /// Writes (or deletes) through a replica of the key.
    pub async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, RequestError> {
        let core = &self.core;
        let ring = core.membership.ring();
        let pref = preference_list(&ring, &request.key, core.config.replicas)?;
        if !pref.contains(core.me()) {
            if request.forwarded {
                return Err(RequestError::NotReplica {
                    node: core.me().clone(),
                });
            }
            return self.forward(&pref, request).await;
        }
        let deadline = Instant::now() + request.timeout;
        let hlc = core.clock.hlc_now();
        // The TTL is within TTL_MAX (checked at the boundary), so this cannot saturate
        // before the year 584 million.
        let expires_at_ms = request
            .ttl
            .map(|ttl| core.clock.wall_ms().saturating_add(ttl.as_millis() as u64));
        core.dots.check_context(&request.context)?;
        let context = if injected_bug::active(Bug::PutIgnoresContext) {
            VersionVector::new()
        } else {
            request.context.clone()
        };
        let value = request.value.clone();
        let issuer = Arc::clone(core);
        let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refused_in = Arc::clone(&refused);
        let (state, local_sync) = core
            .store
            .update_then_sync(request.key.clone(), move |s| {
                let dot = issuer.dots.put(
                    s,
                    &context,
                    Write {
                        value: value.clone(),
                        hlc,
                        expires_at_ms,
                    },
                );
                refused_in.store(dot.is_none(), std::sync::atomic::Ordering::Release);
            })
            .await?;
        if refused.load(std::sync::atomic::Ordering::Acquire) {
            return Err(RequestError::Store(StoreError::CountersExhausted));
        }
        // With the injected bug the copies still go out, but nobody waits for them.
        let ack_early = injected_bug::active(Bug::AckBeforeQuorum);
        let needed = if ack_early { 0 } else { request.w.saturating_sub(1) };
        // The copies go out while the local log flush (if any) runs; the local copy counts
        // only once it is durable.
        let (local, remote) = tokio::join!(
            local_sync.wait(),
            self.replicate(&ring, &pref, &request.key, &state, usize::from(needed), deadline)
        );
        local?;
        let (remote, hinted) = remote;
        let mut acks = 1 + remote;
        if ack_early {
            acks = usize::from(request.w);
        }
        if acks < usize::from(request.w) {
            return Err(RequestError::QuorumNotMet {
                op: "write",
                replied: acks,
                needed: request.w,
                timeout_ms: request.timeout.as_millis() as u64,
                first_failure: None,
            });
        }
        Ok(WriteOutcome {
            context: Bytes::from(state.context().encode()),
            acks,
            hinted: hinted.min(acks),
        })
    }

    /// Sends `state` to the other replicas (or stand-ins) and waits until `needed` of them
    /// stored it or `deadline` passed; returns how many did, and how many of those were
    /// stand-ins keeping a hint.
    async fn replicate(
        &self,
        ring: &Ring,
        pref: &PreferenceList,
        key: &Key,
        state: &KeyState,
        needed: usize,
        deadline: Instant,
    ) -> (usize, usize) {
        let core = &self.core;
        let targets: Vec<NodeId> = pref.iter().filter(|n| *n != core.me()).cloned().collect();
        if targets.is_empty() {
            return (0, 0);
        }
        // Without hinted hand-off a failed replica catches up through anti-entropy instead.
        let stand_ins: Vec<NodeId> = if core.config.hinted_handoff {
            ring.fallbacks(key.position(), core.config.replicas)
                .filter(|n| core.membership.is_alive(n))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let encoded = Bytes::from(record::encode(state));
        // Each copy runs to completion even after the client has its answer, bounded by
        // the replica timeout.
        let copy_deadline = Instant::now() + core.config.request_timeout;
        let (copying, copied_key, copied_state) = (Arc::clone(core), key.clone(), state.clone());
        let hinted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hinted_in = Arc::clone(&hinted);
        let copies: QuorumCall<(), ReplicaError> = QuorumCall::start(targets, stand_ins, move |slot: &Slot| {
            let replica = Replica::new(&copying, slot.node.clone());
            let (key, state, encoded, core) = (
                copied_key.clone(),
                copied_state.clone(),
                encoded.clone(),
                Arc::clone(&copying),
            );
            let hint_for = slot.stands_in_for.clone();
            let hinted = Arc::clone(&hinted_in);
            Box::pin(async move {
                replica
                    .merge(&key, &state, &encoded, hint_for.as_ref(), copy_deadline)
                    .await?;
                if hint_for.is_some() {
                    core.metrics.hinted_writes.inc();
                    hinted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            })
        });
        let mut copies = Copies {
            call: Some(copies),
            core: Arc::clone(core),
            key: key.clone(),
            state: state.clone(),
            copy_deadline,
        };
        let acks = copies.wait_for(needed, deadline).await;
        // Stand-ins that answered by now; one finishing between the two reads may be
        // counted although it was not among the first `acks`, so bound it.
        let hinted = hinted.load(std::sync::atomic::Ordering::Relaxed).min(acks);
        copies.finish_in_background().await;
        (acks, hinted)
    }
}

/// A write's copies to the other replicas, polled by the request until W answered, then
/// finished in the background. If the request is dropped first (the client hung up, or a
/// forwarding node gave up on it), dropping this hands the copies still out to the
/// background: they must land, and a copy nobody took must still leave a hint here.
struct Copies {
    call: Option<QuorumCall<(), ReplicaError>>,
    core: Arc<NodeCore>,
    key: Key,
    state: KeyState,
    copy_deadline: Instant,
}

impl Copies {
    async fn wait_for(&mut self, needed: usize, deadline: Instant) -> usize {
        match self.call.as_mut() {
            Some(call) => call.wait_for(needed, None, deadline).await,
            None => 0,
        }
    }

    /// Finishes the copies still out (and keeps hints for the ones nobody took) in the
    /// node's background pool, waiting for room there first. The copies stay here while
    /// it waits, so a request dropped meanwhile still hands them over (see `Drop`).
    async fn finish_in_background(mut self) {
        if !self.has_work() {
            self.call = None;
            return;
        }
        let room = self.core.background.room().await;
        if let Some(work) = self.finishing() {
            room.spawn(work);
        }
    }

    /// Whether copies are still out, or failed and need a hint.
    fn has_work(&self) -> bool {
        self.call
            .as_ref()
            .is_some_and(|call| call.outstanding() > 0 || call.failures_count() > 0)
    }

    /// The work that finishes the copies, if any is left.
    fn finishing(&mut self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if !self.has_work() {
            return None;
        }
        let call = self.call.take()?;
        let (core, key, state, copy_deadline) = (
            Arc::clone(&self.core),
            self.key.clone(),
            self.state.clone(),
            self.copy_deadline,
        );
        Some(async move {
            let finished = call.finish(copy_deadline).await;
            if !core.config.hinted_handoff {
                return;
            }
            // No stand-in took these copies (or none answered in time): keep a hint here
            // so the write still reaches its home. It does not count towards W: this node
            // already holds a copy.
            let lost = finished
                .failures
                .into_iter()
                .map(|(slot, _)| slot)
                .chain(finished.unanswered);
            for slot in lost {
                let target = slot.stands_in_for.unwrap_or(slot.node);
                if let Err(e) = core.store.put_hint(target.clone(), key.clone(), state.clone()).await {
                    tracing::error!(%target, ?key, error = %e, "could not store a hint");
                }
            }
        })
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        // Only when the request was dropped mid-wait: the normal path took the call.
        if let Some(work) = self.finishing() {
            self.core.background.spawn_detached(work);
        }
    }
}
