//! Participants and consent: `PUT …/participants/{id}`,
//! `POST …/participants/{id}/consent`, `GET …/consent` (the audit log).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use hearken_core::consent::engine::{CaptureSetting, ConsentMethod, Decision, ParticipantDetails};
use hearken_core::consent::rules::Location;
use serde::{Deserialize, Serialize};

use super::extract::{CallPath, JsonBody, ParticipantPath};
use super::problem::{Problem, ProblemType};
use super::{ask_call_worker, ask_worker};
use crate::control::registry::{DetailsRoute, PendingError};
use crate::media::{Command, Reply};
use crate::server::AppState;

/// How long a worker may take to apply details or a signal (for a signal,
/// until its audit line is on disk).
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Body of `PUT /v1/calls/{call_id}/participants/{participant_id}`.
#[derive(Debug, Deserialize, Serialize)]
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
    pub location: Option<Location>,
    /// Employee of the recording company.
    #[serde(default)]
    pub internal: bool,
    /// `default` or `never`.
    #[serde(default)]
    pub capture: CaptureSetting,
}

/// Where the details went.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// To the call in progress.
    Live,
    /// Kept until the call's first session arrives.
    Pending,
}

/// `PUT …/participants/{participant_id}`: a participant's details, for
/// consent (and the display name, for transcripts).
pub async fn put_participant(
    State(state): State<Arc<AppState>>,
    path: ParticipantPath,
    JsonBody(body): JsonBody<ParticipantBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let ParticipantPath {
        call_id,
        participant_id,
    } = path;
    if let Some(location) = &body.location {
        location
            .validate()
            .map_err(|e| Problem::new(ProblemType::BadLocation, format!("location: {e}")))?;
    }
    let details = ParticipantDetails {
        location: body.location.clone(),
        internal: body.internal,
        capture: body.capture,
    };
    if let Some(name) = &body.display_name {
        state
            .transcripts
            .set_display_name(&call_id, &participant_id, name);
    }
    let route = state
        .registry
        .route_details(&call_id, &participant_id, &details)
        .map_err(|e| match e {
            PendingError::TooManyCalls => Problem::unavailable(
                ProblemType::TooManyPendingCalls,
                format!("{e}; start some of them or retry later"),
                state.config.limits.retry_after_secs,
            ),
            PendingError::TooManyParticipants => {
                Problem::new(ProblemType::TooManyParticipants, e.to_string())
            }
        })?;
    let applied = match route {
        DetailsRoute::Pending => Applied::Pending,
        DetailsRoute::Worker(worker) => {
            let command = Command::ParticipantDetails {
                call_id: call_id.clone(),
                participant_id: participant_id.clone(),
                details,
            };
            match ask_worker(&state, worker, command, APPLY_TIMEOUT).await? {
                Reply::Found(true) => Applied::Live,
                // The call ended between the lookup and the command.
                _ => return Err(Problem::not_found(format!("no call {call_id} in progress"))),
            }
        }
    };
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "applied": applied,
        "participant": body,
    })))
}

/// Body of `POST …/participants/{participant_id}/consent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// `granted` or `declined`.
    pub decision: Decision,
    /// How it was obtained: `ui` (the provider's own interface), `verbal`
    /// or `api` (the default).
    #[serde(default)]
    pub method: Option<ConsentMethod>,
}

/// `POST …/participants/{participant_id}/consent`: a consent decision the
/// provider collected. Answered once the decision is applied and its audit
/// line is synced (the recorder answers a barrier queued behind it); a 503
/// `audit-log-failed` when the line could not be written (the call's
/// capture stopped) or was not confirmed within the timeout.
pub async fn post_consent(
    State(state): State<Arc<AppState>>,
    path: ParticipantPath,
    JsonBody(body): JsonBody<ConsentBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let ParticipantPath {
        call_id,
        participant_id,
    } = path;
    let method = body.method.unwrap_or(ConsentMethod::Api);
    if matches!(
        method,
        ConsentMethod::Implicit | ConsentMethod::Dtmf | ConsentMethod::NotRequired
    ) {
        return Err(Problem::new(
            ProblemType::BadMethod,
            "method: implicit, dtmf and not_required are what the server observes, not what a provider reports; use ui, verbal or api",
        ));
    }
    let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
    let (audited, on_disk) = tokio::sync::oneshot::channel();
    let command = Command::ConsentSignal {
        call_id: call_id.clone(),
        participant_id: participant_id.clone(),
        decision: body.decision,
        method,
        audited: Some(audited),
    };
    match ask_call_worker(&state, &call_id, command, APPLY_TIMEOUT).await? {
        Some(Reply::Found(true)) => {}
        _ => return Err(Problem::not_found(format!("no call {call_id} in progress"))),
    }
    let unconfirmed = |why: String| {
        Problem::new(
            ProblemType::AuditLogFailed,
            format!("the decision was applied, but {why}"),
        )
    };
    match tokio::time::timeout_at(deadline, on_disk).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(failed))) => {
            return Err(unconfirmed(format!(
                "its audit line could not be written, so capture of this call has stopped: {}",
                failed.reason
            )));
        }
        // The recorder's queue was full (the barrier was dropped) or it
        // stopped.
        Ok(Err(_)) => {
            return Err(unconfirmed(
                "the recorder did not confirm its audit line".into(),
            ));
        }
        Err(_) => {
            return Err(unconfirmed(format!(
                "its audit line was not confirmed on disk within {} s",
                APPLY_TIMEOUT.as_secs()
            )));
        }
    }
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "decision": body.decision,
        "method": method,
    })))
}

/// `GET /v1/calls/{call_id}/consent`: the call's consent audit log, its
/// events and whether its hash chain holds (`chain`: `ok`, `lines`,
/// `head_sha256`; or `ok: false` with the first bad `line` and the `fault`).
pub async fn get_log(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Json<serde_json::Value>, Problem> {
    let store = state.store.clone();
    let id = call_id.clone();
    let log = tokio::task::spawn_blocking(move || store.read_audit_log(&id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?
        .ok_or_else(|| Problem::not_found(format!("no consent log for call {call_id}")))?;
    let chain = match &log.chain {
        Ok(v) => serde_json::json!({
            "ok": true,
            "lines": v.lines,
            "head_sha256": v.head_sha256,
        }),
        Err(e) => serde_json::json!({
            "ok": false,
            "line": e.line,
            "fault": e.fault.to_string(),
        }),
    };
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "events": log.events,
        "chain": chain,
    })))
}
