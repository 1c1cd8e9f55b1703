//! `capture: "never"` arriving 500 ms after a participant joined still
//! blocks everything: while Nora's details are unknown, everyone's audio is
//! held, not captured; when `never` arrives it is discarded, nothing is
//! kept while she is on the call, and capture resumes when she leaves.

use std::time::Duration;

use hearken_core::consent::engine::{CaptureSetting, ParticipantDetails};
use hearken_testkit::Track;

use super::{captured, consent, details_in, events_of, located, say, speech};
use crate::sim::{Sim, Talk};

#[test]
fn never_arriving_500_ms_after_join_blocks_everything() {
    let mut sim = Sim::new(consent(5_000));
    let bob = sim.join("never", &[Track::send_recv("bob")]);
    located(&mut sim, "never", "bob", "US-NY");
    let nora = sim.join("never", &[Track::send_only("nora")]);
    for c in [bob, nora] {
        sim.clients[c]
            .talk
            .push(Talk::new(0, speech(6), Duration::ZERO));
    }
    sim.run_for(Duration::from_millis(500));
    say(
        &mut sim,
        "never",
        "nora",
        hearken::media::InputKind::Details(ParticipantDetails {
            capture: CaptureSetting::Never,
            ..details_in("US-NY")
        }),
    );
    sim.run_for(Duration::from_millis(19_500));
    let nora_left = sim.elapsed();
    assert!(sim.leave(nora));
    sim.run_for(Duration::from_secs(10));
    assert!(sim.leave(bob));
    sim.run_for(Duration::from_secs(1));

    assert_eq!(captured(&sim, "bob", 0.0, nora_left), 0.0, "nothing of bob");
    assert_eq!(captured(&sim, "nora", 0.0, 60.0), 0.0, "nothing of nora");
    let discarded = events_of(&sim, "hold_discarded", "bob");
    assert!(
        discarded.iter().any(|e| e["reason"] == "capture_never"),
        "bob's first half second was held, then discarded: {discarded:?}"
    );
    assert!(
        captured(&sim, "bob", nora_left + 0.5, nora_left + 9.0) > 8.0,
        "bob is captured again once nora left"
    );
}
