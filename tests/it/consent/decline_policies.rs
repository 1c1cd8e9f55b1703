//! A decline in the middle of a call, under each policy:
//! `stop` keeps what was captured and captures nothing more;
//! `stop_and_discard` leaves no audio of the call on disk (the audit log
//! stays); `exclude_participant` stops only the decliner.

use std::time::Duration;

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, locate, speech};

async fn decline(server: &TestServer, call: &str, who: &str) {
    let r = server
        .client
        .post(server.url(&format!("/v1/calls/{call}/participants/{who}/consent")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"decision": "declined", "method": "ui"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Two participants talk for ~3.4 s; `ivy` declines at 1.5 s.
async fn run_call(policy: &str) -> (TestServer, f64) {
    let policy = policy.parse().expect("a decline policy");
    let server = TestServer::start_with(|c| c.consent.decline_policy = policy).await;
    let call = "declined";
    // Known to be in New York (notify): captured from the first frame, so
    // there is something for each policy to keep or delete.
    for who in ["ivy", "jack"] {
        locate(&server, call, who, "US-NY").await;
    }
    let ivy = WhipClient::connect(&server, call, &["ivy"]).await;
    let jack = WhipClient::connect(&server, call, &["jack"]).await;
    let run = |client: WhipClient, id: &str| {
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            client.run(
                vec![Outgoing {
                    stream_id: id,
                    packets: speech("speaker-a.opus"),
                    start_after: Duration::ZERO,
                }],
                Duration::from_millis(200),
            )
        })
    };
    let ivy = run(ivy, "ivy");
    let jack = run(jack, "jack");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    decline(&server, call, "ivy").await;
    let (ivy, jack) = (ivy.await.unwrap(), jack.await.unwrap());
    server.delete(&ivy.location).await;
    server.delete(&jack.location).await;
    let log = crate::common::consent_log(&server, call).await;
    let declined_at = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "state_changed" && e["to"]["state"] == "declined")
        .and_then(|e| e["t"].as_f64())
        .unwrap();
    (server, declined_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_what_was_captured() {
    let (server, t) = run_call("stop").await;
    let dir = server.call_dir("declined").join("audio");
    for who in ["ivy", "jack"] {
        let r = decode_ogg_opus(&dir.join(format!("{who}.opus")));
        println!(
            "stop: {who} voiced before {t:.2} s: {:.2}, after: {:.2}",
            r.rms(0.0, t),
            r.rms(t + 0.1, 10.0)
        );
        assert!(r.rms(0.0, t) > 300.0, "{who}: kept before the decline");
        assert!(
            r.rms(t + 0.1, 10.0) < 50.0,
            "{who}: nothing after the decline"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_discard_leaves_no_audio() {
    let (server, _) = run_call("stop_and_discard").await;
    let call_dir = server.call_dir("declined");
    assert!(
        !call_dir.join("audio").exists(),
        "no audio of the call is left"
    );
    let summary = server.call_json("declined").await;
    for p in summary["participants"].as_array().unwrap() {
        assert_eq!(p["recorded_seconds"], 0.0);
    }
    let log = std::fs::read_to_string(call_dir.join("consent.jsonl")).unwrap();
    assert!(
        log.contains("\"event\":\"discarded\""),
        "the discard is in the audit log"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_participant_stops_only_the_decliner() {
    let (server, t) = run_call("exclude_participant").await;
    let dir = server.call_dir("declined").join("audio");
    let ivy = decode_ogg_opus(&dir.join("ivy.opus"));
    let jack = decode_ogg_opus(&dir.join("jack.opus"));
    assert!(ivy.rms(0.0, t) > 300.0);
    assert!(
        ivy.rms(t + 0.1, 10.0) < 50.0,
        "ivy is not captured after declining"
    );
    assert!(
        jack.rms(t + 0.1, 3.3) > 300.0,
        "jack goes on being captured"
    );
    server.shutdown().await;
}
