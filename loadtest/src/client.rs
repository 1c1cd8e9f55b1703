//! One speaker: a str0m `Rtc` in the WHIP client role (full ICE,
//! controlling, DTLS active) with one sendonly audio m-line on its own UDP
//! socket, paced by a [`Pacer`].
//!
//! Signalling builds a [`PendingSpeaker`] and its offer, then turns it into a
//! [`Speaker`] with the answer; a media thread owns the speaker from then on
//! and calls [`Speaker::receive`] when its socket is readable and
//! [`Speaker::on_timer`] at [`Speaker::wake_at`]. Neither blocks.
//!
//! With `--reconnect`, a connected speaker watches its server: silent for
//! the limit (or ICE `Disconnected`), its session is lost, and its speech
//! ([`Resume`]) goes on in a new session (see `reconnect.rs`), which skips
//! what fell due while it was down.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearken_testkit::client_config;
use hearken_testkit::{ClientError as TestkitError, Track, WhipOffer};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use crate::audio::{Audio, SAMPLE_RATE};
use crate::schedule::Pacer;

/// A session not connected (ICE + DTLS) this long after its POST was sent
/// counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A packet sent more than this after it was due counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(5);
/// Largest datagram read; str0m's own MTU target is well below it.
pub const RECV_BUFFER: usize = 2_048;

/// Why a speaker could not be created or accepted the answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The UDP socket could not be set up.
    #[error("udp socket: {0}")]
    Socket(#[from] std::io::Error),
    /// str0m refused the local candidate.
    #[error("local candidate: {0}")]
    Candidate(String),
    /// str0m produced no offer.
    #[error("no SDP offer produced")]
    NoOffer,
    /// The server's answer did not parse.
    #[error("answer SDP: {0}")]
    AnswerSdp(String),
    /// The answer parsed but str0m refused it.
    #[error("answer refused: {0}")]
    AnswerRefused(String),
}

/// Why a running speaker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not connected within its connect timeout ([`CONNECT_TIMEOUT`] of
    /// its POST for a first session).
    ConnectTimeout,
    /// ICE reported the peer gone after connecting.
    Disconnected,
    /// With `--reconnect`: nothing heard from the server for the silence
    /// limit after connecting.
    Silent,
    /// The `Rtc` returned an error.
    Rtc,
    /// The session closed (no writer for the m-line any more).
    Closed,
    /// The answer negotiated no Opus payload type.
    NoOpus,
}

impl Failure {
    /// Stable key for `errors_by_kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ConnectTimeout => "connect_timeout",
            Self::Disconnected => "ice_disconnected",
            Self::Silent => "server_silent",
            Self::Rtc => "rtc_error",
            Self::Closed => "session_closed",
            Self::NoOpus => "no_opus",
        }
    }

    /// Whether the failure means the server side went away (its node died
    /// or dropped the session), which `--reconnect` recovers from; the
    /// others are the client's own problems or a broken answer.
    pub fn is_loss(self) -> bool {
        matches!(self, Self::Disconnected | Self::Silent)
    }
}

/// What a call into a speaker changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    /// Nothing the media thread must act on.
    Running,
    /// ICE and DTLS completed just now, `ms` after the POST was sent.
    Connected {
        /// POST sent to connected, in milliseconds.
        ms: f64,
    },
    /// The speaker is dead; drop it.
    Failed(Failure),
}

impl Status {
    /// Combines two outcomes of one call: failure wins over connecting.
    fn and(self, later: Status) -> Status {
        match (self, later) {
            (Status::Failed(f), _) | (_, Status::Failed(f)) => Status::Failed(f),
            (Status::Connected { ms }, _) | (_, Status::Connected { ms }) => {
                Status::Connected { ms }
            }
            _ => Status::Running,
        }
    }
}

/// Counters shared by the speakers of one media thread (relaxed atomics: the
/// coordinator only needs totals, read between phases).
#[derive(Debug, Default)]
pub struct SendCounters {
    /// RTP packets written.
    pub packets: AtomicU64,
    /// Opus payload bytes written.
    pub payload_bytes: AtomicU64,
    /// Packets written more than [`LATE_AFTER`] after they were due.
    pub late: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_errors: AtomicU64,
    /// With `--reconnect`: packets not sent because their speaker's session
    /// was down (due between the loss being detected and the new session
    /// connecting). Not in `packets`.
    pub paused: AtomicU64,
    /// With `--reconnect`: of `packets`, those lost sessions sent after the
    /// last datagram they heard from their node (in the detection window).
    pub sent_before_detection: AtomicU64,
}

/// Where a speaker is in its speech, carried from a lost session to the
/// next one so that the new session goes on with the same schedule.
#[derive(Debug)]
pub struct Resume {
    /// The speech: clip, position and talk schedule, at the first packet
    /// not sent.
    pacer: Pacer,
    /// When the speaker's first session connected: sample 0 of the pacer's
    /// timeline, which keeps running on the wall clock while the session is
    /// down.
    started: Instant,
    /// When the loss was detected.
    pub lost_at: Instant,
}

impl Resume {
    /// Skips every packet due before `until` (the speaker was silent then);
    /// returns how many.
    pub fn skip_until(&mut self, until: Instant, audio: &Audio) -> u64 {
        skip_due_before(&mut self.pacer, self.started, until, audio)
    }
}

/// Advances `pacer` (whose timeline starts at `started`) past every packet
/// due before `until`; returns how many it skipped.
fn skip_due_before(pacer: &mut Pacer, started: Instant, until: Instant, audio: &Audio) -> u64 {
    let mut skipped = 0;
    while started + samples_to_duration(pacer.next_at()) < until {
        pacer.next(audio);
        skipped += 1;
    }
    skipped
}

/// How a reconnecting speaker's attempt ended, told to the task retrying.
pub type AttemptOutcome = Result<(), AttemptFailed>;

/// A reconnect attempt that did not connect: why, and the speech to carry
/// to the next attempt.
#[derive(Debug)]
pub struct AttemptFailed {
    /// Why (a stable key: `connect_timeout`, `stopped`, …).
    pub kind: &'static str,
    /// Where the speaker is in its speech.
    pub resume: Box<Resume>,
}

/// A reconnect attempt's speaker: when the loss was detected, and where to
/// say how the attempt ended.
struct Attempt {
    lost_at: Instant,
    outcome: tokio::sync::oneshot::Sender<AttemptOutcome>,
}

/// With `--reconnect`: the silence watchdog of a connected session.
#[derive(Debug, Clone, Copy)]
struct Watchdog {
    /// Silence after which the session is dead.
    limit: Duration,
    /// When the last datagram arrived from the server (or the session
    /// connected).
    last_heard: Instant,
    /// Packets written since then.
    sent_since_heard: u64,
}

/// A speaker whose offer is out, waiting for the answer.
pub struct PendingSpeaker {
    offer: WhipOffer,
    socket: std::net::UdpSocket,
    local: SocketAddr,
}

impl PendingSpeaker {
    /// Binds a socket on 127.0.0.1 and builds the offer: one sendonly audio
    /// m-line with msid `stream_id`. Returns the speaker and the offer SDP.
    ///
    /// With `consent_interval` (`--reconnect`), the client checks consent
    /// that often once connected instead of str0m's 3 s, so that a live
    /// server answers well within the silence watchdog's limit.
    pub fn new(
        stream_id: &str,
        consent_interval: Option<Duration>,
    ) -> Result<(Self, String), ClientError> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        // The offer every Hearken test and bench makes (the test kit's).
        let mut config = client_config();
        if let Some(interval) = consent_interval {
            config.set_max_stun_rto(interval);
        }
        let (offer, sdp) = WhipOffer::with_config(
            config,
            local,
            &[Track::send_only(stream_id)],
            Instant::now(),
        )
        .map_err(|e| match e {
            TestkitError::Candidate(_) => ClientError::Candidate(e.to_string()),
            _ => ClientError::NoOffer,
        })?;
        Ok((
            Self {
                offer,
                socket,
                local,
            },
            sdp,
        ))
    }

    /// Applies the server's answer.
    pub fn accept(self, answer: &str) -> Result<AnsweredSpeaker, ClientError> {
        let client = self.offer.accept(answer).map_err(|e| match e {
            TestkitError::AnswerSdp(why) => ClientError::AnswerSdp(why),
            other => ClientError::AnswerRefused(other.to_string()),
        })?;
        Ok(AnsweredSpeaker {
            mid: client.mids[0],
            rtc: client.rtc,
            socket: self.socket,
            local: self.local,
        })
    }
}

/// A speaker whose answer was accepted, to become a [`Speaker`].
pub struct AnsweredSpeaker {
    rtc: Rtc,
    socket: std::net::UdpSocket,
    local: SocketAddr,
    mid: Mid,
}

impl AnsweredSpeaker {
    /// A speaker's first session. `session` is the coordinator's index of
    /// this speaker, `post_started` when its POST was sent; with
    /// `reconnect` (the silence limit of `--reconnect`) a loss after
    /// connecting hands the speaker back rather than failing it.
    pub fn first(
        self,
        session: usize,
        post_started: Instant,
        pacer: Pacer,
        reconnect: Option<Duration>,
    ) -> Speaker {
        self.into_speaker(
            session,
            post_started,
            CONNECT_TIMEOUT,
            pacer,
            None,
            reconnect,
            None,
        )
    }

    /// A new session for a speaker whose session was lost: it goes on with
    /// `resume`'s speech once connected (skipping what fell due while it
    /// was down), and says on `outcome` whether it connected within
    /// `connect_timeout` of `post_started`.
    pub fn resumed(
        self,
        session: usize,
        post_started: Instant,
        connect_timeout: Duration,
        resume: Resume,
        silence_limit: Duration,
        outcome: tokio::sync::oneshot::Sender<AttemptOutcome>,
    ) -> Speaker {
        let Resume {
            pacer,
            started,
            lost_at,
        } = resume;
        self.into_speaker(
            session,
            post_started,
            connect_timeout,
            pacer,
            Some(started),
            Some(silence_limit),
            Some(Attempt { lost_at, outcome }),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn into_speaker(
        self,
        session: usize,
        post_started: Instant,
        connect_timeout: Duration,
        pacer: Pacer,
        started: Option<Instant>,
        reconnect: Option<Duration>,
        attempt: Option<Attempt>,
    ) -> Speaker {
        Speaker {
            session,
            rtc: self.rtc,
            socket: mio::net::UdpSocket::from_std(self.socket),
            local: self.local,
            mid: self.mid,
            pt: None,
            post_started,
            connect_timeout,
            connected: false,
            started,
            resync: false,
            pacer,
            rtc_timeout: Instant::now(),
            silence_limit: reconnect,
            watchdog: None,
            attempt,
        }
    }
}

/// A speaker with an accepted answer, owned by a media thread.
pub struct Speaker {
    /// The coordinator's index of this speaker.
    pub session: usize,
    rtc: Rtc,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    mid: Mid,
    /// The negotiated Opus payload type, looked up at the first write.
    pt: Option<Pt>,
    post_started: Instant,
    /// Not connected this long after `post_started` is a failure.
    connect_timeout: Duration,
    /// ICE and DTLS completed.
    connected: bool,
    /// Sample 0 of the pacer's timeline: when the speaker's first session
    /// connected (carried over by a reconnect).
    started: Option<Instant>,
    /// Just reconnected: skip what fell due while the session was down
    /// before writing again.
    resync: bool,
    pacer: Pacer,
    /// When the `Rtc` next wants `Input::Timeout`.
    rtc_timeout: Instant,
    /// `--reconnect`'s silence limit; `None` without the flag.
    silence_limit: Option<Duration>,
    /// Armed at connection with `--reconnect`.
    watchdog: Option<Watchdog>,
    /// Set while this is a reconnect attempt not yet connected.
    attempt: Option<Attempt>,
}

impl Speaker {
    /// The socket, to register with the media thread's poll.
    pub fn socket_mut(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// Whether a loss after connecting hands the speaker back for a new
    /// session (`--reconnect`) rather than failing it.
    pub fn reconnects(&self) -> bool {
        self.silence_limit.is_some() && self.connected
    }

    /// Whether this is a reconnect attempt not yet connected.
    pub fn is_attempt(&self) -> bool {
        self.attempt.is_some()
    }

    /// For a reconnect attempt that just connected: when its loss was
    /// detected; tells the task retrying that it connected.
    pub fn attempt_connected(&mut self) -> Option<Instant> {
        let attempt = self.attempt.take()?;
        let _ = attempt.outcome.send(Ok(()));
        Some(attempt.lost_at)
    }

    /// Ends a reconnect attempt that did not connect, giving its speech
    /// back to the task retrying; false if this is not an attempt.
    pub fn attempt_failed(self, kind: &'static str) -> bool {
        let Some(attempt) = self.attempt else {
            return false;
        };
        let resume = Box::new(Resume {
            pacer: self.pacer,
            started: self.started.unwrap_or(attempt.lost_at),
            lost_at: attempt.lost_at,
        });
        let _ = attempt.outcome.send(Err(AttemptFailed { kind, resume }));
        true
    }

    /// Ends a connected session that was lost at `lost_at`: its speech, to
    /// go on in a new session, and the packets it sent since it last heard
    /// from its node.
    pub fn into_resume(self, lost_at: Instant) -> (Box<Resume>, u64) {
        let sent_since_heard = self.watchdog.map_or(0, |w| w.sent_since_heard);
        let resume = Box::new(Resume {
            pacer: self.pacer,
            started: self.started.unwrap_or(lost_at),
            lost_at,
        });
        (resume, sent_since_heard)
    }

    /// When [`Speaker::on_timer`] must next be called: the earliest of the
    /// `Rtc`'s timeout, the next packet and the silence limit (once
    /// connected) and the connect deadline (before).
    pub fn wake_at(&self) -> Instant {
        let other = match (self.connected, self.started) {
            (true, Some(started)) => {
                let next = started + samples_to_duration(self.pacer.next_at());
                match self.watchdog {
                    Some(w) => next.min(w.last_heard + w.limit),
                    None => next,
                }
            }
            _ => self.post_started + self.connect_timeout,
        };
        self.rtc_timeout.min(other)
    }

    /// Reads every datagram waiting on the socket (the poll is edge
    /// triggered) and feeds them to the `Rtc`.
    pub fn receive(&mut self, buf: &mut [u8], counters: &SendCounters) -> Status {
        let mut status = Status::Running;
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    // Anything str0m cannot classify is not for us; ignore it
                    // as a browser would.
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                        if self.rtc.handle_input(Input::Receive(now, r)).is_err() {
                            return Status::Failed(Failure::Rtc);
                        }
                        if let Some(w) = &mut self.watchdog {
                            w.last_heard = now;
                            w.sent_since_heard = 0;
                        }
                    }
                    status = status.and(self.drive(counters));
                    if matches!(status, Status::Failed(_)) {
                        return status;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return status,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Nothing else is expected of an unconnected socket; stop
                // reading and let the Rtc's own timeouts decide whether the
                // session is gone.
                Err(_) => return status,
            }
        }
    }

    /// Does whatever is due at `now`: fails an unconnected session past its
    /// deadline or a connected one whose server fell silent, writes every
    /// packet due, and gives the `Rtc` its timeout.
    pub fn on_timer(&mut self, now: Instant, audio: &Audio, counters: &SendCounters) -> Status {
        if !self.connected && now >= self.post_started + self.connect_timeout {
            return Status::Failed(Failure::ConnectTimeout);
        }
        if self.watchdog.is_some_and(|w| now >= w.last_heard + w.limit) {
            return Status::Failed(Failure::Silent);
        }
        let mut status = Status::Running;
        // A write leaves the `Rtc` wanting a timeout at once (its pacer
        // queues the packet at the write's wallclock). Feeding it here rather
        // than through the media thread's heap halves the wake-ups per
        // packet. At most once per write, so an `Rtc` that keeps asking for
        // `now` cannot spin this loop.
        let mut timeout_allowed = true;
        loop {
            if matches!(status, Status::Failed(_)) {
                return status;
            }
            if timeout_allowed && now >= self.rtc_timeout {
                timeout_allowed = false;
                if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                    return Status::Failed(Failure::Rtc);
                }
                status = status.and(self.drive(counters));
                continue;
            }
            let (true, Some(started)) = (self.connected, self.started) else {
                return status;
            };
            if std::mem::take(&mut self.resync) {
                // What fell due while the session was down is not sent:
                // the speaker talked on while its connection was gone.
                let skipped = skip_due_before(&mut self.pacer, started, now, audio);
                counters.paused.fetch_add(skipped, Ordering::Relaxed);
            }
            let due = started + samples_to_duration(self.pacer.next_at());
            if due > now {
                return status;
            }
            status = status.and(self.write_next(now, due, audio, counters));
            timeout_allowed = true;
        }
    }
    /// Writes the next packet of the pacer (due at `due`).
    fn write_next(
        &mut self,
        now: Instant,
        due: Instant,
        audio: &Audio,
        counters: &SendCounters,
    ) -> Status {
        let planned = self.pacer.next(audio);
        let packet = planned.payload.packet(audio);
        let Some(writer) = self.rtc.writer(self.mid) else {
            return Status::Failed(Failure::Closed);
        };
        let pt = match self.pt {
            Some(pt) => pt,
            None => {
                let Some(pt) = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt())
                else {
                    return Status::Failed(Failure::NoOpus);
                };
                self.pt = Some(pt);
                pt
            }
        };
        // RFC 6464 levels are negative dBov in str0m's API; 0..=127 fits i8.
        let level = -i8::try_from(packet.level).unwrap_or(i8::MAX);
        let written = writer
            .audio_level(level, packet.voice)
            .start_of_talkspurt(planned.start_of_talkspurt)
            .write(
                pt,
                due,
                MediaTime::new(planned.at, Frequency::FORTY_EIGHT_KHZ),
                packet.data.clone(),
            );
        if written.is_err() {
            return Status::Failed(Failure::Rtc);
        }
        counters.packets.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = &mut self.watchdog {
            w.sent_since_heard += 1;
        }
        counters
            .payload_bytes
            .fetch_add(packet.data.len() as u64, Ordering::Relaxed);
        if now.saturating_duration_since(due) > LATE_AFTER {
            counters.late.fetch_add(1, Ordering::Relaxed);
        }
        // str0m requires its output drained before the next input; this is
        // also what actually encrypts and sends the packet.
        self.drive(counters)
    }

    /// Polls the `Rtc` until it only has a timeout left, sending what it
    /// transmits and noting what happened.
    fn drive(&mut self, counters: &SendCounters) -> Status {
        let mut status = Status::Running;
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.rtc_timeout = at;
                    return status;
                }
                Ok(Output::Transmit(t)) => {
                    if self.socket.send_to(&t.contents, t.destination).is_err() {
                        counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Output::Event(Event::Connected)) => {
                    if !self.connected {
                        let now = Instant::now();
                        self.connected = true;
                        // A first session starts its speech now; a new
                        // session goes on with the speech of the lost one.
                        if self.started.is_some() {
                            self.resync = true;
                        } else {
                            self.started = Some(now);
                        }
                        self.watchdog = self.silence_limit.map(|limit| Watchdog {
                            limit,
                            last_heard: now,
                            sent_since_heard: 0,
                        });
                        let ms = now.duration_since(self.post_started).as_secs_f64() * 1e3;
                        status = status.and(Status::Connected { ms });
                    }
                }
                Ok(Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                ))) => {
                    status = Status::Failed(Failure::Disconnected);
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return Status::Failed(Failure::Rtc),
            }
        }
    }
}

/// Wall-clock length of `samples` at 48 kHz.
pub fn samples_to_duration(samples: u64) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(SAMPLE_RATE);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_clock_converts_exactly() {
        assert_eq!(samples_to_duration(960), Duration::from_millis(20));
        assert_eq!(
            samples_to_duration(48_000 * 3_600),
            Duration::from_secs(3_600)
        );
    }

    #[test]
    fn failure_wins_over_connecting() {
        let failed = Status::Failed(Failure::Rtc);
        let connected = Status::Connected { ms: 1.0 };
        assert_eq!(connected.and(failed), failed);
        assert_eq!(failed.and(connected), failed);
        assert_eq!(Status::Running.and(connected), connected);
        assert_eq!(Status::Running.and(Status::Running), Status::Running);
    }

    #[test]
    fn only_losses_are_reconnected() {
        assert!(Failure::Disconnected.is_loss());
        assert!(Failure::Silent.is_loss());
        assert_eq!(Failure::Silent.kind(), "server_silent");
        for f in [
            Failure::ConnectTimeout,
            Failure::Rtc,
            Failure::Closed,
            Failure::NoOpus,
        ] {
            assert!(!f.is_loss(), "{f:?}");
        }
    }

    /// One clip of ten 20 ms packets, and DTX silence.
    fn audio() -> Audio {
        let packet = |level| crate::audio::AudioPacket {
            data: vec![0xf8, 0xff, 0xfe].into(),
            samples: crate::audio::FRAME_SAMPLES,
            level,
            voice: true,
        };
        Audio {
            clips: vec![crate::audio::Clip {
                name: "test".into(),
                packets: (0..10).map(packet).collect(),
            }],
            dtx_silence: packet(127),
            silence: packet(127),
        }
    }

    fn talking_pacer() -> Pacer {
        use rand::SeedableRng as _;
        let schedule =
            crate::schedule::TalkSchedule::new(1.0, rand::rngs::SmallRng::seed_from_u64(1));
        Pacer::new(schedule, true, 0, 0, 0)
    }

    #[test]
    fn a_resumed_speaker_skips_what_fell_due_while_it_was_down() {
        let audio = audio();
        let started = Instant::now();
        let mut pacer = talking_pacer();
        // One second sent: 50 packets.
        assert_eq!(
            skip_due_before(
                &mut pacer,
                started,
                started + Duration::from_secs(1),
                &audio
            ),
            50
        );
        // Lost then; back 2.5 s later: 125 packets were due meanwhile and the
        // next one goes out on time, at 3.5 s.
        let mut resume = Resume {
            pacer,
            started,
            lost_at: started + Duration::from_secs(1),
        };
        let back = started + Duration::from_millis(3_500);
        assert_eq!(resume.skip_until(back, &audio), 125);
        assert_eq!(
            started + samples_to_duration(resume.pacer.next_at()),
            back,
            "the speech goes on where the wall clock is"
        );
        assert_eq!(resume.skip_until(back, &audio), 0, "nothing twice");
        // The clip position went on too: packet 175 of a 10-packet loop.
        assert_eq!(
            resume.pacer.next(&audio).payload,
            crate::schedule::Payload::Speech { clip: 0, index: 5 }
        );
    }

    #[test]
    fn dtx_silence_skips_one_packet_per_400_ms() {
        use rand::SeedableRng as _;
        let audio = audio();
        let started = Instant::now();
        let schedule =
            crate::schedule::TalkSchedule::new(0.0, rand::rngs::SmallRng::seed_from_u64(1));
        let mut pacer = Pacer::new(schedule, true, 0, 0, 0);
        assert_eq!(
            skip_due_before(
                &mut pacer,
                started,
                started + Duration::from_secs(2),
                &audio
            ),
            5
        );
    }

    #[test]
    fn an_offer_has_one_sendonly_audio_line_with_the_stream_id() {
        let (_speaker, sdp) = PendingSpeaker::new("spk3", None).expect("offer");
        assert_eq!(sdp.matches("m=audio").count(), 1);
        assert!(!sdp.contains("m=video"));
        assert!(sdp.contains("a=sendonly"));
        assert!(sdp.contains("a=msid:spk3 spk3-audio"), "{sdp}");
        assert!(
            sdp.contains("ssrc-audio-level"),
            "audio level extension offered"
        );
        assert!(sdp.contains("typ host"));
        // With --reconnect the offer is the same (consent timing is local).
        let (_speaker, again) =
            PendingSpeaker::new("spk3", Some(crate::reconnect::CONSENT_INTERVAL)).expect("offer");
        assert!(again.contains("a=msid:spk3 spk3-audio"), "{again}");
    }
}
