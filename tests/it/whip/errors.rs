//! Every WHIP error is answered as specified, as `application/problem+json`.

use crate::common::{TOKEN, TestServer, offer_sdp};
use std::io::{Read, Write};
use str0m::media::Direction;

async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

fn offer() -> String {
    offer_sdp(&["p"], Direction::SendOnly)
}

/// Sends a request with a raw path (HTTP clients normalize `..` away).
fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test]
async fn errors_are_problem_json() {
    let server = TestServer::start_with(|c| c.limits.max_sessions = 1).await;
    let url = server.url("/whip/err-call");
    let c = &server.client;

    // 401: no token, wrong token.
    let r = c
        .post(&url)
        .header("content-type", "application/sdp")
        .body(offer())
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("www-authenticate"));
    assert_problem(r, 401).await;
    let r = c
        .post(&url)
        .bearer_auth("nope")
        .header("content-type", "application/sdp")
        .body(offer())
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;

    // 415: wrong content type.
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(offer())
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;

    // 400: not SDP, SDP that str0m cannot negotiate, not UTF-8.
    assert_problem(server.post_offer("err-call", "hello world").await, 400).await;
    let broken = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n";
    assert_problem(server.post_offer("err-call", broken).await, 400).await;
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/sdp")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;

    // 422: no usable audio (video only; audio the client would not send).
    let video_only = offer()
        .replace("m=audio", "m=video")
        .replace("opus/48000/2", "VP8/90000");
    assert_problem(server.post_offer("err-call", &video_only).await, 422).await;
    let recvonly = offer().replace("a=sendonly", "a=recvonly");
    assert_problem(server.post_offer("err-call", &recvonly).await, 422).await;

    // 400: call ids that are not safe names.
    for bad in ["a%20b", "..%2F..%2Fetc", &"x".repeat(129), "caf%C3%A9"] {
        let r = c
            .post(server.url(&format!("/whip/{bad}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/sdp")
            .body(offer())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body = assert_problem(r, 400).await;
        assert!(
            body["detail"].as_str().unwrap().contains("call id"),
            "{bad}: {body}"
        );
    }
    let http = server.http;
    let raw = tokio::task::spawn_blocking(move || raw_request(
        http,
        &format!(
            "POST /whip/.. HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/sdp\r\ncontent-length: 3\r\nconnection: close\r\n\r\nv=0"
        ),
    ))
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");

    // 201, then 503 with Retry-After: the node is full (max_sessions = 1).
    let r = server.post_offer("err-call", &offer()).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/whip/err-call/") && location.len() > "/whip/err-call/".len() + 30,
        "unguessable: {location}"
    );
    let r = server.post_offer("other-call", &offer()).await;
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert_problem(r, 503).await;

    // OPTIONS advertises what POST takes.
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["accept-post"], "application/sdp");

    // PATCH: content type, If-Match, restart unsupported, trickle accepted.
    let patch = |ct: &'static str, if_match: Option<String>| {
        let mut req = c
            .patch(server.url(&location))
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n");
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req.send()
    };
    assert_problem(patch("text/plain", Some(etag.clone())).await.unwrap(), 415).await;
    assert_problem(
        patch("application/trickle-ice-sdpfrag", None)
            .await
            .unwrap(),
        428,
    )
    .await;
    assert_problem(
        patch("application/trickle-ice-sdpfrag", Some("\"stale\"".into()))
            .await
            .unwrap(),
        412,
    )
    .await;
    assert_problem(
        patch("application/trickle-ice-sdpfrag", Some("*".into()))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(
        patch("application/trickle-ice-sdpfrag", Some(etag.clone()))
            .await
            .unwrap()
            .status(),
        204
    );

    // 404: unknown session, session of another call.
    assert_problem(
        server
            .delete("/whip/err-call/0123456789abcdef0123456789abcdef")
            .await,
        404,
    )
    .await;
    let wrong_call = location.replace("/err-call/", "/other-call/");
    assert_problem(server.delete(&wrong_call).await, 404).await;
    assert_problem(
        c.get(server.url("/v1/calls/never-seen"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;

    // The session is real: DELETE works once.
    assert_eq!(server.delete(&location).await.status(), 200);
    assert_problem(server.delete(&location).await, 404).await;

    let metrics = server.metrics().await;
    assert!(metrics.contains("hearken_http_requests_total{method=\"POST\",route=\"/whip/{call_id}\",status=\"415\"} 1"), "{metrics}");
    server.shutdown().await;
}
