//! What the consent engine writes down: the events of a call's audit log,
//! and the reasons a gate is shut or a hold is let go.
//!
//! The shell adds what the pure core cannot know (the call id, the wall
//! clock, the sequence number and the hash chain) when it writes a line.

use serde::{Deserialize, Serialize};

use super::engine::{CaptureSetting, ConsentMethod, ConsentState, Decision, DeclinePolicy};
use super::rules::{ConsentMode, GateScope, Location};

/// One line of the audit log, without the call id and wall clock (the shell
/// adds those).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// The settings this call's consent runs under (the first line).
    CallPolicy {
        /// Call time (s).
        t: f64,
        /// Rules version.
        rules_version: String,
        /// What a decline does.
        decline_policy: DeclinePolicy,
        /// The mode for an unknown location: the company's policy
        /// (`Policy::unknown_location_mode`), or else the rules' default.
        unknown_location_mode: ConsentMode,
        /// Where `unknown_location_mode` came from: `rules` or `policy`.
        unknown_location_mode_from: &'static str,
        /// How long a participant's audio may be held awaiting consent (s).
        hold_seconds: f64,
        /// Whether audio is held where explicit prior consent is required.
        hold_under_explicit: bool,
        /// How long a participant without details holds capture (s).
        details_wait_seconds: f64,
        /// Staying this long after the notice is implicit consent (s).
        grace_seconds: f64,
        /// Whether the provider shows its own notice to every participant.
        provider_notifies: bool,
    },
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
    /// Where a participant's consent law comes from, and what it requires.
    ParticipantResolved {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// The rules entry that applies (`US-CA`, `DE`, `default_unknown`).
        jurisdiction: String,
        /// Their mode (company policy applied).
        mode: ConsentMode,
        /// The least the law requires.
        legal_floor: ConsentMode,
        /// Whether every party must consent.
        all_party: bool,
        /// The location given, if any.
        location: Option<Location>,
        /// Plain words.
        why: String,
    },
    /// The provider's details for a participant changed.
    DetailsChanged {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// Where they are.
        location: Option<Location>,
        /// Employee of the recording company.
        internal: bool,
        /// Whether they may be captured.
        capture: CaptureSetting,
        /// The provider's stable id of the person.
        user_id: Option<String>,
        /// One m-line carrying several people (a room, a phone bridge).
        mixed: bool,
    },
    /// Nothing was known of a participant when the details wait ended; the
    /// unknown-location mode applies to them.
    DetailsWaitEnded {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
    },
    /// A participant came or went (their audio, or the provider's roster).
    PresenceChanged {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// On the call after the change.
        present: bool,
        /// `media` (their audio m-line) or `roster` (the provider says so).
        via: &'static str,
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
        /// (false when a session does not receive audio from the bot).
        audible: bool,
        /// Whether it played to its end (not cut short).
        complete: bool,
        /// Start (call time, s).
        start: f64,
        /// End (call time, s).
        end: f64,
        /// Which prompt.
        prompt: PromptKind,
        /// To whom.
        to: Vec<String>,
    },
    /// A notice or request reached someone who cannot hear the bot, and
    /// nothing says the provider showed its own: it does not count.
    NoticeNotHeard {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// Which prompt.
        prompt: PromptKind,
    },
    /// The provider says it showed its own notice to a participant.
    NoticeShown {
        /// Call time (s) of the report.
        t: f64,
        /// Who.
        participant: String,
        /// When it was shown (call time, s; 0 for before the call).
        shown: f64,
        /// How, in the provider's words (`provider_ui`, `banner`, …).
        how: String,
    },
    /// A consent signal arrived and was taken into account.
    SignalReceived {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// Granted or declined.
        decision: Decision,
        /// How.
        method: ConsentMethod,
        /// The provider's method string exactly as given (API signals).
        #[serde(skip_serializing_if = "Option::is_none")]
        method_given: Option<String>,
        /// What was heard (verbal consent).
        #[serde(skip_serializing_if = "Option::is_none")]
        phrase: Option<String>,
        /// How sure the recogniser was (verbal consent): how much better
        /// the phrase explains the audio than free speech does, in nats per
        /// 10 ms frame (0 = as well as any phone sequence; accepted from
        /// -0.45 up; see the `hearken-verbal` crate).
        #[serde(skip_serializing_if = "Option::is_none")]
        confidence: Option<f32>,
    },
    /// A signal that was not taken into account, and why.
    SignalIgnored {
        /// Call time (s).
        t: f64,
        /// Who.
        participant: String,
        /// What it was (`dtmf 1`, `api granted`).
        signal: String,
        /// Why it was ignored.
        reason: String,
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
    /// What a decline did.
    DeclineApplied {
        /// Call time (s).
        t: f64,
        /// Who declined.
        participant: String,
        /// The policy that was applied.
        policy: DeclinePolicy,
        /// Why it differs from the configured policy, if it does.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A participant's gate opened, closed, or started holding.
    GateChanged {
        /// Call time (s).
        t: f64,
        /// Whose gate.
        participant: String,
        /// Open after the change.
        open: bool,
        /// Closed, but their audio is held in memory until consent decides.
        held: bool,
        /// Why.
        reason: GateReason,
    },
    /// Held audio was released to the recording (consent covers it).
    HoldCommitted {
        /// Call time (s).
        t: f64,
        /// Whose audio.
        participant: String,
        /// Seconds of audio.
        seconds: f64,
        /// Call time of the first held frame (s).
        from: f64,
        /// Call time of the end of the last held frame (s).
        to: f64,
    },
    /// Held audio was thrown away unheard.
    HoldDiscarded {
        /// Call time (s).
        t: f64,
        /// Whose audio.
        participant: String,
        /// Seconds of audio.
        seconds: f64,
        /// Why.
        reason: HoldDiscard,
    },
    /// Captured audio is to be deleted.
    Discarded {
        /// Call time (s).
        t: f64,
        /// What.
        what: String,
        /// Whose audio, when it is one participant's.
        #[serde(skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },
}

/// The kind of an [`AuditEvent`] (its `event` field), for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// [`AuditEvent::CallPolicy`].
    CallPolicy,
    /// [`AuditEvent::ModeEvaluated`].
    ModeEvaluated,
    /// [`AuditEvent::ParticipantResolved`].
    ParticipantResolved,
    /// [`AuditEvent::DetailsChanged`].
    DetailsChanged,
    /// [`AuditEvent::DetailsWaitEnded`].
    DetailsWaitEnded,
    /// [`AuditEvent::PresenceChanged`].
    PresenceChanged,
    /// [`AuditEvent::PromptScheduled`].
    PromptScheduled,
    /// [`AuditEvent::PromptPlayed`].
    PromptPlayed,
    /// [`AuditEvent::NoticeNotHeard`].
    NoticeNotHeard,
    /// [`AuditEvent::NoticeShown`].
    NoticeShown,
    /// [`AuditEvent::SignalReceived`].
    SignalReceived,
    /// [`AuditEvent::SignalIgnored`].
    SignalIgnored,
    /// [`AuditEvent::StateChanged`].
    StateChanged,
    /// [`AuditEvent::DeclineApplied`].
    DeclineApplied,
    /// [`AuditEvent::GateChanged`].
    GateChanged,
    /// [`AuditEvent::HoldCommitted`].
    HoldCommitted,
    /// [`AuditEvent::HoldDiscarded`].
    HoldDiscarded,
    /// [`AuditEvent::Discarded`].
    Discarded,
}

impl AuditKind {
    /// Every kind, for metrics that resolve their labels up front.
    pub const ALL: [AuditKind; 18] = [
        Self::CallPolicy,
        Self::ModeEvaluated,
        Self::ParticipantResolved,
        Self::DetailsChanged,
        Self::DetailsWaitEnded,
        Self::PresenceChanged,
        Self::PromptScheduled,
        Self::PromptPlayed,
        Self::NoticeNotHeard,
        Self::NoticeShown,
        Self::SignalReceived,
        Self::SignalIgnored,
        Self::StateChanged,
        Self::DeclineApplied,
        Self::GateChanged,
        Self::HoldCommitted,
        Self::HoldDiscarded,
        Self::Discarded,
    ];

    /// The `event` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallPolicy => "call_policy",
            Self::ModeEvaluated => "mode_evaluated",
            Self::ParticipantResolved => "participant_resolved",
            Self::DetailsChanged => "details_changed",
            Self::DetailsWaitEnded => "details_wait_ended",
            Self::PresenceChanged => "presence_changed",
            Self::PromptScheduled => "prompt_scheduled",
            Self::PromptPlayed => "prompt_played",
            Self::NoticeNotHeard => "notice_not_heard",
            Self::NoticeShown => "notice_shown",
            Self::SignalReceived => "signal_received",
            Self::SignalIgnored => "signal_ignored",
            Self::StateChanged => "state_changed",
            Self::DeclineApplied => "decline_applied",
            Self::GateChanged => "gate_changed",
            Self::HoldCommitted => "hold_committed",
            Self::HoldDiscarded => "hold_discarded",
            Self::Discarded => "discarded",
        }
    }
}

impl AuditEvent {
    /// Its kind.
    pub fn kind(&self) -> AuditKind {
        match self {
            Self::CallPolicy { .. } => AuditKind::CallPolicy,
            Self::ModeEvaluated { .. } => AuditKind::ModeEvaluated,
            Self::ParticipantResolved { .. } => AuditKind::ParticipantResolved,
            Self::DetailsChanged { .. } => AuditKind::DetailsChanged,
            Self::DetailsWaitEnded { .. } => AuditKind::DetailsWaitEnded,
            Self::PresenceChanged { .. } => AuditKind::PresenceChanged,
            Self::PromptScheduled { .. } => AuditKind::PromptScheduled,
            Self::PromptPlayed { .. } => AuditKind::PromptPlayed,
            Self::NoticeNotHeard { .. } => AuditKind::NoticeNotHeard,
            Self::NoticeShown { .. } => AuditKind::NoticeShown,
            Self::SignalReceived { .. } => AuditKind::SignalReceived,
            Self::SignalIgnored { .. } => AuditKind::SignalIgnored,
            Self::StateChanged { .. } => AuditKind::StateChanged,
            Self::DeclineApplied { .. } => AuditKind::DeclineApplied,
            Self::GateChanged { .. } => AuditKind::GateChanged,
            Self::HoldCommitted { .. } => AuditKind::HoldCommitted,
            Self::HoldDiscarded { .. } => AuditKind::HoldDiscarded,
            Self::Discarded { .. } => AuditKind::Discarded,
        }
    }

    /// The call time (s) it happened at (a played prompt: its start).
    pub fn time(&self) -> f64 {
        match self {
            Self::CallPolicy { t, .. }
            | Self::ModeEvaluated { t, .. }
            | Self::ParticipantResolved { t, .. }
            | Self::DetailsChanged { t, .. }
            | Self::DetailsWaitEnded { t, .. }
            | Self::PresenceChanged { t, .. }
            | Self::PromptScheduled { t, .. }
            | Self::NoticeNotHeard { t, .. }
            | Self::NoticeShown { t, .. }
            | Self::SignalReceived { t, .. }
            | Self::SignalIgnored { t, .. }
            | Self::StateChanged { t, .. }
            | Self::DeclineApplied { t, .. }
            | Self::GateChanged { t, .. }
            | Self::HoldCommitted { t, .. }
            | Self::HoldDiscarded { t, .. }
            | Self::Discarded { t, .. } => *t,
            Self::PromptPlayed { start, .. } => *start,
        }
    }
}

/// The prompts the bot can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// "This call is being recorded… press 9 or leave to object".
    Notice,
    /// "Press 1 (or say yes) to agree, 9 to decline".
    ConsentRequest,
    /// "Thank you".
    Thanks,
    /// "Recording has stopped".
    Stopped,
}

impl PromptKind {
    /// Every prompt.
    pub const ALL: [PromptKind; 4] = [
        Self::Notice,
        Self::ConsentRequest,
        Self::Thanks,
        Self::Stopped,
    ];

    /// Its name in logs, metrics and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notice => "notice",
            Self::ConsentRequest => "consent_request",
            Self::Thanks => "thanks",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a gate is open, shut or holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GateReason {
    /// Consent allows capture.
    Consented,
    /// This participant has not consented (yet).
    AwaitingOwnConsent,
    /// All-party: someone else present has not consented.
    AwaitingOthers,
    /// Someone on the call has no details yet (their location, and whether
    /// they may be recorded at all, are unknown).
    AwaitingDetails,
    /// A `capture: never` participant is on the call.
    NeverCaptureParticipantPresent,
    /// This participant is never to be captured.
    CaptureNever,
    /// The participant declined.
    Declined,
    /// Capture of the call was stopped by a decline.
    CallStopped,
    /// What was captured of this participant up to a later moment was
    /// deleted (their location raised the mode); audio from before it is
    /// refused.
    CaptureDiscarded,
}

impl GateReason {
    /// Every reason, for metrics that resolve their labels up front.
    pub const ALL: [GateReason; 9] = [
        Self::Consented,
        Self::AwaitingOwnConsent,
        Self::AwaitingOthers,
        Self::AwaitingDetails,
        Self::NeverCaptureParticipantPresent,
        Self::CaptureNever,
        Self::Declined,
        Self::CallStopped,
        Self::CaptureDiscarded,
    ];

    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consented => "consented",
            Self::AwaitingOwnConsent => "awaiting_own_consent",
            Self::AwaitingOthers => "awaiting_others",
            Self::AwaitingDetails => "awaiting_details",
            Self::NeverCaptureParticipantPresent => "never_capture_participant_present",
            Self::CaptureNever => "capture_never",
            Self::Declined => "declined",
            Self::CallStopped => "call_stopped",
            Self::CaptureDiscarded => "capture_discarded",
        }
    }
}

/// Why held audio was thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HoldDiscard {
    /// Someone whose consent it needed declined.
    Declined,
    /// Someone whose consent it needed left before giving it.
    Left,
    /// Someone on the call is never to be captured.
    CaptureNever,
    /// The mode became explicit, where nothing is held before consent.
    ExplicitRequired,
    /// Capture of the call stopped.
    CallStopped,
    /// The call ended before consent was given.
    CallEnded,
    /// The participant's hold was full (`consent.hold_seconds`): the oldest
    /// audio goes first.
    Limit,
    /// The node's hold memory was full.
    NodeLimit,
    /// The participant's location raised the mode above what their
    /// captured audio had.
    ModeRaised,
}

impl HoldDiscard {
    /// Every reason, for metrics that resolve their labels up front.
    pub const ALL: [HoldDiscard; 9] = [
        Self::Declined,
        Self::Left,
        Self::CaptureNever,
        Self::ExplicitRequired,
        Self::CallStopped,
        Self::CallEnded,
        Self::Limit,
        Self::NodeLimit,
        Self::ModeRaised,
    ];

    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Declined => "declined",
            Self::Left => "left",
            Self::CaptureNever => "capture_never",
            Self::ExplicitRequired => "explicit_required",
            Self::CallStopped => "call_stopped",
            Self::CallEnded => "call_ended",
            Self::Limit => "limit",
            Self::NodeLimit => "node_limit",
            Self::ModeRaised => "mode_raised",
        }
    }
}
