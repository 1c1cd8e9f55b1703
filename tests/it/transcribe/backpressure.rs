//! Backpressure: a backend that is down never slows the media path. The
//! per-speaker buffer (1 s here) overflows, the lost audio is counted and
//! shows in coverage, and the call keeps recording in full.

use std::time::Duration;

use crate::common::{
    Outgoing, WhipClient, decode_ogg_opus, metric_sum, speech, transcribing_server,
};
use hearken_fake_deepgram::{Behavior, FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_costs_transcript_not_recording() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().reject_next(10_000, 503));
    let server = transcribing_server(&fake, "HEARKEN_TEST_KEY_BACKPRESSURE", |c| {
        c.transcription.buffer_seconds = 1;
        c.transcription.finish_timeout_ms = 500;
    })
    .await;
    let client = WhipClient::connect(&server, "stalled", &["quin"]).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "quin".into(),
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);
    let summary = server.call_json("stalled").await;
    let p = &summary["participants"][0];
    println!("{p}");
    assert_eq!(p["packets_lost"], 0, "the media path was not slowed");
    let rec = decode_ogg_opus(&server.call_dir("stalled").join("audio/quin.opus"));
    assert!((rec.seconds() - p["recorded_seconds"].as_f64().unwrap()).abs() < 0.05);
    assert!(
        rec.voiced_seconds(300.0) > 1.5,
        "the call was recorded in full"
    );
    let cov = &p["transcription"];
    assert!(cov["lost_seconds"].as_f64().unwrap() > 1.5, "{cov}");
    assert_eq!(cov["acknowledged_seconds"], 0.0);
    let m = server.metrics().await;
    assert!(metric_sum(&m, "hearken_transcription_lost_seconds_total") > 1.5);
    assert!(
        metric_sum(
            &m,
            "hearken_transcription_reconnects_total{reason=\"server_error\"}"
        ) >= 1.0,
        "{m}"
    );
    server.shutdown().await;
}
