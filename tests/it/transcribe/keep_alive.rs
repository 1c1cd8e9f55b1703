//! A speaker who falls silent keeps their connection: while no audio is
//! sent (the sender marks the stretch as silence), Hearken sends Deepgram's
//! `KeepAlive` every 3 s, so the backend's idle timeout (`NET-0001`; 4 s
//! here) never closes it, and the words after the silence come on the same
//! connection.

use std::time::Duration;

use crate::common::{Outgoing, WhipClient, speech, words_of};
use hearken_fake_deepgram::{ControlMessage, FakeConfig, FakeDeepgram, NET_0001, ReceivedEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_speaker_keeps_the_connection_alive() {
    let fake = FakeDeepgram::start(FakeConfig {
        idle_timeout: Duration::from_secs(4),
        ..FakeConfig::default()
    })
    .await;
    let server =
        crate::common::transcribing_server(&fake, "HEARKEN_TEST_DEEPGRAM_KEY_KEEPALIVE", |c| {
            c.transcription.silence_hangover_ms = 1_000;
            c.transcription.silence_preroll_ms = 200;
        })
        .await;
    let call = "long-pause";
    let first = speech("speaker-a.opus");
    // About 8.9 s flagged as silence: 7.7 s with nothing sent once the
    // hangover and the pre-roll are taken off, nearly two idle timeouts.
    let middle: Vec<Vec<u8>> = (0..3).flat_map(|_| speech("speaker-b.opus")).collect();
    let last = speech("speaker-a.opus");
    let levels: Vec<i8> = std::iter::repeat_n(-30, first.len())
        .chain(std::iter::repeat_n(-127, middle.len()))
        .chain(std::iter::repeat_n(-30, last.len()))
        .collect();
    let packets: Vec<Vec<u8>> = first.into_iter().chain(middle).chain(last).collect();

    let mut client = WhipClient::connect(&server, call, &["gus"]).await;
    client.audio_levels = vec![Some(levels)];
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "gus".into(),
                packets,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let record = fake.record();
    assert_eq!(record.connections.len(), 1, "one connection throughout");
    let connection = &record.connections[0];
    let keep_alives = connection
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ReceivedEvent::Control {
                    message: ControlMessage::KeepAlive,
                    ..
                }
            )
        })
        .count();
    println!(
        "{keep_alives} KeepAlive messages, closed: {:?}",
        connection.closed
    );
    assert!(keep_alives >= 2, "{keep_alives} KeepAlive messages");
    assert!(
        connection
            .closed
            .as_ref()
            .is_none_or(|c| c.reason != NET_0001.1),
        "{:?}",
        connection.closed
    );
    let transcript = crate::common::transcript(&server, call).await;
    let coverage = &transcript["coverage"]["gus"];
    assert_eq!(
        coverage["acknowledged_seconds"], coverage["captured_seconds"],
        "{coverage}"
    );
    let words = words_of(&transcript, "gus");
    let last_word = words.last().map_or(0.0, |w| w.1);
    assert!(last_word > 13.0, "words after the pause: {words:?}");
    server.shutdown().await;
}
