//! A media worker: one OS thread, one UDP socket, and every str0m [`Rtc`] of
//! the calls placed on it.
//!
//! The run loop waits on the socket, a waker for commands, and the earliest
//! session timeout (mio). A datagram goes to the session whose `Rtc` accepts
//! it (cached by source address); the session is then drained until str0m
//! returns a timeout. Audio frames go through the call's [`Conference`] to the
//! recorder with `try_send`. Nothing here blocks on disk, locks, or `.await`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use rustc_hash::FxHashMap;
use str0m::change::SdpOffer;
use str0m::format::{Codec, CodecExtra, FormatParams};
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::{Span, debug, debug_span, info, info_span, trace, warn};

use crate::core::conference::{
    AudioFrame, CallSummary, Conference, ConferenceOutput, EndReason, ParticipantIdx,
    SessionEndReason, SessionKey,
};
use crate::core::consent::engine::{
    AuditEvent, ConsentEngine, ConsentMethod, ConsentOutput, ConsentState, Decision, EngineConfig,
    GateReason, ParticipantDetails, PromptKind,
};
use crate::core::consent::rules::Rules;
use crate::core::dtmf::{DtmfAssembler, DtmfConfig, DtmfKey};
use crate::core::ids::CallId;
use crate::core::offer::OfferSummary;
use crate::core::prompt::{Prompt, PromptSet};
use crate::core::voice::VoiceHint;
use crate::metrics::{DropReason, Metrics};
use crate::sinks::recorder::{RecorderControl, RecorderFrame, RecorderHandle};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Datagrams read per loop turn before commands and timers get a look in.
const READ_BUDGET: usize = 256;
/// Largest datagram we accept (above any sane MTU).
const MAX_DATAGRAM: usize = 2048;

/// Called once the recording of a call is final on disk.
pub type OnCallFinished = Box<dyn FnOnce(CallSummary) + Send>;

/// Requests from the control plane to a worker.
pub enum WorkerCommand {
    /// Answer a WHIP offer with a new session.
    CreateSession(Box<CreateSession>),
    /// End a session (WHIP `DELETE`). Replies whether it existed; if it was
    /// the call's last session, `on_call_finished` runs once the call's files
    /// are final.
    DeleteSession {
        /// The call.
        call_id: CallId,
        /// The session's secret (from its URL).
        secret: String,
        /// Whether the session existed.
        reply: tokio::sync::oneshot::Sender<bool>,
        /// Runs when the call's recording is final, if this ended the call.
        on_call_finished: Option<OnCallFinished>,
    },
    /// End a call now; `reply` gets `false` if the worker has no such call.
    EndCall {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: EndReason,
        /// Whether the call existed.
        reply: tokio::sync::oneshot::Sender<bool>,
        /// Runs when the call's recording is final.
        on_call_finished: Option<OnCallFinished>,
    },
    /// Details of a participant (location, capture setting) for consent.
    ParticipantDetails {
        /// The call.
        call_id: CallId,
        /// The participant.
        participant_id: String,
        /// The details.
        details: ParticipantDetails,
        /// Whether the worker has the call.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// A consent decision reported by the provider.
    ConsentSignal {
        /// The call.
        call_id: CallId,
        /// The participant.
        participant_id: String,
        /// Granted or declined.
        decision: Decision,
        /// How it was given.
        method: ConsentMethod,
        /// Whether the worker has the call.
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// The current summary of a call in progress.
    Snapshot {
        /// The call.
        call_id: CallId,
        /// The summary, if the worker has the call.
        reply: tokio::sync::oneshot::Sender<Option<CallSummary>>,
    },
    /// End every call, wait for the recorder to finish, and stop the thread.
    Shutdown,
}

/// A WHIP offer to answer.
pub struct CreateSession {
    /// The call to join.
    pub call_id: CallId,
    /// Unguessable id that names the session in its URL.
    pub secret: String,
    /// Short public id (logs, `call.json`, default participant ids).
    pub public_id: String,
    /// The offer, as received.
    pub offer_sdp: String,
    /// What the control plane read of the offer.
    pub summary: OfferSummary,
    /// The answer, or why there is none.
    pub reply: tokio::sync::oneshot::Sender<Result<String, CreateSessionError>>,
}

/// Why an offer got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateSessionError {
    /// str0m could not parse or negotiate the offer.
    #[error("the offer could not be negotiated: {0}")]
    BadOffer(String),
    /// Negotiation left no audio m-line that Hearken receives.
    #[error("no usable audio: no audio m-line with Opus could be received")]
    NoUsableAudio,
    /// The worker is stopping.
    #[error("the media worker is shutting down")]
    ShuttingDown,
}

/// Events from workers to the control plane (the session registry).
#[derive(Debug)]
pub enum WorkerEvent {
    /// A session ended for any reason.
    SessionEnded {
        /// Its secret.
        secret: String,
        /// Why.
        reason: SessionEndReason,
    },
}

/// The control plane's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    /// Worker number.
    pub index: usize,
    /// UDP port of its socket.
    pub port: u16,
    commands: Sender<WorkerCommand>,
    waker: Arc<Waker>,
    /// Sessions placed on this worker (for least-loaded placement).
    pub sessions: Arc<AtomicUsize>,
}

impl WorkerHandle {
    /// Queues a command and wakes the worker. Fails if the worker has stopped.
    pub fn send(&self, cmd: WorkerCommand) -> Result<(), WorkerGone> {
        self.commands.send(cmd).map_err(|_| WorkerGone)?;
        self.waker.wake().map_err(|_| WorkerGone)
    }
}

/// The worker thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("media worker stopped")]
pub struct WorkerGone;

/// Consent settings shared by every call of a worker.
pub struct ConsentSetup {
    /// The rules.
    pub rules: Arc<Rules>,
    /// Policy, grace period, decline policy.
    pub engine: EngineConfig,
    /// Prompts in the configured language.
    pub prompts: Arc<PromptSet>,
    /// DTMF key that grants consent.
    pub agree: DtmfKey,
    /// DTMF key that declines.
    pub decline: DtmfKey,
    /// Details given before the call reached this worker, by call.
    pub pending_details: PendingDetails,
}

/// Participant details that arrived before their call reached a worker.
pub type PendingDetails = Arc<std::sync::Mutex<HashMap<CallId, Vec<(String, ParticipantDetails)>>>>;

/// What a worker needs to start.
pub struct WorkerSettings {
    /// Worker number (names the thread).
    pub index: usize,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Address advertised in the ICE candidate (and used as the receive
    /// destination, which str0m checks for STUN).
    pub advertised: SocketAddr,
    /// Kernel receive buffer to ask for.
    pub recv_buffer_bytes: usize,
    /// Sessions that do not connect in this time are ended.
    pub connect_timeout: Duration,
    /// Connected sessions silent this long are ended as disconnected.
    pub inactivity_timeout: Duration,
    /// Consent.
    pub consent: Arc<ConsentSetup>,
}

/// Binds the socket and starts the worker thread.
pub fn spawn(
    settings: WorkerSettings,
    recorder: RecorderHandle,
    recorder_join: thread::JoinHandle<()>,
    events: tokio::sync::mpsc::UnboundedSender<WorkerEvent>,
    metrics: Metrics,
) -> io::Result<(WorkerHandle, thread::JoinHandle<()>)> {
    let std_socket = bind_udp(settings.bind, settings.recv_buffer_bytes)?;
    let port = std_socket.local_addr()?.port();
    let mut socket = UdpSocket::from_std(std_socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let sessions = Arc::new(AtomicUsize::new(0));
    let advertised = SocketAddr::new(settings.advertised.ip(), port);
    let worker = Worker {
        index: settings.index,
        socket,
        poll,
        advertised,
        commands: cmd_rx,
        events,
        recorder,
        recorder_join: Some(recorder_join),
        metrics,
        load: sessions.clone(),
        connect_timeout: settings.connect_timeout,
        inactivity_timeout: settings.inactivity_timeout,
        consent: settings.consent,
        census: [0; 5],
        pending: Pending::default(),
        playbacks: Vec::new(),
        call_timers: BinaryHeap::new(),
        next_sweep: Instant::now(),
        sessions: FxHashMap::default(),
        by_addr: FxHashMap::default(),
        calls: HashMap::new(),
        timers: BinaryHeap::new(),
        next_key: 1,
        shutting_down: false,
    };
    let join = thread::Builder::new()
        .name(format!("media-{}", settings.index))
        .spawn(move || worker.run())?;
    Ok((
        WorkerHandle {
            index: settings.index,
            port,
            commands: cmd_tx,
            waker,
            sessions,
        },
        join,
    ))
}

fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // Bursts from thousands of speakers must not overflow the default buffer;
    // the kernel may grant less than asked, which is fine.
    let _ = socket.set_recv_buffer_size(recv_buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct Session {
    call_id: CallId,
    secret: String,
    rtc: Rtc,
    offer: OfferSummary,
    speakers: FxHashMap<Mid, (ParticipantIdx, Span)>,
    dtmf: FxHashMap<Mid, DtmfAssembler>,
    remote_addrs: Vec<SocketAddr>,
    scheduled: Option<Instant>,
    /// When anything last arrived from the client.
    last_input: Instant,
    connected: bool,
    connect_deadline: Instant,
    ending: Option<SessionEndReason>,
    span: Span,
}

/// A prompt being written, 20 ms at a time, into one m-line of a session.
struct Playback {
    call_id: CallId,
    session: u64,
    mid: Mid,
    kind: PromptKind,
    to: Vec<String>,
    next: usize,
    next_at: Instant,
    rtp_time: u64,
    started: Instant,
}

/// Work the conference asked for that needs the whole worker.
#[derive(Default)]
struct Pending {
    prompts: Vec<(CallId, PromptKind, Vec<String>)>,
    call_timers: Vec<Reverse<(Instant, CallId)>>,
}

struct Call {
    conference: Conference,
    sessions: Vec<u64>,
    span: Span,
    /// Per participant: call time (s) of the last gate change and whether
    /// it opened, for the gate-time metric.
    gate_since: HashMap<String, (f64, bool)>,
}

struct Worker {
    index: usize,
    socket: UdpSocket,
    poll: Poll,
    advertised: SocketAddr,
    commands: Receiver<WorkerCommand>,
    events: tokio::sync::mpsc::UnboundedSender<WorkerEvent>,
    recorder: RecorderHandle,
    recorder_join: Option<thread::JoinHandle<()>>,
    metrics: Metrics,
    load: Arc<AtomicUsize>,
    connect_timeout: Duration,
    inactivity_timeout: Duration,
    consent: Arc<ConsentSetup>,
    census: [i64; 5],
    pending: Pending,
    playbacks: Vec<Playback>,
    call_timers: BinaryHeap<Reverse<(Instant, CallId)>>,
    next_sweep: Instant,
    // Looked up for every datagram, so hashed with Fx rather than SipHash.
    // Neither key is open to hash flooding: session keys are the worker's
    // own, and an address enters `by_addr` only with an authenticated STUN
    // check.
    sessions: FxHashMap<u64, Session>,
    by_addr: FxHashMap<SocketAddr, u64>,
    calls: HashMap<CallId, Call>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    next_key: u64,
    shutting_down: bool,
}

impl Worker {
    fn run(mut self) {
        info!(worker = self.index, addr = %self.advertised, "media worker started");
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut socket_backlog = false;
        let busy = self
            .metrics
            .worker_busy_seconds
            .with_label_values(&[&self.index.to_string()]);
        loop {
            let timeout = if socket_backlog {
                Some(Duration::ZERO)
            } else {
                let mut next = self
                    .timers
                    .peek()
                    .map_or(self.next_sweep, |Reverse((t, _))| (*t).min(self.next_sweep));
                if let Some(Reverse((t, _))) = self.call_timers.peek() {
                    next = next.min(*t);
                }
                for p in &self.playbacks {
                    next = next.min(p.next_at);
                }
                Some(next.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!(error = %e, "poll failed");
            }
            let woke = Instant::now();
            for ev in events.iter() {
                if ev.token() == SOCKET {
                    socket_backlog = true;
                }
            }

            while let Ok(cmd) = self.commands.try_recv() {
                self.handle_command(cmd);
                if self.shutting_down {
                    self.finish_shutdown();
                    return;
                }
            }
            if socket_backlog {
                socket_backlog = self.read_socket(&mut buf);
            }
            let now = Instant::now();
            self.handle_timers(now);
            self.handle_call_timers(now);
            self.play_due(now);
            if now >= self.next_sweep {
                self.sweep_inactive(now);
            }
            busy.inc_by(woke.elapsed().as_secs_f64());
        }
    }

    /// Ends connected sessions from which nothing has arrived for the
    /// inactivity timeout (the client vanished without a DELETE). Runs a few
    /// times a second; ICE's own detection takes much longer on an ICE-lite
    /// server.
    fn sweep_inactive(&mut self, now: Instant) {
        self.next_sweep = now + (self.inactivity_timeout / 4).min(Duration::from_millis(500));
        self.publish_consent_census();
        let silent: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.connected && now.duration_since(s.last_input) >= self.inactivity_timeout
            })
            .map(|(&k, _)| k)
            .collect();
        for key in silent {
            self.remove_session(key, SessionEndReason::Disconnected, now);
        }
        // DTMF events whose end packets were lost are reported on timeout.
        let Self {
            sessions,
            calls,
            consent,
            recorder,
            metrics,
            pending,
            ..
        } = self;
        for session in sessions.values_mut() {
            let Some(call) = calls.get_mut(&session.call_id) else {
                continue;
            };
            for (mid, assembler) in &mut session.dtmf {
                if let Some(digit) = assembler.handle_timeout(now)
                    && let Some((participant, span)) = session.speakers.get(mid)
                {
                    signal_digit(call, *participant, digit.key, consent, now, span);
                    pump(call, recorder, metrics, pending);
                }
            }
        }
        self.after_pump(now);
    }

    /// Reads up to [`READ_BUDGET`] datagrams; returns whether more may wait.
    fn read_socket(&mut self, buf: &mut [u8]) -> bool {
        for _ in 0..READ_BUDGET {
            match self.socket.recv_from(buf) {
                Ok((len, source)) => {
                    let now = Instant::now();
                    self.handle_datagram(&buf[..len], source, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // e.g. ICMP port unreachable surfacing on Linux: not fatal.
                    debug!(error = %e, "udp receive error");
                }
            }
        }
        true
    }

    fn handle_datagram(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.advertised, data) else {
            self.metrics.udp_unrouted_datagrams.inc();
            return;
        };
        let input = Input::Receive(now, receive);
        // Only STUN (first byte 0-3, RFC 7983) can introduce a new address:
        // a client's connectivity check reaches its session by ufrag and
        // caches the address. Anything else from an unknown address is
        // dropped without scanning every session (the scan is O(sessions),
        // about 126 us at 4,000 sessions: cheap junk must not buy that).
        let is_stun = data.first().is_some_and(|&b| b < 4);
        let key = match self.by_addr.get(&source) {
            Some(&k) if self.sessions.get(&k).is_some_and(|s| s.rtc.accepts(&input)) => Some(k),
            _ if !is_stun => None,
            _ => self
                .sessions
                .iter()
                .find(|(_, s)| s.rtc.accepts(&input))
                .map(|(&k, _)| k),
        };
        let Some(key) = key else {
            trace!(%source, "datagram for no session");
            self.metrics.udp_unrouted_datagrams.inc();
            return;
        };
        if let Some(session) = self.sessions.get_mut(&key) {
            if self.by_addr.insert(source, key).is_none() {
                session.remote_addrs.push(source);
            }
            session.last_input = now;
            if let Err(e) = session.rtc.handle_input(input) {
                debug!(parent: &session.span, error = %e, "rtc rejected input");
                session.ending.get_or_insert(SessionEndReason::Failed);
            }
        }
        self.drain(key, now);
    }

    fn handle_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(session) = self.sessions.get_mut(&key) else {
                continue;
            };
            if !session.connected && now >= session.connect_deadline {
                session
                    .ending
                    .get_or_insert(SessionEndReason::ConnectTimeout);
            } else if session.scheduled == Some(at) {
                session.scheduled = None;
                if let Err(e) = session.rtc.handle_input(Input::Timeout(now)) {
                    debug!(parent: &session.span, error = %e, "rtc timeout failed");
                    session.ending.get_or_insert(SessionEndReason::Failed);
                }
            } else {
                continue;
            }
            self.drain(key, now);
        }
    }

    /// Polls the session's `Rtc` until it returns a timeout, acting on every
    /// transmit and event; ends the session if something asked for that.
    fn drain(&mut self, key: u64, now: Instant) {
        let Self {
            sessions,
            calls,
            socket,
            timers,
            metrics,
            recorder,
            pending,
            consent,
            ..
        } = self;
        let Some(session) = sessions.get_mut(&key) else {
            return;
        };
        let Some(call) = calls.get_mut(&session.call_id) else {
            return;
        };
        loop {
            match session.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    // One live heap entry per session, its earliest deadline.
                    // A later deadline waits for that entry to fire (str0m
                    // takes an early timeout as a no-op and says when to come
                    // back), so a deadline that slides forward with every
                    // packet costs no heap traffic. Replaced entries are
                    // skipped when they surface.
                    if session.scheduled.is_none_or(|s| t < s) {
                        session.scheduled = Some(t);
                        timers.push(Reverse((t, key)));
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    if socket.send_to(&t.contents, t.destination).is_err() {
                        metrics.udp_send_errors.inc();
                    }
                }
                Ok(Output::Event(event)) => {
                    handle_event(key, session, call, event, metrics, consent, now);
                }
                Err(e) => {
                    debug!(parent: &session.span, error = %e, "rtc failed");
                    session.ending.get_or_insert(SessionEndReason::Failed);
                    break;
                }
            }
        }
        pump(call, recorder, metrics, pending);
        if let Some(reason) = session.ending {
            self.remove_session(key, reason, now);
        }
        self.after_pump(now);
    }

    /// Schedules the conference timers and starts the prompts that pumping
    /// the conferences asked for.
    fn after_pump(&mut self, now: Instant) {
        for t in self.pending.call_timers.drain(..) {
            self.call_timers.push(t);
        }
        let prompts = std::mem::take(&mut self.pending.prompts);
        for (call_id, kind, to) in prompts {
            self.start_prompt(&call_id, kind, to, now);
        }
    }

    /// Starts playing `kind` to each of `to`: into every sendrecv m-line that
    /// carries one of them. Those without such an m-line cannot hear the bot;
    /// the prompt counts as shown by the provider and the audit says so.
    fn start_prompt(&mut self, call_id: &CallId, kind: PromptKind, to: Vec<String>, now: Instant) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let mut audible_to = Vec::new();
        for &key in &call.sessions {
            let Some(session) = self.sessions.get_mut(&key) else {
                continue;
            };
            for (mid, (participant, _)) in &session.speakers {
                let Some(id) = call.conference.participant_id(*participant) else {
                    continue;
                };
                if !to.iter().any(|t| t == id) {
                    continue;
                }
                let sends = session
                    .rtc
                    .media(*mid)
                    .is_some_and(|m| m.direction().is_sending());
                if !sends || !session.connected {
                    continue;
                }
                audible_to.push(id.to_owned());
                self.playbacks.push(Playback {
                    call_id: call_id.clone(),
                    session: key,
                    mid: *mid,
                    kind,
                    to: vec![id.to_owned()],
                    next: 0,
                    next_at: now,
                    rtp_time: 0,
                    started: now,
                });
            }
        }
        let silent: Vec<String> = to
            .into_iter()
            .filter(|id| !audible_to.contains(id))
            .collect();
        self.metrics
            .prompts_played
            .with_label_values(&[kind_label(kind)])
            .inc();
        if !silent.is_empty() {
            // Nothing to play for them: the provider shows its own notice, so
            // it counts as given now (and the audit says it was not audible).
            call.conference
                .handle_prompt_played(kind, &silent, false, now, now);
            pump(call, &self.recorder, &self.metrics, &mut self.pending);
        }
    }

    /// Sets `hearken_consent_participants` to this worker's share. Each
    /// worker owns a disjoint set of calls and reports its own counts as a
    /// delta against what it reported last, so workers add up.
    fn publish_consent_census(&mut self) {
        let mut counts = [0i64; 5];
        for call in self.calls.values() {
            for state in call.conference.consent_states() {
                let i = match state {
                    ConsentState::Joined => 0,
                    ConsentState::Notified => 1,
                    ConsentState::Consented(_) => 2,
                    ConsentState::Declined => 3,
                    ConsentState::Left => 4,
                };
                counts[i] += 1;
            }
        }
        for (i, label) in crate::metrics::CONSENT_STATES.iter().enumerate() {
            let delta = counts[i] - self.census[i];
            if delta != 0 {
                self.metrics
                    .consent_participants
                    .with_label_values(&[label])
                    .add(delta);
            }
        }
        self.census = counts;
    }

    /// Writes the due 20 ms packets of every prompt being played.
    fn play_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.playbacks.len() {
            let pb = &mut self.playbacks[i];
            if pb.next_at > now {
                i += 1;
                continue;
            }
            let prompt = prompt_of(&self.consent.prompts, pb.kind);
            let session_alive = self.sessions.contains_key(&pb.session);
            let mut finished = !session_alive || pb.next >= prompt.packets.len();
            if !finished && let Some(session) = self.sessions.get_mut(&pb.session) {
                let packet = &prompt.packets[pb.next];
                let written = session.rtc.writer(pb.mid).and_then(|w| {
                    let pt = w
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt())?;
                    w.write(
                        pt,
                        now,
                        MediaTime::new(pb.rtp_time, Frequency::FORTY_EIGHT_KHZ),
                        packet.data.clone(),
                    )
                    .ok()
                });
                if written.is_none() {
                    finished = true;
                }
                pb.rtp_time += u64::from(packet.samples);
                pb.next += 1;
                pb.next_at += Duration::from_micros(u64::from(packet.samples) * 1_000_000 / 48_000);
            }
            if finished {
                let pb = self.playbacks.swap_remove(i);
                if let Some(call) = self.calls.get_mut(&pb.call_id) {
                    call.conference
                        .handle_prompt_played(pb.kind, &pb.to, true, pb.started, now);
                    pump(call, &self.recorder, &self.metrics, &mut self.pending);
                }
                continue;
            }
            let key = self.playbacks[i].session;
            self.drain(key, now);
            i += 1;
        }
        self.after_pump(now);
    }

    fn handle_call_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.call_timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, call_id))) = self.call_timers.pop() else {
                break;
            };
            if let Some(call) = self.calls.get_mut(&call_id)
                && call.conference.poll_timeout().is_some_and(|t| t <= now)
            {
                call.conference.handle_timeout(now);
                pump(call, &self.recorder, &self.metrics, &mut self.pending);
            }
        }
        self.after_pump(now);
    }

    fn handle_command(&mut self, cmd: WorkerCommand) {
        let now = Instant::now();
        match cmd {
            WorkerCommand::CreateSession(create) => self.create_session(*create, now),
            WorkerCommand::DeleteSession {
                call_id,
                secret,
                reply,
                on_call_finished,
            } => {
                let key = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.secret == secret && s.call_id == call_id)
                    .map(|(&k, _)| k);
                let _ = reply.send(key.is_some());
                if let Some(key) = key {
                    let last = self
                        .calls
                        .get(&call_id)
                        .is_some_and(|c| c.sessions.len() == 1);
                    if last {
                        self.end_call(&call_id, EndReason::LastSessionLeft, on_call_finished);
                        return;
                    }
                    self.remove_session(key, SessionEndReason::Deleted, now);
                }
            }
            WorkerCommand::EndCall {
                call_id,
                reason,
                reply,
                on_call_finished,
            } => {
                let exists = self.calls.contains_key(&call_id);
                let _ = reply.send(exists);
                if exists {
                    self.end_call(&call_id, reason, on_call_finished);
                }
            }
            WorkerCommand::ParticipantDetails {
                call_id,
                participant_id,
                details,
                reply,
            } => {
                let found = self.with_conference(&call_id, now, |c| {
                    c.handle_details(&participant_id, details, now)
                });
                let _ = reply.send(found);
            }
            WorkerCommand::ConsentSignal {
                call_id,
                participant_id,
                decision,
                method,
                reply,
            } => {
                let found = self.with_conference(&call_id, now, |c| {
                    c.handle_signal(&participant_id, decision, method, now)
                });
                let _ = reply.send(found);
            }
            WorkerCommand::Snapshot { call_id, reply } => {
                let _ = reply.send(self.calls.get(&call_id).map(|c| c.conference.summary()));
            }
            WorkerCommand::Shutdown => {
                self.shutting_down = true;
            }
        }
    }

    /// Runs `f` on a call's conference and acts on what it asked for;
    /// returns whether the worker has the call.
    fn with_conference(
        &mut self,
        call_id: &CallId,
        now: Instant,
        f: impl FnOnce(&mut Conference),
    ) -> bool {
        let Some(call) = self.calls.get_mut(call_id) else {
            return false;
        };
        f(&mut call.conference);
        pump(call, &self.recorder, &self.metrics, &mut self.pending);
        self.after_pump(now);
        true
    }

    fn create_session(&mut self, create: CreateSession, now: Instant) {
        let CreateSession {
            call_id,
            secret,
            public_id,
            offer_sdp,
            summary,
            reply,
        } = create;
        let mut rtc = new_rtc(now);
        let Ok(candidate) = Candidate::host(self.advertised, "udp") else {
            let _ = reply.send(Err(CreateSessionError::BadOffer(
                "no usable local candidate".into(),
            )));
            return;
        };
        rtc.add_local_candidate(candidate);
        let offer = match SdpOffer::from_sdp_string(&offer_sdp) {
            Ok(o) => o,
            Err(e) => {
                let _ = reply.send(Err(CreateSessionError::BadOffer(e.to_string())));
                return;
            }
        };
        let answer = match rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                let _ = reply.send(Err(CreateSessionError::BadOffer(e.to_string())));
                return;
            }
        };
        let receives_audio = summary.speaker_media().any(|m| {
            rtc.media(Mid::from(m.mid.as_str())).is_some_and(|media| {
                media.kind() == MediaKind::Audio
                    && !media.disabled()
                    && media.direction().is_receiving()
            })
        });
        if !receives_audio {
            let _ = reply.send(Err(CreateSessionError::NoUsableAudio));
            return;
        }

        let key = self.next_key;
        self.next_key += 1;
        let consent = &self.consent;
        let call = self.calls.entry(call_id.clone()).or_insert_with(|| {
            self.metrics.calls_active.inc();
            let engine = ConsentEngine::new(consent.rules.clone(), consent.engine.clone());
            let mut conference = Conference::new(call_id.clone(), engine);
            let early = consent
                .pending_details
                .lock()
                .map(|mut m| m.remove(&call_id))
                .unwrap_or_default();
            for (id, details) in early.unwrap_or_default() {
                conference.handle_details(&id, details, now);
            }
            Call {
                conference,
                sessions: Vec::new(),
                span: info_span!("call", id = %call_id),
                gate_since: HashMap::new(),
            }
        });
        call.conference
            .handle_session_added(SessionKey(key), &public_id);
        call.sessions.push(key);
        let span = info_span!(parent: &call.span, "session", id = %public_id);
        debug!(parent: &span, "session created");
        self.sessions.insert(
            key,
            Session {
                call_id,
                secret,
                rtc,
                offer: summary,
                speakers: FxHashMap::default(),
                dtmf: FxHashMap::default(),
                remote_addrs: Vec::new(),
                scheduled: None,
                last_input: now,
                connected: false,
                connect_deadline: now + self.connect_timeout,
                ending: None,
                span,
            },
        );
        self.timers.push(Reverse((now + self.connect_timeout, key)));
        self.load.fetch_add(1, Ordering::Relaxed);
        self.metrics.sessions_active.inc();
        let _ = reply.send(Ok(answer.to_sdp_string()));
        self.drain(key, now);
    }

    fn remove_session(&mut self, key: u64, reason: SessionEndReason, now: Instant) {
        let Some(mut session) = self.sessions.remove(&key) else {
            return;
        };
        // Say goodbye (RTCP BYE, DTLS close_notify) when the peer is still there.
        if session.connected && session.rtc.close().is_ok() {
            while let Ok(out) = session.rtc.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
        for addr in &session.remote_addrs {
            if self.by_addr.get(addr) == Some(&key) {
                self.by_addr.remove(addr);
            }
        }
        self.load.fetch_sub(1, Ordering::Relaxed);
        self.metrics.sessions_active.dec();
        self.metrics
            .sessions_ended
            .with_label_values(&[reason.as_label()])
            .inc();
        self.metrics
            .speakers_active
            .sub(session.speakers.len() as i64);
        info!(parent: &session.span, reason = reason.as_label(), "session ended");
        let _ = self.events.send(WorkerEvent::SessionEnded {
            secret: session.secret.clone(),
            reason,
        });
        let Some(call) = self.calls.get_mut(&session.call_id) else {
            return;
        };
        call.sessions.retain(|&k| k != key);
        // A client that vanished left when we last heard from it, not when
        // we noticed; its track is not padded with time it was gone.
        let left_at = match reason {
            SessionEndReason::Disconnected | SessionEndReason::Failed => session.last_input,
            _ => now,
        };
        let left = call
            .conference
            .handle_session_removed(SessionKey(key), left_at);
        pump(call, &self.recorder, &self.metrics, &mut self.pending);
        if left == 0 && reason != SessionEndReason::CallEnded {
            self.end_call(&session.call_id, EndReason::LastSessionLeft, None);
        }
    }

    fn end_call(&mut self, call_id: &CallId, reason: EndReason, done: Option<OnCallFinished>) {
        let now = Instant::now();
        let keys = self
            .calls
            .get(call_id)
            .map(|c| c.sessions.clone())
            .unwrap_or_default();
        for key in keys {
            self.remove_session(key, SessionEndReason::CallEnded, now);
        }
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        call.conference.handle_end(Utc::now(), reason);
        pump(&mut call, &self.recorder, &self.metrics, &mut self.pending);
        let summary = call.conference.summary();
        self.metrics.calls_active.dec();
        let reason_label = match reason {
            EndReason::LastSessionLeft => "last_session_left",
            EndReason::Api => "api",
            EndReason::Shutdown => "shutdown",
        };
        self.metrics
            .calls_ended
            .with_label_values(&[reason_label])
            .inc();
        info!(parent: &call.span, reason = reason_label, "call ended");
        if call.conference.has_started() {
            let done = done.map(|f| {
                let (tx, rx) = tokio::sync::oneshot::channel::<CallSummary>();
                // The recorder answers on a oneshot; hand the result to the
                // caller's callback without blocking this thread.
                thread::spawn(move || {
                    if let Ok(s) = rx.blocking_recv() {
                        f(s);
                    }
                });
                tx
            });
            self.recorder
                .send_control(RecorderControl::CallEnded { summary, done });
        } else if let Some(f) = done {
            f(summary);
        }
    }

    fn finish_shutdown(&mut self) {
        let ids: Vec<CallId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, EndReason::Shutdown, None);
        }
        self.publish_consent_census();
        // The recorder handles control messages in order: every CallEnded
        // above is on disk once it has processed Shutdown.
        self.recorder.send_control(RecorderControl::Shutdown);
        if let Some(join) = self.recorder_join.take() {
            let _ = join.join();
        }
        while let Ok(cmd) = self.commands.try_recv() {
            if let WorkerCommand::CreateSession(c) = cmd {
                let _ = c.reply.send(Err(CreateSessionError::ShuttingDown));
            }
        }
        info!(worker = self.index, "media worker stopped");
    }
}

/// A new `Rtc` for one WHIP session: ICE-lite (the server never trickles),
/// Opus only, telephone-event when offered.
///
/// Only two RTP header extensions are answered: the audio level (it says
/// when a speaker talks) and the MID (BUNDLE demultiplexing). Hearken only
/// receives and sends no bandwidth-adaptive media, so transport-wide
/// congestion control would be pure cost: with it negotiated, str0m sends a
/// TWCC feedback packet every 50 ms per session.
fn new_rtc(now: Instant) -> Rtc {
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .clear_codecs()
        .enable_opus(true, false);
    let codecs = config.codec_config();
    // telephone-event at the Opus clock (Chrome offers it as PT 110) and at
    // 8 kHz (what SIP gateways send, usually PT 101 or 126).
    codecs.add_config(
        Pt::new_with_value(110),
        None,
        Codec::Tele,
        Frequency::FORTY_EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    codecs.add_config(
        Pt::new_with_value(126),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    config.build(now)
}

fn handle_event(
    key: u64,
    session: &mut Session,
    call: &mut Call,
    event: Event,
    metrics: &Metrics,
    consent: &ConsentSetup,
    now: Instant,
) {
    match event {
        Event::Connected => {
            session.connected = true;
            info!(parent: &session.span, "session connected");
            call.conference
                .handle_session_connected(SessionKey(key), now, Utc::now());
        }
        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
            session.ending.get_or_insert(SessionEndReason::Disconnected);
        }
        Event::MediaAdded(added) => {
            if added.kind != MediaKind::Audio || !added.direction.is_receiving() {
                return;
            }
            let mid_text = added.mid.to_string();
            let Some(offered) = session.offer.by_mid(&mid_text) else {
                return;
            };
            if !offered.offers_opus {
                return;
            }
            let stream_id = offered.msid_stream_id.clone();
            let participant = call.conference.handle_speaker_added(
                SessionKey(key),
                &mid_text,
                stream_id.as_deref(),
                now,
            );
            let span = debug_span!(parent: &session.span, "participant", mid = %mid_text);
            debug!(parent: &span, participant = participant.0, "speaker added");
            if session
                .speakers
                .insert(added.mid, (participant, span))
                .is_none()
            {
                metrics.speakers_active.inc();
            }
        }
        Event::MediaData(data) => {
            let Some((participant, span)) = session.speakers.get(&data.mid) else {
                return;
            };
            if let CodecExtra::Tele(ev) = &data.codec_extra {
                metrics.dtmf_packets_received.inc();
                trace!(parent: span, event = ev.event, end = ev.end, "telephone-event");
                let digit = session
                    .dtmf
                    .entry(data.mid)
                    .or_insert_with(|| DtmfAssembler::new(DtmfConfig::default()))
                    .handle_packet(data.time.numer(), ev.event, ev.end, ev.duration, now);
                if let Some(digit) = digit {
                    signal_digit(call, *participant, digit.key, consent, now, span);
                }
                return;
            }
            if data.params.spec().codec != Codec::Opus {
                metrics.drop_frame(DropReason::NotOpus);
                return;
            }
            let frame = AudioFrame {
                rtp_time: data.time.numer(),
                seq_first: **data.seq_range.start(),
                seq_last: **data.seq_range.end(),
                arrival: data.network_time,
                payload: data.data,
                voice: VoiceHint::from_extension(
                    data.ext_vals.audio_level,
                    data.ext_vals.voice_activity,
                ),
            };
            let bytes = frame.payload.len() as u64;
            let stats = call.conference.handle_audio(*participant, frame);
            metrics.rtp_packets_received.inc_by(stats.packets);
            metrics.rtp_bytes_received.inc_by(bytes);
            metrics.rtp_packets_lost.inc_by(stats.lost);
            metrics.timeline_reanchors.inc_by(stats.reanchored);
            if let Some(reason) = stats.withheld {
                metrics
                    .frames_withheld
                    .with_label_values(&[gate_reason_label(reason)])
                    .inc();
            }
            trace!(parent: span, bytes, "frame");
        }
        _ => {}
    }
}

/// Turns a pressed key into a consent signal when it is one of the
/// configured digits.
fn signal_digit(
    call: &mut Call,
    participant: ParticipantIdx,
    key: DtmfKey,
    consent: &ConsentSetup,
    now: Instant,
    span: &Span,
) {
    let decision = if key == consent.agree {
        Decision::Granted
    } else if key == consent.decline {
        Decision::Declined
    } else {
        debug!(parent: span, key = %key.as_char(), "dtmf key is not a consent digit");
        return;
    };
    let Some(id) = call
        .conference
        .participant_id(participant)
        .map(str::to_owned)
    else {
        return;
    };
    debug!(parent: span, key = %key.as_char(), "dtmf consent signal");
    call.conference
        .handle_signal(&id, decision, ConsentMethod::Dtmf, now);
}

fn prompt_of(prompts: &PromptSet, kind: PromptKind) -> &Prompt {
    match kind {
        PromptKind::Notice => &prompts.notice,
        PromptKind::ConsentRequest => &prompts.consent_request,
        PromptKind::Thanks => &prompts.thanks,
        PromptKind::Stopped => &prompts.stopped,
    }
}

fn gate_reason_label(reason: GateReason) -> &'static str {
    match reason {
        GateReason::Consented => "consented",
        GateReason::AwaitingOwnConsent => "awaiting_own_consent",
        GateReason::AwaitingOthers => "awaiting_others",
        GateReason::NeverCaptureParticipantPresent => "never_capture_participant_present",
        GateReason::Declined => "declined",
        GateReason::CallStopped => "call_stopped",
    }
}

fn kind_label(kind: PromptKind) -> &'static str {
    match kind {
        PromptKind::Notice => "notice",
        PromptKind::ConsentRequest => "consent_request",
        PromptKind::Thanks => "thanks",
        PromptKind::Stopped => "stopped",
    }
}

/// Hands the conference's outputs to the recorder: frames with `try_send`
/// (dropped and counted when the queue is full), control messages unbounded.
fn pump(call: &mut Call, recorder: &RecorderHandle, metrics: &Metrics, work: &mut Pending) {
    let call_id = call.conference.call_id().clone();
    if let Some(t) = call.conference.poll_timeout() {
        work.call_timers.push(Reverse((t, call_id.clone())));
    }
    while let Some(out) = call.conference.poll_output() {
        match out {
            ConferenceOutput::Consent(ConsentOutput::Audit(event)) => {
                let mut line = serde_json::to_value(&event).unwrap_or_default();
                let t = line
                    .get("t")
                    .or_else(|| line.get("start"))
                    .and_then(|v| v.as_f64());
                if let Some(obj) = line.as_object_mut() {
                    obj.insert("call_id".into(), call_id.as_str().into());
                    let at = t
                        .and_then(|t| call.conference.utc_at((t * 48_000.0) as u64))
                        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                    obj.insert("at".into(), at.into());
                }
                if let Some(name) = line.get("event").and_then(|v| v.as_str()) {
                    metrics.consent_events.with_label_values(&[name]).inc();
                }
                match &event {
                    AuditEvent::StateChanged { to, .. } => {
                        let state = match to {
                            ConsentState::Joined => "joined",
                            ConsentState::Notified => "notified",
                            ConsentState::Consented(_) => "consented",
                            ConsentState::Declined => "declined",
                            ConsentState::Left => "left",
                        };
                        metrics
                            .consent_transitions
                            .with_label_values(&[state])
                            .inc();
                    }
                    AuditEvent::GateChanged {
                        open,
                        participant,
                        t,
                        ..
                    } => {
                        let direction = if *open { "open" } else { "closed" };
                        metrics
                            .consent_gate_changes
                            .with_label_values(&[direction])
                            .inc();
                        if let Some((since, was_open)) =
                            call.gate_since.insert(participant.clone(), (*t, *open))
                        {
                            let label = if was_open { "open" } else { "closed" };
                            metrics
                                .consent_gate_seconds
                                .with_label_values(&[label])
                                .inc_by((t - since).max(0.0));
                        }
                    }
                    _ => {}
                }
                debug!(parent: &call.span, event = %line, "consent");
                recorder.send_control(RecorderControl::Audit {
                    call_id: call_id.clone(),
                    line: line.to_string(),
                });
            }
            ConferenceOutput::Consent(ConsentOutput::DiscardAll) => {
                recorder.send_control(RecorderControl::DiscardAll {
                    call_id: call_id.clone(),
                });
            }
            ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) => {
                work.prompts.push((call_id.clone(), prompt, to));
            }
            ConferenceOutput::Frame(frame) => {
                metrics
                    .datagram_to_sink_seconds
                    .observe(frame.arrival.elapsed().as_secs_f64());
                let msg = RecorderFrame {
                    call_id: call_id.clone(),
                    frame,
                };
                if recorder.try_send_frame(msg).is_err() {
                    metrics.drop_frame(DropReason::RecorderQueueFull);
                }
            }
            ConferenceOutput::Started { .. } => {
                info!(parent: &call.span, "call started");
                recorder.send_control(RecorderControl::CallStarted {
                    call_id: call_id.clone(),
                    summary: call.conference.summary(),
                });
            }
            ConferenceOutput::ParticipantLeft {
                participant_id,
                file_stem,
                position,
                ..
            } => {
                recorder.send_control(RecorderControl::ParticipantLeft {
                    call_id: call_id.clone(),
                    participant_id,
                    file_stem,
                    position,
                });
            }
        }
    }
}
