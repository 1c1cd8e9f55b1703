//! Post-call work a crash interrupted, or that never began, is done at the
//! next start: a call whose `call.json` says its mix was running (as a
//! server killed mid-mix leaves it), and one that ended while that work was
//! off (or as the server stopped), get their mix and insights from the next
//! server on the same data directory.

use super::{call_of, wait_for_insights};
use crate::common::{TestServer, decode_ogg_opus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_cut_short_is_made_at_the_next_start() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_owned();
    let call = "interrupted";
    let first = TestServer::start_with(|c| {
        c.storage.data_dir = dir.clone();
        c.insights.enabled = false;
    })
    .await;
    call_of(&first, call, &[("alice", &[(440.0, 2.0), (0.0, 0.5)])]).await;
    let untouched = "never-began";
    call_of(&first, untouched, &[("bob", &[(1000.0, 1.0), (0.0, 0.5)])]).await;
    first.shutdown().await;

    // What a crash in the middle of the mix leaves.
    let call_json = dir.join("calls").join(call).join("call.json");
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&call_json).unwrap()).unwrap();
    assert!(summary.get("postcall").is_none(), "nothing was made yet");
    summary["postcall"] = serde_json::json!({
        "mix": {"state": "running", "progress": 0.3},
        "insights": {"state": "pending", "progress": 0.0},
    });
    std::fs::write(&call_json, serde_json::to_vec(&summary).unwrap()).unwrap();

    let second = TestServer::start_with(|c| c.storage.data_dir = dir.clone()).await;
    let bob = wait_for_insights(&second, untouched).await;
    let talk = bob["participants"][0]["talk_seconds"].as_f64().unwrap();
    assert!((talk - 1.0).abs() < 0.15, "bob talked 1 s: {talk}");
    let insights = wait_for_insights(&second, call).await;
    let alice = &insights["participants"][0];
    assert_eq!(alice["participant"], "alice");
    let talk = alice["talk_seconds"].as_f64().unwrap();
    assert!((talk - 2.0).abs() < 0.15, "alice talked 2 s: {talk}");
    let summary = second.call_json(call).await;
    assert_eq!(summary["postcall"]["mix"]["state"], "done", "{summary}");
    let mix = decode_ogg_opus(&dir.join("calls").join(call).join("audio/mix.opus"));
    assert!(mix.tone(440.0, 0.3, 1.7) > 4000.0, "the tone is in the mix");
    second.shutdown().await;
}
