//! The ways audio reaches Hearken besides WHIP.
//!
//! - [`native`]: which calls have a native ingest, their flows, and the
//!   connection tokens that bind them to a QUIC connection.
//! - [`quic`]: the QUIC listener (quinn) that takes RTP over QUIC
//!   (draft-ietf-avtcore-rtp-over-quic-14): many calls over one connection,
//!   each speaker a flow, media in DATAGRAMs or unidirectional streams.
//! - [`sip`]: SIP dial-in, a user agent server over UDP and TCP: one dialog
//!   per speaker, its media plain RTP on the call's media worker.
//!
//! # How a connection proves itself
//!
//! `POST /v1/calls/{id}/native` answers with a `connection_token`. The
//! platform opens a unidirectional stream whose flow id is
//! [`TOKEN_FLOW_ID`] (the largest QUIC varint, 2^62 - 1, which no media
//! flow may use) and sends each call's token on it as one RoQ "packet"
//! (`length varint, token bytes`), keeping RoQ's stream framing for
//! everything. Each valid token binds that call's flows to the connection;
//! a connection may carry any number of calls. Until a token binds a flow,
//! its media is buffered (bounded) and then the connection is closed with
//! `ROQ_UNKNOWN_FLOW_ID`; a token that names no call closes the connection
//! with `ROQ_GENERAL_ERROR` ("bad connection token") before any of its
//! media is accepted; a connection that binds nothing within
//! `ingest.quic.token_timeout_ms` is closed the same way.

pub mod native;
pub mod quic;
pub mod sip;

/// The flow id of the stream that carries connection tokens (2^62 - 1).
pub const TOKEN_FLOW_ID: u64 = hearken_core::roq::MAX_VARINT;
