//! A bug while handling one call (a panic injected into its frame
//! handling) ends that call only: its session fails with cause `internal`,
//! its files are finished, and the other call on the same engine keeps
//! every packet.

use std::time::Duration;

use hearken::media::{Command, EngineEvent, Reply};
use hearken::sinks::SinkMsg;
use hearken_core::conference::{EndReason, FailureCause};
use hearken_core::ids::CallId;
use hearken_testkit::Track;

use super::{consent, speech};
use crate::common::metric_sum;
use crate::sim::{Sim, Talk};

#[test]
fn a_panic_in_one_call_leaves_the_other_recording() {
    // Sendonly clients cannot hear the bot: the notice counts as shown at
    // once, and with no grace, capture starts at once.
    let mut sim = Sim::new(consent(0));
    let a = sim.join("call-a", &[Track::send_only("ann")]);
    let b = sim.join("call-b", &[Track::send_only("ben")]);
    // 8 s of speech each; the run lasts 10 s, so every packet arrives.
    let talk: Vec<Vec<u8>> = speech(3).into_iter().take(400).collect();
    for c in [a, b] {
        sim.clients[c]
            .talk
            .push(Talk::new(0, talk.clone(), Duration::ZERO));
    }
    sim.run_for(Duration::from_secs(3));
    let reply = sim.command(Command::InjectPanic {
        call_id: CallId::parse("call-a").unwrap(),
    });
    assert!(matches!(reply, Reply::Found(true)));
    sim.run_for(Duration::from_secs(7));

    // Call A ended with the panic: its session failed as internal, and the
    // recorder was told to finish its files.
    assert!(sim.events.iter().any(|e| matches!(
        e,
        EngineEvent::SessionEnded { call_id, failure: Some(f), .. }
            if call_id.as_str() == "call-a" && f.cause == FailureCause::Internal
    )));
    let ended: Vec<_> = sim
        .sink
        .iter()
        .filter_map(|m| match m {
            SinkMsg::CallEnded { summary, .. } => Some(summary),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].call_id, "call-a");
    assert_eq!(ended[0].end_reason, Some(EndReason::Internal));
    assert_eq!(
        metric_sum(&sim.metrics.render(), "hearken_media_call_panics_total"),
        1.0
    );

    // Call B never noticed: every packet Ben sent became a frame.
    let sent = sim.clients[b].talk[0].sent();
    let ben = sim.frames().iter().filter(|(p, _)| p == "ben").count();
    assert_eq!(sent, 400, "ben sent all his speech");
    assert_eq!(
        ben, sent,
        "every packet of the other call reached the sinks"
    );
    assert_eq!(sim.engine.call_count(), 1);
    assert_eq!(sim.engine.session_count(), 1);
}
