//! SIGTERM on the real binary: it stops taking sessions, ends the call in
//! progress cleanly (EOS page written, `call.json` final with reason
//! `shutdown`) and exits 0.

use std::time::Duration;

use crate::common::{Binary, Outgoing, WhipClient, decode_ogg_opus, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_calls_cleanly_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let mut binary = Binary::start(data.path(), &[]).await;
    let server = &binary.http;
    let client = WhipClient::connect(server, "drained", &["talker"]).await;
    let run = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: "talker".into(),
                packets: speech("speaker-a.opus")[..50].to_vec(),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(500),
        )
    });
    let _client = run.await.unwrap();

    let exit = binary.terminate().await;
    assert_eq!(exit.code(), Some(0), "clean exit");

    let dir = data.path().join("calls/drained");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("call.json")).unwrap()).unwrap();
    assert_eq!(summary["end_reason"], "shutdown", "{summary}");
    assert!(summary["ended_at"].is_string());
    let recording = decode_ogg_opus(&dir.join("audio/talker.opus"));
    assert_eq!(recording.pages_with_eos, 1);
    assert!(recording.seconds() > 1.0, "{}", recording.seconds());
    let recorded = summary["participants"][0]["recorded_seconds"]
        .as_f64()
        .unwrap();
    assert!((recorded - recording.seconds()).abs() < 0.05);
}
