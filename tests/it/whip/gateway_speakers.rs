//! A media gateway carries two speakers on one WHIP session: one offer with
//! two audio m-lines, each with its own msid stream. Each m-line becomes its
//! own participant with its own aligned recording.

use std::time::Duration;

use crate::common::{Outgoing, TestServer, WhipClient, decode_ogg_opus, speech};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_two_speakers() {
    let server = TestServer::start().await;
    let call = "gateway-call";
    let client = WhipClient::connect(&server, call, &["carol", "dave"]).await;
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![
                Outgoing {
                    stream_id: "carol".into(),
                    packets: speech("speaker-a.opus"),
                    start_after: Duration::ZERO,
                },
                Outgoing {
                    stream_id: "dave".into(),
                    packets: speech("speaker-b.opus"),
                    start_after: Duration::from_millis(500),
                },
            ],
            Duration::from_millis(200),
        )
    })
    .await
    .unwrap();
    assert_eq!(server.delete(&client.location).await.status(), 200);

    let summary = server.call_json(call).await;
    let ids: Vec<&str> = summary["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["carol", "dave"], "{summary}");
    let carol = decode_ogg_opus(&server.call_dir(call).join("audio/carol.opus"));
    let dave = decode_ogg_opus(&server.call_dir(call).join("audio/dave.opus"));
    println!(
        "carol {:.3} s onset {:?}; dave {:.3} s onset {:?}",
        carol.seconds(),
        carol.onset(300.0),
        dave.seconds(),
        dave.onset(300.0)
    );
    assert!(carol.rms(0.0, carol.seconds()) > 300.0);
    assert!(dave.rms(0.0, dave.seconds()) > 300.0);
    // Both tracks cover the same call: they line up side by side.
    assert!((carol.seconds() - dave.seconds()).abs() < 0.1);
    // Dave started 0.5 s after Carol on the same connection.
    let gap = dave.onset(300.0).unwrap() - carol.onset(300.0).unwrap();
    assert!(
        (0.2..0.9).contains(&gap),
        "dave starts ~0.5 s after carol: {gap}"
    );
    server.shutdown().await;
}
