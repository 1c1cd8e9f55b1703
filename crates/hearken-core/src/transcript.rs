//! One speaker's audio on its way to a transcription backend, as bookkeeping.
//!
//! Sans-IO. The shell hands each consented frame here with its call time,
//! either as mono PCM (a telephone leg's own 8 or 16 kHz audio) or as the
//! Opus packet itself, which is kept as it came because it is small (for a
//! backend that takes `linear16` the shell decodes it as it sends it); this
//! decides what to send on the current
//! backend connection, keeps everything not yet covered by a final result (so
//! a reconnect resends it and no word is lost), maps the backend's word times
//! (which count audio on *one connection*, skipping whatever was not sent)
//! back to call time, and drops words a resend produced twice.
//!
//! All lengths, stream time included, count 48 kHz samples, as everywhere
//! in the core, whatever form the audio takes on the wire.

use std::collections::VecDeque;
use std::sync::Arc;

/// Sample rate of the PCM decoded from Opus for a backend that takes
/// `linear16` (a telephone leg's audio keeps its own rate).
pub const PCM_RATE: u64 = 16_000;
/// Call-time samples (48 kHz) per PCM sample (16 kHz).
const CALL_PER_PCM: u64 = 3;
/// Call time per second.
const CALL_RATE: u64 = 48_000;

/// The form in which a chunk goes to the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkAudio {
    /// Mono samples at the rate of the speaker's stream (16 kHz decoded
    /// from Opus, or a telephone leg's own rate).
    Pcm(Vec<i16>),
    /// The Opus packet as the speaker sent it.
    Opus(Arc<[u8]>),
}

/// Consented audio of one speaker, ready for the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Call time of the first sample (48 kHz samples).
    pub call_start: u64,
    /// Length in 48 kHz samples.
    pub samples: u64,
    /// The audio.
    pub audio: ChunkAudio,
}

impl Chunk {
    /// A chunk of decoded 16 kHz PCM.
    pub fn pcm(call_start: u64, pcm: Vec<i16>) -> Self {
        Self {
            call_start,
            samples: pcm.len() as u64 * CALL_PER_PCM,
            audio: ChunkAudio::Pcm(pcm),
        }
    }

    /// A chunk of PCM at `rate` Hz (8 or 16 kHz: a telephone leg's own
    /// audio; any rate dividing 48 kHz).
    pub fn pcm_at(call_start: u64, rate: u32, pcm: Vec<i16>) -> Self {
        let per_sample = CALL_RATE / u64::from(rate.max(1));
        Self {
            call_start,
            samples: pcm.len() as u64 * per_sample,
            audio: ChunkAudio::Pcm(pcm),
        }
    }

    /// An Opus packet of `samples` 48 kHz samples, passed through.
    pub fn opus(call_start: u64, samples: u64, packet: Arc<[u8]>) -> Self {
        Self {
            call_start,
            samples,
            audio: ChunkAudio::Opus(packet),
        }
    }

    fn len(&self) -> u64 {
        self.samples
    }

    /// The chunk as `linear16` bytes (little endian); `None` for Opus.
    pub fn pcm_bytes(&self) -> Option<Vec<u8>> {
        match &self.audio {
            ChunkAudio::Pcm(pcm) => {
                let mut bytes = Vec::with_capacity(pcm.len() * 2);
                extend_linear16(&mut bytes, pcm);
                Some(bytes)
            }
            ChunkAudio::Opus(_) => None,
        }
    }
}

/// Appends samples to `out` as `linear16` (little-endian 16-bit PCM).
pub fn extend_linear16(out: &mut Vec<u8>, pcm: &[i16]) {
    out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
}

/// A word as the backend reported it, in seconds of stream time.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWord {
    /// The word (punctuated if the backend gave it).
    pub word: String,
    /// Start, seconds since the connection's first audio.
    pub start: f64,
    /// End, seconds since the connection's first audio.
    pub end: f64,
    /// Confidence, 0-1.
    pub confidence: f64,
}

/// A word on the call timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallWord {
    /// The word.
    pub word: String,
    /// Start, seconds of call time.
    pub start: f64,
    /// End, seconds of call time.
    pub end: f64,
    /// Confidence, 0-1.
    pub confidence: f64,
}

/// Audio the buffer had to give up (it overflowed while the backend was
/// unreachable or slow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LostSpan {
    /// Call time of the first lost sample (seconds).
    pub start: f64,
    /// Seconds lost.
    pub seconds: f64,
}

/// How much of a speaker's consented audio the transcript covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    /// Seconds of consented audio captured for transcription.
    pub captured_seconds: f64,
    /// Seconds covered by final results.
    pub acknowledged_seconds: f64,
    /// Seconds dropped because the buffer overflowed.
    pub lost_seconds: f64,
    /// Seconds waiting (unsent or sent but not yet final).
    pub buffered_seconds: f64,
    /// Seconds of consented silence not sent at all (the speaker was not
    /// talking; see [`crate::voice`]). Not part of `captured_seconds`.
    #[serde(default)]
    pub skipped_silence_seconds: f64,
    /// Seconds captured but given up unacknowledged because the speaker
    /// declined (see [`SpeakerStream::purge`]).
    #[serde(default)]
    pub purged_seconds: f64,
}

impl Coverage {
    /// Whether audio is missing: some was lost to a full buffer, or some is
    /// still waiting for the backend (at the end of a call: never
    /// acknowledged). Purged audio is not missing: a decline withdrew it.
    pub fn is_incomplete(&self) -> bool {
        self.lost_seconds > 0.0 || self.buffered_seconds > 0.0
    }
}

/// One sent chunk on the current connection.
#[derive(Debug, Clone, Copy)]
struct Sent {
    stream_start: u64,
    call_start: u64,
    len: u64,
}

/// One speaker's stream.
#[derive(Debug)]
pub struct SpeakerStream {
    /// Captured and not yet acknowledged, in call order.
    pending: VecDeque<Chunk>,
    /// How many of `pending` were sent on the current connection.
    sent: usize,
    /// Spans sent on the current connection, in stream order.
    spans: Vec<Sent>,
    /// Samples (48 kHz) sent on the current connection.
    stream_pos: u64,
    connected: bool,
    max_buffered: u64,
    buffered: u64,
    captured: u64,
    acknowledged: u64,
    lost: u64,
    purged: u64,
    /// Call time (48 kHz) up to which final words were already reported.
    final_watermark: u64,
}

impl SpeakerStream {
    /// A stream buffering at most `max_buffered_seconds` of audio.
    pub fn new(max_buffered_seconds: u64) -> Self {
        Self {
            pending: VecDeque::new(),
            sent: 0,
            spans: Vec::new(),
            stream_pos: 0,
            connected: false,
            max_buffered: max_buffered_seconds.saturating_mul(CALL_RATE),
            buffered: 0,
            captured: 0,
            acknowledged: 0,
            lost: 0,
            purged: 0,
            final_watermark: 0,
        }
    }

    /// Adds consented audio. Never blocks: past the buffer bound the oldest
    /// audio is given up, and the lost span is returned so the shell can
    /// count and log it.
    pub fn push(&mut self, chunk: Chunk) -> Option<LostSpan> {
        if chunk.samples == 0 {
            return None;
        }
        self.captured += chunk.len();
        self.buffered += chunk.len();
        self.pending.push_back(chunk);
        let mut lost: Option<(u64, u64)> = None;
        while self.buffered > self.max_buffered {
            let Some(old) = self.pending.pop_front() else {
                break;
            };
            self.buffered -= old.len();
            self.lost += old.len();
            if self.sent > 0 {
                self.sent -= 1;
                if !self.spans.is_empty() {
                    self.spans.remove(0);
                }
            }
            let span = lost.get_or_insert((old.call_start, 0));
            span.1 += old.len();
        }
        lost.map(|(start, len)| LostSpan {
            start: start as f64 / CALL_RATE as f64,
            seconds: len as f64 / CALL_RATE as f64,
        })
    }

    /// A backend connection opened: everything not yet acknowledged is sent
    /// again on it, from its own stream time zero.
    pub fn handle_connected(&mut self) {
        self.connected = true;
        self.sent = 0;
        self.spans.clear();
        self.stream_pos = 0;
    }

    /// The connection dropped.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.sent = 0;
        self.spans.clear();
        self.stream_pos = 0;
    }

    /// The next audio to send on the connection.
    pub fn poll_send(&mut self) -> Option<&Chunk> {
        if !self.connected {
            return None;
        }
        let chunk = self.pending.get(self.sent)?;
        self.spans.push(Sent {
            stream_start: self.stream_pos,
            call_start: chunk.call_start,
            len: chunk.len(),
        });
        self.stream_pos += chunk.len();
        self.sent += 1;
        Some(chunk)
    }

    fn to_call(&self, stream_seconds: f64) -> Option<u64> {
        let s = (stream_seconds.max(0.0) * CALL_RATE as f64).round() as u64;
        let span = self
            .spans
            .iter()
            .rev()
            .find(|sp| sp.stream_start <= s)
            .or_else(|| self.spans.first())?;
        let offset = s.saturating_sub(span.stream_start).min(span.len);
        Some(span.call_start + offset)
    }

    fn map_words(&self, words: &[StreamWord]) -> Vec<CallWord> {
        words
            .iter()
            .filter_map(|w| {
                let start = self.to_call(w.start)?;
                // A word never lasts longer on the call than in the stream:
                // one that straddles audio that was not sent (a skipped
                // silence, a lost span) keeps its start and its length.
                let length = ((w.end - w.start).max(0.0) * CALL_RATE as f64).round() as u64;
                let end = self.to_call(w.end)?.clamp(start, start + length);
                Some(CallWord {
                    word: w.word.clone(),
                    start: start as f64 / CALL_RATE as f64,
                    end: end as f64 / CALL_RATE as f64,
                    confidence: w.confidence,
                })
            })
            .collect()
    }

    /// An interim result: its words on the call timeline (they may change).
    pub fn handle_interim(&self, words: &[StreamWord]) -> Vec<CallWord> {
        self.map_words(words)
    }

    /// A final result covering stream time `[start, start + duration)`:
    /// acknowledges the audio it covers and returns its words on the call
    /// timeline, without those already reported by an earlier final (a
    /// resend after a reconnect transcribes some audio twice).
    pub fn handle_final(
        &mut self,
        start: f64,
        duration: f64,
        words: &[StreamWord],
    ) -> Vec<CallWord> {
        let mapped = self.map_words(words);
        let watermark = self.final_watermark;
        // A word that starts before what was already reported is a repeat.
        let fresh: Vec<CallWord> = mapped
            .into_iter()
            .filter(|w| (w.start * CALL_RATE as f64).round() as u64 >= watermark)
            .collect();
        if let Some(last) = fresh.last() {
            self.final_watermark = self
                .final_watermark
                .max((last.end * CALL_RATE as f64).round() as u64);
        }
        // Acknowledge the chunks the result covers.
        let covered_to = ((start + duration).max(0.0) * CALL_RATE as f64).round() as u64;
        let mut acked = 0;
        for sp in &self.spans {
            if sp.stream_start + sp.len <= covered_to {
                acked += 1;
            } else {
                break;
            }
        }
        // Spans and pending chunks correspond one to one from the front.
        let acked = acked.min(self.sent);
        for _ in 0..acked {
            if let Some(c) = self.pending.pop_front() {
                self.buffered -= c.len();
                self.acknowledged += c.len();
            }
        }
        self.sent -= acked;
        // `spans[i]` describes `pending[i]`: drop them together. Finals come
        // in stream order, so later words never refer to acknowledged audio.
        self.spans.drain(..acked);
        fresh
    }

    /// The speaker declined: gives up everything not acknowledged, unsent
    /// or sent and waiting to be resent after a reconnect, so none of it is
    /// sent again. Returns the seconds given up. The connection the sent
    /// part went out on must be dropped too (its spans are forgotten).
    pub fn purge(&mut self) -> f64 {
        let purged = self.buffered;
        self.pending.clear();
        self.buffered = 0;
        self.purged += purged;
        self.sent = 0;
        self.spans.clear();
        self.stream_pos = 0;
        self.connected = false;
        purged as f64 / CALL_RATE as f64
    }

    /// Whether everything captured has been acknowledged.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty()
    }

    /// Coverage so far.
    pub fn coverage(&self) -> Coverage {
        let s = |n: u64| n as f64 / CALL_RATE as f64;
        Coverage {
            captured_seconds: s(self.captured),
            acknowledged_seconds: s(self.acknowledged),
            lost_seconds: s(self.lost),
            buffered_seconds: s(self.buffered),
            skipped_silence_seconds: 0.0,
            purged_seconds: s(self.purged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_incomplete_when_audio_is_lost_or_never_acknowledged() {
        let full = Coverage {
            captured_seconds: 10.0,
            acknowledged_seconds: 8.0,
            purged_seconds: 2.0,
            ..Coverage::default()
        };
        assert!(
            !full.is_incomplete(),
            "a decline's purge is not missing audio"
        );
        let lost = Coverage {
            lost_seconds: 0.02,
            ..full
        };
        assert!(lost.is_incomplete());
        let unacknowledged = Coverage {
            buffered_seconds: 0.5,
            ..full
        };
        assert!(unacknowledged.is_incomplete());
    }

    /// `n` chunks of 20 ms starting at call time `at` seconds, loud.
    fn talk(stream: &mut SpeakerStream, at: f64, n: usize) {
        for i in 0..n {
            let call_start = ((at + i as f64 * 0.02) * 48_000.0) as u64;
            stream.push(Chunk::pcm(call_start, vec![1000; 320]));
        }
    }

    fn drain(stream: &mut SpeakerStream) -> usize {
        std::iter::from_fn(|| stream.poll_send().map(|_| ())).count()
    }

    fn word(w: &str, start: f64, end: f64) -> StreamWord {
        StreamWord {
            word: w.into(),
            start,
            end,
            confidence: 0.9,
        }
    }

    #[test]
    fn audio_before_the_connection_is_sent_once_it_opens() {
        let mut s = SpeakerStream::new(60);
        talk(&mut s, 2.0, 50);
        assert!(s.poll_send().is_none(), "not connected");
        s.handle_connected();
        assert_eq!(drain(&mut s), 50);
        assert_eq!(s.coverage().captured_seconds, 1.0);
    }

    #[test]
    fn word_times_skip_gaps_back_to_call_time() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        // 1 s of speech at call time 2 s, then (after silence that was not
        // sent) 1 s at call time 10 s: stream time 1.0 is call time 10.0.
        talk(&mut s, 2.0, 50);
        talk(&mut s, 10.0, 50);
        drain(&mut s);
        let words = s.handle_final(0.0, 2.0, &[word("a", 0.5, 0.7), word("b", 1.25, 1.5)]);
        assert!((words[0].start - 2.5).abs() < 1e-3, "{words:?}");
        assert!((words[1].start - 10.25).abs() < 1e-3, "{words:?}");
        assert!(s.is_drained());
        assert_eq!(s.coverage().acknowledged_seconds, 2.0);
    }

    #[test]
    fn a_word_straddling_unsent_audio_keeps_its_stream_length() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        talk(&mut s, 1.0, 25);
        talk(&mut s, 8.0, 25);
        drain(&mut s);
        // Stream 0.4-0.6 s crosses from call time 1.4 s to 8.1 s.
        let words = s.handle_final(0.0, 1.0, &[word("x", 0.4, 0.6)]);
        assert!((words[0].start - 1.4).abs() < 1e-6, "{words:?}");
        assert!((words[0].end - 1.6).abs() < 1e-6, "{words:?}");
    }

    #[test]
    fn a_reconnect_resends_what_no_final_covered_and_drops_repeats() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        talk(&mut s, 0.0, 150); // 3 s in 20 ms chunks
        drain(&mut s);
        // A final covers up to 1.51 s (mid-chunk), then the connection drops.
        let first = s.handle_final(0.0, 1.51, &[word("one", 0.2, 0.5), word("two", 1.45, 1.51)]);
        assert_eq!(first.len(), 2);
        s.handle_disconnected();
        // The chunk at 1.50-1.52 was not wholly covered: it is resent.
        assert!((s.coverage().buffered_seconds - 1.5).abs() < 1e-9);
        s.handle_connected();
        assert_eq!(drain(&mut s), 75);
        // Stream time 0 is now call time 1.50; the backend re-reports the
        // word that straddled the cut, then new ones.
        let second = s.handle_final(
            0.0,
            1.5,
            &[
                word("two", 0.0, 0.01),
                word("three", 0.4, 0.8),
                word("four", 1.0, 1.3),
            ],
        );
        let texts: Vec<_> = second.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(texts, ["three", "four"], "the repeat is dropped");
        assert!((second[0].start - 1.9).abs() < 1e-3, "{second:?}");
        assert!(s.is_drained());
        let c = s.coverage();
        assert_eq!(
            (c.captured_seconds, c.acknowledged_seconds, c.lost_seconds),
            (3.0, 3.0, 0.0)
        );
    }

    #[test]
    fn a_purge_gives_up_unsent_and_unacknowledged_audio_for_good() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        talk(&mut s, 0.0, 100); // 2 s
        assert_eq!(drain(&mut s), 100);
        // The first second is final; the second is sent, not acknowledged.
        s.handle_final(0.0, 1.0, &[word("kept", 0.2, 0.4)]);
        talk(&mut s, 2.0, 25); // 0.5 s more, unsent
        assert!((s.purge() - 1.5).abs() < 1e-9);
        // A reconnect resends nothing.
        s.handle_connected();
        assert_eq!(drain(&mut s), 0);
        assert!(s.is_drained());
        // Audio after the purge goes out as usual.
        talk(&mut s, 3.0, 5);
        assert_eq!(drain(&mut s), 5);
        let c = s.coverage();
        assert_eq!(
            (c.captured_seconds, c.acknowledged_seconds, c.purged_seconds),
            (2.6, 1.0, 1.5)
        );
    }

    #[test]
    fn overflow_gives_up_the_oldest_audio_and_says_what() {
        let mut s = SpeakerStream::new(1);
        talk(&mut s, 0.0, 50);
        assert_eq!(s.coverage().lost_seconds, 0.0);
        let mut lost = None;
        for i in 0..10 {
            let call_start = ((1.0 + i as f64 * 0.02) * 48_000.0) as u64;
            if let Some(l) = s.push(Chunk::pcm(call_start, vec![1; 320])) {
                lost.get_or_insert(l);
            }
        }
        let lost = lost.unwrap();
        assert_eq!(lost.start, 0.0);
        let c = s.coverage();
        assert!((c.lost_seconds - 0.2).abs() < 1e-9, "{c:?}");
        assert!((c.buffered_seconds - 1.0).abs() < 1e-9);
    }

    #[test]
    fn opus_chunks_keep_their_packets_and_map_at_48k() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        let packet: Arc<[u8]> = Arc::from(&[0x78u8, 9, 9][..]);
        // 20 ms packets at call time 1.0 s and (after a gap) 5.0 s.
        s.push(Chunk::opus(48_000, 960, packet.clone()));
        s.push(Chunk::opus(240_000, 960, packet.clone()));
        let sent: Vec<Chunk> = std::iter::from_fn(|| s.poll_send().cloned()).collect();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].audio, ChunkAudio::Opus(packet));
        assert_eq!(sent[0].pcm_bytes(), None);
        // Stream time 0.03 s is 10 ms into the second packet.
        let words = s.handle_final(0.0, 0.04, &[word("x", 0.03, 0.035)]);
        assert!((words[0].start - 5.01).abs() < 1e-6, "{words:?}");
        assert!(s.is_drained());
        assert!((s.coverage().acknowledged_seconds - 0.04).abs() < 1e-9);
    }

    #[test]
    fn interim_words_map_without_acknowledging() {
        let mut s = SpeakerStream::new(60);
        s.handle_connected();
        talk(&mut s, 4.0, 25);
        drain(&mut s);
        let w = s.handle_interim(&[word("hi", 0.1, 0.3)]);
        assert!((w[0].start - 4.1).abs() < 1e-3);
        assert!(!s.is_drained());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_accounts_for_every_sample(
            ops in proptest::collection::vec((0u8..7, 0u32..400, 0.0f64..5.0, 0.0f64..3.0), 0..200)
        ) {
            let mut s = SpeakerStream::new(2);
            let mut t = 0u64;
            for (op, n, a, b) in ops {
                match op {
                    0 => { s.push(Chunk::pcm(t, vec![7; n as usize])); t += u64::from(n) * 3 + 960; }
                    5 => { s.push(Chunk::opus(t, u64::from(n) * 3, Arc::from(&[0xf8u8][..]))); t += u64::from(n) * 3; }
                    1 => { s.handle_connected(); }
                    2 => { s.handle_disconnected(); }
                    3 => { while s.poll_send().is_some() {} }
                    4 => { let _ = s.handle_final(a, b, &[word("x", a, a + b)]); }
                    6 => { s.purge(); }
                    _ => {}
                }
                let c = s.coverage();
                let sum = c.acknowledged_seconds + c.lost_seconds + c.buffered_seconds + c.purged_seconds;
                proptest::prop_assert!((sum - c.captured_seconds).abs() < 1e-6, "{c:?}");
            }
        }
    }
}
