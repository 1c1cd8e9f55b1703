//! Should the engine ever decrypt a stream it took from str0m with keys
//! that are not the sender's (a bug in handing the keys over), it does not
//! drop the speaker's audio for the rest of the call: after 16 packets that
//! fail authentication, with none passing, the session gives its streams
//! back to str0m, which receives the rest as before. Only those 16 are
//! lost, each counted.

use std::time::Duration;

use hearken::media::{Command, Reply};
use hearken_core::ids::CallId;
use hearken_testkit::Track;

use super::{consent, speech};
use crate::sim::{Sim, Talk};

#[test]
fn after_16_failures_str0m_receives_the_stream_again() {
    let mut sim = Sim::new(consent(0));
    let c = sim.join("wrong-keys", &[Track::send_only("wes")]);
    // Before the session connects and takes its stream from str0m.
    let reply = sim.command(Command::InjectWrongSrtpKeys {
        call_id: CallId::parse("wrong-keys").unwrap(),
    });
    assert!(matches!(reply, Reply::Found(true)), "{reply:?}");
    let talk: Vec<Vec<u8>> = speech(1).into_iter().take(150).collect();
    sim.clients[c].talk.push(Talk::new(0, talk, Duration::ZERO));
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.clients[c].talk[0].sent(), 150);

    let frames = sim.frames().iter().filter(|(p, _)| p == "wes").count();
    assert_eq!(frames, 150 - 16, "all but the 16 that failed were recorded");
    sim.engine.handle_timeout(sim.now);
    let auth_failures: f64 = sim
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("hearken_ingest_errors_total{"))
        .filter(|l| l.contains("ingest=\"whip\"") && l.contains("reason=\"srtp_auth\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(auth_failures, 16.0);
}
