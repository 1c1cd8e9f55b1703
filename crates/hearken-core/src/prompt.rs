//! Prompt audio, parsed once at start: an Ogg Opus file's bytes in, the 20 ms
//! Opus packets the bot sends unchanged into a call out.
//!
//! The shell reads `media/prompts/{lang}/{name}.opus` and hands the bytes to
//! [`Prompt::from_ogg_opus`] or [`PromptSet::from_files`]; nothing here touches
//! a file. Every packet must hold 20 ms of audio, because the worker paces
//! prompt packets every 20 ms and stamps each with 960 RTP timestamp units.
//!
//! The reader is a minimal RFC 3533 page reader (capture pattern, version,
//! CRC, lacing, continuation) for one logical stream, followed by the RFC 7845
//! checks: OpusHead (mono or stereo, mapping family 0), OpusTags, then audio.
//! Every audio packet is kept, pre-skip included: the receiving decoder plays
//! the pre-skip samples as a short lead-in, which is harmless for a prompt.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::ogg::crc32;
use super::opus::{OpusPacketError, packet_samples};

/// Samples (per channel at 48 kHz) every prompt packet must hold: 20 ms.
pub const PROMPT_PACKET_SAMPLES: u32 = 960;

/// Audio length of one prompt packet.
pub const PROMPT_PACKET_DURATION: Duration = Duration::from_millis(20);

/// The prompts of a language, as named on disk (`{name}.opus`), in the order
/// of the [`PromptSet`] fields.
pub const PROMPT_NAMES: [&str; 4] = ["notice", "consent_request", "thanks", "stopped"];

/// Fixed part of an Ogg page header, before the lacing values.
const PAGE_HEADER_LEN: usize = 27;
/// Byte range of the CRC in a page header.
const CRC_RANGE: std::ops::Range<usize> = 22..26;
/// Page header flag: the page begins with the rest of a packet.
const FLAG_CONTINUED: u8 = 0x01;
/// Page header flag: last page of the logical stream.
const FLAG_EOS: u8 = 0x04;
/// Length of an OpusHead packet of mapping family 0.
const OPUS_HEAD_LEN: usize = 19;

/// Why prompt bytes were refused. Every variant names the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The shell found no file for the prompt.
    #[error("prompt {prompt}: file missing")]
    Missing {
        /// The prompt.
        prompt: String,
    },
    /// The bytes hold no Ogg page at all.
    #[error("prompt {prompt}: empty file")]
    Empty {
        /// The prompt.
        prompt: String,
    },
    /// No Ogg capture pattern (`OggS`) where a page should start.
    #[error("prompt {prompt}: not an Ogg page at byte {offset}")]
    NotOgg {
        /// The prompt.
        prompt: String,
        /// Where the page should start.
        offset: usize,
    },
    /// A page with an Ogg stream structure version other than 0.
    #[error("prompt {prompt}: unsupported Ogg version {version} at byte {offset}")]
    OggVersion {
        /// The prompt.
        prompt: String,
        /// Where the page starts.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// The bytes end inside a page or a packet, or with no end-of-stream page.
    #[error("prompt {prompt}: truncated at byte {offset}")]
    Truncated {
        /// The prompt.
        prompt: String,
        /// Where the incomplete page or packet starts, or the length of the
        /// bytes when only the end-of-stream page is missing.
        offset: usize,
    },
    /// A page whose checksum does not match its bytes.
    #[error("prompt {prompt}: bad Ogg page checksum at byte {offset}")]
    Checksum {
        /// The prompt.
        prompt: String,
        /// Where the page starts.
        offset: usize,
    },
    /// A page's continuation flag disagrees with the page before it.
    #[error("prompt {prompt}: broken packet continuation at byte {offset}")]
    Continuation {
        /// The prompt.
        prompt: String,
        /// Where the page starts.
        offset: usize,
    },
    /// Pages of more than one logical stream (multiplexed or chained).
    #[error("prompt {prompt}: more than one Ogg stream (page at byte {offset})")]
    MultipleStreams {
        /// The prompt.
        prompt: String,
        /// Where the first page of another stream starts.
        offset: usize,
    },
    /// The first packet is not an OpusHead.
    #[error("prompt {prompt}: not an Ogg Opus file (no OpusHead)")]
    NotOpus {
        /// The prompt.
        prompt: String,
    },
    /// An OpusHead this player cannot use.
    #[error("prompt {prompt}: unsupported OpusHead: {reason}")]
    Head {
        /// The prompt.
        prompt: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The second packet is not an OpusTags.
    #[error("prompt {prompt}: OpusTags header missing")]
    MissingTags {
        /// The prompt.
        prompt: String,
    },
    /// No audio packet after the headers.
    #[error("prompt {prompt}: no audio")]
    NoAudio {
        /// The prompt.
        prompt: String,
    },
    /// An audio packet whose TOC gives no valid duration.
    #[error("prompt {prompt}: audio packet {index}: {error}")]
    Packet {
        /// The prompt.
        prompt: String,
        /// Index among the audio packets, from 0.
        index: usize,
        /// What is wrong with it.
        #[source]
        error: OpusPacketError,
    },
    /// An audio packet that does not hold exactly 20 ms.
    #[error(
        "prompt {prompt}: audio packet {index} holds {samples} samples, \
         not 20 ms (960); encode with 20 ms frames (opusenc --framesize 20)"
    )]
    FrameSize {
        /// The prompt.
        prompt: String,
        /// Index among the audio packets, from 0.
        index: usize,
        /// Samples per channel at 48 kHz the packet holds.
        samples: u32,
    },
}

/// One Opus packet of a prompt, sent unchanged as one RTP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPacket {
    /// The Opus packet.
    pub data: Arc<[u8]>,
    /// Samples per channel at 48 kHz: always [`PROMPT_PACKET_SAMPLES`].
    pub samples: u32,
}

/// A parsed prompt: its 20 ms Opus packets, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Name used in errors and logs, e.g. `en/notice`.
    pub name: String,
    /// Channels of the OpusHead: 1 or 2.
    pub channels: u8,
    /// Pre-skip of the OpusHead, samples at 48 kHz; informational, since every
    /// packet is sent.
    pub pre_skip: u16,
    /// The audio packets, in order.
    pub packets: Vec<PromptPacket>,
    /// Length when played: packets × 20 ms.
    pub duration: Duration,
}

impl Prompt {
    /// Parses an Ogg Opus file: one logical stream, OpusHead (1 or 2
    /// channels, mapping family 0), OpusTags, then audio packets of exactly
    /// 20 ms each. `name` names the prompt in errors.
    pub fn from_ogg_opus(name: &str, bytes: &[u8]) -> Result<Prompt, PromptError> {
        let prompt = || name.to_owned();
        let mut packets = OggPackets::new(name, bytes);

        let head = packets
            .next()
            .ok_or_else(|| PromptError::NotOpus { prompt: prompt() })??;
        let (channels, pre_skip) = parse_head(name, &head)?;

        match packets.next().transpose()? {
            Some(tags) if tags.starts_with(b"OpusTags") => {}
            _ => {
                return Err(PromptError::MissingTags { prompt: prompt() });
            }
        }

        let mut audio = Vec::new();
        for packet in packets {
            let packet = packet?;
            let index = audio.len();
            let samples = packet_samples(&packet).map_err(|error| PromptError::Packet {
                prompt: prompt(),
                index,
                error,
            })?;
            if samples != PROMPT_PACKET_SAMPLES {
                return Err(PromptError::FrameSize {
                    prompt: prompt(),
                    index,
                    samples,
                });
            }
            audio.push(PromptPacket {
                data: Arc::from(packet),
                samples,
            });
        }
        if audio.is_empty() {
            return Err(PromptError::NoAudio { prompt: prompt() });
        }
        let duration =
            PROMPT_PACKET_DURATION.saturating_mul(u32::try_from(audio.len()).unwrap_or(u32::MAX));
        Ok(Prompt {
            name: name.to_owned(),
            channels,
            pre_skip,
            packets: audio,
            duration,
        })
    }
}

/// The four prompts of one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSet {
    /// Language code, the folder name under `media/prompts/` (e.g. `en`).
    pub language: String,
    /// "This call is being recorded and transcribed…": played on join, when
    /// capture resumes, and to late joiners.
    pub notice: Prompt,
    /// "Press 1 to agree to being recorded, or 9 to decline."
    pub consent_request: Prompt,
    /// "Thank you."
    pub thanks: Prompt,
    /// "Recording has stopped."
    pub stopped: Prompt,
}

impl PromptSet {
    /// Parses a language's prompts. `read` gets each name of [`PROMPT_NAMES`]
    /// (e.g. `notice`) and returns the bytes of `{language}/{name}.opus`, or
    /// `None` if there is no such file. Prompts are named `{language}/{name}`
    /// in errors.
    pub fn from_files(
        language: &str,
        mut read: impl FnMut(&str) -> Option<Vec<u8>>,
    ) -> Result<PromptSet, PromptError> {
        let mut load = |name: &str| {
            let full = format!("{language}/{name}");
            match read(name) {
                Some(bytes) => Prompt::from_ogg_opus(&full, &bytes),
                None => Err(PromptError::Missing { prompt: full }),
            }
        };
        let [notice, consent_request, thanks, stopped] = PROMPT_NAMES;
        Ok(PromptSet {
            language: language.to_owned(),
            notice: load(notice)?,
            consent_request: load(consent_request)?,
            thanks: load(thanks)?,
            stopped: load(stopped)?,
        })
    }

    /// The prompts in the order of [`PROMPT_NAMES`].
    pub fn prompts(&self) -> [&Prompt; 4] {
        [
            &self.notice,
            &self.consent_request,
            &self.thanks,
            &self.stopped,
        ]
    }
}

/// Checks an OpusHead (RFC 7845 §5.1); returns its channel count and
/// pre-skip.
fn parse_head(name: &str, head: &[u8]) -> Result<(u8, u16), PromptError> {
    let bad = |reason| PromptError::Head {
        prompt: name.to_owned(),
        reason,
    };
    if !head.starts_with(b"OpusHead") {
        return Err(PromptError::NotOpus {
            prompt: name.to_owned(),
        });
    }
    let Some(&[version, channels, skip0, skip1, _, _, _, _, _, _, family]) =
        head.get(8..OPUS_HEAD_LEN)
    else {
        return Err(bad("shorter than 19 bytes"));
    };
    // Versions 0-15 share the format.
    if version > 15 {
        return Err(bad("version above 15"));
    }
    if family != 0 {
        return Err(bad("channel mapping family is not 0 (mono or stereo)"));
    }
    if !(1..=2).contains(&channels) {
        return Err(bad("channel count is not 1 or 2"));
    }
    Ok((channels, u16::from_le_bytes([skip0, skip1])))
}

/// Iterates over the packets of a single-stream Ogg file, checking every page.
struct OggPackets<'a> {
    name: &'a str,
    bytes: &'a [u8],
    /// Where the next page starts.
    offset: usize,
    /// Serial of the stream, from the first page.
    serial: Option<u32>,
    /// Packets completed on the current page, not yet returned.
    ready: std::collections::VecDeque<Vec<u8>>,
    /// A packet continued from an earlier page, and where that page starts.
    partial: Option<(Vec<u8>, usize)>,
    /// Whether the end-of-stream page was read.
    ended: bool,
    /// Whether an error was returned; the iterator then ends.
    failed: bool,
}

impl<'a> OggPackets<'a> {
    fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Self {
            name,
            bytes,
            offset: 0,
            serial: None,
            ready: std::collections::VecDeque::new(),
            partial: None,
            ended: false,
            failed: false,
        }
    }

    /// Reads the page at `offset` into `ready` / `partial`.
    fn read_page(&mut self) -> Result<(), PromptError> {
        let prompt = || self.name.to_owned();
        let at = self.offset;
        let rest = self.bytes.get(at..).unwrap_or_default();
        let truncated = || PromptError::Truncated {
            prompt: prompt(),
            offset: at,
        };
        if rest.len() < 4 || !rest.starts_with(b"OggS") {
            if rest.len() < 4 && b"OggS".starts_with(rest) {
                return Err(truncated());
            }
            return Err(PromptError::NotOgg {
                prompt: prompt(),
                offset: at,
            });
        }
        let header = rest.get(..PAGE_HEADER_LEN).ok_or_else(truncated)?;
        let version = header.get(4).copied().unwrap_or_default();
        if version != 0 {
            return Err(PromptError::OggVersion {
                prompt: prompt(),
                offset: at,
                version,
            });
        }
        let flags = header.get(5).copied().unwrap_or_default();
        let serial = read_u32(header, 14);
        let segments = usize::from(header.get(26).copied().unwrap_or_default());
        let lacing = rest
            .get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + segments)
            .ok_or_else(truncated)?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let page_len = PAGE_HEADER_LEN + segments + body_len;
        let page = rest.get(..page_len).ok_or_else(truncated)?;

        let mut zeroed = page.to_vec();
        if let Some(crc) = zeroed.get_mut(CRC_RANGE) {
            crc.fill(0);
        }
        if crc32(&zeroed) != read_u32(page, CRC_RANGE.start) {
            return Err(PromptError::Checksum {
                prompt: prompt(),
                offset: at,
            });
        }
        match self.serial {
            None => self.serial = Some(serial),
            Some(s) if s != serial || self.ended => {
                return Err(PromptError::MultipleStreams {
                    prompt: prompt(),
                    offset: at,
                });
            }
            Some(_) => {}
        }
        if (flags & FLAG_CONTINUED != 0) != self.partial.is_some() {
            return Err(PromptError::Continuation {
                prompt: prompt(),
                offset: at,
            });
        }

        let mut body = page.get(PAGE_HEADER_LEN + segments..).unwrap_or_default();
        for &len in lacing {
            let (chunk, tail) = body.split_at(usize::from(len).min(body.len()));
            body = tail;
            let (packet, _) = self.partial.get_or_insert_with(|| (Vec::new(), at));
            packet.extend_from_slice(chunk);
            // A lacing value below 255 ends the packet.
            if len < 255
                && let Some((packet, _)) = self.partial.take()
            {
                self.ready.push_back(packet);
            }
        }
        self.offset = at + page_len;
        self.ended = flags & FLAG_EOS != 0;
        Ok(())
    }
}

impl Iterator for OggPackets<'_> {
    type Item = Result<Vec<u8>, PromptError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(packet) = self.ready.pop_front() {
                return Some(Ok(packet));
            }
            if self.offset >= self.bytes.len() {
                let error = if let Some((_, offset)) = self.partial {
                    PromptError::Truncated {
                        prompt: self.name.to_owned(),
                        offset,
                    }
                } else if self.serial.is_none() {
                    PromptError::Empty {
                        prompt: self.name.to_owned(),
                    }
                } else if !self.ended {
                    PromptError::Truncated {
                        prompt: self.name.to_owned(),
                        offset: self.offset,
                    }
                } else {
                    return None;
                };
                self.failed = true;
                return Some(Err(error));
            }
            if let Err(error) = self.read_page() {
                self.failed = true;
                return Some(Err(error));
            }
        }
    }
}

/// Little-endian u32 at `at`, 0 if out of range (callers check lengths).
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

// Tests read the shipped prompt files and pick a real Instant to start
// simulated time from; the code under test does neither.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::ogg::{OggOpusWriter, OpusHead};
    use proptest::prelude::*;
    use std::path::PathBuf;

    const LANGUAGES: [&str; 4] = ["en", "es", "fr", "de"];

    fn prompts_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../media/prompts")
    }

    fn load(language: &str) -> Result<PromptSet, PromptError> {
        let dir = prompts_dir().join(language);
        PromptSet::from_files(language, |name| {
            std::fs::read(dir.join(format!("{name}.opus"))).ok()
        })
    }

    fn committed(language: &str, name: &str) -> Vec<u8> {
        std::fs::read(prompts_dir().join(language).join(format!("{name}.opus"))).unwrap()
    }

    /// A tone with some movement, so the encoder has something to code.
    fn pcm(samples: usize, channels: usize) -> Vec<i16> {
        (0..samples * channels)
            .map(|i| {
                let t = (i / channels) as f64 / 48_000.0;
                let f = 300.0 + 200.0 * (t * 3.0).sin();
                ((t * f * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    /// Encodes `frames` frames of `frame_samples` each and muxes them with
    /// the project's Ogg writer.
    fn encoded(frame_samples: &[usize], channels: u8) -> (Vec<u8>, Vec<Vec<u8>>) {
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut encoder = opus::Encoder::new(48_000, ch, opus::Application::Voip).unwrap();
        let head = OpusHead {
            channels,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let mut writer = OggOpusWriter::new(7, &head, "test", &[]);
        let mut packets = Vec::new();
        for &n in frame_samples {
            let packet = encoder
                .encode_vec(&pcm(n, usize::from(channels)), 4000)
                .unwrap();
            writer.push_packet(&packet, n as u32).unwrap();
            packets.push(packet);
        }
        writer.finish();
        (writer.poll_output(), packets)
    }

    /// One page from raw lacing values and body, with a valid CRC.
    fn raw_page(flags: u8, serial: u32, sequence: u32, lacing: &[u8], body: &[u8]) -> Vec<u8> {
        let mut page = b"OggS".to_vec();
        page.push(0);
        page.push(flags);
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(lacing.len() as u8);
        page.extend_from_slice(lacing);
        page.extend_from_slice(body);
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// One page holding whole packets.
    fn page(flags: u8, serial: u32, sequence: u32, packets: &[&[u8]]) -> Vec<u8> {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for p in packets {
            lacing.extend(std::iter::repeat_n(255, p.len() / 255));
            lacing.push((p.len() % 255) as u8);
            body.extend_from_slice(p);
        }
        raw_page(flags, serial, sequence, &lacing, &body)
    }

    fn head_bytes(channels: u8, family: u8) -> Vec<u8> {
        let mut head = OpusHead {
            channels,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
        }
        .to_bytes()
        .to_vec();
        head[18] = family;
        head
    }

    const TAGS: &[u8] = b"OpusTags\x04\x00\x00\x00test\x00\x00\x00\x00";
    /// A CELT fullband 20 ms mono packet (config 31, code 0).
    const AUDIO: &[u8] = &[0xF8, 0xFF, 0xFE];

    /// A stream of the given packets after a good head and tags, one page each,
    /// the last one EOS.
    fn stream(head: &[u8], rest: &[&[u8]]) -> Vec<u8> {
        let mut bytes = page(0x02, 1, 0, &[head]);
        for (i, p) in rest.iter().enumerate() {
            let eos = if i + 1 == rest.len() { 0x04 } else { 0 };
            bytes.extend(page(eos, 1, i as u32 + 1, &[p]));
        }
        bytes
    }

    #[test]
    fn every_committed_prompt_parses() {
        for language in LANGUAGES {
            let set = load(language).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(set.language, language);
            for (prompt, name) in set.prompts().into_iter().zip(PROMPT_NAMES) {
                assert_eq!(prompt.name, format!("{language}/{name}"));
                assert_eq!(prompt.channels, 1, "{}", prompt.name);
                let secs = prompt.duration.as_secs_f64();
                eprintln!("{}: {secs:.2} s", prompt.name);
                assert!(secs > 0.5 && secs < 10.0, "{}: {secs} s", prompt.name);
                assert_eq!(
                    prompt.duration,
                    PROMPT_PACKET_DURATION * prompt.packets.len() as u32
                );
                assert!(prompt.packets.iter().all(|p| p.samples == 960));
            }
            // Short (the opt-out window starts when it ends), yet it says
            // how to object: press 9, or leave.
            assert!(
                set.notice.duration <= Duration::from_millis(7_500),
                "{language} notice is {:?}",
                set.notice.duration
            );
        }
    }

    #[test]
    fn a_committed_prompt_decodes_to_speech() {
        let prompt = Prompt::from_ogg_opus("en/notice", &committed("en", "notice")).unwrap();
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut out = vec![0i16; 960];
        let mut energy = 0f64;
        let mut samples = 0usize;
        for packet in &prompt.packets {
            let n = decoder.decode(&packet.data, &mut out, false).unwrap();
            assert_eq!(n, 960);
            energy += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            samples += n;
        }
        let rms = (energy / samples as f64).sqrt();
        assert!(rms > 500.0, "rms {rms}");
    }

    #[test]
    fn packets_round_trip_with_head_fields() {
        let (bytes, packets) = encoded(&[960; 50], 2);
        let prompt = Prompt::from_ogg_opus("test", &bytes).unwrap();
        assert_eq!(prompt.name, "test");
        assert_eq!(prompt.channels, 2);
        assert_eq!(prompt.pre_skip, 312);
        assert_eq!(prompt.duration, Duration::from_secs(1));
        let got: Vec<&[u8]> = prompt.packets.iter().map(|p| &*p.data).collect();
        let want: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn other_frame_sizes_are_rejected() {
        for n in [480, 1920, 2880] {
            let (bytes, _) = encoded(&[n; 10], 1);
            let err = Prompt::from_ogg_opus("en/notice", &bytes).unwrap_err();
            assert_eq!(
                err,
                PromptError::FrameSize {
                    prompt: "en/notice".to_owned(),
                    index: 0,
                    samples: n as u32
                }
            );
            let text = err.to_string();
            assert!(
                text.contains("en/notice") && text.contains("packet 0"),
                "{text}"
            );
        }
        // One odd packet in the middle is found by its index.
        let mut sizes = vec![960; 10];
        sizes[5] = 1920;
        let (bytes, _) = encoded(&sizes, 1);
        assert!(matches!(
            Prompt::from_ogg_opus("x", &bytes),
            Err(PromptError::FrameSize {
                index: 5,
                samples: 1920,
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = committed("fr", "thanks");
        assert!(Prompt::from_ogg_opus("fr/thanks", &bytes).is_ok());
        for cut in 0..bytes.len() {
            assert!(
                Prompt::from_ogg_opus("fr/thanks", &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        // Cut inside the last page: truncated where that page starts.
        let last_page = crate::ogg::tests::pages(&bytes)
            .iter()
            .rev()
            .nth(1)
            .map(|p| p.end)
            .unwrap();
        assert_eq!(
            Prompt::from_ogg_opus("fr/thanks", &bytes[..bytes.len() - 1]),
            Err(PromptError::Truncated {
                prompt: "fr/thanks".to_owned(),
                offset: last_page
            })
        );
    }

    #[test]
    fn a_stream_without_its_end_page_is_truncated() {
        let bytes = stream(&head_bytes(1, 0), &[TAGS, AUDIO, AUDIO]);
        assert!(Prompt::from_ogg_opus("x", &bytes).is_ok());
        // The same pages with the EOS flag cleared.
        let mut bytes = page(0x02, 1, 0, &[&head_bytes(1, 0)]);
        bytes.extend(page(0, 1, 1, &[TAGS]));
        bytes.extend(page(0, 1, 2, &[AUDIO, AUDIO]));
        let len = bytes.len();
        assert_eq!(
            Prompt::from_ogg_opus("x", &bytes),
            Err(PromptError::Truncated {
                prompt: "x".to_owned(),
                offset: len
            })
        );
    }

    #[test]
    fn a_corrupt_page_fails_its_checksum() {
        let (mut bytes, _) = encoded(&[960; 10], 1);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(matches!(
            Prompt::from_ogg_opus("x", &bytes),
            Err(PromptError::Checksum { .. })
        ));
    }

    #[test]
    fn malformed_streams_give_named_errors() {
        let x = || "x".to_owned();
        let good = head_bytes(1, 0);
        let cases: Vec<(Vec<u8>, PromptError)> = vec![
            (Vec::new(), PromptError::Empty { prompt: x() }),
            (
                b"RIFF....WAVEfmt ".to_vec(),
                PromptError::NotOgg {
                    prompt: x(),
                    offset: 0,
                },
            ),
            (
                b"Og".to_vec(),
                PromptError::Truncated {
                    prompt: x(),
                    offset: 0,
                },
            ),
            (
                {
                    let mut b = stream(&good, &[TAGS, AUDIO]);
                    b[4] = 1;
                    b
                },
                PromptError::OggVersion {
                    prompt: x(),
                    offset: 0,
                    version: 1,
                },
            ),
            (
                stream(b"OpusHeax\x01\x01", &[TAGS, AUDIO]),
                PromptError::NotOpus { prompt: x() },
            ),
            (
                stream(&head_bytes(3, 0), &[TAGS, AUDIO]),
                PromptError::Head {
                    prompt: x(),
                    reason: "channel count is not 1 or 2",
                },
            ),
            (
                stream(&head_bytes(0, 0), &[TAGS, AUDIO]),
                PromptError::Head {
                    prompt: x(),
                    reason: "channel count is not 1 or 2",
                },
            ),
            (
                stream(&head_bytes(2, 1), &[TAGS, AUDIO]),
                PromptError::Head {
                    prompt: x(),
                    reason: "channel mapping family is not 0 (mono or stereo)",
                },
            ),
            (
                stream(&good[..18], &[TAGS, AUDIO]),
                PromptError::Head {
                    prompt: x(),
                    reason: "shorter than 19 bytes",
                },
            ),
            (
                stream(&good, &[AUDIO, AUDIO]),
                PromptError::MissingTags { prompt: x() },
            ),
            (
                page(0x06, 1, 0, &[&good]),
                PromptError::MissingTags { prompt: x() },
            ),
            (
                stream(&good, &[]),
                PromptError::Truncated {
                    prompt: x(),
                    offset: 47,
                },
            ),
            (stream(&good, &[TAGS]), PromptError::NoAudio { prompt: x() }),
            (
                stream(&good, &[TAGS, AUDIO, &[]]),
                PromptError::Packet {
                    prompt: x(),
                    index: 1,
                    error: OpusPacketError::Empty,
                },
            ),
            (
                {
                    let mut b = page(0x02, 1, 0, &[&good]);
                    b.extend(page(0, 2, 1, &[TAGS]));
                    b
                },
                PromptError::MultipleStreams {
                    prompt: x(),
                    offset: 47,
                },
            ),
            (
                {
                    // A chained stream with the same serial after the EOS page.
                    let mut b = stream(&good, &[TAGS, AUDIO]);
                    b.extend(page(0x06, 1, 0, &[&good]));
                    b
                },
                PromptError::MultipleStreams {
                    prompt: x(),
                    offset: stream(&good, &[TAGS, AUDIO]).len(),
                },
            ),
            (
                {
                    let mut b = page(0x02, 1, 0, &[&good]);
                    b.extend(raw_page(0x01, 1, 1, &[TAGS.len() as u8], TAGS));
                    b
                },
                PromptError::Continuation {
                    prompt: x(),
                    offset: 47,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Prompt::from_ogg_opus("x", &bytes), Err(want));
        }
    }

    #[test]
    fn packets_may_span_pages() {
        let big: Vec<u8> = std::iter::once(0xF8)
            .chain((0..600).map(|i| i as u8))
            .collect();
        let mut bytes = page(0x02, 1, 0, &[&head_bytes(2, 0)]);
        bytes.extend(page(0, 1, 1, &[TAGS]));
        // 600 bytes: two 255 lacing values on this page, the rest on the next.
        bytes.extend(raw_page(
            0,
            1,
            2,
            &[1, 255, 255],
            &[&[0xF8][..], &big[..510]].concat(),
        ));
        let tail = &big[510..];
        bytes.extend(raw_page(0x05, 1, 3, &[tail.len() as u8], tail));
        let prompt = Prompt::from_ogg_opus("x", &bytes).unwrap();
        assert_eq!(prompt.packets.len(), 2);
        assert_eq!(&*prompt.packets[0].data, &[0xF8]);
        assert_eq!(&*prompt.packets[1].data, &big[..]);
        // The continuation must be flagged.
        let mut unflagged = page(0x02, 1, 0, &[&head_bytes(2, 0)]);
        unflagged.extend(page(0, 1, 1, &[TAGS]));
        unflagged.extend(raw_page(0, 1, 2, &[255, 255], &big[..510]));
        let at = unflagged.len();
        unflagged.extend(raw_page(0x04, 1, 3, &[tail.len() as u8], tail));
        assert_eq!(
            Prompt::from_ogg_opus("x", &unflagged),
            Err(PromptError::Continuation {
                prompt: "x".to_owned(),
                offset: at
            })
        );
        // A stream that ends inside a packet is truncated where it began.
        let mut open = page(0x02, 1, 0, &[&head_bytes(2, 0)]);
        open.extend(page(0, 1, 1, &[TAGS]));
        let at = open.len();
        open.extend(raw_page(0x04, 1, 2, &[255], &big[..255]));
        assert_eq!(
            Prompt::from_ogg_opus("x", &open),
            Err(PromptError::Truncated {
                prompt: "x".to_owned(),
                offset: at
            })
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = PromptSet::from_files("xx", |name| {
            (name != "thanks").then(|| committed("en", name))
        })
        .unwrap_err();
        assert_eq!(
            err,
            PromptError::Missing {
                prompt: "xx/thanks".to_owned()
            }
        );
        assert_eq!(err.to_string(), "prompt xx/thanks: file missing");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            ogg_prefix in any::<bool>(),
        ) {
            let mut input = if ogg_prefix { b"OggS\x00".to_vec() } else { Vec::new() };
            input.extend(bytes);
            prop_assert!(Prompt::from_ogg_opus("x", &input).is_err());
        }

        #[test]
        fn corrupted_prompts_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            fix_crc in any::<bool>(),
        ) {
            let mut bytes = committed("en", "thanks");
            for &(at, value) in &edits {
                let i = at % bytes.len();
                bytes[i] = value;
            }
            if fix_crc {
                // Recompute every CRC so edits reach the packet layer.
                let mut at = 0;
                while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
                    let n = usize::from(bytes[at + 26]);
                    let Some(lacing) = bytes.get(at + 27..at + 27 + n) else { break };
                    let end = at + 27 + n + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
                    if end > bytes.len() {
                        break;
                    }
                    bytes[at + 22..at + 26].fill(0);
                    let crc = crc32(&bytes[at..end]);
                    bytes[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
                    at = end;
                }
            }
            if let Ok(prompt) = Prompt::from_ogg_opus("x", &bytes) {
                prop_assert!(prompt.packets.iter().all(|p| p.samples == 960));
            }
        }
    }
}
