//! Verbal consent, no: a participant in Germany answers the consent request
//! "no, I do not agree" out loud through a real WebRTC session. The local
//! recogniser hears a refusal: the audit log has the signal with method
//! `verbal` and the phrase, the participant is declined, nothing of them is
//! recorded, and no evidence clip is kept.

use crate::common::{answer_out_loud, metric_sum, speech_tools_available};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_no_declines_and_keeps_no_clip() {
    if !speech_tools_available() {
        return;
    }
    let spoken = answer_out_loud("verbal-no", "nils", "no, I do not agree").await;
    let events = &spoken.events;
    let heard = events
        .iter()
        .find(|e| {
            e["event"] == "signal_received" && e["participant"] == "nils" && e["method"] == "verbal"
        })
        .expect("a verbal signal in the audit log");
    assert_eq!(heard["decision"], "declined", "{heard}");
    let phrase = heard["phrase"].as_str().expect("the phrase");
    assert!(
        phrase.starts_with("no") || phrase.contains("not agree") || phrase.contains("disagree"),
        "{phrase}"
    );
    assert!(heard["confidence"].is_number());
    assert!(
        events.iter().any(|e| e["event"] == "state_changed"
            && e["participant"] == "nils"
            && e["to"]["state"] == "declined"),
        "declined"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "gate_changed" && e["open"] == true),
        "the gate never opened"
    );

    let nils = &spoken.summary["participants"][0];
    assert!(nils["consent"]["evidence"].is_null(), "{nils}");
    assert_eq!(nils["recorded_seconds"], 0.0, "{nils}");
    let dir = spoken.server.call_dir(&spoken.call);
    assert!(
        !dir.join("consent-evidence").exists(),
        "no evidence for a no"
    );
    let metrics = spoken.server.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "hearken_consent_verbal_total{result=\"no\"}"),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "hearken_consent_verbal_total{result=\"yes\"}"),
        0.0
    );
    spoken.server.shutdown().await;
}
