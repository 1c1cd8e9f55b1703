//! The recorder sink: one thread per media worker that turns placed frames into
//! aligned Ogg Opus files and writes `call.json`.
//!
//! Frames and control messages (a participant left, a call ended, a consent
//! audit event) share one ordered channel, so the recorder sees them in the
//! order the worker produced them: an audit event is on disk before any frame
//! its gate decision let through. Control messages are never dropped; frames
//! are admitted against a fixed budget ([`RecorderHandle::try_send_frame`]),
//! so a slow disk costs dropped (and counted) frames, never unbounded memory
//! or a blocked media thread.
//!
//! File writes happen here, never on the media thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{debug, error, info, warn};

use crate::core::conference::{CallSummary, SAMPLE_RATE, SpeakerFrame};
use crate::core::ids::CallId;
use crate::core::track::{DEFAULT_PRE_SKIP, FrameOutcome, TrackWriter};
use crate::metrics::{DropReason, Metrics};
use crate::sinks::transcribe::{TranscribeHandle, TranscribeMsg};

/// Pages are flushed at least this often (wall time) while audio is pending,
/// so a crash loses at most this much of each recording.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the recorder looks for tracks to flush.
const TICK: Duration = Duration::from_millis(200);

/// A frame for the recorder.
#[derive(Debug)]
pub struct RecorderFrame {
    /// The call.
    pub call_id: CallId,
    /// The placed frame.
    pub frame: SpeakerFrame,
}

/// Things the recorder must not miss.
#[derive(Debug)]
pub enum RecorderControl {
    /// Call time zero: create the call directory and an in-progress `call.json`.
    CallStarted {
        /// The call.
        call_id: CallId,
        /// The summary at start.
        summary: CallSummary,
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
    /// The call ended: finish every track (EOS), sync, write the final
    /// `call.json`, then answer on `done`.
    CallEnded {
        /// The final summary from the conference.
        summary: CallSummary,
        /// Told when everything is on disk.
        done: Option<tokio::sync::oneshot::Sender<CallSummary>>,
    },
    /// Append one consent audit event (a JSON line) to the call's
    /// `consent.jsonl` and sync it, before anything queued after it.
    Audit {
        /// The call.
        call_id: CallId,
        /// One JSON object, without the newline.
        line: String,
    },
    /// Delete every recording of the call (a decline under
    /// `stop_and_discard`); later frames of the call are refused.
    DiscardAll {
        /// The call.
        call_id: CallId,
    },
    /// Stop the thread after finishing what is queued.
    Shutdown,
}

/// What travels to the recorder, in order.
#[derive(Debug)]
enum RecorderMsg {
    Frame(RecorderFrame),
    Control(RecorderControl),
}

/// Sending side of one recorder, held by its media worker.
#[derive(Debug, Clone)]
pub struct RecorderHandle {
    tx: Sender<RecorderMsg>,
    frames_queued: Arc<AtomicUsize>,
    frame_budget: usize,
}

/// The recorder has no room for another frame (or has stopped).
#[derive(Debug, thiserror::Error)]
#[error("recorder queue full")]
pub struct QueueFull;

impl RecorderHandle {
    /// Queues a frame unless `limits.recorder_queue_frames` frames are
    /// already waiting. Never blocks.
    pub fn try_send_frame(&self, frame: RecorderFrame) -> Result<(), QueueFull> {
        if self.frames_queued.fetch_add(1, Ordering::AcqRel) >= self.frame_budget {
            self.frames_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(QueueFull);
        }
        self.tx.send(RecorderMsg::Frame(frame)).map_err(|_| {
            self.frames_queued.fetch_sub(1, Ordering::AcqRel);
            QueueFull
        })
    }

    /// Queues a control message (never dropped while the recorder runs).
    pub fn send_control(&self, control: RecorderControl) {
        let _ = self.tx.send(RecorderMsg::Control(control));
    }
}

/// Starts a recorder thread writing under `data_dir`.
pub fn spawn(
    name: String,
    data_dir: PathBuf,
    queue_frames: usize,
    metrics: Metrics,
    transcribe: Option<TranscribeHandle>,
) -> io::Result<(RecorderHandle, thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let frames_queued = Arc::new(AtomicUsize::new(0));
    let queued = frames_queued.clone();
    let join = thread::Builder::new().name(name).spawn(move || {
        Recorder {
            data_dir,
            calls: HashMap::new(),
            metrics,
            frames_queued: queued,
            transcribe,
        }
        .run(rx)
    })?;
    Ok((
        RecorderHandle {
            tx,
            frames_queued,
            frame_budget: queue_frames,
        },
        join,
    ))
}

/// The directory of a call's artifacts.
pub fn call_dir(data_dir: &Path, call_id: &CallId) -> PathBuf {
    data_dir.join("calls").join(call_id.as_str())
}

/// Reads a call's `call.json`, if there is one.
pub fn read_call_json(data_dir: &Path, call_id: &CallId) -> io::Result<Option<CallSummary>> {
    let path = call_dir(data_dir, call_id).join("call.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct Track {
    writer: TrackWriter,
    file: Option<File>,
    file_name: String,
    last_page_at: Instant,
}

struct CallRecording {
    dir: PathBuf,
    tracks: HashMap<Arc<str>, Track>,
    started: Option<CallSummary>,
    audit: Option<File>,
    discarded: bool,
}

struct Recorder {
    data_dir: PathBuf,
    calls: HashMap<CallId, CallRecording>,
    metrics: Metrics,
    frames_queued: Arc<AtomicUsize>,
    transcribe: Option<TranscribeHandle>,
}

impl Recorder {
    fn run(mut self, rx: Receiver<RecorderMsg>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(RecorderMsg::Frame(f)) => {
                    self.frames_queued.fetch_sub(1, Ordering::AcqRel);
                    self.handle_frame(f);
                }
                Ok(RecorderMsg::Control(RecorderControl::Shutdown))
                | Err(RecvTimeoutError::Disconnected) => {
                    self.finish_all();
                    return;
                }
                Ok(RecorderMsg::Control(c)) => self.handle_control(c),
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                self.flush_due(now);
                next_tick = now + TICK;
            }
        }
    }

    fn call(&mut self, call_id: &CallId) -> &mut CallRecording {
        call_entry(&mut self.calls, &self.data_dir, call_id)
    }

    fn handle_frame(&mut self, f: RecorderFrame) {
        // Split borrows: no per-frame clone of the metrics handles.
        let Self {
            calls,
            data_dir,
            metrics,
            transcribe,
            ..
        } = self;
        let call = call_entry(calls, data_dir, &f.call_id);
        if call.discarded {
            metrics.drop_frame(DropReason::Discarded);
            return;
        }
        let dir = call.dir.clone();
        let track = call
            .tracks
            .entry(f.frame.file_stem.clone())
            .or_insert_with(|| open_track(&dir, &f.frame.file_stem, metrics));
        let written = match track
            .writer
            .handle_frame(f.frame.position, &f.frame.payload)
        {
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
        // After the audit events queued before it: the backend only gets
        // audio that the durable audit log allows.
        if written
            && let Some(t) = transcribe.as_ref()
            && !t.try_send_frame(TranscribeMsg::Frame {
                call_id: f.call_id,
                participant_id: f.frame.participant_id,
                position: f.frame.position,
                payload: f.frame.payload,
                voice: f.frame.voice,
            })
        {
            metrics.drop_frame(DropReason::TranscriberQueueFull);
        }
    }

    fn handle_control(&mut self, c: RecorderControl) {
        match c {
            RecorderControl::CallStarted { call_id, summary } => {
                let metrics = self.metrics.clone();
                let call = self.call(&call_id);
                call.started = Some(summary.clone());
                if let Err(e) = write_call_json(&call.dir, &summary) {
                    metrics.recorder_write_errors.inc();
                    error!(call = %call_id, error = %e, "cannot write call.json");
                }
            }
            RecorderControl::ParticipantLeft {
                call_id,
                participant_id,
                file_stem,
                position,
            } => {
                if let Some(t) = &self.transcribe {
                    t.send_control(TranscribeMsg::ParticipantLeft {
                        call_id: call_id.clone(),
                        participant_id,
                    });
                }
                let metrics = self.metrics.clone();
                if let Some(track) = self
                    .calls
                    .get_mut(&call_id)
                    .and_then(|c| c.tracks.get_mut(&file_stem))
                {
                    if let Err(e) = track.writer.fill_to(position) {
                        warn!(error = %e, "cannot pad track to the participant's leave");
                    }
                    track.writer.flush();
                    write_pending(track, &metrics);
                }
            }
            RecorderControl::CallEnded { summary, done } => {
                let started = summary.started_at.is_some();
                let summary = self.finish_call(summary);
                match (&self.transcribe, CallId::parse(&summary.call_id)) {
                    (Some(t), Ok(id)) if started => {
                        // The transcriber adds coverage to call.json and
                        // answers once the last finals are in.
                        let dir = call_dir(&self.data_dir, &id);
                        t.send_control(TranscribeMsg::CallEnded {
                            summary,
                            dir,
                            done: done.map(|d| {
                                Box::new(move |s: CallSummary| {
                                    let _ = d.send(s);
                                })
                                    as crate::sinks::transcribe::OnFinished
                            }),
                        });
                    }
                    _ => {
                        if let Some(done) = done {
                            let _ = done.send(summary);
                        }
                    }
                }
            }
            RecorderControl::Audit { call_id, line } => {
                let metrics = self.metrics.clone();
                let call = self.call(&call_id);
                if let Err(e) = append_audit(call, &line) {
                    metrics.recorder_write_errors.inc();
                    error!(call = %call_id, error = %e, "cannot append to consent.jsonl");
                }
            }
            RecorderControl::DiscardAll { call_id } => {
                if let Some(t) = &self.transcribe {
                    t.send_control(TranscribeMsg::Discard {
                        call_id: call_id.clone(),
                    });
                }
                let call = self.call(&call_id);
                call.discarded = true;
                let audio = call.dir.join("audio");
                call.tracks.clear();
                match fs::remove_dir_all(&audio) {
                    Ok(()) => info!(call = %call_id, "recordings discarded"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        self.metrics.recorder_write_errors.inc();
                        error!(call = %call_id, error = %e, "cannot discard recordings");
                    }
                }
            }
            RecorderControl::Shutdown => {}
        }
    }

    /// Finishes every track of the call and writes the final `call.json`.
    fn finish_call(&mut self, mut summary: CallSummary) -> CallSummary {
        let Ok(call_id) = CallId::parse(&summary.call_id) else {
            return summary;
        };
        let metrics = self.metrics.clone();
        let Some(mut call) = self.calls.remove(&call_id) else {
            // The call never started (no session connected): nothing recorded.
            return summary;
        };
        for p in &mut summary.participants {
            let stem = p
                .file
                .strip_prefix("audio/")
                .and_then(|f| f.strip_suffix(".opus"))
                .unwrap_or_default()
                .to_owned();
            if call.discarded {
                p.recorded_seconds = 0.0;
                p.file = String::new();
            } else if let Some(track) = call.tracks.get_mut(stem.as_str()) {
                track.writer.finish();
                write_pending(track, &metrics);
                if let Some(file) = &track.file
                    && let Err(e) = file.sync_all()
                {
                    metrics.recorder_write_errors.inc();
                    warn!(error = %e, "cannot sync recording");
                }
                p.recorded_seconds = track.writer.written_samples() as f64 / SAMPLE_RATE as f64;
                p.file = format!("audio/{}", track.file_name);
            }
        }
        if let Err(e) = write_call_json(&call.dir, &summary) {
            metrics.recorder_write_errors.inc();
            error!(call = %call_id, error = %e, "cannot write final call.json");
        }
        call.tracks.clear();
        info!(call = %call_id, participants = summary.participants.len(), "call recording finished");
        summary
    }

    /// On shutdown without an end message (should not happen: workers end
    /// their calls first), still close every file with an EOS page.
    fn finish_all(&mut self) {
        let metrics = self.metrics.clone();
        for (_, mut call) in self.calls.drain() {
            for track in call.tracks.values_mut() {
                track.writer.finish();
                write_pending(track, &metrics);
            }
        }
    }

    fn flush_due(&mut self, now: Instant) {
        let metrics = self.metrics.clone();
        for call in self.calls.values_mut() {
            for track in call.tracks.values_mut() {
                if track.writer.unflushed_samples() > 0
                    && now.duration_since(track.last_page_at) >= FLUSH_INTERVAL
                {
                    track.writer.flush();
                    write_pending(track, &metrics);
                }
            }
        }
    }
}

/// The recording state of a call, created on first use.
fn call_entry<'a>(
    calls: &'a mut HashMap<CallId, CallRecording>,
    data_dir: &Path,
    call_id: &CallId,
) -> &'a mut CallRecording {
    calls
        .entry(call_id.clone())
        .or_insert_with(|| CallRecording {
            dir: call_dir(data_dir, call_id),
            tracks: HashMap::new(),
            started: None,
            audit: None,
            discarded: false,
        })
}

fn open_track(dir: &Path, stem: &str, metrics: &Metrics) -> Track {
    let audio = dir.join("audio");
    let serial = rand::random::<u32>();
    let writer = TrackWriter::new(serial, DEFAULT_PRE_SKIP);
    let opened = fs::create_dir_all(&audio).and_then(|_| {
        // Never overwrite a recording: a restarted call gets a new file.
        let mut n = 1;
        loop {
            let name = if n == 1 {
                format!("{stem}.opus")
            } else {
                format!("{stem}.{n}.opus")
            };
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(audio.join(&name))
            {
                Ok(f) => return Ok((f, name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    });
    let (file, file_name) = match opened {
        Ok((f, name)) => (Some(f), name),
        Err(e) => {
            metrics.recorder_write_errors.inc();
            error!(dir = %audio.display(), error = %e, "cannot create recording");
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

/// Appends whatever complete pages the writer produced.
fn write_pending(track: &mut Track, metrics: &Metrics) {
    let bytes = track.writer.take_output();
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

/// Appends one line to the call's audit log and syncs it.
fn append_audit(call: &mut CallRecording, line: &str) -> io::Result<()> {
    if call.audit.is_none() {
        fs::create_dir_all(&call.dir)?;
        call.audit = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(call.dir.join("consent.jsonl"))?,
        );
    }
    let Some(file) = call.audit.as_mut() else {
        return Ok(());
    };
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    // Audit before effect: the line is durable before any frame queued
    // after it is written.
    file.sync_data()
}

/// Writes `call.json` atomically (temp file, sync, rename).
pub fn write_call_json(dir: &Path, summary: &CallSummary) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(".call.json.tmp");
    let body = serde_json::to_vec_pretty(summary).map_err(io::Error::other)?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join("call.json"))
}

/// Whether a call directory holds a finished call (its `call.json` has an end).
pub fn call_has_ended(data_dir: &Path, call_id: &CallId) -> bool {
    matches!(read_call_json(data_dir, call_id), Ok(Some(s)) if s.ended_at.is_some())
}
