//! A WHIP client that posts to a node that does not own the call gets
//! `307 Temporary Redirect` to the owner's WHIP endpoint (RFC 9725 §4.5), and
//! the call is recorded whole on the owner.

use std::time::Duration;

use crate::common::{Fleet, WhipClient, offer_sdp, speech};

use super::{recorded_in_order, talk};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_participant_posted_elsewhere_is_sent_to_the_owner() {
    // Native ingest and SIP on too: their requests are redirected as well.
    let fleet = Fleet::start_with(
        &["node-a", "node-b", "node-c"],
        &[
            ("HEARKEN_INGEST_QUIC_LISTEN", "127.0.0.1:0".to_owned()),
            ("HEARKEN_INGEST_SIP_LISTEN", "127.0.0.1:0".to_owned()),
        ],
    )
    .await;
    let (a, b, c) = (&fleet.nodes[0], &fleet.nodes[1], &fleet.nodes[2]);
    let alice_packets = speech("speaker-a.opus")[..50].to_vec();
    let bob_packets = speech("speaker-b.opus")[..50].to_vec();

    // Alice joins through node B: the fleet is idle, so B keeps the call.
    let alice = WhipClient::connect(&b.server, "standup", &["alice"]).await;
    let alice = super::send(alice, "alice", alice_packets.clone());
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

    // A platform's native ingest for the call, posted to A, goes to B too.
    let r = a
        .server
        .client
        .post(a.server.url("/v1/calls/standup/native"))
        .bearer_auth(crate::common::TOKEN)
        .json(&serde_json::json!({"participants": [
            {"participant_id": "carol", "flow_id": 1, "codec": "opus", "payload_type": 111}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        format!("{}/v1/calls/standup/native", b.url()).as_str()
    );
    // And a phone dialling the call at A is sent to B's SIP address (302).
    let nodes = crate::common::get_json(&a.server, "/v1/cluster/nodes").await;
    let sip_of = |id: &str| -> String {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            .and_then(|n| n["sip"].as_str())
            .unwrap_or_else(|| panic!("{id} has no SIP address: {nodes}"))
            .to_owned()
    };
    let answer = invite(&sip_of("node-a"), "standup").await;
    assert!(answer.starts_with("SIP/2.0 302"), "{answer}");
    let contact = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .unwrap_or_else(|| panic!("no Contact: {answer}"));
    assert!(
        contact.contains(&format!("sip:standup@{}", sip_of("node-b"))),
        "{contact}"
    );

    // Bob follows the redirect.
    talk(&b.server, "standup", "bob", bob_packets.clone()).await;
    let alice = alice.await.unwrap();
    super::wait_received(&b.server, "standup", "alice", alice_packets.len() as u64).await;
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

/// Sends a SIP INVITE for `call` (the request URI's user) over UDP to
/// `to`; the first final answer's text.
async fn invite(to: &str, call: &str) -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        local.port() + 2
    );
    let request = format!(
        "INVITE sip:{call}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-fleet-redirect;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:dora@127.0.0.1>;tag=fleet1\r\n\
         To: <sip:{call}@{to}>\r\n\
         Call-ID: fleet-redirect-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:dora@{local}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket.send_to(request.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
            .await
            .expect("an answer to the INVITE")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // 1xx answers are provisional.
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}
