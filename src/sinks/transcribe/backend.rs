//! The transcription backend interface: a per-speaker stream that takes
//! audio (16 kHz mono PCM, or Opus packets where the backend accepts them)
//! and gives back interim and final results. The rest of the server does not
//! know which backend runs.

use std::future::Future;
use std::pin::Pin;

use hearken_core::transcript::{Chunk, StreamWord};

/// A boxed future, for object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a backend connection was lost or refused: a fixed set, a metric
/// label (`hearken_transcription_reconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be opened.
    Connect,
    /// The backend answered 429.
    RateLimited,
    /// The backend answered 5xx.
    ServerError,
    /// The backend closed the stream.
    Closed,
    /// Opening the connection took longer than the connect timeout.
    Timeout,
    /// Sending audio failed.
    Send,
    /// The backend broke the protocol, or we would have.
    Protocol,
}

impl Failure {
    /// Every failure, for the metric's labels.
    pub const ALL: [Failure; 7] = [
        Self::Connect,
        Self::RateLimited,
        Self::ServerError,
        Self::Closed,
        Self::Timeout,
        Self::Send,
        Self::Protocol,
    ];

    /// The metric label.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::Send => "send",
            Self::Protocol => "protocol",
        }
    }
}

/// Why a backend call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", failure.as_label())]
pub struct BackendError {
    /// The kind of failure.
    pub failure: Failure,
    /// What happened (never contains the API key).
    pub detail: String,
}

impl BackendError {
    /// A failure with what happened.
    pub fn new(failure: Failure, detail: impl Into<String>) -> Self {
        Self {
            failure,
            detail: detail.into(),
        }
    }
}

/// What a backend says about the audio it received.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendEvent {
    /// A result that may still change.
    Interim {
        /// The text.
        text: String,
        /// Words, in stream time.
        words: Vec<StreamWord>,
    },
    /// A result that will not change, covering stream time
    /// `[start, start + duration)`.
    Final {
        /// Stream start (s).
        start: f64,
        /// Stream duration (s).
        duration: f64,
        /// The text.
        text: String,
        /// Words, in stream time.
        words: Vec<StreamWord>,
    },
    /// The backend closed the stream (after CloseStream, or on its own).
    Closed {
        /// Why, when it said.
        reason: Option<String>,
    },
}

/// The audio a backend takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioInput {
    /// Mono PCM: the sink decodes each frame at 16 kHz, or passes a
    /// telephone leg's own 8 or 16 kHz audio (one rate per speaker's stream,
    /// given to [`Backend::connect`]).
    Pcm,
    /// Opus packets as the speakers sent them: nothing is decoded.
    Opus,
}

/// One open stream to a backend, for one speaker.
pub trait Connection: Send {
    /// Sends one chunk, in the form [`Backend::input`] asked for. A
    /// connection may hold it back to send several chunks in one message
    /// (see [`Self::holds_audio`]).
    fn send_audio<'a>(&'a mut self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Whether audio was held back, waiting for more to fill a message.
    fn holds_audio(&self) -> bool {
        false
    }
    /// Sends what was held back.
    fn flush(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    /// Asks the backend to finalize what it has (the speaker left).
    fn finalize(&mut self) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Ends the stream: the backend flushes its last finals, then closes.
    fn close(&mut self) -> BoxFuture<'_, Result<(), BackendError>>;
    /// The next result; `None` once the stream is gone.
    fn next_event(&mut self) -> BoxFuture<'_, Option<Result<BackendEvent, BackendError>>>;
}

/// A transcription service.
pub trait Backend: Send + Sync + 'static {
    /// Short name (`deepgram`) for logs, metrics and the transcript.
    fn name(&self) -> &'static str;
    /// Model name for the transcript.
    fn model(&self) -> String;
    /// The audio its connections take.
    fn input(&self) -> AudioInput;
    /// Opens a stream for one speaker; `pcm_rate` is the sample rate of its
    /// PCM (for [`AudioInput::Pcm`]; ignored for Opus).
    fn connect(
        &self,
        pcm_rate: u32,
    ) -> BoxFuture<'static, Result<Box<dyn Connection>, BackendError>>;
}
