//! What operators and orchestrators read: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::AppState;

/// Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Whether this node should get new calls: not while shutting down, and
/// not with a media worker dead (its calls are lost; placement skips it,
/// but the node needs attention).
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.is_accepting() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let failed = state.failed_workers();
    if !failed.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("media workers stopped: {failed:?}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}
