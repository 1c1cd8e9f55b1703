//! The announcement in the recording: where the rules require it (US-WA),
//! the notice the bot played is in the call's recording as a track of its
//! own, `audio/hearken-prompts.opus`, aligned to call time zero and listed
//! in `call.json`; a call in New York (no such requirement) has none.

use std::path::Path;
use std::time::Duration;

use crate::common::{
    Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, read_opus_packets, speech,
};
use str0m::media::Direction;

/// Runs a one-participant call whose participant is at `subdivision`:
/// details first, then a sendrecv session that talks and stays 8 s (the
/// whole notice). Returns the server, to read what it kept.
async fn call_from(subdivision: &str, call: &str) -> TestServer {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US-NY".into();
    })
    .await;
    let r = server
        .client
        .put(server.url(&format!("/v1/calls/{call}/participants/wes")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "location": {"country": "US", "subdivision": subdivision}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client = WhipClient::connect_dir(&server, call, &["wes"], Direction::SendRecv, |s| s).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "wes".into(),
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_secs(8),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);
    server
}

fn notice_prompt() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("media/prompts/en/notice.opus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_washington_call_records_the_notice_as_its_own_aligned_track() {
    let call = "announce-wa";
    let server = call_from("US-WA", call).await;

    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    let played = events
        .iter()
        .find(|e| e["event"] == "prompt_played" && e["prompt"] == "notice")
        .expect("the notice was played");
    assert_eq!(played["audible"], true, "{played}");
    let notice_start = played["start"].as_f64().unwrap();

    // The notice's length, from the prompt file: 20 ms per packet.
    let notice_seconds = read_opus_packets(&notice_prompt()).len() as f64 * 0.02;
    assert!(notice_seconds > 3.0, "{notice_seconds}");

    let summary = server.call_json(call).await;
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    let track = &summary["announcement_track"];
    assert_eq!(track["file"], "audio/hearken-prompts.opus", "{track}");
    assert!(track["prompts"].as_u64().unwrap() >= 1, "{track}");
    let prompt_seconds = track["prompt_seconds"].as_f64().unwrap();
    assert!(
        prompt_seconds >= notice_seconds - 0.001,
        "the whole notice: {prompt_seconds} s of {notice_seconds} s"
    );
    let recorded = track["recorded_seconds"].as_f64().unwrap();
    assert!(
        recorded >= notice_start + notice_seconds - 0.05,
        "covers the notice from its call time: {recorded} s"
    );
    // Not a participant: consent and transcription never see it.
    let participants = summary["participants"].as_array().unwrap();
    assert!(
        participants.iter().all(|p| p["id"] == "wes"),
        "{participants:?}"
    );

    let path = server.call_dir(call).join("audio/hearken-prompts.opus");
    let decoded = decode_ogg_opus(&path);
    assert_eq!(decoded.pages_with_eos, 1, "a finished Ogg Opus file");
    assert!(
        decoded.seconds() >= notice_start + notice_seconds - 0.05,
        "{} s",
        decoded.seconds()
    );
    // The notice's speech, where it was played: the track's first sound is
    // the prompt file's first sound, shifted to the notice's call time.
    let prompt = decode_ogg_opus(&notice_prompt());
    let prompt_onset = prompt.onset(300.0).expect("the notice speaks");
    let onset = decoded.onset(300.0).expect("the track speaks");
    println!(
        "notice at {notice_start:.3} s for {notice_seconds:.2} s; track onset {onset:.2} s, prompt onset {prompt_onset:.2} s, track {:.2} s",
        decoded.seconds()
    );
    assert!(
        (onset - (notice_start + prompt_onset)).abs() <= 0.1,
        "aligned: onset {onset} vs {notice_start} + {prompt_onset}"
    );
    let voiced = decoded.voiced_seconds(300.0);
    let prompt_voiced = prompt.voiced_seconds(300.0);
    assert!(
        (voiced - prompt_voiced).abs() <= 0.2,
        "the notice's speech, once: {voiced} s vs {prompt_voiced} s"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_york_call_has_no_announcement_track() {
    let call = "announce-ny";
    let server = call_from("US-NY", call).await;
    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "prompt_played" && e["prompt"] == "notice"),
        "the notice plays in New York too"
    );
    let summary = server.call_json(call).await;
    assert!(
        summary.get("announcement_track").is_none(),
        "{}",
        summary["announcement_track"]
    );
    assert!(
        !server
            .call_dir(call)
            .join("audio/hearken-prompts.opus")
            .exists()
    );
    server.shutdown().await;
}
