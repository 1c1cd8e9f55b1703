//! Starting and stopping a server: media workers, their recorders, the
//! transcriber, the registry and the HTTP API.
//!
//! The tokio runtime runs HTTP, the control plane and the transcriber; each
//! media worker and each recorder is its own OS thread. Shutdown is a
//! parameter: when it resolves, WHIP answers 503, every call is ended
//! cleanly (EOS written, `call.json` final) and the threads are joined.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Config, TranscriptionBackend};
use crate::control::meetings::Meetings;
use crate::control::registry::Registry;
use crate::ingest::native::NativeCalls;
use crate::ingest::quic::{QuicInfo, QuicIngest};
use crate::ingest::sip::{SipInfo, SipIngest};
use crate::media::{EngineEvent, WorkerHandle, WorkerSettings, worker};
use crate::metrics::Metrics;
use crate::sinks::transcribe::{TranscribeHandle, TranscriptStore};
use crate::sinks::{Downstream, SinkSender, recorder};
use crate::store::Store;

/// How long a stopping server waits for its media workers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A media worker's UDP socket could not be bound.
    #[error("cannot bind media worker {index} to UDP {addr}: {source}")]
    BindMedia {
        /// Worker number.
        index: usize,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The data directory is not usable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The HTTP listener has no local address.
    #[error("the HTTP listener has no local address: {0}")]
    Listener(#[source] std::io::Error),
    /// Consent settings, rules or prompts are not usable.
    #[error(transparent)]
    Consent(#[from] crate::setup::consent::ConsentSetupError),
    /// The webhook secret is missing.
    #[error(transparent)]
    WebhookSecret(#[from] crate::control::scheduler::MissingSecret),
    /// The recording policy settings cannot be loaded.
    #[error(transparent)]
    Policy(#[from] crate::control::meetings::PolicySetupError),
    /// The transcription backend cannot be set up.
    #[error(transparent)]
    Transcription(#[from] crate::sinks::transcribe::deepgram::DeepgramSetupError),
    /// A configuration value is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The QUIC ingest cannot start.
    #[error(transparent)]
    Quic(#[from] crate::ingest::quic::QuicSetupError),
    /// The SIP ingest cannot start.
    #[error(transparent)]
    Sip(#[from] crate::ingest::sip::SipSetupError),
}

/// Where the server reads its secrets (the transcription API key, the
/// webhook secret): the variables the config names, looked up here. A
/// running server uses the process environment; tests hand their own, so
/// no test has to write the process environment.
#[derive(Clone)]
pub struct Secrets(Arc<SecretLookup>);

/// Looks a secret up by the name of its variable.
type SecretLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Secrets {
    /// The process environment.
    pub fn from_env() -> Self {
        Self(Arc::new(|name| std::env::var(name).ok()))
    }

    /// Fixed name/value pairs.
    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self(Arc::new(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }))
    }

    /// The value of the variable `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
}

/// State shared by the HTTP handlers.
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Metrics,
    /// Media workers.
    pub workers: Vec<WorkerHandle>,
    /// Where each call and session lives.
    pub registry: Registry,
    /// The data directory.
    pub store: Store,
    /// Transcripts of calls in progress.
    pub transcripts: Arc<TranscriptStore>,
    /// Meetings and their recording decisions.
    pub meetings: Arc<Meetings>,
    /// Calls with a native ingest, and their connection tokens.
    pub natives: Arc<NativeCalls>,
    /// The QUIC listener's address and certificate, when native ingest is on.
    pub quic: Option<QuicInfo>,
    /// The SIP listener's address and its dialogs, when SIP dial-in is on.
    pub sip: Option<SipInfo>,
    accepting: AtomicBool,
}

impl AppState {
    /// Whether new sessions are accepted (false while shutting down).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// The least-loaded worker whose thread runs; `None` if none does.
    pub fn least_loaded_worker(&self) -> Option<usize> {
        self.workers
            .iter()
            .filter(|w| w.is_alive())
            .min_by_key(|w| w.load())
            .map(|w| w.index)
    }

    /// Workers whose thread died.
    pub fn failed_workers(&self) -> Vec<usize> {
        self.workers
            .iter()
            .filter(|w| !w.is_alive())
            .map(|w| w.index)
            .collect()
    }
}

/// A running server.
pub struct RunningServer {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Shared state (tests inspect metrics and workers).
    pub state: Arc<AppState>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningServer {
    /// Stops taking sessions, ends every call cleanly, and waits for it all.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.http_task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Waits until the server stops (after its shutdown future resolved).
    pub async fn wait(mut self) -> std::io::Result<()> {
        let _keep = self.stop.take();
        match (&mut self.http_task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Starts workers, recorders and HTTP on `listener`, with secrets from the
/// process environment. The server runs until [`RunningServer::shutdown`]
/// is called or `external_shutdown` resolves.
pub async fn start(
    config: Config,
    listener: TcpListener,
    external_shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, StartError> {
    start_with_secrets(config, listener, external_shutdown, Secrets::from_env()).await
}

/// [`start`] with the secrets read from `secrets`.
pub async fn start_with_secrets(
    config: Config,
    listener: TcpListener,
    external_shutdown: impl Future<Output = ()> + Send + 'static,
    secrets: Secrets,
) -> Result<RunningServer, StartError> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let data_dir = &config.storage.data_dir;
    let store = Store::open(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;

    let consent = Arc::new(crate::setup::consent::setup(&config.consent)?);
    metrics.watch_hold_budget(consent.hold_budget.clone());
    let (unknown_mode, unknown_from) = consent.rules.unknown_location_mode(&consent.engine.policy);
    info!(
        rules_version = consent.rules.version(),
        language = %consent.prompts.language,
        unknown_location_mode = %unknown_mode,
        unknown_location_mode_from = unknown_from,
        hold_seconds = config.consent.hold_seconds,
        hold_under_explicit = config.consent.hold_under_explicit,
        "consent rules and prompts loaded"
    );
    let verbal = crate::setup::consent::start_verbal(&config.consent);
    let meetings = Arc::new(Meetings::from_config(&config.policy, &store)?);
    let transcripts = Arc::new(TranscriptStore::default());
    let transcriber = start_transcriber(&config, &secrets, &transcripts, &store, &metrics)?;

    let (events_tx, events_rx) = tokio::sync::mpsc::channel(config.limits.max_sessions + 1024);
    let mut workers = Vec::new();
    let mut joins: Vec<JoinHandle<()>> = Vec::new();
    for index in 0..config.worker_count() {
        let (to_recorder, queue) = SinkSender::channel(config.limits.recorder_queue_frames);
        let downstream = transcriber
            .clone()
            .map(|t| Box::new(t) as Box<dyn Downstream>);
        let recorder_join = recorder::spawn(
            format!("recorder-{index}"),
            store.clone(),
            queue,
            metrics.clone(),
            downstream,
        )
        .map_err(StartError::Thread)?;
        let port = match config.media.port_base {
            0 => 0,
            base => base.saturating_add(index as u16),
        };
        let bind = SocketAddr::new(config.media.bind_ip, port);
        let settings = WorkerSettings {
            index,
            bind,
            advertised: SocketAddr::new(config.media.advertised_ip, port),
            recv_buffer_bytes: config.media.udp_recv_buffer_bytes,
            connect_timeout: config.connect_timeout(),
            inactivity_timeout: config.inactivity_timeout(),
            rtp_idle_timeout: Duration::from_millis(config.media.rtp_idle_timeout_ms),
            consent: consent.clone(),
            verbal: verbal.clone(),
        };
        let (handle, join) = worker::spawn(
            settings,
            to_recorder,
            recorder_join,
            events_tx.clone(),
            &metrics,
        )
        .map_err(|source| StartError::BindMedia {
            index,
            addr: bind,
            source,
        })?;
        workers.push(handle);
        joins.push(join);
    }
    drop(events_tx);
    let natives = Arc::new(NativeCalls::default());
    let quic = match config.ingest.quic.listen_addr()? {
        Some(listen) => Some(crate::ingest::quic::start(
            &config.ingest.quic,
            listen,
            natives.clone(),
            &metrics,
        )?),
        None => None,
    };
    // SIP binds now (the state names its address) and serves once the
    // state exists (the UAS places sessions through it).
    let sip_bound = match config.ingest.sip.listen_addr()? {
        Some(listen) => Some(
            crate::ingest::sip::bind(
                &config.ingest.sip,
                listen,
                config.media.advertised_ip,
                &secrets,
            )
            .await?,
        ),
        None => None,
    };
    metrics.media_workers.set(workers.len() as i64);
    metrics
        .sessions_capacity
        .set(config.limits.max_sessions as i64);

    let state = Arc::new(AppState {
        config: config.clone(),
        metrics: metrics.clone(),
        workers,
        registry: Registry::default(),
        store,
        transcripts,
        meetings: meetings.clone(),
        natives,
        quic: quic.as_ref().map(|q| q.info.clone()),
        sip: sip_bound.as_ref().map(|s| s.info()),
        accepting: AtomicBool::new(true),
    });
    let sip = match sip_bound {
        Some(bound) => Some(bound.serve(state.clone()).await?),
        None => None,
    };
    tokio::spawn(track_engine_events(state.clone(), events_rx));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    if let Some(url) = config.policy.webhook_url.as_deref() {
        let var = &config.policy.webhook_secret_env;
        let secret = secrets
            .get(var)
            .ok_or_else(|| crate::control::scheduler::MissingSecret(var.clone()))?
            .into_bytes();
        info!(webhook = %url, "join requests enabled");
        let mut stopping = stopping_rx.clone();
        tokio::spawn(crate::control::scheduler::run(
            meetings,
            metrics.clone(),
            config.policy.clone(),
            secret,
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            },
        ));
    }

    let http_addr = listener.local_addr().map_err(StartError::Listener)?;
    let router = crate::http::router(state.clone());
    let drain_state = state.clone();
    let http_task = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = external_shutdown => {}
            }
            let _ = stopping_tx.send(true);
            drain(drain_state, joins, quic, sip).await;
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    info!(%http_addr, workers = state.workers.len(), "hearken is listening");
    Ok(RunningServer {
        http_addr,
        state,
        http_task,
        stop: Some(stop_tx),
    })
}

/// The transcriber, when a backend is configured.
fn start_transcriber(
    config: &Config,
    secrets: &Secrets,
    transcripts: &Arc<TranscriptStore>,
    store: &Store,
    metrics: &Metrics,
) -> Result<Option<TranscribeHandle>, StartError> {
    use crate::sinks::transcribe::deepgram::{DeepgramBackend, DeepgramSetupError};
    use crate::sinks::transcribe::{self, SinkSettings};
    let t = &config.transcription;
    match t.backend {
        TranscriptionBackend::None => {
            info!(backend = "none", "transcription off: recording only");
            Ok(None)
        }
        TranscriptionBackend::Deepgram => {
            let key = secrets
                .get(&t.deepgram.api_key_env)
                .ok_or_else(|| DeepgramSetupError::MissingKey(t.deepgram.api_key_env.clone()))?;
            let backend = DeepgramBackend::with_key(&t.deepgram, &key)?;
            info!(
                backend = "deepgram",
                url = %t.deepgram.url,
                model = %t.deepgram.model,
                encoding = ?t.deepgram.encoding,
                skip_silence = t.skip_silence,
                "transcription backend active"
            );
            Ok(Some(transcribe::spawn(
                Arc::new(backend),
                SinkSettings {
                    queue_frames: t.queue_frames,
                    speaker_queue_frames: t.speaker_queue_frames,
                    connect_timeout: Duration::from_millis(t.connect_timeout_ms),
                    buffer_seconds: t.buffer_seconds,
                    finish_timeout: Duration::from_millis(t.finish_timeout_ms),
                    talk_filter: t.skip_silence.then(|| {
                        hearken_core::voice::TalkFilterConfig::from_millis(
                            t.silence_hangover_ms,
                            t.silence_preroll_ms,
                        )
                    }),
                },
                transcripts.clone(),
                store.clone(),
                metrics.clone(),
            )))
        }
    }
}

/// Stops taking sessions, ends every call, joins the media threads.
async fn drain(
    state: Arc<AppState>,
    joins: Vec<JoinHandle<()>>,
    quic: Option<QuicIngest>,
    sip: Option<SipIngest>,
) {
    info!("shutting down: no new sessions; ending calls");
    state.accepting.store(false, Ordering::SeqCst);
    if let Some(quic) = &quic {
        quic.close();
    }
    if let Some(sip) = &sip {
        sip.close();
    }
    for w in &state.workers {
        w.shutdown();
    }
    let joined = tokio::task::spawn_blocking(move || {
        for j in joins {
            // A worker that died already has nothing to join.
            let _ = j.join();
        }
    });
    if tokio::time::timeout(DRAIN_TIMEOUT, joined).await.is_err() {
        warn!("media workers did not stop within {DRAIN_TIMEOUT:?}");
    }
    info!("all calls ended");
}

/// Keeps the registry in step with what the engines report.
async fn track_engine_events(
    state: Arc<AppState>,
    mut events: tokio::sync::mpsc::Receiver<EngineEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::SessionEnded {
                call_id,
                secret,
                failure,
                ..
            } => {
                state.registry.remove_session(&secret);
                state.natives.remove_session(&secret);
                // A SIP dialog whose media ended (it timed out, the call
                // ended): the caller gets a BYE.
                if let Some(sip) = &state.sip {
                    sip.session_ended(&secret);
                }
                if let Some(failure) = failure {
                    state.registry.session_failed(&call_id, failure);
                }
            }
            EngineEvent::CallEnded { call_id } => state.registry.call_ended(&call_id),
        }
    }
}
