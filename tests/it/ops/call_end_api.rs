//! `POST /v1/calls/{call_id}/end` ends a call in progress: the answer is the
//! final `call.json`, the recording is closed with an EOS page, the session
//! is gone, the call is listed as ended, and the call id cannot be reused.

use std::time::Duration;

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, offer_sdp, speech};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_call_by_api() {
    let server = TestServer::start().await;
    let call = "ended-by-api";
    let client = WhipClient::connect(&server, call, &["erin"]).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "erin".into(),
                packets: speech("speaker-b.opus")[..60].to_vec(),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(100),
        )
    })
    .await
    .unwrap();

    let listed: serde_json::Value = crate::common::get_json(&server, "/v1/calls").await;
    assert_eq!(listed["calls"][0]["call_id"], call, "{listed}");
    assert_eq!(listed["calls"][0]["state"], "active", "{listed}");

    let response = server
        .client
        .post(server.url(&format!("/v1/calls/{call}/end")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let summary: serde_json::Value = response.json().await.unwrap();
    assert_eq!(summary["end_reason"], "api", "{summary}");
    assert!(summary["ended_at"].is_string());
    let recorded = summary["participants"][0]["recorded_seconds"]
        .as_f64()
        .unwrap();

    // Final on disk by the time the answer came.
    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/erin.opus"));
    assert_eq!(recording.pages_with_eos, 1);
    assert!((recording.seconds() - recorded).abs() < 0.05);
    assert!(recording.seconds() > 1.0);

    assert_eq!(server.delete(&client.location).await.status(), 404);
    let listed: serde_json::Value = crate::common::get_json(&server, "/v1/calls").await;
    assert_eq!(listed["calls"][0]["state"], "ended", "{listed}");

    // The recordings are final: the id is not reused.
    let offer = offer_sdp(&["late"], Direction::SendOnly);
    assert_eq!(server.post_offer(call, &offer).await.status(), 409);
    // Ending it again is harmless and shows the same result.
    let again: serde_json::Value =
        crate::common::post_empty(&server, &format!("/v1/calls/{call}/end")).await;
    assert_eq!(again["ended_at"], summary["ended_at"]);
    server.shutdown().await;
}
