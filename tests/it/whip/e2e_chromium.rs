//! End to end with a real, independent WebRTC client: Debian's headless
//! Chromium, its fake microphone playing a speech WAV, loads
//! `tests/e2e/whip-client.html`, which does WHIP against the server, sends
//! ~3 s of audio and DELETEs. The recording must exist, be the call's length
//! within 0.5 s, and carry the speech.
//!
//! Chromium must be installed (`scripts/test.sh` installs Debian's package).
//! Run it in a loopback-only network namespace (the test script does), so
//! Chromium gathers no candidate but 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TOKEN, TestServer, decode_ogg_opus, read_opus_packets};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Decodes the test speech clip to a 16-bit mono 48 kHz WAV for Chromium's
/// fake audio device.
fn speech_wav(path: &Path) {
    let packets =
        read_opus_packets(&Path::new(env!("CARGO_MANIFEST_DIR")).join("media/test/speaker-a.opus"));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    let mut buf = vec![0i16; 5760];
    for p in packets {
        let n = decoder.decode(&p, &mut buf, false).unwrap();
        for &s in &buf[..n] {
            wav.write_sample(s).unwrap();
        }
    }
    wav.finalize().unwrap();
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs Chromium on the WHIP page until it logs `WHIP done` (Ok) or
/// `WHIP error` (Err); returns the page's log lines.
fn run_chromium(whip_url: &str, wav: &Path, profile: &Path) -> Result<Vec<String>, Vec<String>> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/whip-client.html");
    let url = format!(
        "file://{}?whip={}&token={}&seconds=3",
        page.display(),
        url_encode(whip_url),
        TOKEN
    );
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            &format!("--use-file-for-fake-audio-capture={}", wav.display()),
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--allow-loopback-in-peer-connection",
            &format!("--user-data-dir={}", profile.display()),
            "--enable-logging=stderr",
            "--v=0",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {CHROMIUM} ({e}); run scripts/test.sh, which installs it")
        });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("\"WHIP ") {
                let msg = line[at + 1..].split('"').next().unwrap_or("").to_owned();
                if tx.send(msg).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut log = Vec::new();
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(msg) => {
                let done = msg == "WHIP done";
                let error = msg.starts_with("WHIP error");
                log.push(msg);
                if done {
                    break Ok(());
                }
                if error {
                    break Err(());
                }
            }
            Err(_) => {
                log.push("timed out waiting for the page".into());
                break Err(());
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map(|_| log.clone()).map_err(|_| log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_call_is_recorded() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium"
    );
    let server = TestServer::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let wav = scratch.path().join("speech.wav");
    speech_wav(&wav);
    let whip_url = server.url("/whip/chromium-call");
    let profile = scratch.path().join("profile");
    let log = tokio::task::spawn_blocking(move || run_chromium(&whip_url, &wav, &profile))
        .await
        .unwrap();
    let log = match log {
        Ok(log) => log,
        Err(log) => panic!("chromium's WHIP page failed:\n{}", log.join("\n")),
    };
    println!("{}", log.join("\n"));

    let summary = server.call_json("chromium-call").await;
    assert_eq!(summary["end_reason"], "last_session_left", "{summary}");
    let started =
        chrono::DateTime::parse_from_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    let ended =
        chrono::DateTime::parse_from_rfc3339(summary["ended_at"].as_str().unwrap()).unwrap();
    let call_seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    let participants = summary["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 1, "{summary}");
    let file = participants[0]["file"].as_str().unwrap();
    let recording = decode_ogg_opus(&server.call_dir("chromium-call").join(file));
    println!(
        "chromium: participant {} call {call_seconds:.3} s, recording {:.3} s, rms {:.0}, voiced {:.2} s, packets {}",
        participants[0]["id"],
        recording.seconds(),
        recording.rms(0.0, recording.seconds()),
        recording.voiced_seconds(300.0),
        participants[0]["packets_received"],
    );
    assert!(
        (recording.seconds() - call_seconds).abs() < 0.5,
        "recording {:.3} s vs call {call_seconds:.3} s",
        recording.seconds()
    );
    // The page sends for 3 s once connected, then DELETEs.
    assert!(
        (recording.seconds() - 3.0).abs() < 0.5 + 0.5,
        "recording {:.3} s vs ~3 s sent",
        recording.seconds()
    );
    assert!(
        recording.rms(0.0, recording.seconds()) > 300.0,
        "speech, not silence"
    );
    assert!(recording.voiced_seconds(300.0) > 1.0);
    assert_eq!(recording.pages_with_eos, 1);
    server.shutdown().await;
}
