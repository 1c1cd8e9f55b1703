//! `--reconnect`: a speaker whose session dies goes on in a new one.
//!
//! A media thread declares a connected session lost when nothing has come
//! from its node for the silence limit (`--reconnect-silence-ms`, 2 s by
//! default), or when str0m's ICE agent reports the connection
//! `Disconnected`, whichever comes first. With `--reconnect` every client
//! checks consent every [`CONSENT_INTERVAL`] (str0m's default is every
//! 3 s), so a live node, which answers each check, is never silent for
//! long; str0m's own verdict takes about 5 s at that interval, so the
//! silence limit is what normally detects a dead node.
//!
//! The media thread hands the speaker's speech ([`Resume`]) to the
//! coordinator, which starts a [`reconnect`] task for it: a fresh offer
//! for the same call id and msid (so the same participant) POSTed to the
//! entry `--url`, following redirects; the new session is handed to the
//! same media thread, which says whether it connected. A failed attempt (an
//! HTTP error such as a 503 from a fleet that has not noticed the loss yet,
//! a refused connection, a bad answer, or no connection within
//! [`ATTEMPT_CONNECT_TIMEOUT`]) is retried after [`Retry`]'s backoff until
//! [`RECONNECT_DEADLINE`] after the loss; past it the speaker is failed.
//! An attempt answered 201 that then fails is DELETEd (its node is alive);
//! the lost session is not (its node is taken for dead).
//!
//! While the session is down the speaker sends nothing: its speech goes on
//! on the wall clock, and what falls due meanwhile is counted as
//! `packets_sent_while_disconnected`, never as sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, watch};
use url::Url;

use crate::audio::Audio;
use crate::client::{AttemptFailed, PendingSpeaker, Resume};
use crate::media::MediaInbox;
use crate::whip::{Placement, Server};

/// How often a client checks consent once connected with `--reconnect`
/// (str0m's maximum STUN retransmission timeout, which also paces its
/// consent checks). Each check is answered by a live node.
pub const CONSENT_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a speaker keeps trying to reconnect after its loss was detected.
pub const RECONNECT_DEADLINE: Duration = Duration::from_secs(20);
/// A reconnect attempt answered 201 must connect (ICE + DTLS) within this
/// of its POST, and within the deadline.
pub const ATTEMPT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait after the first failed attempt; it doubles after each failure
/// up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// Waits are shortened by up to this fraction, at random, so that the
/// speakers of a dead node do not retry in lockstep.
pub const RETRY_JITTER: f64 = 0.25;
/// Longest the coordinator waits for the reconnect tasks once sending has
/// stopped (each ends at once when told).
pub const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The wait after `failures` failed attempts in a row (at least one):
/// 250 ms, 500 ms, then 1 s.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// When to try again: the backoff after each failure, until the deadline.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    deadline: Instant,
    failures: u32,
}

impl Retry {
    /// Retries for a loss detected at `lost_at`, until `deadline`
    /// ([`RECONNECT_DEADLINE`] in a run) after it.
    pub fn new(lost_at: Instant, deadline: Duration) -> Self {
        Self {
            deadline: lost_at + deadline,
            failures: 0,
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// After an attempt failed at `now`: when to try again, or `None` when
    /// that would be at or past the deadline (the speaker has failed).
    /// `random` (in `[0, 1)`) shortens the wait by up to [`RETRY_JITTER`].
    pub fn after_failure(&mut self, now: Instant, random: f64) -> Option<Instant> {
        self.failures += 1;
        let shorten = RETRY_JITTER * random.clamp(0.0, 1.0);
        let at = now + backoff(self.failures).mul_f64(1.0 - shorten);
        (at < self.deadline).then_some(at)
    }
}

/// How a reconnect that did not succeed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Still not connected at the deadline.
    Failed,
    /// Sending stopped (the hold ended) before it connected.
    Unfinished,
}

impl Ended {
    /// The speaker's `errors_by_kind` key.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Failed => "reconnect_failed",
            Self::Unfinished => "reconnect_unfinished",
        }
    }
}

/// What a reconnect task tells the coordinator. (That the speaker
/// connected again comes from its media thread, in order with its losses.)
#[derive(Debug)]
pub enum ReconnectNote {
    /// An attempt's POST was answered 201: the speaker's session is now
    /// this one (for the final DELETE and the placement).
    Answered {
        /// The coordinator's session index.
        session: usize,
        /// The new session's URL.
        location: Url,
        /// Where it is.
        placement: Placement,
    },
    /// The attempt answered last did not connect and is being deleted: the
    /// speaker has no session for now.
    Discarded {
        /// The coordinator's session index.
        session: usize,
    },
    /// An attempt failed, for this reason (`http_503`, `connect_timeout`,
    /// …).
    AttemptFailed {
        /// The coordinator's session index.
        session: usize,
        /// A stable key.
        kind: String,
    },
    /// The reconnect gave up.
    Ended {
        /// The coordinator's session index.
        session: usize,
        /// Why.
        outcome: Ended,
        /// Packets that fell due from the loss until then, not sent.
        paused: u64,
        /// Attempts made.
        attempts: u32,
    },
}

/// What every reconnect task shares.
pub struct Reconnector {
    /// The server at `--url`, where every new offer goes.
    pub server: Server,
    /// The speech, to count what a speaker that gave up did not send.
    pub audio: Arc<Audio>,
    /// Where notes go.
    pub notes: UnboundedSender<ReconnectNote>,
    /// Set to when sending stopped once the hold is over: every task then
    /// ends.
    pub stopped: watch::Receiver<Option<Instant>>,
    /// `--reconnect-silence-ms`, for the new sessions' watchdogs.
    pub silence_limit: Duration,
    /// How long after its loss a speaker may reconnect
    /// ([`RECONNECT_DEADLINE`]).
    pub deadline: Duration,
}

/// A speaker whose session was lost.
pub struct Lost {
    /// The coordinator's session index.
    pub session: usize,
    /// Its call id.
    pub call_id: String,
    /// Its msid stream id (the participant id).
    pub stream_id: String,
    /// Its media thread.
    pub inbox: MediaInbox,
    /// Its speech.
    pub resume: Box<Resume>,
}

/// Why an attempt did not connect.
struct Failure {
    kind: String,
    /// The speech back, unless it was lost with a media thread.
    resume: Option<Box<Resume>>,
}

impl Failure {
    fn new(kind: impl Into<String>, resume: Box<Resume>) -> Self {
        Self {
            kind: kind.into(),
            resume: Some(resume),
        }
    }
}

/// Kind of an attempt cut short because sending stopped.
const STOPPED: &str = "stopped";

/// Reconnects one speaker: attempts until one connects, the deadline
/// passes, or sending stops.
pub async fn reconnect(ctx: Arc<Reconnector>, lost: Lost) {
    let Lost {
        session,
        call_id,
        stream_id,
        inbox,
        mut resume,
    } = lost;
    let mut stopped = ctx.stopped.clone();
    let mut retry = Retry::new(resume.lost_at, ctx.deadline);
    let mut attempts = 0;
    loop {
        if let Some(at) = *stopped.borrow() {
            ctx.end(session, Ended::Unfinished, &mut resume, at, attempts);
            return;
        }
        attempts += 1;
        let failure = match ctx
            .attempt(
                session,
                &call_id,
                &stream_id,
                &inbox,
                resume,
                &retry,
                &mut stopped,
            )
            .await
        {
            Ok(()) => return,
            Err(failure) => failure,
        };
        let Some(back) = failure.resume else {
            // Its media thread is gone: nothing left to reconnect.
            let _ = ctx.notes.send(ReconnectNote::Ended {
                session,
                outcome: Ended::Failed,
                paused: 0,
                attempts,
            });
            return;
        };
        resume = back;
        if failure.kind == STOPPED {
            continue;
        }
        let _ = ctx.notes.send(ReconnectNote::AttemptFailed {
            session,
            kind: failure.kind,
        });
        let now = Instant::now();
        let Some(at) = retry.after_failure(now, rand::random()) else {
            ctx.end(session, Ended::Failed, &mut resume, now, attempts);
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            _ = stopped.wait_for(Option::is_some) => {}
        }
    }
}

impl Reconnector {
    /// One attempt: a fresh offer, POSTed to `--url` (following
    /// redirects), and the new session handed to the speaker's media
    /// thread until it connects or fails.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        session: usize,
        call_id: &str,
        stream_id: &str,
        inbox: &MediaInbox,
        resume: Box<Resume>,
        retry: &Retry,
        stopped: &mut watch::Receiver<Option<Instant>>,
    ) -> Result<(), Failure> {
        let (pending, offer) = match PendingSpeaker::new(stream_id, Some(CONSENT_INTERVAL)) {
            Ok(p) => p,
            Err(_) => return Err(Failure::new("client_setup", resume)),
        };
        let post_started = Instant::now();
        let remaining = retry.remaining(post_started);
        let answer = tokio::select! {
            answer = tokio::time::timeout(remaining, self.server.offer(call_id, offer)) => {
                match answer {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(e)) => return Err(Failure::new(e.kind(), resume)),
                    Err(_) => return Err(Failure::new("http_timeout", resume)),
                }
            }
            _ = stopped.wait_for(Option::is_some) => return Err(Failure::new(STOPPED, resume)),
        };
        let location = answer.location;
        let _ = self.notes.send(ReconnectNote::Answered {
            session,
            location: location.clone(),
            placement: answer.placement,
        });
        let answered = match pending.accept(&answer.sdp) {
            Ok(answered) => answered,
            Err(_) => {
                self.discard(session, location);
                return Err(Failure::new("bad_answer", resume));
            }
        };
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let speaker = answered.resumed(
            session,
            post_started,
            ATTEMPT_CONNECT_TIMEOUT.min(remaining),
            *resume,
            self.silence_limit,
            outcome_tx,
        );
        // Should the thread be gone, the speaker's speech comes back on
        // `outcome_rx` all the same.
        inbox.add(speaker);
        match outcome_rx.await {
            Ok(Ok(())) => Ok(()),
            // Sending stopped: the session stays, and is DELETEd with the
            // others.
            Ok(Err(AttemptFailed { kind, resume })) if kind == STOPPED => {
                Err(Failure::new(kind, resume))
            }
            Ok(Err(AttemptFailed { kind, resume })) => {
                self.discard(session, location);
                Err(Failure::new(kind, resume))
            }
            Err(_) => Err(Failure {
                kind: "media_thread_gone".to_owned(),
                resume: None,
            }),
        }
    }

    /// Forgets an attempt's session that did not connect, and DELETEs it
    /// (its node answered, so it is alive) in the background.
    fn discard(&self, session: usize, location: Url) {
        let _ = self.notes.send(ReconnectNote::Discarded { session });
        let server = self.server.clone();
        tokio::spawn(async move {
            let _ = server.delete(&location).await;
        });
    }

    /// Gives up at `at`: counts what fell due since the loss, unsent.
    fn end(&self, session: usize, outcome: Ended, resume: &mut Resume, at: Instant, attempts: u32) {
        let paused = resume.skip_until(at, &self.audio);
        let _ = self.notes.send(ReconnectNote::Ended {
            session,
            outcome,
            paused,
            attempts,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250_ms_to_1_s() {
        let waits: Vec<u128> = (1..=6).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1_000, 1_000, 1_000, 1_000]);
        assert_eq!(backoff(0), RETRY_FIRST, "no failure yet counts as one");
        assert_eq!(backoff(u32::MAX), RETRY_MAX);
    }

    /// The retry times after failures that each take `attempt` (answered
    /// at once when zero), without jitter.
    fn schedule(attempt: Duration) -> Vec<Duration> {
        let lost = Instant::now();
        let mut retry = Retry::new(lost, RECONNECT_DEADLINE);
        let mut at = lost;
        let mut starts = vec![Duration::ZERO];
        loop {
            let failed_at = at + attempt;
            match retry.after_failure(failed_at, 0.0) {
                Some(next) => {
                    assert!(next > failed_at);
                    starts.push(next - lost);
                    at = next;
                }
                None => {
                    assert!(failed_at + backoff(retry.failures) >= lost + RECONNECT_DEADLINE);
                    return starts;
                }
            }
        }
    }

    #[test]
    fn attempts_back_off_then_go_every_second_until_the_deadline() {
        // Refused at once (a 503, a dead node): attempts at 0, 0.25, 0.75,
        // 1.75 s, then every second until the 20 s deadline.
        let starts = schedule(Duration::ZERO);
        let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(&ms[..5], [0, 250, 750, 1_750, 2_750]);
        assert_eq!(*ms.last().expect("attempts"), 19_750);
        assert_eq!(starts.len(), 3 + 19, "{ms:?}");
        // Attempts that each wait out the 5 s connect timeout: few of them.
        let slow = schedule(ATTEMPT_CONNECT_TIMEOUT);
        let ms: Vec<u128> = slow.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 5_250, 10_750, 16_750]);
    }

    #[test]
    fn jitter_only_shortens_the_wait_and_the_deadline_holds() {
        let lost = Instant::now();
        for random in [0.0, 0.3, 0.999, 1.0, -1.0, 7.0] {
            let mut retry = Retry::new(lost, RECONNECT_DEADLINE);
            let next = retry
                .after_failure(lost, random)
                .expect("before the deadline");
            let wait = next - lost;
            assert!(wait <= RETRY_FIRST, "{random}: {wait:?}");
            assert!(
                wait >= RETRY_FIRST.mul_f64(1.0 - RETRY_JITTER),
                "{random}: {wait:?}"
            );
        }
        let mut retry = Retry::new(lost, RECONNECT_DEADLINE);
        assert_eq!(retry.remaining(lost), RECONNECT_DEADLINE);
        let late = lost + RECONNECT_DEADLINE - Duration::from_millis(100);
        assert_eq!(retry.remaining(late), Duration::from_millis(100));
        assert_eq!(retry.after_failure(late, 0.0), None, "past the deadline");
        assert_eq!(
            retry.remaining(lost + RECONNECT_DEADLINE * 2),
            Duration::ZERO
        );
    }

    #[test]
    fn consent_checks_leave_the_default_silence_limit_several_answers() {
        let default = Duration::from_millis(crate::cli::DEFAULT_RECONNECT_SILENCE_MS);
        let shortest = Duration::from_millis(crate::cli::MIN_RECONNECT_SILENCE_MS);
        assert!(default >= CONSENT_INTERVAL * 4);
        assert!(shortest >= CONSENT_INTERVAL * 2);
        assert!(ATTEMPT_CONNECT_TIMEOUT < RECONNECT_DEADLINE);
        assert_eq!(Ended::Failed.kind(), "reconnect_failed");
        assert_eq!(Ended::Unfinished.kind(), "reconnect_unfinished");
    }
}

#[cfg(test)]
mod fleet;
