//! A media thread: many [`Speaker`]s driven from one mio `Poll`.
//!
//! Every speaker's socket is registered with the poll, so only sockets that
//! have something are read; everything time-driven (the next 20 ms packet,
//! the `Rtc`'s timeouts, the connect deadline) goes through one min-heap of
//! wake-ups, so an idle millisecond costs nothing however many speakers the
//! thread has. The poll sleeps until the earliest wake-up (mio rounds its
//! timeout up to the next millisecond, so wakes are late by under 1 ms
//! rather than early, and never spin).
//!
//! The heap is lazily invalidated: a speaker whose wake-up moves pushes a new
//! entry and the old one is skipped when it surfaces (it no longer matches
//! the speaker's `scheduled` time). That keeps every reschedule `O(log n)`
//! without a decrease-key operation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::mpsc::UnboundedSender;

use crate::audio::Audio;
use crate::client::{RECV_BUFFER, Resume, SendCounters, Speaker, Status};

/// The token of the waker that signals new commands; speakers use their slot
/// index, which never reaches it.
const WAKER: Token = Token(usize::MAX);
/// Readiness events handled per poll.
const EVENTS_CAPACITY: usize = 1_024;

/// What a media thread tells the coordinator.
#[derive(Debug)]
pub enum MediaReport {
    /// Session `session` connected `ms` after its POST was sent.
    Connected {
        /// The coordinator's session index.
        session: usize,
        /// POST sent to `Event::Connected`, in milliseconds.
        ms: f64,
    },
    /// Session `session` ended on the client side.
    Failed {
        /// The coordinator's session index.
        session: usize,
        /// Why (a stable `errors_by_kind` key).
        kind: &'static str,
    },
    /// With `--reconnect`: session `session`'s connected session was lost
    /// (its node fell silent or ICE gave up on it); the speaker's speech, to
    /// go on in a new session.
    Lost {
        /// The coordinator's session index.
        session: usize,
        /// How the loss showed (`server_silent`, `ice_disconnected`).
        kind: &'static str,
        /// Where the speaker is in its speech.
        resume: Box<Resume>,
    },
    /// With `--reconnect`: session `session` connected again, `ms` after
    /// its loss was detected.
    Reconnected {
        /// The coordinator's session index.
        session: usize,
        /// Loss detected to the new session connected, in milliseconds.
        ms: f64,
    },
}

/// What the coordinator tells a media thread.
enum Command {
    /// Take over a speaker whose answer was accepted.
    Add(Box<Speaker>),
    /// Drop every speaker and exit.
    Stop,
}

/// Where speakers are handed to a media thread; cheap to clone into
/// signalling tasks.
#[derive(Clone)]
pub struct MediaInbox {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl MediaInbox {
    /// Hands a speaker to the thread. False if the thread has exited (a
    /// reconnect attempt's speech then goes back to its task).
    pub fn add(&self, speaker: Speaker) -> bool {
        match self.commands.send(Command::Add(Box::new(speaker))) {
            Ok(()) => self.waker.wake().is_ok(),
            Err(mpsc::SendError(Command::Add(speaker))) => {
                speaker.attempt_failed("media_thread_gone");
                false
            }
            Err(_) => false,
        }
    }
}

/// The coordinator's handle on one media thread.
pub struct MediaThread {
    inbox: MediaInbox,
    join: JoinHandle<()>,
    /// What its speakers sent.
    pub counters: Arc<SendCounters>,
}

impl MediaThread {
    /// Starts media thread `index`, which reports to `reports`.
    pub fn spawn(
        index: usize,
        audio: Arc<Audio>,
        reports: UnboundedSender<MediaReport>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands, inbox) = mpsc::channel();
        let counters = Arc::new(SendCounters::default());
        let mut worker = Worker {
            poll,
            inbox,
            audio,
            reports,
            counters: Arc::clone(&counters),
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
        };
        let join = std::thread::Builder::new()
            .name(format!("media-{index}"))
            .spawn(move || worker.run())?;
        Ok(Self {
            inbox: MediaInbox { commands, waker },
            join,
            counters,
        })
    }

    /// Where to hand this thread speakers.
    pub fn inbox(&self) -> MediaInbox {
        self.inbox.clone()
    }

    /// Stops the thread (dropping every speaker and its socket) and waits
    /// for it.
    pub fn stop(self) {
        let _ = self.inbox.commands.send(Command::Stop);
        let _ = self.inbox.waker.wake();
        // A panic in the thread has already been printed by the runtime.
        let _ = self.join.join();
    }
}

/// A speaker and the time of its live heap entry.
struct Slot {
    speaker: Box<Speaker>,
    /// The wake-up of its live heap entry; `None` while it has none.
    scheduled: Option<Instant>,
}

/// A heap entry: wake slot `slot` at `at`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Wake {
    at: Instant,
    slot: usize,
}

/// The state of a media thread.
struct Worker {
    poll: Poll,
    inbox: Receiver<Command>,
    audio: Arc<Audio>,
    reports: UnboundedSender<MediaReport>,
    counters: Arc<SendCounters>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<Wake>>,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse(w)| w.at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("hearken-loadtest: media poll failed: {e}");
                return;
            }
            for event in &events {
                if event.token() == WAKER {
                    continue;
                }
                let slot = event.token().0;
                if let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                    let status = entry.speaker.receive(&mut buf, &self.counters);
                    self.settle(slot, status, None);
                }
            }
            // Commands are checked every iteration, not only on the waker's
            // event: a wake can coalesce with a busy iteration.
            if !self.drain_commands() {
                return;
            }
            self.fire_timers();
        }
    }

    /// Takes new speakers; false when told to stop (or orphaned).
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.inbox.try_recv() {
                Ok(Command::Add(speaker)) => self.insert(speaker),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    self.release_attempts();
                    return false;
                }
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Registers a new speaker and schedules it at once.
    fn insert(&mut self, mut speaker: Box<Speaker>) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) =
            self.poll
                .registry()
                .register(speaker.socket_mut(), Token(slot), Interest::READABLE)
        {
            eprintln!("hearken-loadtest: cannot register a socket: {e}");
            self.free.push(slot);
            let session = speaker.session;
            if !speaker.attempt_failed("poll_register") {
                let _ = self.reports.send(MediaReport::Failed {
                    session,
                    kind: "poll_register",
                });
            }
            return;
        }
        // Run it at once: its `Rtc` has ICE checks to send.
        let now = Instant::now();
        self.slots[slot] = Some(Slot {
            speaker,
            scheduled: Some(now),
        });
        self.timers.push(Reverse(Wake { at: now, slot }));
    }

    /// Runs every speaker whose wake-up is due.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(wake)) = self.timers.peek() {
            if wake.at > now {
                break;
            }
            let Some(Reverse(wake)) = self.timers.pop() else {
                break;
            };
            let Some(entry) = self.slots.get_mut(wake.slot).and_then(Option::as_mut) else {
                continue;
            };
            if entry.scheduled != Some(wake.at) {
                // Superseded by a later reschedule.
                continue;
            }
            entry.scheduled = None;
            let status = entry.speaker.on_timer(now, &self.audio, &self.counters);
            // Whatever was due at `now` has been done; a wake-up at or before
            // `now` again would be fired again in this same loop, forever.
            self.settle(wake.slot, status, Some(now + Duration::from_nanos(1)));
        }
    }

    /// Acts on a speaker's status: reports it, drops a failed speaker, and
    /// otherwise makes sure the heap holds its next wake-up (not before
    /// `floor`, if given).
    ///
    /// With `--reconnect`, a connected session that is lost is handed back
    /// to the coordinator (its speech goes on in a new session), and a
    /// reconnect attempt says how it ended to the task retrying rather
    /// than to the coordinator.
    fn settle(&mut self, slot: usize, status: Status, floor: Option<Instant>) {
        let Some(entry) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let session = entry.speaker.session;
        match status {
            Status::Running => {}
            Status::Connected { ms } => {
                let report = match entry.speaker.attempt_connected() {
                    Some(lost_at) => MediaReport::Reconnected {
                        session,
                        ms: lost_at.elapsed().as_secs_f64() * 1e3,
                    },
                    None => MediaReport::Connected { session, ms },
                };
                let _ = self.reports.send(report);
            }
            Status::Failed(failure) => {
                let Some(speaker) = self.remove(slot) else {
                    return;
                };
                if speaker.is_attempt() {
                    speaker.attempt_failed(failure.kind());
                } else if failure.is_loss() && speaker.reconnects() {
                    let (resume, sent_since_heard) = speaker.into_resume(Instant::now());
                    self.counters
                        .sent_before_detection
                        .fetch_add(sent_since_heard, Ordering::Relaxed);
                    let _ = self.reports.send(MediaReport::Lost {
                        session,
                        kind: failure.kind(),
                        resume,
                    });
                } else {
                    let _ = self.reports.send(MediaReport::Failed {
                        session,
                        kind: failure.kind(),
                    });
                }
                return;
            }
        }
        let wake = match floor {
            Some(floor) => entry.speaker.wake_at().max(floor),
            None => entry.speaker.wake_at(),
        };
        if entry.scheduled != Some(wake) {
            entry.scheduled = Some(wake);
            self.timers.push(Reverse(Wake { at: wake, slot }));
        }
    }

    /// Takes speaker `slot` out of the poll and frees its slot.
    fn remove(&mut self, slot: usize) -> Option<Box<Speaker>> {
        let mut entry = self.slots.get_mut(slot)?.take()?;
        let _ = self.poll.registry().deregister(entry.speaker.socket_mut());
        self.free.push(slot);
        Some(entry.speaker)
    }

    /// On stop: gives every reconnect attempt still connecting its speech
    /// back (`stopped`), so that the tasks retrying can count what it did
    /// not send.
    fn release_attempts(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|entry| entry.speaker.is_attempt())
                && let Some(speaker) = self.remove(slot)
            {
                speaker.attempt_failed("stopped");
            }
        }
    }
}
