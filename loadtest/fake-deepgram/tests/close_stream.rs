//! CloseStream (or an empty binary frame) returns the last words, then
//! Metadata, then a normal close.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt as _;
use hearken_fake_deepgram::{Closer, ControlMessage, FakeConfig, FakeDeepgram};
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn close_with(message: Message) {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let (mut ws, response) = raw_connect(&fake, fake.api_key(), QUERY)
        .await
        .expect("connect");
    let request_id = response
        .headers()
        .get("dg-request-id")
        .expect("dg-request-id")
        .to_str()
        .expect("ascii")
        .to_owned();
    uuid::Uuid::parse_str(&request_id).expect("a UUID");

    let sent = tone(1.25);
    for chunk in sent.chunks(CHUNK) {
        ws.send(Message::binary(chunk.to_vec()))
            .await
            .expect("audio");
    }
    ws.send(message).await.expect("close message");

    let mut messages = Vec::new();
    let close = loop {
        match raw_next(&mut ws, Duration::from_secs(5)).await {
            Some(Ok(Message::Text(t))) => {
                messages.push(serde_json::from_str::<serde_json::Value>(&t).expect("JSON"));
            }
            Some(Ok(Message::Close(frame))) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Normal);

    let finals: Vec<&serde_json::Value> = messages
        .iter()
        .filter(|m| m["type"] == "Results" && m["is_final"] == true)
        .collect();
    let last_final = finals.last().expect("a final");
    println!("Results: {last_final}");
    let words: Vec<&str> = finals
        .iter()
        .flat_map(|m| m["channel"]["alternatives"][0]["words"].as_array().unwrap())
        .map(|w| w["word"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["w0", "w1", "w2"]);
    assert_eq!(last_final["start"], 0.0);
    assert_eq!(last_final["duration"], 1.25);
    assert_eq!(last_final["from_finalize"], false);
    assert_eq!(
        last_final["channel"]["alternatives"][0]["words"][2]["end"],
        1.25
    );

    let metadata = messages.last().expect("messages");
    println!("Metadata: {metadata}");
    assert_eq!(metadata["type"], "Metadata");
    assert_eq!(metadata["request_id"], request_id.as_str());
    assert_eq!(metadata["duration"], 1.25);
    assert_eq!(metadata["channels"], 1);
    let sha = Sha256::digest(&sent)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert_eq!(metadata["sha256"], sha.as_str());

    let record = fake
        .wait_until(Duration::from_secs(2), |r| {
            r.connections[0].closed.is_some()
        })
        .await
        .expect("closed");
    let c = &record.connections[0];
    assert_eq!(c.controls(), [ControlMessage::CloseStream]);
    let closed = c.closed.clone().expect("closed");
    assert_eq!((closed.by, closed.code), (Closer::Server, Some(1000)));
}

#[tokio::test]
async fn close_stream_returns_final_words_then_metadata_then_normal_close() {
    close_with(Message::text(r#"{"type":"CloseStream"}"#)).await;
}

#[tokio::test]
async fn empty_binary_frame_closes_the_stream_like_close_stream() {
    close_with(Message::binary(Vec::new())).await;
}

#[tokio::test]
async fn deepgram_crate_close_stream_ends_with_metadata() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let mut handle = dg_handle(&fake).await.expect("handle");
    dg_send(&mut handle, &tone(1.25)).await;
    handle.close_stream().await.expect("close_stream");
    let responses = dg_drain(&mut handle).await;
    let responses: Vec<_> = responses.into_iter().map(|r| r.expect("parses")).collect();
    assert!(matches!(
        responses.last(),
        Some(deepgram::common::stream_response::StreamResponse::TerminalResponse { .. })
    ));
    let words: Vec<String> = dg_final_words(&responses)
        .into_iter()
        .map(|w| w.0)
        .collect();
    assert_eq!(words, ["w0", "w1", "w2"]);
}
