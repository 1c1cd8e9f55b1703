//! Two nodes racing to place the same calls: every call gets exactly one
//! owner, and both nodes name the same one (compare-and-set in JetStream's
//! key-value store decides; the loser reads the winner).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearken::cluster::{Cluster, LocalLoad, NodeStatus, Owner, placement_key};
use hearken::config::ClusterConfig;
use hearken::metrics::Metrics;
use hearken_core::ids::CallId;
use hearken_testkit::services::PrivateNats;

fn status(id: &str) -> NodeStatus {
    NodeStatus {
        node_id: id.to_owned(),
        url: format!("http://{id}.test:8080"),
        media_ip: "127.0.0.1".to_owned(),
        sip: None,
        sessions: 0,
        calls: 0,
        capacity: 1000,
        draining: false,
        heartbeat_ms: 60_000,
        started_at: chrono::Utc::now(),
        version: "test".to_owned(),
    }
}

async fn join(nats: &PrivateNats, id: &str) -> Arc<Cluster> {
    let config = ClusterConfig {
        nats_url: nats.url(),
        heartbeat_ms: 60_000,
        ..ClusterConfig::default()
    };
    let cluster = Cluster::connect(
        &config,
        id.to_owned(),
        format!("http://{id}.test:8080"),
        Metrics::new(),
    )
    .await
    .expect("joins");
    cluster.heartbeat(&status(id)).await.expect("heartbeat");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_placements_agree_on_one_owner_per_call() {
    let nats = PrivateNats::start().expect("private NATS starts");
    let (one, two) = (join(&nats, "node-1").await, join(&nats, "node-2").await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while one.nodes().len() < 2 || two.nodes().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the nodes never saw each other: {:?} {:?}",
            one.nodes(),
            two.nodes()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each node is idle by its own count, so each wants every call itself.
    let idle = LocalLoad {
        calls: 0,
        sessions: 0,
        capacity: 1000,
        draining: false,
    };
    let mut owners = std::collections::HashMap::new();
    for n in 0..200 {
        let call = CallId::parse(&format!("race-{n}")).unwrap();
        let (a, b) = tokio::join!(one.place(&call, idle), two.place(&call, idle));
        let (a, b) = (a.expect("node-1 places"), b.expect("node-2 places"));
        let owner = match (&a, &b) {
            (Owner::Here, Owner::There { node_id, .. }) if node_id == "node-1" => "node-1",
            (Owner::There { node_id, .. }, Owner::Here) if node_id == "node-2" => "node-2",
            _ => panic!("call {call}: node-1 says {a:?}, node-2 says {b:?}"),
        };
        owners.insert(call, owner);
    }
    // Both owners won some races: the race was real.
    let won_by_1 = owners.values().filter(|o| **o == "node-1").count();
    assert!(
        won_by_1 > 0 && won_by_1 < 200,
        "node-1 won {won_by_1} of 200"
    );

    // What JetStream holds is the same single owner.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let kv = async_nats::jetstream::new(client)
        .get_key_value("hearken_calls")
        .await
        .unwrap();
    for (call, owner) in &owners {
        let value = kv.get(placement_key(call)).await.unwrap().expect("entry");
        let record: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(record["node_id"], *owner, "{call}");
    }
    // Asked again, each node answers the same, without a new write.
    for (call, owner) in owners.iter().take(20) {
        let again = one.place(call, idle).await.unwrap();
        let expected = if *owner == "node-1" {
            Owner::Here
        } else {
            Owner::There {
                node_id: "node-2".into(),
                url: "http://node-2.test:8080".into(),
                sip: None,
            }
        };
        assert_eq!(again, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_owner_is_gone_is_taken_over_once() {
    let nats = PrivateNats::start().expect("private NATS starts");
    let config = ClusterConfig {
        nats_url: nats.url(),
        // The gone node's heartbeat says 100 ms: it is out after 300 ms.
        heartbeat_ms: 100,
        ..ClusterConfig::default()
    };
    let gone = Cluster::connect(
        &config,
        "gone".into(),
        "http://gone.test".into(),
        Metrics::new(),
    )
    .await
    .unwrap();
    let mut gone_status = status("gone");
    gone_status.heartbeat_ms = 100;
    gone.heartbeat(&gone_status).await.unwrap();
    let idle = LocalLoad {
        calls: 0,
        sessions: 0,
        capacity: 1000,
        draining: false,
    };
    let call = CallId::parse("orphan").unwrap();
    assert_eq!(gone.place(&call, idle).await.unwrap(), Owner::Here);
    drop(gone);

    let (one, two) = (join(&nats, "node-1").await, join(&nats, "node-2").await);
    // Out of placement after three of its heartbeats, but its call is not
    // taken from it before six: a node slow for a moment keeps its calls.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        one.place(&call, idle).await.is_err(),
        "taken from a node only 400 ms silent"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a, b) = tokio::join!(one.place(&call, idle), two.place(&call, idle));
    match (a.unwrap(), b.unwrap()) {
        (Owner::Here, Owner::There { node_id, .. }) => assert_eq!(node_id, "node-1"),
        (Owner::There { node_id, .. }, Owner::Here) => assert_eq!(node_id, "node-2"),
        other => panic!("not one new owner: {other:?}"),
    }
}
