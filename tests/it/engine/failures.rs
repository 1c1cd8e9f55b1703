//! A session that never connects is ended with the reason it failed: no ICE
//! at all, or ICE without DTLS. The cause is counted in
//! `hearken_sessions_failed_total{cause}` and reported with the session's
//! end.

use std::time::Duration;

use hearken::media::EngineEvent;
use hearken_core::conference::{FailureCause, SessionEndReason};
use hearken_testkit::Track;

use super::consent;
use crate::common::metric_sum;
use crate::sim::Sim;

fn failure_of(sim: &Sim) -> Option<FailureCause> {
    sim.events.iter().find_map(|e| match e {
        EngineEvent::SessionEnded {
            reason: SessionEndReason::ConnectTimeout,
            failure: Some(f),
            ..
        } => Some(f.cause),
        _ => None,
    })
}

#[test]
fn a_client_that_never_reaches_us_is_an_ice_timeout() {
    let mut sim = Sim::new(consent(0));
    sim.join("silent", &[Track::send_only("sam")]);
    // Nothing the client sends arrives.
    sim.drop_if = Some(Box::new(|_, to, _| to == crate::sim::SERVER));
    sim.run_for(Duration::from_secs(11));
    assert_eq!(failure_of(&sim), Some(FailureCause::IceTimeout));
    let text = sim.metrics.render();
    assert!(
        text.contains("hearken_sessions_failed_total{cause=\"ice_timeout\"} 1"),
        "{text}"
    );
    assert_eq!(metric_sum(&text, "hearken_sessions_failed_total"), 1.0);
    assert_eq!(sim.engine.call_count(), 0, "the call had no other session");
}

#[test]
fn ice_without_dtls_is_a_dtls_timeout() {
    let mut sim = Sim::new(consent(0));
    sim.join("no-dtls", &[Track::send_only("dee")]);
    // DTLS records (RFC 7983: first byte 20-63) from the client are lost.
    sim.drop_if = Some(Box::new(|_, to, data| {
        to == crate::sim::SERVER && data.first().is_some_and(|b| (20..64).contains(b))
    }));
    sim.run_for(Duration::from_secs(11));
    assert_eq!(failure_of(&sim), Some(FailureCause::DtlsTimeout));
}
