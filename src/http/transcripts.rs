//! Transcripts: `GET …/transcript` (JSON, or WebVTT with `Accept:
//! text/vtt`) and `GET …/transcript/live` (server-sent events).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::extract::CallPath;
use super::problem::Problem;
use crate::server::AppState;
use crate::sinks::transcribe::{Transcript, to_vtt};

/// `GET /v1/calls/{call_id}/transcript`: live calls answer with the finals
/// so far, ended calls with `transcript.json`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let transcript: Transcript = match state.transcripts.snapshot(&call_id) {
        Some(t) => t,
        None => {
            let store = state.store.clone();
            let id = call_id.clone();
            tokio::task::spawn_blocking(move || store.read_transcript(&id))
                .await
                .map_err(Problem::internal)?
                .map_err(Problem::internal)?
                .ok_or_else(|| Problem::not_found(format!("no transcript for call {call_id}")))?
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
pub async fn live(
    State(state): State<Arc<AppState>>,
    CallPath(call_id): CallPath,
) -> Result<Response, Problem> {
    let rx = state
        .transcripts
        .subscribe(&call_id)
        .ok_or_else(|| Problem::not_found(format!("no live transcript for call {call_id}")))?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev.segment).unwrap_or_default();
                    let event = Event::default().event(ev.kind.as_str()).data(data);
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
