//! The answer follows WHIP (a sendonly offer is answered recvonly) and
//! Hearken's extension (a sendrecv audio m-line is answered sendrecv, so the
//! bot can speak into the call), with telephone-event negotiated when offered.

use crate::common::{TestServer, offer_sdp};
use str0m::media::Direction;

fn answer_attrs(answer: &str) -> Vec<String> {
    answer
        .lines()
        .filter(|l| {
            matches!(
                *l,
                "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
            )
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn sendonly_is_answered_recvonly_and_sendrecv_sendrecv() {
    let server = TestServer::start().await;

    let offer = offer_sdp(&["x"], Direction::SendOnly);
    let response = server.post_offer("dir-1", &offer).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/sdp");
    assert!(response.headers().contains_key("etag"));
    let answer = response.text().await.unwrap();
    assert_eq!(answer_attrs(&answer), ["a=recvonly"], "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("opus/48000/2"), "{answer}");
    assert!(
        answer.contains("a=candidate:"),
        "all candidates are in the answer"
    );

    let offer = offer_sdp(&["y"], Direction::SendRecv);
    let response = server.post_offer("dir-2", &offer).await;
    assert_eq!(response.status(), 201);
    let answer = response.text().await.unwrap();
    assert_eq!(answer_attrs(&answer), ["a=sendrecv"], "{answer}");
    server.shutdown().await;
}
