//! The review page in a real browser: Debian's headless Chromium, driven
//! over its DevTools protocol (`common::browser`), opens a call through a
//! share link with no bearer token.
//!
//! - The player loads the mix (its duration is the mix's, decoded here).
//! - Clicking a transcript word moves the player to that word's start as
//!   the transcript API gives it (within 50 ms); clicking a key moment (a
//!   tracker hit, configured for this test) moves it to the moment's start
//!   as the insights API gives it.
//! - A link of a range shows only words inside it, and no byte of audio
//!   outside it can be fetched; a revoked link answers 410.
//! - An operator signs in on the calls list, finds the call there and opens
//!   its page, which plays with the operator's token.
//! - A generated one-hour call with 10,000 words renders and scrolls; the
//!   times are printed (the bound asserted is generous: 5 s).
//!
//! Screenshots are saved under `CARGO_TARGET_TMPDIR` as test artifacts.

use std::path::PathBuf;
use std::time::Duration;

use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

use super::{call_of, create_share, token_of, wait_for_insights};
use crate::common::{Browser, TOKEN, TestServer, decode_ogg_opus, transcribing_server};

const CHROMIUM: &str = "/usr/bin/chromium";

fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("review-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Opens `url` and waits until the page says it is ready.
fn open_ready(browser: &mut Browser, url: &str) {
    browser.navigate(url).unwrap();
    browser
        .wait_for(
            "document.body.dataset.state === 'ready'",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
}

/// Clicks the element `js` finds (after giving it an id) and waits until
/// the player is at `expected` call time (within 50 ms); returns where it is.
fn click_and_wait(browser: &mut Browser, js: &str, expected: f64, offset: f64) -> f64 {
    browser
        .eval(&format!(
            "(() => {{ const e = {js}; e.id = 'click-target'; return true; }})()"
        ))
        .expect("target found");
    browser.click("#click-target").expect("click");
    browser
        .eval("document.getElementById('click-target').removeAttribute('id')")
        .unwrap();
    let condition =
        format!("Math.abs(hearkenReview.player.currentTime + {offset} - {expected}) < 0.05");
    let reached = browser.wait_for(&condition, Duration::from_secs(10));
    let at = f(&browser.eval("hearkenReview.player.currentTime").unwrap()) + offset;
    assert!(reached.is_ok(), "player at {at:.3}, expected {expected:.3}");
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_opens_the_page_and_words_and_moments_seek() {
    if !std::path::Path::new(CHROMIUM).exists() {
        panic!("{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium");
    }
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let server = transcribing_server(&fake, "REVIEW_PAGE_DG_KEY", |c| {
        // The fake names its words w0, w1, …: track one of them.
        c.insights.trackers = [("marker".to_owned(), vec!["w5".to_owned()])]
            .into_iter()
            .collect();
    })
    .await;
    let call = "reviewed";
    call_of(
        &server,
        call,
        &[
            ("alice", &[(440.0, 4.0), (0.0, 5.0)]),
            ("bob", &[(0.0, 4.5), (1000.0, 4.0), (0.0, 0.5)]),
        ],
    )
    .await;
    let insights = wait_for_insights(&server, call).await;
    let transcript = crate::common::transcript(&server, call).await;
    let bob_words = crate::common::words_of(&transcript, "bob");
    assert!(bob_words.len() >= 4, "bob's words: {bob_words:?}");
    let marker = insights["key_moments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "tracker")
        .cloned()
        .expect("a tracker moment");
    let mix = decode_ogg_opus(&server.call_dir(call).join("audio/mix.opus"));

    let (status, share) = create_share(
        &server,
        call,
        serde_json::json!({"expires_in": 600, "note": "browser test"}),
    )
    .await;
    assert_eq!(status, 201, "{share}");
    let page = server.url(share["url"].as_str().unwrap());
    let mut browser = tokio::task::block_in_place(Browser::launch).expect("chromium starts");
    tokio::task::block_in_place(|| {
        open_ready(&mut browser, &page);
        // The player has the mix.
        browser
            .wait_for(
                "hearkenReview.player.readyState >= 1",
                Duration::from_secs(20),
            )
            .expect("the player loads the mix");
        let duration = f(&browser.eval("hearkenReview.player.duration").unwrap());
        println!(
            "player duration {duration:.3} s; mix decoded {:.3} s",
            mix.seconds()
        );
        assert!((duration - mix.seconds()).abs() < 0.1);
        let src = browser.eval("hearkenReview.player.currentSrc").unwrap();
        assert!(
            src.as_str()
                .unwrap_or("")
                .contains("/audio/mix.opus?share="),
            "{src}"
        );

        // A word of bob's (the third): its start as the transcript API says.
        let (start, _, word) = bob_words[2].clone();
        let js = format!(
            "[...document.querySelectorAll('#transcript .w')].find(e => e.textContent.trim() === '{word}')"
        );
        let at = click_and_wait(&mut browser, &js, start, 0.0);
        println!("clicked word {word:?} (starts {start:.3} s): player at {at:.3} s");
        // While paused there, the word is the highlighted one.
        let current = browser
            .eval("document.querySelector('#transcript .w.current')?.textContent.trim() ?? null")
            .unwrap();
        assert_eq!(current, serde_json::json!(word));

        // The tracker's key moment.
        let moment_start = f(&marker["start"]);
        let js = "document.querySelector('#moments .moment.kind-tracker')";
        let at = click_and_wait(&mut browser, js, moment_start, 0.0);
        println!(
            "clicked moment {:?} (starts {moment_start:.3} s): player at {at:.3} s",
            marker["label"]
        );

        // It plays from there, and the highlight follows.
        browser.eval("hearkenReview.player.play()").unwrap();
        browser
            .wait_for(
                &format!("hearkenReview.player.currentTime > {}", moment_start + 0.5),
                Duration::from_secs(10),
            )
            .expect("it plays");
        browser.eval("hearkenReview.player.pause()").unwrap();
        let shot = artifact("review-page.png");
        browser.screenshot(&shot).unwrap();
        println!("screenshot: {}", shot.display());
    });

    // A link of 4.5–6.5 s: only words inside it; no audio outside it.
    let (_, excerpt) = create_share(
        &server,
        call,
        serde_json::json!({"expires_in": 600, "range": {"start": 4.5, "end": 6.5}}),
    )
    .await;
    let excerpt_page = server.url(excerpt["url"].as_str().unwrap());
    let excerpt_token = token_of(excerpt["url"].as_str().unwrap());
    tokio::task::block_in_place(|| {
        open_ready(&mut browser, &excerpt_page);
        let starts = browser
            .eval("[...document.querySelectorAll('#transcript .w')].map(e => Number(e.dataset.s))")
            .unwrap();
        let starts: Vec<f64> = starts.as_array().unwrap().iter().map(f).collect();
        assert!(!starts.is_empty(), "bob's words of 4.5–6.5 s are shown");
        assert!(
            starts.iter().all(|s| (4.5..=6.5).contains(s)),
            "only words inside the range: {starts:?}"
        );
        browser
            .wait_for(
                "hearkenReview.player.readyState >= 1",
                Duration::from_secs(20),
            )
            .unwrap();
        let duration = f(&browser.eval("hearkenReview.player.duration").unwrap());
        assert!(
            (duration - 2.0).abs() < 0.05,
            "the excerpt plays 2 s: {duration}"
        );
        // The page's own fetch of a byte range past the excerpt is refused,
        // and asking for a speaker's track is too.
        let statuses = browser
            .eval(&format!(
                "(async () => {{
                    const cut = await fetch(hearkenReview.player.currentSrc);
                    const size = (await cut.arrayBuffer()).byteLength;
                    const past = await fetch(hearkenReview.player.currentSrc, {{ headers: {{ Range: `bytes=${{size}}-` }} }});
                    const track = await fetch('/v1/calls/{call}/audio/alice.opus?share={excerpt_token}');
                    return [cut.status, past.status, track.status];
                }})()"
            ))
            .unwrap();
        assert_eq!(statuses, serde_json::json!([200, 416, 403]));
    });

    // An operator: the calls list asks for the token, lists the call with
    // its transcript and insights made, and opens its review page, which
    // plays through the token (no share link).
    let list = server.url("/calls");
    tokio::task::block_in_place(|| {
        browser.navigate(&list).unwrap();
        browser
            .wait_for(
                "document.body.dataset.state === 'login'",
                Duration::from_secs(20),
            )
            .expect("the list asks for the operator token");
        browser
            .eval(&format!(
                "document.getElementById('token-input').value = '{TOKEN}';
                 document.getElementById('login-form').requestSubmit(); true"
            ))
            .unwrap();
        browser
            .wait_for(
                "document.body.dataset.state === 'ready'",
                Duration::from_secs(20),
            )
            .unwrap();
        let row = browser
            .eval(&format!(
                "document.querySelector('tr[data-href=\"/calls/{call}\"]')?.innerText ?? null"
            ))
            .unwrap();
        let row = row.as_str().unwrap_or_default().to_lowercase();
        assert!(row.contains("ready") && row.contains("done"), "{row}");
        browser
            .click(&format!("a[href=\"/calls/{call}\"]"))
            .unwrap();
        browser
            .wait_for(
                "location.pathname.startsWith('/calls/') && document.body.dataset.state === 'ready'",
                Duration::from_secs(20),
            )
            .unwrap();
        browser
            .wait_for(
                "hearkenReview.player.readyState >= 1",
                Duration::from_secs(20),
            )
            .expect("an operator's page plays the mix");
        let src = browser.eval("hearkenReview.player.currentSrc").unwrap();
        assert!(
            src.as_str().unwrap_or("").contains("access_token="),
            "{src}"
        );
    });

    // Revoked: the page answers 410.
    let id = excerpt["id"].as_str().unwrap();
    let r = server
        .client
        .delete(server.url(&format!("/v1/calls/{call}/shares/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        server
            .client
            .get(&excerpt_page)
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    tokio::task::block_in_place(|| {
        browser.navigate(&excerpt_page).unwrap();
        let text = browser.eval("document.body.innerText").unwrap();
        assert!(
            text.as_str()
                .unwrap_or("")
                .contains("expired or was revoked"),
            "{text}"
        );
    });
    drop(browser);
    server.shutdown().await;
}

/// What people say in the generated hour: ordinary sentences, some of them
/// questions, some with the shipped trackers' phrases.
const LINES: &[&str] = &[
    "Thanks everyone for joining, let's get started with the roadmap.",
    "Can you walk me through how the pricing works for larger teams?",
    "We looked at another vendor last quarter but the integration was painful.",
    "Our budget for this is set in January, so timing matters a lot.",
    "That makes sense, and the onboarding usually takes about two weeks.",
    "What would the next steps look like on your side?",
    "I will send over the security review and the draft contract today.",
    "Does the recording respect consent for people dialing in from California?",
    "Yes, each participant is asked, and anyone who declines is never recorded.",
    "Great, let's follow up on Thursday with the legal team.",
];

/// Writes a one-hour, three-speaker call with 10,000 words into the data
/// directory, as the server would have left it (call.json, transcript,
/// insights, a mix of an hour of silence).
fn write_hour_long_call(server: &TestServer, call: &str) -> usize {
    use hearken_core::insights::{InsightsInput, Span, SpeakerInput, WordInput};
    let dir = server.call_dir(call);
    std::fs::create_dir_all(dir.join("audio")).unwrap();
    let people = [
        ("alice", "Alice Moreno"),
        ("bob", "Bob Okafor"),
        ("carol", "Carol Chen"),
    ];
    let mut segments = Vec::new();
    let mut words_in = Vec::new();
    let mut talk: Vec<Vec<Span>> = vec![Vec::new(); people.len()];
    let (mut t, mut n, mut line) = (1.0f64, 0usize, 0usize);
    while n < 10_000 {
        let who = (line * 7 / 3) % people.len();
        let text = LINES[line % LINES.len()];
        let start = t;
        let mut words = Vec::new();
        for w in text.split(' ') {
            if n == 10_000 {
                break;
            }
            words.push(
                serde_json::json!({"word": w, "start": t, "end": t + 0.3, "confidence": 0.95}),
            );
            words_in.push(WordInput {
                participant: people[who].0.to_owned(),
                word: w.to_owned(),
                start: t,
                end: t + 0.3,
            });
            t += 0.34;
            n += 1;
        }
        talk[who].push(Span { start, end: t });
        segments.push(serde_json::json!({
            "participant_id": people[who].0, "display_name": people[who].1,
            "start": start, "end": t, "text": text, "words": words,
        }));
        t += 0.6 + (line % 4) as f64 * 0.3;
        line += 1;
    }
    let duration = 3600.0f64.max(t + 1.0);
    let transcript = serde_json::json!({
        "call_id": call, "backend": "deepgram", "model": "nova-3",
        "segments": segments, "coverage": {}, "complete": true,
    });
    let input = InsightsInput {
        duration,
        speakers: people
            .iter()
            .zip(talk)
            .map(|((id, name), talk)| SpeakerInput {
                participant: (*id).to_owned(),
                name: Some((*name).to_owned()),
                talk,
            })
            .collect(),
        words: words_in,
        consent: Vec::new(),
    };
    let settings = hearken::config::InsightsSettings::default();
    let insights =
        hearken_core::insights::compute(&input, &hearken::postcall::insights_config(&settings));
    let started = chrono::Utc::now() - chrono::Duration::hours(2);
    let ended = started + chrono::Duration::milliseconds((duration * 1000.0) as i64);
    let participants: Vec<serde_json::Value> = people
        .iter()
        .map(|(id, _)| {
            serde_json::json!({
                "id": id, "file": format!("audio/{id}.opus"), "sessions": [],
                "first_packet_at": started, "last_packet_at": ended,
                "packets_received": 180000, "packets_lost": 0, "bytes_received": 0,
                "recorded_seconds": duration, "frames_withheld": 0,
                "consent": {"state": "consented", "method": "dtmf", "jurisdiction": "US-CA"},
            })
        })
        .collect();
    let summary = serde_json::json!({
        "call_id": call, "started_at": started, "ended_at": ended,
        "end_reason": "last_session_left", "active_sessions": 0,
        "consent_mode": "notify_and_allow_opt_out", "participants": participants,
        "postcall": {
            "mix": {"state": "done", "progress": 1.0, "file": "audio/mix.opus"},
            "insights": {"state": "done", "progress": 1.0, "file": "insights.json"},
        },
    });
    std::fs::write(dir.join("call.json"), serde_json::to_vec(&summary).unwrap()).unwrap();
    std::fs::write(
        dir.join("transcript.json"),
        serde_json::to_vec(&transcript).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("insights.json"),
        serde_json::to_vec(&insights).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("audio/mix.opus"), silent_ogg_opus(duration)).unwrap();
    n
}

/// An Ogg Opus file of `seconds` of silence (libopus, the core's muxer):
/// one encoded silent frame, repeated (encoding an hour frame by frame
/// takes most of a minute here).
fn silent_ogg_opus(seconds: f64) -> Vec<u8> {
    let mut encoder =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let head = hearken_core::ogg::OpusHead {
        channels: 1,
        pre_skip: 0,
        input_sample_rate: 48_000,
        output_gain: 0,
    };
    let mut ogg = hearken_core::ogg::OggOpusWriter::new(7, &head, "hearken-test", &[]);
    let mut packet = [0u8; 400];
    // Past the encoder's first frames (its look-ahead), a silent frame
    // encodes the same every time.
    let mut n = 0;
    for _ in 0..5 {
        n = encoder.encode(&[0i16; 960], &mut packet).unwrap();
    }
    let mut out = Vec::new();
    for _ in 0..(seconds / 0.02) as usize {
        ogg.push_packet(&packet[..n], 960).unwrap();
        out.extend(ogg.poll_output());
    }
    ogg.finish();
    out.extend(ogg.poll_output());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_call_renders_and_scrolls_quickly() {
    let server = TestServer::start().await;
    let call = "hour-long";
    let words = write_hour_long_call(&server, call);
    assert_eq!(words, 10_000);
    let (status, share) = create_share(
        &server,
        call,
        serde_json::json!({"expires_in": 600, "note": "Pricing questions for the team"}),
    )
    .await;
    assert_eq!(status, 201, "{share}");
    let page = server.url(share["url"].as_str().unwrap());
    let mut browser = tokio::task::block_in_place(Browser::launch).expect("chromium starts");
    tokio::task::block_in_place(|| {
        open_ready(&mut browser, &page);
        let rendered = browser
            .eval("document.querySelectorAll('#transcript .w').length")
            .unwrap();
        assert_eq!(rendered, serde_json::json!(10_000));
        let render_ms = f(&browser.eval("hearkenReview.renderMs").unwrap());
        let timings = browser.eval("hearkenReview.timings").unwrap();
        // Scroll the page (the transcript is its long part) top to bottom,
        // a screen at a time, waiting for a frame after each; then jump
        // from the top to the bottom.
        let scroll = browser
            .eval(
                "(async () => {
                    const el = document.scrollingElement;
                    const frame = () => new Promise(r => requestAnimationFrame(r));
                    const frames = [];
                    const t0 = performance.now();
                    let last = t0;
                    for (let y = el.clientHeight; y <= el.scrollHeight; y += el.clientHeight) {
                        el.scrollTop = y;
                        await frame();
                        const now = performance.now();
                        frames.push(now - last);
                        last = now;
                    }
                    const total = performance.now() - t0;
                    frames.sort((a, b) => a - b);
                    el.scrollTop = 0;
                    await frame();
                    const j0 = performance.now();
                    el.scrollTop = el.scrollHeight;
                    await frame();
                    const jump = performance.now() - j0;
                    return { total, screens: frames.length, median: frames[frames.length >> 1],
                             worst: frames[frames.length - 1], jump };
                })()",
            )
            .unwrap();
        // Seeking to the last word and highlighting it stays quick too.
        let seek_ms = f(&browser
            .eval(
                "(async () => {
                    const t0 = performance.now();
                    const words = document.querySelectorAll('#transcript .w');
                    words[words.length - 1].click();
                    await new Promise(r => requestAnimationFrame(r));
                    return performance.now() - t0;
                })()",
            )
            .unwrap());
        println!(
            "one hour, {words} words: rendered in {render_ms:.0} ms ({timings}); \
             scrolled {:.0} screens in {:.0} ms (a frame: median {:.0} ms, worst {:.0} ms); \
             top to bottom in one jump {:.0} ms; a seek to the last word {seek_ms:.0} ms",
            f(&scroll["screens"]),
            f(&scroll["total"]),
            f(&scroll["median"]),
            f(&scroll["worst"]),
            f(&scroll["jump"]),
        );
        // Generous bounds (a loaded 2-core machine); the figures are the report.
        assert!(render_ms < 5000.0, "render {render_ms} ms");
        assert!(f(&scroll["worst"]) < 1000.0, "a scroll frame took {scroll}");
        assert!(f(&scroll["jump"]) < 1000.0, "the jump took {scroll}");
        browser
            .eval("document.scrollingElement.scrollTop = 0")
            .unwrap();
        browser.eval("hearkenReview.seek(95)").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let shot = artifact("hour-long-review-page.png");
        browser.screenshot(&shot).unwrap();
        println!("screenshot: {}", shot.display());
    });
    drop(browser);
    server.shutdown().await;
}
