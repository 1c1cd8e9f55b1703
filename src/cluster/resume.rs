//! Going on with a call whose node was lost (`kill -9`, a machine gone).
//!
//! When a client reconnects, placement gives the call to a live node (the
//! dead owner's entry is taken over with compare-and-set). That node reads
//! what the lost one wrote to the fleet index and picks up from there:
//!
//! - the call's time zero, so the tracks it records stay aligned to it;
//! - the audit log, written to its own `consent.jsonl` line for line, so
//!   the hash chain goes on from the last line the lost node wrote;
//! - what was said about the participants (details, roster presence, the
//!   provider's notices, consent decisions), read back from the log and
//!   given to the new conference first, so consent goes on where it was;
//! - the files recorded there, so this node's tracks are the next segment
//!   (`{stem}.2.opus`) and `call.json` lists every segment in order.
//!
//! Prompts are not replayed from the log: a participant who reconnects
//! hears the notice again, as after any interruption.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use hearken_core::consent::engine::{
    CaptureSetting, ConsentMethod, Decision, ParticipantDetails, SignalEvidence,
};
use hearken_core::consent::rules::Location;
use serde::Deserialize;
use serde_json::Value;

use crate::media::{CallInput, InputKind};

/// `details_changed` as the audit log holds it.
#[derive(Deserialize)]
struct DetailsLine {
    participant: String,
    location: Option<Location>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    capture: CaptureSetting,
    user_id: Option<String>,
    #[serde(default)]
    mixed: bool,
}

/// `signal_received` as the audit log holds it.
#[derive(Deserialize)]
struct SignalLine {
    participant: String,
    decision: Decision,
    method: ConsentMethod,
    method_given: Option<String>,
    phrase: Option<String>,
    confidence: Option<f32>,
}

/// What was said about a call's participants, read back from its audit log
/// (lines as the fleet index holds them) in order. `started_at` is the
/// call's time zero (a notice's `shown` is call time).
pub fn inputs_from_audit(lines: &[String], started_at: DateTime<Utc>) -> Vec<CallInput> {
    let mut inputs = Vec::new();
    for line in lines {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let str_field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        let input = match value.get("event").and_then(Value::as_str) {
            Some("details_changed") => serde_json::from_value::<DetailsLine>(value.clone())
                .ok()
                .map(|d| CallInput {
                    participant_id: d.participant,
                    kind: InputKind::Details(ParticipantDetails {
                        location: d.location,
                        internal: d.internal,
                        capture: d.capture,
                        user_id: d.user_id,
                        mixed: d.mixed,
                    }),
                }),
            // Presence the provider reported; media presence comes back
            // with the media.
            Some("presence_changed") if str_field("via").as_deref() == Some("roster") => {
                match (
                    str_field("participant"),
                    value.get("present").and_then(Value::as_bool),
                ) {
                    (Some(participant_id), Some(present)) => Some(CallInput {
                        participant_id,
                        kind: InputKind::Presence(present),
                    }),
                    _ => None,
                }
            }
            Some("notice_shown") => match (str_field("participant"), str_field("how")) {
                (Some(participant_id), Some(how)) => {
                    let shown = value.get("shown").and_then(Value::as_f64).unwrap_or(0.0);
                    Some(CallInput {
                        participant_id,
                        kind: InputKind::Notice {
                            shown_at: started_at
                                + ChronoDuration::milliseconds((shown * 1000.0) as i64),
                            how,
                        },
                    })
                }
                _ => None,
            },
            Some("signal_received") => serde_json::from_value::<SignalLine>(value.clone())
                .ok()
                .map(|s| CallInput {
                    participant_id: s.participant,
                    kind: InputKind::Signal {
                        decision: s.decision,
                        method: s.method,
                        evidence: SignalEvidence {
                            method_given: Some(match s.method_given {
                                Some(given) => format!("{given} (before the call moved node)"),
                                None => "before the call moved node".to_owned(),
                            }),
                            phrase: s.phrase,
                            confidence: s.confidence,
                        },
                    },
                }),
            _ => None,
        };
        inputs.extend(input);
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_said_comes_back_in_order_and_media_presence_does_not() {
        let started: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        // Lines as `hearken_core::audit` writes them (README's audit log).
        let lines: Vec<String> = [
            r#"{"seq":1,"at":"2026-12-06T10:00:00.000Z","prev_sha256":"0","event":"call_policy","t":0.0}"#,
            r#"{"seq":2,"at":"2026-12-06T10:00:01.000Z","prev_sha256":"1","event":"details_changed","t":1.0,"participant":"alice","location":{"country":"DE"},"internal":false,"capture":"default","user_id":"u-1","mixed":false}"#,
            r#"{"seq":3,"at":"2026-12-06T10:00:02.000Z","prev_sha256":"2","event":"presence_changed","t":2.0,"participant":"alice","present":true,"via":"media"}"#,
            r#"{"seq":4,"at":"2026-12-06T10:00:03.000Z","prev_sha256":"3","event":"notice_shown","t":3.0,"participant":"bob","shown":2.5,"how":"banner"}"#,
            r#"{"seq":5,"at":"2026-12-06T10:00:04.000Z","prev_sha256":"4","event":"signal_received","t":4.0,"participant":"alice","decision":"granted","method":"dtmf"}"#,
            r#"{"seq":6,"at":"2026-12-06T10:00:05.000Z","prev_sha256":"5","event":"presence_changed","t":5.0,"participant":"carol","present":false,"via":"roster"}"#,
        ]
        .iter()
        .map(|l| (*l).to_owned())
        .collect();
        let inputs = inputs_from_audit(&lines, started);
        let kinds: Vec<(&str, &str)> = inputs
            .iter()
            .map(|i| {
                let kind = match &i.kind {
                    InputKind::Details(_) => "details",
                    InputKind::Presence(_) => "presence",
                    InputKind::Notice { .. } => "notice",
                    InputKind::Signal { .. } => "signal",
                };
                (i.participant_id.as_str(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("alice", "details"),
                ("bob", "notice"),
                ("alice", "signal"),
                ("carol", "presence"),
            ]
        );
        let InputKind::Details(d) = &inputs[0].kind else {
            unreachable!()
        };
        assert_eq!(d.user_id.as_deref(), Some("u-1"));
        assert_eq!(d.location.as_ref().map(|l| l.country.as_str()), Some("DE"));
        let InputKind::Notice { shown_at, how } = &inputs[1].kind else {
            unreachable!()
        };
        assert_eq!(*shown_at, started + ChronoDuration::milliseconds(2500));
        assert_eq!(how, "banner");
        let InputKind::Signal {
            decision, method, ..
        } = &inputs[2].kind
        else {
            unreachable!()
        };
        assert_eq!(
            (*decision, *method),
            (Decision::Granted, ConsentMethod::Dtmf)
        );
        assert_eq!(inputs[3].kind, InputKind::Presence(false));
    }
}
