//! Verbal consent, yes: a participant in Germany (explicit consent) hears
//! the consent request through a real WebRTC session and answers "yes, I
//! agree" out loud (espeak-ng speech, made at test time, sent as Opus). The
//! local recogniser hears it: the audit log has the signal with method
//! `verbal`, the phrase and a confidence, the state changes to
//! `consented(verbal)`, and the clip of the answer is kept as evidence in
//! `consent-evidence/{pid}.opus`, listed in `call.json`.

use crate::common::{answer_out_loud, decode_ogg_opus, metric_sum, speech_tools_available};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_yes_is_consent_with_its_clip_as_evidence() {
    if !speech_tools_available() {
        return;
    }
    let spoken = answer_out_loud("verbal-yes", "vera", "yes, I agree").await;
    let events = &spoken.events;
    let position = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().position(pred);

    let played = position(&|e| {
        e["event"] == "prompt_played" && e["prompt"] == "consent_request" && e["audible"] == true
    })
    .expect("the consent request was played");
    let signal = position(&|e| {
        e["event"] == "signal_received"
            && e["participant"] == "vera"
            && e["decision"] == "granted"
            && e["method"] == "verbal"
    })
    .expect("a verbal signal in the audit log");
    let heard = &events[signal];
    let phrase = heard["phrase"].as_str().expect("the phrase");
    assert!(
        ["yes", "yes i agree", "i agree"].contains(&phrase),
        "{phrase}"
    );
    let confidence = heard["confidence"].as_f64().expect("a confidence");
    assert!(confidence >= -0.45, "{confidence}");
    let consented = position(&|e| {
        e["event"] == "state_changed"
            && e["participant"] == "vera"
            && e["to"]["state"] == "consented"
            && e["to"]["method"] == "verbal"
    })
    .expect("consented(verbal)");
    let opened =
        position(&|e| e["event"] == "gate_changed" && e["open"] == true).expect("the gate opened");
    assert!(played < signal && signal < consented && consented < opened);
    // Heard after the request finished.
    assert!(heard["t"].as_f64().unwrap() > events[played]["end"].as_f64().unwrap());

    // The evidence: the answer's own packets, listed for the participant.
    let vera = &spoken.summary["participants"][0];
    assert_eq!(vera["id"], "vera");
    // Left by now (the session ended); how they consented is in the log.
    assert_eq!(vera["consent"]["state"], "left", "{vera}");
    assert_eq!(vera["consent"]["evidence"], "consent-evidence/vera.opus");
    let clip = decode_ogg_opus(
        &spoken
            .server
            .call_dir(&spoken.call)
            .join("consent-evidence/vera.opus"),
    );
    println!(
        "evidence clip {:.2} s, voiced {:.2} s",
        clip.seconds(),
        clip.voiced_seconds(300.0)
    );
    assert!(
        clip.seconds() > 0.5 && clip.seconds() < 8.0,
        "{}",
        clip.seconds()
    );
    assert!(clip.voiced_seconds(300.0) > 0.3);
    assert_eq!(clip.pages_with_eos, 1);

    let metrics = spoken.server.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "hearken_consent_verbal_total{result=\"yes\"}"),
        1.0
    );
    spoken.server.shutdown().await;
}
