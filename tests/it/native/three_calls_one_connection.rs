//! One QUIC connection carries three calls of two speakers each for 10 s,
//! in DATAGRAMs and (separately) a stream per packet. Each speaker's file
//! holds their speech at their place on the call's timeline, `call.json`
//! says they came natively in Opus, and the transcript (from the fake
//! Deepgram) has both speakers of every call.

use std::time::Duration;

use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};
use hearken_testkit::roq::RoqClient;
use serde_json::json;

use crate::common::{
    FlowSource, Mode, decode_ogg_opus, decode_packets, delete_native, looped, post_native,
    read_opus_packets, send_paced, speech, transcribing_server, words_of,
};

/// 10 s of 20 ms packets.
const PACKETS: usize = 500;
/// Bob starts this much after Alice.
const BOB_OFFSET: Duration = Duration::from_secs(1);

async fn three_calls_on_one_connection(mode: Mode, tag: &str) {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let key_var = format!("HEARKEN_TEST_DEEPGRAM_KEY_NATIVE_{}", tag.to_uppercase());
    let server = transcribing_server(&fake, &key_var, |c| {
        c.ingest.quic.listen = "127.0.0.1:0".into();
    })
    .await;
    let alice_clip = speech("speaker-a.opus");
    let bob_clip = speech("speaker-b.opus");

    let calls: Vec<String> = (0..3).map(|i| format!("native-{tag}-{i}")).collect();
    let mut answers = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let base = 10 * i as u64;
        let answer = post_native(
            &server,
            call,
            json!([
                {"participant_id": "alice", "flow_id": base + 1, "codec": "opus", "payload_type": 111},
                {"participant_id": "bob", "flow_id": base + 2, "codec": "opus", "payload_type": 111},
            ]),
        )
        .await;
        assert_eq!(answer.body["alpn"], "roq-14");
        assert_eq!(answer.body["consent"]["prompts"], false);
        answers.push(answer);
    }
    // One connection for all three calls.
    let first = &answers[0];
    let client = RoqClient::connect(first.quic, &first.cert_sha256)
        .await
        .expect("quic connects with the pinned certificate");
    let tokens: Vec<&str> = answers.iter().map(|a| a.token.as_str()).collect();
    client.present_tokens(&tokens).await.expect("tokens");

    let mut flows = Vec::new();
    for i in 0..3u64 {
        flows.push(FlowSource {
            flow_id: 10 * i + 1,
            payload_type: 111,
            ticks: 960,
            packets: looped(&alice_clip, PACKETS),
            start_after: Duration::ZERO,
        });
        flows.push(FlowSource {
            flow_id: 10 * i + 2,
            payload_type: 111,
            ticks: 960,
            packets: looped(&bob_clip, PACKETS - 50),
            start_after: BOB_OFFSET,
        });
    }
    send_paced(&client, &flows, mode).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for call in &calls {
        assert_eq!(delete_native(&server, call).await, 200);
    }
    client.close().await;

    let alice_packets = looped(&alice_clip, PACKETS);
    let bob_packets = looped(&bob_clip, PACKETS - 50);
    let alice_sent = decode_packets(&alice_packets);
    let bob_sent = decode_packets(&bob_packets);
    for call in &calls {
        let summary: serde_json::Value = serde_json::from_slice(
            &std::fs::read(server.call_dir(call).join("call.json")).expect("call.json"),
        )
        .expect("json");
        let mut onsets = Vec::new();
        for (who, sent) in [("alice", &alice_sent), ("bob", &bob_sent)] {
            let p = summary["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == who)
                .unwrap_or_else(|| panic!("{who} in {summary}"));
            assert_eq!(p["ingest"], "native", "{p}");
            assert_eq!(p["codec"], "opus", "{p}");
            assert!(
                p.get("transcoded_to_opus").is_none(),
                "Opus is kept as sent: {p}"
            );
            let recorded = p["recorded_seconds"].as_f64().unwrap();
            let packets = p["packets_received"].as_u64().unwrap();
            println!("{call} {who}: {recorded:.2} s recorded, {packets} packets");
            let expected = sent.samples.len();
            assert_eq!(
                packets as usize * 960,
                expected,
                "every packet arrived ({mode:?})"
            );
            let path = server.call_dir(call).join(format!("audio/{who}.opus"));
            // Opus is recorded exactly as sent: every packet of theirs, in
            // order, after the fill that places them on the timeline.
            let recorded_packets = read_opus_packets(&path);
            let sent_packets = if who == "alice" {
                &alice_packets
            } else {
                &bob_packets
            };
            let at = recorded_packets
                .iter()
                .position(|p| p == &sent_packets[0])
                .unwrap_or_else(|| panic!("{call} {who}: first packet not recorded"));
            assert_eq!(
                &recorded_packets[at..at + sent_packets.len()],
                &sent_packets[..],
                "{call} {who}: their packets, unchanged and in order"
            );
            let rec = decode_ogg_opus(&path);
            onsets.push(rec.onset(300.0).expect("speech") - sent.onset(300.0).expect("speech"));
        }
        // Aligned: Bob's speech sits BOB_OFFSET after Alice's on the call.
        let gap = onsets[1] - onsets[0];
        assert!(
            (gap - BOB_OFFSET.as_secs_f64()).abs() < 0.06,
            "{call}: bob starts {gap:.3} s after alice, sent {:?} after",
            BOB_OFFSET
        );
        let transcript = crate::common::transcript(&server, call).await;
        for who in ["alice", "bob"] {
            assert!(
                !words_of(&transcript, who).is_empty(),
                "{call}: {who} is in the transcript"
            );
        }
    }
    let metrics = server.metrics().await;
    let packets =
        crate::common::metric_sum(&metrics, "hearken_ingest_packets_total{ingest=\"native\"}");
    assert_eq!(
        packets as usize,
        3 * (2 * PACKETS - 50),
        "ingest packets counted"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_in_datagrams() {
    three_calls_on_one_connection(Mode::Datagram, "dgram").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_calls_in_streams() {
    three_calls_on_one_connection(Mode::Stream, "stream").await;
}
