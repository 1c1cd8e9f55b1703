//! A real two-speaker call, transcribed (the fake Deepgram: one word per
//! 0.5 s of sound), with what each speaker said known to the test: one WHIP
//! session (a gateway) carries alice and bob; alice sounds a 440 Hz tone
//! for 6 s, bob a 1 kHz tone from 5 s to 9 s, then both are silent for 2 s.
//! So alice talks 6 s, bob 4 s, one second at once; one turn each, bob
//! taking over before alice stops (patience 0).
//!
//! While the call goes on, the insights of the call so far come from its
//! words. After the call, the insights must say so (to the 20 ms of the level
//! frames plus the codec's edges: ±0.15 s), and `audio/mix.opus`, decoded
//! here with libopus, must hold each tone at its time and both where they
//! overlap.

use std::time::Duration;

use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

use super::{talk, wait_for_insights};
use crate::common::{decode_ogg_opus, get_json, metric_sum, transcribing_server};

const TOLERANCE: f64 = 0.15;

fn close(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got:.3}, expected {want:.3} ± {tolerance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_and_mix_match_what_was_said() {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let server = transcribing_server(&fake, "REVIEW_DG_KEY", |_| {}).await;
    let call = "two-speakers";
    let client = talk(
        &server,
        call,
        &[
            ("alice", &[(440.0, 6.0), (0.0, 5.0)]),
            ("bob", &[(0.0, 5.0), (1000.0, 4.0), (0.0, 2.0)]),
        ],
    )
    .await;

    // While the call goes on: insights of the call so far, from its words.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let live = loop {
        let live = get_json(&server, &format!("/v1/calls/{call}/insights")).await;
        let talked = |i: usize| {
            live["participants"][i]["talk_seconds"]
                .as_f64()
                .unwrap_or(0.0)
        };
        if talked(0) > 5.0 && talked(1) > 3.0 || std::time::Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("live insights of {call}: {live}");
    assert_eq!(live["live"], true, "{live}");
    for (i, who, talk) in [(0, "alice", 6.0), (1, "bob", 4.0)] {
        let p = &live["participants"][i];
        assert_eq!(p["participant"], who, "{live}");
        // Words are 0.5 s windows of sound: talk is known to half a second.
        let got = p["talk_seconds"].as_f64().unwrap_or(0.0);
        close(&format!("{who}'s live talk"), got, talk, 0.6);
    }
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let insights = wait_for_insights(&server, call).await;
    println!(
        "insights of {call}:\n{}",
        serde_json::to_string_pretty(&insights).unwrap()
    );
    let person = |id: &str| {
        insights["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["participant"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} in the insights"))
    };
    let (alice, bob) = (person("alice"), person("bob"));
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    close("alice talk", f(&alice["talk_seconds"]), 6.0, TOLERANCE);
    close("bob talk", f(&bob["talk_seconds"]), 4.0, TOLERANCE);
    close("alice ratio", f(&alice["talk_ratio"]), 0.6, 0.02);
    close("bob ratio", f(&bob["talk_ratio"]), 0.4, 0.02);
    close("overlap", f(&insights["overlap_seconds"]), 1.0, TOLERANCE);
    assert_eq!(alice["turns"], 1, "{alice}");
    assert_eq!(bob["turns"], 1, "{bob}");
    assert_eq!(insights["speaker_switches"], 1);
    close(
        "alice's longest monologue",
        f(&alice["longest_monologue"]["seconds"]),
        6.0,
        TOLERANCE,
    );
    // Bob began before alice stopped.
    assert_eq!(f(&bob["patience_seconds"]), 0.0, "{bob}");
    assert!(alice["patience_seconds"].is_null(), "alice spoke first");
    // Each one talk span; bob's starts 5 s after alice's (one client clock).
    let span = |p: &serde_json::Value| {
        let talk = p["talk"].as_array().unwrap();
        assert_eq!(talk.len(), 1, "one span: {p}");
        (f(&talk[0][0]), f(&talk[0][1]))
    };
    let (a0, a1) = span(&alice);
    let (b0, b1) = span(&bob);
    close("bob's start after alice's", b0 - a0, 5.0, TOLERANCE);
    close("alice's span", a1 - a0, 6.0, TOLERANCE);
    close("bob's span", b1 - b0, 4.0, TOLERANCE);
    // The fake backend makes one word per 0.5 s window of sound.
    let words = |p: &serde_json::Value| p["words"].as_u64().unwrap_or(0);
    assert!(
        (10..=13).contains(&words(&alice)),
        "alice ~12 words: {alice}"
    );
    assert!((6..=9).contains(&words(&bob)), "bob ~8 words: {bob}");

    // The mix: each tone at its time, both in the overlap, silence after.
    let summary = server.call_json(call).await;
    assert_eq!(summary["postcall"]["mix"]["state"], "done", "{summary}");
    assert_eq!(summary["postcall"]["mix"]["file"], "audio/mix.opus");
    assert_eq!(summary["postcall"]["insights"]["state"], "done");
    let mix = decode_ogg_opus(&server.call_dir(call).join("audio/mix.opus"));
    let alice_only = (a0 + 0.3, a0 + 4.7);
    let both = (a0 + 5.2, a0 + 5.8);
    let bob_only = (a0 + 6.3, a0 + 8.7);
    let quiet = (a0 + 9.3, a0 + 10.7);
    let level = |hz: f64, (from, to): (f64, f64)| mix.tone(hz, from, to);
    println!(
        "mix: 440 Hz {:.0} / {:.0} / {:.0} / {:.0}; 1 kHz {:.0} / {:.0} / {:.0} / {:.0} (alice only / both / bob only / quiet); rms quiet {:.1}",
        level(440.0, alice_only),
        level(440.0, both),
        level(440.0, bob_only),
        level(440.0, quiet),
        level(1000.0, alice_only),
        level(1000.0, both),
        level(1000.0, bob_only),
        level(1000.0, quiet),
        mix.rms(quiet.0, quiet.1)
    );
    // The tones were sent at 0.25 of full scale (8192).
    let sent = 8192.0;
    for (hz, inside, outside) in [
        (440.0, [alice_only, both], bob_only),
        (1000.0, [bob_only, both], alice_only),
    ] {
        for span in inside {
            assert!(level(hz, span) > 0.5 * sent, "{hz} Hz in {span:?}");
        }
        assert!(
            level(hz, outside) < 0.05 * sent,
            "no {hz} Hz in {outside:?}"
        );
    }
    assert!(mix.rms(quiet.0, quiet.1) < 100.0, "silence after both stop");

    // The review document says the same to an operator.
    let review = get_json(&server, &format!("/v1/calls/{call}/review")).await;
    assert_eq!(review["audio"]["state"], "done");
    assert_eq!(
        review["audio"]["url"],
        format!("/v1/calls/{call}/audio/mix.opus")
    );
    assert_eq!(review["participants"].as_array().unwrap().len(), 2);
    let words_sent: usize = review["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["words"].as_array().unwrap().len())
        .sum();
    assert_eq!(words_sent as u64, words(&alice) + words(&bob));

    let metrics = server.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "hearken_postcall_jobs_total{job=\"mix\",outcome=\"done\"}"
        ),
        1.0
    );
    server.shutdown().await;
}
