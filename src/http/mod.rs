//! The HTTP surface: WHIP signaling, the `/v1` API, metrics and health.
//!
//! One module per resource; what they share is here and in [`auth`] (one
//! bearer-token layer over every API route), [`extract`] (typed path and
//! body extractors) and [`problem`] (every error as problem+json).

pub mod auth;
pub mod calls;
pub mod consent;
pub mod extract;
pub mod meetings;
pub mod native;
pub mod ops;
pub mod problem;
pub mod review;
pub mod shares;
pub mod transcripts;
pub mod whip;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hearken_core::ids::CallId;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::media::{AskError, Command, Reply};
use crate::server::AppState;
pub use problem::{Problem, ProblemType};

/// Largest request body accepted (an SDP offer with many m-lines fits easily).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/whip/{call_id}", post(whip::create).options(whip::options))
        .route(
            "/whip/{call_id}/{session}",
            axum::routing::delete(whip::delete).patch(whip::patch),
        )
        .route("/v1/calls", get(calls::list))
        .route("/v1/calls/{call_id}", get(calls::get))
        .route("/v1/calls/{call_id}/end", post(calls::end))
        .route(
            "/v1/calls/{call_id}/native",
            post(native::post)
                .patch(native::patch)
                .delete(native::delete),
        )
        .route(
            "/v1/calls/{call_id}/participants/{participant_id}",
            put(consent::put_participant),
        )
        .route(
            "/v1/calls/{call_id}/participants/{participant_id}/consent",
            post(consent::post_consent),
        )
        .route(
            "/v1/calls/{call_id}/participants/{participant_id}/notice",
            post(consent::post_notice),
        )
        .route("/v1/calls/{call_id}/consent", get(consent::get_log))
        .route("/v1/calls/{call_id}/transcript", get(transcripts::get))
        .route(
            "/v1/calls/{call_id}/transcript/live",
            get(transcripts::live),
        )
        .route("/v1/calls/{call_id}/insights", get(review::insights))
        .route(
            "/v1/calls/{call_id}/shares",
            post(shares::create).get(shares::list),
        )
        .route(
            "/v1/calls/{call_id}/shares/{share_id}",
            axum::routing::delete(shares::revoke),
        )
        .route("/v1/meetings", post(meetings::post).get(meetings::list))
        .route("/v1/cluster/nodes", get(ops::cluster_nodes))
        .route("/v1/admin/drain", post(ops::drain))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    // A bearer token or a share link (checked by the handlers), and the
    // pages, which hold no data of their own.
    let mut router = api
        .route("/v1/calls/{call_id}/review", get(review::review))
        .route("/v1/calls/{call_id}/audio/{name}", get(review::audio))
        .route("/calls", get(review::calls_page))
        .route("/calls/{call_id}", get(review::review_page))
        .route("/assets/{name}", get(review::asset))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ));
    if let Some(cors) = cors_layer(&state.config.http.cors_allowed_origins) {
        router = router.layer(cors);
    }
    // Outermost, so CORS preflight answers (which never reach the router)
    // still advertise what a WHIP POST takes.
    router
        .layer(middleware::from_fn(advertise_accept_post))
        .with_state(state)
}

/// 503 for a new session while the node shuts down (counted).
pub(crate) fn refuse_shutting_down(state: &AppState) -> Problem {
    refuse_leaving(state, "this node is shutting down")
}

/// 503 for a new call while the node drains (counted as shutting down).
pub(crate) fn refuse_draining(state: &AppState) -> Problem {
    refuse_leaving(
        state,
        "this node is draining: it finishes its calls and takes no new ones",
    )
}

/// 503 `shutting-down` with `detail`, counted.
fn refuse_leaving(state: &AppState, detail: &str) -> Problem {
    state
        .metrics
        .admission_rejected
        .with_label_values(&["shutting_down"])
        .inc();
    Problem::unavailable(
        ProblemType::ShuttingDown,
        detail,
        state.config.limits.retry_after_secs,
    )
}

/// 503 for a new session the registry could not place (counted): no
/// worker runs, or the node carries `limits.max_sessions`.
/// A new session is refused while the data directory is full (capture of
/// every call has stopped; see `Store::is_full`): 507 with `Retry-After`.
pub(crate) fn refuse_storage_full(state: &AppState) -> Result<(), Problem> {
    if state.store.has_space() {
        return Ok(());
    }
    state
        .metrics
        .admission_rejected
        .with_label_values(&["storage_full"])
        .inc();
    Err(Problem::unavailable(
        ProblemType::StorageFull,
        format!(
            "the data directory {} is full: no call can be recorded until space is freed",
            state.config.storage.data_dir.display()
        ),
        state.config.limits.retry_after_secs,
    ))
}

pub(crate) fn refuse_node_full(state: &AppState) -> Problem {
    state
        .metrics
        .admission_rejected
        .with_label_values(&["node_full"])
        .inc();
    let detail = if state.least_loaded_worker().is_none() {
        "no media worker is running on this node".to_owned()
    } else {
        format!(
            "this node carries its maximum of {} sessions",
            state.config.limits.max_sessions
        )
    };
    Problem::unavailable(
        ProblemType::NodeFull,
        detail,
        state.config.limits.retry_after_secs,
    )
}

/// Where a new session of a call goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// This node carries the call (or will).
    Here,
    /// Another node owns the call.
    Owner {
        /// Its base URL.
        url: String,
        /// Its SIP `host:port`, when it takes SIP.
        sip: Option<String>,
    },
}

/// Decides where a new session of `call_id` goes (WHIP, native, SIP): a call
/// this node carries stays here, even while it drains; a new call is placed
/// by the fleet when there is one (see [`crate::cluster`]), else taken here
/// unless the node drains.
pub(crate) async fn route_new_session(
    state: &AppState,
    call_id: &CallId,
    ingest: &str,
) -> Result<Route, Problem> {
    if !state.is_accepting() {
        return Err(refuse_shutting_down(state));
    }
    if state.registry.call_worker(call_id).is_some() {
        return Ok(Route::Here);
    }
    let Some(cluster) = &state.cluster else {
        if state.is_draining() {
            return Err(refuse_draining(state));
        }
        resume_if_begun_elsewhere(state, call_id).await?;
        return Ok(Route::Here);
    };
    let local = crate::cluster::LocalLoad {
        calls: state.registry.call_count(),
        sessions: state.registry.session_count(),
        capacity: state.config.limits.max_sessions,
        draining: state.is_draining(),
    };
    let retry = state.config.limits.retry_after_secs;
    match cluster.place(call_id, local).await {
        Ok(crate::cluster::Owner::Here) => {
            resume_if_begun_elsewhere(state, call_id).await?;
            Ok(Route::Here)
        }
        Ok(crate::cluster::Owner::There { url, sip, .. }) => {
            state
                .metrics
                .cluster_redirects
                .with_label_values(&[ingest])
                .inc();
            Ok(Route::Owner { url, sip })
        }
        Err(e) => Err(Problem::unavailable(
            ProblemType::ClusterUnavailable,
            e.to_string(),
            retry,
        )),
    }
}

/// Before a call this node does not carry starts here: with a fleet
/// index, a call that has ended anywhere in the fleet is refused (409), and
/// a call that began on a node since lost goes on from what that node wrote
/// (see [`crate::cluster::resume`]). The index must answer: without it,
/// this node cannot tell a new call from one to go on with (503).
async fn resume_if_begun_elsewhere(state: &AppState, call_id: &CallId) -> Result<(), Problem> {
    let Some(index) = &state.index else {
        return Ok(());
    };
    let unavailable = |e: String| calls::index_unavailable(state, &e);
    let Some((summary, node, segments)) = index.resume_state(call_id).await.map_err(unavailable)?
    else {
        return Ok(());
    };
    if summary.ended_at.is_some() {
        return Err(call_ended(call_id));
    }
    if state.registry.call_worker(call_id).is_some() {
        return Ok(());
    }
    let lines = index.audit_lines(call_id).await.map_err(unavailable)?;
    let started_at = summary.started_at.unwrap_or_else(chrono::Utc::now);
    let inputs = crate::cluster::resume::inputs_from_audit(&lines, started_at);
    // The lost node is listed even when it had recorded nothing yet: the
    // call's record says where it was.
    let mut segments = segments;
    if segments.last().is_none_or(|s| s.node != node) {
        segments.push(hearken_core::conference::SegmentSummary {
            node: node.clone(),
            files: Vec::new(),
        });
    }
    let store = state.store.clone();
    let id = call_id.clone();
    let audit_lines = lines.len();
    tokio::task::spawn_blocking(move || store.prepare_resume(&id, &lines, segments))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    tracing::info!(
        call = %call_id,
        from = %node,
        %started_at,
        audit_lines,
        inputs = inputs.len(),
        "going on with a call begun on a node that was lost"
    );
    state.registry.set_resume(
        call_id,
        std::sync::Arc::new(crate::media::Resume {
            started_at,
            from_node: node,
            inputs,
        }),
    );
    Ok(())
}

/// A `307 Temporary Redirect` to `location` (RFC 9725 §4.5 lets a WHIP
/// endpoint redirect; the client posts the same body there).
pub(crate) fn redirect(location: &str) -> Result<Response, Problem> {
    let value = HeaderValue::from_str(location)
        .map_err(|_| Problem::internal(format!("unusable redirect target {location:?}")))?;
    let mut response = axum::http::StatusCode::TEMPORARY_REDIRECT.into_response();
    response.headers_mut().insert(header::LOCATION, value);
    Ok(response)
}

/// 409 for a session of a call that has ended.
pub(crate) fn call_ended(call_id: &CallId) -> Problem {
    Problem::new(
        ProblemType::CallEnded,
        format!("call {call_id} has ended; its recordings are final. Use a new call id."),
    )
}

/// Sends `command` to the worker that carries `call_id` and waits at most
/// `limit` for its reply. `Ok(None)`: no worker carries the call.
pub(crate) async fn ask_call_worker(
    state: &AppState,
    call_id: &CallId,
    command: Command,
    limit: Duration,
) -> Result<Option<Reply>, Problem> {
    let Some(worker) = state.registry.call_worker(call_id) else {
        return Ok(None);
    };
    ask_worker(state, worker, command, limit).await.map(Some)
}

/// Sends `command` to worker `worker`; a worker that is gone, overloaded or
/// silent is a 503, never a "not found".
pub(crate) async fn ask_worker(
    state: &AppState,
    worker: usize,
    command: Command,
    limit: Duration,
) -> Result<Reply, Problem> {
    let Some(handle) = state.workers.get(worker) else {
        return Err(Problem::internal(format!("no media worker {worker}")));
    };
    handle.ask(command, limit).await.map_err(|e| {
        let retry = state.config.limits.retry_after_secs;
        match e {
            AskError::Gone => Problem::unavailable(
                ProblemType::WorkerUnavailable,
                "the media worker carrying this call has stopped",
                retry,
            ),
            AskError::Busy | AskError::TimedOut => Problem::unavailable(
                ProblemType::WorkerBusy,
                format!("the media worker did not answer: {e}"),
                retry,
            ),
        }
    })
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::DELETE,
                Method::PATCH,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
            ])
            .expose_headers([
                header::LOCATION,
                header::ETAG,
                header::HeaderName::from_static("accept-post"),
                header::LINK,
            ]),
    )
}

/// Adds `Accept-Post: application/sdp` to `OPTIONS /whip/{call_id}`
/// (RFC 9725 §4.2), whoever answered it.
async fn advertise_accept_post(request: Request, next: Next) -> Response {
    let is_whip_endpoint = request.method() == Method::OPTIONS
        && request
            .uri()
            .path()
            .strip_prefix("/whip/")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
    let mut response = next.run(request).await;
    if is_whip_endpoint {
        response
            .headers_mut()
            .insert("accept-post", HeaderValue::from_static("application/sdp"));
    }
    response
}

/// Counts every answered request by route template, method and status.
async fn count_requests(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let method = match method.as_str() {
        "GET" | "POST" | "DELETE" | "PATCH" | "OPTIONS" | "HEAD" | "PUT" => method,
        _ => "other".to_owned(),
    };
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, &method, response.status().as_str()])
        .inc();
    response
}
