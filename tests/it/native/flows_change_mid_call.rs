//! Flows come and go mid-call (`PATCH …/native`): Bob's flow is added two
//! seconds in, Alice's removed at four; Alice's packets after her removal
//! are dropped without closing the connection (it carries Bob too). And a
//! G.711 flow is recorded as Opus encoded once from it: `call.json` says
//! `pcmu` and `transcoded_to_opus`, and the recording follows the speech
//! that was sent.

use std::time::Duration;

use hearken_testkit::roq::rtp_packet;
use serde_json::json;

use crate::common::{
    TOKEN, TestServer, decode_ogg_opus, decode_packets, delete_native, metric_sum, native_client,
    speech,
};

async fn server() -> TestServer {
    TestServer::start_with(|c| c.ingest.quic.listen = "127.0.0.1:0".into()).await
}

async fn patch(server: &TestServer, call: &str, body: serde_json::Value) -> serde_json::Value {
    let r = server
        .client
        .patch(server.url(&format!("/v1/calls/{call}/native")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("http");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_added_and_one_removed_mid_call() {
    let server = server().await;
    let call = "patched";
    let (_, client) = native_client(
        &server,
        call,
        json!([{"participant_id": "alice", "flow_id": 1, "codec": "opus", "payload_type": 111}]),
    )
    .await;
    let clip = speech("speaker-a.opus");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut alice_sent, mut bob_sent) = (0u32, 0u32);
    for n in 0..300u32 {
        tick.tick().await;
        if n == 100 {
            let flows = patch(
                &server,
                call,
                json!({"add": [{"participant_id": "bob", "flow_id": 2, "codec": "opus", "payload_type": 111}]}),
            )
            .await;
            assert_eq!(flows["flows"].as_array().unwrap().len(), 2, "{flows}");
        }
        if n == 200 {
            patch(&server, call, json!({"remove": [1]})).await;
        }
        let packet = &clip[n as usize % clip.len()];
        client
            .send_datagram(1, &rtp_packet(111, n as u16, n * 960, 1, packet))
            .unwrap();
        alice_sent += 1;
        if n >= 100 {
            client
                .send_datagram(2, &rtp_packet(111, n as u16, n * 960, 2, packet))
                .unwrap();
            bob_sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        client.connection().close_reason().is_none(),
        "a removed flow's packets do not close the connection"
    );
    assert_eq!(delete_native(&server, call).await, 200);
    let summary = server.call_json(call).await;
    let packets = |who: &str| {
        summary["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == who)
            .map(|p| p["packets_received"].as_u64().unwrap())
            .unwrap_or(0)
    };
    println!(
        "alice sent {alice_sent}, recorded {}; bob sent {bob_sent}, recorded {}",
        packets("alice"),
        packets("bob")
    );
    // Alice's flow lived for packets 0..200 (the PATCH lands between
    // ticks; a packet or two either side may be in flight).
    assert!((198..=202).contains(&packets("alice")), "{summary}");
    assert!((198..=200).contains(&packets("bob")), "{summary}");
    let dropped = metric_sum(
        &server.metrics().await,
        "hearken_ingest_errors_total{ingest=\"native\",reason=\"unknown_flow\"}",
    );
    assert!(dropped >= 95.0, "alice's late packets counted: {dropped}");
    client.close().await;
    server.shutdown().await;
}

/// The loudness of each 20 ms window.
fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(960)
        .map(|c| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// Pearson correlation of `a` against `b` shifted by the best lag in
/// ±`max_lag` windows.
fn best_correlation(a: &[f64], b: &[f64], max_lag: usize) -> f64 {
    let corr = |x: &[f64], y: &[f64]| {
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        let mx = x.iter().sum::<f64>() / n as f64;
        let my = y.iter().sum::<f64>() / n as f64;
        let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    };
    (0..=max_lag)
        .flat_map(|lag| [corr(&a[lag..], b), corr(a, &b[lag..])])
        .fold(f64::MIN, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcmu_flow_is_recorded_as_opus_made_once_from_it() {
    let server = server().await;
    let call = "pcmu-native";
    let (_, client) = native_client(
        &server,
        call,
        json!([{"participant_id": "dora", "flow_id": 7, "codec": "pcmu", "payload_type": 0}]),
    )
    .await;
    // The speech as a telephone sends it: decoded at 8 kHz, µ-law.
    let clip = speech("speaker-b.opus");
    let mut dec = opus::Decoder::new(8_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 960];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (n, p) in clip.iter().enumerate() {
        let len = dec.decode(p, &mut pcm, false).unwrap();
        let ulaw: Vec<u8> = pcm[..len]
            .iter()
            .map(|&s| ezk_g711::mulaw::encode(s))
            .collect();
        tick.tick().await;
        let rtp = rtp_packet(0, n as u16, n as u32 * 160, 3, &ulaw);
        client.send_datagram(7, &rtp).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(delete_native(&server, call).await, 200);
    let summary = server.call_json(call).await;
    let dora = &summary["participants"][0];
    assert_eq!(dora["codec"], "pcmu", "{dora}");
    assert_eq!(dora["transcoded_to_opus"], true, "{dora}");
    assert_eq!(dora["packets_received"], clip.len() as u64);
    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/dora.opus"));
    let sent = decode_packets(&clip);
    let r = best_correlation(&envelope(&recording.samples), &envelope(&sent.samples), 25);
    println!("envelope correlation with the speech sent: {r:.3}");
    assert!(r > 0.9, "the recording follows the speech: r = {r:.3}");
    client.close().await;
    server.shutdown().await;
}
