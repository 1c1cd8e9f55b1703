//! The real `deepgram` 0.14 client drives the fake and parses every message.

mod common;

use common::*;
use deepgram::common::stream_response::StreamResponse;
use hearken_fake_deepgram::{ControlMessage, FakeConfig, FakeDeepgram};

#[tokio::test]
async fn deepgram_crate_parses_every_message() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let mut handle = dg_handle(&fake).await.expect("handle");

    let mut sent = tone(1.0);
    sent.extend(silence(1.0));
    sent.extend(tone(0.75));
    dg_send(&mut handle, &sent).await;
    handle.finalize().await.expect("finalize");
    handle.close_stream().await.expect("close_stream");
    let responses = dg_drain(&mut handle).await;

    let responses: Vec<StreamResponse> = responses
        .into_iter()
        .map(|r| r.expect("every message parses"))
        .collect();
    for r in &responses {
        assert!(
            !matches!(r, StreamResponse::Unknown(_)),
            "unmodelled message {r:?}"
        );
    }
    // Interim, final, from_finalize, SpeechStarted, UtteranceEnd all occur.
    let has = |f: &dyn Fn(&StreamResponse) -> bool| responses.iter().any(f);
    assert!(has(&|r| matches!(
        r,
        StreamResponse::TranscriptResponse {
            is_final: false,
            ..
        }
    )));
    assert!(has(&|r| matches!(
        r,
        StreamResponse::TranscriptResponse {
            is_final: true,
            speech_final: true,
            ..
        }
    )));
    assert!(has(&|r| matches!(
        r,
        StreamResponse::TranscriptResponse {
            from_finalize: true,
            ..
        }
    )));
    assert!(has(&|r| matches!(
        r,
        StreamResponse::SpeechStartedResponse { .. }
    )));
    assert!(has(&|r| matches!(
        r,
        StreamResponse::UtteranceEndResponse { last_word_end, .. } if *last_word_end == 1.0
    )));

    let request_id = handle.request_id().expect("dg-request-id header");
    match responses.last() {
        Some(StreamResponse::TerminalResponse {
            request_id: id,
            duration,
            channels,
            ..
        }) => {
            assert_eq!(id, &request_id.to_string());
            assert_eq!(*duration, 2.75);
            assert_eq!(*channels, 1);
        }
        other => panic!("expected Metadata last, got {other:?}"),
    }
    for r in &responses {
        if let StreamResponse::TranscriptResponse {
            metadata,
            channel_index,
            channel,
            ..
        } = r
        {
            assert_eq!(metadata.request_id, request_id.to_string());
            assert_eq!(channel_index, &[0, 1]);
            for w in &channel.alternatives[0].words {
                assert_eq!(w.speaker, Some(0), "diarize=true labels speaker 0");
                assert_eq!(w.punctuated_word.as_deref(), Some(w.word.as_str()));
            }
        }
    }
    let words: Vec<String> = dg_final_words(&responses)
        .into_iter()
        .map(|(w, _, _)| w)
        .collect();
    assert_eq!(words, ["w0", "w1", "w4", "w5"]);

    let record = fake.record();
    assert_eq!(record.connections.len(), 1);
    let c = &record.connections[0];
    assert_eq!(c.request_id, request_id);
    assert_eq!(c.audio, sent);
    for (key, value) in [
        ("model", "nova-3"),
        ("smart_format", "true"),
        ("punctuate", "true"),
        ("diarize", "true"),
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("endpointing", "300"),
        ("utterance_end_ms", "1000"),
        ("vad_events", "true"),
    ] {
        assert_eq!(c.query_param(key), Some(value), "query {key}");
    }
    assert_eq!(c.query_params("keyterm"), ["acme", "hearken bot"]);
    assert_eq!(
        c.controls(),
        [
            ControlMessage::Finalize { channel: None },
            ControlMessage::CloseStream
        ]
    );
}
