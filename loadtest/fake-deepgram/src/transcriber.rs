//! The deterministic "transcriber": a pure state machine that turns received
//! `linear16` PCM into words and Deepgram live messages.
//!
//! It does no I/O and reads no clock: audio goes in with
//! [`Transcriber::handle_audio`], control messages with
//! [`Transcriber::handle_finalize`] and [`Transcriber::handle_close_stream`],
//! and server messages come out of [`Transcriber::poll_output`] until it
//! returns `None`.
//!
//! The rules, all in stream time (seconds of audio received on this
//! connection; KeepAlive does not advance it):
//!
//! - The stream is cut into 0.5 s windows. A window whose RMS (over all its
//!   samples, all channels) is at or above the threshold becomes one word,
//!   `w{index}`, with `start`/`end` the window bounds (`w7` is 3.5–4.0 s).
//!   Silent windows produce no word.
//! - After each completed window: a loud window after a silent one emits
//!   `SpeechStarted` (with `vad_events=true`); a silent window that follows
//!   pending words emits a final `Results` with `speech_final: true` (unless
//!   `endpointing=false`); otherwise a final is emitted once 1.5 s of audio
//!   are unacknowledged (words or not, like the real service's empty finals);
//!   otherwise a loud window emits an interim `Results` (with
//!   `interim_results=true`). `UtteranceEnd` follows once the silence after
//!   the last final word reaches `utterance_end_ms` (with
//!   `interim_results=true`).
//! - `Finalize` flushes: the partial window, if loud, becomes its word (ending
//!   at the current stream time; it is not emitted again when the window
//!   completes), and a final `Results` with `from_finalize: true` covers all
//!   unacknowledged audio (it is sent even when empty).
//! - `CloseStream` flushes the same way (`from_finalize: false`, only when
//!   audio is unacknowledged) and then emits `Metadata`.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Length of one word window, in seconds of stream time.
pub const WINDOW_SECONDS: f64 = 0.5;
/// Unacknowledged audio that forces a final result, in seconds.
pub const MAX_SEGMENT_SECONDS: f64 = 1.5;
/// Confidence reported for every word.
pub const WORD_CONFIDENCE: f64 = 0.99;
/// The `model_uuid` the fake reports.
pub const MODEL_UUID: &str = "00000000-0000-4000-8000-00000000fa4e";

/// Stream parameters taken from the query string of one connection.
#[derive(Debug, Clone)]
pub struct StreamParams {
    /// `sample_rate` (Hz).
    pub sample_rate: u32,
    /// `channels` (interleaved).
    pub channels: u16,
    /// `interim_results=true`.
    pub interim_results: bool,
    /// `endpointing` is not `false`.
    pub endpointing: bool,
    /// `utterance_end_ms`, if given.
    pub utterance_end_ms: Option<u32>,
    /// `vad_events=true`.
    pub vad_events: bool,
    /// `diarize=true` (every word gets `speaker: 0`).
    pub diarize: bool,
    /// `model`, reported as `model_info.arch`.
    pub model: String,
    /// RMS threshold (linear16 units) above which a window is a word.
    pub rms_threshold: f64,
}

/// One server-to-client message, serialized exactly as sent on the wire.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// A transcript (interim or final).
    Results(ResultsMessage),
    /// Start of speech (`vad_events=true`).
    SpeechStarted {
        /// `[channel]`.
        channel: Vec<u32>,
        /// Stream seconds where speech started.
        timestamp: f64,
    },
    /// End of an utterance (`utterance_end_ms`).
    UtteranceEnd {
        /// `[channel, total]`.
        channel: Vec<u32>,
        /// End of the last final word, stream seconds.
        last_word_end: f64,
    },
    /// The summary sent before a normal close.
    Metadata(MetadataMessage),
}

/// The body of a `Results` message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultsMessage {
    /// `[channel, total]`, always `[0, 1]`.
    pub channel_index: Vec<u32>,
    /// Start of the covered audio, stream seconds.
    pub start: f64,
    /// Length of the covered audio, seconds.
    pub duration: f64,
    /// `false` for interim results.
    pub is_final: bool,
    /// An endpoint (silence after speech).
    pub speech_final: bool,
    /// Emitted in answer to `Finalize`.
    pub from_finalize: bool,
    /// The transcript.
    pub channel: ChannelJson,
    /// Request and model identity.
    pub metadata: ResultsMetadata,
}

/// `channel` of a `Results` message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelJson {
    /// Exactly one alternative.
    pub alternatives: Vec<AlternativeJson>,
}

/// One transcript alternative.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlternativeJson {
    /// Words joined by spaces.
    pub transcript: String,
    /// 0.99 with words, 0.0 without.
    pub confidence: f64,
    /// The words.
    pub words: Vec<WordJson>,
}

/// One word.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WordJson {
    /// `w{window index}`.
    pub word: String,
    /// Window start, stream seconds.
    pub start: f64,
    /// Window end (or stream time at a flush), stream seconds.
    pub end: f64,
    /// Always [`WORD_CONFIDENCE`].
    pub confidence: f64,
    /// Same as `word`.
    pub punctuated_word: String,
    /// `0` with `diarize=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<u32>,
}

/// `metadata` of a `Results` message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResultsMetadata {
    /// The connection's request id (also the `dg-request-id` header).
    pub request_id: String,
    /// Model identity.
    pub model_info: ModelInfoJson,
    /// [`MODEL_UUID`].
    pub model_uuid: String,
}

/// `model_info` of a `Results` message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfoJson {
    /// `hearken-fake-deepgram`.
    pub name: String,
    /// This crate's version.
    pub version: String,
    /// The requested model.
    pub arch: String,
}

/// The closing `Metadata` message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetadataMessage {
    /// Always `deprecated`, as the real service sends.
    pub transaction_key: String,
    /// The connection's request id.
    pub request_id: String,
    /// Hex SHA-256 of all audio bytes received.
    pub sha256: String,
    /// RFC 3339 time the connection opened.
    pub created: String,
    /// Seconds of audio received.
    pub duration: f64,
    /// `channels` of the stream.
    pub channels: u32,
    /// `[MODEL_UUID]`.
    pub models: Vec<String>,
    /// `{MODEL_UUID: model_info}`.
    pub model_info: std::collections::BTreeMap<String, ModelInfoJson>,
}

/// The per-connection transcriber state machine (see the module docs).
#[derive(Debug)]
pub struct Transcriber {
    params: StreamParams,
    request_id: String,
    created: String,
    /// Bytes of one frame (one sample per channel).
    frame_bytes: usize,
    /// Frames in one window.
    window_frames: u64,
    /// Bytes of an incomplete frame carried to the next message.
    carry: Vec<u8>,
    /// Frames received in total.
    total_frames: u64,
    /// Sum of squares and sample count of the current window.
    window_sum_sq: f64,
    window_samples: u64,
    /// The current window's word was already emitted by a flush.
    window_word_emitted: bool,
    /// The previous completed window was loud.
    previous_loud: bool,
    /// Start of the unacknowledged audio, in frames.
    cursor_frames: u64,
    /// Words not yet in a final result.
    pending: Vec<WordJson>,
    /// End of the last final word, and whether UtteranceEnd was sent for it.
    last_final_word_end: Option<f64>,
    utterance_end_sent: bool,
    sha256: Sha256,
    closed: bool,
    output: std::collections::VecDeque<ServerMessage>,
}

impl Transcriber {
    /// A transcriber for one connection. `created` is the RFC 3339 open time
    /// reported in `Metadata`.
    pub fn new(params: StreamParams, request_id: String, created: String) -> Self {
        let channels = params.channels.max(1);
        let window_frames = u64::from((params.sample_rate / 2).max(1));
        Self {
            frame_bytes: 2 * usize::from(channels),
            window_frames,
            params: StreamParams { channels, ..params },
            request_id,
            created,
            carry: Vec::new(),
            total_frames: 0,
            window_sum_sq: 0.0,
            window_samples: 0,
            window_word_emitted: false,
            previous_loud: false,
            cursor_frames: 0,
            pending: Vec::new(),
            last_final_word_end: None,
            utterance_end_sent: true,
            sha256: Sha256::new(),
            closed: false,
            output: std::collections::VecDeque::new(),
        }
    }

    /// Seconds of audio received so far.
    pub fn stream_seconds(&self) -> f64 {
        self.seconds(self.total_frames)
    }

    /// Feed one binary frame of `linear16` audio (little endian, interleaved).
    /// Audio after `CloseStream` is ignored.
    pub fn handle_audio(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.sha256.update(bytes);
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(bytes);
        let whole = data.len() - data.len() % self.frame_bytes;
        for frame in data[..whole].chunks_exact(self.frame_bytes) {
            for sample in frame.chunks_exact(2) {
                let s = f64::from(i16::from_le_bytes([sample[0], sample[1]]));
                self.window_sum_sq += s * s;
                self.window_samples += 1;
            }
            self.total_frames += 1;
            if self.total_frames.is_multiple_of(self.window_frames) {
                self.complete_window();
            }
        }
        self.carry = data[whole..].to_vec();
    }

    /// Handle `Finalize`: flush everything unacknowledged as a final result
    /// with `from_finalize: true` (sent even when empty).
    pub fn handle_finalize(&mut self) {
        if self.closed {
            return;
        }
        self.flush_partial_window();
        self.emit_final(self.total_frames, false, true);
    }

    /// Handle `CloseStream` (or an empty binary frame): flush unacknowledged
    /// audio, then emit `Metadata`. Idempotent.
    pub fn handle_close_stream(&mut self) {
        if self.closed {
            return;
        }
        self.flush_partial_window();
        if self.cursor_frames < self.total_frames || !self.pending.is_empty() {
            self.emit_final(self.total_frames, false, false);
        }
        self.closed = true;
        let info = self.model_info();
        self.output
            .push_back(ServerMessage::Metadata(MetadataMessage {
                transaction_key: "deprecated".to_owned(),
                request_id: self.request_id.clone(),
                sha256: hex(&self.sha256.clone().finalize()),
                created: self.created.clone(),
                duration: self.stream_seconds(),
                channels: u32::from(self.params.channels),
                models: vec![MODEL_UUID.to_owned()],
                model_info: [(MODEL_UUID.to_owned(), info)].into_iter().collect(),
            }));
    }

    /// The next message to send, in order; `None` when there is none.
    pub fn poll_output(&mut self) -> Option<ServerMessage> {
        self.output.pop_front()
    }

    fn seconds(&self, frames: u64) -> f64 {
        frames as f64 / f64::from(self.params.sample_rate)
    }

    fn window_is_loud(&self) -> bool {
        if self.window_samples == 0 {
            return false;
        }
        (self.window_sum_sq / self.window_samples as f64).sqrt() >= self.params.rms_threshold
    }

    fn word(&self, index: u64, end: f64) -> WordJson {
        let text = format!("w{index}");
        WordJson {
            punctuated_word: text.clone(),
            word: text,
            start: index as f64 * WINDOW_SECONDS,
            end,
            confidence: WORD_CONFIDENCE,
            speaker: self.params.diarize.then_some(0),
        }
    }

    /// Index of the window that holds the next frame.
    fn current_window(&self) -> u64 {
        self.total_frames / self.window_frames
    }

    fn complete_window(&mut self) {
        let index = self.total_frames / self.window_frames - 1;
        let loud = self.window_is_loud();
        let end = self.seconds(self.total_frames);
        if loud && !self.window_word_emitted {
            let word = self.word(index, end);
            self.pending.push(word);
        }
        if loud && !self.previous_loud && self.params.vad_events {
            self.output.push_back(ServerMessage::SpeechStarted {
                channel: vec![0],
                timestamp: index as f64 * WINDOW_SECONDS,
            });
        }
        self.previous_loud = loud;
        self.window_sum_sq = 0.0;
        self.window_samples = 0;
        self.window_word_emitted = false;

        let unacknowledged = self.seconds(self.total_frames - self.cursor_frames);
        if !loud && !self.pending.is_empty() && self.params.endpointing {
            self.emit_final(self.total_frames, true, false);
        } else if unacknowledged >= MAX_SEGMENT_SECONDS - 1e-9 {
            self.emit_final(self.total_frames, false, false);
        } else if loud && self.params.interim_results {
            let result = self.results(self.total_frames, false, false, false);
            self.output.push_back(ServerMessage::Results(result));
        }

        if !loud
            && self.params.interim_results
            && !self.utterance_end_sent
            && let (Some(gap_ms), Some(last)) =
                (self.params.utterance_end_ms, self.last_final_word_end)
            && end - last >= f64::from(gap_ms) / 1000.0 - 1e-9
        {
            self.utterance_end_sent = true;
            self.output.push_back(ServerMessage::UtteranceEnd {
                channel: vec![0, 1],
                last_word_end: last,
            });
        }
    }

    fn flush_partial_window(&mut self) {
        if self.window_samples > 0 && !self.window_word_emitted && self.window_is_loud() {
            let word = self.word(self.current_window(), self.stream_seconds());
            self.pending.push(word);
            self.window_word_emitted = true;
        }
    }

    fn results(
        &self,
        end_frames: u64,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> ResultsMessage {
        let start = self.seconds(self.cursor_frames);
        let words = self.pending.clone();
        let transcript = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        ResultsMessage {
            channel_index: vec![0, 1],
            start,
            duration: self.seconds(end_frames) - start,
            is_final,
            speech_final,
            from_finalize,
            channel: ChannelJson {
                alternatives: vec![AlternativeJson {
                    transcript,
                    confidence: if words.is_empty() {
                        0.0
                    } else {
                        WORD_CONFIDENCE
                    },
                    words,
                }],
            },
            metadata: ResultsMetadata {
                request_id: self.request_id.clone(),
                model_info: self.model_info(),
                model_uuid: MODEL_UUID.to_owned(),
            },
        }
    }

    fn emit_final(&mut self, end_frames: u64, speech_final: bool, from_finalize: bool) {
        let result = self.results(end_frames, true, speech_final, from_finalize);
        if let Some(last) = self.pending.last() {
            self.last_final_word_end = Some(last.end);
            self.utterance_end_sent = false;
        }
        self.pending.clear();
        self.cursor_frames = end_frames;
        self.output.push_back(ServerMessage::Results(result));
    }

    fn model_info(&self) -> ModelInfoJson {
        ModelInfoJson {
            name: "hearken-fake-deepgram".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            arch: self.params.model.clone(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> StreamParams {
        StreamParams {
            sample_rate: 16_000,
            channels: 1,
            interim_results: true,
            endpointing: true,
            utterance_end_ms: Some(1000),
            vad_events: false,
            diarize: false,
            model: "nova-3".to_owned(),
            rms_threshold: 500.0,
        }
    }

    fn pcm(seconds: f64, amplitude: i16) -> Vec<u8> {
        let n = (seconds * 16_000.0) as usize;
        (0..n)
            .flat_map(|i| {
                let s = if i % 2 == 0 { amplitude } else { -amplitude };
                s.to_le_bytes()
            })
            .collect()
    }

    fn drain(t: &mut Transcriber) -> Vec<ServerMessage> {
        std::iter::from_fn(|| t.poll_output()).collect()
    }

    fn final_words(messages: &[ServerMessage]) -> Vec<String> {
        messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Results(r) if r.is_final => Some(r),
                _ => None,
            })
            .flat_map(|r| {
                r.channel.alternatives[0]
                    .words
                    .iter()
                    .map(|w| w.word.clone())
            })
            .collect()
    }

    #[test]
    fn tone_silence_tone_gives_words_by_window() {
        let mut t = Transcriber::new(params(), "id".into(), "t".into());
        // Odd-sized chunks prove frames are reassembled across messages.
        let mut audio = pcm(1.0, 8000);
        audio.extend(pcm(1.0, 0));
        audio.extend(pcm(1.0, 8000));
        for chunk in audio.chunks(641) {
            t.handle_audio(chunk);
        }
        t.handle_close_stream();
        let out = drain(&mut t);
        assert_eq!(final_words(&out), ["w0", "w1", "w4", "w5"]);
        let finals: Vec<_> = out
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Results(r) if r.is_final => Some((r.start, r.duration)),
                _ => None,
            })
            .collect();
        // Finals tile the stream without gap or overlap.
        assert_eq!(finals, [(0.0, 1.5), (1.5, 1.5)]);
        assert!(matches!(out.last(), Some(ServerMessage::Metadata(m)) if m.duration == 3.0));
        assert!(out.iter().any(|m| matches!(
            m,
            ServerMessage::UtteranceEnd { last_word_end, .. } if *last_word_end == 1.0
        )));
    }

    #[test]
    fn finalize_flushes_partial_window_once() {
        let mut t = Transcriber::new(params(), "id".into(), "t".into());
        t.handle_audio(&pcm(0.75, 8000));
        t.handle_finalize();
        t.handle_audio(&pcm(0.25, 8000));
        t.handle_close_stream();
        let out = drain(&mut t);
        assert_eq!(final_words(&out), ["w0", "w1"]);
        let flushed = out.iter().find_map(|m| match m {
            ServerMessage::Results(r) if r.from_finalize => Some(r),
            _ => None,
        });
        let flushed = flushed.expect("a from_finalize result");
        assert_eq!(flushed.duration, 0.75);
        assert_eq!(flushed.channel.alternatives[0].words[1].end, 0.75);
    }

    #[test]
    fn silence_is_acknowledged_by_empty_finals() {
        let mut t = Transcriber::new(params(), "id".into(), "t".into());
        t.handle_audio(&pcm(3.0, 0));
        let out = drain(&mut t);
        assert_eq!(out.len(), 2);
        assert!(final_words(&out).is_empty());
    }
}
