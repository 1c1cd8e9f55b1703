//! Many nodes as one service: NATS JetStream for membership, placement and
//! events, PostgreSQL for the fleet's call index. Each test starts its own
//! private NATS and PostgreSQL (`hearken_testkit::services`) and runs the
//! nodes as real processes on loopback (`common::fleet`).

mod drain;
mod fleet_index;
mod load;
mod nats_outage;
mod node_loss;
mod placement_race;
mod redirect_to_owner;
mod services_unreachable;

use std::time::Duration;

use crate::common::{Outgoing, TestServer, WhipClient, read_opus_packets};

/// Connects a WHIP client for `who` to `node` and sends `packets` from it
/// (real time), then ends its session with DELETE.
pub async fn talk(server: &TestServer, call: &str, who: &str, packets: Vec<Vec<u8>>) {
    let client = WhipClient::connect(server, call, &[who]).await;
    let stream = who.to_owned();
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: stream,
                packets,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    })
    .await
    .expect("client runs");
    let r = server.delete(&client.location).await;
    assert_eq!(r.status(), 200, "DELETE of {who}'s session");
}

/// How many of `sent` are in the recording at `path`, in order: every one
/// when nothing was lost.
pub fn recorded_in_order(path: &std::path::Path, sent: &[Vec<u8>]) -> usize {
    let recorded = read_opus_packets(path);
    let mut next = 0;
    for p in &recorded {
        if next < sent.len() && *p == sent[next] {
            next += 1;
        }
    }
    next
}
