//! Tests of the consent engine: a property test that drives random calls
//! through a test shell and checks every frame's verdict against an oracle
//! built only from the audit log the engine emitted (and the shell's own
//! record of who was on the call), plus one deterministic scenario per rule.

use super::*;

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One second of call time (48 kHz samples).
const S: u64 = SAMPLES_PER_SECOND;

fn rules() -> Arc<Rules> {
    static RULES: OnceLock<Arc<Rules>> = OnceLock::new();
    RULES.get_or_init(|| Arc::new(Rules::builtin())).clone()
}

fn loc(code: &str) -> Location {
    Location::from_code(code).expect("a valid location code")
}

fn config(recorder: &str, grace: u64, decline_policy: DeclinePolicy) -> EngineConfig {
    EngineConfig {
        policy: Policy::default(),
        recorder_location: Some(loc(recorder)),
        grace,
        decline_policy,
        keys: Default::default(),
    }
}

fn details(code: Option<&str>, capture: CaptureSetting) -> ParticipantDetails {
    ParticipantDetails {
        location: code.map(loc),
        internal: false,
        capture,
    }
}

fn names(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Call time (samples) of an audit event's `t` (seconds).
fn samples(secs: f64) -> u64 {
    (secs * S as f64).round() as u64
}

// ---------------------------------------------------------------------------
// A small test shell for the deterministic scenarios: each call drains and
// returns the engine's outputs, as the real shell does after every handle_*.
// ---------------------------------------------------------------------------

struct Call {
    engine: ConsentEngine,
    log: Vec<ConsentOutput>,
}

impl Call {
    fn new(config: EngineConfig) -> Self {
        Self {
            engine: ConsentEngine::new(rules(), config),
            log: Vec::new(),
        }
    }

    fn drain(&mut self) -> Vec<ConsentOutput> {
        let mut out = Vec::new();
        while let Some(o) = self.engine.poll_output() {
            out.push(o);
        }
        self.log.extend(out.iter().cloned());
        out
    }

    fn details(
        &mut self,
        id: &str,
        code: Option<&str>,
        capture: CaptureSetting,
        t: u64,
    ) -> Vec<ConsentOutput> {
        self.engine.handle_details(id, details(code, capture), t);
        self.drain()
    }

    /// Details (location, capture default) then the participant's audio.
    fn arrive(&mut self, id: &str, code: &str, t: u64) -> Vec<ConsentOutput> {
        let mut out = self.details(id, Some(code), CaptureSetting::Default, t);
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

    fn played(
        &mut self,
        prompt: PromptKind,
        to: &[&str],
        start: u64,
        end: u64,
    ) -> Vec<ConsentOutput> {
        self.engine
            .handle_prompt_played(prompt, &names(to), true, start, end);
        self.drain()
    }

    fn grant(&mut self, id: &str, method: ConsentMethod, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_signal(id, Decision::Granted, method, t);
        self.drain()
    }

    fn decline(&mut self, id: &str, t: u64) -> Vec<ConsentOutput> {
        self.engine
            .handle_signal(id, Decision::Declined, ConsentMethod::Api, t);
        self.drain()
    }

    fn timeout(&mut self, t: u64) -> Vec<ConsentOutput> {
        self.engine.handle_timeout(t);
        self.drain()
    }

    fn allowed(&self, id: &str, t: u64) -> bool {
        self.engine.allows(id, t).allowed
    }

    fn reason(&self, id: &str, t: u64) -> GateReason {
        self.engine.allows(id, t).reason
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

/// Gate changes (participant, open, reason), in order.
fn gate_changes(out: &[ConsentOutput]) -> Vec<(String, bool, GateReason)> {
    out.iter()
        .filter_map(|o| match o {
            ConsentOutput::Audit(AuditEvent::GateChanged {
                participant,
                open,
                reason,
                ..
            }) => Some((participant.clone(), *open, *reason)),
            _ => None,
        })
        .collect()
}

/// State changes (participant, to, at), in order.
fn state_changes(out: &[ConsentOutput]) -> Vec<(String, ConsentState, u64)> {
    out.iter()
        .filter_map(|o| match o {
            ConsentOutput::Audit(AuditEvent::StateChanged {
                participant, to, t, ..
            }) => Some((participant.clone(), *to, samples(*t))),
            _ => None,
        })
        .collect()
}

fn modes(out: &[ConsentOutput]) -> Vec<(ConsentMode, GateScope)> {
    out.iter()
        .filter_map(|o| match o {
            ConsentOutput::Audit(AuditEvent::ModeEvaluated { mode, scope, .. }) => {
                Some((*mode, *scope))
            }
            _ => None,
        })
        .collect()
}

fn gate(id: &str, open: bool, reason: GateReason) -> (String, bool, GateReason) {
    (id.to_owned(), open, reason)
}

// ---------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------

/// Where participants (and the recorder) can be. `ZZ` has no rule and `None`
/// is unknown: both resolve to `default_unknown`.
const PLACES: [Option<&str>; 7] = [
    Some("US"),
    Some("US-CA"),
    Some("DE"),
    Some("GB"),
    Some("FR"),
    Some("ZZ"),
    None,
];

const IDS: [&str; 5] = ["p0", "p1", "p2", "p3", "p4"];

/// An id the engine never hears of: its frames are never allowed.
const GHOST: &str = "ghost";

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Leave(usize),
    Details {
        who: usize,
        place: usize,
        never: bool,
        internal: bool,
    },
    Signal {
        who: usize,
        decision: Decision,
        method: ConsentMethod,
    },
    /// Only time passes (prompts end, timeouts fire).
    Wait,
    /// The shell wakes up for another reason and calls handle_timeout(now).
    Tick,
}

#[derive(Debug, Clone)]
struct Scenario {
    people: usize,
    recorder: usize,
    /// 0: default; 1: US overridden to `none`; 2: company minimum opt-out.
    policy: usize,
    grace: u64,
    decline_policy: DeclinePolicy,
    /// Details given at time 0, before anyone joins: (place, never).
    initial: Vec<Option<(usize, bool)>>,
    /// (duration, audible) of each prompt the shell plays, cycled.
    plays: Vec<(u64, bool)>,
    /// How long after a prompt ends the shell reports it, cycled.
    lags: Vec<u64>,
    steps: Vec<(u64, Op)>,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let who = 0usize..IDS.len();
    let method = prop::sample::select(vec![
        ConsentMethod::Dtmf,
        ConsentMethod::Api,
        ConsentMethod::Verbal,
    ]);
    prop_oneof![
        14 => who.clone().prop_map(Op::Join),
        6 => who.clone().prop_map(Op::Leave),
        4 => (who.clone(), place_strategy(), prop::bool::weighted(0.1), any::<bool>()).prop_map(
            |(who, place, never, internal)| Op::Details { who, place, never, internal }
        ),
        10 => (who.clone(), method.clone()).prop_map(|(who, method)| Op::Signal {
            who,
            decision: Decision::Granted,
            method,
        }),
        1 => (who, method).prop_map(|(who, method)| Op::Signal {
            who,
            decision: Decision::Declined,
            method,
        }),
        6 => Just(Op::Wait),
        2 => Just(Op::Tick),
    ]
}

/// A place (index into [`PLACES`]), the US more often so that calls where
/// the company lowered the US to `none` happen.
fn place_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 4 => 0..PLACES.len()]
}

fn step_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => 1u64..960,
        4 => 0u64..4 * S,
    ]
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        2usize..=5,
        place_strategy(),
        0usize..3,
        prop::sample::select(vec![0, 1, S / 2, 2 * S, 5 * S]),
        prop::sample::select(vec![
            DeclinePolicy::StopAndDiscard,
            DeclinePolicy::Stop,
            DeclinePolicy::ExcludeParticipant,
        ]),
        prop::collection::vec(
            prop::option::weighted(0.7, (place_strategy(), prop::bool::weighted(0.06))),
            IDS.len(),
        ),
        prop::collection::vec(
            (
                prop_oneof![1 => 1u64..960, 4 => S / 2..6 * S],
                prop::bool::weighted(0.9),
            ),
            1..6,
        ),
        prop::collection::vec(prop::sample::select(vec![0, 0, 0, 1, 480, 3 * 960]), 1..4),
        prop::collection::vec((step_strategy(), op_strategy()), 1..80),
    )
        .prop_map(
            |(people, recorder, policy, grace, decline_policy, initial, plays, lags, steps)| {
                Scenario {
                    people,
                    recorder,
                    policy,
                    grace,
                    decline_policy,
                    initial,
                    plays,
                    lags,
                    steps,
                }
            },
        )
}

/// The last value of a timeline at or before `t`: the greatest time not
/// after `t`, and among equal times the one recorded last.
fn last_at<T: Copy>(timeline: Option<&Vec<(u64, T)>>, t: u64) -> Option<T> {
    let mut best: Option<(u64, T)> = None;
    for &(at, v) in timeline.into_iter().flatten() {
        if at <= t && best.is_none_or(|(b, _)| at >= b) {
            best = Some((at, v));
        }
    }
    best.map(|(_, v)| v)
}

/// What capture must respect, rebuilt independently of the engine's gate:
/// from the audit events the engine emitted (in emission order) and from the
/// shell's own record of presence and `capture` settings.
#[derive(Default)]
struct Oracle {
    decline_policy: Option<DeclinePolicy>,
    grace: u64,
    /// The latest `t` of an audit event (PromptPlayed aside: its start and
    /// end are history).
    last_t: u64,
    /// (end, to) of each Notice or ConsentRequest played.
    notices: Vec<(u64, Vec<String>)>,
    states: BTreeMap<String, Vec<(u64, ConsentState)>>,
    gates: BTreeMap<String, Vec<(u64, bool)>>,
    modes: Vec<(u64, (ConsentMode, GateScope))>,
    declines: Vec<u64>,
    presence: BTreeMap<String, Vec<(u64, bool)>>,
    capture: BTreeMap<String, Vec<(u64, CaptureSetting)>>,
}

impl Oracle {
    /// Takes in an audit event, checking what can be checked of it alone.
    fn audit(&mut self, e: &AuditEvent) -> Result<(), String> {
        // The log is in time order: nothing is back-dated before what is
        // already written (else reading it by time misstates the past).
        let t = match e {
            AuditEvent::ModeEvaluated { t, .. }
            | AuditEvent::PromptScheduled { t, .. }
            | AuditEvent::StateChanged { t, .. }
            | AuditEvent::GateChanged { t, .. }
            | AuditEvent::Discarded { t, .. } => Some(samples(*t)),
            AuditEvent::PromptPlayed { .. } => None,
        };
        if let Some(t) = t {
            if t < self.last_t {
                return Err(format!(
                    "audit event back-dated to {t} after {}: {e:?}",
                    self.last_t
                ));
            }
            self.last_t = t;
        }
        if let AuditEvent::StateChanged {
            t,
            participant,
            from,
            to: ConsentState::Consented(ConsentMethod::Implicit),
        } = e
            && *from != ConsentState::Left
        {
            self.check_implicit(participant, samples(*t))?;
        }
        match e {
            AuditEvent::StateChanged {
                t, participant, to, ..
            } => {
                self.states
                    .entry(participant.clone())
                    .or_default()
                    .push((samples(*t), *to));
                if *to == ConsentState::Declined {
                    self.declines.push(samples(*t));
                }
            }
            AuditEvent::GateChanged {
                t,
                participant,
                open,
                ..
            } => self
                .gates
                .entry(participant.clone())
                .or_default()
                .push((samples(*t), *open)),
            AuditEvent::ModeEvaluated { t, mode, scope, .. } => {
                self.modes.push((samples(*t), (*mode, *scope)))
            }
            AuditEvent::PromptPlayed {
                end, prompt, to, ..
            } => {
                if matches!(prompt, PromptKind::Notice | PromptKind::ConsentRequest) {
                    self.notices.push((samples(*end), to.clone()));
                }
            }
            AuditEvent::PromptScheduled { .. } | AuditEvent::Discarded { .. } => {}
        }
        Ok(())
    }

    /// A new implicit consent of `id` at `t`: the mode is a notify mode, and
    /// `id` heard a notice and stayed on the call from its end for `grace`.
    fn check_implicit(&self, id: &str, t: u64) -> Result<(), String> {
        let mode = self.modes.last().map(|&(_, (m, _))| m);
        if !matches!(
            mode,
            Some(ConsentMode::Notify | ConsentMode::NotifyAndAllowOptOut)
        ) {
            return Err(format!("{id}@{t}: implicit consent under mode {mode:?}"));
        }
        let stayed = |end: u64| {
            self.present(id, end)
                && self
                    .presence
                    .get(id)
                    .into_iter()
                    .flatten()
                    .all(|&(at, present)| present || at <= end || at > t)
        };
        let heard = self.notices.iter().any(|(end, to)| {
            to.iter().any(|p| p == id) && end.saturating_add(self.grace) <= t && stayed(*end)
        });
        if !heard {
            return Err(format!(
                "{id}@{t}: implicit consent without staying {} after a notice",
                self.grace
            ));
        }
        Ok(())
    }

    fn state(&self, id: &str, t: u64) -> ConsentState {
        last_at(self.states.get(id), t).unwrap_or(ConsentState::Joined)
    }

    fn present(&self, id: &str, t: u64) -> bool {
        last_at(self.presence.get(id), t).unwrap_or(false)
    }

    fn never(&self, id: &str, t: u64) -> bool {
        last_at(self.capture.get(id), t) == Some(CaptureSetting::Never)
    }

    fn stopped_by_decline(&self) -> bool {
        matches!(
            self.decline_policy,
            Some(DeclinePolicy::Stop | DeclinePolicy::StopAndDiscard)
        )
    }

    /// Checks the verdict for a frame of `id` at `t`.
    fn check(&self, id: &str, t: u64, verdict: Verdict) -> Result<(), String> {
        if self.decline_policy == Some(DeclinePolicy::StopAndDiscard)
            && !self.declines.is_empty()
            && verdict.allowed
        {
            return Err(format!(
                "{id}@{t}: allowed after a decline under stop_and_discard"
            ));
        }
        if !verdict.allowed {
            return Ok(());
        }
        let mode = last_at(Some(&self.modes), t);
        // (a) consented at t, by a method the mode at t accepts.
        let ConsentState::Consented(method) = self.state(id, t) else {
            return Err(format!(
                "{id}@{t}: allowed in state {:?}",
                self.state(id, t)
            ));
        };
        let sufficient = match method {
            ConsentMethod::Dtmf
            | ConsentMethod::Api
            | ConsentMethod::Ui
            | ConsentMethod::Verbal => true,
            ConsentMethod::Implicit => {
                matches!(mode, Some((m, _)) if m < ConsentMode::Explicit)
            }
            ConsentMethod::NotRequired => matches!(mode, Some((ConsentMode::None, _))),
        };
        if !sufficient {
            return Err(format!(
                "{id}@{t}: allowed on {method:?} consent under mode {mode:?}"
            ));
        }
        // (b) audit before effect: an open gate is already in the log.
        if last_at(self.gates.get(id), t) != Some(true) {
            return Err(format!(
                "{id}@{t}: allowed without a gate-open audit event at or before t"
            ));
        }
        // (c) no `never` participant present.
        for q in self.presence.keys() {
            if self.present(q, t) && self.never(q, t) {
                return Err(format!(
                    "{id}@{t}: allowed while never-capture participant {q} is present"
                ));
            }
        }
        // (d) no decline that stops the call.
        if self.stopped_by_decline() && self.declines.iter().any(|&d| d <= t) {
            return Err(format!("{id}@{t}: allowed after a call-stopping decline"));
        }
        // (e) call-wide: everyone present (and not excluded) has consented.
        if let Some((_, GateScope::CallWide)) = mode {
            for q in self.presence.keys() {
                if !self.present(q, t) {
                    continue;
                }
                let s = self.state(q, t);
                let excluded = self.decline_policy == Some(DeclinePolicy::ExcludeParticipant)
                    && s == ConsentState::Declined;
                if !excluded && !matches!(s, ConsentState::Consented(_)) {
                    return Err(format!(
                        "{id}@{t}: allowed under a call-wide gate while {q} is present in state {s:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

struct Pending {
    report_at: u64,
    prompt: PromptKind,
    to: Vec<String>,
    start: u64,
    end: u64,
    audible: bool,
}

struct Sim {
    sc: Scenario,
    engine: ConsentEngine,
    oracle: Oracle,
    /// The shell's clock.
    now: u64,
    /// The latest time handed to the engine.
    handled: u64,
    pending: Vec<Pending>,
    plays: usize,
    lags: usize,
    outputs: Vec<ConsentOutput>,
    times: Vec<u64>,
    discards: usize,
    step: usize,
    /// Each participant's gate cache, kept across steps as the conference
    /// keeps it across frames, so stale caches are exercised.
    caches: std::cell::RefCell<std::collections::HashMap<String, GateCache>>,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl Sim {
    fn new(sc: Scenario) -> Self {
        let policy = match sc.policy {
            1 => Policy {
                min_mode: ConsentMode::None,
                overrides: [("US".to_owned(), ConsentMode::None)].into(),
            },
            2 => Policy {
                min_mode: ConsentMode::NotifyAndAllowOptOut,
                overrides: BTreeMap::new(),
            },
            _ => Policy::default(),
        };
        let config = EngineConfig {
            policy,
            recorder_location: PLACES[sc.recorder].map(loc),
            grace: sc.grace,
            decline_policy: sc.decline_policy,
            keys: Default::default(),
        };
        let oracle = Oracle {
            decline_policy: Some(sc.decline_policy),
            grace: sc.grace,
            ..Oracle::default()
        };
        Self {
            engine: ConsentEngine::new(rules(), config),
            oracle,
            now: 0,
            handled: 0,
            pending: Vec::new(),
            plays: 0,
            lags: 0,
            outputs: Vec::new(),
            times: vec![0],
            discards: 0,
            step: 0,
            caches: Default::default(),
            sc,
        }
    }

    fn id(&self, who: usize) -> String {
        IDS[who % self.sc.people].to_owned()
    }

    fn saw(&mut self, t: u64) {
        self.handled = self.handled.max(t);
        self.times.extend([t.saturating_sub(1), t, t + 1]);
    }

    /// Drains the engine's outputs as the shell does after every call.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(o) = self.engine.poll_output() {
            match &o {
                ConsentOutput::Audit(e) => self.oracle.audit(e).map_err(fail)?,
                ConsentOutput::PlayPrompt { prompt, to } => {
                    let (duration, audible) = self.sc.plays[self.plays % self.sc.plays.len()];
                    let lag = self.sc.lags[self.lags % self.sc.lags.len()];
                    self.plays += 1;
                    self.lags += 1;
                    let start = self.now;
                    let end = start + duration;
                    self.pending.push(Pending {
                        report_at: end + lag,
                        prompt: *prompt,
                        to: to.clone(),
                        start,
                        end,
                        audible,
                    });
                }
                ConsentOutput::DiscardAll => {
                    self.discards += 1;
                    // The Discarded audit event came before it...
                    let discarded_logged =
                        self.outputs.iter().rev().any(|o| {
                            matches!(o, ConsentOutput::Audit(AuditEvent::Discarded { .. }))
                        });
                    prop_assert!(discarded_logged, "DiscardAll before its audit event");
                    // ...and every gate is closed in the log already.
                    for (id, g) in &self.oracle.gates {
                        prop_assert!(
                            g.last().is_none_or(|&(_, open)| !open),
                            "DiscardAll while {}'s gate is still open in the audit log",
                            id
                        );
                    }
                }
            }
            self.outputs.push(o);
        }
        Ok(())
    }

    /// Checks the verdicts of every participant's frames at some times.
    fn check_frames(&self, all: bool) -> Result<(), TestCaseError> {
        let n = self.times.len();
        let times: Vec<u64> = self
            .times
            .iter()
            .enumerate()
            .filter(|&(i, _)| all || i + 12 >= n || i % 7 == self.step % 7)
            .map(|(_, &t)| t)
            .collect();
        for id in IDS.iter().take(self.sc.people).chain([&GHOST]) {
            for &t in &times {
                let verdict = self.engine.allows(id, t);
                let mut caches = self.caches.borrow_mut();
                let cache = caches.entry(id.to_string()).or_default();
                prop_assert_eq!(
                    self.engine.allows_cached(id, t, cache),
                    verdict,
                    "the cached verdict of {} at {}",
                    id,
                    t
                );
                self.oracle.check(id, t, verdict).map_err(fail)?;
                if id == &GHOST {
                    prop_assert!(!verdict.allowed, "unknown participant allowed");
                }
            }
        }
        Ok(())
    }

    fn after_call(&mut self) -> Result<(), TestCaseError> {
        self.drain()?;
        self.check_frames(false)
    }

    /// Lets time run to `target`: prompts end and are reported, timeouts
    /// fire at poll_timeout.
    fn run_until(&mut self, target: u64) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            let poll = self.engine.poll_timeout();
            if let Some(p) = poll {
                prop_assert!(
                    p >= self.handled,
                    "poll_timeout {} is before the last handled time {}",
                    p,
                    self.handled
                );
            }
            let next_prompt = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.report_at)
                .map(|(i, p)| (i, p.report_at));
            match (next_prompt, poll) {
                (Some((i, at)), p) if at <= target && p.is_none_or(|p| at <= p) => {
                    let p = self.pending.remove(i);
                    self.now = self.now.max(at);
                    self.engine
                        .handle_prompt_played(p.prompt, &p.to, p.audible, p.start, p.end);
                    self.saw(p.start);
                    self.saw(p.end);
                    self.after_call()?;
                }
                (_, Some(p)) if p <= target => {
                    let t = p.max(self.now);
                    self.now = t;
                    self.engine.handle_timeout(t);
                    self.saw(t);
                    self.after_call()?;
                    let again = self.engine.poll_timeout();
                    prop_assert!(
                        again.is_none_or(|a| a > t),
                        "handle_timeout({}) left poll_timeout at {:?}",
                        t,
                        again
                    );
                }
                _ => {
                    self.now = self.now.max(target);
                    return Ok(());
                }
            }
        }
        Err(fail("time does not advance: endless timeouts".to_owned()))
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let t = self.now;
        match op {
            Op::Join(who) => {
                let id = self.id(*who);
                self.oracle
                    .presence
                    .entry(id.clone())
                    .or_default()
                    .push((t, true));
                self.engine.handle_join(&id, t);
            }
            Op::Leave(who) => {
                let id = self.id(*who);
                self.oracle
                    .presence
                    .entry(id.clone())
                    .or_default()
                    .push((t, false));
                self.engine.handle_leave(&id, t);
            }
            Op::Details {
                who,
                place,
                never,
                internal,
            } => {
                let id = self.id(*who);
                let capture = if *never {
                    CaptureSetting::Never
                } else {
                    CaptureSetting::Default
                };
                self.oracle
                    .capture
                    .entry(id.clone())
                    .or_default()
                    .push((t, capture));
                let d = ParticipantDetails {
                    location: PLACES[*place].map(loc),
                    internal: *internal,
                    capture,
                };
                self.engine.handle_details(&id, d, t);
            }
            Op::Signal {
                who,
                decision,
                method,
            } => {
                let id = self.id(*who);
                self.engine.handle_signal(&id, *decision, *method, t);
            }
            Op::Wait => return Ok(()),
            Op::Tick => self.engine.handle_timeout(t),
        }
        self.saw(t);
        self.after_call()
    }

    fn run(mut self) -> Result<(), TestCaseError> {
        for (i, initial) in self
            .sc
            .initial
            .clone()
            .into_iter()
            .enumerate()
            .take(self.sc.people)
        {
            if let Some((place, never)) = initial {
                self.apply(&Op::Details {
                    who: i,
                    place,
                    never,
                    internal: i % 2 == 0,
                })?;
            }
        }
        for (i, (dt, op)) in self.sc.steps.clone().iter().enumerate() {
            self.step = i;
            let target = self.now + dt;
            self.run_until(target)?;
            self.apply(op)?;
        }
        // Let every prompt end and every timeout fire, then judge every
        // frame time ever seen again (late frames).
        let end = self.now + 20 * S;
        self.run_until(end)?;
        self.check_frames(true)?;

        let declined = !self.oracle.declines.is_empty();
        if self.sc.decline_policy == DeclinePolicy::StopAndDiscard && declined {
            prop_assert_eq!(self.discards, 1, "DiscardAll exactly once");
            for id in IDS.iter().take(self.sc.people) {
                for &t in &self.times {
                    prop_assert!(!self.engine.allows(id, t).allowed);
                }
            }
        } else {
            prop_assert_eq!(self.discards, 0, "DiscardAll without a discarding decline");
        }
        Ok(())
    }
}

proptest! {
    // No regression file: the failing case is printed, and this test must
    // not write outside its own file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(512)
    })]

    /// Invariant 1 (consent gate) and 5 (audit before effect) over random
    /// calls: no frame is allowed at a time its consent did not allow it.
    #[test]
    fn no_frame_allowed_without_consent_at_its_time(sc in scenario_strategy()) {
        Sim::new(sc).run()?;
    }
}

// ---------------------------------------------------------------------------
// Deterministic scenarios
// ---------------------------------------------------------------------------

/// (a) An all-party call (the recorder is in California): a late joiner
/// pauses capture of everyone until they consent; only they hear the notice;
/// when capture resumes, everyone present hears the notice again.
#[test]
fn late_joiner_in_all_party_call_pauses_everyone_until_they_consent() {
    let mut call = Call::new(config("US-CA", 2 * S, DeclinePolicy::Stop));

    // Alice joins first: the mode is decided (California: opt-out, call-wide)
    // and she is told.
    let out = call.arrive("alice", "US", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::NotifyAndAllowOptOut, GateScope::CallWide)]
    );
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
    // Bob joins at the same moment: the mode holds, he is told on his own.
    let out = call.arrive("bob", "US", 0);
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["bob"]))]);

    // Both notices play 0..3 s; two seconds of grace later both consent.
    call.played(PromptKind::Notice, &["alice"], 0, 3 * S);
    call.played(PromptKind::Notice, &["bob"], 0, 3 * S);
    assert_eq!(call.engine.poll_timeout(), Some(5 * S));
    let out = call.timeout(5 * S);
    assert!(gate_changes(&out).contains(&gate("alice", true, GateReason::Consented)));
    assert!(gate_changes(&out).contains(&gate("bob", true, GateReason::Consented)));
    assert!(
        prompts(&out).is_empty(),
        "first opening is not a resumption"
    );
    assert!(call.allowed("alice", 5 * S) && call.allowed("bob", 9 * S));

    // Carol joins at 10 s: the notice goes to her session only, nobody else
    // is interrupted, and capture of everyone pauses.
    let out = call.arrive("carol", "US", 10 * S);
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["carol"]))]);
    assert!(gate_changes(&out).contains(&gate("alice", false, GateReason::AwaitingOthers)));
    assert!(gate_changes(&out).contains(&gate("bob", false, GateReason::AwaitingOthers)));
    assert!(
        call.allowed("alice", 10 * S - 1),
        "frames before her join stay"
    );
    assert!(!call.allowed("alice", 10 * S));
    assert!(!call.allowed("bob", 12 * S));
    assert_eq!(call.reason("alice", 12 * S), GateReason::AwaitingOthers);
    assert!(!call.allowed("carol", 12 * S));

    // Her notice plays 10..13 s; nothing before the grace has passed.
    let out = call.played(PromptKind::Notice, &["carol"], 10 * S, 13 * S);
    assert!(gate_changes(&out).is_empty());
    assert_eq!(call.engine.poll_timeout(), Some(15 * S));
    call.timeout(15 * S - 1);
    assert_eq!(call.engine.state("carol"), Some(ConsentState::Notified));
    assert!(!call.allowed("alice", 15 * S - 1));

    // At 15 s she has consented by staying: everyone resumes, and everyone
    // present hears the notice again.
    let out = call.timeout(15 * S);
    assert!(state_changes(&out).contains(&(
        "carol".to_owned(),
        ConsentState::Consented(ConsentMethod::Implicit),
        15 * S
    )));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Notice, names(&["alice", "bob", "carol"]))]
    );
    for id in ["alice", "bob", "carol"] {
        assert!(call.allowed(id, 15 * S), "{id}");
        assert!(!call.allowed(id, 15 * S - 1), "{id}");
    }
}

/// (b) Notify mode (one-party US call, recorder in the US): staying on the
/// call `grace` after the notice ends is consent, not a sample earlier.
#[test]
fn notify_mode_consents_implicitly_exactly_grace_after_the_notice() {
    let grace = 3 * S;
    let mut call = Call::new(config("US", grace, DeclinePolicy::Stop));
    let out = call.arrive("alice", "US", 0);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Notify, GateScope::PerParticipant)]
    );
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
    assert_eq!(call.engine.poll_timeout(), None, "nothing to wait for yet");

    // The notice plays from 1 s to 2.5 s.
    let end = 2 * S + S / 2;
    call.played(PromptKind::Notice, &["alice"], S, end);
    assert_eq!(call.engine.state("alice"), Some(ConsentState::Notified));
    assert_eq!(call.engine.poll_timeout(), Some(end + grace));

    // One sample early: still waiting.
    let out = call.timeout(end + grace - 1);
    assert!(out.is_empty(), "{out:?}");
    assert!(!call.allowed("alice", end + grace - 1));

    // Exactly at the deadline: implicit consent, gate open from then on.
    let out = call.timeout(end + grace);
    assert_eq!(
        state_changes(&out),
        vec![(
            "alice".to_owned(),
            ConsentState::Consented(ConsentMethod::Implicit),
            end + grace
        )]
    );
    assert_eq!(
        gate_changes(&out),
        vec![gate("alice", true, GateReason::Consented)]
    );
    assert!(!call.allowed("alice", end + grace - 1));
    assert!(call.allowed("alice", end + grace));
    assert_eq!(call.engine.poll_timeout(), None);
}

/// (c) Explicit mode (a German participant): only an explicit signal opens
/// the gate; time alone does nothing; a DTMF yes is thanked.
#[test]
fn explicit_mode_opens_only_on_an_explicit_signal() {
    let mut call = Call::new(config("US", 0, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    let out = call.arrive("dieter", "DE", 0);
    // Dieter raises the mode to explicit (Germany is all-party): everyone
    // is asked.
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Explicit, GateScope::CallWide)]
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["alice", "dieter"]))]
    );
    call.played(PromptKind::ConsentRequest, &["alice", "dieter"], 0, 4 * S);
    assert_eq!(call.engine.state("dieter"), Some(ConsentState::Notified));

    // Time passes: no implicit consent under explicit, even with zero grace.
    assert_eq!(call.engine.poll_timeout(), None);
    let out = call.timeout(60 * S);
    assert!(out.is_empty(), "{out:?}");
    assert!(!call.allowed("dieter", 60 * S));
    assert!(!call.allowed("alice", 60 * S));

    // Dieter presses 1: consented by DTMF, thanked on his own session. His
    // gate still waits for Alice (call-wide).
    let out = call.grant("dieter", ConsentMethod::Dtmf, 61 * S);
    assert_eq!(
        state_changes(&out),
        vec![(
            "dieter".to_owned(),
            ConsentState::Consented(ConsentMethod::Dtmf),
            61 * S
        )]
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Thanks, names(&["dieter"]))]
    );
    assert!(!call.allowed("dieter", 61 * S));
    assert_eq!(call.reason("dieter", 61 * S), GateReason::AwaitingOthers);

    // Alice agrees in the provider's UI (no DTMF, so no thanks prompt).
    let out = call.grant("alice", ConsentMethod::Api, 62 * S);
    assert!(prompts(&out).is_empty());
    assert!(call.allowed("alice", 62 * S));
    assert!(call.allowed("dieter", 62 * S));
    assert!(!call.allowed("dieter", 62 * S - 1));
}

/// Everyone in a one-party US call has consented by 5 s (notice 0..3 s,
/// grace 2 s).
fn consented_us_call(policy: DeclinePolicy, ids: &[&str]) -> Call {
    let mut call = Call::new(config("US", 2 * S, policy));
    for id in ids {
        call.arrive(id, "US", 0);
    }
    // Each heard the notice on their own session.
    for id in ids {
        call.played(PromptKind::Notice, &[id], 0, 3 * S);
    }
    call.timeout(5 * S);
    for id in ids {
        assert!(call.allowed(id, 5 * S), "{id}");
    }
    call
}

/// (d) Decline under `stop`: everyone's gate closes from the decline on;
/// what was captured before stays allowed; a later yes does not restart it.
#[test]
fn decline_under_stop_closes_everyone_from_then_on() {
    let mut call = consented_us_call(DeclinePolicy::Stop, &["alice", "bob"]);
    let out = call.decline("bob", 20 * S);
    let gates = gate_changes(&out);
    assert!(gates.contains(&gate("alice", false, GateReason::CallStopped)));
    assert!(gates.contains(&gate("bob", false, GateReason::CallStopped)));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Stopped, names(&["alice", "bob"]))]
    );
    assert!(!out.contains(&ConsentOutput::DiscardAll));
    assert!(call.allowed("alice", 20 * S - 1) && call.allowed("bob", 20 * S - 1));
    assert!(!call.allowed("alice", 20 * S) && !call.allowed("bob", 30 * S));

    // A new participant or a late yes does not restart capture.
    call.arrive("carol", "US", 25 * S);
    call.grant("carol", ConsentMethod::Dtmf, 26 * S);
    call.grant("bob", ConsentMethod::Dtmf, 27 * S);
    for id in ["alice", "bob", "carol"] {
        assert!(!call.allowed(id, 30 * S), "{id}");
        assert_eq!(call.reason(id, 30 * S), GateReason::CallStopped);
    }
    assert!(call.allowed("alice", 19 * S), "earlier frames stay allowed");

    // Alice declines as well: the call is stopped already, nobody is told
    // a second time.
    let out = call.decline("alice", 31 * S);
    assert!(prompts(&out).is_empty(), "{out:?}");
}

/// (d) Decline under `stop_and_discard`: the discard is written down, after
/// every gate has closed, then requested exactly once; nothing of the call
/// is allowed any more, at any time.
#[test]
fn decline_under_stop_and_discard_discards_once_and_allows_nothing() {
    let mut call = consented_us_call(DeclinePolicy::StopAndDiscard, &["alice", "bob"]);
    let out = call.decline("bob", 20 * S);
    let discard = out
        .iter()
        .position(|o| *o == ConsentOutput::DiscardAll)
        .expect("DiscardAll");
    let discarded_audit = out
        .iter()
        .position(|o| matches!(o, ConsentOutput::Audit(AuditEvent::Discarded { .. })))
        .expect("Discarded audit event");
    assert!(discarded_audit < discard);
    for id in ["alice", "bob"] {
        let close = out
            .iter()
            .position(|o| {
                matches!(o, ConsentOutput::Audit(AuditEvent::GateChanged {
                    participant, open: false, reason: GateReason::CallStopped, ..
                }) if participant == id)
            })
            .expect("gate close");
        assert!(close < discard, "{id}'s gate closes before the discard");
    }
    for t in [0, 5 * S, 19 * S, 20 * S, 100 * S] {
        assert!(!call.allowed("alice", t), "alice@{t}");
        assert!(!call.allowed("bob", t), "bob@{t}");
    }

    // Alice declines too: the call is already discarded, no second discard.
    let out = call.decline("alice", 21 * S);
    assert!(!out.contains(&ConsentOutput::DiscardAll), "{out:?}");
    let discards = call
        .log
        .iter()
        .filter(|o| **o == ConsentOutput::DiscardAll)
        .count();
    assert_eq!(discards, 1);
}

/// (d) Decline under `exclude_participant`: only the decliner is closed;
/// everyone else goes on.
#[test]
fn decline_under_exclude_participant_closes_only_the_decliner() {
    let mut call = consented_us_call(DeclinePolicy::ExcludeParticipant, &["alice", "bob"]);
    let out = call.decline("bob", 20 * S);
    assert_eq!(
        gate_changes(&out),
        vec![gate("bob", false, GateReason::Declined)]
    );
    assert!(prompts(&out).is_empty(), "nobody is told capture stopped");
    assert!(!out.contains(&ConsentOutput::DiscardAll));
    assert!(call.allowed("alice", 20 * S) && call.allowed("alice", 40 * S));
    assert!(call.allowed("bob", 20 * S - 1) && !call.allowed("bob", 20 * S));

    // A later yes does not undo the decline, nor does a rejoin.
    call.grant("bob", ConsentMethod::Dtmf, 21 * S);
    call.leave("bob", 22 * S);
    call.join("bob", 23 * S);
    assert_eq!(call.engine.state("bob"), Some(ConsentState::Declined));
    assert!(!call.allowed("bob", 30 * S));
    assert!(call.allowed("alice", 30 * S));
}

/// (d) Under a call-wide gate, an excluded decliner does not hold the others
/// back, even though they never consented.
#[test]
fn excluded_decliner_does_not_hold_back_a_call_wide_gate() {
    let mut call = Call::new(config("US-CA", 2 * S, DeclinePolicy::ExcludeParticipant));
    call.arrive("alice", "US", 0);
    call.played(PromptKind::Notice, &["alice"], 0, 3 * S);
    call.timeout(5 * S);
    assert!(call.allowed("alice", 5 * S));

    // Bob joins: Alice pauses until he consents.
    call.arrive("bob", "US", 10 * S);
    assert!(!call.allowed("alice", 10 * S));

    // Bob declines instead: he is excluded, Alice resumes (and hears the
    // notice again), Bob stays closed although present.
    let out = call.decline("bob", 11 * S);
    let gates = gate_changes(&out);
    assert!(gates.contains(&gate("alice", true, GateReason::Consented)));
    assert!(gates.contains(&gate("bob", false, GateReason::Declined)));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Notice, names(&["alice", "bob"]))]
    );
    assert!(call.allowed("alice", 11 * S));
    assert!(!call.allowed("bob", 11 * S));

    // The gate is still call-wide for others: Carol joining pauses Alice.
    call.arrive("carol", "US", 20 * S);
    assert!(!call.allowed("alice", 20 * S));
    call.grant("carol", ConsentMethod::Verbal, 21 * S);
    assert!(call.allowed("alice", 21 * S) && call.allowed("carol", 21 * S));
    assert!(!call.allowed("bob", 21 * S));
}

/// (e) The mode rises when a stricter participant joins (notify ->
/// explicit): everyone is asked again and implicit consent no longer counts.
#[test]
fn mode_rise_to_explicit_reasks_everyone_and_voids_implicit_consent() {
    let mut call = consented_us_call(DeclinePolicy::Stop, &["alice", "bob"]);
    assert_eq!(call.engine.mode(), Some(ConsentMode::Notify));

    let out = call.arrive("dieter", "DE", 20 * S);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Explicit, GateScope::CallWide)]
    );
    // Implicit consent is withdrawn...
    let states = state_changes(&out);
    assert!(states.contains(&("alice".to_owned(), ConsentState::Joined, 20 * S)));
    assert!(states.contains(&("bob".to_owned(), ConsentState::Joined, 20 * S)));
    // ...everyone present is asked, not only the newcomer...
    assert_eq!(
        prompts(&out),
        vec![(
            PromptKind::ConsentRequest,
            names(&["alice", "bob", "dieter"])
        )]
    );
    // ...and capture stops until they answer.
    for id in ["alice", "bob", "dieter"] {
        assert!(!call.allowed(id, 20 * S), "{id}");
    }
    assert!(call.allowed("alice", 20 * S - 1));

    // Hearing the request and staying does not count any more.
    call.played(
        PromptKind::ConsentRequest,
        &["alice", "bob", "dieter"],
        20 * S,
        24 * S,
    );
    assert_eq!(call.engine.poll_timeout(), None);
    call.timeout(60 * S);
    assert!(!call.allowed("alice", 60 * S));

    // Explicit answers open the gate once all three have given one.
    call.grant("alice", ConsentMethod::Dtmf, 61 * S);
    call.grant("bob", ConsentMethod::Api, 62 * S);
    assert!(!call.allowed("alice", 62 * S), "dieter still pending");
    let out = call.grant("dieter", ConsentMethod::Verbal, 63 * S);
    for id in ["alice", "bob", "dieter"] {
        assert!(call.allowed(id, 63 * S), "{id}");
    }
    // Capture resumes after a pause: announced again to everyone.
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Notice, names(&["alice", "bob", "dieter"]))]
    );
}

/// (f) Leaving and rejoining keeps the consent given earlier in the call;
/// while away nothing of theirs is allowed.
#[test]
fn rejoin_keeps_consent_given_earlier_in_the_call() {
    let mut call = Call::new(config("US", 2 * S, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    call.arrive("bob", "US", 0);
    call.grant("alice", ConsentMethod::Dtmf, S);
    call.played(PromptKind::Notice, &["bob"], 0, 3 * S);
    call.timeout(5 * S);
    assert!(call.allowed("alice", S) && call.allowed("bob", 5 * S));

    let out = call.leave("alice", 10 * S);
    assert_eq!(
        state_changes(&out),
        vec![("alice".to_owned(), ConsentState::Left, 10 * S)]
    );
    call.leave("bob", 10 * S);
    assert!(!call.allowed("alice", 15 * S));

    // Back at 20 s: her consent holds, she is not asked again. Capture had
    // stopped when everyone left, so it resuming is announced (the notice,
    // not a consent request).
    let out = call.join("alice", 20 * S);
    assert_eq!(
        state_changes(&out),
        vec![(
            "alice".to_owned(),
            ConsentState::Consented(ConsentMethod::Dtmf),
            20 * S
        )]
    );
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
    assert!(call.allowed("alice", 20 * S));
    assert!(!call.allowed("alice", 20 * S - 1));

    // Bob's implicit consent holds too; capture is running, so no prompt.
    let out = call.join("bob", 20 * S);
    assert_eq!(
        call.engine.state("bob"),
        Some(ConsentState::Consented(ConsentMethod::Implicit))
    );
    assert!(prompts(&out).is_empty(), "{out:?}");
    assert!(call.allowed("bob", 20 * S));
}

/// (f') Someone who left before the grace period ran out has not consented:
/// on rejoin they are told again and the grace starts over (staying away
/// does not count as staying on the call).
#[test]
fn rejoin_before_consenting_is_told_again() {
    let mut call = Call::new(config("US", 5 * S, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    call.played(PromptKind::Notice, &["alice"], 0, 2 * S);
    call.leave("alice", 3 * S);
    assert_eq!(call.engine.poll_timeout(), None);

    // She comes back long after the grace would have run out.
    let out = call.join("alice", 60 * S);
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);
    assert!(
        call.engine.poll_timeout().is_none_or(|p| p >= 60 * S),
        "no deadline in the past: {:?}",
        call.engine.poll_timeout()
    );
    call.timeout(60 * S);
    assert!(!call.allowed("alice", 60 * S));
    call.played(PromptKind::Notice, &["alice"], 60 * S, 62 * S);
    call.timeout(67 * S - 1);
    assert!(!call.allowed("alice", 67 * S - 1));
    call.timeout(67 * S);
    assert!(call.allowed("alice", 67 * S));
}

/// (f'') Consent given implicitly before the mode rose does not come back on
/// a rejoin: the rejoiner is asked like everyone else was.
#[test]
fn rejoin_after_mode_rose_asks_again() {
    let mut call = consented_us_call(DeclinePolicy::Stop, &["alice", "bob"]);
    call.leave("alice", 10 * S);
    // Dieter raises the mode to explicit while Alice is away; Bob answers.
    call.arrive("dieter", "DE", 12 * S);
    call.grant("bob", ConsentMethod::Dtmf, 13 * S);
    call.grant("dieter", ConsentMethod::Dtmf, 13 * S);
    assert!(call.allowed("bob", 13 * S));

    let out = call.join("alice", 20 * S);
    assert_ne!(
        call.engine.state("alice"),
        Some(ConsentState::Consented(ConsentMethod::Implicit)),
        "implicit consent does not hold under explicit"
    );
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::ConsentRequest, names(&["alice"]))]
    );
    for id in ["alice", "bob", "dieter"] {
        assert!(!call.allowed(id, 20 * S), "{id}");
    }
    call.grant("alice", ConsentMethod::Dtmf, 21 * S);
    assert!(call.allowed("alice", 21 * S) && call.allowed("bob", 21 * S));
}

/// (g) A `capture: never` participant joining mid-call closes everyone's
/// gate (reason: never-capture participant present) until they leave.
#[test]
fn never_capture_participant_blocks_everyone_while_present() {
    let mut call = consented_us_call(DeclinePolicy::Stop, &["alice", "bob"]);

    // Nora's details arrive first (she never may be captured), then her audio.
    let out = call.details("nora", Some("US"), CaptureSetting::Never, 9 * S);
    assert!(gate_changes(&out).iter().all(|(id, _, _)| id == "nora"));
    assert!(call.allowed("alice", 9 * S), "not on the call yet");
    let out = call.join("nora", 10 * S);
    let gates = gate_changes(&out);
    for id in ["alice", "bob", "nora"] {
        assert!(
            gates.contains(&gate(id, false, GateReason::NeverCaptureParticipantPresent)),
            "{id}: {gates:?}"
        );
        assert!(!call.allowed(id, 10 * S));
    }
    assert!(call.allowed("alice", 10 * S - 1));

    // Her consent changes nothing.
    call.played(PromptKind::Notice, &["nora"], 10 * S, 12 * S);
    call.grant("nora", ConsentMethod::Dtmf, 13 * S);
    call.timeout(20 * S);
    assert_eq!(
        call.reason("alice", 20 * S),
        GateReason::NeverCaptureParticipantPresent
    );
    assert!(!call.allowed("nora", 20 * S));

    // She leaves: the others reopen and hear the notice again.
    let out = call.leave("nora", 30 * S);
    let gates = gate_changes(&out);
    assert!(gates.contains(&gate("alice", true, GateReason::Consented)));
    assert!(gates.contains(&gate("bob", true, GateReason::Consented)));
    assert_eq!(
        prompts(&out),
        vec![(PromptKind::Notice, names(&["alice", "bob"]))]
    );
    assert!(!call.allowed("alice", 30 * S - 1));
    assert!(call.allowed("alice", 30 * S) && call.allowed("bob", 30 * S));
    assert!(!call.allowed("nora", 30 * S));
}

// ---------------------------------------------------------------------------
// Regressions for engine bugs the property test found (see engine.rs, FIX)
// ---------------------------------------------------------------------------

/// A prompt's end is reported late (after other events): the gate's history
/// before the report is not rewritten, and the audit log stays in time order.
#[test]
fn late_prompt_report_does_not_rewrite_gate_history() {
    let mut call = Call::new(config("US", 0, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    // Nora (never captured) is on the call from 1 s to 3 s.
    call.details("nora", Some("US"), CaptureSetting::Never, S);
    call.join("nora", S);
    call.leave("nora", 3 * S);
    // Alice's notice ran 0..2 s, but its end is only reported at 4 s.
    let out = call.played(PromptKind::Notice, &["alice"], 0, 2 * S);
    for (id, _, t) in state_changes(&out) {
        assert!(t >= 3 * S, "{id}'s change back-dated to {t}");
    }
    assert!(!call.allowed("alice", 2 * S), "nora was present");
    assert!(!call.allowed("alice", 2 * S + S / 2), "nora was present");
    assert!(call.allowed("alice", 4 * S));
    let times: Vec<f64> = call
        .log
        .iter()
        .filter_map(|o| match o {
            ConsentOutput::Audit(AuditEvent::StateChanged { t, .. })
            | ConsentOutput::Audit(AuditEvent::GateChanged { t, .. }) => Some(*t),
            _ => None,
        })
        .collect();
    assert!(times.is_sorted(), "{times:?}");
}

/// The mode falls from explicit to notify (a location is corrected) long
/// after the consent request ended: the implicit-consent deadline is due
/// now, not in the past, and consent is not stamped at a time the mode was
/// still explicit.
#[test]
fn mode_falling_from_explicit_sets_no_deadline_in_the_past() {
    let mut call = Call::new(config("US", S, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    call.arrive("dieter", "DE", 0);
    call.played(PromptKind::ConsentRequest, &["alice", "dieter"], 0, 2 * S);
    assert_eq!(call.engine.poll_timeout(), None);

    let out = call.details("dieter", Some("US"), CaptureSetting::Default, 10 * S);
    assert_eq!(
        modes(&out),
        vec![(ConsentMode::Notify, GateScope::PerParticipant)]
    );
    assert_eq!(call.engine.poll_timeout(), Some(10 * S));
    let out = call.timeout(10 * S);
    let implicit = ConsentState::Consented(ConsentMethod::Implicit);
    assert_eq!(
        state_changes(&out),
        vec![
            ("alice".to_owned(), implicit, 10 * S),
            ("dieter".to_owned(), implicit, 10 * S)
        ]
    );
    assert_eq!(call.engine.poll_timeout(), None);
    assert!(!call.allowed("alice", 10 * S - 1));
    assert!(call.allowed("alice", 10 * S));
}

/// A participant who left during their notice and came back did not hear
/// it: its (later) report does not count, the notice they get on return does.
#[test]
fn notice_missed_by_leaving_does_not_count_after_rejoin() {
    let mut call = Call::new(config("US", S, DeclinePolicy::Stop));
    call.arrive("alice", "US", 0);
    call.leave("alice", S);
    let out = call.join("alice", 2 * S);
    assert_eq!(prompts(&out), vec![(PromptKind::Notice, names(&["alice"]))]);

    // The first notice (0..3 s) ends: she was away for part of it.
    let out = call.played(PromptKind::Notice, &["alice"], 0, 3 * S);
    assert!(state_changes(&out).is_empty(), "{out:?}");
    assert_eq!(call.engine.state("alice"), Some(ConsentState::Joined));
    assert_eq!(call.engine.poll_timeout(), None);
    call.timeout(10 * S);
    assert!(!call.allowed("alice", 10 * S));

    // The notice played on her return (10..12 s) counts.
    call.played(PromptKind::Notice, &["alice"], 10 * S, 12 * S);
    assert_eq!(call.engine.poll_timeout(), Some(13 * S));
    call.timeout(13 * S);
    assert!(call.allowed("alice", 13 * S));
}
