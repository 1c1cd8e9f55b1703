//! Share links: made by an operator, used without a bearer token, limited
//! to what they share, logged, revoked and expired.
//!
//! The call: one speaker sounds 440 Hz for 4 s, then 1 kHz for 4 s. A link
//! to the range 4–6 s must serve audio that is 2 s long and holds only the
//! 1 kHz tone (decoded here), and no byte range of it reaches further.

use std::time::Duration;

use super::{call_of, create_share, token_of, wait_for_insights};
use crate::common::{Decoded, TOKEN, TestServer, get_json, metric_sum};

async fn get(server: &TestServer, path: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = server.client.get(server.url(path));
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("GET")
}

/// Decodes Ogg Opus bytes (the `ogg` crate and libopus).
fn decode(bytes: &[u8]) -> Decoded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.opus");
    std::fs::write(&path, bytes).unwrap();
    crate::common::decode_ogg_opus(&path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_share_what_they_say_and_stop_when_told() {
    let server = TestServer::start().await;
    let call = "shared";
    call_of(
        &server,
        call,
        &[("alice", &[(440.0, 4.0), (1000.0, 4.0), (0.0, 0.5)])],
    )
    .await;
    wait_for_insights(&server, call).await;

    // Bad requests name what is wrong.
    for body in [
        serde_json::json!({"expires_in": 0}),
        serde_json::json!({"expires_in": 60, "range": {"start": 6.0, "end": 4.0}}),
        serde_json::json!({"expires_in": 60, "range": {"start": 500.0, "end": 600.0}}),
        serde_json::json!({"expires_in": 60, "colour": "red"}),
    ] {
        let (status, problem) = create_share(&server, call, body.clone()).await;
        assert_eq!(status, 400, "{body} → {problem}");
    }
    let (status, _) = create_share(
        &server,
        "no-such-call",
        serde_json::json!({"expires_in": 60}),
    )
    .await;
    assert_eq!(status, 404);

    // A link to the whole call.
    let (status, whole) = create_share(
        &server,
        call,
        serde_json::json!({"expires_in": 3600, "range": null, "note": "for Dana"}),
    )
    .await;
    assert_eq!(status, 201, "{whole}");
    let url = whole["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("/calls/{call}?share=")), "{url}");
    let expires: chrono::DateTime<chrono::Utc> =
        whole["expires_at"].as_str().unwrap().parse().unwrap();
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!((3590..=3600).contains(&left), "expires in {left} s");
    let token = token_of(&url);

    let page = get(&server, &url, None).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/assets/review.js"));
    let review: serde_json::Value = get(
        &server,
        &format!("/v1/calls/{call}/review?share={token}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(review["share"]["note"], "for Dana");
    assert!(review["range"].is_null());
    let audio_url = review["audio"]["url"].as_str().unwrap().to_owned();
    assert_eq!(
        audio_url,
        format!("/v1/calls/{call}/audio/mix.opus?share={token}")
    );
    let part = get(&server, &audio_url, Some("bytes=0-99")).await;
    assert_eq!(part.status(), 206, "seeking needs byte ranges");
    assert_eq!(part.headers()["content-type"], "audio/ogg");
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    let full = get(&server, &audio_url, None).await.bytes().await.unwrap();
    let mix = std::fs::read(server.call_dir(call).join("audio/mix.opus")).unwrap();
    assert_eq!(full.len(), mix.len());
    // A link plays the mix, not a speaker's own track.
    let track = get(
        &server,
        &format!("/v1/calls/{call}/audio/alice.opus?share={token}"),
        None,
    )
    .await;
    assert_eq!(track.status(), 403);

    // Without a token, or with a forged or foreign one: no.
    assert_eq!(
        get(&server, &format!("/v1/calls/{call}/review"), None)
            .await
            .status(),
        401
    );
    let forged = format!("{}x", &token[..token.len() - 1]);
    for t in [
        forged.as_str(),
        "0123456789abcdef0123456789abcdef.AAAA",
        "nonsense",
    ] {
        let r = get(&server, &format!("/v1/calls/{call}/review?share={t}"), None).await;
        assert_eq!(r.status(), 401, "token {t}");
    }
    // An operator's bearer token opens everything, and an audio element's
    // `access_token` does the same for audio only.
    let track = server
        .client
        .get(server.url(&format!("/v1/calls/{call}/audio/alice.opus")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(track.status(), 200);
    let by_query = get(
        &server,
        &format!("/v1/calls/{call}/audio/mix.opus?access_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(by_query.status(), 200);
    let review_by_query = get(
        &server,
        &format!("/v1/calls/{call}/review?access_token={TOKEN}"),
        None,
    )
    .await;
    assert_eq!(review_by_query.status(), 401, "the review wants the header");

    // A link to 4–6 s.
    let (status, excerpt) = create_share(
        &server,
        call,
        serde_json::json!({"expires_in": 600, "range": {"start": 4.0, "end": 6.0}}),
    )
    .await;
    assert_eq!(status, 201, "{excerpt}");
    let excerpt_token = token_of(excerpt["url"].as_str().unwrap());
    let review: serde_json::Value = get(
        &server,
        &format!("/v1/calls/{call}/review?share={excerpt_token}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        review["range"],
        serde_json::json!({"start": 4.0, "end": 6.0})
    );
    assert_eq!(review["audio"]["offset"], 4.0);
    for moment in review["insights"]["key_moments"].as_array().unwrap() {
        let (s, e) = (
            moment["start"].as_f64().unwrap(),
            moment["end"].as_f64().unwrap(),
        );
        assert!(s >= 4.0 && e <= 6.0, "a moment outside the range: {moment}");
    }
    let cut_url = review["audio"]["url"].as_str().unwrap().to_owned();
    let cut = get(&server, &cut_url, None).await;
    assert_eq!(cut.status(), 200);
    let cut = cut.bytes().await.unwrap();
    assert!(
        cut.len() < mix.len() / 2,
        "the excerpt is not the whole mix"
    );
    let decoded = decode(&cut);
    println!(
        "excerpt {:.3} s: 1 kHz {:.0}, 440 Hz {:.0}",
        decoded.seconds(),
        decoded.tone(1000.0, 0.2, 1.8),
        decoded.tone(440.0, 0.2, 1.8)
    );
    assert!(
        (decoded.seconds() - 2.0).abs() <= 0.021,
        "{} s",
        decoded.seconds()
    );
    assert!(
        decoded.tone(1000.0, 0.2, 1.8) > 4000.0,
        "the 1 kHz tone of 4–6 s"
    );
    assert!(
        decoded.tone(440.0, 0.2, 1.8) < 400.0,
        "none of the 440 Hz before 4 s"
    );
    let beyond = get(&server, &cut_url, Some(&format!("bytes={}-", cut.len()))).await;
    assert_eq!(beyond.status(), 416, "no byte past the excerpt");
    let again = get(&server, &cut_url, Some("bytes=0-")).await;
    assert_eq!(again.bytes().await.unwrap().len(), cut.len());

    // The list, with uses.
    let list = get_json(&server, &format!("/v1/calls/{call}/shares")).await;
    let shares = list["shares"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{list}");
    assert!(shares.iter().all(|s| s["state"] == "active"));
    let whole_listed = shares.iter().find(|s| s["id"] == whole["id"]).unwrap();
    assert_eq!(whole_listed["url"], whole["url"]);
    assert!(
        whole_listed["uses"].as_u64().unwrap() >= 5,
        "{whole_listed}"
    );

    // Revoked: 410 everywhere, at once.
    let revoke = |id: String| {
        let server = &server;
        async move {
            server
                .client
                .delete(server.url(&format!("/v1/calls/{call}/shares/{id}")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let whole_id = whole["id"].as_str().unwrap().to_owned();
    assert_eq!(revoke(whole_id.clone()).await, 204);
    assert_eq!(revoke(whole_id).await, 204, "revoking twice is fine");
    assert_eq!(revoke("feedface".into()).await, 404);
    assert_eq!(get(&server, &url, None).await.status(), 410);
    let gone = get(
        &server,
        &format!("/v1/calls/{call}/review?share={token}"),
        None,
    )
    .await;
    assert_eq!(gone.status(), 410);
    let problem: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(problem["type"], "urn:hearken:problem:share-gone");
    assert_eq!(get(&server, &audio_url, None).await.status(), 410);
    // The other link still works.
    assert_eq!(get(&server, &cut_url, None).await.status(), 200);

    // Expired: 410 too.
    let (_, brief) = create_share(&server, call, serde_json::json!({"expires_in": 1})).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        get(&server, brief["url"].as_str().unwrap(), None)
            .await
            .status(),
        410
    );

    // Every use is in shares.jsonl.
    let log = std::fs::read_to_string(server.call_dir(call).join("shares.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |e: &str| events.iter().filter(|l| l["event"] == e).count();
    assert_eq!(count("created"), 3);
    assert_eq!(count("revoked"), 1);
    assert!(count("used") >= 8, "{log}");
    let metrics = server.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "hearken_share_requests_total{outcome=\"revoked\"}"
        ) >= 3.0
    );
    assert!(
        metric_sum(
            &metrics,
            "hearken_share_requests_total{outcome=\"expired\"}"
        ) >= 1.0
    );
    assert!(
        metric_sum(
            &metrics,
            "hearken_share_requests_total{outcome=\"invalid\"}"
        ) >= 3.0
    );
    server.shutdown().await;
}
