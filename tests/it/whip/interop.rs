//! Interop with the WebRTC stacks providers use, each a real independent
//! peer driven by its client in `tests/peers/` (installed by
//! `tests/peers/install.sh`, which the test script runs): Chromium (with its
//! default ECDSA certificate and with an RSA-2048 one) and Firefox ESR
//! (Debian, headless), aiortc (PyPI), GStreamer webrtcbin (Debian, with the
//! RSA-2048 certificate it always makes, and the stream ids only on its
//! `a=ssrc` lines) and werift (npm), each per-session (one track) and as a
//! gateway (two tracks, two speakers, one session). Every cell is a test:
//!
//! - it connects (ICE, DTLS with the stack's own certificate, SRTP);
//! - the client hears the prompt: each sendrecv m-line gets the notice (the
//!   participants are in New York: `notify`, and with no grace period the
//!   notice itself is the consent);
//! - the recording of each participant carries that participant's speech:
//!   its loudness over time follows the clip that participant played, and
//!   not the other one.
//!
//! One cell runs at a time: browsers are heavy on a 2-core machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{TOKEN, TestServer, decode_ogg_opus, read_opus_packets};

/// Seconds each client sends once connected: the notice (~5.8 s), then at
/// least four seconds of captured speech.
const SECONDS: u32 = 10;

#[derive(Debug, Clone, Copy)]
enum Stack {
    Chromium,
    ChromiumRsa,
    Firefox,
    Aiortc,
    Gstreamer,
    Werift,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Self::Chromium => "chromium",
            Self::ChromiumRsa => "chromium-rsa",
            Self::Firefox => "firefox",
            Self::Aiortc => "aiortc",
            Self::Gstreamer => "gstreamer",
            Self::Werift => "werift",
        }
    }

    /// The program and the arguments that come before the common ones.
    fn command(self) -> Command {
        let peers = repo().join("tests/peers");
        match self {
            Self::Chromium | Self::Firefox => {
                let mut c = Command::new("python3");
                c.arg(peers.join("whip_browser.py"))
                    .args(["--browser", self.name()]);
                c
            }
            Self::ChromiumRsa => {
                let mut c = Command::new("python3");
                c.arg(peers.join("whip_browser.py"))
                    .args(["--browser", "chromium", "--rsa-cert"]);
                c
            }
            Self::Aiortc => {
                let venv = std::env::var_os("HEARKEN_PEERS_VENV")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        let home = std::env::var_os("HOME").unwrap_or_default();
                        PathBuf::from(home).join(".cache/hearken/peers/aiortc-venv")
                    });
                let mut c = Command::new(venv.join("bin/python"));
                c.arg(peers.join("whip_aiortc.py"));
                c
            }
            Self::Gstreamer => {
                // Debian's Python, which has python3-gi.
                let mut c = Command::new("/usr/bin/python3");
                c.arg(peers.join("whip_gstreamer.py"));
                c
            }
            Self::Werift => {
                let mut c = Command::new("node");
                c.arg(peers.join("werift/whip-client.js"));
                c
            }
        }
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One cell at a time.
fn one_at_a_time() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Decoded 48 kHz mono speech of a test clip.
fn clip(name: &str) -> Vec<i16> {
    let packets = read_opus_packets(&repo().join("media/test").join(name));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    for p in packets {
        let n = decoder.decode(&p, &mut buf, false).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        wav.write_sample(s).unwrap();
    }
    wav.finalize().unwrap();
}

/// Loudness in dB of each 20 ms of `samples`.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks_exact(960)
        .map(|c| {
            let power = c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 960.0;
            10.0 * (power + 1.0).log10()
        })
        .collect()
}

/// The best Pearson correlation of `recorded` with the looped `source`
/// envelope, over every alignment (the client loops its clip from the
/// moment it connected, and capture starts some time later).
fn best_correlation(recorded: &[f64], source: &[f64]) -> f64 {
    let n = recorded.len();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mr = mean(recorded);
    (0..source.len())
        .map(|lag| {
            let s: Vec<f64> = (0..n).map(|i| source[(i + lag) % source.len()]).collect();
            let ms = mean(&s);
            let (mut num, mut dr, mut ds) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let (a, b) = (recorded[i] - mr, s[i] - ms);
                num += a * b;
                dr += a * a;
                ds += b * b;
            }
            num / (dr.sqrt() * ds.sqrt()).max(1e-9)
        })
        .fold(f64::MIN, f64::max)
}

async fn cell(stack: Stack, gateway: bool) {
    let _one = one_at_a_time().lock().await;
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US".into();
        c.consent.grace_period_ms = 0;
        c.media.workers = 1;
    })
    .await;
    let mode = if gateway { "gateway" } else { "session" };
    let call = format!("interop-{}-{mode}", stack.name());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (clip("speaker-a.opus"), clip("speaker-b.opus"));
    let (a_wav, b_wav) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    write_wav(&a_wav, &a);
    write_wav(&b_wav, &b);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    let mut command = stack.command();
    command
        .args(["--whip", &server.url(&format!("/whip/{call}"))])
        .args(["--token", TOKEN, "--mode", mode])
        .arg("--audio")
        .arg(&a_wav)
        .arg("--audio2")
        .arg(&b_wav)
        .args(["--seconds", &SECONDS.to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--location", "US-NY", "--timeout", "30"])
        .args(["--stream-id", &format!("{}-a", stack.name())])
        .args(["--stream-id2", &format!("{}-b", stack.name())]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the {} client ({e}); run tests/peers/install.sh",
                stack.name()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!("no JSON result from the client.\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    println!("{} {mode}: {result}", stack.name());
    assert!(
        output.status.success() && result["connected"] == true && result["error"].is_null(),
        "the {} client failed: {result}\nstderr (tail):\n{}",
        stack.name(),
        stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The RSA cells really presented an RSA certificate.
    match stack {
        Stack::ChromiumRsa => {
            assert_eq!(
                result["dtls_certificate"], "RSASSA-PKCS1-v1_5 2048",
                "{result}"
            )
        }
        Stack::Gstreamer => {
            assert_eq!(
                result["dtls_certificate"], "rsaEncryption 2048 bit",
                "{result}"
            )
        }
        _ => {}
    }
    let tracks = result["tracks"].as_array().unwrap().clone();
    assert_eq!(tracks.len(), if gateway { 2 } else { 1 });
    let notice = read_opus_packets(&repo().join("media/prompts/en/notice.opus")).len();
    // Its call has ended with the client's DELETE.
    let summary = server.call_json(&call).await;
    assert_eq!(summary["end_reason"], "last_session_left", "{summary}");
    let participants = summary["participants"].as_array().unwrap();
    assert_eq!(participants.len(), tracks.len(), "{summary}");
    for (i, track) in tracks.iter().enumerate() {
        // The client heard the notice on this m-line.
        let packets = track["received_packets"].as_u64().unwrap_or(0) as usize;
        let voiced = track["received_voiced_seconds"].as_f64().unwrap_or(0.0);
        assert!(
            packets * 10 >= notice * 9 && voiced >= 3.0,
            "track {i} heard {packets} packets ({voiced:.2} s voiced); the notice has {notice}"
        );
        // The recording of this track's participant is this track's speech.
        let stream_id = track["stream_id"].as_str().unwrap();
        let participant = participants
            .iter()
            .find(|p| p["id"] == stream_id)
            .unwrap_or_else(|| panic!("no participant {stream_id} in {summary}"));
        let recording = decode_ogg_opus(
            &server
                .call_dir(&call)
                .join(participant["file"].as_str().unwrap()),
        );
        let env = envelope(&recording.samples);
        // Captured from the notice's end (implicit consent, no grace).
        let captured: Vec<f64> = env.iter().skip(300).copied().collect();
        assert!(
            captured.len() >= 150,
            "{} s captured",
            captured.len() as f64 * 0.02
        );
        let (own, other) = if i == 0 { (&a, &b) } else { (&b, &a) };
        let with_own = best_correlation(&captured, &envelope(own));
        let with_other = best_correlation(&captured, &envelope(other));
        println!(
            "  {stream_id}: recorded {:.2} s, loudness follows its clip r={with_own:.2} (the other clip r={with_other:.2})",
            recording.seconds()
        );
        assert!(
            with_own > 0.6,
            "{stream_id}: r={with_own:.2} with its own clip"
        );
        assert!(
            with_own > with_other + 0.1,
            "{stream_id}: own r={with_own:.2}, other r={with_other:.2}"
        );
    }
    server.shutdown().await;
}

macro_rules! cells {
    ($($name:ident: $stack:ident, $gateway:literal;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                cell(Stack::$stack, $gateway).await;
            }
        )+
    };
}

cells! {
    chromium_session: Chromium, false;
    chromium_gateway: Chromium, true;
    chromium_rsa_session: ChromiumRsa, false;
    chromium_rsa_gateway: ChromiumRsa, true;
    firefox_session: Firefox, false;
    firefox_gateway: Firefox, true;
    aiortc_session: Aiortc, false;
    aiortc_gateway: Aiortc, true;
    gstreamer_session: Gstreamer, false;
    gstreamer_gateway: Gstreamer, true;
    werift_session: Werift, false;
    werift_gateway: Werift, true;
}
