//! SIGTERM on the real binary: it stops taking sessions, ends the call in
//! progress cleanly (EOS page written, `call.json` final with reason
//! `shutdown`) and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Outgoing, TestServer, WhipClient, decode_ogg_opus, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_calls_cleanly_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearken"))
        .arg("serve")
        .env("HEARKEN_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("HEARKEN_MEDIA_PORT_BASE", "0")
        .env("HEARKEN_MEDIA_WORKERS", "1")
        .env("HEARKEN_CONSENT_GRACE_PERIOD_MS", "0")
        // Nobody's location is given: the company says that needs no consent.
        .env("HEARKEN_CONSENT_UNKNOWN_LOCATION_MODE", "none")
        .env("HEARKEN_STORAGE_DATA_DIR", data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Reuse the test client against the external process.
    let server = TestServer {
        server: None,
        http,
        data_dir: data,
        client: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = server.client.get(server.url("/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = WhipClient::connect(&server, "drained", &["talker"]).await;
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "clean exit");

    let dir = server.call_dir("drained");
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
