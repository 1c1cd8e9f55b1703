//! Cuts of a mix to a time range, and the length of an Ogg Opus file.

use std::io::Write;

use hearken_core::ogg::{OggOpusWriter, OpusHead};

use crate::MixError;
use crate::mix::{PACKETS_PER_PAGE, VENDOR, seconds};
use crate::reader::{OpusPackets, PacketDurations, SAMPLE_RATE, scan};

/// Writes a valid Ogg Opus file holding only the part `[start, end)` (call
/// time, seconds) of a mix written by [`mix`](crate::mix), so a share of a
/// time range cannot reach audio outside it.
///
/// Only whole packets inside the span are kept: `start` and `end` are first
/// rounded to the nearest 48 kHz sample, then snapped **inward** to the 20 ms
/// packet grid. An `end` at or past the end of the mix keeps the mix's last
/// packet, trimmed as in the mix. The cut has pre-skip 0 and granules counted
/// from its first packet, so it plays from its own time zero; its first few
/// milliseconds are decoded without the packets before them. Returns the
/// span actually kept, in call-time seconds.
///
/// Opus packets carry a little of what follows them (the encoder's lookahead,
/// about 6.5 ms, as overlap the decoder keeps for the next packet); no decoder
/// plays it, but the bits of the last packet are not blind to it.
pub fn cut(
    mix_ogg: &[u8],
    start: f64,
    end: f64,
    out: &mut impl Write,
) -> Result<(f64, f64), MixError> {
    if !start.is_finite() || !end.is_finite() || start >= end {
        return Err(MixError::InvalidSpan { start, end });
    }
    let scanned = scan(mix_ogg)?;
    let rate = f64::from(SAMPLE_RATE);
    // Float to int casts saturate: a negative start is sample 0.
    let from = (start * rate).round() as u64;
    let to = ((end * rate).round() as u64).min(scanned.length);
    if from >= scanned.length {
        return Err(MixError::SpanOutsideRecording {
            start,
            duration: seconds(scanned.length),
        });
    }

    let (head, mut packets) = OpusPackets::open(mix_ogg)?;
    let mut durations = PacketDurations::new();
    let mut writer: Option<OggOpusWriter> = None;
    let mut kept: Option<(u64, u64)> = None;
    let mut packets_kept = 0u32;
    // Decoded samples before the next packet, pre-skip included.
    let mut decoded: u64 = 0;
    while let Some(packet) = packets.next_packet() {
        let samples = u64::from(durations.of(&packet.data).0);
        let packet_start = decoded.checked_sub(head.pre_skip);
        decoded = decoded.saturating_add(samples);
        // Packets inside the pre-skip play before call time zero.
        let Some(packet_start) = packet_start else {
            continue;
        };
        let packet_end = decoded.saturating_sub(head.pre_skip).min(scanned.length);
        if packet_start >= to {
            break;
        }
        if packet_start < from || packet_end > to || packet_end <= packet_start {
            continue;
        }
        let writer = writer.get_or_insert_with(|| {
            let cut_head = OpusHead {
                channels: head.channels,
                pre_skip: 0,
                input_sample_rate: head.input_sample_rate,
                output_gain: head.output_gain,
            };
            OggOpusWriter::new(head.serial, &cut_head, VENDOR, &[])
        });
        // packet_end - packet_start <= samples <= 5760.
        let length = u32::try_from(packet_end - packet_start).unwrap_or(u32::MAX);
        // The writer refuses packets only once finished, which it is not.
        let _ = writer.push_packet(&packet.data, length);
        packets_kept += 1;
        if packets_kept.is_multiple_of(PACKETS_PER_PAGE) {
            writer.flush();
        }
        out.write_all(&writer.poll_output())?;
        kept = Some((kept.map_or(packet_start, |k| k.0), packet_end));
    }
    let (Some(mut writer), Some((kept_start, kept_end))) = (writer, kept) else {
        return Err(MixError::EmptySpan { start, end });
    };
    writer.finish();
    out.write_all(&writer.poll_output())?;
    out.flush()?;
    Ok((seconds(kept_start), seconds(kept_end)))
}

/// Length of an Ogg Opus file from call time zero: its last granule less its
/// pre-skip, at 48 kHz (or, for a file cut short, what its whole pages hold).
pub fn duration_seconds(ogg: &[u8]) -> Result<f64, MixError> {
    Ok(seconds(scan(ogg)?.length))
}

#[cfg(test)]
mod tests;
