//! A SIP dialog's media inside the engine: one participant on plain RTP
//! (RTP/AVP, no SRTP), over the worker's own UDP socket.
//!
//! The signalling (`crate::ingest::sip`) negotiates the codec and the
//! caller's RTP address; the engine routes datagrams from exactly that
//! address to the dialog (anything else is unrouted and counted), parses
//! them like a native flow ([`PlainSpeaker`]), and sends the consent
//! prompts back to that same address (symmetric RTP) in the negotiated
//! codec: the prompts are Opus, rendered once per node and codec
//! ([`TelephonePrompts`]: decoded at the codec's own rate, libopus
//! resampling, and encoded to G.711 or G.722), or sent as they are when the
//! dialog speaks Opus. While the caller holds the call (`sendonly` or
//! `inactive`), nothing is sent and prompts wait for the resume.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hearken_core::conference::ParticipantIdx;
use hearken_core::consent::engine::PromptKind;
use hearken_core::ids::CallId;
use hearken_core::prompt::PromptSet;
use tracing::Span;

use super::command::{SipDirection, SipMedia};
use super::plain_rtp::PlainSpeaker;
use super::playback::{Playback, PromptLine, prompt_of};
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

/// Why the prompts could not be rendered in a dialog's codec, or a packet
/// of them is missing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// libopus refused a prompt packet.
    #[error("rendering the prompts as {codec}: {message}")]
    Render {
        /// The codec's name.
        codec: &'static str,
        /// libopus's error.
        message: String,
    },
    /// The prompt has no packet at this index.
    #[error("{prompt:?} has no packet {index}")]
    Missing {
        /// Which prompt.
        prompt: PromptKind,
        /// The packet asked for.
        index: usize,
    },
}

/// The consent prompts in one telephone codec: one RTP payload per prompt
/// packet.
#[derive(Debug)]
pub(crate) struct RenderedPrompts {
    /// Notice, consent request, thanks, stopped (the order of
    /// [`Self::KINDS`]).
    by_kind: [Vec<Box<[u8]>>; 4],
}

impl RenderedPrompts {
    const KINDS: [PromptKind; 4] = [
        PromptKind::Notice,
        PromptKind::ConsentRequest,
        PromptKind::Thanks,
        PromptKind::Stopped,
    ];

    /// Every prompt of `prompts` decoded at `codec`'s rate and encoded in
    /// it, each from a fresh decoder and encoder (a prompt starts a
    /// talkspurt after silence).
    fn render(prompts: &PromptSet, codec: WireCodec) -> Result<Self, SendError> {
        let failed = |e: opus::Error| SendError::Render {
            codec: codec.name(),
            message: e.to_string(),
        };
        // The codec's own rate: libopus decodes straight to it.
        let rate = codec.audio_rate();
        // 120 ms, the most one Opus packet holds, at the rate decoded.
        let mut pcm = vec![0i16; rate as usize * 120 / 1000];
        let mut by_kind: [Vec<Box<[u8]>>; 4] = Default::default();
        for (kind, out) in Self::KINDS.into_iter().zip(&mut by_kind) {
            let mut decoder = opus::Decoder::new(rate, opus::Channels::Mono).map_err(failed)?;
            let mut g722 = (codec == WireCodec::G722).then(|| {
                ezk_g722::libg722::encoder::Encoder::new(
                    ezk_g722::libg722::Bitrate::Mode1_64000,
                    false,
                    false,
                )
            });
            for packet in &prompt_of(prompts, kind).packets {
                let n = decoder
                    .decode(&packet.data, &mut pcm, false)
                    .map_err(failed)?;
                let pcm = &pcm[..n];
                let payload: Vec<u8> = match (codec, g722.as_mut()) {
                    (WireCodec::Pcma, _) => {
                        pcm.iter().map(|&s| ezk_g711::alaw::encode(s)).collect()
                    }
                    (WireCodec::G722, Some(encoder)) => encoder.encode(pcm),
                    _ => pcm.iter().map(|&s| ezk_g711::mulaw::encode(s)).collect(),
                };
                out.push(payload.into_boxed_slice());
            }
        }
        Ok(Self { by_kind })
    }

    fn payload(&self, kind: PromptKind, index: usize) -> Option<&[u8]> {
        let k = Self::KINDS.iter().position(|&k| k == kind)?;
        self.by_kind[k].get(index).map(|p| &p[..])
    }
}

/// The consent prompts as the telephone codecs carry them, rendered once per
/// node and codec, on first use, and shared by every SIP dialog: rendering
/// them per dialog cost each caller a libopus decoder (18 KB) and a decode
/// per prompt packet, and every caller hears the same packets.
#[derive(Debug)]
pub struct TelephonePrompts {
    prompts: Arc<PromptSet>,
    pcmu: OnceLock<Result<Arc<RenderedPrompts>, SendError>>,
    pcma: OnceLock<Result<Arc<RenderedPrompts>, SendError>>,
    g722: OnceLock<Result<Arc<RenderedPrompts>, SendError>>,
}

impl TelephonePrompts {
    /// Nothing rendered yet.
    pub fn new(prompts: Arc<PromptSet>) -> Self {
        Self {
            prompts,
            pcmu: OnceLock::new(),
            pcma: OnceLock::new(),
            g722: OnceLock::new(),
        }
    }

    /// Renders every telephone codec now, so that no media worker waits for
    /// it on a dialog's first prompt (the server does this on a thread of
    /// its own at start).
    pub fn render_all(&self) {
        for codec in [WireCodec::Pcmu, WireCodec::Pcma, WireCodec::G722] {
            if let Err(e) = self.rendered(codec) {
                tracing::warn!(error = %e, "consent prompts not rendered for telephone callers");
            }
        }
    }

    /// The prompts in `codec`; `Ok(None)` for Opus, which is sent as it is.
    pub(crate) fn rendered(
        &self,
        codec: WireCodec,
    ) -> Result<Option<Arc<RenderedPrompts>>, SendError> {
        let cell = match codec {
            WireCodec::Opus => return Ok(None),
            WireCodec::Pcmu => &self.pcmu,
            WireCodec::Pcma => &self.pcma,
            WireCodec::G722 => &self.g722,
        };
        cell.get_or_init(|| RenderedPrompts::render(&self.prompts, codec).map(Arc::new))
            .clone()
            .map(Some)
    }
}

/// Writes RTP to a SIP caller: one SSRC, sequence numbers running on
/// across prompts, timestamps in the codec's clock.
pub(crate) struct RtpSender {
    codec: WireCodec,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    /// The prompts in the dialog's codec; `None` for Opus.
    rendered: Option<Arc<RenderedPrompts>>,
    /// The next packet starts a talkspurt (RFC 3551 §4.1: the marker bit).
    talkspurt: bool,
}

impl RtpSender {
    /// A sender for `media`'s codec, with the node's prompts in it.
    pub fn new(media: &SipMedia, ssrc: u32, prompts: &TelephonePrompts) -> Result<Self, SendError> {
        Ok(Self {
            codec: media.codec,
            payload_type: media.payload_type,
            ssrc,
            seq: 0,
            rendered: prompts.rendered(media.codec)?,
            talkspurt: true,
        })
    }

    /// Marks the next packet as the start of a talkspurt (a new prompt
    /// after silence).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt = true;
    }

    /// One RTP packet carrying packet `index` of `prompt` (the Opus packet
    /// `opus`), whose first sample is at `rtp_time_48k`, in the dialog's
    /// codec.
    pub fn packet(
        &mut self,
        rtp_time_48k: u64,
        prompt: PromptKind,
        index: usize,
        opus: &[u8],
    ) -> Result<Vec<u8>, SendError> {
        let payload = match &self.rendered {
            Some(rendered) => rendered
                .payload(prompt, index)
                .ok_or(SendError::Missing { prompt, index })?,
            None => opus,
        };
        let clock = self.codec.clock_rate();
        // The timestamp is the codec clock's, truncated to 32 bits.
        let timestamp = (rtp_time_48k * u64::from(clock) / 48_000) as u32;
        let mut out = Vec::with_capacity(12 + payload.len());
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
        out.extend_from_slice(payload);
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

    fn prompts() -> TelephonePrompts {
        let set = crate::setup::consent::load_prompts("en", None).expect("the built-in prompts");
        TelephonePrompts::new(Arc::new(set))
    }

    #[test]
    fn a_20_ms_prompt_packet_is_160_bytes_of_pcmu_at_8_khz_time() {
        let prompts = prompts();
        let mut sender = RtpSender::new(&media(WireCodec::Pcmu, 0), 0xdead_beef, &prompts).unwrap();
        let first = sender.packet(0, PromptKind::Notice, 0, &[]).unwrap();
        let second = sender.packet(960, PromptKind::Notice, 1, &[]).unwrap();
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
        let prompts = prompts();
        let mut sender = RtpSender::new(&media(WireCodec::G722, 9), 1, &prompts).unwrap();
        let p = sender.packet(0, PromptKind::Thanks, 0, &[]).unwrap();
        // RFC 3551 §4.5.2: 64 kbit/s, 16 kHz audio: 20 ms = 160 bytes.
        assert_eq!(p.len(), 12 + 160);
        assert_eq!(p[1] & 0x7f, 9);
    }

    #[test]
    fn opus_is_sent_as_it_is() {
        let prompts = prompts();
        let mut sender = RtpSender::new(&media(WireCodec::Opus, 111), 1, &prompts).unwrap();
        let opus = [0xfc, 0xff, 0xfe];
        let p = sender.packet(960, PromptKind::Notice, 7, &opus).unwrap();
        assert_eq!(&p[12..], &opus[..]);
        assert_eq!(
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            960,
            "48 kHz clock"
        );
    }

    /// Every packet of every prompt is there in each telephone codec, the
    /// notice is speech (not silence) once µ-law and A-law are decoded
    /// back by the G.711 tables, and the dialogs share one rendering.
    #[test]
    fn the_prompts_are_rendered_once_per_codec_with_every_packet() {
        let prompts = prompts();
        for codec in [WireCodec::Pcmu, WireCodec::Pcma, WireCodec::G722] {
            let rendered = prompts.rendered(codec).unwrap().unwrap();
            for kind in RenderedPrompts::KINDS {
                let packets = prompt_of(&prompts.prompts, kind).packets.len();
                assert!(packets > 0);
                assert!(
                    rendered.payload(kind, packets - 1).is_some(),
                    "{codec:?} {kind:?}"
                );
                assert!(
                    rendered.payload(kind, packets).is_none(),
                    "{codec:?} {kind:?}"
                );
            }
            let again = prompts.rendered(codec).unwrap().unwrap();
            assert!(Arc::ptr_eq(&rendered, &again), "{codec:?} rendered once");
        }
        for (codec, decode) in [
            (WireCodec::Pcmu, ezk_g711::mulaw::decode as fn(u8) -> i16),
            (WireCodec::Pcma, ezk_g711::alaw::decode),
        ] {
            let rendered = prompts.rendered(codec).unwrap().unwrap();
            let (mut energy, mut samples) = (0f64, 0usize);
            for payload in &rendered.by_kind[0] {
                for &b in payload.iter() {
                    energy += f64::from(decode(b)).powi(2);
                    samples += 1;
                }
            }
            let rms = (energy / samples as f64).sqrt();
            // Speech at a normal level is well above -50 dBFS (about 100).
            assert!(rms > 100.0, "{codec:?}: the notice's RMS is {rms:.0}");
        }
        assert!(prompts.rendered(WireCodec::Opus).unwrap().is_none());
    }

    #[test]
    fn a_packet_past_the_prompts_end_is_an_error_not_a_panic() {
        let prompts = prompts();
        let mut sender = RtpSender::new(&media(WireCodec::Pcma, 8), 1, &prompts).unwrap();
        assert!(matches!(
            sender.packet(0, PromptKind::Stopped, usize::MAX, &[]),
            Err(SendError::Missing { .. })
        ));
    }
}
