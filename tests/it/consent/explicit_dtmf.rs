//! Explicit consent, end to end over loopback: the recorder is in Germany
//! (explicit, all-party). A real str0m client offers sendrecv audio, so it
//! hears the bot: the test checks the audio it received is the consent
//! request prompt, packet for packet. It talks from the start, presses DTMF 1
//! after the prompt, and talks on; only audio after the key press is in the
//! recording, and the audit log tells the story.

use std::time::Duration;

use crate::common::{
    Outgoing, TestServer, WhipClient, decode_ogg_opus, locate, read_opus_packets, speech,
};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_consent_opens_the_gate_from_that_moment() {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "DE".into();
        c.consent.grace_period_ms = 5_000;
    })
    .await;
    let call = "explicit-dtmf";
    locate(&server, call, "greta", "DE-BE").await;
    let client =
        WhipClient::connect_dir(&server, call, &["greta"], Direction::SendRecv, |s| s).await;
    // Speech from the start (clip A, then clip B), DTMF 1 0.7 s after the
    // consent request (its length from the prompt file).
    let mut talk = speech("speaker-a.opus");
    talk.extend(speech("speaker-b.opus"));
    talk.extend(speech("speaker-a.opus"));
    talk.extend(speech("speaker-b.opus"));
    let request_packets = read_opus_packets(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/prompts/en/consent_request.opus"),
    )
    .len() as u64;
    let dtmf_at = Duration::from_millis(request_packets * 20 + 700);
    let client = tokio::task::spawn_blocking(move || {
        client.run_with_dtmf(
            vec![Outgoing {
                stream_id: "greta".into(),
                packets: talk,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
            vec![(dtmf_at, 1)],
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    // What the client heard is the consent request, byte for byte, then thanks.
    let prompt = read_opus_packets(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/prompts/en/consent_request.opus"),
    );
    let heard: Vec<&Vec<u8>> = client.received.iter().map(|(_, p)| p).collect();
    assert!(
        heard.len() >= prompt.len(),
        "heard {} packets, prompt has {}",
        heard.len(),
        prompt.len()
    );
    assert!(
        heard.iter().zip(prompt.iter()).all(|(a, b)| *a == b),
        "the first packets heard are the consent request prompt"
    );
    let thanks = read_opus_packets(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("media/prompts/en/thanks.opus"),
    );
    assert!(
        heard
            .windows(thanks.len())
            .any(|w| w.iter().zip(&thanks).all(|(a, b)| *a == b)),
        "thanks was played after the key press"
    );
    let first_heard = client.received.first().unwrap().0;
    assert!(
        first_heard < Duration::from_millis(500),
        "prompt starts on join: {first_heard:?}"
    );

    // Only audio after the key press was recorded.
    let summary = server.call_json(call).await;
    assert_eq!(summary["consent_mode"], "explicit", "{summary}");
    let p = &summary["participants"][0];
    assert_eq!(p["consent"]["state"], "left");
    assert!(p["frames_withheld"].as_u64().unwrap() > 200, "{p}");
    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/greta.opus"));
    let onset = recording.onset(300.0).unwrap();
    println!(
        "recording {:.2} s, speech onset {onset:.2} s, dtmf at {:.2} s, withheld {} frames",
        recording.seconds(),
        dtmf_at.as_secs_f64(),
        p["frames_withheld"]
    );
    assert!(
        recording.rms(0.0, dtmf_at.as_secs_f64()) < 50.0,
        "nothing before consent"
    );
    assert!(
        onset >= dtmf_at.as_secs_f64() - 0.05,
        "speech starts at the key press: {onset}"
    );
    assert!(onset < dtmf_at.as_secs_f64() + 1.0, "{onset}");
    assert!(recording.voiced_seconds(300.0) > 1.5);
    // The bot's own prompts are never captured as the participant's audio.
    let recorded = read_opus_packets(&server.call_dir(call).join("audio/greta.opus"));
    assert!(
        !recorded
            .iter()
            .any(|p| prompt.contains(p) || thanks.contains(p)),
        "no prompt packet in the recording"
    );

    // The audit log tells who consented, how and when, and in what order.
    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    for e in events {
        println!("{e}");
    }
    let position = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().position(pred);
    let mode = position(&|e| e["event"] == "mode_evaluated" && e["mode"] == "explicit").unwrap();
    let played = position(&|e| {
        e["event"] == "prompt_played" && e["prompt"] == "consent_request" && e["audible"] == true
    })
    .unwrap();
    let consented = position(&|e| {
        e["event"] == "state_changed"
            && e["to"]["state"] == "consented"
            && e["to"]["method"] == "dtmf"
    })
    .unwrap();
    let opened = position(&|e| e["event"] == "gate_changed" && e["open"] == true).unwrap();
    assert!(mode < played && played < consented && consented < opened);
    let t_open = events[opened]["t"].as_f64().unwrap();
    assert!(
        (t_open - dtmf_at.as_secs_f64()).abs() < 0.5,
        "gate opened at {t_open}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["rules_version"].is_null() || e["rules_version"].is_string())
    );
    assert!(
        events
            .iter()
            .all(|e| e["at"].is_string() && e["call_id"] == call)
    );
    server.shutdown().await;
}
