//! Walks `tests/fixtures/sdp/`: every offer captured from a real implementation
//! (Chromium, aiortc, GStreamer webrtcbin, werift) is answered with a valid
//! answer whose m-lines match the fixture's expectations, and every file in
//! `tests/fixtures/sdp/invalid/` gets the status it names.

use std::path::Path;

use crate::common::TestServer;
use serde::Deserialize;
use str0m::change::SdpAnswer;

#[derive(Deserialize)]
struct Fixture {
    implementation: String,
    mline: Vec<MLine>,
}

#[derive(Deserialize)]
struct MLine {
    mid: String,
    kind: String,
    expect_answer_direction: String,
    telephone_event: bool,
}

#[derive(Deserialize)]
struct Invalid {
    files: std::collections::BTreeMap<String, InvalidFile>,
}

#[derive(Deserialize)]
struct InvalidFile {
    status: u16,
}

/// The answer's m-line sections, keyed by mid.
fn sections(answer: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in answer.lines() {
        if line.starts_with("m=") {
            out.push((String::new(), vec![line.to_owned()]));
        } else if let Some((mid, lines)) = out.last_mut() {
            if let Some(m) = line.strip_prefix("a=mid:") {
                *mid = m.to_owned();
            }
            lines.push(line.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn real_offers_get_valid_answers() {
    let server = TestServer::start().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdp");
    let mut checked = 0;
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sdp"))
        .collect();
    names.sort();
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let offer = std::fs::read_to_string(&path).unwrap();
        let fixture: Fixture =
            toml::from_str(&std::fs::read_to_string(path.with_extension("toml")).unwrap())
                .unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        let response = server.post_offer(&format!("fixture-{name}"), &offer).await;
        let status = response.status();
        let answer = response.text().await.unwrap();
        assert_eq!(status, 201, "{name} ({}): {answer}", fixture.implementation);
        SdpAnswer::from_sdp_string(&answer)
            .unwrap_or_else(|e| panic!("{name}: answer does not parse: {e}\n{answer}"));
        let sections = sections(&answer);
        assert_eq!(
            sections.len(),
            fixture.mline.len(),
            "{name}: one answer m-line per offered m-line\n{answer}"
        );
        for expected in &fixture.mline {
            let (_, lines) = sections
                .iter()
                .find(|(mid, _)| *mid == expected.mid)
                .unwrap_or_else(|| panic!("{name}: no m-line for mid {}\n{answer}", expected.mid));
            let has = |attr: &str| lines.iter().any(|l| l == attr);
            let port_zero = lines[0].split_whitespace().nth(1) == Some("0");
            match expected.expect_answer_direction.as_str() {
                "rejected" => assert!(
                    port_zero || has("a=inactive"),
                    "{name} mid {}: {} must be rejected\n{answer}",
                    expected.mid,
                    expected.kind
                ),
                dir => {
                    assert!(!port_zero, "{name} mid {}: enabled\n{answer}", expected.mid);
                    assert!(
                        has(&format!("a={dir}")),
                        "{name} mid {}: answered {dir}\n{answer}",
                        expected.mid
                    );
                    assert!(
                        lines
                            .iter()
                            .any(|l| l.to_ascii_lowercase().contains("opus/48000/2")),
                        "{name} mid {}: opus\n{answer}",
                        expected.mid
                    );
                }
            }
            if expected.kind == "audio" && expected.expect_answer_direction != "rejected" {
                let tele = lines.iter().any(|l| l.contains("telephone-event/"));
                assert_eq!(
                    tele, expected.telephone_event,
                    "{name} mid {}: telephone-event negotiated only when offered\n{answer}",
                    expected.mid
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "walked {checked} fixtures");

    let invalid: Invalid =
        toml::from_str(&std::fs::read_to_string(dir.join("invalid/expected.toml")).unwrap())
            .unwrap();
    for (file, expected) in &invalid.files {
        let body = std::fs::read_to_string(dir.join("invalid").join(file)).unwrap();
        let response = server.post_offer("fixture-invalid", &body).await;
        assert_eq!(response.status(), expected.status, "invalid/{file}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    server.shutdown().await;
}
