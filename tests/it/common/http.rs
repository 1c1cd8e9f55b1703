//! Requests the tests make of the API, and servers set up for a purpose.

use std::sync::Arc;

use hearken::config::{Config, TranscriptionBackend};
use hearken::server::Secrets;

use super::{TOKEN, TestServer};

/// Shared handle for moving a client into `spawn_blocking` and back.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;

/// A server transcribing through `fake` (its API key handed to the server
/// as the secret `key_var` names).
pub async fn transcribing_server(
    fake: &hearken_fake_deepgram::FakeDeepgram,
    key_var: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let url = fake.url();
    let var = key_var.to_owned();
    let key = fake.api_key();
    TestServer::start_with_secrets(
        move |c| {
            c.transcription.backend = TranscriptionBackend::Deepgram;
            c.transcription.deepgram.url = url;
            c.transcription.deepgram.api_key_env = var;
            adjust(c);
        },
        Secrets::from_pairs([(key_var, key)]),
    )
    .await
}

/// `GET /v1/calls/{call}/transcript` as JSON.
pub async fn transcript(server: &TestServer, call: &str) -> serde_json::Value {
    get_json(server, &format!("/v1/calls/{call}/transcript")).await
}

/// All words of one participant, sorted: (start, end, word).
pub fn words_of(transcript: &serde_json::Value, participant: &str) -> Vec<(f64, f64, String)> {
    let mut words: Vec<(f64, f64, String)> = transcript["segments"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|s| s["participant_id"] == participant)
        .flat_map(|s| s["words"].as_array().cloned().unwrap_or_default())
        .map(|w| {
            (
                w["start"].as_f64().unwrap_or(0.0),
                w["end"].as_f64().unwrap_or(0.0),
                w["word"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    words.sort_by(|a, b| a.0.total_cmp(&b.0));
    words
}

/// `GET /v1/calls/{call}/consent`: the consent audit log.
pub async fn consent_log(server: &TestServer, call: &str) -> serde_json::Value {
    get_json(server, &format!("/v1/calls/{call}/consent")).await
}

/// An authorized `GET` of a JSON resource.
pub async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    request_json(server, reqwest::Method::GET, path).await
}

/// An authorized `POST` with no body, answered with JSON.
pub async fn post_empty(server: &TestServer, path: &str) -> serde_json::Value {
    request_json(server, reqwest::Method::POST, path).await
}

/// An authorized request with no body, answered with JSON.
pub async fn request_json(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
) -> serde_json::Value {
    server
        .client
        .request(method, server.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json")
}

/// `PUT /v1/calls/{call}/participants/{who}` with `body`; returns the status
/// and the answer.
pub async fn put_participant(
    server: &TestServer,
    call: &str,
    who: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = server
        .client
        .put(server.url(&format!("/v1/calls/{call}/participants/{who}")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("http");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// Says that `who` is in `subdivision` (`US-NY`, …) of its country.
pub async fn locate(server: &TestServer, call: &str, who: &str, subdivision: &str) {
    let country = subdivision.split('-').next().unwrap_or(subdivision);
    let (status, body) = put_participant(
        server,
        call,
        who,
        serde_json::json!({"location": {"country": country, "subdivision": subdivision}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until `server` has counted `n` packets from `who` in `call` (its
/// live summary), at most 5 s: a DELETE sent the moment the last packet
/// left must not overtake it on a busy machine.
pub async fn wait_received(server: &TestServer, call: &str, who: &str, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let summary = server.call_json(call).await;
        let got = summary["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["id"] == who))
            .and_then(|p| p["packets_received"].as_u64())
            .unwrap_or(0);
        if got >= n || std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
