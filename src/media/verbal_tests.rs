//! Unit tests of the engine's verbal consent: who is heard, what is
//! submitted, what a result does, and the bounds. The recogniser is a fake
//! (jobs collected, results made up); real speech through the real model is
//! in `tests/it/consent/verbal_*.rs`.

use std::sync::{Arc, Mutex};

use hearken_verbal::{Answer, SampleSpan};

use super::*;
use crate::metrics::Metrics;

type Jobs = Arc<Mutex<Vec<Job>>>;

const WORKER_BASE: u64 = 3 << WORKER_SHIFT;

fn verbal() -> (Verbal, Jobs) {
    let jobs: Jobs = Arc::default();
    let into = jobs.clone();
    let tap = VerbalTap::new(WORKER_BASE, move |job| {
        into.lock().unwrap().push(job);
        Ok(())
    });
    (Verbal::new(tap), jobs)
}

fn call() -> CallId {
    CallId::parse("verbal-unit").unwrap()
}

fn request_played(to: &[&str], audible: bool, complete: bool) -> AuditEvent {
    AuditEvent::PromptPlayed {
        audible,
        complete,
        start: 0.0,
        end: 4.8,
        prompt: PromptKind::ConsentRequest,
        to: to.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn state_changed(who: &str, to: ConsentState) -> AuditEvent {
    AuditEvent::StateChanged {
        t: 6.0,
        participant: who.to_owned(),
        from: ConsentState::Notified,
        to,
    }
}

/// 20 ms Opus packets of `pcm` (48 kHz mono).
fn encode(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut encoder =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut out = [0u8; 1500];
    pcm.chunks(960)
        .map(|chunk| {
            let mut frame = [0i16; 960];
            frame[..chunk.len()].copy_from_slice(chunk);
            let n = encoder.encode(&frame, &mut out).unwrap();
            out[..n].to_vec()
        })
        .collect()
}

/// Something loud enough to be speech to the listener: a buzz with
/// harmonics, `seconds` long.
fn buzz(seconds: f64) -> Vec<i16> {
    let n = (seconds * 48_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let v = (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 360.0 * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * 900.0 * t).sin();
            (v * 6_000.0) as i16
        })
        .collect()
}

fn silence(seconds: f64) -> Vec<i16> {
    vec![0; (seconds * 48_000.0) as usize]
}

/// An answer: half a second of silence, a second of "speech", a second and
/// a half of silence.
fn answer_turn() -> Vec<Vec<u8>> {
    encode(&[silence(0.5), buzz(1.0), silence(1.5)].concat())
}

/// Feeds packets of `who` with consecutive RTP times from `rtp`, 20 ms apart.
fn feed(
    v: &mut Verbal,
    who: &str,
    packets: &[Vec<u8>],
    rtp: u64,
    now: Instant,
    metrics: &MediaMetrics,
) {
    for (i, p) in packets.iter().enumerate() {
        let at = now + Duration::from_millis(20 * i as u64);
        v.hear(&call(), who, rtp + 960 * i as u64, p, at, metrics);
    }
}

fn result(tag: u64, decision: Option<Heard>, span: SampleSpan) -> Recognised {
    Recognised {
        tag,
        result: Ok(decision.map(|decision| Answer {
            decision,
            phrase: match decision {
                Heard::Yes => "yes i agree".into(),
                Heard::No => "i do not agree".into(),
            },
            confidence: 0.1,
            margin: Some(0.4),
            span,
        })),
        decode_time: Duration::from_millis(300),
    }
}

fn count(metrics: &MediaMetrics, r: VerbalResult) -> u64 {
    metrics.consent_verbal.get(r).get()
}

#[test]
fn only_those_whose_request_finished_are_heard() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    // Before the request finished: nobody is heard.
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    assert!(jobs.lock().unwrap().is_empty());
    // A request cut short, or one they could not hear, starts nothing.
    v.on_audit(&call(), &request_played(&["ann"], true, false), now);
    v.on_audit(&call(), &request_played(&["ann"], false, true), now);
    assert!(!v.is_listening(&call(), "ann"));
    // Heard whole: ann is listened to, bob is not.
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    assert!(v.is_listening(&call(), "ann"));
    assert!(!v.is_listening(&call(), "bob"));
    feed(&mut v, "bob", &answer_turn(), 0, now, &metrics);
    assert!(jobs.lock().unwrap().is_empty(), "bob was not asked");
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    let jobs = jobs.lock().unwrap();
    assert_eq!(jobs.len(), 1, "one utterance");
    assert_eq!(
        jobs[0].tag >> WORKER_SHIFT,
        3,
        "the worker's bits are in the tag"
    );
    let span = jobs[0].utterance.span;
    // The buzz is 0.5 s to 1.5 s of what was fed; the span holds it.
    assert!(span.start <= 24_000 && span.end >= 72_000, "{span:?}");
    assert_eq!(v.in_flight(), 1);
}

#[test]
fn another_call_with_the_same_participant_id_is_not_heard() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    let other = CallId::parse("another-call").unwrap();
    for (i, p) in answer_turn().iter().enumerate() {
        v.hear(&other, "ann", 960 * i as u64, p, now, &metrics);
    }
    assert!(jobs.lock().unwrap().is_empty());
}

#[test]
fn a_yes_brings_the_clip_of_the_answer_and_stops_listening() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    feed(&mut v, "ann", &answer_turn(), 5_000, now, &metrics);
    let job = jobs.lock().unwrap().pop().unwrap();
    let span = job.utterance.span;
    let answered = v
        .handle_result(result(job.tag, Some(Heard::Yes), span), &metrics)
        .expect("an answer");
    assert_eq!(answered.decision, Decision::Granted);
    assert_eq!(answered.phrase, "yes i agree");
    assert_eq!(&*answered.participant, "ann");
    let clip = answered.evidence.as_ref().unwrap();
    // Whole 20 ms packets covering the span: at most one more at each end.
    let packets = span.len().div_ceil(960) as usize;
    assert!(
        (packets..=packets + 2).contains(&clip.len()),
        "{} packets for {span:?}",
        clip.len()
    );
    assert!(clip.iter().all(|p| p.samples == 960));
    let clip_len = clip.len();
    assert!(!v.is_listening(&call(), "ann"), "answered");
    assert_eq!(count(&metrics, VerbalResult::Yes), 1);
    match answered.evidence_msg() {
        Some(SinkMsg::ConsentEvidence {
            file_stem, packets, ..
        }) => {
            assert_eq!(file_stem, "ann");
            assert_eq!(packets.len(), clip_len);
        }
        other => panic!("expected evidence, got {other:?}"),
    }
    // Further audio of ann is not heard.
    feed(&mut v, "ann", &answer_turn(), 500_000, now, &metrics);
    assert!(jobs.lock().unwrap().is_empty());
}

#[test]
fn a_no_declines_without_evidence() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    let job = jobs.lock().unwrap().pop().unwrap();
    let answered = v
        .handle_result(
            result(job.tag, Some(Heard::No), job.utterance.span),
            &metrics,
        )
        .unwrap();
    assert_eq!(answered.decision, Decision::Declined);
    assert!(answered.evidence.is_none());
    assert!(answered.evidence_msg().is_none(), "no clip for a no");
    assert_eq!(count(&metrics, VerbalResult::No), 1);
}

#[test]
fn an_unclear_answer_is_counted_and_listening_goes_on() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    let job = jobs.lock().unwrap().pop().unwrap();
    assert!(
        v.handle_result(result(job.tag, None, job.utterance.span), &metrics)
            .is_none()
    );
    assert_eq!(count(&metrics, VerbalResult::Unclear), 1);
    assert!(v.is_listening(&call(), "ann"));
    // A second answer is heard and submitted.
    feed(&mut v, "ann", &answer_turn(), 960 * 150, now, &metrics);
    assert_eq!(jobs.lock().unwrap().len(), 1);
}

#[test]
fn consent_given_another_way_stops_listening_and_a_late_result_is_ignored() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann", "bob"], true, true), now);
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    let job = jobs.lock().unwrap().pop().unwrap();
    // Ann pressed 1 meanwhile; bob left.
    let dtmf = ConsentState::Consented(ConsentMethod::Dtmf);
    v.on_audit(&call(), &state_changed("ann", dtmf), now);
    v.on_audit(&call(), &state_changed("bob", ConsentState::Left), now);
    assert!(!v.is_listening(&call(), "ann"));
    assert!(!v.is_listening(&call(), "bob"));
    // A "no" heard before the key press must not undo it.
    assert!(
        v.handle_result(
            result(job.tag, Some(Heard::No), job.utterance.span),
            &metrics
        )
        .is_none()
    );
    assert_eq!(v.in_flight(), 0);
    // A request played again starts afresh: the old result is stale.
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    assert!(v.is_listening(&call(), "ann"));
}

#[test]
fn a_full_recogniser_queue_counts_a_drop() {
    let metrics = Metrics::new().media();
    let tap = VerbalTap::new(0, |job| Err(SubmitError::Full(Box::new(job))));
    let mut v = Verbal::new(tap);
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    feed(&mut v, "ann", &answer_turn(), 0, now, &metrics);
    assert_eq!(count(&metrics, VerbalResult::Dropped), 1);
    assert_eq!(v.in_flight(), 0);
    assert!(v.is_listening(&call(), "ann"), "they may answer again");
}

#[test]
fn jobs_awaiting_a_result_are_bounded() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    let utterance = || Utterance {
        audio: vec![0; 1600],
        span: SampleSpan {
            start: 0,
            end: 4800,
        },
        speech: SampleSpan {
            start: 0,
            end: 4800,
        },
        ended: hearken_verbal::EndReason::Silence,
    };
    for _ in 0..MAX_IN_FLIGHT + 5 {
        v.submit(&call(), "ann", 1, utterance(), now);
    }
    assert_eq!(v.in_flight(), MAX_IN_FLIGHT);
    assert_eq!(jobs.lock().unwrap().len(), MAX_IN_FLIGHT);
    // Results that never come are forgotten.
    v.sweep(now + RESULT_WAIT, |_| true, &metrics);
    assert_eq!(v.in_flight(), 0);
}

#[test]
fn the_evidence_buffer_keeps_the_last_ten_seconds() {
    let metrics = Metrics::new().media();
    let (mut v, _jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    let packets = encode(&silence(1.0));
    for second in 0..18u64 {
        feed(&mut v, "ann", &packets, second * 48_000, now, &metrics);
    }
    let l = &v.calls[&call()]["ann"];
    assert_eq!(l.fed, 18 * 48_000);
    assert!(l.clip_samples <= EVIDENCE_KEEP_SAMPLES);
    assert!(l.clip_samples > EVIDENCE_KEEP_SAMPLES - 960);
    assert_eq!(l.clip.front().unwrap().start, 8 * 48_000);
}

#[test]
fn gaps_are_filled_with_silence_and_old_packets_skipped() {
    let metrics = Metrics::new().media();
    let (mut v, _jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    let p = encode(&silence(0.02)).remove(0);
    v.hear(&call(), "ann", 1_000, &p, now, &metrics);
    // Ten packets lost.
    v.hear(&call(), "ann", 1_000 + 11 * 960, &p, now, &metrics);
    // A repeat of an old one.
    v.hear(&call(), "ann", 1_000, &p, now, &metrics);
    // A gap of a minute is filled with one second only.
    v.hear(
        &call(),
        "ann",
        1_000 + 12 * 960 + 60 * 48_000,
        &p,
        now,
        &metrics,
    );
    let l = &v.calls[&call()]["ann"];
    assert_eq!(l.fed, 12 * 960 + 48_000 + 960);
    assert_eq!(l.clip.len(), 3);
}

#[test]
fn listening_ends_after_its_window_and_ended_calls_are_forgotten() {
    let metrics = Metrics::new().media();
    let (mut v, jobs) = verbal();
    let now = Instant::now();
    v.on_audit(&call(), &request_played(&["ann"], true, true), now);
    // Speech still going when the window closes: cut and submitted.
    feed(
        &mut v,
        "ann",
        &encode(&[silence(0.5), buzz(1.0)].concat()),
        0,
        now,
        &metrics,
    );
    assert!(jobs.lock().unwrap().is_empty());
    let late = now + LISTEN_AFTER_REQUEST;
    v.sweep(late, |_| true, &metrics);
    assert_eq!(jobs.lock().unwrap().len(), 1);
    assert!(v.is_listening(&call(), "ann"), "its result is awaited");
    let job = jobs.lock().unwrap().pop().unwrap();
    assert!(
        v.handle_result(result(job.tag, None, job.utterance.span), &metrics)
            .is_none()
    );
    v.sweep(late, |_| true, &metrics);
    assert!(!v.is_listening(&call(), "ann"));
    // A call that ended is forgotten with everyone in it.
    v.on_audit(&call(), &request_played(&["bob"], true, true), now);
    v.sweep(now, |_| false, &metrics);
    assert!(!v.is_listening(&call(), "bob"));
}
