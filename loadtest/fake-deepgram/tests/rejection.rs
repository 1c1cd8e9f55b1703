//! Upgrade failures: a wrong key (401), injected 429 and 5xx, bad audio
//! parameters (400), each with a `dg-error` header.

mod common;

use common::*;
use hearken_fake_deepgram::{Behavior, FakeConfig, FakeDeepgram};
use tokio_tungstenite::tungstenite;

fn http_status(
    result: Result<(Raw, tungstenite::handshake::client::Response), tungstenite::Error>,
) -> (u16, String) {
    match result {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response
                .headers()
                .get("dg-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        ),
        Err(e) => panic!("expected an HTTP error, got {e}"),
        Ok(_) => panic!("expected an HTTP error, got a websocket"),
    }
}

#[tokio::test]
async fn wrong_key_gets_401() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let (status, dg_error) = http_status(raw_connect(&fake, "wrong", QUERY).await);
    assert_eq!(status, 401);
    assert!(!dg_error.is_empty());
    assert!(fake.record().connections.is_empty());
}

#[tokio::test]
async fn unsupported_encoding_gets_400() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let (status, dg_error) =
        http_status(raw_connect(&fake, fake.api_key(), "encoding=opus&sample_rate=48000").await);
    assert_eq!(status, 400);
    assert!(dg_error.contains("linear16"), "{dg_error}");
}

#[tokio::test]
async fn two_429_then_success() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().reject_next(2, 429));

    let (status, dg_error) = http_status(raw_connect(&fake, fake.api_key(), QUERY).await);
    assert_eq!(status, 429);
    assert!(!dg_error.is_empty());
    // The real client fails to open, then succeeds once the budget is spent.
    let err = dg_handle(&fake).await.expect_err("second attempt is a 429");
    assert!(err.to_string().contains("429"), "{err}");
    let mut handle = dg_handle(&fake).await.expect("third attempt opens");
    dg_send(&mut handle, &tone(0.5)).await;
    handle.close_stream().await.expect("close_stream");
    let responses = dg_drain(&mut handle).await;
    assert!(responses.iter().all(Result::is_ok));

    let record = fake.record();
    assert_eq!(record.rejected.len(), 2);
    assert!(record.rejected.iter().all(|r| r.status == 429));
    assert_eq!(record.connections.len(), 1);
    assert_eq!(fake.behavior().reject, None);
}

#[tokio::test]
async fn injected_503_carries_dg_error() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().reject_next(1, 503));
    let (status, dg_error) = http_status(raw_connect(&fake, fake.api_key(), QUERY).await);
    assert_eq!(status, 503);
    assert!(!dg_error.is_empty());
    assert!(raw_connect(&fake, fake.api_key(), QUERY).await.is_ok());
}

#[tokio::test]
async fn non_loopback_listen_address_is_refused() {
    let config = FakeConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        ..FakeConfig::default()
    };
    let err = FakeDeepgram::try_start(config).await.expect_err("refused");
    assert!(matches!(
        err,
        hearken_fake_deepgram::FakeError::NotLoopback(_)
    ));
}
