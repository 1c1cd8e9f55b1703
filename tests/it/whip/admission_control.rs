//! A full node turns new WHIP offers away with 503 and `Retry-After`, counts
//! them by reason, and the call it already carries is not degraded: a burst
//! of offers while it streams leaves its recording whole and loses nothing.

use std::time::Duration;

use crate::common::{
    Outgoing, TestServer, WhipClient, decode_ogg_opus, metric_sum, offer_sdp, speech,
};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_new_calls_and_keeps_the_ones_it_has() {
    let server = TestServer::start_with(|c| {
        c.limits.max_sessions = 1;
        c.limits.retry_after_secs = 7;
    })
    .await;
    let call = "already-here";
    let client = WhipClient::connect(&server, call, &["frank"]).await;
    let packets = speech("speaker-a.opus");
    let sent = packets.len();
    let run = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "frank".into(),
                packets,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    });

    // While it streams: 40 offers, to new calls and to the same call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let offers = (0..40).map(|i| {
        let target = if i % 2 == 0 {
            format!("newcomer-{i}")
        } else {
            call.to_owned()
        };
        let sdp = offer_sdp(&["late"], Direction::SendOnly);
        let server = &server;
        async move { server.post_offer(&target, &sdp).await }
    });
    for response in futures_util::future::join_all(offers).await {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "7");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["type"].as_str().unwrap().ends_with("node-full"),
            "{problem}"
        );
    }

    let client = run.await.unwrap();
    // The worker counts a turn's packets when the turn ends: the last
    // datagrams may still be on their way through it.
    let mut metrics = server.metrics().await;
    for _ in 0..40 {
        if metric_sum(&metrics, "hearken_rtp_packets_received_total") >= sent as f64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        metrics = server.metrics().await;
    }
    assert_eq!(
        metric_sum(&metrics, "hearken_admission_rejected_total"),
        40.0
    );
    assert_eq!(metric_sum(&metrics, "hearken_sessions_capacity"), 1.0);
    assert_eq!(
        metric_sum(&metrics, "hearken_rtp_packets_received_total"),
        sent as f64
    );
    assert_eq!(metric_sum(&metrics, "hearken_rtp_packets_lost_total"), 0.0);
    assert_eq!(metric_sum(&metrics, "hearken_frames_dropped_total"), 0.0);
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/frank.opus"));
    let expected = sent as f64 * 0.02;
    println!(
        "recording {:.3} s for {expected:.2} s sent",
        recording.seconds()
    );
    assert!(
        recording.seconds() >= expected,
        "the recording holds all it was sent"
    );
    server.shutdown().await;
}
