//! HTTP to the server: WHIP `POST`/`DELETE` (RFC 9725), native ingest
//! (`POST`/`DELETE /v1/calls/{call_id}/native`) and `/metrics`.
//!
//! A node of a Hearken cluster that does not own a call answers its POST
//! `307 Temporary Redirect` to the node that does. The client follows such
//! redirects by hand (reqwest's own following is off): the same request to
//! the `Location`, at most [`MAX_REDIRECTS`] hops and only on this machine,
//! and resolves the session URL of the final 201 against the URL that
//! answered it, so the `DELETE` goes to the node that owns the session.

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

/// Most redirects (307 or 308) one request follows.
pub const MAX_REDIRECTS: u32 = 5;

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
    /// A 307 or 308 without a usable `Location`.
    #[error("HTTP {0} without a usable Location header")]
    BadRedirect(StatusCode),
    /// Still redirected after [`MAX_REDIRECTS`] hops.
    #[error("still redirected after {0} redirects")]
    TooManyRedirects(u32),
    /// A request URL that does not parse.
    #[error("bad request URL {0:?}")]
    BadUrl(String),
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
            Self::BadRedirect(_) => "bad_redirect".to_owned(),
            Self::TooManyRedirects(_) => "too_many_redirects".to_owned(),
            Self::BadUrl(_) => "bad_url".to_owned(),
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

/// Where the server placed a session: the node that answered 201, and how
/// many redirects led there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The answering node's base URL, `scheme://host:port` (see
    /// [`node_of`]).
    pub node: String,
    /// Redirects followed before the 201.
    pub redirects: u32,
}

/// A 201 answer to a WHIP offer.
#[derive(Debug)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The session URL, resolved against the URL that answered.
    pub location: Url,
    /// Where the session is.
    pub placement: Placement,
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
    /// The native ingest's URL, for the `DELETE` that ends it (resolved
    /// against the URL that answered).
    pub location: Url,
    /// Where the native ingest is.
    pub placement: Placement,
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
            // Redirects are followed by hand (see `send_following`): counted,
            // bounded, loopback only, and the session URL resolved against
            // the node that answered.
            .redirect(reqwest::redirect::Policy::none())
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

    /// [`Self::endpoint`] as a URL.
    fn endpoint_url(&self, path: &str) -> Result<Url, HttpError> {
        let endpoint = self.endpoint(path);
        Url::parse(&endpoint).map_err(|_| HttpError::BadUrl(endpoint))
    }

    /// Sends `request(url)`, and again to the `Location` of each 307 or
    /// 308 answer (resolved against the URL that redirected), at most
    /// [`MAX_REDIRECTS`] times and never off this machine. Returns the
    /// first other answer and the redirects followed; the answer's
    /// `url()` is the URL that gave it.
    async fn send_following(
        &self,
        mut url: Url,
        request: impl Fn(Url) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, u32), HttpError> {
        let mut redirects = 0;
        loop {
            let response = request(url.clone()).send().await?;
            let status = response.status();
            if status != StatusCode::TEMPORARY_REDIRECT && status != StatusCode::PERMANENT_REDIRECT
            {
                return Ok((response, redirects));
            }
            if redirects >= MAX_REDIRECTS {
                return Err(HttpError::TooManyRedirects(redirects));
            }
            let next = resolve_location(&response).ok_or(HttpError::BadRedirect(status))?;
            if !is_loopback_host(&next) {
                return Err(HttpError::RemoteLocation(next));
            }
            redirects += 1;
            url = next;
        }
    }

    /// `POST {base}/whip/{call_id}` with `sdp`, following redirects to the
    /// node that owns the call. Only a 201 is success; a 503 is not retried
    /// (its `Retry-After` is reported), since admission control is part of
    /// what is measured.
    pub async fn offer(&self, call_id: &str, sdp: String) -> Result<Answer, HttpError> {
        let url = self.endpoint_url(&format!("whip/{call_id}"))?;
        let (response, redirects) = self
            .send_following(url, |url| {
                self.http
                    .post(url)
                    .header(AUTHORIZATION, &self.authorization)
                    .header(CONTENT_TYPE, "application/sdp")
                    .body(sdp.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&response));
        }
        let location = resolve_location(&response).ok_or(HttpError::NoLocation)?;
        if !is_loopback_host(&location) {
            return Err(HttpError::RemoteLocation(location));
        }
        let placement = Placement {
            node: node_of(response.url()),
            redirects,
        };
        let sdp = response.text().await?;
        Ok(Answer {
            sdp,
            location,
            placement,
        })
    }

    /// `POST {base}/v1/calls/{call_id}/native` with `flows`, following
    /// redirects to the node that owns the call. Only a 201 is success,
    /// and, as for WHIP, a 503 is not retried.
    pub async fn start_native(
        &self,
        call_id: &str,
        flows: &[NativeFlow],
    ) -> Result<NativeAnswer, HttpError> {
        let url = self.endpoint_url(&format!("v1/calls/{call_id}/native"))?;
        let body = serde_json::json!({ "participants": flows });
        let (response, redirects) = self
            .send_following(url, |url| {
                self.http
                    .post(url)
                    .header(AUTHORIZATION, &self.authorization)
                    .json(&body)
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(&response));
        }
        // The answer names its own URL; fall back to the documented one,
        // on the node that answered.
        let location = match response.headers().get(LOCATION) {
            Some(_) => resolve_location(&response),
            None => response
                .url()
                .join(&format!("/v1/calls/{call_id}/native"))
                .ok(),
        }
        .ok_or(HttpError::NoLocation)?;
        if !is_loopback_host(&location) {
            return Err(HttpError::RemoteLocation(location));
        }
        let placement = Placement {
            node: node_of(response.url()),
            redirects,
        };
        let body: NativeAnswerBody = response
            .json()
            .await
            .map_err(|e| HttpError::BadNativeAnswer(e.to_string()))?;
        parse_native_answer(body, location, placement)
    }

    /// `DELETE {location}`: ends a session (following redirects, should
    /// the session have moved). Any 2xx is success.
    pub async fn delete(&self, location: &Url) -> Result<(), HttpError> {
        let (response, _) = self
            .send_following(location.clone(), |url| {
                self.http
                    .delete(url)
                    .header(AUTHORIZATION, &self.authorization)
            })
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

/// The answer's `Location`, resolved against the URL that gave the answer
/// (RFC 9110 §10.2.2): a relative session URL belongs to the node that
/// answered, not to the one first asked.
fn resolve_location(response: &reqwest::Response) -> Option<Url> {
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    response.url().join(location).ok()
}

/// A node's base URL, `scheme://host:port` (the port always written), the
/// key of the report's `sessions_by_node`.
pub fn node_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
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
fn parse_native_answer(
    body: NativeAnswerBody,
    location: Url,
    placement: Placement,
) -> Result<NativeAnswer, HttpError> {
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
        placement,
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

    fn placement() -> Placement {
        Placement {
            node: "http://127.0.0.1:8080".to_owned(),
            redirects: 0,
        }
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
        let answer = parse_native_answer(
            body("127.0.0.1:4433", "roq-14"),
            location.clone(),
            placement(),
        )
        .expect("ok");
        assert_eq!(answer.quic, "127.0.0.1:4433".parse().expect("addr"));
        assert_eq!(answer.connection_token, "tok");
        assert!(
            parse_native_answer(body("[::1]:4433", "roq-14"), location.clone(), placement())
                .is_ok()
        );
        let remote = parse_native_answer(
            body("10.0.0.1:4433", "roq-14"),
            location.clone(),
            placement(),
        );
        assert_eq!(remote.expect_err("remote").kind(), "remote_quic");
        for (quic, alpn) in [("localhost:4433", "roq-14"), ("127.0.0.1:4433", "roq-09")] {
            let err = parse_native_answer(body(quic, alpn), location.clone(), placement())
                .expect_err("bad");
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

    #[test]
    fn nodes_are_scheme_host_and_port() {
        let node = |u: &str| node_of(&Url::parse(u).expect("url"));
        assert_eq!(
            node("http://127.0.0.1:8081/whip/c1"),
            "http://127.0.0.1:8081"
        );
        assert_eq!(node("http://localhost/whip/c1"), "http://localhost:80");
        assert_eq!(node("https://[::1]/x"), "https://[::1]:443");
    }

    /// Tiny cluster nodes on loopback: axum servers whose answers the tests
    /// choose.
    mod nodes {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        use axum::Router;
        use axum::body::Body;
        use axum::extract::Path;
        use axum::http::{HeaderMap, Response, StatusCode, header};
        use axum::routing::{delete, post};
        use url::Url;

        /// What a node saw.
        #[derive(Default)]
        pub struct Seen {
            pub posts: AtomicU32,
            pub deletes: AtomicU32,
        }

        /// Serves `app` on a free loopback port; its base URL.
        pub async fn serve(app: Router) -> Url {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            Url::parse(&format!("http://{addr}/")).expect("url")
        }

        fn answer(status: StatusCode, location: Option<&str>, body: String) -> Response<Body> {
            let mut response = Response::builder().status(status);
            if let Some(location) = location {
                response = response.header(header::LOCATION, location);
            }
            response.body(Body::from(body)).expect("response")
        }

        /// A node that answers every session POST `307` to `to` (a format
        /// with `{call}` for the call id and `{path}` for the request's).
        pub fn redirecting(to: String, seen: Arc<Seen>) -> Router {
            let redirect = move |kind: &'static str| {
                let to = to.clone();
                let seen = Arc::clone(&seen);
                move |Path(call): Path<String>| {
                    seen.posts.fetch_add(1, Ordering::SeqCst);
                    let path = format!("/{kind}").replace("{call}", &call);
                    let location = to.replace("{call}", &call).replace("{path}", &path);
                    async move {
                        answer(
                            StatusCode::TEMPORARY_REDIRECT,
                            Some(&location),
                            String::new(),
                        )
                    }
                }
            };
            Router::new()
                .route("/whip/{call}", post(redirect("whip/{call}")))
                .route(
                    "/v1/calls/{call}/native",
                    post(redirect("v1/calls/{call}/native")),
                )
                .route(
                    "/whip/{call}/{session}",
                    delete(|| {
                        std::future::ready(answer(StatusCode::NOT_FOUND, None, String::new()))
                    }),
                )
        }

        /// A node that owns every call: 201 with a relative session
        /// `Location` (WHIP; none for native, the documented URL applies),
        /// when the offer and the token arrived intact.
        pub fn owning(seen: Arc<Seen>) -> Router {
            let whip = {
                let seen = Arc::clone(&seen);
                move |Path(call): Path<String>, headers: HeaderMap, offer: String| {
                    seen.posts.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(whip_answer(&call, &headers, offer))
                }
            };
            let native = {
                let seen = Arc::clone(&seen);
                move |body: String| {
                    seen.posts.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(native_answer(body))
                }
            };
            let delete_session = move || {
                seen.deletes.fetch_add(1, Ordering::SeqCst);
                std::future::ready(answer(StatusCode::OK, None, String::new()))
            };
            Router::new()
                .route("/whip/{call}", post(whip))
                .route("/v1/calls/{call}/native", post(native))
                .route("/whip/{call}/{session}", delete(delete_session))
        }

        fn whip_answer(call: &str, headers: &HeaderMap, offer: String) -> Response<Body> {
            let authorized = headers
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v == "Bearer t");
            if !authorized || offer != "v=0 offer" {
                return answer(StatusCode::BAD_REQUEST, None, offer);
            }
            let location = format!("/whip/{call}/secret");
            answer(
                StatusCode::CREATED,
                Some(&location),
                "v=0 answer".to_owned(),
            )
        }

        fn native_answer(body: String) -> Response<Body> {
            if !body.contains("\"participant_id\":\"spk0\"") {
                return answer(StatusCode::BAD_REQUEST, None, body);
            }
            let json = serde_json::json!({
                "quic": "127.0.0.1:4433",
                "alpn": "roq-14",
                "connection_token": "tok",
                "cert_sha256": "ab",
            });
            answer(StatusCode::CREATED, None, json.to_string())
        }
    }

    #[tokio::test]
    async fn an_offer_follows_307_to_the_owner_and_deletes_there() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let (owner_seen, entry_seen) = (Arc::default(), Arc::default());
        let owner = nodes::serve(nodes::owning(Arc::clone(&owner_seen))).await;
        let to = format!("{}{{path}}", owner.as_str().trim_end_matches('/'));
        let entry = nodes::serve(nodes::redirecting(to, Arc::clone(&entry_seen))).await;

        let server = Server::new(entry.clone(), "t").expect("client");
        let answer = server
            .offer("c1", "v=0 offer".to_owned())
            .await
            .expect("201");
        assert_eq!(answer.sdp, "v=0 answer");
        // The relative session URL belongs to the node that answered.
        assert_eq!(answer.location, owner.join("/whip/c1/secret").expect("url"));
        assert_eq!(
            answer.placement,
            Placement {
                node: node_of(&owner),
                redirects: 1,
            }
        );
        assert_ne!(answer.placement.node, node_of(&entry));
        server.delete(&answer.location).await.expect("delete");
        assert_eq!(owner_seen.deletes.load(Ordering::SeqCst), 1);
        assert_eq!(entry_seen.posts.load(Ordering::SeqCst), 1);
        assert_eq!(owner_seen.posts.load(Ordering::SeqCst), 1);

        // Asked directly, the owner answers without a redirect.
        let direct = Server::new(owner.clone(), "t").expect("client");
        let answer = direct
            .offer("c2", "v=0 offer".to_owned())
            .await
            .expect("201");
        assert_eq!(answer.placement.redirects, 0);
        assert_eq!(answer.placement.node, node_of(&owner));
    }

    #[tokio::test]
    async fn a_native_post_follows_307_and_its_url_is_the_owners() {
        use std::sync::Arc;
        let owner = nodes::serve(nodes::owning(Arc::default())).await;
        // Two hops: entry to a middle node to the owner.
        let to = format!("{}{{path}}", owner.as_str().trim_end_matches('/'));
        let middle = nodes::serve(nodes::redirecting(to, Arc::default())).await;
        let to = format!("{}{{path}}", middle.as_str().trim_end_matches('/'));
        let entry = nodes::serve(nodes::redirecting(to, Arc::default())).await;

        let server = Server::new(entry, "t").expect("client");
        let flows = [NativeFlow {
            participant_id: "spk0".to_owned(),
            flow_id: 1,
            codec: "opus",
            payload_type: 111,
        }];
        let answer = server.start_native("c1", &flows).await.expect("201");
        assert_eq!(
            answer.location,
            owner.join("/v1/calls/c1/native").expect("url")
        );
        assert_eq!(answer.placement.node, node_of(&owner));
        assert_eq!(answer.placement.redirects, 2);
        assert_eq!(answer.quic, "127.0.0.1:4433".parse().expect("addr"));
    }

    #[tokio::test]
    async fn redirect_loops_and_remote_redirects_are_errors() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        // A node that redirects to itself (a relative Location).
        let seen: Arc<nodes::Seen> = Arc::default();
        let looping =
            nodes::serve(nodes::redirecting("{path}".to_owned(), Arc::clone(&seen))).await;
        let server = Server::new(looping, "t").expect("client");
        let err = server
            .offer("c1", "v=0 offer".to_owned())
            .await
            .expect_err("loop");
        assert_eq!(err.kind(), "too_many_redirects");
        assert_eq!(seen.posts.load(Ordering::SeqCst), MAX_REDIRECTS + 1);

        let remote = nodes::serve(nodes::redirecting(
            "http://192.0.2.1:8080{path}".to_owned(),
            Arc::default(),
        ))
        .await;
        let server = Server::new(remote, "t").expect("client");
        let err = server
            .offer("c1", "v=0 offer".to_owned())
            .await
            .expect_err("remote");
        assert_eq!(err.kind(), "remote_location");
        assert_eq!(
            err.to_string(),
            "Location http://192.0.2.1:8080/whip/c1 is not loopback"
        );
    }
}
