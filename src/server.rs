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

use crate::cluster::index::FleetIndex;
use crate::cluster::{Cluster, NodeStatus};
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
    /// The fleet (NATS) cannot be joined.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The fleet index (PostgreSQL) cannot be used.
    #[error(transparent)]
    Index(#[from] crate::cluster::index::IndexError),
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
    /// This node's membership of a fleet, when `cluster.nats_url` is set.
    pub cluster: Option<Arc<Cluster>>,
    /// The fleet's call index, when `store.postgres_url` is set.
    pub index: Option<Arc<FleetIndex>>,
    /// This node's id (`cluster.node_id`, else the host name).
    pub node_id: String,
    /// The key share links are signed with (`shares.secret`, or the one
    /// kept in the data directory).
    pub share_secret: Vec<u8>,
    /// Set at shutdown: post-call work stops and is resumed at the next
    /// start.
    pub postcall_stop: Arc<AtomicBool>,
    /// The base URL other nodes send this node's calls' clients to.
    pub advertised_url: String,
    started_at: chrono::DateTime<chrono::Utc>,
    accepting: AtomicBool,
    draining: AtomicBool,
    drain_requested: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// Whether new sessions are accepted (false while shutting down).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Whether this node drains: it takes no new calls, and its calls go on
    /// until they end.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts draining (see [`crate::http::ops::drain`]); `false` when it
    /// had started already.
    pub fn start_drain(&self, why: &str) -> bool {
        if self.draining.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.metrics.cluster_drains.inc();
        self.metrics.cluster_draining.set(1);
        info!(
            why,
            calls = self.registry.call_count(),
            timeout_s = self.config.cluster.drain_timeout,
            "draining: no new calls; the calls in progress go on until they end"
        );
        let _ = self.drain_requested.send(true);
        true
    }

    /// What this node's heartbeat says about it now.
    pub fn node_status(&self, node_id: &str, url: &str) -> NodeStatus {
        NodeStatus {
            node_id: node_id.to_owned(),
            url: url.to_owned(),
            media_ip: self.config.media.advertised_ip.to_string(),
            sip: self.sip.as_ref().map(|s| s.contact_host.clone()),
            sessions: self.registry.session_count(),
            calls: self.registry.call_count(),
            capacity: self.config.limits.max_sessions,
            draining: self.is_draining() || !self.is_accepting(),
            heartbeat_ms: self.config.cluster.heartbeat_ms,
            started_at: self.started_at,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
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
    let http_addr = listener.local_addr().map_err(StartError::Listener)?;
    let node_id = node_id(&config);
    let advertised_url = match config.cluster.advertised_url.trim() {
        "" => format!("http://{http_addr}"),
        url => url.trim_end_matches('/').to_owned(),
    };
    // The fleet first: a node that cannot reach NATS says so before it
    // binds anything else.
    let cluster = if config.cluster.enabled() {
        Some(
            Cluster::connect(
                &config.cluster,
                node_id.clone(),
                advertised_url.clone(),
                metrics.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let data_dir = &config.storage.data_dir;
    let mut store = Store::open(data_dir)
        .map_err(|source| StartError::DataDir {
            path: data_dir.clone(),
            source,
        })?
        .watched_by(metrics.store_disk_full.clone());
    // Before anything can write to a call: what a crash left in progress
    // is repaired and ended, then post-call work finds it to resume. In a
    // fleet the index is not told (another node may have taken the call
    // over; its own `call.json` lists this node's part as a segment).
    let recovered = crate::recovery::recover_interrupted_calls(&store, &metrics);
    if recovered > 0 {
        info!(
            calls = recovered,
            "calls the last run left in progress were ended"
        );
    }
    let index = match config.store.enabled() {
        true => Some(
            FleetIndex::connect(config.store.postgres_url.trim(), &node_id, metrics.clone())
                .await?,
        ),
        false => None,
    };
    // The index first: an audit line is in PostgreSQL before its event
    // is published. Post-call work last: it only queues the call.
    let (postcall, postcall_tap) = crate::postcall::PostCall::new(&config.insights, &metrics);
    let mut taps: Vec<Arc<dyn crate::store::StoreTap>> = Vec::new();
    if let Some(index) = &index {
        taps.push(index.clone());
    }
    if let Some(cluster) = &cluster {
        taps.push(Arc::new(crate::cluster::tap::EventTap::new(
            cluster.events().clone(),
        )));
    }
    if cluster.is_some() || index.is_some() {
        store = store.in_fleet(&node_id, None);
    }
    if config.insights.enabled {
        taps.push(postcall_tap);
    }
    if !taps.is_empty() {
        store = store.tapped(Arc::new(crate::store::Taps(taps)));
    }
    let share_secret = store
        .share_secret(&config.shares.secret)
        .map_err(|source| StartError::DataDir {
            path: data_dir.join("share-secret"),
            source,
        })?;

    let consent = Arc::new(crate::setup::consent::setup(&config.consent)?);
    // Rendered off the media workers: a dialog's first prompt then finds
    // them ready (about 10 ms of decoding per codec, once).
    let telephone = Arc::clone(&consent.telephone_prompts);
    if let Err(e) = std::thread::Builder::new()
        .name("hearken-prompts".into())
        .spawn(move || telephone.render_all())
    {
        warn!(error = %e, "prompts for telephone callers will be rendered on first use");
    }
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
        cluster: cluster.clone(),
        index,
        node_id,
        advertised_url,
        share_secret,
        postcall_stop: postcall.stop_flag(),
        started_at: chrono::Utc::now(),
        accepting: AtomicBool::new(true),
        draining: AtomicBool::new(false),
        drain_requested: tokio::sync::watch::channel(false).0,
    });
    let sip = match sip_bound {
        Some(bound) => Some(bound.serve(state.clone()).await?),
        None => None,
    };
    tokio::spawn(track_engine_events(state.clone(), events_rx));
    if config.insights.enabled {
        postcall.start(state.store.clone());
    }

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

    if let Some(cluster) = &cluster {
        tokio::spawn(heartbeat(state.clone(), cluster.clone()));
    }
    let router = crate::http::router(state.clone());
    let drain_state = state.clone();
    let mut drain_requested = state.drain_requested.subscribe();
    let http_task = tokio::spawn(async move {
        let shutdown = async move {
            let mut stop_rx = stop_rx;
            // A signal drains a node of a fleet (its calls finish first); a
            // node alone ends its calls at once, as it always has.
            let drain_first = tokio::select! {
                _ = &mut stop_rx => false,
                _ = external_shutdown => drain_state.cluster.is_some(),
                _ = drain_requested.wait_for(|d| *d) => true,
            };
            if drain_first {
                drain_state.start_drain("signal");
                tokio::select! {
                    _ = &mut stop_rx => {}
                    _ = wait_for_calls_to_end(&drain_state) => {}
                }
            }
            let _ = stopping_tx.send(true);
            drain(drain_state.clone(), joins, quic, sip).await;
            // A mix in progress stops at its next write; the next start
            // makes it again.
            drain_state
                .postcall_stop
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // The calls' last rows and events leave before the node does.
            if let Some(index) = &drain_state.index {
                index.flush(Duration::from_secs(10)).await;
            }
            if let Some(cluster) = &drain_state.cluster {
                cluster.leave().await;
            }
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

/// This node's id: `cluster.node_id`, else the host name (made of the
/// characters a node id may hold).
fn node_id(config: &Config) -> String {
    if !config.cluster.node_id.is_empty() {
        return config.cluster.node_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "hearken".to_owned()
    } else {
        id
    }
}

/// Puts this node's heartbeat every `cluster.heartbeat_ms` until it leaves.
async fn heartbeat(state: Arc<AppState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(state.config.cluster.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if !state.is_accepting() {
            return;
        }
        let status = state.node_status(cluster.node_id(), cluster.url());
        match cluster.heartbeat(&status).await {
            Ok(()) if failing => {
                info!("heartbeats reach NATS again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                warn!(error = %e, "heartbeat failed; other nodes stop placing calls here");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Resolves once this draining node carries no call, or after
/// `cluster.drain_timeout`.
async fn wait_for_calls_to_end(state: &AppState) {
    let deadline = tokio::time::Instant::now() + state.config.cluster.drain_timeout();
    loop {
        let calls = state.registry.call_count();
        if calls == 0 {
            info!("drained: no call in progress");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                calls,
                "drain timeout passed (cluster.drain_timeout): ending the calls left"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
            EngineEvent::CallEnded { call_id } => {
                state.registry.call_ended(&call_id);
                if let Some(cluster) = state.cluster.clone() {
                    tokio::spawn(async move { cluster.release(&call_id).await });
                }
            }
        }
    }
}
