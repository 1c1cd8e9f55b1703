//! WHIP (RFC 9725) signaling: `POST /whip/{call_id}` creates a session,
//! `DELETE` on its URL ends it, `PATCH` takes trickled candidates, `OPTIONS`
//! advertises `Accept-Post`.
//!
//! Hearken extends WHIP in two ways: an offer may carry several audio m-lines
//! (one speaker each, for gateways), and an audio m-line offered `sendrecv` is
//! answered `sendrecv` so the bot can speak into the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use tracing::{debug, info};

use crate::api::{require_bearer, wait_for};
use crate::core::ids::CallId;
use crate::core::offer::{OfferError, OfferSummary};
use crate::problem::Problem;
use crate::rtc::worker::{CreateSession, CreateSessionError, WorkerCommand};
use crate::server::{AppState, CallEntry, SessionEntry};
use crate::sinks::recorder::call_has_ended;

/// How long a worker may take to answer an offer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `DELETE` waits for the call's files to be final when it ended the call.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a call id from the URL, or answers 400.
pub fn parse_call_id(text: &str) -> Result<CallId, Problem> {
    CallId::parse(text).map_err(|e| Problem::bad_request("bad-call-id", e.to_string()))
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // ThreadRng is a CSPRNG (ChaCha, reseeded from the OS): session URLs are
    // unguessable as RFC 9725 §5 asks.
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /whip/{call_id}`: answer an offer with a new session.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let retry_after = state.config.limits.retry_after_secs;
    if !state.is_accepting() {
        state
            .metrics
            .admission_rejected
            .with_label_values(&["shutting_down"])
            .inc();
        return Err(Problem::unavailable(
            "shutting-down",
            "this node is shutting down",
            retry_after,
        ));
    }
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    if !content_type_is(&headers, "application/sdp") {
        return Err(Problem::unsupported_media_type("application/sdp"));
    }
    let sdp = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("malformed-sdp", "the offer is not UTF-8 text"))?;
    let summary = OfferSummary::scan(sdp).map_err(|e| match e {
        OfferError::NoUsableAudio => Problem::unprocessable("no-usable-audio", e.to_string()),
        _ => Problem::bad_request("malformed-sdp", e.to_string()),
    })?;
    summary
        .require_audio()
        .map_err(|e| Problem::unprocessable("no-usable-audio", e.to_string()))?;
    if let crate::meetings::Admission::Refuse(reason) = state.meetings.admit(&call_id) {
        return Err(Problem::forbidden("not-recorded", reason));
    }
    if call_has_ended(&state.config.storage.data_dir, &call_id) {
        return Err(Problem::conflict(
            "call-ended",
            format!("call {call_id} has ended; its recordings are final. Use a new call id."),
        ));
    }

    let secret = random_hex(16);
    let public_id = format!("s{}", &random_hex(4));
    let etag = format!("\"{}\"", random_hex(8));
    let worker = {
        let mut registry = state.registry();
        if registry.sessions.len() >= state.config.limits.max_sessions {
            state
                .metrics
                .admission_rejected
                .with_label_values(&["node_full"])
                .inc();
            return Err(Problem::unavailable(
                "node-full",
                format!(
                    "this node carries its maximum of {} sessions",
                    state.config.limits.max_sessions
                ),
                retry_after,
            ));
        }
        let worker = match registry.calls.get_mut(&call_id) {
            Some(call) => {
                call.sessions += 1;
                call.worker
            }
            None => {
                let worker = state.least_loaded_worker();
                registry.calls.insert(
                    call_id.clone(),
                    CallEntry {
                        worker,
                        sessions: 1,
                    },
                );
                worker
            }
        };
        registry.sessions.insert(
            secret.clone(),
            SessionEntry {
                call_id: call_id.clone(),
                worker,
                etag: etag.clone(),
            },
        );
        worker
    };

    let (reply, answer) = tokio::sync::oneshot::channel();
    let cmd = WorkerCommand::CreateSession(Box::new(CreateSession {
        call_id: call_id.clone(),
        secret: secret.clone(),
        public_id: public_id.clone(),
        offer_sdp: sdp.to_owned(),
        summary,
        reply,
    }));
    let outcome = match state.workers[worker].send(cmd) {
        Ok(()) => wait_for(answer, ANSWER_TIMEOUT).await,
        Err(_) => None,
    };
    let answer_sdp = match outcome {
        Some(Ok(sdp)) => sdp,
        other => {
            state.registry().remove_session(&secret);
            return Err(match other {
                Some(Err(CreateSessionError::BadOffer(why))) => {
                    Problem::bad_request("malformed-sdp", why)
                }
                Some(Err(CreateSessionError::NoUsableAudio)) => Problem::unprocessable(
                    "no-usable-audio",
                    CreateSessionError::NoUsableAudio.to_string(),
                ),
                Some(Err(CreateSessionError::ShuttingDown)) => {
                    Problem::unavailable("shutting-down", "this node is shutting down", retry_after)
                }
                _ => Problem::internal("media worker did not answer"),
            });
        }
    };
    state
        .metrics
        .whip_answer_seconds
        .observe(started.elapsed().as_secs_f64());
    info!(call = %call_id, session = %public_id, worker, "whip session created");

    let location = format!("/whip/{call_id}/{secret}");
    let mut response = (StatusCode::CREATED, answer_sdp).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}

/// `OPTIONS /whip/{call_id}`: what a POST accepts.
pub async fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
    response
}

fn lookup(state: &AppState, call_id: &CallId, secret: &str) -> Result<SessionEntry, Problem> {
    state
        .registry()
        .sessions
        .get(secret)
        .filter(|e| &e.call_id == call_id)
        .cloned()
        .ok_or_else(|| Problem::not_found("no such WHIP session"))
}

/// `DELETE /whip/{call_id}/{session}`: ends the session. When it was the
/// call's last one, answers once the call's recordings are final.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((call_id, secret)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let entry = lookup(&state, &call_id, &secret)?;
    let (reply, existed) = tokio::sync::oneshot::channel();
    let (finished_tx, finished) = tokio::sync::oneshot::channel();
    let cmd = WorkerCommand::DeleteSession {
        call_id: call_id.clone(),
        secret: secret.clone(),
        reply,
        on_call_finished: Some(Box::new(move |summary| {
            let _ = finished_tx.send(summary);
        })),
    };
    state.workers[entry.worker]
        .send(cmd)
        .map_err(Problem::internal)?;
    if wait_for(existed, ANSWER_TIMEOUT).await != Some(true) {
        return Err(Problem::not_found("no such WHIP session"));
    }
    state.registry().remove_session(&secret);
    // Only resolves if this DELETE ended the call; otherwise the sender is
    // dropped at once and this returns immediately.
    let _ = wait_for(finished, FINISH_TIMEOUT).await;
    debug!(call = %call_id, "whip session deleted");
    Ok(StatusCode::OK.into_response())
}

/// `PATCH /whip/{call_id}/{session}`: trickle ICE (RFC 9725 §4.3.1).
///
/// Hearken is ICE-lite: it learns the client's address from the client's
/// connectivity checks, so trickled candidates are accepted and not needed.
/// ICE restarts (`If-Match: "*"`) are not supported and get 422.
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path((call_id, secret)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let entry = lookup(&state, &call_id, &secret)?;
    if !content_type_is(&headers, "application/trickle-ice-sdpfrag") {
        return Err(Problem::unsupported_media_type(
            "application/trickle-ice-sdpfrag",
        ));
    }
    let Some(if_match) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(Problem::precondition_required(
            "PATCH needs If-Match with the session's ETag",
        ));
    };
    if if_match.trim() == "*" {
        return Err(Problem::unprocessable(
            "ice-restart-unsupported",
            "ICE restart is not supported; start a new session instead",
        ));
    }
    if if_match.trim() != entry.etag {
        return Err(Problem::precondition_failed(
            "If-Match does not match the session's ETag",
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
