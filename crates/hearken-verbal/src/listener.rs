//! Listening for one participant's answer: 48 kHz PCM in, utterances out.
//!
//! Sans-IO and clock-free: time is the number of samples fed, so a test runs a
//! minute of audio in milliseconds and the result never depends on how fast
//! the caller feeds it. Cheap (a filter and an energy per 10 ms), so it can
//! run wherever the decoded PCM is; the decoding itself happens in
//! [`crate::VerbalModel::recognise`].

use std::collections::VecDeque;
use std::ops::Range;

use crate::resample::{Decimator, FACTOR};

/// The rate the listener is fed (Opus decodes to it).
pub const INPUT_RATE: u32 = 48_000;
/// The rate the acoustic model needs.
pub const MODEL_RATE: u32 = 16_000;
/// Samples (at 16 kHz) in one 10 ms analysis frame.
const FRAME: usize = 160;
/// Frames over which the noise floor is the minimum level (1.5 s).
const FLOOR_WINDOW: usize = 150;

/// A span of the audio fed to one [`Listener`], in 48 kHz samples counted
/// from the first sample it was fed (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleSpan {
    /// First sample.
    pub start: u64,
    /// One past the last sample.
    pub end: u64,
}

impl SampleSpan {
    /// Its length in samples.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.len() * 1000 / u64::from(INPUT_RATE)
    }

    /// Whether a packet covering `packet` (48 kHz samples on the same count)
    /// holds any of this span: the packets to keep as the evidence clip.
    /// With 20 ms Opus packets, packet `n` covers `n*960 .. (n+1)*960`.
    pub fn overlaps(&self, packet: Range<u64>) -> bool {
        packet.start < self.end && self.start < packet.end
    }
}

/// How the listener decides where an answer starts and ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenConfig {
    /// A 10 ms frame is voiced when its level is this many dB above the
    /// noise floor, the quietest frame of the last 1.5 s (and above
    /// `min_level_dbfs`).
    pub speech_above_floor_db: f64,
    /// Nothing quieter than this is speech, however quiet the line.
    pub min_level_dbfs: f64,
    /// Voiced frames in a row that start an utterance (ms).
    pub start_ms: u32,
    /// Silence after speech that ends an utterance (ms). Long enough for the
    /// pause between "no" and "I do not agree" to stay inside one answer.
    pub end_silence_ms: u32,
    /// Shorter bursts are not an answer (a click, a cough) and are dropped (ms).
    pub min_speech_ms: u32,
    /// An utterance is cut here even if the speaker goes on: an answer is a
    /// few words, and this bounds the decoder's work (ms).
    pub max_utterance_ms: u32,
    /// Audio kept before the first voiced frame (ms): the decoder needs the
    /// onset and some silence to place the first word.
    pub pre_roll_ms: u32,
    /// Audio kept after the last voiced frame (ms).
    pub post_roll_ms: u32,
    /// The listener stops after this much audio in total (ms).
    pub max_listen_ms: u32,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            speech_above_floor_db: 12.0,
            min_level_dbfs: -55.0,
            start_ms: 30,
            end_silence_ms: 700,
            min_speech_ms: 150,
            max_utterance_ms: 6_000,
            pre_roll_ms: 300,
            post_roll_ms: 300,
            max_listen_ms: 15_000,
        }
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Silence after speech ([`ListenConfig::end_silence_ms`]).
    Silence,
    /// The speaker went on past [`ListenConfig::max_utterance_ms`].
    MaxLength,
    /// The listening time ran out or the caller finished, mid-speech.
    Stopped,
}

/// One stretch of speech, ready for [`crate::VerbalModel::recognise`].
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The audio at 16 kHz: the speech with its pre- and post-roll.
    pub audio: Vec<i16>,
    /// Where `audio` lies in what was fed (48 kHz samples): the evidence clip.
    pub span: SampleSpan,
    /// The voiced part of `span`.
    pub speech: SampleSpan,
    /// Why it ended.
    pub ended: EndReason,
}

/// What a listener has to say.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenEvent {
    /// An utterance to recognise. More may follow until `Done`.
    Utterance(Utterance),
    /// The listener has stopped (time ran out or [`Listener::finish`]) and
    /// ignores further input.
    Done {
        /// Whether any utterance was emitted.
        heard_speech: bool,
    },
}

#[derive(Debug)]
enum State {
    /// No speech yet; `run` voiced frames in a row so far.
    Quiet {
        run: u32,
    },
    /// In speech since frame `start`, last voiced frame `last_voiced`.
    Speech {
        start: u64,
        last_voiced: u64,
    },
    Done,
}

/// Listens to one participant for an answer. Feed it with
/// [`Listener::handle_pcm`], then drain [`Listener::poll_event`].
#[derive(Debug)]
pub struct Listener {
    config: ListenConfig,
    decimator: Decimator,
    /// 16 kHz samples not yet analysed (less than one frame).
    partial: Vec<i16>,
    /// Kept 16 kHz audio; `audio[0]` is sample `audio_start`.
    audio: Vec<i16>,
    audio_start: u64,
    /// Frames analysed.
    frames: u64,
    /// Levels (dBFS) of the last [`FLOOR_WINDOW`] frames.
    recent_levels: VecDeque<f64>,
    state: State,
    fed: u64,
    heard_speech: bool,
    events: VecDeque<ListenEvent>,
}

impl Listener {
    /// A listener at the start of a consent request.
    pub fn new(config: ListenConfig) -> Self {
        Self {
            config,
            decimator: Decimator::new(),
            partial: Vec::with_capacity(FRAME),
            audio: Vec::new(),
            audio_start: 0,
            frames: 0,
            recent_levels: VecDeque::with_capacity(FLOOR_WINDOW),
            state: State::Quiet { run: 0 },
            fed: 0,
            heard_speech: false,
            events: VecDeque::new(),
        }
    }

    /// Feeds decoded 48 kHz mono PCM, in order and without gaps (conceal or
    /// fill lost packets with silence first, or positions shift).
    pub fn handle_pcm(&mut self, pcm: &[i16]) {
        if matches!(self.state, State::Done) {
            return;
        }
        let limit = u64::from(self.config.max_listen_ms) * u64::from(INPUT_RATE) / 1000;
        let take = (limit.saturating_sub(self.fed)).min(pcm.len() as u64) as usize;
        self.fed += take as u64;
        let mut out = std::mem::take(&mut self.partial);
        self.decimator.process(&pcm[..take], &mut out);
        self.analyse(out);
        if self.fed >= limit {
            self.finish();
        }
    }

    /// Stops listening: what is buffered is analysed, an utterance in
    /// progress is emitted, then `Done`. Further input is ignored.
    pub fn finish(&mut self) {
        if matches!(self.state, State::Done) {
            return;
        }
        let mut out = std::mem::take(&mut self.partial);
        self.decimator.flush(&mut out);
        // Pad the last partial frame with silence so it is analysed too.
        if !out.is_empty() && !out.len().is_multiple_of(FRAME) {
            let padded = out.len().next_multiple_of(FRAME);
            out.resize(padded, 0);
        }
        self.analyse(out);
        if let State::Speech { start, last_voiced } = self.state {
            self.end_utterance(start, last_voiced, EndReason::Stopped);
        }
        self.state = State::Done;
        self.events.push_back(ListenEvent::Done {
            heard_speech: self.heard_speech,
        });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ListenEvent> {
        self.events.pop_front()
    }

    /// Whether the listener has stopped.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Analyses whole frames of `samples`, keeping the remainder for later.
    fn analyse(&mut self, samples: Vec<i16>) {
        let whole = samples.len() - samples.len() % FRAME;
        for frame in samples[..whole].chunks_exact(FRAME) {
            self.audio.extend_from_slice(frame);
            self.handle_frame(frame);
            self.frames += 1;
        }
        self.partial = samples[whole..].to_vec();
    }

    fn ms_to_frames(ms: u32) -> u64 {
        u64::from(ms).div_ceil(10)
    }

    fn handle_frame(&mut self, frame: &[i16]) {
        let level = level_dbfs(frame);
        // The noise floor is the quietest frame of the last 1.5 s: speech has
        // gaps between words (so the floor stays low while someone talks),
        // a steady noise has none (so it stops counting as speech once it has
        // filled the window).
        let floor = self
            .recent_levels
            .iter()
            .copied()
            .reduce(f64::min)
            .unwrap_or(-100.0);
        if self.recent_levels.len() == FLOOR_WINDOW {
            self.recent_levels.pop_front();
        }
        self.recent_levels.push_back(level);
        let voiced =
            level > floor + self.config.speech_above_floor_db && level > self.config.min_level_dbfs;
        let now = self.frames;
        match self.state {
            State::Quiet { run } => {
                let run = if voiced { run + 1 } else { 0 };
                if u64::from(run) >= Self::ms_to_frames(self.config.start_ms).max(1) {
                    self.state = State::Speech {
                        start: now + 1 - u64::from(run),
                        last_voiced: now,
                    };
                } else {
                    self.state = State::Quiet { run };
                    self.trim_quiet(run);
                }
            }
            State::Speech { start, last_voiced } => {
                let last_voiced = if voiced { now } else { last_voiced };
                self.state = State::Speech { start, last_voiced };
                if now - last_voiced >= Self::ms_to_frames(self.config.end_silence_ms) {
                    self.end_utterance(start, last_voiced, EndReason::Silence);
                } else if now + 1 - start >= Self::ms_to_frames(self.config.max_utterance_ms) {
                    self.end_utterance(start, last_voiced, EndReason::MaxLength);
                }
            }
            State::Done => {}
        }
    }

    /// While quiet, keeps only the pre-roll and the voiced run.
    fn trim_quiet(&mut self, run: u32) {
        let keep = (Self::ms_to_frames(self.config.pre_roll_ms) + u64::from(run)) as usize * FRAME;
        if self.audio.len() > keep + 50 * FRAME {
            let drop = self.audio.len() - keep;
            self.audio.drain(..drop);
            self.audio_start += drop as u64;
        }
    }

    fn end_utterance(&mut self, start: u64, last_voiced: u64, ended: EndReason) {
        let speech_frames = last_voiced + 1 - start;
        let audio_end = self.audio_start + self.audio.len() as u64;
        if speech_frames >= Self::ms_to_frames(self.config.min_speech_ms) {
            let pre = Self::ms_to_frames(self.config.pre_roll_ms) * FRAME as u64;
            let post = Self::ms_to_frames(self.config.post_roll_ms) * FRAME as u64;
            let speech_start = start * FRAME as u64;
            let speech_end = (last_voiced + 1) * FRAME as u64;
            let from = speech_start.saturating_sub(pre).max(self.audio_start);
            let to = (speech_end + post).min(audio_end);
            let audio = self.audio
                [(from - self.audio_start) as usize..(to - self.audio_start) as usize]
                .to_vec();
            // 16 kHz sample i is 48 kHz sample 3i; the end is capped at what was fed.
            let at48 = |i: u64| (i * FACTOR as u64).min(self.fed);
            self.heard_speech = true;
            self.events.push_back(ListenEvent::Utterance(Utterance {
                audio,
                span: SampleSpan {
                    start: at48(from),
                    end: at48(to),
                },
                speech: SampleSpan {
                    start: at48(speech_start),
                    end: at48(speech_end),
                },
                ended,
            }));
        }
        // What follows the utterance starts afresh.
        self.state = State::Quiet { run: 0 };
        self.trim_quiet(0);
    }
}

/// The level of a frame in dB relative to full scale (a full-scale square
/// wave is 0 dBFS; digital silence is reported as -120).
fn level_dbfs(frame: &[i16]) -> f64 {
    let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
    let mean = energy / frame.len().max(1) as f64 / (32768.0 * 32768.0);
    if mean <= 1e-12 {
        -120.0
    } else {
        10.0 * mean.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` of a 440 Hz tone at amplitude 8000 (about -15 dBFS RMS).
    fn tone(ms: u32) -> Vec<i16> {
        let n = (ms * 48) as usize;
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48_000.0).sin()) as i16
            })
            .collect()
    }

    fn silence(ms: u32) -> Vec<i16> {
        vec![0; (ms * 48) as usize]
    }

    /// Feeds in 20 ms packets, like decoded Opus, and collects the events.
    fn run(listener: &mut Listener, pcm: &[i16]) -> Vec<ListenEvent> {
        let mut events = Vec::new();
        for packet in pcm.chunks(960) {
            listener.handle_pcm(packet);
            while let Some(e) = listener.poll_event() {
                events.push(e);
            }
        }
        events
    }

    fn utterances(events: &[ListenEvent]) -> Vec<&Utterance> {
        events
            .iter()
            .filter_map(|e| match e {
                ListenEvent::Utterance(u) => Some(u),
                ListenEvent::Done { .. } => None,
            })
            .collect()
    }

    #[test]
    fn burst_after_silence_is_one_utterance_at_its_place() {
        // 1 s silence, 500 ms tone, 1 s silence: the tone is 48 kHz samples 48000..72000.
        let pcm = [silence(1000), tone(500), silence(1000)].concat();
        let mut l = Listener::new(ListenConfig::default());
        let events = run(&mut l, &pcm);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{events:?}");
        assert_eq!(u[0].ended, EndReason::Silence);
        // Voiced frames are whole 10 ms frames (480 samples at 48 kHz), and the
        // filter smears the edges by about 1 ms: allow one frame either side.
        assert!(
            u[0].speech.start.abs_diff(48_000) <= 480,
            "{:?}",
            u[0].speech
        );
        assert!(u[0].speech.end.abs_diff(72_000) <= 480, "{:?}", u[0].speech);
        // Pre- and post-roll of 300 ms (14400 samples) around it.
        assert_eq!(u[0].span.start, u[0].speech.start - 14_400);
        assert_eq!(u[0].span.end, u[0].speech.end + 14_400);
        assert_eq!(u[0].audio.len() as u64 * 3, u[0].span.len());
    }

    #[test]
    fn silence_never_makes_an_utterance() {
        let mut l = Listener::new(ListenConfig::default());
        let events = run(&mut l, &silence(20_000));
        assert_eq!(
            events,
            vec![ListenEvent::Done {
                heard_speech: false
            }]
        );
        assert!(l.is_done());
    }

    #[test]
    fn short_click_is_not_an_answer() {
        let pcm = [silence(500), tone(60), silence(1500)].concat();
        let mut l = Listener::new(ListenConfig::default());
        assert!(utterances(&run(&mut l, &pcm)).is_empty());
    }

    #[test]
    fn pause_shorter_than_end_silence_keeps_one_utterance() {
        // "no ... I do not agree": a 400 ms pause inside the answer.
        let pcm = [
            silence(500),
            tone(300),
            silence(400),
            tone(600),
            silence(1500),
        ]
        .concat();
        let mut l = Listener::new(ListenConfig::default());
        let events = run(&mut l, &pcm);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{events:?}");
        assert!(
            u[0].speech.len().abs_diff(1300 * 48) <= 960,
            "{:?}",
            u[0].speech
        );
    }

    #[test]
    fn pause_longer_than_end_silence_splits() {
        let pcm = [
            silence(500),
            tone(300),
            silence(1000),
            tone(300),
            silence(1500),
        ]
        .concat();
        let mut l = Listener::new(ListenConfig::default());
        assert_eq!(utterances(&run(&mut l, &pcm)).len(), 2);
    }

    /// Speech-like: 200 ms syllables with 50 ms gaps, for `ms` in all.
    fn syllables(ms: u32) -> Vec<i16> {
        let one = [tone(200), silence(50)].concat();
        one.iter()
            .copied()
            .cycle()
            .take((ms * 48) as usize)
            .collect()
    }

    #[test]
    fn endless_speech_is_cut_at_max_utterance() {
        let pcm = [silence(200), syllables(9000)].concat();
        let mut l = Listener::new(ListenConfig::default());
        let events = run(&mut l, &pcm);
        let u = utterances(&events);
        assert_eq!(u[0].ended, EndReason::MaxLength);
        // Cut at 6 s; the last voiced frame may sit before a 50 ms gap.
        assert!(
            u[0].speech.duration_ms().abs_diff(6000) <= 60,
            "{:?}",
            u[0].speech
        );
    }

    #[test]
    fn listening_time_runs_out_mid_speech() {
        let config = ListenConfig {
            max_listen_ms: 2000,
            ..ListenConfig::default()
        };
        let pcm = [silence(1500), tone(3000)].concat();
        let mut l = Listener::new(config);
        let events = run(&mut l, &pcm);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{events:?}");
        assert_eq!(u[0].ended, EndReason::Stopped);
        // Nothing past the 2 s that were listened to.
        assert_eq!(u[0].span.end, 96_000);
        assert_eq!(
            events.last(),
            Some(&ListenEvent::Done { heard_speech: true })
        );
    }

    #[test]
    fn finish_emits_speech_in_progress() {
        let pcm = [silence(300), tone(400)].concat();
        let mut l = Listener::new(ListenConfig::default());
        let mut events = run(&mut l, &pcm);
        l.finish();
        while let Some(e) = l.poll_event() {
            events.push(e);
        }
        assert_eq!(utterances(&events).len(), 1);
        assert_eq!(
            events.last(),
            Some(&ListenEvent::Done { heard_speech: true })
        );
        // Input after the end is ignored.
        l.handle_pcm(&tone(1000));
        assert_eq!(l.poll_event(), None);
    }

    #[test]
    fn steady_noise_is_not_speech() {
        // A constant hum at -15 dBFS from the start: it is its own floor.
        let mut l = Listener::new(ListenConfig::default());
        assert!(utterances(&run(&mut l, &tone(20_000))).is_empty());
    }

    #[test]
    fn noise_after_silence_counts_until_it_is_the_floor() {
        // Silence, then a hum that never stops: it is "speech" only until the
        // silence has left the 1.5 s window, so one utterance of about 1.5 s.
        let pcm = [silence(1000), tone(8000)].concat();
        let mut l = Listener::new(ListenConfig::default());
        let events = run(&mut l, &pcm);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{events:?}");
        assert!(
            u[0].speech.duration_ms().abs_diff(1500) <= 20,
            "{:?}",
            u[0].speech
        );
    }

    #[test]
    fn packet_overlap() {
        let span = SampleSpan {
            start: 1000,
            end: 2000,
        };
        assert!(!span.overlaps(0..960));
        assert!(span.overlaps(960..1920));
        assert!(span.overlaps(1920..2880));
        assert!(!span.overlaps(2000..2960));
        assert_eq!(span.duration_ms(), 20);
    }
}
