//! Share links: `POST /v1/calls/{id}/shares`, `GET …/shares`,
//! `DELETE …/shares/{share_id}`, and the check every request made with a
//! link goes through ([`authorize`]).
//!
//! A link is `/calls/{id}?share={share_id}.{mac}`: a random 128-bit id and
//! an HMAC-SHA256, under the server's share secret, of what the link grants
//! (call, id, expiry, range). The grant itself is a line of the call's
//! `shares.jsonl`, so a link can be listed and revoked; the MAC means a
//! guessed id, an edited line or a link of another call is refused. Every
//! use, allowed or not, is a line of `shares.jsonl` too.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hearken_core::ids::CallId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::extract::{CallPath, JsonBody};
use super::problem::{Problem, ProblemType};
use crate::server::AppState;

/// Longest note kept with a share.
const MAX_NOTE_CHARS: usize = 500;

/// Most share links one call may have (revoked and expired included), so
/// a loop in a client cannot grow `shares.jsonl` without end.
const MAX_SHARES_PER_CALL: usize = 1000;

/// A share's time range is kept on this grid (the mix's 20 ms packets), so
/// the cut served is exactly the range granted.
const RANGE_GRID_SECONDS: f64 = 0.02;

/// The body of `POST /v1/calls/{id}/shares`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    /// Seconds the link works for.
    pub expires_in: u64,
    /// The part of the call shared; `null` shares all of it.
    #[serde(default)]
    pub range: Option<TimeRange>,
    /// Why it was shared, for the list.
    #[serde(default)]
    pub note: Option<String>,
}

/// A span of call time (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// From (s of call time).
    pub start: f64,
    /// To (s of call time).
    pub end: f64,
}

impl TimeRange {
    /// Whether `[start, end]` lies inside this range.
    pub fn holds(&self, start: f64, end: f64) -> bool {
        start >= self.start && end <= self.end
    }
}

/// A share as `shares.jsonl` records its creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareRecord {
    /// 32 hex digits.
    pub share_id: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The part of the call shared.
    pub range: Option<TimeRange>,
    /// Why it was shared.
    pub note: Option<String>,
}

/// What a valid link grants.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The share.
    pub record: ShareRecord,
    /// The token it was presented with (to put in the URLs the page uses).
    pub token: String,
}

/// Who is asking for a call's review or audio.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// An operator with a bearer token: everything.
    Operator,
    /// Someone with a share link: what it grants.
    Share(Grant),
}

impl Viewer {
    /// The range the viewer may see, if limited.
    pub fn range(&self) -> Option<TimeRange> {
        match self {
            Self::Operator => None,
            Self::Share(g) => g.record.range,
        }
    }
}

/// A share's state for the list.
#[derive(Debug, Serialize)]
struct ShareListItem {
    id: String,
    url: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    range: Option<TimeRange>,
    note: Option<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
    uses: u64,
}

/// `POST /v1/calls/{id}/shares`: 201 with `{id, url, expires_at}`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    JsonBody(body): JsonBody<NewShare>,
) -> Result<Response, Problem> {
    let max = state.config.shares.max_expires_in;
    if body.expires_in == 0 || body.expires_in > max {
        return Err(Problem::new(
            ProblemType::BadBody,
            format!("expires_in must be between 1 and {max} seconds"),
        ));
    }
    let note = body
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Problem::new(
            ProblemType::BadBody,
            format!("note must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let store = state.store.clone();
    let id = call_id.clone();
    let (summary, existing) = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((store.read_call(&id)?, store.read_share_lines(&id)?))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    let Some(summary) = summary else {
        return Err(Problem::not_found(format!(
            "call {call_id} has no files on this node"
        )));
    };
    let created = existing
        .iter()
        .filter(|l| l.get("event").and_then(|e| e.as_str()) == Some("created"))
        .count();
    if created >= MAX_SHARES_PER_CALL {
        return Err(Problem::new(
            ProblemType::BadBody,
            format!("call {call_id} has {MAX_SHARES_PER_CALL} share links already"),
        ));
    }
    let duration = match (summary.started_at, summary.ended_at) {
        (Some(s), Some(e)) => Some((e - s).num_milliseconds().max(0) as f64 / 1000.0),
        _ => None,
    };
    let range = body.range.map(|r| valid_range(r, duration)).transpose()?;
    let now = Utc::now();
    let Some(expires_at) = i64::try_from(body.expires_in)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|d| now.checked_add_signed(d))
    else {
        return Err(Problem::new(
            ProblemType::BadBody,
            "expires_in is too far in the future",
        ));
    };
    let record = ShareRecord {
        share_id: hex::encode(rand::random::<[u8; 16]>()),
        created_at: now,
        expires_at,
        range,
        note,
    };
    let mut line = serde_json::to_value(&record).map_err(Problem::internal)?;
    line["event"] = "created".into();
    line["at"] = serde_json::to_value(now).map_err(Problem::internal)?;
    let store = state.store.clone();
    let id = call_id.clone();
    tokio::task::spawn_blocking(move || store.append_share_line(&id, &line))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    let token = token(&state, &call_id, &record)?;
    let body = serde_json::json!({
        "id": record.share_id,
        "url": page_url(&call_id, &token),
        "expires_at": record.expires_at,
        "range": record.range,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/calls/{id}/shares`: every link of the call, with its state and
/// how often it was used.
pub async fn list(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Json<serde_json::Value>, Problem> {
    let lines = read_lines(&state, &call_id).await?;
    let now = Utc::now();
    let mut items = Vec::new();
    for record in records(&lines) {
        let revoked_at = revoked_at(&lines, &record.share_id);
        let state_name = match (revoked_at, record.expires_at <= now) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        let uses = lines
            .iter()
            .filter(|l| {
                l.get("event").and_then(|e| e.as_str()) == Some("used")
                    && l.get("share_id").and_then(|e| e.as_str()) == Some(&record.share_id)
            })
            .count() as u64;
        let token = token(&state, &call_id, &record)?;
        items.push(ShareListItem {
            id: record.share_id.clone(),
            url: page_url(&call_id, &token),
            created_at: record.created_at,
            expires_at: record.expires_at,
            range: record.range,
            note: record.note.clone(),
            state: state_name,
            revoked_at,
            uses,
        });
    }
    Ok(Json(serde_json::json!({ "shares": items })))
}

/// `DELETE /v1/calls/{id}/shares/{share_id}`: revokes a link (204; again:
/// 204; unknown: 404).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    Path((_, share_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let lines = read_lines(&state, &call_id).await?;
    if !records(&lines).any(|r| r.share_id == share_id) {
        return Err(Problem::not_found(format!(
            "call {call_id} has no share {share_id}"
        )));
    }
    if revoked_at(&lines, &share_id).is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let line = serde_json::json!({"event": "revoked", "at": Utc::now(), "share_id": share_id});
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.append_share_line(&call_id, &line))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who asks: a share link (`?share=`), else an operator's bearer token
/// (the header, or `?access_token=` where `token_in_query`, for an audio
/// element, which cannot send headers; RFC 6750 §2.3). A request made
/// with a link is logged in `shares.jsonl` as `what`.
pub async fn authorize(
    state: &AppState,
    call_id: &CallId,
    headers: &HeaderMap,
    query: &ViewerQuery,
    token_in_query: bool,
    what: &str,
) -> Result<Viewer, Problem> {
    if let Some(token) = &query.share {
        let grant = check_share(state, call_id, token).await?;
        log_use(state, call_id, &grant, headers, what).await;
        return Ok(Viewer::Share(grant));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let presented = bearer.or(if token_in_query {
        query.access_token.as_deref()
    } else {
        None
    });
    match presented {
        Some(t) if super::auth::accepts(&state.config.auth.tokens, t) => Ok(Viewer::Operator),
        _ => Err(Problem::unauthorized()),
    }
}

/// The query parameters that say who asks.
#[derive(Debug, Default, Deserialize)]
pub struct ViewerQuery {
    /// A share link's token.
    pub share: Option<String>,
    /// An operator's bearer token (audio only).
    pub access_token: Option<String>,
}

/// Checks a share token for `call_id`: 401 when it is not one of ours,
/// 410 when revoked or expired.
pub async fn check_share(
    state: &AppState,
    call_id: &CallId,
    token: &str,
) -> Result<Grant, Problem> {
    let count = |outcome: &str| {
        state
            .metrics
            .share_requests
            .with_label_values(&[outcome])
            .inc();
    };
    let invalid = || {
        Problem::new(
            ProblemType::BadShareLink,
            "this share link is not valid for this call",
        )
    };
    let Some((share_id, _)) = token.split_once('.') else {
        count("invalid");
        return Err(invalid());
    };
    let lines = read_lines(state, call_id).await?;
    let Some(record) = records(&lines).find(|r| r.share_id == share_id) else {
        count("invalid");
        return Err(invalid());
    };
    let expected = self::token(state, call_id, &record)?;
    if !super::auth::constant_time_eq(expected.as_bytes(), token.as_bytes()) {
        count("invalid");
        return Err(invalid());
    }
    if revoked_at(&lines, share_id).is_some() {
        count("revoked");
        return Err(Problem::new(
            ProblemType::ShareGone,
            "this share link was revoked",
        ));
    }
    if record.expires_at <= Utc::now() {
        count("expired");
        return Err(Problem::new(
            ProblemType::ShareGone,
            format!("this share link expired at {}", record.expires_at),
        ));
    }
    count("allowed");
    Ok(Grant {
        record,
        token: token.to_owned(),
    })
}

/// Logs a use of a link (best effort: a failed line is logged, the request
/// still answered).
async fn log_use(
    state: &AppState,
    call_id: &CallId,
    grant: &Grant,
    headers: &HeaderMap,
    what: &str,
) {
    let agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| r.chars().take(100).collect::<String>());
    let line = serde_json::json!({
        "event": "used",
        "at": Utc::now(),
        "share_id": grant.record.share_id,
        "what": what,
        "bytes": range,
        "user_agent": agent,
    });
    let store = state.store.clone();
    let id = call_id.clone();
    let written = tokio::task::spawn_blocking(move || store.append_share_line(&id, &line)).await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(call = %call_id, share = %grant.record.share_id, "cannot log a share link's use");
    }
}

async fn read_lines(state: &AppState, call_id: &CallId) -> Result<Vec<serde_json::Value>, Problem> {
    let store = state.store.clone();
    let id = call_id.clone();
    tokio::task::spawn_blocking(move || store.read_share_lines(&id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

fn records(lines: &[serde_json::Value]) -> impl Iterator<Item = ShareRecord> + '_ {
    lines
        .iter()
        .filter(|l| l.get("event").and_then(|e| e.as_str()) == Some("created"))
        .filter_map(|l| serde_json::from_value(l.clone()).ok())
}

fn revoked_at(lines: &[serde_json::Value], share_id: &str) -> Option<DateTime<Utc>> {
    lines
        .iter()
        .find(|l| {
            l.get("event").and_then(|e| e.as_str()) == Some("revoked")
                && l.get("share_id").and_then(|e| e.as_str()) == Some(share_id)
        })
        .and_then(|l| l.get("at"))
        .and_then(|a| serde_json::from_value(a.clone()).ok())
}

/// A range checked against the call and put on the mix's packet grid
/// (start rounded up, end down, so nothing outside is granted).
fn valid_range(range: TimeRange, duration: Option<f64>) -> Result<TimeRange, Problem> {
    let bad = |detail: String| Problem::new(ProblemType::BadBody, detail);
    if !range.start.is_finite() || !range.end.is_finite() || range.start < 0.0 {
        return Err(bad(
            "range.start and range.end must be seconds, 0 or more".into()
        ));
    }
    let start = (range.start / RANGE_GRID_SECONDS - 1e-9).ceil() * RANGE_GRID_SECONDS;
    let mut end = (range.end / RANGE_GRID_SECONDS + 1e-9).floor() * RANGE_GRID_SECONDS;
    if let Some(d) = duration {
        if start >= d {
            return Err(bad(format!(
                "range.start {} is past the end of the call ({d:.2} s)",
                range.start
            )));
        }
        end = end.min(d);
    }
    if end - start < RANGE_GRID_SECONDS {
        return Err(bad("range.end must come after range.start".into()));
    }
    // Kept to the millisecond, so the MAC's input is exact.
    let ms = |s: f64| (s * 1000.0).round() / 1000.0;
    Ok(TimeRange {
        start: ms(start),
        end: ms(end),
    })
}

/// The token of a share: its id and the MAC of what it grants.
fn token(state: &AppState, call_id: &CallId, record: &ShareRecord) -> Result<String, Problem> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.share_secret).map_err(Problem::internal)?;
    let range = match record.range {
        Some(r) => format!(
            "{}-{}",
            (r.start * 1000.0).round() as i64,
            (r.end * 1000.0).round() as i64
        ),
        None => "all".to_owned(),
    };
    mac.update(
        format!(
            "hearken-share-v1\n{call_id}\n{}\n{}\n{range}",
            record.share_id,
            record.expires_at.timestamp()
        )
        .as_bytes(),
    );
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{}.{tag}", record.share_id))
}

/// The review page's path for a share.
fn page_url(call_id: &CallId, token: &str) -> String {
    format!("/calls/{call_id}?share={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_put_inside_itself_on_the_packet_grid() {
        let r = valid_range(
            TimeRange {
                start: 4.01,
                end: 6.019,
            },
            Some(100.0),
        )
        .unwrap();
        assert_eq!((r.start, r.end), (4.02, 6.0));
        let r = valid_range(
            TimeRange {
                start: 90.0,
                end: 500.0,
            },
            Some(100.0),
        )
        .unwrap();
        assert_eq!((r.start, r.end), (90.0, 100.0));
    }

    #[test]
    fn a_range_outside_the_call_or_backwards_is_refused() {
        for (start, end) in [
            (5.0, 5.0),
            (6.0, 5.0),
            (-1.0, 3.0),
            (120.0, 130.0),
            (f64::NAN, 1.0),
        ] {
            assert!(
                valid_range(TimeRange { start, end }, Some(100.0)).is_err(),
                "{start}..{end}"
            );
        }
    }
}
