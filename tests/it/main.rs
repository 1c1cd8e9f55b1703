//! Hearken's integration tests, one binary (one link of the server, str0m,
//! aws-lc and libopus instead of one per file), a module per behaviour:
//!
//! - `whip`: sessions over real sockets: answers, errors, gateways, bad
//!   input, admission control, real independent WebRTC stacks.
//! - `engine`: the media engine driven in simulated time (`sim`).
//! - `native`: native ingest, RTP over QUIC from a platform's servers.
//! - `sip`: SIP dial-in's signalling, against SIPp and raw SIP text.
//! - `consent`, `transcribe`, `policy`, `ops`: the behaviours of those
//!   areas, end to end.
//! - `review`: after the call: the mix, the insights, share links, the
//!   review page in Chromium.
//!
//! `common` is the shared kit: a server in this process, a WHIP client on a
//! real socket, Ogg Opus decoding, HTTP helpers.

mod cluster;
mod common;
mod consent;
mod engine;
mod native;
mod ops;
mod policy;
mod review;
mod sim;
mod sip;
mod transcribe;
mod whip;
