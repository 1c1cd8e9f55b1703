//! After a call: one playable recording (`audio/mix.opus`) and the call's
//! insights (`insights.json`).
//!
//! The store tells [`PostCallTap`] when a call's final `call.json` is on
//! disk (it is the last write of a call's sinks, so every track and the
//! transcript are final too). The tap only queues the call id (bounded,
//! `try_send`; a full queue is counted and the call stays `pending` for the
//! next start). One task takes calls off the queue and runs at most
//! `insights.concurrency` of them at once on blocking threads, each:
//!
//! 1. mixes every track at its place on the call timeline, silencing what
//!    a later `discarded` audit line withdrew ([`muted_spans`]), encoding
//!    once ([`hearken_mix::mix`]), with progress in `call.json`;
//! 2. turns each track's levels into when its speaker talked
//!    ([`hearken_core::insights::talk_spans`]) and computes the insights
//!    from that, the transcript and the consent events
//!    ([`hearken_core::insights::compute`]).
//!
//! A crash or a shutdown mid-way leaves the status `running` or `pending`;
//! the next start queues those calls again ([`PostCall::start`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hearken_core::conference::{CallSummary, JobState, JobSummary, PostCallSummary};
use hearken_core::ids::CallId;
use hearken_core::insights::{
    ConsentMoment, InsightsConfig, InsightsInput, Span, SpeakerInput, VoiceActivityConfig,
    WordInput, compute, talk_spans,
};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, info, info_span, warn};

use crate::config::InsightsSettings;
use crate::metrics::Metrics;
use crate::sinks::transcribe::Transcript;
use crate::store::{MIX_FILE, Store, StoreTap};

/// Seconds of one level frame (the mixer's 20 ms).
const LEVEL_FRAME_SECONDS: f64 = 0.02;

/// How often the mix's progress is written to `call.json` (fraction).
const PROGRESS_STEP: f64 = 0.1;

/// Why a call's post-call work failed.
#[derive(Debug, Error)]
pub enum PostCallError {
    /// The data directory could not be read or written.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The tracks could not be mixed.
    #[error("mix: {0}")]
    Mix(#[from] hearken_mix::MixError),
    /// The server is shutting down; the work is picked up at the next start.
    #[error("stopped by shutdown")]
    Stopped,
}

/// Hears the store write a call's final `call.json` and queues the call.
pub struct PostCallTap {
    queue: mpsc::Sender<CallId>,
    metrics: Metrics,
}

impl StoreTap for PostCallTap {
    fn call_written(&self, summary: &CallSummary) {
        // A call that never started has nothing to mix.
        if summary.ended_at.is_none() || summary.started_at.is_none() {
            return;
        }
        let Ok(call_id) = CallId::parse(&summary.call_id) else {
            return;
        };
        match self.queue.try_send(call_id) {
            Ok(()) => self.metrics.postcall_queued.inc(),
            Err(_) => {
                self.metrics.postcall_dropped.inc();
                warn!(call = %summary.call_id, "post-call queue full: the call's mix and insights are made at the next start");
            }
        }
    }
    fn audit_appended(&self, _call_id: &CallId, _line: &str) {}
    fn transcript_written(&self, _call_id: &CallId, _transcript: &Value) {}
    fn meeting_written(&self, _call_id: &CallId, _meeting: &Value) {}
    fn file_created(&self, _call_id: &CallId, _file: &str) {}
    fn insights_written(&self, _call_id: &CallId, _insights: &Value) {}
}

/// The post-call worker: its queue, its settings, and a stop flag.
pub struct PostCall {
    queue: Option<mpsc::Receiver<CallId>>,
    sender: mpsc::Sender<CallId>,
    settings: Arc<InsightsSettings>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
}

impl PostCall {
    /// A worker for `settings`, and the tap that feeds it (give the tap to
    /// the store, then [`PostCall::start`] the worker with that store).
    pub fn new(settings: &InsightsSettings, metrics: &Metrics) -> (Self, Arc<PostCallTap>) {
        let (sender, queue) = mpsc::channel(settings.queue);
        let tap = Arc::new(PostCallTap {
            queue: sender.clone(),
            metrics: metrics.clone(),
        });
        let worker = Self {
            queue: Some(queue),
            sender,
            settings: Arc::new(settings.clone()),
            metrics: metrics.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        (worker, tap)
    }

    /// A flag that, once set, makes running work stop at its next step
    /// (left for the next start) and no new work begin.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Runs the worker on the current runtime until the queue closes,
    /// after queueing the ended calls whose work a crash or shutdown
    /// interrupted.
    pub fn start(mut self, store: Store) -> tokio::task::JoinHandle<()> {
        let Some(mut queue) = self.queue.take() else {
            return tokio::spawn(async {});
        };
        let limit = Arc::new(Semaphore::new(self.settings.concurrency));
        tokio::spawn(async move {
            let (sender, metrics, scan) =
                (self.sender.clone(), self.metrics.clone(), store.clone());
            // Reading every call.json is file work: off the runtime.
            let _ =
                tokio::task::spawn_blocking(move || resume_unfinished(&scan, &sender, &metrics))
                    .await;
            while let Some(call_id) = queue.recv().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                self.metrics.postcall_queued.dec();
                if self.stop.load(Ordering::SeqCst) {
                    continue;
                }
                let store = store.clone();
                let settings = self.settings.clone();
                let metrics = self.metrics.clone();
                let stop = self.stop.clone();
                let span = info_span!("postcall", call = %call_id);
                tokio::spawn(
                    async move {
                        metrics.postcall_running.inc();
                        let id = call_id.clone();
                        let m = metrics.clone();
                        let result = tokio::task::spawn_blocking(move || {
                            process(&store, &id, &settings, &m, &stop)
                        })
                        .await;
                        metrics.postcall_running.dec();
                        drop(permit);
                        match result {
                            Ok(Ok(())) => {}
                            Ok(Err(PostCallError::Stopped)) => {
                                info!(
                                    "post-call work stopped by shutdown; resumed at the next start"
                                );
                            }
                            Ok(Err(e)) => warn!(error = %e, "post-call work failed"),
                            Err(e) => warn!(error = %e, "post-call work panicked"),
                        }
                    }
                    .instrument(span),
                );
            }
        })
    }
}

/// Queues the ended calls whose work a crash or shutdown interrupted, or
/// never began (a call that ended as the server stopped, or while this
/// work was off).
fn resume_unfinished(store: &Store, sender: &mpsc::Sender<CallId>, metrics: &Metrics) {
    for summary in store.ended_calls() {
        let unfinished = match &summary.postcall {
            None => summary.started_at.is_some(),
            Some(p) => [p.mix.state, p.insights.state]
                .iter()
                .any(|s| matches!(s, JobState::Pending | JobState::Running)),
        };
        if unfinished
            && let Ok(call_id) = CallId::parse(&summary.call_id)
            && sender.try_send(call_id).is_ok()
        {
            metrics.postcall_queued.inc();
        }
    }
}

/// Makes a call's mix and insights, writing each step's status into
/// `call.json`. Blocks: run it on a blocking thread.
pub fn process(
    store: &Store,
    call_id: &CallId,
    settings: &InsightsSettings,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Result<(), PostCallError> {
    let Some(summary) = store.read_call(call_id)? else {
        return Ok(());
    };
    if summary.ended_at.is_none() {
        return Ok(());
    }
    let mut status = summary.postcall.clone().unwrap_or_default();
    if status.mix.state == JobState::Done && status.insights.state == JobState::Done {
        return Ok(());
    }
    let audit = store
        .read_audit_log(call_id)?
        .map(|log| log.events)
        .unwrap_or_default();

    // 1. The mix.
    let started = Instant::now();
    status.mix = JobSummary {
        state: JobState::Running,
        ..JobSummary::default()
    };
    status.insights = JobSummary::default();
    store.write_postcall_status(call_id, &status)?;
    let mixed = mix_call(store, call_id, &summary, &audit, settings, stop, &mut |p| {
        status.mix.progress = p;
        // Progress is news, not a record: a failed write is retried at the
        // next step.
        let _ = store.write_postcall_status(call_id, &status);
    });
    let seconds = started.elapsed().as_secs_f64();
    metrics
        .postcall_job_seconds
        .with_label_values(&["mix"])
        .observe(seconds);
    let levels = match mixed {
        Ok(mixed) => {
            metrics
                .postcall_jobs
                .with_label_values(&["mix", "done"])
                .inc();
            status.mix = JobSummary {
                state: JobState::Done,
                progress: 1.0,
                file: mixed.file,
                error: None,
                seconds: Some(seconds),
            };
            info!(seconds, tracks = mixed.levels.len(), "mix made");
            mixed.levels
        }
        Err(PostCallError::Stopped) => {
            status.mix = JobSummary::default();
            store.write_postcall_status(call_id, &status)?;
            return Err(PostCallError::Stopped);
        }
        Err(e) => {
            metrics
                .postcall_jobs
                .with_label_values(&["mix", "failed"])
                .inc();
            warn!(error = %e, "mix failed; insights are made from the transcript alone");
            status.mix = JobSummary {
                state: JobState::Failed,
                progress: 0.0,
                file: None,
                error: Some(e.to_string()),
                seconds: Some(seconds),
            };
            Vec::new()
        }
    };

    // 2. The insights.
    let started = Instant::now();
    status.insights.state = JobState::Running;
    store.write_postcall_status(call_id, &status)?;
    let transcript = store.read_transcript::<Transcript>(call_id).ok().flatten();
    let input = insights_input(&summary, &levels, transcript.as_ref(), &audit, settings);
    let insights = compute(&input, &insights_config(settings));
    let written = store.write_insights(call_id, &insights);
    let seconds = started.elapsed().as_secs_f64();
    metrics
        .postcall_job_seconds
        .with_label_values(&["insights"])
        .observe(seconds);
    status.insights = match &written {
        Ok(()) => {
            metrics
                .postcall_jobs
                .with_label_values(&["insights", "done"])
                .inc();
            JobSummary {
                state: JobState::Done,
                progress: 1.0,
                file: Some("insights.json".to_owned()),
                error: None,
                seconds: Some(seconds),
            }
        }
        Err(e) => {
            metrics
                .postcall_jobs
                .with_label_values(&["insights", "failed"])
                .inc();
            JobSummary {
                state: JobState::Failed,
                progress: 0.0,
                file: None,
                error: Some(e.to_string()),
                seconds: Some(seconds),
            }
        }
    };
    store.write_postcall_status(call_id, &status)?;
    written.map_err(PostCallError::Io)
}

/// What mixing a call gave: the mix file (none when nothing was recorded)
/// and each track's levels, by participant.
struct Mixed {
    file: Option<String>,
    levels: Vec<(String, Vec<f32>)>,
}

fn mix_call(
    store: &Store,
    call_id: &CallId,
    summary: &CallSummary,
    audit: &[Value],
    settings: &InsightsSettings,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(f64),
) -> Result<Mixed, PostCallError> {
    let muted = muted_spans(audit);
    // (participant, the track's bytes, its muted spans)
    let mut sources: Vec<(String, Vec<u8>, Spans)> = Vec::new();
    let mut files: Vec<(String, String)> = summary
        .participants
        .iter()
        .filter(|p| !p.file.is_empty())
        .map(|p| (p.id.clone(), p.file.clone()))
        .collect();
    // The prompts, where the rules require them in the recording, are
    // part of what was heard (not a speaker: no lane, no insights).
    if let Some(file) = summary
        .announcement_track
        .as_ref()
        .and_then(|a| a.file.clone())
    {
        files.push((String::new(), file));
    }
    for (participant, file) in files {
        let Some(name) = file.strip_prefix("audio/") else {
            continue;
        };
        let Some(path) = store.audio_path(call_id, name) else {
            continue;
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let spans = muted.get(&participant).cloned().unwrap_or_default();
                let spans = [spans, muted.get("").cloned().unwrap_or_default()].concat();
                sources.push((participant, bytes, spans));
            }
            // Deleted after a decline, or recorded on a node lost since.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if sources.is_empty() {
        return Ok(Mixed {
            file: None,
            levels: Vec::new(),
        });
    }
    let tracks: Vec<hearken_mix::TrackInput<'_>> = sources
        .iter()
        .map(|(name, bytes, muted)| hearken_mix::TrackInput {
            name: name.clone(),
            ogg: bytes,
            muted: muted.clone(),
        })
        .collect();
    let options = hearken_mix::MixOptions {
        bitrate_bps: settings.mix_bitrate,
        // The same call's tracks always give the same bytes.
        serial: call_id.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }),
        ..hearken_mix::MixOptions::default()
    };
    let mut last = 0.0;
    let mut step = |p: f64| {
        if p - last >= PROGRESS_STEP {
            last = p;
            progress(p);
        }
    };
    let made = store.write_mix(call_id, |out| {
        let mut out = Stoppable { inner: out, stop };
        hearken_mix::mix(&tracks, &options, &mut out, &mut step)
    })?;
    if stop.load(Ordering::SeqCst) {
        return Err(PostCallError::Stopped);
    }
    let report = made?;
    Ok(Mixed {
        file: Some(format!("audio/{MIX_FILE}")),
        levels: report
            .tracks
            .into_iter()
            .filter(|t| !t.name.is_empty())
            .map(|t| (t.name, t.levels_dbfs))
            .collect(),
    })
}

/// Spans of call time (s).
type Spans = Vec<(f64, f64)>;

/// A writer that fails once shutdown began, so a long mix stops promptly.
struct Stoppable<'a, W> {
    inner: W,
    stop: &'a AtomicBool,
}

impl<W: std::io::Write> std::io::Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            // Not `Interrupted`: `write_all` retries that forever.
            return Err(std::io::Error::other("shutting down"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What was withdrawn from the recording, by participant ("" for the whole
/// call): a `discarded` audit line deletes what was captured of them up to
/// its time, so the mix never plays it even if a file survived.
pub fn muted_spans(audit: &[Value]) -> HashMap<String, Vec<(f64, f64)>> {
    let mut muted: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for event in audit {
        if event.get("event").and_then(Value::as_str) != Some("discarded") {
            continue;
        }
        let Some(t) = event.get("t").and_then(Value::as_f64) else {
            continue;
        };
        let who = event
            .get("participant")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        muted.entry(who).or_default().push((0.0, t));
    }
    muted
}

/// The consent events worth a key moment: a participant consenting or
/// declining, a discard.
pub fn consent_moments(audit: &[Value]) -> Vec<ConsentMoment> {
    let mut moments = Vec::new();
    for event in audit {
        let kind = event.get("event").and_then(Value::as_str).unwrap_or("");
        let t = event.get("t").and_then(Value::as_f64).unwrap_or(0.0);
        let participant = event
            .get("participant")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let who = participant.as_deref().unwrap_or("everyone");
        let label = match kind {
            "state_changed" => {
                let to = event.get("to");
                let state = to
                    .and_then(|s| s.get("state"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let method = to.and_then(|s| s.get("method")).and_then(Value::as_str);
                match (state, method) {
                    ("consented", Some(m)) => format!("{who} consented ({m})"),
                    ("consented", None) => format!("{who} consented"),
                    ("declined", _) => format!("{who} declined"),
                    _ => continue,
                }
            }
            "discarded" => format!("{who}: captured audio discarded"),
            _ => continue,
        };
        moments.push(ConsentMoment {
            t,
            participant,
            label,
        });
    }
    moments
}

/// The insights' settings from the server's.
pub fn insights_config(settings: &InsightsSettings) -> InsightsConfig {
    InsightsConfig {
        trackers: settings.trackers.clone(),
        monologue_moment_seconds: settings.monologue_moment_seconds,
        long_silence_seconds: settings.long_silence_seconds,
        backchannel_seconds: settings.backchannel_seconds,
    }
}

/// Everything the insights are computed from.
fn insights_input(
    summary: &CallSummary,
    levels: &[(String, Vec<f32>)],
    transcript: Option<&Transcript>,
    audit: &[Value],
    settings: &InsightsSettings,
) -> InsightsInput {
    let duration = match (summary.started_at, summary.ended_at) {
        (Some(s), Some(e)) => ((e - s).num_milliseconds().max(0) as f64) / 1000.0,
        _ => 0.0,
    };
    let vad = VoiceActivityConfig {
        threshold_dbfs: settings.voice_threshold_dbfs,
        ..VoiceActivityConfig::default()
    };
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut words = Vec::new();
    if let Some(t) = transcript {
        for segment in &t.segments {
            if let Some(name) = &segment.display_name {
                names.insert(&segment.participant_id, name);
            }
            words.extend(segment.words.iter().map(|w| WordInput {
                participant: segment.participant_id.clone(),
                word: w.word.clone(),
                start: w.start,
                end: w.end,
            }));
        }
    }
    let speakers = summary
        .participants
        .iter()
        .map(|p| {
            let talk = levels
                .iter()
                .filter(|(name, _)| *name == p.id)
                .flat_map(|(_, l)| talk_spans(l, LEVEL_FRAME_SECONDS, &vad))
                .collect();
            SpeakerInput {
                participant: p.id.clone(),
                name: names.get(p.id.as_str()).map(|n| (*n).to_owned()),
                talk,
            }
        })
        .collect();
    InsightsInput {
        duration,
        speakers,
        words,
        consent: consent_moments(audit),
    }
}

/// Gaps between one speaker's words up to this long are one stretch of
/// talk (the pause between words of a sentence).
const WORD_GAP_SECONDS: f64 = 0.5;

/// The insights' input for a call in progress, from its transcript so far:
/// a speaker talks from the start of a word to the end of their last word
/// with no longer pause; the call lasts until the last word heard.
pub fn live_input(transcript: &Transcript) -> InsightsInput {
    let mut speakers: Vec<SpeakerInput> = Vec::new();
    let mut words = Vec::new();
    for segment in &transcript.segments {
        let i = match speakers
            .iter()
            .position(|s| s.participant == segment.participant_id)
        {
            Some(i) => i,
            None => {
                speakers.push(SpeakerInput {
                    participant: segment.participant_id.clone(),
                    name: segment.display_name.clone(),
                    talk: Vec::new(),
                });
                speakers.len() - 1
            }
        };
        for w in &segment.words {
            words.push(WordInput {
                participant: segment.participant_id.clone(),
                word: w.word.clone(),
                start: w.start,
                end: w.end,
            });
            speakers[i].talk.push(Span::new(w.start, w.end));
        }
    }
    for speaker in &mut speakers {
        speaker.talk = joined(std::mem::take(&mut speaker.talk), WORD_GAP_SECONDS);
    }
    let duration = words.iter().map(|w| w.end).fold(0.0, f64::max);
    InsightsInput {
        duration,
        speakers,
        words,
        consent: Vec::new(),
    }
}

/// `spans` in order, those less than `gap` apart joined.
fn joined(mut spans: Vec<Span>, gap: f64) -> Vec<Span> {
    spans.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut out: Vec<Span> = Vec::new();
    for span in spans {
        match out.last_mut() {
            Some(last) if span.start - last.end <= gap => last.end = last.end.max(span.end),
            _ => out.push(span),
        }
    }
    out
}

/// The status a call's review shows: what `call.json` says, or pending
/// for an ended call whose work has not begun.
pub fn status_of(summary: &CallSummary, enabled: bool) -> Option<PostCallSummary> {
    match (&summary.postcall, summary.ended_at, enabled) {
        (Some(p), _, _) => Some(p.clone()),
        (None, Some(_), true) if summary.started_at.is_some() => Some(PostCallSummary::default()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_talk_is_words_with_short_pauses_joined() {
        use crate::sinks::transcribe::Segment;
        use hearken_core::transcript::CallWord;
        let word = |w: &str, start: f64, end: f64| CallWord {
            word: w.to_owned(),
            start,
            end,
            confidence: 0.9,
        };
        let segment = |who: &str, words: Vec<CallWord>| Segment {
            participant_id: who.to_owned(),
            display_name: None,
            start: words.first().map_or(0.0, |w| w.start),
            end: words.last().map_or(0.0, |w| w.end),
            text: String::new(),
            words,
        };
        let transcript = Transcript {
            call_id: "c".into(),
            backend: "deepgram".into(),
            model: "nova-3".into(),
            segments: vec![
                // Pauses of 0.3 s (joined) and 1.2 s (not).
                segment(
                    "alice",
                    vec![
                        word("so", 1.0, 1.4),
                        word("yes", 1.7, 2.0),
                        word("ok", 3.2, 3.5),
                    ],
                ),
                segment("bob", vec![word("right?", 4.0, 4.6)]),
            ],
            coverage: Default::default(),
            complete: false,
            incomplete: false,
        };
        let input = live_input(&transcript);
        let talk: Vec<(String, Vec<(f64, f64)>)> = input
            .speakers
            .iter()
            .map(|s| {
                (
                    s.participant.clone(),
                    s.talk.iter().map(|t| (t.start, t.end)).collect(),
                )
            })
            .collect();
        assert_eq!(
            talk,
            vec![
                ("alice".to_owned(), vec![(1.0, 2.0), (3.2, 3.5)]),
                ("bob".to_owned(), vec![(4.0, 4.6)]),
            ]
        );
        assert_eq!(input.duration, 4.6);
        assert_eq!(input.words.len(), 4);
    }

    #[test]
    fn a_stopped_writer_fails_at_once() {
        use std::io::Write;
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        let mut w = Stoppable {
            inner: &mut out,
            stop: &stop,
        };
        w.write_all(b"OggS").unwrap();
        stop.store(true, Ordering::SeqCst);
        // write_all retries an `Interrupted` error forever: this must end.
        assert!(w.write_all(b"more").is_err());
        assert_eq!(out, b"OggS");
    }

    #[test]
    fn a_discard_mutes_what_came_before_it() {
        let audit = vec![
            json!({"event": "gate_changed", "t": 1.0, "participant": "bob"}),
            json!({"event": "discarded", "t": 12.5, "what": "participant", "participant": "bob"}),
            json!({"event": "discarded", "t": 40.0, "what": "call"}),
        ];
        let muted = muted_spans(&audit);
        assert_eq!(muted["bob"], vec![(0.0, 12.5)]);
        assert_eq!(muted[""], vec![(0.0, 40.0)]);
        assert!(!muted.contains_key("alice"));
    }

    #[test]
    fn consent_moments_name_who_and_how() {
        let audit = vec![
            json!({"event": "state_changed", "t": 3.0, "participant": "alice",
                   "from": {"state": "notified"}, "to": {"state": "consented", "method": "dtmf"}}),
            json!({"event": "state_changed", "t": 4.0, "participant": "bob",
                   "from": {"state": "joined"}, "to": {"state": "notified"}}),
            json!({"event": "state_changed", "t": 5.0, "participant": "bob",
                   "from": {"state": "notified"}, "to": {"state": "declined"}}),
        ];
        let labels: Vec<(f64, String)> = consent_moments(&audit)
            .into_iter()
            .map(|m| (m.t, m.label))
            .collect();
        assert_eq!(
            labels,
            vec![
                (3.0, "alice consented (dtmf)".to_owned()),
                (5.0, "bob declined".to_owned())
            ]
        );
    }
}
