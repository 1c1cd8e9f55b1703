//! Where consented audio goes, and the contracts between the stages.
//!
//! The chain is fixed and visible in the types: a media worker's engine
//! emits [`SinkMsg`]s, in order, into one bounded queue ([`SinkSender`]) read
//! by its recorder; the recorder syncs each consent audit line to disk, then
//! writes frames into their Ogg tracks, and hands each frame it wrote to its
//! [`Downstream`] (the transcriber, when one runs). So the order "audit line
//! synced, then frame written, then frame transcribed" holds by
//! construction.
//!
//! The recorder fails closed: once a call's audit line cannot be written
//! and synced, no later frame of that call is written or passed on, and a
//! [`SinkMsg::Barrier`] of that call is answered with [`AuditLogFailed`].
//!
//! The end of a call travels the same way: the recorder finishes its tracks
//! and passes the call's summary down; the last stage hands it to the
//! call's [`Completion`], which writes the final `call.json` (through the
//! store, its only writer) and gives the summary to whoever waits for the
//! call to end ([`CallDone`]: one typed value from the worker to the waiter).

pub mod recorder;
pub mod transcribe;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, Sender};
use hearken_core::conference::{CallSummary, SpeakerFrame};
use hearken_core::consent::engine::AuditEvent;
use hearken_core::ids::CallId;
use tracing::error;

use crate::store::Store;

/// Told the final summary of a call once every file of it is final.
pub type CallDone = tokio::sync::oneshot::Sender<CallSummary>;

/// Told, by the recorder, that everything queued before a
/// [`SinkMsg::Barrier`] was handled: `Ok` while the call's audit log is
/// healthy (every audit line queued before is synced), `Err` once it failed.
pub type AuditBarrier = tokio::sync::oneshot::Sender<Result<(), AuditLogFailed>>;

/// A call's consent audit log could not be written and synced: capture of
/// the call stopped there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the consent audit log could not be written: {reason}")]
pub struct AuditLogFailed {
    /// What went wrong (the OS's words).
    pub reason: String,
}

/// Room kept in a sink queue for control messages beyond its frame budget,
/// so a queue full of frames never loses a call's start, end or audit line.
pub const CONTROL_RESERVE: usize = 4096;

/// What a media worker hands its recorder, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkMsg {
    /// A frame the consent gate let through, placed on the call timeline.
    Frame {
        /// Its call.
        call_id: CallId,
        /// The frame.
        frame: SpeakerFrame,
    },
    /// Frames committed at once (a consent hold released: up to 60 s of one
    /// or more speakers' audio, in call-time order). Written like
    /// [`SinkMsg::Frame`]s and handed down as one unit
    /// ([`Downstream::frames`]), so no part of a commit is lost to a queue
    /// that is full for a moment. One message: the worker queues it as a
    /// control message.
    Frames {
        /// Their call.
        call_id: CallId,
        /// The frames, in call-time order.
        frames: Vec<SpeakerFrame>,
    },
    /// A packet of a prompt the bot played, for the call's announcement
    /// track (`audio/hearken-prompts.opus`, where the rules require the
    /// announcement in the recording). Written like [`SinkMsg::Frame`],
    /// but never handed to the [`Downstream`]: the bot's own speech is not
    /// transcribed.
    Announcement {
        /// Its call.
        call_id: CallId,
        /// The packet, placed on the call timeline.
        frame: SpeakerFrame,
    },
    /// Call time zero: the call's directory and an in-progress `call.json`.
    CallStarted {
        /// The call.
        call_id: CallId,
        /// The summary at start.
        summary: Box<CallSummary>,
    },
    /// Append one consent audit event to `consent.jsonl` and sync it before
    /// anything queued after it is written.
    Audit {
        /// The call.
        call_id: CallId,
        /// The event, typed; the recorder formats it.
        event: AuditEvent,
        /// Wall-clock time of the event (`at` in the log).
        at: DateTime<Utc>,
    },
    /// Answer `done` once everything queued before is handled (see
    /// [`AuditBarrier`]): a consent signal's API answer waits for its audit
    /// line this way.
    Barrier {
        /// The call whose audit log is asked about.
        call_id: CallId,
        /// Told the result.
        done: AuditBarrier,
    },
    /// A participant declined: the sinks drop audio of theirs they hold and
    /// have not passed on (the transcriber's unsent buffer and its resend
    /// queue). What is already written, and final transcript text, stay.
    PurgeParticipant {
        /// The call.
        call_id: CallId,
        /// Who declined.
        participant_id: Arc<str>,
    },
    /// Delete everything captured of one participant so far: their track
    /// file (later frames of theirs start a fresh, aligned one under the
    /// same name), their part of the transcript, and audio of theirs not yet
    /// passed on.
    DiscardParticipant {
        /// The call.
        call_id: CallId,
        /// Whose audio.
        participant_id: Arc<str>,
        /// Their file stem.
        file_stem: Arc<str>,
    },
    /// A participant's session ended: pad their track to `position`.
    ParticipantLeft {
        /// The call.
        call_id: CallId,
        /// Their participant id.
        participant_id: Arc<str>,
        /// Their file stem.
        file_stem: Arc<str>,
        /// Call-time position of the leave (48 kHz samples).
        position: u64,
    },
    /// Delete every recording and transcript of the call (a decline under
    /// `stop_and_discard`); later frames of the call are refused.
    DiscardAll {
        /// The call.
        call_id: CallId,
    },
    /// The call ended: finish its tracks (EOS), pass it down, and complete.
    CallEnded {
        /// The final summary from the conference.
        summary: Box<CallSummary>,
        /// Told when everything is on disk.
        done: Option<CallDone>,
    },
    /// A participant's spoken yes: write its packets as
    /// `consent-evidence/{file_stem}.opus` in the call's directory (synced)
    /// and list it in `call.json`. Never sent for a no or an unclear answer.
    ConsentEvidence {
        /// The call.
        call_id: CallId,
        /// Who said yes.
        participant_id: Arc<str>,
        /// Their file stem (safe as a file name).
        file_stem: String,
        /// The Opus packets of the answer, in order.
        packets: Vec<EvidencePacket>,
    },
    /// Stop after everything queued before.
    Shutdown,
}

/// One Opus packet of an evidence clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePacket {
    /// The packet as received.
    pub payload: Vec<u8>,
    /// Its length in 48 kHz samples.
    pub samples: u32,
}

impl SinkMsg {
    /// A fixed name for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Frame { .. } => "frame",
            Self::Frames { .. } => "frames",
            Self::Announcement { .. } => "announcement",
            Self::CallStarted { .. } => "call_started",
            Self::Audit { .. } => "audit",
            Self::Barrier { .. } => "barrier",
            Self::PurgeParticipant { .. } => "purge_participant",
            Self::DiscardParticipant { .. } => "discard_participant",
            Self::ParticipantLeft { .. } => "participant_left",
            Self::DiscardAll { .. } => "discard_all",
            Self::CallEnded { .. } => "call_ended",
            Self::ConsentEvidence { .. } => "consent_evidence",
            Self::Shutdown => "shutdown",
        }
    }
}

/// A sink queue has no room.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("sink queue full")]
pub struct SinkFull;

/// The sending side of a recorder's queue: bounded, never blocking.
#[derive(Debug, Clone)]
pub struct SinkSender {
    tx: Sender<SinkMsg>,
    frame_budget: usize,
}

impl SinkSender {
    /// A bounded queue that takes at most `frame_budget` waiting frames,
    /// plus [`CONTROL_RESERVE`] control messages.
    pub fn channel(frame_budget: usize) -> (SinkSender, Receiver<SinkMsg>) {
        let (tx, rx) = crossbeam_channel::bounded(frame_budget + CONTROL_RESERVE);
        (SinkSender { tx, frame_budget }, rx)
    }

    /// Queues a frame unless `frame_budget` messages already wait.
    pub fn try_send_frame(&self, msg: SinkMsg) -> Result<(), SinkFull> {
        if self.tx.len() >= self.frame_budget {
            return Err(SinkFull);
        }
        self.tx.try_send(msg).map_err(|_| SinkFull)
    }

    /// Queues a control message; fails only when the queue is full to its
    /// reserve as well (the recorder is stuck) or gone.
    pub fn try_send_control(&self, msg: SinkMsg) -> Result<(), SinkFull> {
        self.tx.try_send(msg).map_err(|_| SinkFull)
    }
}

/// The stage after the recorder. It only ever sees frames the recorder
/// wrote, after the audit lines queued before them were synced.
pub trait Downstream: Send {
    /// A frame the recorder wrote. `Err` when this stage has no room; the
    /// recorder counts the drop.
    fn frame(&mut self, call_id: &CallId, frame: &SpeakerFrame) -> Result<(), SinkFull>;
    /// Frames the recorder wrote from one commit ([`SinkMsg::Frames`]),
    /// taken whole or not at all: `Err` when this stage has no room for all
    /// of them (the recorder counts every one as dropped).
    fn frames(&mut self, call_id: &CallId, frames: &[SpeakerFrame]) -> Result<(), SinkFull>;
    /// A participant's session ended.
    fn participant_left(&mut self, call_id: &CallId, participant_id: &Arc<str>);
    /// A participant declined: drop their audio this stage holds and has
    /// not passed on, and pass on nothing more of what it holds.
    fn purge_participant(&mut self, call_id: &CallId, participant_id: &Arc<str>);
    /// Delete what this stage captured of one participant (their part of
    /// the transcript), and their audio it holds.
    fn discard_participant(&mut self, call_id: &CallId, participant_id: &Arc<str>);
    /// The call's captured audio is to be deleted.
    fn discard(&mut self, call_id: &CallId);
    /// The call ended; `summary` holds what the recorder added. This stage
    /// adds its part and calls [`Completion::finish`].
    fn call_ended(&mut self, summary: CallSummary, completion: Completion);
}

/// The end of a call's way through the sinks (see the module docs).
#[derive(Debug)]
pub struct Completion {
    store: Store,
    done: Option<CallDone>,
}

impl Completion {
    /// A completion that writes through `store` and tells `done`.
    pub fn new(store: Store, done: Option<CallDone>) -> Self {
        Self { store, done }
    }

    /// Writes the final `call.json` and tells whoever waits. Blocks on the
    /// file system: call it from a sink's thread, or `spawn_blocking`.
    pub fn finish(self, summary: CallSummary) {
        if let Err(e) = self.store.write_call_json(&summary) {
            error!(call = %summary.call_id, error = %e, "cannot write the final call.json");
        }
        if let Some(done) = self.done {
            let _ = done.send(summary);
        }
    }
}
