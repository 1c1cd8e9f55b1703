//! A participant with no audio m-line (a listener, a phone leg elsewhere)
//! counts: Dieter, in Germany (all-party, `explicit`), is put on the roster
//! with `"present": true` at 10 s. From then nothing of Alice (New York) is
//! kept, since Dieter has not agreed; when he leaves the roster at 20 s the
//! mode falls back to `notify` and Alice is captured again.

use std::time::Duration;

use hearken_testkit::Track;

use super::{captured, consent, details_in, located, say, speech};
use crate::sim::{Sim, Talk};

#[test]
fn a_listener_only_participant_in_germany_stops_capture_until_he_agrees_or_leaves() {
    let mut sim = Sim::new(consent(5_000));
    let alice = sim.join("listener", &[Track::send_recv("alice")]);
    located(&mut sim, "listener", "alice", "US-NY");
    sim.clients[alice]
        .talk
        .push(Talk::new(0, speech(8), Duration::ZERO));
    sim.run_for(Duration::from_secs(10));
    let joined = sim.elapsed();
    say(
        &mut sim,
        "listener",
        "dieter",
        hearken::media::InputKind::Details(details_in("DE-BY")),
    );
    say(
        &mut sim,
        "listener",
        "dieter",
        hearken::media::InputKind::Presence(true),
    );
    sim.run_for(Duration::from_secs(10));
    let left = sim.elapsed();
    say(
        &mut sim,
        "listener",
        "dieter",
        hearken::media::InputKind::Presence(false),
    );
    sim.run_for(Duration::from_secs(10));
    assert!(sim.leave(alice));
    sim.run_for(Duration::from_secs(1));

    let audit = sim.audit();
    let explicit = audit
        .iter()
        .find(|e| e["event"] == "mode_evaluated" && e["mode"] == "explicit")
        .expect("the listener raised the mode");
    assert_eq!(explicit["scope"], "call_wide", "{explicit}");
    assert!(captured(&sim, "alice", 1.0, joined - 0.1) > 8.0);
    assert_eq!(
        captured(&sim, "alice", joined + 0.1, left - 0.1),
        0.0,
        "nothing of alice while dieter listened without agreeing"
    );
    assert!(
        captured(&sim, "alice", left + 0.5, left + 9.0) > 8.0,
        "captured again once he left"
    );
}
