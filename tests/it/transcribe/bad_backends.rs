//! Three transcription backends that misbehave, each played by the fake
//! Deepgram server: one that takes connections and never answers, one that
//! answers every connect with 500, and one that never acknowledges the last
//! audio of a stream. Each costs the transcript and nothing else: the
//! per-speaker buffer stays within `buffer_seconds`, reconnects back off
//! exponentially with jitter, the end of the call finishes within
//! `finish_timeout`, the call is recorded in full, and the transcript is
//! marked incomplete with its coverage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{
    Outgoing, TestServer, WhipClient, decode_ogg_opus, long_speech, metric_sum, transcribing_server,
};
use hearken_fake_deepgram::{Behavior, FakeConfig, FakeDeepgram, Record};

/// The per-speaker buffer (seconds) of the calls whose backend takes
/// nothing: small, so the call overflows it.
const SMALL_BUFFER: u64 = 2;
/// How long the end of a call may wait for the backend.
const FINISH_TIMEOUT: Duration = Duration::from_millis(1500);
/// What the end of a call may take beyond `FINISH_TIMEOUT`: the session's
/// own end and the transcript's write, on a loaded test machine.
const END_SLACK: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers() {
    let call = BadCall::run("never-answers", Behavior::default().silent(), SMALL_BUFFER).await;
    // The one connection was taken and never lost: nothing to reconnect.
    assert_eq!(call.record.connections.len(), 1, "{:?}", call.record);
    assert!(call.record.connections[0].audio_bytes > 0);
    let cov = call.coverage();
    assert_eq!(cov["acknowledged_seconds"], 0.0, "{cov}");
    assert!(
        cov["lost_seconds"].as_f64().unwrap() > 1.0,
        "more audio than the buffer holds was given up: {cov}"
    );
    assert!(call.transcript["segments"].as_array().unwrap().is_empty());
    call.assert_common();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_answers_every_connect_with_500() {
    let call = BadCall::run(
        "always-500",
        Behavior::default().reject_next(u32::MAX, 500),
        SMALL_BUFFER,
    )
    .await;
    assert!(call.record.connections.is_empty());
    let attempts: Vec<Duration> = call.record.rejected.iter().map(|r| r.at).collect();
    assert!(
        call.record.rejected.iter().all(|r| r.status == 500),
        "{:?}",
        call.record.rejected
    );
    // 200 ms doubling up to 10 s, each with up to 255 ms of jitter: over a
    // call of about ten seconds that is five to seven attempts, where an
    // undamped retry loop makes hundreds.
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("attempts {}, gaps {gaps:?}", attempts.len());
    assert!(
        (4..=8).contains(&attempts.len()),
        "{} attempts: {gaps:?}",
        attempts.len()
    );
    let mut jittered = false;
    for (n, gap) in gaps.iter().enumerate() {
        let base = Duration::from_millis(200 << n.min(6)).min(Duration::from_secs(10));
        // The attempt itself and the wake-up may add a little on a busy
        // machine; never less than the backoff.
        assert!(
            *gap >= base && *gap <= base + Duration::from_millis(255 + 150),
            "gap {n}: {gap:?} for a backoff of {base:?}: {gaps:?}"
        );
        jittered |= *gap > base + Duration::from_millis(5);
    }
    assert!(jittered, "some wait carries jitter: {gaps:?}");
    let m = &call.metrics;
    assert_eq!(
        metric_sum(
            m,
            "hearken_transcription_reconnects_total{reason=\"server_error\"}"
        ),
        attempts.len() as f64,
        "{m}"
    );
    let cov = call.coverage();
    assert_eq!(cov["acknowledged_seconds"], 0.0, "{cov}");
    assert!(cov["lost_seconds"].as_f64().unwrap() > 1.0, "{cov}");
    call.assert_common();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_acknowledges_the_tail() {
    // A buffer the call fits in: all is acknowledged but the tail.
    let call = BadCall::run("no-tail", Behavior::default().withhold_tail(), 30).await;
    let connections = call.record.connections.len();
    // The first connection, then within the finish timeout (1.5 s) at most
    // three more: 200, 400 and 800 ms apart (plus jitter). Without backoff
    // this was one every few milliseconds, about 250 in 11 s.
    println!("{connections} connections");
    assert!((2..=4).contains(&connections), "{connections} connections");
    let cov = call.coverage();
    let acknowledged = cov["acknowledged_seconds"].as_f64().unwrap();
    let captured = cov["captured_seconds"].as_f64().unwrap();
    let tail = cov["buffered_seconds"].as_f64().unwrap();
    assert!(
        acknowledged > 1.0 && tail > 0.0,
        "most was acknowledged, not the tail: {cov}"
    );
    assert_eq!(cov["lost_seconds"], 0.0, "{cov}");
    assert!((acknowledged + tail - captured).abs() < 1e-6, "{cov}");
    assert!(
        !call.transcript["segments"].as_array().unwrap().is_empty(),
        "the acknowledged audio's words are kept"
    );
    call.assert_common();
}

/// One transcribed call of one speaker (about ten seconds of speech)
/// against a fake behaving as asked, and what came of it.
struct BadCall {
    participant: &'static str,
    buffer_seconds: u64,
    ended_in: Duration,
    peak_buffered_seconds: f64,
    recorded_seconds: f64,
    decoded_seconds: f64,
    voiced_seconds: f64,
    transcript: serde_json::Value,
    summary: serde_json::Value,
    metrics: String,
    record: Record,
}

impl BadCall {
    async fn run(call: &'static str, behavior: Behavior, buffer_seconds: u64) -> Self {
        let participant = "ruth";
        let fake = FakeDeepgram::start(FakeConfig::default()).await;
        fake.set_behavior(behavior);
        let server = transcribing_server(&fake, "HEARKEN_TEST_KEY_BAD_BACKEND", |c| {
            c.transcription.buffer_seconds = buffer_seconds;
            c.transcription.finish_timeout_ms = FINISH_TIMEOUT.as_millis() as u64;
        })
        .await;
        let server = Arc::new(server);
        let client = WhipClient::connect(&server, call, &[participant]).await;
        let packets = long_speech();

        // The buffer, sampled from the metrics while the call runs.
        let running = Arc::new(AtomicBool::new(true));
        let sampler = tokio::spawn(sample_buffered(Arc::clone(&server), Arc::clone(&running)));
        let client = tokio::task::spawn_blocking(move || {
            client.run(
                vec![Outgoing {
                    stream_id: participant.into(),
                    packets,
                    start_after: Duration::ZERO,
                }],
                Duration::from_millis(200),
            )
        })
        .await
        .unwrap();
        let started = Instant::now();
        assert_eq!(server.delete(&client.location).await.status(), 200);
        let ended_in = started.elapsed();
        running.store(false, Ordering::SeqCst);
        let peak_buffered_seconds = sampler.await.unwrap();

        let summary = server.call_json(call).await;
        let p = summary["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == participant)
            .unwrap()
            .clone();
        let rec = decode_ogg_opus(
            &server
                .call_dir(call)
                .join(format!("audio/{participant}.opus")),
        );
        let transcript = crate::common::transcript(&server, call).await;
        let metrics = server.metrics().await;
        let record = fake.record();
        let server = Arc::into_inner(server).expect("the sampler has stopped");
        server.shutdown().await;
        Self {
            participant,
            buffer_seconds,
            ended_in,
            peak_buffered_seconds,
            recorded_seconds: p["recorded_seconds"].as_f64().unwrap(),
            decoded_seconds: rec.seconds(),
            voiced_seconds: rec.voiced_seconds(300.0),
            transcript,
            summary,
            metrics,
            record,
        }
    }

    fn coverage(&self) -> &serde_json::Value {
        &self.transcript["coverage"][self.participant]
    }

    /// What every bad backend must leave as it was.
    fn assert_common(&self) {
        let cov = self.coverage();
        println!(
            "ended in {:?}, peak buffer {:.2} s, coverage {cov}",
            self.ended_in, self.peak_buffered_seconds
        );
        assert!(
            self.ended_in <= FINISH_TIMEOUT + END_SLACK,
            "the end of the call took {:?}",
            self.ended_in
        );
        let bound = self.buffer_seconds as f64 + 0.05;
        assert!(
            self.peak_buffered_seconds <= bound,
            "the buffer held {:.2} s",
            self.peak_buffered_seconds
        );
        assert!(cov["buffered_seconds"].as_f64().unwrap() <= bound, "{cov}");
        assert_eq!(self.transcript["complete"], true);
        assert_eq!(self.transcript["incomplete"], true, "{}", self.transcript);
        // The summary carries the same coverage.
        let p = self.summary["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == self.participant)
            .unwrap();
        assert_eq!(&p["transcription"], cov);
        // The recording does not depend on the backend.
        assert!(
            (self.decoded_seconds - self.recorded_seconds).abs() < 0.05,
            "{} decoded, {} recorded",
            self.decoded_seconds,
            self.recorded_seconds
        );
        // The three clips sent last 9.73 s (their last granule positions
        // less pre-skip: 3.38 + 2.97 + 3.38).
        assert!(
            self.decoded_seconds > 9.6,
            "recorded in full: {:.2} s",
            self.decoded_seconds
        );
        assert!(
            self.voiced_seconds > 3.0,
            "{:.2} s voiced",
            self.voiced_seconds
        );
        assert_eq!(p["packets_lost"], 0, "the media path was not slowed");
    }
}

/// The highest `hearken_transcription_buffered_seconds` seen while
/// `running`, sampled every 100 ms.
async fn sample_buffered(server: Arc<TestServer>, running: Arc<AtomicBool>) -> f64 {
    let mut peak: f64 = 0.0;
    while running.load(Ordering::SeqCst) {
        let m = server.metrics().await;
        peak = peak.max(metric_sum(&m, "hearken_transcription_buffered_seconds"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    peak
}
