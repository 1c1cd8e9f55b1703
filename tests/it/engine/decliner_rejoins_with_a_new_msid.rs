//! A decline is remembered per person (`user_id`): Eve declines, leaves,
//! and rejoins on a new session whose stream has a new id. The provider
//! gives the same `user_id`, so she is still declined and nothing of her is
//! captured; Frank, who rejoins under Eve's old participant id with his own
//! `user_id`, does not inherit her decline.

use std::time::Duration;

use hearken::config::ConsentConfig;
use hearken_core::consent::engine::{
    ConsentMethod, Decision, DeclinePolicy, ParticipantDetails, SignalEvidence,
};
use hearken_testkit::Track;

use super::{captured, consent, details_in, events_of, say, speech};
use crate::sim::{Sim, Talk};

fn person(user_id: &str) -> hearken::media::InputKind {
    hearken::media::InputKind::Details(ParticipantDetails {
        user_id: Some(user_id.to_owned()),
        ..details_in("US-NY")
    })
}

#[test]
fn a_decliner_who_rejoins_with_a_new_msid_is_still_declined() {
    let mut sim = Sim::new(ConsentConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        ..consent(5_000)
    });
    // The host keeps the call going while Eve is away.
    let host = sim.join("rejoin", &[Track::send_recv("host")]);
    say(&mut sim, "rejoin", "host", person("u-host"));
    let eve = sim.join("rejoin", &[Track::send_recv("eve")]);
    say(&mut sim, "rejoin", "eve", person("u-eve"));
    sim.clients[eve]
        .talk
        .push(Talk::new(0, speech(2), Duration::ZERO));
    sim.run_for(Duration::from_secs(2));
    say(
        &mut sim,
        "rejoin",
        "eve",
        hearken::media::InputKind::Signal {
            decision: Decision::Declined,
            method: ConsentMethod::Ui,
            evidence: SignalEvidence::default(),
        },
    );
    sim.run_for(Duration::from_secs(2));
    assert!(sim.leave(eve));
    sim.run_for(Duration::from_secs(2));

    let back = sim.elapsed();
    let eve2 = sim.join("rejoin", &[Track::send_recv("eve-2")]);
    say(&mut sim, "rejoin", "eve-2", person("u-eve"));
    sim.clients[eve2]
        .talk
        .push(Talk::new(0, speech(2), Duration::ZERO));
    let frank = sim.join("rejoin", &[Track::send_recv("eve")]);
    say(&mut sim, "rejoin", "eve", person("u-frank"));
    sim.clients[frank]
        .talk
        .push(Talk::new(0, speech(2), Duration::ZERO));
    sim.run_for(Duration::from_secs(15));
    assert!(sim.leave(host));

    let states = events_of(&sim, "state_changed", "eve-2");
    assert!(
        states.iter().any(|e| e["to"]["state"] == "declined"),
        "eve's decline followed her user id: {states:?}"
    );
    assert_eq!(captured(&sim, "eve-2", back, back + 15.0), 0.0);
    assert!(
        captured(&sim, "eve", back + 0.5, back + 14.0) > 12.0,
        "frank, under eve's old id, is captured (notify)"
    );
}
