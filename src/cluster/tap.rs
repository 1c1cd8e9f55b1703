//! What the store writes, turned into fleet events (see [`super::events`]).
//!
//! The store is the one writer of a call's files, so hearing it is hearing
//! everything: `call.json` says a call started or ended, the audit log says
//! who came, went and consented, `transcript.json` holds the final segments.
//! Runs on the writer's thread and only queues.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use hearken_core::conference::CallSummary;
use hearken_core::ids::CallId;
use serde_json::Value;

use super::events::{EventKind, Publisher};
use crate::store::StoreTap;

/// Audit events that are a change of consent (the rest of the log, such as
/// prompts and resolutions, stays in the log).
const CONSENT_CHANGES: &[&str] = &[
    "signal_received",
    "state_changed",
    "gate_changed",
    "decline_applied",
    "notice_shown",
    "notice_not_heard",
    "discarded",
];

/// Turns store writes into events.
pub struct EventTap {
    events: Publisher,
    /// Calls whose start was published, and how many of their transcript
    /// segments were (forgotten when the call ends).
    calls: Mutex<HashMap<String, CallProgress>>,
}

#[derive(Default)]
struct CallProgress {
    started: bool,
    segments: usize,
}

impl EventTap {
    /// A tap publishing through `events`.
    pub fn new(events: Publisher) -> Self {
        Self {
            events,
            calls: Mutex::new(HashMap::new()),
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallProgress>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StoreTap for EventTap {
    fn call_written(&self, summary: &CallSummary) {
        let data = serde_json::to_value(summary).unwrap_or(Value::Null);
        if let Some(ended_at) = summary.ended_at {
            self.calls().remove(&summary.call_id);
            self.events
                .emit(EventKind::CallEnded, &summary.call_id, ended_at, data);
            return;
        }
        let first = {
            let mut calls = self.calls();
            let progress = calls.entry(summary.call_id.clone()).or_default();
            !std::mem::replace(&mut progress.started, true)
        };
        if first && let Some(started_at) = summary.started_at {
            self.events
                .emit(EventKind::CallStarted, &summary.call_id, started_at, data);
        }
    }

    fn audit_appended(&self, call_id: &CallId, line: &str) {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let Some(event) = value.get("event").and_then(Value::as_str) else {
            return;
        };
        let kind = match event {
            "presence_changed" => match value.get("present").and_then(Value::as_bool) {
                Some(true) => EventKind::ParticipantJoined,
                _ => EventKind::ParticipantLeft,
            },
            e if CONSENT_CHANGES.contains(&e) => EventKind::ConsentChanged,
            _ => return,
        };
        let at = value
            .get("at")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .unwrap_or_else(Utc::now);
        self.events.emit(kind, call_id.as_str(), at, value);
    }

    fn transcript_written(&self, call_id: &CallId, transcript: &Value) {
        let Some(segments) = transcript.get("segments").and_then(Value::as_array) else {
            return;
        };
        let complete = transcript.get("complete").and_then(Value::as_bool) == Some(true);
        let already = {
            let mut calls = self.calls();
            let progress = calls.entry(call_id.as_str().to_owned()).or_default();
            let already = progress.segments.min(segments.len());
            progress.segments = segments.len();
            // The final transcript is the last write of a call.
            if complete {
                calls.remove(call_id.as_str());
            }
            already
        };
        for segment in &segments[already..] {
            self.events.emit(
                EventKind::TranscriptSegment,
                call_id.as_str(),
                Utc::now(),
                segment.clone(),
            );
        }
    }

    fn insights_written(&self, call_id: &CallId, insights: &Value) {
        self.events.emit(
            EventKind::InsightsReady,
            call_id.as_str(),
            Utc::now(),
            insights.clone(),
        );
    }

    // Meetings and files are the index's business, not events.
    fn meeting_written(&self, _call_id: &CallId, _meeting: &Value) {}

    fn file_created(&self, _call_id: &CallId, _file: &str) {}
}
