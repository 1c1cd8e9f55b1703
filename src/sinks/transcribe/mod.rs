//! The transcription sink: every consented speaker streamed to a backend,
//! without losing a word.
//!
//! Frames reach it from the recorder thread, as the recorder's
//! [`Downstream`], after the consent audit events before them are on disk
//! (so the backend never gets audio before the audit says it may). Each speaker of a call gets a task that keeps only the
//! frames where the speaker talks ([`TalkFilter`]), decodes them to 16 kHz
//! PCM (or passes the Opus through, for a backend that takes it), buffers
//! them ([`SpeakerStream`]) from the moment capture is
//! allowed, even before the connection is up, resends what no final result
//! covered after a reconnect, maps word times back to call time and drops
//! repeats. At the end of the call the last finals are awaited (bounded), and
//! `transcript.json` and `transcript.vtt` are written.
//!
//! A commit of frames (a consent hold released, [`Downstream::frames`]) is
//! one message on the dispatcher's queue, and each speaker's part of it is
//! taken by that speaker's queue whole or not at all (`try_reserve_many`):
//! a commit is at most 60 s of one speaker, 3,000 frames of 20 ms, so the
//! speaker queue (`transcription.speaker_queue_frames`, 6,000 by default)
//! takes one while a minute of live audio waits. A declined speaker is
//! purged: the speaker's task drops everything it holds unsent or waiting
//! to be resent, and the connection that may hold some of it back, before
//! it sends anything else.

pub mod backend;
pub mod deepgram;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::metrics::{DropReason, Label, Metrics};
use crate::sinks::{CONTROL_RESERVE, Completion, Downstream, SinkFull};
use crate::store::Store;
use backend::{AudioInput, Backend, BackendEvent, Connection, Failure};
use hearken_core::conference::{CallSummary, SourcePcm, SpeakerFrame};
use hearken_core::ids::CallId;
use hearken_core::transcript::{CallWord, Chunk, ChunkAudio, Coverage, PCM_RATE, SpeakerStream};
use hearken_core::voice::{TalkFilter, TalkFilterConfig, TalkFrame, VoiceHint};

/// A transcript segment on the call timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Who spoke.
    pub participant_id: String,
    /// Their display name, if the provider gave one.
    pub display_name: Option<String>,
    /// Start (s of call time).
    pub start: f64,
    /// End (s of call time).
    pub end: f64,
    /// The text.
    pub text: String,
    /// Words with call times and confidence.
    pub words: Vec<CallWord>,
}

/// The content of `transcript.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The call.
    pub call_id: String,
    /// Backend that produced it.
    pub backend: String,
    /// Its model.
    pub model: String,
    /// Segments ordered by call time.
    pub segments: Vec<Segment>,
    /// Per participant: consented audio captured vs acknowledged.
    pub coverage: HashMap<String, Coverage>,
    /// Whether the call has ended (the transcript is final).
    pub complete: bool,
    /// Whether consented audio is missing from it: lost to a full buffer,
    /// or never acknowledged by the backend before `finish_timeout`.
    /// `coverage` says how much, per participant.
    #[serde(default)]
    pub incomplete: bool,
}

/// Whether a result may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// A guess the backend may revise (shown live only).
    Interim,
    /// What the backend settled on (kept in the transcript).
    Final,
}

impl ResultKind {
    /// The server-sent event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interim => "interim",
            Self::Final => "final",
        }
    }
}

/// A live transcript event (server-sent events).
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    /// Interim or final.
    pub kind: ResultKind,
    /// The segment.
    pub segment: Segment,
}

/// Transcripts of calls in progress, and display names, shared with the API.
#[derive(Debug, Default)]
pub struct TranscriptStore {
    inner: Mutex<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    calls: HashMap<CallId, LiveCall>,
    names: HashMap<CallId, HashMap<String, String>>,
}

#[derive(Debug)]
struct LiveCall {
    transcript: Transcript,
    /// Made when someone first follows the call live, and let go at the
    /// first result after the last of them has left: a channel holds its
    /// [`LIVE_EVENTS`] slots from the start (36 KB a call), and most calls
    /// are never followed.
    live: Option<broadcast::Sender<LiveEvent>>,
}

/// Events a slow follower of a call's live transcript may fall behind by
/// before it misses some (it is told how many).
const LIVE_EVENTS: usize = 256;

impl TranscriptStore {
    fn lock(&self) -> MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a participant's display name (from the participants API).
    pub fn set_display_name(&self, call_id: &CallId, participant_id: &str, name: &str) {
        self.lock()
            .names
            .entry(call_id.clone())
            .or_default()
            .insert(participant_id.to_owned(), name.to_owned());
    }

    fn display_name(&self, call_id: &CallId, participant_id: &str) -> Option<String> {
        self.lock()
            .names
            .get(call_id)
            .and_then(|m| m.get(participant_id))
            .cloned()
    }

    /// The transcript so far of a call in progress.
    pub fn snapshot(&self, call_id: &CallId) -> Option<Transcript> {
        self.lock().calls.get(call_id).map(|c| c.transcript.clone())
    }

    /// Live events of a call in progress.
    pub fn subscribe(&self, call_id: &CallId) -> Option<broadcast::Receiver<LiveEvent>> {
        self.lock().calls.get_mut(call_id).map(|c| {
            c.live
                .get_or_insert_with(|| broadcast::channel(LIVE_EVENTS).0)
                .subscribe()
        })
    }

    fn ensure(&self, call_id: &CallId, backend: &str, model: &str) {
        self.lock()
            .calls
            .entry(call_id.clone())
            .or_insert_with(|| LiveCall {
                transcript: Transcript {
                    call_id: call_id.to_string(),
                    backend: backend.to_owned(),
                    model: model.to_owned(),
                    segments: Vec::new(),
                    coverage: HashMap::new(),
                    complete: false,
                    incomplete: false,
                },
                live: None,
            });
    }

    fn add(&self, call_id: &CallId, kind: ResultKind, segment: Segment) {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(call_id) else {
            return;
        };
        if let Some(live) = &call.live {
            if live.receiver_count() == 0 {
                call.live = None;
            } else {
                let _ = live.send(LiveEvent {
                    kind,
                    segment: segment.clone(),
                });
            }
        }
        if kind == ResultKind::Final {
            let at = call
                .transcript
                .segments
                .partition_point(|s| s.start <= segment.start);
            call.transcript.segments.insert(at, segment);
        }
    }

    /// Removes a participant's segments from a call in progress; returns
    /// how many there were.
    fn remove_participant(&self, call_id: &CallId, participant_id: &str) -> usize {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(call_id) else {
            return 0;
        };
        let before = call.transcript.segments.len();
        call.transcript
            .segments
            .retain(|s| s.participant_id != participant_id);
        call.transcript.coverage.remove(participant_id);
        before - call.transcript.segments.len()
    }

    fn remove(&self, call_id: &CallId) -> Option<Transcript> {
        let mut inner = self.lock();
        inner.names.remove(call_id);
        inner.calls.remove(call_id).map(|c| c.transcript)
    }
}

/// A consented frame the recorder wrote, as the sink takes it.
struct FrameIn {
    participant_id: Arc<str>,
    /// Call time (48 kHz samples).
    position: u64,
    payload: Arc<[u8]>,
    /// A telephone leg's own audio, when the Opus was made from it.
    source: Option<SourcePcm>,
    voice: VoiceHint,
}

impl From<&SpeakerFrame> for FrameIn {
    fn from(frame: &SpeakerFrame) -> Self {
        Self {
            participant_id: frame.participant_id.clone(),
            position: frame.position,
            payload: frame.payload.clone(),
            source: frame.source.clone(),
            voice: frame.voice,
        }
    }
}

/// Messages to the sink.
enum TranscribeMsg {
    /// A consented frame the recorder wrote.
    Frame { call_id: CallId, frame: FrameIn },
    /// A commit: frames the recorder wrote, in call-time order, to be
    /// taken whole.
    Frames {
        call_id: CallId,
        frames: Vec<FrameIn>,
    },
    /// A speaker left: finalize what they said.
    ParticipantLeft {
        call_id: CallId,
        participant_id: Arc<str>,
    },
    /// A speaker declined: drop their audio not yet sent or acknowledged.
    PurgeParticipant {
        call_id: CallId,
        participant_id: Arc<str>,
    },
    /// Delete a speaker's part of the transcript and their held audio.
    DiscardParticipant {
        call_id: CallId,
        participant_id: Arc<str>,
    },
    /// Delete what was transcribed (a decline under `stop_and_discard`).
    Discard { call_id: CallId },
    /// The call ended: wait for the last finals, write the transcript, add
    /// coverage to the summary, complete.
    CallEnded {
        summary: Box<CallSummary>,
        completion: Completion,
    },
}

/// The sending side, held by the recorder threads as their downstream.
#[derive(Clone)]
pub struct TranscribeHandle {
    tx: mpsc::Sender<TranscribeMsg>,
    metrics: Metrics,
}

impl TranscribeHandle {
    fn try_send_control(&self, msg: TranscribeMsg) -> Result<(), TranscribeMsg> {
        self.tx.try_send(msg).map_err(|e| {
            self.metrics.sink_messages_dropped.inc();
            warn!("transcription queue full: a control message was dropped");
            e.into_inner()
        })
    }
}

impl Downstream for TranscribeHandle {
    fn frame(&mut self, call_id: &CallId, frame: &SpeakerFrame) -> Result<(), SinkFull> {
        // Frames may not take the room kept for control messages.
        if self.tx.capacity() <= CONTROL_RESERVE {
            return Err(SinkFull);
        }
        self.tx
            .try_send(TranscribeMsg::Frame {
                call_id: call_id.clone(),
                frame: FrameIn::from(frame),
            })
            .map_err(|_| SinkFull)
    }

    fn frames(&mut self, call_id: &CallId, frames: &[SpeakerFrame]) -> Result<(), SinkFull> {
        if frames.is_empty() {
            return Ok(());
        }
        // One message however long the commit: it takes one frame's room.
        if self.tx.capacity() <= CONTROL_RESERVE {
            return Err(SinkFull);
        }
        self.tx
            .try_send(TranscribeMsg::Frames {
                call_id: call_id.clone(),
                frames: frames.iter().map(FrameIn::from).collect(),
            })
            .map_err(|_| SinkFull)
    }

    fn participant_left(&mut self, call_id: &CallId, participant_id: &Arc<str>) {
        let _ = self.try_send_control(TranscribeMsg::ParticipantLeft {
            call_id: call_id.clone(),
            participant_id: participant_id.clone(),
        });
    }

    fn purge_participant(&mut self, call_id: &CallId, participant_id: &Arc<str>) {
        let _ = self.try_send_control(TranscribeMsg::PurgeParticipant {
            call_id: call_id.clone(),
            participant_id: participant_id.clone(),
        });
    }

    fn discard_participant(&mut self, call_id: &CallId, participant_id: &Arc<str>) {
        let _ = self.try_send_control(TranscribeMsg::DiscardParticipant {
            call_id: call_id.clone(),
            participant_id: participant_id.clone(),
        });
    }

    fn discard(&mut self, call_id: &CallId) {
        let _ = self.try_send_control(TranscribeMsg::Discard {
            call_id: call_id.clone(),
        });
    }

    fn call_ended(&mut self, summary: CallSummary, completion: Completion) {
        if let Err(TranscribeMsg::CallEnded {
            summary,
            completion,
        }) = self.try_send_control(TranscribeMsg::CallEnded {
            summary: Box::new(summary),
            completion,
        }) {
            // The call's files must still be final: without coverage.
            completion.finish(*summary);
        }
    }
}

/// Sink settings.
#[derive(Clone)]
pub struct SinkSettings {
    /// Frames waiting for the sink at most (beyond them frames are dropped
    /// and counted).
    pub queue_frames: usize,
    /// Frames waiting for one speaker's connection at most (a commit's
    /// part for one speaker must fit: see the module docs).
    pub speaker_queue_frames: usize,
    /// Bound on connecting to the backend.
    pub connect_timeout: Duration,
    /// Per-speaker buffer bound (s).
    pub buffer_seconds: u64,
    /// Bound on waiting for the last finals.
    pub finish_timeout: Duration,
    /// Transcribe only while speakers talk; `None` sends every frame.
    pub talk_filter: Option<TalkFilterConfig>,
}

/// Starts the sink on the current tokio runtime.
pub fn spawn(
    backend: Arc<dyn Backend>,
    settings: SinkSettings,
    transcripts: Arc<TranscriptStore>,
    files: Store,
    metrics: Metrics,
) -> TranscribeHandle {
    let (tx, rx) = mpsc::channel(settings.queue_frames + CONTROL_RESERVE);
    let dispatcher = Dispatcher {
        backend,
        settings,
        transcripts,
        files,
        metrics: metrics.clone(),
        calls: HashMap::new(),
    };
    tokio::spawn(dispatcher.run(rx));
    TranscribeHandle { tx, metrics }
}

enum SpeakerMsg {
    Frame {
        position: u64,
        payload: Arc<[u8]>,
        /// A telephone leg's own audio of the frame.
        source: Option<SourcePcm>,
        voice: VoiceHint,
        /// The speaker's purge count when the frame was queued: a frame
        /// queued before a purge is dropped with what the purge drops.
        purges: u64,
    },
    Leave,
}

/// How the dispatcher asks a speaker's task to purge: a count the task
/// compares with the purges it applied, checked before it sends anything,
/// and a wake-up for a task that waits.
#[derive(Default)]
struct PurgeSignal {
    asked: AtomicU64,
    /// The purge also deletes the speaker's transcript segments.
    discard: AtomicBool,
    wake: Notify,
}

impl PurgeSignal {
    fn asked(&self) -> u64 {
        self.asked.load(Ordering::Acquire)
    }

    fn ask(&self, discard: bool) {
        if discard {
            self.discard.store(true, Ordering::Release);
        }
        self.asked.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }
}

struct SpeakerHandle {
    tx: mpsc::Sender<SpeakerMsg>,
    purge: Arc<PurgeSignal>,
    join: tokio::task::JoinHandle<Coverage>,
}

struct Dispatcher {
    backend: Arc<dyn Backend>,
    settings: SinkSettings,
    transcripts: Arc<TranscriptStore>,
    files: Store,
    metrics: Metrics,
    calls: HashMap<CallId, HashMap<Arc<str>, SpeakerHandle>>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<TranscribeMsg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                TranscribeMsg::Frame { call_id, frame } => {
                    let speaker = self.speaker(&call_id, &frame.participant_id);
                    let purges = speaker.purge.asked();
                    if speaker
                        .tx
                        .try_send(SpeakerMsg::Frame {
                            position: frame.position,
                            payload: frame.payload,
                            source: frame.source,
                            voice: frame.voice,
                            purges,
                        })
                        .is_err()
                    {
                        // The speaker's connection is that far behind.
                        self.metrics.drop_frame(DropReason::TranscriberQueueFull);
                    }
                }
                TranscribeMsg::Frames { call_id, frames } => self.commit(&call_id, frames),
                TranscribeMsg::PurgeParticipant {
                    call_id,
                    participant_id,
                } => {
                    if let Some(s) = self
                        .calls
                        .get(&call_id)
                        .and_then(|c| c.get(&participant_id))
                    {
                        s.purge.ask(false);
                    }
                }
                TranscribeMsg::DiscardParticipant {
                    call_id,
                    participant_id,
                } => self.discard_participant(call_id, participant_id),
                TranscribeMsg::ParticipantLeft {
                    call_id,
                    participant_id,
                } => {
                    if let Some(s) = self
                        .calls
                        .get(&call_id)
                        .and_then(|c| c.get(&participant_id))
                        && s.tx.try_send(SpeakerMsg::Leave).is_err()
                    {
                        self.metrics.sink_messages_dropped.inc();
                        debug!(call = %call_id, "speaker queue full: leave not signalled");
                    }
                }
                TranscribeMsg::Discard { call_id } => {
                    if let Some(speakers) = self.calls.remove(&call_id) {
                        for (_, s) in speakers {
                            s.join.abort();
                        }
                    }
                    self.transcripts.remove(&call_id);
                    info!(call = %call_id, "transcript discarded");
                }
                TranscribeMsg::CallEnded {
                    summary,
                    completion,
                } => {
                    let Ok(call_id) = CallId::parse(&summary.call_id) else {
                        tokio::task::spawn_blocking(move || completion.finish(*summary));
                        continue;
                    };
                    let finish = FinishCall {
                        speakers: self.calls.remove(&call_id).unwrap_or_default(),
                        call_id,
                        transcripts: self.transcripts.clone(),
                        files: self.files.clone(),
                        timeout: self.settings.finish_timeout,
                        backend: self.backend.name(),
                        model: self.backend.model(),
                    };
                    // Finishing a call must not hold up frames of others.
                    tokio::spawn(finish.run(*summary, completion));
                }
            }
        }
    }

    /// Queues a commit: each speaker's part whole or, if that speaker's
    /// queue has no room for all of it, not at all (counted).
    fn commit(&mut self, call_id: &CallId, frames: Vec<FrameIn>) {
        // Each speaker's frames, in the order they came.
        let mut parts: Vec<(Arc<str>, Vec<FrameIn>)> = Vec::new();
        for frame in frames {
            match parts.iter_mut().find(|(p, _)| *p == frame.participant_id) {
                Some((_, part)) => part.push(frame),
                None => parts.push((frame.participant_id.clone(), vec![frame])),
            }
        }
        for (participant_id, part) in parts {
            let speaker = self.speaker(call_id, &participant_id);
            let purges = speaker.purge.asked();
            let n = part.len();
            let Ok(permits) = speaker.tx.try_reserve_many(n) else {
                warn!(call = %call_id, frames = n, "a speaker's queue has no room for a whole commit: dropped");
                self.metrics
                    .frames_dropped
                    .with_label_values(&[DropReason::TranscriberQueueFull.as_label()])
                    .inc_by(n as u64);
                continue;
            };
            for (permit, frame) in permits.zip(part) {
                permit.send(SpeakerMsg::Frame {
                    position: frame.position,
                    payload: frame.payload,
                    source: frame.source,
                    voice: frame.voice,
                    purges,
                });
            }
        }
    }

    /// Deletes a speaker's part of the transcript (live and, if already
    /// written, on disk) and the audio their task holds. Their next frame
    /// starts a new task.
    fn discard_participant(&mut self, call_id: CallId, participant_id: Arc<str>) {
        if let Some(s) = self
            .calls
            .get_mut(&call_id)
            .and_then(|c| c.remove(&participant_id))
        {
            // The task removes the segments it published itself (so none
            // it publishes meanwhile is left), drops what it holds and,
            // with its queue closed, ends.
            s.purge.ask(true);
        }
        let removed = self
            .transcripts
            .remove_participant(&call_id, &participant_id);
        info!(call = %call_id, segments = removed, "a participant's transcript discarded");
        let files = self.files.clone();
        tokio::task::spawn_blocking(
            move || match files.read_transcript::<Transcript>(&call_id) {
                Ok(Some(mut t)) => {
                    t.segments.retain(|s| *s.participant_id != *participant_id);
                    t.coverage.remove(participant_id.as_ref());
                    if let Err(e) = files.write_transcript(&call_id, &t, &to_vtt(&t)) {
                        warn!(call = %call_id, error = %e, "cannot rewrite the transcript without a discarded participant");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(call = %call_id, error = %e, "cannot read the transcript to discard a participant")
                }
            },
        );
    }

    /// The speaker's task, started at its first frame. This runs for every
    /// frame, so a known speaker costs two lookups and two reference counts
    /// (the ids are `Arc`s); the task's copies of the settings and metrics
    /// and the call's transcript entry are made only for a new one.
    fn speaker(&mut self, call_id: &CallId, participant_id: &Arc<str>) -> &SpeakerHandle {
        self.calls
            .entry(call_id.clone())
            .or_default()
            .entry(participant_id.clone())
            .or_insert_with(|| {
                let backend = self.backend.clone();
                let settings = self.settings.clone();
                let store = self.transcripts.clone();
                // A call's transcript entry is dropped only after its
                // speakers (a discard, or the call's end), so a new speaker
                // is the time to make it.
                store.ensure(call_id, backend.name(), &backend.model());
                let (tx, rx) = mpsc::channel(settings.speaker_queue_frames);
                let purge = Arc::new(PurgeSignal::default());
                let task = SpeakerTask {
                    call_id: call_id.clone(),
                    participant_id: participant_id.clone(),
                    backend,
                    settings,
                    store,
                    metrics: self.metrics.clone(),
                    purge: purge.clone(),
                };
                SpeakerHandle {
                    tx,
                    purge,
                    join: tokio::spawn(task.run(rx)),
                }
            })
    }
}

/// The end of one call's transcription.
struct FinishCall {
    call_id: CallId,
    speakers: HashMap<Arc<str>, SpeakerHandle>,
    transcripts: Arc<TranscriptStore>,
    files: Store,
    timeout: Duration,
    backend: &'static str,
    model: String,
}

impl FinishCall {
    /// Ends every speaker (their last finals awaited, bounded), writes the
    /// transcript, adds coverage to the summary and completes the call.
    async fn run(self, mut summary: CallSummary, completion: Completion) {
        let call_id = self.call_id;
        let mut coverage = HashMap::new();
        for (id, s) in self.speakers {
            // Dropping the sender ends the speaker: finalize, close, drain.
            drop(s.tx);
            match tokio::time::timeout(self.timeout + Duration::from_secs(1), s.join).await {
                Ok(Ok(c)) => {
                    coverage.insert(id.to_string(), c);
                }
                _ => warn!(call = %call_id, "a speaker's transcription did not finish in time"),
            }
        }
        let mut transcript = self.transcripts.remove(&call_id).unwrap_or(Transcript {
            call_id: call_id.to_string(),
            backend: self.backend.to_owned(),
            model: self.model,
            segments: Vec::new(),
            coverage: HashMap::new(),
            complete: false,
            incomplete: false,
        });
        for (id, c) in &coverage {
            if c.is_incomplete() {
                warn!(
                    call = %call_id,
                    participant = %id,
                    lost_seconds = c.lost_seconds,
                    unacknowledged_seconds = c.buffered_seconds,
                    "the transcript is incomplete: the backend did not acknowledge all consented audio"
                );
            }
        }
        transcript.incomplete = coverage.values().any(Coverage::is_incomplete);
        transcript.coverage = coverage.clone();
        transcript.complete = true;
        for p in &mut summary.participants {
            p.transcription = coverage.get(&p.id).copied();
        }
        let files = self.files;
        let written = tokio::task::spawn_blocking(move || {
            let written = files.write_transcript(&call_id, &transcript, &to_vtt(&transcript));
            match &written {
                Ok(()) => {
                    info!(call = %call_id, segments = transcript.segments.len(), "transcript written")
                }
                Err(e) => warn!(call = %call_id, error = %e, "cannot write the transcript"),
            }
            completion.finish(summary);
        })
        .await;
        if let Err(e) = written {
            warn!(error = %e, "transcript writer failed");
        }
    }
}

/// WebVTT with `<v Speaker>` voice tags.
pub fn to_vtt(t: &Transcript) -> String {
    fn ts(s: f64) -> String {
        let ms = (s.max(0.0) * 1000.0).round() as u64;
        format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    }
    let mut out = String::from("WEBVTT\n\n");
    for s in &t.segments {
        let name = s
            .display_name
            .as_deref()
            .unwrap_or(&s.participant_id)
            .replace(['>', '\n'], " ");
        let text = s.text.replace("-->", "->").replace('\n', " ");
        out.push_str(&format!(
            "{} --> {}\n<v {}>{}\n\n",
            ts(s.start),
            ts(s.end),
            name,
            text
        ));
    }
    out
}

/// How long a connection may hold audio back to fill a message.
const HOLD_AUDIO_AT_MOST: Duration = Duration::from_millis(100);

struct SpeakerTask {
    call_id: CallId,
    participant_id: Arc<str>,
    backend: Arc<dyn Backend>,
    settings: SinkSettings,
    store: Arc<TranscriptStore>,
    metrics: Metrics,
    purge: Arc<PurgeSignal>,
}

/// When a speaker's task may try the backend again: after each failed
/// connect or lost connection, a wait doubling from [`Retry::FIRST`] to
/// [`Retry::MOST`], with up to 255 ms of jitter so the speakers of a call
/// do not retry in step. Only a final result resets it: a backend that
/// takes connections but never acknowledges the audio (or closes before
/// it does) is not hammered with reconnects.
#[derive(Debug)]
struct Retry {
    backoff: Duration,
    /// The earliest next attempt.
    next: Instant,
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(200);
    const MOST: Duration = Duration::from_secs(10);

    fn new(now: Instant) -> Self {
        Self {
            backoff: Self::FIRST,
            next: now,
        }
    }

    /// A connect failed or a connection was lost at `now`.
    fn failed(&mut self, now: Instant) {
        let jitter = Duration::from_millis(u64::from(rand::random::<u8>()));
        self.next = now + self.backoff + jitter;
        self.backoff = (self.backoff * 2).min(Self::MOST);
    }

    /// The backend acknowledged audio.
    fn answered(&mut self) {
        self.backoff = Self::FIRST;
    }
}

impl SpeakerTask {
    async fn run(self, mut rx: mpsc::Receiver<SpeakerMsg>) -> Coverage {
        let mut stream = SpeakerStream::new(self.settings.buffer_seconds);
        let mut talk = self.settings.talk_filter.map(TalkFilter::new);
        let mut audio = FrameAudio::new(self.backend.input());
        let mut conn: Option<Box<dyn Connection>> = None;
        let mut retry = Retry::new(Instant::now());
        let mut ending: Option<Instant> = None;
        let mut closed_sent = false;
        // When audio a connection held back must go out.
        let mut flush_at: Option<Instant> = None;
        let mut reported_buffer = 0.0;
        // (call time at the end of a chunk, when it arrived): for the
        // audio-to-final latency of each final result.
        let mut arrivals: VecDeque<(u64, Instant)> = VecDeque::new();
        // Purges applied (see `PurgeSignal`), and the silence skipped by
        // talk filters a purge replaced.
        let mut purged = 0;
        let mut skipped_before = 0.0;
        loop {
            // Before anything is sent: a purge asked for drops it.
            self.apply_purge(
                &mut purged,
                &mut stream,
                &mut conn,
                &mut talk,
                &mut skipped_before,
            );
            let now = Instant::now();
            if let Some(deadline) = ending
                && (now >= deadline || (stream.is_drained() && conn.is_none()))
            {
                break;
            }
            // Connect as soon as there is audio (and on every loss of the
            // connection), with backoff and jitter.
            if conn.is_none() && !stream.is_drained() && now >= retry.next {
                let connected = match tokio::time::timeout(
                    self.settings.connect_timeout,
                    self.backend.connect(audio.pcm_rate()),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(backend::BackendError::new(
                        Failure::Timeout,
                        "no connection within the connect timeout",
                    )),
                };
                match connected {
                    Ok(c) => {
                        conn = Some(c);
                        stream.handle_connected();
                        audio.restart();
                        closed_sent = false;
                        self.metrics.transcription_connections.inc();
                        debug!(call = %self.call_id, "transcription connected");
                    }
                    Err(e) => {
                        self.metrics
                            .transcription_reconnects
                            .with_label_values(&[e.failure.as_label()])
                            .inc();
                        warn!(call = %self.call_id, error = %e, "transcription backend unavailable; retrying");
                        retry.failed(Instant::now());
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                let mut failed = false;
                while let Some(chunk) = stream.poll_send() {
                    let (chunk, decoded) = audio.for_backend(chunk, now);
                    if !decoded {
                        self.metrics.drop_frame(DropReason::Malformed);
                    }
                    if let Err(e) = c.send_audio(&chunk).await {
                        debug!(error = %e, "send failed");
                        failed = true;
                        break;
                    }
                    if self.purge.asked() != purged {
                        break;
                    }
                }
                if self.purge.asked() != purged {
                    // Purged while sending: apply it before anything else
                    // (held audio is not flushed).
                    continue;
                }
                // Held audio goes out once it has waited a message's
                // length, so a speaker who stops is not left unsent.
                if !failed && c.holds_audio() {
                    let due = *flush_at.get_or_insert(now + HOLD_AUDIO_AT_MOST);
                    if now >= due {
                        flush_at = None;
                        if let Err(e) = c.flush().await {
                            debug!(error = %e, "send failed");
                            failed = true;
                        }
                    }
                } else {
                    flush_at = None;
                }
                if !failed && ending.is_some() && !closed_sent {
                    closed_sent = true;
                    let _ = c.finalize().await;
                    let _ = c.close().await;
                }
                if failed {
                    self.lose_connection(&mut conn, &mut stream, Some(Failure::Send));
                    retry.failed(Instant::now());
                }
            }
            // With nothing due, the loop still turns once an hour.
            let nothing_due = now + Duration::from_secs(3600);
            let wake = ending
                .unwrap_or(nothing_due)
                .min(if conn.is_none() {
                    retry.next.max(now + Duration::from_millis(10))
                } else {
                    flush_at.unwrap_or(nothing_due)
                })
                .min(audio.release_idle(now).unwrap_or(nothing_due));
            tokio::select! {
                msg = rx.recv(), if ending.is_none() => match msg {
                    Some(SpeakerMsg::Frame { position, payload, source, voice, purges }) => {
                        self.apply_purge(&mut purged, &mut stream, &mut conn, &mut talk, &mut skipped_before);
                        // Queued before a purge: dropped with the rest.
                        if purges >= purged {
                            let passed = self.filter(talk.as_mut(), position, payload, source, voice);
                            for frame in passed {
                                self.buffer(&mut audio, &mut stream, &mut arrivals, frame);
                            }
                        }
                    }
                    Some(SpeakerMsg::Leave) => {
                        if let Some(c) = conn.as_mut() {
                            let _ = c.finalize().await;
                        }
                    }
                    None => {
                        ending = Some(Instant::now() + self.settings.finish_timeout);
                    }
                },
                () = self.purge.wake.notified() => {}
                event = next_event(&mut conn), if self.purge.asked() == purged => match event {
                    Some(Ok(BackendEvent::Final { start, duration, text, words })) => {
                        // The backend answers: a later loss retries soon again.
                        retry.answered();
                        let words = stream.handle_final(start, duration, &words);
                        if let Some(last) = words.last() {
                            let end = (last.end * 48_000.0) as u64;
                            while arrivals.front().is_some_and(|(e, _)| *e < end) {
                                arrivals.pop_front();
                            }
                            if let Some((_, at)) = arrivals.front() {
                                self.metrics
                                    .transcription_final_latency_seconds
                                    .observe(at.elapsed().as_secs_f64());
                            }
                        }
                        self.publish(ResultKind::Final, text, words);
                    }
                    Some(Ok(BackendEvent::Interim { text, words })) => {
                        let words = stream.handle_interim(&words);
                        self.publish(ResultKind::Interim, text, words);
                    }
                    Some(Ok(BackendEvent::Closed { .. })) | None => {
                        // After our CloseStream, the close is the end we asked for.
                        let failure = (!closed_sent).then_some(Failure::Closed);
                        self.lose_connection(&mut conn, &mut stream, failure);
                        retry.failed(Instant::now());
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "transcription connection lost");
                        self.lose_connection(&mut conn, &mut stream, Some(e.failure));
                        retry.failed(Instant::now());
                    }
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            let buffered = stream.coverage().buffered_seconds;
            self.metrics
                .transcription_buffered_seconds
                .add(buffered - reported_buffer);
            reported_buffer = buffered;
        }
        self.metrics
            .transcription_buffered_seconds
            .sub(reported_buffer);
        let mut coverage = stream.coverage();
        if let Some(t) = talk.as_mut() {
            t.finish();
            coverage.skipped_silence_seconds = skipped_before + t.skipped_seconds();
            self.metrics
                .transcription_skipped_silence_seconds
                .inc_by(coverage.skipped_silence_seconds);
        }
        self.metrics
            .transcription_captured_seconds
            .inc_by(coverage.captured_seconds);
        self.metrics
            .transcription_acknowledged_seconds
            .inc_by(coverage.acknowledged_seconds);
        coverage
    }

    /// Applies a purge the dispatcher asked for since the last one: the
    /// stream gives up what is unsent or unacknowledged, the connection goes
    /// (it may hold audio back, and it was sent audio the stream forgot),
    /// the talk filter's held frames go; for a discard, the speaker's
    /// published segments too.
    fn apply_purge(
        &self,
        purged: &mut u64,
        stream: &mut SpeakerStream,
        conn: &mut Option<Box<dyn Connection>>,
        talk: &mut Option<TalkFilter>,
        skipped_before: &mut f64,
    ) {
        let asked = self.purge.asked();
        if asked == *purged {
            return;
        }
        *purged = asked;
        let seconds = stream.purge();
        // Dropped, not closed: closing would flush what it holds back.
        *conn = None;
        if let Some(t) = talk.as_mut() {
            *skipped_before += t.skipped_seconds();
            if let Some(config) = self.settings.talk_filter {
                *t = TalkFilter::new(config);
            }
        }
        if self.purge.discard.swap(false, Ordering::AcqRel) {
            self.store
                .remove_participant(&self.call_id, &self.participant_id);
        }
        info!(call = %self.call_id, seconds, "a speaker's held audio purged");
    }

    /// The frames to transcribe, of those up to this one.
    fn filter(
        &self,
        talk: Option<&mut TalkFilter>,
        position: u64,
        payload: Arc<[u8]>,
        source: Option<SourcePcm>,
        voice: VoiceHint,
    ) -> Vec<TalkFrame> {
        let Ok(samples) = hearken_core::opus::packet_samples(&payload) else {
            self.metrics.drop_frame(DropReason::Malformed);
            return Vec::new();
        };
        let speech = voice.is_speech(payload.len());
        let frame = TalkFrame {
            position,
            samples: u64::from(samples),
            payload,
            source,
        };
        match talk {
            Some(t) => {
                t.handle_frame(frame, speech);
                std::iter::from_fn(|| t.poll_frame()).collect()
            }
            None => vec![frame],
        }
    }

    /// Keeps a frame for the backend (see [`FrameAudio`]).
    fn buffer(
        &self,
        audio: &mut FrameAudio,
        stream: &mut SpeakerStream,
        arrivals: &mut VecDeque<(u64, Instant)>,
        frame: TalkFrame,
    ) {
        let chunk = audio.chunk(frame);
        arrivals.push_back((chunk.call_start + chunk.samples, Instant::now()));
        if arrivals.len() > 20_000 {
            arrivals.pop_front();
        }
        if let Some(lost) = stream.push(chunk) {
            self.metrics.transcription_lost_seconds.inc_by(lost.seconds);
            warn!(call = %self.call_id, start = lost.start, seconds = lost.seconds, "transcription buffer full: audio dropped");
        }
    }

    /// The connection is gone: counted as a reconnect unless it ended as
    /// asked (`failure` is `None`).
    fn lose_connection(
        &self,
        conn: &mut Option<Box<dyn Connection>>,
        stream: &mut SpeakerStream,
        failure: Option<Failure>,
    ) {
        if conn.take().is_some()
            && let Some(failure) = failure
        {
            self.metrics
                .transcription_reconnects
                .with_label_values(&[failure.as_label()])
                .inc();
        }
        stream.handle_disconnected();
    }

    fn publish(&self, kind: ResultKind, text: String, words: Vec<CallWord>) {
        let (Some(first), Some(last)) = (words.first(), words.last()) else {
            return;
        };
        if kind == ResultKind::Final {
            self.metrics.transcription_words.inc_by(words.len() as u64);
        }
        let text = if text.is_empty() || kind == ResultKind::Final {
            words
                .iter()
                .map(|w| w.word.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            text
        };
        let segment = Segment {
            participant_id: self.participant_id.to_string(),
            display_name: self.store.display_name(&self.call_id, &self.participant_id),
            start: first.start,
            end: last.end,
            text,
            words,
        };
        self.store.add(&self.call_id, kind, segment);
    }
}

/// Turns frames into chunks, and chunks into the form the backend takes.
///
/// Audio waits in the speaker's [`SpeakerStream`] until a final result
/// covers it (up to two seconds of speech, more while the backend is away),
/// so it waits as the Opus packet it arrived as: 16 kHz PCM is about eight
/// times larger. A backend that takes PCM gets each chunk decoded as it is
/// sent ([`FrameAudio::for_backend`]); a resend after a reconnect decodes it
/// again. The decoder (18 KB of libopus state) is kept only while the
/// speaker talks: it goes after [`DECODER_IDLE`] without a frame to decode,
/// and a speaker's next words start a new one, as they start after a gap
/// (the talk filter does not send silence).
enum FrameAudio {
    /// Mono PCM at one rate per stream: a telephone leg's own audio at its
    /// own rate (8 kHz G.711, 16 kHz G.722), or else the Opus decoded at
    /// 16 kHz. The rate is fixed by the stream's first frame (the
    /// connection is opened at it); a later frame at another rate is
    /// decoded from its Opus at the stream's rate.
    Pcm {
        rate: Option<u32>,
        /// Made when a chunk needs it; `None` while the speaker is quiet,
        /// and after libopus could not start (the chunks that needed it
        /// went out as silence, counted as malformed).
        decoder: Option<PcmDecoder>,
    },
    /// Pass the packets through.
    Opus,
}

/// How long a speaker's decoder outlives the last chunk it decoded.
const DECODER_IDLE: Duration = Duration::from_secs(1);

/// A speaker's Opus decoder, at the stream's rate.
struct PcmDecoder {
    opus: opus::Decoder,
    /// Room for the longest packet at the stream's rate.
    pcm: Vec<i16>,
    used_at: Instant,
}

/// The longest Opus packet, 120 ms, in samples at `rate`.
fn longest_packet(rate: u32) -> usize {
    rate as usize * 120 / 1000
}

impl FrameAudio {
    fn new(input: AudioInput) -> Self {
        match input {
            AudioInput::Pcm => Self::Pcm {
                rate: None,
                decoder: None,
            },
            AudioInput::Opus => Self::Opus,
        }
    }

    /// The sample rate of the stream's PCM (16 kHz until a first frame says
    /// otherwise).
    fn pcm_rate(&self) -> u32 {
        match self {
            Self::Pcm { rate, .. } => rate.unwrap_or(PCM_RATE as u32),
            Self::Opus => PCM_RATE as u32,
        }
    }

    /// The chunk to keep for a frame: PCM a telephone leg brought at the
    /// stream's rate, else the Opus packet.
    fn chunk(&mut self, frame: TalkFrame) -> Chunk {
        if let Self::Pcm { rate, .. } = self {
            let rate =
                *rate.get_or_insert(frame.source.as_ref().map_or(PCM_RATE as u32, |s| s.rate));
            if let Some(source) = frame.source.filter(|s| s.rate == rate) {
                return Chunk::pcm_at(frame.position, rate, source.samples.to_vec());
            }
        }
        Chunk::opus(frame.position, frame.samples, frame.payload)
    }

    /// A new connection: the decoder starts again, as the first chunk it
    /// decodes next may be one it decoded before (a resend).
    fn restart(&mut self) {
        if let Self::Pcm { decoder, .. } = self {
            *decoder = None;
        }
    }

    /// Lets the decoder go once it has been idle for [`DECODER_IDLE`];
    /// returns when to ask again while it is kept.
    fn release_idle(&mut self, now: Instant) -> Option<Instant> {
        let Self::Pcm { decoder, .. } = self else {
            return None;
        };
        let idle_at = decoder.as_ref()?.used_at + DECODER_IDLE;
        if now < idle_at {
            return Some(idle_at);
        }
        *decoder = None;
        None
    }

    /// The chunk as the backend takes it: an Opus chunk decoded for a PCM
    /// backend (silence of its length if libopus refuses it, so the
    /// stream's time still maps onto the call's; `false` then), anything
    /// else as it is.
    fn for_backend<'c>(&mut self, chunk: &'c Chunk, now: Instant) -> (Cow<'c, Chunk>, bool) {
        let (Self::Pcm { rate, decoder }, ChunkAudio::Opus(packet)) = (self, &chunk.audio) else {
            return (Cow::Borrowed(chunk), true);
        };
        let rate = rate.unwrap_or(PCM_RATE as u32);
        let expected = (chunk.samples * u64::from(rate) / 48_000) as usize;
        if decoder.is_none() {
            *decoder = opus::Decoder::new(rate, opus::Channels::Mono)
                .ok()
                .map(|opus| PcmDecoder {
                    opus,
                    pcm: vec![0; longest_packet(rate)],
                    used_at: now,
                });
        }
        let decoded = decoder.as_mut().and_then(|d| {
            d.used_at = now;
            let n = d.opus.decode(packet, &mut d.pcm, false).ok()?;
            (n == expected).then(|| d.pcm[..n].to_vec())
        });
        let ok = decoded.is_some();
        let pcm = decoded.unwrap_or_else(|| vec![0; expected]);
        (Cow::Owned(Chunk::pcm_at(chunk.call_start, rate, pcm)), ok)
    }
}

async fn next_event(
    conn: &mut Option<Box<dyn Connection>>,
) -> Option<Result<BackendEvent, backend::BackendError>> {
    match conn.as_mut() {
        Some(c) => c.next_event().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use hearken_core::conference::{ParticipantIdx, ParticipantSummary};
    use hearken_core::transcript::{ChunkAudio, StreamWord};

    use super::*;
    use crate::sinks::Downstream;

    /// What the fake backend was sent: (connection, call time of the chunk).
    type Sent = Arc<Mutex<Vec<(usize, u64)>>>;

    /// A backend that takes Opus, refuses connections while `accept` is
    /// off, records every chunk, and (with `finals`) answers each chunk
    /// with a final result of one word, `w{call time}`.
    struct FakeBackend {
        accept: Arc<AtomicBool>,
        finals: bool,
        sent: Sent,
        connections: AtomicUsize,
    }

    struct FakeConnection {
        index: usize,
        finals: bool,
        sent: Sent,
        stream_pos: u64,
        events: VecDeque<BackendEvent>,
    }

    impl Backend for FakeBackend {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn model(&self) -> String {
            "fake-model".into()
        }
        fn input(&self) -> AudioInput {
            AudioInput::Opus
        }
        fn connect(
            &self,
            _pcm_rate: u32,
        ) -> backend::BoxFuture<'static, Result<Box<dyn Connection>, backend::BackendError>>
        {
            // Refusing past a thousand connections ends a reconnect storm,
            // so a test of one fails instead of spinning for ever.
            let result = if self.accept.load(Ordering::SeqCst)
                && self.connections.load(Ordering::SeqCst) < 1000
            {
                Ok(Box::new(FakeConnection {
                    index: self.connections.fetch_add(1, Ordering::SeqCst),
                    finals: self.finals,
                    sent: self.sent.clone(),
                    stream_pos: 0,
                    events: VecDeque::new(),
                }) as Box<dyn Connection>)
            } else {
                Err(backend::BackendError::new(Failure::Connect, "refused"))
            };
            Box::pin(async move { result })
        }
    }

    impl Connection for FakeConnection {
        fn send_audio<'a>(
            &'a mut self,
            chunk: &'a Chunk,
        ) -> backend::BoxFuture<'a, Result<(), backend::BackendError>> {
            assert!(matches!(chunk.audio, ChunkAudio::Opus(_)));
            self.sent
                .lock()
                .unwrap()
                .push((self.index, chunk.call_start));
            let start = self.stream_pos as f64 / 48_000.0;
            self.stream_pos += chunk.samples;
            let end = self.stream_pos as f64 / 48_000.0;
            if self.finals {
                self.events.push_back(BackendEvent::Final {
                    start,
                    duration: end - start,
                    text: String::new(),
                    words: vec![StreamWord {
                        word: format!("w{}", chunk.call_start),
                        start,
                        end,
                        confidence: 1.0,
                    }],
                });
            }
            Box::pin(async { Ok(()) })
        }
        fn finalize(&mut self) -> backend::BoxFuture<'_, Result<(), backend::BackendError>> {
            Box::pin(async { Ok(()) })
        }
        fn close(&mut self) -> backend::BoxFuture<'_, Result<(), backend::BackendError>> {
            self.events.push_back(BackendEvent::Closed { reason: None });
            Box::pin(async { Ok(()) })
        }
        fn next_event(
            &mut self,
        ) -> backend::BoxFuture<'_, Option<Result<BackendEvent, backend::BackendError>>> {
            let event = self.events.pop_front();
            Box::pin(async move {
                match event {
                    Some(e) => Some(Ok(e)),
                    None => std::future::pending().await,
                }
            })
        }
    }

    /// 20 ms of Opus (TOC 0x78: hybrid, full band, 20 ms, one frame).
    const PACKET: [u8; 4] = [0x78, 1, 2, 3];
    const FRAME: u64 = 960;

    struct Sink {
        handle: TranscribeHandle,
        accept: Arc<AtomicBool>,
        sent: Sent,
        transcripts: Arc<TranscriptStore>,
        metrics: Metrics,
        store: Store,
        _dir: tempfile::TempDir,
        call: CallId,
    }

    fn sink(finals: bool, accept: bool, queue_frames: usize, speaker_queue_frames: usize) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let accept = Arc::new(AtomicBool::new(accept));
        let sent = Sent::default();
        let backend = Arc::new(FakeBackend {
            accept: accept.clone(),
            finals,
            sent: sent.clone(),
            connections: AtomicUsize::new(0),
        });
        let transcripts = Arc::new(TranscriptStore::default());
        let metrics = Metrics::new();
        let settings = SinkSettings {
            queue_frames,
            speaker_queue_frames,
            connect_timeout: Duration::from_secs(1),
            buffer_seconds: 120,
            finish_timeout: Duration::from_millis(500),
            talk_filter: None,
        };
        let handle = spawn(
            backend,
            settings,
            transcripts.clone(),
            store.clone(),
            metrics.clone(),
        );
        Sink {
            handle,
            accept,
            sent,
            transcripts,
            metrics,
            store,
            _dir: dir,
            call: CallId::parse("t1").unwrap(),
        }
    }

    fn frame(who: &str, n: u64) -> SpeakerFrame {
        SpeakerFrame {
            participant: ParticipantIdx(0),
            participant_id: who.into(),
            file_stem: who.into(),
            position: n * FRAME,
            payload: Arc::from(&PACKET[..]),
            arrival: std::time::Instant::now(),
            voice: VoiceHint::default(),
            source: None,
        }
    }

    impl Sink {
        /// Lets every task run for `ms` of (paused) time.
        async fn settle(&self, ms: u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }

        fn send(&mut self, who: &str, frames: std::ops::Range<u64>) {
            for n in frames {
                self.handle.frame(&self.call, &frame(who, n)).unwrap();
            }
        }

        fn sent(&self) -> Vec<(usize, u64)> {
            self.sent.lock().unwrap().clone()
        }

        fn dropped(&self) -> u64 {
            self.metrics
                .frames_dropped
                .with_label_values(&[DropReason::TranscriberQueueFull.as_label()])
                .get()
        }

        fn words(&self, who: &str) -> Vec<String> {
            self.transcripts
                .snapshot(&self.call)
                .map(|t| t.segments)
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s.participant_id == who)
                .map(|s| s.text)
                .collect()
        }

        /// Ends the call; its summary with coverage once the transcript is
        /// written.
        async fn end(mut self, who: &[&str]) -> (CallSummary, Self) {
            let (done, summary) = tokio::sync::oneshot::channel();
            let mut s = CallSummary::ended_without_state(&self.call, chrono::DateTime::UNIX_EPOCH);
            s.started_at = Some(chrono::DateTime::UNIX_EPOCH);
            s.participants = who
                .iter()
                .map(|p| ParticipantSummary {
                    id: (*p).into(),
                    ..Default::default()
                })
                .collect();
            self.handle
                .call_ended(s, Completion::new(self.store.clone(), Some(done)));
            (summary.await.unwrap(), self)
        }
    }

    fn coverage(summary: &CallSummary, who: &str) -> Coverage {
        summary
            .participants
            .iter()
            .find(|p| p.id == who)
            .and_then(|p| p.transcription)
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_is_taken_whole_by_small_queues() {
        // Room for 8 single frames on the dispatcher's queue: a minute of
        // one speaker and half a minute of another, committed at once.
        let mut s = sink(true, true, 8, 3_000);
        let commit: Vec<SpeakerFrame> = (0..3_000)
            .map(|n| frame("alice", n))
            .chain((0..1_500).map(|n| frame("bob", n)))
            .collect();
        s.handle.frames(&s.call, &commit).unwrap();
        // The same frames one by one do not fit: the queue is that small.
        let singles = (0..100)
            .filter(|n| s.handle.frame(&s.call, &frame("carol", *n)).is_err())
            .count();
        assert!(singles > 0, "the single frames overflow the queue");
        s.settle(100).await;
        assert_eq!(s.dropped(), 0);
        let (summary, s) = s.end(&["alice", "bob"]).await;
        let sent = s.sent();
        for (who, frames) in [("alice", 3_000), ("bob", 1_500)] {
            let c = coverage(&summary, who);
            assert_eq!(
                (c.captured_seconds, c.acknowledged_seconds),
                (frames as f64 * 0.02, frames as f64 * 0.02),
                "{who}"
            );
        }
        assert_eq!(sent.len(), 4_500 + (100 - singles));
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_a_speaker_queue_cannot_hold_is_dropped_whole() {
        let s = sink(true, true, 64, 10);
        let too_long: Vec<SpeakerFrame> = (0..11).map(|n| frame("alice", n)).collect();
        let fits: Vec<SpeakerFrame> = (20..30).map(|n| frame("bob", n)).collect();
        let mut s = s;
        s.handle.frames(&s.call, &too_long).unwrap();
        s.handle.frames(&s.call, &fits).unwrap();
        s.settle(100).await;
        assert_eq!(s.dropped(), 11, "all of alice's part, none of bob's");
        let positions: Vec<u64> = s.sent().into_iter().map(|(_, t)| t).collect();
        assert_eq!(positions, (20..30).map(|n| n * FRAME).collect::<Vec<_>>());
        s.send("alice", 40..41);
        let (summary, _) = s.end(&["alice", "bob"]).await;
        assert_eq!(coverage(&summary, "alice").captured_seconds, 0.02);
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_drops_unsent_audio() {
        // The backend refuses connections: alice's first second waits.
        let mut s = sink(true, false, 64, 3_000);
        s.send("alice", 0..50);
        s.settle(50).await;
        assert!(s.sent().is_empty());
        s.handle.purge_participant(&s.call, &Arc::from("alice"));
        s.settle(10).await;
        s.accept.store(true, Ordering::SeqCst);
        s.send("alice", 100..105);
        s.settle(2_000).await;
        let positions: Vec<u64> = s.sent().into_iter().map(|(_, t)| t).collect();
        assert_eq!(positions, (100..105).map(|n| n * FRAME).collect::<Vec<_>>());
        let (summary, _) = s.end(&["alice"]).await;
        let c = coverage(&summary, "alice");
        assert_eq!((c.purged_seconds, c.captured_seconds), (1.0, 1.1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_empties_the_resend_queue() {
        // Sent, never acknowledged: without the purge, a reconnect would
        // send it all again.
        let mut s = sink(false, true, 64, 3_000);
        s.send("alice", 0..50);
        s.settle(50).await;
        assert_eq!(s.sent().len(), 50);
        assert!(s.sent().iter().all(|(c, _)| *c == 0));
        s.handle.purge_participant(&s.call, &Arc::from("alice"));
        s.settle(10).await;
        s.send("alice", 100..105);
        s.settle(50).await;
        let second: Vec<u64> = s
            .sent()
            .into_iter()
            .filter(|(c, _)| *c == 1)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(second, (100..105).map(|n| n * FRAME).collect::<Vec<_>>());
        assert_eq!(s.sent().len(), 55);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_never_acknowledges_is_not_hammered_at_the_end() {
        // It takes every connection and closes each when asked, with no
        // final result: the unacknowledged second is sent again on each new
        // connection until the finish timeout (500 ms here). Waiting 200 ms,
        // then 400 ms (plus jitter under 256 ms) between connections, that
        // is at most three; without the wait it was one every 10 ms.
        let mut s = sink(false, true, 64, 3_000);
        s.send("alice", 0..50);
        s.settle(50).await;
        let (summary, s) = s.end(&["alice"]).await;
        let connections = s.metrics.transcription_connections.get();
        assert!((2..=3).contains(&connections), "{connections} connections");
        let c = coverage(&summary, "alice");
        assert_eq!(c.acknowledged_seconds, 0.0);
        assert!((c.captured_seconds - 1.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn retries_wait_longer_each_time_until_the_backend_answers() {
        let t0 = Instant::now();
        let mut retry = Retry::new(t0);
        assert_eq!(retry.next, t0, "the first attempt is at once");
        let mut waits = Vec::new();
        for _ in 0..8 {
            retry.failed(t0);
            waits.push(retry.next - t0);
        }
        let jitter = Duration::from_millis(255);
        for (wait, base) in waits
            .iter()
            .zip([200, 400, 800, 1600, 3200, 6400, 10_000, 10_000])
        {
            let base = Duration::from_millis(base);
            assert!(
                *wait >= base && *wait <= base + jitter,
                "{wait:?} for {base:?}"
            );
        }
        retry.answered();
        retry.failed(t0);
        assert!(retry.next - t0 <= Retry::FIRST + jitter);
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_keeps_final_text() {
        let mut s = sink(true, true, 64, 3_000);
        s.send("alice", 0..3);
        s.settle(50).await;
        assert_eq!(s.words("alice"), ["w0", "w960", "w1920"]);
        s.handle.purge_participant(&s.call, &Arc::from("alice"));
        s.settle(50).await;
        assert_eq!(s.words("alice"), ["w0", "w960", "w1920"]);
    }

    #[tokio::test(start_paused = true)]
    async fn discarding_a_participant_removes_their_transcript() {
        let mut s = sink(true, true, 64, 3_000);
        s.send("alice", 0..2);
        s.send("bob", 0..2);
        s.settle(50).await;
        assert_eq!(s.words("alice"), ["w0", "w960"]);
        s.handle.discard_participant(&s.call, &Arc::from("alice"));
        s.settle(50).await;
        assert!(s.words("alice").is_empty());
        assert_eq!(s.words("bob"), ["w0", "w960"]);
        // Alice again, later: a fresh start.
        s.send("alice", 10..11);
        s.settle(50).await;
        assert_eq!(s.words("alice"), ["w9600"]);
        let (_, s) = s.end(&["alice", "bob"]).await;
        let written: Transcript = s.store.read_transcript(&s.call).unwrap().unwrap();
        let alice: Vec<&str> = written
            .segments
            .iter()
            .filter(|seg| seg.participant_id == "alice")
            .map(|seg| seg.text.as_str())
            .collect();
        assert_eq!(alice, ["w9600"]);
    }

    /// Real 20 ms Opus packets of a 440 Hz tone, encoded by libopus.
    fn tone_packets(count: usize) -> Vec<Arc<[u8]>> {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut out = vec![0u8; 1500];
        (0..count)
            .map(|k| {
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        let t = (k * 960 + i) as f64 / 48_000.0;
                        (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                let n = encoder.encode(&pcm, &mut out).unwrap();
                Arc::from(&out[..n])
            })
            .collect()
    }

    fn opus_frame(position: u64, payload: Arc<[u8]>) -> TalkFrame {
        TalkFrame {
            position,
            samples: FRAME,
            payload,
            source: None,
        }
    }

    #[test]
    fn for_a_pcm_backend_opus_waits_as_opus_and_goes_out_as_16_khz_pcm() {
        let packets = tone_packets(3);
        let mut audio = FrameAudio::new(AudioInput::Pcm);
        let chunks: Vec<Chunk> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| audio.chunk(opus_frame(i as u64 * FRAME, p.clone())))
            .collect();
        for (chunk, packet) in chunks.iter().zip(&packets) {
            assert_eq!(
                chunk.audio,
                ChunkAudio::Opus(packet.clone()),
                "kept as it came"
            );
        }
        // What an independent decoder at 16 kHz makes of the same packets:
        // 20 ms is 320 samples at 16 kHz.
        let mut reference = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut expected = Vec::new();
        for packet in &packets {
            let mut pcm = vec![0i16; 320];
            assert_eq!(reference.decode(packet, &mut pcm, false).unwrap(), 320);
            expected.push(pcm);
        }
        let send_all = |audio: &mut FrameAudio| -> Vec<Chunk> {
            chunks
                .iter()
                .map(|c| {
                    let (wire, decoded) = audio.for_backend(c, Instant::now());
                    assert!(decoded);
                    wire.into_owned()
                })
                .collect()
        };
        let first = send_all(&mut audio);
        for ((wire, kept), pcm) in first.iter().zip(&chunks).zip(&expected) {
            assert_eq!(wire, &Chunk::pcm(kept.call_start, pcm.clone()));
        }
        // A reconnect resends the same chunks; decoded from a fresh start,
        // they are the same PCM again.
        audio.restart();
        assert_eq!(send_all(&mut audio), first);
    }

    #[test]
    fn a_packet_libopus_refuses_goes_out_as_silence_of_its_length() {
        let mut audio = FrameAudio::new(AudioInput::Pcm);
        // TOC 0xff: code 3 (a frame count byte must follow), and none does.
        let refused = audio.chunk(opus_frame(0, Arc::from(&[0xffu8][..])));
        let (wire, decoded) = audio.for_backend(&refused, Instant::now());
        assert!(!decoded);
        assert_eq!(*wire, Chunk::pcm(0, vec![0; 320]));
    }

    #[test]
    fn a_telephone_legs_pcm_at_the_streams_rate_is_kept_and_sent_as_it_is() {
        let mut audio = FrameAudio::new(AudioInput::Pcm);
        let samples: Arc<[i16]> = (0..160).map(|i| i as i16).collect();
        let chunk = audio.chunk(TalkFrame {
            source: Some(SourcePcm {
                rate: 8_000,
                samples: samples.clone(),
            }),
            ..opus_frame(FRAME, Arc::from(&PACKET[..]))
        });
        assert_eq!(audio.pcm_rate(), 8_000, "the first frame sets the rate");
        let expected = Chunk::pcm_at(FRAME, 8_000, samples.to_vec());
        assert_eq!(chunk, expected);
        assert_eq!(*audio.for_backend(&chunk, Instant::now()).0, expected);
    }

    #[test]
    fn for_an_opus_backend_the_packet_goes_out_as_it_came() {
        let mut audio = FrameAudio::new(AudioInput::Opus);
        let packet: Arc<[u8]> = Arc::from(&PACKET[..]);
        let chunk = audio.chunk(opus_frame(0, packet.clone()));
        assert_eq!(chunk, Chunk::opus(0, FRAME, packet));
        assert!(matches!(
            audio.for_backend(&chunk, Instant::now()).0,
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_decoder_idle_for_a_second_is_let_go_and_the_next_words_start_a_new_one() {
        let packets = tone_packets(2);
        let mut audio = FrameAudio::new(AudioInput::Pcm);
        let first = audio.chunk(opus_frame(0, packets[0].clone()));
        let later = audio.chunk(opus_frame(50 * FRAME, packets[1].clone()));
        let t0 = Instant::now();
        assert_eq!(audio.release_idle(t0), None, "no decoder yet");
        audio.for_backend(&first, t0);
        let kept = |audio: &FrameAudio| {
            matches!(
                audio,
                FrameAudio::Pcm {
                    decoder: Some(_),
                    ..
                }
            )
        };
        assert_eq!(
            audio.release_idle(t0 + Duration::from_millis(999)),
            Some(t0 + DECODER_IDLE)
        );
        assert!(kept(&audio));
        assert_eq!(audio.release_idle(t0 + DECODER_IDLE), None);
        assert!(!kept(&audio));
        // What a decoder that never heard the first packet makes of the
        // second.
        let mut fresh = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 320];
        assert_eq!(fresh.decode(&packets[1], &mut pcm, false).unwrap(), 320);
        let (wire, decoded) = audio.for_backend(&later, t0 + Duration::from_secs(2));
        assert!(decoded);
        assert_eq!(*wire, Chunk::pcm(50 * FRAME, pcm));
    }

    fn said(text: &str, start: f64) -> Segment {
        Segment {
            participant_id: "ana".to_owned(),
            display_name: None,
            start,
            end: start + 0.5,
            text: text.to_owned(),
            words: Vec::new(),
        }
    }

    #[test]
    fn a_live_follower_gets_what_is_said_after_it_subscribed_and_the_channel_goes_with_the_last() {
        let store = TranscriptStore::default();
        let call = CallId::parse("live").unwrap();
        assert!(store.subscribe(&call).is_none(), "no call in progress");
        store.ensure(&call, "fake", "m");
        store.add(&call, ResultKind::Final, said("before", 1.0));

        let mut follower = store.subscribe(&call).expect("the call is in progress");
        store.add(&call, ResultKind::Interim, said("now", 2.0));
        let event = follower
            .try_recv()
            .expect("the event said after subscribing");
        assert_eq!(
            (event.kind, event.segment.text.as_str()),
            (ResultKind::Interim, "now")
        );
        assert!(
            follower.try_recv().is_err(),
            "nothing from before it subscribed"
        );

        drop(follower);
        store.add(&call, ResultKind::Final, said("unheard", 3.0));
        assert!(
            store.lock().calls[&call].live.is_none(),
            "the channel is let go with its last follower"
        );
        let mut again = store.subscribe(&call).expect("following again");
        store.add(&call, ResultKind::Final, said("later", 4.0));
        assert_eq!(
            again.try_recv().expect("a new follower hears").segment.text,
            "later"
        );

        let finals: Vec<_> = store
            .snapshot(&call)
            .unwrap()
            .segments
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(
            finals,
            ["before", "unheard", "later"],
            "finals are kept whoever follows"
        );
    }
}
