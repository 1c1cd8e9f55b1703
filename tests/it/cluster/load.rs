//! The fleet under load from the load generator (real WebRTC clients, real
//! Opus), which enters through one node and follows redirects: calls spread
//! over the nodes, each lands whole on one, and draining a node under load
//! cuts no call and loses no packet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Fleet, TOKEN, get_json, post_empty};

/// One run of 300 WebRTC clients and three servers at a time: two at once
/// on a 2-core machine measure the machine, not the fleet.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 300 speakers: 60 calls of 5.
const CALLS: u64 = 60;
const SPEAKERS_PER_CALL: u64 = 5;

fn loadtest_binary() -> PathBuf {
    // Built with the workspace (`cargo build --workspace`), beside the server.
    let path =
        std::path::Path::new(env!("CARGO_BIN_EXE_hearken")).with_file_name("hearken-loadtest");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p hearken-loadtest`",
        path.display()
    );
    path
}

/// Starts the load generator against `entry` (its JSON report comes from
/// [`report`]), with `extra` flags.
fn start_load(
    entry: &str,
    run_id: &str,
    duration_s: u64,
    ramp: f64,
    extra: &[&str],
) -> std::process::Child {
    Command::new(loadtest_binary())
        .args(["--url", entry, "--token", TOKEN])
        .args(["--calls", &CALLS.to_string()])
        .args(["--speakers-per-call", &SPEAKERS_PER_CALL.to_string()])
        .args(["--duration", &duration_s.to_string()])
        .args(["--ramp", &ramp.to_string()])
        .args(["--talk-ratio", "0.25", "--seed", "13", "--json"])
        .args(["--run-id", run_id])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("load generator starts")
}

/// What every fleet run's report must say: all 300 speakers connected,
/// none failed, every call on one node.
fn every_speaker_connected_and_no_call_split(report: &serde_json::Value) {
    assert_eq!(
        report["speakers_connected"],
        CALLS * SPEAKERS_PER_CALL,
        "{report}"
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["calls_split_across_nodes"], 0, "{report}");
}

fn report(child: std::process::Child) -> serde_json::Value {
    let output = child.wait_with_output().expect("load generator runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load generator failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Every call of the run as the fleet index holds it, once all have ended:
/// call id to (node, summary).
async fn ended_calls(
    fleet: &Fleet,
    node: usize,
    run_id: &str,
) -> BTreeMap<String, (String, serde_json::Value)> {
    let server = &fleet.nodes[node].server;
    let prefix = format!("lt-{run_id}-");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = get_json(server, "/v1/calls").await;
        let ours: Vec<&serde_json::Value> = list["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["call_id"].as_str().unwrap().starts_with(&prefix))
            .collect();
        if ours.len() as u64 == CALLS && ours.iter().all(|c| c["state"] == "ended") {
            let mut calls = BTreeMap::new();
            for c in ours {
                let id = c["call_id"].as_str().unwrap().to_owned();
                let summary = server.call_json(&id).await;
                calls.insert(id, (c["node"].as_str().unwrap().to_owned(), summary));
            }
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {CALLS} calls listed, not all ended",
            ours.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Packets the fleet received, by what its calls' summaries say.
fn packets_received(calls: &BTreeMap<String, (String, serde_json::Value)>) -> u64 {
    calls
        .values()
        .flat_map(|(_, s)| s["participants"].as_array().unwrap().clone())
        .map(|p| p["packets_received"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_speakers_spread_over_the_fleet_each_call_whole() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start(&["node-a", "node-b", "node-c"]).await;
    let entry = fleet.nodes[0].url();
    let load =
        tokio::task::spawn_blocking(move || report(start_load(&entry, "spread", 5, 150.0, &[])));
    let report = load.await.unwrap();

    every_speaker_connected_and_no_call_split(&report);
    let by_node = report["sessions_by_node"].as_object().unwrap();
    assert_eq!(by_node.len(), 3, "every node took calls: {by_node:?}");
    for (node, sessions) in by_node {
        // Least-loaded placement: no node far from a third.
        let sessions = sessions.as_u64().unwrap();
        assert!((60..=140).contains(&sessions), "{node}: {sessions} of 300");
    }
    assert!(
        report["redirects_followed"].as_u64().unwrap() > 0,
        "{report}"
    );

    let calls = ended_calls(&fleet, 1, "spread").await;
    let mut per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for (call, (node, summary)) in &calls {
        assert_eq!(
            summary["participants"].as_array().unwrap().len() as u64,
            SPEAKERS_PER_CALL,
            "{call} is whole on {node}"
        );
        assert_eq!(summary["node"], node.as_str());
        *per_node.entry(node).or_default() += SPEAKERS_PER_CALL;
    }
    println!(
        "sessions per node: {per_node:?}, redirects {}",
        report["redirects_followed"]
    );
    // What the fleet adds to a call's first session (for RESULTS.md).
    for node in &fleet.nodes {
        let metrics = node.server.metrics().await;
        println!(
            "{}: placement p50 {:.2} ms, p99 {:.2} ms over {} placements; WHIP answer p50 {} ms, p99 {} ms",
            node.id,
            1000.0 * histogram_quantile(&metrics, "hearken_cluster_placement_seconds", 0.5),
            1000.0 * histogram_quantile(&metrics, "hearken_cluster_placement_seconds", 0.99),
            crate::common::metric_sum(&metrics, "hearken_cluster_placement_seconds_count"),
            report["whip_answer_ms"]["p50"],
            report["whip_answer_ms"]["p99"],
        );
    }
    // Every node lists the same calls.
    let listed = get_json(&fleet.nodes[0].server, "/v1/calls").await;
    for node in &fleet.nodes[1..] {
        assert_eq!(
            get_json(&node.server, "/v1/calls").await,
            listed,
            "{}",
            node.id
        );
    }
    assert_eq!(
        packets_received(&calls),
        report["packets_sent"].as_u64().unwrap(),
        "every packet sent was received"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_under_load_cuts_no_call_and_loses_no_packet() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start(&["node-a", "node-b", "node-c"]).await;
    let entry = fleet.nodes[0].url();
    // 300 speakers at 100 a second: the drain starts half way through.
    let load =
        tokio::task::spawn_blocking(move || report(start_load(&entry, "drain", 6, 100.0, &[])));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let drained = post_empty(&fleet.nodes[1].server, "/v1/admin/drain").await;
    let drain_at = chrono::Utc::now();
    let carried = drained["calls_in_progress"].as_u64().unwrap();
    assert!(
        carried > 0,
        "node-b carried calls when it began to drain: {drained}"
    );
    let report = load.await.unwrap();
    every_speaker_connected_and_no_call_split(&report);

    // node-b leaves once its calls have ended, cleanly.
    let node_b = &mut fleet.nodes[1];
    let exit = node_b
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("drained node did not exit:\n{}", node_b.log_text()));
    assert_eq!(exit.code(), Some(0));

    let calls = ended_calls(&fleet, 0, "drain").await;
    // node-b took no new call once it drained: only calls it carried, or
    // had been given a moment before and whose first session was on its
    // way (a call has one owner, so those start there too).
    let on_b: Vec<&serde_json::Value> = calls
        .values()
        .filter(|(n, _)| n == "node-b")
        .map(|(_, s)| s)
        .collect();
    assert!(on_b.len() as u64 >= carried);
    let started_after_drain = calls
        .values()
        .filter(|(_, s)| started(s) > drain_at + chrono::Duration::seconds(1))
        .count();
    assert!(
        started_after_drain > 0,
        "calls kept starting after the drain"
    );
    println!(
        "drain under load: node-b carried {carried} calls at the drain and ended {} there; {started_after_drain} calls started elsewhere after it; packets sent {} received {}",
        on_b.len(),
        report["packets_sent"],
        packets_received(&calls)
    );
    for s in on_b {
        assert!(
            started(s) <= drain_at + chrono::Duration::seconds(1),
            "node-b started a call well after it drained: {s}"
        );
    }
    for (call, (node, summary)) in &calls {
        assert_eq!(
            summary["end_reason"], "last_session_left",
            "{call} on {node} was cut"
        );
        assert_eq!(
            summary["participants"].as_array().unwrap().len() as u64,
            SPEAKERS_PER_CALL,
            "{call} is whole on {node}"
        );
    }
    assert_eq!(
        packets_received(&calls),
        report["packets_sent"].as_u64().unwrap(),
        "no packet of a live call was lost"
    );
}

/// The `q` quantile of a Prometheus histogram, interpolated within its
/// bucket as Prometheus's `histogram_quantile` does.
fn histogram_quantile(text: &str, name: &str, q: f64) -> f64 {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return previous.0;
            }
            let within = if count > previous.1 {
                (rank - previous.1) / (count - previous.1)
            } else {
                0.0
            };
            return previous.0 + (le - previous.0) * within;
        }
        previous = (le, count);
    }
    previous.0
}

fn started(summary: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    summary["started_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no started_at: {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_load_moves_its_calls_and_harms_no_other() {
    let _alone = ONE_AT_A_TIME.lock().await;
    // Nothing held for details: what a node records before it dies is
    // written, not waiting in its memory.
    let mut fleet = Fleet::start_with(
        &["node-a", "node-b", "node-c"],
        &[("HEARKEN_CONSENT_DETAILS_WAIT_MS", "0".to_owned())],
    )
    .await;
    let entry = fleet.nodes[0].url();
    let load = tokio::task::spawn_blocking(move || {
        report(start_load(
            &entry,
            "kill",
            10,
            150.0,
            // Speakers whose node dies start a new session for their call.
            &["--reconnect", "--reconnect-silence-ms", "1000"],
        ))
    });
    // The ramp takes 2 s; node-c dies a second and a half after it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    fleet.nodes[2].kill();
    let killed_at = chrono::Utc::now();
    let report = load.await.unwrap();
    let reconnects = report["reconnects"].as_u64().unwrap();
    assert!(reconnects > 0, "node-c carried speakers: {report}");
    assert_eq!(report["reconnect_failures"], 0, "{report}");
    every_speaker_connected_and_no_call_split(&report);
    println!(
        "kill -9 under load: {reconnects} speakers reconnected, reconnect p50 {} ms p99 {} ms, sessions by node at the end {}",
        report["reconnect_ms"]["p50"], report["reconnect_ms"]["p99"], report["sessions_by_node"]
    );

    let calls = ended_calls(&fleet, 1, "kill").await;
    let mut moved = 0;
    // Calls whose sessions on node-c were all still connecting when it
    // died: node-c never began them, so they begin on the node their
    // speakers reconnect to, after the kill.
    let mut begun_after_the_kill = 0;
    for (call, (node, summary)) in &calls {
        assert_ne!(node, "node-c", "{call} ended on the dead node");
        assert_eq!(
            summary["participants"].as_array().unwrap().len() as u64,
            SPEAKERS_PER_CALL,
            "{call}"
        );
        let segments = summary["segments"].as_array().cloned().unwrap_or_default();
        if segments.is_empty() && started(summary) > killed_at {
            begun_after_the_kill += 1;
            continue;
        }
        if segments.is_empty() {
            // Never on node-c: unharmed, not a packet missing.
            for p in summary["participants"].as_array().unwrap() {
                assert_eq!(p["packets_lost"], 0, "{call}: {p}");
            }
            continue;
        }
        moved += 1;
        assert_eq!(segments.len(), 2, "{call}: {summary}");
        assert_eq!(segments[0]["node"], "node-c", "{call}");
        assert_eq!(segments[1]["node"], node.as_str(), "{call}");
        let files = |i: usize| -> Vec<String> {
            segments[i]["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect()
        };
        let (earlier, later) = (files(0), files(1));
        assert_eq!(later.len() as u64, SPEAKERS_PER_CALL, "{call}: {later:?}");
        // Each speaker recorded on node-c goes on in its next file, and no
        // name is used twice (a speaker node-c had not yet recorded, or
        // whose session was still starting there, begins at its first).
        for file in &earlier {
            let next = file.replace(".opus", ".2.opus");
            assert!(later.contains(&next), "{call}: {earlier:?} then {later:?}");
        }
        assert!(
            later.iter().all(|f| !earlier.contains(f)),
            "{call}: {earlier:?} then {later:?}"
        );
        // Its consent chain goes on across the nodes, read anywhere.
        let consent = get_json(&fleet.nodes[0].server, &format!("/v1/calls/{call}/consent")).await;
        assert_eq!(consent["chain"]["ok"], true, "{call}: {consent}");
        assert_eq!(
            consent["chain"]["head_sha256"],
            summary["consent_log"]["head_sha256"]
        );
    }
    // Both surviving nodes list every call, the same way.
    assert_eq!(
        get_json(&fleet.nodes[0].server, "/v1/calls").await,
        get_json(&fleet.nodes[1].server, "/v1/calls").await
    );
    println!(
        "kill -9 under load: {moved} calls moved, {begun_after_the_kill} begun after the kill, {} stayed whole",
        calls.len() - moved - begun_after_the_kill
    );
    // Every reconnected speaker's call moved, or began only after the kill
    // (a call may also have had speakers whose sessions were still
    // starting on node-c).
    assert!(moved > 0);
    assert!(
        reconnects <= (moved + begun_after_the_kill) as u64 * SPEAKERS_PER_CALL,
        "{reconnects} reconnects, {moved} calls moved, {begun_after_the_kill} begun after the kill"
    );
}
