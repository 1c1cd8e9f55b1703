//! Meetings pushed by providers: `POST /v1/meetings`, `GET /v1/meetings`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::extract::content_type_is;
use super::problem::{Problem, ProblemType};
use crate::server::AppState;

/// Query of `POST /v1/meetings`.
#[derive(Debug, Deserialize)]
pub struct MeetingQuery {
    /// The call id WHIP sessions of this meeting will use.
    pub call_id: Option<String>,
}

/// `POST /v1/meetings`: a meeting pushed by a provider (JSON meeting format);
/// answers with the recording decision and the call id it applies to.
pub async fn post(
    State(state): State<Arc<AppState>>,
    Query(query): Query<MeetingQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    if !content_type_is(&headers, "application/json") {
        return Err(Problem::unsupported_media_type("application/json"));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::new(ProblemType::BadJson, "the body is not UTF-8"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| Problem::new(ProblemType::BadJson, e.to_string()))?;
    let meeting = hearken_policy::meeting_from_json(text)
        .map_err(|e| Problem::new(ProblemType::BadMeeting, e.to_string()))?;
    if !state.meetings.has_settings() {
        return Err(Problem::new(
            ProblemType::NoPolicySettings,
            "no company settings are configured (policy.settings_file)",
        ));
    }
    let known = state
        .meetings
        .add(meeting, query.call_id.as_deref())
        .map_err(|e| Problem::new(ProblemType::BadMeeting, e))?;
    Ok((StatusCode::CREATED, Json(known)).into_response())
}

/// Query of `GET /v1/meetings`.
#[derive(Debug, Deserialize)]
pub struct MeetingsWindow {
    /// Earliest start (RFC 3339).
    pub from: Option<String>,
    /// Latest start, exclusive (RFC 3339).
    pub to: Option<String>,
}

/// `GET /v1/meetings?from=&to=`: known meetings starting in the window.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(window): Query<MeetingsWindow>,
) -> Result<Json<serde_json::Value>, Problem> {
    let parse = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, Problem> {
        v.as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| Problem::new(ProblemType::BadWindow, format!("{name}: {e}")))
            })
            .transpose()
    };
    let from = parse("from", &window.from)?;
    let to = parse("to", &window.to)?;
    Ok(Json(
        serde_json::json!({ "meetings": state.meetings.list(from, to) }),
    ))
}
