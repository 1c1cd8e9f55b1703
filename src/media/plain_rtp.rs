//! A speaker whose plain RTP Hearken parses itself: a native flow or a SIP
//! dialog (WHIP's RTP is str0m's). Parses with `rtp-types`, extends
//! sequence numbers and timestamps (`hearken_core::rtp`), takes RFC 4733
//! events apart, and makes telephone codecs into Opus ([`ToOpus`]) so the
//! conference gets the same [`AudioFrame`]s from every ingest.

use std::sync::Arc;
use std::time::Instant;

use hearken_core::conference::{AudioFrame, ParticipantIdx};
use hearken_core::dtmf::DtmfAssembler;
use hearken_core::rtp::{RtpExtender, rescale_to_48k};
use hearken_core::voice::VoiceHint;
use tracing::Span;

use super::native::NativeFlow;
use super::transcode::{ToOpus, TranscodeError};
use crate::metrics::IngestError;

/// A speaker on plain RTP: what its flow (or dialog) negotiated, and the
/// state of its stream.
pub(crate) struct PlainSpeaker {
    pub participant: ParticipantIdx,
    pub flow: NativeFlow,
    extender: RtpExtender,
    /// RTP packets of this source that were not its audio (telephone
    /// events, other payload types): they share the sequence numbers, so
    /// the conference, which counts gaps as loss, sees audio numbers with
    /// them taken out.
    not_audio: u64,
    ssrc: Option<u32>,
    to_opus: Option<ToOpus>,
    pub dtmf: Option<DtmfAssembler>,
    pub span: Span,
}

impl PlainSpeaker {
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
            not_audio: 0,
            ssrc: None,
            dtmf: None,
            span,
        })
    }
}

/// What one packet of a flow carried.
#[derive(Debug)]
pub(crate) enum PlainPacket {
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

impl PlainSpeaker {
    /// Parses one RTP packet of this flow.
    pub fn handle_packet(
        &mut self,
        packet: &[u8],
        arrival: Instant,
    ) -> Result<PlainPacket, IngestError> {
        // RFC 5761 §4: RTCP packet types 200..=204 read as RTP payload types
        // 72..=76 (with the marker bit); RTP audio never uses 64..=95.
        if packet.len() >= 2 && (192..=223).contains(&packet[1]) {
            return Ok(PlainPacket::Rtcp);
        }
        let rtp = rtp_types::RtpPacket::parse(packet).map_err(|_| IngestError::MalformedRtp)?;
        if self.ssrc != Some(rtp.ssrc()) {
            // A new source (the sender restarted): its numbers start over.
            self.ssrc = Some(rtp.ssrc());
            self.extender = RtpExtender::default();
            self.not_audio = 0;
        }
        let pt = rtp.payload_type();
        if Some(pt) == self.flow.dtmf_payload_type {
            let payload = rtp.payload();
            if payload.len() < 4 {
                return Err(IngestError::MalformedRtp);
            }
            let ts = self.extender.extend_timestamp(rtp.timestamp());
            self.extender.extend_seq(rtp.sequence_number());
            self.not_audio += 1;
            // RFC 4733 §2.3: event, E|R|volume, duration (16 bits).
            return Ok(PlainPacket::Event {
                rtp_time: ts,
                event: payload[0],
                end: payload[1] & 0x80 != 0,
                duration: u16::from_be_bytes([payload[2], payload[3]]),
            });
        }
        if pt != self.flow.payload_type {
            self.extender.extend_seq(rtp.sequence_number());
            self.not_audio += 1;
            return Err(IngestError::UnexpectedPayloadType);
        }
        let seq = self
            .extender
            .extend_seq(rtp.sequence_number())
            .saturating_sub(self.not_audio);
        let ts = self.extender.extend_timestamp(rtp.timestamp());
        let rtp_time = rescale_to_48k(ts, self.flow.codec.clock_rate());
        let payload = rtp.payload();
        if payload.is_empty() {
            return Err(IngestError::MalformedRtp);
        }
        // A packet made into several Opus frames counts once: the pieces
        // after the first carry an empty sequence range.
        let frame = |offset: u64, payload: Arc<[u8]>, source| AudioFrame {
            rtp_time: rtp_time + offset,
            seq_first: if offset == 0 { seq } else { seq + 1 },
            seq_last: seq,
            arrival,
            payload,
            voice: VoiceHint::from_extension(None, None),
            source,
        };
        match self.to_opus.as_mut() {
            None => Ok(PlainPacket::Audio(vec![frame(0, Arc::from(payload), None)])),
            Some(to_opus) => {
                let pieces = to_opus
                    .transcode(payload)
                    .map_err(|_| IngestError::Transcode)?;
                Ok(PlainPacket::Audio(
                    pieces
                        .into_iter()
                        .map(|p| frame(p.offset, p.payload, Some(p.source)))
                        .collect(),
                ))
            }
        }
    }
}
