//! What the fake received, per connection, for tests to check.

use std::time::Duration;

/// Everything the fake has seen since it started.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Accepted (upgraded) connections, in the order they opened.
    pub connections: Vec<ConnectionRecord>,
    /// Upgrade attempts answered with an HTTP error (401, 400, 429, 5xx).
    pub rejected: Vec<RejectedAttempt>,
}

impl Record {
    /// All audio received on all connections, concatenated in connection
    /// order.
    pub fn all_audio(&self) -> Vec<u8> {
        self.connections
            .iter()
            .flat_map(|c| c.audio.iter().copied())
            .collect()
    }
}

/// One accepted websocket connection.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// Position in [`Record::connections`].
    pub index: usize,
    /// The `dg-request-id` sent on the upgrade response.
    pub request_id: uuid::Uuid,
    /// The query string's parameters in order (repeated keys such as
    /// `keyterm` appear once per value).
    pub query: Vec<(String, String)>,
    /// When the upgrade was answered, since the fake started.
    pub opened_at: Duration,
    /// Every PCM byte received, in order (empty when
    /// [`crate::FakeConfig::record_audio`] is off).
    pub audio: Vec<u8>,
    /// Count of PCM bytes received (kept even without `record_audio`).
    pub audio_bytes: u64,
    /// Every message received, in order.
    pub events: Vec<ReceivedEvent>,
    /// How the connection ended; `None` while it is open.
    pub closed: Option<CloseRecord>,
}

impl ConnectionRecord {
    /// The first value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `key` (for repeated keys like
    /// `keyterm`).
    pub fn query_params(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The control messages received, in order.
    pub fn controls(&self) -> Vec<ControlMessage> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ReceivedEvent::Control { message, .. } => Some(message.clone()),
                ReceivedEvent::Audio { .. } => None,
            })
            .collect()
    }
}

/// One message received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceivedEvent {
    /// A non-empty binary frame.
    Audio {
        /// When it arrived, since the fake started.
        at: Duration,
        /// Its length in bytes.
        bytes: usize,
        /// Stream seconds of audio received before it.
        stream_offset: f64,
    },
    /// A text frame (or an empty binary frame, recorded as `CloseStream`).
    Control {
        /// When it arrived, since the fake started.
        at: Duration,
        /// What it said.
        message: ControlMessage,
    },
}

/// A client control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// `{"type":"KeepAlive"}`.
    KeepAlive,
    /// `{"type":"Finalize"}`, with its optional `channel`.
    Finalize {
        /// The `channel` field, if present.
        channel: Option<u64>,
    },
    /// `{"type":"CloseStream"}`, or an empty binary frame.
    CloseStream,
    /// Any other text frame, verbatim.
    Other(String),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRecord {
    /// When, since the fake started.
    pub at: Duration,
    /// Who ended it.
    pub by: Closer,
    /// The close code the fake sent, or the client's; `None` for an abrupt
    /// TCP close or a close frame without a code.
    pub code: Option<u16>,
    /// The close reason (for example `NET-0001`), or a description of an
    /// abrupt close.
    pub reason: String,
}

/// Which side ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client sent a close frame or closed the TCP connection.
    Client,
    /// The fake closed it (CloseStream, NET-0001, a forced drop, shutdown).
    Server,
}

/// An upgrade attempt answered with an HTTP error instead of a websocket.
#[derive(Debug, Clone)]
pub struct RejectedAttempt {
    /// When, since the fake started.
    pub at: Duration,
    /// The HTTP status sent.
    pub status: u16,
    /// The `dg-error` header sent.
    pub dg_error: String,
    /// The query string's parameters.
    pub query: Vec<(String, String)>,
}
