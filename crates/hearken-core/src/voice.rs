//! Which frames of a speaker are worth transcribing: only those where the
//! speaker talks, plus a little around them.
//!
//! Sans-IO. Decoding Opus costs about 20 µs a frame, a hundred times what the
//! rest of the packet path costs, and in a real call most speakers are silent
//! most of the time. The sender already says when it hears speech, in the RTP
//! audio-level header extension (RFC 6464: a level in -dBov and a voice
//! activity flag), and an Opus encoder in DTX mode sends only a tiny packet
//! every 400 ms during silence. So silence is neither decoded nor sent to
//! the backend:
//!
//! - A frame is *speech* when the sender flags voice activity, or its level
//!   is above [`SILENCE_LEVEL_DBOV`]; without the extension, any frame that
//!   is not a DTX packet is speech (nothing is skipped).
//! - A *hangover* of silence after speech is still sent, so the backend
//!   hears the pause and finalizes the utterance (endpointing).
//! - A short *pre-roll* of silence before speech is held back and sent when
//!   speech starts: level meters lag the onset, and the first syllable must
//!   not be clipped.
//!
//! Skipped audio is counted, so coverage can say how much silence was not
//! sent. Word times stay right: [`super::transcript::SpeakerStream`] maps
//! stream time back to call time across the gaps.

use std::collections::VecDeque;
use std::sync::Arc;

/// A level at or below this (in -dBov, i.e. this many dB under full scale,
/// or quieter) is silence, unless the sender flags voice activity.
pub const SILENCE_LEVEL_DBOV: u8 = 60;
/// Opus packets this short carry no audio (DTX or an empty frame).
const DTX_MAX_BYTES: usize = 2;

/// What the sender said about a frame (RFC 6464), if anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VoiceHint {
    /// Level in -dBov: 0 is the loudest, 127 digital silence.
    pub level_dbov: Option<u8>,
    /// The sender's voice activity flag.
    pub voice_activity: Option<bool>,
}

impl VoiceHint {
    /// From the header extension's raw values (str0m reports the level as
    /// a negative dBov number).
    pub fn from_extension(audio_level: Option<i8>, voice_activity: Option<bool>) -> Self {
        Self {
            level_dbov: audio_level.map(|l| l.unsigned_abs().min(127)),
            voice_activity,
        }
    }

    /// Whether a frame with this hint and payload holds speech.
    pub fn is_speech(&self, payload_len: usize) -> bool {
        if payload_len <= DTX_MAX_BYTES {
            return false;
        }
        if self.voice_activity == Some(true) {
            return true;
        }
        match self.level_dbov {
            Some(level) => level < SILENCE_LEVEL_DBOV,
            // No extension: nothing says it is silence.
            None => true,
        }
    }
}

/// Settings of a [`TalkFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkFilterConfig {
    /// Silence still sent after speech (48 kHz samples).
    pub hangover: u64,
    /// Silence held back and sent when speech starts (48 kHz samples).
    pub preroll: u64,
}

impl TalkFilterConfig {
    /// From milliseconds.
    pub fn from_millis(hangover_ms: u64, preroll_ms: u64) -> Self {
        Self {
            hangover: hangover_ms.saturating_mul(48),
            preroll: preroll_ms.saturating_mul(48),
        }
    }
}

/// One frame on its way through the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkFrame {
    /// Call time of the first sample (48 kHz samples).
    pub position: u64,
    /// Length (48 kHz samples).
    pub samples: u64,
    /// The Opus packet.
    pub payload: Arc<[u8]>,
    /// The audio it was made from, for a telephone codec.
    pub source: Option<crate::conference::SourcePcm>,
}

/// Passes a speaker's frames while they talk (see the module docs).
#[derive(Debug)]
pub struct TalkFilter {
    config: TalkFilterConfig,
    /// Silent frames held for the pre-roll, in call order.
    held: VecDeque<TalkFrame>,
    held_samples: u64,
    /// Frames ending before this call time pass as hangover.
    pass_until: u64,
    skipped: u64,
    output: VecDeque<TalkFrame>,
}

impl TalkFilter {
    /// A filter with these settings.
    pub fn new(config: TalkFilterConfig) -> Self {
        Self {
            config,
            held: VecDeque::new(),
            held_samples: 0,
            pass_until: 0,
            skipped: 0,
            output: VecDeque::new(),
        }
    }

    /// Takes a frame; what passes comes out of [`Self::poll_frame`].
    pub fn handle_frame(&mut self, frame: TalkFrame, speech: bool) {
        let end = frame.position + frame.samples;
        if speech {
            // The pre-roll first, but only if it leads up to this frame:
            // silence held long before a gap is not a lead-in.
            while let Some(h) = self.held.pop_front() {
                self.held_samples -= h.samples;
                if h.position + h.samples + self.config.preroll >= frame.position {
                    self.output.push_back(h);
                } else {
                    self.skipped += h.samples;
                }
            }
            self.pass_until = end + self.config.hangover;
            self.output.push_back(frame);
        } else if end <= self.pass_until {
            self.output.push_back(frame);
        } else {
            self.held_samples += frame.samples;
            self.held.push_back(frame);
            while self.held_samples > self.config.preroll {
                let Some(old) = self.held.pop_front() else {
                    break;
                };
                self.held_samples -= old.samples;
                self.skipped += old.samples;
            }
        }
    }

    /// The next frame to transcribe, in call order.
    pub fn poll_frame(&mut self) -> Option<TalkFrame> {
        self.output.pop_front()
    }

    /// Seconds of silence skipped so far (held frames count once they are
    /// given up, or at [`Self::finish`]).
    pub fn skipped_seconds(&self) -> f64 {
        self.skipped as f64 / 48_000.0
    }

    /// The speaker is done: held silence is skipped for good.
    pub fn finish(&mut self) {
        self.skipped += self.held_samples;
        self.held.clear();
        self.held_samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 960;

    fn frame(i: u64) -> TalkFrame {
        TalkFrame {
            position: i * FRAME,
            samples: FRAME,
            payload: Arc::from(&[0x78u8, 1, 2, 3][..]),
            source: None,
        }
    }

    /// Runs `speech[i]` for frame `i`; returns the indices that passed.
    fn run(config: TalkFilterConfig, speech: &[bool]) -> (Vec<u64>, TalkFilter) {
        let mut f = TalkFilter::new(config);
        let mut passed = Vec::new();
        for (i, s) in speech.iter().enumerate() {
            f.handle_frame(frame(i as u64), *s);
            while let Some(p) = f.poll_frame() {
                passed.push(p.position / FRAME);
            }
        }
        f.finish();
        (passed, f)
    }

    #[test]
    fn silence_is_skipped_with_a_hangover_after_speech_and_a_preroll_before() {
        // 60 ms of hangover (3 frames), 40 ms of pre-roll (2 frames).
        let config = TalkFilterConfig::from_millis(60, 40);
        let mut speech = vec![false; 40];
        speech[10..15].fill(true);
        speech[30] = true;
        let (passed, f) = run(config, &speech);
        let expected: Vec<u64> = (8..18).chain(28..34).collect();
        assert_eq!(passed, expected);
        // Every frame is either passed or skipped, once.
        let skipped = (40 - expected.len()) as f64 * 0.02;
        assert!((f.skipped_seconds() - skipped).abs() < 1e-9);
    }

    #[test]
    fn continuous_speech_passes_everything_in_order() {
        let (passed, f) = run(TalkFilterConfig::from_millis(500, 200), &[true; 100]);
        assert_eq!(passed, (0..100).collect::<Vec<_>>());
        assert_eq!(f.skipped_seconds(), 0.0);
    }

    #[test]
    fn preroll_does_not_reach_back_across_a_gap_in_the_frames() {
        let mut f = TalkFilter::new(TalkFilterConfig::from_millis(0, 40));
        f.handle_frame(frame(0), false);
        // Frames 1..=99 never arrived (the sender paused); frame 100 speaks.
        f.handle_frame(frame(100), true);
        let passed: Vec<u64> = std::iter::from_fn(|| f.poll_frame())
            .map(|p| p.position / FRAME)
            .collect();
        assert_eq!(passed, [100]);
        assert!((f.skipped_seconds() - 0.02).abs() < 1e-9);
    }

    #[test]
    fn the_extension_decides_and_its_absence_keeps_everything() {
        let loud = VoiceHint::from_extension(Some(-30), None);
        let quiet = VoiceHint::from_extension(Some(-90), Some(false));
        let flagged = VoiceHint::from_extension(Some(-90), Some(true));
        let none = VoiceHint::default();
        assert!(loud.is_speech(80));
        assert!(!quiet.is_speech(80));
        assert!(flagged.is_speech(80));
        assert!(none.is_speech(80));
        // A DTX packet is silence whatever the hint says.
        assert!(!none.is_speech(1));
        assert!(!flagged.is_speech(2));
        assert_eq!(
            VoiceHint::from_extension(Some(-128), None).level_dbov,
            Some(127)
        );
    }
}
