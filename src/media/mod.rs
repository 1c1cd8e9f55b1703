//! The media plane: WebRTC sessions (str0m), the calls they carry, and the
//! worker threads that run them.
//!
//! - [`engine`]: the sans-IO [`Engine`](engine::Engine) of one worker:
//!   routing, sessions, timers, prompts, call lifecycle. Tests and benches
//!   drive it in simulated time.
//! - [`worker`]: the thread around an engine: a UDP socket, a waker, the
//!   clock, and the recorder it feeds.
//! - [`command`]: what the control plane asks of an engine and what it says
//!   back.
//! - [`session`], [`playback`]: one WHIP session, and a prompt playing into
//!   it.
//! - [`dtls`]: DTLS through OpenSSL, so clients with RSA certificates
//!   connect too.
//! - [`stun_filter`]: a kernel filter that drops forged STUN checks before
//!   they reach the worker.
//! - [`native`]: a call's native ingest (RTP pushed over QUIC): its flows
//!   are speakers; [`plain_rtp`]: RTP Hearken parses itself (native, SIP);
//!   [`transcode`]: telephone codecs made into Opus once.
//! - [`sip`]: a SIP dialog's media: plain RTP on the worker's socket,
//!   prompts sent in the negotiated codec.
//! - [`srtp_in`]: SRTP decrypted by the engine itself for connected WHIP
//!   sessions, past str0m's per-session receive path.
//! - [`verbal`]: verbal consent: a participant's answer to the consent
//!   request, heard on this machine.

pub mod command;
pub mod dtls;
pub mod engine;
pub mod native;
pub mod plain_rtp;
pub mod playback;
pub mod session;
pub mod sip;
pub mod srtp_in;
pub mod stun_filter;
pub mod transcode;
pub mod verbal;
pub mod worker;

pub use command::{
    CallInput, Command, CreateNative, CreateSession, CreateSessionError, CreateSip, EngineEvent,
    InputKind, NativeFlow, Reply, Resume, SipDirection, SipMedia,
};
pub use engine::{Engine, EngineSettings, Output, Routed};
pub use native::NativeMedia;
pub use worker::{AskError, InletFull, NativeInlet, WorkerHandle, WorkerSettings};
