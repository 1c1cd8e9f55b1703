//! After the call: insights (issue 14). Who talked how much, turn-taking,
//! questions, tracked phrases and the moments worth jumping to, computed from
//! each participant's talk spans and the transcript's words.
//!
//! Pure: the shell decodes the tracks, turns each one's levels into talk
//! spans with [`talk_spans`], gathers the words and consent events into an
//! [`InsightsInput`], calls [`compute`] and writes the [`Insights`] as
//! `insights.json`; the HTTP layer reads it back and, for a share of a time
//! range, serves [`Insights::limited_to`]. Nothing is rounded here (labels
//! aside); all times are seconds of call time.
//!
//! # Definitions
//!
//! - **Input hygiene.** A talk span with a NaN end is dropped; spans are
//!   clipped to `[0, duration]` (talk outside the call is not talk of the
//!   call, and this keeps silence non-negative) and dropped when empty or
//!   inverted. A duration that is NaN, infinite or negative counts as 0.
//!   Words with a non-finite time or only whitespace are dropped; a word that
//!   ends before it starts ends where it starts. Words are not clipped to the
//!   duration: the transcript is the authority on what was said. Consent
//!   moments with a non-finite time are dropped. NaN settings fall back to
//!   their defaults. Nothing panics and every number written is finite.
//! - **Participants** are listed in input order (speakers first, then anyone
//!   who only appears in the words, in order of their first word, with no
//!   name). Two speaker entries with one id are one participant.
//! - **Talk.** A participant's spans are merged where they overlap or touch;
//!   their `talk_seconds` is the total length. `talk_ratio` = their
//!   `talk_seconds` / the sum over participants (0 if nobody talked). The
//!   call's `talk_seconds` is the length of the union of everyone's spans,
//!   `silence_seconds` = duration − that, `overlap_seconds` the length of the
//!   time covered by two or more participants.
//! - **Turns.** All participants' spans ordered by start; spans shorter than
//!   `backchannel_seconds` ("mm-hm") are ignored for turn-taking only. A turn
//!   is a maximal run of consecutive spans of one participant in that order,
//!   from its first span's start to its last span's end. `speaker_switches`
//!   = total turns − 1 (0 if none); `interactivity` = switches per minute of
//!   call (0 if the duration is 0).
//! - **Longest monologue:** the participant's longest turn (the first one on
//!   a tie).
//! - **Patience:** for each turn of X right after a turn of someone else Y,
//!   max(0, start of X's turn − the latest end of any turn before it) (an
//!   interruption counts 0: nobody had stopped yet); the mean over X's such
//!   turns, null if there are none.
//! - **Questions:** the participant's words (in time order) that end with `?`
//!   once closing quotes and brackets are trimmed. The question's sentence
//!   starts at the participant's first word, after a word of theirs ending in
//!   `.`, `!` or `?`, or after a gap of more than 2 s between their words.
//! - **Trackers.** A word is normalised to its alphanumeric characters
//!   (Unicode), lowercased: `"Pricing,"` is `pricing`, `"PRICE?"` is `price`.
//!   A phrase is split on whitespace and each token normalised the same way
//!   (empty tokens dropped; a phrase with none is ignored). A phrase matches
//!   a run of consecutive words of one participant, whole words only;
//!   words that normalise to nothing (a lone `-`) are skipped when matching.
//!   Within one tracker a word counts for at most one hit: at each word the
//!   longest matching phrase wins (config order on a tie) and matching goes
//!   on after it. A hit's `text` is the matched words as spoken. Trackers are
//!   listed in name order, including those with no hits.
//! - **Key moments:** every tracker hit (label `"{tracker}: {phrase}"`),
//!   every question (label: the sentence, at most [`LABEL_MAX_CHARS`]
//!   characters, cut with `…`), every turn of at least
//!   `monologue_moment_seconds` (`"Alice talked for 1 min 25 s"`), every
//!   consent moment of the input (start = end = its time), and every stretch
//!   of at least `long_silence_seconds` (and longer than 0) within
//!   `[0, duration]` when nobody talks (no participant). Sorted by start, then
//!   kind (alphabetical: consent, monologue, question, silence, tracker).
//!
//! # Voice activity
//!
//! [`talk_spans`] turns a track's levels (one RMS level in dBFS per frame,
//! from call time zero) into talk spans: a frame is speech when its level is
//! strictly above the threshold; gaps of at most `bridge_seconds` between
//! speech are bridged (a breath between words is still talk), then runs
//! shorter than `min_speech_seconds` are dropped (a click is not talk). Both
//! lengths are rounded to whole frames.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of `insights.json` this module writes.
pub const INSIGHTS_VERSION: u32 = 1;

/// Key moment labels longer than this many characters are cut.
pub const LABEL_MAX_CHARS: usize = 120;

/// A question's sentence also starts after a pause longer than this between
/// the participant's words (seconds).
const SENTENCE_GAP_SECONDS: f64 = 2.0;

/// Characters that may close a word after its final punctuation
/// (`"cheap?"`, `(really?)`), trimmed before looking at that punctuation.
const CLOSERS: &[char] = &[
    '"', '\'', '”', '’', '»', '›', ')', ']', '}', '）', '」', '』',
];
/// Punctuation that ends a sentence.
const SENTENCE_ENDS: &[char] = &['.', '!', '?', '。', '！', '？'];
/// Punctuation that ends a question.
const QUESTION_ENDS: &[char] = &['?', '？'];

/// A stretch of call time, in seconds; written as `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Span {
    /// Call time of the start (s).
    pub start: f64,
    /// Call time of the end (s).
    pub end: f64,
}

impl Span {
    /// The span from `start` to `end`.
    pub fn new(start: f64, end: f64) -> Self {
        Self { start, end }
    }

    /// Its length in seconds (0 for an inverted span).
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).max(0.0)
    }

    /// The part of it within `[low, high]`, if that part has a length.
    /// NaN anywhere gives `None` (`f64::max` would quietly ignore it).
    fn clipped(self, low: f64, high: f64) -> Option<Span> {
        if [self.start, self.end, low, high].iter().any(|t| t.is_nan()) {
            return None;
        }
        let start = self.start.max(low);
        let end = self.end.min(high);
        (end > start).then_some(Span { start, end })
    }
}

impl From<[f64; 2]> for Span {
    fn from([start, end]: [f64; 2]) -> Self {
        Self { start, end }
    }
}

impl From<Span> for [f64; 2] {
    fn from(span: Span) -> Self {
        [span.start, span.end]
    }
}

/// One participant's talk, as the shell found it in their track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerInput {
    /// The participant's id.
    pub participant: String,
    /// Their display name, if known.
    pub name: Option<String>,
    /// When they talked (e.g. from [`talk_spans`]).
    pub talk: Vec<Span>,
}

/// One transcribed word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordInput {
    /// Who said it.
    pub participant: String,
    /// The word as transcribed, punctuation included.
    pub word: String,
    /// Call time of its start (s).
    pub start: f64,
    /// Call time of its end (s).
    pub end: f64,
}

/// A consent event worth a key moment (someone consented, declined, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentMoment {
    /// Call time (s).
    pub t: f64,
    /// Whom it is about, if anyone in particular.
    pub participant: Option<String>,
    /// What happened, ready to show.
    pub label: String,
}

/// Everything [`compute`] looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InsightsInput {
    /// Length of the call (s).
    pub duration: f64,
    /// Each participant's talk, in the order they should be listed.
    pub speakers: Vec<SpeakerInput>,
    /// The transcript's words, in any order.
    pub words: Vec<WordInput>,
    /// Consent events to show as key moments.
    pub consent: Vec<ConsentMoment>,
}

/// What to look for; read from the server's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightsConfig {
    /// Tracker name to the phrases it counts.
    pub trackers: BTreeMap<String, Vec<String>>,
    /// A turn at least this long (s) is a key moment.
    pub monologue_moment_seconds: f64,
    /// Nobody talking for at least this long (s) is a key moment.
    pub long_silence_seconds: f64,
    /// Someone else's talk shorter than this (s), an "mm-hm", does not end a
    /// turn.
    pub backchannel_seconds: f64,
}

impl InsightsConfig {
    const DEFAULT_MONOLOGUE_MOMENT_SECONDS: f64 = 60.0;
    const DEFAULT_LONG_SILENCE_SECONDS: f64 = 10.0;
    const DEFAULT_BACKCHANNEL_SECONDS: f64 = 1.0;
}

impl Default for InsightsConfig {
    fn default() -> Self {
        Self {
            trackers: BTreeMap::new(),
            monologue_moment_seconds: Self::DEFAULT_MONOLOGUE_MOMENT_SECONDS,
            long_silence_seconds: Self::DEFAULT_LONG_SILENCE_SECONDS,
            backchannel_seconds: Self::DEFAULT_BACKCHANNEL_SECONDS,
        }
    }
}

/// `insights.json`: the figures of one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insights {
    /// [`INSIGHTS_VERSION`] when written.
    pub version: u32,
    /// Length of the call (s).
    pub duration_seconds: f64,
    /// Time when at least one person talks (s).
    pub talk_seconds: f64,
    /// `duration_seconds - talk_seconds`.
    pub silence_seconds: f64,
    /// Time when two or more people talk at once (s).
    pub overlap_seconds: f64,
    /// Turns − 1 over everyone (0 without turns).
    pub speaker_switches: u64,
    /// Speaker switches per minute of call.
    pub interactivity: f64,
    /// Per participant, in input order.
    pub participants: Vec<ParticipantInsights>,
    /// Per tracker, in name order.
    pub trackers: Vec<TrackerInsights>,
    /// The moments worth jumping to, by start then kind.
    pub key_moments: Vec<KeyMoment>,
}

/// One participant's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInsights {
    /// The participant's id.
    pub participant: String,
    /// Their display name, if known.
    pub name: Option<String>,
    /// Total length of their talk (s).
    pub talk_seconds: f64,
    /// Their share of everyone's talk (0 when nobody talked).
    pub talk_ratio: f64,
    /// How many turns they took.
    pub turns: u64,
    /// Their longest turn.
    pub longest_monologue: Option<Monologue>,
    /// Mean pause before their turns that follow someone else's (s).
    pub patience_seconds: Option<f64>,
    /// How many questions they asked.
    pub questions: u64,
    /// How many words they said.
    pub words: u64,
    /// When they talked (merged spans): the lane on the review page.
    pub talk: Vec<Span>,
}

/// A turn, as a participant's longest monologue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Monologue {
    /// Call time of its start (s).
    pub start: f64,
    /// Call time of its end (s).
    pub end: f64,
    /// `end - start`.
    pub seconds: f64,
}

/// One tracker's hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerInsights {
    /// The tracker's name from the config.
    pub name: String,
    /// `hits.len()`.
    pub count: u64,
    /// Each match, by start.
    pub hits: Vec<TrackerHit>,
}

/// One match of a tracker's phrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerHit {
    /// Who said it.
    pub participant: String,
    /// The phrase of the config that matched.
    pub phrase: String,
    /// The matched words as spoken, joined with spaces.
    pub text: String,
    /// Start of the first word (s).
    pub start: f64,
    /// End of the last word (s).
    pub end: f64,
}

/// What a key moment is.
///
/// Declared in alphabetical order: the derived order is the one moments
/// with one start are sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMomentKind {
    /// A consent event.
    Consent,
    /// A long turn.
    Monologue,
    /// A question.
    Question,
    /// A long stretch of nobody talking.
    Silence,
    /// A tracker's phrase.
    Tracker,
}

/// A moment worth jumping to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMoment {
    /// What it is.
    pub kind: KeyMomentKind,
    /// Call time of its start (s).
    pub start: f64,
    /// Call time of its end (s).
    pub end: f64,
    /// Whom it is about, if anyone in particular.
    pub participant: Option<String>,
    /// What to show.
    pub label: String,
}

impl Insights {
    /// What of these insights a share of `[start, end]` may show: the talk
    /// lanes clipped to the range, and only the tracker hits (with their
    /// counts recomputed) and key moments lying wholly inside it.
    ///
    /// Every other figure stays the whole call's: the call-level talk,
    /// silence, overlap, switches and interactivity, and each participant's
    /// talk seconds, ratio, turns, longest monologue, patience, questions and
    /// words. A NaN or inverted range keeps nothing of the clipped parts.
    pub fn limited_to(&self, start: f64, end: f64) -> Insights {
        let mut limited = self.clone();
        let inside = |s: f64, e: f64| s >= start && e <= end;
        for participant in &mut limited.participants {
            participant.talk = participant
                .talk
                .iter()
                .filter_map(|span| span.clipped(start, end))
                .collect();
        }
        for tracker in &mut limited.trackers {
            tracker.hits.retain(|hit| inside(hit.start, hit.end));
            tracker.count = tracker.hits.len() as u64;
        }
        limited
            .key_moments
            .retain(|moment| inside(moment.start, moment.end));
        limited
    }
}

/// Settings of [`talk_spans`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceActivityConfig {
    /// A frame louder than this (dBFS) is speech.
    pub threshold_dbfs: f32,
    /// Silence this short (s) between speech is bridged.
    pub bridge_seconds: f64,
    /// Speech shorter than this (s), once bridged, is dropped.
    pub min_speech_seconds: f64,
}

impl Default for VoiceActivityConfig {
    fn default() -> Self {
        Self {
            threshold_dbfs: -45.0,
            bridge_seconds: 0.3,
            min_speech_seconds: 0.1,
        }
    }
}

/// When a track holds talk, from one level (dBFS) per frame of
/// `frame_seconds`, the first frame at call time 0. A frame is speech when
/// its level is above the threshold (NaN never is). An unusable frame length
/// gives no spans.
pub fn talk_spans(
    levels_dbfs: &[f32],
    frame_seconds: f64,
    config: &VoiceActivityConfig,
) -> Vec<Span> {
    if !(frame_seconds.is_finite() && frame_seconds > 0.0) {
        return Vec::new();
    }
    let bridge_frames = whole_frames(config.bridge_seconds, frame_seconds);
    let min_frames = whole_frames(config.min_speech_seconds, frame_seconds);
    // Runs of speech as frame indices [first, end).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (index, level) in levels_dbfs.iter().enumerate() {
        if *level > config.threshold_dbfs {
            match runs.last_mut() {
                Some(run) if index - run.1 <= bridge_frames => run.1 = index + 1,
                _ => runs.push((index, index + 1)),
            }
        }
    }
    runs.into_iter()
        .filter(|(first, end)| end - first >= min_frames)
        .map(|(first, end)| Span::new(first as f64 * frame_seconds, end as f64 * frame_seconds))
        .collect()
}

/// `seconds` as a whole number of frames (0 for NaN or negative).
fn whole_frames(seconds: f64, frame_seconds: f64) -> usize {
    if seconds > 0.0 {
        // Saturating: an infinite length is every frame.
        (seconds / frame_seconds).round() as usize
    } else {
        0
    }
}

/// The insights of a call.
pub fn compute(input: &InsightsInput, config: &InsightsConfig) -> Insights {
    let duration = if input.duration.is_finite() {
        input.duration.max(0.0)
    } else {
        0.0
    };
    let thresholds = Thresholds::from_config(config);
    let people = gather_participants(input, duration);

    let union = merged(people.iter().flat_map(|p| p.talk.iter().copied()).collect());
    let talk_seconds = total_seconds(&union);
    let overlap_seconds = overlap_seconds(&people);
    let everyone_talk: f64 = people.iter().map(|p| total_seconds(&p.talk)).sum();

    let turns = turns(&people, thresholds.backchannel);
    let speaker_switches = turns.len().saturating_sub(1) as u64;
    let interactivity = if duration > 0.0 {
        speaker_switches as f64 / (duration / 60.0)
    } else {
        0.0
    };
    let patience = patience_by_participant(&turns, people.len());

    let mut key_moments = Vec::new();
    let mut participants = Vec::with_capacity(people.len());
    for (index, person) in people.iter().enumerate() {
        let own_turns = turns.iter().filter(|turn| turn.who == index);
        let longest = own_turns
            .clone()
            .fold(None::<&Turn>, |best, turn| match best {
                Some(best) if best.seconds() >= turn.seconds() => Some(best),
                _ => Some(turn),
            })
            .map(|turn| Monologue {
                start: turn.start,
                end: turn.end,
                seconds: turn.seconds(),
            });
        let questions = questions(person);
        let person_talk = total_seconds(&person.talk);
        participants.push(ParticipantInsights {
            participant: person.id.to_owned(),
            name: person.name.map(str::to_owned),
            talk_seconds: person_talk,
            talk_ratio: if everyone_talk > 0.0 {
                person_talk / everyone_talk
            } else {
                0.0
            },
            turns: own_turns.clone().count() as u64,
            longest_monologue: longest,
            patience_seconds: patience.get(index).copied().flatten(),
            questions: questions.len() as u64,
            words: person.words.len() as u64,
            talk: person.talk.clone(),
        });
        key_moments.extend(questions.into_iter().map(|question| KeyMoment {
            kind: KeyMomentKind::Question,
            start: question.start,
            end: question.end,
            participant: Some(person.id.to_owned()),
            label: question.label,
        }));
        key_moments.extend(
            own_turns
                .filter(|turn| turn.seconds() >= thresholds.monologue)
                .map(|turn| KeyMoment {
                    kind: KeyMomentKind::Monologue,
                    start: turn.start,
                    end: turn.end,
                    participant: Some(person.id.to_owned()),
                    label: format!(
                        "{} talked for {}",
                        person.name.unwrap_or(person.id),
                        spoken_length(turn.seconds())
                    ),
                }),
        );
    }

    let trackers = trackers(&people, &config.trackers);
    for tracker in &trackers {
        key_moments.extend(tracker.hits.iter().map(|hit| KeyMoment {
            kind: KeyMomentKind::Tracker,
            start: hit.start,
            end: hit.end,
            participant: Some(hit.participant.clone()),
            label: format!("{}: {}", tracker.name, hit.phrase),
        }));
    }
    key_moments.extend(
        input
            .consent
            .iter()
            .filter(|moment| moment.t.is_finite())
            .map(|moment| KeyMoment {
                kind: KeyMomentKind::Consent,
                start: moment.t,
                end: moment.t,
                participant: moment.participant.clone(),
                label: moment.label.clone(),
            }),
    );
    key_moments.extend(
        silences(&union, duration)
            .into_iter()
            .filter(|gap| gap.seconds() > 0.0 && gap.seconds() >= thresholds.long_silence)
            .map(|gap| KeyMoment {
                kind: KeyMomentKind::Silence,
                start: gap.start,
                end: gap.end,
                participant: None,
                label: format!("Nobody talked for {}", spoken_length(gap.seconds())),
            }),
    );
    key_moments.sort_by(|a, b| {
        a.start
            .total_cmp(&b.start)
            .then(a.kind.cmp(&b.kind))
            .then(a.end.total_cmp(&b.end))
            .then_with(|| a.participant.cmp(&b.participant))
            .then_with(|| a.label.cmp(&b.label))
    });

    Insights {
        version: INSIGHTS_VERSION,
        duration_seconds: duration,
        talk_seconds,
        silence_seconds: (duration - talk_seconds).max(0.0),
        overlap_seconds,
        speaker_switches,
        interactivity,
        participants,
        trackers,
        key_moments,
    }
}

/// The config's lengths, with NaN replaced by the defaults.
struct Thresholds {
    monologue: f64,
    long_silence: f64,
    backchannel: f64,
}

impl Thresholds {
    fn from_config(config: &InsightsConfig) -> Self {
        let or = |value: f64, default: f64| if value.is_nan() { default } else { value };
        Self {
            monologue: or(
                config.monologue_moment_seconds,
                InsightsConfig::DEFAULT_MONOLOGUE_MOMENT_SECONDS,
            ),
            long_silence: or(
                config.long_silence_seconds,
                InsightsConfig::DEFAULT_LONG_SILENCE_SECONDS,
            ),
            backchannel: or(
                config.backchannel_seconds,
                InsightsConfig::DEFAULT_BACKCHANNEL_SECONDS,
            ),
        }
    }
}

/// A word that passed the input checks.
struct Word<'a> {
    text: &'a str,
    start: f64,
    end: f64,
}

/// A participant's clean input: merged talk, words in time order.
struct Person<'a> {
    id: &'a str,
    name: Option<&'a str>,
    talk: Vec<Span>,
    words: Vec<Word<'a>>,
}

fn gather_participants(input: &InsightsInput, duration: f64) -> Vec<Person<'_>> {
    let mut people: Vec<Person<'_>> = Vec::new();
    let mut index_of: BTreeMap<&str, usize> = BTreeMap::new();
    for speaker in &input.speakers {
        let index = position(&mut people, &mut index_of, &speaker.participant);
        if let Some(person) = people.get_mut(index) {
            person.name = person.name.or(speaker.name.as_deref());
            person.talk.extend(
                speaker
                    .talk
                    .iter()
                    .filter_map(|span| span.clipped(0.0, duration)),
            );
        }
    }
    for word in &input.words {
        if !(word.start.is_finite() && word.end.is_finite()) || word.word.trim().is_empty() {
            continue;
        }
        let index = position(&mut people, &mut index_of, &word.participant);
        if let Some(person) = people.get_mut(index) {
            person.words.push(Word {
                text: word.word.trim(),
                start: word.start,
                end: word.end.max(word.start),
            });
        }
    }
    for person in &mut people {
        person.talk = merged(std::mem::take(&mut person.talk));
        // Stable: words with one start keep the transcript's order.
        person.words.sort_by(|a, b| a.start.total_cmp(&b.start));
    }
    people
}

/// Where participant `id` is in `people`, added (without a name) if new.
fn position<'a>(
    people: &mut Vec<Person<'a>>,
    index_of: &mut BTreeMap<&'a str, usize>,
    id: &'a str,
) -> usize {
    *index_of.entry(id).or_insert_with(|| {
        people.push(Person {
            id,
            name: None,
            talk: Vec::new(),
            words: Vec::new(),
        });
        people.len() - 1
    })
}

/// Spans sorted and merged where they overlap or touch.
fn merged(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match out.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => out.push(span),
        }
    }
    out
}

fn total_seconds(spans: &[Span]) -> f64 {
    spans.iter().map(Span::seconds).sum()
}

/// Length of the time when two or more people talk: a sweep over the starts
/// and ends of everyone's (merged, so never self-overlapping) spans.
fn overlap_seconds(people: &[Person<'_>]) -> f64 {
    let mut edges: Vec<(f64, i64)> = people
        .iter()
        .flat_map(|p| p.talk.iter())
        .flat_map(|span| [(span.start, 1), (span.end, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut talking = 0_i64;
    let mut overlap = 0.0;
    let mut previous: Option<f64> = None;
    for (t, change) in edges {
        if let Some(previous) = previous
            && talking >= 2
        {
            overlap += t - previous;
        }
        talking += change;
        previous = Some(t);
    }
    overlap
}

/// The gaps of `union` (sorted, disjoint) within `[0, duration]`.
fn silences(union: &[Span], duration: f64) -> Vec<Span> {
    let mut gaps = Vec::new();
    let mut from = 0.0;
    for span in union {
        if span.start > from {
            gaps.push(Span::new(from, span.start));
        }
        from = span.end;
    }
    if duration > from {
        gaps.push(Span::new(from, duration));
    }
    gaps
}

/// A turn of participant `who` (index into the participants).
struct Turn {
    who: usize,
    start: f64,
    end: f64,
}

impl Turn {
    fn seconds(&self) -> f64 {
        self.end - self.start
    }
}

/// Everyone's turns in order.
fn turns(people: &[Person<'_>], backchannel: f64) -> Vec<Turn> {
    let mut spans: Vec<(usize, Span)> = people
        .iter()
        .enumerate()
        .flat_map(|(who, person)| {
            person
                .talk
                .iter()
                .filter(|span| span.seconds() >= backchannel)
                .map(move |span| (who, *span))
        })
        .collect();
    spans.sort_by(|a, b| {
        a.1.start
            .total_cmp(&b.1.start)
            .then(a.1.end.total_cmp(&b.1.end))
            .then(a.0.cmp(&b.0))
    });
    let mut turns: Vec<Turn> = Vec::new();
    for (who, span) in spans {
        match turns.last_mut() {
            Some(turn) if turn.who == who => turn.end = turn.end.max(span.end),
            _ => turns.push(Turn {
                who,
                start: span.start,
                end: span.end,
            }),
        }
    }
    turns
}

/// Each participant's mean pause before a turn that follows someone else's.
fn patience_by_participant(turns: &[Turn], participants: usize) -> Vec<Option<f64>> {
    let mut sums = vec![(0.0_f64, 0_u64); participants];
    // The quiet before a turn is measured from when the last talk before
    // it ended, whoever's it was: someone who talked on past the previous
    // speaker (their own earlier turn) left no quiet until they stopped.
    let mut talk_ended = f64::NEG_INFINITY;
    for pair in turns.windows(2) {
        if let [before, turn] = pair {
            talk_ended = talk_ended.max(before.end);
            if before.who != turn.who
                && let Some((sum, count)) = sums.get_mut(turn.who)
            {
                *sum += (turn.start - talk_ended).max(0.0);
                *count += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(sum, count)| (count > 0).then(|| sum / count as f64))
        .collect()
}

/// A question found in a participant's words.
struct Question {
    start: f64,
    end: f64,
    label: String,
}

/// The word without the quotes and brackets that may close it.
fn without_closers(word: &str) -> &str {
    word.trim_end_matches(|c: char| c.is_whitespace() || CLOSERS.contains(&c))
}

fn questions(person: &Person<'_>) -> Vec<Question> {
    let mut found = Vec::new();
    let mut sentence_start = 0;
    let mut previous: Option<&Word<'_>> = None;
    for (index, word) in person.words.iter().enumerate() {
        let starts_sentence = match previous {
            None => true,
            Some(previous) => {
                without_closers(previous.text).ends_with(SENTENCE_ENDS)
                    || word.start - previous.end > SENTENCE_GAP_SECONDS
            }
        };
        if starts_sentence {
            sentence_start = index;
        }
        if without_closers(word.text).ends_with(QUESTION_ENDS) {
            let sentence = person.words.get(sentence_start..=index).unwrap_or_default();
            let text = sentence
                .iter()
                .map(|w| w.text)
                .collect::<Vec<_>>()
                .join(" ");
            found.push(Question {
                start: sentence.first().map_or(word.start, |first| first.start),
                end: word.end,
                label: truncated_label(&text),
            });
        }
        previous = Some(word);
    }
    found
}

/// At most [`LABEL_MAX_CHARS`] characters, the last one `…` when cut.
fn truncated_label(text: &str) -> String {
    if text.chars().count() <= LABEL_MAX_CHARS {
        return text.to_owned();
    }
    let mut label: String = text.chars().take(LABEL_MAX_CHARS - 1).collect();
    label.push('…');
    label
}

/// A word or phrase token as trackers compare it.
fn normalised(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A tracker's phrase, ready to match.
struct Phrase<'a> {
    text: &'a str,
    tokens: Vec<String>,
}

fn trackers(people: &[Person<'_>], config: &BTreeMap<String, Vec<String>>) -> Vec<TrackerInsights> {
    // Each participant's words that can match: (index into their words,
    // normalised form).
    let matchable: Vec<Vec<(usize, String)>> = people
        .iter()
        .map(|person| {
            person
                .words
                .iter()
                .enumerate()
                .map(|(index, word)| (index, normalised(word.text)))
                .filter(|(_, token)| !token.is_empty())
                .collect()
        })
        .collect();
    config
        .iter()
        .map(|(name, phrases)| {
            let mut phrases: Vec<Phrase<'_>> = phrases
                .iter()
                .map(|phrase| Phrase {
                    text: phrase,
                    tokens: phrase
                        .split_whitespace()
                        .map(normalised)
                        .filter(|token| !token.is_empty())
                        .collect(),
                })
                .filter(|phrase| !phrase.tokens.is_empty())
                .collect();
            // Longest first; stable, so config order on a tie.
            phrases.sort_by_key(|phrase| std::cmp::Reverse(phrase.tokens.len()));
            let mut hits = Vec::new();
            for (person, tokens) in people.iter().zip(&matchable) {
                hits.extend(phrase_hits(person, tokens, &phrases));
            }
            hits.sort_by(|a: &TrackerHit, b| a.start.total_cmp(&b.start));
            TrackerInsights {
                name: name.clone(),
                count: hits.len() as u64,
                hits,
            }
        })
        .collect()
}

/// One participant's hits of one tracker's phrases (longest first).
fn phrase_hits(
    person: &Person<'_>,
    tokens: &[(usize, String)],
    phrases: &[Phrase<'_>],
) -> Vec<TrackerHit> {
    let mut hits = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let rest = tokens.get(at..).unwrap_or_default();
        let matched = phrases.iter().find(|phrase| {
            rest.len() >= phrase.tokens.len()
                && rest
                    .iter()
                    .zip(&phrase.tokens)
                    .all(|((_, word), token)| word == token)
        });
        let Some(phrase) = matched else {
            at += 1;
            continue;
        };
        let first = rest.first().map(|(index, _)| *index);
        let last = rest
            .get(phrase.tokens.len().saturating_sub(1))
            .map(|(index, _)| *index);
        if let (Some(first), Some(last)) = (first, last)
            && let Some(words) = person.words.get(first..=last)
        {
            hits.push(TrackerHit {
                participant: person.id.to_owned(),
                phrase: phrase.text.to_owned(),
                text: words.iter().map(|w| w.text).collect::<Vec<_>>().join(" "),
                start: words.first().map_or(0.0, |w| w.start),
                end: words.last().map_or(0.0, |w| w.end),
            });
        }
        at += phrase.tokens.len();
    }
    hits
}

/// A length for a label: "45 s", "2 min", "1 min 25 s".
fn spoken_length(seconds: f64) -> String {
    // Saturating; NaN is 0.
    let whole = seconds.round() as u64;
    match (whole / 60, whole % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
#[path = "insights_tests.rs"]
mod tests;
