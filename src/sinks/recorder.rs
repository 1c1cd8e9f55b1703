//! The recorder: one thread per media worker that syncs each call's consent
//! audit log, turns placed frames into aligned Ogg Opus tracks, and hands
//! every frame it wrote to its [`Downstream`].
//!
//! Everything arrives on one ordered, bounded queue (see [`crate::sinks`]),
//! so an audit line is on disk before any frame its gate decision let
//! through is written, and before that frame reaches the transcriber. Files
//! are written here, never on the media thread; a slow disk costs dropped
//! (and counted) frames, never unbounded memory or a blocked media thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use hearken_core::conference::{CallSummary, SAMPLE_RATE, SpeakerFrame};
use hearken_core::consent::engine::AuditEvent;
use hearken_core::ids::CallId;
use hearken_core::track::{DEFAULT_PRE_SKIP, FrameOutcome, TrackWriter};
use tracing::{debug, error, info, warn};

use super::{Completion, Downstream, SinkMsg};
use crate::metrics::{DropReason, Metrics};
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
    thread::Builder::new().name(name).spawn(move || {
        Recorder {
            store,
            calls: HashMap::new(),
            metrics,
            downstream,
        }
        .run(queue)
    })
}

struct Track {
    writer: TrackWriter,
    file: Option<File>,
    file_name: String,
    last_page_at: Instant,
}

struct CallRecording {
    tracks: HashMap<Arc<str>, Track>,
    audit: Option<File>,
    discarded: bool,
}

struct Recorder {
    store: Store,
    calls: HashMap<CallId, CallRecording>,
    metrics: Metrics,
    downstream: Option<Box<dyn Downstream>>,
}

impl Recorder {
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
            SinkMsg::Frame { call_id, frame } => self.handle_frame(call_id, frame),
            SinkMsg::CallStarted { call_id, summary } => {
                self.calls
                    .entry(call_id.clone())
                    .or_insert_with(CallRecording::new);
                if let Err(e) = self.store.write_call_json(&summary) {
                    self.metrics.recorder_write_errors.inc();
                    error!(call = %call_id, error = %e, "cannot write call.json");
                }
            }
            SinkMsg::Audit {
                call_id,
                event,
                call_start,
            } => {
                let line = audit_line(&call_id, &event, call_start);
                if let Err(e) = self.append_audit(&call_id, &line) {
                    self.metrics.recorder_write_errors.inc();
                    error!(call = %call_id, error = %e, "cannot append to consent.jsonl");
                }
            }
            SinkMsg::ParticipantLeft {
                call_id,
                participant_id,
                file_stem,
                position,
            } => {
                if let Some(d) = self.downstream.as_mut() {
                    d.participant_left(&call_id, &participant_id);
                }
                let metrics = &self.metrics;
                if let Some(track) = self
                    .calls
                    .get_mut(&call_id)
                    .and_then(|c| c.tracks.get_mut(&file_stem))
                {
                    if let Err(e) = track.writer.fill_to(position) {
                        warn!(error = %e, "cannot pad track to the participant's leave");
                    }
                    track.writer.flush();
                    write_pending(track, metrics);
                }
            }
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
                    }
                }
            }
            SinkMsg::CallEnded { summary, done } => {
                let summary = self.finish_call(*summary);
                let completion = Completion::new(self.store.clone(), done);
                match self.downstream.as_mut() {
                    Some(d) if summary.started_at.is_some() => d.call_ended(summary, completion),
                    _ => completion.finish(summary),
                }
            }
            SinkMsg::Shutdown => {}
        }
    }

    fn handle_frame(&mut self, call_id: CallId, frame: SpeakerFrame) {
        let Self {
            calls,
            store,
            metrics,
            downstream,
        } = self;
        let call = calls
            .entry(call_id.clone())
            .or_insert_with(CallRecording::new);
        if call.discarded {
            metrics.drop_frame(DropReason::Discarded);
            return;
        }
        let track = match call.tracks.get_mut(&frame.file_stem) {
            Some(t) => t,
            None => call
                .tracks
                .entry(frame.file_stem.clone())
                .or_insert_with(|| open_track(store, &call_id, &frame.file_stem, metrics)),
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
        write_pending(track, metrics);
        if written
            && let Some(d) = downstream.as_mut()
            && d.frame(&call_id, &frame).is_err()
        {
            metrics.drop_frame(DropReason::TranscriberQueueFull);
        }
    }

    /// Appends one line to the call's audit log and syncs it.
    fn append_audit(&mut self, call_id: &CallId, line: &str) -> std::io::Result<()> {
        let call = self
            .calls
            .entry(call_id.clone())
            .or_insert_with(CallRecording::new);
        let file = match call.audit.as_mut() {
            Some(f) => f,
            None => call.audit.insert(self.store.open_audit_log(call_id)?),
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        // Audit before effect: the line is durable before any frame queued
        // after it is written.
        file.sync_data()
    }

    /// Finishes every track of the call (EOS, sync), also those the summary
    /// does not name (a call abandoned after a bug), and fills in what was
    /// recorded.
    fn finish_call(&mut self, mut summary: CallSummary) -> CallSummary {
        let Ok(call_id) = CallId::parse(&summary.call_id) else {
            return summary;
        };
        let Some(mut call) = self.calls.remove(&call_id) else {
            // The call never started (no session connected): nothing recorded.
            return summary;
        };
        for track in call.tracks.values_mut() {
            finish_track(track, &self.metrics);
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
                p.recorded_seconds = track.writer.written_samples() as f64 / SAMPLE_RATE as f64;
                p.file = format!("audio/{}", track.file_name);
            }
        }
        info!(call = %call_id, participants = summary.participants.len(), "call recording finished");
        summary
    }

    /// On shutdown without an end message (the worker died), still close
    /// every file with an EOS page.
    fn finish_all(&mut self) {
        for (_, mut call) in self.calls.drain() {
            for track in call.tracks.values_mut() {
                finish_track(track, &self.metrics);
            }
        }
    }

    fn flush_due(&mut self, now: Instant) {
        for call in self.calls.values_mut() {
            for track in call.tracks.values_mut() {
                if track.writer.unflushed_samples() > 0
                    && now.duration_since(track.last_page_at) >= FLUSH_INTERVAL
                {
                    track.writer.flush();
                    write_pending(track, &self.metrics);
                }
            }
        }
    }
}

impl CallRecording {
    fn new() -> Self {
        Self {
            tracks: HashMap::new(),
            audit: None,
            discarded: false,
        }
    }
}

/// The audit line of an event: the event's own fields, plus the call id and
/// the wall-clock time (`at`) of its call time.
fn audit_line(call_id: &CallId, event: &AuditEvent, call_start: Option<DateTime<Utc>>) -> String {
    let mut line = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = line.as_object_mut() {
        obj.insert("call_id".into(), call_id.as_str().into());
        let at = call_start.map(|start| {
            let offset = chrono::Duration::microseconds((event.time() * 1e6).round() as i64);
            (start + offset).to_rfc3339_opts(SecondsFormat::Millis, true)
        });
        obj.insert("at".into(), at.into());
    }
    line.to_string()
}

fn open_track(store: &Store, call_id: &CallId, stem: &str, metrics: &Metrics) -> Track {
    let writer = TrackWriter::new(rand::random::<u32>(), DEFAULT_PRE_SKIP);
    let (file, file_name) = match store.create_track(call_id, stem) {
        Ok((f, name)) => (Some(f), name),
        Err(e) => {
            metrics.recorder_write_errors.inc();
            error!(call = %call_id, error = %e, "cannot create recording");
            (None, format!("{stem}.opus"))
        }
    };
    Track {
        writer,
        file,
        file_name,
        last_page_at: Instant::now(),
    }
}

/// Writes the EOS page and syncs the file.
fn finish_track(track: &mut Track, metrics: &Metrics) {
    track.writer.finish();
    write_pending(track, metrics);
    if let Some(file) = &track.file
        && let Err(e) = file.sync_all()
    {
        metrics.recorder_write_errors.inc();
        warn!(error = %e, "cannot sync recording");
    }
}

/// Appends whatever complete pages the writer produced.
fn write_pending(track: &mut Track, metrics: &Metrics) {
    let bytes = track.writer.poll_output();
    if bytes.is_empty() {
        return;
    }
    track.last_page_at = Instant::now();
    let Some(file) = track.file.as_mut() else {
        return;
    };
    match file.write_all(&bytes) {
        Ok(()) => metrics.recorder_written_bytes.inc_by(bytes.len() as u64),
        Err(e) => {
            metrics.recorder_write_errors.inc();
            error!(file = %track.file_name, error = %e, "recording write failed; closing it");
            track.file = None;
        }
    }
}
