//! NET-0001: KeepAlive holds a connection open; nothing at all closes it.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt as _;
use hearken_fake_deepgram::{Closer, FakeConfig, FakeDeepgram, NET_0001};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn config() -> FakeConfig {
    FakeConfig {
        idle_timeout: Duration::from_millis(400),
        ..FakeConfig::default()
    }
}

#[tokio::test]
async fn keepalive_holds_the_connection_past_the_idle_timeout() {
    let fake = FakeDeepgram::start(config()).await;
    let (mut ws, _) = raw_connect(&fake, fake.api_key(), QUERY)
        .await
        .expect("connect");
    ws.send(Message::binary(tone(0.25))).await.expect("audio");
    // 1.5 s of KeepAlive only: almost four idle timeouts.
    for _ in 0..15 {
        ws.send(Message::text(r#"{"type":"KeepAlive"}"#))
            .await
            .expect("KeepAlive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.send(Message::text(r#"{"type":"Finalize"}"#))
        .await
        .expect("Finalize");
    let result = raw_json(&mut ws).await;
    assert_eq!(result["type"], "Results");
    assert_eq!(result["from_finalize"], true);
    assert_eq!(result["channel"]["alternatives"][0]["transcript"], "w0");
    assert!(fake.record().connections[0].closed.is_none());
}

#[tokio::test]
async fn silence_without_keepalive_closes_with_net_0001() {
    let fake = FakeDeepgram::start(config()).await;
    let (mut ws, _) = raw_connect(&fake, fake.api_key(), QUERY)
        .await
        .expect("connect");
    ws.send(Message::binary(tone(0.25))).await.expect("audio");
    match raw_next(&mut ws, Duration::from_secs(3)).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Error, "1011");
            assert_eq!(frame.reason.as_str(), "NET-0001");
        }
        other => panic!("expected a NET-0001 close, got {other:?}"),
    }
    let record = fake.record();
    let closed = record.connections[0].closed.clone().expect("closed");
    assert_eq!(closed.by, Closer::Server);
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(NET_0001.0), NET_0001.1)
    );
}

/// The `deepgram` 0.14 crate returns the close frame's reason from its
/// spawned worker, where nobody sees it: `receive()` just ends.
#[tokio::test]
async fn deepgram_crate_sees_net_0001_as_end_of_stream() {
    let fake = FakeDeepgram::start(config()).await;
    let mut handle = dg_handle(&fake).await.expect("handle");
    dg_send(&mut handle, &tone(0.25)).await;
    let responses = dg_drain(&mut handle).await;
    assert!(responses.is_empty(), "{responses:?}");
    let closed = fake.record().connections[0].closed.clone().expect("closed");
    assert_eq!(closed.reason, "NET-0001");
}
