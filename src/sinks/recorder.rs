//! The recorder: one thread per media worker that syncs each call's consent
//! audit log, turns placed frames into aligned Ogg Opus tracks, and hands
//! every frame it wrote to its [`Downstream`].
//!
//! Everything arrives on one ordered, bounded queue (see [`crate::sinks`]),
//! so an audit line is on disk before any frame its gate decision let
//! through is written, and before that frame reaches the transcriber. Files
//! are written here, never on the media thread; a slow disk costs dropped
//! (and counted) frames, never unbounded memory or a blocked media thread.
//!
//! Audit lines are hash-chained ([`hearken_core::audit`]); the recorder adds
//! lines of its own (`call_ended`, `discard_failed`) and puts the chain head
//! in `call.json`. When a line cannot be written and synced, the call's
//! capture stops there (fail closed): every later frame of the call is
//! refused and counted (`hearken_frames_dropped_total{reason="audit_log_failed"}`),
//! including frames already queued behind the line.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use hearken_core::announcement::ANNOUNCEMENT_STEM;
use hearken_core::audit::{self, AuditChain, ConsentLogSummary, GENESIS_SHA256};
use hearken_core::conference::{CallSummary, SAMPLE_RATE, SpeakerFrame};
use hearken_core::consent::engine::AuditEvent;
use hearken_core::ids::CallId;
use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::track::{DEFAULT_PRE_SKIP, FrameOutcome, TrackWriter};
use serde_json::{Map, Value};
use tracing::{debug, error, info, warn};

use super::{AuditBarrier, AuditLogFailed, Completion, Downstream, EvidencePacket, SinkMsg};
use crate::metrics::{DropReason, Label, Metrics};
use crate::store::Store;

/// Pages are flushed at least this often (wall time) while audio is pending,
/// so a crash loses at most this much of each recording.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the recorder looks for tracks to flush.
const TICK: Duration = Duration::from_millis(200);

/// Starts a recorder thread reading `queue`.
pub fn spawn(
    name: String,
    store: Store,
    queue: Receiver<SinkMsg>,
    metrics: Metrics,
    downstream: Option<Box<dyn Downstream>>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name)
        .spawn(move || Recorder::new(store, metrics, downstream).run(queue))
}

struct Track {
    writer: TrackWriter,
    /// `None` once it could not be created or written: what it holds stays.
    file: Option<File>,
    file_name: String,
    last_page_at: Instant,
    /// Bytes in the file: whole pages only (a failed append is cut back).
    len: u64,
    /// Samples of audio in those whole pages.
    durable_samples: u64,
}

/// A call's open audit log and where its chain stands.
struct AuditLog {
    file: File,
    chain: AuditChain,
    /// Bytes of the file as this recorder wrote or read them; a file that
    /// is longer was appended to by another writer (an earlier attempt of
    /// the same call id on another worker) and is read again.
    len: u64,
}

struct CallRecording {
    tracks: HashMap<Arc<str>, Track>,
    audit: Option<AuditLog>,
    /// Why the audit log could not be written, once it could not: from
    /// then on no frame of the call is written or passed on, and no line is
    /// added (fail closed).
    audit_failed: Option<String>,
    /// Why a recording of the call could not be written (a full disk),
    /// once one could not: from then on no frame of the call is written or
    /// passed on (fail closed); `call.json` says so as `capture_error`.
    capture_failed: Option<String>,
    discarded: bool,
    /// The in-progress summary written at call time zero (written again,
    /// with the error, when the audit log fails).
    started: Option<Box<CallSummary>>,
    /// Evidence clips of spoken consent written, by participant id.
    evidence: HashMap<Arc<str>, String>,
}

struct Recorder {
    store: Store,
    calls: HashMap<CallId, CallRecording>,
    metrics: Metrics,
    downstream: Option<Box<dyn Downstream>>,
}

impl Recorder {
    fn new(store: Store, metrics: Metrics, downstream: Option<Box<dyn Downstream>>) -> Self {
        Self {
            store,
            calls: HashMap::new(),
            metrics,
            downstream,
        }
    }

    fn run(mut self, queue: Receiver<SinkMsg>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match queue.recv_timeout(timeout) {
                Ok(SinkMsg::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.finish_all();
                    return;
                }
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                self.flush_due(now);
                next_tick = now + TICK;
            }
        }
    }

    fn handle(&mut self, msg: SinkMsg) {
        match msg {
            SinkMsg::Frame { call_id, frame } => {
                if self.write_frame(&call_id, &frame)
                    && let Some(d) = self.downstream.as_mut()
                    && d.frame(&call_id, &frame).is_err()
                {
                    self.metrics.drop_frame(DropReason::TranscriberQueueFull);
                }
            }
            SinkMsg::Frames { call_id, frames } => self.handle_frames(&call_id, frames),
            SinkMsg::Announcement { call_id, frame } => {
                // The bot's own speech: recorded, never passed on.
                self.write_frame(&call_id, &frame);
            }
            SinkMsg::CallStarted {
                call_id,
                mut summary,
            } => {
                let call = self
                    .calls
                    .entry(call_id.clone())
                    .or_insert_with(CallRecording::new);
                summary.consent_log = call.consent_log();
                if let Err(e) = self.store.write_call_json(&summary) {
                    self.metrics.recorder_write_errors.inc();
                    error!(call = %call_id, error = %e, "cannot write call.json");
                }
                call.started = Some(summary);
            }
            SinkMsg::Audit { call_id, event, at } => {
                let fields = event_fields(&call_id, &event);
                self.append_line(&call_id, at, fields);
            }
            SinkMsg::Barrier { call_id, done } => self.answer_barrier(&call_id, done),
            SinkMsg::ParticipantLeft {
                call_id,
                participant_id,
                file_stem,
                position,
            } => {
                if let Some(d) = self.downstream.as_mut() {
                    d.participant_left(&call_id, &participant_id);
                }
                // A call whose capture stopped is not padded: nothing more
                // goes into its files, not even concealment.
                let failed = self
                    .calls
                    .get_mut(&call_id)
                    .filter(|c| c.capture_failed.is_none() && c.audit_failed.is_none())
                    .and_then(|c| c.tracks.get_mut(&file_stem))
                    .and_then(|track| {
                        if let Err(e) = track.writer.fill_to(position) {
                            warn!(error = %e, "cannot pad track to the participant's leave");
                        }
                        track.writer.flush();
                        write_pending(track, &self.store, &self.metrics).err()
                    });
                if let Some(reason) = failed {
                    self.fail_capture(&call_id, reason);
                }
            }
            SinkMsg::PurgeParticipant {
                call_id,
                participant_id,
            } => {
                // The recorder holds nothing back: what it received is
                // written. The stage after it may hold unsent audio.
                if let Some(d) = self.downstream.as_mut() {
                    d.purge_participant(&call_id, &participant_id);
                }
            }
            SinkMsg::DiscardParticipant {
                call_id,
                participant_id,
                file_stem,
            } => self.discard_participant(&call_id, &participant_id, &file_stem),
            SinkMsg::DiscardAll { call_id } => {
                if let Some(d) = self.downstream.as_mut() {
                    d.discard(&call_id);
                }
                let call = self
                    .calls
                    .entry(call_id.clone())
                    .or_insert_with(CallRecording::new);
                call.discarded = true;
                call.tracks.clear();
                match self.store.remove_audio(&call_id) {
                    Ok(true) => info!(call = %call_id, "recordings discarded"),
                    Ok(false) => {}
                    Err(e) => {
                        self.metrics.recorder_write_errors.inc();
                        error!(call = %call_id, error = %e, "cannot discard recordings");
                        self.log_discard_failed(&call_id, None, "all recordings of the call", &e);
                    }
                }
            }
            SinkMsg::CallEnded { summary, done } => {
                self.log_call_ended(&summary);
                let summary = self.finish_call(*summary);
                let completion = Completion::new(self.store.clone(), done);
                match self.downstream.as_mut() {
                    Some(d) if summary.started_at.is_some() => d.call_ended(summary, completion),
                    _ => completion.finish(summary),
                }
            }
            SinkMsg::ConsentEvidence {
                call_id,
                participant_id,
                file_stem,
                packets,
            } => self.write_evidence(&call_id, participant_id, &file_stem, &packets),
            SinkMsg::Shutdown => {}
        }
    }

    /// Writes the clip of a spoken yes as its own Ogg Opus file, synced.
    /// Not once the call's audit log failed (capture stopped there).
    fn write_evidence(
        &mut self,
        call_id: &CallId,
        participant_id: Arc<str>,
        stem: &str,
        packets: &[EvidencePacket],
    ) {
        let call = self
            .calls
            .entry(call_id.clone())
            .or_insert_with(CallRecording::new);
        if call.audit_failed.is_some() {
            warn!(call = %call_id, "audit log failed: spoken consent evidence not written");
            return;
        }
        let head = OpusHead {
            channels: 1,
            pre_skip: 0,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let comments = [("HEARKEN_PARTICIPANT", participant_id.as_ref())];
        let mut writer = OggOpusWriter::new(rand::random::<u32>(), &head, "hearken", &comments);
        for p in packets {
            // Only fails once finished.
            let _ = writer.push_packet(&p.payload, p.samples);
        }
        writer.finish();
        match self
            .store
            .write_evidence(call_id, stem, &writer.poll_output())
        {
            Ok(path) => {
                info!(call = %call_id, file = %path, "spoken consent evidence written");
                call.evidence.insert(participant_id, path);
            }
            Err(e) => {
                self.metrics.recorder_write_errors.inc();
                error!(call = %call_id, error = %e, "cannot write spoken consent evidence");
            }
        }
    }

    /// Writes each frame of a commit, then hands those written down as one
    /// unit: the stage after takes all of them or none.
    fn handle_frames(&mut self, call_id: &CallId, frames: Vec<SpeakerFrame>) {
        let written: Vec<SpeakerFrame> = frames
            .into_iter()
            .filter(|f| self.write_frame(call_id, f))
            .collect();
        if written.is_empty() {
            return;
        }
        if let Some(d) = self.downstream.as_mut()
            && d.frames(call_id, &written).is_err()
        {
            self.metrics
                .frames_dropped
                .with_label_values(&[DropReason::TranscriberQueueFull.as_label()])
                .inc_by(written.len() as u64);
        }
    }

    /// Writes a frame into its participant's track; `true` when it was
    /// written (and may be passed on).
    fn write_frame(&mut self, call_id: &CallId, frame: &SpeakerFrame) -> bool {
        match self.place_frame(call_id, frame) {
            Ok(written) => written,
            Err(reason) => {
                self.metrics.drop_frame(DropReason::RecordingFailed);
                self.fail_capture(call_id, reason);
                false
            }
        }
    }

    /// [`Self::write_frame`] up to a failure to write the recording, which
    /// stops the call's capture.
    fn place_frame(&mut self, call_id: &CallId, frame: &SpeakerFrame) -> Result<bool, String> {
        let Self {
            calls,
            store,
            metrics,
            ..
        } = self;
        let call = calls
            .entry(call_id.clone())
            .or_insert_with(CallRecording::new);
        if call.discarded {
            metrics.drop_frame(DropReason::Discarded);
            return Ok(false);
        }
        if call.audit_failed.is_some() {
            // Fail closed: no record of the consent that let this frame
            // through could be kept, so it is neither kept nor passed on.
            metrics.drop_frame(DropReason::AuditLogFailed);
            return Ok(false);
        }
        if call.capture_failed.is_some() {
            metrics.drop_frame(DropReason::RecordingFailed);
            return Ok(false);
        }
        if store.is_full() {
            // Another write found the disk full: what room is left is for
            // the calls' metadata, not more audio.
            return Err("the data directory is full".to_owned());
        }
        // Looked up without cloning the stem: this runs for every frame.
        let track = match call.tracks.get_mut(&frame.file_stem) {
            Some(track) => track,
            None => {
                let track = open_track(store, call_id, &frame.file_stem).inspect_err(|_| {
                    metrics.recorder_write_errors.inc();
                })?;
                call.tracks.entry(frame.file_stem.clone()).or_insert(track)
            }
        };
        let written = match track.writer.handle_frame(frame.position, &frame.payload) {
            Ok(FrameOutcome::Written { .. }) => {
                metrics.recorder_frames_written.inc();
                true
            }
            Ok(FrameOutcome::Late) => {
                metrics.drop_frame(DropReason::Late);
                false
            }
            Err(e) => {
                debug!(error = %e, "malformed opus packet dropped");
                metrics.drop_frame(DropReason::Malformed);
                false
            }
        };
        write_pending(track, store, metrics)?;
        Ok(written)
    }

    /// Stops the capture of a call whose recording could not be written
    /// (fail closed; see [`CallRecording::capture_failed`]): said in the
    /// log, and in `call.json` at once (a full disk released the store's
    /// reserve for it).
    fn fail_capture(&mut self, call_id: &CallId, reason: String) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.capture_failed.is_some() {
            return;
        }
        error!(call = %call_id, error = %reason, "a recording could not be written: capture of the call stopped");
        call.capture_failed = Some(reason);
        if let Some(started) = &call.started {
            let mut summary = (**started).clone();
            summary.consent_log = call.consent_log();
            summary.capture_error = call.capture_failed.clone();
            if let Err(e) = self.store.write_call_json(&summary) {
                self.metrics.recorder_write_errors.inc();
                error!(call = %call_id, error = %e, "cannot write call.json");
            }
        }
    }

    /// Appends one line to the call's audit log and syncs it. On failure
    /// the call's capture stops (see [`CallRecording::audit_failed`]): the
    /// error is logged, counted and stated in `call.json`.
    fn append_line(&mut self, call_id: &CallId, at: DateTime<Utc>, fields: Map<String, Value>) {
        let call = self
            .calls
            .entry(call_id.clone())
            .or_insert_with(CallRecording::new);
        if call.audit_failed.is_some() {
            // Nothing is chained to a log whose last line may be missing.
            return;
        }
        let Err(reason) = write_audit_line(&self.store, call_id, call, at, &fields) else {
            return;
        };
        self.metrics.consent_audit_write_errors.inc();
        error!(call = %call_id, error = %reason, "consent audit log failed: capture of the call stopped");
        call.audit_failed = Some(reason);
        if let Some(started) = &call.started {
            let mut summary = (**started).clone();
            summary.consent_log = call.consent_log();
            if let Err(e) = self.store.write_call_json(&summary) {
                self.metrics.recorder_write_errors.inc();
                error!(call = %call_id, error = %e, "cannot write call.json");
            }
        }
    }

    /// Answers a barrier: everything queued before it has been handled.
    fn answer_barrier(&self, call_id: &CallId, done: AuditBarrier) {
        let result = match self.calls.get(call_id).and_then(|c| c.audit_failed.clone()) {
            Some(reason) => Err(AuditLogFailed { reason }),
            None => Ok(()),
        };
        // The asker may have given up waiting.
        let _ = done.send(result);
    }

    /// Deletes a participant's track (a fresh one starts with their next
    /// frame) and has the stage after delete its part.
    fn discard_participant(
        &mut self,
        call_id: &CallId,
        participant_id: &Arc<str>,
        stem: &Arc<str>,
    ) {
        if let Some(d) = self.downstream.as_mut() {
            d.discard_participant(call_id, participant_id);
        }
        let Some(track) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.tracks.remove(stem))
        else {
            return;
        };
        let name = track.file_name.clone();
        // Closed before it is deleted; nothing more is written to it.
        drop(track);
        match self.store.remove_track(call_id, &name) {
            Ok(_) => info!(call = %call_id, "a participant's recording discarded"),
            Err(e) => {
                self.metrics.recorder_write_errors.inc();
                error!(call = %call_id, error = %e, "cannot discard a participant's recording");
                let what = format!("audio/{name}");
                self.log_discard_failed(call_id, Some(participant_id), &what, &e);
            }
        }
    }

    /// Adds a `discard_failed` line: the `discarded` line before it stated
    /// the intent, this one that the files are still there.
    fn log_discard_failed(
        &mut self,
        call_id: &CallId,
        participant_id: Option<&Arc<str>>,
        what: &str,
        error: &std::io::Error,
    ) {
        let at = Utc::now();
        let started_at = self
            .calls
            .get(call_id)
            .and_then(|c| c.started.as_ref())
            .and_then(|s| s.started_at);
        let mut fields = Map::new();
        fields.insert("event".into(), "discard_failed".into());
        fields.insert("call_id".into(), call_id.as_str().into());
        if let Some(t) = call_time(started_at, at) {
            fields.insert("t".into(), t.into());
        }
        if let Some(p) = participant_id {
            fields.insert("participant".into(), p.as_ref().into());
        }
        fields.insert("what".into(), what.into());
        fields.insert("error".into(), error.to_string().into());
        self.append_line(call_id, at, fields);
    }

    /// Adds the `call_ended` line, so the chain head in the final
    /// `call.json` covers the end of the call.
    fn log_call_ended(&mut self, summary: &CallSummary) {
        let Ok(call_id) = CallId::parse(&summary.call_id) else {
            return;
        };
        if !self.calls.contains_key(&call_id) {
            // Never started here: nothing recorded, no log to close.
            return;
        }
        let at = summary.ended_at.unwrap_or_else(Utc::now);
        let mut fields = Map::new();
        fields.insert("event".into(), "call_ended".into());
        fields.insert("call_id".into(), call_id.as_str().into());
        if let Some(t) = call_time(summary.started_at, at) {
            fields.insert("t".into(), t.into());
        }
        fields.insert(
            "reason".into(),
            serde_json::to_value(summary.end_reason).unwrap_or(Value::Null),
        );
        self.append_line(&call_id, at, fields);
    }

    /// Finishes every track of the call (EOS, sync), also those the summary
    /// does not name (a call abandoned after a bug), and fills in what was
    /// recorded and the audit log's chain head.
    fn finish_call(&mut self, mut summary: CallSummary) -> CallSummary {
        let Ok(call_id) = CallId::parse(&summary.call_id) else {
            return summary;
        };
        let Some(mut call) = self.calls.remove(&call_id) else {
            // The call never started (no session connected): nothing recorded.
            return summary;
        };
        for track in call.tracks.values_mut() {
            if let Err(reason) = finish_track(track, &self.store, &self.metrics) {
                call.capture_failed.get_or_insert(reason);
            }
        }
        for p in &mut summary.participants {
            let stem = p
                .file
                .strip_prefix("audio/")
                .and_then(|f| f.strip_suffix(".opus"))
                .unwrap_or_default();
            if call.discarded {
                p.recorded_seconds = 0.0;
                p.file = String::new();
            } else if let Some(track) = call.tracks.get(stem) {
                p.recorded_seconds = track.durable_samples as f64 / SAMPLE_RATE as f64;
                p.file = format!("audio/{}", track.file_name);
            } else {
                // Nothing of theirs was recorded here: no file to name.
                p.recorded_seconds = 0.0;
                p.file = String::new();
            }
            if let (Some(consent), Some(path)) =
                (p.consent.as_mut(), call.evidence.get(p.id.as_str()))
            {
                consent.evidence = Some(path.clone());
            }
        }
        if let Some(a) = summary.announcement_track.as_mut() {
            match call.tracks.get(ANNOUNCEMENT_STEM) {
                Some(track) if !call.discarded => {
                    a.recorded_seconds = track.durable_samples as f64 / SAMPLE_RATE as f64;
                    a.file = Some(format!("audio/{}", track.file_name));
                }
                _ => {
                    a.recorded_seconds = 0.0;
                    a.file = None;
                }
            }
        }
        summary.consent_log = call.consent_log();
        summary.capture_error = call.capture_failed.clone();
        info!(call = %call_id, participants = summary.participants.len(), "call recording finished");
        summary
    }

    /// On shutdown without an end message (the worker died), still close
    /// every file with an EOS page.
    fn finish_all(&mut self) {
        for (_, mut call) in self.calls.drain() {
            for track in call.tracks.values_mut() {
                let _ = finish_track(track, &self.store, &self.metrics);
            }
        }
    }

    fn flush_due(&mut self, now: Instant) {
        let mut failed = Vec::new();
        for (call_id, call) in &mut self.calls {
            for track in call.tracks.values_mut() {
                if track.writer.unflushed_samples() > 0
                    && now.duration_since(track.last_page_at) >= FLUSH_INTERVAL
                {
                    track.writer.flush();
                    if let Err(reason) = write_pending(track, &self.store, &self.metrics) {
                        failed.push((call_id.clone(), reason));
                    }
                }
            }
        }
        for (call_id, reason) in failed {
            self.fail_capture(&call_id, reason);
        }
    }
}

impl CallRecording {
    fn new() -> Self {
        Self {
            tracks: HashMap::new(),
            audit: None,
            audit_failed: None,
            capture_failed: None,
            discarded: false,
            started: None,
            evidence: HashMap::new(),
        }
    }

    /// What `call.json` records of the audit log (`None` before its first
    /// line).
    fn consent_log(&self) -> Option<ConsentLogSummary> {
        let mut summary = match (&self.audit, &self.audit_failed) {
            (None, None) => return None,
            (Some(log), _) => log.chain.summary(),
            (None, Some(_)) => ConsentLogSummary {
                lines: 0,
                head_sha256: GENESIS_SHA256.to_owned(),
                error: None,
            },
        };
        summary.error = self.audit_failed.clone();
        Some(summary)
    }
}

/// Opens the call's audit log if needed (resuming the chain of what it
/// holds), then appends one chained line and syncs it. The error says what
/// failed, for the log and `call.json`.
fn write_audit_line(
    store: &Store,
    call_id: &CallId,
    call: &mut CallRecording,
    at: DateTime<Utc>,
    fields: &Map<String, Value>,
) -> Result<(), String> {
    if let Some(log) = &call.audit {
        let len = log
            .file
            .metadata()
            .map_err(|e| format!("cannot stat consent.jsonl: {e}"))?
            .len();
        if len != log.len {
            // Another writer appended: chain to what is there now.
            call.audit = None;
        }
    }
    let log = match call.audit.as_mut() {
        Some(log) => log,
        None => {
            let (file, existing) = store
                .open_audit_log(call_id)
                .map_err(|e| format!("cannot open consent.jsonl: {e}"))?;
            let verified = audit::verify(&existing).map_err(|e| {
                format!("the consent.jsonl already there does not verify ({e}); nothing can be chained to it")
            })?;
            call.audit.insert(AuditLog {
                file,
                chain: AuditChain::resume(&verified),
                len: existing.len() as u64,
            })
        }
    };
    // The chain moves on only once the line is on disk.
    let mut chain = log.chain;
    let line = chain
        .append(at, fields)
        .map_err(|e| format!("cannot format an audit line: {e}"))?;
    // Audit before effect: the line is durable before any frame queued
    // after it is written.
    store
        .append_audit_line(call_id, &mut log.file, &line.text)
        .map_err(|e| format!("cannot append line {} to consent.jsonl: {e}", line.seq))?;
    log.chain = chain;
    log.len += line.text.len() as u64 + 1;
    Ok(())
}

/// An event's own fields plus the call id.
fn event_fields(call_id: &CallId, event: &AuditEvent) -> Map<String, Value> {
    let mut fields = match serde_json::to_value(event) {
        Ok(Value::Object(fields)) => fields,
        // An internally tagged enum always serializes to an object.
        _ => Map::new(),
    };
    fields.insert("call_id".into(), call_id.as_str().into());
    fields
}

/// Call time (s, to the millisecond) of wall-clock `at`, once the call
/// started.
fn call_time(started_at: Option<DateTime<Utc>>, at: DateTime<Utc>) -> Option<f64> {
    let ms = (at - started_at?).num_milliseconds();
    Some(ms.max(0) as f64 / 1000.0)
}

/// Creates the track's file; the error says what failed, for the log
/// and `call.json`.
fn open_track(store: &Store, call_id: &CallId, stem: &str) -> Result<Track, String> {
    let (file, file_name) = store
        .create_track(call_id, stem)
        .map_err(|e| format!("cannot create the recording {stem}.opus: {e}"))?;
    Ok(Track {
        writer: TrackWriter::new(rand::random::<u32>(), DEFAULT_PRE_SKIP),
        file: Some(file),
        file_name,
        last_page_at: Instant::now(),
        len: 0,
        durable_samples: 0,
    })
}

/// Writes the EOS page and syncs the file.
fn finish_track(track: &mut Track, store: &Store, metrics: &Metrics) -> Result<(), String> {
    track.writer.finish();
    write_pending(track, store, metrics)?;
    if let Some(file) = &track.file
        && let Err(e) = file.sync_all()
    {
        metrics.recorder_write_errors.inc();
        store.write_failed(&e);
        warn!(error = %e, "cannot sync recording");
    }
    Ok(())
}

/// Appends whatever complete pages the writer produced. A failed append is
/// cut back to the pages before it, so the file holds whole pages only,
/// and the file is closed; the error says what failed.
fn write_pending(track: &mut Track, store: &Store, metrics: &Metrics) -> Result<(), String> {
    let bytes = track.writer.poll_output();
    if bytes.is_empty() {
        return Ok(());
    }
    track.last_page_at = Instant::now();
    let Some(file) = track.file.as_mut() else {
        return Ok(());
    };
    match file.write_all(&bytes) {
        Ok(()) => {
            metrics.recorder_written_bytes.inc_by(bytes.len() as u64);
            track.len += bytes.len() as u64;
            track.durable_samples = track
                .writer
                .written_samples()
                .saturating_sub(track.writer.unflushed_samples());
            Ok(())
        }
        Err(e) => {
            metrics.recorder_write_errors.inc();
            store.write_failed(&e);
            if let Err(cut) = file.set_len(track.len).and_then(|()| file.sync_data()) {
                warn!(file = %track.file_name, error = %cut, "cannot cut a failed append back");
            }
            track.file = None;
            Err(format!(
                "cannot write the recording {}: {e}",
                track.file_name
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hearken_core::audit::{ChainFault, verify};
    use hearken_core::conference::{EndReason, ParticipantIdx, ParticipantSummary};
    use hearken_core::consent::engine::GateReason;
    use hearken_core::voice::VoiceHint;

    use super::*;
    use crate::sinks::{SinkFull, SinkSender};

    /// What the fake downstream was handed: (kind, participant, positions).
    type Seen = Arc<Mutex<Vec<(&'static str, String, Vec<u64>)>>>;

    struct FakeDownstream {
        seen: Seen,
        full: bool,
    }

    impl FakeDownstream {
        fn note(&self, kind: &'static str, who: &str, positions: Vec<u64>) {
            self.seen
                .lock()
                .unwrap()
                .push((kind, who.to_owned(), positions));
        }
    }

    impl Downstream for FakeDownstream {
        fn frame(&mut self, _: &CallId, frame: &SpeakerFrame) -> Result<(), SinkFull> {
            self.note("frame", &frame.participant_id, vec![frame.position]);
            if self.full { Err(SinkFull) } else { Ok(()) }
        }
        fn frames(&mut self, _: &CallId, frames: &[SpeakerFrame]) -> Result<(), SinkFull> {
            self.note("frames", "", frames.iter().map(|f| f.position).collect());
            if self.full { Err(SinkFull) } else { Ok(()) }
        }
        fn participant_left(&mut self, _: &CallId, p: &Arc<str>) {
            self.note("left", p, Vec::new());
        }
        fn purge_participant(&mut self, _: &CallId, p: &Arc<str>) {
            self.note("purge", p, Vec::new());
        }
        fn discard_participant(&mut self, _: &CallId, p: &Arc<str>) {
            self.note("discard_participant", p, Vec::new());
        }
        fn discard(&mut self, _: &CallId) {
            self.note("discard", "", Vec::new());
        }
        fn call_ended(&mut self, summary: CallSummary, completion: Completion) {
            self.note("call_ended", "", Vec::new());
            completion.finish(summary);
        }
    }

    /// 20 ms of Opus (TOC 0x78: hybrid, full band, 20 ms, one frame).
    const PACKET: [u8; 4] = [0x78, 1, 2, 3];
    const FRAME: u64 = 960;

    struct Setup {
        _dir: tempfile::TempDir,
        store: Store,
        metrics: Metrics,
        seen: Seen,
        call: CallId,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Setup {
            _dir: dir,
            store,
            metrics: Metrics::new(),
            seen: Arc::default(),
            call: CallId::parse("c1").unwrap(),
        }
    }

    impl Setup {
        fn recorder(&self, full: bool) -> Recorder {
            let downstream = FakeDownstream {
                seen: self.seen.clone(),
                full,
            };
            Recorder::new(
                self.store.clone(),
                self.metrics.clone(),
                Some(Box::new(downstream)),
            )
        }

        fn log(&self) -> Vec<u8> {
            std::fs::read(self.store.call_dir(&self.call).join("consent.jsonl")).unwrap()
        }

        fn lines(&self) -> Vec<serde_json::Value> {
            self.log()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect()
        }

        fn call_json(&self) -> CallSummary {
            self.store.read_call(&self.call).unwrap().unwrap()
        }

        fn seen(&self) -> Vec<(&'static str, String, Vec<u64>)> {
            self.seen.lock().unwrap().clone()
        }

        fn dropped(&self, reason: DropReason) -> u64 {
            self.metrics
                .frames_dropped
                .with_label_values(&[reason.as_label()])
                .get()
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn frame(who: &str, n: u64) -> SpeakerFrame {
        SpeakerFrame {
            participant: ParticipantIdx(0),
            participant_id: who.into(),
            file_stem: who.into(),
            position: n * FRAME,
            payload: Arc::from(&PACKET[..]),
            arrival: Instant::now(),
            voice: VoiceHint::default(),
            source: None,
        }
    }

    fn frame_msg(call: &CallId, who: &str, n: u64) -> SinkMsg {
        SinkMsg::Frame {
            call_id: call.clone(),
            frame: frame(who, n),
        }
    }

    fn gate(call: &CallId, t: f64, at: &str) -> SinkMsg {
        SinkMsg::Audit {
            call_id: call.clone(),
            event: AuditEvent::GateChanged {
                t,
                participant: "alice".into(),
                open: true,
                held: false,
                reason: GateReason::Consented,
            },
            at: utc(at),
        }
    }

    fn summary(call: &CallId, ended: bool) -> CallSummary {
        CallSummary {
            call_id: call.to_string(),
            started_at: Some(utc("2025-03-01T09:30:00Z")),
            ended_at: ended.then(|| utc("2025-03-01T09:31:30.250Z")),
            end_reason: ended.then_some(EndReason::Api),
            active_sessions: 0,
            consent_mode: None,
            participants: ["alice", "bob"]
                .map(|p| ParticipantSummary {
                    id: p.into(),
                    file: format!("audio/{p}.opus"),
                    ..Default::default()
                })
                .into(),
            failed_sessions: Vec::new(),
            consent_log: None,
            capture_error: None,
            announcement_track: None,
            node: None,
            segments: Vec::new(),
            postcall: None,
        }
    }

    fn started(call: &CallId) -> SinkMsg {
        SinkMsg::CallStarted {
            call_id: call.clone(),
            summary: Box::new(summary(call, false)),
        }
    }

    fn ended(call: &CallId) -> SinkMsg {
        SinkMsg::CallEnded {
            summary: Box::new(summary(call, true)),
            done: None,
        }
    }

    fn barrier(r: &mut Recorder, call: &CallId) -> Result<(), AuditLogFailed> {
        let (done, answer) = tokio::sync::oneshot::channel();
        r.handle(SinkMsg::Barrier {
            call_id: call.clone(),
            done,
        });
        answer.blocking_recv().unwrap()
    }

    #[test]
    fn audit_lines_are_chained_and_the_head_is_in_call_json() {
        let s = setup();
        let mut r = s.recorder(false);
        // Before call time zero the engine passes its own clock.
        r.handle(gate(&s.call, 0.0, "2025-03-01T09:29:58.5Z"));
        r.handle(started(&s.call));
        let at_start = s.call_json().consent_log.unwrap();
        assert_eq!(at_start.lines, 1);
        r.handle(gate(&s.call, 4.25, "2025-03-01T09:30:04.25Z"));
        assert_eq!(barrier(&mut r, &s.call), Ok(()));
        r.handle(ended(&s.call));

        let v = verify(&s.log()).unwrap();
        assert_eq!(v.lines, 3);
        let lines = s.lines();
        let ats: Vec<&str> = lines.iter().map(|l| l["at"].as_str().unwrap()).collect();
        assert_eq!(
            ats,
            [
                "2025-03-01T09:29:58.500Z",
                "2025-03-01T09:30:04.250Z",
                "2025-03-01T09:31:30.250Z"
            ]
        );
        assert_eq!(lines[0]["call_id"], "c1");
        assert_eq!(lines[1]["event"], "gate_changed");
        // The recorder's own closing line: 09:30:00 to 09:31:30.25.
        assert_eq!(lines[2]["event"], "call_ended");
        assert_eq!(lines[2]["reason"], "api");
        assert_eq!(lines[2]["t"], 90.25);

        let log = s.call_json().consent_log.unwrap();
        assert_eq!(
            (log.lines, log.head_sha256.as_str(), log.error),
            (3, v.head_sha256.as_str(), None)
        );
        // The head recorded at start is the chain after its first line.
        assert_eq!(v.head_after(1).unwrap(), at_start.head_sha256);
    }

    #[test]
    fn a_failed_audit_line_stops_the_calls_capture() {
        let s = setup();
        let (tx, queue) = SinkSender::channel(64);
        let downstream = FakeDownstream {
            seen: s.seen.clone(),
            full: false,
        };
        let thread = spawn(
            "recorder-test".into(),
            s.store.clone(),
            queue,
            s.metrics.clone(),
            Some(Box::new(downstream)),
        )
        .unwrap();
        // The first audit line is written, the second fails.
        s.store.fail_audit_appends_after(Some(1));
        let (done, barrier) = tokio::sync::oneshot::channel();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        // Everything is queued before the recorder handles any of it: the
        // frames behind the failed line are already waiting when it fails.
        let mut msgs = vec![started(&s.call), gate(&s.call, 0.0, "2025-03-01T09:30:00Z")];
        msgs.extend((0..3).map(|n| frame_msg(&s.call, "alice", n)));
        msgs.push(gate(&s.call, 0.06, "2025-03-01T09:30:00.06Z"));
        msgs.extend((3..8).map(|n| frame_msg(&s.call, "alice", n)));
        msgs.push(SinkMsg::Frames {
            call_id: s.call.clone(),
            frames: (8..12).map(|n| frame("bob", n)).collect(),
        });
        msgs.push(SinkMsg::Barrier {
            call_id: s.call.clone(),
            done,
        });
        msgs.push(SinkMsg::CallEnded {
            summary: Box::new(summary(&s.call, true)),
            done: Some(ended_tx),
        });
        msgs.push(SinkMsg::Shutdown);
        for msg in msgs {
            tx.try_send_control(msg).unwrap();
        }
        thread.join().unwrap();

        let failed = barrier.blocking_recv().unwrap().unwrap_err();
        assert!(failed.reason.contains("line 2"), "{failed}");
        let summary = ended_rx.blocking_recv().unwrap();
        let log = summary.consent_log.unwrap();
        assert_eq!(log.lines, 1);
        assert!(
            log.error
                .as_deref()
                .unwrap()
                .contains("no space left on device"),
            "{log:?}"
        );
        assert_eq!(s.call_json().consent_log.unwrap().error, log.error);
        // Only the frames before the failed line reached the track and the
        // transcriber.
        let path = s.store.call_dir(&s.call).join("audio/alice.opus");
        let written = audio_packet_bytes(&path);
        assert_eq!(written.iter().filter(|p| **p == PACKET).count(), 3);
        assert!(!s.store.call_dir(&s.call).join("audio/bob.opus").exists());
        let handed: Vec<_> = s
            .seen()
            .into_iter()
            .filter(|(k, _, _)| k.starts_with("frame"))
            .collect();
        assert_eq!(
            handed,
            [0, 1, 2].map(|n| ("frame", "alice".to_owned(), vec![n * FRAME]))
        );
        assert_eq!(s.dropped(DropReason::AuditLogFailed), 5 + 4);
        assert_eq!(s.metrics.consent_audit_write_errors.get(), 1);
        // No partial line, no call_ended line chained to a broken log.
        assert_eq!(verify(&s.log()).unwrap().lines, 1);
    }

    #[test]
    fn a_commit_is_written_and_handed_down_whole() {
        let s = setup();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        // Held audio of two speakers, in call-time order.
        let commit: Vec<SpeakerFrame> = (0..3)
            .flat_map(|n| [frame("alice", n), frame("bob", n)])
            .collect();
        r.handle(SinkMsg::Frames {
            call_id: s.call.clone(),
            frames: commit,
        });
        assert_eq!(
            s.seen(),
            [(
                "frames",
                String::new(),
                vec![0, 0, FRAME, FRAME, 2 * FRAME, 2 * FRAME]
            )]
        );
        r.handle(ended(&s.call));
        let summary = s.call_json();
        for p in &summary.participants {
            assert_eq!(p.recorded_seconds, 0.06, "{}", p.id);
        }
        assert_eq!(s.metrics.recorder_frames_written.get(), 6);
    }

    #[test]
    fn a_spoken_yes_is_kept_as_evidence_and_listed_in_call_json() {
        use hearken_core::conference::ParticipantConsent;
        use hearken_core::consent::engine::{ConsentMethod, ConsentState};
        let s = setup();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        r.handle(SinkMsg::ConsentEvidence {
            call_id: s.call.clone(),
            participant_id: "alice".into(),
            file_stem: "alice".into(),
            packets: (0..3)
                .map(|_| EvidencePacket {
                    payload: PACKET.to_vec(),
                    samples: FRAME as u32,
                })
                .collect(),
        });
        let path = s
            .store
            .call_dir(&s.call)
            .join("consent-evidence/alice.opus");
        assert_eq!(audio_packet_bytes(&path), vec![PACKET.to_vec(); 3]);
        let mut end = summary(&s.call, true);
        for p in &mut end.participants {
            p.consent = Some(ParticipantConsent {
                state: ConsentState::Consented(ConsentMethod::Verbal),
                jurisdiction: Some("DE".into()),
                evidence: None,
            });
        }
        r.handle(SinkMsg::CallEnded {
            summary: Box::new(end),
            done: None,
        });
        let summary = s.call_json();
        let evidence = |i: usize| {
            summary.participants[i]
                .consent
                .as_ref()
                .unwrap()
                .evidence
                .clone()
        };
        assert_eq!(evidence(0).as_deref(), Some("consent-evidence/alice.opus"));
        assert_eq!(evidence(1), None, "bob gave no spoken yes");
    }

    #[test]
    fn a_commit_the_next_stage_cannot_take_is_counted_whole() {
        let s = setup();
        let mut r = s.recorder(true);
        r.handle(SinkMsg::Frames {
            call_id: s.call.clone(),
            frames: (0..50).map(|n| frame("alice", n)).collect(),
        });
        assert_eq!(s.dropped(DropReason::TranscriberQueueFull), 50);
        // Written all the same: the recording does not depend on the
        // transcriber.
        assert_eq!(s.metrics.recorder_frames_written.get(), 50);
    }

    #[test]
    fn discarding_a_participant_deletes_their_track_and_starts_a_fresh_one() {
        let s = setup();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        for n in 0..5 {
            r.handle(frame_msg(&s.call, "alice", n));
            r.handle(frame_msg(&s.call, "bob", n));
        }
        let audio = s.store.call_dir(&s.call).join("audio");
        r.handle(SinkMsg::PurgeParticipant {
            call_id: s.call.clone(),
            participant_id: "alice".into(),
        });
        r.handle(SinkMsg::DiscardParticipant {
            call_id: s.call.clone(),
            participant_id: "alice".into(),
            file_stem: "alice".into(),
        });
        assert!(!audio.join("alice.opus").exists());
        assert!(audio.join("bob.opus").exists());
        let kinds: Vec<_> = s
            .seen()
            .into_iter()
            .filter(|(k, _, _)| !k.starts_with("frame"))
            .collect();
        assert_eq!(
            kinds,
            [
                ("purge", "alice".to_owned(), vec![]),
                ("discard_participant", "alice".to_owned(), vec![])
            ]
        );
        // Alice speaks again at 0.2 s: a fresh track under the same name,
        // still starting at call time zero.
        r.handle(frame_msg(&s.call, "alice", 10));
        r.handle(ended(&s.call));
        let summary = s.call_json();
        let alice = &summary.participants[0];
        assert_eq!(alice.file, "audio/alice.opus");
        assert_eq!(alice.recorded_seconds, 0.22);
        // Ten frames of fill (PLC) and the one real packet; none of the
        // discarded five.
        let packets = audio_packet_bytes(&audio.join("alice.opus"));
        assert_eq!(packets.iter().filter(|p| **p == PACKET).count(), 1);
        assert_eq!(summary.participants[1].recorded_seconds, 0.1);
    }

    #[test]
    fn the_announcement_track_is_recorded_listed_and_never_passed_on() {
        let s = setup();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        r.handle(frame_msg(&s.call, "alice", 0));
        // The notice's three packets from 0.1 s.
        for n in 5..8 {
            let mut frame = frame(ANNOUNCEMENT_STEM, n);
            frame.participant = hearken_core::conference::ANNOUNCEMENT_PARTICIPANT;
            r.handle(SinkMsg::Announcement {
                call_id: s.call.clone(),
                frame,
            });
        }
        let mut end = summary(&s.call, true);
        end.announcement_track = Some(hearken_core::announcement::AnnouncementSummary {
            required_from: 0.0,
            file: Some("audio/hearken-prompts.opus".into()),
            prompts: 1,
            prompt_seconds: 0.06,
            recorded_seconds: 0.0,
        });
        r.handle(SinkMsg::CallEnded {
            summary: Box::new(end),
            done: None,
        });
        let audio = s.store.call_dir(&s.call).join("audio");
        let packets = audio_packet_bytes(&audio.join("hearken-prompts.opus"));
        // Five frames of leading fill to 0.1 s, then the three packets.
        assert_eq!(packets.iter().filter(|p| **p == PACKET).count(), 3);
        let a = s.call_json().announcement_track.unwrap();
        assert_eq!(a.file.as_deref(), Some("audio/hearken-prompts.opus"));
        assert_eq!(a.recorded_seconds, 0.16);
        // Only alice's frame went to the transcriber.
        let passed: Vec<String> = s
            .seen()
            .into_iter()
            .filter(|(k, _, _)| k.starts_with("frame"))
            .map(|(_, who, _)| who)
            .collect();
        assert_eq!(passed, ["alice"]);
    }

    /// The audio packets of an Ogg Opus file, as bytes.
    fn audio_packet_bytes(path: &std::path::Path) -> Vec<Vec<u8>> {
        let file = std::fs::File::open(path).unwrap();
        let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
        std::iter::from_fn(|| reader.read_packet().unwrap())
            .skip(2)
            .map(|p| p.data)
            .collect()
    }

    #[test]
    fn a_failed_discard_is_written_after_the_intent() {
        let s = setup();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        r.handle(SinkMsg::Audit {
            call_id: s.call.clone(),
            event: AuditEvent::Discarded {
                t: 2.0,
                what: "all captured audio of the call".into(),
                participant: None,
            },
            at: utc("2025-03-01T09:30:02Z"),
        });
        // `audio` is a file, so it cannot be removed as a directory: a real
        // error from the file system.
        std::fs::write(s.store.call_dir(&s.call).join("audio"), b"x").unwrap();
        r.handle(SinkMsg::DiscardAll {
            call_id: s.call.clone(),
        });
        let lines = s.lines();
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["discarded", "discard_failed"]);
        assert!(
            lines[1]["error"].as_str().unwrap().len() > 3,
            "{}",
            lines[1]
        );
        assert_eq!(lines[1]["what"], "all recordings of the call");
        assert_eq!(verify(&s.log()).unwrap().lines, 2);
    }

    #[test]
    fn a_log_left_by_an_earlier_attempt_is_continued() {
        let s = setup();
        let mut first = s.recorder(false);
        first.handle(gate(&s.call, 0.0, "2025-03-01T09:00:00Z"));
        first.handle(gate(&s.call, 0.0, "2025-03-01T09:00:01Z"));
        // Another recorder (another worker) takes the call id up again.
        let mut second = s.recorder(false);
        second.handle(gate(&s.call, 0.0, "2025-03-01T09:05:00Z"));
        // And the first one once more: it notices the lines it did not write.
        first.handle(gate(&s.call, 0.0, "2025-03-01T09:06:00Z"));
        let seqs: Vec<u64> = s
            .lines()
            .iter()
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(verify(&s.log()).unwrap().lines, 4);
    }

    #[test]
    fn a_broken_log_left_behind_stops_capture() {
        let s = setup();
        let dir = s.store.call_dir(&s.call);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("consent.jsonl"), b"{\"seq\":1,\"eve").unwrap();
        let mut r = s.recorder(false);
        r.handle(started(&s.call));
        r.handle(gate(&s.call, 0.0, "2025-03-01T09:30:00Z"));
        r.handle(frame_msg(&s.call, "alice", 0));
        let failed = barrier(&mut r, &s.call).unwrap_err();
        assert!(failed.reason.contains("does not verify"), "{failed}");
        assert_eq!(s.dropped(DropReason::AuditLogFailed), 1);
        // Nothing was chained to it.
        assert_eq!(verify(&s.log()).unwrap_err().fault, ChainFault::Torn);
        assert!(s.call_json().consent_log.unwrap().error.is_some());
    }
}
