//! Two minutes of call in simulated time: a participant in New York is
//! captured from her first frame while she hears the notice, and consents
//! by staying through the grace period; a late joiner in California
//! (all-party, opt-out) holds capture of everyone, hears the notice on his
//! own session, presses 1 (not an answer: nobody asked him to; the notice
//! only says how to object), stays through the grace period, and what was
//! held of both is committed: nothing is lost. The
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
    // Bob presses 1 a second after the notice ended: the notice tells how
    // to object (9), not how to agree, so the key is ignored and logged.
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
    // into her sendrecv m-line) and is captured from her first frame
    // (notify); staying the grace period is implicit consent at notice + 5 s.
    let implicit_at = notice + 5.0;
    let alice_first = first("alice", 0.0);
    assert!(
        alice_first < 0.1,
        "alice captured from her first frame: {alice_first:.3} s"
    );
    assert!(
        count("alice", 0.0, implicit_at) as f64 >= (implicit_at - 0.1) / 0.02,
        "every frame before the implicit consent too"
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
    let pressed_at = paused_from + press_after.as_secs_f64() + 0.12;
    let consent_at = paused_from + notice + 5.0;
    assert!(
        count("alice", implicit_at, paused_from - 0.1) > 500,
        "alice captured until bob joined"
    );
    // While bob had not consented, everyone was held, not dropped; his key
    // press committed it: alice's track has no gap, and bob's starts at his
    // first frame.
    let held = consent_at - 0.1 - (paused_from + 0.1);
    assert!(
        count("alice", paused_from + 0.1, consent_at - 0.1) as f64 >= held / 0.02 - 2.0,
        "alice held while bob had not consented, committed when he did"
    );
    let bob_first = first("bob", 0.0);
    assert!(
        bob_first - paused_from < 0.2,
        "bob from his first frame at {bob_first:.3} s (joined {paused_from:.3} s)"
    );
    assert!(
        count("bob", paused_from + 0.2, consent_at - 0.1) as f64
            >= (consent_at - 0.1 - paused_from - 0.2) / 0.02 - 2.0,
        "bob's opening was held and committed"
    );
    for who in ["alice", "bob"] {
        assert!(
            audit.iter().any(|e| e["event"] == "hold_committed"
                && e["participant"] == who
                && e["to"].as_f64().unwrap_or(0.0) >= consent_at - 0.2),
            "the audit log says {who}'s hold was committed"
        );
    }
    // Both are captured to the end of the call.
    assert!(count("alice", 100.0, 119.0) > 900);
    assert!(count("bob", 100.0, 119.0) > 900);

    // Bob heard the notice on his own session.
    let bob_heard = sim.clients[bob].received.len();
    assert!(
        bob_heard >= prompts.notice.packets.len(),
        "bob heard {bob_heard} packets"
    );

    // The audit log tells it: the key press was ignored, and bob consented
    // by staying.
    let ignored = audit.iter().find(|e| {
        e["event"] == "signal_ignored" && e["participant"] == "bob" && e["signal"] == "dtmf 1"
    });
    let ignored_t = ignored.expect("bob's 1 was ignored")["t"]
        .as_f64()
        .expect("t");
    assert!(
        (ignored_t - pressed_at).abs() < 0.1,
        "ignored at {ignored_t:.3} s"
    );
    let bob_implicit = audit.iter().find(|e| {
        e["event"] == "state_changed"
            && e["participant"] == "bob"
            && e["to"]["method"] == "implicit"
    });
    let bob_t = bob_implicit.expect("bob consented by staying")["t"]
        .as_f64()
        .expect("t");
    assert!(
        (bob_t - consent_at).abs() < 0.1,
        "implicit consent at {bob_t:.3} s, expected {consent_at:.3} s"
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
