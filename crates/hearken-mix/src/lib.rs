//! Hearken's post-call mix: one playable recording (`audio/mix.opus`) made
//! from every participant's track, and cuts of it to a time range.
//!
//! Bytes in, bytes out: the functions take the files' bytes and write into an
//! [`std::io::Write`]; the server reads the files, runs this on a thread of its
//! own and writes the result. Nothing here reads a clock.
//!
//! # The tracks
//!
//! Each track is an Ogg Opus file from `hearken_core::track::TrackWriter`:
//! stream sample `pre_skip + t` plays at call time `t`, and gaps are PLC
//! packets, so decoding the whole track in order and dropping the pre-skip
//! gives audio aligned to call time zero. [`mix`] decodes every track to mono
//! (libopus downmixes a stereo stream when asked for one channel), 20 ms at a
//! time and all tracks in step, so memory stays at a few frames per track
//! however long the call.
//!
//! A track that ends abruptly (a crash: no EOS page, a truncated last page)
//! contributes what is whole. A packet libopus refuses is counted and replaced
//! by silence of its length. A file that is not Ogg Opus at all is skipped and
//! named in the report ([`TrackReport::unreadable`]): one bad file must not
//! cost the call its recording.
//!
//! # Summing
//!
//! The decoded 16-bit samples are added in `i32` and the sum is clamped to the
//! `i16` range: plain hard clipping, no gain and no normalisation, so the mix
//! plays each speaker at the level they were recorded. People rarely talk over
//! each other at full scale, so the clamp rarely acts.
//!
//! # The mix stream's layout
//!
//! The mix is Ogg Opus, mono, 48 kHz, 20 ms packets, with a pre-skip of 960
//! samples. The encoder is fed `960 - lookahead` samples of silence before
//! call time zero, so that decoded sample 0 (after the pre-skip) is call time
//! zero **and** packet boundaries fall on multiples of 20 ms of call time:
//! packet `k` (0-based, headers not counted) decodes to call time
//! `[(k - 1) * 20 ms, k * 20 ms)`; packet 0 is the pre-skip alone. The mix
//! lasts as long as the longest track; the last packet is trimmed by its
//! granule (RFC 7845 §4.4). [`cut`] relies on this grid.

#![deny(missing_docs)]

mod cut;
mod mix;
mod reader;

pub use cut::{cut, duration_seconds};
pub use mix::mix;
pub use reader::TrackProblem;

use thiserror::Error;

/// One participant's track, as the server hands it over.
#[derive(Debug, Clone)]
pub struct TrackInput<'a> {
    /// How the report names the track (e.g. its file name).
    pub name: String,
    /// The whole Ogg Opus file.
    pub ogg: &'a [u8],
    /// Call-time spans `[start, end)` in seconds to silence: audio discarded
    /// after consent was withdrawn. Widened outward to whole samples, so
    /// nothing of a span survives rounding.
    pub muted: Vec<(f64, f64)>,
}

/// How the mix is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixOptions {
    /// Target bitrate of the Opus encoder, bits per second.
    pub bitrate_bps: i32,
    /// Opus encoder complexity, 0 (fastest) to 10 (best).
    pub complexity: i32,
    /// Serial number of the Ogg stream. Fixed per call (e.g. derived from
    /// the call id) so the same tracks always give the same bytes.
    pub serial: u32,
}

impl MixOptions {
    /// Serial number used by [`MixOptions::default`].
    pub const DEFAULT_SERIAL: u32 = u32::from_be_bytes(*b"mix0");
}

impl Default for MixOptions {
    /// 32 kb/s (plenty for mono speech), complexity 5 (half the CPU of 10 at
    /// little cost in quality for speech).
    fn default() -> Self {
        Self {
            bitrate_bps: 32_000,
            complexity: 5,
            serial: Self::DEFAULT_SERIAL,
        }
    }
}

/// What a mix holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MixReport {
    /// Length of the mix: the longest track, from call time zero.
    pub duration_seconds: f64,
    /// One entry per input track, in input order.
    pub tracks: Vec<TrackReport>,
}

/// What one track contributed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackReport {
    /// The track's [`TrackInput::name`].
    pub name: String,
    /// RMS level of each 20 ms frame of the mix, from call time zero, after
    /// muting, in dBFS (full scale = 32768); -120.0 for digital silence and
    /// after the track's end. One value per frame of the mix, so all tracks'
    /// lists line up. Empty for an unreadable track.
    pub levels_dbfs: Vec<f32>,
    /// Packets libopus refused (or whose TOC could not be read), each
    /// replaced by silence of its length.
    pub bad_packets: u64,
    /// Length of the track from call time zero, pre-skip excluded.
    pub decoded_seconds: f64,
    /// Whether the file ended without its EOS page (a crash, a copy cut
    /// short): only its whole pages were used.
    pub ended_abruptly: bool,
    /// Why the track was left out of the mix, if it was.
    pub unreadable: Option<TrackProblem>,
}

/// Why a mix or a cut could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MixError {
    /// [`mix`] was given no track.
    #[error("no track to mix")]
    NoTracks,
    /// Not one of the tracks could be read; each report says why.
    #[error("none of the {} tracks is readable Ogg Opus", .0.len())]
    NoReadableTrack(Vec<TrackReport>),
    /// A muted span is not a pair of finite times with `start <= end`.
    #[error("track {track:?}: invalid muted span [{start}, {end})")]
    InvalidMutedSpan {
        /// The track's name.
        track: String,
        /// Start of the span, seconds.
        start: f64,
        /// End of the span, seconds.
        end: f64,
    },
    /// The file given to [`cut`] or [`duration_seconds`] is not readable
    /// Ogg Opus.
    #[error("not a readable Ogg Opus stream: {0}")]
    Unreadable(#[from] TrackProblem),
    /// The span asked of [`cut`] is not a pair of finite times with
    /// `start < end`.
    #[error("invalid span [{start}, {end})")]
    InvalidSpan {
        /// Start asked for, seconds.
        start: f64,
        /// End asked for, seconds.
        end: f64,
    },
    /// The span asked of [`cut`] starts at or after the end of the recording.
    #[error("span starts at {start} s, the recording ends at {duration} s")]
    SpanOutsideRecording {
        /// Start asked for, seconds.
        start: f64,
        /// Length of the recording, seconds.
        duration: f64,
    },
    /// Snapped inward to whole packets, the span holds no packet.
    #[error("span [{start}, {end}) holds no whole 20 ms packet")]
    EmptySpan {
        /// Start asked for, seconds.
        start: f64,
        /// End asked for, seconds.
        end: f64,
    },
    /// libopus refused to set up the encoder or a decoder, or to encode
    /// (e.g. a bitrate or complexity out of range).
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Write(#[from] std::io::Error),
}

#[cfg(test)]
mod test_support;
