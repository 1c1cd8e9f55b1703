//! When the mode falls with a consent request pending (the strict
//! participant leaves), a participant who was only asked to press 1 goes
//! back to `joined` and hears the notice, never straight to implicit
//! consent: Alice (New York) is asked because Dieter (Germany) joined; he
//! leaves before anyone answers, and Alice hears the notice again.

use std::time::Duration;

use hearken_testkit::Track;

use super::{captured, consent, events_of, located, speech};
use crate::sim::{Sim, Talk};

#[test]
fn mode_falling_with_a_pending_request_goes_back_to_the_notice() {
    let mut sim = Sim::new(consent(5_000));
    let alice = sim.join("falls", &[Track::send_recv("alice")]);
    located(&mut sim, "falls", "alice", "US-NY");
    let dieter = sim.join("falls", &[Track::send_recv("dieter")]);
    located(&mut sim, "falls", "dieter", "DE-BE");
    for c in [alice, dieter] {
        sim.clients[c]
            .talk
            .push(Talk::new(0, speech(6), Duration::ZERO));
    }
    sim.run_for(Duration::from_secs(3));
    let left = sim.elapsed();
    assert!(sim.leave(dieter));
    sim.run_for(Duration::from_secs(20));
    assert!(sim.leave(alice));
    sim.run_for(Duration::from_secs(1));

    let audit = sim.audit();
    let asked = audit.iter().any(|e| {
        e["event"] == "prompt_scheduled"
            && e["prompt"] == "consent_request"
            && e["to"].as_array().unwrap().iter().any(|w| w == "alice")
    });
    assert!(asked, "alice was asked to press 1 while dieter was there");
    let renotified = audit.iter().find(|e| {
        e["event"] == "prompt_scheduled"
            && e["prompt"] == "notice"
            && e["t"].as_f64().unwrap() >= left - 0.1
            && e["to"].as_array().unwrap().iter().any(|w| w == "alice")
    });
    let renotified = renotified.expect("alice hears the notice after the fall");
    let states = events_of(&sim, "state_changed", "alice");
    let implicit = states
        .iter()
        .find(|e| e["to"]["method"] == "implicit")
        .expect("alice consents by staying after the notice");
    let t_notice = renotified["t"].as_f64().unwrap();
    assert!(
        implicit["t"].as_f64().unwrap() > t_notice + 5.0,
        "not before the notice and the grace: {implicit} vs {renotified}"
    );
    assert!(
        !states
            .iter()
            .any(|e| e["to"]["state"] == "consented" && e["t"].as_f64().unwrap() < t_notice),
        "never consented while asked: {states:?}"
    );
    // Under notify she is captured while the notice plays again.
    assert!(captured(&sim, "alice", left + 0.5, left + 10.0) > 9.0);
}
