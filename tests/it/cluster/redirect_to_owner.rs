//! A WHIP client that posts to a node that does not own the call gets
//! `307 Temporary Redirect` to the owner's WHIP endpoint (RFC 9725 §4.5), and
//! the call is recorded whole on the owner.

use std::time::Duration;

use crate::common::{Fleet, Outgoing, WhipClient, offer_sdp, speech};

use super::{recorded_in_order, talk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_participant_posted_elsewhere_is_sent_to_the_owner() {
    let fleet = Fleet::start(&["node-a", "node-b", "node-c"]).await;
    let (a, b, c) = (&fleet.nodes[0], &fleet.nodes[1], &fleet.nodes[2]);
    let alice_packets = speech("speaker-a.opus")[..50].to_vec();
    let bob_packets = speech("speaker-b.opus")[..50].to_vec();

    // Alice joins through node B: the fleet is idle, so B keeps the call.
    let alice = WhipClient::connect(&b.server, "standup", &["alice"]).await;
    let alice = tokio::task::spawn_blocking({
        let packets = alice_packets.clone();
        move || {
            alice.run(
                vec![Outgoing {
                    stream_id: "alice".into(),
                    packets,
                    start_after: Duration::ZERO,
                }],
                Duration::from_millis(300),
            )
        }
    });
    // Bob posts to node A while Alice talks: A redirects him to B.
    let offer = offer_sdp(&["bob"], str0m::media::Direction::SendOnly);
    let r = a.server.post_offer("standup", &offer).await;
    assert_eq!(r.status(), 307, "{}", r.text().await.unwrap_or_default());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/whip/standup", b.url()));
    // So does node C.
    let offer = offer_sdp(&["bob"], str0m::media::Direction::SendOnly);
    let r = c.server.post_offer("standup", &offer).await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], location.as_str());

    // Bob follows the redirect.
    talk(&b.server, "standup", "bob", bob_packets.clone()).await;
    let alice = alice.await.unwrap();
    assert_eq!(b.server.delete(&alice.location).await.status(), 200);

    // Both are recorded on B, every packet; A and C hold nothing of the call.
    let dir = b.server.call_dir("standup");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !b.server.call_json("standup").await["ended_at"].is_string() {
        assert!(std::time::Instant::now() < deadline, "call did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recorded_in_order(&dir.join("audio/alice.opus"), &alice_packets),
        50
    );
    assert_eq!(
        recorded_in_order(&dir.join("audio/bob.opus"), &bob_packets),
        50
    );
    assert!(!a.server.call_dir("standup").exists());
    assert!(!c.server.call_dir("standup").exists());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("call.json")).unwrap()).unwrap();
    assert_eq!(
        summary["node"], "node-b",
        "call.json says which node holds the files"
    );

    // Every node answers for the call from the fleet index.
    for node in &fleet.nodes {
        let s = node.server.call_json("standup").await;
        assert_eq!(s["node"], "node-b", "{} answered {s}", node.id);
        assert_eq!(s["participants"].as_array().unwrap().len(), 2);
    }
    let metrics = a.server.metrics().await;
    assert!(
        crate::common::metric_sum(&metrics, "hearken_cluster_redirects_total") >= 1.0,
        "redirects counted"
    );
}
