//! HTTP errors as RFC 9457 `application/problem+json`, the one error type of
//! every handler. Internals are logged once here and never sent to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
            retry_after_secs: None,
            www_authenticate: false,
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail.into())
    }

    /// 401: missing or unknown bearer token.
    pub fn unauthorized() -> Self {
        let mut p = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send 'Authorization: Bearer <token>' with a token from auth.tokens".into(),
        );
        p.www_authenticate = true;
        p
    }

    /// 403: the request is understood and refused (e.g. by recording policy).
    pub fn forbidden(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, slug, "Forbidden", detail.into())
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail.into(),
        )
    }

    /// 409: conflicts with the resource's state.
    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict", detail.into())
    }

    /// 412: `If-Match` does not match.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            "Precondition failed",
            detail.into(),
        )
    }

    /// 413: the body is larger than the server takes.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Content too large",
            detail.into(),
        )
    }

    /// 415: wrong `Content-Type`.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the body must be sent as Content-Type: {expected}"),
        )
    }

    /// 422: understood but unusable.
    pub fn unprocessable(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Unprocessable content",
            detail.into(),
        )
    }

    /// 428: a conditional request header is required.
    pub fn precondition_required(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "Precondition required",
            detail.into(),
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(
        slug: &'static str,
        detail: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            slug,
            "Service unavailable",
            detail.into(),
        );
        p.retry_after_secs = Some(retry_after_secs);
        p
    }

    /// 500: logs `internal` once; the client sees only a generic detail.
    pub fn internal(internal: impl std::fmt::Display) -> Self {
        tracing::error!(error = %internal, "internal error answering a request");
        Self::new(
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
