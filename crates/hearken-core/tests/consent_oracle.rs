//! The consent gate against an oracle that does not come from the engine.
//!
//! Random calls run through a [`Conference`] in simulated time: people join
//! and leave, the provider sends details (or not, or late), prompts play (or
//! cannot be heard), people press keys and the provider reports consent.
//! Every participant sends a frame every 100 ms while on the call.
//!
//! The oracle knows only what the test itself did and the shipped rules
//! file, read here as plain YAML (not through `hearken_core::consent::rules`):
//! for each participant, the mode their own location and the recorder's
//! require (`max(default_mode, legal_floor)` of their entry, as the file's
//! `decision_model.per_participant_mode` says, with a subdivision raised to
//! its country's floor and all-party when its country is, as
//! `decision_model.subdivisions` says; `default_unknown` when no location is
//! known once the details wait is over), whether the call is all-party, and
//! when each person was informed, consented or declined.
//! From that alone it checks every frame that reached a sink:
//!
//! - **safety**: it was covered by the consent its speaker's mode requires
//!   (and, on an all-party call, everyone else's present then), nobody on
//!   the call at its time was `capture: never` (as known within the details
//!   wait), and no decline preceded its capture;
//! - **held frames**: a frame the gate held reached a sink only in a commit,
//!   and no frame reached a sink twice;
//! - **no loss**: in calls under the notify modes where everyone stays, is
//!   informed and nobody declines, every frame from the first one reached a
//!   sink by the end.

#![allow(clippy::disallowed_methods)] // tests pick a real Instant to start from

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hearken_core::conference::{
    AudioFrame, Conference, ConferenceOutput, ParticipantIdx, SessionKey,
};
use hearken_core::consent::engine::{
    ConsentEngine, ConsentMethod, ConsentOutput, Decision, DeclinePolicy, Delivery, EngineConfig,
    HoldConfig, ParticipantDetails, PromptKind, SignalEvidence,
};
use hearken_core::consent::rules::{Location, Rules};
use hearken_core::dtmf::DtmfKey;
use hearken_core::ids::CallId;
use hearken_core::voice::VoiceHint;
use proptest::prelude::*;

const SECOND: u64 = 48_000;
const MS: u64 = 48;
const FRAME_EVERY: u64 = 100 * MS;
const DETAILS_WAIT: u64 = SECOND;

fn prompt_length(kind: PromptKind) -> u64 {
    match kind {
        PromptKind::Notice => 5_800 * MS,
        PromptKind::ConsentRequest => 6_500 * MS,
        PromptKind::Thanks => 1_000 * MS,
        PromptKind::Stopped => 2_000 * MS,
    }
}

// ---------------------------------------------------------------------------
// The rules, as plain YAML.

const MODES: [&str; 4] = ["none", "notify", "notify_and_allow_opt_out", "explicit"];

/// A mode as its rank in `modes.order` (0 = none … 3 = explicit).
type Rank = usize;

struct LawBook {
    default_unknown: Rank,
    entries: BTreeMap<String, (Rank, bool)>,
}

fn rank(name: &str) -> Rank {
    MODES
        .iter()
        .position(|m| *m == name)
        .unwrap_or_else(|| panic!("unknown mode {name}"))
}

impl LawBook {
    fn read() -> Self {
        let text = include_str!("../../../consent/rules.yaml");
        let doc: serde_norway::Value = serde_norway::from_str(text).unwrap();
        let order: Vec<&str> = doc["modes"]["order"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(order, MODES, "the oracle's mode order is the file's");
        let default_unknown = rank(doc["decision_model"]["default_unknown"].as_str().unwrap());
        let mut entries = BTreeMap::new();
        let one_rule = |code: &str, e: &serde_norway::Value| {
            assert!(
                e.get("legal_floor_by_media").is_none() && e.get("default_mode_by_media").is_none(),
                "{code}: the oracle's places have one rule for every medium"
            );
        };
        for code in PLACES.iter().chain(RECORDERS.iter()).flatten() {
            let e = &doc["jurisdictions"][*code];
            one_rule(code, e);
            assert!(e.is_mapping(), "{code}: the oracle's places have entries");
            let mut floor = rank(e["legal_floor"].as_str().unwrap());
            let mut all_party = e["category"].as_str() == Some("all_party");
            // A subdivision never weakens its country's entry.
            if let Some((country, _)) = code.split_once('-') {
                let c = &doc["jurisdictions"][country];
                one_rule(country, c);
                floor = floor.max(rank(c["legal_floor"].as_str().unwrap()));
                all_party |= c["category"].as_str() == Some("all_party");
            }
            let mode = rank(e["default_mode"].as_str().unwrap()).max(floor);
            entries.insert((*code).to_owned(), (mode, all_party));
        }
        Self {
            default_unknown,
            entries,
        }
    }

    /// (mode, all-party) of a location; unknown: `default_unknown`.
    fn of(&self, code: Option<&str>) -> (Rank, bool) {
        code.map_or((self.default_unknown, false), |c| self.entries[c])
    }
}

/// Where the oracle's people can be: one-party notify (New York), all-party
/// opt-out (California, Illinois), one-party opt-out (UK), a notify state
/// under its country's opt-out floor (Victoria), all-party explicit
/// (Germany), unknown.
const PLACES: [Option<&str>; 7] = [
    Some("US-NY"),
    Some("US-CA"),
    Some("AU-VIC"),
    Some("US-IL"),
    Some("GB"),
    Some("DE"),
    None,
];
const RECORDERS: [Option<&str>; 3] = [Some("US-NY"), Some("US-CA"), Some("GB")];
const BENIGN_PLACES: [Option<&str>; 5] = [
    Some("US-NY"),
    Some("US-CA"),
    Some("US-IL"),
    Some("GB"),
    Some("AU-VIC"),
];

// ---------------------------------------------------------------------------
// Scenarios.

#[derive(Debug, Clone, Copy, PartialEq)]
enum DetailsAt {
    /// Before the call starts.
    PreCall,
    /// This long after their first join (within the wait when short).
    AfterJoin(u64),
    /// Never.
    Never,
}

#[derive(Debug, Clone)]
struct Person {
    place: Option<&'static str>,
    never: bool,
    audible: bool,
    details: DetailsAt,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Join(usize),
    Leave(usize),
    ApiGrant(usize),
    ApiDecline(usize),
    DtmfAgree(usize),
    DtmfDecline(usize),
    Notice(usize),
}

#[derive(Debug, Clone)]
struct Scenario {
    recorder: Option<&'static str>,
    grace: u64,
    policy: DeclinePolicy,
    hold_under_explicit: bool,
    people: Vec<Person>,
    /// (wait before it, op).
    ops: Vec<(u64, Op)>,
    tail: u64,
    /// Built to be a call nobody should lose anything of.
    benign: bool,
}

fn details_strategy() -> impl Strategy<Value = DetailsAt> {
    prop_oneof![
        3 => Just(DetailsAt::PreCall),
        2 => (0u64..900).prop_map(|ms| DetailsAt::AfterJoin(ms * MS)),
        1 => (1_500u64..20_000).prop_map(|ms| DetailsAt::AfterJoin(ms * MS)),
        1 => Just(DetailsAt::Never),
    ]
}

fn person_strategy() -> impl Strategy<Value = Person> {
    (
        prop::sample::select(PLACES.to_vec()),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.75),
        details_strategy(),
    )
        .prop_map(|(place, never, audible, details)| Person {
            place,
            never,
            audible,
            details,
        })
}

fn op_strategy(people: usize) -> impl Strategy<Value = Op> {
    let who = 0..people;
    prop_oneof![
        4 => who.clone().prop_map(Op::Join),
        2 => who.clone().prop_map(Op::Leave),
        1 => who.clone().prop_map(Op::ApiGrant),
        1 => who.clone().prop_map(Op::ApiDecline),
        2 => who.clone().prop_map(Op::DtmfAgree),
        1 => who.clone().prop_map(Op::DtmfDecline),
        1 => who.prop_map(Op::Notice),
    ]
}

fn wild_strategy() -> impl Strategy<Value = Scenario> {
    (1usize..=3)
        .prop_flat_map(|n| {
            (
                prop::sample::select(RECORDERS.to_vec()),
                prop_oneof![Just(SECOND / 2), Just(2 * SECOND)],
                prop_oneof![
                    Just(DeclinePolicy::Stop),
                    Just(DeclinePolicy::StopAndDiscard),
                    Just(DeclinePolicy::ExcludeParticipant)
                ],
                any::<bool>(),
                prop::collection::vec(person_strategy(), n),
                prop::collection::vec((0u64..4_000, op_strategy(n)), 2..14),
            )
        })
        .prop_map(
            |(recorder, grace, policy, hold_under_explicit, people, ops)| {
                let mut ops: Vec<(u64, Op)> =
                    ops.into_iter().map(|(ms, op)| (ms * MS, op)).collect();
                // The call starts with someone joining.
                ops.insert(0, (0, Op::Join(0)));
                Scenario {
                    recorder,
                    grace,
                    policy,
                    hold_under_explicit,
                    people,
                    ops,
                    tail: 20 * SECOND,
                    benign: false,
                }
            },
        )
}

/// Everyone under a notify mode, told, staying, nobody declining.
fn benign_strategy() -> impl Strategy<Value = Scenario> {
    (1usize..=3)
        .prop_flat_map(|n| {
            (
                prop::sample::select(RECORDERS.to_vec()),
                prop_oneof![Just(SECOND / 2), Just(2 * SECOND)],
                prop::collection::vec(
                    (
                        prop::sample::select(BENIGN_PLACES.to_vec()),
                        any::<bool>(),
                        prop_oneof![
                            Just(DetailsAt::PreCall),
                            (0u64..900).prop_map(|ms| DetailsAt::AfterJoin(ms * MS))
                        ],
                    ),
                    n,
                ),
                prop::collection::vec(0u64..6_000, n),
            )
        })
        .prop_map(|(recorder, grace, people, gaps)| {
            let mut ops = Vec::new();
            for (i, ((_, audible, _), gap)) in people.iter().zip(&gaps).enumerate() {
                let gap = if i == 0 { 0 } else { gap * MS };
                ops.push((gap, Op::Join(i)));
                if !audible {
                    // Cannot hear the bot: the provider shows its own notice.
                    ops.push((0, Op::Notice(i)));
                }
            }
            Scenario {
                recorder,
                grace,
                policy: DeclinePolicy::Stop,
                hold_under_explicit: false,
                people: people
                    .into_iter()
                    .map(|(place, audible, details)| Person {
                        place,
                        never: false,
                        audible,
                        details,
                    })
                    .collect(),
                ops,
                tail: 20 * SECOND,
                benign: true,
            }
        })
}

// ---------------------------------------------------------------------------
// The call, in simulated time.

#[derive(Debug, Default)]
struct PersonLog {
    /// [join, leave) on the call.
    stays: Vec<(u64, Option<u64>)>,
    /// When details were sent, with capture: never.
    details_sent: Option<(u64, bool)>,
    /// Prompts heard whole while on the call: (kind, start, end).
    heard: Vec<(PromptKind, u64, u64)>,
    provider_notices: Vec<u64>,
    /// API signals (always valid): (time, granted).
    api: Vec<(u64, bool)>,
    /// Keys: (time, granted, a provider notice had been given before it,
    /// in the order things happened).
    keys: Vec<(u64, bool, bool)>,
}

#[derive(Debug)]
struct FrameLog {
    who: usize,
    t: u64,
    held: bool,
    /// (when it reached a sink, in a commit).
    sunk: Vec<(u64, bool)>,
}

struct Live {
    session: SessionKey,
    idx: ParticipantIdx,
    next_frame: u64,
    playing: Option<(PromptKind, u64, u64)>,
    queue: VecDeque<PromptKind>,
}

struct Call {
    sc: Scenario,
    conference: Conference,
    t0: Instant,
    utc0: DateTime<Utc>,
    now: u64,
    next_session: u64,
    started: bool,
    live: Vec<Option<Live>>,
    log: Vec<PersonLog>,
    frames: Vec<FrameLog>,
    discard_all: Vec<u64>,
    discard_person: Vec<(u64, usize)>,
    /// Non-audible prompt reports to make after the current drain.
    silent: Vec<(PromptKind, String)>,
}

fn id(who: usize) -> String {
    format!("p{who}")
}

impl Call {
    fn new(sc: Scenario) -> Self {
        let rules = Arc::new(Rules::builtin());
        let engine = ConsentEngine::new(
            rules,
            EngineConfig {
                recorder_location: sc.recorder.map(|c| Location::from_code(c).unwrap()),
                grace: sc.grace,
                decline_policy: sc.policy,
                hold: HoldConfig {
                    under_explicit: sc.hold_under_explicit,
                    ..HoldConfig::default()
                },
                details_wait: DETAILS_WAIT,
                ..EngineConfig::default()
            },
        );
        let n = sc.people.len();
        let mut call = Self {
            conference: Conference::new(CallId::parse("oracle").unwrap(), engine),
            t0: Instant::now(),
            utc0: Utc::now(),
            now: 0,
            next_session: 1,
            started: false,
            live: (0..n).map(|_| None).collect(),
            log: (0..n).map(|_| PersonLog::default()).collect(),
            frames: Vec::new(),
            discard_all: Vec::new(),
            discard_person: Vec::new(),
            silent: Vec::new(),
            sc,
        };
        for who in 0..n {
            if call.sc.people[who].details == DetailsAt::PreCall {
                call.send_details(who);
            }
        }
        call
    }

    fn at(&self, t: u64) -> Instant {
        self.t0 + Duration::from_nanos(t * 1_000_000_000 / SECOND)
    }

    fn send_details(&mut self, who: usize) {
        if self.log[who].details_sent.is_some() {
            return;
        }
        let p = &self.sc.people[who];
        let details = ParticipantDetails {
            location: p.place.map(|c| Location::from_code(c).unwrap()),
            capture: if p.never {
                hearken_core::consent::engine::CaptureSetting::Never
            } else {
                hearken_core::consent::engine::CaptureSetting::Default
            },
            ..ParticipantDetails::default()
        };
        self.log[who].details_sent = Some((self.now, p.never));
        let now = self.at(self.now);
        self.conference.handle_details(&id(who), details, now);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            while let Some(out) = self.conference.poll_output() {
                match out {
                    ConferenceOutput::Frame(f) => self.sunk(&f.payload, false),
                    ConferenceOutput::Frames(batch) => {
                        for f in batch {
                            self.sunk(&f.payload, true);
                        }
                    }
                    ConferenceOutput::Consent(ConsentOutput::PlayPrompt { prompt, to }) => {
                        for target in to {
                            let who: usize = target[1..].parse().unwrap();
                            let audible = self.sc.people[who].audible;
                            match self.live[who].as_mut() {
                                Some(live) if audible => live.queue.push_back(prompt),
                                _ => self.silent.push((prompt, target)),
                            }
                        }
                    }
                    ConferenceOutput::Consent(ConsentOutput::DiscardAll) => {
                        self.discard_all.push(self.now);
                    }
                    ConferenceOutput::DiscardParticipant { participant_id, .. } => {
                        let who: usize = participant_id[1..].parse().unwrap();
                        self.discard_person.push((self.now, who));
                    }
                    _ => {}
                }
            }
            self.start_prompts();
            if self.silent.is_empty() {
                break;
            }
            let now = self.at(self.now);
            for (prompt, target) in std::mem::take(&mut self.silent) {
                self.conference.handle_prompt_played(
                    prompt,
                    &[target],
                    Delivery::Inaudible,
                    now,
                    now,
                );
            }
        }
    }

    fn sunk(&mut self, payload: &[u8], commit: bool) {
        let n = u32::from_be_bytes(payload[1..5].try_into().unwrap()) as usize;
        self.frames[n].sunk.push((self.now, commit));
    }

    fn start_prompts(&mut self) {
        for live in self.live.iter_mut().flatten() {
            if live.playing.is_none()
                && let Some(kind) = live.queue.pop_front()
            {
                live.playing = Some((kind, self.now, self.now + prompt_length(kind)));
            }
        }
    }

    fn present(&self, who: usize) -> bool {
        self.live[who].is_some()
    }

    fn op(&mut self, op: Op) {
        let now = self.at(self.now);
        match op {
            Op::Join(who) if !self.present(who) => {
                let session = SessionKey(self.next_session);
                self.next_session += 1;
                self.conference
                    .handle_session_added(session, &format!("s{}", session.0));
                let idx = self
                    .conference
                    .handle_speaker_added(session, "0", Some(&id(who)), now);
                self.live[who] = Some(Live {
                    session,
                    idx,
                    next_frame: self.now + 20 * MS,
                    playing: None,
                    queue: VecDeque::new(),
                });
                self.log[who].stays.push((self.now, None));
                let utc = self.utc0 + chrono::Duration::milliseconds((self.now / MS) as i64);
                self.conference.handle_session_connected(session, now, utc);
                self.started = true;
                self.drain();
            }
            Op::Leave(who) if self.present(who) => {
                let live = self.live[who].take().unwrap();
                if let Some((kind, start, _)) = live.playing {
                    // Cut short: reported as played until now, not heard whole.
                    self.conference.handle_prompt_played(
                        kind,
                        &[id(who)],
                        Delivery::Interrupted,
                        self.at(start),
                        now,
                    );
                }
                if let Some(stay) = self.log[who].stays.last_mut() {
                    stay.1 = Some(self.now);
                }
                self.conference.handle_session_removed(live.session, now);
                self.drain();
            }
            Op::ApiGrant(who) | Op::ApiDecline(who) => {
                let granted = matches!(op, Op::ApiGrant(_));
                self.log[who].api.push((self.now, granted));
                let decision = if granted {
                    Decision::Granted
                } else {
                    Decision::Declined
                };
                self.conference.handle_signal(
                    &id(who),
                    decision,
                    ConsentMethod::Api,
                    SignalEvidence::default(),
                    now,
                );
                self.drain();
            }
            Op::DtmfAgree(who) | Op::DtmfDecline(who) if self.present(who) => {
                let granted = matches!(op, Op::DtmfAgree(_));
                let noticed = !self.log[who].provider_notices.is_empty();
                self.log[who].keys.push((self.now, granted, noticed));
                let key = if granted {
                    DtmfKey::Digit1
                } else {
                    DtmfKey::Digit9
                };
                let idx = self.live[who].as_ref().unwrap().idx;
                self.conference.handle_digit(idx, key, now);
                self.drain();
            }
            Op::Notice(who) if self.started => {
                self.log[who].provider_notices.push(self.now);
                let utc = self.utc0 + chrono::Duration::milliseconds((self.now / MS) as i64);
                self.conference
                    .handle_notice(&id(who), utc, "provider_ui", now);
                self.drain();
            }
            _ => {}
        }
    }

    /// Runs everything due up to `target`.
    fn run_until(&mut self, target: u64) {
        loop {
            let mut next = u64::MAX;
            for live in self.live.iter().flatten() {
                next = next.min(live.next_frame);
                if let Some((_, _, end)) = live.playing {
                    next = next.min(end);
                }
            }
            for (who, p) in self.sc.people.iter().enumerate() {
                if let (DetailsAt::AfterJoin(after), Some((first, _))) =
                    (p.details, self.log[who].stays.first())
                    && self.log[who].details_sent.is_none()
                {
                    next = next.min(first + after);
                }
            }
            if let Some(deadline) = self.conference.poll_timeout() {
                let t = hearken_core::conference::samples_between(self.t0, deadline);
                next = next.min(t.max(self.now));
            }
            if next > target {
                break;
            }
            self.now = self.now.max(next);
            let now = self.at(self.now);
            // Everyone's details due now go in before any audio of this
            // instant: the oracle takes details sent at `x` as known at `x`.
            for who in 0..self.live.len() {
                let details_due = matches!(
                    (self.sc.people[who].details, self.log[who].stays.first()),
                    (DetailsAt::AfterJoin(after), Some((first, _))) if first + after <= self.now
                );
                if details_due {
                    self.send_details(who);
                }
            }
            for who in 0..self.live.len() {
                let Some(live) = self.live[who].as_mut() else {
                    continue;
                };
                if let Some((kind, start, end)) = live.playing
                    && end <= self.now
                {
                    live.playing = None;
                    self.log[who].heard.push((kind, start, end));
                    self.conference.handle_prompt_played(
                        kind,
                        &[id(who)],
                        Delivery::Whole,
                        self.at(start),
                        now,
                    );
                    self.drain();
                }
                let Some(live) = self.live[who].as_mut() else {
                    continue;
                };
                if live.next_frame <= self.now {
                    let t = live.next_frame;
                    live.next_frame += FRAME_EVERY;
                    let (session, idx) = (live.session, live.idx);
                    let n = self.frames.len() as u32;
                    let mut payload = vec![0xFC];
                    payload.extend_from_slice(&n.to_be_bytes());
                    self.frames.push(FrameLog {
                        who,
                        t,
                        held: false,
                        sunk: Vec::new(),
                    });
                    let frame = AudioFrame {
                        rtp_time: 1_000_000 + t,
                        seq_first: u64::from(n),
                        seq_last: u64::from(n),
                        arrival: self.at(t),
                        payload: Arc::from(payload),
                        voice: VoiceHint::default(),
                        source: None,
                    };
                    let stats = self.conference.handle_audio(session, idx, frame);
                    self.frames[n as usize].held = stats.held;
                    self.drain();
                }
            }
            if self
                .conference
                .poll_timeout()
                .is_some_and(|d| d <= self.at(self.now))
            {
                self.conference.handle_timeout(now);
                self.drain();
            }
        }
        self.now = self.now.max(target);
    }

    fn run(mut self) -> Result<(), TestCaseError> {
        for (gap, op) in self.sc.ops.clone() {
            let target = self.now + gap;
            self.run_until(target);
            self.op(op);
        }
        let end = self.now + self.sc.tail;
        self.run_until(end);
        let now = self.at(self.now);
        for who in 0..self.live.len() {
            if self.present(who) {
                self.op(Op::Leave(who));
            }
        }
        self.conference
            .handle_end(now, self.utc0, hearken_core::conference::EndReason::Api);
        self.drain();
        Oracle::new(&self).check()
    }
}

// ---------------------------------------------------------------------------
// The oracle.

struct Oracle<'a> {
    call: &'a Call,
    law: LawBook,
    end: u64,
}

impl<'a> Oracle<'a> {
    fn new(call: &'a Call) -> Self {
        Self {
            call,
            law: LawBook::read(),
            end: call.now,
        }
    }

    fn stay_at(&self, who: usize, t: u64) -> Option<(u64, u64)> {
        self.call.log[who]
            .stays
            .iter()
            .map(|&(a, b)| (a, b.unwrap_or(u64::MAX)))
            .find(|&(a, b)| a <= t && t < b)
    }

    fn present(&self, who: usize, t: u64) -> bool {
        self.stay_at(who, t).is_some()
    }

    /// On the call strictly around `t`: someone joining at the very moment
    /// of a frame is not taken to have heard it.
    fn there_before(&self, who: usize, t: u64) -> bool {
        self.stay_at(who, t).is_some_and(|(join, _)| join < t)
    }

    fn first_join(&self, who: usize) -> Option<u64> {
        self.call.log[who].stays.first().map(|s| s.0)
    }

    /// Their details as known at `x`: `None` while the details wait runs,
    /// else their place (or unknown) and capture: never.
    fn known(&self, who: usize, x: u64) -> Option<(Option<&'static str>, bool)> {
        let p = &self.call.sc.people[who];
        match self.call.log[who].details_sent {
            Some((at, never)) if at <= x => Some((p.place, never)),
            _ => {
                // The wait ends DETAILS_WAIT after the first join, or with
                // the call, whichever is first; leaving does not end it
                // (details posted after a quick leave still count).
                let first_join = self.first_join(who);
                let waited =
                    first_join.is_some_and(|join| x >= (join + DETAILS_WAIT).min(self.end));
                waited.then_some((None, false))
            }
        }
    }

    fn recorder(&self) -> (Rank, bool) {
        self.law.of(self.call.sc.recorder)
    }

    /// The mode `who`'s own location (and the recorder's) requires, as known
    /// at `x`; `None` while unknown.
    fn required(&self, who: usize, x: u64) -> Option<Rank> {
        let (place, _) = self.known(who, x)?;
        Some(self.law.of(place).0.max(self.recorder().0))
    }

    fn all_party(&self, who: usize, x: u64) -> bool {
        self.known(who, x)
            .is_some_and(|(place, _)| self.law.of(place).1)
    }

    /// Times a valid signal was given: API always; a key only after the
    /// prompt it answers finished for them in that stay.
    fn signals(&self, who: usize, granted: bool) -> Vec<u64> {
        let log = &self.call.log[who];
        let mut times: Vec<u64> = log
            .api
            .iter()
            .filter(|(_, g)| *g == granted)
            .map(|(t, _)| *t)
            .collect();
        for &(t, g, noticed) in &log.keys {
            if g != granted || self.stay_at(who, t).is_none() {
                continue;
            }
            // Heard whole at any time in the call before the key.
            let heard = log.heard.iter().any(|&(kind, start, end)| {
                self.stay_at(who, start)
                    .is_some_and(|(_, leave)| end <= leave)
                    && end <= t
                    && (kind == PromptKind::ConsentRequest
                        || (!granted && kind == PromptKind::Notice))
            });
            if heard || noticed {
                times.push(t);
            }
        }
        times.sort_unstable();
        times
    }

    fn first_decline(&self, who: usize) -> Option<u64> {
        self.signals(who, false).first().copied()
    }

    /// When `who` first gave explicit consent not preceded by a decline.
    fn explicit_consent(&self, who: usize) -> Option<u64> {
        let decline = self.first_decline(who).unwrap_or(u64::MAX);
        self.signals(who, true).into_iter().find(|&g| g < decline)
    }

    /// When `who` had been informed and stayed through the grace period in
    /// one stay (and had not declined by then).
    fn implicit_consent(&self, who: usize) -> Option<u64> {
        let log = &self.call.log[who];
        let decline = self.first_decline(who).unwrap_or(u64::MAX);
        let grace = self.call.sc.grace;
        let mut best = None::<u64>;
        for &(join, leave) in &log.stays {
            let leave = leave.unwrap_or(u64::MAX);
            let heard = log
                .heard
                .iter()
                .filter(|&&(kind, start, end)| {
                    kind == PromptKind::Notice && start >= join && end <= leave
                })
                .map(|&(_, _, end)| end);
            let shown = log
                .provider_notices
                .iter()
                .filter(|&&n| n < leave)
                .map(|&n| n.max(join));
            for informed in heard.chain(shown) {
                let at = informed + grace;
                if at <= leave && at <= decline {
                    best = Some(best.map_or(at, |b| b.min(at)));
                }
            }
        }
        best
    }

    /// Whether `who`'s own consent covers audio at `t` once it reached a
    /// sink at `s`.
    fn covered(&self, who: usize, t: u64, s: u64) -> bool {
        let Some(mode) = self.required(who, s) else {
            return false;
        };
        match mode {
            0 | 1 => true,
            2 => {
                self.implicit_consent(who).is_some_and(|i| i <= s)
                    || self.explicit_consent(who).is_some_and(|c| c <= s)
            }
            _ => {
                let by = if self.call.sc.hold_under_explicit {
                    s
                } else {
                    t
                };
                self.explicit_consent(who).is_some_and(|c| c <= by)
            }
        }
    }

    /// Whether the call was all-party at `t`, as known at `s`.
    fn all_party_call(&self, t: u64, s: u64) -> bool {
        let people = 0..self.call.sc.people.len();
        let any = self.recorder().1
            || people
                .clone()
                .any(|q| self.there_before(q, t) && self.all_party(q, s));
        let mode = people
            .filter(|&q| self.there_before(q, t))
            .filter_map(|q| self.required(q, s))
            .max()
            .unwrap_or(0)
            .max(self.recorder().0);
        any && mode > 0
    }

    /// When a decline stopped the call, if one did.
    fn stopped_at(&self) -> Option<u64> {
        let mut first = None::<u64>;
        for q in 0..self.call.sc.people.len() {
            let Some(d) = self.first_decline(q) else {
                continue;
            };
            // A decline given while away takes effect when they come.
            let effective = if self.present(q, d) {
                Some(d)
            } else {
                self.call.log[q].stays.iter().map(|s| s.0).find(|&j| j > d)
            };
            let Some(at) = effective else {
                continue;
            };
            let stops = match self.call.sc.policy {
                DeclinePolicy::Stop | DeclinePolicy::StopAndDiscard => true,
                DeclinePolicy::ExcludeParticipant => self.all_party_call(at, at),
            };
            if stops {
                first = Some(first.map_or(at, |f| f.min(at)));
            }
        }
        first
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let stopped = self.stopped_at();
        for (n, f) in self.call.frames.iter().enumerate() {
            prop_assert!(
                f.sunk.len() <= 1,
                "frame {n} of p{} reached a sink {} times",
                f.who,
                f.sunk.len()
            );
            let Some(&(s, commit)) = f.sunk.first() else {
                continue;
            };
            let what = format!(
                "frame {n} of p{} spoken at {:.2} s, sunk at {:.2} s",
                f.who,
                secs(f.t),
                secs(s)
            );
            prop_assert_eq!(
                commit,
                f.held,
                "{}: held frames reach a sink only in a commit, live frames only live",
                what
            );
            if let Some(d) = self.first_decline(f.who) {
                prop_assert!(
                    s <= d,
                    "{}: after its speaker declined at {:.2} s",
                    what,
                    secs(d)
                );
            }
            if let Some(at) = stopped {
                prop_assert!(
                    s <= at,
                    "{}: after a decline stopped the call at {:.2} s",
                    what,
                    secs(at)
                );
            }
            for q in 0..self.call.sc.people.len() {
                let Some((join, _)) = self.stay_at(q, f.t).filter(|_| self.there_before(q, f.t))
                else {
                    continue;
                };
                let Some((sent, true)) = self.call.log[q].details_sent else {
                    continue;
                };
                let first = self.first_join(q).unwrap_or(join);
                prop_assert!(
                    sent >= s.max(first + DETAILS_WAIT),
                    "{}: p{} (capture: never, said at {:.2} s) was on the call",
                    what,
                    q,
                    secs(sent)
                );
            }
            let deleted = self
                .call
                .discard_person
                .iter()
                .any(|&(at, who)| who == f.who && at >= s)
                || self.call.discard_all.iter().any(|&at| at >= s);
            prop_assert!(
                self.covered(f.who, f.t, s),
                "{}: their own consent (mode {:?} as known then) did not cover it",
                what,
                self.required(f.who, s).map(|m| MODES[m])
            );
            if !deleted && !self.covered(f.who, f.t, self.end) {
                return Err(TestCaseError::fail(format!(
                    "{what}: their location, learned later, requires more ({:?}) and it was not deleted",
                    self.required(f.who, self.end).map(|m| MODES[m])
                )));
            }
            if self.all_party_call(f.t, s) {
                for q in 0..self.call.sc.people.len() {
                    if q == f.who || !self.there_before(q, f.t) {
                        continue;
                    }
                    prop_assert!(
                        self.covered(q, f.t, s),
                        "{}: all-party call, and p{} (on the call then, mode {:?}) had not consented",
                        what,
                        q,
                        self.required(q, s).map(|m| MODES[m])
                    );
                }
            }
        }
        if self.call.sc.policy == DeclinePolicy::StopAndDiscard
            && let Some(at) = stopped
            && self.call.frames.iter().any(|f| !f.sunk.is_empty())
        {
            prop_assert!(
                self.call.discard_all.iter().any(|&d| d >= at),
                "stop_and_discard: a decline at {:.2} s deleted nothing",
                secs(at)
            );
        }
        if self.call.sc.benign {
            let lost: Vec<String> = self
                .call
                .frames
                .iter()
                .filter(|f| f.sunk.is_empty())
                .map(|f| format!("p{} at {:.2} s", f.who, secs(f.t)))
                .collect();
            prop_assert!(
                lost.is_empty(),
                "a call under notify modes where everyone stayed lost {} of {} frames: {:?}",
                lost.len(),
                self.call.frames.len(),
                &lost[..lost.len().min(8)]
            );
        }
        Ok(())
    }
}

fn secs(t: u64) -> f64 {
    t as f64 / SECOND as f64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Anything can happen: nothing reaches a sink without the consent the
    /// oracle computes.
    #[test]
    fn no_frame_reaches_a_sink_without_the_consent_its_law_requires(sc in wild_strategy()) {
        Call::new(sc).run()?;
    }

    /// Everyone informed and staying under the notify modes: every frame
    /// from the first one reaches a sink, exactly once.
    #[test]
    fn no_frame_is_lost_that_consent_covers(sc in benign_strategy()) {
        Call::new(sc).run()?;
    }
}
