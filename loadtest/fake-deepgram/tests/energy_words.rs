//! The words prove which audio arrived: one per loud 0.5 s window.

mod common;

use common::*;
use deepgram::common::stream_response::StreamResponse;
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

#[tokio::test]
async fn tone_silence_tone_gives_w0_w1_w4_w5() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let mut handle = dg_handle(&fake).await.expect("handle");
    let mut sent = tone(1.0);
    sent.extend(silence(1.0));
    sent.extend(tone(1.0));
    dg_send(&mut handle, &sent).await;
    handle.close_stream().await.expect("close_stream");
    let responses: Vec<StreamResponse> = dg_drain(&mut handle)
        .await
        .into_iter()
        .map(|r| r.expect("parses"))
        .collect();

    assert_eq!(
        dg_final_words(&responses),
        [
            ("w0".to_owned(), 0.0, 0.5),
            ("w1".to_owned(), 0.5, 1.0),
            ("w4".to_owned(), 2.0, 2.5),
            ("w5".to_owned(), 2.5, 3.0),
        ]
    );
    // Final results tile the stream: no gap, no overlap.
    let spans: Vec<(f64, f64)> = responses
        .iter()
        .filter_map(|r| match r {
            StreamResponse::TranscriptResponse {
                is_final: true,
                start,
                duration,
                ..
            } => Some((*start, *duration)),
            _ => None,
        })
        .collect();
    let mut end = 0.0;
    for (start, duration) in &spans {
        assert_eq!(*start, end, "finals {spans:?}");
        end = start + duration;
    }
    assert_eq!(end, 3.0);
}

#[tokio::test]
async fn keepalive_does_not_advance_stream_time() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let mut handle = dg_handle(&fake).await.expect("handle");
    dg_send(&mut handle, &tone(0.5)).await;
    for _ in 0..5 {
        handle.keep_alive().await.expect("keep_alive");
    }
    dg_send(&mut handle, &tone(0.5)).await;
    handle.close_stream().await.expect("close_stream");
    let responses: Vec<StreamResponse> = dg_drain(&mut handle)
        .await
        .into_iter()
        .map(|r| r.expect("parses"))
        .collect();
    assert_eq!(
        dg_final_words(&responses),
        [("w0".to_owned(), 0.0, 0.5), ("w1".to_owned(), 0.5, 1.0)]
    );
}
