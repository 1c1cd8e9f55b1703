//! Speech made at test time: espeak-ng says a phrase, sox resamples it to
//! 48 kHz, libopus encodes it as a browser would send it. Both tools and
//! the recogniser's English model come from Debian
//! (`tests/peers/install.sh speech`).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use str0m::media::Direction;

use super::{Outgoing, TOKEN, TestServer, WhipClient, consent_log, read_opus_packets};

/// Whether espeak-ng, sox and the English model are here. Missing ones skip
/// the test with a message, except in CI (`CI` set), where they are a failure.
pub fn speech_tools_available() -> bool {
    let mut missing = Vec::new();
    for tool in ["espeak-ng", "sox"] {
        let ran = Command::new(tool).arg("--version").output();
        if !ran.is_ok_and(|o| o.status.success()) {
            missing.push(format!("{tool} (Debian package {tool})"));
        }
    }
    if let Err(e) = hearken_verbal::ModelFiles::find("en") {
        missing.push(e.to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let why = missing.join("; ");
    assert!(
        std::env::var_os("CI").is_none(),
        "speech tests need {why}; scripts/test.sh installs it"
    );
    eprintln!("SKIPPED: {why} (run tests/peers/install.sh speech)");
    false
}

/// `text` said by espeak-ng (voice `en-us`, 150 words a minute) as 48 kHz
/// mono PCM.
pub fn espeak(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng");
    assert!(status.success(), "espeak-ng failed for {text:?}");
    // Repeatable dither (`-R`): the same phrase gives the same samples on
    // every run.
    let out = Command::new("sox")
        .arg("-R")
        .arg(&wav)
        .args([
            "-t", "raw", "-r", "48000", "-e", "signed", "-b", "16", "-c", "1", "-",
        ])
        .output()
        .expect("run sox");
    assert!(out.status.success(), "sox failed");
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// 48 kHz mono PCM as 20 ms Opus packets (VoIP, 24 kbit/s).
pub fn opus_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut encoder =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(24_000))
        .expect("bitrate");
    let mut out = [0u8; 1500];
    pcm.chunks(960)
        .map(|chunk| {
            let mut frame = [0i16; 960];
            frame[..chunk.len()].copy_from_slice(chunk);
            let n = encoder.encode(&frame, &mut out).expect("encode");
            out[..n].to_vec()
        })
        .collect()
}

/// How a spoken answer to the consent request went.
pub struct SpokenAnswer {
    pub server: TestServer,
    pub call: String,
    /// The audit log's events.
    pub events: Vec<Value>,
    /// The final `call.json`.
    pub summary: Value,
}

/// A call in which `who`, in Germany (explicit consent), hears the consent
/// request and then answers it out loud with `text`: a str0m WebRTC client
/// sends the espeak-ng speech as Opus over loopback, starting a second after
/// the request finished. Returns once the recogniser's answer is in the
/// audit log (or 30 s passed) and the call ended.
pub async fn answer_out_loud(call: &str, who: &str, text: &str) -> SpokenAnswer {
    let answer = espeak(text);
    let turn = [vec![0i16; 24_000], answer, vec![0i16; 96_000]].concat();
    let packets = opus_packets(&turn);
    let server = TestServer::start_with(|c| {
        c.consent.verbal = true;
    })
    .await;
    // The participant's location, given before the call starts.
    let put = server
        .client
        .put(server.url(&format!("/v1/calls/{call}/participants/{who}")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"location": {"country": "DE"}}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "details: {}", put.status());
    let request = read_opus_packets(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/prompts/en/consent_request.opus"),
    );
    let request_length = Duration::from_millis(20 * request.len() as u64);
    let client = WhipClient::connect_dir(&server, call, &[who], Direction::SendRecv, |s| s).await;
    let speaking = Duration::from_millis(20 * packets.len() as u64);
    let stream_id = who.to_owned();
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id,
                packets,
                start_after: request_length + Duration::from_secs(1),
            }],
            speaking + Duration::from_millis(500),
        )
    })
    .await
    .unwrap();
    // The recogniser answers within a few seconds, on a busy machine too.
    let mut events = Vec::new();
    for _ in 0..60 {
        let log = consent_log(&server, call).await;
        events = log["events"].as_array().cloned().unwrap_or_default();
        if events
            .iter()
            .any(|e| e["event"] == "signal_received" && e["method"] == "verbal")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(server.delete(&client.location).await.status(), 200);
    let summary = server.call_json(call).await;
    let log = consent_log(&server, call).await;
    if let Some(all) = log["events"].as_array() {
        events = all.clone();
    }
    for e in &events {
        println!("{e}");
    }
    SpokenAnswer {
        server,
        call: call.to_owned(),
        events,
        summary,
    }
}
