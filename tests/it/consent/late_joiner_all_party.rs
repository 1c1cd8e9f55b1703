//! All-party consent (the recorder is in California, opt-out): a late joiner
//! holds capture of everyone until they consent. The late joiner hears the
//! notice on their own session only; the others are not interrupted. What
//! was held (the opening of the call, and everyone's audio while the late
//! joiner had not agreed) is committed once consent covers it, so nothing
//! is lost.

use std::time::{Duration, Instant};

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, decode_ogg_opus, locate, speech};
use str0m::media::Direction;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_pauses_everyone_until_they_consent() {
    let server = TestServer::start_with(|c| {
        c.consent.recorder_location = "US-CA".into();
        c.consent.grace_period_ms = 500;
    })
    .await;
    let call = "all-party";
    // Both in California: no details wait, the notice plays at once.
    for who in ["kim", "leo"] {
        locate(&server, call, who, "US-CA").await;
    }
    let mut talk = speech("speaker-a.opus");
    talk.extend(speech("speaker-b.opus"));
    talk.extend(speech("speaker-a.opus"));
    talk.extend(speech("speaker-b.opus"));

    let kim = WhipClient::connect_dir(&server, call, &["kim"], Direction::SendRecv, |s| s).await;
    let kim = tokio::task::spawn_blocking(move || {
        kim.run(
            vec![Outgoing {
                stream_id: "kim".into(),
                packets: talk,
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(200),
        )
    });
    let call_start = Instant::now();
    // Kim hears the notice (~5.8 s) and consents implicitly 0.5 s later.
    tokio::time::sleep(Duration::from_millis(7500)).await;
    let leo = WhipClient::connect_dir(&server, call, &["leo"], Direction::SendRecv, |s| s).await;
    let leo = tokio::task::spawn_blocking(move || {
        leo.run(
            vec![Outgoing {
                stream_id: "leo".into(),
                packets: speech("speaker-b.opus"),
                start_after: Duration::ZERO,
            }],
            Duration::from_millis(6500),
        )
    });
    // Leo agrees in the provider's UI a second after joining.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = server
        .client
        .post(server.url(&format!("/v1/calls/{call}/participants/leo/consent")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"decision": "granted", "method": "ui"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (kim, leo) = (kim.await.unwrap(), leo.await.unwrap());
    println!("call ran {:.1} s", call_start.elapsed().as_secs_f64());
    server.delete(&leo.location).await;
    server.delete(&kim.location).await;

    let log = crate::common::consent_log(&server, call).await;
    let events = log["events"].as_array().unwrap();
    for e in events {
        println!("{e}");
    }
    let all = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<serde_json::Value> {
        events.iter().filter(|e| pred(e)).cloned().collect()
    };
    let modes = all(&|e| e["event"] == "mode_evaluated");
    assert_eq!(modes[0]["scope"], "call_wide", "{modes:?}");
    let notices = all(&|e| e["event"] == "prompt_scheduled" && e["prompt"] == "notice");
    assert_eq!(notices[0]["to"], serde_json::json!(["kim"]));
    assert_eq!(
        notices[1]["to"],
        serde_json::json!(["leo"]),
        "late joiner only"
    );
    let kim_gate = all(&|e| e["event"] == "gate_changed" && e["participant"] == "kim");
    let paused = kim_gate
        .iter()
        .find(|e| e["reason"] == "awaiting_others")
        .expect("kim held for leo");
    assert_eq!(paused["held"], true, "held, not dropped: {paused}");
    let t_pause = paused["t"].as_f64().unwrap();
    let t_resume = kim_gate
        .iter()
        .filter(|e| e["open"] == true)
        .map(|e| e["t"].as_f64().unwrap())
        .find(|&t| t > t_pause)
        .expect("open again once leo agreed");
    println!("kim held for leo from {t_pause:.2} to {t_resume:.2}");

    // Kim heard nothing while Leo's notice played (after her own ended).
    let kim_notice_end =
        all(&|e| e["event"] == "prompt_played" && e["to"] == serde_json::json!(["kim"]))[0]["end"]
            .as_f64()
            .unwrap();
    let heard_during_pause = kim
        .received
        .iter()
        .filter(|(at, _)| {
            at.as_secs_f64() > kim_notice_end + 0.3 && at.as_secs_f64() < t_resume - 0.1
        })
        .count();
    assert_eq!(
        heard_during_pause, 0,
        "kim was not interrupted by leo's notice"
    );
    assert!(
        leo.received.len() > 250,
        "leo heard his notice: {} packets",
        leo.received.len()
    );

    let committed = all(&|e| e["event"] == "hold_committed" && e["participant"] == "kim");
    assert!(
        committed.iter().any(|e| e["from"].as_f64().unwrap() < 0.5),
        "the opening was held and committed: {committed:?}"
    );
    assert!(
        committed.iter().any(|e| {
            e["from"].as_f64().unwrap() <= t_pause + 0.1
                && e["to"].as_f64().unwrap() >= t_resume - 0.1
        }),
        "what was held for leo was committed: {committed:?}"
    );
    let rec = decode_ogg_opus(&server.call_dir(call).join("audio/kim.opus"));
    println!(
        "kim: opening {:.0}, held for leo {:.0}, after {:.0}",
        rec.rms(0.0, 3.0),
        rec.rms(t_pause + 0.1, t_resume - 0.1),
        rec.rms(t_resume + 0.1, t_resume + 1.0)
    );
    assert!(rec.rms(0.0, 3.0) > 300.0, "the opening is recorded");
    assert!(
        rec.rms(t_pause + 0.1, t_resume - 0.1) > 300.0,
        "held while leo had not consented, kept once he did"
    );
    assert!(rec.rms(t_resume + 0.1, t_resume + 1.0) > 300.0);
    server.shutdown().await;
}
