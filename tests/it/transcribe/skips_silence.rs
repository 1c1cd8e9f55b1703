//! A speaker's silence, as the sender's RTP audio level marks it, is neither
//! decoded nor sent to the backend, except for a hangover after speech and a
//! pre-roll before it; the skipped time is counted in coverage; and words
//! after the skipped gap still land on the speech in the recording.
//!
//! The "silent" stretch is made of loud packets the sender flags as silence
//! (-127 dBov), so any of it that reached the backend would come back as
//! words: the test sees exactly what was skipped.

use std::time::Duration;

use crate::common::{Outgoing, WhipClient, decode_ogg_opus, speech, words_of};
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_not_sent_and_words_after_it_keep_call_time() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let server =
        crate::common::transcribing_server(&fake, "HEARKEN_TEST_DEEPGRAM_KEY_SILENCE", |c| {
            c.transcription.silence_hangover_ms = 1_000;
            c.transcription.silence_preroll_ms = 200;
        })
        .await;
    let call = "quiet-stretch";
    let first = speech("speaker-a.opus");
    let middle = speech("speaker-b.opus");
    let last = speech("speaker-a.opus");
    let (n_first, n_middle, n_last) = (first.len(), middle.len(), last.len());
    let levels: Vec<i8> = std::iter::repeat_n(-30, n_first)
        .chain(std::iter::repeat_n(-127, n_middle))
        .chain(std::iter::repeat_n(-30, n_last))
        .collect();
    let packets: Vec<Vec<u8>> = first.into_iter().chain(middle).chain(last).collect();

    let mut client = WhipClient::connect(&server, call, &["erin"]).await;
    client.audio_levels = vec![Some(levels)];
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "erin".into(),
                packets,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let transcript = crate::common::transcript(&server, call).await;
    let coverage = &transcript["coverage"]["erin"];
    println!("coverage: {coverage}");
    let captured = coverage["captured_seconds"].as_f64().unwrap();
    let skipped = coverage["skipped_silence_seconds"].as_f64().unwrap();
    let middle_seconds = n_middle as f64 * 0.02;
    // The middle minus the hangover (1 s) and the pre-roll (0.2 s).
    let expected_skip = middle_seconds - 1.2;
    assert!(
        (skipped - expected_skip).abs() < 0.05,
        "skipped {skipped:.2} s, expected {expected_skip:.2} s"
    );
    let total = (n_first + n_middle + n_last) as f64 * 0.02;
    assert!(
        (captured + skipped - total).abs() < 0.05,
        "every consented frame is either captured or skipped: {coverage}"
    );
    assert_eq!(
        coverage["acknowledged_seconds"], coverage["captured_seconds"],
        "what was sent is covered"
    );

    // The backend received the captured audio and nothing else.
    let record = fake.record();
    let received: u64 = record.connections.iter().map(|c| c.audio_bytes).sum();
    let received_seconds = received as f64 / 32_000.0;
    assert!(
        (received_seconds - captured).abs() < 0.05,
        "backend got {received_seconds:.2} s, captured {captured:.2} s"
    );

    // No word from the skipped stretch; words after it sit on speech.
    let rec = decode_ogg_opus(&server.call_dir(call).join("audio/erin.opus"));
    // Call time of the first packet: the recording is digital silence
    // (leading fill) before it.
    let first_packet = rec.onset(1.0).unwrap_or(0.0);
    let gap_start = first_packet + n_first as f64 * 0.02 + 1.0 + 0.1;
    let gap_end = first_packet + (n_first + n_middle) as f64 * 0.02 - 0.2 - 0.1;
    let words = words_of(&transcript, "erin");
    println!(
        "{} words; skipped gap {gap_start:.2}-{gap_end:.2} s",
        words.len()
    );
    for (start, end, w) in &words {
        assert!(
            *start <= gap_start || *start >= gap_end,
            "word {w} at {start:.2}-{end:.2} comes from skipped silence"
        );
        // The fake's words are 0.5 s windows of stream time; one that
        // straddles the skipped stretch keeps that length on the call.
        assert!(
            end - start <= 0.5 + 1e-3,
            "word {w} at {start:.2}-{end:.2} does not stretch over the gap"
        );
        assert!(
            rec.rms(*start, *end) > 100.0,
            "word {w} at {start:.2}-{end:.2} is on speech in the recording"
        );
    }
    assert!(
        words.iter().any(|(start, _, _)| *start >= gap_end),
        "the speech after the gap is transcribed: {words:?}"
    );
    server.shutdown().await;
}
