//! What one speaker sends when: alternating talk bursts and silences
//! ([`TalkSchedule`]) and the packet sequence that follows from them
//! ([`Pacer`]). Pure and clocked in 48 kHz samples since the speaker started,
//! so it is exact, testable without sleeping, and doubles as the RTP
//! timestamp (which must advance with real time, silences included).

use rand::Rng;
use rand::rngs::SmallRng;

use crate::audio::{Audio, AudioPacket, FRAME_SAMPLES, SAMPLE_RATE};

/// Shortest talk burst, in seconds.
const TALK_MIN_S: f64 = 2.0;
/// Longest talk burst, in seconds.
const TALK_MAX_S: f64 = 6.0;
/// Silences are drawn uniformly within ± this fraction of their mean.
const SILENCE_SPREAD: f64 = 0.5;
/// With DTX, an Opus encoder sends one comfort-noise frame every 400 ms.
pub const DTX_INTERVAL_SAMPLES: u64 = 400 * SAMPLE_RATE as u64 / 1_000;

/// A span of the speaker's timeline, in samples: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Talking (true) or silent.
    pub talking: bool,
    /// First sample after the segment.
    pub end: u64,
}

/// Random talk bursts of 2 to 6 s separated by silences sized so that on
/// average a fraction `ratio` of the time is talk.
///
/// The mean burst is 4 s, so the mean silence is `4 (1 - ratio) / ratio`
/// seconds (drawn within ±50 %). Boundaries fall on 20 ms frames.
#[derive(Debug)]
pub struct TalkSchedule {
    ratio: f64,
    rng: SmallRng,
    current: Segment,
}

impl TalkSchedule {
    /// A schedule starting at a random point of a random segment, so that
    /// speakers started together do not talk in lockstep.
    pub fn new(ratio: f64, mut rng: SmallRng) -> Self {
        let ratio = ratio.clamp(0.0, 1.0);
        let talking = rng.random_bool(ratio);
        let mut schedule = Self {
            ratio,
            rng,
            current: Segment { talking, end: 0 },
        };
        let full = schedule.draw_length(talking);
        // Enter the first segment part-way through.
        let remaining = (full as f64 * schedule.rng.random::<f64>()) as u64;
        schedule.current.end = frames_ceil(remaining.max(1));
        schedule
    }

    /// The segment containing sample `t`. `t` must not decrease between
    /// calls (the schedule is generated as it goes).
    pub fn at(&mut self, t: u64) -> Segment {
        while t >= self.current.end {
            let talking = !self.current.talking;
            let length = self.draw_length(talking);
            self.current = Segment {
                talking,
                end: self.current.end.saturating_add(length),
            };
        }
        self.current
    }

    /// Length in samples of a new segment (whole frames, at least one).
    fn draw_length(&mut self, talking: bool) -> u64 {
        // Degenerate ratios never switch.
        if self.ratio >= 1.0 {
            return if talking {
                u64::MAX / 2
            } else {
                FRAME_SAMPLES.into()
            };
        }
        if self.ratio <= 0.0 {
            return if talking {
                FRAME_SAMPLES.into()
            } else {
                u64::MAX / 2
            };
        }
        let seconds = if talking {
            self.rng.random_range(TALK_MIN_S..=TALK_MAX_S)
        } else {
            let talk_mean = (TALK_MIN_S + TALK_MAX_S) / 2.0;
            let mean = talk_mean * (1.0 - self.ratio) / self.ratio;
            mean * self
                .rng
                .random_range(1.0 - SILENCE_SPREAD..=1.0 + SILENCE_SPREAD)
        };
        frames_ceil((seconds * f64::from(SAMPLE_RATE)) as u64)
    }
}

/// `samples` rounded up to whole 20 ms frames (at least one).
fn frames_ceil(samples: u64) -> u64 {
    let frame = u64::from(FRAME_SAMPLES);
    samples.div_ceil(frame).max(1) * frame
}

/// Which packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Packet `index` of clip `clip`.
    Speech {
        /// Index into [`Audio::clips`].
        clip: usize,
        /// Index into that clip's packets.
        index: usize,
    },
    /// [`Audio::dtx_silence`], after which nothing is sent for up to 400 ms.
    DtxSilence,
    /// [`Audio::silence`], every 20 ms.
    Silence,
}

impl Payload {
    /// The Opus packet this names in `audio`.
    pub fn packet(self, audio: &Audio) -> &AudioPacket {
        match self {
            Self::Speech { clip, index } => &audio.clips[clip].packets[index],
            Self::DtxSilence => &audio.dtx_silence,
            Self::Silence => &audio.silence,
        }
    }
}

/// One packet due to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When, in samples since the speaker started; also its RTP timestamp.
    pub at: u64,
    /// What.
    pub payload: Payload,
    /// First packet of a talk burst after a DTX gap (sets the RTP marker).
    pub start_of_talkspurt: bool,
}

/// The packet sequence of one speaker: its clip looped from a random
/// offset while talking; while silent, the silence packet every 400 ms with
/// DTX, or every 20 ms without.
#[derive(Debug)]
pub struct Pacer {
    schedule: TalkSchedule,
    dtx: bool,
    clip: usize,
    cursor: usize,
    t: u64,
    after_dtx_gap: bool,
}

impl Pacer {
    /// A pacer over clip `clip` of `audio`, starting at packet `offset`,
    /// its first packet `phase` samples after the start.
    ///
    /// The phase spreads speakers over the 20 ms cycle: a ramp whose
    /// interval divides 20 ms would otherwise start every speaker at the
    /// same point of it, and they would all send in one burst.
    pub fn new(schedule: TalkSchedule, dtx: bool, clip: usize, offset: usize, phase: u64) -> Self {
        Self {
            schedule,
            dtx,
            clip,
            cursor: offset,
            t: phase,
            after_dtx_gap: false,
        }
    }

    /// When the next packet is due, in samples since the start.
    pub fn next_at(&self) -> u64 {
        self.t
    }

    /// The next packet, advancing the timeline past it.
    pub fn next(&mut self, audio: &Audio) -> Planned {
        let at = self.t;
        let segment = self.schedule.at(at);
        if segment.talking {
            let packets = &audio.clips[self.clip].packets;
            let index = self.cursor % packets.len();
            self.cursor = (index + 1) % packets.len();
            let start_of_talkspurt = std::mem::take(&mut self.after_dtx_gap);
            self.t += u64::from(packets[index].samples.max(1));
            Planned {
                at,
                payload: Payload::Speech {
                    clip: self.clip,
                    index,
                },
                start_of_talkspurt,
            }
        } else {
            let (payload, step) = if self.dtx {
                self.after_dtx_gap = true;
                // Talk resumes on time even inside a DTX interval.
                (
                    Payload::DtxSilence,
                    DTX_INTERVAL_SAMPLES.min(segment.end - at),
                )
            } else {
                (Payload::Silence, u64::from(audio.silence.samples))
            };
            self.t += step.max(1);
            Planned {
                at,
                payload,
                start_of_talkspurt: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{AudioPacket, Clip};
    use rand::SeedableRng;

    const SECOND: u64 = SAMPLE_RATE as u64;

    fn talk_fraction(ratio: f64, seed: u64, seconds: u64) -> f64 {
        let mut s = TalkSchedule::new(ratio, SmallRng::seed_from_u64(seed));
        let mut talking = 0u64;
        let mut t = 0u64;
        let end = seconds * SECOND;
        while t < end {
            let seg = s.at(t);
            let until = seg.end.min(end);
            if seg.talking {
                talking += until - t;
            }
            t = until;
        }
        talking as f64 / end as f64
    }

    #[test]
    fn the_schedule_achieves_the_talk_ratio() {
        for ratio in [0.1, 0.25, 0.5, 0.75] {
            // Average over several speakers, as the server sees them.
            let mean: f64 = (0..20)
                .map(|seed| talk_fraction(ratio, seed, 3_600))
                .sum::<f64>()
                / 20.0;
            assert!((mean - ratio).abs() < 0.02, "ratio {ratio}: got {mean}");
        }
        assert_eq!(talk_fraction(1.0, 1, 600), 1.0);
        assert_eq!(talk_fraction(0.0, 1, 600), 0.0);
    }

    #[test]
    fn bursts_are_two_to_six_seconds_on_frame_boundaries() {
        let mut s = TalkSchedule::new(0.25, SmallRng::seed_from_u64(3));
        let mut start = s.at(0).end;
        for _ in 0..200 {
            let seg = s.at(start);
            let length = seg.end - start;
            assert_eq!(length % u64::from(FRAME_SAMPLES), 0);
            if seg.talking {
                assert!(
                    (2 * SECOND..=6 * SECOND + 960).contains(&length),
                    "{length}"
                );
            }
            start = seg.end;
        }
    }

    fn audio() -> Audio {
        let packet = |level| AudioPacket {
            data: vec![0xf8, 0xff, 0xfe].into(),
            samples: FRAME_SAMPLES,
            level,
            voice: true,
        };
        Audio {
            clips: vec![Clip {
                name: "test".into(),
                packets: (0..10).map(packet).collect(),
            }],
            dtx_silence: AudioPacket {
                data: vec![0xf8].into(),
                samples: FRAME_SAMPLES,
                level: 127,
                voice: false,
            },
            silence: AudioPacket {
                data: vec![0xf8, 0xff, 0xfe].into(),
                samples: FRAME_SAMPLES,
                level: 127,
                voice: false,
            },
        }
    }

    /// Runs a pacer for `seconds`, returning (packets, talk packets).
    fn run(ratio: f64, dtx: bool, seconds: u64) -> Vec<Planned> {
        let audio = audio();
        let schedule = TalkSchedule::new(ratio, SmallRng::seed_from_u64(11));
        let mut pacer = Pacer::new(schedule, dtx, 0, 7, 0);
        let mut out = Vec::new();
        while pacer.next_at() < seconds * SECOND {
            out.push(pacer.next(&audio));
        }
        out
    }

    #[test]
    fn talking_loops_the_clip_every_20_ms() {
        let sent = run(1.0, true, 10);
        assert_eq!(sent.len(), 500);
        assert_eq!(
            sent[0].payload,
            Payload::Speech { clip: 0, index: 7 },
            "starts at the offset"
        );
        assert_eq!(sent[3].payload, Payload::Speech { clip: 0, index: 0 });
        for (i, p) in sent.iter().enumerate() {
            assert_eq!(p.at, i as u64 * 960);
        }
    }

    #[test]
    fn the_phase_delays_the_first_packet() {
        let audio = audio();
        let schedule = TalkSchedule::new(1.0, SmallRng::seed_from_u64(1));
        let mut pacer = Pacer::new(schedule, true, 0, 0, 123);
        assert_eq!(pacer.next(&audio).at, 123);
        assert_eq!(pacer.next(&audio).at, 123 + 960);
    }

    #[test]
    fn dtx_sends_every_400_ms_in_silence_and_marks_talk_resuming() {
        let sent = run(0.25, true, 600);
        let silent: Vec<&Planned> = sent
            .iter()
            .filter(|p| p.payload == Payload::DtxSilence)
            .collect();
        let talk = sent.len() - silent.len();
        // About 25 % of 30 000 frames talk, 75 % of 1 500 DTX intervals silent.
        assert!((6_000..9_000).contains(&talk), "{talk}");
        assert!((900..1_400).contains(&silent.len()), "{}", silent.len());
        for pair in sent.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap <= DTX_INTERVAL_SAMPLES && gap > 0);
            let resumed =
                pair[0].payload == Payload::DtxSilence && pair[1].payload != Payload::DtxSilence;
            assert_eq!(pair[1].start_of_talkspurt, resumed);
        }
    }

    #[test]
    fn without_dtx_silence_is_sent_every_20_ms() {
        let sent = run(0.25, false, 60);
        assert_eq!(sent.len(), 3_000);
        assert!(sent.iter().all(|p| !p.start_of_talkspurt));
        assert!(sent.iter().any(|p| p.payload == Payload::Silence));
        assert!(sent.iter().all(|p| p.payload != Payload::DtxSilence));
    }
}
