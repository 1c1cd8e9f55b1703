//! HTTP to the server: WHIP `POST`/`DELETE` (RFC 9725), native ingest
//! (`POST`/`DELETE /v1/calls/{call_id}/native`) and `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde::{Deserialize, Serialize};
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
    /// A native answer without the fields a RoQ client needs.
    #[error("native answer: {0}")]
    BadNativeAnswer(String),
    /// A native answer whose QUIC address is off this machine: never
    /// connected to, for the reason `--url` must be loopback.
    #[error("native answer: QUIC address {0} is not loopback")]
    RemoteQuic(SocketAddr),
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
            Self::BadNativeAnswer(_) => "bad_native_answer".to_owned(),
            Self::RemoteQuic(_) => "remote_quic".to_owned(),
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

/// One speaker's flow in a native ingest request.
#[derive(Debug, Clone, Serialize)]
pub struct NativeFlow {
    /// Whose voice it carries (`spk{j}`, as the WHIP speakers' msid).
    pub participant_id: String,
    /// Its RoQ flow id, unique on the QUIC connection that carries it.
    pub flow_id: u64,
    /// Always `opus`: the speakers send Opus.
    pub codec: &'static str,
    /// The RTP payload type of its packets.
    pub payload_type: u8,
}

/// A 201 answer to a native ingest request: where and how to send.
#[derive(Debug, Clone)]
pub struct NativeAnswer {
    /// The QUIC listener (loopback).
    pub quic: SocketAddr,
    /// The token that binds the call's flows to a connection.
    pub connection_token: String,
    /// SHA-256 of the server's certificate (hex), to pin it.
    pub cert_sha256: String,
    /// The native ingest's URL, for the `DELETE` that ends it.
    pub location: Url,
}

/// The fields of a native answer the generator uses.
#[derive(Debug, Deserialize)]
struct NativeAnswerBody {
    quic: String,
    alpn: String,
    connection_token: String,
    cert_sha256: String,
}

/// The ALPN the server must answer with: the one the RoQ client speaks.
const ROQ_ALPN: &str = "roq-14";

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
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&response));
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

    /// `POST {base}/v1/calls/{call_id}/native` with `flows`. Only a 201 is
    /// success, and, as for WHIP, a 503 is not retried.
    pub async fn start_native(
        &self,
        call_id: &str,
        flows: &[NativeFlow],
    ) -> Result<NativeAnswer, HttpError> {
        let response = self
            .http
            .post(self.endpoint(&format!("v1/calls/{call_id}/native")))
            .header(AUTHORIZATION, &self.authorization)
            .json(&serde_json::json!({ "participants": flows }))
            .send()
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&response));
        }
        // The answer names its own URL; fall back to the documented one.
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/v1/calls/{call_id}/native"));
        let location = self
            .base
            .join(&location)
            .map_err(|_| HttpError::NoLocation)?;
        if !is_loopback_host(&location) {
            return Err(HttpError::RemoteLocation(location));
        }
        let body: NativeAnswerBody = response
            .json()
            .await
            .map_err(|e| HttpError::BadNativeAnswer(e.to_string()))?;
        parse_native_answer(body, location)
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

/// The error for an answer with an unexpected status, with its
/// `Retry-After` (a 503's advice, reported rather than followed).
fn status_error(response: &reqwest::Response) -> HttpError {
    HttpError::Status {
        status: response.status(),
        retry_after: response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Checks a native answer's fields: a loopback `host:port` and the ALPN
/// the client speaks.
fn parse_native_answer(body: NativeAnswerBody, location: Url) -> Result<NativeAnswer, HttpError> {
    if body.alpn != ROQ_ALPN {
        return Err(HttpError::BadNativeAnswer(format!(
            "alpn {:?}, the client speaks {ROQ_ALPN:?}",
            body.alpn
        )));
    }
    let quic: SocketAddr = body.quic.parse().map_err(|_| {
        HttpError::BadNativeAnswer(format!(
            "quic {:?} is not an IP address and port",
            body.quic
        ))
    })?;
    if !quic.ip().is_loopback() {
        return Err(HttpError::RemoteQuic(quic));
    }
    if body.connection_token.is_empty() || body.cert_sha256.is_empty() {
        return Err(HttpError::BadNativeAnswer(
            "empty connection_token or cert_sha256".to_owned(),
        ));
    }
    Ok(NativeAnswer {
        quic,
        connection_token: body.connection_token,
        cert_sha256: body.cert_sha256,
        location,
    })
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

    #[test]
    fn native_answers_must_be_loopback_roq_14() {
        let location = Url::parse("http://127.0.0.1:8080/v1/calls/c/native").expect("url");
        let body = |quic: &str, alpn: &str| NativeAnswerBody {
            quic: quic.to_owned(),
            alpn: alpn.to_owned(),
            connection_token: "tok".to_owned(),
            cert_sha256: "ab".to_owned(),
        };
        let answer =
            parse_native_answer(body("127.0.0.1:4433", "roq-14"), location.clone()).expect("ok");
        assert_eq!(answer.quic, "127.0.0.1:4433".parse().expect("addr"));
        assert_eq!(answer.connection_token, "tok");
        assert!(parse_native_answer(body("[::1]:4433", "roq-14"), location.clone()).is_ok());
        let remote = parse_native_answer(body("10.0.0.1:4433", "roq-14"), location.clone());
        assert_eq!(remote.expect_err("remote").kind(), "remote_quic");
        for (quic, alpn) in [("localhost:4433", "roq-14"), ("127.0.0.1:4433", "roq-09")] {
            let err = parse_native_answer(body(quic, alpn), location.clone()).expect_err("bad");
            assert_eq!(err.kind(), "bad_native_answer", "{quic} {alpn}");
        }
    }

    #[test]
    fn native_flows_serialize_as_the_api_expects() {
        let flow = NativeFlow {
            participant_id: "spk0".to_owned(),
            flow_id: 6,
            codec: "opus",
            payload_type: 111,
        };
        assert_eq!(
            serde_json::to_value(&flow).expect("json"),
            serde_json::json!({"participant_id": "spk0", "flow_id": 6, "codec": "opus", "payload_type": 111})
        );
    }
}
