//! The HTTP surface: WHIP routes, the `/v1` call API, metrics and health.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::core::conference::{CallSummary, EndReason};
use crate::core::ids::CallId;
use crate::ingest::whip::{self, parse_call_id};
use crate::problem::Problem;
use crate::rtc::worker::WorkerCommand;
use crate::server::AppState;
use crate::sinks::recorder::read_call_json;

/// Largest request body accepted (an SDP offer with many m-lines fits easily).
const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long `POST /v1/calls/{id}/end` waits for the call's files to be final.
const END_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/whip/{call_id}", post(whip::create).options(whip::options))
        .route(
            "/whip/{call_id}/{session}",
            axum::routing::delete(whip::delete).patch(whip::patch),
        )
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{call_id}", get(get_call))
        .route("/v1/calls/{call_id}/end", post(end_call))
        .route(
            "/v1/calls/{call_id}/participants/{participant_id}",
            axum::routing::put(put_participant),
        )
        .route(
            "/v1/calls/{call_id}/participants/{participant_id}/consent",
            post(post_consent),
        )
        .route("/v1/calls/{call_id}/consent", get(get_consent))
        .route("/v1/calls/{call_id}/transcript", get(get_transcript))
        .route("/v1/meetings", post(post_meeting).get(list_meetings))
        .route("/v1/calls/{call_id}/transcript/live", get(live_transcript))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

/// Checks `Authorization: Bearer <token>` against `auth.tokens`.
pub fn require_bearer(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(Problem::unauthorized)?;
    let ok = state.config.auth.tokens.iter().fold(false, |found, t| {
        found | constant_time_eq(t.as_bytes(), presented.as_bytes())
    });
    if ok {
        Ok(())
    } else {
        Err(Problem::unauthorized())
    }
}

/// Compares without an early exit, so timing does not reveal a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Awaits a oneshot reply for at most `limit`.
pub async fn wait_for<T>(rx: tokio::sync::oneshot::Receiver<T>, limit: Duration) -> Option<T> {
    tokio::time::timeout(limit, rx).await.ok()?.ok()
}

/// One line of `GET /v1/calls`.
#[derive(Debug, Serialize)]
pub struct CallListItem {
    /// The call id.
    pub call_id: String,
    /// `active` or `ended`.
    pub state: &'static str,
    /// Call time zero (UTC).
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// End (UTC).
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Participants seen.
    pub participants: usize,
}

/// Sends the command `make` builds to the worker that owns `call_id` and
/// waits, at most `limit`, for its reply. `Ok(None)`: the call is on no
/// worker, or the worker did not answer in time; `Err`: the worker is gone.
async fn ask_call_worker<T>(
    state: &AppState,
    call_id: &CallId,
    limit: Duration,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> WorkerCommand,
) -> Result<Option<T>, Problem> {
    let Some(worker) = state.registry().calls.get(call_id).map(|c| c.worker) else {
        return Ok(None);
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    state.workers[worker]
        .send(make(reply))
        .map_err(Problem::internal)?;
    Ok(wait_for(rx, limit).await)
}

async fn snapshot(state: &AppState, call_id: &CallId) -> Option<CallSummary> {
    ask_call_worker(state, call_id, Duration::from_secs(2), |reply| {
        WorkerCommand::Snapshot {
            call_id: call_id.clone(),
            reply,
        }
    })
    .await
    .ok()
    .flatten()
    .flatten()
}

async fn list_calls(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    require_bearer(&state, &headers)?;
    let active: Vec<_> = state.registry().calls.keys().cloned().collect();
    let mut calls = Vec::new();
    for id in &active {
        if let Some(s) = snapshot(&state, id).await {
            calls.push(CallListItem {
                call_id: s.call_id,
                state: "active",
                started_at: s.started_at,
                ended_at: None,
                participants: s.participants.len(),
            });
        }
    }
    let dir = state.config.storage.data_dir.join("calls");
    let ended = tokio::task::spawn_blocking(move || -> Vec<CallSummary> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("call.json")).ok())
            .filter_map(|b| serde_json::from_slice::<CallSummary>(&b).ok())
            .filter(|s| s.ended_at.is_some())
            .collect()
    })
    .await
    .unwrap_or_default();
    for s in ended {
        calls.push(CallListItem {
            call_id: s.call_id,
            state: "ended",
            started_at: s.started_at,
            ended_at: s.ended_at,
            participants: s.participants.len(),
        });
    }
    // Meetings imported as metadata only are part of the call index too
    // (kept as `meeting.json`, so they survive a restart).
    let dir = state.config.storage.data_dir.join("calls");
    let stored = tokio::task::spawn_blocking(move || -> Vec<serde_json::Value> {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("meeting.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    })
    .await
    .unwrap_or_default();
    for m in stored {
        let time = |k: &str| {
            m["meeting"][k]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        calls.push(CallListItem {
            call_id: m["call_id"].as_str().unwrap_or_default().to_owned(),
            state: "metadata_only",
            started_at: time("start"),
            ended_at: time("end"),
            participants: m["meeting"]["attendees"].as_array().map_or(0, Vec::len)
                + usize::from(!m["meeting"]["organizer"].is_null()),
        });
    }

    calls.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.call_id.cmp(&b.call_id))
    });
    Ok(Json(serde_json::json!({ "calls": calls })))
}

/// The `call.json` of a call that is not in progress, or 404.
async fn stored_call(state: &AppState, call_id: &CallId) -> Result<CallSummary, Problem> {
    let data_dir = state.config.storage.data_dir.clone();
    let id = call_id.clone();
    let stored = tokio::task::spawn_blocking(move || read_call_json(&data_dir, &id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    stored.ok_or_else(|| Problem::not_found(format!("no call {call_id}")))
}

async fn get_call(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CallSummary>, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    if let Some(s) = snapshot(&state, &call_id).await {
        return Ok(Json(s));
    }
    stored_call(&state, &call_id).await.map(Json)
}

async fn end_call(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CallSummary>, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let (finished_tx, finished) = tokio::sync::oneshot::channel();
    let existed = ask_call_worker(&state, &call_id, END_TIMEOUT, |reply| {
        WorkerCommand::EndCall {
            call_id: call_id.clone(),
            reason: EndReason::Api,
            reply,
            on_call_finished: Some(Box::new(move |s| {
                let _ = finished_tx.send(s);
            })),
        }
    })
    .await?;
    if existed == Some(true)
        && let Some(summary) = wait_for(finished, END_TIMEOUT).await
    {
        return Ok(Json(summary));
    }
    // Not in progress: ending an ended call is a no-op that shows its result.
    stored_call(&state, &call_id).await.map(Json)
}

/// Calls not started yet for which participant details may wait.
const MAX_PENDING_CALLS: usize = 10_000;
/// Participants of one such call.
const MAX_PENDING_PARTICIPANTS: usize = 1_000;

/// Longest participant id accepted in a URL.
const MAX_PARTICIPANT_ID: usize = 256;

fn parse_participant_id(text: &str) -> Result<String, Problem> {
    if text.is_empty() || text.len() > MAX_PARTICIPANT_ID || text.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "bad-participant-id",
            format!(
                "participant id must be 1-{MAX_PARTICIPANT_ID} characters without control characters"
            ),
        ));
    }
    Ok(text.to_owned())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::unsupported_media_type("application/json"));
    }
    serde_json::from_slice(body).map_err(|e| Problem::bad_request("bad-json", e.to_string()))
}

/// Body of `PUT /v1/calls/{call_id}/participants/{participant_id}`.
#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantBody {
    /// Name shown in transcripts.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Email (used by recording policy).
    #[serde(default)]
    pub email: Option<String>,
    /// ISO 3166 location; absent counts as unknown.
    #[serde(default)]
    pub location: Option<crate::core::consent::rules::Location>,
    /// Employee of the recording company.
    #[serde(default)]
    pub internal: bool,
    /// `default` or `never`.
    #[serde(default)]
    pub capture: crate::core::consent::engine::CaptureSetting,
}

async fn put_participant(
    State(state): State<Arc<AppState>>,
    Path((call_id, participant_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let participant_id = parse_participant_id(&participant_id)?;
    let body: ParticipantBody = parse_json(&headers, &body)?;
    if let Some(location) = &body.location {
        location
            .validate()
            .map_err(|e| Problem::bad_request("bad-location", format!("location: {e}")))?;
    }
    let details = crate::core::consent::engine::ParticipantDetails {
        location: body.location.clone(),
        internal: body.internal,
        capture: body.capture,
    };
    if let Some(name) = &body.display_name {
        state
            .transcripts
            .set_display_name(&call_id, &participant_id, name);
    }
    // Kept for the call's start in case it is not on a worker yet; sent to
    // the worker when it is (applying details twice is harmless). Bounded:
    // details for calls that never start must not grow memory forever.
    if let Ok(mut pending) = state.consent.pending_details.lock() {
        if !pending.contains_key(&call_id) && pending.len() >= MAX_PENDING_CALLS {
            return Err(Problem::unavailable(
                "too-many-pending-calls",
                format!(
                    "details are held for {MAX_PENDING_CALLS} calls that have not started; \
                     start some of them or retry later"
                ),
                state.config.limits.retry_after_secs,
            ));
        }
        let list = pending.entry(call_id.clone()).or_default();
        list.retain(|(id, _)| id != &participant_id);
        if list.len() >= MAX_PENDING_PARTICIPANTS {
            return Err(Problem::unprocessable(
                "too-many-participants",
                format!(
                    "at most {MAX_PENDING_PARTICIPANTS} participants per call before it starts"
                ),
            ));
        }
        list.push((participant_id.clone(), details.clone()));
    }
    let mut applied = "pending";
    let live = ask_call_worker(&state, &call_id, Duration::from_secs(5), |reply| {
        WorkerCommand::ParticipantDetails {
            call_id: call_id.clone(),
            participant_id: participant_id.clone(),
            details,
            reply,
        }
    })
    .await?;
    if live == Some(true) {
        applied = "live";
        if let Ok(mut pending) = state.consent.pending_details.lock() {
            pending.remove(&call_id);
        }
    }
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "applied": applied,
        "participant": body,
    })))
}

/// Body of `POST …/participants/{participant_id}/consent`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// `granted` or `declined`.
    pub decision: String,
    /// How it was obtained: `ui`, `verbal`, `api`, …
    #[serde(default)]
    pub method: Option<String>,
}

async fn post_consent(
    State(state): State<Arc<AppState>>,
    Path((call_id, participant_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    use crate::core::consent::engine::{ConsentMethod, Decision};
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let participant_id = parse_participant_id(&participant_id)?;
    let body: ConsentBody = parse_json(&headers, &body)?;
    let decision = match body.decision.as_str() {
        "granted" => Decision::Granted,
        "declined" => Decision::Declined,
        other => {
            return Err(Problem::bad_request(
                "bad-decision",
                format!("decision: {other:?} is neither \"granted\" nor \"declined\""),
            ));
        }
    };
    let method = match body.method.as_deref() {
        Some("verbal") => ConsentMethod::Verbal,
        _ => ConsentMethod::Api,
    };
    let signalled = ask_call_worker(&state, &call_id, Duration::from_secs(5), |reply| {
        WorkerCommand::ConsentSignal {
            call_id: call_id.clone(),
            participant_id: participant_id.clone(),
            decision,
            method,
            reply,
        }
    })
    .await?;
    if signalled != Some(true) {
        return Err(Problem::not_found(format!("no call {call_id} in progress")));
    }
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "decision": body.decision,
        "method": method,
    })))
}

async fn get_consent(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let path = crate::sinks::recorder::call_dir(&state.config.storage.data_dir, &call_id)
        .join("consent.jsonl");
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Problem::not_found(format!(
                "no consent log for call {call_id}"
            )));
        }
        Err(e) => return Err(Problem::internal(e)),
    };
    // A line cut by a crash mid-write is skipped, not fatal.
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok(Json(
        serde_json::json!({ "call_id": call_id.as_str(), "events": events }),
    ))
}

/// Query of `POST /v1/meetings`.
#[derive(Debug, serde::Deserialize)]
pub struct MeetingQuery {
    /// The call id WHIP sessions of this meeting will use.
    pub call_id: Option<String>,
}

/// `POST /v1/meetings`: a meeting pushed by a provider (JSON meeting format);
/// answers with the recording decision and the call id it applies to.
async fn post_meeting(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<MeetingQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    require_bearer(&state, &headers)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("bad-json", "the body is not UTF-8"))?;
    let _: serde_json::Value = parse_json(&headers, &body)?;
    let meeting = crate::core::policy::meeting_from_json(text)
        .map_err(|e| Problem::bad_request("bad-meeting", e.to_string()))?;
    if !state.meetings.has_settings() {
        return Err(Problem::conflict(
            "no-policy-settings",
            "no company settings are configured (policy.settings_file)",
        ));
    }
    let known = state
        .meetings
        .add(meeting, query.call_id.as_deref())
        .map_err(|e| Problem::bad_request("bad-meeting", e))?;
    Ok((StatusCode::CREATED, Json(known)).into_response())
}

/// Query of `GET /v1/meetings`.
#[derive(Debug, serde::Deserialize)]
pub struct MeetingsWindow {
    /// Earliest start (RFC 3339).
    pub from: Option<String>,
    /// Latest start, exclusive (RFC 3339).
    pub to: Option<String>,
}

async fn list_meetings(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(window): axum::extract::Query<MeetingsWindow>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Problem> {
    require_bearer(&state, &headers)?;
    let parse = |name: &str,
                 v: &Option<String>|
     -> Result<Option<chrono::DateTime<chrono::Utc>>, Problem> {
        v.as_deref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .map_err(|e| Problem::bad_request("bad-window", format!("{name}: {e}")))
            })
            .transpose()
    };
    let from = parse("from", &window.from)?;
    let to = parse("to", &window.to)?;
    Ok(Json(
        serde_json::json!({ "meetings": state.meetings.list(from, to) }),
    ))
}

/// `GET /v1/calls/{call_id}/transcript`: JSON, or WebVTT with
/// `Accept: text/vtt`. Live calls answer with the finals so far.
async fn get_transcript(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    use crate::sinks::transcribe::{Transcript, to_vtt};
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let transcript: Transcript = match state.transcripts.snapshot(&call_id) {
        Some(t) => t,
        None => {
            let path = crate::sinks::recorder::call_dir(&state.config.storage.data_dir, &call_id)
                .join("transcript.json");
            match tokio::fs::read(&path).await {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(Problem::internal)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Problem::not_found(format!(
                        "no transcript for call {call_id}"
                    )));
                }
                Err(e) => return Err(Problem::internal(e)),
            }
        }
    };
    let wants_vtt = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/vtt"));
    if wants_vtt {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/vtt; charset=utf-8"),
            )],
            to_vtt(&transcript),
        )
            .into_response());
    }
    Ok(Json(transcript).into_response())
}

/// `GET /v1/calls/{call_id}/transcript/live`: interim and final segments as
/// server-sent events while the call is in progress.
async fn live_transcript(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    require_bearer(&state, &headers)?;
    let call_id = parse_call_id(&call_id)?;
    let rx = state
        .transcripts
        .subscribe(&call_id)
        .ok_or_else(|| Problem::not_found(format!("no live transcript for call {call_id}")))?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev.segment).unwrap_or_default();
                    let event = Event::default().event(ev.kind).data(data);
                    return Some((Ok::<_, std::convert::Infallible>(event), rx));
                }
                // A slow reader misses interim results, not the stream.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_accepting() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}
