//! Tests of the insights: constructed timelines whose expected figures are
//! worked out by hand from the definitions in the module doc, never read
//! back from [`compute`].

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

const EPS: f64 = 1e-9;

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= EPS,
        "expected {expected}, got {actual}"
    );
}

#[track_caller]
fn assert_spans(actual: &[Span], expected: &[(f64, f64)]) {
    assert_eq!(actual.len(), expected.len(), "spans {actual:?}");
    for (span, (start, end)) in actual.iter().zip(expected) {
        assert_close(span.start, *start);
        assert_close(span.end, *end);
    }
}

fn speaker(id: &str, name: Option<&str>, talk: &[(f64, f64)]) -> SpeakerInput {
    SpeakerInput {
        participant: id.to_owned(),
        name: name.map(str::to_owned),
        talk: talk.iter().map(|&(s, e)| Span::new(s, e)).collect(),
    }
}

fn word(id: &str, text: &str, start: f64, end: f64) -> WordInput {
    WordInput {
        participant: id.to_owned(),
        word: text.to_owned(),
        start,
        end,
    }
}

fn input(duration: f64, speakers: Vec<SpeakerInput>, words: Vec<WordInput>) -> InsightsInput {
    InsightsInput {
        duration,
        speakers,
        words,
        consent: Vec::new(),
    }
}

fn trackers_config(trackers: &[(&str, &[&str])]) -> InsightsConfig {
    InsightsConfig {
        trackers: trackers
            .iter()
            .map(|(name, phrases)| {
                (
                    (*name).to_owned(),
                    phrases.iter().map(|p| (*p).to_owned()).collect(),
                )
            })
            .collect(),
        ..InsightsConfig::default()
    }
}

#[track_caller]
fn participant<'a>(insights: &'a Insights, id: &str) -> &'a ParticipantInsights {
    insights
        .participants
        .iter()
        .find(|p| p.participant == id)
        .unwrap_or_else(|| panic!("no participant {id}"))
}

fn moments(insights: &Insights, kind: KeyMomentKind) -> Vec<&KeyMoment> {
    insights
        .key_moments
        .iter()
        .filter(|m| m.kind == kind)
        .collect()
}

#[track_caller]
fn assert_moment(
    moment: &KeyMoment,
    kind: KeyMomentKind,
    (start, end): (f64, f64),
    who: Option<&str>,
    label: &str,
) {
    assert_eq!(moment.kind, kind, "{moment:?}");
    assert_close(moment.start, start);
    assert_close(moment.end, end);
    assert_eq!(moment.participant.as_deref(), who, "{moment:?}");
    assert_eq!(moment.label, label);
}

/// alice 0–30 and 40–60, bob 25–40, in a call of 100 s.
fn two_speakers() -> InsightsInput {
    input(
        100.0,
        vec![
            speaker("alice", Some("Alice"), &[(0.0, 30.0), (40.0, 60.0)]),
            speaker("bob", None, &[(25.0, 40.0)]),
        ],
        Vec::new(),
    )
}

#[test]
fn talk_ratio_overlap_and_silence_of_two_speakers() {
    let insights = compute(&two_speakers(), &InsightsConfig::default());
    let alice = participant(&insights, "alice");
    let bob = participant(&insights, "bob");
    assert_close(alice.talk_seconds, 50.0);
    assert_close(bob.talk_seconds, 15.0);
    assert_close(alice.talk_ratio, 50.0 / 65.0);
    assert_close(bob.talk_ratio, 15.0 / 65.0);
    // Union 0–60; both talk 25–30.
    assert_close(insights.duration_seconds, 100.0);
    assert_close(insights.talk_seconds, 60.0);
    assert_close(insights.silence_seconds, 40.0);
    assert_close(insights.overlap_seconds, 5.0);
    assert_spans(&alice.talk, &[(0.0, 30.0), (40.0, 60.0)]);
    assert_spans(&bob.talk, &[(25.0, 40.0)]);
    assert_eq!(alice.name.as_deref(), Some("Alice"));
    assert_eq!(bob.name, None);
}

#[test]
fn turns_switches_and_interactivity() {
    // Turns in start order: alice 0–30, bob 25–40, alice 40–60.
    let insights = compute(&two_speakers(), &InsightsConfig::default());
    assert_eq!(participant(&insights, "alice").turns, 2);
    assert_eq!(participant(&insights, "bob").turns, 1);
    assert_eq!(insights.speaker_switches, 2);
    // 2 switches in 100 s = 1.2 a minute.
    assert_close(insights.interactivity, 1.2);
    let alice = participant(&insights, "alice");
    let longest = alice.longest_monologue.expect("alice has turns");
    assert_close(longest.start, 0.0);
    assert_close(longest.end, 30.0);
    assert_close(longest.seconds, 30.0);
    // bob starts inside alice's turn; alice starts as bob stops.
    assert_eq!(alice.patience_seconds, Some(0.0));
    assert_eq!(participant(&insights, "bob").patience_seconds, Some(0.0));
}

#[test]
fn own_overlapping_spans_merge_before_counting() {
    let insights = compute(
        &input(
            20.0,
            vec![speaker(
                "alice",
                None,
                &[(5.0, 15.0), (0.0, 10.0), (15.0, 16.0)],
            )],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    let alice = participant(&insights, "alice");
    assert_close(alice.talk_seconds, 16.0);
    assert_spans(&alice.talk, &[(0.0, 16.0)]);
    assert_close(insights.overlap_seconds, 0.0);
    assert_eq!(alice.turns, 1);
}

#[test]
fn three_people_overlap_counts_time_covered_by_two_or_more() {
    // a 0–10, b 5–15, c 8–20: two or more talk from 5 to 15.
    let insights = compute(
        &input(
            20.0,
            vec![
                speaker("a", None, &[(0.0, 10.0)]),
                speaker("b", None, &[(5.0, 15.0)]),
                speaker("c", None, &[(8.0, 20.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    assert_close(insights.talk_seconds, 20.0);
    assert_close(insights.silence_seconds, 0.0);
    assert_close(insights.overlap_seconds, 10.0);
    assert_close(participant(&insights, "a").talk_ratio, 10.0 / 32.0);
    assert_close(participant(&insights, "b").talk_ratio, 10.0 / 32.0);
    assert_close(participant(&insights, "c").talk_ratio, 12.0 / 32.0);
    assert_eq!(insights.speaker_switches, 2);
}

#[test]
fn backchannel_does_not_end_a_turn() {
    let timeline = input(
        60.0,
        vec![
            speaker("alice", None, &[(0.0, 20.0), (21.5, 40.0), (52.0, 60.0)]),
            // 20.5–21.0 is an "mm-hm".
            speaker("bob", None, &[(20.5, 21.0), (41.0, 50.0)]),
            // Only a backchannel inside alice's turn.
            speaker("carol", None, &[(30.0, 30.5)]),
        ],
        Vec::new(),
    );
    let insights = compute(&timeline, &InsightsConfig::default());
    let alice = participant(&insights, "alice");
    let bob = participant(&insights, "bob");
    let carol = participant(&insights, "carol");
    assert_eq!((alice.turns, bob.turns, carol.turns), (2, 1, 0));
    assert_eq!(insights.speaker_switches, 2);
    let longest = alice.longest_monologue.expect("alice has turns");
    assert_close(longest.start, 0.0);
    assert_close(longest.end, 40.0);
    assert_close(longest.seconds, 40.0);
    assert_eq!(carol.longest_monologue, None);
    // The backchannel still counts as talk.
    assert_close(bob.talk_seconds, 9.5);
    assert_close(carol.talk_seconds, 0.5);
    // bob 41 after alice's 40; alice 52 after bob's 50.
    assert_close(bob.patience_seconds.expect("bob follows alice"), 1.0);
    assert_close(alice.patience_seconds.expect("alice follows bob"), 2.0);

    // Without the allowance every span ends a turn: a 0–20, b, a 21.5–40,
    // c, b 41–50, a 52–60.
    let strict = InsightsConfig {
        backchannel_seconds: 0.0,
        ..InsightsConfig::default()
    };
    let insights = compute(&timeline, &strict);
    assert_eq!(participant(&insights, "alice").turns, 3);
    assert_eq!(participant(&insights, "bob").turns, 2);
    assert_eq!(participant(&insights, "carol").turns, 1);
    assert_eq!(insights.speaker_switches, 5);
    let longest = participant(&insights, "alice")
        .longest_monologue
        .expect("alice has turns");
    assert_close(longest.start, 0.0);
    assert_close(longest.end, 20.0);
}

#[test]
fn longest_monologue_is_the_first_of_equal_turns() {
    let insights = compute(
        &input(
            30.0,
            vec![
                speaker("alice", None, &[(0.0, 10.0), (20.0, 30.0)]),
                speaker("bob", None, &[(10.0, 20.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    let longest = participant(&insights, "alice")
        .longest_monologue
        .expect("alice has turns");
    assert_close(longest.start, 0.0);
    assert_close(longest.end, 10.0);
    assert_close(longest.seconds, 10.0);
}

#[test]
fn patience_counts_gaps_and_overlap_as_zero() {
    // a 0–10, b 12–20 (waits 2), a 19–30 (interrupts: 0), b 33–40 (waits 3).
    let insights = compute(
        &input(
            40.0,
            vec![
                speaker("alice", None, &[(0.0, 10.0), (19.0, 30.0)]),
                speaker("bob", None, &[(12.0, 20.0), (33.0, 40.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    assert_close(
        participant(&insights, "bob")
            .patience_seconds
            .expect("bob follows alice twice"),
        2.5,
    );
    assert_eq!(participant(&insights, "alice").patience_seconds, Some(0.0));
    assert_eq!(insights.speaker_switches, 3);
}

#[test]
fn patience_counts_the_quiet_after_the_last_talk_not_after_the_last_turn() {
    // alice 0–60 with bob's turn 10–20 inside it; alice again at 62: the
    // quiet before her second turn is 62 − 60 = 2 s, not 62 − 20.
    let insights = compute(
        &input(
            70.0,
            vec![
                speaker("alice", None, &[(0.0, 60.0), (62.0, 70.0)]),
                speaker("bob", None, &[(10.0, 20.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    assert_close(
        participant(&insights, "alice")
            .patience_seconds
            .expect("alice follows bob"),
        2.0,
    );
    // Bob began while alice talked.
    assert_eq!(participant(&insights, "bob").patience_seconds, Some(0.0));
}

#[test]
fn patience_is_null_without_a_turn_after_someone_else() {
    let insights = compute(
        &input(
            20.0,
            vec![
                speaker("alice", None, &[(0.0, 10.0)]),
                speaker("bob", None, &[(12.0, 20.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    assert_eq!(participant(&insights, "alice").patience_seconds, None);
    assert_close(
        participant(&insights, "bob")
            .patience_seconds
            .expect("bob follows alice"),
        2.0,
    );
}

#[test]
fn long_silences_are_key_moments() {
    // Nobody talks 0–15, 20–32, 40–45 and 85–100; only 40–45 is short.
    let insights = compute(
        &input(
            100.0,
            vec![
                speaker("alice", None, &[(15.0, 20.0), (45.0, 85.0)]),
                speaker("bob", None, &[(32.0, 40.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    let silences = moments(&insights, KeyMomentKind::Silence);
    assert_eq!(silences.len(), 3, "{silences:?}");
    let label = "Nobody talked for 15 s";
    assert_moment(
        silences[0],
        KeyMomentKind::Silence,
        (0.0, 15.0),
        None,
        label,
    );
    let label = "Nobody talked for 12 s";
    assert_moment(
        silences[1],
        KeyMomentKind::Silence,
        (20.0, 32.0),
        None,
        label,
    );
    let label = "Nobody talked for 15 s";
    assert_moment(
        silences[2],
        KeyMomentKind::Silence,
        (85.0, 100.0),
        None,
        label,
    );
    // 45–85 is 40 s, under the 60 s of a monologue moment.
    assert!(moments(&insights, KeyMomentKind::Monologue).is_empty());
}

#[test]
fn long_turns_are_monologue_moments() {
    let insights = compute(
        &input(
            300.0,
            vec![
                speaker("alice", Some("Alice"), &[(0.0, 85.0), (230.0, 289.6)]),
                speaker("bob", None, &[(100.0, 220.0)]),
            ],
            Vec::new(),
        ),
        &InsightsConfig::default(),
    );
    let monologues = moments(&insights, KeyMomentKind::Monologue);
    assert_eq!(monologues.len(), 2, "{monologues:?}");
    assert_moment(
        monologues[0],
        KeyMomentKind::Monologue,
        (0.0, 85.0),
        Some("alice"),
        "Alice talked for 1 min 25 s",
    );
    assert_moment(
        monologues[1],
        KeyMomentKind::Monologue,
        (100.0, 220.0),
        Some("bob"),
        "bob talked for 2 min",
    );
    // 85–100, 220–230 (exactly the threshold) and 289.6–300.
    let silences = moments(&insights, KeyMomentKind::Silence);
    assert_eq!(silences.len(), 3, "{silences:?}");
    assert_close(silences[1].start, 220.0);
    assert_close(silences[2].start, 289.6);
    assert_close(silences[2].end, 300.0);
}

#[test]
fn questions_with_punctuation_quotes_and_sentence_starts() {
    let mut words = vec![
        word("alice", "So,", 1.0, 1.2),
        word("alice", "what's", 1.3, 1.5),
        word("alice", "the", 1.5, 1.6),
        word("alice", "price?", 1.6, 2.0),
        word("alice", "I", 2.2, 2.3),
        word("alice", "mean", 2.3, 2.5),
        word("alice", "really.", 2.5, 2.8),
        word("bob", "Yes.", 2.9, 3.0),
        word("alice", "Is", 3.0, 3.1),
        word("alice", "it", 3.1, 3.2),
        word("alice", "\"cheap?\"", 3.2, 3.6),
        // A gap of 2.5 s after "could" starts a sentence at "and".
        word("alice", "and", 6.5, 6.7),
        word("alice", "then", 6.7, 6.9),
        word("alice", "what?)", 6.9, 7.3),
        word("alice", "Great!", 7.4, 7.6),
        word("alice", "Why", 7.7, 7.8),
        word("alice", "not?”", 7.8, 8.0),
        word("alice", "wh?at", 8.1, 8.3),
        word("bob", "Right?", 10.0, 10.3),
    ];
    // Out of order on purpose: words are sorted by time per participant.
    words.insert(0, word("alice", "could", 3.9, 4.0));
    words.insert(0, word("alice", "we", 3.7, 3.9));
    let insights = compute(
        &input(
            20.0,
            vec![speaker("alice", None, &[]), speaker("bob", None, &[])],
            words,
        ),
        &InsightsConfig::default(),
    );
    let alice = participant(&insights, "alice");
    let bob = participant(&insights, "bob");
    assert_eq!((alice.questions, alice.words), (4, 19));
    assert_eq!((bob.questions, bob.words), (1, 2));
    let questions = moments(&insights, KeyMomentKind::Question);
    assert_eq!(questions.len(), 5, "{questions:?}");
    let q = KeyMomentKind::Question;
    let alice = Some("alice");
    assert_moment(questions[0], q, (1.0, 2.0), alice, "So, what's the price?");
    assert_moment(questions[1], q, (3.0, 3.6), alice, "Is it \"cheap?\"");
    assert_moment(questions[2], q, (6.5, 7.3), alice, "and then what?)");
    assert_moment(questions[3], q, (7.7, 8.0), alice, "Why not?”");
    assert_moment(questions[4], q, (10.0, 10.3), Some("bob"), "Right?");
}

#[test]
fn long_question_label_is_cut_to_120_characters() {
    // 30 words of 4 letters: 150 characters with the spaces and the "?".
    let words: Vec<WordInput> = (0..30)
        .map(|i| {
            let text = if i == 29 { "word?" } else { "word" };
            word("alice", text, f64::from(i) * 0.3, f64::from(i) * 0.3 + 0.2)
        })
        .collect();
    let insights = compute(&input(20.0, Vec::new(), words), &InsightsConfig::default());
    let questions = moments(&insights, KeyMomentKind::Question);
    assert_eq!(questions.len(), 1);
    // 23 whole "word " (115 characters), then "word" and the ellipsis.
    let expected = format!("{}word…", "word ".repeat(23));
    assert_eq!(expected.chars().count(), 120);
    assert_eq!(questions[0].label, expected);
    assert_close(questions[0].start, 0.0);
    assert_close(questions[0].end, 29.0 * 0.3 + 0.2);
}

#[test]
fn trackers_match_whole_words_ignoring_case_and_punctuation() {
    let config = trackers_config(&[
        ("empty", &["nothing here"]),
        ("ignored", &["  ", "!!"]),
        ("money", &["price"]),
        ("next steps", &["next steps"]),
        ("pricing", &["pricing"]),
    ]);
    let words = vec![
        word("alice", "Pricing,", 1.0, 1.5),
        word("alice", "PRICE?", 2.0, 2.4),
        word("alice", "prices", 2.5, 2.9),
        word("alice", "Next", 5.0, 5.2),
        word("alice", "steps.", 5.2, 5.6),
        // "next" of alice, "steps" of bob: not one phrase.
        word("alice", "next", 8.0, 8.2),
        word("bob", "steps", 8.3, 8.5),
        word("alice", "time", 9.0, 9.2),
        word("bob", "price", 12.0, 12.3),
    ];
    let insights = compute(&input(20.0, Vec::new(), words), &config);
    let names: Vec<&str> = insights.trackers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["empty", "ignored", "money", "next steps", "pricing"]
    );
    let counts: Vec<u64> = insights.trackers.iter().map(|t| t.count).collect();
    assert_eq!(counts, [0, 0, 2, 1, 1]);

    let hit = |tracker: usize, index: usize| &insights.trackers[tracker].hits[index];
    let expected = [
        (hit(2, 0), "alice", "price", "PRICE?", 2.0, 2.4),
        (hit(2, 1), "bob", "price", "price", 12.0, 12.3),
        (hit(3, 0), "alice", "next steps", "Next steps.", 5.0, 5.6),
        (hit(4, 0), "alice", "pricing", "Pricing,", 1.0, 1.5),
    ];
    for (hit, who, phrase, text, start, end) in expected {
        assert_eq!(
            (
                hit.participant.as_str(),
                hit.phrase.as_str(),
                hit.text.as_str()
            ),
            (who, phrase, text)
        );
        assert_close(hit.start, start);
        assert_close(hit.end, end);
    }

    let trackers = moments(&insights, KeyMomentKind::Tracker);
    let labels: Vec<(&str, f64)> = trackers
        .iter()
        .map(|m| (m.label.as_str(), m.start))
        .collect();
    assert_eq!(
        labels,
        [
            ("pricing: pricing", 1.0),
            ("money: price", 2.0),
            ("next steps: next steps", 5.0),
            ("money: price", 12.0),
        ]
    );
}

#[test]
fn phrases_of_one_tracker_claim_each_word_once() {
    let config = trackers_config(&[
        ("plan", &["steps", "next steps", "next"]),
        ("repeat", &["next", "Next!"]),
    ]);
    let words = vec![
        word("alice", "next", 0.0, 0.2),
        word("alice", "steps", 0.2, 0.4),
        word("alice", "then", 0.4, 0.6),
        word("alice", "steps", 0.6, 0.8),
        word("alice", "next", 0.8, 1.0),
        // A lone dash is skipped: "next — steps" is the phrase.
        word("alice", "next", 2.0, 2.2),
        word("alice", "—", 2.2, 2.3),
        word("alice", "steps", 2.3, 2.5),
    ];
    let insights = compute(&input(5.0, Vec::new(), words), &config);
    let plan = &insights.trackers[0];
    let found: Vec<(&str, &str)> = plan
        .hits
        .iter()
        .map(|h| (h.phrase.as_str(), h.text.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("next steps", "next steps"),
            ("steps", "steps"),
            ("next", "next"),
            ("next steps", "next — steps"),
        ]
    );
    assert_eq!(plan.count, 4);
    assert_close(plan.hits[3].start, 2.0);
    assert_close(plan.hits[3].end, 2.5);
    // Two phrases that normalise alike: the first in the config is named.
    let repeat = &insights.trackers[1];
    assert_eq!(repeat.count, 3);
    assert!(repeat.hits.iter().all(|h| h.phrase == "next"));
}

#[test]
fn trackers_normalise_unicode_words() {
    let config = trackers_config(&[("size", &["größe"]), ("place", &["Café"])]);
    let words = vec![
        word("alice", "Größe!", 0.0, 0.5),
        word("alice", "CAFÉ,", 1.0, 1.5),
    ];
    let insights = compute(&input(5.0, Vec::new(), words), &config);
    // Name order: "place" then "size".
    assert_eq!(insights.trackers[0].name, "place");
    assert_eq!(insights.trackers[0].hits[0].text, "CAFÉ,");
    assert_eq!(insights.trackers[1].name, "size");
    assert_eq!(insights.trackers[1].hits[0].text, "Größe!");
}

#[test]
fn consent_moments_and_the_order_of_key_moments() {
    let mut timeline = input(
        30.0,
        vec![speaker("alice", None, &[(15.0, 20.0)])],
        vec![word("alice", "Price?", 15.0, 15.5)],
    );
    timeline.consent = vec![
        ConsentMoment {
            t: 0.0,
            participant: Some("alice".to_owned()),
            label: "alice consented (dtmf)".to_owned(),
        },
        ConsentMoment {
            t: f64::NAN,
            participant: None,
            label: "dropped".to_owned(),
        },
    ];
    let insights = compute(&timeline, &trackers_config(&[("pricing", &["price"])]));
    let got = &insights.key_moments;
    assert_eq!(got.len(), 5, "{got:?}");
    let alice = Some("alice");
    assert_moment(
        &got[0],
        KeyMomentKind::Consent,
        (0.0, 0.0),
        alice,
        "alice consented (dtmf)",
    );
    assert_moment(
        &got[1],
        KeyMomentKind::Silence,
        (0.0, 15.0),
        None,
        "Nobody talked for 15 s",
    );
    assert_moment(
        &got[2],
        KeyMomentKind::Question,
        (15.0, 15.5),
        alice,
        "Price?",
    );
    assert_moment(
        &got[3],
        KeyMomentKind::Tracker,
        (15.0, 15.5),
        alice,
        "pricing: price",
    );
    assert_moment(
        &got[4],
        KeyMomentKind::Silence,
        (20.0, 30.0),
        None,
        "Nobody talked for 10 s",
    );
}

#[test]
fn participants_in_input_order_including_those_with_words_only() {
    let insights = compute(
        &input(
            20.0,
            vec![
                speaker("bob", None, &[]),
                speaker("alice", None, &[(0.0, 5.0)]),
                // A second entry for alice: one participant, the name kept.
                speaker("alice", Some("Alice"), &[(10.0, 15.0)]),
            ],
            vec![
                word("carol", "hi", 1.0, 2.0),
                word("alice", "hello", 0.0, 1.0),
                word("dave", "yo", 3.0, 4.0),
                word("carol", "there", 2.0, 3.0),
            ],
        ),
        &InsightsConfig::default(),
    );
    let order: Vec<&str> = insights
        .participants
        .iter()
        .map(|p| p.participant.as_str())
        .collect();
    assert_eq!(order, ["bob", "alice", "carol", "dave"]);
    let alice = participant(&insights, "alice");
    assert_eq!(alice.name.as_deref(), Some("Alice"));
    assert_close(alice.talk_seconds, 10.0);
    assert_close(alice.talk_ratio, 1.0);
    assert_eq!(alice.words, 1);
    let carol = participant(&insights, "carol");
    assert_eq!(carol.name, None);
    assert_eq!(carol.words, 2);
    assert_close(carol.talk_seconds, 0.0);
    assert_close(carol.talk_ratio, 0.0);
    assert_eq!(carol.turns, 0);
    assert_eq!(carol.longest_monologue, None);
    assert_eq!(carol.patience_seconds, None);
    assert!(carol.talk.is_empty());
    assert_eq!(participant(&insights, "bob").words, 0);
}

#[test]
fn empty_input_gives_zeros() {
    let config = trackers_config(&[("pricing", &["price"])]);
    let insights = compute(&InsightsInput::default(), &config);
    assert_eq!(insights.version, 1);
    assert_close(insights.duration_seconds, 0.0);
    assert_close(insights.talk_seconds, 0.0);
    assert_close(insights.silence_seconds, 0.0);
    assert_close(insights.overlap_seconds, 0.0);
    assert_eq!(insights.speaker_switches, 0);
    assert_close(insights.interactivity, 0.0);
    assert!(insights.participants.is_empty());
    assert_eq!(insights.trackers.len(), 1);
    assert_eq!(insights.trackers[0].count, 0);
    assert!(insights.key_moments.is_empty());

    // A minute with one silent participant: one long silence, no ratio.
    let insights = compute(
        &input(60.0, vec![speaker("alice", None, &[])], Vec::new()),
        &config,
    );
    assert_close(participant(&insights, "alice").talk_ratio, 0.0);
    assert_close(insights.silence_seconds, 60.0);
    assert_eq!(insights.key_moments.len(), 1);
    assert_moment(
        &insights.key_moments[0],
        KeyMomentKind::Silence,
        (0.0, 60.0),
        None,
        "Nobody talked for 1 min",
    );
}

#[test]
fn garbage_input_is_dropped_or_clamped() {
    let mut timeline = input(
        100.0,
        vec![
            speaker(
                "alice",
                None,
                &[(f64::NAN, 5.0), (10.0, 5.0), (-5.0, 3.0), (95.0, 120.0)],
            ),
            speaker(
                "bob",
                None,
                &[(f64::NEG_INFINITY, f64::NAN), (20.0, f64::INFINITY)],
            ),
        ],
        vec![
            word("alice", "x", f64::NAN, 1.0),
            word("alice", "y", 1.0, 0.5),
            word("alice", "  ", 2.0, 2.5),
            word("bob", "z", 3.0, f64::INFINITY),
        ],
    );
    timeline.consent.push(ConsentMoment {
        t: f64::INFINITY,
        participant: None,
        label: "never".to_owned(),
    });
    let config = InsightsConfig {
        backchannel_seconds: f64::NAN,
        monologue_moment_seconds: f64::NAN,
        long_silence_seconds: f64::NAN,
        ..InsightsConfig::default()
    };
    let insights = compute(&timeline, &config);
    let alice = participant(&insights, "alice");
    let bob = participant(&insights, "bob");
    assert_spans(&alice.talk, &[(0.0, 3.0), (95.0, 100.0)]);
    assert_spans(&bob.talk, &[(20.0, 100.0)]);
    assert_close(insights.talk_seconds, 83.0);
    assert_close(insights.silence_seconds, 17.0);
    assert_close(insights.overlap_seconds, 5.0);
    assert_eq!((alice.words, bob.words), (1, 0));
    // Defaults stand in for NaN settings: bob's 80 s turn is a monologue,
    // 3–20 a long silence.
    assert_eq!(moments(&insights, KeyMomentKind::Monologue).len(), 1);
    assert_eq!(moments(&insights, KeyMomentKind::Silence).len(), 1);
    assert!(moments(&insights, KeyMomentKind::Consent).is_empty());
    // Every number is finite: serde_json would write null for the others,
    // and then fail to read it back as a number.
    let text = serde_json::to_string(&insights).expect("serialises");
    let back: Insights = serde_json::from_str(&text).expect("reads back");
    assert_close(participant(&back, "alice").talk_ratio, 8.0 / 88.0);

    for duration in [f64::NAN, f64::INFINITY, -5.0] {
        let mut timeline = two_speakers();
        timeline.duration = duration;
        let insights = compute(&timeline, &InsightsConfig::default());
        assert_close(insights.duration_seconds, 0.0);
        assert_close(insights.talk_seconds, 0.0);
        assert!(participant(&insights, "alice").talk.is_empty());
    }
}

/// Two speakers with "price" said four times and a consent event at 29 s.
fn limited_call() -> Insights {
    let mut timeline = two_speakers();
    timeline.words = vec![
        word("alice", "price", 10.0, 10.5),
        word("alice", "price", 45.0, 45.5),
        word("bob", "price", 27.8, 28.2),
        word("bob", "price", 29.5, 30.5),
    ];
    timeline.consent.push(ConsentMoment {
        t: 29.0,
        participant: Some("bob".to_owned()),
        label: "bob consented (api)".to_owned(),
    });
    compute(&timeline, &trackers_config(&[("pricing", &["price"])]))
}

#[test]
fn limited_to_clips_talk_and_keeps_only_what_lies_inside() {
    let whole = limited_call();
    assert_eq!(whole.trackers[0].count, 4);
    let limited = whole.limited_to(28.0, 50.0);
    assert_spans(
        &participant(&limited, "alice").talk,
        &[(28.0, 30.0), (40.0, 50.0)],
    );
    assert_spans(&participant(&limited, "bob").talk, &[(28.0, 40.0)]);
    // 27.8–28.2 straddles the start: left out.
    let pricing = &limited.trackers[0];
    assert_eq!(pricing.count, 2);
    let hits: Vec<(&str, f64)> = pricing
        .hits
        .iter()
        .map(|h| (h.participant.as_str(), h.start))
        .collect();
    assert_eq!(hits, [("bob", 29.5), ("alice", 45.0)]);
    // The silence 60–100 is outside.
    let kept: Vec<(KeyMomentKind, f64)> = limited
        .key_moments
        .iter()
        .map(|m| (m.kind, m.start))
        .collect();
    assert_eq!(
        kept,
        [
            (KeyMomentKind::Consent, 29.0),
            (KeyMomentKind::Tracker, 29.5),
            (KeyMomentKind::Tracker, 45.0),
        ]
    );
    // The whole call's figures stay.
    assert_close(limited.talk_seconds, 60.0);
    assert_close(limited.overlap_seconds, 5.0);
    assert_eq!(limited.speaker_switches, 2);
    let alice = participant(&limited, "alice");
    assert_close(alice.talk_seconds, 50.0);
    assert_eq!(alice.words, 2);
    assert_eq!(alice.turns, 2);
}

#[test]
fn limited_to_a_nan_or_inverted_range_keeps_nothing_clipped() {
    let whole = limited_call();
    for (start, end) in [(f64::NAN, 50.0), (0.0, f64::NAN), (50.0, 28.0)] {
        let limited = whole.limited_to(start, end);
        assert!(limited.participants.iter().all(|p| p.talk.is_empty()));
        assert!(
            limited
                .trackers
                .iter()
                .all(|t| t.count == 0 && t.hits.is_empty())
        );
        assert!(limited.key_moments.is_empty());
    }
    // The whole range keeps everything.
    assert_eq!(whole.limited_to(0.0, 100.0), whole);
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn json_field_names_match_the_schema() {
    let mut timeline = two_speakers();
    timeline.words = vec![word("bob", "Price?", 26.0, 26.5)];
    let insights = compute(&timeline, &trackers_config(&[("pricing", &["price"])]));
    let value = serde_json::to_value(&insights).expect("serialises");
    assert_eq!(
        keys(&value),
        BTreeSet::from([
            "version",
            "duration_seconds",
            "talk_seconds",
            "silence_seconds",
            "overlap_seconds",
            "speaker_switches",
            "interactivity",
            "participants",
            "trackers",
            "key_moments",
        ])
    );
    assert_eq!(value["version"], json!(1));
    let alice = &value["participants"][0];
    assert_eq!(
        keys(alice),
        BTreeSet::from([
            "participant",
            "name",
            "talk_seconds",
            "talk_ratio",
            "turns",
            "longest_monologue",
            "patience_seconds",
            "questions",
            "words",
            "talk",
        ])
    );
    assert_eq!(alice["talk"], json!([[0.0, 30.0], [40.0, 60.0]]));
    assert_eq!(
        alice["longest_monologue"],
        json!({"start": 0.0, "end": 30.0, "seconds": 30.0})
    );
    // bob has no name (null); his one turn starts inside alice's (0).
    let bob = &value["participants"][1];
    assert_eq!(bob["name"], Value::Null);
    assert_eq!(bob["patience_seconds"], json!(0.0));
    let tracker = &value["trackers"][0];
    assert_eq!(keys(tracker), BTreeSet::from(["name", "count", "hits"]));
    assert_eq!(
        tracker["hits"][0],
        json!({"participant": "bob", "phrase": "price", "text": "Price?", "start": 26.0, "end": 26.5})
    );
    let kinds: Vec<&Value> = value["key_moments"]
        .as_array()
        .map(|moments| moments.iter().map(|m| &m["kind"]).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [&json!("question"), &json!("tracker"), &json!("silence")]
    );
    assert_eq!(
        value["key_moments"][2],
        json!({"kind": "silence", "start": 60.0, "end": 100.0, "participant": null, "label": "Nobody talked for 40 s"})
    );
    let back: Insights = serde_json::from_value(value).expect("reads back");
    assert_eq!(back, insights);
}

#[test]
fn the_documented_example_reads_and_writes_back_unchanged() {
    let example = json!({
        "version": 1,
        "duration_seconds": 600.0,
        "talk_seconds": 500.0,
        "silence_seconds": 100.0,
        "overlap_seconds": 12.5,
        "speaker_switches": 40,
        "interactivity": 4.0,
        "participants": [
            {"participant": "alice", "name": "Alice", "talk_seconds": 300.0, "talk_ratio": 0.6,
             "turns": 21, "longest_monologue": {"start": 10.0, "end": 95.0, "seconds": 85.0},
             "patience_seconds": 0.8, "questions": 3, "words": 512,
             "talk": [[0.0, 4.2], [6.0, 9.9]]},
            {"participant": "bob", "name": null, "talk_seconds": 0.0, "talk_ratio": 0.0,
             "turns": 0, "longest_monologue": null, "patience_seconds": null,
             "questions": 0, "words": 0, "talk": []}
        ],
        "trackers": [
            {"name": "pricing", "count": 1,
             "hits": [{"participant": "bob", "phrase": "price", "text": "Price,", "start": 12.3, "end": 12.6}]}
        ],
        "key_moments": [
            {"kind": "tracker", "start": 12.3, "end": 12.6, "participant": "bob", "label": "pricing: price"},
            {"kind": "consent", "start": 13.0, "end": 13.0, "participant": null, "label": "x"},
            {"kind": "monologue", "start": 10.0, "end": 95.0, "participant": "alice", "label": "y"},
            {"kind": "question", "start": 1.0, "end": 2.0, "participant": "alice", "label": "z?"},
            {"kind": "silence", "start": 100.0, "end": 120.0, "participant": null, "label": "w"}
        ]
    });
    let insights: Insights = serde_json::from_value(example.clone()).expect("reads");
    assert_eq!(insights.participants[0].talk[1], Span::new(6.0, 9.9));
    assert_eq!(insights.key_moments[1].kind, KeyMomentKind::Consent);
    assert_eq!(serde_json::to_value(&insights).expect("writes"), example);
}

#[test]
fn configs_default_and_refuse_unknown_fields() {
    let config: InsightsConfig =
        serde_json::from_value(json!({"trackers": {"pricing": ["price", "pricing"]}}))
            .expect("reads");
    assert_eq!(config.trackers["pricing"], ["price", "pricing"]);
    assert_eq!(config.monologue_moment_seconds, 60.0);
    assert_eq!(config.long_silence_seconds, 10.0);
    assert_eq!(config.backchannel_seconds, 1.0);
    assert!(serde_json::from_value::<InsightsConfig>(json!({"trackerz": {}})).is_err());

    let voice: VoiceActivityConfig =
        serde_json::from_value(json!({"threshold_dbfs": -50.0})).expect("reads");
    assert_eq!(voice.threshold_dbfs, -50.0);
    assert_eq!(voice.bridge_seconds, 0.3);
    assert_eq!(voice.min_speech_seconds, 0.1);
    assert!(serde_json::from_value::<VoiceActivityConfig>(json!({"gate": 1})).is_err());
}

/// `count` frames at `level`.
fn frames(count: usize, level: f32) -> Vec<f32> {
    vec![level; count]
}

#[test]
fn talk_spans_threshold_bridging_and_min_speech() {
    let levels = [
        frames(10, -120.0), // 0–9 silence
        frames(20, -30.0),  // 10–29 speech
        frames(10, -120.0), // 30–39: 0.2 s, bridged
        frames(10, -20.0),  // 40–49 speech
        frames(30, -120.0), // 50–79: 0.6 s, not bridged
        frames(4, -30.0),   // 80–83: 0.08 s alone, dropped
        frames(16, -120.0), // 84–99
        frames(5, -44.9),   // 100–104: just above the threshold, 0.1 s kept
        frames(95, -45.0),  // 105–199: at the threshold is not speech
    ]
    .concat();
    assert_eq!(levels.len(), 200);
    let spans = talk_spans(&levels, 0.02, &VoiceActivityConfig::default());
    assert_spans(&spans, &[(0.2, 1.0), (2.0, 2.1)]);
}

#[test]
fn talk_spans_bridge_gaps_up_to_the_bridge_length() {
    let config = VoiceActivityConfig::default();
    // A gap of 15 frames (0.3 s) is bridged.
    let levels = [frames(10, -10.0), frames(15, -120.0), frames(10, -10.0)].concat();
    assert_spans(&talk_spans(&levels, 0.02, &config), &[(0.0, 0.7)]);
    // 16 frames (0.32 s) are not.
    let levels = [frames(10, -10.0), frames(16, -120.0), frames(10, -10.0)].concat();
    assert_spans(
        &talk_spans(&levels, 0.02, &config),
        &[(0.0, 0.2), (0.52, 0.72)],
    );
}

#[test]
fn talk_spans_edge_cases() {
    let config = VoiceActivityConfig::default();
    // Speech up to the last frame ends at the end of that frame.
    assert_spans(
        &talk_spans(&frames(10, -10.0), 0.02, &config),
        &[(0.0, 0.2)],
    );
    assert!(talk_spans(&[], 0.02, &config).is_empty());
    assert!(talk_spans(&frames(10, f32::NAN), 0.02, &config).is_empty());
    for frame_seconds in [0.0, -0.02, f64::NAN, f64::INFINITY] {
        assert!(talk_spans(&frames(10, -10.0), frame_seconds, &config).is_empty());
    }
}
