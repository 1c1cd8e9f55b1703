//! The fleet's durable call index in PostgreSQL (`store.postgres_url`).
//!
//! Calls, participants, the consent audit log (line by line), transcript
//! metadata and metadata-only meetings go to the tables of
//! `migrations/*.sql`, applied at start under an advisory lock so nodes that
//! start together apply them once. Every node answers `GET /v1/calls`,
//! `/v1/calls/{id}` and `/v1/calls/{id}/consent` from here.
//!
//! Writes come from the store (see [`crate::store::StoreTap`]) on the
//! writer's thread and are applied in order by one task. An audit line is
//! mirrored before the gate acts, as the file is: the recorder waits for
//! the row (at most [`MIRROR_WAIT`]). While PostgreSQL is away, calls go on:
//! lines and summaries queue (bounded; drops counted) and are written, in
//! order, when it returns. The files on the node stay the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hearken_core::conference::{CallSummary, SegmentSummary};
use hearken_core::ids::CallId;
use serde_json::Value;
use tokio::sync::{RwLock, mpsc};
use tokio_postgres::{Client, NoTls};
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::store::StoreTap;

/// The schema migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "fleet_index",
        include_str!("../../migrations/0001_fleet_index.sql"),
    ),
    (
        2,
        "call_files",
        include_str!("../../migrations/0002_call_files.sql"),
    ),
];
/// Longest a recorder waits for an audit line's row before it goes on (the
/// line is queued and written when PostgreSQL answers).
pub const MIRROR_WAIT: Duration = Duration::from_secs(1);
/// Writes that may wait for PostgreSQL before new ones are dropped.
const QUEUE: usize = 65_536;
/// Write queues, each applied in order by its own task.
const SHARDS: usize = 8;
/// Longest one statement may take before PostgreSQL counts as away.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The advisory lock key the migrations are applied under.
const MIGRATION_LOCK: i64 = 0x4845_4152_4b45_4e31; // "HEARKEN1"

/// Why the index cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// PostgreSQL did not answer or refused the connection.
    #[error("cannot connect to PostgreSQL at {url} (store.postgres_url): {message}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the server or the client said.
        message: String,
    },
    /// A migration failed.
    #[error("PostgreSQL at {url}: migration {version} ({name}) failed: {message}")]
    Migration {
        /// The URL, without its password.
        url: String,
        /// Its version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// What the server said.
        message: String,
    },
}

/// A call as the index lists it.
#[derive(Debug, Clone)]
pub struct IndexedCall {
    /// The call id.
    pub call_id: String,
    /// The node that holds its files.
    pub node_id: String,
    /// `active` or `ended`.
    pub state: String,
    /// Call time zero.
    pub started_at: Option<DateTime<Utc>>,
    /// Its end.
    pub ended_at: Option<DateTime<Utc>>,
    /// Participants seen.
    pub participants: usize,
}

/// A metadata-only meeting as the index holds it.
#[derive(Debug, Clone)]
pub struct IndexedMeeting {
    /// Its call id.
    pub call_id: String,
    /// What `meeting.json` holds.
    pub meeting: Value,
}

enum Write {
    Call(Box<CallSummary>),
    Audit {
        call_id: String,
        line: String,
        ack: Option<std::sync::mpsc::SyncSender<()>>,
    },
    Transcript {
        call_id: String,
        transcript: Value,
    },
    Meeting {
        call_id: String,
        meeting: Value,
    },
    File {
        call_id: String,
        file: String,
        ack: Option<std::sync::mpsc::SyncSender<()>>,
    },
}

impl Write {
    /// The call it is about (its shard).
    fn call_id(&self) -> &str {
        match self {
            Self::Call(summary) => &summary.call_id,
            Self::Audit { call_id, .. }
            | Self::Transcript { call_id, .. }
            | Self::Meeting { call_id, .. }
            | Self::File { call_id, .. } => call_id,
        }
    }
}

/// The shard of a call's writes.
fn shard_of(call_id: &str, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// The index (see the module docs).
pub struct FleetIndex {
    url: String,
    shown_url: String,
    node_id: String,
    client: RwLock<Option<Arc<Client>>>,
    /// One queue per shard of calls: a call's writes stay in order, and a
    /// busy call does not hold the others' back (tokio-postgres pipelines
    /// the shards' statements over the one connection).
    writes: Vec<mpsc::Sender<Write>>,
    /// Writes queued and not yet applied (or given up).
    pending: AtomicUsize,
    up: AtomicBool,
    metrics: Metrics,
}

impl std::fmt::Debug for FleetIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetIndex")
            .field("url", &self.shown_url)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl FleetIndex {
    /// Connects, applies the migrations and starts the writer. Fails at
    /// once, naming `store.postgres_url`, when PostgreSQL does not answer.
    pub async fn connect(
        url: &str,
        node_id: &str,
        metrics: Metrics,
    ) -> Result<Arc<Self>, IndexError> {
        let shown_url = crate::config::redact_url_password(url);
        let client = connect(url).await.map_err(|message| IndexError::Connect {
            url: shown_url.clone(),
            message,
        })?;
        migrate(&client, &shown_url).await?;
        let (writes, queues): (Vec<_>, Vec<_>) =
            (0..SHARDS).map(|_| mpsc::channel(QUEUE / SHARDS)).unzip();
        let index = Arc::new(Self {
            url: url.to_owned(),
            shown_url,
            node_id: node_id.to_owned(),
            client: RwLock::new(Some(Arc::new(client))),
            writes,
            pending: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            metrics,
        });
        for rx in queues {
            tokio::spawn(write_loop(Arc::downgrade(&index), rx));
        }
        info!(postgres = %index.shown_url, "fleet index ready");
        Ok(index)
    }

    /// Whether the last statement reached PostgreSQL.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Waits until every queued write is applied, at most `limit` (a node
    /// that stops writes its calls' last rows before it exits).
    pub async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                warn!(
                    pending = self.pending.load(Ordering::SeqCst),
                    "fleet index writes left unwritten at exit; the files on this node hold them"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Queues `write` (an audit line or a file) and, while PostgreSQL
    /// answers, waits for it to be applied, at most [`MIRROR_WAIT`]; whether
    /// it was (or nothing was to wait for).
    fn queue_and_wait(&self, mut write: Write) -> bool {
        if !self.is_up() {
            return self.queue(write);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        match &mut write {
            Write::Audit { ack, .. } | Write::File { ack, .. } => *ack = Some(tx),
            _ => return self.queue(write),
        }
        self.queue(write) && rx.recv_timeout(MIRROR_WAIT).is_ok()
    }

    fn queue(&self, write: Write) -> bool {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let shard = shard_of(write.call_id(), self.writes.len());
        match self.writes[shard].try_send(write) {
            Ok(()) => true,
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::SeqCst);
                self.metrics
                    .cluster_errors
                    .with_label_values(&["postgres"])
                    .inc();
                false
            }
        }
    }

    /// The connected client, connecting again when the last one is gone.
    async fn client(&self) -> Result<Arc<Client>, String> {
        if let Some(c) = self.client.read().await.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let mut slot = self.client.write().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let client = Arc::new(connect(&self.url).await?);
        *slot = Some(client.clone());
        info!("PostgreSQL connection restored");
        Ok(client)
    }

    /// Runs `op` against PostgreSQL with the statement timeout, timing it
    /// and noting whether PostgreSQL is up (an error the server answered
    /// with does not make it away).
    async fn run<T, F>(&self, name: &str, op: F) -> Result<T, String>
    where
        F: AsyncFnOnce(Arc<Client>) -> Result<T, tokio_postgres::Error>,
    {
        let started = Instant::now();
        let result: Result<T, (bool, String)> = tokio::time::timeout(STATEMENT_TIMEOUT, async {
            let client = self.client().await.map_err(|e| (true, e))?;
            op(client)
                .await
                .map_err(|e| (e.as_db_error().is_none(), pg_message(&e)))
        })
        .await
        .unwrap_or_else(|_| Err((true, format!("no answer within {STATEMENT_TIMEOUT:?}"))));
        self.metrics
            .cluster_request_seconds
            .with_label_values(&["postgres", name])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                if !self.up.swap(true, Ordering::SeqCst) {
                    info!("PostgreSQL answers again");
                }
                Ok(value)
            }
            Err((away, e)) => {
                self.metrics
                    .cluster_errors
                    .with_label_values(&["postgres"])
                    .inc();
                if away && self.up.swap(false, Ordering::SeqCst) {
                    warn!(error = %e, "PostgreSQL is away; calls go on, their index rows wait");
                }
                Err(e)
            }
        }
    }

    /// Every call and metadata-only meeting of the fleet.
    pub async fn calls(&self) -> Result<(Vec<IndexedCall>, Vec<IndexedMeeting>), String> {
        self.run("list_calls", async |c: Arc<Client>| {
            let calls = c
                .query(
                    "SELECT call_id, node_id, state, started_at, ended_at, participants \
                     FROM calls ORDER BY started_at NULLS LAST, call_id",
                    &[],
                )
                .await?;
            let meetings = c
                .query(
                    "SELECT call_id, meeting FROM meetings ORDER BY call_id",
                    &[],
                )
                .await?;
            Ok((
                calls
                    .iter()
                    .map(|r| IndexedCall {
                        call_id: r.get(0),
                        node_id: r.get(1),
                        state: r.get(2),
                        started_at: r.get(3),
                        ended_at: r.get(4),
                        participants: usize::try_from(r.get::<_, i32>(5)).unwrap_or(0),
                    })
                    .collect(),
                meetings
                    .iter()
                    .map(|r| IndexedMeeting {
                        call_id: r.get(0),
                        meeting: r.get(1),
                    })
                    .collect(),
            ))
        })
        .await
    }

    /// A call's latest summary and the node that holds it.
    pub async fn call(&self, call_id: &CallId) -> Result<Option<(CallSummary, String)>, String> {
        let id = call_id.as_str().to_owned();
        let row = self
            .run("get_call", async move |c: Arc<Client>| {
                c.query_opt(
                    "SELECT summary, node_id FROM calls WHERE call_id = $1",
                    &[&id],
                )
                .await
            })
            .await?;
        Ok(row.and_then(|r| {
            let summary: Value = r.get(0);
            let node: String = r.get(1);
            serde_json::from_value::<CallSummary>(summary)
                .ok()
                .map(|s| (s, node))
        }))
    }

    /// What a node needs to go on with a call another node began: the
    /// call's row (summary and holder) and, per node in the order they
    /// recorded, the files written.
    pub async fn resume_state(
        &self,
        call_id: &CallId,
    ) -> Result<Option<(CallSummary, String, Vec<SegmentSummary>)>, String> {
        let Some((summary, node)) = self.call(call_id).await? else {
            return Ok(None);
        };
        let id = call_id.as_str().to_owned();
        let rows = self
            .run("get_files", async move |c: Arc<Client>| {
                c.query(
                    "SELECT node_id, file FROM call_files WHERE call_id = $1 \
                     ORDER BY created_at, file",
                    &[&id],
                )
                .await
            })
            .await?;
        let mut segments: Vec<SegmentSummary> = Vec::new();
        for row in rows {
            let (node, file): (String, String) = (row.get(0), row.get(1));
            match segments.last_mut() {
                Some(last) if last.node == node => last.files.push(file),
                _ => segments.push(SegmentSummary {
                    node,
                    files: vec![file],
                }),
            }
        }
        Ok(Some((summary, node, segments)))
    }

    /// A call's audit log lines, in order (empty when there is none).
    pub async fn audit_lines(&self, call_id: &CallId) -> Result<Vec<String>, String> {
        let id = call_id.as_str().to_owned();
        let rows = self
            .run("get_audit", async move |c: Arc<Client>| {
                c.query(
                    "SELECT line FROM consent_events WHERE call_id = $1 ORDER BY seq",
                    &[&id],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn apply(&self, write: &Write) -> Result<(), String> {
        let node = self.node_id.clone();
        match write {
            Write::Call(summary) => {
                let summary = summary.as_ref().clone();
                self.run("put_call", async move |c: Arc<Client>| {
                    put_call(&c, &node, &summary).await
                })
                .await
            }
            Write::Audit { call_id, line, .. } => {
                let Ok(value) = serde_json::from_str::<Value>(line) else {
                    return Ok(());
                };
                let seq = value.get("seq").and_then(Value::as_i64).unwrap_or(0);
                let at = value
                    .get("at")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                let event = value
                    .get("event")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let (call_id, line) = (call_id.clone(), line.clone());
                self.run("put_audit", async move |c: Arc<Client>| {
                    // The same line twice (a retry after an unanswered
                    // write) is one row.
                    c.execute(
                        "INSERT INTO consent_events (call_id, seq, node_id, at, event, line) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id, seq) DO NOTHING",
                        &[&call_id, &seq, &node, &at, &event, &line],
                    )
                    .await
                    .map(|_| ())
                })
                .await
            }
            Write::Transcript {
                call_id,
                transcript,
            } => {
                let backend = transcript
                    .get("backend")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let model = transcript
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let segments = transcript
                    .get("segments")
                    .and_then(Value::as_array)
                    .map_or(0, |s| i32::try_from(s.len()).unwrap_or(i32::MAX));
                let complete = transcript.get("complete").and_then(Value::as_bool) == Some(true);
                let call_id = call_id.clone();
                self.run("put_transcript", async move |c: Arc<Client>| {
                    c.execute(
                        "INSERT INTO transcripts (call_id, node_id, backend, model, segments, complete) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (call_id) DO UPDATE SET node_id = $2, backend = $3, model = $4, \
                         segments = $5, complete = $6, updated_at = now()",
                        &[&call_id, &node, &backend, &model, &segments, &complete],
                    )
                    .await
                    .map(|_| ())
                })
                .await
            }
            Write::File { call_id, file, .. } => {
                let (call_id, file) = (call_id.clone(), file.clone());
                self.run("put_file", async move |c: Arc<Client>| {
                    c.execute(
                        "INSERT INTO call_files (call_id, file, node_id) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                        &[&call_id, &file, &node],
                    )
                    .await
                    .map(|_| ())
                })
                .await
            }
            Write::Meeting { call_id, meeting } => {
                let (call_id, meeting) = (call_id.clone(), meeting.clone());
                self.run("put_meeting", async move |c: Arc<Client>| {
                    c.execute(
                        "INSERT INTO meetings (call_id, node_id, meeting) VALUES ($1, $2, $3) \
                         ON CONFLICT (call_id) DO UPDATE SET node_id = $2, meeting = $3, updated_at = now()",
                        &[&call_id, &node, &meeting],
                    )
                    .await
                    .map(|_| ())
                })
                .await
            }
        }
    }
}

impl StoreTap for FleetIndex {
    fn call_written(&self, summary: &CallSummary) {
        self.queue(Write::Call(Box::new(summary.clone())));
    }

    fn audit_appended(&self, call_id: &CallId, line: &str) {
        // While PostgreSQL answers, the gate waits for the row as it waits
        // for the file; while it is away, the line queues and the call goes on.
        let write = Write::Audit {
            call_id: call_id.as_str().to_owned(),
            line: line.to_owned(),
            ack: None,
        };
        if !self.queue_and_wait(write) {
            warn!(call = %call_id, "audit line not yet in PostgreSQL; it is written when PostgreSQL answers");
        }
    }

    fn transcript_written(&self, call_id: &CallId, transcript: &Value) {
        self.queue(Write::Transcript {
            call_id: call_id.as_str().to_owned(),
            transcript: transcript.clone(),
        });
    }

    fn file_created(&self, call_id: &CallId, file: &str) {
        // Waited for like an audit line: a node that dies a moment later
        // must have said which files it began, so the call's next node
        // numbers its own after them.
        let write = Write::File {
            call_id: call_id.as_str().to_owned(),
            file: file.to_owned(),
            ack: None,
        };
        if !self.queue_and_wait(write) {
            warn!(call = %call_id, file, "recording file not yet in PostgreSQL; it is written when PostgreSQL answers");
        }
    }

    // The index lists calls; their insights stay with their files (and go
    // out as an event).
    fn insights_written(&self, _call_id: &CallId, _insights: &Value) {}

    fn meeting_written(&self, call_id: &CallId, meeting: &Value) {
        self.queue(Write::Meeting {
            call_id: call_id.as_str().to_owned(),
            meeting: meeting.clone(),
        });
    }
}

async fn put_call(
    c: &Client,
    node: &str,
    summary: &CallSummary,
) -> Result<(), tokio_postgres::Error> {
    let state = if summary.ended_at.is_some() {
        "ended"
    } else {
        "active"
    };
    let participants = i32::try_from(summary.participants.len()).unwrap_or(i32::MAX);
    let end_reason = summary
        .end_reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_owned));
    let json = serde_json::to_value(summary).unwrap_or(Value::Null);
    c.execute(
        "INSERT INTO calls (call_id, node_id, state, started_at, ended_at, end_reason, participants, summary) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (call_id) DO UPDATE SET node_id = $2, state = $3, \
         started_at = COALESCE(calls.started_at, $4), ended_at = $5, end_reason = $6, \
         participants = $7, summary = $8, updated_at = now()",
        &[
            &summary.call_id,
            &node,
            &state,
            &summary.started_at,
            &summary.ended_at,
            &end_reason,
            &participants,
            &json,
        ],
    )
    .await?;
    for p in &summary.participants {
        let pj = serde_json::to_value(p).unwrap_or(Value::Null);
        c.execute(
            "INSERT INTO participants (call_id, participant_id, node_id, summary) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (call_id, participant_id) DO UPDATE SET node_id = $3, summary = $4",
            &[&summary.call_id, &p.id, &node, &pj],
        )
        .await?;
    }
    Ok(())
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(url, NoTls))
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|e| pg_message(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

async fn migrate(client: &Client, shown_url: &str) -> Result<(), IndexError> {
    let mut applied_version = 0;
    let mut applied_name = "schema_migrations";
    // One transaction under an advisory lock: nodes that start together
    // apply each migration once, one after the other.
    let result = async {
        client.batch_execute("BEGIN").await?;
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS hearken_schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
        for &(version, name, sql) in MIGRATIONS {
            (applied_version, applied_name) = (version, name);
            let done = client
                .query_opt(
                    "SELECT 1 FROM hearken_schema_migrations WHERE version = $1",
                    &[&version],
                )
                .await?
                .is_some();
            if !done {
                client.batch_execute(sql).await?;
                client
                    .execute(
                        "INSERT INTO hearken_schema_migrations (version, name) VALUES ($1, $2)",
                        &[&version, &name],
                    )
                    .await?;
                info!(version, name, "schema migration applied");
            }
        }
        client.batch_execute("COMMIT").await
    }
    .await;
    result.map_err(|e| {
        let message = pg_message(&e);
        IndexError::Migration {
            url: shown_url.to_owned(),
            version: applied_version,
            name: applied_name,
            message,
        }
    })
}

/// What PostgreSQL said, with its own message when it answered.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Applies one shard's queued writes in order; a write PostgreSQL did not
/// take is tried again (with backoff) before the next one.
async fn write_loop(index: std::sync::Weak<FleetIndex>, mut rx: mpsc::Receiver<Write>) {
    while let Some(write) = rx.recv().await {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(index) = index.upgrade() else { return };
            match index.apply(&write).await {
                Ok(()) => break,
                Err(e) if index.is_up() => {
                    // PostgreSQL answered and refused this row: retrying
                    // cannot help.
                    warn!(error = %e, "fleet index refused a write; skipped");
                    break;
                }
                Err(_) => {}
            }
            drop(index);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        if let Some(index) = index.upgrade() {
            index.pending.fetch_sub(1, Ordering::SeqCst);
        }
        if let Write::Audit { ack: Some(ack), .. } | Write::File { ack: Some(ack), .. } = write {
            let _ = ack.try_send(());
        }
    }
}
