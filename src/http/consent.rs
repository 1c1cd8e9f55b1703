//! Participants and consent: `PUT …/participants/{id}`,
//! `POST …/participants/{id}/notice`, `POST …/participants/{id}/consent`,
//! `GET …/consent` (the audit log). What the provider says is kept per call
//! until the call ends (see [`crate::control::registry`]), so it may come
//! before the call starts.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use hearken_core::consent::engine::{
    CaptureSetting, ConsentMethod, Decision, ParticipantDetails, SignalEvidence,
};
use hearken_core::consent::rules::Location;
use hearken_core::ids::CallId;
use serde::{Deserialize, Serialize};

use super::ask_worker;
use super::extract::{CallPath, JsonBody, ParticipantPath};
use super::problem::{Problem, ProblemType};
use crate::control::registry::{InputRoute, PendingError};
use crate::media::{CallInput, Command, InputKind, Reply};
use crate::server::AppState;

/// How long a worker may take to apply details or a signal (for a signal,
/// until its audit line is on disk).
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Body of `PUT /v1/calls/{call_id}/participants/{participant_id}`: the
/// whole participant (what is left out takes its default).
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
    /// On the call (`true`) or gone (`false`), whether or not they send
    /// audio: a listener, a muted participant or a phone leg elsewhere
    /// counts for the consent mode and the call-wide scope. Absent: the
    /// roster is not changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// The provider's stable id of the person: a decline follows it across
    /// participant ids, and consent never passes to another person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// This participant is a room or a mixed phone bridge carrying several
    /// people: treated as the strictest of those it may carry.
    #[serde(default)]
    pub mixed: bool,
}

/// Where an input went.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// To the call in progress (and its audit lines are on disk).
    Live,
    /// Kept until the call's first session arrives (and for every new
    /// conference of the call until it ends).
    Pending,
}

/// Longest `user_id`, notice `how` or method string accepted.
const MAX_TEXT: usize = 128;

/// Checks a short text field given by the provider.
fn check_text(field: &str, text: &str, problem: ProblemType) -> Result<(), Problem> {
    if text.trim().is_empty()
        || text.chars().count() > MAX_TEXT
        || text.chars().any(char::is_control)
    {
        return Err(Problem::new(
            problem,
            format!("{field}: must be 1 to {MAX_TEXT} characters, no control characters"),
        ));
    }
    Ok(())
}

/// Keeps `input` for the call and, when the call is on a worker, applies it
/// there and waits until its audit lines are on disk.
async fn deliver(
    state: &Arc<AppState>,
    call_id: &CallId,
    input: CallInput,
) -> Result<Applied, Problem> {
    let route = state
        .registry
        .record_input(call_id, &input, std::time::Instant::now())
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
    let InputRoute::Worker(worker) = route else {
        return Ok(Applied::Pending);
    };
    let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
    let (audited, on_disk) = tokio::sync::oneshot::channel();
    let command = Command::Input {
        call_id: call_id.clone(),
        input,
        audited: Some(audited),
    };
    match ask_worker(state, worker, command, APPLY_TIMEOUT).await? {
        Reply::Found(true) => {}
        // The call left the worker between the lookup and the command: the
        // input is kept for its next conference.
        _ => return Ok(Applied::Pending),
    }
    let unconfirmed = |why: String| {
        Problem::new(
            ProblemType::AuditLogFailed,
            format!("the input was applied, but {why}"),
        )
    };
    match tokio::time::timeout_at(deadline, on_disk).await {
        Ok(Ok(Ok(()))) => Ok(Applied::Live),
        Ok(Ok(Err(failed))) => Err(unconfirmed(format!(
            "its audit line could not be written, so capture of this call has stopped: {}",
            failed.reason
        ))),
        // The recorder's queue was full (the barrier was dropped) or it
        // stopped.
        Ok(Err(_)) => Err(unconfirmed(
            "the recorder did not confirm its audit line".into(),
        )),
        Err(_) => Err(unconfirmed(format!(
            "its audit line was not confirmed on disk within {} s",
            APPLY_TIMEOUT.as_secs()
        ))),
    }
}

impl ParticipantBody {
    /// Checks what a provider may get wrong; `at` leads the field names in
    /// the error (`participants[0].details.` in a native request).
    pub(crate) fn check(&self, at: &str) -> Result<(), Problem> {
        if let Some(location) = &self.location {
            location.validate().map_err(|e| {
                Problem::new(ProblemType::BadLocation, format!("{at}location: {e}"))
            })?;
        }
        if let Some(user_id) = &self.user_id {
            check_text(&format!("{at}user_id"), user_id, ProblemType::BadJson)?;
        }
        Ok(())
    }
}

/// Keeps (and applies, when the call is live) a participant's details and,
/// when given, their presence; their display name goes to transcripts.
pub(crate) async fn deliver_participant(
    state: &Arc<AppState>,
    call_id: &CallId,
    participant_id: &str,
    body: &ParticipantBody,
) -> Result<Applied, Problem> {
    if let Some(name) = &body.display_name {
        state
            .transcripts
            .set_display_name(call_id, participant_id, name);
    }
    let details = ParticipantDetails {
        location: body.location.clone(),
        internal: body.internal,
        capture: body.capture,
        user_id: body.user_id.clone(),
        mixed: body.mixed,
    };
    let mut applied = deliver(
        state,
        call_id,
        CallInput {
            participant_id: participant_id.to_owned(),
            kind: InputKind::Details(details),
        },
    )
    .await?;
    if let Some(present) = body.present {
        applied = deliver(
            state,
            call_id,
            CallInput {
                participant_id: participant_id.to_owned(),
                kind: InputKind::Presence(present),
            },
        )
        .await?;
    }
    Ok(applied)
}

/// `PUT …/participants/{participant_id}`: a participant's details, for
/// consent (and the display name, for transcripts). Accepted before the
/// call starts.
pub async fn put_participant(
    State(state): State<Arc<AppState>>,
    path: ParticipantPath,
    JsonBody(body): JsonBody<ParticipantBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let ParticipantPath {
        call_id,
        participant_id,
    } = path;
    body.check("")?;
    let applied = deliver_participant(&state, &call_id, &participant_id, &body).await?;
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "applied": applied,
        "participant": body,
    })))
}

/// Body of `POST …/participants/{participant_id}/notice`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeBody {
    /// When the provider showed its notice (RFC 3339).
    pub shown_at: DateTime<Utc>,
    /// How: `provider_ui`, `banner`, … (kept as given).
    pub how: String,
}

/// `POST …/participants/{participant_id}/notice`: the provider showed its
/// own recording notice to a participant (what makes implicit consent
/// possible for one who cannot hear the bot). Answered once its audit line
/// is on disk; accepted before the call starts.
pub async fn post_notice(
    State(state): State<Arc<AppState>>,
    path: ParticipantPath,
    JsonBody(body): JsonBody<NoticeBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let ParticipantPath {
        call_id,
        participant_id,
    } = path;
    check_text("how", &body.how, ProblemType::BadJson)?;
    let applied = deliver(
        &state,
        &call_id,
        CallInput {
            participant_id: participant_id.clone(),
            kind: InputKind::Notice {
                shown_at: body.shown_at,
                how: body.how.clone(),
            },
        },
    )
    .await?;
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "applied": applied,
        "notice": body,
    })))
}

/// Body of `POST …/participants/{participant_id}/consent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// `granted` or `declined`.
    pub decision: Decision,
    /// How it was obtained: `ui` (the provider's own interface), `verbal`,
    /// `api` (the default), or the provider's own word for it (recorded as
    /// given; counts as `api`).
    #[serde(default)]
    pub method: Option<String>,
}

/// `POST …/participants/{participant_id}/consent`: a consent decision the
/// provider collected. Answered once the decision is applied and its audit
/// line is synced (the recorder answers a barrier queued behind it); a 503
/// `audit-log-failed` when the line could not be written (the call's
/// capture stopped) or was not confirmed within the timeout. Before the
/// call starts it is kept (`"applied": "pending"`) and applied, and logged,
/// when the call starts.
pub async fn post_consent(
    State(state): State<Arc<AppState>>,
    path: ParticipantPath,
    JsonBody(body): JsonBody<ConsentBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let ParticipantPath {
        call_id,
        participant_id,
    } = path;
    let given = body.method.as_deref().map(str::trim);
    let method = match given {
        None | Some("api") => ConsentMethod::Api,
        Some("ui") => ConsentMethod::Ui,
        Some("verbal") => ConsentMethod::Verbal,
        Some("implicit" | "dtmf" | "not_required") => {
            return Err(Problem::new(
                ProblemType::BadMethod,
                "method: implicit, dtmf and not_required are what the server observes, not what a provider reports; use ui, verbal, api or your own word for it",
            ));
        }
        Some(other) => {
            check_text("method", other, ProblemType::BadMethod)?;
            ConsentMethod::Api
        }
    };
    let applied = deliver(
        &state,
        &call_id,
        CallInput {
            participant_id: participant_id.clone(),
            kind: InputKind::Signal {
                decision: body.decision,
                method,
                evidence: SignalEvidence {
                    method_given: given.map(str::to_owned),
                    ..SignalEvidence::default()
                },
            },
        },
    )
    .await?;
    Ok(Json(serde_json::json!({
        "call_id": call_id.as_str(),
        "participant_id": participant_id,
        "decision": body.decision,
        "method": method,
        "method_given": given,
        "applied": applied,
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
    let local = tokio::task::spawn_blocking(move || store.read_audit_log(&id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    let log = match (local, &state.index) {
        (Some(log), _) => log,
        // Not on this node's disk: the mirror every node reads.
        (None, Some(index)) => {
            let lines = index
                .audit_lines(&call_id)
                .await
                .map_err(|e| super::calls::index_unavailable(&state, &e))?;
            if lines.is_empty() {
                return Err(Problem::not_found(format!(
                    "no consent log for call {call_id}"
                )));
            }
            crate::store::AuditLogRead::from_lines(&lines)
        }
        (None, None) => {
            return Err(Problem::not_found(format!(
                "no consent log for call {call_id}"
            )));
        }
    };
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
