//! Meetings known to this node and the recording decision for each, for the
//! meetings API and WHIP admission. Control plane only.
//!
//! A meeting maps to the call id a provider dials in with: the `call_id`
//! given when it was posted, else its uid made into a safe call id.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::Serialize;

use hearken_core::ids::{CallId, participant_file_stem};
use hearken_policy::{Decision, Meeting, Settings, decide};

use crate::store::Store;

/// A meeting with its decision.
#[derive(Debug, Clone, Serialize)]
pub struct KnownMeeting {
    /// The call id WHIP sessions of this meeting use.
    pub call_id: String,
    /// The meeting.
    pub meeting: Meeting,
    /// `record`, `metadata_only`, `skip` or `blocked`.
    pub decision: &'static str,
    /// `native`, `assistant` or none.
    pub method: Option<String>,
    /// Why, in plain words.
    pub reasons: Vec<String>,
    /// The user who blocked it, if any.
    pub blocked_by: Option<String>,
    /// Join request to the provider (assistant method): `pending`,
    /// `sending`, `delivered` or `failed`; absent when none is due.
    pub join_request: Option<&'static str>,
}

/// A join request that is due.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRequest {
    /// Always `join_request`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The call id to dial in with.
    pub call_id: String,
    /// The meeting's uid.
    pub meeting_uid: String,
    /// Its title.
    pub title: String,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// Conferencing provider.
    pub provider: Option<String>,
    /// The link the bot joins through.
    pub join_url: Option<String>,
    /// Where the provider sends the bot's media (WHIP).
    pub whip_url: String,
}

/// What admission says about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Record it.
    Record,
    /// Refuse it, with the reason.
    Refuse(String),
}

/// The meetings store.
#[derive(Debug)]
pub struct Meetings {
    settings: Option<Settings>,
    /// Where metadata-only meetings are kept (`calls/{call_id}/meeting.json`).
    store: Option<Store>,
    record_unknown: bool,
    by_call: Mutex<BTreeMap<CallId, KnownMeeting>>,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("policy.settings_file {path}: {message}")]
pub struct PolicySetupError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Meetings {
    /// Loads the settings named by the config (if any).
    pub fn from_config(
        config: &crate::config::PolicyConfig,
        store: &Store,
    ) -> Result<Self, PolicySetupError> {
        let settings = match &config.settings_file {
            None => None,
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| PolicySetupError {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
                let format = if path.extension().is_some_and(|e| e == "json") {
                    hearken_policy::SettingsFormat::Json
                } else {
                    hearken_policy::SettingsFormat::Toml
                };
                Some(
                    Settings::parse(&text, format).map_err(|e| PolicySetupError {
                        path: shown,
                        message: e.to_string(),
                    })?,
                )
            }
        };
        Ok(Self {
            settings,
            store: Some(store.clone()),
            record_unknown: config.unknown_calls == crate::config::UnknownCalls::Record,
            by_call: Mutex::new(BTreeMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<CallId, KnownMeeting>> {
        self.by_call.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether company settings are configured.
    pub fn has_settings(&self) -> bool {
        self.settings.is_some()
    }

    /// The call id of a meeting: `call_id` when given, else its uid made
    /// safe (and the occurrence's start for a recurring one).
    pub fn call_id_for(meeting: &Meeting, call_id: Option<&str>) -> Result<CallId, String> {
        if let Some(id) = call_id {
            return CallId::parse(id).map_err(|e| format!("call_id: {e}"));
        }
        let base = match meeting.recurrence_id {
            Some(r) => format!("{}-{}", meeting.uid, r.format("%Y%m%dT%H%M%SZ")),
            None => meeting.uid.clone(),
        };
        CallId::parse(&participant_file_stem(&base)).map_err(|e| format!("uid: {e}"))
    }

    /// Decides a meeting and remembers it under its call id.
    pub fn add(&self, meeting: Meeting, call_id: Option<&str>) -> Result<KnownMeeting, String> {
        let settings = self
            .settings
            .as_ref()
            .ok_or_else(|| "no company settings: set policy.settings_file".to_owned())?;
        let call = Self::call_id_for(&meeting, call_id)?;
        let decision = decide(&meeting, settings);
        let known = KnownMeeting {
            call_id: call.to_string(),
            decision: decision.kind(),
            method: decision.method().map(|m| {
                serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
            reasons: decision.reasons().to_vec(),
            blocked_by: match &decision {
                Decision::Blocked { user, .. } => Some(user.clone()),
                _ => None,
            },
            join_request: match &decision {
                Decision::Record {
                    method: hearken_policy::Method::Assistant,
                    ..
                } => Some("pending"),
                _ => None,
            },
            meeting,
        };
        if known.decision == "metadata_only"
            && let Some(store) = &self.store
        {
            // The call index is the data directory: a metadata-only meeting
            // is kept there as `meeting.json` (no audio, no call.json).
            if let Err(e) = store.write_meeting(&call, &known) {
                tracing::warn!(call = %call, error = %e, "cannot store a metadata-only meeting");
            }
        }
        self.lock().insert(call, known.clone());
        Ok(known)
    }

    /// Meetings starting in `[from, to)`, by start.
    pub fn list(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Vec<KnownMeeting> {
        let mut out: Vec<KnownMeeting> = self
            .lock()
            .values()
            .filter(|m| from.is_none_or(|f| m.meeting.start >= f))
            .filter(|m| to.is_none_or(|t| m.meeting.start < t))
            .cloned()
            .collect();
        out.sort_by_key(|m| m.meeting.start);
        out
    }

    /// Join requests due at `now` (start minus `lead`), marked as being
    /// sent so each goes out once.
    pub fn take_due_joins(
        &self,
        now: DateTime<Utc>,
        lead: chrono::Duration,
        public_url: &str,
    ) -> Vec<JoinRequest> {
        let mut due = Vec::new();
        for m in self.lock().values_mut() {
            if m.join_request == Some("pending") && m.meeting.start - lead <= now {
                m.join_request = Some("sending");
                due.push(JoinRequest {
                    kind: "join_request",
                    call_id: m.call_id.clone(),
                    meeting_uid: m.meeting.uid.clone(),
                    title: m.meeting.title.clone(),
                    start: m.meeting.start,
                    provider: m.meeting.provider().map(|p| {
                        serde_json::to_value(p)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    }),
                    join_url: m.meeting.links.first().map(|l| l.url.clone()),
                    whip_url: format!("{}/whip/{}", public_url.trim_end_matches('/'), m.call_id),
                });
            }
        }
        due
    }

    /// When the next pending join request falls due.
    pub fn next_join_at(&self, lead: chrono::Duration) -> Option<DateTime<Utc>> {
        self.lock()
            .values()
            .filter(|m| m.join_request == Some("pending"))
            .map(|m| m.meeting.start - lead)
            .min()
    }

    /// Records how a join request ended.
    pub fn set_join_outcome(&self, call_id: &str, delivered: bool) {
        if let Ok(id) = CallId::parse(call_id)
            && let Some(m) = self.lock().get_mut(&id)
        {
            m.join_request = Some(if delivered { "delivered" } else { "failed" });
        }
    }

    /// Whether a WHIP call may be recorded.
    pub fn admit(&self, call_id: &CallId) -> Admission {
        match self.lock().get(call_id) {
            Some(m) if m.decision == "record" => Admission::Record,
            Some(m) => Admission::Refuse(format!(
                "meeting {:?} is decided {}: {}",
                m.meeting.title,
                m.decision,
                m.reasons.last().cloned().unwrap_or_default()
            )),
            None if self.record_unknown => Admission::Record,
            None => Admission::Refuse(
                "no known meeting for this call, and policy.unknown_calls is refuse".to_owned(),
            ),
        }
    }
}
