//! One speaker's timeline: maps RTP time to call time.
//!
//! A frame's place on the call timeline comes from its RTP timestamp, not its
//! arrival, so DTX gaps and loss keep their true length. Arrival time only
//! anchors the mapping and tells us when the sender's clock jumped.
//!
//! All times are 48 kHz samples (u64): RTP time as the extended timestamp
//! str0m delivers in `MediaData.time`, call time as samples since the call
//! started.

/// How far RTP time may stray from arrival before the timeline re-anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineConfig {
    /// Most samples a frame's position may lie after its arrival.
    pub max_ahead: u64,
    /// Most samples a frame's position may lie before its arrival.
    pub max_behind: u64,
}

impl Default for TimelineConfig {
    /// 1 s ahead, 2 s behind.
    ///
    /// Ahead: a frame lands after its arrival only when the anchoring frame
    /// was delayed more than this one (startup jitter) or the sender's clock
    /// runs fast (50 ppm is 0.18 s an hour); a real timestamp jump (sender
    /// restart, a mixer switching sources) is far larger than 1 s.
    ///
    /// Behind: frames arrive late by network jitter, str0m's reorder hold (up
    /// to about 1 s) and bursts after a stall; 2 s tolerates all of these,
    /// while past that the audio is better placed at its arrival than far in
    /// the past (a timestamp reset, a new source).
    fn default() -> Self {
        Self {
            max_ahead: 48_000,
            max_behind: 96_000,
        }
    }
}

/// Why the timeline moved its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReanchorReason {
    /// The first frame since creation or [`SpeakerTimeline::reset`].
    FirstFrame,
    /// RTP time ran ahead of arrival by more than `max_ahead` (a jump).
    RtpAhead {
        /// Samples the frame would have landed after its arrival.
        ahead: u64,
    },
    /// RTP time fell behind arrival by more than `max_behind` (a reset).
    RtpBehind {
        /// Samples the frame would have landed before its arrival.
        behind: u64,
    },
}

/// Where a frame goes on the call timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Call time of the frame's first sample.
    pub position: u64,
    /// Set when this frame (re)anchored the timeline, with the reason.
    pub reanchored: Option<ReanchorReason>,
    /// The earliest call time at which the frame may have been spoken: never
    /// after `position` or its arrival. After a network stall the burst is
    /// re-anchored at its arrival, but its RTP time still says when it was
    /// spoken; the consent gate judges a frame by this time, so a stall can
    /// never move speech past the moment a gate opened.
    pub spoken: u64,
}

/// How fast the estimate of the fastest transit may grow (samples of call
/// time per sample of arrival time): 1 ms a second. Sender clocks drift by
/// 50 ppm or so, twenty times less, while a stall of seconds moves arrival
/// by whole seconds: the estimate follows the drift and ignores the stall.
const TRANSIT_RISE_PER_SAMPLE: f64 = 0.001;

/// RTP time and arrival time that disagree by more than this (48 kHz
/// samples, 30 s) between two frames are a new source or a timestamp reset,
/// not a stall: the spoken-time estimate starts over.
const MAX_STALL: u64 = 30 * 48_000;

/// One speaker's RTP-time to call-time mapping.
#[derive(Debug, Clone)]
pub struct SpeakerTimeline {
    config: TimelineConfig,
    /// Call time minus RTP time; i128 holds any difference of two u64.
    offset: Option<i128>,
    /// The smallest `arrival - rtp` seen on this source (the fastest
    /// transit), allowed to rise slowly: `rtp + fastest` estimates when a
    /// frame was spoken.
    fastest: Option<f64>,
    /// RTP time and arrival of the previous frame.
    last: Option<(u64, u64)>,
}

impl SpeakerTimeline {
    /// A timeline with no anchor yet.
    pub fn new(config: TimelineConfig) -> Self {
        Self {
            config,
            offset: None,
            fastest: None,
            last: None,
        }
    }

    /// Places a frame with extended RTP timestamp `rtp_time` that arrived at
    /// call time `arrival`.
    ///
    /// Frames are placed by RTP time relative to the anchor, so a late frame
    /// may land before earlier ones; the track decides what to do with it.
    pub fn handle_frame(&mut self, rtp_time: u64, arrival: u64) -> Placement {
        let rtp = i128::from(rtp_time);
        let now = i128::from(arrival);
        let reanchored = match self.offset {
            None => Some(ReanchorReason::FirstFrame),
            Some(offset) => {
                let drift = rtp + offset - now;
                if drift > i128::from(self.config.max_ahead) {
                    Some(ReanchorReason::RtpAhead {
                        ahead: saturate(drift),
                    })
                } else if -drift > i128::from(self.config.max_behind) {
                    Some(ReanchorReason::RtpBehind {
                        behind: saturate(-drift),
                    })
                } else {
                    None
                }
            }
        };
        let offset = match (reanchored, self.offset) {
            (None, Some(offset)) => offset,
            _ => now - rtp,
        };
        self.offset = Some(offset);
        let position = saturate(rtp + offset);
        let spoken = self.spoken(rtp_time, arrival).min(position);
        Placement {
            position,
            reanchored,
            spoken,
        }
    }

    /// Updates the fastest-transit estimate with a frame and returns the
    /// earliest call time it may have been spoken at (never after arrival).
    fn spoken(&mut self, rtp_time: u64, arrival: u64) -> u64 {
        let transit = arrival as f64 - rtp_time as f64;
        let continuous = self.last.is_some_and(|(last_rtp, last_arrival)| {
            let rtp_step = rtp_time as f64 - last_rtp as f64;
            let arrival_step = arrival as f64 - last_arrival as f64;
            (rtp_step - arrival_step).abs() <= MAX_STALL as f64
        });
        let fastest = match (self.fastest, self.last) {
            (Some(fastest), Some((_, last_arrival))) if continuous => {
                let elapsed = arrival.saturating_sub(last_arrival) as f64;
                (fastest + elapsed * TRANSIT_RISE_PER_SAMPLE).min(transit)
            }
            _ => transit,
        };
        self.fastest = Some(fastest);
        self.last = Some((rtp_time, arrival));
        let estimate = (rtp_time as f64 + fastest).floor();
        if estimate <= 0.0 {
            0
        } else {
            (estimate as u64).min(arrival)
        }
    }

    /// Forgets the anchor: the next frame anchors anew (a new SSRC, or the
    /// participant came back on a new session).
    pub fn reset(&mut self) {
        self.offset = None;
        self.fastest = None;
        self.last = None;
    }

    /// Whether a frame has anchored the timeline since creation or reset.
    pub fn is_anchored(&self) -> bool {
        self.offset.is_some()
    }
}

/// Clamps to the u64 range.
fn saturate(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 48_000;

    fn timeline() -> SpeakerTimeline {
        SpeakerTimeline::new(TimelineConfig::default())
    }

    #[test]
    fn first_frame_lands_at_its_arrival() {
        let mut t = timeline();
        assert!(!t.is_anchored());
        let p = t.handle_frame(3_000_000_000, 5 * SECOND);
        assert_eq!(p.position, 5 * SECOND);
        assert_eq!(p.reanchored, Some(ReanchorReason::FirstFrame));
        assert!(t.is_anchored());
    }

    #[test]
    fn later_frames_follow_rtp_time_not_arrival() {
        let mut t = timeline();
        t.handle_frame(1000, 100);
        // Jitter: arrives 30 ms late, still placed by its timestamp.
        let p = t.handle_frame(1960, 100 + 960 + 1440);
        assert_eq!((p.position, p.reanchored), (1060, None));
        // A DTX gap of 2 s keeps its length.
        let p = t.handle_frame(1960 + 2 * SECOND, 1060 + 2 * SECOND + 500);
        assert_eq!(p.position, 1060 + 2 * SECOND);
        assert_eq!(p.reanchored, None);
    }

    #[test]
    fn a_late_frame_may_land_earlier() {
        let mut t = timeline();
        t.handle_frame(10_000, SECOND);
        t.handle_frame(10_960, SECOND + 960);
        let p = t.handle_frame(9_040, SECOND + 1920);
        assert_eq!(p.position, SECOND - 960);
        assert_eq!(p.reanchored, None);
    }

    #[test]
    fn a_timestamp_jump_reanchors() {
        let mut t = timeline();
        t.handle_frame(0, 0);
        // Exactly max_ahead is tolerated.
        assert_eq!(t.handle_frame(2 * SECOND, SECOND).reanchored, None);
        let p = t.handle_frame(10 * SECOND, 2 * SECOND);
        assert_eq!(p.position, 2 * SECOND);
        assert_eq!(
            p.reanchored,
            Some(ReanchorReason::RtpAhead { ahead: 8 * SECOND })
        );
        // The new anchor holds.
        assert_eq!(
            t.handle_frame(10 * SECOND + 960, 2 * SECOND + 960).position,
            2 * SECOND + 960
        );
    }

    #[test]
    fn a_timestamp_reset_reanchors() {
        let mut t = timeline();
        t.handle_frame(5_000_000, 0);
        assert_eq!(t.handle_frame(5_000_000, 2 * SECOND).reanchored, None);
        let p = t.handle_frame(5_000_000 + 960, 3 * SECOND);
        assert_eq!(p.position, 3 * SECOND);
        assert_eq!(
            p.reanchored,
            Some(ReanchorReason::RtpBehind {
                behind: 3 * SECOND - 960
            })
        );
        // A source whose clock restarts near zero.
        let p = t.handle_frame(0, 4 * SECOND);
        assert_eq!(p.position, 4 * SECOND);
        assert!(matches!(
            p.reanchored,
            Some(ReanchorReason::RtpBehind { .. })
        ));
    }

    #[test]
    fn reset_forgets_the_anchor() {
        let mut t = timeline();
        t.handle_frame(777, 0);
        t.reset();
        assert!(!t.is_anchored());
        let p = t.handle_frame(123_456, 6 * SECOND);
        assert_eq!(p.position, 6 * SECOND);
        assert_eq!(p.reanchored, Some(ReanchorReason::FirstFrame));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut t = SpeakerTimeline::new(TimelineConfig {
            max_ahead: u64::MAX,
            max_behind: u64::MAX,
        });
        t.handle_frame(u64::MAX, 0);
        assert_eq!(t.handle_frame(0, 0).position, 0);
        assert_eq!(t.handle_frame(u64::MAX, u64::MAX).position, 0);
        t.reset();
        t.handle_frame(0, u64::MAX);
        assert_eq!(t.handle_frame(10, u64::MAX).position, u64::MAX);
        let p = t.handle_frame(u64::MAX, 0);
        assert_eq!(p.position, 0);
        assert!(matches!(
            p.reanchored,
            Some(ReanchorReason::RtpAhead { .. })
        ));
    }

    #[test]
    fn a_burst_after_a_stall_is_judged_by_when_it_was_spoken() {
        // 20 ms frames arrive 10 ms after they are spoken until a 4 s stall
        // at 57 s; the 200 frames sent during it arrive at once at 61 s.
        let mut t = timeline();
        let frame = 960;
        let mut rtp = 1_000_000;
        let mut spoken_at = 0;
        while spoken_at < 57 * SECOND {
            let p = t.handle_frame(rtp, spoken_at + 480);
            assert_eq!(p.spoken, spoken_at + 480, "on time: spoken = arrival");
            rtp += frame;
            spoken_at += frame;
        }
        let burst_arrival = 61 * SECOND;
        let first = t.handle_frame(rtp, burst_arrival);
        assert!(matches!(
            first.reanchored,
            Some(ReanchorReason::RtpBehind { .. })
        ));
        assert_eq!(first.position, burst_arrival, "re-anchored at its arrival");
        // Spoken at 57 s (plus the 10 ms transit, plus at most the 1 ms a
        // second the estimate may rise over 4 s).
        assert!(
            first.spoken >= 57 * SECOND && first.spoken <= 57 * SECOND + 480 + 4 * 48,
            "{}",
            first.spoken
        );
        for i in 1..200u64 {
            let p = t.handle_frame(rtp + i * frame, burst_arrival + i);
            assert!(p.position >= burst_arrival, "placed after the stall");
            assert!(
                p.spoken <= 57 * SECOND + i * frame + 480 + 4 * 48,
                "frame {i} judged at {} but spoken at {}",
                p.spoken,
                57 * SECOND + i * frame
            );
        }
    }

    #[test]
    fn a_late_anchor_does_not_delay_judgement() {
        // The anchoring frame arrives 300 ms late; later frames on time are
        // placed 300 ms after their arrival but judged at their arrival.
        let mut t = timeline();
        t.handle_frame(0, 300 * 48);
        let p = t.handle_frame(960, 960 + 10);
        assert_eq!(p.position, 300 * 48 + 960);
        assert_eq!(p.spoken, 960 + 10);
    }

    #[test]
    fn a_timestamp_reset_restarts_the_spoken_estimate() {
        let mut t = timeline();
        t.handle_frame(5_000_000_000, 0);
        t.handle_frame(5_000_000_960, 960);
        // The source restarts its clock: RTP time falls by hours.
        let p = t.handle_frame(7, 100 * SECOND);
        assert_eq!(p.spoken, 100 * SECOND);
        assert_eq!(
            t.handle_frame(967, 100 * SECOND + 960).spoken,
            100 * SECOND + 960
        );
    }

    proptest! {
        #[test]
        fn spoken_is_never_after_position_or_arrival(
            frames in proptest::collection::vec((any::<u32>(), 0u64..1_000_000_000, any::<bool>()), 1..50)
        ) {
            let mut t = timeline();
            for (rtp, arrival, reset) in frames {
                if reset {
                    t.reset();
                }
                let p = t.handle_frame(u64::from(rtp), arrival);
                prop_assert!(p.spoken <= p.position);
                prop_assert!(p.spoken <= arrival);
            }
        }

        #[test]
        fn placement_stays_near_arrival(
            frames in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<bool>()), 1..50)
        ) {
            let config = TimelineConfig::default();
            let mut t = SpeakerTimeline::new(config);
            for (rtp, arrival, reset) in frames {
                if reset {
                    t.reset();
                }
                let p = t.handle_frame(rtp, arrival);
                prop_assert!(p.position <= arrival.saturating_add(config.max_ahead));
                prop_assert!(p.position >= arrival.saturating_sub(config.max_behind));
                if p.reanchored.is_some() {
                    prop_assert_eq!(p.position, arrival);
                }
            }
        }
    }
}
