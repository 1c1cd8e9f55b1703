//! Two prompts on one m-line, heard by a real independent client (Debian's
//! headless Chromium through `tests/peers/whip_browser.py`): the
//! participant is said to be in New York, so the notice plays when the call
//! starts; a second into it the provider says she is in Germany, so the
//! consent request is asked for while the notice still plays. It is queued
//! behind the notice on the same m-line (one prompt at a time, RTP time
//! running on), so Chromium hears both whole, one after the other, rather
//! than two streams on top of each other.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TOKEN, TestServer, consent_log, locate, read_opus_packets};

/// The peers' measure of "voiced": 20 ms with RMS above -40 dBFS.
const VOICED_RMS: f64 = 32768.0 / 100.0;

fn voiced_frames(samples: &[i16]) -> Vec<bool> {
    samples
        .chunks_exact(960)
        .map(|c| {
            let power = c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 960.0;
            power.sqrt() > VOICED_RMS
        })
        .collect()
}

/// Voiced seconds of a committed prompt, decoded with libopus.
fn prompt_voiced(name: &str) -> f64 {
    let packets = read_opus_packets(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/prompts/en")
            .join(format!("{name}.opus")),
    );
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    for p in packets {
        let n = decoder.decode(&p, &mut buf, false).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    voiced_frames(&pcm).iter().filter(|v| **v).count() as f64 * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_hears_the_notice_then_the_request_on_one_m_line() {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US-NY".into();
        c.media.workers = 1;
    })
    .await;
    let call = "two-prompts";
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Silence for Chromium's fake microphone: only what it hears matters.
    let wav = dir.path().join("silence.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..48_000 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();

    let mut command = Command::new("python3");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/whip_browser.py"))
        .args(["--browser", "chromium"])
        .args(["--whip", &server.url(&format!("/whip/{call}"))])
        .args(["--token", TOKEN, "--mode", "session"])
        .arg("--audio")
        .arg(&wav)
        .args(["--seconds", "16", "--timeout", "30"])
        .args(["--location", "US-NY", "--stream-id", "nadia"])
        .arg("--out")
        .arg(&out);
    let client = tokio::task::spawn_blocking(move || command.output());

    // Once the notice is playing, the location changes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = consent_log(&server, call).await;
        let notice_started = log["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["event"] == "prompt_scheduled" && e["prompt"] == "notice")
        });
        if notice_started {
            break;
        }
        assert!(Instant::now() < deadline, "the notice never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    locate(&server, call, "nadia", "DE-BE").await;

    let output = client
        .await
        .unwrap()
        .expect("run tests/peers/install.sh chromium");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON result.\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(result["connected"] == true, "{result}");

    let log = consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    let played = |prompt: &str| {
        events
            .iter()
            .find(|e| e["event"] == "prompt_played" && e["prompt"] == prompt)
            .unwrap_or_else(|| panic!("no {prompt} played: {events:?}"))
            .clone()
    };
    let (notice, request) = (played("notice"), played("consent_request"));
    println!("{notice}\n{request}");
    assert_eq!(notice["complete"], true);
    assert_eq!(request["complete"], true);
    let notice_end = notice["end"].as_f64().unwrap();
    assert!(
        request["start"].as_f64().unwrap() >= notice_end - 0.05,
        "the request waited for the notice: {request}"
    );

    // What Chromium heard on its m-line.
    let track = &result["tracks"][0];
    let mid = track["mid"].as_str().unwrap_or("0");
    let mut reader =
        hound::WavReader::open(out.join(format!("received-{mid}.wav"))).expect("the received WAV");
    let heard: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let voiced = voiced_frames(&heard);
    let heard_voiced = voiced.iter().filter(|v| **v).count() as f64 * 0.02;
    let (notice_v, request_v) = (prompt_voiced("notice"), prompt_voiced("consent_request"));
    let first = voiced.iter().position(|v| *v).expect("heard something") as f64 * 0.02;
    let last = voiced.iter().rposition(|v| *v).unwrap() as f64 * 0.02;
    println!(
        "heard {heard_voiced:.2} s voiced from {first:.2} to {last:.2} s; notice {notice_v:.2} s + request {request_v:.2} s voiced"
    );
    // Two prompts on top of each other would sound for about as long as
    // the notice alone.
    assert!(
        heard_voiced >= 0.85 * (notice_v + request_v),
        "both prompts heard whole: {heard_voiced:.2} s of {:.2} s",
        notice_v + request_v
    );
    let span = last - first;
    let expected = request["end"].as_f64().unwrap() - notice["start"].as_f64().unwrap();
    assert!(
        span >= expected - 1.0,
        "one after the other: heard over {span:.2} s, played over {expected:.2} s"
    );
    server.shutdown().await;
}
