//! A platform that vanishes without `DELETE` (its connection gone, its
//! packets stopped) does not leave the call open: after
//! `media.rtp_idle_timeout_ms` without a packet the native ingest ends as
//! disconnected, the call (it was its only session) ends and its files are
//! final; the native ingest is gone from the API.

use std::time::Duration;

use hearken_testkit::roq::rtp_packet;
use serde_json::json;

use crate::common::{TOKEN, TestServer, native_client, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_native_ingest_ends_the_call() {
    let server = TestServer::start_with(|c| {
        c.ingest.quic.listen = "127.0.0.1:0".into();
        c.media.rtp_idle_timeout_ms = 1_000;
    })
    .await;
    let call = "vanished";
    let (_, client) = native_client(
        &server,
        call,
        json!([{"participant_id": "vic", "flow_id": 9, "codec": "opus", "payload_type": 111}]),
    )
    .await;
    let clip = speech("speaker-a.opus");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, p) in clip.iter().take(50).enumerate() {
        tick.tick().await;
        client
            .send_datagram(9, &rtp_packet(111, n as u16, n as u32 * 960, 5, p))
            .unwrap();
    }
    // Let the last DATAGRAMs leave, then go without a word.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.connection().close(0u32.into(), b"");
    let mut ended = serde_json::Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let summary = server.call_json(call).await;
        if summary["ended_at"].is_string() {
            ended = summary;
            break;
        }
    }
    assert_eq!(ended["end_reason"], "last_session_left", "{ended}");
    assert_eq!(ended["participants"][0]["packets_received"], 50);
    let r = server
        .client
        .delete(server.url(&format!("/v1/calls/{call}/native")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the native ingest is gone");
    server.shutdown().await;
}
