//! HTTP errors as RFC 9457 `application/problem+json`, the one error type of
//! every handler. Internals are logged once here and never sent to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every problem type a client can get besides the generic ones (401, 404,
/// 412, 413, 415, 428, 500): its `type` URN is `urn:hearken:problem:{slug}`
/// and its status is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// The URL path is not valid (400).
    BadPath,
    /// The call id is not valid (400).
    BadCallId,
    /// The participant id is not valid (400).
    BadParticipantId,
    /// The body could not be read (400).
    BadBody,
    /// The body is not the JSON expected (400).
    BadJson,
    /// The SDP offer cannot be used (400).
    MalformedSdp,
    /// The meeting is not valid (400).
    BadMeeting,
    /// The time window is not valid (400).
    BadWindow,
    /// The location is not an ISO 3166 code (400).
    BadLocation,
    /// The consent method cannot be reported (400).
    BadMethod,
    /// A native ingest request names a bad flow or participant (400).
    BadFlow,
    /// Native ingest is off on this node (404).
    NativeIngestOff,
    /// The call already has a native ingest (409).
    NativeIngestExists,
    /// The recording policy refuses this call (403).
    NotRecorded,
    /// The call has ended (409).
    CallEnded,
    /// No recording policy is configured (409).
    NoPolicySettings,
    /// The offer has no audio Hearken can receive (422).
    NoUsableAudio,
    /// ICE restarts are not supported (422).
    IceRestartUnsupported,
    /// Too many participants wait for this call (422).
    TooManyParticipants,
    /// The node is shutting down (503).
    ShuttingDown,
    /// The node is full (503).
    NodeFull,
    /// Too many calls wait to start (503).
    TooManyPendingCalls,
    /// The media worker did not answer (503).
    WorkerBusy,
    /// The media worker has stopped (503).
    WorkerUnavailable,
    /// A consent decision was applied, but its audit line is not confirmed
    /// on disk: it could not be written (the call's capture has stopped) or
    /// was not written in time (503).
    AuditLogFailed,
    /// The fleet's placement service did not answer, or no node takes new
    /// calls (503).
    ClusterUnavailable,
    /// A share link that is not one of ours (or not for this call).
    BadShareLink,
    /// A share link that was revoked or has expired.
    ShareGone,
    /// A share link asked for what it does not share.
    OutsideShare,
    /// What was asked for is still being made (the mix, the insights).
    NotReady,
    /// The data directory is full: no new call is taken until space is
    /// freed (507).
    StorageFull,
}

impl ProblemType {
    /// The last part of the `type` URN.
    pub fn slug(self) -> &'static str {
        match self {
            Self::BadPath => "bad-path",
            Self::BadCallId => "bad-call-id",
            Self::BadParticipantId => "bad-participant-id",
            Self::BadBody => "bad-body",
            Self::BadJson => "bad-json",
            Self::MalformedSdp => "malformed-sdp",
            Self::BadMeeting => "bad-meeting",
            Self::BadWindow => "bad-window",
            Self::BadLocation => "bad-location",
            Self::BadMethod => "bad-method",
            Self::BadFlow => "bad-flow",
            Self::NativeIngestOff => "native-ingest-off",
            Self::NativeIngestExists => "native-ingest-exists",
            Self::NotRecorded => "not-recorded",
            Self::CallEnded => "call-ended",
            Self::NoPolicySettings => "no-policy-settings",
            Self::NoUsableAudio => "no-usable-audio",
            Self::IceRestartUnsupported => "ice-restart-unsupported",
            Self::TooManyParticipants => "too-many-participants",
            Self::ShuttingDown => "shutting-down",
            Self::NodeFull => "node-full",
            Self::TooManyPendingCalls => "too-many-pending-calls",
            Self::WorkerBusy => "worker-busy",
            Self::WorkerUnavailable => "worker-unavailable",
            Self::AuditLogFailed => "audit-log-failed",
            Self::ClusterUnavailable => "cluster-unavailable",
            Self::BadShareLink => "bad-share-link",
            Self::ShareGone => "share-gone",
            Self::OutsideShare => "outside-share",
            Self::NotReady => "not-ready",
            Self::StorageFull => "storage-full",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadPath
            | Self::BadCallId
            | Self::BadParticipantId
            | Self::BadBody
            | Self::BadJson
            | Self::MalformedSdp
            | Self::BadMeeting
            | Self::BadWindow
            | Self::BadLocation
            | Self::BadMethod
            | Self::BadFlow => StatusCode::BAD_REQUEST,
            Self::NotRecorded | Self::OutsideShare => StatusCode::FORBIDDEN,
            Self::BadShareLink => StatusCode::UNAUTHORIZED,
            Self::ShareGone => StatusCode::GONE,
            Self::NativeIngestOff => StatusCode::NOT_FOUND,
            Self::CallEnded
            | Self::NoPolicySettings
            | Self::NativeIngestExists
            | Self::NotReady => StatusCode::CONFLICT,
            Self::NoUsableAudio | Self::IceRestartUnsupported | Self::TooManyParticipants => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::ShuttingDown
            | Self::NodeFull
            | Self::TooManyPendingCalls
            | Self::WorkerBusy
            | Self::WorkerUnavailable
            | Self::AuditLogFailed
            | Self::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

/// An HTTP error response.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    retry_after_secs: Option<u64>,
    www_authenticate: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    fn with_status(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: String,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
            retry_after_secs: None,
            www_authenticate: false,
        }
    }

    /// 401: missing or unknown bearer token.
    pub fn unauthorized() -> Self {
        let mut p = Self::with_status(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send 'Authorization: Bearer <token>' with a token from auth.tokens".into(),
        );
        p.www_authenticate = true;
        p
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::with_status(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail.into(),
        )
    }

    /// 412: `If-Match` does not match.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::with_status(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            detail.into(),
        )
    }

    /// 413: the body is larger than the server takes.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Content too large",
            detail.into(),
        )
    }

    /// 415: wrong `Content-Type`.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the body must be sent as Content-Type: {expected}"),
        )
    }

    /// 428: a conditional request header is required.
    pub fn precondition_required(detail: impl Into<String>) -> Self {
        Self::with_status(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "Precondition required",
            detail.into(),
        )
    }

    /// What went wrong, in words (the `detail` member).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A problem of type `kind` (its status comes with the type).
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        let status = kind.status();
        Self::with_status(
            status,
            kind.slug(),
            status.canonical_reason().unwrap_or("Error"),
            detail.into(),
        )
    }

    /// A 503 (or 507) problem with `Retry-After`.
    pub fn unavailable(
        kind: ProblemType,
        detail: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let mut p = Self::new(kind, detail);
        p.retry_after_secs = Some(retry_after_secs);
        p
    }

    /// 500: logs `internal` once; the client sees only a generic detail.
    pub fn internal(internal: impl std::fmt::Display) -> Self {
        tracing::error!(error = %internal, "internal error answering a request");
        Self::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "the server failed to handle the request; see its log".into(),
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            type_: format!("urn:hearken:problem:{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hearken\""),
            );
        }
        response
    }
}
