//! The media engine: every session and call of one media worker, as a
//! sans-IO state machine.
//!
//! This is the quinn-proto half of the quinn-proto/quinn split. The engine
//! owns the str0m [`Rtc`]s, the routing of datagrams to them, one timer
//! heap, prompt playback and the life of each call; it reads no clock and
//! touches no socket or file. Input goes in with
//! [`Engine::handle_datagram`], [`Engine::handle_command`] and
//! [`Engine::handle_timeout`], each given the current time; what the engine
//! wants done comes out of [`Engine::poll_output`] (datagrams to send,
//! messages for the sinks, events for the control plane) and
//! [`Engine::poll_timeout`] (when to call `handle_timeout` next). The media
//! worker (`worker.rs`) is a short loop around a socket and a clock that
//! does exactly that; tests and benches drive the same engine in simulated
//! time.
//!
//! # Routing
//!
//! A datagram from a known address goes to the session that owns it (an
//! address enters the cache only after that session's `Rtc` accepted a STUN
//! request from it, i.e. after an authenticated connectivity check). A STUN
//! request from a new address names our ICE username fragment first in its
//! USERNAME, so it is routed by an index from ufrag to session: one lookup
//! and one MESSAGE-INTEGRITY check, whatever the number of sessions.
//! Anything else from an unknown address is dropped and counted.
//!
//! # Panics
//!
//! Handling that belongs to one call runs inside `catch_unwind`. A panic
//! there (a bug) ends that call: its sessions are dropped, its files are
//! finished as far as the sinks can, and the rest of the worker goes on.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hearken_core::conference::{
    AudioFrame, CallSummary, Conference, ConferenceOutput, EndReason, FailureCause, FrameStats,
    Ingest, PlayedPacket, SessionEndReason, SessionKey, SpeakerMedia,
};
use hearken_core::consent::engine::{
    AuditEvent, ConsentEngine, ConsentOutput, Delivery, PromptKind,
};
use hearken_core::dtmf::{DtmfAssembler, DtmfConfig};
use hearken_core::ids::CallId;
use hearken_core::voice::VoiceHint;
use rustc_hash::FxHashMap;
use str0m::format::{Codec, CodecExtra};
use str0m::ice::StunMessage;
use str0m::media::{MediaKind, TelephoneEvent};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Event, IceConnectionState, Input, Output as RtcOutput};
use tracing::{Span, debug, debug_span, error, info, info_span, trace, warn};

use super::command::{
    CallInput, Command, CreateSession, CreateSessionError, EngineEvent, InputKind, Reply, Resume,
};
use super::command::{CreateNative, CreateSip, NativeFlow, SipMedia};
use super::native::{NativeMedia, NativeSession};
use super::plain_rtp::{PlainPacket, PlainSpeaker};
use super::playback::{Playback, Progress};
use super::session::{Due, RECEIVE_DIRECTLY_GIVE_UP, Session, Speaker};
use super::sip::{RtpSender, SipSession};
use super::srtp_in::SrtpError;
use super::stun_filter::UfragPrefix;
use super::verbal::{Verbal, VerbalTap};
use crate::metrics::{DropReason, GateState, IngestError, Label, MediaMetrics};
use crate::setup::consent::ConsentSetup;
use crate::sinks::{CallDone, SinkMsg};

/// What an engine needs to know about its place in the world.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The address clients send to: the host candidate of every answer, and
    /// the destination str0m checks STUN requests against.
    pub local_addr: SocketAddr,
    /// Sessions that do not connect (ICE and DTLS) in this time are ended.
    pub connect_timeout: Duration,
    /// Connected sessions from which nothing arrives this long are ended.
    pub inactivity_timeout: Duration,
    /// Plain-RTP sessions (native ingest, SIP dialogs) from which no packet
    /// arrives this long are ended (the platform or caller vanished without
    /// `DELETE` or `BYE`).
    pub rtp_idle_timeout: Duration,
    /// Every local ICE ufrag starts with this (what the worker's socket
    /// filter lets through); `None`: str0m's own random ufrags.
    pub ufrag_prefix: Option<UfragPrefix>,
}

/// Something the engine wants done.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Hand a message to the sinks (the recorder first), in order.
    Sink(SinkMsg),
    /// Tell the control plane.
    Event(EngineEvent),
}

/// Where [`Engine::route`] sends a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The session.
    pub session: SessionKey,
    /// The datagram came from an address the session had not used yet (an
    /// authenticated STUN request, routed by ufrag).
    pub new_address: bool,
}

/// How often the consent census (participants by state) is published.
const CENSUS_INTERVAL: Duration = Duration::from_millis(500);

/// One call: its conference and the sessions that carry it.
struct Call {
    conference: Conference,
    sessions: Vec<SessionKey>,
    span: Span,
    /// The time of this call's live entry in the timer heap.
    scheduled: Option<Instant>,
    /// Per participant: call time (s) of the last gate change and whether
    /// it opened, for the gate-time metric.
    gate_since: HashMap<String, (f64, bool)>,
    /// Test hook: panic while handling the next frame.
    #[cfg(any(test, feature = "fault-injection"))]
    panic_on_next_frame: bool,
}

/// What a timer heap entry wakes.
#[derive(Debug, Clone)]
enum Timer {
    Session(SessionKey),
    Call(CallId),
}

/// A timer heap entry, ordered by time (earliest first), then by insertion.
#[derive(Debug)]
struct TimerEntry {
    at: Instant,
    seq: u64,
    timer: Timer,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // BinaryHeap is a max-heap: reverse so the earliest comes first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One heap of deadlines. Each session and call keeps at most one live
/// entry (its `scheduled` time): a deadline that moves later, as str0m's
/// does with every packet, costs no heap traffic; an entry whose time no
/// longer matches its owner's `scheduled` is stale and skipped.
#[derive(Debug, Default)]
struct Timers {
    heap: BinaryHeap<TimerEntry>,
    seq: u64,
}

impl Timers {
    fn push(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(TimerEntry {
            at,
            seq: self.seq,
            timer,
        });
    }

    /// Schedules `deadline` for an owner whose live entry is `scheduled`,
    /// unless that entry comes first anyway.
    fn schedule(&mut self, scheduled: &mut Option<Instant>, deadline: Instant, timer: Timer) {
        if scheduled.is_none_or(|s| deadline < s) {
            *scheduled = Some(deadline);
            self.push(deadline, timer);
        }
    }

    fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.heap.peek().is_some_and(|e| e.at <= now) {
            self.heap.pop().map(|e| (e.at, e.timer))
        } else {
            None
        }
    }
}

/// Where datagrams go: addresses and ICE ufrags to sessions, and the
/// sessions' URL secrets.
#[derive(Debug, Default)]
struct Routes {
    // Looked up for every datagram, so hashed with Fx rather than SipHash.
    // None is open to hash flooding: an address enters `by_addr` only after
    // an authenticated STUN check, and ufrags and secrets are our own.
    by_addr: FxHashMap<SocketAddr, SessionKey>,
    by_ufrag: FxHashMap<Box<str>, SessionKey>,
    by_secret: FxHashMap<Box<str>, SessionKey>,
    /// SIP dialogs by the caller's RTP address (from their SDP, or latched):
    /// RTP from any other address is not theirs.
    sip_by_addr: FxHashMap<SocketAddr, SessionKey>,
    /// SIP dialogs that have media but no RTP yet, by their INVITE's source
    /// IP: where a NATed caller's RTP may be latched from.
    sip_latch: FxHashMap<std::net::IpAddr, Vec<SessionKey>>,
}

/// Packet counts gathered per batch and added to the shared counters once,
/// so the packet path does not touch cache lines all workers write.
#[derive(Debug, Default)]
struct PacketCounts {
    packets: u64,
    bytes: u64,
    lost: u64,
    reanchored: u64,
    dtmf: u64,
    unrouted: u64,
    /// Datagrams a WHIP session took, and their bytes.
    whip_packets: u64,
    whip_bytes: u64,
    /// Native RTP packets handled, and their bytes.
    native_packets: u64,
    native_bytes: u64,
    /// SIP RTP packets handled, and their bytes.
    sip_packets: u64,
    sip_bytes: u64,
}

/// Wall-clock time derived from the engine's `Instant`s: one anchor taken
/// when the engine was made (and moved by [`Engine::set_wall_clock`]), so
/// `call.json` gets UTC times without the engine reading a clock.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    instant: Instant,
    utc: DateTime<Utc>,
}

impl WallClock {
    fn utc(&self, at: Instant) -> DateTime<Utc> {
        let after = at.saturating_duration_since(self.instant);
        let before = self.instant.saturating_duration_since(at);
        let to = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
        self.utc + to(after) - to(before)
    }
}

/// Everything the engine uses besides its sessions and calls (split off so
/// a session and a call can be borrowed alongside it).
struct Shared {
    settings: EngineSettings,
    consent: Arc<ConsentSetup>,
    metrics: MediaMetrics,
    timers: Timers,
    out: VecDeque<Output>,
    counts: PacketCounts,
    clock: WallClock,
    /// Verbal consent, when the node runs a recogniser (see `verbal.rs`).
    verbal: Option<Verbal>,
    /// The packet `srtp_in` decrypted last: one buffer for every session.
    srtp_plain: Vec<u8>,
}

/// The sans-IO media engine of one worker. See the module docs.
pub struct Engine {
    shared: Shared,
    sessions: FxHashMap<SessionKey, Session>,
    /// Calls' native ingest (no `Rtc`; media comes through
    /// [`Self::handle_native`]).
    natives: FxHashMap<SessionKey, NativeSession>,
    /// SIP dialogs' media (plain RTP on this worker's socket).
    sips: FxHashMap<SessionKey, SipSession>,
    routes: Routes,
    calls: HashMap<CallId, Call>,
    next_key: u64,
    next_census: Instant,
    /// Participants by consent state last published (see `publish_census`).
    census: [i64; 5],
    shut_down: bool,
}

impl Engine {
    /// An engine with no session, whose clock reads `now_utc` at `now`.
    pub fn new(
        settings: EngineSettings,
        consent: Arc<ConsentSetup>,
        metrics: MediaMetrics,
        now: Instant,
        now_utc: DateTime<Utc>,
    ) -> Self {
        Self {
            shared: Shared {
                settings,
                consent,
                metrics,
                timers: Timers::default(),
                out: VecDeque::new(),
                counts: PacketCounts::default(),
                clock: WallClock {
                    instant: now,
                    utc: now_utc,
                },
                verbal: None,
                srtp_plain: Vec::with_capacity(2048),
            },
            sessions: FxHashMap::default(),
            natives: FxHashMap::default(),
            sips: FxHashMap::default(),
            routes: Routes::default(),
            calls: HashMap::new(),
            next_key: 1,
            next_census: now + CENSUS_INTERVAL,
            census: [0; 5],
            shut_down: false,
        }
    }

    /// Re-anchors the wall clock (`now` reads `now_utc`), so UTC times stay
    /// right over a long uptime.
    pub fn set_wall_clock(&mut self, now: Instant, now_utc: DateTime<Utc>) {
        self.shared.clock = WallClock {
            instant: now,
            utc: now_utc,
        };
    }

    /// Listens for spoken answers to the consent request, handing them to
    /// `tap`'s recogniser; results come back through [`Self::handle_verbal`].
    pub fn with_verbal(mut self, tap: VerbalTap) -> Self {
        self.shared.verbal = Some(Verbal::new(tap));
        self
    }

    /// A result of the verbal-consent recogniser: a yes or no is the
    /// participant's consent signal (a yes also keeps its clip as evidence).
    pub fn handle_verbal(&mut self, now: Instant, recognised: hearken_verbal::Recognised) {
        let metrics = &self.shared.metrics;
        let Some(answered) = self
            .shared
            .verbal
            .as_mut()
            .and_then(|v| v.handle_result(recognised, metrics))
        else {
            return;
        };
        let call_id = answered.call_id.clone();
        if self.with_conference(&call_id, now, |c| answered.apply(c, now))
            && let Some(msg) = answered.evidence_msg()
        {
            self.shared.out.push_back(Output::Sink(msg));
        }
    }

    /// Sessions this engine carries.
    pub fn session_count(&self) -> usize {
        self.sessions.len() + self.natives.len() + self.sips.len()
    }

    /// Calls this engine carries.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// A datagram arrived from `source` at `now`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        // SIP dialogs' plain RTP, by the caller's address (one lookup, and
        // none at all on a node without SIP calls).
        if !self.sips.is_empty()
            && let Some(&key) = self.routes.sip_by_addr.get(&source)
        {
            self.handle_sip_datagram(key, now, data);
            return;
        }
        // RTP of an SSRC a connected session decrypts itself: past str0m.
        if let Some(&key) = self.routes.by_addr.get(&source)
            && self.handle_direct_rtp(key, now, data)
        {
            return;
        }
        let destination = self.shared.settings.local_addr;
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            self.shared.counts.unrouted += 1;
            return;
        };
        let input = Input::Receive(now, receive);
        let Some(routed) = self.route_input(source, data, &input) else {
            // RTP (RFC 7983: first byte 128-191) from a NATed SIP caller.
            if !self.routes.sip_latch.is_empty()
                && data.first().is_some_and(|b| (128..192).contains(b))
                && let Some(key) = self.latch_sip(source)
            {
                self.handle_sip_datagram(key, now, data);
                return;
            }
            trace!(%source, "datagram for no session");
            self.shared.counts.unrouted += 1;
            return;
        };
        let key = routed.session;
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if routed.new_address && self.routes.by_addr.insert(source, key) != Some(key) {
            session.remote_addrs.push(source);
        }
        session.last_input = now;
        self.shared.counts.whip_packets += 1;
        self.shared.counts.whip_bytes += data.len() as u64;
        let call_id = session.call_id.clone();
        self.contained(&call_id, now, |engine| {
            if let Some(session) = engine.sessions.get_mut(&key)
                && let Err(e) = session.rtc.handle_input(input)
            {
                debug!(parent: &session.span, error = %e, "rtc rejected input");
                session.fail(&e);
            }
            engine.drive(key, now);
        });
    }

    /// Handles `data` from session `key`'s address if it is RTP of an SSRC
    /// the session decrypts itself; false if it is not (str0m's, then).
    ///
    /// One lookup of the session and one of the call: at 1,000 sessions
    /// each is a cache miss, so the packet is not routed through
    /// [`Self::contained`], which would look both up again.
    fn handle_direct_rtp(&mut self, key: SessionKey, now: Instant, data: &[u8]) -> bool {
        let Engine {
            sessions,
            calls,
            shared,
            ..
        } = self;
        let Some(session) = sessions.get_mut(&key) else {
            return false;
        };
        let Some(ssrc) = session.srtp_in.as_ref().and_then(|rx| rx.claims(data)) else {
            return false;
        };
        session.last_input = now;
        shared.counts.whip_packets += 1;
        shared.counts.whip_bytes += data.len() as u64;
        let Some(call) = calls.get_mut(&session.call_id) else {
            return true;
        };
        let call_id = session.call_id.clone();
        // As `contained` does: a panic here ends this call only.
        // The one decrypt buffer, out of `shared` while the frame goes
        // through it.
        let mut plain = std::mem::take(&mut shared.srtp_plain);
        let handled = catch_unwind(AssertUnwindSafe(|| {
            direct_packet(key, session, call, shared, ssrc, data, &mut plain, now);
        }));
        shared.srtp_plain = plain;
        match handled {
            Ok(()) => self.contained(&call_id, now, |engine| engine.flush_call(&call_id, now)),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                self.abandon_call(&call_id, &message, now);
            }
        }
        true
    }

    /// The session a datagram from `source` belongs to, if any, without
    /// handling it (the routing half of [`Self::handle_datagram`], for
    /// benches and diagnostics).
    pub fn route(&self, now: Instant, source: SocketAddr, data: &[u8]) -> Option<Routed> {
        let receive =
            Receive::new(Protocol::Udp, source, self.shared.settings.local_addr, data).ok()?;
        self.route_input(source, data, &Input::Receive(now, receive))
    }

    fn route_input(&self, source: SocketAddr, data: &[u8], input: &Input) -> Option<Routed> {
        let known = self
            .routes
            .by_addr
            .get(&source)
            .copied()
            .filter(|k| self.sessions.get(k).is_some_and(|s| s.rtc.accepts(input)));
        if let Some(session) = known {
            return Some(Routed {
                session,
                new_address: false,
            });
        }
        // Only STUN (RFC 7983: first byte 0 or 1) can introduce a new
        // address, and only for the session whose ufrag it names.
        if data.first().is_none_or(|&b| b > 1) {
            return None;
        }
        let stun = StunMessage::parse(data).ok()?;
        let (local_ufrag, _) = stun.split_username()?;
        let session = *self.routes.by_ufrag.get(local_ufrag)?;
        self.sessions
            .get(&session)
            .is_some_and(|s| s.rtc.accepts(input))
            .then_some(Routed {
                session,
                new_address: true,
            })
    }

    /// Native RTP arrived for one of this engine's native sessions.
    pub fn handle_native(&mut self, now: Instant, media: NativeMedia) {
        let Some(native) = self.natives.get_mut(&media.session) else {
            // The session ended while its packets were on the way.
            self.shared
                .metrics
                .native_errors
                .get(IngestError::UnknownFlow)
                .inc();
            return;
        };
        native.last_input = now;
        let call_id = native.call_id.clone();
        let key = media.session;
        self.contained(&call_id, now, |engine| {
            engine.native_packet(key, media);
            engine.flush_call(&call_id, now);
        });
    }

    fn native_packet(&mut self, key: SessionKey, media: NativeMedia) {
        let Some(native) = self.natives.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&native.call_id) else {
            return;
        };
        let shared = &mut self.shared;
        let Some(speaker) = native.speakers.get_mut(&media.flow_id) else {
            // Removed by a PATCH while its packets were on the way.
            shared
                .metrics
                .native_errors
                .get(IngestError::UnknownFlow)
                .inc();
            return;
        };
        shared.counts.native_packets += 1;
        shared.counts.native_bytes += media.packet.len() as u64;
        handle_plain_packet(
            key,
            speaker,
            call,
            shared,
            Ingest::Native,
            &media.packet,
            media.arrival,
        );
    }

    /// The SIP dialog a NATed caller's first RTP from `source` belongs to:
    /// the one dialog from that IP still waiting for its first packet (none
    /// when several wait: the shared port cannot tell them apart). Its
    /// route and the address its prompts go to move to `source`.
    fn latch_sip(&mut self, source: SocketAddr) -> Option<SessionKey> {
        let waiting = self.routes.sip_latch.get(&source.ip())?;
        let [key] = waiting[..] else {
            return None;
        };
        let SipSession { media, span, .. } = self.sips.get_mut(&key)?;
        let media = media.as_mut()?;
        info!(parent: &*span, from = %media.remote_rtp, to = %source, "sip rtp latched (caller behind NAT)");
        if self.routes.sip_by_addr.get(&media.remote_rtp) == Some(&key) {
            self.routes.sip_by_addr.remove(&media.remote_rtp);
        }
        media.remote_rtp = source;
        self.routes.sip_by_addr.insert(source, key);
        forget_latch(&mut self.routes.sip_latch, source.ip(), key);
        Some(key)
    }

    /// Opens a plain-RTP session (native or SIP) of `call_id`: its key, the
    /// call (made with `early_inputs` when this engine does not carry it
    /// yet), the session in the conference, counted and found by `secret`.
    /// Nothing is negotiated, so the session is connected at once: the call
    /// starts now, and its speakers join (for consent) as they are added.
    /// Returns the key and the session's span (`span` makes it under the
    /// call's).
    #[allow(clippy::too_many_arguments)]
    fn open_plain_session(
        &mut self,
        call_id: &CallId,
        secret: &str,
        public_id: &str,
        early_inputs: &[CallInput],
        resume: Option<&Resume>,
        ingest: Ingest,
        span: impl FnOnce(&Span) -> Span,
        now: Instant,
    ) -> Result<(SessionKey, Span), CreateSessionError> {
        if self.shut_down {
            return Err(CreateSessionError::ShuttingDown);
        }
        let key = SessionKey(self.next_key);
        self.next_key += 1;
        let Shared {
            consent,
            metrics,
            clock,
            ..
        } = &mut self.shared;
        let call = call_entry(
            &mut self.calls,
            consent,
            metrics,
            call_id,
            early_inputs,
            resume.map(|r| (r, clock.utc(now))),
            now,
        );
        let span = span(&call.span);
        call.conference.handle_session_added(key, public_id);
        call.sessions.push(key);
        call.conference
            .handle_session_connected(key, now, clock.utc(now));
        metrics.sessions_active.inc();
        metrics.ingest_sessions.get(ingest).inc();
        self.routes.by_secret.insert(secret.into(), key);
        Ok((key, span))
    }

    /// The SIP dialog of `call_id` whose secret is `secret`.
    fn sip_key(&self, call_id: &CallId, secret: &str) -> Option<SessionKey> {
        self.routes
            .by_secret
            .get(secret)
            .copied()
            .filter(|k| self.sips.get(k).is_some_and(|n| &n.call_id == call_id))
    }

    fn create_sip(
        &mut self,
        create: CreateSip,
        now: Instant,
    ) -> Result<SocketAddr, CreateSessionError> {
        let (key, span) = self.open_plain_session(
            &create.call_id,
            &create.secret,
            &create.public_id,
            &create.early_inputs,
            create.resume.as_deref(),
            Ingest::Sip,
            |call| info_span!(parent: call, "sip", id = %create.public_id, participant = %create.participant_id),
            now,
        )?;
        self.shared.metrics.speakers_active.inc();
        // The dialog is established: the caller joins (for consent) at once.
        let Some(call) = self.calls.get_mut(&create.call_id) else {
            return Err(CreateSessionError::NoUsableAudio);
        };
        let participant =
            call.conference
                .handle_speaker_added(key, "sip", Some(&create.participant_id), now);
        let mut session = SipSession {
            call_id: create.call_id.clone(),
            secret: create.secret.into_boxed_str(),
            participant,
            media: None,
            speaker: None,
            sender: None,
            playbacks: Vec::new(),
            line: None,
            waiting: Vec::new(),
            last_input: now,
            signalling_ip: create.signalling_ip,
            heard: false,
            scheduled: None,
            span,
        };
        let idle_until = now + self.shared.settings.rtp_idle_timeout;
        self.shared
            .timers
            .schedule(&mut session.scheduled, idle_until, Timer::Session(key));
        debug!(parent: &session.span, "sip dialog created");
        self.sips.insert(key, session);
        let call_id = create.call_id;
        if let Some(media) = create.media {
            self.contained(&call_id, now, |e| e.update_sip(key, media, now));
        } else {
            self.flush_call(&call_id, now);
        }
        if !self.sips.contains_key(&key) {
            return Err(CreateSessionError::NoUsableAudio);
        }
        Ok(self.shared.settings.local_addr)
    }

    /// Applies what a dialog negotiated (first, or again in a re-INVITE).
    fn update_sip(&mut self, key: SessionKey, media: SipMedia, now: Instant) {
        let Some(sip) = self.sips.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&sip.call_id) else {
            return;
        };
        let call_id = sip.call_id.clone();
        let routes = &mut self.routes.sip_by_addr;
        if let Some(old) = sip.remote()
            && routes.get(&old) == Some(&key)
        {
            routes.remove(&old);
        }
        routes.insert(media.remote_rtp, key);
        if !sip.heard
            && let Some(ip) = sip.signalling_ip
        {
            let waiting = self.routes.sip_latch.entry(ip).or_default();
            if !waiting.contains(&key) {
                waiting.push(key);
            }
        }
        let same_stream = sip.media.as_ref().is_some_and(|m| {
            m.codec == media.codec
                && m.payload_type == media.payload_type
                && m.dtmf_payload_type == media.dtmf_payload_type
        });
        if !same_stream {
            let flow = NativeFlow {
                flow_id: 0,
                participant_id: call
                    .conference
                    .participant_id(sip.participant)
                    .unwrap_or_default()
                    .to_owned(),
                codec: media.codec,
                payload_type: media.payload_type,
                dtmf_payload_type: media.dtmf_payload_type,
            };
            let ssrc = (key.0 as u32).wrapping_mul(0x9E37_79B9) ^ 0x4845_4152;
            match (
                PlainSpeaker::new(sip.participant, flow, sip.span.clone()),
                RtpSender::new(&media, ssrc, &self.shared.consent.telephone_prompts),
            ) {
                (Ok(speaker), Ok(sender)) => {
                    sip.speaker = Some(speaker);
                    sip.sender = Some(sender);
                }
                (Err(e), _) => warn!(parent: &sip.span, error = %e, "no transcoder for the caller"),
                (_, Err(e)) => warn!(parent: &sip.span, error = %e, "no encoder for the prompts"),
            }
            call.conference.handle_speaker_media(
                sip.participant,
                SpeakerMedia {
                    ingest: Ingest::Sip,
                    codec: media.codec.name(),
                    transcoded: media.codec.is_transcoded(),
                },
            );
        }
        let hold = media.direction.is_hold();
        if hold != sip.on_hold() || sip.media.is_none() {
            info!(parent: &sip.span, hold, direction = ?media.direction, "sip media");
        }
        call.conference.handle_hold(sip.participant, hold);
        sip.media = Some(media);
        // A re-INVITE shows the caller is there: the idle clock (stopped
        // while they held the call) starts again.
        sip.last_input = now;
        if !sip.can_hear() {
            // Whatever was playing is cut off; it plays again on resume.
            for pb in std::mem::take(&mut sip.playbacks) {
                call.conference.handle_prompt_played(
                    pb.kind,
                    std::slice::from_ref(&pb.to),
                    Delivery::Interrupted,
                    pb.started,
                    now,
                );
                sip.waiting.push(pb.kind);
            }
            sip.line = None;
        } else if !sip.waiting.is_empty() {
            let to = call
                .conference
                .participant_id(sip.participant)
                .unwrap_or_default()
                .to_owned();
            for prompt in std::mem::take(&mut sip.waiting) {
                queue_sip_prompt(sip, prompt, to.clone(), &self.shared.consent.prompts, now);
            }
        }
        self.shared
            .timers
            .schedule(&mut sip.scheduled, now, Timer::Session(key));
        self.flush_call(&call_id, now);
    }

    /// RTP from a SIP caller's address.
    fn handle_sip_datagram(&mut self, key: SessionKey, now: Instant, data: &[u8]) {
        let Some(sip) = self.sips.get_mut(&key) else {
            return;
        };
        sip.last_input = now;
        if !std::mem::replace(&mut sip.heard, true)
            && let Some(ip) = sip.signalling_ip
        {
            forget_latch(&mut self.routes.sip_latch, ip, key);
        }
        let call_id = sip.call_id.clone();
        self.contained(&call_id, now, |engine| {
            engine.sip_packet(key, data, now);
            engine.flush_call(&call_id, now);
        });
    }

    fn sip_packet(&mut self, key: SessionKey, data: &[u8], now: Instant) {
        let Some(sip) = self.sips.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&sip.call_id) else {
            return;
        };
        let shared = &mut self.shared;
        let Some(speaker) = sip.speaker.as_mut() else {
            shared.metrics.sip_errors.get(IngestError::Unrouted).inc();
            return;
        };
        shared.counts.sip_packets += 1;
        shared.counts.sip_bytes += data.len() as u64;
        handle_plain_packet(key, speaker, call, shared, Ingest::Sip, data, now);
    }

    /// A SIP dialog's timer: prompt packets due, the idle check, the next
    /// deadline.
    fn sip_due(&mut self, key: SessionKey, now: Instant) {
        let Some(sip) = self.sips.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&sip.call_id) else {
            return;
        };
        let shared = &mut self.shared;
        let prompts = &shared.consent.prompts;
        let local = shared.settings.local_addr;
        let remote = sip.remote();
        let SipSession {
            playbacks,
            sender,
            span,
            ..
        } = &mut *sip;
        let mut i = 0;
        while i < playbacks.len() {
            let pb = &mut playbacks[i];
            let (prompt, started, ends) = (pb.kind, pb.started, pb.ends);
            let out = &mut shared.out;
            let progress = pb.play_due(
                prompts,
                now,
                |rtp_time, index, packet| {
                    let (Some(sender), Some(destination)) = (sender.as_mut(), remote) else {
                        return false;
                    };
                    match sender.packet(rtp_time, prompt, index, &packet.data) {
                        Ok(bytes) => {
                            out.push_back(Output::Transmit(Transmit {
                                proto: Protocol::Udp,
                                source: local,
                                destination,
                                contents: bytes.into(),
                            }));
                            true
                        }
                        Err(e) => {
                            warn!(parent: &*span, error = %e, "prompt packet not sent");
                            false
                        }
                    }
                },
                |at, packet| {
                    call.conference.handle_prompt_packet(PlayedPacket {
                        prompt,
                        started,
                        ends,
                        at,
                        payload: packet.data.clone(),
                        samples: packet.samples,
                    });
                },
            );
            match progress {
                Progress::Playing => i += 1,
                progress @ (Progress::Finished | Progress::Stopped) => {
                    let pb = playbacks.swap_remove(i);
                    let delivery = if progress == Progress::Finished {
                        Delivery::Whole
                    } else {
                        Delivery::Interrupted
                    };
                    call.conference.handle_prompt_played(
                        pb.kind,
                        std::slice::from_ref(&pb.to),
                        delivery,
                        pb.started,
                        now,
                    );
                }
            }
        }
        // A caller who holds the call may send nothing for as long as it
        // lasts; only a live dialog falls silent.
        let idle_until = sip.last_input + shared.settings.rtp_idle_timeout;
        if !sip.on_hold() && idle_until <= now {
            debug!(parent: &sip.span, "sip caller silent: ending the dialog's media");
            let call_id = sip.call_id.clone();
            self.flush_call(&call_id, now);
            self.remove_plain(key, SessionEndReason::Disconnected, now);
            return;
        }
        let next_packet = sip.playbacks.iter().map(|p| p.next_at).min();
        // On hold, the idle check only looks again later.
        let idle_check = if sip.on_hold() {
            now + shared.settings.rtp_idle_timeout
        } else {
            idle_until
        };
        let deadline = next_packet.map_or(idle_check, |t| t.min(idle_check));
        shared
            .timers
            .schedule(&mut sip.scheduled, deadline, Timer::Session(key));
        let call_id = sip.call_id.clone();
        self.flush_call(&call_id, now);
    }

    /// The native session of `call_id` whose secret is `secret`.
    fn native_key(&self, call_id: &CallId, secret: &str) -> Option<SessionKey> {
        self.routes
            .by_secret
            .get(secret)
            .copied()
            .filter(|k| self.natives.get(k).is_some_and(|n| &n.call_id == call_id))
    }

    fn create_native(
        &mut self,
        create: CreateNative,
        now: Instant,
    ) -> Result<SessionKey, CreateSessionError> {
        let (key, span) = self.open_plain_session(
            &create.call_id,
            &create.secret,
            &create.public_id,
            &create.early_inputs,
            create.resume.as_deref(),
            Ingest::Native,
            |call| info_span!(parent: call, "native", id = %create.public_id),
            now,
        )?;
        self.natives.insert(
            key,
            NativeSession {
                call_id: create.call_id.clone(),
                secret: create.secret.into_boxed_str(),
                speakers: FxHashMap::default(),
                last_input: now,
                scheduled: None,
                span,
            },
        );
        if let Some(native) = self.natives.get_mut(&key) {
            let idle_until = now + self.shared.settings.rtp_idle_timeout;
            self.shared
                .timers
                .schedule(&mut native.scheduled, idle_until, Timer::Session(key));
        }
        let call_id = create.call_id;
        let mut result = Ok(key);
        self.contained(&call_id, now, |e| {
            if let Err(err) = e.add_native_flows(key, create.flows, now) {
                result = Err(err);
            }
            e.flush_call(&call_id, now);
        });
        match &result {
            Ok(_) => info!(call = %call_id, "native ingest started"),
            Err(e) => {
                warn!(call = %call_id, error = %e, "native ingest not started");
                self.remove_plain(key, SessionEndReason::Failed, now);
            }
        }
        result
    }

    fn add_native_flows(
        &mut self,
        key: SessionKey,
        flows: Vec<NativeFlow>,
        now: Instant,
    ) -> Result<(), CreateSessionError> {
        let Some(native) = self.natives.get_mut(&key) else {
            return Ok(());
        };
        let Some(call) = self.calls.get_mut(&native.call_id) else {
            return Ok(());
        };
        for flow in flows {
            let mid = format!("flow{}", flow.flow_id);
            if native.speakers.remove(&flow.flow_id).is_some() {
                self.shared.metrics.speakers_active.dec();
            }
            let participant =
                call.conference
                    .handle_speaker_added(key, &mid, Some(&flow.participant_id), now);
            call.conference.handle_speaker_media(
                participant,
                SpeakerMedia {
                    ingest: Ingest::Native,
                    codec: flow.codec.name(),
                    transcoded: flow.codec.is_transcoded(),
                },
            );
            let span = debug_span!(parent: &native.span, "participant", flow = flow.flow_id);
            debug!(parent: &span, participant = %flow.participant_id, codec = flow.codec.name(), "native speaker added");
            let codec = flow.codec.name();
            let flow_id = flow.flow_id;
            let speaker = PlainSpeaker::new(participant, flow, span)
                .map_err(|source| CreateSessionError::Transcoder { codec, source })?;
            native.speakers.insert(flow_id, speaker);
            self.shared.metrics.speakers_active.inc();
        }
        Ok(())
    }

    fn update_native(
        &mut self,
        key: SessionKey,
        add: Vec<NativeFlow>,
        remove: Vec<u64>,
        now: Instant,
    ) {
        let Some(native) = self.natives.get_mut(&key) else {
            return;
        };
        let call_id = native.call_id.clone();
        for flow_id in remove {
            let Some(speaker) = native.speakers.remove(&flow_id) else {
                continue;
            };
            self.shared.metrics.speakers_active.dec();
            debug!(parent: &speaker.span, "native speaker removed");
            if let Some(call) = self.calls.get_mut(&call_id) {
                call.conference
                    .handle_speaker_removed(key, speaker.participant, now);
            }
        }
        if let Err(e) = self.add_native_flows(key, add, now) {
            warn!(call = %call_id, error = %e, "native flow not added");
        }
        self.flush_call(&call_id, now);
    }

    /// Forgets a plain-RTP session (native or SIP): its routes and its
    /// share of the gauges. Returns its call and secret.
    fn drop_plain(&mut self, key: SessionKey) -> Option<(CallId, Box<str>)> {
        let m = &self.shared.metrics;
        let (call_id, secret, speakers, ingest) = if let Some(native) = self.natives.remove(&key) {
            info!(parent: &native.span, "native ingest ended");
            let n = native.speakers.len();
            (native.call_id, native.secret, n, Ingest::Native)
        } else {
            let sip = self.sips.remove(&key)?;
            info!(parent: &sip.span, "sip dialog ended");
            if let Some(ip) = sip.signalling_ip {
                forget_latch(&mut self.routes.sip_latch, ip, key);
            }
            if let Some(remote) = sip.remote()
                && self.routes.sip_by_addr.get(&remote) == Some(&key)
            {
                self.routes.sip_by_addr.remove(&remote);
            }
            (sip.call_id, sip.secret, 1, Ingest::Sip)
        };
        self.routes.by_secret.remove(&secret);
        m.sessions_active.dec();
        m.speakers_active.sub(speakers as i64);
        m.ingest_sessions.get(ingest).dec();
        Some((call_id, secret))
    }

    /// Ends a plain-RTP session (native or SIP) for `reason`.
    fn remove_plain(&mut self, key: SessionKey, reason: SessionEndReason, now: Instant) {
        let Some((call_id, secret)) = self.drop_plain(key) else {
            return;
        };
        self.shared.metrics.sessions_ended.get(reason).inc();
        self.shared
            .out
            .push_back(Output::Event(EngineEvent::SessionEnded {
                call_id: call_id.clone(),
                secret: secret.to_string(),
                reason,
                failure: None,
            }));
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.sessions.retain(|&k| k != key);
        let left = call.conference.handle_session_removed(key, now);
        self.flush_call(&call_id, now);
        if left == 0 && reason != SessionEndReason::CallEnded {
            self.end_call(&call_id, EndReason::LastSessionLeft, None, now);
        }
    }

    /// Time passed: handles every deadline up to `now`.
    ///
    /// The packet counters of the datagrams handled since the last call are
    /// added to the shared metrics here, once per turn of the worker's loop
    /// rather than once per packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.shared.timers.pop_due(now) {
            match timer {
                Timer::Session(key) => self.handle_session_timer(key, at, now),
                Timer::Call(call_id) => self.handle_call_timer(call_id, at, now),
            }
        }
        self.flush_counts();
        if now >= self.next_census {
            self.next_census = now + CENSUS_INTERVAL;
            self.publish_census();
            if let Some(v) = self.shared.verbal.as_mut() {
                let calls = &self.calls;
                v.sweep(now, |id| calls.contains_key(id), &self.shared.metrics);
            }
        }
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.shared
            .timers
            .peek()
            .map_or(self.next_census, |t| t.min(self.next_census))
    }

    /// The next thing to do, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.shared.out.pop_front()
    }

    /// Handles a request from the control plane.
    pub fn handle_command(&mut self, now: Instant, command: Command) -> Reply {
        match command {
            Command::CreateSession(create) => Reply::Answer(self.create_session(*create, now)),
            Command::CreateNative(create) => Reply::Native(self.create_native(*create, now)),
            Command::CreateSip(create) => Reply::Sip(self.create_sip(*create, now)),
            Command::UpdateSip {
                call_id,
                secret,
                media,
            } => {
                let Some(key) = self.sip_key(&call_id, &secret) else {
                    return Reply::Found(false);
                };
                self.contained(&call_id, now, |e| e.update_sip(key, media, now));
                Reply::Found(true)
            }
            Command::SipDigit {
                call_id,
                secret,
                key: pressed,
            } => {
                let Some(key) = self.sip_key(&call_id, &secret) else {
                    return Reply::Found(false);
                };
                let Some(digit) = hearken_core::dtmf::DtmfKey::from_char(pressed) else {
                    return Reply::Found(true);
                };
                let participant = self.sips.get(&key).map(|s| s.participant);
                if let Some(participant) = participant {
                    self.with_conference(&call_id, now, |c| {
                        c.handle_digit(participant, digit, now);
                    });
                }
                Reply::Found(true)
            }
            Command::UpdateNative {
                call_id,
                secret,
                add,
                remove,
            } => {
                let key = self.native_key(&call_id, &secret);
                let Some(key) = key else {
                    return Reply::Found(false);
                };
                self.contained(&call_id, now, |e| e.update_native(key, add, remove, now));
                Reply::Found(true)
            }
            Command::DeleteSession {
                call_id,
                secret,
                done,
            } => {
                let key = self
                    .routes
                    .by_secret
                    .get(secret.as_str())
                    .copied()
                    .filter(|k| self.sessions.get(k).is_some_and(|s| s.call_id == call_id))
                    .or_else(|| self.native_key(&call_id, &secret))
                    .or_else(|| self.sip_key(&call_id, &secret));
                let Some(key) = key else {
                    return Reply::Found(false);
                };
                let last = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.sessions.len() == 1);
                if last {
                    self.end_call(&call_id, EndReason::LastSessionLeft, done, now);
                } else {
                    self.contained(&call_id, now, |e| {
                        e.remove_session(key, SessionEndReason::Deleted, None, now)
                    });
                }
                Reply::Found(true)
            }
            Command::EndCall {
                call_id,
                reason,
                done,
            } => {
                let exists = self.calls.contains_key(&call_id);
                if exists {
                    self.end_call(&call_id, reason, done, now);
                }
                Reply::Found(exists)
            }
            Command::Input {
                call_id,
                input,
                audited,
            } => {
                let found = self.with_conference(&call_id, now, |c| apply_input(c, input, now));
                // Behind the input's audit lines on the recorder's queue.
                if let (true, Some(done)) = (found, audited) {
                    let barrier = SinkMsg::Barrier { call_id, done };
                    self.shared.out.push_back(Output::Sink(barrier));
                }
                Reply::Found(found)
            }
            Command::Snapshot { call_id } => Reply::Snapshot(
                self.calls
                    .get(&call_id)
                    .map(|c| Box::new(c.conference.summary())),
            ),
            #[cfg(any(test, feature = "fault-injection"))]
            Command::InjectPanic { call_id } => match self.calls.get_mut(&call_id) {
                Some(call) => {
                    call.panic_on_next_frame = true;
                    Reply::Found(true)
                }
                None => Reply::Found(false),
            },
            #[cfg(any(test, feature = "fault-injection"))]
            Command::InjectWrongSrtpKeys { call_id } => {
                let mut found = false;
                for session in self.sessions.values_mut().filter(|s| s.call_id == call_id) {
                    session.wrong_srtp_keys = true;
                    found = true;
                }
                Reply::Found(found)
            }
            #[cfg(any(test, feature = "fault-injection"))]
            Command::InjectWorkerPanic => panic!("injected fault: a bug outside any call"),
        }
    }

    /// Ends every call (the worker is stopping). Afterwards every offer is
    /// refused.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, EndReason::Shutdown, None, now);
        }
        self.publish_census();
        self.shut_down = true;
    }

    /// Runs `f`, which handles something of `call_id`; a panic in it ends
    /// that call (see the module docs) instead of unwinding further.
    fn contained(&mut self, call_id: &CallId, now: Instant, f: impl FnOnce(&mut Self)) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            let message = panic_message(panic.as_ref());
            self.abandon_call(call_id, &message, now);
        }
    }

    /// Ends a call whose handling panicked: drops its sessions and asks the
    /// sinks to finish its files with whatever summary can still be had.
    fn abandon_call(&mut self, call_id: &CallId, message: &str, now: Instant) {
        error!(call = %call_id, panic = message, "handling a call panicked; ending that call");
        self.shared.metrics.call_panics.inc();
        let keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| &s.call_id == call_id)
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            let Some(session) = self.sessions.remove(&key) else {
                continue;
            };
            self.forget_routes(key, &session);
            let failure = hearken_core::conference::SessionFailure {
                session: session.public_id.to_string(),
                cause: FailureCause::Internal,
                detail: format!("handling the call panicked: {message}"),
            };
            self.count_session_end(SessionEndReason::Failed, Some(failure.cause), &session);
            self.shared
                .out
                .push_back(Output::Event(EngineEvent::SessionEnded {
                    call_id: call_id.clone(),
                    secret: session.secret.to_string(),
                    reason: SessionEndReason::Failed,
                    failure: Some(failure),
                }));
            // The Rtc may be in any state: dropped without a goodbye.
        }
        let plain: Vec<SessionKey> = self
            .natives
            .iter()
            .filter(|(_, s)| &s.call_id == call_id)
            .map(|(&k, _)| k)
            .chain(
                self.sips
                    .iter()
                    .filter(|(_, s)| &s.call_id == call_id)
                    .map(|(&k, _)| k),
            )
            .collect();
        for key in plain {
            let Some((_, secret)) = self.drop_plain(key) else {
                continue;
            };
            self.shared
                .metrics
                .sessions_ended
                .get(SessionEndReason::Failed)
                .inc();
            self.shared
                .out
                .push_back(Output::Event(EngineEvent::SessionEnded {
                    call_id: call_id.clone(),
                    secret: secret.to_string(),
                    reason: SessionEndReason::Failed,
                    failure: None,
                }));
        }
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        self.shared.metrics.calls_active.dec();
        self.shared
            .metrics
            .calls_ended
            .get(EndReason::Internal)
            .inc();
        let started = call.conference.has_started();
        let now_utc = self.shared.clock.utc(now);
        // The conference itself may be what broke.
        let summary = catch_unwind(AssertUnwindSafe(|| {
            let mut conference = call.conference;
            conference.handle_end(now, now_utc, EndReason::Internal);
            conference.summary()
        }))
        .unwrap_or_else(|_| CallSummary::ended_without_state(call_id, now_utc));
        if started {
            self.shared
                .out
                .push_back(Output::Event(EngineEvent::CallEnded {
                    call_id: call_id.clone(),
                }));
            self.shared.out.push_back(Output::Sink(SinkMsg::CallEnded {
                summary: Box::new(summary),
                done: None,
            }));
        }
    }

    fn create_session(
        &mut self,
        create: CreateSession,
        now: Instant,
    ) -> Result<String, CreateSessionError> {
        if self.shut_down {
            return Err(CreateSessionError::ShuttingDown);
        }
        let key = SessionKey(self.next_key);
        self.next_key += 1;
        let Shared {
            settings,
            consent,
            metrics,
            clock,
            ..
        } = &mut self.shared;
        let call = call_entry(
            &mut self.calls,
            consent,
            metrics,
            &create.call_id,
            &create.early_inputs,
            create.resume.as_deref().map(|r| (r, clock.utc(now))),
            now,
        );
        let span = info_span!(parent: &call.span, "session", id = %create.public_id);
        let accepted = Session::accept(&create, settings, now, span);
        let (session, answer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if call.sessions.is_empty() {
                    // The call was made for this offer only.
                    self.calls.remove(&create.call_id);
                    metrics.calls_active.dec();
                }
                return Err(e);
            }
        };
        call.conference.handle_session_added(key, &create.public_id);
        call.sessions.push(key);
        debug!(parent: &session.span, "session created");
        self.routes
            .by_ufrag
            .insert(session.local_ufrag.clone(), key);
        self.routes.by_secret.insert(session.secret.clone(), key);
        self.sessions.insert(key, session);
        metrics.sessions_active.inc();
        metrics.ingest_sessions.get(Ingest::Whip).inc();
        let call_id = create.call_id.clone();
        self.contained(&call_id, now, |e| e.drive(key, now));
        Ok(answer)
    }

    /// Polls a session's `Rtc` until it returns a timeout, acting on every
    /// transmit and event; then acts on what its call asked for, schedules
    /// the session's next deadline, and removes it if it must end.
    fn drive(&mut self, key: SessionKey, now: Instant) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session.call_id) else {
            return;
        };
        let shared = &mut self.shared;
        loop {
            match session.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    session.rtc_deadline = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => shared.out.push_back(Output::Transmit(t)),
                Ok(RtcOutput::Event(event)) => {
                    handle_event(key, session, call, event, shared, now);
                }
                Err(e) => {
                    debug!(parent: &session.span, error = %e, "rtc failed");
                    session.fail(&e);
                    break;
                }
            }
        }
        let deadline = session.next_deadline(shared.settings.inactivity_timeout);
        shared
            .timers
            .schedule(&mut session.scheduled, deadline, Timer::Session(key));
        let ending = session.ending.is_some();
        let call_id = session.call_id.clone();
        self.flush_call(&call_id, now);
        if ending
            && let Some((reason, failure)) =
                self.sessions.get_mut(&key).and_then(|s| s.ending.take())
        {
            self.remove_session(key, reason, failure, now);
        }
    }

    fn handle_session_timer(&mut self, key: SessionKey, at: Instant, now: Instant) {
        let inactivity = self.shared.settings.inactivity_timeout;
        if let Some(sip) = self.sips.get_mut(&key) {
            if sip.scheduled != Some(at) {
                return;
            }
            sip.scheduled = None;
            let call_id = sip.call_id.clone();
            self.contained(&call_id, now, |e| e.sip_due(key, now));
            return;
        }
        if let Some(native) = self.natives.get_mut(&key) {
            if native.scheduled != Some(at) {
                return;
            }
            native.scheduled = None;
            let idle_until = native.last_input + self.shared.settings.rtp_idle_timeout;
            if idle_until > now {
                self.shared
                    .timers
                    .schedule(&mut native.scheduled, idle_until, Timer::Session(key));
            } else {
                debug!(parent: &native.span, "native flows silent: ending the native ingest");
                let call_id = native.call_id.clone();
                self.contained(&call_id, now, |e| {
                    e.remove_plain(key, SessionEndReason::Disconnected, now)
                });
            }
            return;
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.scheduled != Some(at) {
            return; // A stale entry: a replaced or already handled deadline.
        }
        session.scheduled = None;
        let call_id = session.call_id.clone();
        self.contained(&call_id, now, |engine| {
            engine.session_due(key, now, inactivity);
        });
    }

    fn session_due(&mut self, key: SessionKey, now: Instant, inactivity: Duration) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        match session.due(now, inactivity) {
            Due::ConnectTimeout => {
                let failure = session.connect_timeout_failure();
                info!(parent: &session.span, cause = failure.0.as_label(), detail = %failure.1, "session did not connect");
                session.end(SessionEndReason::ConnectTimeout, Some(failure));
            }
            Due::Inactive => session.end(SessionEndReason::Disconnected, None),
            Due::Nothing => {}
            Due::Work => {
                if now >= session.rtc_deadline
                    && let Err(e) = session.rtc.handle_input(Input::Timeout(now))
                {
                    debug!(parent: &session.span, error = %e, "rtc timeout failed");
                    session.fail(&e);
                }
                self.dtmf_timeouts(key, now);
                self.play_due(key, now);
            }
        }
        self.drive(key, now);
    }

    /// Reports DTMF events whose end packets were lost.
    fn dtmf_timeouts(&mut self, key: SessionKey, now: Instant) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session.call_id) else {
            return;
        };
        for speaker in session.speakers.values_mut() {
            if let Some(digit) = speaker.dtmf.as_mut().and_then(|d| d.handle_timeout(now)) {
                signal_digit(call, speaker, digit.key, now);
            }
        }
    }

    /// Writes the due packets of the prompts playing into a session; tells
    /// the conference about each prompt that finished.
    fn play_due(&mut self, key: SessionKey, now: Instant) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session.call_id) else {
            return;
        };
        let prompts = &self.shared.consent.prompts;
        let mut i = 0;
        while i < session.playbacks.len() {
            let pb = &mut session.playbacks[i];
            let (prompt, started, ends) = (pb.kind, pb.started, pb.ends);
            // Each packet played, for the announcement track.
            let progress = pb.write_due(&mut session.rtc, prompts, now, |at, packet| {
                call.conference.handle_prompt_packet(PlayedPacket {
                    prompt,
                    started,
                    ends,
                    at,
                    payload: packet.data.clone(),
                    samples: packet.samples,
                });
            });
            match progress {
                Progress::Playing => i += 1,
                progress @ (Progress::Finished | Progress::Stopped) => {
                    let pb = session.playbacks.swap_remove(i);
                    let delivery = if progress == Progress::Finished {
                        Delivery::Whole
                    } else {
                        Delivery::Interrupted
                    };
                    call.conference.handle_prompt_played(
                        pb.kind,
                        std::slice::from_ref(&pb.to),
                        delivery,
                        pb.started,
                        now,
                    );
                }
            }
        }
    }

    fn handle_call_timer(&mut self, call_id: CallId, at: Instant, now: Instant) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.scheduled != Some(at) {
            return;
        }
        call.scheduled = None;
        self.contained(&call_id, now, |engine| {
            if let Some(call) = engine.calls.get_mut(&call_id)
                && call.conference.poll_timeout().is_some_and(|t| t <= now)
            {
                call.conference.handle_timeout(now);
            }
            engine.flush_call(&call_id, now);
        });
    }

    /// Runs `f` on a call's conference and acts on what it asked for;
    /// returns whether the engine has the call.
    fn with_conference(
        &mut self,
        call_id: &CallId,
        now: Instant,
        f: impl FnOnce(&mut Conference),
    ) -> bool {
        if !self.calls.contains_key(call_id) {
            return false;
        }
        self.contained(call_id, now, |engine| {
            if let Some(call) = engine.calls.get_mut(call_id) {
                f(&mut call.conference);
            }
            engine.flush_call(call_id, now);
        });
        true
    }

    /// Acts on everything the call's conference asked for: sink messages
    /// out, prompts started, its next deadline scheduled.
    fn flush_call(&mut self, call_id: &CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let shared = &mut self.shared;
        while let Some(output) = call.conference.poll_output() {
            match output {
                ConferenceOutput::Frame(frame) => {
                    shared.out.push_back(Output::Sink(SinkMsg::Frame {
                        call_id: call_id.clone(),
                        frame,
                    }));
                }
                ConferenceOutput::Consent(ConsentOutput::Audit(event)) => {
                    count_audit(call, &event, &shared.metrics);
                    if let Some(v) = shared.verbal.as_mut() {
                        v.on_audit(call_id, &event, now);
                    }
                    debug!(parent: &call.span, event = ?event, "consent");
                    // Wall clock of the event's call time; before call time
                    // zero, of now.
                    let rate = hearken_core::conference::SAMPLE_RATE as f64;
                    let t = (event.time().max(0.0) * rate).round() as u64;
                    let at = call
                        .conference
                        .utc_at(t)
                        .unwrap_or_else(|| shared.clock.utc(now));
                    shared.out.push_back(Output::Sink(SinkMsg::Audit {
                        call_id: call_id.clone(),
                        event,
                        at,
                    }));
                }
                ConferenceOutput::Frames(frames) => {
                    shared.out.push_back(Output::Sink(SinkMsg::Frames {
                        call_id: call_id.clone(),
                        frames,
                    }));
                }
                ConferenceOutput::Announcement(frame) => {
                    shared.out.push_back(Output::Sink(SinkMsg::Announcement {
                        call_id: call_id.clone(),
                        frame,
                    }));
                }
                ConferenceOutput::DiscardParticipant {
                    participant_id,
                    file_stem,
                } => {
                    shared
                        .out
                        .push_back(Output::Sink(SinkMsg::DiscardParticipant {
                            call_id: call_id.clone(),
                            participant_id,
                            file_stem,
                        }));
                }
                ConferenceOutput::PurgeParticipant { participant_id } => {
                    shared
                        .out
                        .push_back(Output::Sink(SinkMsg::PurgeParticipant {
                            call_id: call_id.clone(),
                            participant_id,
                        }));
                }
                ConferenceOutput::Consent(ConsentOutput::DiscardAll) => {
                    shared.out.push_back(Output::Sink(SinkMsg::DiscardAll {
                        call_id: call_id.clone(),
                    }));
                }
                ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) => {
                    start_prompt(
                        call,
                        &mut self.sessions,
                        &mut self.sips,
                        shared,
                        prompt,
                        to,
                        now,
                    );
                }
                ConferenceOutput::Consent(other) => {
                    // The conference turns every other consent output into
                    // its own; a new one must be handled here.
                    error!(parent: &call.span, output = ?other, "consent output not handled");
                }
                ConferenceOutput::Started { .. } => {
                    info!(parent: &call.span, "call started");
                    shared.out.push_back(Output::Sink(SinkMsg::CallStarted {
                        call_id: call_id.clone(),
                        summary: Box::new(call.conference.summary()),
                    }));
                }
                ConferenceOutput::ParticipantLeft {
                    participant_id,
                    file_stem,
                    position,
                    ..
                } => {
                    shared.out.push_back(Output::Sink(SinkMsg::ParticipantLeft {
                        call_id: call_id.clone(),
                        participant_id,
                        file_stem,
                        position,
                    }));
                }
            }
        }
        if let Some(t) = call.conference.poll_timeout() {
            shared
                .timers
                .schedule(&mut call.scheduled, t, Timer::Call(call_id.clone()));
        }
    }

    fn remove_session(
        &mut self,
        key: SessionKey,
        reason: SessionEndReason,
        failure: Option<hearken_core::conference::SessionFailure>,
        now: Instant,
    ) {
        if self.natives.contains_key(&key) || self.sips.contains_key(&key) {
            self.remove_plain(key, reason, now);
            return;
        }
        let Some(mut session) = self.sessions.remove(&key) else {
            return;
        };
        // Say goodbye (RTCP BYE, DTLS close_notify) when the peer is there.
        if session.connected && session.rtc.close().is_ok() {
            while let Ok(out) = session.rtc.poll_output() {
                match out {
                    RtcOutput::Transmit(t) => self.shared.out.push_back(Output::Transmit(t)),
                    RtcOutput::Timeout(_) => break,
                    RtcOutput::Event(_) => {}
                }
            }
        }
        self.forget_routes(key, &session);
        self.count_session_end(reason, failure.as_ref().map(|f| f.cause), &session);
        match &failure {
            Some(f) => warn!(
                parent: &session.span,
                reason = reason.as_label(),
                cause = f.cause.as_label(),
                detail = %f.detail,
                "session failed"
            ),
            None => info!(parent: &session.span, reason = reason.as_label(), "session ended"),
        }
        self.shared
            .out
            .push_back(Output::Event(EngineEvent::SessionEnded {
                call_id: session.call_id.clone(),
                secret: session.secret.to_string(),
                reason,
                failure: failure.clone(),
            }));
        let call_id = session.call_id.clone();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.sessions.retain(|&k| k != key);
        if let Some(failure) = failure {
            call.conference.handle_session_failed(failure);
        }
        // A client that vanished left when we last heard from it, not when
        // we noticed; its track is not padded with time it was gone.
        let left_at = match reason {
            SessionEndReason::Disconnected | SessionEndReason::Failed => session.last_input,
            _ => now,
        };
        let left = call.conference.handle_session_removed(key, left_at);
        self.flush_call(&call_id, now);
        if left == 0 && reason != SessionEndReason::CallEnded {
            self.end_call(&call_id, EndReason::LastSessionLeft, None, now);
        }
    }

    fn forget_routes(&mut self, key: SessionKey, session: &Session) {
        for addr in &session.remote_addrs {
            if self.routes.by_addr.get(addr) == Some(&key) {
                self.routes.by_addr.remove(addr);
            }
        }
        self.routes.by_ufrag.remove(&session.local_ufrag);
        self.routes.by_secret.remove(&session.secret);
    }

    fn count_session_end(
        &mut self,
        reason: SessionEndReason,
        cause: Option<FailureCause>,
        session: &Session,
    ) {
        let m = &self.shared.metrics;
        m.sessions_active.dec();
        m.ingest_sessions.get(Ingest::Whip).dec();
        m.sessions_ended.get(reason).inc();
        if let Some(cause) = cause {
            m.sessions_failed.get(cause).inc();
        }
        m.speakers_active.sub(session.speakers.len() as i64);
    }

    fn end_call(
        &mut self,
        call_id: &CallId,
        reason: EndReason,
        done: Option<CallDone>,
        now: Instant,
    ) {
        let mut done = Some(done);
        self.contained(call_id, now, |engine| {
            let keys = engine
                .calls
                .get(call_id)
                .map(|c| c.sessions.clone())
                .unwrap_or_default();
            for key in keys {
                engine.remove_session(key, SessionEndReason::CallEnded, None, now);
            }
            let now_utc = engine.shared.clock.utc(now);
            let Some(call) = engine.calls.get_mut(call_id) else {
                return;
            };
            call.conference.handle_end(now, now_utc, reason);
            engine.flush_call(call_id, now);
            let Some(call) = engine.calls.remove(call_id) else {
                return;
            };
            let summary = call.conference.summary();
            let m = &engine.shared.metrics;
            m.calls_active.dec();
            m.calls_ended.get(reason).inc();
            info!(parent: &call.span, reason = reason.as_label(), "call ended");
            let done = done.take().flatten();
            if call.conference.has_started() {
                engine
                    .shared
                    .out
                    .push_back(Output::Event(EngineEvent::CallEnded {
                        call_id: call_id.clone(),
                    }));
                engine
                    .shared
                    .out
                    .push_back(Output::Sink(SinkMsg::CallEnded {
                        summary: Box::new(summary),
                        done,
                    }));
            } else if let Some(done) = done {
                // Nothing was recorded: no sink has anything to finish.
                let _ = done.send(summary);
            }
        });
    }

    /// Sets `hearken_consent_participants` to this engine's share. Each
    /// engine owns a disjoint set of calls and reports its counts as a delta
    /// against what it reported last, so engines add up.
    fn publish_census(&mut self) {
        let mut counts = [0i64; 5];
        for call in self.calls.values() {
            for state in call.conference.consent_states() {
                counts[state.index()] += 1;
            }
        }
        let gauges = &self.shared.metrics.consent_participants;
        for (i, gauge) in gauges.iter().enumerate() {
            let delta = counts[i] - self.census[i];
            if delta != 0 {
                gauge.add(delta);
            }
        }
        self.census = counts;
    }

    fn flush_counts(&mut self) {
        let c = std::mem::take(&mut self.shared.counts);
        let m = &self.shared.metrics;
        if c.packets > 0 {
            m.rtp_packets_received.inc_by(c.packets);
            m.rtp_bytes_received.inc_by(c.bytes);
        }
        for (ingest, (packets, bytes)) in [
            (Ingest::Whip, (c.whip_packets, c.whip_bytes)),
            (Ingest::Native, (c.native_packets, c.native_bytes)),
            (Ingest::Sip, (c.sip_packets, c.sip_bytes)),
        ] {
            if packets > 0 {
                m.ingest_packets.get(ingest).inc_by(packets);
                m.ingest_bytes.get(ingest).inc_by(bytes);
            }
        }
        if c.lost > 0 {
            m.rtp_packets_lost.inc_by(c.lost);
        }
        if c.reanchored > 0 {
            m.timeline_reanchors.inc_by(c.reanchored);
        }
        if c.dtmf > 0 {
            m.dtmf_packets_received.inc_by(c.dtmf);
        }
        if c.unrouted > 0 {
            m.udp_unrouted_datagrams.inc_by(c.unrouted);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.flush_counts();
    }
}

/// Acts on one str0m event of a session.
fn handle_event(
    key: SessionKey,
    session: &mut Session,
    call: &mut Call,
    event: Event,
    shared: &mut Shared,
    now: Instant,
) {
    match event {
        Event::Connected => {
            session.connected = true;
            info!(parent: &session.span, "session connected");
            call.conference
                .handle_session_connected(key, now, shared.clock.utc(now));
        }
        Event::IceConnectionStateChange(state) => match state {
            IceConnectionState::Connected | IceConnectionState::Completed => {
                session.ice_connected = true;
            }
            IceConnectionState::Disconnected => {
                session.end(SessionEndReason::Disconnected, None);
            }
            _ => {}
        },
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
            let stream_id = offered.stream_id().map(str::to_owned);
            let participant =
                call.conference
                    .handle_speaker_added(key, &mid_text, stream_id.as_deref(), now);
            call.conference.handle_speaker_media(
                participant,
                SpeakerMedia {
                    ingest: Ingest::Whip,
                    codec: "opus",
                    transcoded: false,
                },
            );
            let span = debug_span!(parent: &session.span, "participant", mid = %mid_text);
            debug!(parent: &span, participant = participant.0, "speaker added");
            let speaker = Speaker {
                participant,
                span,
                dtmf: None,
            };
            if session.speakers.insert(added.mid, speaker).is_none() {
                shared.metrics.speakers_active.inc();
            }
        }
        Event::MediaData(data) => {
            let Some(speaker) = session.speakers.get_mut(&data.mid) else {
                return;
            };
            let (mid, seq, rtp_time) = (data.mid, **data.seq_range.end(), data.time.numer());
            if let CodecExtra::Tele(ev) = &data.codec_extra {
                whip_telephone_event(speaker, call, shared, rtp_time, ev, now);
            } else if data.params.spec().codec != Codec::Opus {
                shared.metrics.frames_dropped.get(DropReason::NotOpus).inc();
            } else {
                let frame = AudioFrame {
                    rtp_time,
                    seq_first: **data.seq_range.start(),
                    seq_last: seq,
                    arrival: data.network_time,
                    payload: data.data,
                    voice: VoiceHint::from_extension(
                        data.ext_vals.audio_level,
                        data.ext_vals.voice_activity,
                    ),
                    source: None,
                };
                whip_frame(key, speaker, call, shared, frame, now);
            }
            // The rest of this SSRC's packets are decrypted by the engine.
            session.receive_directly(mid, seq, rtp_time);
        }
        _ => {}
    }
}

/// One SRTP packet of a stream the session decrypts itself
/// ([`Session::receive_directly`]), decrypted into `plain`: what str0m's
/// receive and [`handle_event`] do for the others, for one Opus m-line.
#[allow(clippy::too_many_arguments)]
fn direct_packet(
    key: SessionKey,
    session: &mut Session,
    call: &mut Call,
    shared: &mut Shared,
    ssrc: u32,
    data: &[u8],
    plain: &mut Vec<u8>,
    now: Instant,
) {
    let Some(receiver) = session.srtp_in.as_mut() else {
        return;
    };
    let Some(at) = session.direct.iter().position(|d| d.ssrc == ssrc) else {
        return;
    };
    let accepted = match receiver.unprotect(data, plain) {
        Ok(accepted) => accepted,
        Err(e) => {
            trace!(parent: &session.span, ssrc, error = %e, "srtp packet dropped");
            let reason = match e {
                SrtpError::Malformed => IngestError::MalformedRtp,
                SrtpError::Replay => IngestError::SrtpReplay,
                SrtpError::Auth => IngestError::SrtpAuth,
            };
            shared.metrics.whip_errors.get(reason).inc();
            let stream = &mut session.direct[at];
            if e == SrtpError::Auth {
                stream.auth_failures += 1;
                if stream.authenticated == 0 && stream.auth_failures >= RECEIVE_DIRECTLY_GIVE_UP {
                    warn!(parent: &session.span, ssrc, "no packet authenticated with the session's own SRTP keys: str0m receives them again");
                    session.stop_receiving_directly();
                }
            }
            return;
        }
    };
    let stream = &mut session.direct[at];
    stream.authenticated += 1;
    stream.auth_failures = 0;
    let Some(speaker) = session.speakers.get_mut(&stream.mid) else {
        return;
    };
    let (header, payload) = plain.split_at(accepted.payload_start);
    let pt = header[1] & 0x7f;
    let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let rtp_time = stream.timestamps.extend_timestamp(timestamp);
    if stream.opus.contains(&pt) {
        if payload.is_empty() {
            return; // Padding only.
        }
        let frame = AudioFrame {
            rtp_time,
            seq_first: accepted.index,
            seq_last: accepted.index,
            arrival: now,
            payload: Arc::from(payload),
            voice: stream.voice_hint(header),
            source: None,
        };
        whip_frame(key, speaker, call, shared, frame, now);
    } else if let Some(&(_, clock)) = stream.tele.iter().find(|(p, _)| *p == pt) {
        match TelephoneEvent::parse(payload, clock) {
            Some(ev) => whip_telephone_event(speaker, call, shared, rtp_time, &ev, now),
            None => shared
                .metrics
                .whip_errors
                .get(IngestError::MalformedRtp)
                .inc(),
        }
    } else {
        shared.metrics.frames_dropped.get(DropReason::NotOpus).inc();
    }
}

/// An RFC 4733 event of a WHIP speaker, from str0m or decrypted here.
fn whip_telephone_event(
    speaker: &mut Speaker,
    call: &mut Call,
    shared: &mut Shared,
    rtp_time: u64,
    ev: &TelephoneEvent,
    now: Instant,
) {
    shared.counts.dtmf += 1;
    trace!(parent: &speaker.span, event = ev.event, end = ev.end, "telephone-event");
    let digit = speaker
        .dtmf
        .get_or_insert_with(|| DtmfAssembler::new(DtmfConfig::default()))
        .handle_packet(rtp_time, ev.event, ev.end, ev.duration, now);
    if let Some(digit) = digit {
        signal_digit(call, speaker, digit.key, now);
    }
}

/// One Opus frame of a WHIP speaker, from str0m or decrypted here: heard
/// by the verbal tap, then placed on the call's timeline.
fn whip_frame(
    key: SessionKey,
    speaker: &Speaker,
    call: &mut Call,
    shared: &mut Shared,
    frame: AudioFrame,
    now: Instant,
) {
    #[cfg(any(test, feature = "fault-injection"))]
    if std::mem::take(&mut call.panic_on_next_frame) {
        panic!("injected fault: a bug while handling a frame");
    }
    // Heard before the consent gate, which withholds the audio of exactly
    // those being asked; nothing heard is recorded.
    if let Some(v) = shared.verbal.as_mut() {
        v.tap(
            &call.conference,
            speaker.participant,
            frame.rtp_time,
            &frame.payload,
            now,
            &shared.metrics,
        );
    }
    let bytes = frame.payload.len() as u64;
    let stats = call
        .conference
        .handle_audio(key, speaker.participant, frame);
    count_frame(shared, &stats, bytes);
    trace!(parent: &speaker.span, bytes, "frame");
}

/// Counts what the conference made of one frame of `bytes` bytes.
fn count_frame(shared: &mut Shared, stats: &FrameStats, bytes: u64) {
    let counts = &mut shared.counts;
    counts.packets += stats.packets;
    counts.bytes += bytes;
    counts.lost += stats.lost;
    counts.reanchored += stats.reanchored;
    if let Some(reason) = stats.withheld {
        shared.metrics.frames_withheld.get(reason).inc();
    }
}

/// Hands one plain-RTP packet of `speaker` (a native flow or a SIP caller,
/// on session `key`) to the call: audio frames to the conference, a
/// telephone event to the key assembler; what cannot be used is counted
/// under `ingest`'s errors.
fn handle_plain_packet(
    key: SessionKey,
    speaker: &mut PlainSpeaker,
    call: &mut Call,
    shared: &mut Shared,
    ingest: Ingest,
    packet: &[u8],
    arrival: Instant,
) {
    #[cfg(any(test, feature = "fault-injection"))]
    if std::mem::take(&mut call.panic_on_next_frame) {
        panic!("injected fault: a bug while handling a frame");
    }
    let frames = match speaker.handle_packet(packet, arrival) {
        Ok(PlainPacket::Audio(frames)) => frames,
        Ok(PlainPacket::Event {
            rtp_time,
            event,
            end,
            duration,
        }) => {
            shared.counts.dtmf += 1;
            // RFC 4733 §2.5.1.3: the duration counts the codec's clock.
            let clock = f64::from(speaker.flow.codec.clock_rate());
            let digit = speaker
                .dtmf
                .get_or_insert_with(|| DtmfAssembler::new(DtmfConfig::default()))
                .handle_packet(
                    rtp_time,
                    event,
                    end,
                    Duration::from_secs_f64(f64::from(duration) / clock),
                    arrival,
                );
            if let Some(digit) = digit
                && call
                    .conference
                    .handle_digit(speaker.participant, digit.key, arrival)
            {
                debug!(parent: &speaker.span, key = %digit.key.as_char(), "dtmf consent signal");
            }
            return;
        }
        Ok(PlainPacket::Rtcp) => return,
        Err(reason) => {
            trace!(parent: &speaker.span, reason = reason.as_label(), "packet dropped");
            let errors = match ingest {
                Ingest::Sip => &shared.metrics.sip_errors,
                _ => &shared.metrics.native_errors,
            };
            errors.get(reason).inc();
            return;
        }
    };
    let Some(seq) = frames.first().map(|f| f.seq_last) else {
        return;
    };
    for frame in speaker.reorder.push(seq, frames, arrival) {
        let bytes = frame.payload.len() as u64;
        let stats = call
            .conference
            .handle_audio(key, speaker.participant, frame);
        count_frame(shared, &stats, bytes);
    }
}

/// Passes a pressed key to the conference, which knows the consent digits.
fn signal_digit(
    call: &mut Call,
    speaker: &Speaker,
    key: hearken_core::dtmf::DtmfKey,
    now: Instant,
) {
    if call.conference.handle_digit(speaker.participant, key, now) {
        debug!(parent: &speaker.span, key = %key.as_char(), "dtmf consent signal");
    } else {
        debug!(parent: &speaker.span, key = %key.as_char(), "dtmf key is not a consent digit");
    }
}

/// Starts playing `prompt` to each of `to`: into every sendrecv m-line that
/// carries one of them. Those without such an m-line cannot hear the bot;
/// the prompt counts as shown by the provider and the audit says so.
/// The call `call_id`, made (with what the provider said about it so far)
/// if this engine does not carry it yet.
fn call_entry<'a>(
    calls: &'a mut HashMap<CallId, Call>,
    consent: &ConsentSetup,
    metrics: &MediaMetrics,
    call_id: &CallId,
    early_inputs: &[CallInput],
    resume: Option<(&Resume, DateTime<Utc>)>,
    now: Instant,
) -> &'a mut Call {
    calls.entry(call_id.clone()).or_insert_with(|| {
        let engine = ConsentEngine::new(consent.rules.clone(), consent.engine.clone());
        let mut conference =
            Conference::new(call_id.clone(), engine).with_hold_budget(consent.hold_budget.clone());
        if let Some((resume, now_utc)) = resume {
            info!(call = %call_id, from = %resume.from_node, started_at = %resume.started_at, "call goes on here after its node was lost");
            conference.resume_from(resume.started_at, now, now_utc);
            for input in &resume.inputs {
                apply_input(&mut conference, input.clone(), now);
            }
        }
        for input in early_inputs {
            apply_input(&mut conference, input.clone(), now);
        }
        metrics.calls_active.inc();
        Call {
            conference,
            sessions: Vec::new(),
            span: info_span!("call", id = %call_id),
            scheduled: None,
            gate_since: HashMap::new(),
            #[cfg(any(test, feature = "fault-injection"))]
            panic_on_next_frame: false,
        }
    })
}

/// Hands what the provider said to the call's conference.
fn apply_input(conference: &mut Conference, input: CallInput, now: Instant) {
    let CallInput {
        participant_id: id,
        kind,
    } = input;
    match kind {
        InputKind::Details(details) => conference.handle_details(&id, details, now),
        InputKind::Presence(present) => conference.handle_roster(&id, present, now),
        InputKind::Notice { shown_at, how } => conference.handle_notice(&id, shown_at, &how, now),
        InputKind::Signal {
            decision,
            method,
            evidence,
        } => conference.handle_signal(&id, decision, method, evidence, now),
    }
}

fn start_prompt(
    call: &mut Call,
    sessions: &mut FxHashMap<SessionKey, Session>,
    sips: &mut FxHashMap<SessionKey, SipSession>,
    shared: &mut Shared,
    prompt: PromptKind,
    to: Vec<String>,
    now: Instant,
) {
    let mut audible_to = Vec::new();
    for key in &call.sessions {
        let Some(sip) = sips.get_mut(key) else {
            continue;
        };
        let Some(id) = call.conference.participant_id(sip.participant) else {
            continue;
        };
        if !to.iter().any(|t| t == id) {
            continue;
        }
        // A caller who holds the call hears it when they resume.
        audible_to.push(id.to_owned());
        if sip.can_hear() {
            queue_sip_prompt(sip, prompt, id.to_owned(), &shared.consent.prompts, now);
            shared
                .timers
                .schedule(&mut sip.scheduled, now, Timer::Session(*key));
        } else {
            sip.waiting.push(prompt);
        }
    }
    for key in &call.sessions {
        let Some(session) = sessions.get_mut(key) else {
            continue;
        };
        if !session.connected {
            continue;
        }
        let mut started = false;
        for (mid, speaker) in &session.speakers {
            let Some(id) = call.conference.participant_id(speaker.participant) else {
                continue;
            };
            if !to.iter().any(|t| t == id) {
                continue;
            }
            let sends = session
                .rtc
                .media(*mid)
                .is_some_and(|m| m.direction().is_sending());
            if !sends {
                continue;
            }
            audible_to.push(id.to_owned());
            let mut line = session.prompt_lines.get(mid).copied();
            let playback = Playback::queued(
                *mid,
                prompt,
                id.to_owned(),
                &mut line,
                &shared.consent.prompts,
                now,
            );
            if let Some(line) = line {
                session.prompt_lines.insert(*mid, line);
            }
            session.playbacks.push(playback);
            started = true;
        }
        if started {
            shared
                .timers
                .schedule(&mut session.scheduled, now, Timer::Session(*key));
        }
    }
    shared.metrics.prompts_played.get(prompt).inc();
    let silent: Vec<String> = to
        .into_iter()
        .filter(|id| !audible_to.contains(id))
        .collect();
    if !silent.is_empty() {
        // They cannot hear the bot (no sending m-line): the engine decides
        // what that means (a notice counts only with the provider's own).
        call.conference
            .handle_prompt_played(prompt, &silent, Delivery::Inaudible, now, now);
    }
}

/// Takes `key` off the dialogs waiting to be latched from `ip`.
fn forget_latch(
    latch: &mut FxHashMap<std::net::IpAddr, Vec<SessionKey>>,
    ip: std::net::IpAddr,
    key: SessionKey,
) {
    if let Some(waiting) = latch.get_mut(&ip) {
        waiting.retain(|&k| k != key);
        if waiting.is_empty() {
            latch.remove(&ip);
        }
    }
}

/// Queues `prompt` to a SIP caller (after whatever plays to them now).
fn queue_sip_prompt(
    sip: &mut SipSession,
    prompt: PromptKind,
    to: String,
    prompts: &hearken_core::prompt::PromptSet,
    now: Instant,
) {
    if sip.line.is_none_or(|l| l.free_at <= now)
        && let Some(sender) = sip.sender.as_mut()
    {
        sender.start_talkspurt();
    }
    let playback = Playback::queued(
        str0m::media::Mid::from("sip"),
        prompt,
        to,
        &mut sip.line,
        prompts,
        now,
    );
    sip.playbacks.push(playback);
}

/// Counts an audit event in the consent metrics.
fn count_audit(call: &mut Call, event: &AuditEvent, metrics: &MediaMetrics) {
    metrics.consent_events.get(event.kind()).inc();
    match event {
        AuditEvent::HoldCommitted { seconds, .. } => {
            metrics
                .consent_hold_committed_seconds
                .inc_by(seconds.max(0.0));
        }
        AuditEvent::HoldDiscarded {
            seconds, reason, ..
        } => {
            metrics
                .consent_hold_discarded_seconds
                .get(*reason)
                .inc_by(seconds.max(0.0));
        }
        AuditEvent::StateChanged { to, .. } => {
            metrics.consent_transitions.get(*to).inc();
        }
        AuditEvent::GateChanged {
            open,
            participant,
            t,
            ..
        } => {
            metrics
                .consent_gate_changes
                .get(GateState::from(*open))
                .inc();
            if let Some((since, was_open)) =
                call.gate_since.insert(participant.clone(), (*t, *open))
            {
                metrics
                    .consent_gate_seconds
                    .get(GateState::from(was_open))
                    .inc_by((t - since).max(0.0));
            }
        }
        _ => {}
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
