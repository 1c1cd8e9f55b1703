//! `kill -9` of a node under load: its call goes on on another node when
//! the client reconnects (the next segment of each track, listed in order in
//! `call.json`, aligned to the call's time zero; the consent chain goes on
//! from the lost node's last line), the other nodes' calls are unharmed, and
//! every node lists every call.

use std::time::{Duration, Instant};

use crate::common::{Fleet, WhipClient, decode_ogg_opus, get_json, speech};

use super::recorded_in_order;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_call_goes_on_elsewhere_with_its_consent_chain() {
    // No wait for details: the second node-b carries is recorded, not held
    // (held audio of a node that dies is lost with it).
    let mut fleet = Fleet::start_with(
        &["node-a", "node-b", "node-c"],
        &[("HEARKEN_CONSENT_DETAILS_WAIT_MS", "0".to_owned())],
    )
    .await;
    let speech_a = speech("speaker-a.opus");
    let (before, after) = (speech_a[..60].to_vec(), speech_a[60..160].to_vec());
    let bystander: Vec<Vec<u8>> = speech("speaker-b.opus")[..140].to_vec();

    // A call on node-c that must not notice anything.
    let bob = WhipClient::connect(&fleet.nodes[2].server, "bystander", &["bob"]).await;
    let bob_run = super::send(bob, "bob", bystander.clone());
    // Alice's call on node-b; 1.2 s of her speech is recorded there.
    let alice = WhipClient::connect(&fleet.nodes[1].server, "lost", &["alice"]).await;
    let alice = super::send(alice, "alice", before.clone()).await.unwrap();
    let b_dir = fleet.nodes[1].server.call_dir("lost");
    // Everything node-b wrote of the audit log has reached the index (the
    // gate waits for each line's row; give the last one a moment).
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.nodes[1].kill();
    drop(alice);
    let b_log = std::fs::read_to_string(b_dir.join("consent.jsonl")).unwrap();
    let b_started: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b_dir.join("call.json")).unwrap()).unwrap();
    // A node that dies loses at most its calls' last second (what its
    // recorder had not yet written): 50 packets.
    let kept = recorded_in_order(&b_dir.join("audio/alice.opus"), &before);
    assert!(
        kept + 50 >= before.len(),
        "node-b kept {kept} of {}",
        before.len()
    );

    // The others see node-b gone within three heartbeats.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet.cluster_nodes(&fleet.nodes[0]).await.len() != 2 {
        assert!(Instant::now() < deadline, "node-b still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The lost node's placements are released (by the live node with the
    // lowest id) before any client comes back.
    let kv = async_nats::jetstream::new(async_nats::connect(fleet.nats.url()).await.unwrap())
        .get_key_value("hearken_calls")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while kv.get("lost").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "node-b's placement of the call was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Alice's client reconnects through node-a; node-a, the least loaded,
    // takes the call over and it goes on there.
    let a = &fleet.nodes[0];
    let alice = WhipClient::connect(&a.server, "lost", &["alice"]).await;
    let alice = super::send(alice, "alice", after.clone()).await.unwrap();
    super::wait_received(&a.server, "lost", "alice", after.len() as u64).await;
    assert_eq!(a.server.delete(&alice.location).await.status(), 200);
    let bob = bob_run.await.unwrap();
    let c = &fleet.nodes[2];
    super::wait_received(&c.server, "bystander", "bob", bystander.len() as u64).await;
    assert_eq!(c.server.delete(&bob.location).await.status(), 200);

    // The next segment, on node-a, aligned to the call's time zero.
    let a_dir = a.server.call_dir("lost");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a_dir.join("call.json")).unwrap()).unwrap();
    assert_eq!(
        summary["started_at"], b_started["started_at"],
        "the same time zero"
    );
    assert_eq!(summary["node"], "node-a");
    assert_eq!(
        summary["segments"],
        serde_json::json!([
            {"node": "node-b", "files": ["audio/alice.opus"]},
            {"node": "node-a", "files": ["audio/alice.2.opus"]},
        ]),
        "{summary}"
    );
    assert!(!a_dir.join("audio/alice.opus").exists());
    let second = a_dir.join("audio/alice.2.opus");
    assert_eq!(
        recorded_in_order(&second, &after),
        after.len(),
        "nothing lost after the move"
    );
    let started: chrono::DateTime<chrono::Utc> =
        summary["started_at"].as_str().unwrap().parse().unwrap();
    let ended: chrono::DateTime<chrono::Utc> =
        summary["ended_at"].as_str().unwrap().parse().unwrap();
    let call_seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    let decoded = decode_ogg_opus(&second).seconds();
    // Aligned: the segment's timeline runs from the call's time zero (what
    // node-b recorded is silence here), to within a frame or two of the end.
    assert!(
        decoded > call_seconds - 0.5 && decoded <= call_seconds + 0.1,
        "segment lasts {decoded} s of a {call_seconds} s call"
    );

    // The consent chain goes on from node-b's last line, read on any node.
    let b_lines: Vec<serde_json::Value> = b_log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for node in [&fleet.nodes[0], &fleet.nodes[2]] {
        let consent = get_json(&node.server, "/v1/calls/lost/consent").await;
        assert_eq!(consent["chain"]["ok"], true, "{consent}");
        let events = consent["events"].as_array().unwrap();
        assert!(events.len() > b_lines.len(), "{} lines", events.len());
        assert_eq!(
            &events[..b_lines.len()],
            b_lines.as_slice(),
            "node-b's lines first"
        );
        assert_eq!(
            consent["chain"]["head_sha256"], summary["consent_log"]["head_sha256"],
            "the head node-a recorded"
        );
    }

    // The bystander lost nothing, and every node lists both calls.
    assert_eq!(
        recorded_in_order(
            &c.server.call_dir("bystander").join("audio/bob.opus"),
            &bystander
        ),
        bystander.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in [&fleet.nodes[0], &fleet.nodes[2]] {
        loop {
            let list = get_json(&node.server, "/v1/calls").await;
            let states: Vec<(String, String)> = list["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["call_id"].as_str().unwrap().to_owned(),
                        c["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if states
                == [
                    ("bystander".to_owned(), "ended".to_owned()),
                    ("lost".to_owned(), "ended".to_owned()),
                ]
                || states
                    == [
                        ("lost".to_owned(), "ended".to_owned()),
                        ("bystander".to_owned(), "ended".to_owned()),
                    ]
            {
                break;
            }
            assert!(Instant::now() < deadline, "{} lists {states:?}", node.id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
