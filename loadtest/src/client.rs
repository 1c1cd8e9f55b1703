//! One speaker: a str0m `Rtc` in the WHIP client role (full ICE,
//! controlling, DTLS active) with one sendonly audio m-line on its own UDP
//! socket, paced by a [`Pacer`].
//!
//! Signalling builds a [`PendingSpeaker`] and its offer, then turns it into a
//! [`Speaker`] with the answer; a media thread owns the speaker from then on
//! and calls [`Speaker::receive`] when its socket is readable and
//! [`Speaker::on_timer`] at [`Speaker::wake_at`]. Neither blocks.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Not connected within [`CONNECT_TIMEOUT`] of its POST.
    ConnectTimeout,
    /// ICE reported the peer gone after connecting.
    Disconnected,
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
            Self::Rtc => "rtc_error",
            Self::Closed => "session_closed",
            Self::NoOpus => "no_opus",
        }
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
    pub fn new(stream_id: &str) -> Result<(Self, String), ClientError> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        // The offer every Hearken test and bench makes (the test kit's).
        let (offer, sdp) = WhipOffer::new(local, &[Track::send_only(stream_id)], Instant::now())
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

    /// Applies the server's answer. `session` is the coordinator's index of
    /// this session, `post_started` when its POST was sent.
    pub fn accept(
        self,
        answer: &str,
        session: usize,
        post_started: Instant,
        pacer: Pacer,
    ) -> Result<Speaker, ClientError> {
        let client = self.offer.accept(answer).map_err(|e| match e {
            TestkitError::AnswerSdp(why) => ClientError::AnswerSdp(why),
            other => ClientError::AnswerRefused(other.to_string()),
        })?;
        let mid = client.mids[0];
        Ok(Speaker {
            session,
            rtc: client.rtc,
            socket: mio::net::UdpSocket::from_std(self.socket),
            local: self.local,
            mid,
            pt: None,
            post_started,
            started: None,
            pacer,
            rtc_timeout: Instant::now(),
        })
    }
}

/// A speaker with an accepted answer, owned by a media thread.
pub struct Speaker {
    /// The coordinator's index of this session.
    pub session: usize,
    rtc: Rtc,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    mid: Mid,
    /// The negotiated Opus payload type, looked up at the first write.
    pt: Option<Pt>,
    post_started: Instant,
    /// When the session connected: sample 0 of the pacer's timeline.
    started: Option<Instant>,
    pacer: Pacer,
    /// When the `Rtc` next wants `Input::Timeout`.
    rtc_timeout: Instant,
}

impl Speaker {
    /// The socket, to register with the media thread's poll.
    pub fn socket_mut(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// When [`Speaker::on_timer`] must next be called: the earliest of the
    /// `Rtc`'s timeout, the next packet (once connected) and the connect
    /// deadline (before).
    pub fn wake_at(&self) -> Instant {
        let other = match self.started {
            Some(started) => started + samples_to_duration(self.pacer.next_at()),
            None => self.post_started + CONNECT_TIMEOUT,
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
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &buf[..n])
                        && self.rtc.handle_input(Input::Receive(now, r)).is_err()
                    {
                        return Status::Failed(Failure::Rtc);
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
    /// deadline, writes every packet due, and gives the `Rtc` its timeout.
    pub fn on_timer(&mut self, now: Instant, audio: &Audio, counters: &SendCounters) -> Status {
        if self.started.is_none() && now >= self.post_started + CONNECT_TIMEOUT {
            return Status::Failed(Failure::ConnectTimeout);
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
            let Some(started) = self.started else {
                return status;
            };
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
                    if self.started.is_none() {
                        let now = Instant::now();
                        self.started = Some(now);
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
    fn an_offer_has_one_sendonly_audio_line_with_the_stream_id() {
        let (_speaker, sdp) = PendingSpeaker::new("spk3").expect("offer");
        assert_eq!(sdp.matches("m=audio").count(), 1);
        assert!(!sdp.contains("m=video"));
        assert!(sdp.contains("a=sendonly"));
        assert!(sdp.contains("a=msid:spk3 spk3-audio"), "{sdp}");
        assert!(
            sdp.contains("ssrc-audio-level"),
            "audio level extension offered"
        );
        assert!(sdp.contains("typ host"));
    }
}
