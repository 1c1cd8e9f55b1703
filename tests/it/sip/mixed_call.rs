//! One call, three ways in: Walt over WHIP (str0m client, Opus), Carol on
//! a real phone over SIP (baresip, PCMU), Nadia natively over QUIC (RoQ
//! datagrams, Opus). All three tracks are on one timeline: in each file,
//! the speech starts at the call time its first packet arrived (from
//! `call.json`) plus where speech starts in what that participant sent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hearken_testkit::roq::RoqClient;
use serde_json::json;

use super::baresip_dial_in::wait_for;
use crate::common::{
    Baresip, FlowSource, Mode, Outgoing, TestServer, WhipClient, baresip_available,
    decode_ogg_opus, decode_packets, looped, phone_speech, post_native, read_wav, send_paced,
    speech, speech_tools_available,
};

/// Seconds from the first sample to the first 20 ms window louder than
/// RMS 300 (16-bit PCM at `rate` Hz, mono).
fn onset(samples: &[i16], rate: usize) -> f64 {
    let window = rate / 50;
    samples
        .chunks(window)
        .position(|c| {
            (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt() > 300.0
        })
        .expect("speech") as f64
        * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_sip_and_native_on_one_timeline() {
    if !baresip_available() || !speech_tools_available() {
        return;
    }
    let server = TestServer::start_with(|c| {
        c.ingest.sip.listen = "127.0.0.1:0".into();
        c.ingest.quic.listen = "127.0.0.1:0".into();
    })
    .await;
    let sip = server
        .server
        .as_ref()
        .unwrap()
        .state
        .sip
        .as_ref()
        .unwrap()
        .local_addr;
    let call = "three-ways";

    // Walt (WHIP) starts the call.
    let walt_packets = looped(&speech("speaker-a.opus"), 600);
    let walt = WhipClient::connect(&server, call, &["walt"]).await;
    let walt_run = {
        let packets = walt_packets.clone();
        tokio::task::spawn_blocking(move || {
            walt.run(
                vec![Outgoing {
                    stream_id: "walt".into(),
                    packets,
                    start_after: Duration::ZERO,
                }],
                Duration::from_millis(200),
            )
        })
    };
    // Carol (SIP) a moment later.
    let scratch = tempfile::tempdir().unwrap();
    let carol_wav = phone_speech(scratch.path(), 10);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let phone = Baresip::start(&["g711"], &carol_wav);
    let answer = phone.command("dial", &format!("sip:{call}@{sip}"));
    assert_eq!(answer["ok"], true, "{answer}");
    // Nadia (native) after that.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let native = post_native(
        &server,
        call,
        json!([{"participant_id": "nadia", "flow_id": 4, "codec": "opus", "payload_type": 111}]),
    )
    .await;
    let client = RoqClient::connect(native.quic, &native.cert_sha256)
        .await
        .unwrap();
    client.present_tokens(&[&native.token]).await.unwrap();
    let nadia_packets = looped(&speech("speaker-b.opus"), 300);
    send_paced(
        &client,
        &[FlowSource {
            flow_id: 4,
            payload_type: 111,
            ticks: 960,
            packets: nadia_packets.clone(),
            start_after: Duration::ZERO,
        }],
        Mode::Datagram,
    )
    .await;
    let walt = walt_run.await.unwrap();
    assert_eq!(phone.command("hangup", "")["ok"], true);
    client.close().await;
    assert_eq!(crate::common::delete_native(&server, call).await, 200);
    assert_eq!(server.delete(&walt.location).await.status(), 200);
    wait_for("the call to end", Duration::from_secs(10), async || {
        server.call_json(call).await["ended_at"].is_string()
    })
    .await;

    let summary = server.call_json(call).await;
    println!("{summary}");
    let started: DateTime<Utc> = summary["started_at"].as_str().unwrap().parse().unwrap();
    let sources = [
        (
            "walt",
            "whip",
            onset(&decode_packets(&walt_packets).samples, 48_000),
        ),
        ("caller", "sip", {
            let (rate, _, samples) = read_wav(&carol_wav);
            onset(&samples, rate as usize)
        }),
        (
            "nadia",
            "native",
            onset(&decode_packets(&nadia_packets).samples, 48_000),
        ),
    ];
    for (who, ingest, speech_at) in sources {
        let p = summary["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == who)
            .unwrap_or_else(|| panic!("{who} in {summary}"));
        assert_eq!(p["ingest"], ingest, "{p}");
        let first: DateTime<Utc> = p["first_packet_at"].as_str().unwrap().parse().unwrap();
        let arrived = (first - started).num_microseconds().unwrap() as f64 / 1e6;
        let rec = decode_ogg_opus(&server.call_dir(call).join(format!("audio/{who}.opus")));
        let heard = onset(&rec.samples, 48_000);
        let expected = arrived + speech_at;
        println!(
            "{who} ({ingest}): first packet at {arrived:.3} s of call time, speech {speech_at:.2} s into it; \
             in the file at {heard:.3} s (expected {expected:.3}); {:.2} s recorded",
            p["recorded_seconds"].as_f64().unwrap_or(0.0)
        );
        assert!(
            (heard - expected).abs() <= 0.08,
            "{who}: speech at {heard:.3} s in the file, {expected:.3} s on the call"
        );
    }
    server.shutdown().await;
}
