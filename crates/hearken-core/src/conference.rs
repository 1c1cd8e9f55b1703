//! One call: its sessions, its participants (one per received audio m-line),
//! and the mapping of every audio frame onto the call's timeline.
//!
//! Sans-IO: the media worker feeds it session events and frames with their
//! arrival `Instant`; it answers with [`ConferenceOutput`]s drained by
//! [`Conference::poll_output`]. Call time zero is the moment the first session
//! of the call connected.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::announcement::{ANNOUNCEMENT_STEM, AnnouncementSummary, Announcer};
use super::consent::engine::{
    AuditEvent, ConsentEngine, ConsentMethod, ConsentOutput, ConsentState, Decision, Delivery,
    Fate, GateCache, GateReason, HoldDiscard, HoldTicket, Judgement, ParticipantDetails,
    PromptKind, SignalEvidence,
};
use super::dtmf::DtmfKey;
use super::ids::{CallId, participant_file_stem};
use super::speaker::{ReanchorReason, SpeakerTimeline, TimelineConfig};
use super::voice::VoiceHint;

/// Opus and RTP audio clock: every position on a call timeline counts 48 kHz
/// samples.
pub const SAMPLE_RATE: u64 = 48_000;

/// A session of the call, as numbered by the media engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey(pub u64);

/// Index of a participant within its conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantIdx(pub u32);

/// A telephone leg's own audio of a frame: what its Opus was encoded from
/// (G.711 at 8 kHz, G.722 at 16 kHz), so transcription can take it at its
/// own rate rather than decode the Opus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePcm {
    /// Sample rate (Hz).
    pub rate: u32,
    /// Mono samples.
    pub samples: Arc<[i16]>,
}

/// One received Opus frame, as the worker got it from str0m.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// Extended RTP timestamp (48 kHz units).
    pub rtp_time: u64,
    /// Extended sequence number of the first packet of the frame.
    pub seq_first: u64,
    /// Extended sequence number of the last packet of the frame. Below
    /// `seq_first`: a further piece of a packet already counted (a telephone
    /// packet longer than one Opus frame, made into several).
    pub seq_last: u64,
    /// When the frame's packets arrived.
    pub arrival: Instant,
    /// The Opus packet, exactly as sent.
    pub payload: Arc<[u8]>,
    /// What the sender said about speech in it (RTP audio level).
    pub voice: VoiceHint,
    /// The audio the Opus was made from, for a telephone codec.
    pub source: Option<SourcePcm>,
}

/// A frame placed on the call timeline, ready for the sinks.
#[derive(Debug, Clone)]
pub struct SpeakerFrame {
    /// Whose audio this is.
    pub participant: ParticipantIdx,
    /// Their participant id.
    pub participant_id: Arc<str>,
    /// The participant's file stem (safe as a path component).
    pub file_stem: Arc<str>,
    /// Call-time position of the frame's first sample (48 kHz samples).
    pub position: u64,
    /// The Opus packet, exactly as sent.
    pub payload: Arc<[u8]>,
    /// When its last packet arrived (for the datagram-to-sink latency).
    pub arrival: Instant,
    /// What the sender said about speech in it.
    pub voice: VoiceHint,
    /// The audio the Opus was made from, for a telephone codec.
    pub source: Option<SourcePcm>,
}

/// The participant index of the announcement track's frames (no
/// participant's): see [`crate::announcement`].
pub const ANNOUNCEMENT_PARTICIPANT: ParticipantIdx = ParticipantIdx(u32::MAX);

/// One packet of a prompt the shell wrote into an m-line.
#[derive(Debug, Clone)]
pub struct PlayedPacket {
    /// The prompt.
    pub prompt: PromptKind,
    /// When its playback into this m-line started.
    pub started: Instant,
    /// When that playback ends (the end of its last packet).
    pub ends: Instant,
    /// When this packet was due: its place in the playback, not when it
    /// was handed over.
    pub at: Instant,
    /// The Opus packet.
    pub payload: Arc<[u8]>,
    /// Its length, 48 kHz samples.
    pub samples: u32,
}

/// What the conference asks of the shell.
#[derive(Debug, Clone)]
pub enum ConferenceOutput {
    /// The first session connected: call time zero is now.
    Started {
        /// Wall-clock time of call time zero.
        at: DateTime<Utc>,
    },
    /// A participant's frame for the sinks.
    Frame(SpeakerFrame),
    /// Held frames that consent now covers, in call-time order per
    /// participant: one message, so no part of a commit is lost to a full
    /// queue.
    Frames(Vec<SpeakerFrame>),
    /// A packet of a prompt the bot played, for the announcement track
    /// (file stem [`ANNOUNCEMENT_STEM`]): recorded, never gated, never
    /// transcribed.
    Announcement(SpeakerFrame),
    /// Delete everything captured of one participant so far (files and
    /// transcript); their later audio starts a fresh track.
    DiscardParticipant {
        /// Their participant id.
        participant_id: Arc<str>,
        /// Their file stem.
        file_stem: Arc<str>,
    },
    /// A participant declined: drop whatever of theirs waits to be sent.
    PurgeParticipant {
        /// Their participant id.
        participant_id: Arc<str>,
    },
    /// Something the consent engine asks for (persist an audit event, play a
    /// prompt, discard recordings).
    Consent(ConsentOutput),
    /// A participant stopped sending (their session ended); their track is
    /// padded to `position` so it keeps its place on the timeline.
    ParticipantLeft {
        /// Who left.
        participant: ParticipantIdx,
        /// Their participant id.
        participant_id: Arc<str>,
        /// File stem of the participant.
        file_stem: Arc<str>,
        /// Call-time position of the leave (48 kHz samples).
        position: u64,
    },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Its last session was deleted or timed out.
    LastSessionLeft,
    /// `POST /v1/calls/{id}/end`.
    Api,
    /// The server was shut down.
    Shutdown,
    /// Handling the call hit a bug (a panic); the server ended the call and
    /// went on with the others.
    Internal,
    /// The server stopped without ending it (killed, or the machine lost
    /// power); the next start ended it with what was on disk.
    CrashRecovered,
}

impl EndReason {
    /// A fixed label for logs and metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::LastSessionLeft => "last_session_left",
            Self::Api => "api",
            Self::Shutdown => "shutdown",
            Self::Internal => "internal",
            Self::CrashRecovered => "crash_recovered",
        }
    }
}

/// Why a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// No ICE connectivity check completed before the connect timeout: the
    /// client never reached the server's address.
    IceTimeout,
    /// ICE connected but the DTLS handshake did not finish in time.
    DtlsTimeout,
    /// The DTLS handshake failed (certificate, cipher suite, alert).
    Dtls,
    /// SRTP keying or protection failed.
    Srtp,
    /// Anything else the WebRTC stack reported.
    Rtc,
    /// A bug in Hearken: handling the session's call panicked.
    Internal,
}

impl FailureCause {
    /// A fixed label for logs and metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::IceTimeout => "ice_timeout",
            Self::DtlsTimeout => "dtls_timeout",
            Self::Dtls => "dtls",
            Self::Srtp => "srtp",
            Self::Rtc => "rtc",
            Self::Internal => "internal",
        }
    }
}

/// A session that failed: why, in a fixed cause and the stack's own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionFailure {
    /// The session's public id.
    pub session: String,
    /// The kind of failure.
    pub cause: FailureCause,
    /// What the stack said (an error message, or what never arrived).
    pub detail: String,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The client sent `DELETE` on the session URL.
    Deleted,
    /// ICE reported the client gone.
    Disconnected,
    /// ICE and DTLS did not complete in time.
    ConnectTimeout,
    /// The call was ended.
    CallEnded,
    /// The WebRTC stack failed.
    Failed,
}

impl SessionEndReason {
    /// A fixed label for metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Disconnected => "disconnected",
            Self::ConnectTimeout => "connect_timeout",
            Self::CallEnded => "call_ended",
            Self::Failed => "failed",
        }
    }
}

/// A participant's consent, as `call.json` states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantConsent {
    /// Their state, and (`method`) how they consented.
    #[serde(flatten)]
    pub state: ConsentState,
    /// The rules entry their consent follows (`US-NY`, `DE`,
    /// `default_unknown`), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// The clip of their spoken yes (`consent-evidence/{stem}.opus`,
    /// relative to the call directory), when they consented verbally
    /// (filled by the recorder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// How a participant's audio reached Hearken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ingest {
    /// A WHIP session: Hearken is a participant of the meeting.
    #[default]
    Whip,
    /// RTP over QUIC pushed by the platform: no participant in the call.
    Native,
    /// A SIP dialog: a telephone leg dialled the bot in.
    Sip,
}

impl Ingest {
    /// The lowercase name (`call.json`, metric labels).
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Native => "native",
            Self::Sip => "sip",
        }
    }
}

/// What a participant's audio arrived as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerMedia {
    /// The way in.
    pub ingest: Ingest,
    /// The codec on the wire (`opus`, `pcmu`, `pcma`, `g722`).
    pub codec: &'static str,
    /// The recording is Opus encoded once from that codec (it was not Opus).
    pub transcoded: bool,
}

/// Per-participant facts kept in `call.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantSummary {
    /// Participant id (msid stream id, or `{session}-{mid}`).
    pub id: String,
    /// How their audio reached Hearken.
    #[serde(default)]
    pub ingest: Ingest,
    /// The codec their audio arrived in (`opus`, `pcmu`, `pcma`, `g722`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Their recording is Opus encoded once from `codec` (telephone codecs);
    /// Opus is recorded exactly as it arrived.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transcoded_to_opus: bool,
    /// Their telephone leg holds the call now (re-INVITE `sendonly` or
    /// `inactive`): they hear nothing, so no prompt plays to them until
    /// they resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_hold: bool,
    /// Recording, relative to the call directory.
    pub file: String,
    /// Public ids of the sessions that carried this participant.
    pub sessions: Vec<String>,
    /// First packet received (UTC).
    pub first_packet_at: Option<DateTime<Utc>>,
    /// Last packet received (UTC).
    pub last_packet_at: Option<DateTime<Utc>>,
    /// RTP packets received.
    pub packets_received: u64,
    /// RTP packets lost (gaps in sequence numbers).
    pub packets_lost: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Seconds of call timeline covered by the recording (filled by the
    /// recorder).
    pub recorded_seconds: f64,
    /// Consent state and jurisdiction.
    pub consent: Option<ParticipantConsent>,
    /// Frames withheld by the consent gate.
    pub frames_withheld: u64,
    /// Seconds of their audio held in memory awaiting consent, then
    /// committed to the recording.
    #[serde(default)]
    pub held_seconds_committed: f64,
    /// Seconds of their audio held awaiting consent, then discarded unheard.
    #[serde(default)]
    pub held_seconds_discarded: f64,
    /// Transcription coverage (set at the end of the call when a backend
    /// runs): seconds captured vs acknowledged by final results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<super::transcript::Coverage>,
}

/// The content of `call.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSummary {
    /// The call id.
    pub call_id: String,
    /// Call time zero (UTC): when the first session connected.
    pub started_at: Option<DateTime<Utc>>,
    /// When the call ended (UTC); absent while it is in progress.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended.
    pub end_reason: Option<EndReason>,
    /// Sessions currently connected or connecting.
    pub active_sessions: usize,
    /// The consent mode in force (absent before anyone joined).
    pub consent_mode: Option<super::consent::rules::ConsentMode>,
    /// Every participant seen.
    pub participants: Vec<ParticipantSummary>,
    /// Sessions of the call that failed (the most recent
    /// [`MAX_FAILED_SESSIONS`]), so a provider can see why a client never
    /// connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_sessions: Vec<SessionFailure>,
    /// The consent audit log's chain head (filled in by the recorder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_log: Option<super::audit::ConsentLogSummary>,
    /// Why capture of the call stopped before its end, when it did: a
    /// recording could not be written (a full disk). From then on nothing of
    /// the call was kept or transcribed (it fails closed); what was written
    /// before is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_error: Option<String>,
    /// The track of the prompts the bot played, once the rules require the
    /// announcement in the recording (US-WA, US-CT); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement_track: Option<AnnouncementSummary>,
    /// The fleet node that holds the call's files (`cluster.node_id`);
    /// absent on a node that runs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where the call's recordings are, in order, when it went on on
    /// another node after the node that carried it was lost: each node and
    /// the files it wrote (all aligned to the call's time zero). Empty for a
    /// call carried by one node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentSummary>,
    /// What was made of the call after it ended (the playable mix and the
    /// insights): absent until that work starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcall: Option<PostCallSummary>,
}

/// The work done on a call after it ended (see `src/postcall.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostCallSummary {
    /// `audio/mix.opus`: every track decoded, mixed at its place, encoded once.
    pub mix: JobSummary,
    /// `insights.json`: talk time, turns, trackers, key moments.
    pub insights: JobSummary,
}

/// Where one piece of post-call work stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Pending, running, done or failed.
    pub state: JobState,
    /// How far it is, 0 to 1.
    pub progress: f64,
    /// The file it made, relative to the call directory, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds it took, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// The state of a [`JobSummary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Queued behind other calls' work.
    #[default]
    Pending,
    /// Being made.
    Running,
    /// Made.
    Done,
    /// Given up (see `error`).
    Failed,
}

impl JobState {
    /// The name used in JSON and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// One node's part of a call's recordings (see [`CallSummary::segments`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// The node that holds the files.
    pub node: String,
    /// The files, relative to the call directory (`audio/alice.2.opus`).
    pub files: Vec<String>,
}

/// Failed sessions a call remembers.
pub const MAX_FAILED_SESSIONS: usize = 32;

impl CallSummary {
    /// The summary of a call whose state was lost (its handling panicked):
    /// its id, its end and why.
    pub fn ended_without_state(call_id: &CallId, at: DateTime<Utc>) -> Self {
        Self {
            call_id: call_id.to_string(),
            started_at: None,
            ended_at: Some(at),
            end_reason: Some(EndReason::Internal),
            active_sessions: 0,
            consent_mode: None,
            participants: Vec::new(),
            failed_sessions: Vec::new(),
            consent_log: None,
            capture_error: None,
            announcement_track: None,
            node: None,
            segments: Vec::new(),
            postcall: None,
        }
    }
}

#[derive(Debug)]
struct Participant {
    id: Arc<str>,
    file_stem: Arc<str>,
    sessions: Vec<String>,
    active: Option<SessionKey>,
    timeline: SpeakerTimeline,
    highest_seq: Option<u64>,
    /// The consent gate's latest verdict for this participant.
    gate_cache: GateCache,
    packets_received: u64,
    packets_lost: u64,
    bytes_received: u64,
    first_packet: Option<Instant>,
    last_packet: Option<Instant>,
    frames_withheld: u64,
    hold: Hold,
    /// Their session ended while audio of theirs was held: the leave is
    /// passed on once the hold is empty, so the track is not padded past
    /// frames still to be committed.
    left_pending: Option<u64>,
    /// What their audio arrives as (the latest session's).
    media: Option<SpeakerMedia>,
    /// Their telephone leg holds the call.
    on_hold: bool,
}

/// One participant's frames waiting for consent.
#[derive(Debug, Default)]
struct Hold {
    frames: VecDeque<HeldFrame>,
    bytes: u64,
    samples: u64,
    committed: u64,
    discarded: u64,
    /// Discarded samples not yet written to the audit log, by reason.
    unreported: BTreeMap<&'static str, (HoldDiscard, u64)>,
}

#[derive(Debug)]
struct HeldFrame {
    frame: SpeakerFrame,
    samples: u32,
    /// The call time it was judged at (when it was spoken).
    spoken: u64,
    ticket: HoldTicket,
}

/// The node's memory for held audio, shared by every call on every worker
/// (an atomic, not a lock: the packet path never waits on it).
#[derive(Debug)]
pub struct HoldBudget {
    limit_bytes: u64,
    bytes: AtomicU64,
    samples: AtomicU64,
}

impl HoldBudget {
    /// A budget of `limit_bytes` of held Opus payload.
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            bytes: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        }
    }

    /// The most bytes the node holds.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Seconds of audio held now.
    pub fn held_seconds(&self) -> f64 {
        self.samples.load(Ordering::Relaxed) as f64 / SAMPLE_RATE as f64
    }

    fn try_take(&self, bytes: u64, samples: u64) -> bool {
        let taken = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                let after = held.checked_add(bytes)?;
                (after <= self.limit_bytes).then_some(after)
            })
            .is_ok();
        if taken {
            self.samples.fetch_add(samples, Ordering::Relaxed);
        }
        taken
    }

    fn give_back(&self, bytes: u64, samples: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.samples.fetch_sub(samples, Ordering::Relaxed);
    }
}

impl Default for HoldBudget {
    /// 256 MiB: 60 s of 32 kbit/s Opus for about 1,000 speakers at once.
    fn default() -> Self {
        Self::new(256 * 1024 * 1024)
    }
}

#[derive(Debug)]
struct SessionInfo {
    public_id: String,
    connected: bool,
}

#[derive(Debug, Clone, Copy)]
struct CallStart {
    /// A local instant, at which call time was `before`.
    instant: Instant,
    /// Call time zero (UTC).
    utc: DateTime<Utc>,
    /// Call time at `instant` (48 kHz samples): 0 when the call starts
    /// here; for a call that goes on here after its node was lost, how long
    /// it had run. Kept as an offset because a local `Instant` cannot go
    /// back before this machine booted.
    before: u64,
}

impl CallStart {
    /// Call time at `at`.
    fn time(&self, at: Instant) -> u64 {
        self.before + samples_between(self.instant, at)
    }
}

/// Counts of what happened to frames, for the shell's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Packets received.
    pub packets: u64,
    /// Packets lost before this frame.
    pub lost: u64,
    /// Frames that re-anchored the speaker timeline.
    pub reanchored: u64,
    /// Set when the consent gate withheld the frame, with why.
    pub withheld: Option<GateReason>,
    /// The frame went into the consent hold.
    pub held: bool,
}

/// One call.
#[derive(Debug)]
pub struct Conference {
    call_id: CallId,
    start: Option<CallStart>,
    /// The call time zero of a call that began on another node and goes
    /// on here ([`Self::resume_from`]), taken when the first session
    /// connects.
    resumed: Option<CallStart>,
    participants: Vec<Participant>,
    sessions: BTreeMap<SessionKey, SessionInfo>,
    outputs: VecDeque<ConferenceOutput>,
    ended: Option<(DateTime<Utc>, EndReason)>,
    consent: ConsentEngine,
    failed_sessions: VecDeque<SessionFailure>,
    budget: Arc<HoldBudget>,
    /// The engine's wait resolutions already acted on.
    settled: u64,
    /// The engine's widenings already acted on.
    widened: u64,
    /// The latest call time handled (for the audit lines of holds).
    latest: u64,
    /// Which played prompt packets go into the announcement track.
    announcer: Announcer,
}

impl Drop for Conference {
    fn drop(&mut self) {
        // A call abandoned with audio held (after a bug) gives its memory
        // back to the node.
        for p in &self.participants {
            self.budget.give_back(p.hold.bytes, p.hold.samples);
        }
    }
}

impl Conference {
    /// A call with no session yet, whose frames pass `consent`'s gate, with
    /// a hold budget of its own (see [`Self::with_hold_budget`]).
    pub fn new(call_id: CallId, consent: ConsentEngine) -> Self {
        Self {
            call_id,
            start: None,
            resumed: None,
            participants: Vec::new(),
            sessions: BTreeMap::new(),
            outputs: VecDeque::new(),
            ended: None,
            consent,
            failed_sessions: VecDeque::new(),
            budget: Arc::new(HoldBudget::default()),
            settled: 0,
            widened: 0,
            latest: 0,
            announcer: Announcer::default(),
        }
    }

    /// Holds audio within the node's shared `budget`.
    pub fn with_hold_budget(mut self, budget: Arc<HoldBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Wall-clock time of call time `t` (48 kHz samples), once started.
    pub fn utc_at(&self, t: u64) -> Option<DateTime<Utc>> {
        let start = self.start?;
        // Rounded up: `call_time(instant_at(t))` is `t` again, so a deadline
        // is due when its instant comes (rounding down would wake the shell
        // a few nanoseconds early, forever).
        let nanos = (u128::from(t) * 1_000_000_000).div_ceil(u128::from(SAMPLE_RATE));
        let offset = chrono::Duration::nanoseconds(i64::try_from(nanos).ok()?);
        Some(start.utc + offset)
    }

    /// The `Instant` of call time `t`, once started.
    pub fn instant_at(&self, t: u64) -> Option<Instant> {
        let start = self.start?;
        // Rounded up: `call_time(instant_at(t))` is `t` again, so a deadline
        // is due when its instant comes (rounding down would wake the shell
        // a few nanoseconds early, forever).
        // A time before `before` (a resumed call's past) is due at once.
        let t = t.saturating_sub(start.before);
        let nanos = (u128::from(t) * 1_000_000_000).div_ceil(u128::from(SAMPLE_RATE));
        start
            .instant
            .checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
    }

    fn pump_consent(&mut self) {
        while let Some(o) = self.consent.poll_output() {
            match o {
                ConsentOutput::DiscardParticipant { participant } => {
                    if let Some(i) = self.participants.iter().position(|p| *p.id == *participant) {
                        self.purge_hold(i, HoldDiscard::ModeRaised);
                        let p = &self.participants[i];
                        self.outputs
                            .push_back(ConferenceOutput::DiscardParticipant {
                                participant_id: p.id.clone(),
                                file_stem: p.file_stem.clone(),
                            });
                    }
                }
                ConsentOutput::Withdrawn { participant } => {
                    // Nothing of a decliner that is still held is ever
                    // committed, whatever it waited for.
                    if let Some(i) = self.participants.iter().position(|p| *p.id == *participant) {
                        self.purge_hold(i, HoldDiscard::Declined);
                        self.outputs.push_back(ConferenceOutput::PurgeParticipant {
                            participant_id: self.participants[i].id.clone(),
                        });
                    }
                }
                other => self.outputs.push_back(ConferenceOutput::Consent(other)),
            }
        }
        if self
            .consent
            .decision()
            .is_some_and(|d| d.announcement_in_recording)
        {
            self.announcer.require(self.latest);
        }
        self.settle_holds();
    }

    /// Commits or discards held frames whose waits ended.
    fn settle_holds(&mut self) {
        let widened = self.consent.widenings() != self.widened;
        if self.consent.resolutions() == self.settled && !widened {
            self.report_discards();
            return;
        }
        self.settled = self.consent.resolutions();
        self.widened = self.consent.widenings();
        for i in 0..self.participants.len() {
            if self.participants[i].hold.frames.is_empty() {
                continue;
            }
            let mut held = std::mem::take(&mut self.participants[i].hold.frames);
            let mut rejected = Vec::new();
            if widened {
                let rejudge = self.consent.rejudger();
                held.retain_mut(|h| match rejudge.rejudge(h.spoken, &h.ticket) {
                    Ok(ticket) => {
                        h.ticket = ticket;
                        true
                    }
                    Err(reason) => {
                        rejected.push((h.frame.payload.len() as u64, u64::from(h.samples), reason));
                        false
                    }
                });
            }
            for (bytes, samples, reason) in rejected {
                self.release_counts(i, bytes, samples, Some(reason));
            }
            let mut commit = Vec::new();
            let mut keep = VecDeque::new();
            for h in held {
                match self.consent.fate(h.spoken, &h.ticket) {
                    Fate::Wait => keep.push_back(h),
                    Fate::Commit => commit.push(h),
                    Fate::Discard(reason) => {
                        self.release(i, &h, Some(reason));
                    }
                }
            }
            self.participants[i].hold.frames = keep;
            if !commit.is_empty() {
                let samples: u64 = commit.iter().map(|h| u64::from(h.samples)).sum();
                let from = commit.first().map_or(0, |h| h.frame.position);
                let to = commit
                    .last()
                    .map_or(0, |h| h.frame.position + u64::from(h.samples));
                for h in &commit {
                    self.release(i, h, None);
                }
                self.participants[i].hold.committed += samples;
                let event = AuditEvent::HoldCommitted {
                    t: secs(self.latest),
                    participant: self.participants[i].id.to_string(),
                    seconds: secs(samples),
                    from: secs(from),
                    to: secs(to),
                };
                self.outputs
                    .push_back(ConferenceOutput::Consent(ConsentOutput::Audit(event)));
                self.report_discards_of(i);
                self.outputs.push_back(ConferenceOutput::Frames(
                    commit.into_iter().map(|h| h.frame).collect(),
                ));
            }
        }
        self.report_discards();
    }

    /// Gives a held frame's memory back; counts it as discarded with
    /// `reason` (or as committed when `None`).
    fn release(&mut self, i: usize, h: &HeldFrame, reason: Option<HoldDiscard>) {
        self.release_counts(
            i,
            h.frame.payload.len() as u64,
            u64::from(h.samples),
            reason,
        );
    }

    fn release_counts(&mut self, i: usize, bytes: u64, samples: u64, reason: Option<HoldDiscard>) {
        self.budget.give_back(bytes, samples);
        let hold = &mut self.participants[i].hold;
        hold.bytes -= bytes;
        hold.samples -= samples;
        if let Some(reason) = reason {
            hold.discarded += samples;
            hold.unreported
                .entry(reason.as_str())
                .or_insert((reason, 0))
                .1 += samples;
        }
    }

    /// Throws away everything a participant has held.
    fn purge_hold(&mut self, i: usize, reason: HoldDiscard) {
        let held = std::mem::take(&mut self.participants[i].hold.frames);
        for h in &held {
            self.release(i, h, Some(reason));
        }
    }

    /// Writes down, one line per participant and reason, the held audio
    /// thrown away since the last report; then passes on leaves that
    /// waited for a hold to empty.
    fn report_discards(&mut self) {
        for i in 0..self.participants.len() {
            self.report_discards_of(i);
            let p = &mut self.participants[i];
            if p.hold.frames.is_empty()
                && let Some(position) = p.left_pending.take()
            {
                self.outputs.push_back(ConferenceOutput::ParticipantLeft {
                    participant: ParticipantIdx(i as u32),
                    participant_id: p.id.clone(),
                    file_stem: p.file_stem.clone(),
                    position,
                });
            }
        }
    }

    fn report_discards_of(&mut self, i: usize) {
        let p = &mut self.participants[i];
        if p.hold.unreported.is_empty() {
            return;
        }
        for (_, (reason, samples)) in std::mem::take(&mut p.hold.unreported) {
            let event = AuditEvent::HoldDiscarded {
                t: secs(self.latest),
                participant: p.id.to_string(),
                seconds: secs(samples),
                reason,
            };
            self.outputs
                .push_back(ConferenceOutput::Consent(ConsentOutput::Audit(event)));
        }
    }

    /// Puts a frame in its participant's hold, within the participant's
    /// span limit and the node's budget.
    fn hold_frame(&mut self, i: usize, frame: SpeakerFrame, spoken: u64, ticket: HoldTicket) {
        let samples = super::opus::packet_samples(&frame.payload).unwrap_or(960);
        let bytes = frame.payload.len() as u64;
        let max_span = self.consent.config().hold.max_span;
        // The oldest audio goes first once the hold spans too much.
        while let Some(oldest) = self.participants[i].hold.frames.front() {
            if frame.position.saturating_sub(oldest.frame.position) < max_span {
                break;
            }
            if let Some(h) = self.participants[i].hold.frames.pop_front() {
                self.release(i, &h, Some(HoldDiscard::Limit));
            }
        }
        if !self.budget.try_take(bytes, u64::from(samples)) {
            let hold = &mut self.participants[i].hold;
            hold.discarded += u64::from(samples);
            hold.unreported
                .entry(HoldDiscard::NodeLimit.as_str())
                .or_insert((HoldDiscard::NodeLimit, 0))
                .1 += u64::from(samples);
            return;
        }
        let hold = &mut self.participants[i].hold;
        hold.bytes += bytes;
        hold.samples += u64::from(samples);
        hold.frames.push_back(HeldFrame {
            frame,
            samples,
            spoken,
            ticket,
        });
    }

    /// Participant details from the provider.
    pub fn handle_details(
        &mut self,
        participant_id: &str,
        details: ParticipantDetails,
        now: Instant,
    ) {
        let t = self.tick(now);
        self.consent.handle_details(participant_id, details, t);
        self.pump_consent();
    }

    /// The provider's roster: a participant is (or is no longer) on the
    /// call, with or without audio.
    pub fn handle_roster(&mut self, participant_id: &str, present: bool, now: Instant) {
        let t = self.tick(now);
        self.consent.handle_roster(participant_id, present, t);
        self.pump_consent();
    }

    /// The provider showed its own notice to a participant at `shown_at`
    /// (wall clock; before the call counts as its start).
    pub fn handle_notice(
        &mut self,
        participant_id: &str,
        shown_at: DateTime<Utc>,
        how: &str,
        now: Instant,
    ) {
        let t = self.tick(now);
        let shown = match self.start {
            Some(start) => (shown_at - start.utc)
                .to_std()
                .map(duration_to_samples)
                .unwrap_or(0)
                .min(t),
            None => 0,
        };
        self.consent.handle_notice(participant_id, shown, how, t);
        self.pump_consent();
    }

    /// A consent signal (API or the local recogniser).
    pub fn handle_signal(
        &mut self,
        participant_id: &str,
        decision: Decision,
        method: ConsentMethod,
        evidence: SignalEvidence,
        now: Instant,
    ) {
        let t = self.tick(now);
        self.consent
            .handle_signal(participant_id, decision, method, t, evidence);
        self.pump_consent();
    }

    /// Call time of `now`, noted as the latest handled.
    fn tick(&mut self, now: Instant) -> u64 {
        let t = self.call_time(now);
        self.latest = self.latest.max(t);
        t
    }

    /// A key pressed by `participant` (RFC 4733). The consent digits (see
    /// [`super::consent::engine::EngineConfig::keys`]) are consent signals;
    /// returns whether `key` was one.
    pub fn handle_digit(
        &mut self,
        participant: ParticipantIdx,
        key: DtmfKey,
        now: Instant,
    ) -> bool {
        let Some(id) = self.participant_id(participant).map(str::to_owned) else {
            return false;
        };
        let t = self.tick(now);
        let consent_key = self.consent.handle_key(&id, key, t);
        self.pump_consent();
        consent_key
    }

    /// A session of the call failed; the summary lists it.
    pub fn handle_session_failed(&mut self, failure: SessionFailure) {
        if self.failed_sessions.len() >= MAX_FAILED_SESSIONS {
            self.failed_sessions.pop_front();
        }
        self.failed_sessions.push_back(failure);
    }

    /// A prompt finished playing to `to` (it started at `start`).
    pub fn handle_prompt_played(
        &mut self,
        prompt: PromptKind,
        to: &[String],
        delivery: Delivery,
        start: Instant,
        end: Instant,
    ) {
        let s = self.call_time(start);
        let e = self.tick(end);
        self.consent
            .handle_prompt_played(prompt, to, delivery, s, e);
        self.pump_consent();
    }

    /// The shell wrote a prompt packet into an m-line. Where the rules
    /// require the announcement in the recording, the packets that belong
    /// in the announcement track (see [`crate::announcement`]) come out as
    /// [`ConferenceOutput::Announcement`] at their call-time position.
    pub fn handle_prompt_packet(&mut self, packet: PlayedPacket) {
        if self.announcer.required_from().is_none() || self.start.is_none() {
            return;
        }
        let start = self.call_time(packet.started);
        let end = self.call_time(packet.ends);
        let position = self.call_time(packet.at);
        if !self
            .announcer
            .admit(packet.prompt, start, end, position, packet.samples)
        {
            return;
        }
        let stem: Arc<str> = Arc::from(ANNOUNCEMENT_STEM);
        self.outputs
            .push_back(ConferenceOutput::Announcement(SpeakerFrame {
                participant: ANNOUNCEMENT_PARTICIPANT,
                participant_id: stem.clone(),
                file_stem: stem,
                position,
                payload: packet.payload,
                arrival: packet.at,
                voice: VoiceHint::default(),
                source: None,
            }));
    }

    /// Time passed (details waits, implicit consent after the grace
    /// period).
    pub fn handle_timeout(&mut self, now: Instant) {
        let t = self.tick(now);
        self.consent.handle_timeout(t);
        self.pump_consent();
    }

    /// When [`Self::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.instant_at(self.consent.poll_timeout()?)
    }

    /// The consent state of every participant the call knows (with audio
    /// or on the roster).
    pub fn consent_states(&self) -> impl Iterator<Item = ConsentState> + '_ {
        self.consent
            .participant_ids()
            .filter_map(|id| self.consent.state(id))
    }

    /// A participant's id by index.
    pub fn participant_id(&self, participant: ParticipantIdx) -> Option<&str> {
        self.participants
            .get(participant.0 as usize)
            .map(|p| &*p.id)
    }

    /// The call id.
    pub fn call_id(&self) -> &CallId {
        &self.call_id
    }

    /// Whether the first session has connected.
    pub fn has_started(&self) -> bool {
        self.start.is_some()
    }

    /// Number of sessions attached.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of participants currently sending on a session.
    pub fn active_speakers(&self) -> usize {
        self.participants
            .iter()
            .filter(|p| p.active.is_some())
            .count()
    }

    /// A session was created for this call (its answer is on the way).
    pub fn handle_session_added(&mut self, session: SessionKey, public_id: &str) {
        self.sessions.insert(
            session,
            SessionInfo {
                public_id: public_id.to_owned(),
                connected: false,
            },
        );
    }

    /// A session completed ICE and DTLS. The first one starts the call; its
    /// speakers join the call (for consent) now.
    pub fn handle_session_connected(
        &mut self,
        session: SessionKey,
        now: Instant,
        now_utc: DateTime<Utc>,
    ) {
        if self.start.is_none() {
            let start = self.resumed.take().unwrap_or(CallStart {
                instant: now,
                utc: now_utc,
                before: 0,
            });
            self.outputs
                .push_back(ConferenceOutput::Started { at: start.utc });
            self.start = Some(start);
        }
        if let Some(info) = self.sessions.get_mut(&session) {
            info.connected = true;
        }
        let t = self.call_time(now);
        let joined: Vec<Arc<str>> = self
            .participants
            .iter()
            .filter(|p| p.active == Some(session))
            .map(|p| p.id.clone())
            .collect();
        for id in joined {
            self.consent.handle_join(&id, t);
        }
        self.pump_consent();
    }

    /// Continues a call that began at `started_at` on another node (one of
    /// the fleet that was lost): call time runs from `started_at`, not from
    /// the first session connecting here, so the tracks recorded here stay
    /// aligned to the call's time zero. Does nothing once the call started.
    pub fn resume_from(&mut self, started_at: DateTime<Utc>, now: Instant, now_utc: DateTime<Utc>) {
        if self.start.is_some() {
            return;
        }
        let elapsed = (now_utc - started_at).to_std().unwrap_or_default();
        self.resumed = Some(CallStart {
            instant: now,
            utc: started_at,
            before: duration_to_samples(elapsed),
        });
    }

    /// A received audio m-line of `session` becomes a speaker. The participant
    /// id is `stream_id` (the m-line's msid) or else `{session}-{mid}`. A
    /// participant who comes back (same id, no longer sending) continues their
    /// own track.
    pub fn handle_speaker_added(
        &mut self,
        session: SessionKey,
        mid: &str,
        stream_id: Option<&str>,
        now: Instant,
    ) -> ParticipantIdx {
        let public_id = self
            .sessions
            .get(&session)
            .map(|s| s.public_id.clone())
            .unwrap_or_else(|| format!("session{}", session.0));
        let fallback = format!("{public_id}-{mid}");
        let wanted = stream_id.unwrap_or(&fallback);

        let existing = self.participants.iter().position(|p| &*p.id == wanted);
        let idx = match existing {
            Some(i) if self.participants[i].active.is_none() => i,
            // The same stream id on a new session while the old one has not
            // timed out yet: the participant reconnected. The new session
            // takes over (their consent and track go on; the old session's
            // frames are ignored from now on).
            Some(i) if self.participants[i].active != Some(session) => i,
            // The stream id is already sending on another m-line of this
            // session: keep the two apart rather than interleave them.
            Some(_) => self.find_or_create(&fallback),
            None => self.find_or_create(wanted),
        };
        self.participants[idx].left_pending = None;
        let p = &mut self.participants[idx];
        p.active = Some(session);
        p.timeline.reset();
        if !p.sessions.contains(&public_id) {
            p.sessions.push(public_id);
        }
        // A speaker that appears on a session already connected joins now;
        // the others join when their session connects.
        if self.sessions.get(&session).is_some_and(|s| s.connected) {
            let id = self.participants[idx].id.clone();
            let t = self.call_time(now);
            self.consent.handle_join(&id, t);
            self.pump_consent();
        }
        ParticipantIdx(idx as u32)
    }

    /// `participant` put the call on hold or resumed it (a SIP re-INVITE).
    pub fn handle_hold(&mut self, participant: ParticipantIdx, on_hold: bool) {
        if let Some(p) = self.participants.get_mut(participant.0 as usize) {
            p.on_hold = on_hold;
        }
    }

    /// What `participant`'s audio arrives as (for `call.json`).
    pub fn handle_speaker_media(&mut self, participant: ParticipantIdx, media: SpeakerMedia) {
        if let Some(p) = self.participants.get_mut(participant.0 as usize) {
            p.media = Some(media);
        }
    }

    fn find_or_create(&mut self, id: &str) -> usize {
        if let Some(i) = self.participants.iter().position(|p| &*p.id == id) {
            return i;
        }
        let mut stem = participant_file_stem(id);
        // Two ids can only share a stem if one was already safe and equals the
        // other's cleaned form with its hash; keep files distinct regardless.
        let mut n = 1;
        while *stem == *ANNOUNCEMENT_STEM || self.participants.iter().any(|p| *p.file_stem == *stem)
        {
            n += 1;
            stem = format!("{}-{n}", participant_file_stem(id));
        }
        self.participants.push(Participant {
            id: id.into(),
            file_stem: stem.into(),
            sessions: Vec::new(),
            active: None,
            timeline: SpeakerTimeline::new(TimelineConfig::default()),
            highest_seq: None,
            gate_cache: GateCache::default(),
            packets_received: 0,
            packets_lost: 0,
            bytes_received: 0,
            first_packet: None,
            last_packet: None,
            frames_withheld: 0,
            hold: Hold::default(),
            left_pending: None,
            media: None,
            on_hold: false,
        });
        self.participants.len() - 1
    }

    /// Places one received Opus frame of `participant`, received on
    /// `session`, on the call timeline and passes it through the consent
    /// gate: to the sinks, into the hold, or nowhere.
    pub fn handle_audio(
        &mut self,
        session: SessionKey,
        participant: ParticipantIdx,
        frame: AudioFrame,
    ) -> FrameStats {
        let Some(start) = self.start else {
            // No session has connected yet, so no media can be flowing.
            return FrameStats::default();
        };
        let i = participant.0 as usize;
        let Some(p) = self.participants.get_mut(i) else {
            return FrameStats::default();
        };
        if p.active != Some(session) {
            // A session the participant has left for a newer one.
            return FrameStats::default();
        }
        let packets = if frame.seq_last >= frame.seq_first {
            frame.seq_last - frame.seq_first + 1
        } else {
            0
        };
        let mut stats = FrameStats {
            packets,
            ..FrameStats::default()
        };
        if let Some(highest) = p.highest_seq
            && frame.seq_first > highest + 1
        {
            stats.lost = frame.seq_first - highest - 1;
        }
        p.highest_seq = Some(
            p.highest_seq
                .map_or(frame.seq_last, |h| h.max(frame.seq_last)),
        );
        p.packets_received += stats.packets;
        p.packets_lost += stats.lost;
        p.bytes_received += frame.payload.len() as u64;
        p.first_packet.get_or_insert(frame.arrival);
        p.last_packet = Some(frame.arrival);

        let arrival = start.time(frame.arrival);
        let placement = p.timeline.handle_frame(frame.rtp_time, arrival);
        if placement
            .reanchored
            .is_some_and(|r| r != ReanchorReason::FirstFrame)
        {
            stats.reanchored = 1;
        }
        // Judged by the earliest time it may have been spoken: a frame
        // placed late (a late anchor, a burst after a stall) cannot slip
        // past the moment a gate opened.
        let judgement = self
            .consent
            .judge(&p.id, placement.spoken, &mut p.gate_cache);
        let speaker_frame = SpeakerFrame {
            participant,
            participant_id: p.id.clone(),
            file_stem: p.file_stem.clone(),
            position: placement.position,
            payload: frame.payload,
            arrival: frame.arrival,
            voice: frame.voice,
            source: frame.source,
        };
        match judgement {
            Judgement::Allow => {
                self.outputs
                    .push_back(ConferenceOutput::Frame(speaker_frame));
            }
            Judgement::Withhold(reason) => {
                p.frames_withheld += 1;
                stats.withheld = Some(reason);
            }
            Judgement::Hold(ticket) => match self.consent.fate(placement.spoken, &ticket) {
                // A late frame whose wait already ended.
                Fate::Commit => {
                    self.outputs
                        .push_back(ConferenceOutput::Frame(speaker_frame));
                }
                Fate::Discard(_) => {
                    p.frames_withheld += 1;
                    stats.withheld = Some(GateReason::AwaitingOwnConsent);
                }
                Fate::Wait => {
                    stats.held = true;
                    self.hold_frame(i, speaker_frame, placement.spoken, ticket);
                }
            },
        }
        stats
    }

    /// A session ended. Its speakers stop being active; their tracks are
    /// padded to now. Returns the number of sessions left.
    pub fn handle_session_removed(&mut self, session: SessionKey, now: Instant) -> usize {
        self.sessions.remove(&session);
        let leaving: Vec<usize> = (0..self.participants.len())
            .filter(|&i| self.participants[i].active == Some(session))
            .collect();
        for i in leaving {
            self.leave(i, now);
        }
        self.pump_consent();
        self.sessions.len()
    }

    /// One speaker of `session` stopped (a native flow removed) while the
    /// session goes on: they leave the call as if their session ended.
    pub fn handle_speaker_removed(
        &mut self,
        session: SessionKey,
        participant: ParticipantIdx,
        now: Instant,
    ) {
        let i = participant.0 as usize;
        if self
            .participants
            .get(i)
            .is_some_and(|p| p.active == Some(session))
        {
            self.leave(i, now);
            self.pump_consent();
        }
    }

    /// Participant `i` stops being active at `now`; their track is padded
    /// to now once nothing of theirs is held.
    fn leave(&mut self, i: usize, now: Instant) {
        let position = self.start.map(|s| s.time(now)).unwrap_or(0);
        self.latest = self.latest.max(position);
        let p = &mut self.participants[i];
        p.active = None;
        self.consent.handle_leave(&p.id, position);
        if self.start.is_none() {
            return;
        }
        if p.hold.frames.is_empty() {
            self.outputs.push_back(ConferenceOutput::ParticipantLeft {
                participant: ParticipantIdx(i as u32),
                participant_id: p.id.clone(),
                file_stem: p.file_stem.clone(),
                position,
            });
        } else {
            p.left_pending = Some(position);
        }
    }

    /// Ends the call at `now`: whatever is still held is discarded (the
    /// consent it waited for never came). Every remaining session must be
    /// removed by the caller first (so each leave is recorded).
    pub fn handle_end(&mut self, now: Instant, now_utc: DateTime<Utc>, reason: EndReason) {
        if self.ended.is_none() {
            let t = self.tick(now);
            self.consent.handle_end(t);
            self.pump_consent();
            self.ended = Some((now_utc, reason));
        }
    }

    /// Whether [`Self::handle_end`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// Call time of `now` in 48 kHz samples (0 before the call started).
    pub fn call_time(&self, now: Instant) -> u64 {
        self.start.map(|s| s.time(now)).unwrap_or(0)
    }

    /// Next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<ConferenceOutput> {
        self.outputs.pop_front()
    }

    /// A participant's consent for `call.json`.
    fn consent_summary(&self, id: &str) -> Option<ParticipantConsent> {
        Some(ParticipantConsent {
            state: self.consent.state(id)?,
            jurisdiction: self.consent.jurisdiction(id).map(str::to_owned),
            evidence: None,
        })
    }

    /// The facts for `call.json` (recorded durations are left at zero: the
    /// recorder knows them). Participants the provider's roster named but
    /// who never sent audio are listed without a file.
    pub fn summary(&self) -> CallSummary {
        let to_utc = |t: Option<Instant>| -> Option<DateTime<Utc>> {
            let (start, t) = (self.start?, t?);
            let offset = t.saturating_duration_since(start.instant)
                + Duration::from_nanos(
                    u64::try_from(
                        u128::from(start.before) * 1_000_000_000 / u128::from(SAMPLE_RATE),
                    )
                    .unwrap_or(u64::MAX),
                );
            chrono::Duration::from_std(offset)
                .ok()
                .map(|d| start.utc + d)
        };
        CallSummary {
            call_id: self.call_id.to_string(),
            started_at: self.start.map(|s| s.utc),
            ended_at: self.ended.map(|(t, _)| t),
            end_reason: self.ended.map(|(_, r)| r),
            active_sessions: self.sessions.len(),
            consent_mode: self.consent.mode(),
            participants: self
                .participants
                .iter()
                .map(|p| ParticipantSummary {
                    id: p.id.to_string(),
                    ingest: p.media.as_ref().map(|m| m.ingest).unwrap_or_default(),
                    codec: p.media.as_ref().map(|m| m.codec.to_owned()),
                    transcoded_to_opus: p.media.as_ref().is_some_and(|m| m.transcoded),
                    on_hold: p.on_hold,
                    file: format!("audio/{}.opus", p.file_stem),
                    sessions: p.sessions.clone(),
                    first_packet_at: to_utc(p.first_packet),
                    last_packet_at: to_utc(p.last_packet),
                    packets_received: p.packets_received,
                    packets_lost: p.packets_lost,
                    bytes_received: p.bytes_received,
                    recorded_seconds: 0.0,
                    consent: self.consent_summary(&p.id),
                    frames_withheld: p.frames_withheld,
                    held_seconds_committed: secs(p.hold.committed),
                    held_seconds_discarded: secs(p.hold.discarded),
                    transcription: None,
                })
                .chain(
                    self.consent
                        .participant_ids()
                        .filter(|id| !self.participants.iter().any(|p| &*p.id == *id))
                        .map(|id| ParticipantSummary {
                            id: id.to_owned(),
                            consent: self.consent_summary(id),
                            ..ParticipantSummary::default()
                        }),
                )
                .collect(),
            failed_sessions: self.failed_sessions.iter().cloned().collect(),
            consent_log: None,
            capture_error: None,
            announcement_track: self.announcer.summary(),
            node: None,
            segments: Vec::new(),
            postcall: None,
        }
    }
}

/// Seconds of 48 kHz samples.
fn secs(samples: u64) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

/// Whole 48 kHz samples from `from` to `to` (0 if `to` is earlier).
pub fn samples_between(from: Instant, to: Instant) -> u64 {
    duration_to_samples(to.saturating_duration_since(from))
}

/// A duration in whole 48 kHz samples.
pub fn duration_to_samples(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000) as u64
}

// Tests pick a real Instant (and UTC time) to start simulated time from;
// the code under test never reads a clock.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::consent::engine::EngineConfig;
    use crate::consent::rules::{Location, Rules};

    /// A conference in which participants said to be in New York (one-party
    /// consent, mode `notify`) are captured from their first frame: these
    /// tests are about the timeline, not consent.
    fn conference() -> Conference {
        let engine = ConsentEngine::new(
            Arc::new(Rules::builtin()),
            EngineConfig {
                recorder_location: Location::from_code("US-NY").ok(),
                grace: 0,
                ..EngineConfig::default()
            },
        );
        Conference::new(CallId::parse("c").unwrap(), engine)
    }

    fn in_new_york(c: &mut Conference, id: &str) {
        let details = ParticipantDetails {
            location: Location::from_code("US-NY").ok(),
            ..ParticipantDetails::default()
        };
        c.handle_details(id, details, Instant::now());
    }

    /// Plays every requested prompt instantly, as for a client that cannot
    /// hear the bot.
    fn show_prompts(c: &mut Conference, now: Instant) {
        let mut prompts = Vec::new();
        for o in std::mem::take(&mut c.outputs) {
            match o {
                ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) => {
                    prompts.push((prompt, to))
                }
                other => c.outputs.push_back(other),
            }
        }
        for (prompt, to) in prompts {
            c.handle_prompt_played(prompt, &to, Delivery::Inaudible, now, now);
        }
        c.handle_timeout(now);
    }

    fn frame(at: Instant, ms: u64, seq: u64) -> AudioFrame {
        AudioFrame {
            rtp_time: 10_000 + ms * 48,
            seq_first: seq,
            seq_last: seq,
            arrival: at + Duration::from_millis(ms),
            payload: Arc::from(&[0xFCu8, 0xFF, 0xFE][..]),
            voice: VoiceHint::default(),
            source: None,
        }
    }

    fn frames(c: &mut Conference) -> Vec<SpeakerFrame> {
        let mut out = Vec::new();
        while let Some(o) = c.poll_output() {
            if let ConferenceOutput::Frame(f) = o {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn participant_ids_come_from_msid_or_session_and_mid() {
        let mut c = conference();
        c.handle_session_added(SessionKey(1), "s1");
        let a = c.handle_speaker_added(SessionKey(1), "0", Some("alice"), Instant::now());
        let b = c.handle_speaker_added(SessionKey(1), "1", None, Instant::now());
        let s = c.summary();
        assert_eq!(s.participants[a.0 as usize].id, "alice");
        assert_eq!(s.participants[b.0 as usize].id, "s1-1");
        assert_eq!(s.participants[b.0 as usize].file, "audio/s1-1.opus");
        // Same stream id on a second m-line while the first is sending: kept apart.
        let c2 = c.handle_speaker_added(SessionKey(1), "2", Some("alice"), Instant::now());
        assert_ne!(a, c2);
        assert_eq!(c.summary().participants[c2.0 as usize].id, "s1-2");
    }

    #[test]
    fn a_packet_made_into_two_frames_counts_once() {
        // A 30 ms G.711 packet becomes 20 + 10 ms of Opus: the second piece
        // carries an empty sequence range (seq_first > seq_last).
        let t0 = Instant::now();
        let mut c = conference();
        in_new_york(&mut c, "pat");
        c.handle_session_added(SessionKey(1), "s1");
        let p = c.handle_speaker_added(SessionKey(1), "0", Some("pat"), t0);
        c.handle_session_connected(SessionKey(1), t0, Utc::now());
        show_prompts(&mut c, t0);
        for (n, seq) in [7u64, 8].into_iter().enumerate() {
            let ms = n as u64 * 30;
            let first = c.handle_audio(SessionKey(1), p, frame(t0, ms, seq));
            let mut rest = frame(t0, ms + 20, seq);
            rest.seq_first = seq + 1;
            let second = c.handle_audio(SessionKey(1), p, rest);
            assert_eq!((first.packets, second.packets), (1, 0));
            assert_eq!((first.lost, second.lost), (0, 0));
        }
        let s = c.summary();
        assert_eq!(s.participants[p.0 as usize].packets_received, 2);
        assert_eq!(s.participants[p.0 as usize].packets_lost, 0);
        assert_eq!(frames(&mut c).len(), 4);
    }

    #[test]
    fn hostile_msid_gets_a_safe_file_name() {
        let mut c = conference();
        c.handle_session_added(SessionKey(1), "s1");
        let p =
            c.handle_speaker_added(SessionKey(1), "0", Some("../../etc/passwd"), Instant::now());
        let s = c.summary();
        let file = &s.participants[p.0 as usize].file;
        assert!(!file.contains(".."), "{file}");
        assert_eq!(file.matches('/').count(), 1, "{file}");
    }

    #[test]
    fn call_time_starts_at_first_connect_and_rejoin_continues_track() {
        let t0 = Instant::now();
        let mut c = conference();
        in_new_york(&mut c, "bob");
        c.handle_session_added(SessionKey(1), "s1");
        let p = c.handle_speaker_added(SessionKey(1), "0", Some("bob"), Instant::now());
        c.handle_session_connected(SessionKey(1), t0, Utc::now());
        show_prompts(&mut c, t0);
        c.handle_audio(SessionKey(1), p, frame(t0, 1000, 1));
        let st = c.handle_audio(SessionKey(1), p, frame(t0, 1040, 3));
        assert_eq!(st.lost, 1);
        let f = frames(&mut c);
        assert_eq!(f[0].position, 48_000);
        assert_eq!(f[1].position, 48_000 + 40 * 48);

        assert_eq!(
            c.handle_session_removed(SessionKey(1), t0 + Duration::from_secs(2)),
            0
        );
        let left: Vec<_> = std::iter::from_fn(|| c.poll_output())
            .filter(|o| matches!(o, ConferenceOutput::ParticipantLeft { .. }))
            .collect();
        assert!(matches!(
            left[..],
            [ConferenceOutput::ParticipantLeft {
                position: 96_000,
                ..
            }]
        ));

        // Bob comes back on a new session with a new RTP clock.
        c.handle_session_added(SessionKey(2), "s2");
        let p2 = c.handle_speaker_added(SessionKey(2), "0", Some("bob"), Instant::now());
        assert_eq!(p, p2, "same participant, same track");
        c.handle_session_connected(SessionKey(2), t0 + Duration::from_secs(5), Utc::now());
        let mut again = frame(t0, 5000, 900);
        again.rtp_time = 7;
        c.handle_audio(SessionKey(2), p2, again);
        let f = frames(&mut c);
        assert_eq!(f[0].position, 5 * 48_000);
        let s = c.summary();
        assert_eq!(s.participants.len(), 1);
        assert_eq!(s.participants[0].sessions, vec!["s1", "s2"]);
        assert_eq!(s.participants[0].packets_received, 3);
    }

    /// Plays a prompt of `packets` 20 ms packets from `started` into one
    /// m-line, as the shell does, and returns the announcement frames'
    /// positions.
    fn play_packets(
        c: &mut Conference,
        prompt: PromptKind,
        started: Instant,
        packets: u32,
    ) -> Vec<u64> {
        let ends = started + Duration::from_millis(20 * u64::from(packets));
        for k in 0..packets {
            c.handle_prompt_packet(PlayedPacket {
                prompt,
                started,
                ends,
                at: started + Duration::from_millis(20 * u64::from(k)),
                payload: Arc::from(&[0x78u8, 1, 2][..]),
                samples: 960,
            });
        }
        announcement_positions(c)
    }

    fn announcement_positions(c: &mut Conference) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(o) = c.poll_output() {
            if let ConferenceOutput::Announcement(f) = o {
                assert_eq!(&*f.file_stem, ANNOUNCEMENT_STEM);
                assert_eq!(f.participant, ANNOUNCEMENT_PARTICIPANT);
                out.push(f.position);
            }
        }
        out
    }

    /// A call whose recorder is in New York and whose one participant,
    /// "p", is at `location`, connected at `t0`.
    fn call_with(location: &str, t0: Instant) -> Conference {
        let mut c = conference();
        let details = ParticipantDetails {
            location: Location::from_code(location).ok(),
            ..ParticipantDetails::default()
        };
        c.handle_details("p", details, t0);
        c.handle_session_added(SessionKey(1), "s1");
        c.handle_speaker_added(SessionKey(1), "0", Some("p"), t0);
        c.handle_session_connected(SessionKey(1), t0, Utc::now());
        c
    }

    #[test]
    fn a_washington_call_records_the_notice_it_plays_once_at_its_call_time() {
        let t0 = Instant::now();
        let mut c = call_with("US-WA", t0);
        let prompts: Vec<PromptKind> = std::iter::from_fn(|| c.poll_output())
            .filter_map(|o| match o {
                ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, .. }) => Some(prompt),
                _ => None,
            })
            .collect();
        assert!(prompts.contains(&PromptKind::Notice), "{prompts:?}");
        // The notice, 4 packets, plays from 1.5 s into two m-lines at once.
        let started = t0 + Duration::from_millis(1500);
        let first = play_packets(&mut c, PromptKind::Notice, started, 4);
        let second = play_packets(&mut c, PromptKind::Notice, started, 4);
        // 1.5 s = 72,000 samples; then one packet every 960.
        assert_eq!(first, vec![72_000, 72_960, 73_920, 74_880]);
        assert!(second.is_empty(), "the second m-line's copy: {second:?}");
        let a = c.summary().announcement_track.expect("listed in call.json");
        assert_eq!(a.file.as_deref(), Some("audio/hearken-prompts.opus"));
        assert_eq!(a.prompts, 1);
        assert_eq!(a.prompt_seconds, 0.08);
        assert_eq!(a.required_from, 0.0);
    }

    #[test]
    fn a_resumed_call_keeps_the_time_zero_it_began_with() {
        let t0 = Instant::now();
        let began: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        // It went on here 90 s after it began on a node since lost.
        let here: DateTime<Utc> = "2026-12-06T10:01:30Z".parse().unwrap();
        let mut c = conference();
        c.resume_from(began, t0, here);
        c.handle_session_added(SessionKey(1), "s1");
        c.handle_session_connected(SessionKey(1), t0, here);
        assert_eq!(c.summary().started_at, Some(began));
        let started = std::iter::from_fn(|| c.poll_output()).find_map(|o| match o {
            ConferenceOutput::Started { at } => Some(at),
            _ => None,
        });
        assert_eq!(
            started,
            Some(began),
            "call.json's time zero is the first node's"
        );
        // Call time runs from then: 90 s (48 kHz samples) now.
        assert_eq!(c.call_time(t0), 90 * 48_000);
        // Once started, a late resume changes nothing.
        c.resume_from(here, t0, here);
        assert_eq!(c.summary().started_at, Some(began));
    }

    #[test]
    fn a_new_york_call_has_no_announcement_track() {
        let t0 = Instant::now();
        let mut c = call_with("US-NY", t0);
        let started = t0 + Duration::from_millis(1500);
        assert!(play_packets(&mut c, PromptKind::Notice, started, 4).is_empty());
        assert_eq!(c.summary().announcement_track, None);
        let json = serde_json::to_value(c.summary()).unwrap();
        assert!(json.get("announcement_track").is_none(), "{json}");
    }

    #[test]
    fn no_participant_is_given_the_announcement_track_s_file() {
        let mut c = conference();
        c.handle_session_added(SessionKey(1), "s1");
        let p = c.handle_speaker_added(SessionKey(1), "0", Some(ANNOUNCEMENT_STEM), Instant::now());
        let s = c.summary();
        assert_eq!(s.participants[p.0 as usize].id, ANNOUNCEMENT_STEM);
        assert_eq!(
            s.participants[p.0 as usize].file,
            "audio/hearken-prompts-2.opus"
        );
    }

    #[test]
    fn frames_before_start_are_ignored() {
        let t0 = Instant::now();
        let mut c = conference();
        c.handle_session_added(SessionKey(1), "s1");
        let p = c.handle_speaker_added(SessionKey(1), "0", None, Instant::now());
        assert_eq!(c.handle_audio(SessionKey(1), p, frame(t0, 0, 1)).packets, 0);
        assert!(c.poll_output().is_none());
    }

    /// Committed frames, one by one or from a hold.
    fn all_frames(c: &mut Conference) -> Vec<SpeakerFrame> {
        let mut out = Vec::new();
        while let Some(o) = c.poll_output() {
            match o {
                ConferenceOutput::Frame(f) => out.push(f),
                ConferenceOutput::Frames(fs) => out.extend(fs),
                _ => {}
            }
        }
        out
    }

    /// A company that says people of unknown location need no consent: the
    /// details wait holds their audio, then commits all of it, including
    /// when they leave, or the call ends, before the wait is over.
    #[test]
    fn audio_held_for_details_is_committed_under_the_unknown_location_mode() {
        let t0 = Instant::now();
        let mut config = EngineConfig {
            recorder_location: Location::from_code("US-NY").ok(),
            grace: 0,
            ..EngineConfig::default()
        };
        config.policy.unknown_location_mode = Some(crate::consent::rules::ConsentMode::None);
        let engine = ConsentEngine::new(Arc::new(Rules::builtin()), config);
        let mut c = Conference::new(CallId::parse("c").unwrap(), engine);
        c.handle_session_added(SessionKey(1), "s1");
        let alice = c.handle_speaker_added(SessionKey(1), "0", Some("alice"), t0);
        c.handle_session_connected(SessionKey(1), t0, Utc::now());
        show_prompts(&mut c, t0);
        // Alice talks for 2 s (100 frames) and leaves at 2.1 s.
        for n in 0..100 {
            c.handle_audio(SessionKey(1), alice, frame(t0, n * 20, n + 1));
        }
        assert!(all_frames(&mut c).is_empty(), "held while details may come");
        c.handle_session_added(SessionKey(2), "s2");
        let bob = c.handle_speaker_added(SessionKey(2), "0", Some("bob"), t0);
        c.handle_session_connected(SessionKey(2), t0 + Duration::from_millis(1000), Utc::now());
        for n in 0..50 {
            c.handle_audio(SessionKey(2), bob, frame(t0, 1000 + n * 20, n + 1));
        }
        c.handle_session_removed(SessionKey(1), t0 + Duration::from_millis(2100));
        // Alice's wait ends at 3 s.
        c.handle_timeout(t0 + Duration::from_millis(3000));
        let committed = all_frames(&mut c);
        let of =
            |f: &[SpeakerFrame], who: &str| f.iter().filter(|f| &*f.participant_id == who).count();
        assert_eq!(of(&committed, "alice"), 100, "all of alice after her wait");
        // The call ends at 3.5 s, before bob's wait (until 4 s) is over.
        c.handle_end(t0 + Duration::from_millis(3500), Utc::now(), EndReason::Api);
        let committed = all_frames(&mut c);
        assert_eq!(of(&committed, "bob"), 50, "all of bob at the end");
    }

    #[test]
    fn a_deadline_instant_is_due_at_its_call_time() {
        let t0 = Instant::now();
        let mut c = conference();
        c.handle_session_added(SessionKey(1), "s1");
        c.handle_session_connected(SessionKey(1), t0, Utc::now());
        // Sample times that are not whole nanoseconds.
        for t in [1, 7, 48_001, 288_011, 3 * 48_000 + 17] {
            let at = c.instant_at(t).unwrap();
            assert_eq!(c.call_time(at), t, "sample {t}");
        }
    }
}
