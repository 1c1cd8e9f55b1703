//! Start-up: the backend refuses the first connections (429), so the
//! speaker's first words arrive while there is no connection. They are
//! buffered and transcribed once it opens: nothing from the start is lost.

use std::time::Duration;

use crate::common::{
    Outgoing, WhipClient, metric_sum, speech, transcribing_server, transcript, words_of,
};
use hearken_fake_deepgram::{Behavior, FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_words_survive_a_slow_connection() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().reject_next(2, 429));
    let server = transcribing_server(&fake, "HEARKEN_TEST_KEY_STARTUP", |_| {}).await;
    let client = WhipClient::connect(&server, "startup", &["nina"]).await;
    // Follow the live transcript (server-sent events) while the call runs.
    let live = {
        let url = server.url("/v1/calls/startup/transcript/live");
        let http = server.client.clone();
        tokio::spawn(async move {
            // The live stream exists once the first audio reached the sink.
            let mut response = loop {
                let r = http
                    .get(&url)
                    .bearer_auth(crate::common::TOKEN)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(response.headers()["content-type"], "text/event-stream");
            let mut text = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("event: final") {
                    break;
                }
            }
            text
        })
    };
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "nina".into(),
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    })
    .await
    .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(10), live)
        .await
        .unwrap()
        .unwrap();
    assert!(
        live.contains("event: final") && live.contains("\"participant_id\":\"nina\""),
        "{live}"
    );
    assert_eq!(server.delete(&client.location).await.status(), 200);
    let t = transcript(&server, "startup").await;
    let words = words_of(&t, "nina");
    println!(
        "rejected {}, first word {:?}, coverage {}",
        fake.record().rejected.len(),
        words.first(),
        t["coverage"]["nina"]
    );
    assert_eq!(fake.record().rejected.len(), 2);
    assert!(
        words.first().unwrap().0 < 0.3,
        "the first words are there: {words:?}"
    );
    let cov = &t["coverage"]["nina"];
    assert_eq!(cov["acknowledged_seconds"], cov["captured_seconds"]);
    let m = server.metrics().await;
    assert!(
        metric_sum(
            &m,
            "hearken_transcription_reconnects_total{reason=\"rate_limited\"}"
        ) >= 2.0,
        "{m}"
    );
    server.shutdown().await;
}
