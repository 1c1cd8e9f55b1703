//! A key pressed before the consent request finished playing to that
//! participant is not an answer: Greta, in Germany (`explicit`), presses 1
//! a second into the request; it is ignored and logged, and nothing of her
//! is kept. She presses 1 again after the request; capture starts then.

use std::time::Duration;

use hearken_testkit::Track;

use super::{captured, consent, events_of, located, speech};
use crate::sim::{KeyPress, Sim, Talk};

#[test]
fn a_key_before_the_request_ends_is_ignored() {
    let mut sim = Sim::new(consent(5_000));
    let request = hearken::setup::consent::load_prompts("en", None)
        .expect("prompts")
        .consent_request
        .duration
        .as_secs_f64();
    let greta = sim.join("early-key", &[Track::send_recv("greta")]);
    located(&mut sim, "early-key", "greta", "DE-HH");
    sim.clients[greta]
        .talk
        .push(Talk::new(0, speech(4), Duration::ZERO));
    let late = Duration::from_secs_f64(request + 1.0);
    sim.clients[greta]
        .keys
        .push(KeyPress::new(0, 1, Duration::from_secs(1)));
    sim.clients[greta].keys.push(KeyPress::new(0, 1, late));
    sim.run_for(Duration::from_secs(15));
    assert!(sim.leave(greta));
    sim.run_for(Duration::from_secs(1));

    let ignored = events_of(&sim, "signal_ignored", "greta");
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    let t_ignored = ignored[0]["t"].as_f64().unwrap();
    assert!(t_ignored < request, "the early key, at {t_ignored}");
    let consented = events_of(&sim, "state_changed", "greta")
        .into_iter()
        .find(|e| e["to"]["method"] == "dtmf")
        .expect("the second key is consent");
    let t = consented["t"].as_f64().unwrap();
    assert!(t > request, "after the request: {t} vs {request}");
    assert_eq!(captured(&sim, "greta", 0.0, t - 0.05), 0.0);
    assert!(captured(&sim, "greta", t + 0.1, 14.0) > 13.0 - t - 1.0);
}
