//! What the provider says before the call starts survives a first session
//! that fails: Petra's location (Germany: all-party, `explicit`) and her
//! consent, given in the provider's UI, are posted before any session. The
//! first WHIP session never connects and times out; the next one carries
//! the call, and she is recorded from her first frame, because the consent
//! given before the call still stands.

use std::time::Duration;

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, locate, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_details_given_before_the_call_survive_a_failed_first_session() {
    let server = TestServer::start_with(|c| c.media.connect_timeout_ms = 800).await;
    let call = "pre-call";
    locate(&server, call, "petra", "DE-BE").await;
    let r = server
        .client
        .post(server.url(&format!("/v1/calls/{call}/participants/petra/consent")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"decision": "granted", "method": "provider-lobby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["applied"], "pending", "{body}");

    // A first session that never connects.
    let failed = WhipClient::connect(&server, call, &["petra"]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(failed);
    let summary = server.call_json(call).await;
    assert!(
        summary["failed_sessions"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "the first session failed: {summary}"
    );

    let client = WhipClient::connect(&server, call, &["petra"]).await;
    let talk = speech("speaker-a.opus");
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "petra".into(),
                packets: talk,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| pred(e)).cloned();
    let resolved = find(&|e| e["event"] == "participant_resolved").expect("resolved");
    assert_eq!(resolved["jurisdiction"], "DE", "{resolved}");
    let signal = find(&|e| e["event"] == "signal_received").expect("the consent");
    assert_eq!(
        signal["method_given"], "provider-lobby",
        "as given: {signal}"
    );
    let opened = find(&|e| e["event"] == "gate_changed" && e["open"] == true).expect("open");
    assert!(
        opened["t"].as_f64().unwrap() < 0.1,
        "open from the start: {opened}"
    );

    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/petra.opus"));
    let onset = recording.onset(300.0).expect("speech recorded");
    assert!(onset < 0.5, "recorded from her first words: {onset}");
    server.shutdown().await;
}
