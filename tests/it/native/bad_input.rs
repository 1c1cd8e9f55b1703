//! Bad input to native ingest gets a clear answer and harms no other call:
//! a bad token, an unknown flow, a bidirectional stream and a silent
//! connection are closed with RoQ's error codes; malformed RTP is counted
//! and dropped while the flow goes on; bad requests get problem+json
//! naming the field.

use std::time::Duration;

use hearken_testkit::roq::{RoqClient, rtp_packet};
use serde_json::json;

use crate::common::{TestServer, metric_sum, post_native, post_native_raw, speech};

async fn native_server() -> TestServer {
    TestServer::start_with(|c| {
        c.ingest.quic.listen = "127.0.0.1:0".into();
        c.ingest.quic.token_timeout_ms = 500;
    })
    .await
}

fn one_flow(flow: u64) -> serde_json::Value {
    json!([{"participant_id": "ann", "flow_id": flow, "codec": "opus", "payload_type": 111}])
}

/// The application error code the server closed `client`'s connection with.
async fn closed_with(client: &RoqClient) -> (u64, String) {
    let closed = tokio::time::timeout(Duration::from_secs(5), client.connection().closed())
        .await
        .expect("the server closes the connection");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("closed otherwise: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_break_the_rules_are_closed_with_roq_codes() {
    let server = native_server().await;
    let answer = post_native(&server, "rules", one_flow(1)).await;

    // A token that names no call: ROQ_GENERAL_ERROR (0x01).
    let bad = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    bad.present_tokens(&["not-a-token"]).await.unwrap();
    let (code, reason) = closed_with(&bad).await;
    assert_eq!((code, reason.as_str()), (0x01, "bad connection token"));

    // No token at all within token_timeout_ms: closed the same way.
    let silent = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    let (code, reason) = closed_with(&silent).await;
    assert_eq!(code, 0x01, "{reason}");

    // A flow no token bound, past the buffer: ROQ_UNKNOWN_FLOW_ID (0x06).
    let unknown = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    unknown.present_tokens(&[&answer.token]).await.unwrap();
    for seq in 0..400u16 {
        let rtp = rtp_packet(111, seq, u32::from(seq) * 960, 7, &[0xf8, 0xff, 0xfe]);
        if unknown.send_datagram(99, &rtp).is_err() {
            break;
        }
    }
    let (code, _) = closed_with(&unknown).await;
    assert_eq!(code, 0x06);

    // A bidirectional stream: ROQ_STREAM_CREATION_ERROR (0x04).
    let bidi = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    bidi.present_tokens(&[&answer.token]).await.unwrap();
    let (mut send, _recv) = bidi.connection().open_bi().await.unwrap();
    send.write_all(b"\x01hello").await.unwrap();
    let (code, _) = closed_with(&bidi).await;
    assert_eq!(code, 0x04);

    let metrics = server.metrics().await;
    for reason in ["bad_token", "unknown_flow", "stream_creation"] {
        let name = format!("hearken_ingest_errors_total{{ingest=\"native\",reason=\"{reason}\"}}");
        assert!(metric_sum(&metrics, &name) >= 1.0, "{name} counted");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rtp_is_dropped_and_the_flow_goes_on() {
    let server = native_server().await;
    let call = "malformed";
    let answer = post_native(&server, call, one_flow(5)).await;
    let client = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    client.present_tokens(&[&answer.token]).await.unwrap();
    let clip = speech("speaker-a.opus");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, packet) in clip.iter().take(100).enumerate() {
        tick.tick().await;
        if n % 10 == 5 {
            // RTP version 1, a truncated header, a wrong payload type.
            client.send_datagram(5, &[0x40, 111, 0, 1]).unwrap();
            client.send_datagram(5, &[0x80, 111]).unwrap();
            client
                .send_datagram(5, &rtp_packet(0, n as u16, 0, 9, &[0xff]))
                .unwrap();
        }
        let rtp = rtp_packet(111, n as u16, n as u32 * 960, 9, packet);
        client.send_datagram(5, &rtp).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(crate::common::delete_native(&server, call).await, 200);
    let summary = server.call_json(call).await;
    let ann = &summary["participants"][0];
    assert_eq!(ann["packets_received"], 100, "{summary}");
    let metrics = server.metrics().await;
    let malformed = metric_sum(
        &metrics,
        "hearken_ingest_errors_total{ingest=\"native\",reason=\"malformed_rtp\"}",
    );
    let wrong_pt = metric_sum(
        &metrics,
        "hearken_ingest_errors_total{ingest=\"native\",reason=\"unexpected_payload_type\"}",
    );
    assert_eq!((malformed, wrong_pt), (20.0, 10.0));
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let off = TestServer::start().await;
    let r = post_native_raw(&off, "off", one_flow(1)).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("native-ingest-off"),
        "{body}"
    );
    off.shutdown().await;

    let server = native_server().await;
    let cases = [
        (
            json!([{"participant_id": "a", "flow_id": 1, "codec": "opus", "payload_type": 72}]),
            "participants[0].payload_type",
        ),
        (
            json!([
                {"participant_id": "a", "flow_id": 1, "codec": "opus", "payload_type": 111},
                {"participant_id": "b", "flow_id": 1, "codec": "opus", "payload_type": 111},
            ]),
            "participants[1].flow_id",
        ),
        (
            json!([{"participant_id": "a", "flow_id": 4611686018427387903u64, "codec": "opus", "payload_type": 111}]),
            "participants[0].flow_id",
        ),
        (
            json!([{"participant_id": "a", "flow_id": 1, "codec": "mp3", "payload_type": 111}]),
            "codec",
        ),
        (json!([]), "participants"),
    ];
    for (participants, field) in cases {
        let r = post_native_raw(&server, "bad", participants.clone()).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{participants} -> {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(field),
            "{field} named in {body}"
        );
    }
    post_native(&server, "twice", one_flow(1)).await;
    let r = post_native_raw(&server, "twice", one_flow(2)).await;
    assert_eq!(r.status(), 409);
    server.shutdown().await;
}
