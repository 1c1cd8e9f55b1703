//! The mix: tracks decoded in step, 20 ms at a time, summed and encoded once.

use std::collections::VecDeque;
use std::io::Write;

use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::opus::MAX_PACKET_SAMPLES;

use crate::reader::{OpusPackets, PacketDurations, SAMPLE_RATE, scan};
use crate::{MixError, MixOptions, MixReport, TrackInput, TrackReport};

/// One frame of the mix and of its packets: 20 ms.
pub(crate) const FRAME: usize = 960;

/// Pre-skip of the mix: one frame, so the encoder's lookahead can be padded
/// out to the 20 ms grid (see the crate docs).
pub(crate) const MIX_PRE_SKIP: u16 = 960;

/// Reported level of digital silence.
const SILENCE_DBFS: f32 = -120.0;

/// Largest encoded packet accepted from libopus: far above what 20 ms at any
/// Opus bitrate (at most 510 kb/s, 1275 bytes) can take.
const MAX_ENCODED_BYTES: usize = 4000;

/// Packets per Ogg page: pages of about a second, so a player can seek.
pub(crate) const PACKETS_PER_PAGE: u32 = 50;

/// Vendor string in the OpusTags header of a mix and of a cut.
pub(crate) const VENDOR: &str = "hearken-mix";

/// Decodes every track, lays each at its aligned place, sums them and encodes
/// the sum once as Ogg Opus (mono, 48 kHz, 20 ms packets) into `out`.
///
/// Tracks are decoded in step, one 20 ms frame at a time, so memory stays at a
/// few frames per track. Samples are summed in `i32` and clamped to `i16`
/// (hard clipping; see the crate docs). `muted` spans are silenced before the
/// sum and before the levels are measured. An unreadable track is left out
/// and named in its [`TrackReport`]; if no track is readable nothing is
/// written and [`MixError::NoReadableTrack`] says why.
///
/// `progress(fraction)` is called with 0.0 first, then at most once per
/// percent, and with 1.0 once the output is written.
pub fn mix(
    tracks: &[TrackInput<'_>],
    options: &MixOptions,
    out: &mut impl Write,
    progress: &mut dyn FnMut(f64),
) -> Result<MixReport, MixError> {
    if tracks.is_empty() {
        return Err(MixError::NoTracks);
    }
    let muted = tracks
        .iter()
        .map(muted_samples)
        .collect::<Result<Vec<_>, _>>()?;

    let mut reports = Vec::with_capacity(tracks.len());
    let mut decoders = Vec::with_capacity(tracks.len());
    for (track, muted) in tracks.iter().zip(muted) {
        let mut report = TrackReport {
            name: track.name.clone(),
            levels_dbfs: Vec::new(),
            bad_packets: 0,
            decoded_seconds: 0.0,
            ended_abruptly: false,
            unreadable: None,
        };
        let opened = scan(track.ogg)
            .and_then(|scan| OpusPackets::open(track.ogg).map(|(_, packets)| (scan, packets)));
        match opened {
            Ok((scan, packets)) => {
                report.decoded_seconds = seconds(scan.length);
                report.ended_abruptly = !scan.saw_eos;
                decoders.push(Some(TrackDecoder::new(
                    packets,
                    scan.head.pre_skip,
                    scan.length,
                    scan.head.output_gain,
                    muted,
                )?));
            }
            Err(problem) => {
                report.unreadable = Some(problem);
                decoders.push(None);
            }
        }
        reports.push(report);
    }
    let length = decoders
        .iter()
        .flatten()
        .map(|d| d.length)
        .max()
        .ok_or_else(|| MixError::NoReadableTrack(reports.clone()))?;

    progress(0.0);
    let frames = length.div_ceil(FRAME as u64);
    let mut encoder = MixEncoder::new(options, length)?;
    out.write_all(&encoder.writer.poll_output())?;
    for report in reports.iter_mut().filter(|r| r.unreadable.is_none()) {
        report
            .levels_dbfs
            .reserve_exact(usize::try_from(frames).unwrap_or(0));
    }

    let mut sum = [0i32; FRAME];
    let mut pcm = [0i16; FRAME];
    let mut reported_percent = 0;
    for frame in 0..frames {
        let start = frame * FRAME as u64;
        // Samples of call time in this frame: the last one may be short.
        let live = usize::try_from((length - start).min(FRAME as u64)).unwrap_or(FRAME);
        sum.fill(0);
        for (decoder, report) in decoders.iter_mut().zip(reports.iter_mut()) {
            let Some(decoder) = decoder else { continue };
            decoder.next_frame(start, &mut pcm);
            report.levels_dbfs.push(level_dbfs(&pcm[..live]));
            for (s, &x) in sum.iter_mut().zip(pcm.iter()) {
                *s += i32::from(x);
            }
        }
        for (x, &s) in pcm.iter_mut().zip(sum.iter()) {
            // The clamp makes the narrowing exact.
            *x = s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        encoder.push_frame(&pcm, out)?;

        let done = frame + 1;
        let percent = (done * 100 / frames).min(99);
        if percent > reported_percent {
            reported_percent = percent;
            progress(percent as f64 / 100.0);
        }
    }
    encoder.finish(out)?;
    out.flush()?;
    for (decoder, report) in decoders.iter().zip(reports.iter_mut()) {
        if let Some(decoder) = decoder {
            report.bad_packets = decoder.bad_packets;
        }
    }
    progress(1.0);
    Ok(MixReport {
        duration_seconds: seconds(length),
        tracks: reports,
    })
}

/// Samples at 48 kHz as seconds.
pub(crate) fn seconds(samples: u64) -> f64 {
    samples as f64 / f64::from(SAMPLE_RATE)
}

/// A track's muted spans in call-time samples, widened outward to whole
/// samples so nothing of a span survives rounding.
fn muted_samples(track: &TrackInput<'_>) -> Result<Vec<(u64, u64)>, MixError> {
    track
        .muted
        .iter()
        .map(|&(start, end)| {
            if !start.is_finite() || !end.is_finite() || start > end {
                return Err(MixError::InvalidMutedSpan {
                    track: track.name.clone(),
                    start,
                    end,
                });
            }
            let rate = f64::from(SAMPLE_RATE);
            // Float to int casts saturate: a negative start is sample 0.
            Ok(((start * rate).floor() as u64, (end * rate).ceil() as u64))
        })
        .collect()
}

/// RMS of `pcm` in dBFS, full scale 32768; [`SILENCE_DBFS`] for silence.
fn level_dbfs(pcm: &[i16]) -> f32 {
    let energy: f64 = pcm.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if energy == 0.0 || pcm.is_empty() {
        return SILENCE_DBFS;
    }
    let rms = (energy / pcm.len() as f64).sqrt() / 32768.0;
    (20.0 * rms.log10()).max(f64::from(SILENCE_DBFS)) as f32
}

/// One track decoded to mono, handed out a frame at a time from call time 0.
struct TrackDecoder<'a> {
    packets: OpusPackets<'a>,
    decoder: opus::Decoder,
    durations: PacketDurations,
    /// Decoded samples still to drop: the pre-skip.
    skip: u64,
    /// Samples from call time zero the track plays.
    length: u64,
    /// Samples handed out so far.
    given: u64,
    /// Decoded, not yet handed out: at most a frame plus a packet.
    pending: VecDeque<i16>,
    /// Where libopus decodes into: one packet at most.
    scratch: Vec<i16>,
    /// The header's output gain as a factor; `None` for 0 dB.
    gain: Option<f32>,
    /// Muted spans in call-time samples.
    muted: Vec<(u64, u64)>,
    bad_packets: u64,
}

impl<'a> TrackDecoder<'a> {
    fn new(
        packets: OpusPackets<'a>,
        pre_skip: u64,
        length: u64,
        output_gain: i16,
        muted: Vec<(u64, u64)>,
    ) -> Result<Self, MixError> {
        // Q7.8 dB (RFC 7845 §5.1).
        let gain = (output_gain != 0).then(|| 10f32.powf(f32::from(output_gain) / (20.0 * 256.0)));
        Ok(Self {
            packets,
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            durations: PacketDurations::new(),
            skip: pre_skip,
            length,
            given: 0,
            pending: VecDeque::with_capacity(FRAME + MAX_PACKET_SAMPLES as usize),
            scratch: vec![0; MAX_PACKET_SAMPLES as usize],
            gain,
            muted,
            bad_packets: 0,
        })
    }

    /// Fills `frame` with the call-time samples `[start, start + FRAME)`:
    /// zeros past the track's end and in muted spans.
    fn next_frame(&mut self, start: u64, frame: &mut [i16; FRAME]) {
        frame.fill(0);
        let want = usize::try_from(self.length.saturating_sub(self.given))
            .unwrap_or(FRAME)
            .min(FRAME);
        while self.pending.len() < want && self.decode_packet() {}
        let n = want.min(self.pending.len());
        for (x, y) in frame.iter_mut().zip(self.pending.drain(..n)) {
            *x = y;
        }
        self.given += n as u64;
        let end = start + FRAME as u64;
        for &(from, to) in &self.muted {
            if from < end && to > start {
                let a = usize::try_from(from.saturating_sub(start)).unwrap_or(FRAME);
                let b = usize::try_from(to - start).unwrap_or(FRAME).min(FRAME);
                if let Some(span) = frame.get_mut(a..b) {
                    span.fill(0);
                }
            }
        }
    }

    /// Decodes the next packet into `pending` (after what is left of the
    /// pre-skip); false at the end of the stream.
    fn decode_packet(&mut self) -> bool {
        let Some(packet) = self.packets.next_packet() else {
            return false;
        };
        let (samples, toc_read) = self.durations.of(&packet.data);
        let samples = samples as usize;
        let decoded = if toc_read {
            self.decoder
                .decode(&packet.data, &mut self.scratch, false)
                .ok()
                .filter(|&n| n == samples)
        } else {
            None
        };
        let len = match decoded {
            Some(n) => n,
            None => {
                self.bad_packets += 1;
                let silence = self.scratch.get_mut(..samples).unwrap_or_default();
                silence.fill(0);
                silence.len()
            }
        };
        let pcm = self.scratch.get(..len).unwrap_or_default();
        let skipped = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(pcm.len());
        self.skip -= skipped as u64;
        let pcm = pcm.get(skipped..).unwrap_or_default();
        match self.gain {
            None => self.pending.extend(pcm),
            Some(gain) => self.pending.extend(pcm.iter().map(|&x| {
                // `as` from f32 saturates at the i16 bounds.
                (f32::from(x) * gain).round() as i16
            })),
        }
        true
    }
}

/// The mix encoder: feeds libopus so packets fall on the 20 ms call-time grid
/// and muxes them into Ogg.
struct MixEncoder {
    encoder: opus::Encoder,
    writer: OggOpusWriter,
    /// Input not yet encoded: starts with the padding before call time zero.
    pending: Vec<i16>,
    /// The last packet encoded, held back until the next one is, so the final
    /// packet can carry the end trimming in its granule.
    held: Option<Vec<u8>>,
    packet: Vec<u8>,
    /// Granule the stream must end on: pre-skip plus the mix's length.
    end_granule: u64,
    packets_written: u32,
}

impl MixEncoder {
    fn new(options: &MixOptions, length: u64) -> Result<Self, MixError> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        encoder.set_bitrate(opus::Bitrate::Bits(options.bitrate_bps))?;
        encoder.set_complexity(options.complexity)?;
        let lookahead = usize::try_from(encoder.get_lookahead()?).unwrap_or(0);
        let head = OpusHead {
            channels: 1,
            pre_skip: MIX_PRE_SKIP,
            input_sample_rate: SAMPLE_RATE,
            output_gain: 0,
        };
        Ok(Self {
            encoder,
            writer: OggOpusWriter::new(options.serial, &head, VENDOR, &[]),
            // libopus's lookahead at 48 kHz is 6.5 ms at most, under a frame.
            pending: vec![0; usize::from(MIX_PRE_SKIP).saturating_sub(lookahead)],
            held: None,
            packet: vec![0; MAX_ENCODED_BYTES],
            end_granule: u64::from(MIX_PRE_SKIP) + length,
            packets_written: 0,
        })
    }

    /// Encodes what whole frames of input there are.
    fn push_frame(&mut self, pcm: &[i16], out: &mut impl Write) -> Result<(), MixError> {
        self.pending.extend_from_slice(pcm);
        while let Some(frame) = self.pending.get(..FRAME) {
            let len = self.encoder.encode(frame, &mut self.packet)?;
            self.pending.drain(..FRAME);
            let packet = self.packet.get(..len).unwrap_or_default().to_vec();
            if let Some(previous) = self.held.replace(packet) {
                self.write_packet(&previous, FRAME as u64, out)?;
            }
        }
        Ok(())
    }

    /// Encodes the rest of the input padded with silence, writes the final
    /// packet with the granule that trims the stream to its length, and ends
    /// the stream.
    fn finish(&mut self, out: &mut impl Write) -> Result<(), MixError> {
        if !self.pending.is_empty() {
            let padding = FRAME - self.pending.len();
            self.push_frame(&vec![0; padding], out)?;
        }
        if let Some(last) = self.held.take() {
            let samples = self
                .end_granule
                .saturating_sub(self.writer.granule_position());
            self.write_packet(&last, samples, out)?;
        }
        self.writer.finish();
        out.write_all(&self.writer.poll_output())?;
        Ok(())
    }

    fn write_packet(
        &mut self,
        packet: &[u8],
        samples: u64,
        out: &mut impl Write,
    ) -> Result<(), MixError> {
        let samples = u32::try_from(samples).unwrap_or(FRAME as u32);
        // The writer refuses packets only once finished, which this is not.
        if self.writer.push_packet(packet, samples).is_ok() {
            self.packets_written += 1;
        }
        if self.packets_written.is_multiple_of(PACKETS_PER_PAGE) {
            self.writer.flush();
        }
        out.write_all(&self.writer.poll_output())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
