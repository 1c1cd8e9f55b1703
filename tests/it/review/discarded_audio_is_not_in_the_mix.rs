//! Audio whose consent is withdrawn with a discard never reaches the mix.
//!
//! Alice (known to be in New York: notify) sounds 440 Hz for 3 s; Carol,
//! whose location is not known yet (the test server's company policy for
//! that: no consent needed), sounds 1 kHz over the same 3 s and is
//! captured. At 3.5 s Carol turns out to be in California (all-party,
//! notify-and-allow-opt-out): her mode is now above what her audio was
//! captured under, so the consent engine discards it (a `discarded` line
//! naming her). After the call, the mix holds Alice's tone and nothing of
//! Carol's.

use std::time::Duration;

use super::{talk, wait_for_insights};
use crate::common::{TestServer, consent_log, decode_ogg_opus, locate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_participant_is_silent_in_the_mix() {
    let server = TestServer::start().await;
    let call = "discarded-in-mix";
    locate(&server, call, "alice", "US-NY").await;
    let during = async {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        locate(&server, call, "carol", "US-CA").await;
    };
    let speakers: [(&str, &[(f64, f64)]); 2] = [
        ("alice", &[(440.0, 3.0), (0.0, 2.5)]),
        ("carol", &[(1000.0, 3.0), (0.0, 2.5)]),
    ];
    let (client, ()) = tokio::join!(talk(&server, call, &speakers), during);
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let log = consent_log(&server, call).await;
    let discard = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "discarded" && e["participant"] == "carol")
        .cloned();
    assert!(discard.is_some(), "carol's audio was discarded: {log}");

    wait_for_insights(&server, call).await;
    let summary = server.call_json(call).await;
    assert_eq!(summary["postcall"]["mix"]["state"], "done", "{summary}");
    let mix = decode_ogg_opus(&server.call_dir(call).join("audio/mix.opus"));
    let whole = (0.0, mix.seconds());
    let alice = mix.tone(440.0, 0.5, 2.5);
    let carol = mix.tone(1000.0, whole.0, whole.1);
    let carol_where_she_spoke = mix.tone(1000.0, 0.5, 2.5);
    println!(
        "mix {:.2} s: 440 Hz {alice:.0} (sent 8192); 1 kHz {carol:.0} over the call, {carol_where_she_spoke:.0} where carol spoke",
        mix.seconds()
    );
    assert!(alice > 4000.0, "alice's tone is in the mix");
    assert!(
        carol_where_she_spoke < 100.0,
        "nothing of carol's discarded audio"
    );
    server.shutdown().await;
}
