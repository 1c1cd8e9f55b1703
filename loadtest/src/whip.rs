//! HTTP to the server: WHIP `POST`/`DELETE` (RFC 9725) and `/metrics`.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use url::Url;

use crate::cli::is_loopback_host;

/// Longest wait for any HTTP exchange; a POST still unanswered by then
/// could not have connected within the connect timeout anyway.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with an unexpected status.
    #[error("HTTP {status}{}", retry_after.as_ref().map(|r| format!(" (Retry-After: {r})")).unwrap_or_default())]
    Status {
        /// The status.
        status: StatusCode,
        /// Its `Retry-After` header, if any.
        retry_after: Option<String>,
    },
    /// No answer within [`HTTP_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The connection failed.
    #[error("HTTP transport")]
    Transport(#[source] reqwest::Error),
    /// A 201 without a usable `Location`.
    #[error("201 without a usable Location header")]
    NoLocation,
    /// A `Location` pointing off this machine: never followed.
    #[error("Location {0} is not loopback")]
    RemoteLocation(Url),
}

impl HttpError {
    /// Stable key for `errors_by_kind`: `http_503`, `http_timeout`, ….
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("http_{}", status.as_u16()),
            Self::Timeout => "http_timeout".to_owned(),
            Self::Transport(_) => "http_transport".to_owned(),
            Self::NoLocation => "no_location".to_owned(),
            Self::RemoteLocation(_) => "remote_location".to_owned(),
        }
    }
}

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Transport(e)
        }
    }
}

/// A 201 answer to a WHIP offer.
#[derive(Debug)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The session URL, resolved against the base URL.
    pub location: Url,
}

/// The server, as seen over HTTP.
#[derive(Debug, Clone)]
pub struct Server {
    http: reqwest::Client,
    base: Url,
    authorization: String,
}

impl Server {
    /// A client for the server at `base` (already checked to be loopback).
    pub fn new(base: Url, token: &str) -> Result<Self, HttpError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // Loopback only: a proxy from the environment would be wrong.
            .no_proxy()
            .build()?;
        Ok(Self {
            http,
            base,
            authorization: format!("Bearer {token}"),
        })
    }

    /// `{base}/{path}`, keeping any path prefix of the base URL.
    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// `POST {base}/whip/{call_id}` with `sdp`. Only a 201 is success; a 503
    /// is not retried (its `Retry-After` is reported), since admission
    /// control is part of what is measured.
    pub async fn offer(&self, call_id: &str, sdp: String) -> Result<Answer, HttpError> {
        let response = self
            .http
            .post(self.endpoint(&format!("whip/{call_id}")))
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/sdp")
            .body(sdp)
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Err(HttpError::Status {
                status,
                retry_after,
            });
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| self.base.join(l).ok())
            .ok_or(HttpError::NoLocation)?;
        if !is_loopback_host(&location) {
            return Err(HttpError::RemoteLocation(location));
        }
        let sdp = response.text().await?;
        Ok(Answer { sdp, location })
    }

    /// `DELETE {location}`: ends a session. Any 2xx is success.
    pub async fn delete(&self, location: &Url) -> Result<(), HttpError> {
        let response = self
            .http
            .delete(location.clone())
            .header(AUTHORIZATION, &self.authorization)
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(HttpError::Status {
                status,
                retry_after: None,
            })
        }
    }

    /// `GET {base}/metrics` as text (the token is sent though the endpoint
    /// needs none, in case a deployment protects it).
    pub async fn metrics(&self) -> Result<String, HttpError> {
        let response = self
            .http
            .get(self.endpoint("metrics"))
            .header(AUTHORIZATION, &self.authorization)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(HttpError::Status {
                status,
                retry_after: None,
            });
        }
        Ok(response.text().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_path_and_locations_resolve_against_it() {
        let base = Url::parse("http://127.0.0.1:8080/").expect("url");
        let server = Server::new(base.clone(), "t").expect("client");
        assert_eq!(server.endpoint("whip/c1"), "http://127.0.0.1:8080/whip/c1");
        let prefixed = Server::new(Url::parse("http://[::1]:9/hk").expect("url"), "t").expect("c");
        assert_eq!(prefixed.endpoint("metrics"), "http://[::1]:9/hk/metrics");
        assert_eq!(
            base.join("/whip/c1/abc").expect("join").as_str(),
            "http://127.0.0.1:8080/whip/c1/abc"
        );
    }

    #[test]
    fn error_kinds_name_the_status() {
        let e = HttpError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: Some("5".into()),
        };
        assert_eq!(e.kind(), "http_503");
        assert_eq!(
            e.to_string(),
            "HTTP 503 Service Unavailable (Retry-After: 5)"
        );
        assert_eq!(HttpError::Timeout.kind(), "http_timeout");
    }
}
