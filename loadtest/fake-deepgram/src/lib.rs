//! A fake of Deepgram's live streaming API (`GET /v1/listen` over a
//! websocket), for Hearken's tests and load generator. It is never linked
//! into the server binary.
//!
//! It speaks the real wire protocol: `Authorization: Token KEY` (401
//! otherwise), the query parameters the `deepgram` crate sends, a
//! `dg-request-id` header on the upgrade, binary `linear16` audio (or, with
//! no `encoding`, an Ogg Opus container, see [`ogg_opus`]),
//! `KeepAlive`/`Finalize`/`CloseStream` text frames, an empty binary frame as
//! a close, `Results`/`SpeechStarted`/`UtteranceEnd`/`Metadata` messages with
//! every field the `deepgram` 0.14 crate requires, and a close with reason
//! `NET-0001` (code 1011) after [`FakeConfig::idle_timeout`] without audio or
//! KeepAlive.
//!
//! Its "transcript" proves which audio arrived: every 0.5 s window of stream
//! time whose RMS reaches [`FakeConfig::rms_threshold`] becomes the word
//! `w{index}` with the window's bounds as its times (see [`transcriber`]).
//!
//! # Run loop
//!
//! [`FakeDeepgram::start`] binds a loopback listener and serves it with axum
//! on the current tokio runtime. Each accepted connection runs one task: it
//! waits for the next of (a client message, the next delayed server message
//! falling due, the idle deadline, shutdown), feeds client messages to a pure
//! [`transcriber::Transcriber`], and queues what it produces. Everything
//! received is appended to a shared [`Record`] that tests read with
//! [`FakeDeepgram::record`]; faults come from the shared [`Behavior`] set
//! with [`FakeDeepgram::set_behavior`]. Dropping the [`FakeDeepgram`] stops
//! the listener and drops every open connection.
//!
//! ```no_run
//! # async fn demo() {
//! use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};
//! let fake = FakeDeepgram::start(FakeConfig::default()).await;
//! // deepgram::Deepgram::with_base_url_and_api_key(fake.url(), fake.api_key())
//! let record = fake.record();
//! # }
//! ```

#![forbid(unsafe_code)]

mod behavior;
pub mod ogg_opus;
mod record;
mod server;
pub mod transcriber;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use behavior::{Behavior, DropMode, DropPlan, Reject};
pub use record::{
    CloseRecord, Closer, ConnectionRecord, ControlMessage, ReceivedEvent, Record, RejectedAttempt,
};
pub use server::NET_0001;

/// How to start a [`FakeDeepgram`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Where to listen; must be a loopback address. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The API key clients must send as `Authorization: Token KEY`.
    pub api_key: String,
    /// Close with `NET-0001` after this long without audio or KeepAlive
    /// (the real service: about 10 s).
    pub idle_timeout: Duration,
    /// RMS (in `linear16` units, 0..32767) at or above which a 0.5 s window
    /// is a word.
    pub rms_threshold: f64,
    /// Keep every PCM byte in [`ConnectionRecord::audio`] and one
    /// [`ReceivedEvent::Audio`] per message; turn off for long load runs
    /// (byte counts and control messages are kept either way).
    pub record_audio: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: "fake-deepgram-key".to_owned(),
            idle_timeout: Duration::from_secs(10),
            rms_threshold: 500.0,
            record_audio: true,
        }
    }
}

/// Errors from starting or waiting on the fake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// The listen address is not loopback; the fake never listens elsewhere.
    #[error("refusing to listen on non-loopback address {0}")]
    NotLoopback(SocketAddr),
    /// The listener could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// [`FakeDeepgram::wait_until`] gave up.
    #[error("condition not met within {0:?}")]
    Timeout(Duration),
}

/// A running fake Deepgram server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeDeepgram {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl FakeDeepgram {
    /// Start the fake on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// If the listener cannot be bound (see [`FakeDeepgram::try_start`]);
    /// this is the convenient form for tests.
    pub async fn start(config: FakeConfig) -> FakeDeepgram {
        match Self::try_start(config).await {
            Ok(fake) => fake,
            Err(e) => panic!("cannot start the fake Deepgram: {e}"),
        }
    }

    /// Start the fake on the current tokio runtime, or say why not.
    pub async fn try_start(config: FakeConfig) -> Result<FakeDeepgram, FakeError> {
        if !config.listen.ip().is_loopback() {
            return Err(FakeError::NotLoopback(config.listen));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| FakeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| FakeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(server::Shared {
            config,
            started: tokio::time::Instant::now(),
            state: Mutex::new(server::SharedState::default()),
            shutdown: shutdown_rx.clone(),
        });
        let app = server::router(Arc::clone(&shared));
        let mut stop = shutdown_rx;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "fake Deepgram server failed");
            }
        });
        tracing::debug!(%addr, "fake Deepgram listening");
        Ok(FakeDeepgram {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// The base URL to give the `deepgram` crate: `http://127.0.0.1:PORT`
    /// (the crate turns it into `ws://…/v1/listen`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API key the fake accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// A snapshot of everything received so far.
    pub fn record(&self) -> Record {
        self.shared.lock().record.clone()
    }

    /// Replace the injected faults (counters start from the new values).
    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.lock().behavior = behavior;
    }

    /// The injected faults still pending.
    pub fn behavior(&self) -> Behavior {
        self.shared.lock().behavior.clone()
    }

    /// Poll the record every 10 ms until `condition` holds, and return that
    /// snapshot; [`FakeError::Timeout`] after `limit`.
    pub async fn wait_until(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&Record) -> bool,
    ) -> Result<Record, FakeError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let record = self.record();
            if condition(&record) {
                return Ok(record);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(FakeError::Timeout(limit));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeDeepgram {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}
