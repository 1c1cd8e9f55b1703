//! Bad input never disturbs a call in progress: while one participant is
//! being recorded, the server gets malformed WHIP requests, bad tokens, an
//! oversized body, unknown sessions, garbage UDP datagrams on every media
//! port, and a second participant whose msid tries to climb out of the data
//! directory. The recording is intact, and every file stays where it belongs.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, metric_sum, speech};

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Deterministic junk (xorshift), shaped to hit each demultiplexing branch:
/// STUN (0-3), DTLS (20-63), RTP/RTCP (128-191) and everything else.
fn junk_datagrams() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = vec![Vec::new(), vec![0], vec![0x80], vec![0x16, 0xfe, 0xfd]];
    for i in 0..400 {
        let len = (next() % 1400) as usize + 1;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        d[0] = match i % 4 {
            0 => (next() % 4) as u8,
            1 => 20 + (next() % 44) as u8,
            2 => 128 + (next() % 64) as u8,
            _ => d[0],
        };
        out.push(d);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_bad_input() {
    // No mix or insights after the call: the files counted below are the
    // call's own.
    let server = TestServer::start_with(|c| c.insights.enabled = false).await;
    let call = "steady";
    let steady = WhipClient::connect(&server, call, &["steady-speaker"]).await;
    let steady_run = tokio::task::spawn_blocking(move || {
        steady.run(
            vec![Outgoing {
                stream_id: "steady-speaker".into(),
                packets: speech("speaker-a.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    });

    // A participant whose msid is a path traversal attempt.
    let hostile = WhipClient::connect_with(&server, call, &["h"], |sdp| {
        sdp.replace("a=msid:h ", "a=msid:../../../escape ")
    })
    .await;
    let hostile_run = tokio::task::spawn_blocking(move || {
        hostile.run(
            vec![Outgoing {
                stream_id: "h".into(),
                packets: speech("speaker-b.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(300),
        )
    });

    // Garbage on every media port, from several sources.
    let ports: Vec<u16> = server
        .server
        .as_ref()
        .unwrap()
        .state
        .workers
        .iter()
        .map(|w| w.port)
        .collect();
    let junk = tokio::task::spawn_blocking(move || {
        let senders: Vec<UdpSocket> = (0..4)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, d) in junk_datagrams().iter().enumerate() {
            for port in &ports {
                let _ = senders[i % senders.len()].send_to(d, ("127.0.0.1", *port));
            }
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });

    // Malformed and unauthorized requests, aimed at the same call.
    let c = &server.client;
    for _ in 0..5 {
        assert_eq!(
            server
                .post_offer(call, "v=0\r\nm=audio 9 RTP/AVP 0\r\n")
                .await
                .status(),
            422
        );
        assert_eq!(
            server.post_offer(call, "\u{0}\u{1}garbage").await.status(),
            400
        );
        let r = c
            .post(server.url(&format!("/whip/{call}")))
            .bearer_auth("wrong")
            .header("content-type", "application/sdp")
            .body("v=0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .post(server.url(&format!("/whip/{call}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/sdp")
            .body(vec![b'a'; 300_000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(
            server
                .delete(&format!("/whip/{call}/not-a-session"))
                .await
                .status(),
            404
        );
        let r = c
            .get(server.url(&format!("/v1/calls/{call}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    junk.await.unwrap();

    let steady = steady_run.await.unwrap();
    let hostile = hostile_run.await.unwrap();
    assert_eq!(server.delete(&steady.location).await.status(), 200);
    assert_eq!(server.delete(&hostile.location).await.status(), 200);

    let summary = server.call_json(call).await;
    let started =
        chrono::DateTime::parse_from_rfc3339(summary["started_at"].as_str().unwrap()).unwrap();
    let ended =
        chrono::DateTime::parse_from_rfc3339(summary["ended_at"].as_str().unwrap()).unwrap();
    let call_seconds = (ended - started).num_milliseconds() as f64 / 1000.0;
    let recording = decode_ogg_opus(&server.call_dir(call).join("audio/steady-speaker.opus"));
    println!(
        "steady: call {call_seconds:.3} s, recording {:.3} s, voiced {:.2} s",
        recording.seconds(),
        recording.voiced_seconds(300.0)
    );
    assert!((recording.seconds() - call_seconds).abs() < 0.5);
    assert!(recording.voiced_seconds(300.0) > 0.5 * speech("speaker-a.opus").len() as f64 * 0.02);
    let steady_json = summary["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "steady-speaker")
        .unwrap()
        .clone();
    assert_eq!(steady_json["packets_lost"], 0, "{steady_json}");

    // The hostile participant kept its id in call.json but got a safe file.
    let hostile_json = summary["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "../../../escape")
        .unwrap()
        .clone();
    let file = hostile_json["file"].as_str().unwrap();
    assert!(
        file.starts_with("audio/") && !file[6..].contains('/') && !file.contains(".."),
        "{file}"
    );
    assert!(decode_ogg_opus(&server.call_dir(call).join(file)).rms(0.0, 10.0) > 300.0);

    // Every file is inside its call directory; nothing escaped. (The two
    // files of the data directory itself are made at start: the key share
    // links are signed with, and the room kept for a full disk.)
    let mut files = Vec::new();
    all_files(server.data_dir.path(), &mut files);
    files.retain(|f| {
        f != &server.data_dir.path().join("share-secret")
            && f != &server.data_dir.path().join(".reserve")
    });
    for f in &files {
        let rel = f.strip_prefix(server.data_dir.path()).unwrap();
        let rel = rel.to_string_lossy();
        assert!(rel.starts_with("calls/steady/"), "unexpected file {rel}");
    }
    // Two recordings, call.json and the consent audit log.
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("consent.jsonl")));

    let metrics = server.metrics().await;
    assert!(metric_sum(&metrics, "hearken_udp_unrouted_datagrams_total") > 100.0);
    assert_eq!(
        metric_sum(&metrics, "hearken_recorder_write_errors_total"),
        0.0
    );
    server.shutdown().await;
}
