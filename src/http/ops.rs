//! What operators and orchestrators read: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::Json;
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

/// Whether this node should get new calls: not while shutting down, not
/// while its data directory is full, and not with a media worker dead (its
/// calls are lost; placement skips it, but the node needs attention).
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.is_accepting() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if !state.store.has_space() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "data directory full: {}\n",
                state.config.storage.data_dir.display()
            ),
        )
            .into_response();
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

/// `GET /v1/cluster/nodes`: the live nodes of the fleet with their load and
/// state, as this node sees them (this node alone when it runs alone).
pub async fn cluster_nodes(State(state): State<Arc<AppState>>) -> Response {
    let nodes = match &state.cluster {
        Some(cluster) => {
            let mut nodes = cluster.nodes();
            // This node's own line is fresh, not its last heartbeat.
            let me = state.node_status(cluster.node_id(), cluster.url());
            match nodes.iter_mut().find(|n| n.this_node) {
                Some(n) => {
                    n.status = me;
                    n.last_seen_ms = 0;
                    n.state = if n.status.draining {
                        "draining"
                    } else {
                        "ready"
                    };
                }
                None => nodes.insert(
                    0,
                    crate::cluster::NodeView {
                        state: if me.draining { "draining" } else { "ready" },
                        status: me,
                        last_seen_ms: 0,
                        this_node: true,
                    },
                ),
            }
            nodes
        }
        None => {
            let me = state.node_status(&state.node_id, &state.advertised_url);
            vec![crate::cluster::NodeView {
                state: if me.draining { "draining" } else { "ready" },
                status: me,
                last_seen_ms: 0,
                this_node: true,
            }]
        }
    };
    let connected = state.cluster.as_ref().map(|c| c.is_connected());
    Json(serde_json::json!({
        "clustered": state.cluster.is_some(),
        "nats_connected": connected,
        "nodes": nodes,
    }))
    .into_response()
}

/// `POST /v1/admin/drain`: this node stops taking new calls (`/readyz`
/// fails, placement skips it); its calls go on until they end or
/// `cluster.drain_timeout` passes, then it ends what is left and exits.
/// Answers 202 with the calls still in progress; again, the same.
pub async fn drain(State(state): State<Arc<AppState>>) -> Response {
    let started = state.start_drain("api");
    let calls = state.registry.call_count();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "draining": true,
            "started_now": started,
            "calls_in_progress": calls,
            "drain_timeout_seconds": state.config.cluster.drain_timeout,
        })),
    )
        .into_response()
}
