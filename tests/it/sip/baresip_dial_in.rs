//! A real telephone dials in: baresip (Debian's package) calls
//! `sip:{call}@hearken` offering only G.711 (PCMU), its microphone playing
//! speech. The caller is in Germany (explicit consent, all-party), so
//! Hearken asks for consent; baresip hears the request (the test decodes
//! what baresip recorded of the call), presses 1 (RFC 4733), talks on and
//! hangs up. The recording holds the speech after the key and nothing
//! before it; `call.json` says the caller came over SIP in PCMU.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{
    Baresip, TestServer, baresip_available, consent_log, decode_ogg_opus, phone_speech,
    put_participant, read_wav, speech_tools_available,
};

pub async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_hears_the_request_presses_1_and_is_recorded_after() {
    if !baresip_available() || !speech_tools_available() {
        return;
    }
    let server = TestServer::start_with(|c| c.ingest.sip.listen = "127.0.0.1:0".into()).await;
    let sip = server
        .server
        .as_ref()
        .unwrap()
        .state
        .sip
        .as_ref()
        .unwrap()
        .local_addr;
    let call = "phone-in";
    // Said before the call: the caller (baresip's From user) is in Germany.
    let (status, body) = put_participant(
        &server,
        call,
        "caller",
        json!({"location": {"country": "DE"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let request = hearken::setup::consent::load_prompts("en", None)
        .unwrap()
        .consent_request
        .duration
        .as_secs_f64();

    let scratch = tempfile::tempdir().unwrap();
    let source = phone_speech(scratch.path(), (request + 14.0) as u32);
    let phone = Baresip::start(&["g711"], &source);
    let answer = phone.command("dial", &format!("sip:{call}@{sip}"));
    assert_eq!(answer["ok"], true, "{answer}");
    // The call is up once the server has the caller.
    wait_for("the call", Duration::from_secs(10), async || {
        let summary = server.call_json(call).await;
        summary["participants"][0]["id"] == "caller"
    })
    .await;
    let up = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(request + 1.5)).await;
    let answer = phone.command("sndcode", "1");
    assert_eq!(answer["ok"], true, "{answer}");
    let key_at = up.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let answer = phone.command("hangup", "");
    assert_eq!(answer["ok"], true, "{answer}");
    wait_for("the call to end", Duration::from_secs(10), async || {
        server.call_dir(call).join("call.json").exists()
            && server.call_json(call).await["ended_at"].is_string()
    })
    .await;

    let summary = server.call_json(call).await;
    let caller = &summary["participants"][0];
    println!("{caller}");
    assert_eq!(caller["ingest"], "sip");
    assert_eq!(caller["codec"], "pcmu");
    assert_eq!(caller["transcoded_to_opus"], true);
    assert_eq!(caller["consent"]["jurisdiction"], "DE", "{caller}");

    // baresip heard the request: that much voiced audio in what it decoded.
    let heard = phone.heard();
    assert!(
        !heard.is_empty(),
        "baresip dumped what it heard: {}",
        phone.log()
    );
    let (rate, channels, samples) = read_wav(heard.last().unwrap());
    let frame = (rate as usize / 50) * channels as usize;
    let voiced = samples
        .chunks(frame)
        .filter(|c| {
            (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt() > 300.0
        })
        .count() as f64
        * 0.02;
    println!("baresip heard {voiced:.2} s of voice; the request is {request:.2} s");
    assert!(voiced > request * 0.6, "the request was heard");

    // Nothing before the key; the caller's speech after it.
    let log = consent_log(&server, call).await;
    let consented = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "state_changed" && e["to"]["method"] == "dtmf")
        .expect("consent by key")
        .clone();
    let t = consented["t"].as_f64().unwrap();
    println!("consented at {t:.2} s of call time (key sent ~{key_at:.2} s after setup)");
    assert!(t > request, "after the request");
    let rec = decode_ogg_opus(&server.call_dir(call).join("audio/caller.opus"));
    assert!(rec.rms(0.0, t - 0.1) < 1.0, "nothing before consent");
    let after = rec.voiced_seconds(300.0);
    println!("recorded {:.2} s, {after:.2} s voiced", rec.seconds());
    assert!(after > 3.0, "speech after the key: {after:.2} s");
    server.shutdown().await;
}
