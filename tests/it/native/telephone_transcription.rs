//! A telephone codec goes to transcription at its own rate: a native PCMU
//! flow is recorded as Opus made once from it, but the backend gets the
//! caller's own 8 kHz audio, not the Opus decoded again. The fake Deepgram
//! is asked for `linear16` at `sample_rate=8000` and receives exactly the
//! G.711 µ-law samples sent (ITU-T G.711 decoding, ezk's), byte for byte.

use std::time::Duration;

use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};
use hearken_testkit::roq::rtp_packet;
use serde_json::json;

use crate::common::{delete_native, native_client, speech, transcribing_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_reaches_the_backend_at_8_khz_as_sent() {
    let fake = FakeDeepgram::start(FakeConfig {
        record_audio: true,
        ..FakeConfig::default()
    })
    .await;
    let server = transcribing_server(&fake, "HEARKEN_TEST_DEEPGRAM_KEY_PCMU", |c| {
        c.ingest.quic.listen = "127.0.0.1:0".into();
        // Every frame, so what arrives can be compared whole.
        c.transcription.skip_silence = false;
    })
    .await;
    let call = "phone-transcript";
    let (_, client) = native_client(
        &server,
        call,
        json!([{"participant_id": "tess", "flow_id": 3, "codec": "pcmu", "payload_type": 0}]),
    )
    .await;

    // The phone's audio: the test speech at 8 kHz, in µ-law.
    let mut dec = opus::Decoder::new(8_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 960];
    let mut expected = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, p) in speech("speaker-a.opus").iter().enumerate() {
        let len = dec.decode(p, &mut pcm, false).unwrap();
        let ulaw: Vec<u8> = pcm[..len]
            .iter()
            .map(|&s| ezk_g711::mulaw::encode(s))
            .collect();
        expected.extend(
            ulaw.iter()
                .flat_map(|&b| ezk_g711::mulaw::decode(b).to_le_bytes()),
        );
        tick.tick().await;
        client
            .send_datagram(3, &rtp_packet(0, n as u16, n as u32 * 160, 4, &ulaw))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delete_native(&server, call).await, 200);
    client.close().await;

    let record = fake.record();
    assert_eq!(record.connections.len(), 1, "one stream for tess");
    let connection = &record.connections[0];
    let query = |key: &str| {
        connection
            .query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(query("encoding").as_deref(), Some("linear16"));
    assert_eq!(query("sample_rate").as_deref(), Some("8000"));
    assert_eq!(
        connection.audio.len(),
        expected.len(),
        "{} s received, {} s sent",
        connection.audio.len() as f64 / 16_000.0,
        expected.len() as f64 / 16_000.0
    );
    assert!(connection.audio == expected, "the samples sent, unchanged");
    let transcript = crate::common::transcript(&server, call).await;
    assert!(
        !crate::common::words_of(&transcript, "tess").is_empty(),
        "and she is transcribed: {transcript}"
    );
    server.shutdown().await;
}
