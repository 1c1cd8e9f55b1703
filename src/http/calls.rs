//! `GET /v1/calls`, `GET /v1/calls/{id}`, `POST /v1/calls/{id}/end`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use hearken_core::conference::{CallSummary, EndReason};
use hearken_core::ids::CallId;
use serde::Serialize;

use super::ask_call_worker;
use super::extract::CallPath;
use super::problem::Problem;
use crate::media::{Command, Reply};
use crate::server::AppState;

/// How long `POST /v1/calls/{id}/end` waits for the call's files to be final.
const END_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a snapshot of a call in progress may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// In progress on a worker.
    Active,
    /// Ended; its files are final.
    Ended,
    /// A meeting kept as metadata only (no media).
    MetadataOnly,
}

/// One line of `GET /v1/calls`.
#[derive(Debug, Serialize)]
pub struct CallListItem {
    /// The call id.
    pub call_id: String,
    /// Where it is in its life.
    pub state: CallState,
    /// Call time zero (UTC).
    pub started_at: Option<DateTime<Utc>>,
    /// End (UTC).
    pub ended_at: Option<DateTime<Utc>>,
    /// Participants seen (for a meeting: its organizer and attendees).
    pub participants: usize,
    /// The node that holds its files (with a fleet index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its length (ended calls).
    pub duration_seconds: Option<f64>,
    /// The consent mode it ran under.
    pub consent_mode: Option<hearken_core::consent::rules::ConsentMode>,
    /// `ready` once `transcript.json` is written, else `none`.
    pub transcript: &'static str,
    /// Where its insights stand (`none`, `pending`, `running`, `done`,
    /// `failed`).
    pub insights: &'static str,
    /// Where its mix stands (the same states).
    pub mix: &'static str,
}

impl CallListItem {
    /// The line of a call from its summary.
    fn from_summary(s: CallSummary, state: CallState, transcript: bool, postcall: bool) -> Self {
        let status = crate::postcall::status_of(&s, postcall);
        let duration_seconds = match (s.started_at, s.ended_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0) as f64 / 1000.0),
            _ => None,
        };
        Self {
            state,
            started_at: s.started_at,
            ended_at: s.ended_at,
            participants: s.participants.len(),
            node: None,
            duration_seconds,
            consent_mode: s.consent_mode,
            transcript: if transcript { "ready" } else { "none" },
            insights: status
                .as_ref()
                .map_or("none", |p| p.insights.state.as_str()),
            mix: status
                .as_ref()
                .map_or("none", |p| match (p.mix.state, &p.mix.file) {
                    (hearken_core::conference::JobState::Done, None) => "none",
                    (state, _) => state.as_str(),
                }),
            call_id: s.call_id,
        }
    }
}

/// What `GET /v1/calls` reads of a stored `meeting.json`.
#[derive(Debug, serde::Deserialize)]
struct StoredMeeting {
    call_id: String,
    meeting: hearken_policy::Meeting,
}

/// The summary of a call in progress, if a worker carries it.
async fn snapshot(state: &AppState, call_id: &CallId) -> Result<Option<CallSummary>, Problem> {
    let command = Command::Snapshot {
        call_id: call_id.clone(),
    };
    match ask_call_worker(state, call_id, command, SNAPSHOT_TIMEOUT).await? {
        Some(Reply::Snapshot(s)) => Ok(s.map(|s| *s)),
        _ => Ok(None),
    }
}

/// `GET /v1/calls`: calls in progress, ended calls and metadata-only
/// meetings, by start. With the fleet index, every call of the fleet.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, Problem> {
    if let Some(index) = &state.index {
        return list_fleet(&state, index).await;
    }
    let mut calls = Vec::new();
    for id in state.registry.call_ids() {
        if let Some(s) = snapshot(&state, &id).await? {
            calls.push(CallListItem::from_summary(
                s,
                CallState::Active,
                false,
                false,
            ));
        }
    }
    let store = state.store.clone();
    let (ended, meetings) = tokio::task::spawn_blocking(move || {
        let ended: Vec<(CallSummary, bool)> = store
            .ended_calls()
            .into_iter()
            .map(|s| {
                let transcript = CallId::parse(&s.call_id)
                    .is_ok_and(|id| store.call_dir(&id).join("transcript.json").is_file());
                (s, transcript)
            })
            .collect();
        (ended, store.meetings::<StoredMeeting>())
    })
    .await
    .map_err(Problem::internal)?;
    let postcall = state.config.insights.enabled;
    for (s, transcript) in ended {
        calls.push(CallListItem::from_summary(
            s,
            CallState::Ended,
            transcript,
            postcall,
        ));
    }
    // Meetings imported as metadata only are part of the call index too
    // (kept as `meeting.json`, so they survive a restart).
    for m in meetings {
        calls.push(meeting_item(m));
    }
    sort(&mut calls);
    Ok(Json(serde_json::json!({ "calls": calls })))
}

fn meeting_item(m: StoredMeeting) -> CallListItem {
    CallListItem {
        call_id: m.call_id,
        state: CallState::MetadataOnly,
        started_at: Some(m.meeting.start),
        ended_at: Some(m.meeting.end),
        participants: m.meeting.attendees.len() + usize::from(m.meeting.organizer.is_some()),
        node: None,
        duration_seconds: Some((m.meeting.end - m.meeting.start).num_seconds().max(0) as f64),
        consent_mode: None,
        transcript: "none",
        insights: "none",
        mix: "none",
    }
}

/// Oldest first (the page shows newest first).
fn sort(calls: &mut [CallListItem]) {
    calls.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.call_id.cmp(&b.call_id))
    });
}

/// `GET /v1/calls` from the fleet index: the same answer on every node.
async fn list_fleet(
    state: &AppState,
    index: &crate::cluster::index::FleetIndex,
) -> Result<Json<serde_json::Value>, Problem> {
    let (rows, meetings) = index
        .calls()
        .await
        .map_err(|e| index_unavailable(state, &e))?;
    let mut calls: Vec<CallListItem> = rows
        .into_iter()
        .map(|r| CallListItem {
            call_id: r.call_id,
            state: if r.state == "ended" {
                CallState::Ended
            } else {
                CallState::Active
            },
            started_at: r.started_at,
            ended_at: r.ended_at,
            participants: r.participants,
            node: Some(r.node_id),
            duration_seconds: match (r.started_at, r.ended_at) {
                (Some(a), Some(b)) => Some((b - a).num_milliseconds().max(0) as f64 / 1000.0),
                _ => None,
            },
            // The index lists calls; these live with the call's files.
            consent_mode: None,
            transcript: "none",
            insights: "none",
            mix: "none",
        })
        .collect();
    for m in meetings {
        if let Ok(meeting) = serde_json::from_value::<StoredMeeting>(m.meeting) {
            calls.push(meeting_item(meeting));
        }
    }
    sort(&mut calls);
    Ok(Json(serde_json::json!({ "calls": calls })))
}

/// 503 for a read the fleet index could not answer.
pub(crate) fn index_unavailable(state: &AppState, error: &str) -> Problem {
    Problem::unavailable(
        super::problem::ProblemType::ClusterUnavailable,
        format!("the fleet index (PostgreSQL) is unavailable: {error}"),
        state.config.limits.retry_after_secs,
    )
}

/// The `call.json` of a call that is not in progress; for a call that never
/// started, the sessions that failed to connect; else 404.
async fn stored_call(state: &AppState, call_id: &CallId) -> Result<CallSummary, Problem> {
    let store = state.store.clone();
    let id = call_id.clone();
    let stored = tokio::task::spawn_blocking(move || store.read_call(&id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    if let Some(summary) = stored {
        return Ok(summary);
    }
    if let Some(index) = &state.index
        && let Some((summary, node)) = index
            .call(call_id)
            .await
            .map_err(|e| index_unavailable(state, &e))?
    {
        // A call in progress on another node: its owner's live summary.
        if summary.ended_at.is_none()
            && node != state.node_id
            && let Some(live) = owner_snapshot(state, &node, call_id).await
        {
            return Ok(live);
        }
        return Ok(summary);
    }
    let failed_sessions = state.registry.failed_sessions(call_id);
    if failed_sessions.is_empty() {
        return Err(Problem::not_found(format!("no call {call_id}")));
    }
    Ok(CallSummary {
        call_id: call_id.to_string(),
        started_at: None,
        ended_at: None,
        end_reason: None,
        active_sessions: 0,
        consent_mode: None,
        participants: Vec::new(),
        failed_sessions,
        consent_log: None,
        capture_error: None,
        announcement_track: None,
        node: None,
        segments: Vec::new(),
        postcall: None,
    })
}

/// The live summary of a call from the node that carries it, if that node
/// is a live member of the fleet and answers.
async fn owner_snapshot(state: &AppState, node: &str, call_id: &CallId) -> Option<CallSummary> {
    let cluster = state.cluster.as_ref()?;
    let owner = cluster
        .nodes()
        .into_iter()
        .find(|n| n.status.node_id == node)?;
    let token = state.config.auth.tokens.first()?;
    let url = format!(
        "{}/v1/calls/{call_id}",
        owner.status.url.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(SNAPSHOT_TIMEOUT)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<CallSummary>().await.ok()
}

/// `GET /v1/calls/{id}`: the call in progress, else its `call.json`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Json<CallSummary>, Problem> {
    if let Some(s) = snapshot(&state, &call_id).await? {
        return Ok(Json(s));
    }
    stored_call(&state, &call_id).await.map(Json)
}

/// `POST /v1/calls/{id}/end`: ends the call; answers with its final summary
/// once every file is final. Ending an ended call shows its result.
pub async fn end(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Json<CallSummary>, Problem> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let command = Command::EndCall {
        call_id: call_id.clone(),
        reason: EndReason::Api,
        done: Some(done),
    };
    let ended = ask_call_worker(&state, &call_id, command, END_TIMEOUT).await?;
    if matches!(ended, Some(Reply::Found(true)))
        && let Ok(Ok(summary)) = tokio::time::timeout(END_TIMEOUT, finished).await
    {
        return Ok(Json(summary));
    }
    stored_call(&state, &call_id).await.map(Json)
}
