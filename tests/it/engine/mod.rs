//! The media engine in simulated time (see `crate::sim`): whole calls with
//! real str0m clients, without sockets or waiting. The consent scenarios of
//! the second consent pass are here, one behaviour per file: their expected
//! values come from the rules file (US-NY one-party `notify`; DE all-party
//! `explicit`; GB one-party `notify_and_allow_opt_out`), the config and the
//! script of the call.

mod decliner_rejoins_with_a_new_msid;
mod dtls_loss;
mod dtmf_before_the_request_ends;
mod failures;
mod late_location_raises_the_mode;
mod listener_only_in_an_all_party_state;
mod mode_falls_with_a_pending_request;
mod never_arrives_after_join;
mod panic_ends_one_call;
mod replayed_and_forged_srtp;
mod routing;
mod rsa_client;
mod sendonly_needs_a_provider_notice;
mod sip_dialog;
mod two_minute_call;
mod wrong_srtp_keys_give_the_stream_back;

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

/// Hands the engine something the provider said about `participant`.
pub fn say(sim: &mut Sim, call: &str, participant: &str, kind: hearken::media::InputKind) {
    let reply = sim.command(hearken::media::Command::Input {
        call_id: CallId::parse(call).expect("call id"),
        input: hearken::media::CallInput {
            participant_id: participant.to_owned(),
            kind,
        },
        audited: None,
    });
    assert!(
        matches!(reply, hearken::media::Reply::Found(true)),
        "{reply:?}"
    );
}

/// Details in `code` (ISO 3166-2 or -1).
pub fn details_in(code: &str) -> ParticipantDetails {
    ParticipantDetails {
        location: Some(Location::from_code(code).expect("location")),
        ..ParticipantDetails::default()
    }
}

/// Seconds of `who`'s frames that reached the sinks in `[from, to)`.
pub fn captured(sim: &Sim, who: &str, from: f64, to: f64) -> f64 {
    sim.frames()
        .iter()
        .filter(|(p, t)| p == who && *t >= from && *t < to)
        .count() as f64
        * 0.02
}

/// The audit events of `kind` about `who`.
pub fn events_of(sim: &Sim, kind: &str, who: &str) -> Vec<serde_json::Value> {
    sim.audit()
        .into_iter()
        .filter(|e| e["event"] == kind && e["participant"] == who)
        .collect()
}
