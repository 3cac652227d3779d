//! Hash trees follow the ring: a new ring means new segments, so the trees are rebuilt.

use std::sync::Arc;

use tokio::sync::watch;

use crate::node_core::NodeCore;
use crate::store::off_runtime;

/// Rebuilds the anti-entropy hash trees whenever the ring's tokens change, until shutdown.
pub(crate) async fn ring_watch_loop(core: Arc<NodeCore>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = core.membership.ring_changes();
    let mut current = core.membership.ring();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let ring = changes.borrow_and_update().clone();
        if ring.tokens().map(|(p, _)| p).eq(current.tokens().map(|(p, _)| p)) {
            current = ring;
            continue;
        }
        current = Arc::clone(&ring);
        let (index, engine) = (Arc::clone(core.store.index()), Arc::clone(core.store.engine()));
        let in_place = engine.runs_in_place();
        match off_runtime(in_place, move || index.rebuild_for_ring(engine.as_ref(), &ring)).await {
            Ok(Ok((keys, took))) => {
                core.metrics.anti_entropy_rebuild_seconds.set(took.as_secs_f64());
                tracing::info!(node = %core.me(), keys, seconds = took.as_secs_f64(), "hash trees rebuilt for a new ring");
            }
            Ok(Err(e)) => tracing::error!(error = %e, "hash tree rebuild failed"),
            Err(e) => tracing::error!(error = %e, "hash tree rebuild task failed"),
        }
    }
}
