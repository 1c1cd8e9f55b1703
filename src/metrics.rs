//! Every Prometheus metric Hearken exports. The only module that touches the
//! `prometheus` crate.
//!
//! Names follow `hearken_<subsystem>_<name>_<unit>`, counters end in
//! `_total`, and labels take values from fixed sets only (never a call id):
//! each label type implements [`Label`], which lists its values once.
//!
//! The media thread uses [`MediaMetrics`]: every labelled child is resolved
//! once, when the worker starts, so counting on the packet path is one
//! atomic add, never a hash lookup behind a lock.

use std::sync::{Arc, OnceLock};

use hearken_core::conference::HoldBudget;
use hearken_core::conference::{EndReason, FailureCause, Ingest, SessionEndReason};
use hearken_core::consent::engine::{
    AuditKind, ConsentMethod, ConsentState, GateReason, PromptKind,
};
use hearken_core::consent::events::HoldDiscard;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// A type whose values are the label values of a metric: a fixed set.
pub trait Label: Copy + 'static {
    /// Every value, in index order.
    const ALL: &'static [Self];
    /// The label text.
    fn as_label(self) -> &'static str;
    /// Position in [`Self::ALL`].
    fn index(self) -> usize;
}

/// The children of a labelled metric, one per value of `L`, resolved once.
#[derive(Debug, Clone)]
pub struct Labelled<L: Label, M> {
    children: Vec<M>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label, M> Labelled<L, M> {
    fn resolve(with_label: impl Fn(&str) -> M) -> Self {
        Self {
            children: L::ALL.iter().map(|l| with_label(l.as_label())).collect(),
            _label: std::marker::PhantomData,
        }
    }

    /// The child for `label`.
    pub fn get(&self, label: L) -> &M {
        // INVARIANT: `children` holds one entry per value of `L::ALL`, and
        // `index` is a position in it.
        &self.children[label.index()]
    }

    /// Every child, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &M> {
        self.children.iter()
    }
}

macro_rules! label_enum {
    ($ty:ty { $($variant:pat => $text:literal),+ $(,)? } all: [$($all:expr),+ $(,)?]) => {
        impl Label for $ty {
            const ALL: &'static [Self] = &[$($all),+];
            fn as_label(self) -> &'static str {
                match self { $($variant => $text),+ }
            }
            fn index(self) -> usize {
                // A handful of values: a scan by discriminant (which ignores
                // any data a variant carries).
                let wanted = std::mem::discriminant(&self);
                Self::ALL
                    .iter()
                    .position(|v| std::mem::discriminant(v) == wanted)
                    .unwrap_or(0)
            }
        }
    };
}

/// A label from a core enum that lists its values (`ALL`) and names them
/// (`as_str`): the core stays the one place that knows the set.
macro_rules! core_label_enum {
    ($($ty:ty),+) => {$(
        impl Label for $ty {
            const ALL: &'static [Self] = &<$ty>::ALL;
            fn as_label(self) -> &'static str {
                self.as_str()
            }
            fn index(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
            }
        }
    )+};
}

core_label_enum!(GateReason, PromptKind, AuditKind, HoldDiscard);

/// What came of a spoken answer to the consent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerbalResult {
    /// Recognised as yes: consent given.
    Yes,
    /// Recognised as no: declined.
    No,
    /// Speech, but neither answer with confidence.
    Unclear,
    /// The recogniser was busy; the utterance was not heard.
    Dropped,
}

label_enum!(VerbalResult {
    VerbalResult::Yes => "yes",
    VerbalResult::No => "no",
    VerbalResult::Unclear => "unclear",
    VerbalResult::Dropped => "dropped",
} all: [VerbalResult::Yes, VerbalResult::No, VerbalResult::Unclear, VerbalResult::Dropped]);

label_enum!(Ingest {
    Ingest::Whip => "whip",
    Ingest::Native => "native",
    Ingest::Sip => "sip",
} all: [Ingest::Whip, Ingest::Native, Ingest::Sip]);

/// Why an ingest turned a packet, a stream or a connection away. A fixed
/// set: used as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestError {
    /// Not an RTP packet (bad version, truncated header, bad padding).
    MalformedRtp,
    /// RTP with a payload type the flow or dialog did not negotiate.
    UnexpectedPayloadType,
    /// A telephone-codec packet that could not be made into Opus.
    Transcode,
    /// The media worker's ingest queue was full.
    WorkerQueueFull,
    /// A flow id no call has bound to the connection.
    UnknownFlow,
    /// A connection token that names no native call.
    BadToken,
    /// RoQ framing broken (varints, lengths, a truncated stream).
    BadFraming,
    /// A bidirectional stream (RoQ uses unidirectional streams only).
    StreamCreation,
    /// The connection could not be established (TLS, ALPN, timeout).
    Handshake,
    /// RTP from an address or for a dialog Hearken does not know.
    Unrouted,
    /// A SIP message that cannot be parsed or lacks what it must carry (a
    /// mandatory header, readable SDP or INFO body).
    MalformedMessage,
    /// A SIP INVITE with wrong credentials, or from a source that is not
    /// allowed when no credentials are configured.
    AuthFailed,
    /// A SIP INVITE that names no valid call or participant.
    BadTarget,
    /// A SIP offer (or late answer) with no codec Hearken speaks over plain
    /// RTP (488).
    NoCommonCodec,
    /// A SIP request for a dialog Hearken does not have (481).
    UnknownDialog,
    /// A SIP method Hearken does not implement (405).
    UnsupportedMethod,
    /// A SIP body of a type Hearken does not take (415).
    UnsupportedMediaType,
    /// The media worker could not be asked (gone, busy, silent).
    WorkerUnavailable,
    /// An SRTP packet already received, or older than the replay window.
    SrtpReplay,
    /// An SRTP packet whose authentication tag did not verify.
    SrtpAuth,
}

label_enum!(IngestError {
    IngestError::MalformedRtp => "malformed_rtp",
    IngestError::UnexpectedPayloadType => "unexpected_payload_type",
    IngestError::Transcode => "transcode",
    IngestError::WorkerQueueFull => "worker_queue_full",
    IngestError::UnknownFlow => "unknown_flow",
    IngestError::BadToken => "bad_token",
    IngestError::BadFraming => "bad_framing",
    IngestError::StreamCreation => "stream_creation",
    IngestError::Handshake => "handshake",
    IngestError::Unrouted => "unrouted",
    IngestError::MalformedMessage => "malformed_message",
    IngestError::AuthFailed => "auth_failed",
    IngestError::BadTarget => "bad_target",
    IngestError::NoCommonCodec => "no_common_codec",
    IngestError::UnknownDialog => "unknown_dialog",
    IngestError::UnsupportedMethod => "unsupported_method",
    IngestError::UnsupportedMediaType => "unsupported_media_type",
    IngestError::WorkerUnavailable => "worker_unavailable",
    IngestError::SrtpReplay => "srtp_replay",
    IngestError::SrtpAuth => "srtp_auth",
} all: [
    IngestError::MalformedRtp,
    IngestError::UnexpectedPayloadType,
    IngestError::Transcode,
    IngestError::WorkerQueueFull,
    IngestError::UnknownFlow,
    IngestError::BadToken,
    IngestError::BadFraming,
    IngestError::StreamCreation,
    IngestError::Handshake,
    IngestError::Unrouted,
    IngestError::MalformedMessage,
    IngestError::AuthFailed,
    IngestError::BadTarget,
    IngestError::NoCommonCodec,
    IngestError::UnknownDialog,
    IngestError::UnsupportedMethod,
    IngestError::UnsupportedMediaType,
    IngestError::WorkerUnavailable,
    IngestError::SrtpReplay,
    IngestError::SrtpAuth,
]);

/// Whether a consent gate is open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// Frames pass.
    Open,
    /// Frames are withheld.
    Closed,
}

impl From<bool> for GateState {
    fn from(open: bool) -> Self {
        if open { Self::Open } else { Self::Closed }
    }
}

label_enum!(GateState { GateState::Open => "open", GateState::Closed => "closed" }
    all: [GateState::Open, GateState::Closed]);

label_enum!(DropReason {
    DropReason::RecorderQueueFull => "recorder_queue_full",
    DropReason::Late => "late",
    DropReason::Malformed => "malformed",
    DropReason::NotOpus => "not_opus",
    DropReason::Discarded => "discarded",
    DropReason::TranscriberQueueFull => "transcriber_queue_full",
    DropReason::AuditLogFailed => "audit_log_failed",
    DropReason::RecordingFailed => "recording_failed",
} all: [
    DropReason::TranscriberQueueFull,
    DropReason::RecorderQueueFull,
    DropReason::Late,
    DropReason::Malformed,
    DropReason::NotOpus,
    DropReason::Discarded,
    DropReason::AuditLogFailed,
    DropReason::RecordingFailed,
]);

label_enum!(SessionEndReason {
    SessionEndReason::Deleted => "deleted",
    SessionEndReason::Disconnected => "disconnected",
    SessionEndReason::ConnectTimeout => "connect_timeout",
    SessionEndReason::CallEnded => "call_ended",
    SessionEndReason::Failed => "failed",
} all: [
    SessionEndReason::Deleted,
    SessionEndReason::Disconnected,
    SessionEndReason::ConnectTimeout,
    SessionEndReason::CallEnded,
    SessionEndReason::Failed,
]);

label_enum!(EndReason {
    EndReason::LastSessionLeft => "last_session_left",
    EndReason::Api => "api",
    EndReason::Shutdown => "shutdown",
    EndReason::Internal => "internal",
    EndReason::CrashRecovered => "crash_recovered",
} all: [
    EndReason::LastSessionLeft,
    EndReason::Api,
    EndReason::Shutdown,
    EndReason::Internal,
    EndReason::CrashRecovered,
]);

label_enum!(FailureCause {
    FailureCause::IceTimeout => "ice_timeout",
    FailureCause::DtlsTimeout => "dtls_timeout",
    FailureCause::Dtls => "dtls",
    FailureCause::Srtp => "srtp",
    FailureCause::Rtc => "rtc",
    FailureCause::Internal => "internal",
} all: [
    FailureCause::IceTimeout,
    FailureCause::DtlsTimeout,
    FailureCause::Dtls,
    FailureCause::Srtp,
    FailureCause::Rtc,
    FailureCause::Internal,
]);

label_enum!(ConsentState {
    ConsentState::Joined => "joined",
    ConsentState::Notified => "notified",
    ConsentState::Consented(_) => "consented",
    ConsentState::Declined => "declined",
    ConsentState::Left => "left",
} all: [
    ConsentState::Joined,
    ConsentState::Notified,
    ConsentState::Consented(ConsentMethod::Implicit),
    ConsentState::Declined,
    ConsentState::Left,
]);

/// Reasons a frame does not reach a sink. A fixed set: used as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The recorder's queue was full.
    RecorderQueueFull,
    /// The frame came after audio already written at its place.
    Late,
    /// The Opus packet could not be parsed.
    Malformed,
    /// The payload was not Opus (e.g. a codec we do not record).
    NotOpus,
    /// The call's recordings were discarded after a decline.
    Discarded,
    /// The transcription sink was too far behind.
    TranscriberQueueFull,
    /// The call's consent audit log could not be written: its capture
    /// stopped (fail closed).
    AuditLogFailed,
    /// A recording of the call could not be written (a full disk): its
    /// capture stopped (fail closed).
    RecordingFailed,
}

/// The metrics of one server.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// The node's consent hold, read when metrics are rendered.
    hold_budget: Arc<OnceLock<Arc<HoldBudget>>>,
    /// Seconds of audio held for consent on this node now.
    pub consent_hold_seconds: prometheus::Gauge,
    /// Bytes of audio held for consent on this node now.
    pub consent_hold_bytes: IntGauge,
    /// The node's limit on held audio (`consent.hold_node_limit_mb`).
    pub consent_hold_limit_bytes: IntGauge,
    /// Seconds of held audio committed to the sinks once consent covered it.
    pub consent_hold_committed_seconds: prometheus::Counter,
    /// Seconds of held audio discarded unheard, by reason.
    pub consent_hold_discarded_seconds: prometheus::CounterVec,
    /// Verbal consent answers, by result (`yes`, `no`, `unclear`,
    /// `dropped`).
    pub consent_verbal: IntCounterVec,
    /// Calls in progress.
    pub calls_active: IntGauge,
    /// Calls ended, by reason.
    pub calls_ended: IntCounterVec,
    /// WHIP sessions attached (connecting or connected).
    pub sessions_active: IntGauge,
    /// Sessions ended, by reason.
    pub sessions_ended: IntCounterVec,
    /// Participants currently sending audio.
    pub speakers_active: IntGauge,
    /// RTP audio packets received.
    pub rtp_packets_received: IntCounter,
    /// RTP audio payload bytes received.
    pub rtp_bytes_received: IntCounter,
    /// RTP audio packets lost (sequence gaps).
    pub rtp_packets_lost: IntCounter,
    /// Frames that did not reach a sink, by reason.
    pub frames_dropped: IntCounterVec,
    /// Speaker timelines re-anchored (RTP clock jumped against arrival time).
    pub timeline_reanchors: IntCounter,
    /// DTMF (RFC 4733) packets received.
    pub dtmf_packets_received: IntCounter,
    /// UDP datagrams no session accepted.
    pub udp_unrouted_datagrams: IntCounter,
    /// UDP datagrams that could not be sent.
    pub udp_send_errors: IntCounter,
    /// WHIP and API requests answered, by method and status code.
    pub http_requests: IntCounterVec,
    /// Bytes written to recordings.
    pub recorder_written_bytes: IntCounter,
    /// Frames placed in recordings.
    pub recorder_frames_written: IntCounter,
    /// Recording write failures.
    pub recorder_write_errors: IntCounter,
    /// 1 while the data directory is full (capture stopped everywhere, new
    /// calls refused), else 0.
    pub store_disk_full: IntGauge,
    /// Consent audit lines that could not be written and synced (each stops
    /// its call's capture).
    pub consent_audit_write_errors: IntCounter,
    /// Time from WHIP offer received to answer ready.
    pub whip_answer_seconds: Histogram,
    /// New sessions (WHIP offers, native ingests) turned away with 503, by
    /// reason (`node_full`, `shutting_down`).
    pub admission_rejected: IntCounterVec,
    /// Session capacity of this node (`limits.max_sessions`).
    pub sessions_capacity: IntGauge,
    /// Media workers running.
    pub media_workers: IntGauge,
    /// Build information (value 1).
    pub build_info: IntGaugeVec,
    /// Consent prompts played, by prompt.
    pub prompts_played: IntCounterVec,
    /// Frames withheld by the consent gate, by reason.
    pub frames_withheld: IntCounterVec,
    /// Consent audit events, by event.
    pub consent_events: IntCounterVec,
    /// Consent state changes, by the state entered.
    pub consent_transitions: IntCounterVec,
    /// Consent gate changes, by direction (`open`, `closed`).
    pub consent_gate_changes: IntCounterVec,
    /// Participants of calls in progress, by consent state.
    pub consent_participants: IntGaugeVec,
    /// Seconds of participant audio time spent with the gate open or closed.
    pub consent_gate_seconds: prometheus::CounterVec,
    /// Transcription backend connections opened.
    pub transcription_connections: IntCounter,
    /// Transcription reconnects, by reason.
    pub transcription_reconnects: IntCounterVec,
    /// Seconds of consented audio waiting for the transcription backend.
    pub transcription_buffered_seconds: prometheus::Gauge,
    /// Seconds of consented audio dropped because a buffer overflowed.
    pub transcription_lost_seconds: prometheus::Counter,
    /// Seconds of consented silence not transcribed (at speaker end).
    pub transcription_skipped_silence_seconds: prometheus::Counter,
    /// Seconds of consented audio captured for transcription (at call end).
    pub transcription_captured_seconds: prometheus::Counter,
    /// Seconds of it acknowledged by final results (at call end).
    pub transcription_acknowledged_seconds: prometheus::Counter,
    /// Words in final results.
    pub transcription_words: IntCounter,
    /// Time from a word's audio reaching the sink to its final result.
    pub transcription_final_latency_seconds: Histogram,
    /// Join requests to the provider webhook, by outcome.
    pub join_requests: IntCounterVec,
    /// Time from a datagram's read off the socket (its batch's read) to its
    /// frame handed to the sinks.
    pub datagram_to_sink_seconds: Histogram,
    /// Seconds each media worker spent working (not waiting), by worker.
    pub worker_busy_seconds: prometheus::CounterVec,
    /// Sessions that failed, by cause.
    pub sessions_failed: IntCounterVec,
    /// Calls ended because handling them panicked (a bug).
    pub call_panics: IntCounter,
    /// Media workers whose thread stopped unexpectedly (taken out of
    /// placement).
    pub workers_failed: IntGauge,
    /// Sink control messages dropped because a queue was full.
    pub sink_messages_dropped: IntCounter,
    /// Sessions in progress per ingest (WHIP sessions, native calls, SIP
    /// dialogs).
    pub ingest_sessions: IntGaugeVec,
    /// Transport connections open per ingest (QUIC connections, SIP TCP).
    pub ingest_connections: IntGaugeVec,
    /// RTP packets received per ingest.
    pub ingest_packets: IntCounterVec,
    /// Bytes received per ingest (RTP packets whole).
    pub ingest_bytes: IntCounterVec,
    /// Packets, streams and connections turned away, by ingest and reason.
    pub ingest_errors: IntCounterVec,
    /// Time from a session's request (offer, POST, INVITE) to its answer.
    pub ingest_setup_seconds: prometheus::HistogramVec,
    /// Live nodes of the fleet as this node sees them (1 alone).
    pub cluster_nodes: IntGauge,
    /// Calls this node placed, by where (`local`, `remote`).
    pub cluster_placements: IntCounterVec,
    /// Sessions answered with a redirect to the call's owner, by ingest.
    pub cluster_redirects: IntCounterVec,
    /// Drains started (API or signal).
    pub cluster_drains: IntCounter,
    /// Placements that lost a compare-and-set to another node, and calls
    /// whose placement entry another node took over.
    pub cluster_placement_conflicts: IntCounter,
    /// Requests to a fleet service that failed, by service (`nats`,
    /// `postgres`).
    pub cluster_errors: IntCounterVec,
    /// Time of requests to a fleet service, by service and operation.
    pub cluster_request_seconds: prometheus::HistogramVec,
    /// Time the cluster adds to a new call's first session (the placement
    /// lookup and compare-and-set).
    pub cluster_placement_seconds: Histogram,
    /// Whether this node is draining (1) or taking new calls (0).
    pub cluster_draining: IntGauge,
    /// Fleet events, by outcome (`published`, `dropped`).
    pub cluster_events: IntCounterVec,
    /// Post-call work finished, by job (`mix`, `insights`) and outcome
    /// (`done`, `failed`).
    pub postcall_jobs: IntCounterVec,
    /// Time one post-call job took, by job.
    pub postcall_job_seconds: prometheus::HistogramVec,
    /// Ended calls waiting for their post-call work.
    pub postcall_queued: IntGauge,
    /// Calls whose post-call work runs now.
    pub postcall_running: IntGauge,
    /// Ended calls not queued because the queue was full (left `pending`,
    /// picked up at the next start).
    pub postcall_dropped: IntCounter,
    /// Requests made with a share link, by outcome (`allowed`, `expired`,
    /// `revoked`, `invalid`, `outside_range`).
    pub share_requests: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                // INVARIANT: each name is registered once, in this function.
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric registered once");
                m
            }};
        }
        fn counter(name: &str, help: &str) -> IntCounter {
            // INVARIANT: names and help texts are static and valid.
            IntCounter::new(name, help).expect("valid counter")
        }
        fn gauge(name: &str, help: &str) -> IntGauge {
            // INVARIANT: a static, valid metric definition.
            IntGauge::new(name, help).expect("valid gauge")
        }
        fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            // INVARIANT: a static, valid metric definition.
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter vec")
        }

        let metrics = Self {
            hold_budget: Arc::new(OnceLock::new()),
            consent_hold_seconds: reg!(
                prometheus::Gauge::new(
                    "hearken_consent_hold_seconds",
                    "Seconds of audio held in memory on this node while consent is pending."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge")
            ),
            consent_hold_bytes: reg!(gauge(
                "hearken_consent_hold_bytes",
                "Bytes of audio held in memory on this node while consent is pending."
            )),
            consent_hold_limit_bytes: reg!(gauge(
                "hearken_consent_hold_limit_bytes",
                "The most bytes of audio this node holds for consent (consent.hold_node_limit_mb)."
            )),
            consent_hold_committed_seconds: reg!(
                prometheus::Counter::new(
                    "hearken_consent_hold_committed_seconds_total",
                    "Seconds of held audio committed to the sinks once consent covered it."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter")
            ),
            consent_hold_discarded_seconds: reg!(
                prometheus::CounterVec::new(
                    Opts::new(
                        "hearken_consent_hold_discarded_seconds_total",
                        "Seconds of held audio discarded unheard, by reason."
                    ),
                    &["reason"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter vec")
            ),
            consent_verbal: reg!(counter_vec(
                "hearken_consent_verbal_total",
                "Spoken answers to the consent request, by result.",
                &["result"]
            )),
            calls_active: reg!(gauge("hearken_calls_active", "Calls in progress.")),
            calls_ended: reg!(counter_vec(
                "hearken_calls_ended_total",
                "Calls ended, by reason.",
                &["reason"]
            )),
            sessions_active: reg!(gauge(
                "hearken_sessions_active",
                "WHIP sessions attached (connecting or connected)."
            )),
            sessions_ended: reg!(counter_vec(
                "hearken_sessions_ended_total",
                "WHIP sessions ended, by reason.",
                &["reason"]
            )),
            speakers_active: reg!(gauge(
                "hearken_speakers_active",
                "Participants currently attached with a received audio stream."
            )),
            rtp_packets_received: reg!(counter(
                "hearken_rtp_packets_received_total",
                "RTP audio packets received."
            )),
            rtp_bytes_received: reg!(counter(
                "hearken_rtp_bytes_received_total",
                "RTP audio payload bytes received."
            )),
            rtp_packets_lost: reg!(counter(
                "hearken_rtp_packets_lost_total",
                "RTP audio packets lost (gaps in sequence numbers)."
            )),
            frames_dropped: reg!(counter_vec(
                "hearken_frames_dropped_total",
                "Audio frames that did not reach a sink, by reason.",
                &["reason"]
            )),
            timeline_reanchors: reg!(counter(
                "hearken_timeline_reanchors_total",
                "Speaker timelines re-anchored because the RTP clock jumped."
            )),
            dtmf_packets_received: reg!(counter(
                "hearken_dtmf_received_packets_total",
                "RFC 4733 telephone-event packets received."
            )),
            udp_unrouted_datagrams: reg!(counter(
                "hearken_udp_unrouted_datagrams_total",
                "UDP datagrams that no session accepted."
            )),
            udp_send_errors: reg!(counter(
                "hearken_udp_send_errors_total",
                "UDP datagrams that could not be sent."
            )),
            http_requests: reg!(counter_vec(
                "hearken_http_requests_total",
                "HTTP requests answered, by route, method and status code.",
                &["route", "method", "status"]
            )),
            recorder_written_bytes: reg!(counter(
                "hearken_recorder_written_bytes_total",
                "Bytes written to recordings."
            )),
            admission_rejected: reg!(counter_vec(
                "hearken_admission_rejected_total",
                "New sessions (WHIP offers, native ingests, SIP INVITEs) refused because the node was full, shutting down, or out of disk space.",
                &["reason"]
            )),
            recorder_frames_written: reg!(counter(
                "hearken_recorder_frames_written_total",
                "Frames placed in recordings (each one Opus packet as received)."
            )),
            recorder_write_errors: reg!(counter(
                "hearken_recorder_write_errors_total",
                "Failed writes to recordings or call metadata."
            )),
            store_disk_full: reg!(gauge(
                "hearken_store_disk_full",
                "1 while the data directory is full: capture stops on every call and new calls are refused until space is freed."
            )),
            consent_audit_write_errors: reg!(counter(
                "hearken_consent_audit_write_errors_total",
                "Consent audit lines that could not be written and synced; each stops its call's capture."
            )),
            whip_answer_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hearken_whip_answer_seconds",
                        "Time from a WHIP offer received to its answer ready."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0
                    ])
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram")
            ),
            sessions_capacity: reg!(gauge(
                "hearken_sessions_capacity",
                "Sessions this node accepts at once (limits.max_sessions)."
            )),
            media_workers: reg!(gauge("hearken_media_workers", "Media worker threads.")),
            build_info: reg!(
                IntGaugeVec::new(
                    Opts::new("hearken_build_info", "Build information (value 1)."),
                    &["version"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge vec")
            ),
            prompts_played: reg!(counter_vec(
                "hearken_consent_prompts_played_total",
                "Consent prompts played, by prompt.",
                &["prompt"]
            )),
            frames_withheld: reg!(counter_vec(
                "hearken_consent_frames_withheld_total",
                "Audio frames the consent gate withheld, by reason.",
                &["reason"]
            )),
            consent_events: reg!(counter_vec(
                "hearken_consent_events_total",
                "Consent audit events written, by event.",
                &["event"]
            )),
            consent_transitions: reg!(counter_vec(
                "hearken_consent_transitions_total",
                "Participant consent state changes, by the state entered.",
                &["state"]
            )),
            consent_gate_changes: reg!(counter_vec(
                "hearken_consent_gate_changes_total",
                "Consent gate changes, by direction.",
                &["direction"]
            )),
            consent_participants: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "hearken_consent_participants",
                        "Participants of calls in progress, by consent state."
                    ),
                    &["state"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge vec")
            ),
            consent_gate_seconds: reg!(
                prometheus::CounterVec::new(
                    Opts::new(
                        "hearken_consent_gate_seconds_total",
                        "Participant call time spent with the consent gate open or closed."
                    ),
                    &["state"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter vec")
            ),
            transcription_connections: reg!(counter(
                "hearken_transcription_connections_total",
                "Transcription backend connections opened."
            )),
            transcription_reconnects: reg!(counter_vec(
                "hearken_transcription_reconnects_total",
                "Transcription connections lost or refused, by reason.",
                &["reason"]
            )),
            transcription_buffered_seconds: reg!(
                prometheus::Gauge::new(
                    "hearken_transcription_buffered_seconds",
                    "Consented audio waiting for the transcription backend."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge")
            ),
            transcription_lost_seconds: reg!(
                prometheus::Counter::new(
                    "hearken_transcription_lost_seconds_total",
                    "Consented audio dropped because a speaker's buffer overflowed."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter")
            ),
            transcription_skipped_silence_seconds: reg!(
                prometheus::Counter::new(
                    "hearken_transcription_skipped_silence_seconds_total",
                    "Consented silence neither decoded nor sent to the backend (the speaker was not talking)."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter")
            ),
            transcription_captured_seconds: reg!(
                prometheus::Counter::new(
                    "hearken_transcription_captured_seconds_total",
                    "Consented audio captured for transcription (counted at call end)."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter")
            ),
            transcription_acknowledged_seconds: reg!(
                prometheus::Counter::new(
                    "hearken_transcription_acknowledged_seconds_total",
                    "Consented audio covered by final results (counted at call end)."
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter")
            ),
            transcription_final_latency_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hearken_transcription_final_latency_seconds",
                        "Time from a word's audio reaching the transcription sink to its final result."
                    )
                    .buckets(vec![0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0])
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram")
            ),
            ingest_sessions: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "hearken_ingest_sessions",
                        "Sessions in progress, by ingest (whip, native, sip)."
                    ),
                    &["ingest"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge vec")
            ),
            ingest_connections: reg!(
                IntGaugeVec::new(
                    Opts::new(
                        "hearken_ingest_connections",
                        "Transport connections open, by ingest (QUIC for native)."
                    ),
                    &["ingest"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid gauge vec")
            ),
            ingest_packets: reg!(counter_vec(
                "hearken_ingest_packets_total",
                "RTP packets received, by ingest.",
                &["ingest"]
            )),
            ingest_bytes: reg!(counter_vec(
                "hearken_ingest_bytes_total",
                "Bytes of RTP received, by ingest.",
                &["ingest"]
            )),
            ingest_errors: reg!(counter_vec(
                "hearken_ingest_errors_total",
                "Packets, streams and connections an ingest turned away, by ingest and reason.",
                &["ingest", "reason"]
            )),
            ingest_setup_seconds: reg!(
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "hearken_ingest_setup_seconds",
                        "Time from a session's request (WHIP offer, native POST, SIP INVITE) to its answer, by ingest."
                    )
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0]),
                    &["ingest"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram vec")
            ),
            datagram_to_sink_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hearken_media_datagram_to_sink_seconds",
                        "Time from a datagram's read off the socket (in a batch, after up to 0.5 ms of gathering in the kernel) to its frame handed to the sink queues."
                    )
                    .buckets(vec![
                        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25,
                        1.0
                    ])
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram")
            ),
            worker_busy_seconds: reg!(
                prometheus::CounterVec::new(
                    Opts::new(
                        "hearken_media_worker_busy_seconds_total",
                        "Seconds a media worker spent working rather than waiting; its rate is the busy fraction."
                    ),
                    &["worker"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid counter vec")
            ),
            join_requests: reg!(counter_vec(
                "hearken_policy_join_requests_total",
                "Join requests sent to the provider webhook, by outcome (delivered, retried, failed).",
                &["outcome"]
            )),
            transcription_words: reg!(counter(
                "hearken_transcription_words_total",
                "Words in final transcription results."
            )),
            sessions_failed: reg!(counter_vec(
                "hearken_sessions_failed_total",
                "WHIP sessions that failed, by cause (ice_timeout, dtls_timeout, dtls, srtp, rtc, internal).",
                &["cause"]
            )),
            call_panics: reg!(counter(
                "hearken_media_call_panics_total",
                "Calls ended because handling them panicked (a bug; the rest of the worker went on)."
            )),
            workers_failed: reg!(gauge(
                "hearken_media_workers_failed",
                "Media worker threads that stopped unexpectedly and take no new calls."
            )),
            sink_messages_dropped: reg!(counter(
                "hearken_sink_control_dropped_total",
                "Control messages (call start and end, audit lines, session events) dropped because a bounded queue was full."
            )),
            cluster_nodes: reg!(gauge(
                "hearken_cluster_nodes",
                "Live nodes of the fleet as this node sees them (heartbeats within three intervals)."
            )),
            cluster_placements: reg!(counter_vec(
                "hearken_cluster_placements_total",
                "Calls this node placed, by where they went (local, remote).",
                &["target"]
            )),
            cluster_redirects: reg!(counter_vec(
                "hearken_cluster_redirects_total",
                "Sessions answered with a redirect to the node that owns the call, by ingest.",
                &["ingest"]
            )),
            cluster_drains: reg!(counter(
                "hearken_cluster_drains_total",
                "Drains started on this node (POST /v1/admin/drain or SIGTERM)."
            )),
            cluster_placement_conflicts: reg!(counter(
                "hearken_cluster_placement_conflicts_total",
                "Placements of this node that lost a compare-and-set to another node's."
            )),
            cluster_errors: reg!(counter_vec(
                "hearken_cluster_errors_total",
                "Requests to a fleet service that failed or timed out, by service (nats, postgres).",
                &["service"]
            )),
            cluster_request_seconds: reg!(
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "hearken_cluster_request_seconds",
                        "Time of requests to a fleet service, by service and operation."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0
                    ]),
                    &["service", "op"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram vec")
            ),
            cluster_placement_seconds: reg!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hearken_cluster_placement_seconds",
                        "Time the cluster adds to a call's first session: finding or choosing its owner."
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0
                    ])
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram")
            ),
            cluster_draining: reg!(gauge(
                "hearken_cluster_draining",
                "1 while this node drains (takes no new calls), else 0."
            )),
            cluster_events: reg!(counter_vec(
                "hearken_cluster_events_total",
                "Fleet events, by outcome: published (acknowledged by JetStream) or dropped (the queue was full).",
                &["outcome"]
            )),
            postcall_jobs: reg!(counter_vec(
                "hearken_postcall_jobs_total",
                "Post-call work finished, by job (mix, insights) and outcome (done, failed).",
                &["job", "outcome"]
            )),
            postcall_job_seconds: reg!(
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "hearken_postcall_job_seconds",
                        "Time one post-call job took, by job (mix, insights)."
                    )
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]),
                    &["job"]
                )
                // INVARIANT: a static, valid metric definition.
                .expect("valid histogram vec")
            ),
            postcall_queued: reg!(gauge(
                "hearken_postcall_queued_calls",
                "Ended calls waiting for their mix and insights."
            )),
            postcall_running: reg!(gauge(
                "hearken_postcall_running_calls",
                "Calls whose mix and insights are being made now."
            )),
            postcall_dropped: reg!(counter(
                "hearken_postcall_dropped_total",
                "Ended calls not queued for their mix and insights because the queue was full (left pending until the next start)."
            )),
            share_requests: reg!(counter_vec(
                "hearken_share_requests_total",
                "Requests made with a share link, by outcome (allowed, expired, revoked, invalid, outside_range).",
                &["outcome"]
            )),
            registry,
        };
        // process_cpu_seconds_total, process_resident_memory_bytes, … (Linux).
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            // A second registration is the only failure; this is the first.
            let _ = metrics.registry.register(Box::new(process));
        }
        for reason in ["node_full", "shutting_down"] {
            metrics.admission_rejected.with_label_values(&[reason]);
        }
        for failure in crate::sinks::transcribe::backend::Failure::ALL {
            metrics
                .transcription_reconnects
                .with_label_values(&[failure.as_label()]);
        }
        for reason in HoldDiscard::ALL {
            metrics
                .consent_hold_discarded_seconds
                .with_label_values(&[reason.as_str()]);
        }
        for result in VerbalResult::ALL {
            metrics
                .consent_verbal
                .with_label_values(&[result.as_label()]);
        }
        for ingest in Ingest::ALL {
            let l = [ingest.as_label()];
            metrics.ingest_connections.with_label_values(&l);
            metrics.ingest_setup_seconds.with_label_values(&l);
            metrics.cluster_redirects.with_label_values(&l);
        }
        for target in ["local", "remote"] {
            metrics.cluster_placements.with_label_values(&[target]);
        }
        for outcome in ["published", "dropped"] {
            metrics.cluster_events.with_label_values(&[outcome]);
        }
        for job in ["mix", "insights"] {
            metrics.postcall_job_seconds.with_label_values(&[job]);
            for outcome in ["done", "failed"] {
                metrics.postcall_jobs.with_label_values(&[job, outcome]);
            }
        }
        for outcome in ["allowed", "expired", "revoked", "invalid", "outside_range"] {
            metrics.share_requests.with_label_values(&[outcome]);
        }
        for service in ["nats", "postgres"] {
            metrics.cluster_errors.with_label_values(&[service]);
        }
        // The requests a fleet makes (the `op` label takes only these).
        for (service, op) in [
            ("nats", "heartbeat"),
            ("nats", "placement_read"),
            ("nats", "event"),
            ("postgres", "put_call"),
            ("postgres", "put_audit"),
            ("postgres", "list_calls"),
        ] {
            metrics
                .cluster_request_seconds
                .with_label_values(&[service, op]);
        }
        // Every labelled child of the media path exists (and shows 0) from
        // the start.
        let _ = metrics.media();
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// Counts a dropped frame (off the media thread; the media thread uses
    /// [`MediaMetrics`]).
    pub fn drop_frame(&self, reason: DropReason) {
        self.frames_dropped
            .with_label_values(&[reason.as_label()])
            .inc();
    }

    /// The error counters of one ingest, by reason, resolved once.
    pub fn ingest_errors_of(&self, ingest: Ingest) -> Labelled<IngestError, IntCounter> {
        Labelled::resolve(|l| {
            self.ingest_errors
                .with_label_values(&[ingest.as_label(), l])
        })
    }

    /// The handles the media thread counts with, every label resolved.
    pub fn media(&self) -> MediaMetrics {
        fn counters<L: Label>(vec: &IntCounterVec) -> Labelled<L, IntCounter> {
            Labelled::resolve(|l| vec.with_label_values(&[l]))
        }
        MediaMetrics {
            calls_active: self.calls_active.clone(),
            calls_ended: counters(&self.calls_ended),
            call_panics: self.call_panics.clone(),
            sessions_active: self.sessions_active.clone(),
            sessions_ended: counters(&self.sessions_ended),
            sessions_failed: counters(&self.sessions_failed),
            speakers_active: self.speakers_active.clone(),
            rtp_packets_received: self.rtp_packets_received.clone(),
            rtp_bytes_received: self.rtp_bytes_received.clone(),
            rtp_packets_lost: self.rtp_packets_lost.clone(),
            timeline_reanchors: self.timeline_reanchors.clone(),
            dtmf_packets_received: self.dtmf_packets_received.clone(),
            udp_unrouted_datagrams: self.udp_unrouted_datagrams.clone(),
            udp_send_errors: self.udp_send_errors.clone(),
            frames_dropped: counters(&self.frames_dropped),
            frames_withheld: counters(&self.frames_withheld),
            prompts_played: counters(&self.prompts_played),
            consent_events: counters(&self.consent_events),
            consent_transitions: counters(&self.consent_transitions),
            consent_gate_changes: counters(&self.consent_gate_changes),
            consent_gate_seconds: Labelled::resolve(|l| {
                self.consent_gate_seconds.with_label_values(&[l])
            }),
            consent_participants: Labelled::resolve(|l| {
                self.consent_participants.with_label_values(&[l])
            }),
            consent_hold_committed_seconds: self.consent_hold_committed_seconds.clone(),
            consent_hold_discarded_seconds: Labelled::resolve(|l| {
                self.consent_hold_discarded_seconds.with_label_values(&[l])
            }),
            consent_verbal: counters(&self.consent_verbal),
            sink_messages_dropped: self.sink_messages_dropped.clone(),
            ingest_packets: counters(&self.ingest_packets),
            ingest_bytes: counters(&self.ingest_bytes),
            whip_errors: self.ingest_errors_of(Ingest::Whip),
            native_errors: self.ingest_errors_of(Ingest::Native),
            sip_errors: self.ingest_errors_of(Ingest::Sip),
            ingest_sessions: Labelled::resolve(|l| self.ingest_sessions.with_label_values(&[l])),
            datagram_to_sink_seconds: self.datagram_to_sink_seconds.clone(),
        }
    }

    /// Reports `budget` (the node's consent hold) in the hold gauges.
    pub fn watch_hold_budget(&self, budget: Arc<HoldBudget>) {
        self.consent_hold_limit_bytes
            .set(i64::try_from(budget.limit_bytes()).unwrap_or(i64::MAX));
        let _ = self.hold_budget.set(budget);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(budget) = self.hold_budget.get() {
            self.consent_hold_seconds.set(budget.held_seconds());
            self.consent_hold_bytes
                .set(i64::try_from(budget.held_bytes()).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The metrics a media worker updates, each labelled child resolved once
/// (see [`Metrics::media`]).
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    /// Calls in progress.
    pub calls_active: IntGauge,
    /// Calls ended, by reason.
    pub calls_ended: Labelled<EndReason, IntCounter>,
    /// Calls ended because handling them panicked.
    pub call_panics: IntCounter,
    /// Sessions attached.
    pub sessions_active: IntGauge,
    /// Sessions ended, by reason.
    pub sessions_ended: Labelled<SessionEndReason, IntCounter>,
    /// Sessions failed, by cause.
    pub sessions_failed: Labelled<FailureCause, IntCounter>,
    /// Participants sending audio.
    pub speakers_active: IntGauge,
    /// RTP audio packets received.
    pub rtp_packets_received: IntCounter,
    /// RTP audio payload bytes received.
    pub rtp_bytes_received: IntCounter,
    /// RTP audio packets lost.
    pub rtp_packets_lost: IntCounter,
    /// Speaker timelines re-anchored.
    pub timeline_reanchors: IntCounter,
    /// RFC 4733 packets received.
    pub dtmf_packets_received: IntCounter,
    /// Datagrams no session accepted.
    pub udp_unrouted_datagrams: IntCounter,
    /// Datagrams that could not be sent.
    pub udp_send_errors: IntCounter,
    /// Frames that did not reach a sink, by reason.
    pub frames_dropped: Labelled<DropReason, IntCounter>,
    /// Frames the consent gate withheld, by reason.
    pub frames_withheld: Labelled<GateReason, IntCounter>,
    /// Prompts played, by prompt.
    pub prompts_played: Labelled<PromptKind, IntCounter>,
    /// Consent audit events, by event.
    pub consent_events: Labelled<AuditKind, IntCounter>,
    /// Consent state changes, by the state entered.
    pub consent_transitions: Labelled<ConsentState, IntCounter>,
    /// Gate changes, by direction.
    pub consent_gate_changes: Labelled<GateState, IntCounter>,
    /// Participant call time with the gate open or closed.
    pub consent_gate_seconds: Labelled<GateState, prometheus::Counter>,
    /// Participants of calls in progress, by consent state.
    pub consent_participants: Labelled<ConsentState, IntGauge>,
    /// Held audio committed (s).
    pub consent_hold_committed_seconds: prometheus::Counter,
    /// Held audio discarded (s), by reason.
    pub consent_hold_discarded_seconds: Labelled<HoldDiscard, prometheus::Counter>,
    /// Spoken consent answers, by result.
    pub consent_verbal: Labelled<VerbalResult, IntCounter>,
    /// Sink control messages that found their queue full.
    pub sink_messages_dropped: IntCounter,
    /// Datagram receipt to sink queue.
    pub datagram_to_sink_seconds: Histogram,
    /// RTP packets received, by ingest.
    pub ingest_packets: Labelled<Ingest, IntCounter>,
    /// RTP bytes received, by ingest.
    pub ingest_bytes: Labelled<Ingest, IntCounter>,
    /// WHIP packets the engine's own SRTP receive turned away, by reason.
    pub whip_errors: Labelled<IngestError, IntCounter>,
    /// Native packets turned away, by reason.
    pub native_errors: Labelled<IngestError, IntCounter>,
    /// SIP packets turned away, by reason.
    pub sip_errors: Labelled<IngestError, IntCounter>,
    /// Sessions in progress, by ingest.
    pub ingest_sessions: Labelled<Ingest, IntGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let m = Metrics::new();
        m.http_requests
            .with_label_values(&["whip", "POST", "201"])
            .inc();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(
                name.starts_with("hearken_") || name.starts_with("process_"),
                "{name}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("hearken_frames_dropped_total{reason=\"recorder_queue_full\"} 0"));
    }
}
