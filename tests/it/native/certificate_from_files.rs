//! With `ingest.quic.cert_file` and `key_file`, the QUIC listener presents
//! that certificate: the native answer's `cert_sha256` is the SHA-256 of
//! its DER (computed here from the file the test wrote), and a client that
//! pins it connects and is recorded. A client pinning anything else is
//! refused by its own TLS.

use std::time::Duration;

use hearken_testkit::roq::{RoqClient, rtp_packet};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::{TestServer, delete_native, post_native, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_certificate_is_presented_and_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["media.example".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let expected = hex::encode(Sha256::digest(made.cert.der()));

    let (cert_file, key_file) = (cert.clone(), key.clone());
    let server = TestServer::start_with(move |c| {
        c.ingest.quic.listen = "127.0.0.1:0".into();
        c.ingest.quic.cert_file = Some(cert_file);
        c.ingest.quic.key_file = Some(key_file);
    })
    .await;
    let call = "own-cert";
    let answer = post_native(
        &server,
        call,
        json!([{"participant_id": "olga", "flow_id": 1, "codec": "opus", "payload_type": 111}]),
    )
    .await;
    assert_eq!(answer.cert_sha256, expected, "the file's certificate");

    let wrong = "00".repeat(32);
    assert!(
        RoqClient::connect(answer.quic, &wrong).await.is_err(),
        "a different pin is refused"
    );
    let client = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .unwrap();
    client.present_tokens(&[&answer.token]).await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, p) in speech("speaker-b.opus").iter().take(25).enumerate() {
        tick.tick().await;
        client
            .send_datagram(1, &rtp_packet(111, n as u16, n as u32 * 960, 8, p))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(delete_native(&server, call).await, 200);
    let summary = server.call_json(call).await;
    assert_eq!(summary["participants"][0]["packets_received"], 25);
    client.close().await;
    server.shutdown().await;
}
