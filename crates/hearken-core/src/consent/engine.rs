//! The consent engine of one call: each participant's consent state, the
//! prompts the call needs, and the gate every audio frame passes.
//!
//! Sans-IO. Time is call time in 48 kHz samples (the same clock as frame
//! positions). The shell feeds presence (audio m-lines and the provider's
//! roster), participant details, prompt playback, provider notices and
//! consent signals; the engine answers with [`ConsentOutput`]s (audit events
//! to persist, prompts to play, audio to discard) and judges every frame
//! ([`ConsentEngine::judge`]).
//!
//! # The gate
//!
//! A frame of participant P at call time t is, by the gate's history at t:
//!
//! - **allowed** when the consent P's mode requires (and, under a call-wide
//!   scope, everyone else's) covers it;
//! - **held** while that consent is still pending but can be given: the
//!   frame waits in memory (the caller keeps it, see
//!   [`crate::conference`]) and is committed when the consent it waits for
//!   arrives, or discarded when it cannot any more (a decline, leaving, the
//!   call ending). A held frame carries the list of *waits* it depends on,
//!   each one participant's consent (or details) over one stretch of time,
//!   so its fate is decided by exactly the people it waited for;
//! - **withheld** when nothing can make it capturable: a decline, a
//!   `capture: never` participant present, or explicit prior consent that is
//!   missing (nothing is held where the law requires consent first, unless
//!   `hold_under_explicit`).
//!
//! What the modes do with the opening of a call: `none` and `notify` capture
//! from the first frame (the notice still plays); `notify_and_allow_opt_out`
//! holds from the first frame and commits once the notice was heard and the
//! grace period passed; `explicit` captures nothing before consent.
//!
//! The gate is a pure function of its history, so a frame is judged by the
//! consent that held at *its* time, not at the time it arrived.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dtmf::DtmfKey;

pub use super::events::{AuditEvent, AuditKind, GateReason, HoldDiscard, PromptKind};
use super::rules::{
    CallDecision, ConsentMode, GateScope, Location, ParticipantInput, Policy, Rules, decide,
};

/// 48 kHz samples per second (call time unit).
const SAMPLES_PER_SECOND: u64 = 48_000;

/// A key pressed this soon after `*` or `#` is part of a bridge's star code
/// (`*1` mutes on several bridges), not an answer (1 s).
const STAR_CODE_WINDOW: u64 = SAMPLES_PER_SECOND;

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
    /// A spoken yes (heard by the local recogniser, or reported).
    Verbal,
}

impl ConsentMethod {
    /// Whether it is an explicit act of the participant (what `explicit`
    /// requires), not inferred from staying or from the mode.
    pub fn is_explicit(self) -> bool {
        !matches!(self, Self::NotRequired | Self::Implicit)
    }

    /// Its name in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRequired => "not_required",
            Self::Implicit => "implicit",
            Self::Dtmf => "dtmf",
            Self::Api => "api",
            Self::Ui => "ui",
            Self::Verbal => "verbal",
        }
    }
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

/// A consent signal from DTMF, speech or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Agrees to be recorded.
    Granted,
    /// Refuses.
    Declined,
}

/// How a prompt reached the participants it was played to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Played into their sessions to the end.
    Whole,
    /// Played into their sessions, but cut short (the session went away).
    Interrupted,
    /// They cannot hear the bot (no audio from Hearken to them): nothing
    /// was played.
    Inaudible,
}

/// What came with a signal, for the audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalEvidence {
    /// The provider's method string exactly as given.
    pub method_given: Option<String>,
    /// What the recogniser heard.
    pub phrase: Option<String>,
    /// How sure it was: the recogniser's confidence, the log-likelihood
    /// ratio per 10 ms frame of the phrase against free speech (0 = as
    /// well as any phone sequence; accepted from -0.45 up).
    pub confidence: Option<f32>,
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
    /// The provider's stable id of the person, if it has one: a decline
    /// follows the person across new participant ids, and consent never
    /// passes to a different person who reuses an id.
    pub user_id: Option<String>,
    /// One m-line carrying several people (a room system, a mixed phone
    /// bridge): treated as the strictest of the people it may carry.
    pub mixed: bool,
}

/// How long audio may wait in memory for consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldConfig {
    /// Most call time (48 kHz samples) one participant's hold spans; the
    /// oldest audio goes first beyond it.
    pub max_span: u64,
    /// Hold audio also where the law demands explicit prior consent (else
    /// it is dropped until consent).
    pub under_explicit: bool,
}

impl Default for HoldConfig {
    /// 60 s; nothing held under explicit.
    fn default() -> Self {
        Self {
            max_span: 60 * SAMPLES_PER_SECOND,
            under_explicit: false,
        }
    }
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
    /// The provisional hold.
    pub hold: HoldConfig,
    /// A participant who joins without details holds capture (theirs, and
    /// everyone's until their `capture` setting is known) this long (48 kHz
    /// samples); then the unknown-location mode applies to them.
    pub details_wait: u64,
    /// The provider shows its own notice to every participant, so a prompt
    /// that a participant cannot hear still informs them.
    pub provider_notifies: bool,
    /// Under a call-wide (all-party) gate, a decline excludes only the
    /// decliner instead of stopping the call. Off by default: the others'
    /// speech to the decliner is theirs too under all-party law.
    pub allow_exclude_under_all_party: bool,
}

impl Default for EngineConfig {
    /// The shipped defaults: no company policy, recorder location unknown,
    /// 5 s grace, `stop` on a decline, 1 and 9, a 60 s hold, a 3 s details
    /// wait.
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            recorder_location: None,
            grace: 5 * SAMPLES_PER_SECOND,
            decline_policy: DeclinePolicy::Stop,
            keys: ConsentKeys::default(),
            hold: HoldConfig::default(),
            details_wait: 3 * SAMPLES_PER_SECOND,
            provider_notifies: false,
            allow_exclude_under_all_party: false,
        }
    }
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

/// What the engine asks of the shell.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConsentOutput {
    /// Persist (append and sync) before acting on anything that follows.
    Audit(AuditEvent),
    /// Play a prompt to these participants' sessions (one prompt at a time
    /// per m-line: queue it behind one that is playing).
    PlayPrompt {
        /// Which prompt.
        prompt: PromptKind,
        /// To whom.
        to: Vec<String>,
    },
    /// Delete all captured audio of the call.
    DiscardAll,
    /// Delete everything captured of one participant so far (their
    /// location turned out to require more than their audio had).
    DiscardParticipant {
        /// Whose audio.
        participant: String,
    },
    /// A participant declined: drop whatever of theirs is waiting to be
    /// sent anywhere (the transcriber's buffers and resend queue).
    Withdrawn {
        /// Who.
        participant: String,
    },
}

/// The gate's answer for one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// It may reach the sinks.
    Allow,
    /// Keep it in memory until [`ConsentEngine::fate`] decides.
    Hold(HoldTicket),
    /// Drop it.
    Withhold(GateReason),
}

/// What a held frame waits for: opaque to the caller, cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldTicket(Awaits);

/// What becomes of a held frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Every consent it waited for was given: it goes to the sinks.
    Commit,
    /// It cannot be covered any more: drop it.
    Discard(HoldDiscard),
    /// Still waiting.
    Wait,
}

/// One wait a held frame depends on: one participant's consent (or
/// details) over one stretch of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AwaitRef {
    who: u32,
    kind: WaitKind,
    episode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WaitKind {
    /// Their own consent.
    Consent,
    /// Their details (whether they may be captured at all).
    Details,
}

type Awaits = Arc<[AwaitRef]>;

/// How one wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Open,
    Committed,
    /// Consent came at this time where the law wants it first: what was
    /// spoken before it is discarded, what was spoken after it (held while
    /// their details were unknown) is committed.
    CommittedFrom(u64),
    Discarded(HoldDiscard),
    /// A details wait that ended in details which make others' consent
    /// matter for what was held during it (they made the call all-party):
    /// that audio now waits for these consents too.
    Then(Awaits),
}

/// A gate's state from some call time on.
#[derive(Debug, Clone, PartialEq)]
enum GateState {
    Open,
    Held { awaits: Awaits, reason: GateReason },
    Closed(GateReason),
}

impl GateState {
    fn open(&self) -> bool {
        matches!(self, Self::Open)
    }

    fn held(&self) -> bool {
        matches!(self, Self::Held { .. })
    }

    fn reason(&self) -> GateReason {
        match self {
            Self::Open => GateReason::Consented,
            Self::Held { reason, .. } | Self::Closed(reason) => *reason,
        }
    }
}

/// Where a participant's own consent stands for capture now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clearance {
    /// Not on the call.
    Absent,
    /// Their consent (as the mode requires it) covers capture.
    Clear,
    /// Not yet, but it can still be given: hold.
    Pending,
    /// Not without an explicit act first, and nothing is held meanwhile.
    Blocked,
    /// Never (declined, `capture: never`, the call stopped).
    Refused(GateReason),
}

#[derive(Debug)]
struct Participant {
    id: String,
    details: ParticipantDetails,
    /// The provider's details arrived.
    details_known: bool,
    /// The details wait ran out before they did (the unknown-location mode
    /// applies).
    details_waited: bool,
    /// When the details wait runs out.
    details_deadline: Option<u64>,
    /// The details wait is over (details came, or time ran out): its
    /// outcome is settled once the gates are recomputed with what is now
    /// known.
    details_settling: bool,
    /// An audio m-line of theirs is on the call.
    media: bool,
    /// The provider's roster says they are on the call.
    roster: bool,
    state: ConsentState,
    excluded: bool,
    /// End of the notice they heard in this stay (or the provider's).
    heard_notice: Option<u64>,
    /// End of the consent request they heard in this stay.
    heard_request: Option<u64>,
    /// The first notice or request they heard whole in this call (keys
    /// count after it).
    first_heard: Option<(PromptKind, u64)>,
    /// The first consent request they heard whole in this call.
    first_heard_request: Option<u64>,
    /// The provider showed its own notice, at this call time.
    provider_notice: Option<u64>,
    /// The notice or request last scheduled for them in this stay.
    prompted: Option<PromptKind>,
    /// Consent given before leaving; holds again on a rejoin.
    held_consent: Option<ConsentMethod>,
    /// When they last came to consent.
    consented_at: Option<u64>,
    /// The gate's history, in time order.
    gate: Vec<(u64, GateState)>,
    clearance: Clearance,
    consent_waits: Vec<Outcome>,
    details_waits: Vec<Outcome>,
    /// When they last came on the call.
    joined_at: u64,
    /// The last key they pressed, and when.
    last_key: Option<(DtmfKey, u64)>,
    /// Their last logged resolution (jurisdiction, mode).
    resolved: Option<(String, ConsentMode)>,
    /// The weakest consent any of their captured audio had: the call's
    /// mode, or `explicit` once they consented explicitly.
    captured_under: Option<ConsentMode>,
    /// Their audio before this call time was deleted.
    discarded_before: u64,
    /// They declined while not on the call: the decline policy applies
    /// when they come.
    decline_deferred: bool,
    /// They have been on the call at some point.
    ever_present: bool,
    /// Their stays on the call.
    stays: Vec<Stay>,
}

impl Participant {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            details: ParticipantDetails::default(),
            details_known: false,
            details_waited: false,
            details_deadline: None,
            details_settling: false,
            media: false,
            roster: false,
            state: ConsentState::Joined,
            excluded: false,
            heard_notice: None,
            heard_request: None,
            first_heard: None,
            first_heard_request: None,
            provider_notice: None,
            prompted: None,
            held_consent: None,
            consented_at: None,
            gate: Vec::new(),
            clearance: Clearance::Absent,
            consent_waits: Vec::new(),
            details_waits: Vec::new(),
            joined_at: 0,
            last_key: None,
            resolved: None,
            captured_under: None,
            discarded_before: 0,
            decline_deferred: false,
            ever_present: false,
            stays: Vec::new(),
        }
    }

    fn present(&self) -> bool {
        self.media || self.roster
    }

    /// What the rules decide on. A mixed m-line is one participant for
    /// consent, treated as the strictest of the people it may carry; the
    /// medium is not given by the provider, so the rules' default applies
    /// (every medium for a mixed line).
    fn input(&self) -> ParticipantInput {
        ParticipantInput {
            id: self.id.clone(),
            location: self.details.location.clone(),
            internal: self.details.internal,
            media: None,
            mixed: self.details.mixed,
        }
    }

    fn consented(&self) -> bool {
        matches!(self.state, ConsentState::Consented(_))
    }

    fn consented_explicitly(&self) -> bool {
        matches!(self.state, ConsentState::Consented(m) if m.is_explicit())
    }

    /// Present, but nobody knows yet where they are or whether they may be
    /// recorded.
    fn details_pending(&self) -> bool {
        self.present() && !self.details_known && !self.details_waited
    }

    /// Their details are known, or the wait for them is over: they count
    /// for the mode.
    fn resolved_input(&self) -> bool {
        self.details_known || self.details_waited
    }

    fn refused(&self) -> bool {
        self.excluded || self.state == ConsentState::Declined
    }

    /// When they were informed in this stay: a notice heard, or the
    /// provider's own notice (never before they came).
    fn informed_at(&self) -> Option<u64> {
        let provider = self.provider_notice.map(|t| t.max(self.joined_at));
        match (self.heard_notice, provider) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn open_wait(waits: &mut Vec<Outcome>) {
        waits.push(Outcome::Open);
    }

    fn close_wait(waits: &mut [Outcome], outcome: Outcome) -> bool {
        match waits.last_mut() {
            Some(last @ Outcome::Open) => {
                *last = outcome;
                true
            }
            _ => false,
        }
    }

    fn current_wait(&self, kind: WaitKind) -> Option<u32> {
        let waits = match kind {
            WaitKind::Consent => &self.consent_waits,
            WaitKind::Details => &self.details_waits,
        };
        match waits.last() {
            Some(Outcome::Open) => u32::try_from(waits.len() - 1).ok(),
            _ => None,
        }
    }
}

/// One stay on the call: (came, left, their consent when they left and
/// when it was given).
type Stay = (u64, Option<u64>, Option<(ConsentMethod, u64)>);

/// One participant's latest gate state, kept by the caller between frames
/// so the steady state costs two integer compares instead of a lookup by
/// id: with hundreds of calls on a worker, that lookup touches cold memory
/// on every packet. Valid while no gate of the engine changed and for
/// frames at or after the participant's last gate change.
#[derive(Debug, Clone, Default)]
pub struct GateCache {
    epoch: u64,
    from: u64,
    state: Option<GateState>,
}

/// Held frames judged again with what is known now, from
/// [`ConsentEngine::rejudger`].
#[derive(Debug)]
pub struct Rejudge<'a> {
    engine: &'a ConsentEngine,
    /// Each participant's mode and all-party rule, as known now.
    parties: Vec<(ConsentMode, bool)>,
    recorder: (ConsentMode, bool),
}

impl Rejudge<'_> {
    /// A frame spoken at `t` and held with `ticket`: discarded when a
    /// `capture: never` participant was on the call then; when the call was
    /// all-party then (as is known now: a location may have come later), it
    /// also waits for everyone who was on the call then, or is discarded
    /// when one of them can no longer consent (left without consenting,
    /// declined, cannot be held for).
    pub fn rejudge(&self, t: u64, ticket: &HoldTicket) -> Result<HoldTicket, HoldDiscard> {
        let engine = self.engine;
        let stay_at = |q: &Participant| {
            q.stays
                .iter()
                .find(|(came, left, _)| *came < t && left.is_none_or(|l| l > t))
                .copied()
        };
        let there: Vec<usize> = (0..engine.participants.len())
            .filter(|&j| stay_at(&engine.participants[j]).is_some())
            .collect();
        if there.iter().any(|&j| {
            let q = &engine.participants[j];
            q.details_known && q.details.capture == CaptureSetting::Never
        }) {
            return Err(HoldDiscard::CaptureNever);
        }
        let mode = there
            .iter()
            .map(|&j| self.parties[j].0)
            .fold(self.recorder.0, ConsentMode::max);
        let all_party = self.recorder.1 || there.iter().any(|&j| self.parties[j].1);
        if !all_party || mode == ConsentMode::None {
            return Ok(ticket.clone());
        }
        let allow_exclude = engine.config.allow_exclude_under_all_party;
        let held_for_explicit = engine.config.hold.under_explicit;
        let mut awaits: Vec<AwaitRef> = ticket.0.to_vec();
        for &j in &there {
            let q = &engine.participants[j];
            if q.excluded && allow_exclude {
                continue;
            }
            let Some((_, left, consent_at_leave)) = stay_at(q) else {
                continue;
            };
            // What their own law (and the recorder's), as known now, wants.
            let required = self.parties[j].0.max(self.recorder.0);
            // Consent given at `at` by `method` covers audio spoken at t.
            let covers = |method: ConsentMethod, at: u64| match required {
                ConsentMode::None | ConsentMode::Notify => true,
                ConsentMode::NotifyAndAllowOptOut => true,
                ConsentMode::Explicit => method.is_explicit() && (held_for_explicit || at <= t),
            };
            if left.is_some() {
                if required <= ConsentMode::Notify
                    || consent_at_leave.is_some_and(|(method, at)| covers(method, at))
                {
                    continue;
                }
                return Err(HoldDiscard::Left);
            }
            match q.clearance {
                Clearance::Clear => {
                    if let ConsentState::Consented(method) = q.state
                        && !covers(method, q.consented_at.unwrap_or(0))
                    {
                        return Err(HoldDiscard::ExplicitRequired);
                    }
                }
                Clearance::Absent => {}
                Clearance::Pending => {
                    if let Some(e) = q.current_wait(WaitKind::Consent) {
                        awaits.push(AwaitRef {
                            who: j as u32,
                            kind: WaitKind::Consent,
                            episode: e,
                        });
                    }
                }
                Clearance::Blocked => return Err(HoldDiscard::ExplicitRequired),
                Clearance::Refused(GateReason::Declined) => return Err(HoldDiscard::Declined),
                Clearance::Refused(GateReason::CaptureNever) => {
                    return Err(HoldDiscard::CaptureNever);
                }
                Clearance::Refused(_) => return Err(HoldDiscard::CallStopped),
            }
        }
        awaits.sort_unstable();
        awaits.dedup();
        Ok(HoldTicket(awaits.into()))
    }
}

fn secs(t: u64) -> f64 {
    t as f64 / SAMPLES_PER_SECOND as f64
}

/// The consent engine of one call.
#[derive(Debug)]
pub struct ConsentEngine {
    rules: Arc<Rules>,
    config: EngineConfig,
    participants: Vec<Participant>,
    index: BTreeMap<String, u32>,
    decision: Option<CallDecision>,
    /// A decline stopped capture of the call, at this time.
    stopped: Option<u64>,
    /// Everything captured was discarded: nothing may be captured any more,
    /// whatever its time.
    discarded: bool,
    ended: bool,
    outputs: VecDeque<ConsentOutput>,
    /// Capture was open for someone, then closed for all while people were
    /// still on the call: reopening it is announced.
    paused: bool,
    ever_open: bool,
    /// The latest call time handed in. Gate changes are never recorded
    /// before it (a late report, e.g. a prompt's end, must not rewrite the
    /// gate's history), and no deadline is set before it.
    now: u64,
    /// Counts every change to any gate (see [`GateCache`]).
    gate_epoch: u64,
    /// Counts every wait that ended (held frames may have a fate now).
    resolutions: u64,
    /// Counts the times the scope became call-wide.
    widenings: u64,
    /// People (by the provider's user id) who declined in this call.
    declined_users: BTreeSet<String>,
    /// People (by user id) who consented in this call, and how.
    consented_users: BTreeMap<String, ConsentMethod>,
    policy_logged: bool,
}

impl ConsentEngine {
    /// An engine with no participant yet.
    pub fn new(rules: Arc<Rules>, config: EngineConfig) -> Self {
        Self {
            rules,
            config,
            participants: Vec::new(),
            index: BTreeMap::new(),
            decision: None,
            stopped: None,
            discarded: false,
            ended: false,
            outputs: VecDeque::new(),
            paused: false,
            ever_open: false,
            now: 0,
            gate_epoch: 0,
            resolutions: 0,
            widenings: 0,
            declined_users: BTreeSet::new(),
            consented_users: BTreeMap::new(),
            policy_logged: false,
        }
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The DTMF keys that answer a consent request.
    pub fn keys(&self) -> ConsentKeys {
        self.config.keys
    }

    /// The call's current mode (`None` before anyone counted).
    pub fn mode(&self) -> Option<ConsentMode> {
        self.decision.as_ref().map(|d| d.mode)
    }

    /// The call's current decision (mode, scope, each participant's
    /// resolution).
    pub fn decision(&self) -> Option<&CallDecision> {
        self.decision.as_ref()
    }

    /// A participant's state.
    pub fn state(&self, id: &str) -> Option<ConsentState> {
        self.get(id).map(|p| p.state)
    }

    /// The jurisdiction a participant's consent follows (the rules entry),
    /// once it counted for the mode.
    pub fn jurisdiction(&self, id: &str) -> Option<&str> {
        self.get(id)
            .and_then(|p| p.resolved.as_ref())
            .map(|(j, _)| j.as_str())
    }

    /// Every participant who has been on the call (with audio or on the
    /// roster), in the order the engine learned of them.
    pub fn participant_ids(&self) -> impl Iterator<Item = &str> {
        self.participants
            .iter()
            .filter(|p| p.ever_present)
            .map(|p| p.id.as_str())
    }

    /// Whether a participant is on the call (audio or roster).
    pub fn is_present(&self, id: &str) -> bool {
        self.get(id).is_some_and(Participant::present)
    }

    /// Counts every wait that ended: when it changed, held frames may have
    /// a fate.
    pub fn resolutions(&self) -> u64 {
        self.resolutions
    }

    /// Counts the times held audio must be judged again
    /// ([`Self::rejudger`]): the gate became call-wide (everyone who heard
    /// it must now consent to it), or someone's details changed (a `never`
    /// or an all-party location learned late).
    pub fn widenings(&self) -> u64 {
        self.widenings
    }

    /// Judges held frames again with what is known now
    /// ([`Rejudge::rejudge`]).
    pub fn rejudger(&self) -> Rejudge<'_> {
        let policy = &self.config.policy;
        let parties = self
            .participants
            .iter()
            .map(|q| {
                if !q.resolved_input() {
                    return (ConsentMode::None, false);
                }
                let r = self.rules.resolve_participant(policy, &q.input());
                // A mixed line gates the whole call, as an all-party rule does.
                (r.mode, r.all_party || q.details.mixed)
            })
            .collect();
        let recorder = self
            .rules
            .resolve_with_policy(policy, self.config.recorder_location.as_ref());
        Rejudge {
            engine: self,
            parties,
            recorder: (recorder.mode, recorder.all_party),
        }
    }

    fn get(&self, id: &str) -> Option<&Participant> {
        self.index
            .get(id)
            .and_then(|&i| self.participants.get(i as usize))
    }

    fn ensure(&mut self, id: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i as usize;
        }
        let i = self.participants.len();
        self.participants.push(Participant::new(id));
        self.index.insert(id.to_owned(), i as u32);
        i
    }

    /// Writes the call's consent settings once, before anything else.
    fn log_policy(&mut self, t: u64) {
        if self.policy_logged {
            return;
        }
        self.policy_logged = true;
        let (mode, from) = self.unknown_location_mode();
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::CallPolicy {
                t: secs(t),
                rules_version: self.rules.version().to_owned(),
                decline_policy: self.config.decline_policy,
                unknown_location_mode: mode,
                unknown_location_mode_from: from,
                hold_seconds: secs(self.config.hold.max_span),
                hold_under_explicit: self.config.hold.under_explicit,
                details_wait_seconds: secs(self.config.details_wait),
                grace_seconds: secs(self.config.grace),
                provider_notifies: self.config.provider_notifies,
            }));
    }

    /// The mode for participants whose location is unknown, and whether it
    /// comes from the rules or the company's policy.
    fn unknown_location_mode(&self) -> (ConsentMode, &'static str) {
        self.rules.unknown_location_mode(&self.config.policy)
    }

    /// Details from the provider (`PUT …/participants/{id}`), before or after
    /// the participant's audio arrives.
    pub fn handle_details(&mut self, id: &str, details: ParticipantDetails, t: u64) {
        self.advance(t);
        self.log_policy(t);
        let i = self.ensure(id);
        let identity_changed = {
            let p = &self.participants[i];
            matches!((&p.details.user_id, &details.user_id), (Some(a), Some(b)) if a != b)
        };
        if identity_changed {
            self.new_person(i, t);
        }
        let now = self.now;
        let p = &mut self.participants[i];
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::DetailsChanged {
                t: secs(t.max(now)),
                participant: id.to_owned(),
                location: details.location.clone(),
                internal: details.internal,
                capture: details.capture,
                user_id: details.user_id.clone(),
                mixed: details.mixed,
            }));
        // What is known of who was on the call changed: held audio is judged
        // again (a `never`, or an all-party location, learned late).
        self.widenings += 1;
        p.details = details;
        p.details_known = true;
        p.details_deadline = None;
        p.details_settling = true;
        self.remembered_decisions(i, t);
        self.discard_if_raised(i, t);
        if self.participants[i].present() {
            self.evaluate(t);
        }
        self.update_gates(t);
    }

    /// A different person now uses participant `i`'s id (the provider's
    /// user id changed): nothing of the earlier person's consent carries.
    fn new_person(&mut self, i: usize, t: u64) {
        let now = self.now;
        let p = &mut self.participants[i];
        p.held_consent = None;
        p.excluded = false;
        p.heard_notice = None;
        p.heard_request = None;
        // Keys count after the prompts this person heard, not the earlier
        // person's.
        p.first_heard = None;
        p.first_heard_request = None;
        p.provider_notice = None;
        p.prompted = None;
        p.last_key = None;
        // The earlier person's decline (remembered by their user id) is
        // theirs: it does nothing to the call when this person comes.
        p.decline_deferred = false;
        let to = if p.present() {
            ConsentState::Joined
        } else {
            ConsentState::Left
        };
        Self::set_state(&mut self.outputs, now, p, to, t);
        if p.present() {
            p.joined_at = t.max(now);
        }
    }

    /// Applies a decision the same person (by user id) made earlier in the
    /// call under another participant id.
    fn remembered_decisions(&mut self, i: usize, t: u64) {
        let Some(user) = self.participants[i].details.user_id.clone() else {
            return;
        };
        if self.declined_users.contains(&user) {
            if !self.participants[i].refused() {
                self.signal_received(
                    i,
                    Decision::Declined,
                    ConsentMethod::Api,
                    t,
                    SignalEvidence {
                        method_given: Some(format!("declined earlier in this call as user {user}")),
                        ..SignalEvidence::default()
                    },
                );
                self.decline(i, t);
            }
        } else if let Some(&method) = self.consented_users.get(&user) {
            let p = &self.participants[i];
            if p.present() && !p.consented() && !p.refused() {
                let now = self.now;
                let p = &mut self.participants[i];
                Self::set_state(
                    &mut self.outputs,
                    now,
                    p,
                    ConsentState::Consented(method),
                    t,
                );
            }
        }
    }

    /// When a location learned late raises a participant's mode above the
    /// consent their captured audio had, that audio is deleted; so is all of
    /// it when they turn out to be `capture: never`.
    fn discard_if_raised(&mut self, i: usize, t: u64) {
        let p = &self.participants[i];
        let Some(captured) = p.captured_under else {
            return;
        };
        let never = p.details.capture == CaptureSetting::Never;
        let own = self
            .rules
            .resolve_participant(&self.config.policy, &p.input());
        if !never && own.mode <= captured {
            return;
        }
        let t = t.max(self.now);
        let what = if never {
            format!(
                "everything captured of {}: they are never to be recorded",
                p.id
            )
        } else {
            format!(
                "everything captured of {}: captured under {captured}, but {} requires {}",
                p.id, own.matched, own.mode
            )
        };
        let id = p.id.clone();
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::Discarded {
                t: secs(t),
                what,
                participant: Some(id.clone()),
            }));
        self.outputs
            .push_back(ConsentOutput::DiscardParticipant { participant: id });
        let p = &mut self.participants[i];
        p.captured_under = None;
        p.discarded_before = t;
        self.gate_epoch += 1;
    }

    /// The participant's audio arrived (an m-line of theirs joined the call).
    pub fn handle_join(&mut self, id: &str, t: u64) {
        self.presence(id, true, false, t);
    }

    /// The participant's audio left the call.
    pub fn handle_leave(&mut self, id: &str, t: u64) {
        self.presence(id, false, false, t);
    }

    /// The provider's roster says the participant is (or is no longer) on
    /// the call, with or without audio: a listener, a muted participant, a
    /// phone leg on another system all count for the mode, the call-wide
    /// gate and `capture: never`.
    pub fn handle_roster(&mut self, id: &str, present: bool, t: u64) {
        self.presence(id, present, true, t);
    }

    fn presence(&mut self, id: &str, present: bool, roster: bool, t: u64) {
        self.advance(t);
        self.log_policy(t);
        let i = self.ensure(id);
        let was = self.participants[i].present();
        if !present && was {
            let p = &self.participants[i];
            let other_flag = if roster { p.media } else { p.roster };
            if !other_flag && p.details_pending() {
                // Leaving during the details wait: their own consent is
                // judged now, under the unknown-location mode, so someone
                // who needs no more than notice is not lost for leaving
                // before their details came. The wait itself runs on:
                // providers post details after a quick leave too, and a
                // `never` or an all-party location said within it still
                // decides what was held while they were on the call.
                self.participants[i].details_waited = true;
                self.evaluate(t);
                self.update_gates(t);
            }
        }
        {
            let p = &mut self.participants[i];
            let flag = if roster { &mut p.roster } else { &mut p.media };
            if *flag == present {
                return;
            }
            *flag = present;
        }
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::PresenceChanged {
                t: secs(t.max(self.now)),
                participant: id.to_owned(),
                present,
                via: if roster { "roster" } else { "media" },
            }));
        let is = self.participants[i].present();
        if !was && is {
            self.came(i, t);
        } else if was && !is {
            self.went(i, t);
        }
        self.update_gates(t);
    }

    fn came(&mut self, i: usize, t: u64) {
        let mode = self.mode();
        let now = self.now;
        let wait = self.config.details_wait;
        let p = &mut self.participants[i];
        p.joined_at = t;
        p.ever_present = true;
        p.stays.push((t, None, None));
        if p.state == ConsentState::Left {
            // Back on the call: consent given earlier in this call holds if
            // it still suffices for the current mode (an implicit consent
            // does not hold once the mode rose to explicit while they were
            // away); anyone else starts over and is told again.
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
                    ConsentState::Joined
                }
            };
            Self::set_state(&mut self.outputs, now, p, back, t);
        }
        // A notice heard in an earlier stay does not count as heard for
        // staying now.
        p.heard_notice = None;
        p.heard_request = None;
        p.prompted = None;
        if !p.details_known && p.details_deadline.is_some() {
            // Back while the details wait their leaving did not end still
            // runs: they wait for their details again.
            p.details_waited = false;
        }
        if !p.details_known && !p.details_waited && p.details_deadline.is_none() {
            p.details_deadline = Some(t.saturating_add(wait));
            Participant::open_wait(&mut p.details_waits);
        }
        let informed = p.informed_at();
        if p.state == ConsentState::Joined
            && let Some(at) = informed
        {
            Self::set_state(&mut self.outputs, now, p, ConsentState::Notified, at);
        }
        let deferred = p.decline_deferred;
        // The same person (by user id) decided under another participant id
        // earlier in the call: with details posted before they came, this
        // is the first moment they are present to apply it to.
        self.remembered_decisions(i, t);
        self.evaluate(t);
        if deferred {
            self.apply_decline_policy(i, t);
        }
    }

    fn went(&mut self, i: usize, t: u64) {
        let now = self.now;
        let p = &mut self.participants[i];
        if let ConsentState::Consented(method) = p.state {
            p.held_consent = Some(method);
        }
        let consent = match p.state {
            ConsentState::Consented(method) => Some((method, p.consented_at.unwrap_or(t))),
            _ => None,
        };
        if let Some(stay) = p.stays.last_mut() {
            stay.1 = Some(t);
            stay.2 = consent;
        }
        if p.state != ConsentState::Declined {
            Self::set_state(&mut self.outputs, now, p, ConsentState::Left, t);
        }
        p.prompted = None;
        // The mode may fall now (a strict participant left).
        self.evaluate(t);
    }

    /// A prompt the engine asked for started playing at `start` and ended
    /// at `end` for `to`, delivered as `delivery`.
    pub fn handle_prompt_played(
        &mut self,
        prompt: PromptKind,
        to: &[String],
        delivery: Delivery,
        start: u64,
        end: u64,
    ) {
        self.advance(end);
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::PromptPlayed {
                audible: delivery != Delivery::Inaudible,
                complete: delivery == Delivery::Whole,
                start: secs(start),
                end: secs(end),
                prompt,
                to: to.to_vec(),
            }));
        if matches!(prompt, PromptKind::Notice | PromptKind::ConsentRequest) {
            // Heard whole, or shown by the provider (who says it shows its
            // own notice to everyone who cannot hear the bot).
            let informs = delivery == Delivery::Whole
                || (delivery == Delivery::Inaudible && self.config.provider_notifies);
            for id in to {
                let Some(&i) = self.index.get(id) else {
                    continue;
                };
                let now = self.now;
                let p = &mut self.participants[i as usize];
                // A prompt heard only in part, or in an earlier stay on the
                // call, does not count.
                if !p.present() || start < p.joined_at {
                    continue;
                }
                if !informs {
                    self.outputs
                        .push_back(ConsentOutput::Audit(AuditEvent::NoticeNotHeard {
                            t: secs(end.max(now)),
                            participant: id.clone(),
                            prompt,
                        }));
                    continue;
                }
                match prompt {
                    PromptKind::Notice => p.heard_notice = Some(end),
                    _ => {
                        p.heard_request = Some(end);
                        p.first_heard_request.get_or_insert(end);
                    }
                }
                p.first_heard.get_or_insert((prompt, end));
                if p.state == ConsentState::Joined {
                    Self::set_state(&mut self.outputs, now, p, ConsentState::Notified, end);
                }
            }
        }
        self.handle_timeout(end);
    }

    /// The provider showed its own notice to a participant at `shown_at`
    /// (`POST …/notice`), reported at `t`. It informs them as a notice they
    /// heard would; before the call it counts from when they join.
    pub fn handle_notice(&mut self, id: &str, shown_at: u64, how: &str, t: u64) {
        self.advance(t);
        self.log_policy(t);
        let i = self.ensure(id);
        let now = self.now;
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::NoticeShown {
                t: secs(t.max(now)),
                participant: id.to_owned(),
                shown: secs(shown_at),
                how: how.to_owned(),
            }));
        let p = &mut self.participants[i];
        p.provider_notice = Some(p.provider_notice.map_or(shown_at, |s| s.min(shown_at)));
        if p.present()
            && p.state == ConsentState::Joined
            && let Some(at) = p.informed_at()
        {
            Self::set_state(&mut self.outputs, now, p, ConsentState::Notified, at);
        }
        self.handle_timeout(t);
    }

    /// A consent signal reported by the provider (or the local recogniser)
    /// at `t`; always taken into account, also before the call starts.
    pub fn handle_signal(
        &mut self,
        id: &str,
        decision: Decision,
        method: ConsentMethod,
        t: u64,
        evidence: SignalEvidence,
    ) {
        self.advance(t);
        self.log_policy(t);
        let i = self.ensure(id);
        self.signal_received(i, decision, method, t, evidence);
        match decision {
            Decision::Granted => self.grant(i, method, t),
            Decision::Declined => self.decline(i, t),
        }
        self.update_gates(t);
    }

    /// A key `id` pressed at `t`. Returns whether it is one of the consent
    /// keys (taken or ignored; the audit log says which).
    ///
    /// A key counts only after the prompt it answers finished playing to
    /// them (the agree key: the consent request; the decline key: the
    /// notice or the request), and not within 1 s after `*` or `#`: a
    /// bridge's star code or a PIN typed on connect is not consent.
    pub fn handle_key(&mut self, id: &str, key: DtmfKey, t: u64) -> bool {
        self.advance(t);
        let keys = self.config.keys;
        let decision = if key == keys.agree {
            Some(Decision::Granted)
        } else if key == keys.decline {
            Some(Decision::Declined)
        } else {
            None
        };
        let Some(&i) = self.index.get(id) else {
            return decision.is_some();
        };
        let i = i as usize;
        let previous = self.participants[i].last_key.replace((key, t));
        let Some(decision) = decision else {
            return false;
        };
        let signal = format!("dtmf {}", key.as_char());
        let after_star = previous.is_some_and(|(k, at)| {
            matches!(k, DtmfKey::Star | DtmfKey::Pound) && t.saturating_sub(at) <= STAR_CODE_WINDOW
        });
        let p = &self.participants[i];
        // What they heard earlier in the call counts: they know the keys.
        let heard = match decision {
            Decision::Granted => [p.first_heard_request, p.provider_notice]
                .into_iter()
                .flatten()
                .min(),
            Decision::Declined => [p.first_heard.map(|(_, at)| at), p.provider_notice]
                .into_iter()
                .flatten()
                .min(),
        };
        let reason = if after_star {
            Some("it follows * or # within 1 s (a bridge's star code, not an answer)")
        } else if heard.is_none_or(|h| h > t) {
            Some(match decision {
                Decision::Granted => "pressed before the consent request finished playing to them",
                Decision::Declined => "pressed before the notice finished playing to them",
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            self.ignore(i, signal, reason, t);
            return true;
        }
        self.log_policy(t);
        self.signal_received(
            i,
            decision,
            ConsentMethod::Dtmf,
            t,
            SignalEvidence::default(),
        );
        match decision {
            Decision::Granted => self.grant(i, ConsentMethod::Dtmf, t),
            Decision::Declined => self.decline(i, t),
        }
        self.update_gates(t);
        true
    }

    fn signal_received(
        &mut self,
        i: usize,
        decision: Decision,
        method: ConsentMethod,
        t: u64,
        evidence: SignalEvidence,
    ) {
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::SignalReceived {
                t: secs(t.max(self.now)),
                participant: self.participants[i].id.clone(),
                decision,
                method,
                method_given: evidence.method_given,
                phrase: evidence.phrase,
                confidence: evidence.confidence,
            }));
    }

    fn ignore(&mut self, i: usize, signal: String, reason: &str, t: u64) {
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::SignalIgnored {
                t: secs(t.max(self.now)),
                participant: self.participants[i].id.clone(),
                signal,
                reason: reason.to_owned(),
            }));
    }

    fn grant(&mut self, i: usize, method: ConsentMethod, t: u64) {
        let p = &self.participants[i];
        if p.refused() {
            let signal = format!("{} granted", method.as_str());
            self.ignore(i, signal, "a decline stands for the rest of the call", t);
            return;
        }
        if p.consented() && !matches!(p.state, ConsentState::Consented(m) if !m.is_explicit()) {
            return;
        }
        let now = self.now;
        let p = &mut self.participants[i];
        if let Some(user) = &p.details.user_id {
            self.consented_users.insert(user.clone(), method);
        }
        if p.present() {
            Self::set_state(
                &mut self.outputs,
                now,
                p,
                ConsentState::Consented(method),
                t,
            );
        } else {
            // Given before they came (or while away): it holds when they
            // come back.
            p.held_consent = Some(method);
            if p.state == ConsentState::Joined {
                Self::set_state(
                    &mut self.outputs,
                    now,
                    p,
                    ConsentState::Consented(method),
                    t,
                );
            }
        }
        if matches!(method, ConsentMethod::Dtmf | ConsentMethod::Verbal) && p.present() {
            let id = p.id.clone();
            self.schedule_prompt(PromptKind::Thanks, vec![id], t.max(now));
        }
    }

    fn decline(&mut self, i: usize, t: u64) {
        if self.participants[i].state == ConsentState::Declined {
            self.ignore(i, "declined".to_owned(), "already declined", t);
            return;
        }
        let now = self.now;
        let p = &mut self.participants[i];
        Self::set_state(&mut self.outputs, now, p, ConsentState::Declined, t);
        p.held_consent = None;
        if let Some(user) = &p.details.user_id {
            self.declined_users.insert(user.clone());
            self.consented_users.remove(user);
        }
        let id = p.id.clone();
        self.outputs
            .push_back(ConsentOutput::Withdrawn { participant: id });
        if self.participants[i].present() {
            self.apply_decline_policy(i, t);
        } else {
            // Declined before coming (or while away): what the decline does
            // to the call happens when they are on it.
            self.participants[i].decline_deferred = true;
        }
    }

    /// What a decline does to the call: exclude the decliner, or stop (and
    /// discard) capture of the call.
    fn apply_decline_policy(&mut self, i: usize, t: u64) {
        let now = self.now;
        self.participants[i].decline_deferred = false;
        let id = self.participants[i].id.clone();
        let call_wide = self
            .decision
            .as_ref()
            .is_some_and(|d| d.scope == GateScope::CallWide);
        let configured = self.config.decline_policy;
        let (policy, note) = if configured == DeclinePolicy::ExcludeParticipant
            && call_wide
            && !self.config.allow_exclude_under_all_party
        {
            (
                DeclinePolicy::Stop,
                Some(
                    "all-party call: what the others say to the decliner is the decliner's conversation too, so the call stops (consent.allow_exclude_under_all_party is off)"
                        .to_owned(),
                ),
            )
        } else {
            (configured, None)
        };
        self.outputs
            .push_back(ConsentOutput::Audit(AuditEvent::DeclineApplied {
                t: secs(t.max(now)),
                participant: id,
                policy,
                note,
            }));
        let was_stopped = self.stopped.is_some();
        match policy {
            DeclinePolicy::ExcludeParticipant => self.participants[i].excluded = true,
            DeclinePolicy::Stop | DeclinePolicy::StopAndDiscard => {
                self.stopped.get_or_insert(t.max(now));
            }
        }
        if policy == DeclinePolicy::StopAndDiscard && !self.discarded {
            // Close every gate (and write that down) before the discard, so
            // nothing new is captured after it.
            self.update_gates(t);
            self.outputs
                .push_back(ConsentOutput::Audit(AuditEvent::Discarded {
                    t: secs(t.max(self.now)),
                    what: "all captured audio of the call".to_owned(),
                    participant: None,
                }));
            self.outputs.push_back(ConsentOutput::DiscardAll);
            self.discarded = true;
            self.gate_epoch += 1;
        }
        if self.stopped.is_some() && !was_stopped {
            let to = self.listening_ids();
            self.schedule_prompt(PromptKind::Stopped, to, t.max(now));
        }
    }

    /// Time passed: details waits run out, implicit consent after the grace
    /// period.
    pub fn handle_timeout(&mut self, t: u64) {
        self.advance(t);
        let expired: Vec<usize> = self
            .participants
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.details_known && p.details_deadline.is_some_and(|d| d <= t))
            .map(|(i, _)| i)
            .collect();
        for &i in &expired {
            let now = self.now;
            let p = &mut self.participants[i];
            let at = p.details_deadline.take().unwrap_or(t);
            p.details_waited = true;
            p.details_settling = true;
            self.outputs
                .push_back(ConsentOutput::Audit(AuditEvent::DetailsWaitEnded {
                    t: secs(at.max(now)),
                    participant: p.id.clone(),
                }));
        }
        if !expired.is_empty() {
            self.evaluate(t);
        }
        let implicit = matches!(
            self.mode(),
            Some(ConsentMode::Notify | ConsentMode::NotifyAndAllowOptOut)
        );
        if implicit {
            let grace = self.config.grace;
            for i in 0..self.participants.len() {
                let now = self.now;
                let p = &mut self.participants[i];
                if !(p.present() && p.state == ConsentState::Notified && p.resolved_input()) {
                    continue;
                }
                let Some(at) = p.informed_at().map(|n| n.saturating_add(grace)) else {
                    continue;
                };
                if t >= at {
                    Self::set_state(
                        &mut self.outputs,
                        now,
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
        let details = self
            .participants
            .iter()
            .filter(|p| !p.details_known)
            .filter_map(|p| p.details_deadline);
        let implicit = matches!(
            self.mode(),
            Some(ConsentMode::Notify | ConsentMode::NotifyAndAllowOptOut)
        )
        .then(|| {
            self.participants
                .iter()
                .filter(|p| p.present() && p.state == ConsentState::Notified && p.resolved_input())
                .filter_map(|p| p.informed_at().map(|n| n.saturating_add(self.config.grace)))
        })
        .into_iter()
        .flatten();
        details
            .chain(implicit)
            .min()
            // A deadline already passed is due now, not in the past.
            .map(|d| d.max(self.now))
    }

    /// The call ended at `t`: every wait still open is over; audio held for
    /// it is discarded.
    pub fn handle_end(&mut self, t: u64) {
        // No details can come now: every details wait ends here, and what
        // was held during it is judged under the unknown-location mode
        // (a short call of people whose location nobody gave loses nothing
        // that mode allows).
        let mut waiting = false;
        for p in &mut self.participants {
            if let Some(d) = p.details_deadline.as_mut() {
                *d = (*d).min(t);
                waiting = true;
            }
        }
        if waiting {
            self.handle_timeout(t);
        }
        self.advance(t);
        self.ended = true;
        for p in &mut self.participants {
            for waits in [&mut p.consent_waits, &mut p.details_waits] {
                if Participant::close_wait(waits, Outcome::Discarded(HoldDiscard::CallEnded)) {
                    self.resolutions += 1;
                }
            }
        }
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<ConsentOutput> {
        self.outputs.pop_front()
    }

    /// How the gate treats a frame of `id` spoken at call time `t`.
    pub fn judge_at(&self, id: &str, t: u64) -> Judgement {
        let mut cache = GateCache::default();
        self.judge(id, t, &mut cache)
    }

    /// Exactly [`Self::judge_at`], answered from `cache` when it still
    /// holds.
    pub fn judge(&self, id: &str, t: u64, cache: &mut GateCache) -> Judgement {
        if let Some(state) = &cache.state
            && cache.epoch == self.gate_epoch
            && t >= cache.from
        {
            return Self::judgement(state);
        }
        if self.discarded {
            // A frame from before the decline that arrives late would
            // otherwise land in a file created after the discard.
            *cache = GateCache::default();
            return Judgement::Withhold(GateReason::CallStopped);
        }
        let Some(p) = self.get(id) else {
            *cache = GateCache::default();
            return Judgement::Withhold(GateReason::AwaitingOwnConsent);
        };
        if t < p.discarded_before {
            *cache = GateCache::default();
            return Judgement::Withhold(GateReason::CaptureDiscarded);
        }
        // The last change at or before t decides.
        let idx = p.gate.partition_point(|(at, _)| *at <= t);
        match idx.checked_sub(1).and_then(|i| p.gate.get(i)) {
            Some((at, state)) => {
                *cache = if idx == p.gate.len() {
                    GateCache {
                        epoch: self.gate_epoch,
                        from: *at,
                        state: Some(state.clone()),
                    }
                } else {
                    GateCache::default()
                };
                Self::judgement(state)
            }
            None => {
                *cache = GateCache::default();
                Judgement::Withhold(GateReason::AwaitingOwnConsent)
            }
        }
    }

    fn judgement(state: &GateState) -> Judgement {
        match state {
            GateState::Open => Judgement::Allow,
            GateState::Held { awaits, .. } => Judgement::Hold(HoldTicket(awaits.clone())),
            GateState::Closed(reason) => Judgement::Withhold(*reason),
        }
    }

    /// What becomes of a frame spoken at `t` and held with `ticket`.
    pub fn fate(&self, t: u64, ticket: &HoldTicket) -> Fate {
        if self.discarded || self.stopped.is_some() {
            return Fate::Discard(HoldDiscard::CallStopped);
        }
        self.fate_of(t, &ticket.0, 0)
    }

    fn fate_of(&self, t: u64, awaits: &[AwaitRef], depth: u8) -> Fate {
        let mut waiting = false;
        for a in awaits {
            let Some(p) = self.participants.get(a.who as usize) else {
                return Fate::Discard(HoldDiscard::CallEnded);
            };
            let waits = match a.kind {
                WaitKind::Consent => &p.consent_waits,
                WaitKind::Details => &p.details_waits,
            };
            match waits.get(a.episode as usize) {
                Some(Outcome::Committed) => {}
                Some(Outcome::CommittedFrom(from)) => {
                    if t < *from {
                        return Fate::Discard(HoldDiscard::ExplicitRequired);
                    }
                }
                Some(Outcome::Discarded(reason)) => return Fate::Discard(*reason),
                Some(Outcome::Open) | None => waiting = true,
                // Only details waits chain, and only to consent waits.
                Some(Outcome::Then(next)) if depth == 0 => match self.fate_of(t, next, 1) {
                    Fate::Discard(reason) => return Fate::Discard(reason),
                    Fate::Wait => waiting = true,
                    Fate::Commit => {}
                },
                Some(Outcome::Then(_)) => waiting = true,
            }
        }
        if waiting { Fate::Wait } else { Fate::Commit }
    }

    /// Notes the latest time handed in.
    fn advance(&mut self, t: u64) {
        self.now = self.now.max(t);
    }

    /// Everyone on the call who may be told something (not a decliner who
    /// was excluded: they are not being recorded, and a notice would tell
    /// them otherwise).
    fn listening_ids(&self) -> Vec<String> {
        self.participants
            .iter()
            .filter(|p| p.present() && !p.refused())
            .map(|p| p.id.clone())
            .collect()
    }

    fn set_state(
        outputs: &mut VecDeque<ConsentOutput>,
        now: u64,
        p: &mut Participant,
        to: ConsentState,
        t: u64,
    ) {
        if p.state == to {
            return;
        }
        // Never stamp a change before the latest time already handled: a
        // late report (a prompt's end) or a deadline that passed would
        // otherwise back-date it before changes already written.
        let t = t.max(now);
        outputs.push_back(ConsentOutput::Audit(AuditEvent::StateChanged {
            t: secs(t),
            participant: p.id.clone(),
            from: p.state,
            to,
        }));
        if matches!(to, ConsentState::Consented(_)) {
            p.consented_at = Some(t);
        }
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

    /// Re-evaluates the call's mode from everyone on the call whose details
    /// are settled, and asks for the prompts that follow.
    fn evaluate(&mut self, t: u64) {
        let t = t.max(self.now);
        let counted: Vec<usize> = (0..self.participants.len())
            .filter(|&i| {
                let p = &self.participants[i];
                p.present() && p.resolved_input()
            })
            .collect();
        let inputs: Vec<ParticipantInput> = counted
            .iter()
            .map(|&i| self.participants[i].input())
            .collect();
        let decision = decide(
            &self.rules,
            &self.config.policy,
            self.config.recorder_location.as_ref(),
            &inputs,
        );
        for (id, resolution) in &decision.per_participant {
            let Some(&i) = self.index.get(id) else {
                continue;
            };
            let p = &mut self.participants[i as usize];
            let now = (resolution.matched.clone(), resolution.mode);
            if p.resolved.as_ref() != Some(&now) {
                self.outputs
                    .push_back(ConsentOutput::Audit(AuditEvent::ParticipantResolved {
                        t: secs(t),
                        participant: id.clone(),
                        jurisdiction: resolution.matched.clone(),
                        mode: resolution.mode,
                        legal_floor: resolution.legal_floor,
                        all_party: resolution.all_party,
                        location: p.details.location.clone(),
                        why: resolution.why.clone(),
                    }));
                p.resolved = Some(now);
            }
        }
        let previous = self.decision.as_ref().map(|d| d.mode);
        if decision.scope == GateScope::CallWide
            && self.decision.as_ref().map(|d| d.scope) != Some(GateScope::CallWide)
        {
            self.widenings += 1;
        }
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
        let now = self.now;

        if mode == ConsentMode::None {
            for &i in &counted {
                let p = &mut self.participants[i];
                if matches!(p.state, ConsentState::Joined | ConsentState::Notified) {
                    Self::set_state(
                        &mut self.outputs,
                        now,
                        p,
                        ConsentState::Consented(ConsentMethod::NotRequired),
                        t,
                    );
                }
            }
            return;
        }
        let rose_to_explicit =
            mode == ConsentMode::Explicit && previous.is_some_and(|p| p < ConsentMode::Explicit);
        let rose_from_none = previous == Some(ConsentMode::None);
        let fell_from_explicit =
            mode < ConsentMode::Explicit && previous == Some(ConsentMode::Explicit);
        for &i in &counted {
            let p = &mut self.participants[i];
            let insufficient = match p.state {
                ConsentState::Consented(ConsentMethod::Implicit) => rose_to_explicit,
                ConsentState::Consented(ConsentMethod::NotRequired) => {
                    rose_to_explicit || rose_from_none
                }
                _ => false,
            };
            if insufficient {
                p.heard_notice = None;
                p.heard_request = None;
                p.prompted = None;
                Self::set_state(&mut self.outputs, now, p, ConsentState::Joined, t);
            }
            if fell_from_explicit && !p.consented() && !p.refused() {
                // Someone who was only asked to press 1 was told recording
                // needs their yes: staying is no answer. They go back to
                // joined and hear the notice of the lower mode.
                p.heard_notice = None;
                p.heard_request = None;
                p.prompted = None;
                Self::set_state(&mut self.outputs, now, p, ConsentState::Joined, t);
                if let Some(at) = p.informed_at() {
                    Self::set_state(&mut self.outputs, now, p, ConsentState::Notified, at);
                }
            }
        }
        let prompt = if mode == ConsentMode::Explicit {
            PromptKind::ConsentRequest
        } else {
            PromptKind::Notice
        };
        let mut to = Vec::new();
        for &i in &counted {
            let p = &mut self.participants[i];
            let satisfied = match p.state {
                ConsentState::Consented(m) => mode != ConsentMode::Explicit || m.is_explicit(),
                _ => false,
            };
            // One notice per stay: a details update never repeats a notice
            // that is playing or done.
            if satisfied || p.refused() || p.prompted == Some(prompt) {
                continue;
            }
            p.prompted = Some(prompt);
            to.push(p.id.clone());
        }
        self.schedule_prompt(prompt, to, t);
    }

    /// Where participant `i`'s own consent stands under `mode`.
    fn clearance(&self, p: &Participant, mode: Option<ConsentMode>) -> Clearance {
        if !p.present() {
            return Clearance::Absent;
        }
        if p.refused() {
            return Clearance::Refused(GateReason::Declined);
        }
        if p.details_known && p.details.capture == CaptureSetting::Never {
            return Clearance::Refused(GateReason::CaptureNever);
        }
        if self.stopped.is_some() || self.ended {
            return Clearance::Refused(GateReason::CallStopped);
        }
        if p.details_pending() {
            return Clearance::Pending;
        }
        match mode {
            None => Clearance::Pending,
            Some(ConsentMode::None | ConsentMode::Notify) => Clearance::Clear,
            Some(ConsentMode::NotifyAndAllowOptOut) => {
                if p.consented() {
                    Clearance::Clear
                } else {
                    Clearance::Pending
                }
            }
            Some(ConsentMode::Explicit) => {
                if p.consented_explicitly() {
                    Clearance::Clear
                } else if self.config.hold.under_explicit {
                    Clearance::Pending
                } else {
                    Clearance::Blocked
                }
            }
        }
    }

    /// Recomputes every participant's clearance and gate at `t`, ends the
    /// waits that were decided, and records what changed.
    fn update_gates(&mut self, t: u64) {
        // Keep the gate history in time order.
        let t = t.max(self.now);
        let mode = self.mode();
        let scope = self
            .decision
            .as_ref()
            .map_or(GateScope::PerParticipant, |d| d.scope);

        // 1. Clearances, and the waits they open or end.
        for i in 0..self.participants.len() {
            let new = self.clearance(&self.participants[i], mode);
            let p = &mut self.participants[i];
            let old = p.clearance;
            if old == new {
                continue;
            }
            if old == Clearance::Pending && new == Clearance::Clear {
                // What was held is committed under the call's mode, not the
                // consent that just came: it was spoken before that consent.
                let level = mode.unwrap_or(ConsentMode::None);
                p.captured_under = Some(p.captured_under.map_or(level, |c| c.min(level)));
            }
            if old == Clearance::Pending {
                let outcome = match new {
                    Clearance::Clear
                        if mode == Some(ConsentMode::Explicit)
                            && !self.config.hold.under_explicit =>
                    {
                        Outcome::CommittedFrom(p.consented_at.unwrap_or(t))
                    }
                    Clearance::Clear => Outcome::Committed,
                    Clearance::Blocked => Outcome::Discarded(HoldDiscard::ExplicitRequired),
                    Clearance::Absent => Outcome::Discarded(HoldDiscard::Left),
                    Clearance::Refused(GateReason::CaptureNever) => {
                        Outcome::Discarded(HoldDiscard::CaptureNever)
                    }
                    Clearance::Refused(GateReason::Declined) => {
                        Outcome::Discarded(HoldDiscard::Declined)
                    }
                    Clearance::Refused(_) => Outcome::Discarded(HoldDiscard::CallStopped),
                    Clearance::Pending => Outcome::Open,
                };
                if Participant::close_wait(&mut p.consent_waits, outcome) {
                    self.resolutions += 1;
                }
            }
            if new == Clearance::Pending {
                Participant::open_wait(&mut p.consent_waits);
            }
            p.clearance = new;
        }

        // 2. Details waits that ended: what was held during them is now
        //    judged with the details known.
        for i in 0..self.participants.len() {
            if !std::mem::take(&mut self.participants[i].details_settling) {
                continue;
            }
            let outcome = self.details_outcome(i, scope);
            if Participant::close_wait(&mut self.participants[i].details_waits, outcome) {
                self.resolutions += 1;
            }
        }

        // 3. Gates.
        let never_present: Vec<usize> = (0..self.participants.len())
            .filter(|&i| {
                let p = &self.participants[i];
                p.present() && p.details_known && p.details.capture == CaptureSetting::Never
            })
            .collect();
        let allow_exclude = self.config.allow_exclude_under_all_party;
        let mut changes = Vec::new();
        for i in 0..self.participants.len() {
            let state = self.gate_of(i, scope, &never_present, allow_exclude);
            let p = &self.participants[i];
            if p.gate.last().map(|(_, s)| s) != Some(&state) {
                changes.push((i, state));
            }
        }
        // Held audio is not a pause: it is committed without a gap.
        let capturing = |ps: &[Participant]| {
            ps.iter().any(|p| {
                p.gate
                    .last()
                    .is_some_and(|(_, s)| !matches!(s, GateState::Closed(_)))
            })
        };
        let any_open = |ps: &[Participant]| {
            ps.iter()
                .any(|p| p.gate.last().is_some_and(|(_, s)| s.open()))
        };
        let capturing_before = capturing(&self.participants);
        let any_open_before = any_open(&self.participants);
        let level = mode.unwrap_or(ConsentMode::None);
        for (i, state) in changes {
            let p = &mut self.participants[i];
            let previous = p.gate.last().map(|(_, s)| (s.open(), s.held(), s.reason()));
            let now = (state.open(), state.held(), state.reason());
            if previous != Some(now) {
                // Audit first: the shell persists it before any frame this
                // change lets through.
                self.outputs
                    .push_back(ConsentOutput::Audit(AuditEvent::GateChanged {
                        t: secs(t),
                        participant: p.id.clone(),
                        open: now.0,
                        held: now.1,
                        reason: now.2,
                    }));
            }
            if state.open() {
                let under = if p.consented_explicitly() {
                    ConsentMode::Explicit
                } else {
                    level
                };
                p.captured_under = Some(p.captured_under.map_or(under, |c| c.min(under)));
            }
            p.gate.push((t, state));
            self.gate_epoch += 1;
        }
        let any_open_now = any_open(&self.participants);
        let anyone_here = self.participants.iter().any(Participant::present);
        if capturing_before && !capturing(&self.participants) && anyone_here {
            self.paused = self.ever_open;
        }
        if any_open_now && !any_open_before {
            if self.paused && self.stopped.is_none() {
                // Capture resumes after a pause: announce it again.
                let to = self.listening_ids();
                self.schedule_prompt(PromptKind::Notice, to, t);
            }
            self.paused = false;
            self.ever_open = true;
        }
    }

    /// How participant `i`'s details wait ends, with their details (or
    /// their absence) now known: `never` discards what was held during it;
    /// on an all-party call, what was held now needs the consent of
    /// everyone on the call (and theirs, if they left during the wait);
    /// else it is committed.
    fn details_outcome(&self, i: usize, scope: GateScope) -> Outcome {
        let p = &self.participants[i];
        if p.details_known && p.details.capture == CaptureSetting::Never {
            return Outcome::Discarded(HoldDiscard::CaptureNever);
        }
        let mut scope = scope;
        if !p.present() {
            // They left during the wait, so the call's decision no longer
            // counts them; what was held while they were there still needs
            // their consent if their details made that talk all-party.
            let alone = decide(
                &self.rules,
                &self.config.policy,
                self.config.recorder_location.as_ref(),
                &[p.input()],
            );
            if alone.scope == GateScope::CallWide || scope == GateScope::CallWide {
                scope = GateScope::CallWide;
                let mode = alone.mode.max(self.mode().unwrap_or(ConsentMode::None));
                if p.refused() {
                    return Outcome::Discarded(HoldDiscard::Declined);
                }
                let enough = match mode {
                    ConsentMode::None | ConsentMode::Notify => true,
                    ConsentMode::NotifyAndAllowOptOut => p.held_consent.is_some(),
                    ConsentMode::Explicit => p.held_consent.is_some_and(|m| m.is_explicit()),
                };
                if !enough {
                    return Outcome::Discarded(if mode == ConsentMode::Explicit {
                        HoldDiscard::ExplicitRequired
                    } else {
                        HoldDiscard::Left
                    });
                }
            }
        }
        if scope != GateScope::CallWide {
            return Outcome::Committed;
        }
        let allow_exclude = self.config.allow_exclude_under_all_party;
        let mut awaits = Vec::new();
        for (j, q) in self.participants.iter().enumerate() {
            if !q.present() || (q.excluded && allow_exclude) {
                continue;
            }
            match q.clearance {
                Clearance::Clear | Clearance::Absent => {}
                Clearance::Pending => {
                    if let Some(e) = q.current_wait(WaitKind::Consent) {
                        awaits.push(AwaitRef {
                            who: j as u32,
                            kind: WaitKind::Consent,
                            episode: e,
                        });
                    }
                }
                Clearance::Blocked => {
                    return Outcome::Discarded(HoldDiscard::ExplicitRequired);
                }
                Clearance::Refused(GateReason::CaptureNever) => {
                    return Outcome::Discarded(HoldDiscard::CaptureNever);
                }
                Clearance::Refused(GateReason::Declined) => {
                    return Outcome::Discarded(HoldDiscard::Declined);
                }
                Clearance::Refused(_) => return Outcome::Discarded(HoldDiscard::CallStopped),
            }
        }
        if awaits.is_empty() {
            Outcome::Committed
        } else {
            Outcome::Then(awaits.into())
        }
    }

    /// The gate of participant `i` now.
    fn gate_of(
        &self,
        i: usize,
        scope: GateScope,
        never_present: &[usize],
        allow_exclude: bool,
    ) -> GateState {
        if self.discarded || self.stopped.is_some() || self.ended {
            return GateState::Closed(GateReason::CallStopped);
        }
        let p = &self.participants[i];
        let mut awaits = Vec::new();
        let mut own_pending = false;
        match p.clearance {
            Clearance::Refused(reason) => return GateState::Closed(reason),
            Clearance::Blocked | Clearance::Absent => {
                return GateState::Closed(GateReason::AwaitingOwnConsent);
            }
            Clearance::Pending => {
                own_pending = true;
                if let Some(e) = p.current_wait(WaitKind::Consent) {
                    awaits.push(AwaitRef {
                        who: i as u32,
                        kind: WaitKind::Consent,
                        episode: e,
                    });
                }
                if let Some(e) = p.current_wait(WaitKind::Details) {
                    awaits.push(AwaitRef {
                        who: i as u32,
                        kind: WaitKind::Details,
                        episode: e,
                    });
                }
            }
            Clearance::Clear => {}
        }
        if never_present.iter().any(|&n| n != i) {
            return GateState::Closed(GateReason::NeverCaptureParticipantPresent);
        }
        let mut others_consent = false;
        for (j, q) in self.participants.iter().enumerate() {
            if j == i || !q.present() {
                continue;
            }
            if let Some(e) = q.current_wait(WaitKind::Details) {
                awaits.push(AwaitRef {
                    who: j as u32,
                    kind: WaitKind::Details,
                    episode: e,
                });
            }
            if scope != GateScope::CallWide || (q.excluded && allow_exclude) {
                continue;
            }
            match q.clearance {
                Clearance::Clear | Clearance::Absent => {}
                Clearance::Pending => {
                    if let Some(e) = q.current_wait(WaitKind::Consent) {
                        others_consent = true;
                        awaits.push(AwaitRef {
                            who: j as u32,
                            kind: WaitKind::Consent,
                            episode: e,
                        });
                    }
                }
                Clearance::Blocked | Clearance::Refused(_) => {
                    return GateState::Closed(GateReason::AwaitingOthers);
                }
            }
        }
        if awaits.is_empty() {
            return if own_pending {
                // Pending without a wait to hang on cannot happen (every
                // pending clearance opens one); stay shut rather than open.
                GateState::Closed(GateReason::AwaitingOwnConsent)
            } else {
                GateState::Open
            };
        }
        awaits.sort_unstable();
        awaits.dedup();
        let reason = if own_pending {
            if p.details_pending() {
                GateReason::AwaitingDetails
            } else {
                GateReason::AwaitingOwnConsent
            }
        } else if others_consent {
            GateReason::AwaitingOthers
        } else {
            GateReason::AwaitingDetails
        };
        GateState::Held {
            awaits: awaits.into(),
            reason,
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

// Kept apart from `engine_tests.rs` (emptied in the WIP pass, to be restored)
// so the two do not collide.
#[cfg(test)]
#[path = "engine_rules_tests.rs"]
mod rules_tests;
