//! The server's last DTLS flight is lost: the client retransmits its own
//! (RFC 6347 §4.2.4), the server sends its last flight again, and the
//! session connects and records. The server keeps that flight although it
//! let go of the rest of its DTLS state once keyed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearken_testkit::Track;

use super::{consent, speech};
use crate::sim::{SERVER, Sim, Talk};

#[test]
fn a_lost_last_flight_is_sent_again() {
    let mut sim = Sim::new(consent(0));
    let c = sim.join("lossy", &[Track::send_only("lou")]);
    // The first server datagram that opens with a ChangeCipherSpec record
    // (content type 20): the server's last flight, lost once.
    let dropped = Arc::new(Mutex::new(0));
    let seen = dropped.clone();
    sim.drop_if = Some(Box::new(move |from, _, data| {
        let mut n = seen.lock().unwrap();
        if from == SERVER && data.first() == Some(&20) && *n == 0 {
            *n += 1;
            return true;
        }
        false
    }));
    let talk: Vec<Vec<u8>> = speech(1).into_iter().take(100).collect();
    sim.clients[c].talk.push(Talk::new(0, talk, Duration::ZERO));
    sim.run_for(Duration::from_secs(8));

    assert_eq!(*dropped.lock().unwrap(), 1, "the last flight was lost once");
    assert!(
        sim.clients[c].connected_at.is_some(),
        "the client connected after all"
    );
    let frames = sim.frames().iter().filter(|(p, _)| p == "lou").count();
    assert_eq!(frames, 100, "and was recorded");
}
