//! After the call: the mix, the insights, share links and the review page.
//!
//! - `two_speaker_call`: a real call of two speakers at known times: the
//!   insights and the mix against what the test sent.
//! - `discarded_audio_is_not_in_the_mix`: a participant who turns out never
//!   to be recorded is silent in the mix.
//! - `interrupted_work_resumes_at_start`: a mix a crash cut short is made
//!   by the next server.
//! - `share_links`: creating, listing, using and revoking links; a range
//!   link reaches only its range.
//! - `review_page_in_chromium`: the page in Debian's Chromium through a
//!   share link: the player, seeking by word and by key moment; and a
//!   one-hour call's page rendering and scrolling.

mod discarded_audio_is_not_in_the_mix;
mod interrupted_work_resumes_at_start;
mod review_page_in_chromium;
mod share_links;
mod two_speaker_call;

use std::time::{Duration, Instant};

use crate::common::{Outgoing, TOKEN, TestServer, WhipClient, tone_packets};

/// One WHIP session (a gateway) carrying a speaker per `(id, parts)`, each
/// sounding `tone_packets(parts)` from the moment it connects; returns the
/// client once everything was sent (the call goes on until it is deleted).
pub async fn talk(
    server: &TestServer,
    call: &str,
    speakers: &[(&str, &[(f64, f64)])],
) -> WhipClient {
    let ids: Vec<&str> = speakers.iter().map(|(id, _)| *id).collect();
    let client = WhipClient::connect(server, call, &ids).await;
    let streams = speakers
        .iter()
        .map(|(id, parts)| Outgoing {
            stream_id: (*id).to_owned(),
            packets: tone_packets(parts),
            start_after: Duration::ZERO,
        })
        .collect();
    tokio::task::spawn_blocking(move || client.run(streams, Duration::from_millis(300)))
        .await
        .expect("the client ran")
}

/// [`talk`], then the call's end (its session deleted).
pub async fn call_of(server: &TestServer, call: &str, speakers: &[(&str, &[(f64, f64)])]) {
    let client = talk(server, call, speakers).await;
    assert_eq!(server.delete(&client.location).await.status(), 200);
}

/// Waits for the call's insights (made after it ended), or fails.
pub async fn wait_for_insights(server: &TestServer, call: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server
            .client
            .get(server.url(&format!("/v1/calls/{call}/insights")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET insights");
        match r.status().as_u16() {
            200 => return r.json().await.expect("insights JSON"),
            409 | 404 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            status => panic!(
                "insights of {call}: {status} {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
}

/// `POST /v1/calls/{call}/shares` with `body`: (status, answer).
pub async fn create_share(
    server: &TestServer,
    call: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = server
        .client
        .post(server.url(&format!("/v1/calls/{call}/shares")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST shares");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// The share token in a share's page URL (`/calls/{id}?share=TOKEN`).
pub fn token_of(url: &str) -> String {
    url.split_once("share=")
        .map(|(_, t)| t.to_owned())
        .expect("a share URL carries its token")
}
