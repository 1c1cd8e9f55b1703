//! A call ended mid-sentence still gets its final words: the end of the call
//! finalizes and closes each stream and waits (bounded) for the last results.

use std::time::Duration;

use crate::common::{Outgoing, WhipClient, speech, transcribing_server, transcript, words_of};
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_mid_sentence_keeps_the_last_words() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let server = transcribing_server(&fake, "HEARKEN_TEST_KEY_SHUTDOWN", |_| {}).await;
    let client = WhipClient::connect(&server, "cut", &["omar"]).await;
    let mut talk = speech("speaker-a.opus");
    talk.extend(speech("speaker-b.opus"));
    let run = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "omar".into(),
                packets: talk,
                start_after: Duration::ZERO,
            }],
            Duration::ZERO,
        )
    });
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let summary: serde_json::Value = crate::common::post_empty(&server, "/v1/calls/cut/end").await;
    let _ = run.await;
    let started =
        chrono::DateTime::parse_from_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    let ended =
        chrono::DateTime::parse_from_rfc3339(summary["ended_at"].as_str().unwrap()).unwrap();
    let call_seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    let t = transcript(&server, "cut").await;
    let words = words_of(&t, "omar");
    let last = words.last().unwrap();
    println!(
        "call {call_seconds:.2} s, last word {last:?}, coverage {}",
        t["coverage"]["omar"]
    );
    assert!(
        call_seconds - last.1 < 0.6,
        "the last words made it: {last:?} vs {call_seconds}"
    );
    let cov = &t["coverage"]["omar"];
    assert_eq!(cov["acknowledged_seconds"], cov["captured_seconds"]);
    assert_eq!(
        summary["participants"][0]["transcription"]["acknowledged_seconds"],
        cov["acknowledged_seconds"]
    );
    server.shutdown().await;
}
