//! Panics on a real server with one media worker: a bug in one call's
//! handling ends that call (its files finished, `end_reason: internal`)
//! while the other call on the worker keeps every packet; a worker that
//! dies anyway is taken out of placement and reported by `/readyz` and a
//! metric, and the node keeps taking calls on its other worker.

use std::time::Duration;

use hearken::media::{AskError, Command, Reply};
use hearken_core::ids::CallId;

use crate::common::{
    Outgoing, TestServer, WhipClient, decode_ogg_opus, locate, metric_sum, speech,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_call_ends_only_that_call() {
    let server = TestServer::start_with(|c| c.media.workers = 1).await;
    // In New York (notify): captured from the first frame, not held.
    locate(&server, "doomed", "ann", "US-NY").await;
    locate(&server, "healthy", "ben", "US-NY").await;
    let ann = WhipClient::connect(&server, "doomed", &["ann"]).await;
    let ben = WhipClient::connect(&server, "healthy", &["ben"]).await;
    let talk = |id: &str, clip: &str| Outgoing {
        stream_id: id.into(),
        packets: speech(clip),
        start_after: Duration::ZERO,
    };
    let ann_talk = talk("ann", "speaker-a.opus");
    let ben_talk = talk("ben", "speaker-b.opus");
    let ben_packets = ben_talk.packets.len();
    let ann_run =
        tokio::task::spawn_blocking(move || ann.run(vec![ann_talk], Duration::from_millis(300)));
    let ben_run =
        tokio::task::spawn_blocking(move || ben.run(vec![ben_talk], Duration::from_millis(500)));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let worker = &server.server.as_ref().unwrap().state.workers[0];
    let reply = worker
        .ask(
            Command::InjectPanic {
                call_id: CallId::parse("doomed").unwrap(),
            },
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Found(true)));
    let _ann = ann_run.await.unwrap();
    let ben = ben_run.await.unwrap();

    // The doomed call ended with the panic; its file is finished and its
    // call.json says why.
    let doomed = server.call_json("doomed").await;
    assert_eq!(doomed["end_reason"], "internal", "{doomed}");
    let dir = server.call_dir("doomed");
    let ann_rec = decode_ogg_opus(&dir.join("audio/ann.opus"));
    assert_eq!(
        ann_rec.pages_with_eos, 1,
        "the doomed call's track was closed"
    );
    assert!(
        ann_rec.seconds() > 0.8,
        "what came before the bug is kept: {:.2} s",
        ann_rec.seconds()
    );

    // The healthy call never noticed.
    assert_eq!(server.delete(&ben.location).await.status(), 200);
    let healthy = server.call_json("healthy").await;
    assert_eq!(healthy["end_reason"], "last_session_left");
    let ben_summary = &healthy["participants"][0];
    assert_eq!(
        ben_summary["packets_received"], ben_packets as u64,
        "{healthy}"
    );
    assert_eq!(ben_summary["packets_lost"], 0);
    let metrics = server.metrics().await;
    assert_eq!(metric_sum(&metrics, "hearken_media_call_panics_total"), 1.0);
    assert_eq!(
        metric_sum(&metrics, "hearken_frames_dropped_total"),
        0.0,
        "{metrics}"
    );
    let ben_rec = decode_ogg_opus(&server.call_dir("healthy").join("audio/ben.opus"));
    // The track runs from call time zero to his leave (the linger after
    // his speech included), so it holds at least all his 20 ms packets.
    assert!(
        ben_rec.seconds() >= ben_packets as f64 * 0.02,
        "ben's whole speech is recorded: {:.2} s for {ben_packets} packets",
        ben_rec.seconds()
    );
    assert!(ben_rec.voiced_seconds(500.0) > 1.0, "and it is speech");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_leaves_placement_and_readiness() {
    let server = TestServer::start_with(|c| c.media.workers = 2).await;
    let ready = || async {
        server
            .client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ready().await, 200);
    let state = server.server.as_ref().unwrap().state.clone();
    let killed = state.workers[0]
        .ask(Command::InjectWorkerPanic, Duration::from_secs(2))
        .await;
    assert!(matches!(killed, Err(AskError::Gone)), "{killed:?}");
    // The thread unwinds; give it a moment.
    for _ in 0..50 {
        if !state.workers[0].is_alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!state.workers[0].is_alive());
    assert_eq!(ready().await, 503);
    let metrics = server.metrics().await;
    assert_eq!(metric_sum(&metrics, "hearken_media_workers_failed"), 1.0);

    // New calls go to the live worker and work.
    for n in 0..3 {
        let client = WhipClient::connect(&server, &format!("after-{n}"), &["cat"]).await;
        let client = tokio::task::spawn_blocking(move || {
            client.run(
                vec![Outgoing {
                    stream_id: "cat".into(),
                    packets: speech("speaker-a.opus")[..50].to_vec(),
                    start_after: Duration::ZERO,
                }],
                Duration::from_millis(100),
            )
        })
        .await
        .unwrap();
        crate::common::wait_received(&server, &format!("after-{n}"), "cat", 50).await;
        assert_eq!(server.delete(&client.location).await.status(), 200);
        let summary = server.call_json(&format!("after-{n}")).await;
        assert_eq!(
            summary["participants"][0]["packets_received"], 50,
            "{summary}"
        );
    }
}
