//! Opus packet facts from the TOC byte (RFC 6716 §3.1–3.2).
//!
//! Hand-written rather than taken from libopus: a TOC parse is a few lines,
//! it runs once per packet on the hot path, and libopus's parser would need
//! FFI for something this small.
//!
//! All sample counts are per channel at 48 kHz, the Opus/RTP clock.

use thiserror::Error;

/// Most audio one Opus packet may hold: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_PACKET_SAMPLES: u32 = 5760;

/// TOC of the template for fill laid down before a track's first real packet:
/// CELT-only fullband 2.5 ms (config 28), mono, code 0.
///
/// Before any real packet libopus has no previous mode and outputs zeros for a
/// lost frame, so any frame size is safe here; 2.5 ms gives the finest
/// alignment of the first real packet.
pub const LEADING_FILL_TOC: u8 = 28 << 3;

/// Why an Opus packet's duration could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpusPacketError {
    /// The packet has no TOC byte.
    #[error("empty Opus packet")]
    Empty,
    /// A code 3 packet ends before its frame count byte.
    #[error("Opus code 3 packet without a frame count byte")]
    MissingFrameCount,
    /// A code 3 packet declares zero frames.
    #[error("Opus code 3 packet with zero frames")]
    ZeroFrames,
    /// The packet would hold more than 120 ms of audio.
    #[error("Opus packet of {samples} samples exceeds 120 ms")]
    TooLong {
        /// Samples the packet declares, at 48 kHz.
        samples: u32,
    },
}

/// Samples per frame at 48 kHz for the TOC's configuration (RFC 6716 §3.1).
pub fn frame_samples(toc: u8) -> u32 {
    let config = usize::from(toc >> 3);
    match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][config & 3],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][config & 1],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][config & 3],
    }
}

/// Total samples per channel at 48 kHz in an Opus packet (RFC 6716 §3.2).
///
/// Only the TOC and, for code 3, the frame count byte are read; frame lengths
/// are not validated.
pub fn packet_samples(packet: &[u8]) -> Result<u32, OpusPacketError> {
    let &toc = packet.first().ok_or(OpusPacketError::Empty)?;
    let frames = match toc & 0b11 {
        0 => 1,
        1 | 2 => 2,
        _ => {
            let &count = packet.get(1).ok_or(OpusPacketError::MissingFrameCount)?;
            u32::from(count & 0x3F)
        }
    };
    if frames == 0 {
        return Err(OpusPacketError::ZeroFrames);
    }
    let samples = frames * frame_samples(toc);
    if samples > MAX_PACKET_SAMPLES {
        return Err(OpusPacketError::TooLong { samples });
    }
    Ok(samples)
}

/// Most zero-length frames one fill packet built on `template_toc` can carry.
pub fn max_plc_frames(template_toc: u8) -> u8 {
    // At most 48 (2.5 ms frames), so the cast cannot truncate.
    (MAX_PACKET_SAMPLES / frame_samples(template_toc)) as u8
}

/// A fill packet for a gap (RFC 7845 §4.1): the template's mode, bandwidth,
/// channels and frame size, code 3 CBR, with `frames` zero-length frames that
/// a decoder conceals (PLC).
///
/// `frames` is clamped to `1..=max_plc_frames(template_toc)` so the result is
/// always a valid packet; callers stay inside that range so the count they
/// asked for is the count written.
pub fn plc_packet(template_toc: u8, frames: u8) -> [u8; 2] {
    let frames = frames.clamp(1, max_plc_frames(template_toc));
    // Count byte: VBR and padding bits clear, frame count in the low 6 bits.
    [(template_toc & 0xFC) | 0b11, frames]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_samples_for_every_config() {
        let expected: [u32; 32] = [
            480, 960, 1920, 2880, // SILK NB
            480, 960, 1920, 2880, // SILK MB
            480, 960, 1920, 2880, // SILK WB
            480, 960, // Hybrid SWB
            480, 960, // Hybrid FB
            120, 240, 480, 960, // CELT NB
            120, 240, 480, 960, // CELT WB
            120, 240, 480, 960, // CELT SWB
            120, 240, 480, 960, // CELT FB
        ];
        for (config, &samples) in expected.iter().enumerate() {
            for low in 0..8u8 {
                let toc = ((config as u8) << 3) | low;
                assert_eq!(
                    frame_samples(toc),
                    samples,
                    "config {config} low bits {low}"
                );
            }
        }
    }

    #[test]
    fn packet_samples_code_0_is_one_frame() {
        assert_eq!(packet_samples(&[0x78]), Ok(960)); // config 15: Hybrid FB 20 ms
        assert_eq!(packet_samples(&[28 << 3, 1, 2, 3]), Ok(120));
        assert_eq!(packet_samples(&[3 << 3]), Ok(2880));
    }

    #[test]
    fn packet_samples_codes_1_and_2_are_two_frames() {
        assert_eq!(packet_samples(&[(31 << 3) | 1, 0, 0]), Ok(1920));
        assert_eq!(packet_samples(&[(31 << 3) | 2, 1, 0, 0]), Ok(1920));
        assert_eq!(packet_samples(&[(3 << 3) | 1]), Ok(5760));
    }

    #[test]
    fn packet_samples_code_3_reads_the_count() {
        assert_eq!(packet_samples(&[(28 << 3) | 3, 48]), Ok(5760));
        // VBR and padding bits do not change the count.
        assert_eq!(packet_samples(&[(31 << 3) | 3, 0xC0 | 6]), Ok(5760));
        assert_eq!(packet_samples(&[(1 << 3) | 3, 3]), Ok(2880));
    }

    #[test]
    fn packet_samples_errors() {
        assert_eq!(packet_samples(&[]), Err(OpusPacketError::Empty));
        assert_eq!(
            packet_samples(&[(31 << 3) | 3]),
            Err(OpusPacketError::MissingFrameCount)
        );
        assert_eq!(
            packet_samples(&[(31 << 3) | 3, 0xC0]),
            Err(OpusPacketError::ZeroFrames)
        );
        assert_eq!(
            packet_samples(&[(31 << 3) | 3, 7]),
            Err(OpusPacketError::TooLong { samples: 6720 })
        );
        assert_eq!(
            packet_samples(&[(3 << 3) | 3, 3]),
            Err(OpusPacketError::TooLong { samples: 8640 })
        );
    }

    #[test]
    fn plc_packet_keeps_the_template_and_sets_code_3() {
        let toc = (20 << 3) | 0b101; // CELT WB 2.5 ms, stereo, code 1
        let packet = plc_packet(toc, 4);
        assert_eq!(packet, [(20 << 3) | 0b111, 4]);
        assert_eq!(packet_samples(&packet), Ok(480));
        assert_eq!(frame_samples(packet[0]), frame_samples(toc));
    }

    #[test]
    fn plc_packet_clamps_to_a_valid_count() {
        assert_eq!(max_plc_frames(LEADING_FILL_TOC), 48);
        assert_eq!(max_plc_frames(3 << 3), 2);
        assert_eq!(plc_packet(LEADING_FILL_TOC, 0)[1], 1);
        assert_eq!(plc_packet(LEADING_FILL_TOC, 200)[1], 48);
        assert_eq!(plc_packet(LEADING_FILL_TOC, 48), [0xE3, 48]);
        for toc in 0..=255u8 {
            for frames in [0, 1, 2, 6, 48, 63, 64, 255] {
                assert!(packet_samples(&plc_packet(toc, frames)).is_ok());
            }
        }
    }

    #[test]
    fn leading_fill_template_is_celt_fullband_2_5_ms() {
        assert_eq!(LEADING_FILL_TOC, 0xE0);
        assert_eq!(frame_samples(LEADING_FILL_TOC), 120);
    }

    proptest! {
        #[test]
        fn packet_samples_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            if let Ok(samples) = packet_samples(&bytes) {
                prop_assert!(samples > 0 && samples <= MAX_PACKET_SAMPLES);
                prop_assert_eq!(samples % frame_samples(bytes[0]), 0);
            }
        }
    }
}
