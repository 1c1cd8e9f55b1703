//! Two participants join one call on separate WHIP sessions (one per
//! participant, as a browser-based provider does), the second one second
//! later. Each sends real Opus speech; both DELETE. Each recording must be
//! the call's length, carry speech (not silence), and keep its place on the
//! call timeline.

use std::time::Duration;

use crate::common::{Outgoing, TestServer, WhipClient, decode_ogg_opus, metric_sum, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_are_recorded_aligned() {
    let server = TestServer::start().await;
    let call = "two-participants";

    let alice = WhipClient::connect(&server, call, &["alice"]).await;
    let alice_run = tokio::task::spawn_blocking(move || {
        alice.run(
            vec![Outgoing {
                stream_id: "alice".into(),
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let bob = WhipClient::connect(&server, call, &["bob"]).await;
    let bob_run = tokio::task::spawn_blocking(move || {
        bob.run(
            vec![Outgoing {
                stream_id: "bob".into(),
                packets: speech("speaker-b.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    });
    let alice = alice_run.await.unwrap();
    let bob = bob_run.await.unwrap();

    let live = server.call_json(call).await;
    assert_eq!(live["participants"].as_array().unwrap().len(), 2, "{live}");
    assert!(live["ended_at"].is_null());

    assert_eq!(server.delete(&alice.location).await.status(), 200);
    assert_eq!(server.delete(&bob.location).await.status(), 200);
    // Deleting again: the session is gone.
    assert_eq!(server.delete(&bob.location).await.status(), 404);

    let summary = server.call_json(call).await;
    let started =
        chrono::DateTime::parse_from_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    let ended =
        chrono::DateTime::parse_from_rfc3339(summary["ended_at"].as_str().unwrap()).unwrap();
    let call_seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    assert_eq!(summary["end_reason"], "last_session_left");

    let dir = server.call_dir(call);
    let a = decode_ogg_opus(&dir.join("audio/alice.opus"));
    let b = decode_ogg_opus(&dir.join("audio/bob.opus"));
    let source_a = speech("speaker-a.opus").len() as f64 * 0.02;
    let source_b = speech("speaker-b.opus").len() as f64 * 0.02;
    println!(
        "call {call_seconds:.3} s; alice {:.3} s (rms {:.0}, voiced {:.2} s, onset {:?}); bob {:.3} s (rms {:.0}, voiced {:.2} s, onset {:?}); sources {source_a:.2} s / {source_b:.2} s",
        a.seconds(),
        a.rms(0.0, a.seconds()),
        a.voiced_seconds(300.0),
        a.onset(300.0),
        b.seconds(),
        b.rms(0.0, b.seconds()),
        b.voiced_seconds(300.0),
        b.onset(300.0),
    );
    for (name, d) in [("alice", &a), ("bob", &b)] {
        assert_eq!(d.pages_with_eos, 1, "{name}: one EOS page");
        assert!(
            d.rms(0.0, d.seconds()) > 300.0,
            "{name}: speech, not silence"
        );
    }
    // Alice was connected from call time zero until she left: her track spans
    // (nearly) the whole call. Bob joined ~1 s later; his track starts at call
    // time zero too (leading fill) and his speech starts about 1 s in.
    assert!(
        (a.seconds() - call_seconds).abs() < 0.5,
        "alice {} vs call {call_seconds}",
        a.seconds()
    );
    assert!(
        (b.seconds() - call_seconds).abs() < 0.5,
        "bob {} vs call {call_seconds}",
        b.seconds()
    );
    let a_on = a.onset(300.0).unwrap();
    let b_on = b.onset(300.0).unwrap();
    assert!(a_on < 0.6, "alice speaks from the start: {a_on}");
    assert!(
        b_on > 0.8 && b_on < 1.8,
        "bob's speech keeps its place: {b_on}"
    );
    assert!(b.rms(0.0, 0.8) < 50.0, "bob's leading fill is silent");
    // Most of each clip arrived and was kept.
    assert!(a.voiced_seconds(300.0) > 0.5 * source_a);
    assert!(b.voiced_seconds(300.0) > 0.5 * source_b);

    let parts = summary["participants"].as_array().unwrap();
    let alice_json = parts.iter().find(|p| p["id"] == "alice").unwrap();
    assert_eq!(alice_json["file"], "audio/alice.opus");
    let received = alice_json["packets_received"].as_u64().unwrap();
    assert!(
        received as usize >= speech("speaker-a.opus").len() - 2,
        "{alice_json}"
    );
    assert!((alice_json["recorded_seconds"].as_f64().unwrap() - a.seconds()).abs() < 0.05);

    let metrics = server.metrics().await;
    assert!(metric_sum(&metrics, "hearken_rtp_packets_received_total") >= received as f64);
    assert_eq!(metric_sum(&metrics, "hearken_calls_active"), 0.0);
    assert_eq!(metric_sum(&metrics, "hearken_sessions_active"), 0.0);
    server.shutdown().await;
}
