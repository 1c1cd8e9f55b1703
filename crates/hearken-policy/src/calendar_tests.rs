//! Calendar import: recurrence, overrides, time zones, all-day events,
//! links, and errors that name the event while the rest still imports.

use super::*;
use crate::links::Provider;

fn window(from: &str, to: &str) -> Window {
    Window {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
    }
}

fn march() -> Window {
    window("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
}

fn cal(body: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{}END:VCALENDAR\r\n",
        body.lines()
            .map(|l| {
                let l = l.trim_start();
                // A leading `|` stands for the space of a folded line.
                match l.strip_prefix('|') {
                    Some(rest) => format!(" {rest}\r\n"),
                    None => format!("{l}\r\n"),
                }
            })
            .collect::<String>()
    )
}

fn starts(meetings: &[Meeting]) -> Vec<String> {
    meetings.iter().map(|m| rfc3339(m.start)).collect()
}

fn errors_text(errors: &[ImportError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn weekly_series_keeps_local_time_across_the_dst_change() {
    let text = cal("BEGIN:VEVENT
        UID:weekly@google.com
        SUMMARY:Pipeline review
        DTSTART;TZID=America/New_York:20250224T100000
        DTEND;TZID=America/New_York:20250224T103000
        RRULE:FREQ=WEEKLY;BYDAY=MO
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    // 10:00 EST is 15:00Z; after 9 March, 10:00 EDT is 14:00Z.
    assert_eq!(
        starts(&meetings),
        vec![
            "2025-03-03T15:00:00Z",
            "2025-03-10T14:00:00Z",
            "2025-03-17T14:00:00Z",
            "2025-03-24T14:00:00Z",
            "2025-03-31T14:00:00Z",
        ]
    );
    assert!(
        meetings
            .iter()
            .all(|m| m.end - m.start == Duration::minutes(30))
    );
    assert_eq!(meetings[1].recurrence_id, Some(meetings[1].start));
}

#[test]
fn exdate_override_and_cancelled_instance() {
    let text = cal("BEGIN:VEVENT
        UID:series-1
        SUMMARY:Weekly sync
        DTSTART;TZID=Europe/Berlin:20250303T093000
        DTEND;TZID=Europe/Berlin:20250303T100000
        RRULE:FREQ=WEEKLY;UNTIL=20250331T073000Z;BYDAY=MO
        EXDATE;TZID=Europe/Berlin:20250310T093000
        ORGANIZER;CN=Alice:mailto:alice@example.com
        ATTENDEE;PARTSTAT=ACCEPTED:mailto:erin@partner.org
        LOCATION:https://acme.zoom.us/j/123
        END:VEVENT
        BEGIN:VEVENT
        UID:series-1
        RECURRENCE-ID;TZID=Europe/Berlin:20250317T093000
        SUMMARY:Weekly sync (moved)
        DTSTART;TZID=Europe/Berlin:20250318T140000
        DTEND;TZID=Europe/Berlin:20250318T143000
        END:VEVENT
        BEGIN:VEVENT
        UID:series-1
        RECURRENCE-ID;TZID=Europe/Berlin:20250324T093000
        DTSTART;TZID=Europe/Berlin:20250324T093000
        DTEND;TZID=Europe/Berlin:20250324T100000
        STATUS:CANCELLED
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    let got: Vec<(String, &str, bool)> = meetings
        .iter()
        .map(|m| (rfc3339(m.start), m.title.as_str(), m.cancelled))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2025-03-03T08:30:00Z".into(), "Weekly sync", false),
            ("2025-03-18T13:00:00Z".into(), "Weekly sync (moved)", false),
            ("2025-03-24T08:30:00Z".into(), "Weekly sync", true),
            // Berlin moves to summer time on 30 March.
            ("2025-03-31T07:30:00Z".into(), "Weekly sync", false),
        ]
    );
    // The overrides left out organizer, attendees and location: taken from
    // the series.
    let moved = &meetings[1];
    assert_eq!(
        moved.organizer.as_ref().unwrap().email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(moved.attendees.len(), 1);
    assert_eq!(moved.links[0].provider, Provider::Zoom);
    assert_eq!(
        moved.recurrence_id.map(rfc3339).as_deref(),
        Some("2025-03-17T08:30:00Z")
    );
}

#[test]
fn an_override_moved_into_the_window_is_imported() {
    let text = cal("BEGIN:VEVENT
        UID:s
        DTSTART:20250224T150000Z
        RRULE:FREQ=WEEKLY;COUNT=2
        END:VEVENT
        BEGIN:VEVENT
        UID:s
        RECURRENCE-ID:20250224T150000Z
        DTSTART:20250301T150000Z
        END:VEVENT
    ");
    let (meetings, _) = import_ics(&text, &march());
    assert_eq!(
        starts(&meetings),
        vec!["2025-03-01T15:00:00Z", "2025-03-03T15:00:00Z"]
    );
}

#[test]
fn all_day_events_use_the_calendar_zone() {
    let text = cal("X-WR-TIMEZONE:America/New_York
        BEGIN:VEVENT
        UID:offsite
        SUMMARY:Offsite
        DTSTART;VALUE=DATE:20250313
        DTEND;VALUE=DATE:20250315
        END:VEVENT
        BEGIN:VEVENT
        UID:holiday
        SUMMARY:Holiday
        DTSTART;VALUE=DATE:20250317
        RRULE:FREQ=YEARLY
        EXDATE;VALUE=DATE:20260317
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(meetings.len(), 2);
    let offsite = &meetings[0];
    assert!(offsite.all_day);
    assert_eq!(rfc3339(offsite.start), "2025-03-13T04:00:00Z");
    assert_eq!(rfc3339(offsite.end), "2025-03-15T04:00:00Z");
    let holiday = &meetings[1];
    assert!(holiday.all_day);
    assert_eq!(rfc3339(holiday.end), "2025-03-18T04:00:00Z");
    // Without X-WR-TIMEZONE dates are UTC midnights.
    let (meetings, _) = import_ics(
        &cal("BEGIN:VEVENT\nUID:d\nDTSTART;VALUE=DATE:20250305\nEND:VEVENT\n"),
        &march(),
    );
    assert_eq!(starts(&meetings), vec!["2025-03-05T00:00:00Z"]);
    assert_eq!(rfc3339(meetings[0].end), "2025-03-06T00:00:00Z");
}

#[test]
fn outlook_windows_zone_names_are_understood() {
    let text = cal(r#"BEGIN:VTIMEZONE
        TZID:W. Europe Standard Time
        BEGIN:STANDARD
        DTSTART:16010101T030000
        TZOFFSETFROM:+0200
        TZOFFSETTO:+0100
        RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
        END:STANDARD
        BEGIN:DAYLIGHT
        DTSTART:16010101T020000
        TZOFFSETFROM:+0100
        TZOFFSETTO:+0200
        RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
        END:DAYLIGHT
        END:VTIMEZONE
        BEGIN:VEVENT
        UID:040000008200E00074C5B7101A82E008000000001
        SUMMARY;LANGUAGE=en-US:Check-in
        DTSTART;TZID="W. Europe Standard Time":20250327T093000
        DTEND;TZID="W. Europe Standard Time":20250327T100000
        RRULE:FREQ=DAILY;COUNT=5
        END:VEVENT"#);
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        starts(&meetings),
        vec![
            "2025-03-27T08:30:00Z",
            "2025-03-28T08:30:00Z",
            "2025-03-29T08:30:00Z",
            "2025-03-30T07:30:00Z",
            "2025-03-31T07:30:00Z",
        ]
    );
}

#[test]
fn x_lic_location_names_a_custom_zone() {
    let text = cal("BEGIN:VTIMEZONE
        TZID:Custom Zone 7
        X-LIC-LOCATION:Asia/Tokyo
        END:VTIMEZONE
        BEGIN:VEVENT
        UID:t
        DTSTART;TZID=Custom Zone 7:20250305T090000
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(starts(&meetings), vec!["2025-03-05T00:00:00Z"]);
}

#[test]
fn dst_gap_and_overlap_follow_rfc_5545() {
    let text = cal("BEGIN:VEVENT
        UID:gap
        DTSTART;TZID=America/New_York:20250309T023000
        END:VEVENT
        BEGIN:VEVENT
        UID:overlap
        DTSTART;TZID=America/New_York:20251102T013000
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(
        &text,
        &window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    );
    assert!(errors.is_empty(), "{errors:?}");
    // 02:30 does not exist on 9 March: read with the offset before the gap
    // (EST, -5), that is 03:30 EDT. 01:30 on 2 November happens twice: the
    // first (EDT, -4).
    assert_eq!(
        starts(&meetings),
        vec!["2025-03-09T07:30:00Z", "2025-11-02T05:30:00Z"]
    );
}

#[test]
fn floating_times_use_x_wr_timezone_and_durations_and_rdates_work() {
    let text = cal("X-WR-TIMEZONE:Europe/London
        BEGIN:VEVENT
        UID:f
        DTSTART:20250304T090000
        DURATION:PT1H30M
        RDATE:20250306T090000,20250311T090000
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        starts(&meetings),
        vec![
            "2025-03-04T09:00:00Z",
            "2025-03-06T09:00:00Z",
            "2025-03-11T09:00:00Z"
        ]
    );
    assert!(
        meetings
            .iter()
            .all(|m| m.end - m.start == Duration::minutes(90))
    );
}

#[test]
fn the_window_is_half_open() {
    let text = cal("BEGIN:VEVENT
        UID:d
        DTSTART:20250301T000000Z
        RRULE:FREQ=DAILY
        END:VEVENT
    ");
    let (meetings, _) = import_ics(
        &text,
        &window("2025-03-02T00:00:00Z", "2025-03-04T00:00:00Z"),
    );
    assert_eq!(
        starts(&meetings),
        vec!["2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"]
    );
}

#[test]
fn people_privacy_status_and_links_are_read() {
    let text = cal(r#"BEGIN:VEVENT
        UID:p
        SUMMARY:Hiring sync
        DTSTART:20250305T150000Z
        ORGANIZER;CN="Doe, Jane":mailto:Jane@Example.com
        ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=DECLINED;CN=Bob
        |by;X-NUM-GUESTS=0:mailto:bob@example.com
        ATTENDEE;CUTYPE=RESOURCE;ROLE=NON-PARTICIPANT;CN=Room 4:mailto:room-4@example.com
        ATTENDEE;CN=No Address:invalid:nobody
        CLASS:CONFIDENTIAL
        X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij
        DESCRIPTION:Join with Google Meet: https://meet.google.com/abc-defg-hij\nOr Zoom: https://acme.zoom.us/j/99
        END:VEVENT"#);
    let (meetings, errors) = import_ics(&text, &march());
    assert!(errors.is_empty(), "{errors:?}");
    let m = &meetings[0];
    let organizer = m.organizer.as_ref().unwrap();
    assert_eq!(organizer.email.as_deref(), Some("jane@example.com"));
    assert_eq!(organizer.name.as_deref(), Some("Doe, Jane"));
    assert_eq!(m.attendees[0].name.as_deref(), Some("Bobby"));
    assert_eq!(m.attendees[0].response, Response::Declined);
    assert_eq!(m.attendees[1].kind, AttendeeKind::Resource);
    assert_eq!(m.attendees[2].email, None);
    assert!(m.private);
    assert!(!m.cancelled);
    let links: Vec<(Provider, &str)> = m
        .links
        .iter()
        .map(|l| (l.provider, l.source.as_str()))
        .collect();
    assert_eq!(
        links,
        vec![
            (Provider::GoogleMeet, "X-GOOGLE-CONFERENCE"),
            (Provider::Zoom, "DESCRIPTION")
        ]
    );
}

#[test]
fn method_cancel_cancels_every_event() {
    let text = cal("METHOD:CANCEL
        BEGIN:VEVENT
        UID:c
        DTSTART:20250305T150000Z
        END:VEVENT
    ");
    let (meetings, _) = import_ics(&text, &march());
    assert!(meetings[0].cancelled);
}

/// Found by fuzzing: `rrule` sliced `BYDAY=M\u{20ac}` inside the `€` and
/// panicked. A rule that is not ASCII is that event's error, and the rest of
/// the calendar imports.
#[test]
fn a_rule_that_is_not_ascii_is_an_error_not_a_panic() {
    let text = cal("BEGIN:VEVENT
        UID:accented
        DTSTART:20250303T150000Z
        RRULE:FREQ=WEEKLY;BYDAY=M\u{20ac}
        END:VEVENT
        BEGIN:VEVENT
        UID:fine
        DTSTART:20250304T150000Z
        END:VEVENT");
    let (meetings, errors) = import_ics(&text, &march());
    assert_eq!(starts(&meetings), vec!["2025-03-04T15:00:00Z"]);
    assert_eq!(errors.len(), 1, "{:?}", errors_text(&errors));
    assert!(
        matches!(&errors[0].kind, ImportErrorKind::BadRecurrence { detail, .. } if detail == "not ASCII"),
        "{:?}",
        errors_text(&errors)
    );
}

#[test]
fn broken_events_are_named_and_the_rest_imports() {
    let text = cal(r#"BEGIN:VEVENT
        UID:good-1
        SUMMARY:Good one
        DTSTART:20250303T150000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:no-start
        SUMMARY:No start
        END:VEVENT
        BEGIN:VEVENT
        UID:bad-zone
        DTSTART;TZID=Mars/Olympus_Mons:20250303T150000
        END:VEVENT
        BEGIN:VEVENT
        UID:bad-date
        DTSTART:2025-03-03 15:00
        END:VEVENT
        BEGIN:VEVENT
        UID:bad-rule
        DTSTART:20250303T150000Z
        RRULE:FREQ=FORTNIGHTLY
        END:VEVENT
        BEGIN:VEVENT
        UID:backwards
        DTSTART:20250303T150000Z
        DTEND:20250303T140000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:bad-nesting
        DTSTART:20250303T150000Z
        BEGIN:VALARM
        ACTION:DISPLAY
        END:VTODO
        END:VEVENT
        BEGIN:VEVENT
        UID:good-1
        DTSTART:20250304T150000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:bad-duration
        DTSTART:20250303T150000Z
        DURATION:1 hour
        END:VEVENT
        BEGIN:VEVENT
        SUMMARY:No UID but fine
        DTSTART:20250305T150000Z
        END:VEVENT
        BEGIN:VEVENT
        UID:unclosed
        DTSTART:20250306T150000Z
        BEGIN:VEVENT
        UID:good-2
        DTSTART:20250307T150000Z
        END:VEVENT"#);
    let (meetings, errors) = import_ics(&text, &march());
    let got: Vec<(&str, &str)> = meetings
        .iter()
        .map(|m| (m.uid.as_str(), m.title.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("good-1", "Good one"),
            ("event-10", "No UID but fine"),
            ("good-2", "(no title)")
        ]
    );
    assert_eq!(
        errors_text(&errors),
        vec![
            r#"event 2 "No start" (UID no-start): DTSTART is missing"#,
            r#"event 3 (UID bad-zone): DTSTART has unknown time zone "Mars/Olympus_Mons""#,
            r#"event 4 (UID bad-date): DTSTART "2025-03-03 15:00" is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS, optionally Z)"#,
            r#"event 5 (UID bad-rule): RRULE "FREQ=FORTNIGHTLY" is invalid: RRule parsing error: `FORTNIGHTLY` is not a valid frequency."#,
            "event 6 (UID backwards): DTEND 2025-03-03T14:00:00Z is before DTSTART 2025-03-03T15:00:00Z",
            r#"event 7 (UID bad-nesting): line 36 "END:VTODO" does not close BEGIN:VALARM"#,
            "event 8 (UID good-1): duplicate UID: the first one is kept",
            r#"event 9 (UID bad-duration): DURATION "1 hour" is not a duration (like PT1H30M or P1D)"#,
            "event 11 (UID unclosed): BEGIN:VEVENT at line 51 is never closed with END:VEVENT",
        ]
    );
}

#[test]
fn not_a_calendar() {
    let (meetings, errors) = import_ics("hello\nworld\n", &march());
    assert!(meetings.is_empty());
    assert_eq!(
        errors_text(&errors),
        vec!["calendar: not an iCalendar file (no BEGIN:VCALENDAR or BEGIN:VEVENT line)"]
    );
    let (meetings, errors) = import_ics("", &march());
    assert!(meetings.is_empty());
    assert_eq!(errors.len(), 1);
}

#[test]
fn a_runaway_series_is_bounded() {
    let text = cal("BEGIN:VEVENT
        UID:runaway
        DTSTART:20200101T000000Z
        RRULE:FREQ=MINUTELY;BYSECOND=0
        END:VEVENT
    ");
    let (meetings, errors) = import_ics(&text, &march());
    assert!(meetings.is_empty());
    assert_eq!(
        errors_text(&errors),
        vec![format!(
            "event 1 (UID runaway): more than {MAX_OCCURRENCES_WALKED} occurrences before the end of the window; later ones are left out"
        )]
    );
}

#[test]
fn durations_are_parsed() {
    assert_eq!(parse_duration("PT1H30M"), Some(Duration::minutes(90)));
    assert_eq!(parse_duration("P1D"), Some(Duration::days(1)));
    assert_eq!(parse_duration("P2W"), Some(Duration::weeks(2)));
    assert_eq!(
        parse_duration("P1DT2H3M4S"),
        Some(Duration::seconds(93_784))
    );
    assert_eq!(parse_duration("-PT15M"), Some(Duration::minutes(-15)));
    for bad in [
        "",
        "P",
        "PT",
        "1H",
        "PT1",
        "P1H",
        "PT1D",
        "PXD",
        "P99999999999999999999D",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn truncated_and_mangled_input_never_panics() {
    let text = cal(r#"X-WR-TIMEZONE:America/New_York
        BEGIN:VEVENT
        UID:x
        DTSTART;TZID=America/New_York:20250303T100000
        DTEND;TZID=America/New_York:20250303T103000
        RRULE:FREQ=WEEKLY;UNTIL=20250401;BYDAY=MO,WE
        EXDATE;TZID=America/New_York:20250305T100000
        ATTENDEE;CN="A, B":mailto:a@example.com
        DESCRIPTION:https://acme.zoom.us/j/1 ✓
        END:VEVENT"#);
    for (cut, _) in text.char_indices() {
        let _ = import_ics(&text[..cut], &march());
    }
    for junk in [
        "BEGIN:VEVENT",
        "END:VEVENT\nBEGIN:VEVENT\n:",
        "BEGIN:VEVENT\nDTSTART;TZID=:\nEND:VEVENT",
        "BEGIN:VEVENT\nRRULE:\nDTSTART:20250303\nEND:VEVENT",
        "BEGIN:VEVENT\nDTSTART:99999999T999999Z\nEND:VEVENT",
    ] {
        let _ = import_ics(junk, &march());
    }
}

#[test]
fn the_ends_of_time_never_panic() {
    let text = cal("BEGIN:VEVENT
        UID:late
        DTSTART:99991230T000000Z
        RRULE:FREQ=DAILY
        DURATION:P99999999D
        END:VEVENT
        BEGIN:VEVENT
        UID:early
        DTSTART:00010101T000000Z
        RRULE:FREQ=YEARLY;UNTIL=99991231
        END:VEVENT
        BEGIN:VEVENT
        UID:all-day-late
        DTSTART;VALUE=DATE:99991231
        DTEND;VALUE=DATE:99991231
        RRULE:FREQ=DAILY
        END:VEVENT
        BEGIN:VEVENT
        UID:huge-sum
        DTSTART:20250303T000000Z
        DURATION:P100000000000DT100000000000H
        END:VEVENT
    ");
    let everything = Window {
        from: DateTime::<Utc>::MIN_UTC,
        to: DateTime::<Utc>::MAX_UTC,
    };
    let (meetings, _) = import_ics(&text, &everything);
    assert!(meetings.iter().any(|m| m.uid == "late"));
    assert!(meetings.iter().all(|m| m.end >= m.start));
}
