//! Reading Ogg Opus from bytes: the identification header, then the audio
//! packets of that logical stream, stopping quietly at the first page that
//! cannot be read (a crash leaves a truncated last page and no EOS page).

use std::io::Cursor;

use hearken_core::opus::packet_samples;
use ogg::PacketReader;
use thiserror::Error;

/// The Opus clock: every sample count here is at 48 kHz.
pub(crate) const SAMPLE_RATE: u32 = 48_000;

/// Duration assumed for a packet whose TOC cannot be read before any packet
/// that could: 20 ms, what WebRTC sends.
const DEFAULT_PACKET_SAMPLES: u32 = 960;

/// Why a file is not an Ogg Opus stream this crate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TrackProblem {
    /// No Ogg page could be read from the bytes.
    #[error("not an Ogg stream")]
    NotOgg,
    /// The stream's first packet is not an Opus identification header.
    #[error("not an Ogg Opus stream (no OpusHead)")]
    NotOpus,
    /// An OpusHead this crate cannot decode (only channel mapping family 0,
    /// one or two channels, major version 0).
    #[error(
        "unsupported OpusHead: version {version}, {channels} channels, mapping family {mapping_family}"
    )]
    UnsupportedHead {
        /// The header's version byte.
        version: u8,
        /// The header's channel count.
        channels: u8,
        /// The header's channel mapping family.
        mapping_family: u8,
    },
    /// The stream ends before its comment header (OpusTags).
    #[error("Ogg Opus stream ends before its comment header")]
    MissingTags,
}

/// What the identification header says, and which stream it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// Serial number of the logical stream.
    pub serial: u32,
    /// 1 or 2.
    pub channels: u8,
    /// Decoded samples to discard at the start.
    pub pre_skip: u64,
    /// Sample rate of the original input, informational.
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
}

/// The audio packets of one Ogg Opus stream, in order.
pub(crate) struct OpusPackets<'a> {
    reader: PacketReader<Cursor<&'a [u8]>>,
    serial: u32,
    done: bool,
    /// Whether the stream ended with its EOS page.
    saw_eos: bool,
    /// Granule of the page on which the last returned packet ended.
    last_granule: Option<u64>,
}

impl<'a> OpusPackets<'a> {
    /// Reads the two header packets; the next packet is the first audio one.
    pub fn open(bytes: &'a [u8]) -> Result<(Head, Self), TrackProblem> {
        let mut reader = PacketReader::new(Cursor::new(bytes));
        let first = match reader.read_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(_) => return Err(TrackProblem::NotOgg),
        };
        let head = parse_head(&first.data, first.stream_serial())?;
        let mut packets = Self {
            reader,
            serial: head.serial,
            done: false,
            saw_eos: first.last_in_stream(),
            last_granule: None,
        };
        match packets.next_packet() {
            Some(tags) if tags.data.starts_with(b"OpusTags") => Ok((head, packets)),
            _ => Err(TrackProblem::MissingTags),
        }
    }

    /// Whether the stream ended with its EOS page (a crash leaves none).
    pub fn saw_eos(&self) -> bool {
        self.saw_eos
    }

    /// Granule position of the page the last packet ended on.
    pub fn last_granule(&self) -> Option<u64> {
        self.last_granule
    }

    /// The next packet of the stream, or `None` at its end or at the first
    /// page that cannot be read (bad CRC, truncated): what follows a bad page
    /// is not trusted to be in place.
    pub fn next_packet(&mut self) -> Option<ogg::Packet> {
        while !self.done {
            match self.reader.read_packet() {
                Ok(Some(packet)) if packet.stream_serial() == self.serial => {
                    if packet.last_in_stream() {
                        self.saw_eos = true;
                        self.done = true;
                    }
                    // -1 marks a page on which no packet completes; a packet
                    // the reader returns has completed, so this is rare.
                    let granule = packet.absgp_page();
                    if granule != u64::MAX {
                        self.last_granule = Some(granule);
                    }
                    return Some(packet);
                }
                // Another logical stream multiplexed or chained in: not ours.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => self.done = true,
            }
        }
        None
    }
}

/// Parses an OpusHead (RFC 7845 §5.1).
fn parse_head(data: &[u8], serial: u32) -> Result<Head, TrackProblem> {
    if !data.starts_with(b"OpusHead") {
        return Err(TrackProblem::NotOpus);
    }
    let field = |at: usize| data.get(at).copied().ok_or(TrackProblem::NotOpus);
    let version = field(8)?;
    let channels = field(9)?;
    let pre_skip = u16::from_le_bytes([field(10)?, field(11)?]);
    let input_sample_rate = u32::from_le_bytes([field(12)?, field(13)?, field(14)?, field(15)?]);
    let output_gain = i16::from_le_bytes([field(16)?, field(17)?]);
    let mapping_family = field(18)?;
    // RFC 7845: a decoder must accept versions 0-15 (same major version).
    if version > 15 || mapping_family != 0 || !(1..=2).contains(&channels) {
        return Err(TrackProblem::UnsupportedHead {
            version,
            channels,
            mapping_family,
        });
    }
    Ok(Head {
        serial,
        channels,
        pre_skip: u64::from(pre_skip),
        input_sample_rate,
        output_gain,
    })
}

/// The duration of each packet, from its TOC (RFC 6716 §3.1). A packet whose
/// TOC cannot be read is taken to last as long as the last one that could:
/// the scan and the decoder agree on it, so the timeline stays put.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketDurations {
    last: u32,
}

impl PacketDurations {
    pub fn new() -> Self {
        Self {
            last: DEFAULT_PACKET_SAMPLES,
        }
    }

    /// Samples of `packet` at 48 kHz, and whether its TOC said so.
    pub fn of(&mut self, packet: &[u8]) -> (u32, bool) {
        match packet_samples(packet) {
            Ok(samples) => {
                self.last = samples;
                (samples, true)
            }
            Err(_) => (self.last, false),
        }
    }
}

/// What a pass over a stream's packets found, without decoding them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scan {
    pub head: Head,
    /// Samples from call time zero (pre-skip excluded) that the stream plays.
    pub length: u64,
    /// Whether the stream ended with its EOS page.
    pub saw_eos: bool,
}

/// Reads every packet's TOC to find the stream's length.
///
/// The length is the packets' own duration, cut to the last granule when
/// that is smaller (RFC 7845 §4.4, end trimming); a file cut short ends with
/// its last whole page.
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan, TrackProblem> {
    let (head, mut packets) = OpusPackets::open(bytes)?;
    let mut durations = PacketDurations::new();
    let mut decoded: u64 = 0;
    while let Some(packet) = packets.next_packet() {
        decoded = decoded.saturating_add(u64::from(durations.of(&packet.data).0));
    }
    let end = packets.last_granule().map_or(decoded, |g| g.min(decoded));
    Ok(Scan {
        head,
        length: end.saturating_sub(head.pre_skip),
        saw_eos: packets.saw_eos(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearken_core::ogg::{OggOpusWriter, OpusHead};

    fn stream(head: &OpusHead, packets: &[(&[u8], u32)], finish: bool) -> Vec<u8> {
        let mut w = OggOpusWriter::new(9, head, "test", &[]);
        for (p, n) in packets {
            w.push_packet(p, *n).unwrap();
        }
        if finish {
            w.finish();
        } else {
            w.flush();
        }
        w.poll_output()
    }

    const CELT_20MS: &[u8] = &[31 << 3, 1, 2];
    const CELT_10MS: &[u8] = &[30 << 3, 1, 2];

    #[test]
    fn scan_sums_packets_after_pre_skip() {
        let head = OpusHead {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let bytes = stream(&head, &[(CELT_20MS, 960), (CELT_10MS, 480)], true);
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.length, 960 + 480 - 312);
        assert!(scan.saw_eos);
        assert_eq!(scan.head.pre_skip, 312);
        assert_eq!(scan.head.channels, 2);
    }

    #[test]
    fn scan_honours_end_trimming() {
        // The last packet is declared 100 samples long in the granule: the
        // stream ends there although the packet decodes to 960.
        let bytes = stream(
            &OpusHead::EXACT_MONO,
            &[(CELT_20MS, 960), (CELT_20MS, 100)],
            true,
        );
        assert_eq!(scan(&bytes).unwrap().length, 1060);
    }

    #[test]
    fn an_unreadable_toc_lasts_as_long_as_the_last_packet() {
        let zero_frames: &[u8] = &[(31 << 3) | 3, 0];
        let bytes = stream(
            &OpusHead::EXACT_MONO,
            &[(CELT_10MS, 480), (zero_frames, 480), (CELT_20MS, 960)],
            false,
        );
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.length, 480 + 480 + 960);
        assert!(!scan.saw_eos);
    }

    #[test]
    fn bad_headers_are_named() {
        assert_eq!(scan(b"hello").unwrap_err(), TrackProblem::NotOgg);
        assert_eq!(scan(&[]).unwrap_err(), TrackProblem::NotOgg);
        let surround = OpusHead {
            channels: 6,
            ..OpusHead::EXACT_MONO
        };
        assert_eq!(
            scan(&stream(&surround, &[], true)).unwrap_err(),
            TrackProblem::UnsupportedHead {
                version: 1,
                channels: 6,
                mapping_family: 0
            }
        );
        // Only the BOS page (the first page is 19 + 28 bytes long).
        let bytes = stream(&OpusHead::EXACT_MONO, &[], true);
        assert_eq!(scan(&bytes[..47]).unwrap_err(), TrackProblem::MissingTags);
        // An Ogg stream of something else.
        let mut other = Vec::new();
        let mut w = ogg::PacketWriter::new(&mut other);
        w.write_packet(&b"\x01vorbis"[..], 5, ogg::PacketWriteEndInfo::EndStream, 0)
            .unwrap();
        drop(w);
        assert_eq!(scan(&other).unwrap_err(), TrackProblem::NotOpus);
    }
}
