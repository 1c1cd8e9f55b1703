//! Hearken: a media server that conferencing providers dial in as a virtual
//! participant. It takes one audio stream per speaker over WebRTC (WHIP),
//! records each speaker's Opus packets, unchanged, into an Ogg Opus file
//! aligned to the call's timeline, and (later) transcribes only what consent
//! allows.
//!
//! # Layout
//!
//! - [`core`]: sans-IO state machines (timelines, the Ogg muxer, the
//!   conference). They take time as an argument and never touch a socket, a
//!   file or a clock, so tests run a minute of call in milliseconds.
//! - [`rtc`]: media worker threads. Each owns one UDP socket and every str0m
//!   `Rtc` of the calls placed on it.
//! - [`sinks`]: where frames go (the recorder).
//! - [`ingest`], [`api`]: HTTP signaling and the REST API (axum).
//! - [`server`]: wiring, start and graceful shutdown.
//!
//! # The run loop of a media worker
//!
//! Wait (mio) for a datagram, a command or the earliest str0m timeout; hand a
//! datagram to the `Rtc` that accepts it; drain that `Rtc` until it returns a
//! timeout; feed audio frames to the call's conference; hand the conference's
//! outputs to the recorder with `try_send` (drops are counted, never waited
//! on).

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod consent_cli;
pub mod consent_setup;
pub mod core;
pub mod ingest;
pub mod meetings;
pub mod metrics;
pub mod policy_cli;
pub mod problem;
pub mod rtc;
pub mod scheduler;
pub mod server;
pub mod sinks;
