//! The shared test kit of the integration tests:
//!
//! - `server`: a real server in this process, on loopback;
//! - `binary`: the real binary as a child process, restarted at will;
//! - `client`: an independent WHIP client (str0m, client role) on a real
//!   UDP socket;
//! - `baresip`: a real SIP phone (Debian's baresip) driven over its
//!   control socket;
//! - `audio`: the test speech, and decoding recordings with libopus;
//! - `browser`: Debian's headless Chromium driven over its DevTools
//!   protocol (the review page's tests);
//! - `http`: the API requests the tests make;
//! - `native`: native ingest as a platform drives it (RTP over QUIC);
//! - `speech`: phrases said by espeak-ng, and a spoken answer to the
//!   consent request.
#![allow(dead_code)]

mod audio;
mod baresip;
mod binary;
mod browser;
mod client;
mod fleet;
mod http;
mod native;
mod server;
mod speech;

pub use audio::*;
pub use baresip::*;
pub use binary::*;
pub use browser::*;
pub use client::*;
pub use fleet::*;
pub use http::*;
pub use native::*;
pub use server::*;
pub use speech::*;
