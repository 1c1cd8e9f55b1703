//! Telephone codecs to Opus, once, on the way in.
//!
//! Every track Hearken writes is Ogg Opus, and every sink downstream of the
//! conference takes Opus frames. Native and SIP participants may send G.711
//! (PCMU, PCMA) or G.722; their packets are decoded here (ezk's ports of
//! the ITU reference codecs) and encoded to Opus at the codec's own sample
//! rate (8 kHz for G.711, 16 kHz for G.722), so nothing is resampled and
//! nothing is encoded twice. Opus arrives as Opus and is passed through
//! untouched.

use std::sync::Arc;

use ezk_g722::libg722::Bitrate;
use hearken_core::conference::SourcePcm;

/// An audio codec as it travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireCodec {
    /// Opus (RFC 7587), 48 kHz RTP clock.
    Opus,
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// G.722 at 64 kbit/s: 16 kHz audio, 8 kHz RTP clock (RFC 3551 §4.5.2).
    G722,
}

impl WireCodec {
    /// The lowercase name (API, `call.json`, metric labels).
    pub fn name(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Pcmu => "pcmu",
            Self::Pcma => "pcma",
            Self::G722 => "g722",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Opus => 48_000,
            Self::Pcmu | Self::Pcma | Self::G722 => 8_000,
        }
    }

    /// The sample rate of the decoded audio.
    pub(crate) fn audio_rate(self) -> u32 {
        match self {
            Self::Opus => 48_000,
            Self::Pcmu | Self::Pcma => 8_000,
            Self::G722 => 16_000,
        }
    }

    /// Whether the recording is Opus encoded from this codec.
    pub fn is_transcoded(self) -> bool {
        self != Self::Opus
    }
}

/// One Opus frame made from (part of) a received packet.
#[derive(Debug, Clone)]
pub struct OpusPiece {
    /// Where it starts after the packet's first sample, in 48 kHz samples.
    pub offset: u64,
    /// The Opus packet.
    pub payload: Arc<[u8]>,
    /// The decoded audio it was made from, at the codec's own rate (what
    /// transcription takes, rather than decoding the Opus again).
    pub source: SourcePcm,
}

/// Why a packet could not be turned into Opus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The packet holds less than 2.5 ms of audio, Opus's shortest frame.
    #[error("a packet of {0} samples is shorter than an Opus frame")]
    TooShort(usize),
    /// libopus refused.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Decodes one participant's telephone-codec packets and encodes them to
/// Opus (one encoder per participant: Opus keeps state between frames).
pub struct ToOpus {
    codec: WireCodec,
    encoder: opus::Encoder,
    g722: Option<ezk_g722::libg722::decoder::Decoder>,
    pcm: Vec<i16>,
    out: Vec<u8>,
}

impl std::fmt::Debug for ToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToOpus")
            .field("codec", &self.codec)
            .finish()
    }
}

/// Largest Opus packet we produce (libopus's recommended buffer).
const MAX_OPUS_PACKET: usize = 4000;

impl ToOpus {
    /// A transcoder for `codec`; `None` for Opus, which needs none.
    pub fn new(codec: WireCodec) -> Result<Option<Self>, TranscodeError> {
        if codec == WireCodec::Opus {
            return Ok(None);
        }
        let mut encoder = opus::Encoder::new(
            codec.audio_rate(),
            opus::Channels::Mono,
            opus::Application::Voip,
        )?;
        // Telephone audio carries little above 4 (G.711) or 7 kHz (G.722):
        // these rates keep it as it was at a fraction of the file size.
        let bitrate = match codec {
            WireCodec::G722 => 32_000,
            _ => 24_000,
        };
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        let g722 = (codec == WireCodec::G722)
            .then(|| ezk_g722::libg722::decoder::Decoder::new(Bitrate::Mode1_64000, false, false));
        Ok(Some(Self {
            codec,
            encoder,
            g722,
            pcm: Vec::with_capacity(960),
            out: vec![0; MAX_OPUS_PACKET],
        }))
    }

    /// Turns one packet's payload into Opus frames: one for the usual
    /// 10, 20, 40 or 60 ms packets; several for other lengths (30 ms is
    /// 20 + 10). A remainder shorter than 2.5 ms is dropped.
    pub fn transcode(&mut self, payload: &[u8]) -> Result<Vec<OpusPiece>, TranscodeError> {
        self.pcm.clear();
        match self.codec {
            WireCodec::Pcmu => self
                .pcm
                .extend(payload.iter().map(|&b| ezk_g711::mulaw::decode(b))),
            WireCodec::Pcma => self
                .pcm
                .extend(payload.iter().map(|&b| ezk_g711::alaw::decode(b))),
            WireCodec::G722 => {
                if let Some(decoder) = self.g722.as_mut() {
                    self.pcm.extend(decoder.decode(payload));
                }
            }
            WireCodec::Opus => return Ok(Vec::new()),
        }
        let rate = self.codec.audio_rate() as usize;
        // Opus frame lengths, longest first: 60, 40, 20, 10, 5, 2.5 ms.
        let sizes = [60, 40, 20, 10, 5].map(|ms| rate * ms / 1000);
        let smallest = rate / 400;
        if self.pcm.len() < smallest {
            return Err(TranscodeError::TooShort(self.pcm.len()));
        }
        let to_48k = (48_000 / rate) as u64;
        let mut pieces = Vec::with_capacity(1);
        let mut at = 0;
        while self.pcm.len() - at >= smallest {
            let left = self.pcm.len() - at;
            let size = sizes.into_iter().find(|&s| s <= left).unwrap_or(smallest);
            let n = self
                .encoder
                .encode(&self.pcm[at..at + size], &mut self.out)?;
            pieces.push(OpusPiece {
                offset: at as u64 * to_48k,
                payload: Arc::from(&self.out[..n]),
                source: SourcePcm {
                    rate: rate as u32,
                    samples: Arc::from(&self.pcm[at..at + size]),
                },
            });
            at += size;
        }
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One G.711 µ-law byte per sample; 0xFF is µ-law's positive zero
    /// (ITU-T G.711 table 2a), so a packet of it is silence.
    #[test]
    fn a_20_ms_pcmu_packet_is_one_20_ms_opus_frame() {
        let mut t = ToOpus::new(WireCodec::Pcmu).unwrap().unwrap();
        let pieces = t.transcode(&[0xFF; 160]).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].offset, 0);
        // RFC 6716 §3.1: the TOC's config says the frame length; decode it
        // with libopus at 48 kHz to count samples.
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5760];
        let n = dec.decode(&pieces[0].payload, &mut pcm, false).unwrap();
        assert_eq!(n, 960, "20 ms at 48 kHz");
    }

    #[test]
    fn a_30_ms_packet_becomes_20_then_10_ms() {
        let mut t = ToOpus::new(WireCodec::Pcma).unwrap().unwrap();
        let pieces = t.transcode(&[0xD5; 240]).unwrap();
        let offsets: Vec<u64> = pieces.iter().map(|p| p.offset).collect();
        // 20 ms = 960 samples at 48 kHz.
        assert_eq!(offsets, vec![0, 960]);
    }

    #[test]
    fn a_tone_survives_g711_to_opus() {
        // A 1 kHz tone at half scale through µ-law and Opus keeps its
        // energy: RMS of a sine is amplitude / sqrt(2) ≈ 11585 for 16384.
        let mut t = ToOpus::new(WireCodec::Pcmu).unwrap().unwrap();
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut out = Vec::new();
        for packet in 0..25 {
            let payload: Vec<u8> = (0..160)
                .map(|i| {
                    let n = (packet * 160 + i) as f64;
                    let x = 16384.0 * (2.0 * std::f64::consts::PI * 1000.0 * n / 8000.0).sin();
                    ezk_g711::mulaw::encode(x as i16)
                })
                .collect();
            for piece in t.transcode(&payload).unwrap() {
                let mut pcm = vec![0i16; 5760];
                let n = dec.decode(&piece.payload, &mut pcm, false).unwrap();
                out.extend_from_slice(&pcm[..n]);
            }
        }
        assert_eq!(out.len(), 25 * 960);
        // Skip the codec's start-up; measure the last 200 ms.
        let tail = &out[out.len() - 9600..];
        let rms =
            (tail.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        assert!((rms - 11585.0).abs() < 11585.0 * 0.15, "rms {rms}");
    }

    #[test]
    fn g722_decodes_at_16_khz() {
        let mut t = ToOpus::new(WireCodec::G722).unwrap().unwrap();
        // 20 ms of G.722 at 64 kbit/s is 160 bytes holding 320 samples.
        let pieces = t.transcode(&[0x00; 160]).unwrap();
        assert_eq!(pieces.len(), 1);
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5760];
        assert_eq!(
            dec.decode(&pieces[0].payload, &mut pcm, false).unwrap(),
            960
        );
    }

    #[test]
    fn too_short_a_packet_is_an_error() {
        let mut t = ToOpus::new(WireCodec::Pcmu).unwrap().unwrap();
        assert!(matches!(
            t.transcode(&[0xFF; 10]),
            Err(TranscodeError::TooShort(10))
        ));
        assert!(ToOpus::new(WireCodec::Opus).unwrap().is_none());
    }
}
