//! What the native and SIP ingests need from plain RTP beyond its header:
//! sequence numbers and timestamps extended to 64 bits, and timestamps on
//! the 48 kHz call clock.
//!
//! The WebRTC ingest gets both from str0m. The ingests that read RTP
//! themselves parse headers in the shell (with `rtp-types`); this module
//! takes the header's numbers, not its bytes, so the core stays free of any
//! RTP parser.

use crate::conference::SAMPLE_RATE;

/// Extends one RTP stream's 16-bit sequence numbers and 32-bit timestamps to
/// `u64`, counting wraps as RFC 3550 A.1 does with its cycle count.
///
/// The first value of each maps to itself (a first sequence number 65 535 is
/// 65 535). After that a value is placed next to the highest seen so far: if
/// it is less than half the range ahead (2^15 sequence numbers, 2^31
/// timestamp units) it is ahead, possibly past a wrap, and becomes the new
/// highest; otherwise it is behind, a reordered or repeated packet, and maps
/// below the highest without moving it. So 65 534, 0, 65 535 extend to
/// 65 534, 65 536, 65 535. A distance of exactly half the range counts as
/// behind, so no single stray value can move the highest that far.
///
/// **Before the start.** A packet sent before the first one seen, arriving
/// late across a wrap at the very start (first 2, then 65 534), would extend
/// below zero. It saturates to 0 instead: a value no later than the first
/// one, which the caller can tell is stale, though not its true place.
///
/// Unlike RFC 3550 A.1 there is no probation and no restart on a large jump:
/// one extender follows one SSRC, and the shell starts a new one when the
/// source changes. Timestamp jumps are for the speaker timeline to judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpExtender {
    seq: Unwrapper,
    timestamp: Unwrapper,
}

impl RtpExtender {
    /// An extender that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An extender that goes on where another left a stream: the highest
    /// extended sequence number and timestamp it gave (a stream handed over
    /// from one receiver to another mid-call).
    pub fn continuing(highest_seq: u64, highest_timestamp: u64) -> Self {
        Self {
            seq: Unwrapper {
                highest: Some(highest_seq),
            },
            timestamp: Unwrapper {
                highest: Some(highest_timestamp),
            },
        }
    }

    /// The extended value of sequence number `seq`.
    pub fn extend_seq(&mut self, seq: u16) -> u64 {
        self.seq.extend(u64::from(seq), 16)
    }

    /// The extended value of RTP timestamp `ts`.
    pub fn extend_timestamp(&mut self, ts: u32) -> u64 {
        self.timestamp.extend(u64::from(ts), 32)
    }
}

/// The wrap counting of one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Unwrapper {
    /// The highest extended value so far.
    highest: Option<u64>,
}

impl Unwrapper {
    /// Extends `value`, a field of `bits` bits.
    fn extend(&mut self, value: u64, bits: u32) -> u64 {
        let range = 1u64 << bits;
        let Some(highest) = self.highest else {
            self.highest = Some(value);
            return value;
        };
        // How far `value` is ahead of the highest, modulo the range.
        let ahead = value.wrapping_sub(highest) & (range - 1);
        if ahead < range / 2 {
            // Saturating only to stay panic-free: 2^48 wraps of a sequence
            // number take longer than the universe has existed.
            let extended = highest.saturating_add(ahead);
            self.highest = Some(extended);
            extended
        } else {
            highest.saturating_sub(range - ahead)
        }
    }
}

/// An extended RTP timestamp at `clock_rate` Hz on the 48 kHz call clock:
/// `extended × 48 000 / clock_rate`, rounded down (8 kHz × 6, 16 kHz × 3,
/// 48 kHz × 1).
///
/// Apply it to the extended timestamp from [`RtpExtender`], not to the
/// 32-bit one: the 32-bit value wraps every 2^32 units (under 6 days at
/// 8 kHz) and, scaled by 6, would jump back where the call clock must go on.
/// For rates that do not divide 48 000 (44.1 kHz, 90 kHz) each value is
/// scaled from the extended timestamp itself, so the rounding never adds up.
///
/// A clock rate of 0, which no payload format has, passes the value through
/// unchanged (as if 48 kHz) rather than dividing by zero; a result past
/// `u64::MAX` saturates.
pub fn rescale_to_48k(extended: u64, clock_rate: u32) -> u64 {
    if clock_rate == 0 {
        return extended;
    }
    let scaled = u128::from(extended) * u128::from(SAMPLE_RATE) / u128::from(clock_rate);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(values: &[u16]) -> Vec<u64> {
        let mut x = RtpExtender::new();
        values.iter().map(|&s| x.extend_seq(s)).collect()
    }

    fn timestamps(values: &[u32]) -> Vec<u64> {
        let mut x = RtpExtender::new();
        values.iter().map(|&t| x.extend_timestamp(t)).collect()
    }

    #[test]
    fn first_value_maps_to_itself() {
        assert_eq!(seqs(&[65_535]), [65_535]);
        assert_eq!(seqs(&[0]), [0]);
        assert_eq!(timestamps(&[u32::MAX]), [4_294_967_295]);
    }

    #[test]
    fn a_continuing_extender_goes_on_past_the_wraps_already_counted() {
        // Handed over after two sequence wraps (2 × 65 536 + 65 535) and one
        // timestamp wrap (2^32 + 4 294 967 000).
        let mut x = RtpExtender::continuing(196_607, 8_589_934_296);
        assert_eq!(x.extend_seq(0), 196_608);
        assert_eq!(x.extend_seq(65_534), 196_606, "reordered, from before");
        assert_eq!(x.extend_timestamp(664), 8_589_934_592 + 664);
    }

    #[test]
    fn sequence_wraps_forward() {
        assert_eq!(seqs(&[65_535, 0]), [65_535, 65_536]);
        assert_eq!(
            seqs(&[65_534, 65_535, 0, 1]),
            [65_534, 65_535, 65_536, 65_537]
        );
        // A second wrap: 2 × 65 536 + 3.
        let mut x = RtpExtender::new();
        let mut last = 0;
        for i in 0..=(2 * 65_536 + 3u64) {
            last = x.extend_seq(i as u16);
        }
        assert_eq!(last, 131_075);
    }

    #[test]
    fn sequence_reordered_around_a_wrap() {
        assert_eq!(seqs(&[65_534, 0, 65_535]), [65_534, 65_536, 65_535]);
        // A repeat and a late packet do not move the highest.
        assert_eq!(seqs(&[10, 12, 12, 11, 13]), [10, 12, 12, 11, 13]);
        // 65 535 after 1 (past a wrap) is 2 behind: 65 537 - 2.
        assert_eq!(
            seqs(&[65_530, 1, 65_535, 2]),
            [65_530, 65_537, 65_535, 65_538]
        );
    }

    /// Less than 2^15 ahead is ahead; 2^15 and more is behind.
    #[test]
    fn sequence_half_range_boundary() {
        assert_eq!(seqs(&[0, 32_767]), [0, 32_767]);
        // 40 000 is 32 768 from 7 232 either way: behind both ways (7 232 -
        // 32 768 is below zero, so 0).
        assert_eq!(seqs(&[7_232, 40_000]), [7_232, 0]);
        assert_eq!(seqs(&[40_000, 7_232]), [40_000, 7_232]);
        // 7 231 is 32 767 ahead of 40 000, past the wrap.
        assert_eq!(seqs(&[40_000, 7_231]), [40_000, 7_231 + 65_536]);
    }

    /// A packet from before the first one, across a wrap at the start,
    /// saturates at 0 and leaves the highest alone.
    #[test]
    fn before_the_first_saturates_at_zero() {
        assert_eq!(seqs(&[2, 65_534, 3]), [2, 0, 3]);
        assert_eq!(timestamps(&[960, 4_294_966_336, 1_920]), [960, 0, 1_920]);
        // 72 behind 70 saturates; 1 behind is exact.
        assert_eq!(seqs(&[70, 65_534, 69]), [70, 0, 69]);
        assert_eq!(seqs(&[1_000, 998]), [1_000, 998]);
    }

    #[test]
    fn timestamps_wrap_at_2_pow_32() {
        // 20 ms at 48 kHz is 960 units: 2^32 - 960, then 0, then 960.
        assert_eq!(
            timestamps(&[4_294_966_336, 0, 960]),
            [4_294_966_336, 4_294_967_296, 4_294_968_256]
        );
        // Reordered across the wrap.
        assert_eq!(
            timestamps(&[4_294_966_336, 960, 0]),
            [4_294_966_336, 4_294_968_256, 4_294_967_296]
        );
        // A timestamp gap of an hour at 48 kHz (172 800 000) is still ahead.
        assert_eq!(
            timestamps(&[4_200_000_000, 77_832_704]),
            [4_200_000_000, 4_372_800_000]
        );
    }

    #[test]
    fn sequence_and_timestamp_are_independent() {
        let mut x = RtpExtender::new();
        assert_eq!(x.extend_seq(65_535), 65_535);
        assert_eq!(x.extend_timestamp(5), 5);
        assert_eq!(x.extend_seq(0), 65_536);
        // 6 behind 5: saturates, whatever the sequence numbers did.
        assert_eq!(x.extend_timestamp(4_294_967_295), 0);
    }

    #[test]
    fn rescale_common_rates() {
        // 20 ms: 160 units at 8 kHz, 320 at 16 kHz, 960 at 48 kHz: 960.
        assert_eq!(rescale_to_48k(160, 8_000), 960);
        assert_eq!(rescale_to_48k(320, 16_000), 960);
        assert_eq!(rescale_to_48k(960, 48_000), 960);
        // 24 kHz doubles; 32 kHz is × 1.5.
        assert_eq!(rescale_to_48k(480, 24_000), 960);
        assert_eq!(rescale_to_48k(640, 32_000), 960);
    }

    #[test]
    fn rescale_rounds_down_without_drift() {
        // 44.1 kHz: 441 units are 10 ms, 480 samples; 1 unit is 1.088…, so 1.
        assert_eq!(rescale_to_48k(441, 44_100), 480);
        assert_eq!(rescale_to_48k(1, 44_100), 1);
        // 90 kHz: 3 units are 1.6 samples, so 1; a second is 48 000.
        assert_eq!(rescale_to_48k(3, 90_000), 1);
        assert_eq!(rescale_to_48k(90_000, 90_000), 48_000);
        // An hour at 44.1 kHz (158 760 000) is an hour at 48 kHz
        // (172 800 000), exactly: no rounding carried over.
        assert_eq!(rescale_to_48k(158_760_000, 44_100), 172_800_000);
    }

    /// At 8 kHz the 32-bit timestamp wraps; the extended one scaled by 6 goes
    /// on: 2^32 - 160 and 2^32 are 960 samples apart.
    #[test]
    fn rescale_after_a_wrap_at_8k() {
        let mut x = RtpExtender::new();
        let before = x.extend_timestamp(4_294_967_136);
        let after = x.extend_timestamp(0);
        assert_eq!(rescale_to_48k(before, 8_000), 25_769_802_816);
        assert_eq!(rescale_to_48k(after, 8_000), 25_769_803_776);
    }

    #[test]
    fn rescale_edges() {
        assert_eq!(rescale_to_48k(12_345, 0), 12_345);
        assert_eq!(rescale_to_48k(u64::MAX, 8_000), u64::MAX);
        assert_eq!(rescale_to_48k(u64::MAX, 48_000), u64::MAX);
        assert_eq!(rescale_to_48k(0, 8_000), 0);
    }
}
