//! One speaker's recording: placed Opus frames in, an aligned Ogg Opus stream
//! out, so that file time t is call time t.
//!
//! Gaps before the first frame, from loss and from DTX are filled with PLC
//! packets (RFC 7845 §4.1), so every packet keeps its place on the call
//! timeline and tracks can be laid side by side.
//!
//! What a decoder plays for PLC fill is libopus's concealment: it continues
//! the last sound briefly, then fades toward the speaker's background-noise
//! estimate. Speech (which has pauses) fades to silence within about half a
//! second; a steady sound with no pauses continues as noise at its level.
//!
//! Positions are call-timeline samples at 48 kHz. Internally the stream
//! position counts the pre-skip too: stream sample `pre_skip + t` plays at
//! call time `t`.

use thiserror::Error;

use super::ogg::{OggOpusWriter, OpusHead};
use super::opus::{
    LEADING_FILL_TOC, OpusPacketError, frame_samples, max_plc_frames, packet_samples, plc_packet,
};

/// Default pre-skip: 80 ms, what RFC 7845 §4.2 suggests when the stream is
/// cut from an already running encoder, as a WebRTC capture is.
pub const DEFAULT_PRE_SKIP: u16 = 3840;

/// Largest gap one call may fill: 24 h. A bound so a wild position cannot make
/// the writer loop and allocate without end; real positions stay near the call
/// time (the speaker timeline re-anchors otherwise).
pub const MAX_FILL_SAMPLES: u64 = 48_000 * 60 * 60 * 24;

/// Unflushed audio after which the page is closed, so a crash loses at most
/// about a second.
const FLUSH_SAMPLES: u64 = 48_000;

/// Vendor string of the OpusTags header.
const VENDOR: &str = "hearken";

/// What happened to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The frame was written, after `filled` samples of fill for the gap.
    Written {
        /// Samples of fill (leading fill or PLC) written before the frame.
        filled: u64,
    },
    /// The frame ends within audio already written, or where the last frame
    /// was meant to end (a duplicate, or a frame that came too late); dropped.
    Late,
}

/// Why a track refused input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The packet's TOC does not give a valid duration.
    #[error("invalid Opus packet: {0}")]
    InvalidPacket(#[from] OpusPacketError),
    /// The gap to fill is longer than [`MAX_FILL_SAMPLES`].
    #[error("gap of {gap} samples exceeds the fill limit")]
    GapTooLarge {
        /// Samples between the written end and the requested position.
        gap: u64,
    },
    /// The track was already closed with [`TrackWriter::finish`].
    #[error("track already finished")]
    Finished,
}

/// Turns one speaker's placed frames into an aligned Ogg Opus stream.
#[derive(Debug)]
pub struct TrackWriter {
    ogg: OggOpusWriter,
    pre_skip: u64,
    /// Samples in the stream so far, pre-skip included.
    stream_end: u64,
    /// Where the last real frame was meant to end (stream samples). Written
    /// frames sit up to half a fill frame off their place, so duplicates are
    /// recognised by their intended place, not only by what is written.
    frame_end: u64,
    /// TOC of the last real packet: the template for PLC fill.
    last_toc: Option<u8>,
}

impl TrackWriter {
    /// A track whose stream starts at call time zero; headers are written at
    /// once (2 channels: RTP Opus is always signalled as stereo and decoders
    /// adapt).
    pub fn new(serial: u32, pre_skip: u16) -> Self {
        Self::with_comments(serial, pre_skip, &[])
    }

    /// Like [`new`](Self::new), with `KEY=value` comments in the OpusTags header.
    pub fn with_comments(serial: u32, pre_skip: u16, comments: &[(&str, &str)]) -> Self {
        let head = OpusHead {
            channels: 2,
            pre_skip,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        Self {
            ogg: OggOpusWriter::new(serial, &head, VENDOR, comments),
            pre_skip: u64::from(pre_skip),
            stream_end: 0,
            frame_end: 0,
            last_toc: None,
        }
    }

    /// Writes an Opus packet whose first sample belongs at call time
    /// `position`, filling any gap before it.
    ///
    /// A frame that ends at or before the written end, or before the intended
    /// end of the last frame (a duplicate), is [`FrameOutcome::Late`].
    ///
    /// Gaps are filled in whole frames, rounded to the nearest, always measured
    /// from the written end, so the error stays under half a frame and never
    /// accumulates. A frame that overlaps the written end goes right after it.
    pub fn handle_frame(
        &mut self,
        position: u64,
        packet: &[u8],
    ) -> Result<FrameOutcome, TrackError> {
        if self.ogg.is_finished() {
            return Err(TrackError::Finished);
        }
        let samples = packet_samples(packet)?;
        let target = self.pre_skip.saturating_add(position);
        let end = target.saturating_add(u64::from(samples));
        if end <= self.stream_end.max(self.frame_end) {
            return Ok(FrameOutcome::Late);
        }
        let filled = self.fill(target)?;
        self.push(packet, samples)?;
        self.frame_end = end;
        self.last_toc = packet.first().copied();
        self.flush_if_due();
        Ok(FrameOutcome::Written { filled })
    }

    /// Pads up to call time `position` (to the nearest whole fill frame) and
    /// returns the samples added; used when the participant leaves or the call
    /// ends, so every track reaches the call end.
    pub fn fill_to(&mut self, position: u64) -> Result<u64, TrackError> {
        if self.ogg.is_finished() {
            return Err(TrackError::Finished);
        }
        let filled = self.fill(self.pre_skip.saturating_add(position))?;
        self.flush_if_due();
        Ok(filled)
    }

    /// Closes the open page so everything written so far is in the output.
    pub fn flush(&mut self) {
        self.ogg.flush();
    }

    /// Ends the stream with an EOS page; later frames are refused.
    pub fn finish(&mut self) {
        self.ogg.finish();
    }

    /// Drains the bytes produced so far, for the shell to append to the file.
    pub fn poll_output(&mut self) -> Vec<u8> {
        self.ogg.poll_output()
    }

    /// Call-timeline samples covered so far (pre-skip excluded).
    pub fn written_samples(&self) -> u64 {
        self.stream_end.saturating_sub(self.pre_skip)
    }

    /// Samples on the open page, which a crash would lose.
    pub fn unflushed_samples(&self) -> u64 {
        self.ogg.unflushed_samples()
    }

    /// Fills from the written end to stream position `target` with PLC
    /// packets built on the last real packet, or with leading fill before the
    /// first one. Returns the samples added.
    fn fill(&mut self, target: u64) -> Result<u64, TrackError> {
        let gap = target.saturating_sub(self.stream_end);
        if gap > MAX_FILL_SAMPLES {
            return Err(TrackError::GapTooLarge { gap });
        }
        let toc = self.last_toc.unwrap_or(LEADING_FILL_TOC);
        let frame = u64::from(frame_samples(toc));
        let mut frames = (gap + frame / 2) / frame;
        let filled = frames * frame;
        let per_packet = max_plc_frames(toc);
        while frames > 0 {
            let n = u8::try_from(frames).unwrap_or(u8::MAX).min(per_packet);
            let packet = plc_packet(toc, n);
            // n <= max_plc_frames(toc), so the packet holds n frames.
            self.push(&packet, u32::from(n) * frame_samples(toc))?;
            frames -= u64::from(n);
        }
        Ok(filled)
    }

    fn push(&mut self, packet: &[u8], samples: u32) -> Result<(), TrackError> {
        self.ogg
            .push_packet(packet, samples)
            .map_err(|_| TrackError::Finished)?;
        self.stream_end = self.stream_end.saturating_add(u64::from(samples));
        Ok(())
    }

    fn flush_if_due(&mut self) {
        if self.ogg.unflushed_samples() >= FLUSH_SAMPLES {
            self.ogg.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::tests::{pages, read_packets};
    use crate::speaker::{ReanchorReason, SpeakerTimeline, TimelineConfig};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    const SECOND: u64 = 48_000;
    const MS: u64 = 48;
    const FRAME: u64 = 960;
    const AMPLITUDE: f32 = 0.5;
    /// CELT FB 20 ms, mono, code 0: a synthetic packet for accounting tests.
    const CELT_20MS: [u8; 3] = [31 << 3, 0xAB, 0xCD];

    // ---- accounting, with synthetic packets ----

    #[test]
    fn first_frame_at_zero_gets_pre_skip_of_leading_fill() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        assert_eq!(
            t.handle_frame(0, &CELT_20MS),
            Ok(FrameOutcome::Written { filled: 3840 })
        );
        assert_eq!(t.written_samples(), FRAME);
        t.finish();
        let bytes = t.poll_output();
        let (packets, clean) = read_packets(&bytes);
        assert!(clean);
        assert_eq!(packets[2].data, vec![0xE3, 32]);
        assert_eq!(packets[3].data, CELT_20MS);
        assert_eq!(packets[3].absgp_page(), 3840 + FRAME);
    }

    #[test]
    fn leading_fill_rounds_to_the_nearest_2_5_ms() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        // 5 s + 59 samples rounds down, + 60 rounds up.
        assert_eq!(
            t.handle_frame(5 * SECOND + 59, &CELT_20MS),
            Ok(FrameOutcome::Written {
                filled: 3840 + 5 * SECOND
            })
        );
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        assert_eq!(
            t.handle_frame(5 * SECOND + 60, &CELT_20MS),
            Ok(FrameOutcome::Written {
                filled: 3840 + 5 * SECOND + 120
            })
        );
        assert_eq!(t.written_samples(), 5 * SECOND + 120 + FRAME);
    }

    #[test]
    fn gaps_round_to_whole_frames_without_accumulating() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        t.handle_frame(0, &CELT_20MS).unwrap();
        // 2.42 frames of gap: 2 frames, placed 400 samples early.
        assert_eq!(
            t.handle_frame(3 * FRAME + 400, &CELT_20MS),
            Ok(FrameOutcome::Written { filled: 2 * FRAME })
        );
        assert_eq!(t.written_samples(), 4 * FRAME);
        // The next frame follows on: 400 samples of gap is under half a frame.
        assert_eq!(
            t.handle_frame(4 * FRAME + 400, &CELT_20MS),
            Ok(FrameOutcome::Written { filled: 0 })
        );
        // 1000 samples of gap: one frame; the error stays under half a frame.
        assert_eq!(
            t.handle_frame(5 * FRAME + 1000, &CELT_20MS),
            Ok(FrameOutcome::Written { filled: FRAME })
        );
        assert_eq!(t.written_samples(), 7 * FRAME);
    }

    #[test]
    fn plc_fill_uses_the_last_real_toc() {
        let mut t = TrackWriter::new(1, 0);
        let silk_20ms = [(9 << 3) | 0b100, 1, 2]; // SILK WB 20 ms, stereo
        t.handle_frame(0, &silk_20ms).unwrap();
        // 10 frames of gap: packets of at most 6 (120 ms).
        assert_eq!(
            t.handle_frame(11 * FRAME, &silk_20ms),
            Ok(FrameOutcome::Written { filled: 10 * FRAME })
        );
        t.finish();
        let (packets, _) = read_packets(&t.poll_output());
        let data: Vec<_> = packets[2..].iter().map(|p| p.data.clone()).collect();
        let plc = (9 << 3) | 0b111;
        assert_eq!(
            data,
            vec![
                silk_20ms.to_vec(),
                vec![plc, 6],
                vec![plc, 4],
                silk_20ms.to_vec()
            ]
        );
    }

    #[test]
    fn overlap_writes_after_the_written_end() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        t.handle_frame(0, &CELT_20MS).unwrap();
        assert_eq!(
            t.handle_frame(FRAME - 300, &CELT_20MS),
            Ok(FrameOutcome::Written { filled: 0 })
        );
        assert_eq!(t.written_samples(), 2 * FRAME);
    }

    #[test]
    fn late_duplicate_and_invalid_frames_write_nothing() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        t.handle_frame(0, &CELT_20MS).unwrap();
        t.handle_frame(FRAME, &CELT_20MS).unwrap();
        t.flush();
        let before = t.poll_output();
        assert_eq!(t.handle_frame(FRAME, &CELT_20MS), Ok(FrameOutcome::Late));
        assert_eq!(t.handle_frame(0, &CELT_20MS), Ok(FrameOutcome::Late));
        assert_eq!(
            t.handle_frame(5 * FRAME, &[]),
            Err(TrackError::InvalidPacket(OpusPacketError::Empty))
        );
        assert_eq!(
            t.handle_frame(5 * FRAME, &[(31 << 3) | 3, 0]),
            Err(TrackError::InvalidPacket(OpusPacketError::ZeroFrames))
        );
        assert_eq!(
            t.handle_frame(MAX_FILL_SAMPLES + 3 * FRAME, &CELT_20MS),
            Err(TrackError::GapTooLarge {
                gap: MAX_FILL_SAMPLES + FRAME
            })
        );
        assert_eq!(t.written_samples(), 2 * FRAME);
        t.flush();
        assert!(t.poll_output().is_empty());
        assert!(!before.is_empty());
    }

    #[test]
    fn fill_to_pads_to_the_call_end() {
        // Nothing real yet: leading fill.
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        assert_eq!(t.fill_to(SECOND), Ok(3840 + SECOND));
        assert_eq!(t.written_samples(), SECOND);
        // After real frames: PLC on the last TOC, to the nearest frame.
        t.handle_frame(2 * SECOND, &CELT_20MS).unwrap();
        assert_eq!(t.fill_to(3 * SECOND + 100), Ok(SECOND - FRAME));
        assert_eq!(t.written_samples(), 3 * SECOND);
        assert_eq!(t.fill_to(SECOND), Ok(0));
        t.finish();
        assert_eq!(t.fill_to(4 * SECOND), Err(TrackError::Finished));
        assert_eq!(
            t.handle_frame(4 * SECOND, &CELT_20MS),
            Err(TrackError::Finished)
        );
        let bytes = t.poll_output();
        let pages = pages(&bytes);
        let last = pages.last().unwrap();
        assert_eq!(last.flags & 0x04, 0x04);
        assert_eq!(last.granule, 3840 + 3 * SECOND);
        assert!(read_packets(&bytes).1);
    }

    #[test]
    fn pages_are_flushed_every_second_of_audio() {
        let mut t = TrackWriter::new(1, DEFAULT_PRE_SKIP);
        let mut flushed_pages = 0;
        for i in 0..500 {
            t.handle_frame(i * FRAME, &CELT_20MS).unwrap();
            assert!(t.unflushed_samples() < SECOND);
            if !t.poll_output().is_empty() {
                flushed_pages += 1;
            }
        }
        // 10 s of audio: at least 9 pages closed by the 1 s rule.
        assert!(flushed_pages >= 9, "{flushed_pages}");
    }

    // ---- real Opus, decoded back ----

    /// Encodes 20 ms frames of a 440 Hz sine (on where `tone(i)`) or silence.
    fn encode(frames: usize, tone: impl Fn(usize) -> bool) -> (Vec<Vec<u8>>, u64) {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let lookahead = enc.get_lookahead().unwrap() as u64;
        let packets = (0..frames)
            .map(|i| {
                let pcm: Vec<f32> = (0..FRAME as usize)
                    .map(|j| {
                        let n = (i * FRAME as usize + j) as f32;
                        if tone(i) {
                            AMPLITUDE * (std::f32::consts::TAU * 440.0 * n / 48_000.0).sin()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                enc.encode_vec_float(&pcm, 1500).unwrap()
            })
            .collect();
        (packets, lookahead)
    }

    /// Demuxes with the `ogg` crate, decodes with libopus and drops pre-skip.
    /// Checks the decoded length against the last granule.
    fn decode(bytes: &[u8]) -> Vec<f32> {
        let (packets, clean) = read_packets(bytes);
        assert!(clean);
        let head = &packets[0].data;
        assert_eq!(&head[..8], b"OpusHead");
        let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = Vec::new();
        let mut buf = vec![0f32; 5760];
        for p in &packets[2..] {
            let n = dec.decode_float(&p.data, &mut buf, false).unwrap();
            pcm.extend_from_slice(&buf[..n]);
        }
        let granule = packets.last().unwrap().absgp_page() as usize;
        assert_eq!(pcm.len(), granule);
        pcm.split_off(pre_skip)
    }

    fn rms(pcm: &[f32]) -> f32 {
        if pcm.is_empty() {
            return 0.0;
        }
        (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32).sqrt()
    }

    /// First tone onset at or after `from`: the first 10 ms window with
    /// energy, then the first sample in or just before it above a quarter of
    /// the amplitude.
    fn onset(pcm: &[f32], from: u64) -> Option<u64> {
        let window = 10 * MS as usize;
        let from = from as usize;
        let w = (from..pcm.len().saturating_sub(window))
            .step_by(window)
            .find(|&w| rms(&pcm[w..w + window]) > AMPLITUDE * 0.2)?;
        let start = w.saturating_sub(window).max(from);
        (start..pcm.len())
            .find(|&i| pcm[i].abs() > AMPLITUDE / 4.0)
            .map(|i| i as u64)
    }

    fn ms(samples: i64) -> f64 {
        samples as f64 / MS as f64
    }

    /// Max RMS over 10 ms windows in [from, to).
    fn peak_window_rms(pcm: &[f32], from: u64, to: u64) -> f32 {
        pcm[from as usize..to as usize]
            .chunks(10 * MS as usize)
            .map(rms)
            .fold(0.0, f32::max)
    }

    #[test]
    fn track_from_call_start_decodes_to_its_length() {
        let (packets, lookahead) = encode(100, |_| true);
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        for (i, p) in packets.iter().enumerate() {
            t.handle_frame(i as u64 * FRAME, p).unwrap();
        }
        t.finish();
        let pcm = decode(&t.poll_output());
        assert_eq!(pcm.len() as u64, t.written_samples());
        assert_eq!(pcm.len() as u64, 100 * FRAME);
        let at = onset(&pcm, 0).unwrap();
        println!(
            "onset {:.2} ms, encoder lookahead {} samples",
            ms(at as i64),
            lookahead
        );
        assert!((at as i64 - lookahead as i64).abs() <= 120);
    }

    #[test]
    fn late_joiner_starts_at_its_place() {
        let (packets, lookahead) = encode(100, |_| true);
        // Not on a 2.5 ms boundary: tests the leading fill's rounding.
        let start = 5 * SECOND + 37;
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        for (i, p) in packets.iter().enumerate() {
            t.handle_frame(start + i as u64 * FRAME, p).unwrap();
        }
        t.finish();
        let pcm = decode(&t.poll_output());
        assert_eq!(pcm.len() as u64, t.written_samples());
        // 37 samples rounded to the nearest 2.5 ms: the track starts 37 early.
        assert_eq!(pcm.len() as u64, start - 37 + 100 * FRAME);
        let before = peak_window_rms(&pcm, 0, 5 * SECOND);
        let error = onset(&pcm, 0).unwrap() as i64 - (start + lookahead) as i64;
        println!(
            "late joiner: silence before rms {before:e}, onset error {:.2} ms",
            ms(error)
        );
        assert!(before < 1e-4);
        assert!(error.unsigned_abs() <= 120, "onset error {error}");
    }

    #[test]
    fn loss_and_dtx_keep_audio_in_place() {
        // Tone 0-1 s, silence 1-3 s, tone 3-5 s. As with Opus DTX, the first
        // 200 ms of silence are sent, then nothing until the tone returns.
        // Single packets are lost in both tone sections.
        let (packets, lookahead) = encode(250, |i| !(50..150).contains(&i));
        let lost = [10, 33, 160, 201, 240];
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        let mut filled = 0;
        for (i, p) in packets.iter().enumerate() {
            if (60..150).contains(&i) || lost.contains(&i) {
                continue;
            }
            match t.handle_frame(i as u64 * FRAME, p).unwrap() {
                FrameOutcome::Written { filled: f } => filled += f,
                FrameOutcome::Late => panic!("late"),
            }
        }
        assert_eq!(filled, 3840 + (90 + lost.len() as u64) * FRAME);
        t.finish();
        let pcm = decode(&t.poll_output());
        assert_eq!(pcm.len() as u64, t.written_samples());
        assert_eq!(pcm.len() as u64, 250 * FRAME);
        let gap_start = 1200 * MS + lookahead;
        let gap = peak_window_rms(&pcm, gap_start + 100 * MS, 3 * SECOND);
        let error = onset(&pcm, 2 * SECOND).unwrap() as i64 - (3 * SECOND + lookahead) as i64;
        // Concealed single losses keep the tone going.
        let tone = rms(&pcm[(3 * SECOND + lookahead) as usize..]);
        println!(
            "dtx: gap peak rms after 100 ms {gap:e}, tone rms {tone:.3}, onset error {:.2} ms",
            ms(error)
        );
        assert!(gap < 1e-3, "gap rms {gap}");
        assert!(error.unsigned_abs() <= 120, "onset error {error}");
        assert!(tone > AMPLITUDE * 0.5);
    }

    #[test]
    fn participant_leaves_and_comes_back_on_a_new_source() {
        // Speech-like: 300 ms bursts, 200 ms pauses. The first session stops
        // mid-burst at 3.1 s; the participant is back at 6 s.
        let bursts = |i: usize| i % 25 < 15;
        let (first, lookahead) = encode(155, bursts);
        let (second, _) = encode(90, |_| true);
        let mut timeline = SpeakerTimeline::new(TimelineConfig::default());
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        for (i, p) in first.iter().enumerate() {
            let i = i as u64;
            let placed = timeline.handle_frame(1_000_000 + i * FRAME, i * FRAME);
            t.handle_frame(placed.position, p).unwrap();
        }
        // Back on a new session with a new RTP base.
        timeline.reset();
        for (j, p) in second.iter().enumerate() {
            let j = j as u64;
            let placed = timeline.handle_frame(3_000_000_000 + j * FRAME, 6 * SECOND + j * FRAME);
            if j == 0 {
                assert_eq!(placed.reanchored, Some(ReanchorReason::FirstFrame));
                assert_eq!(placed.position, 6 * SECOND);
            }
            t.handle_frame(placed.position, p).unwrap();
        }
        // Call ends at 8 s.
        assert_eq!(t.fill_to(8 * SECOND), Ok(10 * FRAME));
        t.finish();
        let pcm = decode(&t.poll_output());
        assert_eq!(pcm.len() as u64, 8 * SECOND);
        let left = 3100 * MS + lookahead;
        let fade: Vec<String> = (0..6)
            .map(|k| {
                let from = left + k * 100 * MS;
                format!(
                    "{:.0}",
                    20.0 * peak_window_rms(&pcm, from, from + 100 * MS)
                        .max(1e-9)
                        .log10()
                )
            })
            .collect();
        let away = peak_window_rms(&pcm, left + SECOND, 6 * SECOND);
        let error = onset(&pcm, 5 * SECOND).unwrap() as i64 - (6 * SECOND + lookahead) as i64;
        println!(
            "rejoin: PLC fade per 100 ms (peak dBFS) [{}], away rms after 1 s {away:e}, onset error {:.2} ms",
            fade.join(" "),
            ms(error)
        );
        assert!(away < 1e-3);
        assert!(error.unsigned_abs() <= 120, "onset error {error}");
    }

    #[test]
    fn reordered_frame_is_late_and_harmless() {
        let (packets, _) = encode(20, |_| true);
        let mut timeline = SpeakerTimeline::new(TimelineConfig::default());
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        let order = [
            0, 1, 2, 3, 4, 6, 5, 7, 8, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ];
        let mut outcomes = Vec::new();
        for (k, &i) in order.iter().enumerate() {
            let arrival = 1000 + k as u64 * FRAME;
            let placed = timeline.handle_frame(500_000 + i as u64 * FRAME, arrival);
            outcomes.push(t.handle_frame(placed.position, &packets[i]).unwrap());
        }
        // Frame 6 arrives before 5: frame 5's slot gets one PLC frame.
        assert_eq!(outcomes[5], FrameOutcome::Written { filled: FRAME });
        assert_eq!(outcomes[6], FrameOutcome::Late);
        assert_eq!(outcomes[9], FrameOutcome::Late); // duplicate of 8
        t.finish();
        let pcm = decode(&t.poll_output());
        assert_eq!(pcm.len() as u64, 1000 + 20 * FRAME - 40);
    }

    #[test]
    fn a_minute_with_loss_and_jitter() {
        // Tone for 1 s every 2 s; of the silence only the first 200 ms are
        // sent (DTX). 3% of what is sent is lost; 0-60 ms of jitter.
        let frames = 3000;
        let tone = |i: usize| (i / 50).is_multiple_of(2);
        let sent = |i: usize| tone(i) || i % 100 < 60;
        let (packets, lookahead) = encode(frames, tone);
        let mut rng = StdRng::seed_from_u64(0x4845_4152);
        let mut timeline = SpeakerTimeline::new(TimelineConfig::default());
        let mut t = TrackWriter::new(7, DEFAULT_PRE_SKIP);
        let mut released = 0;
        let mut first_position = None;
        let mut received = vec![false; frames];
        let mut bytes = Vec::new();
        let rtp_base = 4_000_000_000u64;
        for (i, p) in packets.iter().enumerate() {
            if !sent(i) || rng.random_bool(0.03) {
                continue;
            }
            received[i] = true;
            let at = i as u64 * FRAME;
            // 20 ms network delay, up to 60 ms jitter; released in order.
            let arrival = (at + 20 * MS + rng.random_range(0..60 * MS)).max(released);
            released = arrival;
            let placed = timeline.handle_frame(rtp_base + at, arrival);
            let first = *first_position.get_or_insert(placed.position - at);
            if i > 0 {
                assert_eq!(placed.reanchored, None);
            }
            assert_eq!(placed.position, first + at);
            let outcome = t.handle_frame(placed.position, p);
            assert!(matches!(outcome, Ok(FrameOutcome::Written { .. })));
            bytes.extend(t.poll_output());
        }
        let call_end = SECOND * 61;
        t.fill_to(call_end).unwrap();
        t.finish();
        bytes.extend(t.poll_output());

        let pcm = decode(&bytes);
        let first = first_position.unwrap();
        assert!((pcm.len() as i64 - call_end as i64).abs() <= (FRAME / 2) as i64);
        assert_eq!(pcm.len() as u64, t.written_samples());
        let mut worst = 0i64;
        let mut checked = 0;
        for burst in (0..frames).step_by(100) {
            if !received[burst] {
                continue;
            }
            let expected = first + burst as u64 * FRAME + lookahead;
            let at = onset(&pcm, expected.saturating_sub(300 * MS)).unwrap();
            worst = worst.max((at as i64 - expected as i64).abs());
            checked += 1;
        }
        println!(
            "minute: first position {first}, {checked} onsets, worst onset error {:.2} ms",
            ms(worst)
        );
        assert!(checked >= 25);
        assert!(worst <= 120);
    }

    proptest! {
        #[test]
        fn malformed_packets_and_wild_positions_never_panic(
            ops in proptest::collection::vec(
                (
                    prop_oneof![0u64..30 * SECOND, any::<u64>()],
                    proptest::collection::vec(any::<u8>(), 0..6),
                    0u8..10,
                ),
                0..40,
            )
        ) {
            let mut t = TrackWriter::new(3, DEFAULT_PRE_SKIP);
            let mut bytes = t.poll_output();
            for (position, packet, action) in ops {
                let before = t.written_samples();
                match action {
                    0 => { let _ = t.fill_to(position); }
                    1 => t.flush(),
                    _ => match t.handle_frame(position, &packet) {
                        Ok(FrameOutcome::Late) | Err(_) => prop_assert_eq!(t.written_samples(), before),
                        Ok(FrameOutcome::Written { .. }) => prop_assert!(t.written_samples() > before),
                    },
                }
                prop_assert!(t.unflushed_samples() < SECOND);
                bytes.extend(t.poll_output());
            }
            t.finish();
            bytes.extend(t.poll_output());
            let (_, clean) = read_packets(&bytes);
            prop_assert!(clean);
            let last = pages(&bytes).last().unwrap().granule;
            let written = t.written_samples();
            prop_assert!(last == 3840 + written || (last == 0 && written == 0));
        }
    }
}
