//! `hearken consent explain` run as a real process: the example participants
//! file gives one line per participant, the call's mode and scope, the rules
//! version and the disclaimer; `--json` gives one object; errors name the file.

use std::path::Path;
use std::process::{Command, Output};

fn hearken(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearken"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEARKEN_CONFIG")
        .output()
        .expect("run hearken")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn explains_the_example_participants() {
    let out = stdout(&hearken(&[
        "consent",
        "explain",
        "--participants",
        "consent/examples/participants.json",
    ]));
    for (id, matched, mode) in [
        ("alice", "US-CA", "notify_and_allow_opt_out"),
        ("bob", "DE", "explicit"),
        ("carol", "default_unknown", "explicit"),
        ("dave", "US-NY", "notify"),
        ("erin", "EEA", "notify_and_allow_opt_out"),
    ] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{out}"));
        let words: Vec<&str> = line.split_whitespace().take(3).collect();
        assert_eq!(words, [id, matched, mode], "{line}");
    }
    assert!(out.contains("call mode: explicit"), "{out}");
    assert!(out.contains("gate scope: call_wide"), "{out}");
    assert!(
        out.contains("strictest: bob in DE (all-party), carol (location unknown or not covered: default_unknown), the recorder in US require explicit"),
        "{out}"
    );
    assert!(out.contains("rules version: "), "{out}");
    assert!(out.contains("Not legal advice"), "{out}");
}

#[test]
fn json_flag_prints_one_object() {
    let out = stdout(&hearken(&[
        "consent",
        "explain",
        "--participants",
        "consent/examples/participants.json",
        "--recorder-location",
        "US-CA",
        "--min-mode",
        "notify",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["mode"], "explicit");
    assert_eq!(v["scope"], "call_wide");
    assert_eq!(v["recorder"]["matched"], "US-CA");
    assert_eq!(v["participants"].as_array().map(Vec::len), Some(5));
    assert!(v["rules_version"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn a_bad_rules_file_fails_with_its_name_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("consent/rules.yaml"))
            .unwrap();
    std::fs::write(
        &rules,
        shipped.replacen(
            "legal_floor: notify_and_allow_opt_out",
            "legal_floor: explict",
            1,
        ),
    )
    .unwrap();
    let output = hearken(&[
        "consent",
        "explain",
        "--participants",
        "consent/examples/participants.json",
        "--rules",
        rules.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains(&rules.display().to_string()), "{err}");
    assert!(
        err.contains("legal_floor: unknown mode \"explict\""),
        "{err}"
    );
}
