//! Forced drops mid-stream and delayed results.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt as _;
use hearken_fake_deepgram::{Behavior, Closer, DropMode, FakeConfig, FakeDeepgram};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn abrupt_drop_mid_stream_is_an_error_for_the_client() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().drop_next(1, Duration::from_secs(1), DropMode::Abrupt));

    let mut handle = dg_handle(&fake).await.expect("handle");
    // Sends may start failing once the fake is gone.
    for chunk in tone(2.0).chunks(CHUNK) {
        if handle.send_data(chunk.to_vec()).await.is_err() {
            break;
        }
    }
    let responses = dg_drain(&mut handle).await;
    assert!(
        responses.iter().any(Result::is_err),
        "the client must see the drop: {responses:?}"
    );
    assert!(!responses.iter().any(|r| matches!(
        r,
        Ok(deepgram::common::stream_response::StreamResponse::TerminalResponse { .. })
    )));

    let record = fake.record();
    let c = &record.connections[0];
    assert!(c.audio_bytes >= 32_000, "dropped after 1 s of audio");
    assert!(c.audio_bytes < 64_000, "dropped before the end");
    let closed = c.closed.clone().expect("closed");
    assert_eq!((closed.by, closed.code), (Closer::Server, None));

    // Only one connection was to be dropped: the next one is healthy.
    let mut handle = dg_handle(&fake).await.expect("second handle");
    dg_send(&mut handle, &tone(2.0)).await;
    handle.close_stream().await.expect("close_stream");
    let responses = dg_drain(&mut handle).await;
    assert!(responses.iter().all(Result::is_ok), "{responses:?}");
    assert_eq!(fake.record().connections.len(), 2);
}

#[tokio::test]
async fn drop_with_close_frame_sends_the_reason() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let mode = DropMode::CloseFrame {
        code: 1011,
        reason: "NET-0000".to_owned(),
    };
    fake.set_behavior(Behavior::default().drop_next(1, Duration::from_millis(500), mode));
    let (mut ws, _) = raw_connect(&fake, fake.api_key(), QUERY)
        .await
        .expect("connect");
    for chunk in tone(1.0).chunks(CHUNK) {
        if ws.send(Message::binary(chunk.to_vec())).await.is_err() {
            break;
        }
    }
    let close = loop {
        match raw_next(&mut ws, Duration::from_secs(5)).await {
            Some(Ok(Message::Text(_))) => {}
            Some(Ok(Message::Close(frame))) => break frame.expect("a code"),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1011);
    assert_eq!(close.reason.as_str(), "NET-0000");
    let closed = fake.record().connections[0].closed.clone().expect("closed");
    assert_eq!(closed.reason, "NET-0000");
}

#[tokio::test]
async fn results_are_delayed_in_order() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().delay_results(Duration::from_millis(300)));
    let (mut ws, _) = raw_connect(&fake, fake.api_key(), QUERY)
        .await
        .expect("connect");
    let sent_at = Instant::now();
    ws.send(Message::binary(tone(0.5))).await.expect("audio");
    ws.send(Message::text(r#"{"type":"Finalize"}"#))
        .await
        .expect("Finalize");
    let interim = raw_json(&mut ws).await;
    assert!(sent_at.elapsed() >= Duration::from_millis(300));
    assert_eq!(interim["is_final"], false);
    let flushed = raw_json(&mut ws).await;
    assert_eq!(flushed["from_finalize"], true);
    assert_eq!(flushed["channel"]["alternatives"][0]["transcript"], "w0");
}
