//! Notify mode: a participant in the US (one-party; Hearken's default there
//! is `notify`) hears the recording notice and, by staying on the call for
//! the grace period after it ends, consents implicitly. Nothing before that
//! moment is recorded.

use std::time::Duration;

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, metric_sum, speech};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staying_after_the_notice_is_implicit_consent() {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US".into();
        c.consent.grace_period_ms = 1_000;
    })
    .await;
    let call = "notify-implicit";
    // Details arrive before the participant's audio does.
    let r = server
        .client
        .put(server.url(&format!("/v1/calls/{call}/participants/hank")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "display_name": "Hank", "email": "hank@example.com",
            "location": {"country": "US", "subdivision": "US-NY"}, "internal": false, "capture": "default"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["applied"],
        "pending"
    );

    let client =
        WhipClient::connect_dir(&server, call, &["hank"], Direction::SendRecv, |s| s).await;
    let mut talk = speech("speaker-a.opus");
    talk.extend(speech("speaker-b.opus"));
    talk.extend(speech("speaker-a.opus"));
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "hank".into(),
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
    for e in events {
        println!("{e}");
    }
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| pred(e)).cloned();
    let mode = find(&|e| e["event"] == "mode_evaluated").unwrap();
    assert_eq!(mode["mode"], "notify", "{mode}");
    let played = find(&|e| e["event"] == "prompt_played" && e["prompt"] == "notice").unwrap();
    assert_eq!(played["audible"], true);
    let notice_end = played["end"].as_f64().unwrap();
    let consented =
        find(&|e| e["event"] == "state_changed" && e["to"]["method"] == "implicit").unwrap();
    let t_consent = consented["t"].as_f64().unwrap();
    assert!(
        (t_consent - (notice_end + 1.0)).abs() < 0.01,
        "implicit exactly grace after the notice: {t_consent} vs {notice_end}"
    );
    let opened = find(&|e| e["event"] == "gate_changed" && e["open"] == true).unwrap();
    let t_open = opened["t"].as_f64().unwrap();
    assert!(
        t_open >= t_consent && t_open < t_consent + 0.3,
        "gate opens on time: {t_open}"
    );

    // Heard the notice: as many packets as the prompt has, at least.
    assert!(
        client.received.len() >= 280,
        "heard {} packets",
        client.received.len()
    );

    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/hank.opus"));
    let onset = recording.onset(300.0).unwrap();
    println!(
        "notice ended {notice_end:.2} s, implicit consent {t_consent:.2} s, gate open {t_open:.2} s, speech onset {onset:.2} s, recording {:.2} s",
        recording.seconds()
    );
    assert!(
        recording.rms(0.0, t_consent - 0.05) < 50.0,
        "nothing before consent"
    );
    assert!(
        onset >= t_consent - 0.05 && onset < t_consent + 1.0,
        "{onset}"
    );

    let m = server.metrics().await;
    let closed = metric_sum(&m, "hearken_consent_gate_seconds_total{state=\"closed\"}");
    assert!(
        (closed - t_open).abs() < 0.1,
        "gate closed {closed} s until {t_open}"
    );
    assert!(metric_sum(&m, "hearken_consent_gate_seconds_total{state=\"open\"}") > 2.0);
    assert_eq!(
        metric_sum(
            &m,
            "hearken_consent_prompts_played_total{prompt=\"notice\"}"
        ),
        1.0
    );
    assert!(metric_sum(&m, "hearken_consent_frames_withheld_total") > 300.0);
    assert_eq!(
        metric_sum(&m, "hearken_consent_transitions_total{state=\"consented\"}"),
        1.0
    );
    server.shutdown().await;
}
