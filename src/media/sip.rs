//! A SIP dialog's media inside the engine: one participant on plain RTP
//! (RTP/AVP, no SRTP), over the worker's own UDP socket.
//!
//! The signalling (`crate::ingest::sip`) negotiates the codec and the
//! caller's RTP address; the engine routes datagrams from exactly that
//! address to the dialog (anything else is unrouted and counted), parses
//! them like a native flow ([`PlainSpeaker`]), and sends the consent
//! prompts back to that same address (symmetric RTP) in the negotiated
//! codec: the prompts are Opus, decoded here at the codec's own rate (libopus
//! resamples) and encoded to G.711 or G.722, or sent as they are when the
//! dialog speaks Opus. While the caller holds the call (`sendonly` or
//! `inactive`), nothing is sent and prompts wait for the resume.

use std::net::SocketAddr;
use std::time::Instant;

use hearken_core::conference::ParticipantIdx;
use hearken_core::consent::engine::PromptKind;
use hearken_core::ids::CallId;
use tracing::Span;

use super::command::{SipDirection, SipMedia};
use super::plain_rtp::PlainSpeaker;
use super::playback::{Playback, PromptLine};
use super::transcode::WireCodec;

/// A SIP dialog's media on one worker.
pub(crate) struct SipSession {
    pub call_id: CallId,
    pub secret: Box<str>,
    pub participant: ParticipantIdx,
    /// What was negotiated; `None` until the answer of a late offer.
    pub media: Option<SipMedia>,
    /// The caller's RTP, once the media is known.
    pub speaker: Option<PlainSpeaker>,
    /// Prompt packets to the caller, in the negotiated codec.
    pub sender: Option<RtpSender>,
    pub playbacks: Vec<Playback>,
    /// When the last prompt queued on the dialog ends.
    pub line: Option<PromptLine>,
    /// Prompts asked for while the caller held the call (or before the
    /// media was known): played on resume.
    pub waiting: Vec<PromptKind>,
    /// When a packet last arrived.
    pub last_input: Instant,
    /// The INVITE's source IP (see [`super::command::CreateSip`]).
    pub signalling_ip: Option<std::net::IpAddr>,
    /// RTP of the caller has arrived (the address is settled: no latching).
    pub heard: bool,
    /// The time of this session's live entry in the timer heap.
    pub scheduled: Option<Instant>,
    pub span: Span,
}

impl SipSession {
    /// Where its RTP comes from (and goes to), once known.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.media.as_ref().map(|m| m.remote_rtp)
    }

    /// Whether prompts can be heard now: media known, the caller receives
    /// and does not hold the call.
    pub fn can_hear(&self) -> bool {
        self.media
            .as_ref()
            .is_some_and(|m| matches!(m.direction, SipDirection::SendRecv | SipDirection::RecvOnly))
    }

    /// Whether the caller holds the call.
    pub fn on_hold(&self) -> bool {
        self.media.as_ref().is_some_and(|m| m.direction.is_hold())
    }
}

/// Why a prompt packet could not be made for the dialog's codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// libopus refused.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Writes RTP to a SIP caller: one SSRC, sequence numbers running on
/// across prompts, timestamps in the codec's clock.
pub(crate) struct RtpSender {
    codec: WireCodec,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    /// Decodes the Opus prompts at the codec's rate (G.711, G.722).
    decoder: Option<opus::Decoder>,
    g722: Option<ezk_g722::libg722::encoder::Encoder>,
    pcm: Vec<i16>,
    /// The next packet starts a talkspurt (RFC 3551 §4.1: the marker bit).
    talkspurt: bool,
}

impl RtpSender {
    /// A sender for `media`'s codec.
    pub fn new(media: &SipMedia, ssrc: u32) -> Result<Self, SendError> {
        let rate = match media.codec {
            WireCodec::Opus => None,
            WireCodec::Pcmu | WireCodec::Pcma => Some(8_000),
            WireCodec::G722 => Some(16_000),
        };
        let decoder = match rate {
            Some(r) => Some(opus::Decoder::new(r, opus::Channels::Mono)?),
            None => None,
        };
        let g722 = (media.codec == WireCodec::G722).then(|| {
            ezk_g722::libg722::encoder::Encoder::new(
                ezk_g722::libg722::Bitrate::Mode1_64000,
                false,
                false,
            )
        });
        Ok(Self {
            codec: media.codec,
            payload_type: media.payload_type,
            ssrc,
            seq: 0,
            decoder,
            g722,
            pcm: vec![0; 5760],
            talkspurt: true,
        })
    }

    /// Marks the next packet as the start of a talkspurt (a new prompt
    /// after silence).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt = true;
    }

    /// One RTP packet carrying the Opus prompt packet `opus` whose first
    /// sample is at `rtp_time_48k`, in the dialog's codec.
    pub fn packet(&mut self, rtp_time_48k: u64, opus: &[u8]) -> Result<Vec<u8>, SendError> {
        let clock = self.codec.clock_rate();
        // The timestamp is the codec clock's, truncated to 32 bits.
        let timestamp = (rtp_time_48k * u64::from(clock) / 48_000) as u32;
        let mut out = Vec::with_capacity(12 + 200);
        out.push(0x80);
        let marker = if std::mem::take(&mut self.talkspurt) {
            0x80
        } else {
            0
        };
        out.push(marker | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        let Some(decoder) = self.decoder.as_mut() else {
            out.extend_from_slice(opus);
            return Ok(out);
        };
        let n = decoder.decode(opus, &mut self.pcm, false)?;
        let pcm = &self.pcm[..n];
        match self.codec {
            WireCodec::Pcmu => out.extend(pcm.iter().map(|&s| ezk_g711::mulaw::encode(s))),
            WireCodec::Pcma => out.extend(pcm.iter().map(|&s| ezk_g711::alaw::encode(s))),
            WireCodec::G722 => {
                if let Some(encoder) = self.g722.as_mut() {
                    out.extend(encoder.encode(pcm));
                }
            }
            WireCodec::Opus => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(codec: WireCodec, pt: u8) -> SipMedia {
        SipMedia {
            remote_rtp: "127.0.0.1:4000".parse().unwrap(),
            codec,
            payload_type: pt,
            dtmf_payload_type: None,
            direction: SipDirection::SendRecv,
        }
    }

    fn silence_opus() -> Vec<u8> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.encode_vec(&[0i16; 960], 400).unwrap()
    }

    #[test]
    fn a_20_ms_prompt_packet_is_160_bytes_of_pcmu_at_8_khz_time() {
        let mut sender = RtpSender::new(&media(WireCodec::Pcmu, 0), 0xdead_beef).unwrap();
        let first = sender.packet(0, &silence_opus()).unwrap();
        let second = sender.packet(960, &silence_opus()).unwrap();
        // RFC 3550 §5.1 header: V=2; marker on the first packet; PT 0.
        assert_eq!(first[0], 0x80);
        assert_eq!(first[1], 0x80);
        assert_eq!(second[1], 0x00);
        assert_eq!(u16::from_be_bytes([second[2], second[3]]), 1, "seq runs on");
        // 960 samples at 48 kHz = 160 at 8 kHz (RFC 3551 §4.5.14).
        assert_eq!(
            u32::from_be_bytes([second[4], second[5], second[6], second[7]]),
            160
        );
        assert_eq!(&first[8..12], &0xdead_beef_u32.to_be_bytes());
        assert_eq!(first.len(), 12 + 160, "one µ-law byte per sample");
    }

    #[test]
    fn g722_packets_hold_320_samples_in_160_bytes() {
        let mut sender = RtpSender::new(&media(WireCodec::G722, 9), 1).unwrap();
        let p = sender.packet(0, &silence_opus()).unwrap();
        // RFC 3551 §4.5.2: 64 kbit/s, 16 kHz audio: 20 ms = 160 bytes.
        assert_eq!(p.len(), 12 + 160);
        assert_eq!(p[1] & 0x7f, 9);
    }

    #[test]
    fn opus_is_sent_as_it_is() {
        let mut sender = RtpSender::new(&media(WireCodec::Opus, 111), 1).unwrap();
        let opus = silence_opus();
        let p = sender.packet(960, &opus).unwrap();
        assert_eq!(&p[12..], &opus[..]);
        assert_eq!(
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            960,
            "48 kHz clock"
        );
    }
}
