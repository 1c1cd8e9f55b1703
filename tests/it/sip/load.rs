//! SIPp places 50 concurrent calls, each its own call and participant,
//! each playing the G.711 A-law speech SIPp ships (`g711a.pcap`, 236 RTP
//! packets) from its own media port; meanwhile a second SIPp sends the
//! malformed-messages scenario and raw garbage arrives. Every call is
//! answered, every packet of every call is recorded in its own call (PCMA,
//! encoded once to Opus), the bad input is answered or counted, and the
//! server ends with no dialog left.

use std::time::{Duration, Instant};

use hearken_core::conference::Ingest;

use super::{SipTransport, settled_sessions, sip_addr, sip_server, sipp};
use crate::common::metric_sum;

/// RTP packets in `/usr/share/sip-tester/g711a.pcap` (read with a pcap
/// parser: 236 packets, 5000 -> 2006, PT 8).
const PCAP_PACKETS: u64 = 236;
const CALLS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_with_rtp_while_bad_input_arrives() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    let started = Instant::now();
    let calls = CALLS.to_string();
    let many = ["-m", &calls, "-l", &calls, "-r", &calls];
    let load = sipp(addr, "load_pcma.xml", "load", SipTransport::Udp, &many);
    let bad = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sipp(addr, "malformed.xml", "during-load", SipTransport::Udp, &[]).await;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for garbage in [
            &b"\x00\x01\x02garbage"[..],
            b"INVITE nonsense",
            &[0xff; 3000],
        ] {
            socket.send_to(garbage, addr).await.unwrap();
        }
    };
    tokio::join!(load, bad);
    println!("50 calls done in {:.1} s", started.elapsed().as_secs_f64());

    let mut recorded = 0;
    for n in 1..=CALLS {
        let call = format!("load-{n}");
        let summary = server.call_json(&call).await;
        let participants = summary["participants"].as_array().expect("participants");
        assert_eq!(participants.len(), 1, "{call}: {summary}");
        let p = &participants[0];
        assert_eq!(p["id"], format!("phone-{n}"), "{call}: {p}");
        assert_eq!(p["ingest"], "sip");
        assert_eq!(p["codec"], "pcma");
        assert_eq!(p["transcoded_to_opus"], true);
        let packets = p["packets_received"].as_u64().unwrap();
        assert!(packets >= PCAP_PACKETS, "{call}: {packets} packets");
        assert!(summary["ended_at"].is_string(), "{call} ended with its BYE");
        recorded += packets;
    }
    let metrics = server.metrics().await;
    let counted = metric_sum(&metrics, "hearken_ingest_packets_total{ingest=\"sip\"}");
    assert_eq!(counted as u64, recorded, "every packet counted once");
    let open = server
        .server
        .as_ref()
        .unwrap()
        .state
        .metrics
        .media()
        .ingest_sessions
        .get(Ingest::Sip)
        .get();
    assert_eq!(open, 0, "no dialog left");
    assert_eq!(settled_sessions(&server).await, 0);
    println!("{recorded} packets recorded across {CALLS} calls");
    server.shutdown().await;
}
