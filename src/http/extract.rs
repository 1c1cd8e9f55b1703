//! Typed extractors: path parameters checked once (a bad call id is a 400
//! problem before any handler runs) and bodies checked against their
//! `Content-Type`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use hearken_core::ids::CallId;
use serde::de::DeserializeOwned;

use super::problem::{Problem, ProblemType};

/// Longest participant id accepted in a URL.
pub const MAX_PARTICIPANT_ID: usize = 256;

async fn params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<HashMap<String, String>, Problem> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .map_err(|e| Problem::new(ProblemType::BadPath, e.body_text()))
}

fn call_id(params: &HashMap<String, String>) -> Result<CallId, Problem> {
    let text = params
        .get("call_id")
        .map(String::as_str)
        .unwrap_or_default();
    CallId::parse(text).map_err(|e| Problem::new(ProblemType::BadCallId, e.to_string()))
}

/// `{call_id}` of the path.
#[derive(Debug, Clone)]
pub struct CallPath(pub CallId);

impl<S: Send + Sync> FromRequestParts<S> for CallPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Ok(Self(call_id(&params(parts, state).await?)?))
    }
}

/// `{call_id}/{session}` of a WHIP session URL.
#[derive(Debug, Clone)]
pub struct SessionPath {
    /// The call.
    pub call_id: CallId,
    /// The session's secret.
    pub secret: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let params = params(parts, state).await?;
        Ok(Self {
            call_id: call_id(&params)?,
            secret: params.get("session").cloned().unwrap_or_default(),
        })
    }
}

/// `{call_id}/participants/{participant_id}` of the path.
#[derive(Debug, Clone)]
pub struct ParticipantPath {
    /// The call.
    pub call_id: CallId,
    /// The participant (1-256 characters, no control characters).
    pub participant_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ParticipantPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let params = params(parts, state).await?;
        let participant_id = params.get("participant_id").cloned().unwrap_or_default();
        if participant_id.is_empty()
            || participant_id.len() > MAX_PARTICIPANT_ID
            || participant_id.chars().any(char::is_control)
        {
            return Err(Problem::new(
                ProblemType::BadParticipantId,
                format!(
                    "participant id must be 1-{MAX_PARTICIPANT_ID} characters without control characters"
                ),
            ));
        }
        Ok(Self {
            call_id: call_id(&params)?,
            participant_id,
        })
    }
}

/// A body that could not be read: too large (413), or cut off (400).
fn body_rejected(e: axum::extract::rejection::BytesRejection) -> Problem {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Problem::too_large(e.body_text())
    } else {
        Problem::new(ProblemType::BadBody, e.body_text())
    }
}

/// Whether the request's `Content-Type` (without parameters) is `expected`.
pub fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// A JSON body (`Content-Type: application/json`, else 415; bad JSON, 400
/// naming what is wrong).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !content_type_is(request.headers(), "application/json") {
            return Err(Problem::unsupported_media_type("application/json"));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(body_rejected)?;
        // The path of the field at fault leads the message
        // (`participants[0].codec: unknown variant ...`).
        let mut reader = serde_json::Deserializer::from_slice(&body);
        let value = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
            let path = e.path().to_string();
            let detail = if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            };
            Problem::new(ProblemType::BadJson, detail)
        })?;
        reader
            .end()
            .map_err(|e| Problem::new(ProblemType::BadJson, e.to_string()))?;
        Ok(Self(value))
    }
}

/// An SDP body (`Content-Type: application/sdp`, else 415; not UTF-8, 400).
#[derive(Debug)]
pub struct SdpBody(pub String);

impl<S: Send + Sync> FromRequest<S> for SdpBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !content_type_is(request.headers(), "application/sdp") {
            return Err(Problem::unsupported_media_type("application/sdp"));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(body_rejected)?;
        String::from_utf8(body.to_vec())
            .map(Self)
            .map_err(|_| Problem::new(ProblemType::MalformedSdp, "the offer is not UTF-8 text"))
    }
}
