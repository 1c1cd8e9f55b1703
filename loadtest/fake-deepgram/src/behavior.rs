//! Faults a test can ask the fake to inject.

use std::time::Duration;

/// What the fake does to the next connections. Set with
/// [`crate::FakeDeepgram::set_behavior`]; counters count down as they are
/// used, and [`crate::FakeDeepgram::behavior`] shows what is left.
///
/// ```
/// # use std::time::Duration;
/// # use hearken_fake_deepgram::{Behavior, DropMode};
/// let b = Behavior::default()
///     .reject_next(2, 429)
///     .drop_next(3, Duration::from_secs(2), DropMode::Abrupt)
///     .delay_results(Duration::from_millis(200));
/// assert_eq!(b.reject.unwrap().count, 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behavior {
    /// Answer upgrade attempts with an HTTP error instead of a websocket.
    pub reject: Option<Reject>,
    /// Drop accepted connections once they have received some audio.
    pub drop: Option<DropPlan>,
    /// Hold every server message this long before sending it (order is
    /// kept). Read when each message is produced, so it can change
    /// mid-stream.
    pub result_delay: Duration,
    /// Take every connection and read its audio, but never send a message,
    /// never honour `Finalize` or `CloseStream` and never time out: a
    /// backend that hangs after the upgrade.
    pub silent: bool,
    /// Never acknowledge the tail: `Finalize` is ignored and `CloseStream`
    /// is answered by closing the connection (code 1000) without the final
    /// results that would cover the audio not yet acknowledged.
    pub withhold_tail: bool,
}

impl Behavior {
    /// Answer the next `count` upgrade attempts (with a valid key) with HTTP
    /// `status` (429, or a 5xx) and a `dg-error` header.
    pub fn reject_next(mut self, count: u32, status: u16) -> Self {
        self.reject = Some(Reject { count, status });
        self
    }

    /// Drop each of the next `count` accepted connections once it has
    /// received `after` of audio (stream time), the way `mode` says.
    pub fn drop_next(mut self, count: u32, after: Duration, mode: DropMode) -> Self {
        self.drop = Some(DropPlan { count, after, mode });
        self
    }

    /// Hold every server message for `delay` before sending it.
    pub fn delay_results(mut self, delay: Duration) -> Self {
        self.result_delay = delay;
        self
    }

    /// Accept connections and never answer (see [`Behavior::silent`]).
    pub fn silent(mut self) -> Self {
        self.silent = true;
        self
    }

    /// Never acknowledge the last audio (see [`Behavior::withhold_tail`]).
    pub fn withhold_tail(mut self) -> Self {
        self.withhold_tail = true;
        self
    }
}

/// Reject upgrade attempts with an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// Attempts left to reject.
    pub count: u32,
    /// The status to answer with (429 or 5xx).
    pub status: u16,
}

/// Drop connections after some audio.
#[derive(Debug, Clone, PartialEq)]
pub struct DropPlan {
    /// Connections left to drop (each is chosen when it opens).
    pub count: u32,
    /// Stream time after which the connection is dropped: the audio message
    /// that reaches it is recorded, then the connection ends before any
    /// result for it is sent (queued, delayed results are lost too).
    pub after: Duration,
    /// How to end it.
    pub mode: DropMode,
}

/// How a forced drop ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropMode {
    /// Close TCP without a websocket close frame.
    Abrupt,
    /// Send a close frame with this code and reason, then close.
    CloseFrame {
        /// The close code, for example 1011.
        code: u16,
        /// The reason, for example `NET-0000`.
        reason: String,
    },
}
