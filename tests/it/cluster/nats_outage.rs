//! NATS and PostgreSQL going away while calls run: the call in progress goes
//! on and loses nothing, a new call is refused with 503 and `Retry-After`
//! (and the index reads too), and all of it recovers when they come back.

use std::time::{Duration, Instant};

use crate::common::{Fleet, WhipClient, offer_sdp, speech};

use super::recorded_in_order;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_on_and_new_ones_wait_while_the_services_are_away() {
    let mut fleet = Fleet::start(&["node-a", "node-b"]).await;
    let a = &fleet.nodes[0];
    let packets: Vec<Vec<u8>> = speech("speaker-a.opus")
        .into_iter()
        .chain(speech("speaker-b.opus"))
        .take(250)
        .collect();
    assert_eq!(packets.len(), 250, "five seconds of speech");

    let alice = WhipClient::connect(&a.server, "steady", &["alice"]).await;
    let run = super::send(alice, "alice", packets.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.nats.stop().expect("NATS stops");
    fleet.postgres.stop().expect("PostgreSQL stops");

    // A new call cannot be placed: 503, with when to try again.
    let a = &fleet.nodes[0];
    let offer = offer_sdp(&["bob"], str0m::media::Direction::SendOnly);
    let r = a.server.post_offer("newcomer", &offer).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let problem: serde_json::Value = r.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("cluster-unavailable"),
        "{problem}"
    );
    let r = a
        .server
        .client
        .get(a.server.url("/v1/calls"))
        .bearer_auth(crate::common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "the fleet index cannot be read");
    assert!(r.headers().contains_key("retry-after"));

    fleet.nats.restart().expect("NATS restarts");
    fleet.postgres.restart().expect("PostgreSQL restarts");

    // The call in progress lost nothing.
    let alice = run.await.unwrap();
    let a = &fleet.nodes[0];
    super::wait_received(&a.server, "steady", "alice", packets.len() as u64).await;
    assert_eq!(a.server.delete(&alice.location).await.status(), 200);
    let dir = a.server.call_dir("steady");
    assert_eq!(
        recorded_in_order(&dir.join("audio/alice.opus"), &packets),
        250
    );

    // New calls are placed again once NATS is back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let offer = offer_sdp(&["bob"], str0m::media::Direction::SendOnly);
        let r = a.server.post_offer("newcomer", &offer).await;
        match r.status().as_u16() {
            201 | 307 => break,
            503 => {}
            other => panic!("unexpected {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "placement did not recover:\n{}",
            a.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the index has caught up with what was written while it was
    // away: node B, which never held the call, answers for it.
    let b = &fleet.nodes[1];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = b
            .server
            .client
            .get(b.server.url("/v1/calls/steady"))
            .bearer_auth(crate::common::TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let s: serde_json::Value = r.json().await.unwrap();
            if s["ended_at"].is_string() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "index did not catch up:\n{}",
            a.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = b.server.call_json("steady").await;
    assert_eq!(s["node"], "node-a");
    let consent = crate::common::get_json(&b.server, "/v1/calls/steady/consent").await;
    assert_eq!(consent["chain"]["ok"], true, "{consent}");
    let on_disk = std::fs::read_to_string(dir.join("consent.jsonl")).unwrap();
    assert_eq!(
        consent["chain"]["lines"].as_u64().unwrap() as usize,
        on_disk.lines().count(),
        "every audit line written while PostgreSQL was away reached it"
    );
}
