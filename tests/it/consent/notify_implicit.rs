//! Notify mode loses nothing: two participants in New York (one-party, mode
//! `notify`), with the recorder there too, talk from their first second.
//! The notice plays to both, yet every second they speak is recorded, from
//! the first frame; staying for the grace period after the notice is still
//! logged as implicit consent.

use std::time::Duration;

use crate::common::{
    Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, decode_packets, metric_sum, speech,
};
use str0m::media::Direction;

/// RMS above which a 20 ms window counts as speech (the clips' speech is
/// thousands; Opus silence decodes to near zero).
const VOICED: f64 = 300.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_new_yorkers_are_recorded_from_their_first_second() {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US-NY".into();
        c.consent.unknown_location_mode = None;
        c.consent.grace_period_ms = 1_000;
    })
    .await;
    let call = "notify-no-loss";
    for who in ["hank", "nina"] {
        let r = server
            .client
            .put(server.url(&format!("/v1/calls/{call}/participants/{who}")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"location": {"country": "US", "subdivision": "US-NY"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["applied"],
            "pending"
        );
    }

    let client =
        WhipClient::connect_dir(&server, call, &["hank", "nina"], Direction::SendRecv, |s| s).await;
    // About 9 s each: past the notice (6.2 s) and the grace period.
    let hank: Vec<_> = ["speaker-a.opus", "speaker-b.opus", "speaker-a.opus"]
        .iter()
        .flat_map(|n| speech(n))
        .collect();
    let nina: Vec<_> = ["speaker-b.opus", "speaker-a.opus", "speaker-b.opus"]
        .iter()
        .flat_map(|n| speech(n))
        .collect();
    let (hank_sent, nina_sent) = (decode_packets(&hank), decode_packets(&nina));
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![
                Outgoing {
                    stream_id: "hank".into(),
                    packets: hank,
                    start_after: Duration::ZERO,
                },
                Outgoing {
                    stream_id: "nina".into(),
                    packets: nina,
                    start_after: Duration::ZERO,
                },
            ],
            Duration::from_millis(200),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| pred(e)).cloned();
    let mode = find(&|e| e["event"] == "mode_evaluated").unwrap();
    assert_eq!(mode["mode"], "notify", "{mode}");
    let played = find(&|e| e["event"] == "prompt_played" && e["prompt"] == "notice").unwrap();
    assert_eq!(played["audible"], true);
    let notice_end = played["end"].as_f64().unwrap();
    for who in ["hank", "nina"] {
        let consented = find(&|e| {
            e["event"] == "state_changed"
                && e["participant"] == who
                && e["to"]["method"] == "implicit"
        })
        .unwrap();
        let t_consent = consented["t"].as_f64().unwrap();
        assert!(
            (t_consent - (notice_end + 1.0)).abs() < 0.05,
            "{who}: implicit consent one grace after the notice: {t_consent} vs {notice_end}"
        );
        let opened =
            find(&|e| e["event"] == "gate_changed" && e["participant"] == who && e["open"] == true)
                .unwrap();
        assert!(
            opened["t"].as_f64().unwrap() < 0.1,
            "{who}: the gate is open from the start under notify: {opened}"
        );
    }

    let mut summary = Vec::new();
    for (who, sent) in [("hank", &hank_sent), ("nina", &nina_sent)] {
        let recording = decode_ogg_opus(&server.call_dir(call).join(format!("audio/{who}.opus")));
        let (spoken_s, recorded_s) = (
            sent.voiced_seconds(VOICED),
            recording.voiced_seconds(VOICED),
        );
        let (sent_onset, onset) = (
            sent.onset(VOICED).unwrap(),
            recording.onset(VOICED).unwrap(),
        );
        summary.push(format!(
            "{who}: spoke {spoken_s:.2} s (first at {sent_onset:.2} s), recorded {recorded_s:.2} s (first at {onset:.2} s)"
        ));
        assert!(
            recorded_s >= spoken_s - 0.1,
            "{who}: every second spoken is recorded: {recorded_s} of {spoken_s}"
        );
        assert!(
            onset <= sent_onset + 0.3,
            "{who}: the first words are recorded: {onset} vs {sent_onset}"
        );
    }
    println!("{}", summary.join("\n"));

    let m = server.metrics().await;
    assert_eq!(metric_sum(&m, "hearken_consent_frames_withheld_total"), 0.0);
    assert_eq!(
        metric_sum(
            &m,
            "hearken_consent_prompts_played_total{prompt=\"notice\"}"
        ),
        2.0,
        "one notice to each m-line"
    );
    server.shutdown().await;
}
