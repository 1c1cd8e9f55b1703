//! Engine tests for how the rules reach the engine: the unknown-location
//! mode and mixed m-lines. Expected values are the rules file's, by hand.

use super::*;

const SECOND: u64 = SAMPLES_PER_SECOND;

fn engine(policy: Policy) -> ConsentEngine {
    ConsentEngine::new(
        Arc::new(Rules::builtin()),
        EngineConfig {
            policy,
            // US-NY: one-party, notify.
            recorder_location: Some(Location::from_code("US-NY").unwrap()),
            ..EngineConfig::default()
        },
    )
}

fn drain(e: &mut ConsentEngine) -> Vec<ConsentOutput> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn call_policy(outputs: &[ConsentOutput]) -> (ConsentMode, &'static str) {
    outputs
        .iter()
        .find_map(|o| match o {
            ConsentOutput::Audit(AuditEvent::CallPolicy {
                unknown_location_mode,
                unknown_location_mode_from,
                ..
            }) => Some((*unknown_location_mode, *unknown_location_mode_from)),
            _ => None,
        })
        .expect("a CallPolicy line")
}

/// Joins `id` with no details and lets the details wait run out.
fn join_without_details(e: &mut ConsentEngine, id: &str) -> Vec<ConsentOutput> {
    e.handle_join(id, 0);
    e.handle_timeout(10 * SECOND);
    drain(e)
}

#[test]
fn unknown_location_mode_is_the_rules_default_explicit() {
    let mut e = engine(Policy::default());
    let out = join_without_details(&mut e, "carol");
    assert_eq!(call_policy(&out), (ConsentMode::Explicit, "rules"));
    assert_eq!(e.decision().map(|d| d.mode), Some(ConsentMode::Explicit));
}

#[test]
fn the_policy_unknown_location_mode_reaches_the_engine() {
    let mut e = engine(Policy {
        unknown_location_mode: Some(ConsentMode::Notify),
        ..Policy::default()
    });
    let out = join_without_details(&mut e, "carol");
    assert_eq!(call_policy(&out), (ConsentMode::Notify, "policy"));
    // carol: the company's notify; the recorder US-NY: notify.
    let d = e.decision().expect("decided");
    assert_eq!(d.mode, ConsentMode::Notify);
    assert_eq!(d.per_participant[0].1.matched, "default_unknown");
}

#[test]
fn a_mixed_m_line_makes_the_gate_call_wide() {
    let mut e = engine(Policy::default());
    let ny = Some(Location::from_code("US-NY").unwrap());
    e.handle_details(
        "alice",
        ParticipantDetails {
            location: ny.clone(),
            ..ParticipantDetails::default()
        },
        0,
    );
    e.handle_join("alice", 0);
    let d = e.decision().expect("decided");
    assert_eq!(d.scope, GateScope::PerParticipant, "US-NY is one-party");
    e.handle_details(
        "room",
        ParticipantDetails {
            location: ny,
            mixed: true,
            ..ParticipantDetails::default()
        },
        SECOND,
    );
    e.handle_join("room", SECOND);
    let d = e.decision().expect("decided");
    assert_eq!(d.scope, GateScope::CallWide);
    assert_eq!(d.mode, ConsentMode::Notify);
}
