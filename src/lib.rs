//! Hearken: a media server that conferencing providers dial in as a virtual
//! participant. It takes one audio stream per speaker over WebRTC (WHIP),
//! tells people they are recorded, records each speaker's Opus packets,
//! unchanged, into an Ogg Opus file aligned to the call's timeline, and
//! transcribes only what consent allows.
//!
//! `ARCHITECTURE.md` at the root of the repository is the map: the layers,
//! the path of one packet and of one consent signal, the invariants, who
//! owns which file. In short:
//!
//! - `hearken-core` (its own crate): the pure state machines of a call:
//!   timelines, Ogg muxing, DTMF, consent rules and engine. No I/O, no clock.
//! - `hearken-policy` (its own crate): which meetings are recorded, and how.
//! - [`media`]: the sans-IO media [`Engine`](media::Engine) (sessions,
//!   routing, timers, prompts, call lifecycle) and the worker thread that
//!   runs it around a socket and a clock.
//! - [`sinks`]: the recorder and the transcriber, fed in order through
//!   bounded queues.
//! - [`store`]: the data directory; the only writer of every file.
//! - [`control`]: the control plane: where calls live, meetings, the
//!   webhook scheduler.
//! - [`http`]: WHIP and the REST API (axum), problem+json errors.
//! - [`ingest`]: the ways in besides WHIP: native RTP over QUIC (quinn).
//! - [`postcall`]: after a call, its mix (`hearken-mix`) and insights.
//! - [`recovery`]: at start, the calls a crash left in progress are
//!   repaired and ended.
//! - [`server`]: wiring, start and graceful shutdown; [`config`], [`setup`],
//!   [`metrics`], [`cli`].
//! - [`fuzzing`]: the entry points of the fuzz targets (`fuzz/`) and of the
//!   test that replays their corpus.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod postcall;
pub mod recovery;
pub mod server;
pub mod setup;
pub mod sinks;
pub mod store;
