//! Many nodes as one service: membership and call placement on NATS
//! JetStream (see the README's "Running a fleet").
//!
//! Two key-value buckets hold the fleet's shared state, so no node keeps
//! state another one needs:
//!
//! - [`NODES_BUCKET`]: one entry per node, its [`NodeStatus`], put every
//!   `cluster.heartbeat_ms`. A node silent for [`MISSED_HEARTBEATS`]
//!   of its own intervals is out of placement; the bucket's `max_age`
//!   removes its entry soon after.
//! - [`CALLS_BUCKET`]: which node owns each call. An entry is created with
//!   compare-and-set (create fails if the key exists), and taken over from a
//!   node that is gone with an update that names the revision read, so two
//!   nodes can never both own a call: one of two racing writes fails and its
//!   node reads the winner.
//!
//! Every node watches the nodes bucket, so choosing where a new call goes is
//! a look at memory; what a placement costs is one read and one
//! compare-and-set (`hearken_cluster_placement_seconds`). Nothing here is on
//! the packet path: a call's sessions find their call in the local registry
//! and never ask the cluster again.

pub mod events;
pub mod index;
pub mod resume;
pub mod tap;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hearken_core::ids::CallId;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ClusterConfig;
use crate::metrics::Metrics;

/// The bucket of live nodes.
pub const NODES_BUCKET: &str = "hearken_nodes";
/// The bucket of call owners.
pub const CALLS_BUCKET: &str = "hearken_calls";
/// Heartbeats a node may miss before it is out of placement.
pub const MISSED_HEARTBEATS: u32 = 3;
/// Heartbeats a node must have missed before its calls are taken from it
/// (twice [`MISSED_HEARTBEATS`]: a node that was only slow for a moment
/// keeps its calls; in between, its calls' new sessions are told to retry).
pub const GONE_AFTER_HEARTBEATS: u32 = 2 * MISSED_HEARTBEATS;
/// Longest wait for one request to NATS before the request counts as
/// failed (a new call then gets 503 with `Retry-After`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A placement entry no node refreshed this long is removed by NATS: the
/// entry of a call that was placed and never started does not stay.
const PLACEMENT_MAX_AGE: Duration = Duration::from_secs(3600);
/// How often the owner refreshes its live calls' placement entries (well
/// inside [`PLACEMENT_MAX_AGE`]).
const PLACEMENT_REFRESH: Duration = Duration::from_secs(600);
/// Rounds of read and compare-and-set before a placement gives up (each
/// lost round means another node wrote in between).
const MAX_PLACEMENT_ROUNDS: usize = 4;
/// A node not heard of for this many of its heartbeat timeouts is dropped
/// from the view (it is out of placement long before).
const FORGET_AFTER_TIMEOUTS: u32 = 20;

/// What a node says about itself in its heartbeat (and what
/// `GET /v1/cluster/nodes` lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id (`cluster.node_id`).
    pub node_id: String,
    /// Where other nodes redirect a call's clients (`cluster.advertised_url`).
    pub url: String,
    /// The IP its media workers advertise.
    pub media_ip: String,
    /// Its SIP `host:port`, when SIP dial-in is on there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<String>,
    /// Sessions it carries now.
    pub sessions: usize,
    /// Calls it carries now.
    pub calls: usize,
    /// Sessions it takes at most (`limits.max_sessions`).
    pub capacity: usize,
    /// Whether it is draining (takes no new calls).
    pub draining: bool,
    /// Its heartbeat interval (ms): it is out of placement after
    /// [`MISSED_HEARTBEATS`] of them without news.
    pub heartbeat_ms: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its version.
    pub version: String,
}

/// A node as `GET /v1/cluster/nodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Its last heartbeat.
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Milliseconds since that heartbeat arrived here.
    pub last_seen_ms: u64,
    /// `draining` or `ready`.
    pub state: &'static str,
    /// Whether this is the node that answered.
    pub this_node: bool,
}

/// What the calls bucket holds for a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlacementRecord {
    /// The owner.
    node_id: String,
    /// When it was placed (or taken over).
    placed_at: DateTime<Utc>,
    /// The node that wrote the entry.
    placed_by: String,
}

/// Where a call's sessions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This node owns the call.
    Here,
    /// Another live node owns it.
    There {
        /// Its id.
        node_id: String,
        /// Its `advertised_url`.
        url: String,
        /// Its SIP `host:port`, when it takes SIP.
        sip: Option<String>,
    },
}

/// This node's load, as placement weighs it against the others' heartbeats.
#[derive(Debug, Clone, Copy)]
pub struct LocalLoad {
    /// Calls carried now.
    pub calls: usize,
    /// Sessions carried now.
    pub sessions: usize,
    /// `limits.max_sessions`.
    pub capacity: usize,
    /// Whether this node is draining.
    pub draining: bool,
}

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// NATS did not answer.
    #[error("cannot connect to NATS at {url} (cluster.nats_url): {message}")]
    Connect {
        /// The URL tried.
        url: String,
        /// What the client said.
        message: String,
    },
    /// JetStream is off on that server, or a bucket cannot be made.
    #[error(
        "NATS at {url}: JetStream key-value bucket {bucket} is not usable \
         (is JetStream enabled, `nats-server -js`?): {message}"
    )]
    Bucket {
        /// The server.
        url: String,
        /// The bucket.
        bucket: &'static str,
        /// What the server said.
        message: String,
    },
    /// The event stream cannot be made.
    #[error("NATS at {url}: JetStream stream {stream} is not usable: {message}")]
    Stream {
        /// The server.
        url: String,
        /// The stream.
        stream: &'static str,
        /// What the server said.
        message: String,
    },
}

/// Why a call could not be placed (the client is told to retry).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// NATS did not answer in time, or refused the request.
    #[error("the fleet's placement service (NATS) is unavailable: {0}")]
    Unavailable(String),
    /// Every live node drains or is full.
    #[error("no node of the fleet takes new calls now")]
    NoNode,
}

/// A node's membership in the fleet (see the module docs).
pub struct Cluster {
    node_id: String,
    url: String,
    nats_url: String,
    heartbeat: Duration,
    client: async_nats::Client,
    nodes: kv::Store,
    calls: kv::Store,
    events: events::Publisher,
    view: Mutex<View>,
    metrics: Metrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What this node knows of the fleet: the others' last heartbeats, and
/// the revisions of the placement entries of its own calls.
#[derive(Default)]
struct View {
    nodes: HashMap<String, Seen>,
    owned: HashMap<CallId, u64>,
}

struct Seen {
    status: NodeStatus,
    /// When the heartbeat was put (taken from NATS's timestamp for entries
    /// that were already there when the watch began).
    at: Instant,
    /// When this node placed calls there that its heartbeat may not count
    /// yet: the next choice counts them before the node's own count
    /// catches up.
    placed: Vec<Instant>,
}

impl Seen {
    fn is_live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < timeout_of(&self.status)
    }

    /// Silent long enough that its calls may be taken from it.
    fn is_gone(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at)
            >= Duration::from_millis(self.status.heartbeat_ms.max(1)) * GONE_AFTER_HEARTBEATS
    }
}

fn timeout_of(status: &NodeStatus) -> Duration {
    Duration::from_millis(status.heartbeat_ms.max(1)) * MISSED_HEARTBEATS
}

impl Cluster {
    /// Connects to NATS, makes the buckets and the event stream if they do
    /// not exist, and starts watching the fleet. Fails at once (a clear
    /// error naming `cluster.nats_url`) when NATS does not answer.
    pub async fn connect(
        config: &ClusterConfig,
        node_id: String,
        url: String,
        metrics: Metrics,
    ) -> Result<Arc<Self>, ClusterError> {
        let nats_url = config.nats_url.trim().to_owned();
        let servers: Vec<&str> = nats_url.split(',').map(str::trim).collect();
        let connect_error = |message: String| ClusterError::Connect {
            url: nats_url.clone(),
            message,
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("hearken {node_id}"))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => info!("NATS connection restored"),
                    async_nats::Event::Disconnected => {
                        warn!("NATS connection lost; existing calls go on, new calls wait for it")
                    }
                    other => info!(event = %other, "NATS"),
                }
            })
            .connect(servers.as_slice())
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let jetstream = jetstream::new(client.clone());
        let heartbeat = config.heartbeat();
        let nodes = ensure_bucket(
            &jetstream,
            &nats_url,
            NODES_BUCKET,
            "Hearken nodes: one heartbeat entry per live node",
            // A node's entry outlives a few missed heartbeats of the
            // slowest node we expect; placement judges liveness itself.
            (heartbeat * MISSED_HEARTBEATS * 4).max(Duration::from_secs(10)),
        )
        .await?;
        let calls = ensure_bucket(
            &jetstream,
            &nats_url,
            CALLS_BUCKET,
            "Hearken call placement: the node that owns each call",
            PLACEMENT_MAX_AGE,
        )
        .await?;
        let events =
            events::Publisher::start(jetstream.clone(), &nats_url, &node_id, &metrics).await?;
        let cluster = Arc::new(Self {
            node_id,
            url,
            nats_url,
            heartbeat,
            client,
            nodes,
            calls,
            events,
            view: Mutex::new(View::default()),
            metrics,
        });
        // The fleet as it is now, before this node places anything: an
        // owner missing from an empty view would look gone.
        cluster.load_view().await;
        tokio::spawn(watch_nodes(Arc::downgrade(&cluster)));
        tokio::spawn(refresh_placements(Arc::downgrade(&cluster)));
        tokio::spawn(release_lost_nodes(Arc::downgrade(&cluster)));
        info!(
            node = %cluster.node_id,
            url = %cluster.url,
            nats = %cluster.nats_url,
            "joined the fleet"
        );
        Ok(cluster)
    }

    /// Reads every node's last heartbeat into the view (best effort: the
    /// watch delivers them too, a moment later).
    async fn load_view(&self) {
        let Ok(keys) = self.timed("nodes_keys", self.nodes.keys()).await else {
            return;
        };
        let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        for key in keys {
            if let Ok(Some(entry)) = self.timed("nodes_read", self.nodes.entry(&key)).await
                && entry.operation == kv::Operation::Put
                && let Ok(status) = serde_json::from_slice::<NodeStatus>(&entry.value)
            {
                self.saw(status, instant_of(entry.created));
            }
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// This node's advertised base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where fleet events are published from.
    pub fn events(&self) -> &events::Publisher {
        &self.events
    }

    /// Whether the NATS connection is up now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // A poisoned lock still holds consistent maps (each update is a few
        // map operations that cannot panic half way).
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts this node's heartbeat.
    pub async fn heartbeat(&self, status: &NodeStatus) -> Result<(), PlacementError> {
        let value = Bytes::from(serde_json::to_vec(status).unwrap_or_default());
        self.timed("heartbeat", self.nodes.put(&self.node_id, value))
            .await
            .map(|_| ())
    }

    /// Removes this node from the fleet (its last act after a drain).
    pub async fn leave(&self) {
        if let Err(e) = self.timed("leave", self.nodes.delete(&self.node_id)).await {
            warn!(error = %e, "could not remove this node's heartbeat; it expires on its own");
        }
        self.events.flush(Duration::from_secs(5)).await;
    }

    /// The live nodes (this one first), for `GET /v1/cluster/nodes`.
    pub fn nodes(&self) -> Vec<NodeView> {
        let now = Instant::now();
        let view = self.view();
        let mut nodes: Vec<NodeView> = view
            .nodes
            .values()
            .filter(|s| s.is_live(now))
            .map(|s| NodeView {
                status: s.status.clone(),
                last_seen_ms: now.saturating_duration_since(s.at).as_millis() as u64,
                state: if s.status.draining {
                    "draining"
                } else {
                    "ready"
                },
                this_node: s.status.node_id == self.node_id,
            })
            .collect();
        nodes.sort_by(|a, b| {
            b.this_node
                .cmp(&a.this_node)
                .then_with(|| a.status.node_id.cmp(&b.status.node_id))
        });
        nodes
    }

    /// The owner of `call_id`, placing the call when no live node owns it:
    /// on the least-loaded live node that is not draining (this one
    /// weighed by `local`, fresher than its heartbeat). A call whose owner
    /// is gone is taken over the same way, with compare-and-set on the
    /// revision read.
    ///
    /// Called for a call this node does not carry; a call it carries is
    /// its own without asking.
    pub async fn place(&self, call_id: &CallId, local: LocalLoad) -> Result<Owner, PlacementError> {
        let started = Instant::now();
        let result = self.place_inner(call_id, local).await;
        self.metrics
            .cluster_placement_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Ok(owner) = &result {
            let target = match owner {
                Owner::Here => "local",
                Owner::There { .. } => "remote",
            };
            self.metrics
                .cluster_placements
                .with_label_values(&[target])
                .inc();
        }
        result
    }

    async fn place_inner(
        &self,
        call_id: &CallId,
        local: LocalLoad,
    ) -> Result<Owner, PlacementError> {
        let key = placement_key(call_id);
        for _ in 0..MAX_PLACEMENT_ROUNDS {
            let entry = self.timed("placement_read", self.calls.entry(&key)).await?;
            let current = entry.filter(|e| e.operation == kv::Operation::Put);
            if let Some(entry) = &current {
                // An entry that does not parse names no live node: it is
                // taken over like one whose node is gone.
                let record = serde_json::from_slice::<PlacementRecord>(&entry.value).ok();
                if let Some(record) = record {
                    // A call placed here stays here, even once this node
                    // drains: another session of it may be starting here
                    // right now, and a call has one owner. (The drain waits
                    // for it; new calls are no longer placed here.)
                    if record.node_id == self.node_id {
                        self.view().owned.insert(call_id.clone(), entry.revision);
                        return Ok(Owner::Here);
                    }
                    if let Some((url, sip)) = self.live_address(&record.node_id) {
                        return Ok(Owner::There {
                            node_id: record.node_id,
                            url,
                            sip,
                        });
                    }
                    if !self.is_gone(&record.node_id) {
                        return Err(PlacementError::Unavailable(format!(
                            "the call's node {} missed its heartbeats; try again",
                            record.node_id
                        )));
                    }
                    info!(
                        call = %call_id,
                        owner = %record.node_id,
                        "the call's owner is gone: placing the call again"
                    );
                }
            }
            let (target, url) = self.choose(local)?;
            let record = PlacementRecord {
                node_id: target.clone(),
                placed_at: Utc::now(),
                placed_by: self.node_id.clone(),
            };
            let value = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
            let written = match &current {
                Some(entry) => {
                    match tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        self.calls.update(&key, value, entry.revision),
                    )
                    .await
                    {
                        Ok(Ok(revision)) => Ok(revision),
                        Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            Err(None)
                        }
                        Ok(Err(e)) => Err(Some(e.to_string())),
                        Err(_) => Err(Some("timed out".to_owned())),
                    }
                }
                None => match tokio::time::timeout(REQUEST_TIMEOUT, self.calls.create(&key, value))
                    .await
                {
                    Ok(Ok(revision)) => Ok(revision),
                    Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(None),
                    Ok(Err(e)) => Err(Some(e.to_string())),
                    Err(_) => Err(Some("timed out".to_owned())),
                },
            };
            match written {
                Ok(revision) => {
                    self.note_placed(&target);
                    if target == self.node_id {
                        self.view().owned.insert(call_id.clone(), revision);
                        return Ok(Owner::Here);
                    }
                    let sip = self.live_address(&target).and_then(|(_, sip)| sip);
                    return Ok(Owner::There {
                        node_id: target,
                        url,
                        sip,
                    });
                }
                // Another node wrote first: read what it wrote.
                Err(None) => self.metrics.cluster_placement_conflicts.inc(),
                Err(Some(message)) => {
                    self.metrics
                        .cluster_errors
                        .with_label_values(&["nats"])
                        .inc();
                    return Err(PlacementError::Unavailable(message));
                }
            }
        }
        Err(PlacementError::Unavailable(
            "the call's placement kept changing under this node".to_owned(),
        ))
    }

    /// Releases a call that ended here, unless another node has taken it
    /// over since.
    pub async fn release(&self, call_id: &CallId) {
        let Some(revision) = self.view().owned.remove(call_id) else {
            return;
        };
        let key = placement_key(call_id);
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.calls.delete_expect_revision(&key, Some(revision)),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {}
            Ok(Err(e)) => {
                self.metrics
                    .cluster_errors
                    .with_label_values(&["nats"])
                    .inc();
                warn!(call = %call_id, error = %e, "could not release the call's placement; it expires");
            }
            Err(_) => {
                self.metrics
                    .cluster_errors
                    .with_label_values(&["nats"])
                    .inc();
                warn!(call = %call_id, "releasing the call's placement timed out; it expires");
            }
        }
    }

    /// Whether `node_id` is gone: silent for [`GONE_AFTER_HEARTBEATS`], or
    /// not known at all (the view holds every node that heartbeats).
    fn is_gone(&self, node_id: &str) -> bool {
        let now = Instant::now();
        self.view()
            .nodes
            .get(node_id)
            .is_none_or(|s| s.is_gone(now))
    }

    /// The URL and SIP address of `node_id` if it is live.
    fn live_address(&self, node_id: &str) -> Option<(String, Option<String>)> {
        let now = Instant::now();
        self.view()
            .nodes
            .get(node_id)
            .filter(|s| s.is_live(now))
            .map(|s| (s.status.url.clone(), s.status.sip.clone()))
    }

    /// The least-loaded live node that takes new calls: the fewest calls
    /// for its capacity (a call is placed once, its sessions follow it), on
    /// equal load this node (no redirect), then the lowest node id. A node
    /// whose sessions reach its capacity takes no call.
    fn choose(&self, local: LocalLoad) -> Result<(String, String), PlacementError> {
        let now = Instant::now();
        let view = self.view();
        let mut candidates: Vec<(f64, bool, &str, &str)> = Vec::new();
        if !local.draining && local.sessions < local.capacity {
            let load = load_of(local.calls, local.capacity);
            candidates.push((load, false, &self.node_id, &self.url));
        }
        for seen in view.nodes.values() {
            let s = &seen.status;
            if s.node_id == self.node_id || s.draining || !seen.is_live(now) {
                continue;
            }
            if s.sessions >= s.capacity {
                continue;
            }
            let calls = s.calls + seen.placed.len();
            candidates.push((load_of(calls, s.capacity), true, &s.node_id, &s.url));
        }
        candidates
            .into_iter()
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)))
            .map(|(_, _, id, url)| (id.to_owned(), url.to_owned()))
            .ok_or(PlacementError::NoNode)
    }

    fn note_placed(&self, node_id: &str) {
        if let Some(seen) = self.view().nodes.get_mut(node_id) {
            seen.placed.push(Instant::now());
        }
    }

    /// Runs one request to NATS with the request timeout, timing it and
    /// counting its failure.
    async fn timed<T, E: std::fmt::Display>(
        &self,
        op: &str,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, PlacementError> {
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
        self.metrics
            .cluster_request_seconds
            .with_label_values(&["nats", op])
            .observe(started.elapsed().as_secs_f64());
        let failure = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        self.metrics
            .cluster_errors
            .with_label_values(&["nats"])
            .inc();
        Err(PlacementError::Unavailable(failure))
    }

    /// Takes a heartbeat (this node's own, or one read from the bucket)
    /// into the view.
    fn saw(&self, status: NodeStatus, at: Instant) {
        let mut view = self.view();
        let live_before = view.nodes.values().filter(|s| s.is_live(at)).count();
        // Placements made a heartbeat or more before this one are in its
        // count by now (their first session has long arrived).
        let counted_before = at
            .checked_sub(Duration::from_millis(status.heartbeat_ms))
            .unwrap_or(at);
        let mut placed = view
            .nodes
            .remove(&status.node_id)
            .map(|s| s.placed)
            .unwrap_or_default();
        placed.retain(|p| *p >= counted_before);
        view.nodes
            .insert(status.node_id.clone(), Seen { status, at, placed });
        let now = Instant::now();
        view.nodes.retain(|_, s| {
            now.saturating_duration_since(s.at) < timeout_of(&s.status) * FORGET_AFTER_TIMEOUTS
        });
        let live = view.nodes.values().filter(|s| s.is_live(now)).count();
        if live != live_before {
            info!(live, "fleet membership changed");
        }
        self.metrics.cluster_nodes.set(live as i64);
    }

    fn forget(&self, node_id: &str) {
        let mut view = self.view();
        if view.nodes.remove(node_id).is_some() {
            info!(node = %node_id, "node left the fleet");
        }
        let now = Instant::now();
        let live = view.nodes.values().filter(|s| s.is_live(now)).count();
        self.metrics.cluster_nodes.set(live as i64);
    }

    /// Recounts live nodes (a node that stopped heartbeating drops out
    /// without any message).
    fn recount(&self) {
        let now = Instant::now();
        let live = self
            .view()
            .nodes
            .values()
            .filter(|s| s.is_live(now))
            .count();
        self.metrics.cluster_nodes.set(live as i64);
    }
}

fn load_of(sessions: usize, capacity: usize) -> f64 {
    sessions as f64 / capacity.max(1) as f64
}

/// The calls-bucket key of a call. Call ids are `[A-Za-z0-9._-]`; a key
/// may not start or end with `.` nor hold an empty token, so such ids are
/// hex-encoded behind `=` (which no call id holds, so the two forms never
/// meet).
pub fn placement_key(call_id: &CallId) -> String {
    let id = call_id.as_str();
    if id.starts_with('.') || id.ends_with('.') || id.contains("..") {
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("={hex}")
    } else {
        id.to_owned()
    }
}

/// The key-value bucket `bucket`, made if it does not exist (by whichever
/// node comes first; the others find it).
async fn ensure_bucket(
    jetstream: &jetstream::Context,
    nats_url: &str,
    bucket: &'static str,
    description: &str,
    max_age: Duration,
) -> Result<kv::Store, ClusterError> {
    let fail = |message: String| ClusterError::Bucket {
        url: nats_url.to_owned(),
        bucket,
        message,
    };
    if let Ok(Ok(store)) =
        tokio::time::timeout(REQUEST_TIMEOUT, jetstream.get_key_value(bucket)).await
    {
        return Ok(store);
    }
    // The bucket's stream, made as the key-value API makes it. Not through
    // `create_key_value`: that first asks for the account's limits, whose
    // answer from a 2.9 server (Debian's) this client cannot read.
    let stream = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        // Publishes retried within this window are kept once.
        duplicate_window: max_age.min(Duration::from_secs(120)),
        ..Default::default()
    };
    make_stream(jetstream, stream, REQUEST_TIMEOUT)
        .await
        .map_err(fail)?;
    tokio::time::timeout(REQUEST_TIMEOUT, jetstream.get_key_value(bucket))
        .await
        .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))
}

/// Makes a JetStream stream, or finds it made; the error is NATS's.
///
/// Nodes starting together race to make it, and NATS may refuse all but
/// one (as "subjects overlap with an existing stream"): the stream is then
/// there for the others to find.
async fn make_stream(
    jetstream: &jetstream::Context,
    config: jetstream::stream::Config,
    timeout: Duration,
) -> Result<(), String> {
    let name = config.name.clone();
    let made = tokio::time::timeout(timeout, jetstream.get_or_create_stream(config))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?;
    let Err(e) = made else { return Ok(()) };
    match tokio::time::timeout(timeout, jetstream.get_stream(&name)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(e.to_string()),
    }
}

/// Follows the nodes bucket into the view, watching again after NATS
/// comes back.
async fn watch_nodes(cluster: std::sync::Weak<Cluster>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        // With history: the last heartbeat of every node, then each new one.
        let watch = c.nodes.watch_with_history(">").await;
        let heartbeat = c.heartbeat;
        drop(c);
        match watch {
            Ok(mut entries) => {
                backoff = Duration::from_millis(100);
                loop {
                    // The recount also runs when nothing arrives, so a
                    // silent node drops out of the metric on time.
                    let next = tokio::time::timeout(heartbeat, entries.next()).await;
                    let Some(c) = cluster.upgrade() else { return };
                    match next {
                        Err(_) => c.recount(),
                        Ok(Some(Ok(entry))) => match entry.operation {
                            kv::Operation::Put => {
                                match serde_json::from_slice::<NodeStatus>(&entry.value) {
                                    Ok(status) => {
                                        let at = instant_of(entry.created);
                                        c.saw(status, at);
                                    }
                                    Err(e) => {
                                        warn!(node = %entry.key, error = %e, "unreadable heartbeat ignored")
                                    }
                                }
                            }
                            kv::Operation::Delete | kv::Operation::Purge => c.forget(&entry.key),
                        },
                        Ok(Some(Err(e))) => {
                            warn!(error = %e, "watching the fleet failed; watching again");
                            break;
                        }
                        Ok(None) => break,
                    }
                }
            }
            Err(e) => {
                if let Some(c) = cluster.upgrade() {
                    c.metrics.cluster_errors.with_label_values(&["nats"]).inc();
                }
                warn!(error = %e, "cannot watch the fleet; trying again");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The local instant at which NATS stored an entry (now, if that is in the
/// future by this clock).
fn instant_of(created: time::OffsetDateTime) -> Instant {
    let created_ns = created.unix_timestamp_nanos();
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(created_ns);
    let age = Duration::from_nanos(u64::try_from(now_ns - created_ns).unwrap_or(0));
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

/// Releases the placement entries of nodes that stopped heartbeating, so
/// their calls are placed afresh when clients reconnect. One node does it:
/// the live one with the lowest id (no leader election; if two disagree
/// for a moment, each delete names the revision it read, so a call taken
/// over meanwhile is left alone).
async fn release_lost_nodes(cluster: std::sync::Weak<Cluster>) {
    let mut released: std::collections::BTreeSet<String> = Default::default();
    loop {
        let heartbeat = match cluster.upgrade() {
            Some(c) => c.heartbeat,
            None => return,
        };
        tokio::time::sleep(heartbeat).await;
        let Some(c) = cluster.upgrade() else { return };
        let now = Instant::now();
        let (live, gone): (Vec<String>, Vec<String>) = {
            let view = c.view();
            let live = view
                .nodes
                .values()
                .filter(|s| s.is_live(now))
                .map(|s| s.status.node_id.clone())
                .collect();
            let gone = view
                .nodes
                .values()
                .filter(|s| s.is_gone(now) && s.status.node_id != c.node_id)
                .map(|s| s.status.node_id.clone())
                .collect();
            (live, gone)
        };
        // A node that came back may be lost again later.
        released.retain(|n| gone.contains(n));
        let sweeper = live.iter().min().is_some_and(|first| *first == c.node_id);
        if !sweeper {
            continue;
        }
        for node in gone {
            if released.insert(node.clone()) {
                c.release_calls_of(&node).await;
            }
        }
    }
}

impl Cluster {
    /// Deletes every placement entry that names `node`.
    async fn release_calls_of(&self, node: &str) {
        let keys = match self.timed("placement_keys", self.calls.keys()).await {
            Ok(keys) => keys,
            Err(e) => {
                warn!(node, error = %e, "cannot list the calls of a lost node; they are taken over as clients return");
                return;
            }
        };
        let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        let mut released = 0;
        for key in keys {
            let Ok(Some(entry)) = self.timed("placement_read", self.calls.entry(&key)).await else {
                continue;
            };
            let owner = serde_json::from_slice::<PlacementRecord>(&entry.value)
                .map(|r| r.node_id)
                .unwrap_or_default();
            if entry.operation != kv::Operation::Put || owner != node {
                continue;
            }
            // A call taken over since the read keeps its new owner.
            let deleted = tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.calls
                    .delete_expect_revision(&key, Some(entry.revision)),
            )
            .await;
            if matches!(deleted, Ok(Ok(()))) {
                released += 1;
            }
        }
        info!(
            node,
            released, "released the placements of a lost node's calls"
        );
    }
}

/// Keeps the placement entries of this node's live calls from expiring.
async fn refresh_placements(cluster: std::sync::Weak<Cluster>) {
    loop {
        tokio::time::sleep(PLACEMENT_REFRESH).await;
        let Some(c) = cluster.upgrade() else { return };
        let owned: Vec<(CallId, u64)> = c
            .view()
            .owned
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (call_id, revision) in owned {
            let record = PlacementRecord {
                node_id: c.node_id.clone(),
                placed_at: Utc::now(),
                placed_by: c.node_id.clone(),
            };
            let value = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
            let key = placement_key(&call_id);
            match tokio::time::timeout(REQUEST_TIMEOUT, c.calls.update(&key, value, revision)).await
            {
                Ok(Ok(new)) => {
                    if let Some(r) = c.view().owned.get_mut(&call_id) {
                        *r = new;
                    }
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    c.metrics.cluster_placement_conflicts.inc();
                    warn!(call = %call_id, "another node took this call's placement over");
                    c.view().owned.remove(&call_id);
                }
                _ => c.metrics.cluster_errors.with_label_values(&["nats"]).inc(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_a_bucket_key_cannot_hold_are_encoded_apart() {
        let plain = CallId::parse("sales-2026.12_06").unwrap();
        assert_eq!(placement_key(&plain), "sales-2026.12_06");
        // Keys may not start or end with '.', nor hold "..".
        assert_eq!(placement_key(&CallId::parse(".a").unwrap()), "=2e61");
        assert_eq!(placement_key(&CallId::parse("a.").unwrap()), "=612e");
        assert_eq!(placement_key(&CallId::parse("a..b").unwrap()), "=612e2e62");
    }

    #[test]
    fn a_node_is_live_for_three_of_its_own_heartbeats() {
        let status = NodeStatus {
            node_id: "n1".into(),
            url: "http://127.0.0.1:1".into(),
            media_ip: "127.0.0.1".into(),
            sip: None,
            sessions: 0,
            calls: 0,
            capacity: 10,
            draining: false,
            heartbeat_ms: 200,
            started_at: Utc::now(),
            version: "0".into(),
        };
        let now = Instant::now();
        let seen = |ago_ms: u64| Seen {
            status: status.clone(),
            at: now - Duration::from_millis(ago_ms),
            placed: Vec::new(),
        };
        assert!(seen(599).is_live(now));
        assert!(!seen(600).is_live(now));
        // Its calls are taken from it only after six.
        assert!(!seen(1199).is_gone(now));
        assert!(seen(1200).is_gone(now));
    }

    /// Nodes of a fleet start together: each finds the bucket missing and
    /// makes it, and all of them must end up with it. (Before the fix, one
    /// run in three of this size had a node refused with "subjects overlap
    /// with an existing stream", as a fleet test in CI once did.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_making_a_bucket_at_the_same_moment_all_get_it() {
        use hearken_testkit::services::{PrivateNats, start_or_skip};
        let Some(nats) = start_or_skip(PrivateNats::start()) else {
            return;
        };
        let url = nats.url();
        const NODES: usize = 32;
        for round in 0..40 {
            let bucket: &'static str = Box::leak(format!("race_{round}").into_boxed_str());
            let start = Arc::new(tokio::sync::Barrier::new(NODES));
            let mut nodes = tokio::task::JoinSet::new();
            for _ in 0..NODES {
                let (url, start) = (url.clone(), start.clone());
                nodes.spawn(async move {
                    let client = async_nats::connect(url.as_str()).await.unwrap();
                    let jetstream = jetstream::new(client);
                    start.wait().await;
                    ensure_bucket(&jetstream, &url, bucket, "a race", Duration::from_secs(60))
                        .await
                        .map(|_| ())
                });
            }
            while let Some(made) = nodes.join_next().await {
                made.unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }
}
