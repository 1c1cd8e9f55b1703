//! A location that arrives late and raises the mode: the company says a
//! participant of unknown location needs `notify`, so Ada is captured once
//! her details wait ends; at 10 s the provider says she is in Germany
//! (all-party, `explicit`). Everything captured of her so far is discarded
//! (the sinks are told to delete her track and transcript) and logged, and
//! nothing more of her is kept without her consent.

use std::time::Duration;

use hearken_core::consent::rules::ConsentMode;
use hearken_testkit::Track;

use super::{captured, consent, details_in, events_of, say, speech};
use crate::sim::{Sim, Talk};

#[test]
fn a_late_location_that_raises_the_mode_discards_what_was_captured() {
    let mut config = consent(5_000);
    config.unknown_location_mode = Some(ConsentMode::Notify);
    let mut sim = Sim::new(config);
    let ada = sim.join("late", &[Track::send_recv("ada")]);
    sim.clients[ada]
        .talk
        .push(Talk::new(0, speech(6), Duration::ZERO));
    sim.run_for(Duration::from_secs(10));
    let before = captured(&sim, "ada", 0.0, 10.0);
    assert!(
        before > 8.0,
        "captured under the unknown-location mode: {before} s"
    );

    let discard_at = sim.sink.len();
    say(
        &mut sim,
        "late",
        "ada",
        hearken::media::InputKind::Details(details_in("DE-BE")),
    );
    sim.run_for(Duration::from_secs(10));
    assert!(sim.leave(ada));
    sim.run_for(Duration::from_secs(1));

    let discards: Vec<usize> = sim
        .sink
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            matches!(m, hearken::sinks::SinkMsg::DiscardParticipant { participant_id, .. } if &**participant_id == "ada")
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(discards.len(), 1, "one discard of ada's audio");
    assert!(
        discards[0] >= discard_at,
        "the discard follows the location"
    );
    let discarded = events_of(&sim, "discarded", "ada");
    assert_eq!(discarded.len(), 1, "the audit log says so");
    let t = discarded[0]["t"].as_f64().unwrap();
    assert!((9.9..10.2).contains(&t), "{t}");
    assert_eq!(
        captured(&sim, "ada", t + 0.05, 30.0),
        0.0,
        "nothing of ada without her consent"
    );
    let resolved = events_of(&sim, "participant_resolved", "ada");
    assert_eq!(resolved.last().unwrap()["jurisdiction"], "DE");
}
