//! A call's native ingest inside the engine: the platform pushes each
//! speaker's RTP (over QUIC, see `crate::ingest`), one flow per speaker,
//! and no participant of the call is Hearken.
//!
//! A native session has no `Rtc`: nothing to negotiate, no ICE, no SRTP
//! (QUIC's TLS protects the media). Each flow is a speaker of the call's
//! conference; its packets are parsed here (`rtp-types`), their sequence
//! numbers and timestamps extended, telephone codecs made into Opus
//! ([`PlainSpeaker`]), and handed to the conference like any WHIP frame. Nobody
//! on a native flow can hear the bot, so every prompt counts as inaudible
//! to them: their notice is the platform's, reported through the API.

use std::time::Instant;

use hearken_core::ids::CallId;
use rustc_hash::FxHashMap;
use tracing::Span;

use super::plain_rtp::PlainSpeaker;
use super::transcode::WireCodec;

/// One speaker's flow, as the platform declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFlow {
    /// The RoQ flow id that carries it.
    pub flow_id: u64,
    /// Whose voice it carries.
    pub participant_id: String,
    /// Its codec.
    pub codec: WireCodec,
    /// The RTP payload type of its audio.
    pub payload_type: u8,
    /// The RTP payload type of its RFC 4733 telephone events, if it sends
    /// them.
    pub dtmf_payload_type: Option<u8>,
}

/// RTP packets of native flows, on their way from the QUIC connection to
/// the worker that owns their call.
#[derive(Debug)]
pub struct NativeMedia {
    /// The call's native session on that worker.
    pub session: super::session::SessionKey,
    /// The flow.
    pub flow_id: u64,
    /// One RTP packet.
    pub packet: bytes::Bytes,
    /// When it was received.
    pub arrival: Instant,
}

/// A call's native ingest on one worker.
pub(crate) struct NativeSession {
    pub call_id: CallId,
    pub secret: Box<str>,
    pub speakers: FxHashMap<u64, PlainSpeaker>,
    /// When a packet last arrived on any flow.
    pub last_input: Instant,
    /// The time of this session's live entry in the timer heap (its idle
    /// deadline).
    pub scheduled: Option<Instant>,
    pub span: Span,
}
