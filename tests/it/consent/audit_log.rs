//! The consent audit log end to end: a real call's `consent.jsonl` is a hash
//! chain whose head `call.json` records; `hearken consent verify` (the real
//! binary) accepts it, and names the line of every edit, deletion or
//! reordering. When a line cannot be written, the call's capture stops
//! there (fail closed), the API says so, and `call.json` says why.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{
    Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, locate, metric_sum, speech,
};

fn verify(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearken"))
        .args(["consent", "verify"])
        .arg(dir)
        .env_remove("HEARKEN_CONFIG")
        .output()
        .expect("run hearken")
}

/// The verdict on a tampered log: it must fail, and say `needle`.
fn refused(dir: &Path, needle: &str) -> String {
    let out = verify(dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a tampered log verified:\n{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    stderr
}

async fn post_consent(server: &TestServer, call: &str, who: &str) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/v1/calls/{call}/participants/{who}/consent")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"decision": "granted", "method": "api"}))
        .send()
        .await
        .unwrap()
}

/// `who` talks for about 3.4 s; `during` runs 1.5 s into it.
async fn talk_while<F: std::future::Future<Output = T>, T>(
    server: &TestServer,
    call: &str,
    who: &str,
    during: impl FnOnce() -> F,
) -> T {
    // In New York (notify): captured from the first frame, not held.
    locate(server, call, who, "US-NY").await;
    let client = WhipClient::connect(server, call, &[who]).await;
    let id = who.to_owned();
    let talking = tokio::task::spawn_blocking(move || {
        client.run(
            vec![Outgoing {
                stream_id: id,
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let result = during().await;
    let client = talking.await.unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_log_verifies_and_every_tampering_is_named() {
    let server = TestServer::start().await;
    let call = "audited";
    let on_disk = talk_while(&server, call, "kim", || async {
        let r = post_consent(&server, call, "kim").await;
        assert_eq!(r.status(), 200);
        // Answered only once the line is on disk.
        std::fs::read_to_string(server.call_dir(call).join("consent.jsonl")).unwrap()
    })
    .await;
    assert!(
        on_disk.contains("\"method\":\"api\""),
        "the API's line was synced before the answer:\n{on_disk}"
    );

    let dir = server.call_dir(call);
    let log_path = dir.join("consent.jsonl");
    let original = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    println!("{original}");
    let summary = server.call_json(call).await;
    let recorded = &summary["consent_log"];
    assert_eq!(recorded["lines"].as_u64(), Some(lines.len() as u64));
    assert!(recorded.get("error").is_none(), "{recorded}");
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["event"], "call_ended");
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"].as_u64(), Some(i as u64 + 1), "{line}");
        assert!(v["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{line}");
    }

    // Untouched: exit 0 and a report that names the head call.json holds.
    let out = verify(&dir);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("{} lines", lines.len())),
        "{report}"
    );
    assert!(
        report.contains(recorded["head_sha256"].as_str().unwrap()),
        "{report}"
    );
    let api = crate::common::consent_log(&server, call).await;
    assert_eq!(api["chain"]["ok"], true, "{}", api["chain"]);
    assert_eq!(api["chain"]["head_sha256"], recorded["head_sha256"]);

    let write = |lines: &[&str]| {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&log_path, text).unwrap();
    };
    // The API's grant becomes a UI one.
    let k = lines
        .iter()
        .position(|l| l.contains("\"method\":\"api\""))
        .unwrap();
    let mut edited = lines.clone();
    let flipped = lines[k].replace("\"method\":\"api\"", "\"method\":\"ui\"");
    edited[k] = &flipped;
    write(&edited);
    refused(&dir, &format!("line {} was changed", k + 1));
    let api = crate::common::consent_log(&server, call).await;
    assert_eq!(api["chain"]["ok"], false, "{}", api["chain"]);
    assert_eq!(api["chain"]["line"].as_u64(), Some(k as u64 + 2));

    // A time moved back by a minute.
    let mut edited = lines.clone();
    let at: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let at = at["at"].as_str().unwrap();
    let earlier = chrono::DateTime::parse_from_rfc3339(at).unwrap() - chrono::Duration::minutes(1);
    let retimed = lines[0].replace(
        at,
        &earlier
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    assert_ne!(retimed, lines[0]);
    edited[0] = &retimed;
    write(&edited);
    refused(&dir, "line 1 was changed");

    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    write(&swapped);
    refused(&dir, "line 2: seq is 3, expected 2");

    // A line deleted.
    let mut deleted = lines.clone();
    deleted.remove(k);
    write(&deleted);
    refused(&dir, &format!("line {}: seq is {}", k + 1, k + 2));

    // The last line changed: only the head in call.json shows it.
    let mut tail = lines.clone();
    let reason =
        lines[lines.len() - 1].replace("\"reason\":\"last_session_left\"", "\"reason\":\"api\"");
    assert_ne!(reason, lines[lines.len() - 1]);
    let n = tail.len();
    tail[n - 1] = &reason;
    write(&tail);
    refused(
        &dir,
        &format!("line {n} does not hash to the head call.json records"),
    );

    // The last line removed.
    write(&lines[..lines.len() - 1]);
    refused(&dir, "lines at its end were removed");

    write(&lines);
    assert!(verify(&dir).status.success());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_stops_capture() {
    let server = TestServer::start().await;
    let call = "unaudited";
    let store = server.server.as_ref().unwrap().state.store.clone();
    let (status, problem, failed_at) = talk_while(&server, call, "lee", || async {
        // Lee is captured from the start (notify, sendonly: no grace). The
        // disk now fails: the grant's line cannot be written.
        store.fail_audit_appends_after(Some(0));
        let started = server.call_json(call).await["started_at"]
            .as_str()
            .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
            .unwrap();
        let r = post_consent(&server, call, "lee").await;
        let failed_at = (chrono::Utc::now() - started.with_timezone(&chrono::Utc))
            .num_milliseconds() as f64
            / 1000.0;
        let status = r.status();
        (
            status,
            r.json::<serde_json::Value>().await.unwrap(),
            failed_at,
        )
    })
    .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "urn:hearken:problem:audit-log-failed");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("capture of this call has stopped"),
        "{problem}"
    );

    let summary = server.call_json(call).await;
    let error = summary["consent_log"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("no space left on device"), "{summary}");
    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/lee.opus"));
    println!(
        "failed at {failed_at:.2} s; voiced before {:.0}, after {:.0}",
        recording.rms(0.2, 1.2),
        recording.rms(failed_at + 0.1, 10.0)
    );
    assert!(recording.rms(0.2, 1.2) > 300.0, "captured before");
    assert!(
        recording.rms(failed_at + 0.1, 10.0) < 50.0,
        "nothing after the failure"
    );
    let m = server.metrics().await;
    assert!(
        metric_sum(
            &m,
            "hearken_frames_dropped_total{reason=\"audit_log_failed\"}"
        ) > 50.0,
        "the rest of the speech arrived and was refused"
    );
    assert_eq!(
        metric_sum(&m, "hearken_consent_audit_write_errors_total"),
        1.0
    );
    // What was written is intact and matches call.json; the report says
    // why it stops.
    let out = verify(&server.call_dir(call));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("could not be written"), "{report}");
    server.shutdown().await;
}
