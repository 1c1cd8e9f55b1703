//! Native participants cannot hear the bot, so their notice is the
//! platform's. Two participants in the United Kingdom (the rules file:
//! `notify_and_allow_opt_out`, so audio is held until the notice was seen
//! and the opt-out window passed; the window here is the test server's grace
//! of 0 s): the platform reports its notice for Gwen a second in, and not
//! for Hal. Gwen's audio, held from the first packet, is committed; Hal's
//! never is. The audit log says the bot's notice did not reach either and
//! records the platform's notice with its source.

use std::time::Duration;

use hearken_testkit::roq::rtp_packet;
use serde_json::json;

use crate::common::{
    TOKEN, TestServer, consent_log, delete_native, native_client, read_opus_packets, speech,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_notice_releases_held_audio_and_is_audited() {
    let server = TestServer::start_with(|c| c.ingest.quic.listen = "127.0.0.1:0".into()).await;
    let call = "platform-notice";
    let (_, client) = native_client(
        &server,
        call,
        json!([
            {"participant_id": "gwen", "flow_id": 1, "codec": "opus", "payload_type": 111,
             "details": {"location": {"country": "GB"}}},
            {"participant_id": "hal", "flow_id": 2, "codec": "opus", "payload_type": 111,
             "details": {"location": {"country": "GB"}}},
        ]),
    )
    .await;
    let clip = speech("speaker-a.opus");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..200u32 {
        tick.tick().await;
        if n == 50 {
            let r = server
                .client
                .post(server.url(&format!("/v1/calls/{call}/participants/gwen/notice")))
                .bearer_auth(TOKEN)
                .json(
                    &json!({"shown_at": chrono::Utc::now().to_rfc3339(), "how": "platform_banner"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
        let packet = &clip[n as usize % clip.len()];
        for flow in [1, 2] {
            let rtp = rtp_packet(111, n as u16, n * 960, flow as u32, packet);
            client.send_datagram(flow, &rtp).unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = consent_log(&server, call).await;
    assert_eq!(delete_native(&server, call).await, 200);

    let dir = server.call_dir(call).join("audio");
    let gwen = read_opus_packets(&dir.join("gwen.opus"));
    let real = gwen.iter().filter(|p| clip.contains(p)).count();
    assert_eq!(real, 200, "all of Gwen's packets, the held ones included");
    let hal = dir.join("hal.opus");
    let hal_real = if hal.exists() {
        read_opus_packets(&hal)
            .iter()
            .filter(|p| clip.contains(p))
            .count()
    } else {
        0
    };
    assert_eq!(hal_real, 0, "nothing of Hal without a notice");

    let events = log["events"].as_array().expect("events");
    let of = |kind: &str, who: &str| {
        events
            .iter()
            .filter(|e| e["event"] == kind && e["participant"] == who)
            .count()
    };
    assert!(of("notice_not_heard", "gwen") >= 1, "{log}");
    assert!(of("notice_not_heard", "hal") >= 1, "{log}");
    let shown: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "notice_shown")
        .collect();
    assert_eq!(shown.len(), 1, "{log}");
    assert_eq!(shown[0]["participant"], "gwen");
    assert_eq!(shown[0]["how"], "platform_banner", "the notice's source");
    client.close().await;
    server.shutdown().await;
}
