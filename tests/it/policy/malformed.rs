//! Broken calendars and settings give clear errors naming the event or the
//! field, and the rest of the calendar is still imported and decided.

use std::path::{Path, PathBuf};

use hearken::cli::policy::{PolicyExplainArgs, explain, parse_bound, report};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy")
        .join(name)
}

fn args(settings: PathBuf, calendar: PathBuf) -> PolicyExplainArgs {
    PolicyExplainArgs {
        settings,
        calendar: vec![calendar],
        from: Some(parse_bound("2025-03-01").unwrap()),
        to: Some(parse_bound("2025-03-31").unwrap()),
        json: false,
    }
}

#[test]
fn broken_events_are_named_and_the_good_ones_still_decided() {
    let calendar = fixture("malformed.ics");
    let out = explain(args(fixture("settings.toml"), calendar.clone())).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let file = calendar.display().to_string();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[0].starts_with("2025-03-03T10:00:00Z  Good before  record         assistant  "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("2025-03-10T10:00:00Z  Good after   metadata_only  -          "),
        "{out}"
    );
    assert_eq!(
        &lines[2..],
        &[
            format!(
                r#"error: {file}: event 2 "No start" (UID no-start@example.com): DTSTART is missing"#
            ),
            format!(
                r#"error: {file}: event 3 "Bad zone" (UID bad-zone@example.com): DTSTART has unknown time zone "Atlantis/Capital""#
            ),
            format!(
                r#"error: {file}: event 4 "Bad rule" (UID bad-rule@example.com): RRULE "FREQ=WEEKLY;BYDAY=XX" is invalid: RRule parsing error: `XX` is not a valid weekday. Valid values are `MO`, `TU`, `WE`, `TH`, `FR`, `SA` and `SU`."#
            ),
            format!(
                r#"error: {file}: event 5 (UID bad-nesting@example.com): line 35 "END:VEVENT" does not close BEGIN:VALARM"#
            ),
        ]
    );
}

#[test]
fn json_mode_keeps_errors_out_of_the_array() {
    let mut a = args(fixture("settings.toml"), fixture("malformed.ics"));
    a.json = true;
    let r = report(&a).unwrap();
    assert_eq!(r.occurrences.len(), 2);
    assert_eq!(r.errors.len(), 4);
    let out = explain(a).unwrap();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value.as_array().unwrap().len(), 2);
}

#[test]
fn bad_settings_name_the_field() {
    let err = explain(args(fixture("bad-settings.toml"), fixture("google.ics")))
        .unwrap_err()
        .to_string();
    let want = format!(
        r#"settings file {}: users."bob@example.com": "sometimes" is not a capture setting (expected one of always, external_only, never, manual_only)"#,
        fixture("bad-settings.toml").display()
    );
    assert_eq!(err, want);
}

#[test]
fn settings_syntax_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        "company_domains = [\"example.com\"\nrecord_internal = true\n",
    )
    .unwrap();
    let err = explain(args(path.clone(), fixture("google.ics")))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "settings file {}: not valid TOML: ",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("line "), "{err}");

    let path = dir.path().join("settings.json");
    std::fs::write(
        &path,
        r#"{"company_domains": ["example.com"], "record_internal": true}"#,
    )
    .unwrap();
    let err = explain(args(path.clone(), fixture("google.ics")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "settings file {}: record_external: missing (it is required)",
            path.display()
        )
    );
}

#[test]
fn missing_files_are_named() {
    let err = explain(args(fixture("nope.toml"), fixture("google.ics")))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot read settings file "), "{err}");
    assert!(err.contains("nope.toml"), "{err}");
    let err = explain(args(fixture("settings.toml"), fixture("nope.ics")))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot read calendar file "), "{err}");
}

#[test]
fn a_file_that_is_no_calendar_is_reported_not_fatal() {
    let out = explain(args(fixture("settings.toml"), fixture("settings.toml"))).unwrap();
    let file = fixture("settings.toml").display().to_string();
    assert_eq!(
        out,
        format!(
            "no meeting starts between 2025-03-01T00:00:00Z and 2025-04-01T00:00:00Z\n\
             error: {file}: calendar: not an iCalendar file (no BEGIN:VCALENDAR or BEGIN:VEVENT line)\n"
        )
    );
}

#[test]
fn broken_json_meetings_are_named_and_the_rest_imports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pushed.json");
    std::fs::write(
        &path,
        r#"[{"uid": "ok", "title": "Fine", "start": "2025-03-05T10:00:00Z", "organizer": "alice@example.com",
             "attendees": ["erin@partner.org"], "links": ["https://acme.zoom.us/j/1"]},
            {"uid": "bad", "title": "Broken", "start": "2025-03-05T10:00:00Z", "attendees": "erin@partner.org"}]"#,
    )
    .unwrap();
    let out = explain(args(fixture("settings.toml"), path.clone())).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("2025-03-05T10:00:00Z  Fine  record  "),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            r#"error: {}: event 2 "Broken" (UID bad): attendees: expected a list, found a string"#,
            path.display()
        )
    );
}
