//! Bearer-token authentication, as one layer over every API route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use crate::server::AppState;

/// Lets a request through only with `Authorization: Bearer <token>` for a
/// token of `auth.tokens`. `OPTIONS` passes: CORS preflights carry no
/// credentials, and WHIP's `OPTIONS` only says what a POST takes.
pub async fn require_bearer(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let accepted = presented.is_some_and(|presented| accepts(&state.config.auth.tokens, presented));
    if accepted {
        next.run(request).await
    } else {
        Problem::unauthorized().into_response()
    }
}

/// Whether `presented` is one of `tokens` (each compared in constant time).
pub(crate) fn accepts(tokens: &[String], presented: &str) -> bool {
    tokens.iter().fold(false, |found, t| {
        found | constant_time_eq(t.as_bytes(), presented.as_bytes())
    })
}

/// Compares without an early exit, so timing does not reveal a token prefix.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"hearken-dev", b"hearken-dev"));
        assert!(!constant_time_eq(b"hearken-dev", b"hearken-de"));
        assert!(!constant_time_eq(b"hearken-dev", b"hearken-deV"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
