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

/// Starts sending `packets` as `who`'s stream from `client`, in real time on
/// a blocking thread, keeping the session up 300 ms after the last; the
/// client comes back when it is done.
pub fn send(
    client: WhipClient,
    who: &str,
    packets: Vec<Vec<u8>>,
) -> tokio::task::JoinHandle<WhipClient> {
    let stream = who.to_owned();
    tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: stream,
                packets,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    })
}

/// Connects a WHIP client for `who` to `node` and sends `packets` from it
/// (real time), then ends its session with DELETE.
pub async fn talk(server: &TestServer, call: &str, who: &str, packets: Vec<Vec<u8>>) {
    let packets_len = packets.len() as u64;
    let client = WhipClient::connect(server, call, &[who]).await;
    let client = send(client, who, packets).await.expect("client runs");
    wait_received(server, call, who, packets_len).await;
    let r = server.delete(&client.location).await;
    assert_eq!(r.status(), 200, "DELETE of {who}'s session");
}

pub use crate::common::wait_received;

/// How many of `sent` are in the recording at `path`: every one when
/// nothing was lost (each found after the one before it).
pub fn recorded_in_order(path: &std::path::Path, sent: &[Vec<u8>]) -> usize {
    let recorded = read_opus_packets(path);
    let mut from = 0;
    let mut found = 0;
    for (n, packet) in sent.iter().enumerate() {
        if let Some(i) = recorded[from..].iter().position(|p| p == packet) {
            from += i + 1;
            found += 1;
        } else {
            eprintln!(
                "{}: sent packet {} of {} is not recorded",
                path.display(),
                n + 1,
                sent.len()
            );
        }
    }
    found
}
