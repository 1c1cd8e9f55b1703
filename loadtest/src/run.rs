//! The coordinator: ramps the speakers (WHIP sessions, or flows of native
//! ingests), holds them, measures the server before and after, ends every
//! session and builds the [`Report`].
//!
//! It runs on a single-threaded tokio runtime on the main thread (HTTP with
//! reqwest, offer creation, answer parsing); the media (WHIP media threads,
//! or the RoQ connections' runtime) only ever sees speakers whose answer is
//! accepted. Phases:
//!
//! 1. baseline scrape (server RSS before any session);
//! 2. ramp: one speaker started every `1 / --ramp` s. With WHIP each is its
//!    own session and task, so a slow answer never delays the next start;
//!    with native ingest a call's POST (a task) is sent when its first
//!    speaker is due, and each of its speakers starts sending at its own
//!    time in the ramp (or once its call is ready, if later);
//! 3. settle: wait until every session has connected or failed;
//! 4. hold: scrape, sample RSS every second until `--duration` after the
//!    last start, scrape again;
//! 5. stop sending, DELETE every session (bounded concurrency).
//!
//! With `--reconnect`, a connected WHIP session that is lost at any time
//! until sending stops gets a reconnect task (see `reconnect.rs`); its new
//! session replaces the lost one for the placement and the DELETE.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use url::Url;

use crate::audio::{Audio, FRAME_SAMPLES};
use crate::cli::{Ingest, Plan};
use crate::client::{CONNECT_TIMEOUT, PendingSpeaker, Resume, SendCounters};
use crate::media::{MediaInbox, MediaReport, MediaThread};
use crate::metrics::Exposition;
use crate::native::{
    AnsweredCall, CallInbox, NativeMedia, NativeSpeaker, OPUS_PAYLOAD_TYPE, RtpIdentity,
};
use crate::process::Pid;
use crate::reconnect::{CONSENT_INTERVAL, Ended, Lost, ReconnectNote, Reconnector};
use crate::report::{FakeDeepgramStats, Percentiles, Quantiles, Report, Rss};
use crate::schedule::{Pacer, TalkSchedule};
use crate::whip::{HTTP_TIMEOUT, NativeFlow, Placement, Server};

/// Concurrent DELETEs at the end.
const DELETE_CONCURRENCY: usize = 32;
/// Longest the DELETE phase may take.
const DELETE_PHASE_LIMIT: Duration = Duration::from_secs(30);
/// Interval of the server RSS samples during the hold.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest measured hold, for runs whose sessions took longer to settle
/// than `--duration`.
const MIN_HOLD: Duration = Duration::from_secs(1);
/// Sockets the generator needs besides its media sockets (HTTP, poll, …).
const SPARE_FILES: u64 = 128;

/// The bound on a whole run: ramp, settle, hold, DELETEs, plus a margin.
/// Past it the process exits on its own whatever it is doing.
pub fn overall_deadline(plan: &Plan) -> Duration {
    let shutdown = match plan.ingest {
        Ingest::Whip if plan.reconnect.is_some() => crate::reconnect::STOP_LIMIT,
        Ingest::Whip => Duration::ZERO,
        Ingest::Roq { .. } => crate::native::SHUTDOWN_LIMIT,
    };
    plan.ramp_time()
        + HTTP_TIMEOUT
        + CONNECT_TIMEOUT
        + plan.duration
        + DELETE_PHASE_LIMIT
        + shutdown
        + Duration::from_secs(30)
}

/// Runs the plan to completion.
pub fn run(plan: Plan) -> anyhow::Result<Report> {
    let audio = Audio::load(&plan.audio_dir).context("--audio-dir")?;
    let clips: Vec<String> = audio
        .clips
        .iter()
        .map(|c| format!("{} ({} packets)", c.name, c.packets.len()))
        .collect();
    progress(format!(
        "audio: {}; silence packets: {} bytes (DTX), {} bytes (no DTX)",
        clips.join(", "),
        audio.dtx_silence.data.len(),
        audio.silence.data.len()
    ));
    if let Some(limit) = Pid::Current.open_files_limit()
        && plan.media_sockets() + SPARE_FILES > limit
    {
        anyhow::bail!(
            "{} speakers need {} open files (one UDP socket each) but the limit is {limit}; \
             raise it (ulimit -n) or lower --calls/--speakers-per-call",
            plan.speakers(),
            plan.media_sockets() + SPARE_FILES
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signalling runtime")?;
    runtime.block_on(Coordinator::new(plan, Arc::new(audio))?.run())
}

/// What a signalling task reports.
#[derive(Debug)]
enum SetupNote {
    /// A 201 was read and the speaker handed to a media thread.
    Answered {
        session: usize,
        whip_answer_ms: f64,
        location: Url,
        /// The node that answered and the redirects that led there (a
        /// native call's counted on its first speaker only).
        placement: Placement,
    },
    /// The session failed before reaching a media thread.
    Failed {
        session: usize,
        kind: String,
        /// Set when the server created the session anyway (it must be
        /// deleted).
        location: Option<Url>,
    },
}

/// What is known about one session (one speaker: with `--reconnect`, its
/// current session).
#[derive(Debug, Default)]
struct Session {
    /// The URL to DELETE at the end; `None` once lost (its node is taken
    /// for dead) until a new session is answered.
    location: Option<Url>,
    /// Where the speaker's current session is.
    placement: Option<Placement>,
    /// Redirects followed by every POST of the speaker answered 201.
    redirects: u64,
    whip_answer_ms: Option<f64>,
    connected_ms: Option<f64>,
    error: Option<String>,
}

impl Session {
    /// Connected or failed: nothing more is expected during setup.
    fn settled(&self) -> bool {
        self.connected_ms.is_some() || self.error.is_some()
    }
}

/// A measurement of the server and the generator at one instant.
#[derive(Debug)]
struct Snapshot {
    at: Instant,
    metrics: Option<Exposition>,
    server_cpu: Option<f64>,
    server_rss: Option<u64>,
    packets_sent: u64,
    late_sends: u64,
    generator_cpu: f64,
}

/// Where the speakers' media is sent from.
enum Transport {
    /// WHIP: media threads, each one mio loop for many sessions.
    Whip(Vec<MediaThread>),
    /// Native ingest: RoQ connections on a tokio runtime.
    Roq(NativeMedia),
}

impl Transport {
    /// Starts the media of `plan`'s ingest, reporting to `reports`.
    fn start(
        plan: &Plan,
        audio: &Arc<Audio>,
        reports: UnboundedSender<MediaReport>,
    ) -> anyhow::Result<Self> {
        Ok(match plan.ingest {
            Ingest::Whip => Self::Whip(
                (0..plan.threads)
                    .map(|i| MediaThread::spawn(i, Arc::clone(audio), reports.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .context("starting media threads")?,
            ),
            Ingest::Roq { connections, mode } => Self::Roq(
                NativeMedia::start(connections, mode, plan.threads, Arc::clone(audio), reports)
                    .context("starting the RoQ media runtime")?,
            ),
        })
    }

    /// The send counters of every media thread or connection.
    fn counters(&self) -> Vec<Arc<SendCounters>> {
        match self {
            Self::Whip(threads) => threads.iter().map(|m| Arc::clone(&m.counters)).collect(),
            Self::Roq(native) => native.counters(),
        }
    }

    /// Stops sending (the sessions stay up until their DELETEs).
    async fn stop_sending(&mut self) {
        match self {
            Self::Whip(threads) => {
                for thread in threads.drain(..) {
                    thread.stop();
                }
            }
            Self::Roq(native) => native.stop_sending().await,
        }
    }

    /// Releases what is left once the sessions are deleted.
    async fn close(self) {
        if let Self::Roq(native) = self {
            native.close().await;
        }
    }
}

/// What `--reconnect` did.
#[derive(Debug, Default)]
struct Reconnects {
    /// Sessions re-established.
    done: u64,
    /// Speakers that lost a session and did not get a new one.
    failed: u64,
    /// Loss detected to new session connected, per reconnect.
    ms: Vec<f64>,
    /// Failed attempts by kind.
    attempt_errors: BTreeMap<String, u64>,
    /// Packets not sent by speakers that gave up, from their loss until
    /// then (those that reconnected are counted by their media thread).
    paused: u64,
    /// Failures printed so far (a few are, not thousands).
    printed: u32,
}

/// Reconnect failures printed on stderr; the rest are only counted.
const PRINTED_RECONNECT_FAILURES: u32 = 10;

struct Coordinator {
    plan: Plan,
    audio: Arc<Audio>,
    server: Server,
    transport: Transport,
    /// What the media sent, per media thread or connection.
    counters: Vec<Arc<SendCounters>>,
    media_rx: UnboundedReceiver<MediaReport>,
    setup_tx: UnboundedSender<SetupNote>,
    setup_rx: UnboundedReceiver<SetupNote>,
    sessions: Vec<Session>,
    /// The WHIP media threads' inboxes (none with native ingest).
    inboxes: Vec<MediaInbox>,
    /// With `--reconnect`: what the reconnect tasks share.
    reconnector: Option<Arc<Reconnector>>,
    reconnect_rx: UnboundedReceiver<ReconnectNote>,
    /// Tells the reconnect tasks when sending stopped.
    stop_tx: watch::Sender<Option<Instant>>,
    reconnect_tasks: JoinSet<()>,
    reconnects: Reconnects,
    /// When the media stopped sending (the hold is over).
    sending_stopped: Option<Instant>,
    /// The server process whose CPU and RSS are read from `/proc`.
    server_pid: Option<u32>,
    /// Where server CPU and RSS come from (see [`Report::server_probe`]).
    server_probe: &'static str,
}

impl Coordinator {
    fn new(plan: Plan, audio: Arc<Audio>) -> anyhow::Result<Self> {
        let server = Server::new(plan.url.clone(), &plan.token).context("HTTP client")?;
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let transport = Transport::start(&plan, &audio, media_tx)?;
        let counters = transport.counters();
        let (setup_tx, setup_rx) = mpsc::unbounded_channel();
        let sessions = (0..plan.speakers()).map(|_| Session::default()).collect();
        let inboxes = match &transport {
            Transport::Whip(threads) => threads.iter().map(MediaThread::inbox).collect(),
            Transport::Roq(_) => Vec::new(),
        };
        let (reconnect_tx, reconnect_rx) = mpsc::unbounded_channel();
        let (stop_tx, stopped) = watch::channel(None);
        let reconnector = plan.reconnect.map(|silence_limit| {
            Arc::new(Reconnector {
                server: server.clone(),
                audio: Arc::clone(&audio),
                notes: reconnect_tx,
                stopped,
                silence_limit,
                deadline: crate::reconnect::RECONNECT_DEADLINE,
            })
        });
        let (server_pid, server_probe) = server_process(&plan)?;
        Ok(Self {
            plan,
            audio,
            server,
            transport,
            counters,
            media_rx,
            setup_tx,
            setup_rx,
            sessions,
            inboxes,
            reconnector,
            reconnect_rx,
            stop_tx,
            reconnect_tasks: JoinSet::new(),
            reconnects: Reconnects::default(),
            sending_stopped: None,
            server_pid,
            server_probe,
        })
    }

    async fn run(mut self) -> anyhow::Result<Report> {
        let fake = self.start_fake_deepgram().await?;
        // Fail early and clearly when nothing answers at --url.
        self.server
            .metrics()
            .await
            .with_context(|| format!("--url: cannot GET {}metrics", self.plan.url))?;
        let baseline = self.snapshot().await?;

        let last_started = self.ramp().await;
        let settle_limit = last_started + HTTP_TIMEOUT + Duration::from_secs(2);
        self.pump_until(settle_limit, true).await;
        let connected = self.sessions.iter().filter(|s| s.connected_ms.is_some());
        progress(format!(
            "settled: {} connected, {} failed",
            connected.count(),
            self.sessions.iter().filter(|s| s.error.is_some()).count()
        ));
        // A server without a QUIC listener answers every native POST 404.
        if self.plan.ingest != Ingest::Whip
            && self
                .sessions
                .iter()
                .all(|s| s.error.as_deref() == Some("http_404"))
        {
            progress(
                "every native POST was answered 404: is native ingest on? \
                 (the server needs HEARKEN_INGEST_QUIC_LISTEN, e.g. 127.0.0.1:4433)"
                    .to_owned(),
            );
        }

        let start = self.snapshot().await?;
        let hold_end = (last_started + self.plan.duration).max(start.at + MIN_HOLD);
        progress(format!(
            "holding for {:.1} s",
            hold_end.saturating_duration_since(start.at).as_secs_f64()
        ));
        let mut rss_max = start.server_rss;
        loop {
            let next = (Instant::now() + RSS_SAMPLE_INTERVAL).min(hold_end);
            self.pump_until(next, false).await;
            if Instant::now() >= hold_end {
                break;
            }
            if let Ok(rss) = self.server_rss().await {
                rss_max = rss_max.max(Some(rss));
            }
        }
        let end = self.snapshot().await?;
        rss_max = rss_max.max(end.server_rss);

        // Stop sending before ending the sessions, as a client leaving does;
        // the server would otherwise log the stragglers as unrouted.
        self.sending_stopped = Some(Instant::now());
        self.transport.stop_sending().await;
        // Notes that arrived during the last instants of the hold.
        while let Ok(note) = self.setup_rx.try_recv() {
            self.on_setup(note);
        }
        while let Ok(report) = self.media_rx.try_recv() {
            self.on_media(report);
        }
        self.finish_reconnects().await;
        let (mut delete_ms, delete_errors) = self.delete_all().await;
        let counters = self.counters.clone();
        let sum = |f: fn(&SendCounters) -> u64| -> u64 { counters.iter().map(|c| f(c)).sum() };
        let packets_sent = sum(|c| c.packets.load(Ordering::Relaxed));
        let send_errors = sum(|c| c.send_errors.load(Ordering::Relaxed));
        self.compare_ingest_packets(&baseline, packets_sent, send_errors)
            .await;

        let fake_stats = fake.map(|f| {
            let record = f.record();
            FakeDeepgramStats {
                connections: record.connections.len(),
                rejected: record.rejected.len(),
                audio_bytes: record.connections.iter().map(|c| c.audio_bytes).sum(),
            }
        });
        let generator_cpu = Pid::Current.cpu_seconds().unwrap_or(end.generator_cpu);
        let mut report = self.report(&baseline, &start, &end, rss_max);
        report.late_sends = sum(|c| c.late.load(Ordering::Relaxed));
        report.send_errors = send_errors;
        report.packets_sent = packets_sent;
        report.delete_ms = Percentiles::of(&mut delete_ms);
        report.delete_errors = delete_errors;
        report.generator_cpu_seconds = generator_cpu;
        report.fake_deepgram = fake_stats;
        report.packets_sent_while_disconnected =
            sum(|c| c.paused.load(Ordering::Relaxed)) + self.reconnects.paused;
        report.packets_sent_before_detection =
            sum(|c| c.sent_before_detection.load(Ordering::Relaxed));
        self.transport.close().await;
        Ok(report)
    }

    /// With native ingest, says how many RTP packets the server counted
    /// (`hearken_ingest_packets_total{ingest="native"}` since the baseline)
    /// against how many left the generator: a check that every packet sent
    /// arrived and was taken for its flow, over the whole run rather than
    /// the hold. (WHIP's count includes every STUN, DTLS and RTCP datagram,
    /// so it cannot be compared.)
    async fn compare_ingest_packets(&self, baseline: &Snapshot, sent: u64, send_errors: u64) {
        if self.plan.ingest == Ingest::Whip {
            return;
        }
        let ingest = self.plan.ingest.server_label();
        let name = "hearken_ingest_packets_total";
        let counted = async {
            let now = Exposition::parse(&self.server.metrics().await.ok()?).ok()?;
            let before = baseline
                .metrics
                .as_ref()?
                .sum_labelled(name, "ingest", ingest)
                .unwrap_or(0.0);
            Some(now.sum_labelled(name, "ingest", ingest)? - before)
        };
        match counted.await {
            Some(counted) => progress(format!(
                "the server counted {counted:.0} {ingest} ingest packets over the run; \
                 the generator sent {sent} ({send_errors} send errors)"
            )),
            None => progress(format!("cannot read {name}{{ingest=\"{ingest}\"}}")),
        }
    }

    /// Starts the fake Deepgram on its fixed port, if asked to.
    async fn start_fake_deepgram(&self) -> anyhow::Result<Option<FakeDeepgram>> {
        let Some(port) = self.plan.fake_deepgram_port else {
            return Ok(None);
        };
        let fake = FakeDeepgram::try_start(FakeConfig {
            listen: (std::net::Ipv4Addr::LOCALHOST, port).into(),
            api_key: self.plan.fake_deepgram_key.clone(),
            // A load run would otherwise keep every PCM byte in memory.
            record_audio: false,
            ..FakeConfig::default()
        })
        .await
        .context("--fake-deepgram-port")?;
        progress(format!("fake Deepgram listening at {}", fake.url()));
        Ok(Some(fake))
    }

    /// Starts every speaker at the ramp rate; returns when the last one
    /// was started.
    async fn ramp(&mut self) -> Instant {
        let total = self.sessions.len();
        let spc = self.plan.speakers_per_call;
        match self.plan.ingest {
            Ingest::Whip => progress(format!(
                "starting {total} sessions ({} calls x {spc}) at {}/s",
                self.plan.calls, self.plan.ramp_per_s
            )),
            Ingest::Roq { connections, mode } => progress(format!(
                "starting {total} speakers ({} native calls x {spc}) at {}/s over {connections} \
                 QUIC connection(s), RTP in {}s",
                self.plan.calls,
                self.plan.ramp_per_s,
                mode.name()
            )),
        }
        let ramp_start = Instant::now();
        let mut last = ramp_start;
        for session in 0..total {
            let at = ramp_start + self.ramp_offset(session as u64);
            self.pump_until(at, false).await;
            last = Instant::now();
            match &self.transport {
                Transport::Whip(_) => {
                    self.spawn_session(session, self.inbox_of(session));
                }
                Transport::Roq(native) => {
                    let index = session as u64;
                    if index.is_multiple_of(spc) {
                        let call = index / spc;
                        self.spawn_native_call(call, ramp_start, native.inbox(call));
                    }
                }
            }
            if (session + 1) % 1_000 == 0 {
                progress(format!("started {}/{total}", session + 1));
            }
        }
        last
    }

    /// When speaker `index` starts, from the start of the ramp.
    fn ramp_offset(&self, index: u64) -> Duration {
        Duration::from_secs_f64(index as f64 / self.plan.ramp_per_s)
    }

    /// What speaker `index` sends when: its clip, offset, talk schedule and
    /// phase, drawn from the seed and its index alone, so they are
    /// reproducible whatever the order the speakers start in, and the same
    /// whichever ingest carries them.
    fn speaker_pacer(&self, index: u64) -> Pacer {
        let mut rng =
            SmallRng::seed_from_u64(self.plan.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let clip = rng.random_range(0..self.audio.clips.len());
        let offset = rng.random_range(0..self.audio.clips[clip].packets.len());
        let schedule = TalkSchedule::new(self.plan.talk_ratio, SmallRng::from_rng(&mut rng));
        let phase = rng.random_range(0..u64::from(FRAME_SAMPLES));
        Pacer::new(schedule, self.plan.dtx, clip, offset, phase)
    }

    /// The media thread of WHIP session `session`.
    fn inbox_of(&self, session: usize) -> MediaInbox {
        self.inboxes[session % self.inboxes.len()].clone()
    }

    /// The call id and msid stream id (participant id) of speaker `index`.
    fn speaker_ids(&self, index: u64) -> (String, String) {
        let spc = self.plan.speakers_per_call;
        (
            self.plan.call_id(index / spc),
            format!("spk{}", index % spc),
        )
    }

    /// One session's signalling, as its own task.
    fn spawn_session(&self, session: usize, inbox: MediaInbox) {
        let index = session as u64;
        let (call_id, stream_id) = self.speaker_ids(index);
        let pacer = self.speaker_pacer(index);
        let server = self.server.clone();
        let notes = self.setup_tx.clone();
        let reconnect = self.plan.reconnect;
        tokio::spawn(async move {
            let ids = (call_id.as_str(), stream_id.as_str());
            let note = setup(session, &server, ids, pacer, reconnect, &inbox).await;
            // The coordinator outlives every task it waits for.
            let _ = notes.send(note);
        });
    }

    /// One native call's signalling, as its own task: the POST declaring a
    /// flow per speaker, then the hand-over to its QUIC connection.
    fn spawn_native_call(&self, call: u64, ramp_start: Instant, inbox: CallInbox) {
        let spc = self.plan.speakers_per_call;
        let call_id = self.plan.call_id(call);
        let mut flows = Vec::new();
        let mut speakers = Vec::new();
        for speaker in 0..spc {
            let index = call * spc + speaker;
            // Unique over the run, so unique on every connection whatever
            // calls it carries; never the token stream's 2^62 - 1.
            let flow_id = index + 1;
            flows.push(NativeFlow {
                participant_id: format!("spk{speaker}"),
                flow_id,
                codec: "opus",
                payload_type: OPUS_PAYLOAD_TYPE,
            });
            speakers.push(NativeSpeaker {
                session: index as usize,
                flow_id,
                pacer: self.speaker_pacer(index),
                rtp: RtpIdentity::new(self.plan.seed, index),
                start_at: ramp_start + self.ramp_offset(index),
            });
        }
        let server = self.server.clone();
        let notes = self.setup_tx.clone();
        tokio::spawn(async move {
            for note in setup_native(&server, &call_id, &flows, speakers, &inbox).await {
                // The coordinator outlives every task it waits for.
                let _ = notes.send(note);
            }
        });
    }

    /// Handles notes until `until`, or until every session is settled when
    /// `stop_when_settled`.
    async fn pump_until(&mut self, until: Instant, stop_when_settled: bool) {
        let deadline = tokio::time::Instant::from_std(until);
        loop {
            if stop_when_settled && self.sessions.iter().all(Session::settled) {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                Some(note) = self.setup_rx.recv() => self.on_setup(note),
                Some(report) = self.media_rx.recv() => self.on_media(report),
                Some(note) = self.reconnect_rx.recv() => self.on_reconnect(note),
                // Reap finished reconnect tasks (a panic has been printed).
                Some(_) = self.reconnect_tasks.join_next() => {}
            }
        }
    }

    fn on_setup(&mut self, note: SetupNote) {
        match note {
            SetupNote::Answered {
                session,
                whip_answer_ms,
                location,
                placement,
            } => {
                let s = &mut self.sessions[session];
                s.whip_answer_ms = Some(whip_answer_ms);
                s.location = Some(location);
                s.redirects += u64::from(placement.redirects);
                s.placement = Some(placement);
            }
            SetupNote::Failed {
                session,
                kind,
                location,
            } => {
                let s = &mut self.sessions[session];
                s.location = location;
                s.error.get_or_insert(kind);
            }
        }
    }

    fn on_media(&mut self, report: MediaReport) {
        match report {
            MediaReport::Connected { session, ms } => {
                self.sessions[session].connected_ms = Some(ms);
            }
            MediaReport::Failed { session, kind } => {
                self.sessions[session].error.get_or_insert(kind.to_owned());
            }
            MediaReport::Lost {
                session,
                kind,
                resume,
            } => self.on_lost(session, kind, resume),
            MediaReport::Reconnected { session, ms } => {
                self.reconnects.done += 1;
                self.reconnects.ms.push(ms);
                if self.reconnects.done == 1 {
                    progress(format!(
                        "session {session}: reconnected {ms:.0} ms after its loss was detected"
                    ));
                }
            }
        }
    }

    /// A connected session was lost (`--reconnect`): its node is taken for
    /// dead, so its session is neither placed nor DELETEd any more; a
    /// reconnect task starts, unless sending has stopped.
    fn on_lost(&mut self, session: usize, kind: &'static str, mut resume: Box<Resume>) {
        let s = &mut self.sessions[session];
        s.location = None;
        s.placement = None;
        let reconnector = self.reconnector.as_ref().map(Arc::clone);
        let (Some(ctx), None) = (reconnector, self.sending_stopped) else {
            let stopped = self.sending_stopped.unwrap_or_else(Instant::now);
            let paused = resume.skip_until(stopped, &self.audio);
            self.on_reconnect(ReconnectNote::Ended {
                session,
                outcome: Ended::Unfinished,
                paused,
                attempts: 0,
            });
            return;
        };
        if self.reconnects.done + self.reconnects.failed == 0 && self.reconnect_tasks.is_empty() {
            progress(format!(
                "session {session}: lost ({kind}); reconnecting (later losses are not printed)"
            ));
        }
        let (call_id, stream_id) = self.speaker_ids(session as u64);
        let lost = Lost {
            session,
            call_id,
            stream_id,
            inbox: self.inbox_of(session),
            resume,
        };
        self.reconnect_tasks
            .spawn(crate::reconnect::reconnect(ctx, lost));
    }

    fn on_reconnect(&mut self, note: ReconnectNote) {
        match note {
            ReconnectNote::Answered {
                session,
                location,
                placement,
            } => {
                let s = &mut self.sessions[session];
                s.location = Some(location);
                s.redirects += u64::from(placement.redirects);
                s.placement = Some(placement);
            }
            ReconnectNote::Discarded { session } => {
                let s = &mut self.sessions[session];
                s.location = None;
                s.placement = None;
            }
            ReconnectNote::AttemptFailed { session, kind } => {
                if self.reconnects.attempt_errors.is_empty() {
                    progress(format!(
                        "session {session}: reconnect attempt failed ({kind}); retrying \
                         (later failed attempts are only counted)"
                    ));
                }
                *self.reconnects.attempt_errors.entry(kind).or_insert(0) += 1;
            }
            ReconnectNote::Ended {
                session,
                outcome,
                paused,
                attempts,
            } => {
                self.reconnects.failed += 1;
                self.reconnects.paused += paused;
                let s = &mut self.sessions[session];
                // A session still connecting when sending stopped is
                // DELETEd, but the speaker is on no node.
                s.placement = None;
                s.error.get_or_insert_with(|| outcome.kind().to_owned());
                if self.reconnects.printed < PRINTED_RECONNECT_FAILURES {
                    self.reconnects.printed += 1;
                    progress(format!(
                        "session {session}: {} after {attempts} attempt(s)",
                        outcome.kind()
                    ));
                }
            }
        }
    }

    /// Once sending has stopped: tells the reconnect tasks, waits for them
    /// (each ends at once, a speaker still reconnecting counting as
    /// `reconnect_unfinished`), and reads their last notes.
    async fn finish_reconnects(&mut self) {
        if self.reconnector.is_none() {
            return;
        }
        let _ = self.stop_tx.send(self.sending_stopped);
        let limit = tokio::time::Instant::now() + crate::reconnect::STOP_LIMIT;
        loop {
            tokio::select! {
                joined = self.reconnect_tasks.join_next() => {
                    if joined.is_none() {
                        break;
                    }
                }
                Some(note) = self.reconnect_rx.recv() => self.on_reconnect(note),
                () = tokio::time::sleep_until(limit) => {
                    progress(format!(
                        "{} reconnect task(s) did not stop in time",
                        self.reconnect_tasks.len()
                    ));
                    self.reconnect_tasks.abort_all();
                    break;
                }
            }
        }
        while let Ok(note) = self.reconnect_rx.try_recv() {
            self.on_reconnect(note);
        }
        let r = &self.reconnects;
        progress(format!(
            "reconnects: {} sessions re-established, {} speakers failed",
            r.done, r.failed
        ));
    }

    /// The server's resident memory now.
    async fn server_rss(&self) -> anyhow::Result<u64> {
        match self.server_pid {
            Some(pid) => Ok(Pid::Other(pid).rss_bytes()?),
            None => {
                let text = self.server.metrics().await?;
                Exposition::parse(&text)?
                    .sum("process_resident_memory_bytes")
                    .map(|b| b as u64)
                    .context("no process_resident_memory_bytes in /metrics")
            }
        }
    }

    /// Scrapes the server and reads the generator's counters. The server
    /// reads its counters at some instant during the scrape, so ours are
    /// taken before and after it and averaged: packets in flight during a
    /// slow scrape would otherwise show up as loss (or negative loss).
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let total = |f: fn(&SendCounters) -> &AtomicU64| -> u64 {
            self.counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        let before = (Instant::now(), total(|c| &c.packets), total(|c| &c.late));
        let text = self.server.metrics().await;
        let after = (Instant::now(), total(|c| &c.packets), total(|c| &c.late));
        let at = before.0 + (after.0 - before.0) / 2;
        let packets_sent = before.1 + (after.1 - before.1) / 2;
        let late_sends = before.2 + (after.2 - before.2) / 2;
        let generator_cpu = Pid::Current.cpu_seconds().unwrap_or(0.0);
        let metrics = match text {
            Ok(text) => Some(Exposition::parse(&text).context("parsing /metrics")?),
            Err(e) => {
                progress(format!(
                    "cannot scrape /metrics: {:#}",
                    anyhow::Error::from(e)
                ));
                None
            }
        };
        let (server_cpu, server_rss) = match self.server_pid {
            Some(pid) => match (Pid::Other(pid).cpu_seconds(), Pid::Other(pid).rss_bytes()) {
                (Ok(cpu), Ok(rss)) => (Some(cpu), Some(rss)),
                // The server died or was replaced: report what is known.
                (Err(e), _) | (_, Err(e)) => {
                    progress(format!("cannot read /proc/{pid}: {e}"));
                    (None, None)
                }
            },
            None => (
                metrics
                    .as_ref()
                    .and_then(|m| m.sum("process_cpu_seconds_total")),
                metrics
                    .as_ref()
                    .and_then(|m| m.sum("process_resident_memory_bytes"))
                    .map(|b| b as u64),
            ),
        };
        Ok(Snapshot {
            at,
            metrics,
            server_cpu,
            server_rss,
            packets_sent,
            late_sends,
            generator_cpu,
        })
    }

    /// DELETEs every session the server created (with native ingest, the
    /// speakers of a call share one); returns the latencies of the
    /// successful ones and the number that failed.
    async fn delete_all(&self) -> (Vec<f64>, u64) {
        let mut seen = HashSet::new();
        let locations: Vec<Url> = self
            .sessions
            .iter()
            .filter_map(|s| s.location.clone())
            .filter(|l| seen.insert(l.clone()))
            .collect();
        let what = match self.plan.ingest {
            Ingest::Whip => "sessions",
            Ingest::Roq { .. } => "native ingests",
        };
        progress(format!("deleting {} {what}", locations.len()));
        let permits = Arc::new(Semaphore::new(DELETE_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for location in locations {
            let server = self.server.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                let started = Instant::now();
                server
                    .delete(&location)
                    .await
                    .ok()
                    .map(|()| started.elapsed().as_secs_f64() * 1e3)
            });
        }
        let mut latencies = Vec::new();
        let mut failed = 0;
        let limit = tokio::time::Instant::now() + DELETE_PHASE_LIMIT;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(limit, tasks.join_next()).await {
                Ok(Some(Ok(Some(ms)))) => latencies.push(ms),
                Ok(Some(_)) => failed += 1,
                Ok(None) => break,
                Err(_) => {
                    failed += tasks.len() as u64;
                    tasks.abort_all();
                    break;
                }
            }
        }
        (latencies, failed)
    }

    /// Builds the report from the sessions and the three snapshots.
    fn report(
        &self,
        baseline: &Snapshot,
        start: &Snapshot,
        end: &Snapshot,
        rss_max: Option<u64>,
    ) -> Report {
        let plan = &self.plan;
        let hold_s = end.at.duration_since(start.at).as_secs_f64();
        let delta = |name: &str| -> Option<f64> {
            Some(end.metrics.as_ref()?.sum(name)? - start.metrics.as_ref()?.sum(name)?)
        };
        let connected = self
            .sessions
            .iter()
            .filter(|s| s.connected_ms.is_some())
            .count() as u64;
        let mut errors_by_kind = BTreeMap::new();
        for kind in self.sessions.iter().filter_map(|s| s.error.as_deref()) {
            *errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
        }
        let mut setup: Vec<f64> = self
            .sessions
            .iter()
            .filter_map(|s| s.connected_ms)
            .collect();
        let mut answer: Vec<f64> = self
            .sessions
            .iter()
            .filter_map(|s| s.whip_answer_ms)
            .collect();
        let placement = placement(&self.sessions, plan.speakers_per_call);

        let packets_sent_hold = end.packets_sent - start.packets_sent;
        let received = delta("hearken_rtp_packets_received_total");
        let server_cpu = end
            .server_cpu
            .zip(start.server_cpu)
            .map(|(e, s)| round_ticks(e - s));
        let datagram_to_sink =
            end.metrics
                .as_ref()
                .zip(start.metrics.as_ref())
                .and_then(|(e, s)| {
                    let name = "hearken_media_datagram_to_sink_seconds";
                    Some(e.histogram(name)?.since(&s.histogram(name)?))
                });
        let per_speaker_kb = |bytes: Option<i64>| {
            bytes
                .filter(|_| connected > 0)
                .map(|b| b as f64 / 1024.0 / connected as f64)
        };
        let end_rss = end.server_rss.map(|b| b as i64);
        let generator_hold = round_ticks(end.generator_cpu - start.generator_cpu);
        let (quic_connections, roq_mode) = match plan.ingest {
            Ingest::Whip => (None, None),
            Ingest::Roq { connections, mode } => (Some(connections), Some(mode.name())),
        };
        Report {
            ingest: plan.ingest.name(),
            quic_connections,
            roq_mode,
            calls: plan.calls,
            speakers_per_call: plan.speakers_per_call,
            speakers_requested: plan.speakers(),
            speakers_connected: connected,
            duration_s: plan.duration.as_secs(),
            hold_s,
            ramp_per_s: plan.ramp_per_s,
            talk_ratio: plan.talk_ratio,
            dtx: plan.dtx,
            threads: plan.threads,
            server_probe: self.server_probe,
            server_pid: self.server_pid,
            packets_sent_hold,
            late_sends_hold: end.late_sends - start.late_sends,
            server_packets_received: received,
            server_packets_recorded: delta("hearken_recorder_frames_written_total"),
            server_packets_lost: delta("hearken_rtp_packets_lost_total"),
            server_frames_dropped: delta("hearken_frames_dropped_total"),
            loss: received
                .filter(|_| packets_sent_hold > 0)
                .map(|r| 1.0 - r / packets_sent_hold as f64),
            server_cpu_seconds: server_cpu,
            server_cpu_us_per_packet: server_cpu
                .zip(received)
                .filter(|&(_, r)| r > 0.0)
                .map(|(cpu, r)| cpu * 1e6 / r),
            speakers_per_core: server_cpu
                .filter(|&cpu| cpu > 0.0 && hold_s > 0.0)
                .map(|cpu| connected as f64 / (cpu / hold_s)),
            server_rss_bytes: Rss {
                baseline: baseline.server_rss,
                start: start.server_rss,
                end: end.server_rss,
                max: rss_max,
                growth: end_rss.zip(start.server_rss).map(|(e, s)| e - s as i64),
            },
            rss_kb_per_speaker: per_speaker_kb(end_rss),
            rss_kb_per_speaker_over_baseline: per_speaker_kb(
                end_rss.zip(baseline.server_rss).map(|(e, b)| e - b as i64),
            ),
            datagram_to_sink_ms: Quantiles {
                p50: datagram_to_sink
                    .as_ref()
                    .and_then(|h| h.quantile(0.5))
                    .map(|s| s * 1e3),
                p99: datagram_to_sink
                    .as_ref()
                    .and_then(|h| h.quantile(0.99))
                    .map(|s| s * 1e3),
            },
            setup_ms: Percentiles::of(&mut setup),
            whip_answer_ms: Percentiles::of(&mut answer),
            errors: errors_by_kind.values().sum(),
            errors_by_kind,
            redirects_followed: placement.redirects_followed,
            sessions_by_node: placement.sessions_by_node,
            calls_split_across_nodes: placement.calls_split_across_nodes,
            reconnect_silence_ms: plan.reconnect.map(|d| d.as_millis() as u64),
            reconnects: self.reconnects.done,
            reconnect_failures: self.reconnects.failed,
            reconnect_ms: Percentiles::of(&mut self.reconnects.ms.clone()),
            reconnect_attempt_errors_by_kind: self.reconnects.attempt_errors.clone(),
            generator_cpu_seconds_hold: generator_hold,
            generator_cpu_us_per_packet: (packets_sent_hold > 0)
                .then(|| generator_hold * 1e6 / packets_sent_hold as f64),
            ..Report::default()
        }
    }
}

/// Where the server placed the sessions.
#[derive(Debug, Default, PartialEq)]
struct Placed {
    redirects_followed: u64,
    sessions_by_node: BTreeMap<String, u64>,
    calls_split_across_nodes: u64,
}

/// The placement of the answered sessions: the redirects followed (by
/// every POST answered 201, reconnects' included), the speakers each node
/// holds at the end (a reconnected speaker counts on its new node, one
/// whose session was lost for good on none), and the calls whose final
/// sessions more than one node holds (sessions of a call are consecutive,
/// `speakers_per_call` of them).
fn placement(sessions: &[Session], speakers_per_call: u64) -> Placed {
    let mut placed = Placed::default();
    for call in sessions.chunks(speakers_per_call.max(1) as usize) {
        let mut nodes = HashSet::new();
        for s in call {
            placed.redirects_followed += s.redirects;
            let Some(p) = &s.placement else {
                continue;
            };
            *placed.sessions_by_node.entry(p.node.clone()).or_insert(0) += 1;
            nodes.insert(p.node.as_str());
        }
        if nodes.len() > 1 {
            placed.calls_split_across_nodes += 1;
        }
    }
    placed
}

/// Which server process to read `/proc` of, and the probe's name: the
/// `--server-pid` given, else the process listening on the URL's port. The
/// server's own `process_cpu_seconds_total` counts whole seconds (it is an
/// integer counter), far too coarse for a short hold, so `/metrics` is only
/// the fallback.
fn server_process(plan: &Plan) -> anyhow::Result<(Option<u32>, &'static str)> {
    if let Some(pid) = plan.server_pid {
        Pid::Other(pid)
            .cpu_seconds()
            .with_context(|| format!("--server-pid: cannot read /proc/{pid}/stat"))?;
        return Ok((Some(pid), "proc"));
    }
    let port = plan.url.port_or_known_default().unwrap_or(80);
    match crate::process::find_tcp_listener(port) {
        Some(pid) if Pid::Other(pid).cpu_seconds().is_ok() => {
            progress(format!(
                "server CPU and RSS from /proc/{pid} (listening on port {port})"
            ));
            Ok((Some(pid), "proc_auto"))
        }
        _ => {
            progress(format!(
                "server process on port {port} not found: server CPU from /metrics, \
                 in whole seconds (pass --server-pid for precision)"
            ));
            Ok((None, "metrics"))
        }
    }
}

/// One session's signalling: offer, POST, answer, hand-over. `ids` are
/// the call id and msid stream id; `reconnect` is `--reconnect`'s silence
/// limit.
async fn setup(
    session: usize,
    server: &Server,
    (call_id, stream_id): (&str, &str),
    pacer: Pacer,
    reconnect: Option<Duration>,
    inbox: &MediaInbox,
) -> SetupNote {
    let failed = |kind: &str, location: Option<Url>| SetupNote::Failed {
        session,
        kind: kind.to_owned(),
        location,
    };
    let consent_interval = reconnect.map(|_| CONSENT_INTERVAL);
    let (pending, offer) = match PendingSpeaker::new(stream_id, consent_interval) {
        Ok(p) => p,
        Err(e) => {
            progress(format!("session {session}: {e}"));
            return failed("client_setup", None);
        }
    };
    let post_started = Instant::now();
    let answer = match server.offer(call_id, offer).await {
        Ok(answer) => answer,
        Err(e) => return failed(&e.kind(), None),
    };
    let whip_answer_ms = post_started.elapsed().as_secs_f64() * 1e3;
    let location = answer.location;
    match pending.accept(&answer.sdp) {
        Ok(answered) => {
            let speaker = answered.first(session, post_started, pacer, reconnect);
            if inbox.add(speaker) {
                SetupNote::Answered {
                    session,
                    whip_answer_ms,
                    location,
                    placement: answer.placement,
                }
            } else {
                failed("media_thread_gone", Some(location))
            }
        }
        Err(e) => {
            progress(format!("session {session}: {e}"));
            failed("bad_answer", Some(location))
        }
    }
}

/// One native call's signalling: POST its flows, and hand the answered
/// call to its connection. Returns a note per speaker: they share the
/// call's answer (and its `DELETE`), or its failure.
async fn setup_native(
    server: &Server,
    call_id: &str,
    flows: &[NativeFlow],
    speakers: Vec<NativeSpeaker>,
    inbox: &CallInbox,
) -> Vec<SetupNote> {
    let sessions: Vec<usize> = speakers.iter().map(|s| s.session).collect();
    let failed = |kind: String, location: Option<Url>| {
        sessions
            .iter()
            .map(|&session| SetupNote::Failed {
                session,
                kind: kind.clone(),
                location: location.clone(),
            })
            .collect()
    };
    let post_started = Instant::now();
    let answer = match server.start_native(call_id, flows).await {
        Ok(answer) => answer,
        Err(e) => {
            if !matches!(e, crate::whip::HttpError::Status { .. }) {
                progress(format!("call {call_id}: {e}"));
            }
            return failed(e.kind(), None);
        }
    };
    let whip_answer_ms = post_started.elapsed().as_secs_f64() * 1e3;
    let location = answer.location.clone();
    let placement = answer.placement.clone();
    let call = AnsweredCall {
        answer,
        post_started,
        speakers,
    };
    if !inbox.add(call) {
        return failed("media_thread_gone".to_owned(), Some(location));
    }
    // The call's one POST: its redirects counted once, on its first speaker.
    sessions
        .iter()
        .enumerate()
        .map(|(i, &session)| SetupNote::Answered {
            session,
            whip_answer_ms,
            location: location.clone(),
            placement: Placement {
                node: placement.node.clone(),
                redirects: if i == 0 { placement.redirects } else { 0 },
            },
        })
        .collect()
}

/// A difference of CPU times, rounded to the clock tick it was counted in
/// (so `1.8`, not `1.7999999999999972`).
fn round_ticks(seconds: f64) -> f64 {
    (seconds * crate::process::CLOCK_TICKS_PER_S).round() / crate::process::CLOCK_TICKS_PER_S
}

/// A progress line on stderr (stdout is the report's).
pub(crate) fn progress(message: String) {
    eprintln!("hearken-loadtest: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(node: &str, redirects: u32) -> Session {
        Session {
            placement: Some(Placement {
                node: node.to_owned(),
                redirects,
            }),
            redirects: u64::from(redirects),
            ..Session::default()
        }
    }

    #[test]
    fn placement_counts_nodes_redirects_and_split_calls() {
        let (a, b) = ("http://127.0.0.1:8080", "http://127.0.0.1:8081");
        // Three calls of two speakers: whole on a, whole on b (reached by
        // redirects), split; and a speaker that failed.
        let sessions = vec![
            on(a, 0),
            on(a, 0),
            on(b, 1),
            on(b, 1),
            on(a, 0),
            on(b, 2),
            Session::default(),
        ];
        let placed = placement(&sessions, 2);
        assert_eq!(
            placed,
            Placed {
                redirects_followed: 4,
                sessions_by_node: BTreeMap::from([(a.to_owned(), 3), (b.to_owned(), 3)]),
                calls_split_across_nodes: 1,
            }
        );
        assert_eq!(placement(&[], 5), Placed::default());
    }

    #[test]
    fn placement_counts_the_final_session_of_each_speaker() {
        let b = "http://127.0.0.1:8081";
        // Two calls of two speakers, all first on a (port 8080). Node a died: call 0's
        // speakers reconnected to b (one through a redirect), call 1's one
        // speaker did and the other gave up (no session anywhere).
        let mut moved = on(b, 1);
        moved.redirects += 1; // its first POST's redirect, to a
        let sessions = vec![on(b, 0), moved, on(b, 0), Session::default()];
        let placed = placement(&sessions, 2);
        assert_eq!(
            placed,
            Placed {
                redirects_followed: 2,
                sessions_by_node: BTreeMap::from([(b.to_owned(), 3)]),
                calls_split_across_nodes: 0,
            }
        );
        // A call half reconnected to b while a speaker is on c is split.
        let c = "http://127.0.0.1:8082";
        let split = placement(&[on(b, 0), on(c, 0)], 2);
        assert_eq!(split.calls_split_across_nodes, 1);
    }
}
