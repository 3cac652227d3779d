//! The admin HTTP port: `/metrics` (Prometheus text format) and `/health`.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::node_core::NodeCore;

/// The admin routes over a node's shared state.
pub(super) fn router(core: Arc<NodeCore>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get({
                let core = Arc::clone(&core);
                move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        core.metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/health", get(move || async move { format!("ok {}\n", core.me()) }))
}
