//! Signaling protocols that bring calls in: WHIP today; SIP and RTP over QUIC
//! later.

pub mod whip;
