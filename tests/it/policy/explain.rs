//! `hearken policy explain` over the fixtures in `tests/fixtures/policy/`: the
//! table (compared with `tests/fixtures/policy/expected.txt`), the JSON of the
//! interface contract (compared with `tests/fixtures/policy/expected.json`), and
//! clear errors for broken calendars and settings while the rest imports.
//!
//! After an intended change, regenerate the expected files with
//! `UPDATE_EXPECT=1 cargo test --test policy_explain` and review the diff.

use std::path::{Path, PathBuf};

use hearken::cli::policy::{PolicyExplainArgs, WindowBound, explain, parse_bound, report};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy")
        .join(name)
}

fn bound(text: &str) -> Option<WindowBound> {
    Some(parse_bound(text).unwrap())
}

fn args(settings: &str, calendars: &[&str], json: bool) -> PolicyExplainArgs {
    PolicyExplainArgs {
        settings: fixture(settings),
        calendar: calendars.iter().map(|c| fixture(c)).collect(),
        from: bound("2025-03-01"),
        to: bound("2025-03-31"),
        json,
    }
}

const CALENDARS: &[&str] = &["google.ics", "outlook.ics", "meetings.json"];

/// Compares with an expected file, or rewrites it under `UPDATE_EXPECT=1`.
fn expect_file(name: &str, got: &str) {
    let path = fixture(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        got, want,
        "output differs from {name}; rerun with UPDATE_EXPECT=1 to review the change"
    );
}

/// The expected table: one line per occurrence, with the decision, method
/// and the reason that settled it.
const EXPECTED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "2025-03-03T08:30:00Z",
        "EU customer check-in",
        "record",
        "native",
        "Microsoft Teams link in DESCRIPTION",
    ),
    (
        "2025-03-03T15:00:00Z",
        "Pipeline review",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
    (
        "2025-03-06T13:30:00Z",
        "Telehealth appointment",
        "skip",
        "-",
        "private: private meetings are not recorded automatically",
    ),
    (
        "2025-03-07T18:00:00Z",
        "Design review",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
    (
        "2025-03-10T08:30:00Z",
        "EU customer check-in",
        "record",
        "native",
        "Microsoft Teams link in DESCRIPTION",
    ),
    (
        "2025-03-10T14:00:00Z",
        "Pipeline review",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
    (
        "2025-03-11T18:00:00Z",
        "Quarterly planning",
        "skip",
        "-",
        "the company does not record internal meetings",
    ),
    (
        "2025-03-12T13:00:00Z",
        "Office move planning",
        "metadata_only",
        "-",
        "no Zoom, Google Meet, Teams or Webex link",
    ),
    (
        "2025-03-12T20:00:00Z",
        "Intro call with Erin",
        "blocked",
        "-",
        "dave@example.com has capture setting never: a manual invite never overrides that",
    ),
    (
        "2025-03-13T04:00:00Z",
        "Partner summit (Boston)",
        "metadata_only",
        "-",
        "no Zoom, Google Meet, Teams or Webex link",
    ),
    (
        "2025-03-14T10:00:00Z",
        "Board prep",
        "skip",
        "-",
        "the company does not record internal meetings",
    ),
    (
        "2025-03-17T08:30:00Z",
        "Canceled: EU customer check-in",
        "skip",
        "-",
        "the meeting is cancelled",
    ),
    (
        "2025-03-18T16:00:00Z",
        "Hiring sync with recruiter",
        "skip",
        "-",
        "no recorded user's setting allows recording this meeting automatically",
    ),
    (
        "2025-03-19T15:00:00Z",
        "Vendor demo",
        "metadata_only",
        "-",
        "webex link only, and webex is disabled",
    ),
    (
        "2025-03-20T19:00:00Z",
        "Customer onboarding",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
    (
        "2025-03-21T09:00:00Z",
        "Compensation review",
        "record",
        "native",
        "Microsoft Teams link in DESCRIPTION",
    ),
    (
        "2025-03-24T13:00:00Z",
        "EU customer check-in",
        "record",
        "native",
        "Microsoft Teams link in DESCRIPTION",
    ),
    (
        "2025-03-25T15:00:00Z",
        "Pipeline review (moved to Tuesday)",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
    (
        "2025-03-26T14:00:00Z",
        "Phone screen",
        "metadata_only",
        "-",
        "no Zoom, Google Meet, Teams or Webex link",
    ),
    (
        "2025-03-27T16:00:00Z",
        "Renewal call",
        "record",
        "assistant",
        "Zoom link in links",
    ),
    (
        "2025-03-28T14:00:00Z",
        "Webinar dry run",
        "skip",
        "-",
        "the company does not record internal meetings",
    ),
    (
        "2025-03-31T07:30:00Z",
        "EU customer check-in",
        "record",
        "native",
        "Microsoft Teams link in DESCRIPTION",
    ),
    (
        "2025-03-31T14:00:00Z",
        "Pipeline review",
        "record",
        "assistant",
        "Google Meet link in X-GOOGLE-CONFERENCE",
    ),
];

#[test]
fn the_fixtures_print_the_expected_table() {
    let out = explain(args("settings.toml", CALENDARS, false)).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), EXPECTED.len(), "{out}");
    for (line, (start, title, decision, method, reason)) in lines.iter().zip(EXPECTED) {
        let mut columns = line
            .split("  ")
            .filter(|c| !c.trim().is_empty())
            .map(str::trim);
        assert_eq!(columns.next(), Some(*start), "{line}");
        assert_eq!(columns.next(), Some(*title), "{line}");
        assert_eq!(columns.next(), Some(*decision), "{line}");
        assert_eq!(columns.next(), Some(*method), "{line}");
        let reasons: String = columns.collect::<Vec<_>>().join("  ");
        assert!(
            reasons.contains(reason),
            "{line}\n  should give the reason {reason:?}"
        );
    }
    expect_file("expected.txt", &out);
}

#[test]
fn json_and_toml_settings_give_the_same_table() {
    let toml = explain(args("settings.toml", CALENDARS, false)).unwrap();
    let json = explain(args("settings.json", CALENDARS, false)).unwrap();
    assert_eq!(toml, json);
}

#[test]
fn json_output_follows_the_contract() {
    let out = explain(args("settings.toml", CALENDARS, true)).unwrap();
    let value: Value = serde_json::from_str(&out).unwrap();
    let list = value.as_array().unwrap();
    assert_eq!(list.len(), EXPECTED.len());
    for (item, (start, title, decision, method, _)) in list.iter().zip(EXPECTED) {
        let object = item.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut sorted = vec![
            "uid", "start", "title", "decision", "method", "provider", "reasons",
        ];
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "{item}");
        assert_eq!(object["start"], *start);
        assert_eq!(object["title"], *title);
        assert_eq!(object["decision"], *decision);
        match *method {
            "-" => assert!(object["method"].is_null(), "{item}"),
            m => assert_eq!(object["method"], m),
        }
        assert!(object["uid"].as_str().is_some_and(|u| !u.is_empty()));
        assert!(matches!(
            object["provider"].as_str(),
            None | Some("zoom" | "google_meet" | "teams" | "webex")
        ));
        let reasons = object["reasons"].as_array().unwrap();
        assert!(
            !reasons.is_empty() && reasons.iter().all(Value::is_string),
            "{item}"
        );
        // RFC 3339 UTC.
        assert!(chrono::DateTime::parse_from_rfc3339(start).is_ok() && start.ends_with('Z'));
    }
    // Providers: the one used when recorded, the one detected otherwise.
    assert_eq!(list[0]["provider"], "teams");
    assert_eq!(list[2]["provider"], "zoom");
    assert_eq!(list[7]["provider"], Value::Null);
    assert_eq!(list[13]["provider"], "webex");
    expect_file("expected.json", &out);
}

#[test]
fn a_date_to_includes_that_day_and_the_default_window_starts_at_the_first_event() {
    let mut a = args("settings.toml", &["outlook.ics"], false);
    a.from = bound("2025-03-31");
    a.to = bound("2025-03-31");
    let out = explain(a).unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("2025-03-31T07:30:00Z  EU customer check-in"),
        "{out}"
    );

    let mut a = args("settings.toml", &["google.ics"], false);
    a.from = None;
    a.to = None;
    let r = report(&a).unwrap();
    // The series starts on 24 February; 90 days from that midnight.
    assert_eq!(r.window.from.to_rfc3339(), "2025-02-24T00:00:00+00:00");
    assert_eq!(r.window.to.to_rfc3339(), "2025-05-25T00:00:00+00:00");
    assert_eq!(r.occurrences[0].start, "2025-02-24T15:00:00Z");
    assert!(r.errors.is_empty());
}

#[test]
fn an_empty_window_is_an_error() {
    let mut a = args("settings.toml", &["google.ics"], false);
    a.from = bound("2025-03-10");
    a.to = bound("2025-03-01T00:00:00Z");
    let err = explain(a).unwrap_err().to_string();
    assert!(
        err.contains("--to (2025-03-01T00:00:00Z) must be after --from (2025-03-10T00:00:00Z)"),
        "{err}"
    );
}

#[test]
fn the_clap_arguments_parse_and_document_the_default_window() {
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: PolicyExplainArgs,
    }

    let cli = Cli::try_parse_from([
        "explain",
        "--settings",
        "s.toml",
        "--calendar",
        "a.ics",
        "--calendar",
        "b.json",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31T12:00:00Z",
        "--json",
    ])
    .unwrap();
    assert_eq!(cli.args.calendar.len(), 2);
    assert_eq!(cli.args.from, bound("2025-03-01"));
    assert_eq!(cli.args.to, bound("2025-03-31T12:00:00Z"));
    assert!(cli.args.json);

    let err = Cli::try_parse_from([
        "explain",
        "--settings",
        "s.toml",
        "--calendar",
        "a.ics",
        "--from",
        "March",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"March\" is not a date"), "{err}");
    assert!(Cli::try_parse_from(["explain", "--settings", "s.toml"]).is_err());

    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("earliest event"), "{help}");
    assert!(help.contains("90 days after the start"), "{help}");
}
