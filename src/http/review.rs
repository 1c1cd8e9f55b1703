//! A call after it ended, for people: `GET /v1/calls/{id}/review` (what the
//! review page shows, in one document), `GET /v1/calls/{id}/insights`,
//! `GET /v1/calls/{id}/audio/{name}` (the mix and each track, with HTTP
//! Range), and the pages themselves (`GET /calls`, `GET /calls/{id}`),
//! whose assets are built into the binary.
//!
//! The review and the audio take a bearer token or a share link
//! ([`super::shares::authorize`]); a link of a time range sees only that
//! range: the transcript's words inside it, the insights clipped to it, and
//! the audio cut to it (`shares/{id}.opus`), so a byte range of the file
//! can never reach outside it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hearken_core::conference::{CallSummary, JobState};
use hearken_core::ids::CallId;
use hearken_core::insights::Insights;
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::extract::CallPath;
use super::problem::{Problem, ProblemType};
use super::shares::{TimeRange, Viewer, ViewerQuery, authorize};
use crate::server::AppState;
use crate::sinks::transcribe::Transcript;
use crate::store::MIX_FILE;

const REVIEW_HTML: &str = include_str!("review/review.html");
const REVIEW_JS: &str = include_str!("review/review.js");
const REVIEW_CSS: &str = include_str!("review/review.css");
const CALLS_HTML: &str = include_str!("review/calls.html");
const CALLS_JS: &str = include_str!("review/calls.js");
const COMMON_JS: &str = include_str!("review/common.js");

/// `GET /calls`: the calls list page (its data comes from `GET /v1/calls`).
pub async fn calls_page() -> Response {
    page(CALLS_HTML)
}

/// `GET /calls/{id}`: the review page. With `?share=`, the link is checked
/// first, so a revoked or expired one answers 410 at once.
pub async fn review_page(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    Query(query): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Response {
    if query.share.is_some() {
        let checked = authorize(&state, &call_id, &headers, &query, false, "page").await;
        if let Err(problem) = checked {
            let status = problem.status();
            let body = format!(
                "<!doctype html><meta charset=utf-8><title>Hearken</title>\
                 <link rel=stylesheet href=/assets/review.css>\
                 <main class=gone><h1>{}</h1><p>{}</p></main>",
                if status == StatusCode::GONE {
                    "This link has expired or was revoked"
                } else {
                    "This link does not open a call"
                },
                escape_html(problem.detail())
            );
            return (status, Html(body)).into_response();
        }
    }
    page(REVIEW_HTML)
}

/// `GET /assets/{name}`: the pages' script and style.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, mime) = match name.as_str() {
        "review.js" => (REVIEW_JS, "text/javascript; charset=utf-8"),
        "calls.js" => (CALLS_JS, "text/javascript; charset=utf-8"),
        "common.js" => (COMMON_JS, "text/javascript; charset=utf-8"),
        "review.css" => (REVIEW_CSS, "text/css; charset=utf-8"),
        _ => return Problem::not_found(format!("no asset {name}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // The page runs only its own script and talks only to this server.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; media-src 'self' blob:; img-src 'self' data:; \
                     style-src 'self'; script-src 'self'; frame-ancestors 'none'",
                ),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        Html(html),
    )
        .into_response()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /v1/calls/{id}/insights` (bearer token): `insights.json`. While
/// the call goes on and is transcribed, insights of the call so far from
/// its transcript (`"live": true`: talk is when words were spoken); 409
/// `not-ready` otherwise, until they are made after the call.
pub async fn insights(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Json<Value>, Problem> {
    if let Some(live) = state.transcripts.snapshot(&call_id) {
        let input = crate::postcall::live_input(&live);
        let insights = hearken_core::insights::compute(
            &input,
            &crate::postcall::insights_config(&state.config.insights),
        );
        let mut value = serde_json::to_value(insights).map_err(Problem::internal)?;
        value["live"] = Value::Bool(true);
        return Ok(Json(value));
    }
    let (summary, insights) = read(&state, &call_id, |s, id| {
        Ok((s.read_call(id)?, s.read_insights::<Value>(id)?))
    })
    .await?;
    if let Some(insights) = insights {
        return Ok(Json(insights));
    }
    let Some(summary) = summary else {
        return Err(Problem::not_found(format!(
            "call {call_id} has no files on this node"
        )));
    };
    let why = match (
        &summary.ended_at,
        crate::postcall::status_of(&summary, state.config.insights.enabled),
    ) {
        (None, _) => "the call is in progress: its insights are made when it ends".to_owned(),
        (Some(_), Some(p)) if p.insights.state == JobState::Failed => {
            return Err(Problem::internal(format!(
                "insights of call {call_id} failed: {}",
                p.insights.error.unwrap_or_default()
            )));
        }
        (Some(_), Some(p)) => format!("the insights are {}", p.insights.state.as_str()),
        (Some(_), None) => "insights are off on this node (insights.enabled)".to_owned(),
    };
    Err(Problem::new(ProblemType::NotReady, why))
}

/// `GET /v1/calls/{id}/audio/{name}`: a track or the mix, with HTTP Range
/// (seeking in a browser). A share link reaches the mix only, cut to its
/// range.
pub async fn audio(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<ViewerQuery>,
    request: Request,
) -> Result<Response, Problem> {
    let viewer = authorize(&state, &call_id, request.headers(), &query, true, "audio").await?;
    let Some(path) = state.store.audio_path(&call_id, &name) else {
        return Err(Problem::not_found(format!("no audio file {name:?}")));
    };
    let path = match &viewer {
        Viewer::Operator => path,
        Viewer::Share(_) if name != MIX_FILE => {
            state
                .metrics
                .share_requests
                .with_label_values(&["outside_range"])
                .inc();
            return Err(Problem::new(
                ProblemType::OutsideShare,
                "a share link plays the call's mix only",
            ));
        }
        Viewer::Share(grant) => match grant.record.range {
            None => path,
            Some(range) => {
                let store = state.store.clone();
                let id = call_id.clone();
                let share_id = grant.record.share_id.clone();
                tokio::task::spawn_blocking(move || {
                    store.share_cut(&id, &share_id, |mix, out| {
                        hearken_mix::cut(mix, range.start, range.end, out)
                            .map(|_| ())
                            .map_err(std::io::Error::other)
                    })
                })
                .await
                .map_err(Problem::internal)?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        Problem::new(ProblemType::NotReady, "the call's mix is not made yet")
                    }
                    _ => Problem::internal(e),
                })?
            }
        },
    };
    if !path.is_file() {
        return Err(Problem::not_found(format!(
            "call {call_id} has no audio file {name:?} on this node"
        )));
    }
    let ogg: mime::Mime = "audio/ogg"
        .parse()
        .map_err(|e: mime::FromStrError| Problem::internal(e))?;
    let served = tower_http::services::ServeFile::new_with_mime(path, &ogg)
        .oneshot(request)
        .await
        .map_err(Problem::internal)?;
    let mut response = served.map(axum::body::Body::new).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

/// `GET /v1/calls/{id}/review`: what the review page shows, in one
/// document (README: "Reviewing and sharing a call").
pub async fn review(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    Query(query): Query<ViewerQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let viewer = authorize(&state, &call_id, &headers, &query, false, "review").await?;
    let (summary, transcript, insights, audit) = read(&state, &call_id, |s, id| {
        Ok((
            s.read_call(id)?,
            s.read_transcript::<Transcript>(id).ok().flatten(),
            s.read_insights::<Insights>(id).ok().flatten(),
            s.read_audit_log(id)?.map(|l| l.events).unwrap_or_default(),
        ))
    })
    .await?;
    let Some(summary) = summary else {
        return Err(Problem::not_found(format!(
            "call {call_id} has no files on this node"
        )));
    };
    Ok(Json(review_document(
        &state,
        &summary,
        transcript.as_ref(),
        insights.as_ref(),
        &audit,
        &viewer,
    )))
}

async fn read<T: Send + 'static>(
    state: &AppState,
    call_id: &CallId,
    f: impl FnOnce(&crate::store::Store, &CallId) -> std::io::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    let store = state.store.clone();
    let id = call_id.clone();
    tokio::task::spawn_blocking(move || f(&store, &id))
        .await
        .map_err(Problem::internal)?
        .map_err(Problem::internal)
}

/// A word as the page gets it.
#[derive(Serialize)]
struct PageWord<'a> {
    w: &'a str,
    s: f64,
    e: f64,
}

fn review_document(
    state: &AppState,
    summary: &CallSummary,
    transcript: Option<&Transcript>,
    insights: Option<&Insights>,
    audit: &[Value],
    viewer: &Viewer,
) -> Value {
    let range = viewer.range();
    let inside = |s: f64, e: f64| range.is_none_or(|r: TimeRange| r.holds(s, e));
    let duration = match (summary.started_at, summary.ended_at) {
        (Some(s), Some(e)) => Some((e - s).num_milliseconds().max(0) as f64 / 1000.0),
        _ => None,
    };
    let mut names = std::collections::HashMap::new();
    let mut segments = Vec::new();
    for segment in transcript
        .map(|t| t.segments.as_slice())
        .unwrap_or_default()
    {
        if let Some(name) = &segment.display_name {
            names.insert(segment.participant_id.clone(), name.clone());
        }
        let words: Vec<PageWord<'_>> = segment
            .words
            .iter()
            .filter(|w| inside(w.start, w.end))
            .map(|w| PageWord {
                w: &w.word,
                s: w.start,
                e: w.end,
            })
            .collect();
        let (Some(first), Some(last)) = (words.first(), words.last()) else {
            continue;
        };
        segments.push(json!({
            "participant": segment.participant_id,
            "name": segment.display_name,
            "start": first.s,
            "end": last.e,
            "words": words,
        }));
    }
    let insights = insights.map(|i| match range {
        Some(r) => i.limited_to(r.start, r.end),
        None => i.clone(),
    });
    let participants: Vec<Value> = summary
        .participants
        .iter()
        .map(|p| {
            let talk = insights
                .as_ref()
                .and_then(|i| i.participants.iter().find(|ip| ip.participant == p.id))
                .map(|ip| ip.talk.clone())
                .unwrap_or_default();
            json!({"id": p.id, "name": names.get(&p.id), "talk": talk})
        })
        .collect();

    let status = crate::postcall::status_of(summary, state.config.insights.enabled);
    let mix = status.as_ref().map(|s| &s.mix);
    let mix_ready = mix.is_some_and(|m| m.state == JobState::Done && m.file.is_some());
    let audio_state = match mix {
        None => "none",
        Some(m) if m.state == JobState::Done && m.file.is_none() => "none",
        Some(m) => m.state.as_str(),
    };
    let url = mix_ready.then(|| {
        let base = format!("/v1/calls/{}/audio/{MIX_FILE}", summary.call_id);
        match viewer {
            Viewer::Share(g) => format!("{base}?share={}", g.token),
            Viewer::Operator => base,
        }
    });
    let share = match viewer {
        Viewer::Share(g) => json!({
            "id": g.record.share_id,
            "expires_at": g.record.expires_at,
            "note": g.record.note,
        }),
        Viewer::Operator => Value::Null,
    };
    json!({
        "call": {
            "call_id": summary.call_id,
            "started_at": summary.started_at,
            "ended_at": summary.ended_at,
            "duration_seconds": duration,
            "consent_mode": summary.consent_mode,
            "end_reason": summary.end_reason,
        },
        "range": range,
        "audio": {
            "url": url,
            "offset": range.map_or(0.0, |r| r.start),
            "state": audio_state,
            "progress": mix.map_or(0.0, |m| m.progress),
        },
        "participants": participants,
        "transcript": segments,
        "insights": insights,
        "consent": consent_summary(summary, audit, &names, range),
        "share": share,
    })
}

/// Who consented how, what was never recorded, and the consent events (in
/// the range, for a share of one).
fn consent_summary(
    summary: &CallSummary,
    audit: &[Value],
    names: &std::collections::HashMap<String, String>,
    range: Option<TimeRange>,
) -> Value {
    let participants: Vec<Value> = summary
        .participants
        .iter()
        .map(|p| {
            let consent = p
                .consent
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok());
            let field = |k: &str| consent.as_ref().and_then(|c| c.get(k)).cloned();
            // What they decided, not where they ended ("left"): the last
            // consent or decline in the log, else their state now.
            let decision = audit.iter().rev().find(|e| {
                e.get("event").and_then(Value::as_str) == Some("state_changed")
                    && e.get("participant").and_then(Value::as_str) == Some(&p.id)
                    && matches!(
                        e.pointer("/to/state").and_then(Value::as_str),
                        Some("consented" | "declined")
                    )
            });
            let decided_at = decision.and_then(|e| e.get("t")).and_then(Value::as_f64);
            let (state, method) = match decision {
                Some(e) => (
                    e.pointer("/to/state").cloned(),
                    e.pointer("/to/method").cloned(),
                ),
                None => (field("state"), field("method")),
            };
            json!({
                "id": p.id,
                "name": names.get(&p.id),
                "state": state,
                "method": method,
                "location": field("jurisdiction"),
                "at": decided_at,
            })
        })
        .collect();
    let end = match (summary.started_at, summary.ended_at) {
        (Some(s), Some(e)) => (e - s).num_milliseconds().max(0) as f64 / 1000.0,
        _ => f64::INFINITY,
    };
    let mut not_recorded = not_recorded(audit, end);
    let mut events: Vec<Value> = crate::postcall::consent_moments(audit)
        .into_iter()
        .map(|m| json!({"t": m.t, "participant": m.participant, "label": m.label}))
        .collect();
    if let Some(r) = range {
        not_recorded.retain(|s| {
            s.get("end").and_then(Value::as_f64).unwrap_or(0.0) > r.start
                && s.get("start").and_then(Value::as_f64).unwrap_or(0.0) < r.end
        });
        events.retain(|e| {
            let t = e.get("t").and_then(Value::as_f64).unwrap_or(-1.0);
            t >= r.start && t <= r.end
        });
    }
    json!({
        "mode": summary.consent_mode,
        "participants": participants,
        "not_recorded": not_recorded,
        "events": events,
    })
}

/// Stretches of a participant's audio that consent kept out of the
/// recording: their gate shut (not holding), audio held then thrown away,
/// and captured audio deleted after a decline.
fn not_recorded(audit: &[Value], end: f64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut shut: std::collections::HashMap<String, (f64, String)> = Default::default();
    for e in audit {
        let t = e.get("t").and_then(Value::as_f64).unwrap_or(0.0);
        let who = e.get("participant").and_then(Value::as_str);
        match e.get("event").and_then(Value::as_str) {
            Some("gate_changed") => {
                let Some(who) = who else { continue };
                let open = e.get("open").and_then(Value::as_bool).unwrap_or(false);
                let held = e.get("held").and_then(Value::as_bool).unwrap_or(false);
                if open || held {
                    if let Some((from, reason)) = shut.remove(who)
                        && t > from
                    {
                        out.push(
                            json!({"participant": who, "start": from, "end": t, "reason": reason}),
                        );
                    }
                } else {
                    let reason = e
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("gate shut");
                    shut.entry(who.to_owned())
                        .or_insert((t, reason.replace('_', " ")));
                }
            }
            Some("hold_discarded") => {
                let seconds = e.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
                let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
                out.push(json!({
                    "participant": who,
                    "start": (t - seconds).max(0.0),
                    "end": t,
                    "reason": format!("held, then discarded ({})", reason.replace('_', " ")),
                }));
            }
            Some("discarded") => out.push(json!({
                "participant": who,
                "start": 0.0,
                "end": t,
                "reason": "recorded, then deleted after a decline",
            })),
            _ => {}
        }
    }
    for (who, (from, reason)) in shut {
        if end.is_finite() && end > from {
            out.push(json!({"participant": who, "start": from, "end": end, "reason": reason}));
        }
    }
    out.sort_by(|a, b| {
        let t = |v: &Value| v.get("start").and_then(Value::as_f64).unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shut_gate_a_dropped_hold_and_a_discard_are_not_recorded() {
        let audit = vec![
            json!({"event": "gate_changed", "t": 0.0, "participant": "bob", "open": false, "held": false, "reason": "awaiting_consent"}),
            json!({"event": "gate_changed", "t": 8.0, "participant": "bob", "open": true, "held": false, "reason": "consented"}),
            json!({"event": "hold_discarded", "t": 20.0, "participant": "carol", "seconds": 5.0, "reason": "declined"}),
            json!({"event": "discarded", "t": 30.0, "what": "participant", "participant": "dan"}),
            json!({"event": "gate_changed", "t": 50.0, "participant": "bob", "open": false, "held": false, "reason": "declined"}),
        ];
        let spans: Vec<(String, f64, f64)> = not_recorded(&audit, 60.0)
            .iter()
            .map(|v| {
                (
                    v["participant"].as_str().unwrap_or("").to_owned(),
                    v["start"].as_f64().unwrap(),
                    v["end"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                ("bob".to_owned(), 0.0, 8.0),
                ("dan".to_owned(), 0.0, 30.0),
                ("carol".to_owned(), 15.0, 20.0),
                ("bob".to_owned(), 50.0, 60.0),
            ]
        );
    }
}
