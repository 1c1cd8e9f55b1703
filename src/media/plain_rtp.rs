//! A speaker whose plain RTP Hearken parses itself: a native flow or a SIP
//! dialog (WHIP's RTP is str0m's). Parses with `rtp-types`, extends
//! sequence numbers and timestamps (`hearken_core::rtp`), takes RFC 4733
//! events apart, and makes telephone codecs into Opus ([`ToOpus`]) so the
//! conference gets the same [`AudioFrame`]s from every ingest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Puts its audio back in sequence order.
    pub reorder: Reorder,
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
            reorder: Reorder::default(),
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
            self.reorder = Reorder::default();
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

/// Packets of one flow held while an earlier one is missing.
const REORDER_HELD: usize = 4;
/// The longest a packet waits for a missing earlier one.
const REORDER_WAIT: Duration = Duration::from_millis(60);

/// Puts a flow's audio back in sequence order before the timeline sees it.
///
/// Plain RTP may arrive out of order: over UDP, and with RoQ's stream per
/// frame, whose streams QUIC delivers independently (str0m does this for
/// WHIP). A packet in order goes through at once; behind a gap, packets
/// wait until the missing one comes, or until four are waiting or the
/// oldest has waited 60 ms (judged as packets arrive), when the gap counts
/// as lost. A packet older than what was let through goes on too: the
/// timeline judges it.
#[derive(Debug, Default)]
pub(crate) struct Reorder {
    next: Option<u64>,
    held: BTreeMap<u64, (Vec<AudioFrame>, Instant)>,
}

impl Reorder {
    /// The frames of packet `seq` (arrived `now`); returns what may go on,
    /// in order.
    pub fn push(&mut self, seq: u64, frames: Vec<AudioFrame>, now: Instant) -> Vec<AudioFrame> {
        let next = match self.next {
            None => {
                self.next = Some(seq + 1);
                return frames;
            }
            Some(next) => next,
        };
        if seq < next {
            return frames;
        }
        if seq == next && self.held.is_empty() {
            self.next = Some(seq + 1);
            return frames;
        }
        self.held.insert(seq, (frames, now));
        let mut out = Vec::new();
        while let Some(next) = self.next {
            if let Some((frames, _)) = self.held.remove(&next) {
                out.extend(frames);
                self.next = Some(next + 1);
                continue;
            }
            let Some((&first, (_, since))) = self.held.iter().next() else {
                break;
            };
            if self.held.len() >= REORDER_HELD
                || now.saturating_duration_since(*since) >= REORDER_WAIT
            {
                // The gap is lost: go on from the first packet held.
                self.next = Some(first);
                continue;
            }
            break;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(seq: u64, at: Instant) -> Vec<AudioFrame> {
        vec![AudioFrame {
            rtp_time: seq * 960,
            seq_first: seq,
            seq_last: seq,
            arrival: at,
            payload: Arc::from(&[0xF8u8][..]),
            voice: VoiceHint::default(),
            source: None,
        }]
    }

    fn seqs(out: &[AudioFrame]) -> Vec<u64> {
        out.iter().map(|f| f.seq_last).collect()
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let t = Instant::now();
        let mut r = Reorder::default();
        for s in 10..15 {
            assert_eq!(seqs(&r.push(s, frames(s, t), t)), vec![s]);
        }
    }

    #[test]
    fn a_swapped_pair_comes_out_in_order() {
        let t = Instant::now();
        let mut r = Reorder::default();
        assert_eq!(seqs(&r.push(1, frames(1, t), t)), vec![1]);
        assert_eq!(seqs(&r.push(3, frames(3, t), t)), Vec::<u64>::new());
        assert_eq!(seqs(&r.push(2, frames(2, t), t)), vec![2, 3]);
        assert_eq!(seqs(&r.push(4, frames(4, t), t)), vec![4]);
    }

    #[test]
    fn a_lost_packet_is_given_up_after_four_wait_or_60_ms() {
        let t = Instant::now();
        let mut r = Reorder::default();
        r.push(1, frames(1, t), t);
        // 2 never comes.
        for s in 3..6 {
            assert!(r.push(s, frames(s, t), t).is_empty(), "{s} waits for 2");
        }
        assert_eq!(seqs(&r.push(6, frames(6, t), t)), vec![3, 4, 5, 6]);
        // 8 never comes; 9 waits until a packet 60 ms later.
        r.push(7, frames(7, t), t);
        assert!(r.push(9, frames(9, t), t).is_empty());
        let later = t + Duration::from_millis(60);
        assert_eq!(seqs(&r.push(10, frames(10, later), later)), vec![9, 10]);
        // 2 and 8 come at last: on they go, for the timeline to judge.
        assert_eq!(seqs(&r.push(8, frames(8, later), later)), vec![8]);
    }
}
