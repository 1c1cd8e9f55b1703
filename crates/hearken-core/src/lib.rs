//! Hearken's sans-IO core: the state machines of a call, in the style of
//! str0m and quinn-proto. They take input and the current time as arguments
//! (`handle_*`) and give their outputs when asked (`poll_*`); nothing here
//! reads a clock, opens a socket or touches a file. The server feeds them.
//!
//! That is a fact the compiler checks: this crate depends on no runtime, no
//! network or file library, and its `clippy.toml` bans the clock and sleep
//! calls (`Instant::now`, `SystemTime::now`, `Utc::now`, `thread::sleep`) and
//! the file system. Tests build an arbitrary `Instant` once and move time
//! from there.
//!
//! - [`conference`]: one call: sessions, participants, the mapping of every
//!   frame onto the call timeline, the consent gate in front of the sinks.
//! - [`speaker`]: one speaker's timeline: RTP time to call time, gaps, DTX.
//! - [`consent`]: the rules (jurisdiction to mode) and the engine (each
//!   participant's state, the gate, prompts, the audit log).
//! - [`dtmf`]: RFC 4733 key presses; [`prompt`]: prompt audio as packets.
//! - [`ogg`], [`track`], [`opus`]: aligned Ogg Opus tracks, byte for byte.
//! - [`voice`], [`transcript`]: what to transcribe, and the bookkeeping of a
//!   speaker's transcription stream.
//! - [`insights`]: after the call: talk ratios, turns, questions, trackers
//!   and key moments from talk spans and words; talk spans from levels.
//! - [`audit`]: the consent audit log as a hash chain (formatting a line,
//!   verifying a log).
//! - [`offer`], [`ids`]: what the server reads of an SDP offer, and ids that
//!   are safe path components.
//! - [`roq`]: RTP over QUIC framing: varints, DATAGRAMs, stream reading.
//! - [`rtp`]: RTP sequence numbers and timestamps extended, rescaled to 48 kHz.

#![deny(missing_docs)]

pub mod announcement;
pub mod audit;
pub mod conference;
pub mod consent;
pub mod dtmf;
pub mod ids;
pub mod insights;
pub mod offer;
pub mod ogg;
pub mod opus;
pub mod prompt;
pub mod roq;
pub mod rtp;
pub mod speaker;
pub mod track;
pub mod transcript;
pub mod voice;
