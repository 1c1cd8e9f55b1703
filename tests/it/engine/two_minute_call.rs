//! Two minutes of call in simulated time: a participant in New York hears
//! the notice and consents by staying through the grace period; a late
//! joiner in California (all-party) pauses capture of everyone, hears the
//! notice on his own session, presses 1, and capture resumes for both. The
//! expected times come from the rules file (US-NY: notify, one-party;
//! US-CA: notify_and_allow_opt_out, all-party), the config (grace 5 s),
//! the prompts' lengths and the script of the call.

use std::time::{Duration, Instant};

use hearken_testkit::Track;

use super::{consent, located, speech};
use crate::sim::{KeyPress, Sim, Talk};

#[test]
fn prompts_dtmf_late_joiner_and_grace_in_simulated_time() {
    let wall = Instant::now();
    let mut sim = Sim::new(consent(5_000));
    let prompts = hearken::setup::consent::load_prompts("en", None).expect("prompts");
    let notice = prompts.notice.duration.as_secs_f64();

    let alice = sim.join("call", &[Track::send_recv("alice")]);
    located(&mut sim, "call", "alice", "US-NY");
    sim.clients[alice]
        .talk
        .push(Talk::new(0, speech(20), Duration::ZERO));
    sim.run_for(Duration::from_secs(30));
    let bob_joined = sim.elapsed();
    let bob = sim.join("call", &[Track::send_recv("bob")]);
    located(&mut sim, "call", "bob", "US-CA");
    sim.clients[bob]
        .talk
        .push(Talk::new(0, speech(20), Duration::ZERO));
    // Bob presses 1 a second after the notice ended, before the grace
    // period would have made it implicit.
    let press_after = Duration::from_secs_f64(notice + 1.0);
    sim.clients[bob].keys.push(KeyPress::new(0, 1, press_after));
    sim.run_until(sim.t0 + Duration::from_secs(120));
    assert!(sim.leave(alice));
    assert!(sim.leave(bob));
    sim.run_for(Duration::from_secs(1));
    let wall = wall.elapsed();

    let connected = |c: usize| {
        sim.clients[c]
            .connected_at
            .expect("connected")
            .duration_since(sim.t0)
            .as_secs_f64()
    };
    let (alice_at, bob_at) = (connected(alice), connected(bob));
    let frames = sim.frames();
    let first = |who: &str, after: f64| {
        frames
            .iter()
            .filter(|(p, t)| p == who && *t >= after)
            .map(|(_, t)| *t)
            .fold(f64::INFINITY, f64::min)
    };
    let count = |who: &str, from: f64, to: f64| {
        frames
            .iter()
            .filter(|(p, t)| p == who && *t >= from && *t < to)
            .count()
    };
    let audit = sim.audit();
    println!(
        "simulated 121 s in {:.0} ms wall; alice connected at {alice_at:.3} s, bob joined at {bob_joined:.3} s",
        wall.as_secs_f64() * 1000.0
    );
    for line in &audit {
        println!("  {line}");
    }

    // Call time zero is alice's connection. She hears the notice (played
    // into her sendrecv m-line), then stays the grace period: implicit
    // consent at notice + 5 s. Nothing of her before that is captured.
    let implicit_at = notice + 5.0;
    assert_eq!(
        count("alice", 0.0, implicit_at - 0.02),
        0,
        "nothing before consent"
    );
    let alice_first = first("alice", 0.0);
    assert!(
        (alice_first - implicit_at).abs() < 0.1,
        "alice captured from {alice_first:.3} s, consent at {implicit_at:.3} s"
    );
    // Her client heard the notice, packet for packet, and nothing else
    // before bob joined.
    let heard: Vec<&[u8]> = sim.clients[alice]
        .received
        .iter()
        .filter(|(at, _, _)| at.duration_since(sim.t0).as_secs_f64() < bob_joined)
        .map(|(_, _, p)| p.as_slice())
        .collect();
    let notice_packets: Vec<&[u8]> = prompts.notice.packets.iter().map(|p| &*p.data).collect();
    assert_eq!(
        heard.len(),
        notice_packets.len(),
        "alice heard the whole notice"
    );
    assert!(
        heard == notice_packets,
        "what alice heard is the notice, byte for byte"
    );

    // Bob's call time of joining: the whole call pauses until he consents
    // (all-party), then both are captured again.
    // The key is held 120 ms; RFC 4733 says it was pressed when its end
    // packet arrives.
    let paused_from = bob_at - alice_at;
    let consent_at = paused_from + press_after.as_secs_f64() + 0.12;
    assert!(
        count("alice", implicit_at, paused_from - 0.1) > 500,
        "alice captured until bob joined"
    );
    assert_eq!(
        count("alice", paused_from + 0.1, consent_at - 0.1),
        0,
        "alice paused while bob had not consented"
    );
    assert_eq!(
        count("bob", 0.0, consent_at - 0.1),
        0,
        "nothing of bob before his key press"
    );
    let resumed = first("alice", consent_at - 0.1);
    assert!(
        (resumed - consent_at).abs() < 0.15,
        "alice resumed at {resumed:.3} s, consent at {consent_at:.3} s"
    );
    let bob_first = first("bob", 0.0);
    assert!(
        (bob_first - consent_at).abs() < 0.15,
        "bob from {bob_first:.3} s, consent at {consent_at:.3} s"
    );
    // Both are captured to the end of the call.
    assert!(count("alice", 100.0, 119.0) > 900);
    assert!(count("bob", 100.0, 119.0) > 900);

    // Bob heard the notice on his own session.
    let bob_heard = sim.clients[bob].received.len();
    assert!(
        bob_heard >= prompts.notice.packets.len(),
        "bob heard {bob_heard} packets"
    );

    // The audit log tells it in order: the key press is a DTMF consent.
    let dtmf = audit.iter().find(|e| {
        e["event"] == "state_changed" && e["participant"] == "bob" && e["to"]["method"] == "dtmf"
    });
    let dtmf_t = dtmf.expect("bob consented by dtmf")["t"]
        .as_f64()
        .expect("t");
    assert!(
        (dtmf_t - consent_at).abs() < 0.1,
        "dtmf consent at {dtmf_t:.3} s"
    );
    let implicit = audit.iter().find(|e| {
        e["event"] == "state_changed"
            && e["participant"] == "alice"
            && e["to"]["method"] == "implicit"
    });
    let implicit_t = implicit.expect("alice consented implicitly")["t"]
        .as_f64()
        .expect("t");
    assert!(
        (implicit_t - implicit_at).abs() < 0.05,
        "implicit consent at {implicit_t:.3} s"
    );

    // The call ended with its last session; the sinks got the end.
    assert!(
        sim.sink
            .iter()
            .any(|m| matches!(m, hearken::sinks::SinkMsg::CallEnded { .. }))
    );
    assert_eq!(sim.engine.call_count(), 0);
}
