//! Fleet events on the JetStream stream [`STREAM`], for downstream systems
//! (CRM sync, analytics).
//!
//! Subjects are `hearken.calls.{call_id}.{event}`; every message is one JSON
//! [`Event`] (schema `hearken.event.v1`, documented in the README). Delivery
//! is at least once: a message is published again until JetStream
//! acknowledges it, with the event id as `Nats-Msg-Id`, so JetStream drops
//! the copies a retry makes within its duplicate window. Consumers that need
//! exactly once key on `id`.
//!
//! Producers never wait: events go through a bounded queue fed with
//! `try_send` (a full queue drops the event and counts it), and one task
//! publishes them in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use super::ClusterError;
use crate::metrics::Metrics;

/// The stream events are published to.
pub const STREAM: &str = "HEARKEN_EVENTS";
/// The schema name every event carries.
pub const SCHEMA: &str = "hearken.event.v1";
/// Events that may wait to be published before new ones are dropped.
const QUEUE: usize = 16_384;
/// How long events are kept in the stream.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Call time zero.
    CallStarted,
    /// The call ended and its files are final.
    CallEnded,
    /// A participant came (their audio, or the provider's roster).
    ParticipantJoined,
    /// A participant went.
    ParticipantLeft,
    /// A consent signal, state or gate changed (the audit line is `data`).
    ConsentChanged,
    /// A final transcript segment.
    TranscriptSegment,
    /// The call's insights were made after it ended (`insights.json`).
    InsightsReady,
}

impl EventKind {
    /// The last token of the subject.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call_started",
            Self::CallEnded => "call_ended",
            Self::ParticipantJoined => "participant_joined",
            Self::ParticipantLeft => "participant_left",
            Self::ConsentChanged => "consent_changed",
            Self::TranscriptSegment => "transcript_segment",
            Self::InsightsReady => "insights_ready",
        }
    }
}

/// One event as published.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Unique per event (`{node_id}-{started}-{n}`); also its `Nats-Msg-Id`.
    pub id: String,
    /// What happened.
    pub event: EventKind,
    /// The call.
    pub call_id: String,
    /// The node that carried the call when it happened.
    pub node_id: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
    /// The event's details: the call's summary for call events, the audit
    /// line for participant and consent events, the segment for transcripts.
    pub data: serde_json::Value,
}

/// Publishes fleet events (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Event>,
    node_id: Arc<str>,
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
    pending: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Makes the stream if it does not exist and starts the publishing task.
    pub(super) async fn start(
        jetstream: jetstream::Context,
        nats_url: &str,
        node_id: &str,
        metrics: &Metrics,
    ) -> Result<Self, ClusterError> {
        let config = jetstream::stream::Config {
            name: STREAM.to_owned(),
            description: Some("Hearken call events (schema hearken.event.v1)".to_owned()),
            subjects: vec!["hearken.calls.>".to_owned()],
            max_age: RETENTION,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let fail = |message: String| ClusterError::Stream {
            url: nats_url.to_owned(),
            stream: STREAM,
            message,
        };
        super::make_stream(&jetstream, config, Duration::from_secs(5))
            .await
            .map_err(fail)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(publish_loop(
            jetstream,
            rx,
            pending.clone(),
            metrics.clone(),
        ));
        let started = Utc::now().timestamp_millis();
        Ok(Self {
            queue,
            node_id: node_id.into(),
            prefix: format!("{node_id}-{started}").into(),
            next: Arc::new(AtomicU64::new(0)),
            pending,
            metrics: metrics.clone(),
        })
    }

    /// Queues an event; never waits (callable from any thread). A full
    /// queue drops it, counted.
    pub fn emit(&self, kind: EventKind, call_id: &str, at: DateTime<Utc>, data: serde_json::Value) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let event = Event {
            schema: SCHEMA,
            id: format!("{}-{n}", self.prefix),
            event: kind,
            call_id: call_id.to_owned(),
            node_id: self.node_id.to_string(),
            at,
            data,
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.queue.try_send(event).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.metrics
                .cluster_events
                .with_label_values(&["dropped"])
                .inc();
        }
    }

    /// Waits until every queued event is published, at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The subject of an event.
pub fn subject(call_id: &str, kind: EventKind) -> String {
    // Call ids are `[A-Za-z0-9._-]`: a `.` would split the call id token,
    // so it is written as `_2e` in the subject (the id itself is in the
    // body unchanged).
    let token = call_id.replace('.', "_2e");
    format!("hearken.calls.{token}.{}", kind.as_str())
}

async fn publish_loop(
    jetstream: jetstream::Context,
    mut rx: mpsc::Receiver<Event>,
    pending: Arc<AtomicUsize>,
    metrics: Metrics,
) {
    while let Some(event) = rx.recv().await {
        let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        let subject = subject(&event.call_id, event.event);
        let mut backoff = Duration::from_millis(100);
        // At least once: the same event (same Nats-Msg-Id) until acknowledged.
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_str());
            let started = Instant::now();
            let sent = tokio::time::timeout(Duration::from_secs(2), async {
                jetstream
                    .publish_with_headers(subject.clone(), headers, payload.clone())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            metrics
                .cluster_request_seconds
                .with_label_values(&["nats", "event"])
                .observe(started.elapsed().as_secs_f64());
            match sent {
                Ok(Ok(_)) => {
                    metrics
                        .cluster_events
                        .with_label_values(&["published"])
                        .inc();
                    break;
                }
                Ok(Err(e)) => {
                    metrics.cluster_errors.with_label_values(&["nats"]).inc();
                    warn!(event = %event.id, error = %e, "publishing an event failed; retrying");
                }
                Err(_) => {
                    metrics.cluster_errors.with_label_values(&["nats"]).inc();
                    warn!(event = %event.id, "publishing an event timed out; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dot_in_a_call_id_does_not_split_the_subject() {
        assert_eq!(
            subject("sales.q4", EventKind::CallEnded),
            "hearken.calls.sales_2eq4.call_ended"
        );
        assert_eq!(
            subject("abc", EventKind::ParticipantJoined),
            "hearken.calls.abc.participant_joined"
        );
    }
}
