//! A call's native ingest inside the engine: the platform pushes each
//! speaker's RTP (over QUIC, see `crate::ingest`), one flow per speaker,
//! and no participant of the call is Hearken.
//!
//! A native session has no `Rtc`: nothing to negotiate, no ICE, no SRTP
//! (QUIC's TLS protects the media). Each flow is a speaker of the call's
//! conference; its packets are parsed here (`rtp-types`), their sequence
//! numbers and timestamps extended, telephone codecs made into Opus
//! ([`ToOpus`]), and handed to the conference like any WHIP frame. Nobody
//! on a native flow can hear the bot, so every prompt counts as inaudible
//! to them: their notice is the platform's, reported through the API.

use std::sync::Arc;
use std::time::Instant;

use hearken_core::conference::{AudioFrame, ParticipantIdx};
use hearken_core::dtmf::DtmfAssembler;
use hearken_core::ids::CallId;
use hearken_core::rtp::{RtpExtender, rescale_to_48k};
use hearken_core::voice::VoiceHint;
use rustc_hash::FxHashMap;
use tracing::Span;

use super::transcode::{ToOpus, TranscodeError, WireCodec};
use crate::metrics::IngestError;

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

/// A speaker of a native session.
pub(crate) struct NativeSpeaker {
    pub participant: ParticipantIdx,
    pub flow: NativeFlow,
    extender: RtpExtender,
    ssrc: Option<u32>,
    to_opus: Option<ToOpus>,
    pub dtmf: Option<DtmfAssembler>,
    pub span: Span,
}

impl NativeSpeaker {
    pub fn new(
        participant: ParticipantIdx,
        flow: NativeFlow,
        span: Span,
    ) -> Result<Self, TranscodeError> {
        Ok(Self {
            participant,
            to_opus: ToOpus::new(flow.codec)?,
            flow,
            extender: RtpExtender::default(),
            ssrc: None,
            dtmf: None,
            span,
        })
    }
}

/// A call's native ingest on one worker.
pub(crate) struct NativeSession {
    pub call_id: CallId,
    pub secret: Box<str>,
    pub speakers: FxHashMap<u64, NativeSpeaker>,
    /// When a packet last arrived on any flow.
    pub last_input: Instant,
    /// The time of this session's live entry in the timer heap (its idle
    /// deadline).
    pub scheduled: Option<Instant>,
    pub span: Span,
}

/// What one packet of a flow carried.
#[derive(Debug)]
pub(crate) enum NativePacket {
    /// Audio, as Opus frames for the conference (several when a telephone
    /// packet was longer than one Opus frame).
    Audio(Vec<AudioFrame>),
    /// An RFC 4733 telephone event: (extended RTP time, event, end, duration).
    Event {
        rtp_time: u64,
        event: u8,
        end: bool,
        duration: u16,
    },
    /// RTCP multiplexed on the flow (RFC 5761): not used.
    Rtcp,
}

impl NativeSpeaker {
    /// Parses one RTP packet of this flow.
    pub fn handle_packet(
        &mut self,
        packet: &[u8],
        arrival: Instant,
    ) -> Result<NativePacket, IngestError> {
        // RFC 5761 §4: RTCP packet types 200..=204 read as RTP payload types
        // 72..=76 (with the marker bit); RTP audio never uses 64..=95.
        if packet.len() >= 2 && (192..=223).contains(&packet[1]) {
            return Ok(NativePacket::Rtcp);
        }
        let rtp = rtp_types::RtpPacket::parse(packet).map_err(|_| IngestError::MalformedRtp)?;
        if self.ssrc != Some(rtp.ssrc()) {
            // A new source (the sender restarted): its numbers start over.
            self.ssrc = Some(rtp.ssrc());
            self.extender = RtpExtender::default();
        }
        let pt = rtp.payload_type();
        if Some(pt) == self.flow.dtmf_payload_type {
            let payload = rtp.payload();
            if payload.len() < 4 {
                return Err(IngestError::MalformedRtp);
            }
            let ts = self.extender.extend_timestamp(rtp.timestamp());
            self.extender.extend_seq(rtp.sequence_number());
            // RFC 4733 §2.3: event, E|R|volume, duration (16 bits).
            return Ok(NativePacket::Event {
                rtp_time: ts,
                event: payload[0],
                end: payload[1] & 0x80 != 0,
                duration: u16::from_be_bytes([payload[2], payload[3]]),
            });
        }
        if pt != self.flow.payload_type {
            return Err(IngestError::UnexpectedPayloadType);
        }
        let seq = self.extender.extend_seq(rtp.sequence_number());
        let ts = self.extender.extend_timestamp(rtp.timestamp());
        let rtp_time = rescale_to_48k(ts, self.flow.codec.clock_rate());
        let payload = rtp.payload();
        if payload.is_empty() {
            return Err(IngestError::MalformedRtp);
        }
        let frame = |offset: u64, payload: Arc<[u8]>| AudioFrame {
            rtp_time: rtp_time + offset,
            seq_first: seq,
            seq_last: seq,
            arrival,
            payload,
            voice: VoiceHint::from_extension(None, None),
        };
        match self.to_opus.as_mut() {
            None => Ok(NativePacket::Audio(vec![frame(0, Arc::from(payload))])),
            Some(to_opus) => {
                let pieces = to_opus
                    .transcode(payload)
                    .map_err(|_| IngestError::Transcode)?;
                Ok(NativePacket::Audio(
                    pieces
                        .into_iter()
                        .map(|p| frame(p.offset, p.payload))
                        .collect(),
                ))
            }
        }
    }
}
