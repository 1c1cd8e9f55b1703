//! Consent gates transcription too: under explicit consent, audio from before
//! the participant agreed never reaches the backend. The fake records every
//! byte it receives; the test checks how much and from when.

use std::time::Duration;

use crate::common::{
    Outgoing, TOKEN, WhipClient, locate, speech, transcribing_server, transcript, words_of,
};
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_before_consent_reaches_the_backend() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let server = transcribing_server(&fake, "HEARKEN_TEST_KEY_CONSENT", |c| {
        c.consent.recorder_location = "DE".into();
    })
    .await;
    locate(&server, "gated", "pia", "DE-BE").await;
    let client = WhipClient::connect(&server, "gated", &["pia"]).await;
    let mut talk = speech("speaker-a.opus");
    talk.extend(speech("speaker-b.opus"));
    let total = talk.len() as f64 * 0.02;
    let run = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "pia".into(),
                packets: talk,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = server
        .client
        .post(server.url("/v1/calls/gated/participants/pia/consent"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"decision": "granted", "method": "ui"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client = run.await.unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let log = crate::common::consent_log(&server, "gated").await;
    let t_open = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "gate_changed" && e["open"] == true)
        .and_then(|e| e["t"].as_f64())
        .unwrap();
    let received = fake.record().all_audio().len() as f64 / 32_000.0;
    let t = transcript(&server, "gated").await;
    let words = words_of(&t, "pia");
    println!(
        "consent at {t_open:.2} s; sent {total:.2} s; backend got {received:.2} s; first word {:?}",
        words.first()
    );
    assert!(
        received <= total - t_open + 0.1,
        "only audio after consent reached the backend"
    );
    assert!(received >= total - t_open - 0.6, "and all of it");
    assert!(words.first().unwrap().0 >= t_open - 0.02, "{words:?}");
    server.shutdown().await;
}
