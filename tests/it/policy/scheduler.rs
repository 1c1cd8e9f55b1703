//! The scheduler sends a signed join request to the provider's webhook
//! `join_lead_seconds` before a meeting recorded by the assistant method
//! starts, and retries when the webhook fails; a metadata-only meeting shows
//! up in the call index.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{TOKEN, TestServer};
use axum::http::{HeaderMap, StatusCode};

type Seen = Arc<Mutex<Vec<(Instant, HeaderMap, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_requests_are_signed_timed_and_retried() {
    // The provider's webhook: fails once, then accepts.
    let seen: Seen = Arc::default();
    let hook = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    s.push((Instant::now(), headers, body.to_vec()));
                    if s.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let settings = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy/settings.toml");
    let server = TestServer::start_with_secrets(
        move |c| {
            c.policy.settings_file = Some(settings);
            c.policy.webhook_url = Some(hook_url);
            c.policy.webhook_secret_env = "HEARKEN_TEST_WEBHOOK_SECRET".into();
            c.policy.join_lead_seconds = 1;
            c.policy.public_url = "http://hearken.test:8080".into();
        },
        hearken::server::Secrets::from_pairs([("HEARKEN_TEST_WEBHOOK_SECRET", "s3cret")]),
    )
    .await;

    let start = chrono::Utc::now() + chrono::Duration::seconds(2);
    let meeting = serde_json::json!({
        "uid": "zoom-1", "title": "Renewal call",
        "start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(30)).to_rfc3339(),
        "organizer": "alice@example.com", "attendees": ["klaus@client.de"],
        "links": ["https://acme.zoom.us/j/88123456789"]
    });
    let posted_at = Instant::now();
    let r = server
        .client
        .post(server.url("/v1/meetings?call_id=renewal"))
        .bearer_auth(TOKEN)
        .json(&meeting)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let room = serde_json::json!({
        "uid": "room-1", "title": "Office move planning",
        "start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(30)).to_rfc3339(),
        "organizer": "bob@example.com", "attendees": ["facilities@movers.example.net"],
        "location": "Room 4.2"
    });
    let r: serde_json::Value = server
        .client
        .post(server.url("/v1/meetings?call_id=office-move"))
        .bearer_auth(TOKEN)
        .json(&room)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["decision"], "metadata_only", "{r}");
    assert!(server.call_dir("office-move").join("meeting.json").exists());

    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "join request not retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let first_after = seen[0].0 - posted_at;
    println!(
        "first attempt {first_after:?} after posting (meeting starts in 2 s, lead 1 s); retry {:?} later",
        seen[1].0 - seen[0].0
    );
    assert!(
        first_after >= Duration::from_millis(700) && first_after < Duration::from_millis(1600),
        "{first_after:?}"
    );
    for (_, headers, body) in &seen {
        let ts: i64 = headers["x-hearken-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            headers["x-hearken-signature"].to_str().unwrap(),
            hearken::control::scheduler::sign(b"s3cret", ts, body)
        );
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["type"], "join_request");
        assert_eq!(json["call_id"], "renewal");
        assert_eq!(json["whip_url"], "http://hearken.test:8080/whip/renewal");
        assert_eq!(json["provider"], "zoom");
    }
    let listed: serde_json::Value = crate::common::get_json(&server, "/v1/meetings").await;
    let renewal = listed["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["call_id"] == "renewal")
        .unwrap()
        .clone();
    assert_eq!(renewal["join_request"], "delivered", "{renewal}");

    let calls: serde_json::Value = crate::common::get_json(&server, "/v1/calls").await;
    assert!(
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["call_id"] == "office-move" && c["state"] == "metadata_only"),
        "{calls}"
    );
    server.shutdown().await;
}
