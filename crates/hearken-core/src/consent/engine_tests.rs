//! Tests of the consent engine, one per behaviour of issue 11 (items 1-7
//! and 11) and the findings of the consent audit (U1-U10, E3, bugs a-c).
//!
//! The expected values are worked out by hand from the rules file (US-NY is
//! one-party `notify`, GB one-party `notify_and_allow_opt_out`, US-CA
//! all-party `notify_and_allow_opt_out`, DE all-party `explicit`), the
//! engine's configuration and the text, never read back from the
//! engine. Most tests drive the engine directly through a small test shell
//! ([`Call`]) that keeps what a real shell would keep: the held frames'
//! tickets. The last ones run a whole [`Conference`] in simulated time, to
//! count what reaches the sinks and what the hold writes to the audit log.

use super::*;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::conference::{AudioFrame, Conference, ConferenceOutput, ParticipantIdx, SessionKey};
use crate::ids::CallId;
use crate::voice::VoiceHint;

/// One second of call time (48 kHz samples).
const S: u64 = SAMPLES_PER_SECOND;
/// One millisecond of call time.
const MS: u64 = S / 1000;
/// One 20 ms Opus frame.
const FRAME: u64 = 20 * MS;

fn rules() -> Arc<Rules> {
    static RULES: OnceLock<Arc<Rules>> = OnceLock::new();
    RULES.get_or_init(|| Arc::new(Rules::builtin())).clone()
}

/// The shipped rules with `default_unknown` set to `mode`: the tests about
/// unknown locations pin it, so they say what the engine does with the
/// unknown-location mode whatever the shipped file's value is.
fn rules_with_unknown(mode: &str) -> Arc<Rules> {
    let mut replaced = 0;
    let text: Vec<String> = Rules::builtin_text()
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("default_unknown:") {
                replaced += 1;
                format!("  default_unknown: {mode}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "the rules file has one default_unknown line");
    Arc::new(Rules::parse(&text.join("\n")).expect("the pinned rules parse"))
}

fn loc(code: &str) -> Location {
    Location::from_code(code).expect("a valid location code")
}

/// The shipped defaults (5 s grace, `stop`, 3 s details wait, 60 s hold,
/// nothing held under explicit) with the recorder at `recorder`.
fn config(recorder: &str) -> EngineConfig {
    EngineConfig {
        recorder_location: Some(loc(recorder)),
        ..EngineConfig::default()
    }
}

fn at(code: &str) -> ParticipantDetails {
    ParticipantDetails {
        location: Some(loc(code)),
        ..ParticipantDetails::default()
    }
}

fn person(code: &str, user: &str) -> ParticipantDetails {
    ParticipantDetails {
        user_id: Some(user.to_owned()),
        ..at(code)
    }
}

/// A participant in New York who may never be captured (the location is
/// given so that the unknown-location mode, `explicit` as shipped, does not
/// raise the call's mode in tests about `never`).
fn never() -> ParticipantDetails {
    ParticipantDetails {
        capture: CaptureSetting::Never,
        ..at("US-NY")
    }
}

fn names(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn key(c: char) -> DtmfKey {
    DtmfKey::from_char(c).expect("a DTMF key")
}

/// Call time (samples) of an audit event's `t` (seconds).
fn samples(secs: f64) -> u64 {
    (secs * S as f64).round() as u64
}

// ---------------------------------------------------------------------------
// A small test shell: each call drains and returns the engine's outputs, as
// the real shell does after every handle_*.
// ---------------------------------------------------------------------------

struct Call {
    engine: ConsentEngine,
    log: Vec<ConsentOutput>,
}

impl Call {
    fn new(config: EngineConfig) -> Self {
        Self::with_rules(rules(), config)
    }

    fn with_rules(rules: Arc<Rules>, config: EngineConfig) -> Self {
        Self {
            engine: ConsentEngine::new(rules, config),
            log: Vec::new(),
        }
    }

    fn drain(&mut self) -> Vec<ConsentOutput> {
        let out: Vec<ConsentOutput> = std::iter::from_fn(|| self.engine.poll_output()).collect();
        self.log.extend(out.iter().cloned());
        out
    }

    fn details(&mut self, id: &str, details: ParticipantDetails, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_details(id, details, t);
        self.drain()
    }

    /// Details, then the participant's audio, at the same moment.
    fn arrive(&mut self, id: &str, code: &str, t: u64) -> Vec<ConsentOutput> {
        let mut out = self.details(id, at(code), t);
        out.extend(self.join(id, t));
        out
    }

    fn join(&mut self, id: &str, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_join(id, t);
        self.drain()
    }

    fn leave(&mut self, id: &str, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_leave(id, t);
        self.drain()
    }

    fn roster(&mut self, id: &str, present: bool, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_roster(id, present, t);
        self.drain()
    }

    fn played(
        &mut self,
        prompt: PromptKind,
        to: &[&str],
        delivery: Delivery,
        start: u64,
        end: u64,
    ) -> Vec<ConsentOutput> {
        self.engine
            .handle_prompt_played(prompt, &names(to), delivery, start, end);
        self.drain()
    }

    /// A notice or request heard whole from `start` to `end`.
    fn heard(
        &mut self,
        prompt: PromptKind,
        to: &[&str],
        start: u64,
        end: u64,
    ) -> Vec<ConsentOutput> {
        self.played(prompt, to, Delivery::Whole, start, end)
    }

    fn provider_notice(&mut self, id: &str, shown: u64, how: &str, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_notice(id, shown, how, t);
        self.drain()
    }

    /// A key press: whether it was a consent key, and what followed.
    fn press(&mut self, id: &str, c: char, t: u64) -> (bool, Vec<ConsentOutput>) {
        let consent_key = self.engine.handle_key(id, key(c), t);
        (consent_key, self.drain())
    }

    fn signal(
        &mut self,
        id: &str,
        decision: Decision,
        method: ConsentMethod,
        given: &str,
        t: u64,
    ) -> Vec<ConsentOutput> {
        let evidence = SignalEvidence {
            method_given: Some(given.to_owned()),
            ..SignalEvidence::default()
        };
        self.engine.handle_signal(id, decision, method, t, evidence);
        self.drain()
    }

    fn timeout(&mut self, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_timeout(t);
        self.drain()
    }

    fn judge(&self, id: &str, t: u64) -> Judgement {
        self.engine.judge_at(id, t)
    }

    fn allowed(&self, id: &str, t: u64) -> bool {
        self.judge(id, t) == Judgement::Allow
    }

    fn withheld(&self, id: &str, t: u64) -> Option<GateReason> {
        match self.judge(id, t) {
            Judgement::Withhold(reason) => Some(reason),
            _ => None,
        }
    }

    /// The ticket of a frame of `id` spoken at `t`, which must be held (the
    /// shell keeps it to ask the frame's fate later).
    fn held(&self, id: &str, t: u64) -> HoldTicket {
        match self.judge(id, t) {
            Judgement::Hold(ticket) => ticket,
            other => panic!("{id}'s frame at {t} should be held, is {other:?}"),
        }
    }

    fn state(&self, id: &str) -> Option<ConsentState> {
        self.engine.state(id)
    }
}

/// The prompts asked for, in order.
fn prompts(out: &[ConsentOutput]) -> Vec<(PromptKind, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            ConsentOutput::PlayPrompt { prompt, to } => Some((*prompt, to.clone())),
            _ => None,
        })
        .collect()
}

/// Whether any prompt in `out` goes to `id`.
fn prompted(out: &[ConsentOutput], id: &str) -> bool {
    prompts(out)
        .iter()
        .any(|(_, to)| to.iter().any(|t| t == id))
}

fn audits(out: &[ConsentOutput]) -> Vec<AuditEvent> {
    out.iter()
        .filter_map(|o| match o {
            ConsentOutput::Audit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// State changes (participant, to, at), in order.
fn state_changes(out: &[ConsentOutput]) -> Vec<(String, ConsentState, u64)> {
    audits(out)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::StateChanged {
                participant, to, t, ..
            } => Some((participant, to, samples(t))),
            _ => None,
        })
        .collect()
}

fn modes(out: &[ConsentOutput]) -> Vec<(ConsentMode, GateScope)> {
    audits(out)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::ModeEvaluated { mode, scope, .. } => Some((mode, scope)),
            _ => None,
        })
        .collect()
}

/// The ignored signals (participant, signal, reason), in order.
fn ignored(out: &[ConsentOutput]) -> Vec<(String, String, String)> {
    audits(out)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::SignalIgnored {
                participant,
                signal,
                reason,
                ..
            } => Some((participant, signal, reason)),
            _ => None,
        })
        .collect()
}

/// Every 20 ms frame start in `[from, to)`.
fn frames(from: u64, to: u64) -> impl Iterator<Item = u64> {
    (from..to).step_by(FRAME as usize)
}

// ---------------------------------------------------------------------------
// Item 2: modes mean what they say
// ---------------------------------------------------------------------------

/// `notify` (New York is one-party; its mode is notify): the gate is open
/// from the first frame, while the notice is still playing and before
/// anyone was told anything.
#[test]
fn notify_mode_captures_from_the_first_frame_while_the_notice_plays() {
    let mut call = Call::new(config("US-NY"));
    let out = call.arrive("alice", "US-NY", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Notify, GateScope::PerParticipant)]
    );
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
    // The notice plays 0..5.8 s; nothing has been reported played yet.
    for t in frames(0, 6 * S) {
        assert!(call.allowed("alice", t), "frame at {t}");
    }
    assert_eq!(call.state("alice"), Some(ConsentState::Joined));
}

/// `none` (a company override of the US to `none`, allowed because the US
/// legal floor is `none`): captured from the first frame, with consent
/// recorded as not required.
#[test]
fn none_mode_captures_from_the_first_frame() {
    let mut config = config("US-NY");
    config
        .policy
        .overrides
        .insert("US".to_owned(), ConsentMode::None);
    let mut call = Call::new(config);
    let out = call.arrive("alice", "US-NY", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::None, GateScope::PerParticipant)]
    );
    assert!(call.allowed("alice", 0));
    assert_eq!(
        call.state("alice"),
        Some(ConsentState::Consented(ConsentMethod::NotRequired))
    );
}

/// `notify_and_allow_opt_out` (GB): held from the first frame; the hold is
/// committed once the notice was heard whole and the 5 s opt-out window
/// after it passed, not a sample earlier.
#[test]
fn opt_out_mode_holds_from_the_first_frame_and_commits_after_the_notice_and_the_window() {
    let mut call = Call::new(config("GB"));
    let out = call.arrive("alice", "GB", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::NotifyAndAllowOptOut, GateScope::PerParticipant)]
    );
    let first = call.held("alice", 0);
    let during_notice = call.held("alice", 3 * S);
    assert_eq!(call.engine.fate(0, &first), Fate::Wait);

    // The notice plays 0..6 s, heard whole: the window ends at 11 s.
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    assert_eq!(call.state("alice"), Some(ConsentState::Notified));
    assert_eq!(call.engine.poll_timeout(), Some(11 * S));
    let in_window = call.held("alice", 8 * S);

    call.timeout(11 * S - 1);
    assert_eq!(call.engine.fate(0, &first), Fate::Wait);

    let out = call.timeout(11 * S);
    assert_eq!(
        state_changes(&out),
        vec![(
            "alice".to_owned(),
            ConsentState::Consented(ConsentMethod::Implicit),
            11 * S
        )]
    );
    for (t, ticket) in [(0, &first), (3 * S, &during_notice), (8 * S, &in_window)] {
        assert_eq!(call.engine.fate(t, ticket), Fate::Commit, "frame at {t}");
    }
    assert!(call.allowed("alice", 11 * S));
}

/// A notice cut short (the session went away mid-prompt) informs nobody:
/// the opt-out window does not start and the hold keeps waiting.
#[test]
fn a_notice_cut_short_does_not_start_the_opt_out_window() {
    let mut call = Call::new(config("GB"));
    call.arrive("alice", "GB", 0);
    let first = call.held("alice", 0);
    call.played(
        PromptKind::Notice,
        &["alice"],
        Delivery::Interrupted,
        0,
        2 * S,
    );
    assert_eq!(call.state("alice"), Some(ConsentState::Joined));
    assert_eq!(call.engine.poll_timeout(), None);
    call.timeout(60 * S);
    assert_eq!(call.engine.fate(0, &first), Fate::Wait);
    assert!(matches!(call.judge("alice", 60 * S), Judgement::Hold(_)));
}

/// Pressing 9 inside the opt-out window (after the notice, before the
/// window ends) discards everything held of the decliner, who is never
/// captured after.
#[test]
fn a_decline_with_9_within_the_opt_out_window_discards_the_hold() {
    let mut call = Call::new(EngineConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        ..config("GB")
    });
    call.arrive("alice", "GB", 0);
    let first = call.held("alice", 0);
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    let in_window = call.held("alice", 7 * S);

    let (consent_key, out) = call.press("alice", '9', 8 * S);
    assert!(consent_key);
    assert!(out.contains(&ConsentOutput::Withdrawn {
        participant: "alice".to_owned()
    }));
    assert_eq!(call.state("alice"), Some(ConsentState::Declined));
    for (t, ticket) in [(0, &first), (7 * S, &in_window)] {
        assert_eq!(
            call.engine.fate(t, ticket),
            Fate::Discard(HoldDiscard::Declined),
            "frame at {t}"
        );
    }
    // The window's end changes nothing.
    call.timeout(11 * S);
    assert_eq!(call.withheld("alice", 11 * S), Some(GateReason::Declined));
}

/// `explicit` (DE is all-party, explicit): nothing before consent, and
/// nothing held for it; from the moment of a 1 pressed after the request,
/// capture.
#[test]
fn explicit_mode_withholds_before_consent_and_allows_after_a_1() {
    let mut call = Call::new(config("DE"));
    let out = call.arrive("dieter", "DE", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Explicit, GateScope::CallWide)]
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["dieter"]))]
    );
    assert_eq!(
        call.withheld("dieter", 0),
        Some(GateReason::AwaitingOwnConsent)
    );

    call.heard(PromptKind::ConsentRequest, &["dieter"], 0, 8 * S);
    // Time alone is no consent under explicit.
    assert_eq!(call.engine.poll_timeout(), None);
    call.timeout(9 * S);
    assert!(call.withheld("dieter", 9 * S).is_some());

    let (consent_key, out) = call.press("dieter", '1', 10 * S);
    assert!(consent_key);
    assert_eq!(
        state_changes(&out),
        vec![(
            "dieter".to_owned(),
            ConsentState::Consented(ConsentMethod::Dtmf),
            10 * S
        )]
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Thanks, names(&["dieter"]))]
    );
    assert!(call.allowed("dieter", 10 * S));
    assert!(call.withheld("dieter", 10 * S - 1).is_some());
}

/// With `hold_under_explicit`, audio spoken while the explicit request
/// waits is held, and committed by the yes.
#[test]
fn explicit_mode_with_hold_under_explicit_holds_and_commits_on_the_yes() {
    let mut call = Call::new(EngineConfig {
        hold: HoldConfig {
            under_explicit: true,
            ..HoldConfig::default()
        },
        ..config("DE")
    });
    call.arrive("dieter", "DE", 0);
    let before = call.held("dieter", 2 * S);
    call.heard(PromptKind::ConsentRequest, &["dieter"], 0, 8 * S);
    call.press("dieter", '1', 10 * S);
    assert_eq!(call.engine.fate(2 * S, &before), Fate::Commit);
    assert!(call.allowed("dieter", 10 * S));
}

// ---------------------------------------------------------------------------
// Item 3: unknown facts fail closed
// ---------------------------------------------------------------------------

/// A participant without details is held for `details_wait` (3 s); then the
/// unknown-location mode (pinned here to `notify_and_allow_opt_out`)
/// applies: a notice, the window, and the hold since the join committed.
#[test]
fn an_unknown_location_is_held_for_the_details_wait_then_follows_the_unknown_mode() {
    let mut call = Call::with_rules(
        rules_with_unknown("notify_and_allow_opt_out"),
        config("US-NY"),
    );
    let out = call.join("ann", 0);
    assert!(prompts(&out).is_empty(), "nobody counted yet: no prompt");
    let first = call.held("ann", 0);
    let waiting = call.held("ann", 2 * S);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::GateChanged { participant, open: false, held: true, reason: GateReason::AwaitingDetails, .. }
            if participant == "ann"
    )));
    assert_eq!(call.engine.poll_timeout(), Some(3 * S));

    let out = call.timeout(3 * S);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::DetailsWaitEnded { participant, t } if participant == "ann" && samples(*t) == 3 * S
    )));
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::NotifyAndAllowOptOut, GateScope::PerParticipant)]
    );
    assert_eq!(call.engine.jurisdiction("ann"), Some("default_unknown"));
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["ann"]))]);
    assert_eq!(call.engine.fate(0, &first), Fate::Wait);

    call.heard(PromptKind::Notice, &["ann"], 3 * S, 9 * S);
    call.timeout(14 * S);
    assert_eq!(call.engine.fate(0, &first), Fate::Commit);
    assert_eq!(call.engine.fate(2 * S, &waiting), Fate::Commit);
    assert!(call.allowed("ann", 14 * S));
}

/// Under an explicit unknown-location mode (what issue 11 ships), what was
/// held while the details were awaited is discarded when the wait ends
/// without them: nothing is held where explicit consent must come first.
#[test]
fn an_unknown_location_under_an_explicit_default_drops_what_was_held_for_details() {
    let mut call = Call::with_rules(rules_with_unknown("explicit"), config("US-NY"));
    call.join("ann", 0);
    let first = call.held("ann", S);
    let out = call.timeout(3 * S);
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["ann"]))]
    );
    assert_eq!(
        call.engine.fate(S, &first),
        Fate::Discard(HoldDiscard::ExplicitRequired)
    );
    assert_eq!(
        call.withheld("ann", 4 * S),
        Some(GateReason::AwaitingOwnConsent)
    );
}

/// Details that arrive within the wait end it at once; what was held
/// during it is judged with them (New York: notify, committed).
#[test]
fn details_within_the_wait_commit_what_was_held_for_them() {
    let mut call = Call::new(config("US-NY"));
    call.join("alice", 0);
    let first = call.held("alice", 0);
    call.details("alice", at("US-NY"), S);
    assert_eq!(call.engine.fate(0, &first), Fate::Commit);
    assert!(call.allowed("alice", S));
    assert_eq!(call.engine.poll_timeout(), None);
}

/// A location that arrives 40 s late and raises the mode (U1: Berlin under
/// the unknown-location mode) discards everything captured of that
/// participant, says so in the audit log, and capture follows the new mode
/// from then on.
#[test]
fn a_late_location_that_raises_the_mode_discards_what_was_captured() {
    let mut call = Call::with_rules(
        rules_with_unknown("notify_and_allow_opt_out"),
        config("US-NY"),
    );
    call.join("dieter", 0);
    call.timeout(3 * S);
    call.heard(PromptKind::Notice, &["dieter"], 3 * S, 9 * S);
    call.timeout(14 * S);
    assert!(call.allowed("dieter", 20 * S));

    let out = call.details("dieter", at("DE"), 40 * S);
    let discard = ConsentOutput::DiscardParticipant {
        participant: "dieter".to_owned(),
    };
    assert!(out.contains(&discard), "{out:?}");
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::Discarded { participant: Some(p), t, .. } if p == "dieter" && samples(*t) == 40 * S
    )));
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Explicit, GateScope::CallWide)]
    );
    assert_eq!(call.engine.jurisdiction("dieter"), Some("DE"));
    // An implicit consent does not satisfy explicit: asked again.
    assert_eq!(call.state("dieter"), Some(ConsentState::Joined));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["dieter"]))]
    );
    // What was captured before is gone, late frames of it included.
    assert_eq!(
        call.withheld("dieter", 20 * S),
        Some(GateReason::CaptureDiscarded)
    );
    assert!(call.withheld("dieter", 41 * S).is_some());

    // From now on the new mode: a 1 after the request opens the gate.
    call.heard(PromptKind::ConsentRequest, &["dieter"], 40 * S, 48 * S);
    call.press("dieter", '1', 50 * S);
    assert!(call.allowed("dieter", 50 * S));
    assert!(call.withheld("dieter", 49 * S).is_some());
}

/// `capture: never` that arrives 500 ms after join (U5) still blocks
/// everything: in that first 500 ms every frame of everyone is held (not
/// allowed), and all of it is discarded when the setting arrives.
#[test]
fn capture_never_arriving_500_ms_after_join_blocks_everything() {
    let mut call = Call::new(config("US-NY"));
    call.arrive("bob", "US-NY", 0);
    call.join("nora", 0);
    let mut tickets = Vec::new();
    for t in frames(0, 500 * MS) {
        for id in ["bob", "nora"] {
            tickets.push((id, t, call.held(id, t)));
        }
    }
    call.details("nora", never(), 500 * MS);
    for (id, t, ticket) in &tickets {
        assert_eq!(
            call.engine.fate(*t, ticket),
            Fate::Discard(HoldDiscard::CaptureNever),
            "{id} at {t}"
        );
    }
    assert_eq!(
        call.withheld("bob", 500 * MS),
        Some(GateReason::NeverCaptureParticipantPresent)
    );
    assert_eq!(
        call.withheld("nora", 500 * MS),
        Some(GateReason::CaptureNever)
    );
}

/// Bob (New York) talks for 100 ms while `who`, whose details have not
/// come, is on the call (having agreed through the API first if `agreed`);
/// then `who` leaves. Bob's frames of those 100 ms are held for `who`'s
/// details: their tickets.
fn quick_leave(who: &str, agreed: bool) -> (Call, Vec<(u64, HoldTicket)>) {
    let mut call = Call::new(config("US-NY"));
    call.arrive("bob", "US-NY", 0);
    call.join(who, 0);
    if agreed {
        call.signal(who, Decision::Granted, ConsentMethod::Api, "api", 0);
    }
    let while_there = frames(0, 100 * MS)
        .map(|t| (t, call.held("bob", t)))
        .collect();
    call.leave(who, 100 * MS);
    (call, while_there)
}

fn assert_fates(call: &Call, tickets: &[(u64, HoldTicket)], fate: Fate) {
    for (t, ticket) in tickets {
        assert_eq!(call.engine.fate(*t, ticket), fate, "bob at {t}");
    }
}

/// A `never` posted after its participant already left, but within their
/// details wait, still discards what was held while they were on the call:
/// leaving does not end the wait (a session that drops at once is common).
/// What was spoken after they left is not theirs to block.
#[test]
fn capture_never_posted_after_a_quick_leave_discards_what_was_held_while_they_were_there() {
    let (mut call, while_there) = quick_leave("nora", false);
    assert_fates(&call, &while_there, Fate::Wait);
    assert!(
        call.allowed("bob", 200 * MS),
        "nobody unknown is on the call"
    );
    call.details("nora", never(), 500 * MS);
    assert_fates(
        &call,
        &while_there,
        Fate::Discard(HoldDiscard::CaptureNever),
    );
}

/// An all-party location posted after its participant left, within their
/// details wait: what others said while they were there needed their
/// consent, which they never gave (Germany: explicit, all-party).
#[test]
fn an_all_party_location_posted_after_a_quick_leave_needs_their_consent_for_what_was_held() {
    let (mut call, while_there) = quick_leave("dieter", false);
    call.details("dieter", at("DE"), 500 * MS);
    assert_fates(
        &call,
        &while_there,
        Fate::Discard(HoldDiscard::ExplicitRequired),
    );
}

/// The same, when they had agreed before leaving: what was held is kept.
#[test]
fn an_all_party_location_posted_after_a_quick_leave_keeps_what_their_consent_covers() {
    let (mut call, while_there) = quick_leave("dieter", true);
    call.details("dieter", at("DE"), 500 * MS);
    assert_fates(&call, &while_there, Fate::Commit);
}

/// The same, with a one-party location: what was held is kept.
#[test]
fn a_one_party_location_posted_after_a_quick_leave_commits_what_was_held() {
    let (mut call, while_there) = quick_leave("nadia", false);
    call.details("nadia", at("US-NY"), 500 * MS);
    assert_fates(&call, &while_there, Fate::Commit);
}

// ---------------------------------------------------------------------------
// Item 4: a notice nobody heard is not a notice
// ---------------------------------------------------------------------------

/// A sendonly session (cannot hear the bot, U2) on a California call: the
/// inaudible notice is logged as not heard and no implicit consent follows,
/// however long they stay; the provider's own notice then informs them.
#[test]
fn a_sendonly_participant_reaches_implicit_consent_only_after_a_provider_notice() {
    let mut call = Call::new(config("US-CA"));
    call.arrive("gw", "US-CA", 0);
    let first = call.held("gw", S);
    let out = call.played(PromptKind::Notice, &["gw"], Delivery::Inaudible, 0, 0);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::NoticeNotHeard { participant, prompt: PromptKind::Notice, .. } if participant == "gw"
    )));
    assert_eq!(call.state("gw"), Some(ConsentState::Joined));
    assert_eq!(call.engine.poll_timeout(), None);
    call.timeout(30 * S);
    assert_eq!(call.state("gw"), Some(ConsentState::Joined));
    assert_eq!(call.engine.fate(S, &first), Fate::Wait);

    // The provider showed its own banner at 30 s: 5 s later, implicit.
    let out = call.provider_notice("gw", 30 * S, "banner", 30 * S);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::NoticeShown { participant, how, shown, .. }
            if participant == "gw" && how == "banner" && samples(*shown) == 30 * S
    )));
    assert_eq!(call.engine.poll_timeout(), Some(35 * S));
    call.timeout(35 * S);
    assert_eq!(
        call.state("gw"),
        Some(ConsentState::Consented(ConsentMethod::Implicit))
    );
    assert_eq!(call.engine.fate(S, &first), Fate::Commit);
}

/// With `consent.provider_notifies`, an inaudible notice counts (the
/// provider shows its own to everyone who cannot hear the bot).
#[test]
fn with_provider_notifies_an_inaudible_notice_informs() {
    let mut call = Call::new(EngineConfig {
        provider_notifies: true,
        ..config("US-CA")
    });
    call.arrive("gw", "US-CA", 0);
    let out = call.played(PromptKind::Notice, &["gw"], Delivery::Inaudible, 0, 0);
    assert!(
        !audits(&out)
            .iter()
            .any(|e| matches!(e, AuditEvent::NoticeNotHeard { .. }))
    );
    assert_eq!(call.state("gw"), Some(ConsentState::Notified));
    call.timeout(5 * S);
    assert_eq!(
        call.state("gw"),
        Some(ConsentState::Consented(ConsentMethod::Implicit))
    );
    assert!(call.allowed("gw", 5 * S));
}

/// A provider notice posted before the participant came (before the call)
/// counts from their join, not from before it.
#[test]
fn a_provider_notice_posted_before_the_call_counts_from_the_join() {
    let mut call = Call::new(config("US-CA"));
    call.provider_notice("gw", 0, "provider_ui", 0);
    call.arrive("gw", "US-CA", 10 * S);
    assert_eq!(call.state("gw"), Some(ConsentState::Notified));
    assert_eq!(call.engine.poll_timeout(), Some(15 * S));
    call.timeout(15 * S);
    assert!(call.allowed("gw", 15 * S));
    assert!(!call.allowed("gw", 15 * S - 1));
}

// ---------------------------------------------------------------------------
// Item 5: a roster that does not depend on media
// ---------------------------------------------------------------------------

/// A listener in California on the roster without audio (U3: muted Bob)
/// makes the call all-party: Alice (New York) is held until the listener,
/// too, was informed and the window passed.
#[test]
fn a_listener_only_participant_in_california_counts_for_the_mode_and_scope() {
    let mut call = Call::new(config("US-NY"));
    call.arrive("alice", "US-NY", 0);
    call.details("bob", at("US-CA"), 0);
    let out = call.roster("bob", true, 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::NotifyAndAllowOptOut, GateScope::CallWide)]
    );
    assert!(prompted(&out, "bob"), "the listener is told too");
    let first = call.held("alice", S);

    // Alice hears the notice; the listener has no m-line to hear it on.
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    call.played(PromptKind::Notice, &["bob"], Delivery::Inaudible, 0, 0);
    call.timeout(11 * S);
    assert_eq!(
        call.state("alice"),
        Some(ConsentState::Consented(ConsentMethod::Implicit))
    );
    assert!(matches!(call.judge("alice", 12 * S), Judgement::Hold(_)));
    assert_eq!(call.engine.fate(S, &first), Fate::Wait);

    // The provider's UI told him at 15 s; at 20 s everyone is captured.
    call.provider_notice("bob", 15 * S, "provider_ui", 15 * S);
    call.timeout(20 * S);
    assert_eq!(call.engine.fate(S, &first), Fate::Commit);
    assert!(call.allowed("alice", 20 * S));
}

/// A listener in Germany makes the call explicit and call-wide: Alice's
/// own yes is not enough while the listener has not agreed.
#[test]
fn a_listener_only_participant_in_germany_blocks_capture_until_they_agree() {
    let mut call = Call::new(config("US-NY"));
    call.arrive("alice", "US-NY", 0);
    call.details("dieter", at("DE"), 0);
    let out = call.roster("dieter", true, 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Explicit, GateScope::CallWide)]
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["alice", "dieter"]))]
    );
    call.heard(PromptKind::ConsentRequest, &["alice"], 0, 8 * S);
    call.press("alice", '1', 10 * S);
    assert_eq!(
        call.withheld("alice", 11 * S),
        Some(GateReason::AwaitingOthers)
    );

    call.signal(
        "dieter",
        Decision::Granted,
        ConsentMethod::Ui,
        "provider_ui",
        20 * S,
    );
    assert!(call.allowed("alice", 20 * S));
    assert!(call.withheld("alice", 20 * S - 1).is_some());
}

/// A `capture: never` listener on the roster blocks everyone (U3: the team
/// member who only listens).
#[test]
fn a_never_listener_on_the_roster_blocks_capture_of_everyone() {
    let mut call = Call::new(config("US-NY"));
    call.arrive("alice", "US-NY", 0);
    call.details("nora", never(), 10 * S);
    call.roster("nora", true, 10 * S);
    assert!(call.allowed("alice", 10 * S - 1));
    assert_eq!(
        call.withheld("alice", 10 * S),
        Some(GateReason::NeverCaptureParticipantPresent)
    );
    call.roster("nora", false, 20 * S);
    assert!(call.allowed("alice", 20 * S));
}

/// A decliner who rejoins under a new participant id (U10: a new msid)
/// with the same user id is still declined: what is held of them in the
/// details wait is discarded, and they hear no notice.
#[test]
fn a_decliner_who_rejoins_with_a_new_id_and_the_same_user_id_is_still_declined() {
    let mut call = Call::new(EngineConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        ..config("US-NY")
    });
    call.details("bob", person("US-NY", "u-bob"), 0);
    call.join("bob", 0);
    call.heard(PromptKind::Notice, &["bob"], 0, 6 * S);
    let (_, out) = call.press("bob", '9', 8 * S);
    assert_eq!(state_changes(&out)[0].1, ConsentState::Declined);
    call.leave("bob", 10 * S);

    let mut later = call.join("bob-2", 12 * S);
    let held = call.held("bob-2", 12 * S);
    later.extend(call.details("bob-2", person("US-NY", "u-bob"), 12 * S + S / 2));
    assert_eq!(call.state("bob-2"), Some(ConsentState::Declined));
    assert_eq!(
        call.engine.fate(12 * S, &held),
        Fate::Discard(HoldDiscard::Declined)
    );
    assert_eq!(call.withheld("bob-2", 13 * S), Some(GateReason::Declined));
    assert!(later.contains(&ConsentOutput::Withdrawn {
        participant: "bob-2".to_owned()
    }));
    later.extend(call.timeout(60 * S));
    assert!(!prompted(&later, "bob-2"), "{:?}", prompts(&later));
}

/// A participant id reused for a different person (another user id) does
/// not hand over the first person's consent (U10: a gateway's slot ids).
#[test]
fn a_reused_participant_id_with_a_different_user_id_does_not_inherit_consent() {
    let mut call = Call::new(config("DE"));
    call.details("slot-1", person("DE", "u-anna"), 0);
    call.join("slot-1", 0);
    call.heard(PromptKind::ConsentRequest, &["slot-1"], 0, 8 * S);
    call.press("slot-1", '1', 10 * S);
    assert!(call.allowed("slot-1", 10 * S));
    call.leave("slot-1", 20 * S);

    call.details("slot-1", person("DE", "u-ben"), 30 * S);
    let out = call.join("slot-1", 30 * S);
    assert_eq!(call.state("slot-1"), Some(ConsentState::Joined));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["slot-1"]))]
    );
    assert!(call.withheld("slot-1", 30 * S).is_some());
    // Ben's own key press before his request finished does not count
    // either: Anna heard it, not he.
    let (_, out) = call.press("slot-1", '1', 31 * S);
    assert_eq!(ignored(&out).len(), 1, "{out:?}");
    assert!(call.withheld("slot-1", 31 * S).is_some());
}

/// A decline one person gave while away (deferred until they come) is
/// theirs: another person who comes under the same participant id does not
/// bring it to the call.
#[test]
fn a_deferred_decline_does_not_follow_a_participant_id_to_another_person() {
    let mut call = Call::new(config("US-NY"));
    call.details("slot-1", person("US-NY", "u-anna"), 0);
    call.signal("slot-1", Decision::Declined, ConsentMethod::Api, "api", S);
    call.details("slot-1", person("US-NY", "u-ben"), 2 * S);
    let out = call.join("slot-1", 2 * S);
    assert!(
        !audits(&out)
            .iter()
            .any(|e| matches!(e, AuditEvent::DeclineApplied { .. })),
        "{out:?}"
    );
    assert_eq!(call.state("slot-1"), Some(ConsentState::Joined));
    assert!(
        call.allowed("slot-1", 2 * S),
        "notify: captured from the first frame"
    );
    // Anna herself, back under another id, is still declined.
    call.details("anna", person("US-NY", "u-anna"), 3 * S);
    call.join("anna", 3 * S);
    assert_eq!(call.state("anna"), Some(ConsentState::Declined));
}

/// A new user id on a participant who is still on the call: the new person
/// starts over (told again, their own consent needed).
#[test]
fn a_new_user_id_on_a_present_participant_starts_over() {
    let mut call = Call::new(config("DE"));
    call.details("slot-1", person("DE", "u-anna"), 0);
    call.join("slot-1", 0);
    call.heard(PromptKind::ConsentRequest, &["slot-1"], 0, 8 * S);
    call.press("slot-1", '1', 10 * S);
    let out = call.details("slot-1", person("DE", "u-ben"), 20 * S);
    assert_eq!(call.state("slot-1"), Some(ConsentState::Joined));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["slot-1"]))]
    );
    assert!(call.allowed("slot-1", 20 * S - 1));
    assert!(call.withheld("slot-1", 20 * S).is_some());
}

/// Someone who consented and rejoins under a new id with the same user id
/// keeps their consent (the same person).
#[test]
fn a_consenter_who_rejoins_with_a_new_id_and_the_same_user_id_keeps_consent() {
    let mut call = Call::new(config("DE"));
    call.details("anna", person("DE", "u-anna"), 0);
    call.join("anna", 0);
    call.heard(PromptKind::ConsentRequest, &["anna"], 0, 8 * S);
    call.press("anna", '1', 10 * S);
    call.leave("anna", 20 * S);
    call.details("anna-2", person("DE", "u-anna"), 25 * S);
    call.join("anna-2", 25 * S);
    assert_eq!(
        call.state("anna-2"),
        Some(ConsentState::Consented(ConsentMethod::Dtmf))
    );
    assert!(call.allowed("anna-2", 25 * S));
}

// ---------------------------------------------------------------------------
// Item 6: signals that cannot be faked by accident
// ---------------------------------------------------------------------------

/// A 1 pressed while the consent request is still playing (U7: a bridge's
/// code on connect) is ignored and audited; the same key after the request
/// ended counts.
#[test]
fn a_key_before_the_request_finished_playing_is_ignored() {
    let mut call = Call::new(config("DE"));
    call.arrive("dieter", "DE", 0);
    let (consent_key, out) = call.press("dieter", '1', 100 * MS);
    assert!(consent_key, "1 is a consent key even when ignored");
    assert_eq!(
        ignored(&out),
        vec![(
            "dieter".to_owned(),
            "dtmf 1".to_owned(),
            "pressed before the consent request finished playing to them".to_owned()
        )]
    );
    assert!(state_changes(&out).is_empty());
    // Reported late: the request played 0..8 s; a key at 5 s (arriving
    // after the report) is still before its end.
    call.heard(PromptKind::ConsentRequest, &["dieter"], 0, 8 * S);
    let (_, out) = call.press("dieter", '1', 5 * S);
    assert_eq!(ignored(&out).len(), 1);
    assert_eq!(call.state("dieter"), Some(ConsentState::Notified));

    let (consent_key, out) = call.press("dieter", '1', 9 * S);
    assert!(consent_key);
    assert!(ignored(&out).is_empty());
    assert_eq!(
        call.state("dieter"),
        Some(ConsentState::Consented(ConsentMethod::Dtmf))
    );
}

/// A key that is not a consent key is neither taken nor logged.
#[test]
fn other_keys_are_not_consent_keys() {
    let mut call = Call::new(config("DE"));
    call.arrive("dieter", "DE", 0);
    call.heard(PromptKind::ConsentRequest, &["dieter"], 0, 8 * S);
    let (consent_key, out) = call.press("dieter", '5', 9 * S);
    assert!(!consent_key);
    assert!(out.is_empty(), "{out:?}");
}

/// A digit within 1 s after `*` or `#` is part of a star code (`*1` mutes on
/// several bridges): ignored, whether it is a 1 or a 9. Just over 1 s
/// later it counts.
#[test]
fn a_digit_within_1_s_after_star_or_pound_is_ignored() {
    let mut call = Call::new(config("DE"));
    call.arrive("dieter", "DE", 0);
    call.heard(PromptKind::ConsentRequest, &["dieter"], 0, 8 * S);

    assert!(!call.press("dieter", '*', 10 * S).0);
    let (_, out) = call.press("dieter", '1', 10 * S + 500 * MS);
    assert_eq!(ignored(&out).len(), 1, "{out:?}");
    assert_eq!(ignored(&out)[0].1, "dtmf 1");

    call.press("dieter", '#', 12 * S);
    let (_, out) = call.press("dieter", '9', 12 * S + 900 * MS);
    assert_eq!(ignored(&out).len(), 1, "{out:?}");
    assert_eq!(call.state("dieter"), Some(ConsentState::Notified));

    call.press("dieter", '*', 14 * S);
    let (_, out) = call.press("dieter", '1', 15 * S + 1);
    assert!(ignored(&out).is_empty(), "{out:?}");
    assert_eq!(
        call.state("dieter"),
        Some(ConsentState::Consented(ConsentMethod::Dtmf))
    );
}

/// When the mode falls (the German participant leaves, U6 and bug a), a
/// participant who was only asked to press 1 goes back to joined and hears
/// the notice: never straight to implicit consent. Under the opt-out mode
/// left (GB) their audio is held, and the window runs from the new notice.
#[test]
fn mode_falling_with_a_pending_request_goes_back_to_the_notice() {
    let mut call = Call::new(config("GB"));
    call.arrive("carol", "GB", 0);
    call.arrive("dieter", "DE", 0);
    assert_eq!(call.engine.mode(), Some(ConsentMode::Explicit));
    call.heard(PromptKind::ConsentRequest, &["carol", "dieter"], 0, 8 * S);
    assert_eq!(call.state("carol"), Some(ConsentState::Notified));
    assert!(call.withheld("carol", 60 * S).is_some());

    let out = call.leave("dieter", 120 * S);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::NotifyAndAllowOptOut, GateScope::PerParticipant)]
    );
    assert!(state_changes(&out).contains(&("carol".to_owned(), ConsentState::Joined, 120 * S)));
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["carol"]))]);
    let after = call.held("carol", 121 * S);

    // No consent from the request heard two minutes ago.
    let out = call.timeout(125 * S);
    assert!(state_changes(&out).is_empty(), "{out:?}");
    assert_eq!(call.state("carol"), Some(ConsentState::Joined));

    call.heard(PromptKind::Notice, &["carol"], 120 * S, 126 * S);
    assert_eq!(call.engine.poll_timeout(), Some(131 * S));
    call.timeout(131 * S);
    assert_eq!(
        call.state("carol"),
        Some(ConsentState::Consented(ConsentMethod::Implicit))
    );
    assert_eq!(call.engine.fate(121 * S, &after), Fate::Commit);
}

/// Under a call-wide scope (California), `exclude_participant` acts as
/// `stop` (U8): the others' speech to the decliner is the decliner's
/// conversation too.
#[test]
fn under_a_call_wide_scope_exclude_participant_acts_as_stop() {
    let mut call = Call::new(EngineConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        ..config("US-CA")
    });
    call.arrive("alice", "US-CA", 0);
    call.arrive("bob", "US-CA", 0);
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    call.heard(PromptKind::Notice, &["bob"], 0, 6 * S);
    call.timeout(11 * S);
    assert!(call.allowed("alice", 11 * S));

    let (_, out) = call.press("bob", '9', 20 * S);
    let applied: Vec<_> = audits(&out)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::DeclineApplied { policy, note, .. } => Some((policy, note.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(applied, vec![(DeclinePolicy::Stop, true)]);
    assert!(call.allowed("alice", 20 * S - 1));
    assert_eq!(
        call.withheld("alice", 20 * S),
        Some(GateReason::CallStopped)
    );
    assert!(prompts(&out).contains(&(PromptKind::Stopped, names(&["alice"]))));
}

/// With `allow_exclude_under_all_party` the company opts in: the decliner
/// alone is excluded.
#[test]
fn with_allow_exclude_under_all_party_only_the_decliner_is_excluded() {
    let mut call = Call::new(EngineConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        allow_exclude_under_all_party: true,
        ..config("US-CA")
    });
    call.arrive("alice", "US-CA", 0);
    call.arrive("bob", "US-CA", 0);
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    call.heard(PromptKind::Notice, &["bob"], 0, 6 * S);
    call.timeout(11 * S);

    let (_, out) = call.press("bob", '9', 20 * S);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::DeclineApplied {
            policy: DeclinePolicy::ExcludeParticipant,
            note: None,
            ..
        }
    )));
    assert!(call.allowed("alice", 21 * S));
    assert_eq!(call.withheld("bob", 21 * S), Some(GateReason::Declined));
}

/// A details update never repeats a notice that is playing or done (bug b):
/// the usual order (audio, then the PUT) plays one notice, and later PUTs
/// that do not raise the mode play none.
#[test]
fn a_details_update_never_repeats_a_notice_that_is_playing_or_done() {
    let mut call = Call::new(config("US-NY"));
    call.join("alice", 0);
    let out = call.details("alice", at("US-NY"), 200 * MS);
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);

    // While it plays.
    let out = call.details(
        "alice",
        ParticipantDetails {
            internal: true,
            ..at("US-NY")
        },
        S,
    );
    assert!(prompts(&out).is_empty(), "{out:?}");

    // After it played, a move to another one-party notify state.
    call.heard(PromptKind::Notice, &["alice"], 200 * MS, 6 * S);
    let out = call.details("alice", at("US-TX"), 7 * S);
    assert!(prompts(&out).is_empty(), "{out:?}");
}

/// Capture resuming after a pause is announced again, but not to a
/// decliner who was excluded (bug c): they are not being recorded.
#[test]
fn a_resume_notice_never_goes_to_an_excluded_decliner() {
    let mut call = Call::new(EngineConfig {
        decline_policy: DeclinePolicy::ExcludeParticipant,
        ..config("US-NY")
    });
    call.arrive("alice", "US-NY", 0);
    call.arrive("bob", "US-NY", 0);
    call.heard(PromptKind::Notice, &["alice"], 0, 6 * S);
    call.heard(PromptKind::Notice, &["bob"], 0, 6 * S);
    call.press("bob", '9', 8 * S);
    assert!(call.allowed("alice", 8 * S));

    // A never-record listener pauses capture from 20 to 30 s.
    call.details("nora", never(), 20 * S);
    call.roster("nora", true, 20 * S);
    assert!(call.withheld("alice", 20 * S).is_some());
    let out = call.roster("nora", false, 30 * S);
    assert!(call.allowed("alice", 30 * S));
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
}

// ---------------------------------------------------------------------------
// Item 11: the audit log proves things
// ---------------------------------------------------------------------------

/// The first line of a call's log states the consent settings it runs
/// under (the shipped defaults here).
#[test]
fn the_first_audit_line_is_the_calls_consent_policy() {
    let mut call = Call::with_rules(rules_with_unknown("explicit"), config("US-NY"));
    let out = call.arrive("alice", "US-NY", 0);
    match &out[0] {
        ConsentOutput::Audit(AuditEvent::CallPolicy {
            t,
            rules_version,
            decline_policy,
            unknown_location_mode,
            hold_seconds,
            hold_under_explicit,
            details_wait_seconds,
            grace_seconds,
            provider_notifies,
            ..
        }) => {
            assert_eq!(*t, 0.0);
            assert_eq!(rules_version, rules().version());
            assert_eq!(*decline_policy, DeclinePolicy::Stop);
            assert_eq!(*unknown_location_mode, ConsentMode::Explicit);
            assert_eq!(*hold_seconds, 60.0);
            assert!(!hold_under_explicit);
            assert_eq!(*details_wait_seconds, 3.0);
            assert_eq!(*grace_seconds, 5.0);
            assert!(!provider_notifies);
        }
        other => panic!("first line {other:?}"),
    }
    let policies = audits(&call.log)
        .iter()
        .filter(|e| matches!(e, AuditEvent::CallPolicy { .. }))
        .count();
    assert_eq!(policies, 1, "written once");
}

/// Each participant's resolved jurisdiction, with the location given and
/// what it requires, is in the log; an unknown location resolves to
/// `default_unknown` once the wait is over.
#[test]
fn the_audit_log_records_each_participants_resolved_jurisdiction() {
    let mut call = Call::new(config("US-NY"));
    call.arrive("carla", "US-CA", 0);
    call.join("ann", 0);
    call.timeout(3 * S);
    let resolved: Vec<_> = audits(&call.log)
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::ParticipantResolved {
                participant,
                jurisdiction,
                mode,
                legal_floor,
                all_party,
                location,
                ..
            } => Some((
                participant,
                jurisdiction,
                mode,
                legal_floor,
                all_party,
                location,
            )),
            _ => None,
        })
        .collect();
    let unknown = rules().default_unknown();
    assert_eq!(
        resolved,
        vec![
            (
                "carla".to_owned(),
                "US-CA".to_owned(),
                ConsentMode::NotifyAndAllowOptOut,
                ConsentMode::NotifyAndAllowOptOut,
                true,
                Some(loc("US-CA"))
            ),
            (
                "ann".to_owned(),
                "default_unknown".to_owned(),
                unknown,
                unknown,
                false,
                None
            ),
        ]
    );
}

/// Details changes are logged with what matters for capture: the location,
/// `capture` and the user id.
#[test]
fn the_audit_log_records_details_changes_with_capture_and_user_id() {
    let mut call = Call::new(config("US-NY"));
    let out = call.details(
        "nora",
        ParticipantDetails {
            capture: CaptureSetting::Never,
            user_id: Some("u-nora".to_owned()),
            ..at("US-NY")
        },
        2 * S,
    );
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::DetailsChanged { participant, location: Some(l), capture: CaptureSetting::Never, user_id: Some(u), t, .. }
            if participant == "nora" && *l == loc("US-NY") && u == "u-nora" && samples(*t) == 2 * S
    )));
}

/// The provider's method string is logged exactly as given, next to the
/// method the engine took it as.
#[test]
fn the_audit_log_keeps_the_providers_method_string_as_given() {
    let mut call = Call::new(config("DE"));
    call.arrive("dieter", "DE", 0);
    let given = "Zoom: 'Record' dialog, Accept (v5.17)";
    let out = call.signal("dieter", Decision::Granted, ConsentMethod::Ui, given, 4 * S);
    assert!(audits(&out).iter().any(|e| matches!(
        e,
        AuditEvent::SignalReceived { participant, decision: Decision::Granted, method: ConsentMethod::Ui, method_given: Some(m), .. }
            if participant == "dieter" && m == given
    )));
    assert!(call.allowed("dieter", 4 * S));
}

/// A yes after a decline is not taken, and the log says so.
#[test]
fn a_grant_after_a_decline_is_logged_as_ignored() {
    let mut call = Call::new(config("DE"));
    call.arrive("dieter", "DE", 0);
    call.signal("dieter", Decision::Declined, ConsentMethod::Api, "api", S);
    let out = call.signal(
        "dieter",
        Decision::Granted,
        ConsentMethod::Api,
        "api",
        2 * S,
    );
    assert_eq!(
        ignored(&out),
        vec![(
            "dieter".to_owned(),
            "api granted".to_owned(),
            "a decline stands for the rest of the call".to_owned()
        )]
    );
    assert_eq!(call.state("dieter"), Some(ConsentState::Declined));
}

// ---------------------------------------------------------------------------
// Whole calls in simulated time, through the Conference
// ---------------------------------------------------------------------------

/// How long the shipped notice plays (media/prompts: 5.8 s).
const NOTICE: u64 = 5_800 * MS;

/// A call of two participants, each on a session of their own, sending a
/// 20 ms frame every 20 ms; prompts play for real lengths and are reported
/// heard whole. Counts what reaches the sinks and the hold's audit lines.
struct Sim {
    conference: Conference,
    t0: Instant,
    now: u64,
    who: Vec<(&'static str, SessionKey, ParticipantIdx)>,
    /// Prompts playing: (kind, to, start, end).
    playing: Vec<(PromptKind, String, u64, u64)>,
    /// Frames that reached a sink, per participant.
    sunk: Vec<u64>,
    /// Frames that reached a sink in a commit, per participant.
    committed: Vec<u64>,
    audit: Vec<AuditEvent>,
}

impl Sim {
    fn new(config: EngineConfig, people: &[(&'static str, &str)], t0: Instant) -> Self {
        let engine = ConsentEngine::new(rules(), config);
        let mut conference = Conference::new(CallId::parse("sim").expect("a call id"), engine);
        let mut who = Vec::new();
        for (n, (id, code)) in people.iter().enumerate() {
            // Details before the call, as a provider sends them.
            conference.handle_details(id, at(code), t0);
            let session = SessionKey(n as u64 + 1);
            conference.handle_session_added(session, &format!("s{n}"));
            let idx = conference.handle_speaker_added(session, "0", Some(id), t0);
            who.push((*id, session, idx));
        }
        let utc0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        for (_, session, _) in &who {
            conference.handle_session_connected(*session, t0, utc0);
        }
        let n = who.len();
        let mut sim = Self {
            conference,
            t0,
            now: 0,
            who,
            playing: Vec::new(),
            sunk: vec![0; n],
            committed: vec![0; n],
            audit: Vec::new(),
        };
        sim.drain();
        sim
    }

    fn at(&self, t: u64) -> Instant {
        self.t0 + Duration::from_nanos(t * 1_000_000_000 / S)
    }

    fn index(&self, id: &str) -> usize {
        self.who
            .iter()
            .position(|(w, _, _)| *w == id)
            .expect("a participant of the sim")
    }

    fn drain(&mut self) {
        while let Some(out) = self.conference.poll_output() {
            match out {
                ConferenceOutput::Frame(f) => {
                    let i = self.index(&f.participant_id);
                    self.sunk[i] += 1;
                }
                ConferenceOutput::Frames(batch) => {
                    for f in batch {
                        let i = self.index(&f.participant_id);
                        self.sunk[i] += 1;
                        self.committed[i] += 1;
                    }
                }
                ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) => {
                    let length = match prompt {
                        PromptKind::Notice => NOTICE,
                        _ => S,
                    };
                    for id in to {
                        self.playing.push((prompt, id, self.now, self.now + length));
                    }
                }
                ConferenceOutput::Consent(ConsentOutput::Audit(e)) => self.audit.push(e),
                _ => {}
            }
        }
    }

    /// Runs 20 ms steps up to `until`: prompts that ended, timeouts, then
    /// one frame of everyone.
    fn run(&mut self, until: u64) {
        while self.now < until {
            let now = self.at(self.now);
            let ended: Vec<_> = self
                .playing
                .iter()
                .filter(|(_, _, _, end)| *end <= self.now)
                .cloned()
                .collect();
            self.playing.retain(|(_, _, _, end)| *end > self.now);
            for (prompt, id, start, end) in ended {
                let (start, end) = (self.at(start), self.at(end));
                self.conference
                    .handle_prompt_played(prompt, &[id], Delivery::Whole, start, end);
                self.drain();
            }
            if self.conference.poll_timeout().is_some_and(|d| d <= now) {
                self.conference.handle_timeout(now);
                self.drain();
            }
            let k = self.now / FRAME;
            for n in 0..self.who.len() {
                let (_, session, idx) = self.who[n];
                let frame = AudioFrame {
                    rtp_time: 1_000_000 + self.now,
                    seq_first: k,
                    seq_last: k,
                    arrival: now,
                    // A 20 ms CELT frame's TOC byte, then filler.
                    payload: Arc::from(&[0xFCu8, 0xFF, 0xFE][..]),
                    voice: VoiceHint::default(),
                    source: None,
                };
                self.conference.handle_audio(session, idx, frame);
                self.drain();
            }
            self.now += FRAME;
        }
    }

    fn press(&mut self, id: &str, c: char) {
        let idx = self.who[self.index(id)].2;
        let now = self.at(self.now);
        self.conference.handle_digit(idx, key(c), now);
        self.drain();
    }

    /// Seconds of `id`'s held audio committed, and discarded by reason, per
    /// the audit log.
    fn hold_lines(&self, id: &str) -> (f64, Vec<(HoldDiscard, f64)>) {
        let mut committed = 0.0;
        let mut discarded = Vec::new();
        for e in &self.audit {
            match e {
                AuditEvent::HoldCommitted {
                    participant,
                    seconds,
                    ..
                } if participant == id => committed += seconds,
                AuditEvent::HoldDiscarded {
                    participant,
                    seconds,
                    reason,
                    ..
                } if participant == id => discarded.push((*reason, *seconds)),
                _ => {}
            }
        }
        (committed, discarded)
    }
}

/// One minute (3,000 frames of 20 ms each) of two New Yorkers who talk from
/// their first second: every frame of both reaches the sinks, none of it
/// through the hold. Simulated time: it takes milliseconds, not a minute.
#[test]
#[allow(clippy::disallowed_methods)] // a real Instant to start simulated time from
fn a_minute_of_two_new_yorkers_talking_from_the_first_second_is_recorded_whole() {
    let started = Instant::now();
    let mut sim = Sim::new(
        config("US-NY"),
        &[("alice", "US-NY"), ("bob", "US-NY")],
        started,
    );
    sim.run(60 * S);
    assert_eq!(sim.sunk, vec![3_000, 3_000]);
    assert_eq!(sim.committed, vec![0, 0]);
    // Far below the minute it simulates (no sleeping, no real clock).
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// One minute of two people in GB (opt-out): both are held from the first
/// frame. Alice stays: her first 10.8 s (notice 5.8 s, window 5 s) are
/// committed and nothing of her minute is lost. Bob presses 9 at 8 s: his
/// 8 s of held audio are discarded, and the audit log says so.
#[test]
#[allow(clippy::disallowed_methods)] // a real Instant to start simulated time from
fn a_minute_under_opt_out_commits_the_hold_of_who_stays_and_discards_the_decliners() {
    let started = Instant::now();
    let mut sim = Sim::new(
        EngineConfig {
            decline_policy: DeclinePolicy::ExcludeParticipant,
            ..config("GB")
        },
        &[("alice", "GB"), ("bob", "GB")],
        started,
    );
    sim.run(8 * S);
    sim.press("bob", '9');
    sim.run(60 * S);

    // Alice: 540 frames held (0 to 10.8 s), all committed; 2,460 after.
    assert_eq!(sim.sunk[0], 3_000);
    assert_eq!(sim.committed[0], 540);
    let (committed, discarded) = sim.hold_lines("alice");
    assert!((committed - 10.8).abs() < 1e-9, "{committed}");
    assert!(discarded.is_empty(), "{discarded:?}");

    // Bob: 400 frames held (0 to 8 s), all discarded; nothing after.
    assert_eq!(sim.sunk[1], 0);
    let (committed, discarded) = sim.hold_lines("bob");
    assert_eq!(committed, 0.0);
    assert_eq!(discarded.len(), 1, "{discarded:?}");
    assert_eq!(discarded[0].0, HoldDiscard::Declined);
    assert!((discarded[0].1 - 8.0).abs() < 1e-9, "{discarded:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
