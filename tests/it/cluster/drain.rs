//! Draining a node (`POST /v1/admin/drain`, or SIGTERM on a node of a
//! fleet): it takes no new calls (`/readyz` fails, placement skips it), its
//! calls go on to their end without losing a packet, then it exits 0.

use std::time::{Duration, Instant};

use crate::common::{Fleet, WhipClient, offer_sdp, post_empty, speech};

use super::recorded_in_order;

async fn ready_status(server: &crate::common::TestServer) -> u16 {
    server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_finishes_its_calls_and_leaves() {
    let mut fleet = Fleet::start(&["node-a", "node-b"]).await;
    let packets: Vec<Vec<u8>> = speech("speaker-a.opus").into_iter().take(150).collect();

    for (drained, other, how) in [(0, 1, "api"), (1, 0, "sigterm")] {
        if how == "sigterm" {
            // node-a has left: start a fresh node to take the redirected call.
            let node = fleet.spawn("node-c", &[]);
            fleet.nodes[0] = node;
            fleet.wait_ready(0).await;
            fleet.wait_for_members(2).await;
        }
        let call = format!("drained-by-{how}");
        let node = &fleet.nodes[drained];
        let client = WhipClient::connect(&node.server, &call, &["alice"]).await;
        let run = super::send(client, "alice", packets.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        match how {
            "api" => {
                let answer = post_empty(&node.server, "/v1/admin/drain").await;
                assert_eq!(answer["calls_in_progress"], 1, "{answer}");
            }
            _ => node.terminate(),
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ready_status(&node.server).await != 503 {
            assert!(
                Instant::now() < deadline,
                "/readyz still passes while draining"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A new call reaching the draining node goes to the other one.
        let offer = offer_sdp(&["bob"], str0m::media::Direction::SendOnly);
        let r = node
            .server
            .post_offer(&format!("new-during-{how}"), &offer)
            .await;
        assert_eq!(r.status(), 307, "{}", r.text().await.unwrap_or_default());
        let other_url = fleet.nodes[other].url();
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with(&other_url),
            "{:?}",
            r.headers()
        );
        // The other node sees the drain too and places nothing there.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let nodes =
                crate::common::get_json(&fleet.nodes[other].server, "/v1/cluster/nodes").await;
            let state = nodes["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node_id"] == node.id.as_str())
                .map(|n| n["state"].clone());
            if state == Some("draining".into()) {
                break;
            }
            assert!(Instant::now() < deadline, "{nodes}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The call goes on to its end; then the node exits, cleanly.
        let client = run.await.unwrap();
        let node = &mut fleet.nodes[drained];
        super::wait_received(&node.server, &call, "alice", packets.len() as u64).await;
        assert_eq!(node.server.delete(&client.location).await.status(), 200);
        let exit = node
            .wait_exit(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("drained node did not exit:\n{}", node.log_text()));
        assert_eq!(exit.code(), Some(0), "{}", node.log_text());
        let dir = node.server.call_dir(&call);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("call.json")).unwrap()).unwrap();
        assert_eq!(
            recorded_in_order(&dir.join("audio/alice.opus"), &packets),
            150,
            "{how}: {}",
            summary["participants"][0]
        );
        assert_eq!(summary["end_reason"], "last_session_left", "{summary}");
    }
}
