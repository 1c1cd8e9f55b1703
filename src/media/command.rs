//! What the control plane asks of a media engine, what it answers, and what
//! the engine reports back on its own.
//!
//! These types carry no channels: the engine is sans-IO. The worker pairs a
//! [`Command`] with the channel its [`Reply`] goes back on.

use chrono::{DateTime, Utc};
use hearken_core::conference::{CallSummary, EndReason, SessionEndReason};
pub use hearken_core::conference::{FailureCause, SessionFailure};
use hearken_core::consent::engine::{ConsentMethod, Decision, ParticipantDetails, SignalEvidence};
use hearken_core::ids::CallId;
use hearken_core::offer::OfferSummary;

pub use super::native::NativeFlow;
use super::session::SessionKey;
use crate::sinks::{AuditBarrier, CallDone};

/// A request to the engine. Every command is answered with one [`Reply`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Answer a WHIP offer with a new session: [`Reply::Answer`].
    CreateSession(Box<CreateSession>),
    /// Start a call's native ingest (its flows become speakers):
    /// [`Reply::Native`].
    CreateNative(Box<CreateNative>),
    /// Add and remove flows of a call's native session: [`Reply::Found`].
    UpdateNative {
        /// The call.
        call_id: CallId,
        /// The native session's secret.
        secret: String,
        /// Flows to add (a flow id already present is replaced).
        add: Vec<NativeFlow>,
        /// Flow ids to remove (their speakers leave).
        remove: Vec<u64>,
    },
    /// Start the media of a SIP dialog (one participant): [`Reply::Sip`].
    CreateSip(Box<CreateSip>),
    /// A SIP dialog's media changed (re-INVITE: hold, resume, a new address
    /// or codec; or the answer in the ACK of a late offer):
    /// [`Reply::Found`].
    UpdateSip {
        /// The call.
        call_id: CallId,
        /// The dialog's session secret.
        secret: String,
        /// What was negotiated now.
        media: SipMedia,
    },
    /// A key the caller pressed, reported by SIP INFO
    /// (`application/dtmf-relay` or `application/dtmf`): [`Reply::Found`].
    SipDigit {
        /// The call.
        call_id: CallId,
        /// The dialog's session secret.
        secret: String,
        /// The key: `0`-`9`, `*`, `#`, `A`-`D`.
        key: char,
    },
    /// End a session (WHIP `DELETE`, native `DELETE`, SIP `BYE`):
    /// [`Reply::Found`]. When it was the
    /// call's last session, the call ends and `done` gets its summary once
    /// every file of the call is final.
    DeleteSession {
        /// The session's call.
        call_id: CallId,
        /// The secret from the session's URL.
        secret: String,
        /// Told when the call's files are final, if this ended the call.
        done: Option<CallDone>,
    },
    /// End a call now: [`Reply::Found`]; `done` as for `DeleteSession`.
    EndCall {
        /// The call to end.
        call_id: CallId,
        /// Recorded in `call.json`.
        reason: EndReason,
        /// Told when the call's files are final.
        done: Option<CallDone>,
    },
    /// Something the provider said about a participant (details,
    /// presence, its own notice, a consent decision): [`Reply::Found`].
    Input {
        /// The call.
        call_id: CallId,
        /// What was said.
        input: CallInput,
        /// Told once the input's audit lines are on disk (or could not be
        /// written): the engine queues a [`crate::sinks::SinkMsg::Barrier`]
        /// behind them.
        audited: Option<AuditBarrier>,
    },
    /// The current summary of a call in progress: [`Reply::Snapshot`].
    Snapshot {
        /// The call.
        call_id: CallId,
    },
    /// Test hook: the next datagram handled for this call panics inside
    /// the call's handling, as a bug would: [`Reply::Found`].
    #[cfg(any(test, feature = "fault-injection"))]
    InjectPanic {
        /// The call whose handling is to panic.
        call_id: CallId,
    },
    /// Test hook: the call's sessions will take their streams from str0m
    /// with keys that are not the sender's, as a bug in handing the keys
    /// over would: [`Reply::Found`].
    #[cfg(any(test, feature = "fault-injection"))]
    InjectWrongSrtpKeys {
        /// The call.
        call_id: CallId,
    },
    /// Test hook: the engine panics outside any call's handling (as a bug
    /// in routing would), so the worker thread dies. No reply.
    #[cfg(any(test, feature = "fault-injection"))]
    InjectWorkerPanic,
}

/// The engine's answer to a [`Command`].
#[derive(Debug)]
pub enum Reply {
    /// The SDP answer of a new session, or why there is none.
    Answer(Result<String, CreateSessionError>),
    /// Whether the engine had the call or session the command named.
    Found(bool),
    /// The summary of a call in progress, if the engine has it.
    Snapshot(Option<Box<CallSummary>>),
    /// The key native media for the call is sent with, or why there is none.
    Native(Result<SessionKey, CreateSessionError>),
    /// The local RTP address of a new SIP dialog's media (for the SDP
    /// `c=`/`m=` lines), or why there is none.
    Sip(Result<std::net::SocketAddr, CreateSessionError>),
}

/// Which way media flows on a SIP dialog, as the caller's SDP says it
/// (RFC 3264 §6.1): `sendonly` or `inactive` from the caller put Hearken on
/// hold (it must not send), `recvonly` means the caller sends nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipDirection {
    /// Both ways.
    SendRecv,
    /// The caller sends, and does not want to receive (hold).
    SendOnly,
    /// The caller receives only.
    RecvOnly,
    /// Neither (hold).
    Inactive,
}

impl SipDirection {
    /// Whether the caller holds the call (Hearken may not send to them).
    pub fn is_hold(self) -> bool {
        matches!(self, Self::SendOnly | Self::Inactive)
    }
}

/// The media a SIP dialog negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMedia {
    /// Where the caller's RTP comes from and where Hearken sends (the
    /// offer's `c=` address and `m=` port; symmetric RTP).
    pub remote_rtp: std::net::SocketAddr,
    /// The audio codec chosen.
    pub codec: super::transcode::WireCodec,
    /// Its RTP payload type (the offerer's number).
    pub payload_type: u8,
    /// The payload type of `telephone-event` (RFC 4733), if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// The caller's direction.
    pub direction: SipDirection,
}

/// A SIP dialog's media to start.
#[derive(Debug)]
pub struct CreateSip {
    /// The call to join.
    pub call_id: CallId,
    /// Unguessable id of the dialog's session (the registry's key).
    pub secret: String,
    /// Short public id (logs, `call.json`).
    pub public_id: String,
    /// Whose voice the dialog carries.
    pub participant_id: String,
    /// What was negotiated; `None` for a late offer (INVITE without SDP)
    /// until the ACK brings the answer ([`Command::UpdateSip`]).
    pub media: Option<SipMedia>,
    /// Where the INVITE came from. A caller behind NAT sends RTP from
    /// another address than its SDP names; RTP from this IP, before any
    /// came from the SDP's address, is latched onto (comedia) when exactly
    /// one dialog from this IP waits for its first packet.
    pub signalling_ip: Option<std::net::IpAddr>,
    /// As for [`CreateSession::early_inputs`].
    pub early_inputs: Vec<CallInput>,
    /// As for [`CreateSession::resume`].
    pub resume: Option<std::sync::Arc<Resume>>,
}

/// A call's native ingest to start.
#[derive(Debug)]
pub struct CreateNative {
    /// The call to join.
    pub call_id: CallId,
    /// Unguessable id of the native session (the registry's key).
    pub secret: String,
    /// Short public id (logs, `call.json`).
    pub public_id: String,
    /// The speakers' flows.
    pub flows: Vec<NativeFlow>,
    /// As for [`CreateSession::early_inputs`].
    pub early_inputs: Vec<CallInput>,
    /// As for [`CreateSession::resume`].
    pub resume: Option<std::sync::Arc<Resume>>,
}

/// A WHIP offer to answer.
#[derive(Debug)]
pub struct CreateSession {
    /// The call to join.
    pub call_id: CallId,
    /// Unguessable id that names the session in its URL.
    pub secret: String,
    /// Short public id (logs, `call.json`, default participant ids).
    pub public_id: String,
    /// The offer, as received.
    pub offer_sdp: String,
    /// What the control plane read of the offer.
    pub summary: OfferSummary,
    /// What the provider said about the call's participants before the
    /// call reached this engine, in the order it was said (applied when the
    /// call is created here; ignored otherwise).
    pub early_inputs: Vec<CallInput>,
    /// Set when the call goes on here after the node that began it was
    /// lost (applied when the call is created here; ignored otherwise).
    pub resume: Option<std::sync::Arc<Resume>>,
}

/// A call that began on another node of the fleet, lost with that node,
/// going on here (see [`crate::cluster::resume`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The call's time zero, on the node that began it.
    pub started_at: DateTime<Utc>,
    /// That node.
    pub from_node: String,
    /// What was said about the participants there, read back from the
    /// audit log (details, roster presence, notices, consent decisions), in
    /// order: applied before anything said since.
    pub inputs: Vec<CallInput>,
}

/// What the provider said about one participant of a call, through the
/// HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInput {
    /// Whom it is about.
    pub participant_id: String,
    /// What was said.
    pub kind: InputKind,
}

/// The kinds of [`CallInput`].
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// Location, capture setting, user id (`PUT …/participants/{id}`).
    Details(ParticipantDetails),
    /// On the call or not, with or without media (`"present"`).
    Presence(bool),
    /// The provider showed its own recording notice (`POST …/notice`).
    Notice {
        /// When it was shown.
        shown_at: DateTime<Utc>,
        /// How (`provider_ui`, `banner`, …), as given.
        how: String,
    },
    /// A consent decision the provider collected (`POST …/consent`).
    Signal {
        /// Granted or declined.
        decision: Decision,
        /// How it was given.
        method: ConsentMethod,
        /// The method string as given, for the audit log.
        evidence: SignalEvidence,
    },
}

/// Why an offer got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateSessionError {
    /// str0m could not parse or negotiate the offer.
    #[error("the offer could not be negotiated: {0}")]
    BadOffer(#[source] str0m::RtcError),
    /// The engine's own address cannot be a host candidate.
    #[error("no usable local ICE candidate for {0}")]
    NoLocalCandidate(std::net::SocketAddr),
    /// Negotiation left no audio m-line that Hearken receives.
    #[error("no usable audio: no audio m-line with Opus could be received")]
    NoUsableAudio,
    /// The worker is stopping.
    #[error("the media worker is shutting down")]
    ShuttingDown,
    /// A telephone codec's transcoder could not be made.
    #[error("cannot transcode {codec}: {source}")]
    Transcoder {
        /// The codec.
        codec: &'static str,
        /// Why.
        source: super::transcode::TranscodeError,
    },
}

/// What an engine reports to the control plane without being asked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EngineEvent {
    /// A session ended, for any reason.
    SessionEnded {
        /// Its call.
        call_id: CallId,
        /// Its secret (the registry's key).
        secret: String,
        /// Why it ended.
        reason: SessionEndReason,
        /// Set when it failed.
        failure: Option<SessionFailure>,
    },
    /// A call that had started ended (what the provider said about its
    /// participants may be forgotten).
    CallEnded {
        /// The call.
        call_id: CallId,
    },
}
