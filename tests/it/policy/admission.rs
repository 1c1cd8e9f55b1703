//! Meetings pushed by a provider are decided by the company's recording
//! policy, and WHIP admission follows the decision: a call of a meeting
//! decided `record` is answered; one decided `skip` (or unknown, when the
//! policy refuses unknown calls) gets 403 with the reason.

use crate::common::{TOKEN, TestServer, offer_sdp};
use str0m::media::Direction;

#[tokio::test]
async fn whip_admission_follows_the_meeting_decision() {
    let settings = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy/settings.toml");
    let server = TestServer::start_with(move |c| {
        c.policy.settings_file = Some(settings);
        c.policy.unknown_calls = hearken::config::UnknownCalls::Refuse;
    })
    .await;
    let meetings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/policy/meetings.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let post = |meeting: &serde_json::Value, call_id: &str| {
        server
            .client
            .post(server.url(&format!("/v1/meetings?call_id={call_id}")))
            .bearer_auth(TOKEN)
            .json(meeting)
            .send()
    };
    let renewal: serde_json::Value = post(&meetings[0], "renewal")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renewal["decision"], "record", "{renewal}");
    assert_eq!(renewal["method"], "assistant");
    let dry_run: serde_json::Value = post(&meetings[1], "dry-run")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry_run["decision"], "skip", "{dry_run}");

    let offer = || offer_sdp(&["x"], Direction::SendOnly);
    assert_eq!(server.post_offer("renewal", &offer()).await.status(), 201);
    let refused = server.post_offer("dry-run", &offer()).await;
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.unwrap();
    println!("{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("internal"),
        "{body}"
    );
    let unknown = server.post_offer("never-heard-of-it", &offer()).await;
    assert_eq!(unknown.status(), 403);

    let listed: serde_json::Value = crate::common::get_json(
        &server,
        "/v1/meetings?from=2025-03-01T00:00:00Z&to=2025-04-01T00:00:00Z",
    )
    .await;
    let decisions: Vec<&str> = listed["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["record", "skip"]);

    // A malformed meeting names the field.
    let bad = server
        .client
        .post(server.url("/v1/meetings"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"uid": "x", "title": "t", "start": "yesterday", "end": "2025-03-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.unwrap();
    assert!(text.contains("start"), "{text}");
    server.shutdown().await;
}
