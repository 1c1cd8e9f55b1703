//! Sessions that go away without a DELETE are ended by the server: one that
//! never connects (after `media.connect_timeout_ms`), and one whose client
//! vanishes mid-call (ICE reports it disconnected), which ends the call and
//! finalizes its recording.

use std::time::{Duration, Instant};

use crate::common::{
    Outgoing, TestServer, WhipClient, decode_ogg_opus, metric_sum, offer_sdp, speech,
};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_are_timed_out() {
    let server = TestServer::start_with(|c| {
        c.media.connect_timeout_ms = 300;
        c.media.inactivity_timeout_ms = 1000;
    })
    .await;

    // Never connects: answered, then dropped after the connect timeout.
    let offer = offer_sdp(&["ghost"], Direction::SendOnly);
    assert_eq!(
        server.post_offer("never-connected", &offer).await.status(),
        201
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(&server.metrics().await, "hearken_sessions_active") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "unconnected session was not timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = server.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "hearken_sessions_ended_total{reason=\"connect_timeout\"}"
        ),
        1.0,
        "{m}"
    );
    // Nothing was recorded, so the call id stays usable.
    assert!(
        !server
            .call_dir("never-connected")
            .join("call.json")
            .exists()
    );

    // Connects, talks, then vanishes without DELETE.
    let client = WhipClient::connect(&server, "vanished", &["frank"]).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "frank".into(),
                packets: speech("speaker-a.opus")[..50].to_vec(),
                start_after: Duration::ZERO,
            }],
            Duration::ZERO,
        )
    })
    .await
    .unwrap();
    let vanished_at = Instant::now();
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(40);
    let summary = loop {
        let s = server.call_json("vanished").await;
        if s["ended_at"].is_string() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "vanished client was never timed out: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "disconnect detected after {:.1} s",
        vanished_at.elapsed().as_secs_f64()
    );
    assert_eq!(summary["end_reason"], "last_session_left");
    let recording = decode_ogg_opus(&server.call_dir("vanished").join("audio/frank.opus"));
    assert_eq!(recording.pages_with_eos, 1);
    // The track ends when frank was last heard (1 s of speech), not when the
    // server noticed he was gone.
    assert!(recording.seconds() < 1.5, "{}", recording.seconds());
    assert!(recording.rms(0.0, 1.0) > 300.0);
    let m = server.metrics().await;
    assert_eq!(
        metric_sum(&m, "hearken_sessions_ended_total{reason=\"disconnected\"}"),
        1.0,
        "{m}"
    );
    server.shutdown().await;
}
