//! The consent engine of one call: each participant's consent state, the
//! prompts the call needs, and the gate every audio frame passes.
//!
//! Sans-IO. Time is call time in 48 kHz samples (the same clock as frame
//! positions). The shell feeds joins, leaves, participant details, prompt
//! playback and consent signals; the engine answers with
//! [`ConsentOutput`]s (audit events to persist, prompts to play, audio to
//! discard) and decides, for a frame of participant P at call time t, whether
//! it may reach a sink ([`ConsentEngine::allows`]).
//!
//! The gate is a pure function of the history of gate changes, so a frame is
//! judged by the consent that held at *its* time, not at the time it arrived.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dtmf::DtmfKey;

use super::rules::{
    CallDecision, ConsentMode, GateScope, Location, ParticipantInput, Policy, Rules, decide,
};

/// 48 kHz samples per second (call time unit).
const SAMPLES_PER_SECOND: u64 = 48_000;

/// How a participant consented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    /// The mode requires no consent (`none`).
    NotRequired,
    /// Stayed on the call through the grace period after the notice.
    Implicit,
    /// Pressed the agree digit (RFC 4733).
    Dtmf,
    /// The provider reported consent through the API without saying how.
    Api,
    /// The provider reported consent given in its own user interface.
    Ui,
    /// The provider reported a spoken yes.
    Verbal,
}

/// A participant's consent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "method")]
pub enum ConsentState {
    /// On the call, not told yet.
    Joined,
    /// Heard the notice (or the consent request).
    Notified,
    /// Consent given.
    Consented(ConsentMethod),
    /// Consent refused.
    Declined,
    /// Left the call.
    Left,
}

/// Whether a participant may ever be captured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureSetting {
    /// Captured when consent allows.
    #[default]
    Default,
    /// Never captured; their presence blocks capture of the whole call.
    Never,
}

/// What a decline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclinePolicy {
    /// Stop capturing the call and delete what was captured of it.
    StopAndDiscard,
    /// Stop capturing the call; keep what was captured before.
    Stop,
    /// Never capture the decliner; everyone else goes on.
    ExcludeParticipant,
}

impl std::str::FromStr for DeclinePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stop_and_discard" => Ok(Self::StopAndDiscard),
            "stop" => Ok(Self::Stop),
            "exclude_participant" => Ok(Self::ExcludeParticipant),
            other => Err(format!(
                "unknown decline policy {other:?} (expected stop_and_discard, stop or exclude_participant)"
            )),
        }
    }
}

/// The prompts the bot can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// "This call is being recorded…".
    Notice,
    /// "Press 1 to agree, 9 to decline".
    ConsentRequest,
    /// "Thank you".
    Thanks,
    /// "Recording has stopped".
    Stopped,
}

/// A consent signal from DTMF or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Agrees to be recorded.
    Granted,
    /// Refuses.
    Declined,
}

/// Details a provider gives about a participant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParticipantDetails {
    /// Where they are, if known.
    pub location: Option<Location>,
    /// Whether they belong to the recording company.
    pub internal: bool,
    /// Whether they may ever be captured.
    pub capture: CaptureSetting,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Company policy.
    pub policy: Policy,
    /// Where the recorder runs.
    pub recorder_location: Option<Location>,
    /// Staying this long (48 kHz samples) after the notice ends is implicit
    /// consent under the notify modes.
    pub grace: u64,
    /// What a decline does.
    pub decline_policy: DeclinePolicy,
    /// The DTMF keys that grant and decline consent.
    pub keys: ConsentKeys,
}

/// The DTMF keys a participant presses to answer a consent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentKeys {
    /// Grants consent.
    pub agree: DtmfKey,
    /// Declines.
    pub decline: DtmfKey,
}

impl Default for ConsentKeys {
    /// 1 agrees, 9 declines (what the shipped prompts say).
    fn default() -> Self {
        Self {
            agree: DtmfKey::Digit1,
            decline: DtmfKey::Digit9,
        }
    }
}

/// One line of the audit log, without the call id and wall clock (the shell
/// adds those).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The call's mode was (re)evaluated.
    ModeEvaluated {
        /// Call time (s).
        t: f64,
        /// Rules version.
        rules_version: String,
        /// The mode.
        mode: ConsentMode,
        /// Call-wide or per participant gate.
        scope: GateScope,
        /// Why, in plain words.
        reasons: Vec<String>,
    },
    /// A prompt was scheduled for playback.
    PromptScheduled {
        /// Call time (s).
        t: f64,
        /// Which prompt.
        prompt: PromptKind,
        /// To whom.
        to: Vec<String>,
    },
    /// A prompt finished playing.
    PromptPlayed {
        /// Whether it was sent as audio into the participants' sessions
        /// (false when a session does not receive audio from the bot; the
        /// provider must then show the notice itself).
        audible: bool,
        /// Start (call time, s).
        start: f64,
        /// End (call time, s).
        end: f64,
        /// Which prompt.
        prompt: PromptKind,
        /// To whom.
        to: Vec<String>,
    },
    /// A participant's state changed.
    StateChanged {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// From.
        from: ConsentState,
        /// To.
        to: ConsentState,
    },
    /// A participant's gate opened or closed.
    GateChanged {
        /// Call time (s).
        t: f64,
        /// Whose gate.
        participant: String,
        /// Open after the change.
        open: bool,
        /// Why.
        reason: GateReason,
    },
    /// Captured audio is to be deleted.
    Discarded {
        /// Call time (s).
        t: f64,
        /// What.
        what: String,
    },
}

/// The kind of an [`AuditEvent`] (its `event` field), for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// [`AuditEvent::ModeEvaluated`].
    ModeEvaluated,
    /// [`AuditEvent::PromptScheduled`].
    PromptScheduled,
    /// [`AuditEvent::PromptPlayed`].
    PromptPlayed,
    /// [`AuditEvent::StateChanged`].
    StateChanged,
    /// [`AuditEvent::GateChanged`].
    GateChanged,
    /// [`AuditEvent::Discarded`].
    Discarded,
}

impl AuditEvent {
    /// Its kind.
    pub fn kind(&self) -> AuditKind {
        match self {
            Self::ModeEvaluated { .. } => AuditKind::ModeEvaluated,
            Self::PromptScheduled { .. } => AuditKind::PromptScheduled,
            Self::PromptPlayed { .. } => AuditKind::PromptPlayed,
            Self::StateChanged { .. } => AuditKind::StateChanged,
            Self::GateChanged { .. } => AuditKind::GateChanged,
            Self::Discarded { .. } => AuditKind::Discarded,
        }
    }

    /// The call time (s) it happened at (a played prompt: its start).
    pub fn time(&self) -> f64 {
        match self {
            Self::ModeEvaluated { t, .. }
            | Self::PromptScheduled { t, .. }
            | Self::StateChanged { t, .. }
            | Self::GateChanged { t, .. }
            | Self::Discarded { t, .. } => *t,
            Self::PromptPlayed { start, .. } => *start,
        }
    }
}

/// Why a gate is open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    /// Consent allows capture.
    Consented,
    /// This participant has not consented (yet).
    AwaitingOwnConsent,
    /// All-party: someone else present has not consented.
    AwaitingOthers,
    /// A `capture: never` participant is on the call.
    NeverCaptureParticipantPresent,
    /// The participant declined.
    Declined,
    /// Capture of the call was stopped by a decline.
    CallStopped,
}

/// What the engine asks of the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentOutput {
    /// Persist (append and sync) before acting on anything that follows.
    Audit(AuditEvent),
    /// Play a prompt to these participants' sessions now.
    PlayPrompt {
        /// Which prompt.
        prompt: PromptKind,
        /// To whom.
        to: Vec<String>,
    },
    /// Delete all captured audio of the call.
    DiscardAll,
}

/// The gate's verdict for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the frame may reach a sink.
    pub allowed: bool,
    /// Why.
    pub reason: GateReason,
}

#[derive(Debug)]
struct Participant {
    details: ParticipantDetails,
    state: ConsentState,
    present: bool,
    excluded: bool,
    notified_at: Option<u64>,
    /// Consent given before leaving; holds again on a rejoin.
    held_consent: Option<ConsentMethod>,
    /// (call time, open, reason), in time order.
    gate: Vec<(u64, bool, GateReason)>,
    /// When they last joined (a notice counts only if
    /// they were on the call from its start).
    joined_at: u64,
}

impl Participant {
    fn new(details: ParticipantDetails) -> Self {
        Self {
            details,
            state: ConsentState::Joined,
            present: false,
            excluded: false,
            notified_at: None,
            held_consent: None,
            gate: Vec::new(),
            joined_at: 0,
        }
    }

    fn consented(&self) -> bool {
        matches!(self.state, ConsentState::Consented(_))
    }

    fn gate_now(&self) -> (bool, GateReason) {
        self.gate
            .last()
            .map(|&(_, open, reason)| (open, reason))
            .unwrap_or((false, GateReason::AwaitingOwnConsent))
    }
}

/// The consent engine of one call.
#[derive(Debug)]
pub struct ConsentEngine {
    rules: Arc<Rules>,
    config: EngineConfig,
    participants: BTreeMap<String, Participant>,
    decision: Option<CallDecision>,
    stopped: bool,
    /// Everything captured was discarded: nothing may be captured any more,
    /// whatever its time.
    discarded: bool,
    outputs: VecDeque<ConsentOutput>,
    /// Whether capture has been open for someone, then closed for all.
    paused: bool,
    ever_open: bool,
    /// The latest call time handed in. Gate changes are
    /// never recorded before it (a late report, e.g. a prompt's end, must
    /// not rewrite the gate's history), and no deadline is set before it.
    now: u64,
    /// Counts every change to any gate (see [`GateCache`]).
    gate_epoch: u64,
}

/// One participant's latest verdict, kept by the caller between frames so
/// the steady state costs two integer compares instead of a lookup by id:
/// with hundreds of calls on a worker, that lookup touches cold memory on
/// every packet. Valid while no gate of the engine changed and for frames
/// at or after the participant's last gate change.
#[derive(Debug, Clone, Copy, Default)]
pub struct GateCache {
    epoch: u64,
    from: u64,
    verdict: Option<Verdict>,
}

fn secs(t: u64) -> f64 {
    t as f64 / SAMPLES_PER_SECOND as f64
}

impl ConsentEngine {
    /// An engine with no participant yet.
    pub fn new(rules: Arc<Rules>, config: EngineConfig) -> Self {
        Self {
            rules,
            config,
            participants: BTreeMap::new(),
            decision: None,
            stopped: false,
            discarded: false,
            outputs: VecDeque::new(),
            paused: false,
            ever_open: false,
            now: 0,
            gate_epoch: 0,
        }
    }

    /// The DTMF keys that answer a consent request.
    pub fn keys(&self) -> ConsentKeys {
        self.config.keys
    }

    /// The call's current mode (`None` before anyone joined).
    pub fn mode(&self) -> Option<ConsentMode> {
        self.decision.as_ref().map(|d| d.mode)
    }

    /// A participant's state.
    pub fn state(&self, id: &str) -> Option<ConsentState> {
        self.participants.get(id).map(|p| p.state)
    }

    /// Details from the provider (`PUT …/participants/{id}`), before or after
    /// the participant's audio arrives.
    pub fn handle_details(&mut self, id: &str, details: ParticipantDetails, t: u64) {
        self.advance(t);
        let p = self
            .participants
            .entry(id.to_owned())
            .or_insert_with(|| Participant::new(details.clone()));
        p.details = details;
        let present = p.present;
        if present {
            self.evaluate(t, Some(id));
        }
        self.update_gates(t);
    }

    /// The participant's audio arrived (their stream joined the call).
    pub fn handle_join(&mut self, id: &str, t: u64) {
        self.advance(t);
        let p = self
            .participants
            .entry(id.to_owned())
            .or_insert_with(|| Participant::new(ParticipantDetails::default()));
        if !p.present {
            p.joined_at = t;
        }
        p.present = true;
        if p.state == ConsentState::Left {
            // Back on the call: consent given earlier in this call holds; a
            // participant who had not consented is told again.
            //
            // Held consent comes back only if it still
            // suffices for the call's current mode (an implicit consent does
            // not hold once the mode rose to explicit while they were away;
            // "not required" does not hold once the mode rose above none).
            // And someone who had not consented starts over: the old notice
            // time made the grace run while they were away (implicit consent
            // on rejoin without staying, stamped at a time they were absent,
            // and a poll_timeout in the past).
            let mode = self.decision.as_ref().map(|d| d.mode);
            let holds = |method: ConsentMethod| match method {
                ConsentMethod::Dtmf
                | ConsentMethod::Api
                | ConsentMethod::Ui
                | ConsentMethod::Verbal => true,
                ConsentMethod::Implicit => mode.is_none_or(|m| m < ConsentMode::Explicit),
                ConsentMethod::NotRequired => mode.is_none_or(|m| m == ConsentMode::None),
            };
            let back = match p.held_consent {
                Some(method) if holds(method) => ConsentState::Consented(method),
                _ => {
                    p.held_consent = None;
                    p.notified_at = None;
                    ConsentState::Joined
                }
            };
            Self::set_state(&mut self.outputs, self.now, id, p, back, t);
        }
        self.evaluate(t, Some(id));
        self.update_gates(t);
    }

    /// The participant's stream left the call.
    pub fn handle_leave(&mut self, id: &str, t: u64) {
        self.advance(t);
        if let Some(p) = self.participants.get_mut(id) {
            if !p.present {
                return;
            }
            p.present = false;
            if let ConsentState::Consented(method) = p.state {
                p.held_consent = Some(method);
            }
            if p.state != ConsentState::Declined {
                Self::set_state(&mut self.outputs, self.now, id, p, ConsentState::Left, t);
            }
        }
        self.update_gates(t);
    }

    /// A prompt the engine asked for started playing at `start` and ended
    /// at `end` for `to`.
    pub fn handle_prompt_played(
        &mut self,
        prompt: PromptKind,
        to: &[String],
        audible: bool,
        start: u64,
        end: u64,
    ) {
        self.advance(end);
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::PromptPlayed {
                audible,
                start: secs(start),
                end: secs(end),
                prompt,
                to: to.to_vec(),
            }));
        if matches!(prompt, PromptKind::Notice | PromptKind::ConsentRequest) {
            for id in to {
                if let Some(p) = self.participants.get_mut(id) {
                    // A notice heard only in part, or
                    // in an earlier stay on the call (left during it, or a
                    // late report arriving after a rejoin), does not count:
                    // else staying `grace` after it would be taken as
                    // consent from someone who never heard it whole.
                    if !p.present || start < p.joined_at {
                        continue;
                    }
                    p.notified_at = Some(end);
                    if p.state == ConsentState::Joined {
                        Self::set_state(
                            &mut self.outputs,
                            self.now,
                            id,
                            p,
                            ConsentState::Notified,
                            end,
                        );
                    }
                }
            }
        }
        self.handle_timeout(end);
    }

    /// A consent signal (DTMF or API) from a participant at `t`.
    pub fn handle_signal(&mut self, id: &str, decision: Decision, method: ConsentMethod, t: u64) {
        self.advance(t);
        let p = self
            .participants
            .entry(id.to_owned())
            .or_insert_with(|| Participant::new(ParticipantDetails::default()));
        match decision {
            Decision::Granted => {
                if p.state == ConsentState::Declined || p.excluded {
                    // A decline stands for the rest of the call.
                    return;
                }
                if !p.consented() || p.state == ConsentState::Consented(ConsentMethod::Implicit) {
                    Self::set_state(
                        &mut self.outputs,
                        self.now,
                        id,
                        p,
                        ConsentState::Consented(method),
                        t,
                    );
                    if method == ConsentMethod::Dtmf {
                        let t = t.max(self.now);
                        self.schedule_prompt(PromptKind::Thanks, vec![id.to_owned()], t);
                    }
                }
            }
            Decision::Declined => {
                if p.state == ConsentState::Declined {
                    return;
                }
                Self::set_state(
                    &mut self.outputs,
                    self.now,
                    id,
                    p,
                    ConsentState::Declined,
                    t,
                );
                // A second decline after the call was
                // already stopped must not discard (or announce) again.
                let was_stopped = self.stopped;
                match self.config.decline_policy {
                    DeclinePolicy::ExcludeParticipant => p.excluded = true,
                    DeclinePolicy::Stop | DeclinePolicy::StopAndDiscard => {
                        self.stopped = true;
                    }
                }
                if self.config.decline_policy == DeclinePolicy::StopAndDiscard && !self.discarded {
                    // Close every gate (and write that down) before the
                    // discard, so nothing new is captured after it.
                    self.update_gates(t);
                    self.outputs
                        .push_back(ConsentOutput::Audit(AuditEvent::Discarded {
                            t: secs(t),
                            what: "all captured audio of the call".to_owned(),
                        }));
                    self.outputs.push_back(ConsentOutput::DiscardAll);
                    self.discarded = true;
                    self.gate_epoch += 1;
                }
                if self.stopped && !was_stopped {
                    let to = self.present_ids();
                    self.schedule_prompt(PromptKind::Stopped, to, t);
                }
            }
        }
        self.update_gates(t);
    }

    /// Time passed: implicit consent after the grace period.
    pub fn handle_timeout(&mut self, t: u64) {
        self.advance(t);
        let implicit = matches!(
            self.mode(),
            Some(ConsentMode::Notify | ConsentMode::NotifyAndAllowOptOut)
        );
        if implicit {
            let grace = self.config.grace;
            let ids: Vec<String> = self
                .participants
                .iter()
                .filter(|(_, p)| {
                    p.present
                        && p.state == ConsentState::Notified
                        && p.notified_at.is_some_and(|n| t >= n.saturating_add(grace))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(p) = self.participants.get_mut(&id) {
                    let at = p.notified_at.map_or(t, |n| n.saturating_add(grace));
                    Self::set_state(
                        &mut self.outputs,
                        self.now,
                        &id,
                        p,
                        ConsentState::Consented(ConsentMethod::Implicit),
                        at,
                    );
                }
            }
        }
        self.update_gates(t);
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        if !matches!(
            self.mode(),
            Some(ConsentMode::Notify | ConsentMode::NotifyAndAllowOptOut)
        ) {
            return None;
        }
        self.participants
            .values()
            .filter(|p| p.present && p.state == ConsentState::Notified)
            .filter_map(|p| p.notified_at.map(|n| n.saturating_add(self.config.grace)))
            .min()
            // A deadline already passed is due now, not
            // in the past (the shell calls handle_timeout at this time).
            .map(|d| d.max(self.now))
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<ConsentOutput> {
        self.outputs.pop_front()
    }

    /// Whether a frame of `id` at call time `t` may reach a sink.
    pub fn allows(&self, id: &str, t: u64) -> Verdict {
        self.gate_at(id, t).0
    }

    /// Exactly [`Self::allows`], answered from `cache` when it still holds.
    pub fn allows_cached(&self, id: &str, t: u64, cache: &mut GateCache) -> Verdict {
        if let Some(verdict) = cache.verdict
            && cache.epoch == self.gate_epoch
            && t >= cache.from
        {
            return verdict;
        }
        let (verdict, holds_from) = self.gate_at(id, t);
        *cache = match holds_from {
            Some(from) => GateCache {
                epoch: self.gate_epoch,
                from,
                verdict: Some(verdict),
            },
            None => GateCache::default(),
        };
        verdict
    }

    /// The verdict for `id` at `t`, and, when it is the participant's last
    /// gate change that decides, that change's time: the verdict then holds
    /// for every later frame until the next change.
    fn gate_at(&self, id: &str, t: u64) -> (Verdict, Option<u64>) {
        let waiting = Verdict {
            allowed: false,
            reason: GateReason::AwaitingOwnConsent,
        };
        if self.discarded {
            // A frame from before the decline that arrives late would
            // otherwise land in a file created after the discard.
            let stopped = Verdict {
                allowed: false,
                reason: GateReason::CallStopped,
            };
            return (stopped, None);
        }
        let Some(p) = self.participants.get(id) else {
            return (waiting, None);
        };
        // The last change at or before t decides.
        let idx = p.gate.partition_point(|&(at, _, _)| at <= t);
        match idx.checked_sub(1).and_then(|i| p.gate.get(i)) {
            Some(&(at, open, reason)) => {
                let verdict = Verdict {
                    allowed: open,
                    reason,
                };
                (verdict, (idx == p.gate.len()).then_some(at))
            }
            None => (waiting, None),
        }
    }

    /// Notes the latest time handed in.
    fn advance(&mut self, t: u64) {
        self.now = self.now.max(t);
    }

    fn present_ids(&self) -> Vec<String> {
        self.participants
            .iter()
            .filter(|(_, p)| p.present)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn set_state(
        outputs: &mut VecDeque<ConsentOutput>,
        now: u64,
        id: &str,
        p: &mut Participant,
        to: ConsentState,
        t: u64,
    ) {
        if p.state == to {
            return;
        }
        // Never stamp a change before the latest time
        // already handled. A late report (a prompt's end) or a deadline that
        // passed (implicit consent once the mode fell from explicit) would
        // otherwise back-date it before changes already written, and the
        // log, read by time, would show a participant not consented while
        // their gate was open (or consented while the mode was explicit).
        let t = t.max(now);
        outputs.push_back(ConsentOutput::Audit(AuditEvent::StateChanged {
            t: secs(t),
            participant: id.to_owned(),
            from: p.state,
            to,
        }));
        p.state = to;
    }

    fn schedule_prompt(&mut self, prompt: PromptKind, to: Vec<String>, t: u64) {
        if to.is_empty() {
            return;
        }
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::PromptScheduled {
                t: secs(t),
                prompt,
                to: to.clone(),
            }));
        self.outputs
            .push_back(ConsentOutput::PlayPrompt { prompt, to });
    }

    /// Re-evaluates the call's mode; `joined` just joined or changed.
    fn evaluate(&mut self, t: u64, joined: Option<&str>) {
        let inputs: Vec<ParticipantInput> = self
            .participants
            .iter()
            .filter(|(_, p)| p.present)
            .map(|(id, p)| ParticipantInput {
                id: id.clone(),
                location: p.details.location.clone(),
                internal: p.details.internal,
            })
            .collect();
        let decision = decide(
            &self.rules,
            &self.config.policy,
            self.config.recorder_location.as_ref(),
            &inputs,
        );
        let previous = self.decision.as_ref().map(|d| d.mode);
        let changed = previous != Some(decision.mode)
            || self.decision.as_ref().map(|d| d.scope) != Some(decision.scope);
        if changed {
            self.outputs
                .push_back(ConsentOutput::Audit(AuditEvent::ModeEvaluated {
                    t: secs(t),
                    rules_version: self.rules.version().to_owned(),
                    mode: decision.mode,
                    scope: decision.scope,
                    reasons: decision.reasons.clone(),
                }));
        }
        let mode = decision.mode;
        self.decision = Some(decision);

        if mode == ConsentMode::None {
            let ids: Vec<String> = self
                .participants
                .iter()
                .filter(|(_, p)| {
                    p.present && matches!(p.state, ConsentState::Joined | ConsentState::Notified)
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(p) = self.participants.get_mut(&id) {
                    Self::set_state(
                        &mut self.outputs,
                        self.now,
                        &id,
                        p,
                        ConsentState::Consented(ConsentMethod::NotRequired),
                        t,
                    );
                }
            }
            return;
        }
        let prompt = if mode == ConsentMode::Explicit {
            PromptKind::ConsentRequest
        } else {
            PromptKind::Notice
        };
        let rose = previous.is_some_and(|p| mode > p);
        if previous.is_none() || rose {
            // First evaluation, or stricter than before: everyone present
            // hears it, and consent that no longer suffices is asked again.
            let ids = self.present_ids();
            for id in &ids {
                if let Some(p) = self.participants.get_mut(id) {
                    let insufficient = match p.state {
                        ConsentState::Consented(
                            ConsentMethod::Implicit | ConsentMethod::NotRequired,
                        ) => mode == ConsentMode::Explicit || previous == Some(ConsentMode::None),
                        _ => false,
                    };
                    if insufficient {
                        p.notified_at = None;
                        Self::set_state(
                            &mut self.outputs,
                            self.now,
                            id,
                            p,
                            ConsentState::Joined,
                            t,
                        );
                    }
                }
            }
            self.schedule_prompt(prompt, ids, t);
        } else if let Some(id) = joined {
            // A late joiner hears it on their own session only.
            let needs = self
                .participants
                .get(id)
                .is_some_and(|p| p.present && p.state == ConsentState::Joined);
            if needs {
                self.schedule_prompt(prompt, vec![id.to_owned()], t);
            }
        }
    }

    /// Recomputes every participant's gate at `t` and records changes.
    fn update_gates(&mut self, t: u64) {
        // Keep the gate history in time order.
        let t = t.max(self.now);
        let scope = self
            .decision
            .as_ref()
            .map_or(GateScope::PerParticipant, |d| d.scope);
        let never_present = self
            .participants
            .values()
            .any(|p| p.present && p.details.capture == CaptureSetting::Never);
        let others_pending = |me: &str, all: &BTreeMap<String, Participant>| {
            all.iter()
                .any(|(id, p)| id != me && p.present && !p.excluded && !p.consented())
        };
        let mut changes = Vec::new();
        for (id, p) in &self.participants {
            let (open, reason) = if self.stopped {
                (false, GateReason::CallStopped)
            } else if p.excluded || p.state == ConsentState::Declined {
                (false, GateReason::Declined)
            } else if never_present {
                (false, GateReason::NeverCaptureParticipantPresent)
            } else if p.details.capture == CaptureSetting::Never || !p.consented() {
                (false, GateReason::AwaitingOwnConsent)
            } else if scope == GateScope::CallWide && others_pending(id, &self.participants) {
                (false, GateReason::AwaitingOthers)
            } else {
                (true, GateReason::Consented)
            };
            let (was_open, was_reason) = p.gate_now();
            if p.gate.is_empty() || was_open != open || (!open && was_reason != reason) {
                changes.push((id.clone(), open, reason));
            }
        }
        let any_open_before = self.participants.values().any(|p| p.gate_now().0);
        for (id, open, reason) in changes {
            if let Some(p) = self.participants.get_mut(&id) {
                // Audit first: the shell persists it before any frame this
                // change lets through.
                self.outputs
                    .push_back(ConsentOutput::Audit(AuditEvent::GateChanged {
                        t: secs(t),
                        participant: id.clone(),
                        open,
                        reason,
                    }));
                p.gate.push((t, open, reason));
                self.gate_epoch += 1;
            }
        }
        let any_open_now = self.participants.values().any(|p| p.gate_now().0);
        if any_open_before && !any_open_now {
            self.paused = self.ever_open;
        }
        if any_open_now && !any_open_before {
            if self.paused && !self.stopped {
                // Capture resumes after a pause: announce it again.
                let to = self.present_ids();
                self.schedule_prompt(PromptKind::Notice, to, t);
            }
            self.paused = false;
            self.ever_open = true;
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
