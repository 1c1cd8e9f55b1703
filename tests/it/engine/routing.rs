//! Datagram routing: a STUN request from a new address reaches its session
//! by the ICE ufrag it names (one lookup, whatever the number of sessions),
//! and one naming no session of ours, or anything else from an unknown
//! address, is dropped and counted without touching any session.

use std::net::SocketAddr;
use std::time::Duration;

use hearken::media::Output;
use hearken_testkit::Track;

use super::consent;
use crate::common::metric_sum;
use crate::sim::Sim;

#[test]
fn stun_from_a_new_address_finds_its_session_by_ufrag() {
    let mut sim = Sim::new(consent(0));
    let clients: Vec<usize> = (0..40)
        .map(|i| sim.join(&format!("call-{i}"), &[Track::send_only(&format!("p{i}"))]))
        .collect();
    sim.run_for(Duration::from_secs(2));
    assert!(
        clients
            .iter()
            .all(|&c| sim.clients[c].connected_at.is_some())
    );

    // Client 17's connectivity check, arriving from an address its NAT just
    // mapped (never seen before).
    let addr17 = sim.clients[clients[17]].whip.local;
    let (_, check) = sim
        .stun_to_server
        .iter()
        .rev()
        .find(|(from, _)| *from == addr17)
        .cloned()
        .expect("client 17 sent a connectivity check");
    let rebound: SocketAddr = "10.9.9.9:61000".parse().unwrap();
    let unrouted = || {
        metric_sum(
            &sim.metrics.render(),
            "hearken_udp_unrouted_datagrams_total",
        )
    };
    // The engine adds its packet counts to the metrics once per turn.
    sim.engine.handle_timeout(sim.now);
    let before = unrouted();
    sim.engine.handle_datagram(sim.now, rebound, &check);
    let answered = std::iter::from_fn(|| sim.engine.poll_output())
        .any(|o| matches!(o, Output::Transmit(t) if t.destination == rebound));
    assert!(
        answered,
        "the session answered the check at its new address"
    );
    sim.engine.handle_timeout(sim.now);
    assert_eq!(unrouted(), before);

    // The same check with another ufrag in USERNAME: no session is named
    // (MESSAGE-INTEGRITY is not even looked at). Dropped and counted.
    let mut forged = check.clone();
    let at = hearken_testkit::stun_username_at(&forged).expect("USERNAME attribute");
    forged[at] ^= 0x20; // flip the case of the first ufrag character
    let stranger: SocketAddr = "10.9.9.10:61001".parse().unwrap();
    sim.engine.handle_datagram(sim.now, stranger, &forged);
    // RTP-looking junk from an unknown address: dropped without a lookup.
    sim.engine.handle_datagram(
        sim.now,
        stranger,
        &[0x80, 111, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
    );
    let replied = std::iter::from_fn(|| sim.engine.poll_output())
        .any(|o| matches!(o, Output::Transmit(t) if t.destination == stranger));
    assert!(!replied);
    sim.engine.handle_timeout(sim.now);
    assert_eq!(unrouted(), before + 2.0);
    assert_eq!(sim.engine.session_count(), 40, "no session was hurt");
}
