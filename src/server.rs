//! Starting and stopping a server: media workers, their recorders, the
//! session registry and the HTTP API.
//!
//! The tokio runtime runs HTTP and the registry; each media worker and each
//! recorder is its own OS thread. Shutdown is a parameter: when it resolves,
//! WHIP answers 503, every call is ended cleanly (EOS written, `call.json`
//! final) and the threads are joined.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::core::ids::CallId;
use crate::metrics::Metrics;
use crate::rtc::worker::{self, WorkerCommand, WorkerEvent, WorkerHandle, WorkerSettings};
use crate::sinks::recorder;

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
        /// The error.
        source: std::io::Error,
    },
    /// The data directory is not usable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// Consent settings, rules or prompts are not usable.
    #[error(transparent)]
    Consent(#[from] crate::consent_setup::ConsentSetupError),
    /// The webhook secret is missing.
    #[error(transparent)]
    WebhookSecret(#[from] crate::scheduler::MissingSecret),
    /// The recording policy settings cannot be loaded.
    #[error(transparent)]
    Policy(#[from] crate::meetings::PolicySetupError),
    /// The transcription backend cannot be set up.
    #[error(transparent)]
    Transcription(#[from] crate::sinks::transcribe::deepgram::DeepgramSetupError),
}

/// Where each session and call lives. Control plane only: the packet path
/// never touches it.
#[derive(Debug, Default)]
pub struct Registry {
    /// Session secret -> its call and worker.
    pub sessions: HashMap<String, SessionEntry>,
    /// Call -> worker and number of sessions.
    pub calls: HashMap<CallId, CallEntry>,
}

/// A registered session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// Its call.
    pub call_id: CallId,
    /// Worker index.
    pub worker: usize,
    /// Strong entity tag of its ICE session.
    pub etag: String,
}

/// A registered call.
#[derive(Debug, Clone)]
pub struct CallEntry {
    /// Worker index.
    pub worker: usize,
    /// Sessions registered.
    pub sessions: usize,
}

impl Registry {
    /// Forgets a session; forgets its call when it was the last one.
    pub fn remove_session(&mut self, secret: &str) {
        let Some(entry) = self.sessions.remove(secret) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&entry.call_id) {
            call.sessions = call.sessions.saturating_sub(1);
            if call.sessions == 0 {
                self.calls.remove(&entry.call_id);
            }
        }
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
    registry: Mutex<Registry>,
    accepting: AtomicBool,
    /// Consent setup shared with the workers (pending participant details).
    pub consent: Arc<crate::rtc::worker::ConsentSetup>,
    /// Transcripts of calls in progress.
    pub transcripts: Arc<crate::sinks::transcribe::TranscriptStore>,
    /// Meetings and their recording decisions.
    pub meetings: crate::meetings::Meetings,
}

impl AppState {
    /// Locks the registry (a poisoned lock still holds consistent data:
    /// every update is a single map operation).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether new sessions are accepted (false while shutting down).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// The least-loaded worker.
    pub fn least_loaded_worker(&self) -> usize {
        self.workers
            .iter()
            .min_by_key(|w| w.sessions.load(Ordering::Relaxed))
            .map(|w| w.index)
            .unwrap_or(0)
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

/// Starts workers, recorders and HTTP on `listener`. The server runs until
/// [`RunningServer::shutdown`] is called or `external_shutdown` resolves.
pub async fn start(
    config: Config,
    listener: TcpListener,
    external_shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, StartError> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let data_dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(data_dir.join("calls")).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;

    let consent = Arc::new(crate::consent_setup::setup(&config.consent)?);
    info!(
        rules_version = consent.rules.version(),
        language = %consent.prompts.language,
        "consent rules and prompts loaded"
    );
    let meetings = crate::meetings::Meetings::from_config(&config.policy, &data_dir)?;
    let transcripts = Arc::new(crate::sinks::transcribe::TranscriptStore::default());
    let transcribe = match config.transcription.backend.as_str() {
        "deepgram" => {
            let backend = crate::sinks::transcribe::deepgram::DeepgramBackend::from_config(
                &config.transcription.deepgram,
            )?;
            info!(
                backend = "deepgram",
                url = %config.transcription.deepgram.url,
                model = %config.transcription.deepgram.model,
                encoding = ?config.transcription.deepgram.encoding,
                skip_silence = config.transcription.skip_silence,
                "transcription backend active"
            );
            Some(crate::sinks::transcribe::spawn(
                Arc::new(backend),
                crate::sinks::transcribe::SinkSettings {
                    buffer_seconds: config.transcription.buffer_seconds,
                    finish_timeout: Duration::from_millis(config.transcription.finish_timeout_ms),
                    talk_filter: config.transcription.skip_silence.then(|| {
                        crate::core::voice::TalkFilterConfig::from_millis(
                            config.transcription.silence_hangover_ms,
                            config.transcription.silence_preroll_ms,
                        )
                    }),
                },
                transcripts.clone(),
                metrics.clone(),
            ))
        }
        _ => {
            info!(backend = "none", "transcription off: recording only");
            None
        }
    };
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    let mut joins: Vec<JoinHandle<()>> = Vec::new();
    for index in 0..config.worker_count() {
        let (rec, rec_join) = recorder::spawn(
            format!("recorder-{index}"),
            data_dir.clone(),
            config.limits.recorder_queue_frames,
            metrics.clone(),
            transcribe.clone(),
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
            consent: consent.clone(),
        };
        let (handle, join) =
            worker::spawn(settings, rec, rec_join, events_tx.clone(), metrics.clone()).map_err(
                |source| StartError::BindMedia {
                    index,
                    addr: bind,
                    source,
                },
            )?;
        workers.push(handle);
        joins.push(join);
    }
    drop(events_tx);
    metrics.media_workers.set(workers.len() as i64);
    metrics
        .sessions_capacity
        .set(config.limits.max_sessions as i64);

    let state = Arc::new(AppState {
        config: config.clone(),
        metrics: metrics.clone(),
        workers,
        registry: Mutex::new(Registry::default()),
        accepting: AtomicBool::new(true),
        consent,
        transcripts,
        meetings,
    });
    tokio::spawn(track_worker_events(state.clone(), events_rx));
    if !config.policy.webhook_url.trim().is_empty() {
        let var = &config.policy.webhook_secret_env;
        let secret = std::env::var(var)
            .map_err(|_| crate::scheduler::MissingSecret(var.clone()))?
            .into_bytes();
        tokio::spawn(crate::scheduler::run(state.clone(), secret));
    }

    let http_addr = listener.local_addr().map_err(StartError::Thread)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = crate::api::router(state.clone());
    let drain_state = state.clone();
    let http_task = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = external_shutdown => {}
            }
            drain(drain_state, joins).await;
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

/// Stops taking sessions, ends every call, joins the media threads.
async fn drain(state: Arc<AppState>, joins: Vec<JoinHandle<()>>) {
    info!("shutting down: no new sessions; ending calls");
    state.accepting.store(false, Ordering::SeqCst);
    for w in &state.workers {
        let _ = w.send(WorkerCommand::Shutdown);
    }
    let joined = tokio::task::spawn_blocking(move || {
        for j in joins {
            let _ = j.join();
        }
    });
    if tokio::time::timeout(Duration::from_secs(30), joined)
        .await
        .is_err()
    {
        warn!("media workers did not stop within 30 s");
    }
    info!("all calls ended");
}

async fn track_worker_events(
    state: Arc<AppState>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<WorkerEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            WorkerEvent::SessionEnded { secret, .. } => state.registry().remove_session(&secret),
        }
    }
}
