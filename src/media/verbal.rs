//! Verbal consent in the media engine: a participant's own audio, heard on
//! this machine while they are asked for consent.
//!
//! # Threads and queues
//!
//! ```text
//! media worker (engine)                      recogniser thread (one per node)
//!  MediaData ─► tap: Opus → 48 kHz PCM
//!               ─► Listener ─► Utterance ──try_submit──► queue (RECOGNISER_QUEUE)
//!                                                          │ VerbalModel::recognise
//!  handle_verbal ◄── worker loop ◄── results (RESULT_QUEUE) ◄─┘ + mio Waker
//!   └► conference.handle_signal(.., ConsentMethod::Verbal, phrase, confidence)
//!   └► SinkMsg::ConsentEvidence (a yes only) ─► recorder: consent-evidence/{stem}.opus
//! ```
//!
//! - [`VerbalService`] is the node's one [`Recogniser`] thread. Each worker
//!   [`connects`](VerbalService::connect) with its waker and gets a
//!   [`VerbalTap`] (submits jobs, never waits) and a bounded result channel;
//!   the worker index rides in the job's tag, so a result goes back to the
//!   worker that asked.
//! - [`Verbal`] is the engine's part, sans-IO: who is listened to, their
//!   decoder and [`Listener`], the jobs in flight, the evidence clip.
//!
//! # Who is listened to, and when
//!
//! From the moment the consent request finished playing to a participant
//! (its `prompt_played` audit line: audible and whole, the same moment DTMF
//! starts to count) for [`LISTEN_AFTER_REQUEST`], until they consent,
//! decline or leave (a `state_changed` line), or a spoken yes or no was
//! recognised. Listening before the request ends would let the prompt's
//! own words, echoed back by a speakerphone, answer it.
//!
//! The tap sits before the consent gate: a participant who has not
//! consented is exactly the one whose audio is withheld, and their answer
//! must still be heard. What the tap decodes never leaves this machine and
//! is not recorded; only the packets of a recognised yes are kept, as
//! evidence.
//!
//! # Bounds
//!
//! Per listened participant: one Opus decoder, the listener (at most one
//! utterance, 6 s at 16 kHz), and the last [`EVIDENCE_KEEP_SAMPLES`] of
//! their packets. Per engine: at most [`MAX_IN_FLIGHT`] jobs awaiting a
//! result. Per node: [`RECOGNISER_QUEUE`] jobs waiting for the recogniser.
//! A job that finds no room is dropped and counted
//! (`hearken_consent_verbal_total{result="dropped"}`); the participant can
//! still answer by key or be reported through the API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hearken_core::conference::{Conference, ParticipantIdx};
use hearken_core::consent::engine::{
    AuditEvent, ConsentMethod, ConsentState, Decision, PromptKind, SignalEvidence,
};
use hearken_core::ids::{CallId, participant_file_stem};
use hearken_verbal::{
    Decision as Heard, Job, ListenConfig, ListenEvent, Listener, LoadError, ModelFiles, Recognised,
    Recogniser, SubmitError, Utterance,
};
use mio::Waker;
use tracing::{debug, info, warn};

use crate::metrics::{MediaMetrics, VerbalResult};
use crate::sinks::{EvidencePacket, SinkMsg};

/// How long after the consent request finished an answer is listened for.
pub const LISTEN_AFTER_REQUEST: Duration = Duration::from_secs(20);
/// The most of a listened participant's packets kept for the evidence clip
/// (48 kHz samples: 10 s).
pub const EVIDENCE_KEEP_SAMPLES: u64 = 10 * 48_000;
/// Jobs of one engine awaiting a result.
pub const MAX_IN_FLIGHT: usize = 64;
/// Jobs waiting for the node's recogniser thread.
pub const RECOGNISER_QUEUE: usize = 16;
/// Results waiting for one worker.
const RESULT_QUEUE: usize = 256;
/// A job whose result has not come back in this time is forgotten.
const RESULT_WAIT: Duration = Duration::from_secs(60);
/// A gap in a participant's RTP time is filled with at most this much
/// silence (48 kHz samples: 1 s); a longer one restarts the count there.
const MAX_GAP_FILL: u64 = 48_000;
/// Largest Opus frame, 120 ms at 48 kHz.
const MAX_FRAME: usize = 5_760;
/// The job tag's high bits name the worker.
const WORKER_SHIFT: u32 = 48;
const JOB_MASK: u64 = (1 << WORKER_SHIFT) - 1;

/// Where one worker's results go.
#[derive(Clone)]
struct Route {
    results: Sender<Recognised>,
    waker: Arc<Waker>,
}

/// The node's recogniser: one thread with the loaded model, shared by every
/// worker; each result goes back to the worker whose job it was.
pub struct VerbalService {
    recogniser: Recogniser,
    routes: Arc<Mutex<Vec<Option<Route>>>>,
}

impl std::fmt::Debug for VerbalService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerbalService")
            .field("language", &self.recogniser.language())
            .finish_non_exhaustive()
    }
}

impl VerbalService {
    /// Finds the model of `language` and starts the recogniser thread with
    /// it loaded. The error says what is missing (a grammar, or which
    /// Debian package).
    pub fn start(language: &str) -> Result<Arc<Self>, LoadError> {
        let files = ModelFiles::find(language)?;
        let routes: Arc<Mutex<Vec<Option<Route>>>> = Arc::default();
        let to = routes.clone();
        let recogniser = Recogniser::spawn(files, RECOGNISER_QUEUE, move |result| {
            let worker = (result.tag >> WORKER_SHIFT) as usize;
            let route = to
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(worker)
                .cloned()
                .flatten();
            // A full result queue means the worker is stuck; the engine
            // forgets the job after RESULT_WAIT.
            if let Some(route) = route
                && route.results.try_send(result).is_ok()
            {
                let _ = route.waker.wake();
            }
        })?;
        Ok(Arc::new(Self { recogniser, routes }))
    }

    /// The language of the loaded grammar.
    pub fn language(&self) -> &'static str {
        self.recogniser.language()
    }

    /// Connects worker `worker`: results of its jobs go to the returned
    /// channel and wake `waker`.
    pub fn connect(
        self: &Arc<Self>,
        worker: usize,
        waker: Arc<Waker>,
    ) -> (VerbalTap, Receiver<Recognised>) {
        let (results, rx) = crossbeam_channel::bounded(RESULT_QUEUE);
        {
            let mut routes = self
                .routes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if routes.len() <= worker {
                routes.resize(worker + 1, None);
            }
            routes[worker] = Some(Route { results, waker });
        }
        let service = self.clone();
        let tap = VerbalTap::new((worker as u64) << WORKER_SHIFT, move |job| {
            service.recogniser.try_submit(job)
        });
        (tap, rx)
    }
}

type Submit = Box<dyn FnMut(Job) -> Result<(), SubmitError> + Send>;

/// How an engine hands utterances to a recogniser without waiting.
pub struct VerbalTap {
    tag_base: u64,
    submit: Submit,
}

impl VerbalTap {
    /// A tap whose job tags start at `tag_base` (the worker's bits) and go
    /// to `submit`, which must not block.
    pub fn new(
        tag_base: u64,
        submit: impl FnMut(Job) -> Result<(), SubmitError> + Send + 'static,
    ) -> Self {
        Self {
            tag_base,
            submit: Box::new(submit),
        }
    }
}

/// One listened participant.
struct Listening {
    /// Distinguishes this listening from an earlier one of the same person
    /// (a request played again): late results of the old one are ignored.
    generation: u64,
    /// Listening ends here.
    until: Instant,
    decoder: opus::Decoder,
    listener: Listener,
    /// RTP time the next packet should carry (48 kHz).
    next_rtp: Option<u64>,
    /// Samples fed to the listener: its position count.
    fed: u64,
    /// Their last packets, at most [`EVIDENCE_KEEP_SAMPLES`] (plus one).
    clip: VecDeque<ClipPacket>,
    clip_samples: u64,
}

struct ClipPacket {
    /// Position (listener samples) of its first sample.
    start: u64,
    samples: u32,
    payload: Vec<u8>,
}

impl Listening {
    /// Keeps a packet for the evidence clip, dropping the oldest beyond the bound.
    fn keep(&mut self, packet: ClipPacket) {
        self.clip_samples += u64::from(packet.samples);
        self.clip.push_back(packet);
        while self.clip_samples > EVIDENCE_KEEP_SAMPLES {
            let Some(old) = self.clip.pop_front() else {
                break;
            };
            self.clip_samples -= u64::from(old.samples);
        }
    }
}

struct Pending {
    call_id: CallId,
    participant: Arc<str>,
    generation: u64,
    submitted: Instant,
}

/// A recognised answer, to apply to the call.
#[derive(Debug)]
pub(crate) struct Answered {
    /// The call.
    pub call_id: CallId,
    /// Who answered.
    pub participant: Arc<str>,
    /// Yes or no.
    pub decision: Decision,
    /// The phrase as the grammar spells it.
    pub phrase: String,
    /// The recogniser's confidence (see `hearken_verbal::Answer`).
    pub confidence: f32,
    /// The packets of a yes, for the evidence clip.
    pub evidence: Option<Vec<EvidencePacket>>,
}

impl Answered {
    /// Gives the answer to the call's consent engine.
    pub fn apply(&self, conference: &mut Conference, now: Instant) {
        conference.handle_signal(
            &self.participant,
            self.decision,
            ConsentMethod::Verbal,
            SignalEvidence {
                method_given: None,
                phrase: Some(self.phrase.clone()),
                confidence: Some(self.confidence),
            },
            now,
        );
    }

    /// The evidence clip as a sink message (a yes only).
    pub fn evidence_msg(self) -> Option<SinkMsg> {
        let packets = self.evidence.filter(|p| !p.is_empty())?;
        Some(SinkMsg::ConsentEvidence {
            call_id: self.call_id,
            file_stem: participant_file_stem(&self.participant),
            participant_id: self.participant,
            packets,
        })
    }
}

/// The engine's verbal consent: who is listened to, and the jobs in flight.
pub struct Verbal {
    tap: VerbalTap,
    config: ListenConfig,
    calls: HashMap<CallId, HashMap<Arc<str>, Listening>>,
    pending: HashMap<u64, Pending>,
    next_job: u64,
    next_generation: u64,
    pcm: Vec<i16>,
}

impl Verbal {
    /// Nobody listened to yet; jobs go to `tap`.
    pub fn new(tap: VerbalTap) -> Self {
        Self {
            tap,
            config: ListenConfig {
                max_listen_ms: LISTEN_AFTER_REQUEST.as_millis() as u32,
                ..ListenConfig::default()
            },
            calls: HashMap::new(),
            pending: HashMap::new(),
            next_job: 0,
            next_generation: 0,
            pcm: vec![0; MAX_FRAME],
        }
    }

    /// Whether `participant` of `call_id` is listened to.
    pub fn is_listening(&self, call_id: &CallId, participant: &str) -> bool {
        self.calls
            .get(call_id)
            .is_some_and(|c| c.contains_key(participant))
    }

    /// Jobs awaiting a result.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts or stops listening on what a call's audit line says.
    pub fn on_audit(&mut self, call_id: &CallId, event: &AuditEvent, now: Instant) {
        match event {
            AuditEvent::PromptPlayed {
                prompt: PromptKind::ConsentRequest,
                audible: true,
                complete: true,
                to,
                ..
            } => {
                for id in to {
                    self.start(call_id, id, now);
                }
            }
            AuditEvent::StateChanged {
                participant,
                to: ConsentState::Consented(_) | ConsentState::Declined | ConsentState::Left,
                ..
            } => self.stop(call_id, participant),
            _ => {}
        }
    }

    fn start(&mut self, call_id: &CallId, id: &str, now: Instant) {
        let decoder = match opus::Decoder::new(48_000, opus::Channels::Mono) {
            Ok(d) => d,
            Err(e) => {
                warn!(call = %call_id, error = %e, "no Opus decoder: not listening for a spoken answer");
                return;
            }
        };
        self.next_generation += 1;
        debug!(call = %call_id, participant = id, "listening for a spoken answer");
        self.calls.entry(call_id.clone()).or_default().insert(
            id.into(),
            Listening {
                generation: self.next_generation,
                until: now + LISTEN_AFTER_REQUEST,
                decoder,
                listener: Listener::new(self.config.clone()),
                next_rtp: None,
                fed: 0,
                clip: VecDeque::new(),
                clip_samples: 0,
            },
        );
    }

    fn stop(&mut self, call_id: &CallId, id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.remove(id).is_some() {
            debug!(call = %call_id, participant = id, "no longer listening");
        }
        if call.is_empty() {
            self.calls.remove(call_id);
        }
    }

    /// A frame of `participant` arrived (before the consent gate): decoded
    /// and heard if they are listened to. Cheap when nobody is.
    pub fn tap(
        &mut self,
        conference: &Conference,
        participant: ParticipantIdx,
        rtp_time: u64,
        payload: &[u8],
        now: Instant,
        metrics: &MediaMetrics,
    ) {
        if self.calls.is_empty() {
            return;
        }
        let call_id = conference.call_id();
        if !self.calls.contains_key(call_id) {
            return;
        }
        let Some(id) = conference.participant_id(participant) else {
            return;
        };
        self.hear(call_id, id, rtp_time, payload, now, metrics);
    }

    /// Feeds one packet of `id`, then submits what the listener cut.
    pub fn hear(
        &mut self,
        call_id: &CallId,
        id: &str,
        rtp_time: u64,
        payload: &[u8],
        now: Instant,
        metrics: &MediaMetrics,
    ) {
        let Some(l) = self.calls.get_mut(call_id).and_then(|c| c.get_mut(id)) else {
            return;
        };
        if l.listener.is_done() {
            return;
        }
        if now >= l.until {
            l.listener.finish();
        } else {
            match l.next_rtp {
                // A packet from before the last one (reordered, repeated).
                Some(next) if rtp_time < next => return,
                Some(next) if rtp_time > next => {
                    let gap = (rtp_time - next).min(MAX_GAP_FILL) as usize;
                    self.pcm.clear();
                    self.pcm.resize(gap, 0);
                    l.listener.handle_pcm(&self.pcm);
                    l.fed += gap as u64;
                }
                _ => {}
            }
            self.pcm.resize(MAX_FRAME, 0);
            let samples = match l.decoder.decode(payload, &mut self.pcm, false) {
                Ok(n) => n,
                Err(e) => {
                    // Heard as 20 ms of silence, so positions stay right.
                    trace_decode_error(call_id, id, &e);
                    self.pcm[..960].fill(0);
                    960
                }
            };
            l.listener.handle_pcm(&self.pcm[..samples]);
            l.keep(ClipPacket {
                start: l.fed,
                samples: samples as u32,
                payload: payload.to_vec(),
            });
            l.fed += samples as u64;
            l.next_rtp = Some(rtp_time + samples as u64);
        }
        self.submit_heard(call_id, id, now, metrics);
    }

    /// Submits every utterance the listener of `id` has cut.
    fn submit_heard(&mut self, call_id: &CallId, id: &str, now: Instant, metrics: &MediaMetrics) {
        loop {
            let Some(l) = self.calls.get_mut(call_id).and_then(|c| c.get_mut(id)) else {
                return;
            };
            let Some(event) = l.listener.poll_event() else {
                return;
            };
            let ListenEvent::Utterance(utterance) = event else {
                continue;
            };
            let generation = l.generation;
            if !self.submit(call_id, id, generation, utterance, now) {
                metrics.consent_verbal.get(VerbalResult::Dropped).inc();
            }
        }
    }

    fn submit(
        &mut self,
        call_id: &CallId,
        id: &str,
        generation: u64,
        utterance: Utterance,
        now: Instant,
    ) -> bool {
        if self.pending.len() >= MAX_IN_FLIGHT {
            warn!(call = %call_id, participant = id, "too many spoken answers awaiting the recogniser; one dropped");
            return false;
        }
        let tag = self.tap.tag_base | (self.next_job & JOB_MASK);
        self.next_job += 1;
        match (self.tap.submit)(Job { tag, utterance }) {
            Ok(()) => {
                self.pending.insert(
                    tag,
                    Pending {
                        call_id: call_id.clone(),
                        participant: id.into(),
                        generation,
                        submitted: now,
                    },
                );
                true
            }
            Err(e) => {
                warn!(call = %call_id, participant = id, error = %e, "spoken answer not recognised");
                false
            }
        }
    }

    /// A result came back. Returns the answer to apply, if it is one and
    /// its participant is still listened to.
    pub(crate) fn handle_result(
        &mut self,
        recognised: Recognised,
        metrics: &MediaMetrics,
    ) -> Option<Answered> {
        let pending = self.pending.remove(&recognised.tag)?;
        let l = self
            .calls
            .get_mut(&pending.call_id)
            .and_then(|c| c.get_mut(&pending.participant))
            .filter(|l| l.generation == pending.generation);
        let Some(l) = l else {
            // They answered another way, left, or the call ended meanwhile.
            debug!(call = %pending.call_id, participant = %pending.participant, "late spoken answer ignored");
            return None;
        };
        let answer = match recognised.result {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                metrics.consent_verbal.get(VerbalResult::Unclear).inc();
                debug!(call = %pending.call_id, participant = %pending.participant, "speech, but neither yes nor no");
                return None;
            }
            Err(e) => {
                metrics.consent_verbal.get(VerbalResult::Unclear).inc();
                warn!(call = %pending.call_id, participant = %pending.participant, error = %e, "recogniser failed on an utterance");
                return None;
            }
        };
        let (decision, label) = match answer.decision {
            Heard::Yes => (Decision::Granted, VerbalResult::Yes),
            Heard::No => (Decision::Declined, VerbalResult::No),
        };
        metrics.consent_verbal.get(label).inc();
        info!(
            call = %pending.call_id,
            participant = %pending.participant,
            phrase = %answer.phrase,
            confidence = answer.confidence,
            margin = answer.margin,
            decode_ms = recognised.decode_time.as_millis() as u64,
            "spoken answer recognised"
        );
        let evidence = (decision == Decision::Granted).then(|| {
            l.clip
                .iter()
                .filter(|p| {
                    answer
                        .span
                        .overlaps(p.start..p.start + u64::from(p.samples))
                })
                .map(|p| EvidencePacket {
                    payload: p.payload.clone(),
                    samples: p.samples,
                })
                .collect()
        });
        // Answered: nothing more is heard (the state change would end it too).
        self.stop(&pending.call_id, &pending.participant);
        Some(Answered {
            call_id: pending.call_id,
            participant: pending.participant,
            decision,
            phrase: answer.phrase,
            confidence: answer.confidence,
            evidence,
        })
    }

    /// Ends listening whose time is up (submitting a last utterance cut
    /// short), and forgets calls that ended and results that never came.
    pub fn sweep(&mut self, now: Instant, live: impl Fn(&CallId) -> bool, metrics: &MediaMetrics) {
        if self.calls.is_empty() && self.pending.is_empty() {
            return;
        }
        self.calls.retain(|id, _| live(id));
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.submitted) < RESULT_WAIT);
        let due: Vec<(CallId, Arc<str>)> = self
            .calls
            .iter()
            .flat_map(|(c, ps)| {
                ps.iter()
                    .filter(|(_, l)| now >= l.until)
                    .map(|(p, _)| (c.clone(), p.clone()))
            })
            .collect();
        for (call_id, id) in due {
            let Some(l) = self.calls.get_mut(&call_id).and_then(|c| c.get_mut(&id)) else {
                continue;
            };
            if !l.listener.is_done() {
                l.listener.finish();
                self.submit_heard(&call_id, &id, now, metrics);
                continue;
            }
            let waiting = self
                .pending
                .values()
                .any(|p| p.call_id == call_id && p.participant == id);
            if !waiting {
                self.stop(&call_id, &id);
            }
        }
    }
}

fn trace_decode_error(call_id: &CallId, id: &str, error: &opus::Error) {
    debug!(call = %call_id, participant = id, error = %error, "opus decode failed while listening");
}

#[cfg(test)]
#[path = "verbal_tests.rs"]
mod tests;
