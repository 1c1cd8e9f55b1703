//! WHIP (RFC 9725) signaling: `POST /whip/{call_id}` creates a session,
//! `DELETE` on its URL ends it, `PATCH` takes trickled candidates, `OPTIONS`
//! advertises `Accept-Post`.
//!
//! Hearken extends WHIP in two ways: an offer may carry several audio m-lines
//! (one speaker each, for gateways), and an audio m-line offered `sendrecv` is
//! answered `sendrecv` so the bot can speak into the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearken_core::offer::{OfferError, OfferSummary};
use rand::RngCore;
use tracing::{debug, info};

use super::extract::{CallPath, SdpBody, SessionPath, content_type_is};
use super::problem::{Problem, ProblemType};
use super::{
    Route, ask_call_worker, ask_worker, call_ended, redirect, refuse_node_full,
    refuse_shutting_down, refuse_storage_full, route_new_session,
};
use crate::control::meetings::Admission;
use crate::media::{Command, CreateSession, CreateSessionError, Reply};
use crate::server::AppState;

/// How long a worker may take to answer an offer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `DELETE` waits for the call's files to be final when it ended the call.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // ThreadRng is a CSPRNG (ChaCha, reseeded from the OS): session URLs are
    // unguessable as RFC 9725 §5 asks.
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /whip/{call_id}`: answer an offer with a new session.
pub async fn create(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    SdpBody(sdp): SdpBody,
) -> Result<Response, Problem> {
    let started = Instant::now();
    if let Route::Owner { url, .. } = route_new_session(&state, &call_id, "whip").await? {
        info!(call = %call_id, owner = %url, "whip offer redirected to the call's owner");
        return redirect(&format!("{}/whip/{call_id}", url.trim_end_matches('/')));
    }
    let summary = OfferSummary::scan(&sdp).map_err(|e| match e {
        OfferError::NoUsableAudio => Problem::new(ProblemType::NoUsableAudio, e.to_string()),
        _ => Problem::new(ProblemType::MalformedSdp, e.to_string()),
    })?;
    summary
        .require_audio()
        .map_err(|e| Problem::new(ProblemType::NoUsableAudio, e.to_string()))?;
    if let Admission::Refuse(reason) = state.meetings.admit(&call_id) {
        return Err(Problem::new(ProblemType::NotRecorded, reason));
    }
    if state.store.call_has_ended(&call_id) {
        return Err(call_ended(&call_id));
    }
    refuse_storage_full(&state)?;

    let secret = random_hex(16);
    let public_id = format!("s{}", &random_hex(4));
    let etag = format!("\"{}\"", random_hex(8));
    let Some(placement) = state.registry.place_session(
        &call_id,
        &secret,
        &etag,
        state.config.limits.max_sessions,
        || state.least_loaded_worker(),
    ) else {
        return Err(refuse_node_full(&state));
    };
    let worker = placement.worker;
    let command = Command::CreateSession(Box::new(CreateSession {
        call_id: call_id.clone(),
        secret: secret.clone(),
        public_id: public_id.clone(),
        offer_sdp: sdp,
        summary,
        early_inputs: placement.early_inputs,
        resume: placement.resume,
    }));
    let answer = match ask_worker(&state, worker, command, ANSWER_TIMEOUT).await {
        Ok(Reply::Answer(Ok(sdp))) => sdp,
        outcome => {
            state.registry.remove_session(&secret);
            return Err(match outcome {
                Ok(Reply::Answer(Err(e @ CreateSessionError::BadOffer(_)))) => {
                    Problem::new(ProblemType::MalformedSdp, e.to_string())
                }
                Ok(Reply::Answer(Err(e @ CreateSessionError::NoUsableAudio))) => {
                    Problem::new(ProblemType::NoUsableAudio, e.to_string())
                }
                Ok(Reply::Answer(Err(CreateSessionError::ShuttingDown))) => {
                    refuse_shutting_down(&state)
                }
                Ok(Reply::Answer(Err(e))) => Problem::internal(e),
                Ok(other) => Problem::internal(format!("unexpected worker reply {other:?}")),
                Err(problem) => problem,
            });
        }
    };
    let took = started.elapsed().as_secs_f64();
    state.metrics.whip_answer_seconds.observe(took);
    state
        .metrics
        .ingest_setup_seconds
        .with_label_values(&["whip"])
        .observe(took);
    info!(call = %call_id, session = %public_id, worker, "whip session created");

    let location = format!("/whip/{call_id}/{secret}");
    let mut response = (StatusCode::CREATED, answer).into_response();
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

/// `DELETE /whip/{call_id}/{session}`: ends the session. When it was the
/// call's last one, answers once the call's recordings are final.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    path: SessionPath,
) -> Result<Response, Problem> {
    let SessionPath { call_id, secret } = path;
    if state.registry.session(&call_id, &secret).is_none() {
        return Err(Problem::not_found("no such WHIP session"));
    }
    let (done, finished) = tokio::sync::oneshot::channel();
    let command = Command::DeleteSession {
        call_id: call_id.clone(),
        secret: secret.clone(),
        done: Some(done),
    };
    match ask_call_worker(&state, &call_id, command, ANSWER_TIMEOUT).await? {
        Some(Reply::Found(true)) => {}
        _ => return Err(Problem::not_found("no such WHIP session")),
    }
    state.registry.remove_session(&secret);
    // Resolves once the call's files are final if this DELETE ended the
    // call; otherwise the sender is dropped at once.
    let _ = tokio::time::timeout(FINISH_TIMEOUT, finished).await;
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
    path: SessionPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let entry = state
        .registry
        .session(&path.call_id, &path.secret)
        .ok_or_else(|| Problem::not_found("no such WHIP session"))?;
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
        return Err(Problem::new(
            ProblemType::IceRestartUnsupported,
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
