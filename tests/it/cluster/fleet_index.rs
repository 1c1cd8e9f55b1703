//! One API for the whole fleet: every node lists every call from the
//! PostgreSQL index, answers for a call another node holds, and serves its
//! consent log with the hash chain intact; and every call's life is on the
//! `HEARKEN_EVENTS` stream for downstream systems, its insights last.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::common::{Fleet, get_json, speech};

use super::talk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_for_every_call_and_events_tell_their_story() {
    let fleet = Fleet::start(&["node-a", "node-b", "node-c"]).await;
    let packets = speech("speaker-a.opus")[..25].to_vec();

    // One call through each node; an idle fleet keeps each where it came in.
    let mut held_by = BTreeMap::new();
    for (i, node) in fleet.nodes.iter().enumerate() {
        let call = format!("call-{i}");
        talk(
            &node.server,
            &call,
            &format!("speaker-{i}"),
            packets.clone(),
        )
        .await;
        held_by.insert(call, node.id.clone());
    }
    // The calls' final rows reach the index.
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let list = get_json(&fleet.nodes[0].server, "/v1/calls").await;
        let ended = list["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "ended")
            .count();
        if ended == 3 {
            break list;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for item in listed["calls"].as_array().unwrap() {
        let call = item["call_id"].as_str().unwrap();
        assert_eq!(item["node"], held_by[call].as_str(), "{item}");
        assert_eq!(item["participants"], 1, "{item}");
    }
    for node in &fleet.nodes {
        // The same answer on every node.
        assert_eq!(
            get_json(&node.server, "/v1/calls").await,
            listed,
            "{}",
            node.id
        );
        for (call, holder) in &held_by {
            let summary = node.server.call_json(call).await;
            assert_eq!(summary["node"], holder.as_str());
            let consent = get_json(&node.server, &format!("/v1/calls/{call}/consent")).await;
            assert_eq!(consent["chain"]["ok"], true, "{consent}");
            // The chain's head is the one the holder's call.json recorded.
            assert_eq!(
                consent["chain"]["head_sha256"], summary["consent_log"]["head_sha256"],
                "{call} on {}",
                node.id
            );
        }
    }

    // The events, read as a downstream consumer would.
    let client = async_nats::connect(fleet.nats.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("HEARKEN_EVENTS")
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut messages = consumer.messages().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.values().map(Vec::len).sum::<usize>() < 12 || !all_ended(&seen) {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let Ok(Some(Ok(message))) = next else {
            assert!(Instant::now() < deadline, "events so far: {seen:?}");
            continue;
        };
        message.ack().await.unwrap();
        let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(event["schema"], "hearken.event.v1");
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_owned()),
            "duplicate {event}"
        );
        let call = event["call_id"].as_str().unwrap().to_owned();
        let kind = event["event"].as_str().unwrap().to_owned();
        assert_eq!(
            message.subject.as_str(),
            format!("hearken.calls.{call}.{kind}")
        );
        assert_eq!(event["node_id"], held_by[&call].as_str(), "{event}");
        seen.entry(call).or_default().push(kind);
    }
    for (call, kinds) in &seen {
        assert_eq!(
            kinds.first().map(String::as_str),
            Some("call_started"),
            "{call}: {kinds:?}"
        );
        assert!(
            kinds.contains(&"participant_joined".to_owned()),
            "{call}: {kinds:?}"
        );
        assert!(
            kinds.contains(&"participant_left".to_owned()),
            "{call}: {kinds:?}"
        );
        // The call's story ends with its end; its insights, made after it
        // ended, follow.
        assert_eq!(
            &kinds[kinds.len() - 2..],
            ["call_ended", "insights_ready"],
            "{call}: {kinds:?}"
        );
    }
}

fn all_ended(seen: &BTreeMap<String, Vec<String>>) -> bool {
    seen.len() == 3
        && seen
            .values()
            .all(|k| k.iter().any(|e| e == "insights_ready"))
}
