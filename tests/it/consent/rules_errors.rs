//! Rules file errors, as an operator meets them through `consent explain`
//! (`--rules FILE` or `consent.rules_file`): each message names the file and
//! the place in it.

use std::path::{Path, PathBuf};

use hearken::cli::consent::{ExplainArgs, explain};
use hearken::config::ConsentConfig;

fn shipped() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("consent/rules.yaml"))
        .unwrap()
}

fn participants() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("consent/examples/participants.json")
}

fn args(rules: Option<PathBuf>) -> ExplainArgs {
    ExplainArgs {
        participants: participants(),
        rules,
        recorder_location: None,
        min_mode: None,
        unknown_location_mode: None,
        json: false,
    }
}

/// Writes `text` as a rules file and returns explain's error message.
fn error_for(text: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, text).unwrap();
    let err = explain(args(Some(path.clone())), &ConsentConfig::default())
        .expect_err("the broken rules file was accepted");
    (format!("{err:#}"), path.display().to_string())
}

/// `shipped()` with the first `from` (which must occur) replaced by `to`.
fn broken(from: &str, to: &str) -> String {
    let text = shipped();
    assert!(text.contains(from), "{from:?} is not in consent/rules.yaml");
    text.replacen(from, to, 1)
}

fn assert_names(text: &str, place: &str) {
    let (err, path) = error_for(text);
    assert!(err.contains(&path), "no file name in: {err}");
    assert!(err.contains(place), "expected {place:?} in: {err}");
}

#[test]
fn the_shipped_file_works_as_a_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, shipped()).unwrap();
    let out = explain(args(Some(path)), &ConsentConfig::default()).unwrap();
    assert!(out.contains("call mode: explicit"), "{out}");
}

#[test]
fn misspelt_mode() {
    assert_names(
        &broken(
            "  US-CA:\n    name: \"California\"\n    category: all_party\n    legal_floor: notify_and_allow_opt_out",
            "  US-CA:\n    name: \"California\"\n    category: all_party\n    legal_floor: explict",
        ),
        "jurisdictions.US-CA.legal_floor: unknown mode \"explict\" (expected one of none, notify, \
         notify_and_allow_opt_out, explicit)",
    );
}

#[test]
fn default_mode_below_the_legal_floor() {
    assert_names(
        &broken(
            "    legal_floor: explicit\n    default_mode: explicit",
            "    legal_floor: explicit\n    default_mode: notify",
        ),
        "jurisdictions.DE.default_mode: notify is below the legal floor explicit",
    );
}

#[test]
fn group_member_that_is_not_a_country_code() {
    assert_names(
        &broken("\"NO\"]", "\"NOR\"]"),
        "groups.EEA[29]: \"NOR\" is not a 2-letter",
    );
}

#[test]
fn bare_norway_is_still_a_country() {
    // YAML 1.1 would read a bare NO as `false`; the parser reads YAML 1.2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, broken("\"NO\"]", "NO]")).unwrap();
    assert!(explain(args(Some(path)), &ConsentConfig::default()).is_ok());
}

#[test]
fn jurisdiction_code_not_iso_shaped() {
    assert_names(
        &broken("  US-CA:\n", "  USA-CA:\n"),
        "jurisdictions.USA-CA: not an ISO 3166-1 alpha-2 code",
    );
}

#[test]
fn entry_without_sources() {
    let text = broken(
        "    source:\n      - \"https://rcfp.org/reporters-recording-guide/florida\"\n",
        "",
    );
    assert_names(&text, "jurisdictions.US-FL.source: no sources");
}

#[test]
fn unknown_default_for_unknown_locations() {
    assert_names(
        &broken("default_unknown: explicit", "default_unknown: opt_out"),
        "decision_model.default_unknown: unknown mode \"opt_out\"",
    );
}

#[test]
fn duplicate_jurisdiction() {
    let text = format!(
        "{}\n  DE:\n    name: \"Germany again\"\n    category: one_party\n    legal_floor: none\n    \
         default_mode: none\n    source: [\"https://example.org\"]\n    confidence: low\n",
        shipped().trim_end()
    );
    let text = format!("{text}\n");
    assert_names(&text, "jurisdictions: duplicate key \"DE\"");
}

#[test]
fn misspelt_field_gives_entry_and_line() {
    let (err, _) = error_for(&broken("    confidence: high\n", "    confidance: high\n"));
    assert!(err.contains("jurisdictions.US:"), "{err}");
    assert!(err.contains("confidance"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn not_yaml() {
    let (err, path) = error_for("version: \"x\n  : : [\n");
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn missing_rules_file_is_named() {
    let err = explain(
        args(Some(PathBuf::from("/nonexistent/rules.yaml"))),
        &ConsentConfig::default(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").starts_with("cannot read rules file /nonexistent/rules.yaml"),
        "{err:#}"
    );
}

#[test]
fn rules_file_from_the_config_is_used_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("company-rules.yaml");
    std::fs::write(&path, broken("version: \"", "version: \"\"\nx: \"")).unwrap();
    let config = ConsentConfig {
        rules_file: Some(path.clone()),
        ..ConsentConfig::default()
    };
    let err = explain(args(None), &config).unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("company-rules.yaml"), "{err}");
}
