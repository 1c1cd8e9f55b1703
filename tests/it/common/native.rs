//! Native ingest from the platform's side: `POST …/native`, a RoQ client
//! (`hearken_testkit::roq`) on one QUIC connection, paced RTP.

use std::net::SocketAddr;
use std::time::Duration;

use hearken_testkit::roq::{RoqClient, rtp_packet};
use serde_json::{Value, json};

use super::{TOKEN, TestServer};

/// The native answer of a call.
pub struct NativeAnswer {
    pub quic: SocketAddr,
    pub token: String,
    pub cert_sha256: String,
    pub body: Value,
}

/// `POST /v1/calls/{call}/native` with `participants`; panics unless 201.
pub async fn post_native(server: &TestServer, call: &str, participants: Value) -> NativeAnswer {
    let response = post_native_raw(server, call, participants).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json answer");
    assert_eq!(status, 201, "native answer: {body}");
    NativeAnswer {
        quic: body["quic"]
            .as_str()
            .expect("quic")
            .parse()
            .expect("address"),
        token: body["connection_token"].as_str().expect("token").to_owned(),
        cert_sha256: body["cert_sha256"].as_str().expect("cert").to_owned(),
        body,
    }
}

/// Starts `call`'s native ingest and connects a RoQ client to it, the
/// call's token presented.
pub async fn native_client(
    server: &TestServer,
    call: &str,
    participants: Value,
) -> (NativeAnswer, RoqClient) {
    let answer = post_native(server, call, participants).await;
    let client = RoqClient::connect(answer.quic, &answer.cert_sha256)
        .await
        .expect("quic connects with the pinned certificate");
    client
        .present_tokens(&[&answer.token])
        .await
        .expect("token presented");
    (answer, client)
}

/// `POST /v1/calls/{call}/native`, whatever the answer.
pub async fn post_native_raw(
    server: &TestServer,
    call: &str,
    participants: Value,
) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/v1/calls/{call}/native")))
        .bearer_auth(TOKEN)
        .json(&json!({ "participants": participants }))
        .send()
        .await
        .expect("http")
}

/// `DELETE /v1/calls/{call}/native` (answers once the files are final when
/// it ended the call).
pub async fn delete_native(server: &TestServer, call: &str) -> u16 {
    server
        .client
        .delete(server.url(&format!("/v1/calls/{call}/native")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("http")
        .status()
        .as_u16()
}

/// One speaker's flow to send: its packets, paced at 20 ms from
/// `start_after`.
pub struct FlowSource {
    pub flow_id: u64,
    pub payload_type: u8,
    /// RTP clock ticks per packet (960 for 20 ms Opus, 160 for G.711).
    pub ticks: u32,
    pub packets: Vec<Vec<u8>>,
    pub start_after: Duration,
}

/// How packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Datagram,
    /// A unidirectional stream per packet.
    Stream,
}

/// Sends every flow in real time over `client`, 20 ms per packet.
pub async fn send_paced(client: &RoqClient, flows: &[FlowSource], mode: Mode) {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = vec![0usize; flows.len()];
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let mut all_done = true;
        for (i, flow) in flows.iter().enumerate() {
            if sent[i] >= flow.packets.len() {
                continue;
            }
            all_done = false;
            if elapsed < flow.start_after {
                continue;
            }
            let n = sent[i];
            let rtp = rtp_packet(
                flow.payload_type,
                n as u16,
                (n as u32).wrapping_mul(flow.ticks),
                0x1000 + flow.flow_id as u32,
                &flow.packets[n],
            );
            match mode {
                Mode::Datagram => client.send_datagram(flow.flow_id, &rtp).expect("datagram"),
                Mode::Stream => client
                    .send_stream(flow.flow_id, &[&rtp])
                    .await
                    .expect("stream"),
            }
            sent[i] += 1;
        }
        if all_done {
            return;
        }
    }
}

/// `n` packets of the clip, looped.
pub fn looped(clip: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    clip.iter().cycle().take(n).cloned().collect()
}
