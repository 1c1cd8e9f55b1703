//! `kill -9` of the real binary at random moments during recorded,
//! transcribed calls, then a restart on the same data directory. After
//! each restart every interrupted call is ended with reason
//! `crash_recovered`, every recording reads to a clean end of stream (whole
//! pages, every packet decodable), every audit log verifies, and no file seen
//! before the kill is gone.
//!
//! Three kills by default; `HEARKEN_TEST_KILLS=20` runs the full loop and
//! `HEARKEN_TEST_KILL_SEED` replays a run's moments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{Binary, long_speech, read_whole_pages, talk_in_background};
use hearken_fake_deepgram::{FakeConfig, FakeDeepgram};

const KEY_VAR: &str = "HEARKEN_TEST_KEY_KILL_NINE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_call_loses_no_file() {
    let kills: usize = std::env::var("HEARKEN_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("HEARKEN_TEST_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{kills} kills, seed {seed} (HEARKEN_TEST_KILL_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let fake = FakeDeepgram::start(FakeConfig::default()).await;
    let data = tempfile::tempdir().unwrap();
    let mut interrupted: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut recovered = 0;
    let mut repairs = Repairs::default();
    // Audit lines and pages the test tore.
    let mut torn = (0, 0);
    for round in 0..kills {
        let mut server = start(data.path(), &fake).await;
        recovered += check_recovered(data.path(), &interrupted);
        repairs.count(&server);
        interrupted.clear();
        let mut clients = Vec::new();
        for n in 0..2 {
            let call = format!("killed-{round}-{n}");
            clients.push(
                talk_in_background(
                    &server.http,
                    &call,
                    &["ann", "ben"],
                    long_speech(),
                    Duration::from_millis(300),
                    Duration::ZERO,
                )
                .await,
            );
            interrupted.insert(call, Vec::new());
        }
        // Anywhere from the first packets to the last seconds of speech.
        let moment = Duration::from_millis(rng.random_range(200..8_000));
        tokio::time::sleep(moment).await;
        for (call, files) in interrupted.iter_mut() {
            *files = files_of(&data.path().join("calls").join(call));
        }
        server.kill();
        println!("round {round}: killed {moment:?} into the calls");
        // A kill rarely lands inside a write (they are small): one call
        // gets what one that did would leave, half a page and half a line.
        let (line, page) = tear(&data.path().join("calls").join(format!("killed-{round}-0")));
        torn.0 += usize::from(line);
        torn.1 += usize::from(page);
        for client in clients {
            // The server is gone: what the clients make of that is theirs.
            let _ = client.await;
        }
    }
    let server = start(data.path(), &fake).await;
    recovered += check_recovered(data.path(), &interrupted);
    repairs.count(&server);
    drop(server);
    println!(
        "{recovered} calls recovered: {} recordings cut back to their last whole page, {} torn audit lines cut",
        repairs.pages_cut, repairs.lines_cut
    );
    assert_eq!(recovered, 2 * kills, "every interrupted call was recovered");
    assert!(
        repairs.lines_cut >= torn.0 && repairs.pages_cut >= torn.1,
        "torn: {torn:?}"
    );
}

/// Checks what a restart made of the calls the kill interrupted, with the
/// files each had just before it; returns how many were checked.
fn check_recovered(data: &Path, interrupted: &BTreeMap<String, Vec<PathBuf>>) -> usize {
    for (call, before) in interrupted {
        let dir = data.join("calls").join(call);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("call.json")).unwrap()).unwrap();
        assert_eq!(
            summary["end_reason"], "crash_recovered",
            "{call}: {summary}"
        );
        assert!(summary["ended_at"].is_string(), "{summary}");
        assert_eq!(summary["active_sessions"], 0);
        for file in before {
            assert!(dir.join(file).exists(), "{call}: {file:?} was lost");
        }
        if dir.join("consent.jsonl.torn").exists() {
            let torn = std::fs::read(dir.join("consent.jsonl.torn")).unwrap();
            assert!(torn.starts_with(b"{"), "the torn line is kept aside");
        }
        if let Ok(log) = std::fs::read(dir.join("consent.jsonl")) {
            let verified = hearken_core::audit::verify(&log)
                .unwrap_or_else(|e| panic!("{call}: the audit log does not verify: {e}"));
            assert_eq!(
                summary["consent_log"]["lines"], verified.lines,
                "{call}: {summary}"
            );
        }
        for entry in std::fs::read_dir(dir.join("audio")).into_iter().flatten() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // The mix the restart makes of the recovered call: being
            // written (a temporary file), or whole once it has its name.
            if name.starts_with('.') || name == "mix.opus" {
                continue;
            }
            let read = read_whole_pages(&path);
            assert!(read.ended, "{path:?}: no end of stream");
            let seconds = read.seconds;
            let file = format!("audio/{name}");
            let participant = summary["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["file"] == file.as_str())
                .unwrap_or_else(|| panic!("{call}: {file} is in call.json"));
            let recorded = participant["recorded_seconds"].as_f64().unwrap();
            assert!(
                (recorded - seconds).abs() < 0.05,
                "{call}: {file} holds {seconds} s, call.json says {recorded}"
            );
        }
    }
    interrupted.len()
}

/// Appends to the call's first recording the first half of a copy of its
/// second page, and to its audit log the first half of a copy of its last
/// line: what a crash in the middle of those appends leaves. Says which it
/// could tear (a kill in the first seconds finds no recording yet).
fn tear(call: &Path) -> (bool, bool) {
    use std::io::Write;
    let append = |path: &Path, bytes: &[u8]| {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
    };
    let log = call.join("consent.jsonl");
    let mut tore = (false, false);
    if let Ok(text) = std::fs::read(&log)
        && let Some(line) = text.split(|b| *b == b'\n').rfind(|l| !l.is_empty())
    {
        append(&log, &line[..line.len() / 2]);
        tore.0 = true;
    }
    let Some(track) = std::fs::read_dir(call.join("audio"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "opus"))
    else {
        return tore;
    };
    let bytes = std::fs::read(&track).unwrap();
    // The second page (the comment header) follows the 47-byte first.
    if bytes.len() > 47 + 27 && bytes[47..].starts_with(b"OggS") {
        let page = &bytes[47..];
        let len = 27
            + usize::from(page[26])
            + page[27..27 + usize::from(page[26])]
                .iter()
                .map(|&l| usize::from(l))
                .sum::<usize>();
        append(&track, &page[..len / 2]);
        tore.1 = true;
    }
    tore
}

/// What the restarts said they repaired (from their logs).
#[derive(Default)]
struct Repairs {
    pages_cut: usize,
    lines_cut: usize,
}

impl Repairs {
    fn count(&mut self, server: &Binary) {
        let log = server.log_text();
        self.pages_cut += log.matches("cut a recording's last page").count();
        self.lines_cut += log.matches("cut the audit log's torn last line").count();
    }
}

/// Every file under `dir`, relative to it.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                // Temporary files of an atomic write are not kept.
                if !relative.to_string_lossy().contains(".tmp") {
                    files.push(relative.to_owned());
                }
            }
        }
    }
    files
}

/// The binary on `data`, transcribing through `fake`.
async fn start(data: &Path, fake: &FakeDeepgram) -> Binary {
    Binary::start(
        data,
        &[
            ("HEARKEN_TRANSCRIPTION_BACKEND", "deepgram".into()),
            ("HEARKEN_TRANSCRIPTION_DEEPGRAM_URL", fake.url()),
            ("HEARKEN_TRANSCRIPTION_DEEPGRAM_API_KEY_ENV", KEY_VAR.into()),
            (KEY_VAR, fake.api_key().to_owned()),
        ],
    )
    .await
}
