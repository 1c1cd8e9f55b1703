//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use deepgram::common::options::{Encoding, Endpointing, Model, Options};
use deepgram::common::stream_response::StreamResponse;
use deepgram::listen::websocket::WebsocketHandle;
use futures_util::StreamExt as _;
use hearken_fake_deepgram::FakeDeepgram;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// 16 kHz mono.
pub const RATE: f64 = 16_000.0;

/// A 440 Hz tone at amplitude 8000 (RMS about 5657), `linear16` LE.
pub fn tone(seconds: f64) -> Vec<u8> {
    let n = (seconds * RATE).round() as usize;
    (0..n)
        .flat_map(|i| {
            let t = i as f64 / RATE;
            let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
            s.to_le_bytes()
        })
        .collect()
}

/// Digital silence.
pub fn silence(seconds: f64) -> Vec<u8> {
    vec![0; (seconds * RATE).round() as usize * 2]
}

/// 20 ms of 16 kHz mono `linear16`.
pub const CHUNK: usize = 640;

/// A `deepgram` crate handle with the query Hearken sends.
pub async fn dg_handle(fake: &FakeDeepgram) -> Result<WebsocketHandle, deepgram::DeepgramError> {
    let dg = deepgram::Deepgram::with_base_url_and_api_key(fake.url().as_str(), fake.api_key())?;
    let options = Options::builder()
        .model(Model::Nova3)
        .smart_format(true)
        .punctuate(true)
        .diarize(true)
        .keyterms(["acme", "hearken bot"])
        .build();
    dg.transcription()
        .stream_request_with_options(options)
        .encoding(Encoding::Linear16)
        .sample_rate(16_000)
        .channels(1)
        .interim_results(true)
        .endpointing(Endpointing::CustomDurationMs(300))
        .utterance_end_ms(1000)
        .vad_events(true)
        .handle()
        .await
}

/// Send `pcm` in 20 ms messages.
pub async fn dg_send(handle: &mut WebsocketHandle, pcm: &[u8]) {
    for chunk in pcm.chunks(CHUNK) {
        handle.send_data(chunk.to_vec()).await.expect("send_data");
    }
}

/// Everything `receive()` yields until it returns `None` (bounded).
pub async fn dg_drain(
    handle: &mut WebsocketHandle,
) -> Vec<Result<StreamResponse, deepgram::DeepgramError>> {
    let mut out = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(r) = handle.receive().await {
            out.push(r);
        }
    })
    .await;
    assert!(drained.is_ok(), "receive() never ended; got {out:?}");
    out
}

/// The words of the final results, with their times.
pub fn dg_final_words(responses: &[StreamResponse]) -> Vec<(String, f64, f64)> {
    responses
        .iter()
        .filter_map(|r| match r {
            StreamResponse::TranscriptResponse {
                is_final: true,
                channel,
                ..
            } => Some(channel),
            _ => None,
        })
        .flat_map(|c| c.alternatives[0].words.iter())
        .map(|w| (w.word.clone(), w.start, w.end))
        .collect()
}

/// A raw websocket to the fake.
pub type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The query Hearken sends by default.
pub const QUERY: &str = "model=nova-3&encoding=linear16&sample_rate=16000&channels=1&interim_results=true&endpointing=300&utterance_end_ms=1000";

/// Open a raw websocket to `/v1/listen?{query}` with `key`.
pub async fn raw_connect(
    fake: &FakeDeepgram,
    key: &str,
    query: &str,
) -> Result<(Raw, tungstenite::handshake::client::Response), tungstenite::Error> {
    let url = format!("ws://{}/v1/listen?{query}", fake.addr());
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Token {key}").parse().expect("header value"),
    );
    tokio_tungstenite::connect_async(request).await
}

/// The next frame, within `limit`.
pub async fn raw_next(
    ws: &mut Raw,
    limit: Duration,
) -> Option<Result<Message, tungstenite::Error>> {
    tokio::time::timeout(limit, ws.next()).await.ok().flatten()
}

/// The next text frame as JSON; panics on anything else.
pub async fn raw_json(ws: &mut Raw) -> serde_json::Value {
    match raw_next(ws, Duration::from_secs(5)).await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}
