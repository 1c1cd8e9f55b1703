//! Once a session is connected, the engine decrypts its speakers' SRTP
//! itself (`srtp_in`). A packet captured on the wire and sent again is not
//! recorded twice, and one altered on the way is not recorded at all
//! (RFC 3711 §3.3: replay protection, then authentication); each is
//! counted under its reason, and the call goes on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearken_testkit::Track;

use super::{consent, speech};
use crate::sim::{SERVER, Sim, Talk};

/// The WHIP ingest's count of packets turned away for `reason`.
fn whip_errors(sim: &mut Sim, reason: &str) -> f64 {
    // The engine adds its counts to the metrics once per turn.
    sim.engine.handle_timeout(sim.now);
    let label = format!("reason=\"{reason}\"");
    sim.metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("hearken_ingest_errors_total{"))
        .filter(|l| l.contains("ingest=\"whip\"") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_replayed_packet_is_recorded_once_and_a_forged_one_not_at_all() {
    let mut sim = Sim::new(consent(0));
    let c = sim.join("replay", &[Track::send_only("rita")]);
    // Every RTP packet the client sends (RFC 7983: first byte 128-191; RFC
    // 5761: not an RTCP packet type), as an eavesdropper would see it.
    let wire = Arc::new(Mutex::new(Vec::new()));
    let tap = wire.clone();
    sim.drop_if = Some(Box::new(move |_, to, data| {
        if to == SERVER && (128..192).contains(&data[0]) && !(192..=223).contains(&data[1]) {
            tap.lock().unwrap().push(data.to_vec());
        }
        false
    }));
    let talk: Vec<Vec<u8>> = speech(1).into_iter().take(100).collect();
    sim.clients[c].talk.push(Talk::new(0, talk, Duration::ZERO));
    sim.run_for(Duration::from_secs(4));
    let frames = |sim: &Sim| sim.frames().iter().filter(|(p, _)| p == "rita").count();
    assert_eq!(frames(&sim), 100, "every packet sent was recorded");
    assert_eq!(whip_errors(&mut sim, "srtp_replay"), 0.0);
    assert_eq!(whip_errors(&mut sim, "srtp_auth"), 0.0);

    let client = sim.clients[c].whip.local;
    let captured = wire.lock().unwrap().clone();
    assert_eq!(captured.len(), 100);
    // The 60th packet again, and the last one: both already received.
    sim.datagram_from(client, &captured[59]);
    sim.datagram_from(client, &captured[99]);
    assert_eq!(whip_errors(&mut sim, "srtp_replay"), 2.0);
    // The last packet with one payload bit flipped and a new sequence
    // number (so it is not a replay): the tag no longer matches.
    let mut forged = captured[99].clone();
    forged[3] = forged[3].wrapping_add(1);
    let last = forged.len() - 1;
    forged[last - 12] ^= 0x01;
    sim.datagram_from(client, &forged);
    assert_eq!(whip_errors(&mut sim, "srtp_auth"), 1.0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(frames(&sim), 100, "neither was recorded");
    assert_eq!(sim.engine.session_count(), 1, "the session goes on");
}
