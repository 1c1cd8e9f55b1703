//! The media engine in simulated time (see `crate::sim`): whole calls with
//! real str0m clients, without sockets or waiting.

mod dtls_loss;
mod failures;
mod panic_ends_one_call;
mod routing;
mod rsa_client;
mod two_minute_call;

use std::path::Path;

use hearken::config::ConsentConfig;
use hearken_core::consent::engine::ParticipantDetails;
use hearken_core::consent::rules::Location;
use hearken_core::ids::CallId;

use crate::sim::Sim;

/// The test speech clips, one after another, `times` over.
pub fn speech(times: usize) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("media/test");
    let a = hearken_testkit::read_opus_packets(&dir.join("speaker-a.opus")).expect("speech a");
    let b = hearken_testkit::read_opus_packets(&dir.join("speaker-b.opus")).expect("speech b");
    let mut out = Vec::new();
    for _ in 0..times {
        out.extend(a.iter().cloned());
        out.extend(b.iter().cloned());
    }
    out
}

/// Gives a participant's location to the engine.
pub fn located(sim: &mut Sim, call: &str, participant: &str, code: &str) {
    let reply = sim.command(hearken::media::Command::Input {
        call_id: CallId::parse(call).expect("call id"),
        input: hearken::media::CallInput {
            participant_id: participant.to_owned(),
            kind: hearken::media::InputKind::Details(ParticipantDetails {
                location: Some(Location::from_code(code).expect("location")),
                ..ParticipantDetails::default()
            }),
        },
        audited: None,
    });
    assert!(
        matches!(reply, hearken::media::Reply::Found(true)),
        "{reply:?}"
    );
}

/// Consent with the recorder in New York (one-party, `notify`), a company
/// that says a participant of unknown location needs no consent, and a
/// grace of `grace_ms`: capture from the first frame unless a test gives
/// locations that require more.
pub fn consent(grace_ms: u64) -> ConsentConfig {
    ConsentConfig {
        recorder_location: "US-NY".into(),
        unknown_location_mode: Some(hearken_core::consent::rules::ConsentMode::None),
        grace_period_ms: grace_ms,
        ..ConsentConfig::default()
    }
}
