//! The node's Prometheus metrics.
//!
//! One [`Metrics`] value per node owns a registry; the admin HTTP server renders it in
//! the Prometheus text format. Label sets are small and fixed (operation and outcome),
//! so the number of series is bounded whatever the traffic.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A client operation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Op {
    /// Get.
    Get,
    /// Put.
    Put,
    /// Delete.
    Delete,
}

/// How a client operation ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// Answered with success.
    Ok,
    /// Refused as bad input.
    Invalid,
    /// Not enough replicas answered in time.
    Unavailable,
    /// Anything else.
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcome {
    op: Op,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: Op,
}

/// Counters, gauges and histograms of one node.
pub struct Metrics {
    registry: Registry,
    requests: Family<OpOutcome, Counter>,
    latency: Family<OpLabel, Histogram>,
    /// Hints this node holds for other nodes.
    pub hints_pending: Gauge,
    /// Hints delivered to their target and deleted.
    pub hints_delivered: Counter,
    /// Hints whose target left or was removed, moved to their keys' current replicas.
    pub hints_rehomed: Counter,
    /// Replica requests refused because their sender was removed from the cluster.
    pub removed_sender_refused: Counter,
    /// Hybrid timestamps in replica states not followed: more than `clock_skew_max`
    /// ahead of this node's clock.
    pub hlc_ahead_refused: Counter,
    /// Keys whose expiry or purge waited because a holder's clock was more than
    /// `clock_skew_max` from this node's.
    pub gc_clock_skew_refused: Counter,
    /// Writes stored on a fallback node with a hint.
    pub hinted_writes: Counter,
    /// Replicas sent a merged state after a read found them stale.
    pub read_repairs: Counter,
    /// Reads that asked more replicas than R because one was slow or failed.
    pub read_hedges: Counter,
    /// Replica RPCs that failed (transport error, timeout or error status).
    pub replica_rpc_errors: Counter,
    /// Batched replica calls (`Apply`) this node served.
    pub replica_batches: Counter,
    /// Reads and merges those calls carried (over `replica_batches`: the mean batch).
    pub replica_batched_ops: Counter,
    /// Keys read with more than `SIBLINGS_WARN` live siblings.
    pub sibling_explosions: Counter,
    /// Anti-entropy exchanges completed.
    pub anti_entropy_exchanges: Counter,
    /// Keys repaired by anti-entropy (on either side).
    pub anti_entropy_keys_repaired: Counter,
    /// Protobuf bytes sent and received by anti-entropy.
    pub anti_entropy_bytes: Counter,
    /// Seconds the last hash-tree rebuild at start took.
    pub anti_entropy_rebuild_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Tombstones purged from every replica.
    pub tombstones_purged: Counter,
    /// Keys received by range transfer (join).
    pub transfer_keys_received: Counter,
    /// Keys handed to their new owners and dropped here.
    pub transfer_keys_handed_off: Counter,
    /// Keys stored here that still have to move to their owners.
    pub transfers_pending: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringkv");
        let requests = Family::<OpOutcome, Counter>::default();
        registry.register("requests", "Client requests by operation and outcome", requests.clone());
        let latency = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Client request latency by operation",
            latency.clone(),
        );
        let hints_pending = Gauge::default();
        registry.register("hints_pending", "Hints held for other nodes", hints_pending.clone());
        let hints_delivered = Counter::default();
        registry.register(
            "hints_delivered",
            "Hints handed off and deleted",
            hints_delivered.clone(),
        );
        let hints_rehomed = Counter::default();
        registry.register(
            "hints_rehomed",
            "Hints for a node that is no longer a member, moved to the keys' current replicas",
            hints_rehomed.clone(),
        );
        let removed_sender_refused = Counter::default();
        registry.register(
            "removed_sender_refused",
            "Replica requests refused because the sending node was removed from the cluster",
            removed_sender_refused.clone(),
        );
        let hlc_ahead_refused = Counter::default();
        registry.register(
            "hlc_ahead_refused",
            "Hybrid timestamps not followed because they were more than clock_skew_max ahead",
            hlc_ahead_refused.clone(),
        );
        let gc_clock_skew_refused = Counter::default();
        registry.register(
            "gc_clock_skew_refused",
            "Keys whose expiry or purge waited because a holder's clock differed by more than clock_skew_max",
            gc_clock_skew_refused.clone(),
        );
        let hinted_writes = Counter::default();
        registry.register(
            "hinted_writes",
            "Writes stored on a fallback with a hint",
            hinted_writes.clone(),
        );
        let read_repairs = Counter::default();
        registry.register(
            "read_repairs",
            "Stale replicas repaired after a read",
            read_repairs.clone(),
        );
        let read_hedges = Counter::default();
        registry.register(
            "read_hedges",
            "Reads that asked further replicas after the first R were slow or failed",
            read_hedges.clone(),
        );
        let replica_batches = Counter::default();
        registry.register(
            "replica_batches",
            "Batched replica calls served (reads and merges sent together by a coordinator)",
            replica_batches.clone(),
        );
        let replica_batched_ops = Counter::default();
        registry.register(
            "replica_batched_ops",
            "Replica reads and merges received in batched calls",
            replica_batched_ops.clone(),
        );
        let replica_rpc_errors = Counter::default();
        registry.register(
            "replica_rpc_errors",
            "Failed RPCs to other replicas",
            replica_rpc_errors.clone(),
        );
        let sibling_explosions = Counter::default();
        registry.register(
            "sibling_warnings",
            "Reads that found more siblings than the warning level",
            sibling_explosions.clone(),
        );
        let anti_entropy_exchanges = Counter::default();
        registry.register(
            "anti_entropy_exchanges",
            "Anti-entropy exchanges completed",
            anti_entropy_exchanges.clone(),
        );
        let anti_entropy_keys_repaired = Counter::default();
        registry.register(
            "anti_entropy_keys_repaired",
            "Keys repaired by anti-entropy",
            anti_entropy_keys_repaired.clone(),
        );
        let anti_entropy_bytes = Counter::default();
        registry.register(
            "anti_entropy_bytes",
            "Bytes exchanged by anti-entropy",
            anti_entropy_bytes.clone(),
        );
        let anti_entropy_rebuild_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "anti_entropy_rebuild_seconds",
            "Time the hash-tree rebuild at start took",
            anti_entropy_rebuild_seconds.clone(),
        );
        let tombstones_purged = Counter::default();
        registry.register(
            "tombstones_purged",
            "Tombstones purged from every replica",
            tombstones_purged.clone(),
        );
        let transfer_keys_received = Counter::default();
        registry.register(
            "transfer_keys_received",
            "Keys received by range transfer",
            transfer_keys_received.clone(),
        );
        let transfer_keys_handed_off = Counter::default();
        registry.register(
            "transfer_keys_handed_off",
            "Keys handed to new owners and dropped",
            transfer_keys_handed_off.clone(),
        );
        let transfers_pending = Gauge::default();
        registry.register(
            "transfers_pending",
            "Keys stored here that still have to move",
            transfers_pending.clone(),
        );
        Metrics {
            registry,
            transfer_keys_received,
            transfer_keys_handed_off,
            transfers_pending,
            anti_entropy_exchanges,
            anti_entropy_keys_repaired,
            anti_entropy_bytes,
            anti_entropy_rebuild_seconds,
            tombstones_purged,
            requests,
            latency,
            hints_pending,
            hints_delivered,
            hints_rehomed,
            removed_sender_refused,
            hlc_ahead_refused,
            gc_clock_skew_refused,
            hinted_writes,
            read_repairs,
            read_hedges,
            replica_rpc_errors,
            replica_batches,
            replica_batched_ops,
            sibling_explosions,
        }
    }

    /// Records one finished client request.
    pub fn observe_request(&self, op: Op, outcome: Outcome, seconds: f64) {
        self.requests.get_or_create(&OpOutcome { op, outcome }).inc();
        self.latency.get_or_create(&OpLabel { op }).observe(seconds);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_observed_requests() {
        let metrics = Metrics::new();
        metrics.observe_request(Op::Put, Outcome::Ok, 0.001);
        metrics.read_repairs.inc();
        let text = metrics.render();
        assert!(
            text.contains("ringkv_requests_total{op=\"Put\",outcome=\"Ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("ringkv_read_repairs_total 1"), "{text}");
        assert!(text.contains("ringkv_request_duration_seconds_bucket"), "{text}");
    }
}
