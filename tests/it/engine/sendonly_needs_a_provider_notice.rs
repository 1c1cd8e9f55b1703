//! A participant who cannot hear the bot (a `sendonly` session) is not
//! informed by a prompt nobody heard. In Britain (one-party, opt-out) Gary
//! is held from his first frame; without the provider's word that it
//! showed its own notice, he never consents by staying and nothing of him
//! is kept. With `POST …/notice` at 1 s, staying the grace period after it
//! is implicit consent, and everything held since his first frame is kept.

use std::time::Duration;

use hearken_testkit::Track;

use super::{captured, consent, events_of, located, say, speech};
use crate::sim::{Sim, Talk, t0_utc};

fn call_with_gary(notice: bool) -> Sim {
    let mut sim = Sim::new(consent(5_000));
    let gary = sim.join("sendonly", &[Track::send_only("gary")]);
    located(&mut sim, "sendonly", "gary", "GB");
    sim.clients[gary]
        .talk
        .push(Talk::new(0, speech(6), Duration::ZERO));
    sim.run_for(Duration::from_secs(1));
    if notice {
        let shown_at = t0_utc() + chrono::Duration::milliseconds(1_000);
        say(
            &mut sim,
            "sendonly",
            "gary",
            hearken::media::InputKind::Notice {
                shown_at,
                how: "provider_ui".into(),
            },
        );
    }
    sim.run_for(Duration::from_secs(19));
    assert!(sim.leave(gary));
    sim.run_for(Duration::from_secs(1));
    sim
}

#[test]
fn without_a_provider_notice_a_sendonly_participant_never_consents_by_staying() {
    let sim = call_with_gary(false);
    assert_eq!(captured(&sim, "gary", 0.0, 60.0), 0.0);
    let played = events_of(&sim, "prompt_played", "gary");
    assert!(
        sim.audit()
            .iter()
            .any(|e| e["event"] == "prompt_played" && e["audible"] == false),
        "the notice was logged as not audible: {played:?}"
    );
    assert!(
        !sim.audit()
            .iter()
            .any(|e| e["event"] == "state_changed" && e["to"]["method"] == "implicit"),
        "no implicit consent"
    );
    let discarded = events_of(&sim, "hold_discarded", "gary");
    assert!(!discarded.is_empty(), "his held audio was discarded");
}

#[test]
fn with_a_provider_notice_staying_is_consent_and_nothing_is_lost() {
    let sim = call_with_gary(true);
    let implicit = sim
        .audit()
        .into_iter()
        .find(|e| e["event"] == "state_changed" && e["to"]["method"] == "implicit")
        .expect("implicit consent");
    let t = implicit["t"].as_f64().unwrap();
    // Notice shown at 1 s (call time zero is the connection, a moment after
    // the sim's start), grace 5 s.
    assert!((5.8..6.3).contains(&t), "implicit consent at {t}");
    assert!(
        sim.audit().iter().any(|e| e["event"] == "notice_shown"),
        "the provider's notice is in the audit log"
    );
    let kept = captured(&sim, "gary", 0.0, 20.0);
    assert!(kept > 18.5, "everything from his first frame: {kept} s");
}
