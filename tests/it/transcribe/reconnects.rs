//! Two speakers on one call are transcribed through a fake Deepgram server
//! (speaking the real wire protocol) that drops the connection mid-speech
//! three times. The transcript covers all consented audio (coverage 100 %),
//! attributes every word to the right speaker, has no duplicate words, and
//! its word times line up with the recordings (a word sits where that
//! speaker's recording has speech). Both forms of audio the Deepgram
//! backend can send are covered: `linear16` and Opus passed through in Ogg.
//! Every request asks Deepgram to keep nothing (`mip_opt_out=true`) unless
//! `transcription.deepgram.mip_opt_out` is off (the Ogg run turns it off).

use std::time::Duration;

use crate::common::{Outgoing, TOKEN, WhipClient, decode_ogg_opus, speech};
use hearken::config::DeepgramEncoding;
use hearken_fake_deepgram::{Behavior, DropMode, FakeConfig, FakeDeepgram};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_three_drops_full_coverage() {
    // The default config: Deepgram keeps nothing.
    three_drops(
        DeepgramEncoding::Linear16,
        "HEARKEN_TEST_DEEPGRAM_KEY_PCM",
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_three_drops_full_coverage_opus_passthrough() {
    three_drops(
        DeepgramEncoding::OggOpus,
        "HEARKEN_TEST_DEEPGRAM_KEY_OGG",
        Some(false),
    )
    .await;
}

/// `mip_opt_out`: the config value to set, `None` to keep the default.
async fn three_drops(encoding: DeepgramEncoding, key_var: &str, mip_opt_out: Option<bool>) {
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    fake.set_behavior(Behavior::default().drop_next(
        3,
        Duration::from_millis(1200),
        DropMode::Abrupt,
    ));
    let server = crate::common::transcribing_server(&fake, key_var, |c| {
        c.transcription.deepgram.encoding = encoding;
        if let Some(on) = mip_opt_out {
            c.transcription.deepgram.mip_opt_out = on;
        }
    })
    .await;
    let call = "transcribed";
    for (id, name) in [("carol", "Carol Danvers"), ("dave", "Dave Lister")] {
        let r = server
            .client
            .put(server.url(&format!("/v1/calls/{call}/participants/{id}")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"display_name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let client = WhipClient::connect(&server, call, &["carol", "dave"]).await;
    let mut carol = speech("speaker-a.opus");
    carol.extend(speech("speaker-b.opus"));
    let mut dave = speech("speaker-b.opus");
    dave.extend(speech("speaker-a.opus"));
    let client = tokio::task::spawn_blocking(move || {
        client.run(
            vec![
                Outgoing {
                    stream_id: "carol".into(),
                    packets: carol,
                    start_after: Duration::ZERO,
                },
                Outgoing {
                    stream_id: "dave".into(),
                    packets: dave,
                    start_after: Duration::from_millis(700),
                },
            ],
            Duration::from_millis(300),
        )
    })
    .await
    .unwrap();
    // DELETE of the last session answers once the transcript is final.
    assert_eq!(server.delete(&client.location).await.status(), 200);
    assert!(server.call_dir(call).join("transcript.json").exists());

    let transcript = crate::common::transcript(&server, call).await;
    let record = fake.record();
    println!(
        "{encoding:?}: fake saw {} connections, {} bytes of audio",
        record.connections.len(),
        record
            .connections
            .iter()
            .map(|c| c.audio_bytes)
            .sum::<u64>()
    );
    for c in &record.connections {
        // Deepgram's documented parameter: `mip_opt_out=true` opts a request
        // out of its Model Improvement Program.
        let expected_mip = match mip_opt_out {
            None | Some(true) => Some("true"),
            Some(false) => None,
        };
        assert_eq!(c.query_param("mip_opt_out"), expected_mip, "{:?}", c.query);
        match encoding {
            DeepgramEncoding::Linear16 => {
                assert_eq!(c.query_param("encoding"), Some("linear16"));
                assert_eq!(c.query_param("sample_rate"), Some("16000"));
            }
            // A container: Deepgram is told nothing and reads the header.
            DeepgramEncoding::OggOpus => {
                assert_eq!(c.query_param("encoding"), None);
                assert!(c.audio.is_empty() || c.audio.starts_with(b"OggS"));
            }
        }
    }
    assert!(record.connections.len() >= 5, "two speakers + three drops");
    let segments = transcript["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{transcript:#}");
    for id in ["carol", "dave"] {
        let cov = &transcript["coverage"][id];
        println!("{id}: {cov}");
        let captured = cov["captured_seconds"].as_f64().unwrap();
        let acked = cov["acknowledged_seconds"].as_f64().unwrap();
        assert!(captured > 5.0, "{id}: {cov}");
        assert!(
            (acked - captured).abs() < 1e-6,
            "{id}: 100% coverage: {cov}"
        );
        assert_eq!(cov["lost_seconds"], 0.0);

        let rec = decode_ogg_opus(&server.call_dir(call).join(format!("audio/{id}.opus")));
        let mut words: Vec<(f64, f64, String)> = segments
            .iter()
            .filter(|s| s["participant_id"] == id)
            .flat_map(|s| s["words"].as_array().unwrap().clone())
            .map(|w| {
                (
                    w["start"].as_f64().unwrap(),
                    w["end"].as_f64().unwrap(),
                    w["word"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        words.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(words.len() >= 8, "{id}: {words:?}");
        for pair in words.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1 - 0.01,
                "{id}: no overlapping (duplicate) words: {pair:?}"
            );
        }
        // Every word sits on speech of this speaker's recording.
        for (start, end, w) in &words {
            assert!(
                rec.rms(*start, *end) > 100.0,
                "{id}: word {w} at {start:.2}-{end:.2} is on speech"
            );
        }
    }
    for s in segments {
        let expected = if s["participant_id"] == "carol" {
            "Carol Danvers"
        } else {
            "Dave Lister"
        };
        assert_eq!(s["display_name"], expected);
    }
    let vtt = std::fs::read_to_string(server.call_dir(call).join("transcript.vtt")).unwrap();
    assert!(
        vtt.starts_with("WEBVTT")
            && vtt.contains("<v Carol Danvers>")
            && vtt.contains("<v Dave Lister>"),
        "{vtt}"
    );
    println!("{vtt}");
    let summary = server.call_json(call).await;
    assert!(
        summary["participants"][0]["transcription"]["captured_seconds"]
            .as_f64()
            .unwrap()
            > 5.0,
        "{summary}"
    );
    server.shutdown().await;
}
