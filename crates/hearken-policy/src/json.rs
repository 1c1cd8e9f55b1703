//! The JSON meeting format, for providers that push meetings by API (and
//! for `POST /v1/meetings`). One object, or a list of them:
//!
//! ```json
//! {
//!   "uid": "zoom-88123456789",                 // required
//!   "title": "Renewal call",                   // default "(no title)"
//!   "start": "2025-03-12T16:00:00Z",           // required, RFC 3339
//!   "end": "2025-03-12T16:30:00-00:00",        // default: start
//!   "all_day": false,
//!   "organizer": "alice@example.com",          // or {"email", "name"}
//!   "attendees": ["erin@partner.org",          // or objects:
//!     {"email": "room-1@example.com", "name": "Room 1",
//!      "kind": "room", "response": "accepted"}],  // person|group|room|resource;
//!                                                 // needs_action|accepted|declined|tentative|delegated
//!   "private": false,
//!   "cancelled": false,
//!   "bot_invited": false,
//!   "location": "https://acme.zoom.us/j/88123456789",
//!   "description": "…",
//!   "links": ["https://acme.zoom.us/j/88123456789"],
//!   "recurrence_id": null                      // RFC 3339, for one occurrence of a series
//! }
//! ```
//!
//! Links are found in `links` first, then `location` and `description`, as
//! in calendars. Unknown fields are errors, so a typo is not silently
//! ignored; every error names the meeting and the field.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::calendar::{EventRef, ImportError, ImportErrorKind};
use super::links::find_links;
use super::meeting::{Attendee, AttendeeKind, Meeting, Response, normalize_email};

/// Fields a meeting object may carry.
const FIELDS: &[&str] = &[
    "uid",
    "title",
    "start",
    "end",
    "all_day",
    "organizer",
    "attendees",
    "private",
    "cancelled",
    "bot_invited",
    "location",
    "description",
    "links",
    "recurrence_id",
];

/// Reads one JSON meeting (for example a `POST /v1/meetings` body).
pub fn meeting_from_json(text: &str) -> Result<Meeting, ImportError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ImportError {
        at: EventRef::Calendar,
        kind: ImportErrorKind::Json {
            detail: e.to_string(),
        },
    })?;
    meeting_from_value(&value, 1)
}

/// Reads a JSON meeting or a list of them. A bad meeting gives an error
/// naming it (position from 1, and its `uid` when readable); the others
/// still import. Not JSON at all gives one error and no meetings.
pub fn meetings_from_json(text: &str) -> (Vec<Meeting>, Vec<ImportError>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return (
                Vec::new(),
                vec![ImportError {
                    at: EventRef::Calendar,
                    kind: ImportErrorKind::Json {
                        detail: e.to_string(),
                    },
                }],
            );
        }
    };
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut meetings = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match meeting_from_value(item, i + 1) {
            Ok(m) => meetings.push(m),
            Err(e) => errors.push(e),
        }
    }
    (meetings, errors)
}

/// Reads one meeting object; `index` (from 1) names it in errors.
pub fn meeting_from_value(value: &Value, index: usize) -> Result<Meeting, ImportError> {
    let at = EventRef::Event {
        index,
        uid: value.get("uid").and_then(Value::as_str).map(str::to_owned),
        title: value
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    parse(value).map_err(|kind| ImportError { at, kind })
}

fn parse(value: &Value) -> Result<Meeting, ImportErrorKind> {
    let object = value.as_object().ok_or_else(|| {
        field(
            "(meeting)",
            format!("expected an object, found {}", kind(value)),
        )
    })?;
    if let Some(key) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(field(
            key,
            format!("unknown field (expected one of {})", FIELDS.join(", ")),
        ));
    }
    let uid = string(object, "uid")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| field("uid", "missing (it is required)".to_owned()))?;
    let start = time(object, "start")?
        .ok_or_else(|| field("start", "missing (it is required)".to_owned()))?;
    let end = time(object, "end")?.unwrap_or(start);
    if end < start {
        return Err(field("end", "is before start".to_owned()));
    }
    let organizer = match object.get("organizer") {
        None | Some(Value::Null) => None,
        Some(v) => Some(person(v, "organizer", Response::Accepted)?),
    };
    let attendees = match object.get("attendees") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| person(v, &format!("attendees[{i}]"), Response::NeedsAction))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(field(
                "attendees",
                format!("expected a list, found {}", kind(other)),
            ));
        }
    };
    let location = string(object, "location")?.filter(|s| !s.trim().is_empty());
    let description = string(object, "description")?;
    let mut links = Vec::new();
    match object.get("links") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let url = v.as_str().ok_or_else(|| {
                    field(
                        &format!("links[{i}]"),
                        format!("expected a URL, found {}", kind(v)),
                    )
                })?;
                find_links(url, "links", &mut links);
            }
        }
        Some(other) => {
            return Err(field(
                "links",
                format!("expected a list of URLs, found {}", kind(other)),
            ));
        }
    }
    if let Some(location) = &location {
        find_links(location, "location", &mut links);
    }
    if let Some(description) = &description {
        find_links(description, "description", &mut links);
    }
    Ok(Meeting {
        uid,
        recurrence_id: time(object, "recurrence_id")?,
        title: string(object, "title")?
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "(no title)".to_owned()),
        start,
        end,
        all_day: boolean(object, "all_day")?,
        organizer,
        attendees,
        private: boolean(object, "private")?,
        cancelled: boolean(object, "cancelled")?,
        location,
        links,
        bot_invited: boolean(object, "bot_invited")?,
    })
}

fn field(name: &str, problem: String) -> ImportErrorKind {
    ImportErrorKind::Field {
        field: name.to_owned(),
        problem,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ImportErrorKind> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field(
            name,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn boolean(object: &Map<String, Value>, name: &str) -> Result<bool, ImportErrorKind> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(field(
            name,
            format!("expected true or false, found {}", kind(other)),
        )),
    }
}

fn time(object: &Map<String, Value>, name: &str) -> Result<Option<DateTime<Utc>>, ImportErrorKind> {
    let Some(text) = string(object, name)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            field(
                name,
                format!("{text:?} is not an RFC 3339 time (like 2025-03-12T16:00:00Z)"),
            )
        })
}

/// An organizer or attendee: an email string, or an object.
fn person(
    value: &Value,
    at: &str,
    default_response: Response,
) -> Result<Attendee, ImportErrorKind> {
    let email_of = |raw: &str, at: &str| {
        normalize_email(raw).ok_or_else(|| field(at, format!("{raw:?} is not an email address")))
    };
    match value {
        Value::String(s) => Ok(Attendee {
            email: Some(email_of(s, at)?),
            name: None,
            kind: AttendeeKind::Person,
            response: default_response,
        }),
        Value::Object(o) => {
            const PERSON: &[&str] = &["email", "name", "kind", "response"];
            if let Some(key) = o.keys().find(|k| !PERSON.contains(&k.as_str())) {
                return Err(field(
                    &format!("{at}.{key}"),
                    format!("unknown field (expected one of {})", PERSON.join(", ")),
                ));
            }
            let email = match string(o, "email").map_err(|e| rename(e, at))? {
                Some(raw) => Some(email_of(&raw, &format!("{at}.email"))?),
                None => None,
            };
            let name = string(o, "name").map_err(|e| rename(e, at))?;
            if email.is_none() && name.is_none() {
                return Err(field(at, "needs an email or a name".to_owned()));
            }
            let kind = match string(o, "kind").map_err(|e| rename(e, at))?.as_deref() {
                None | Some("person") => AttendeeKind::Person,
                Some("group") => AttendeeKind::Group,
                Some("room") => AttendeeKind::Room,
                Some("resource") => AttendeeKind::Resource,
                Some(other) => {
                    return Err(field(
                        &format!("{at}.kind"),
                        format!("{other:?} is not one of person, group, room, resource"),
                    ));
                }
            };
            let response = match string(o, "response").map_err(|e| rename(e, at))?.as_deref() {
                None => default_response,
                Some("needs_action") => Response::NeedsAction,
                Some("accepted") => Response::Accepted,
                Some("declined") => Response::Declined,
                Some("tentative") => Response::Tentative,
                Some("delegated") => Response::Delegated,
                Some(other) => {
                    return Err(field(
                        &format!("{at}.response"),
                        format!(
                            "{other:?} is not one of needs_action, accepted, declined, tentative, delegated"
                        ),
                    ));
                }
            };
            Ok(Attendee {
                email,
                name,
                kind,
                response,
            })
        }
        other => Err(field(
            at,
            format!("expected an email or an object, found {}", kind(other)),
        )),
    }
}

/// Prefixes a nested field error with its parent's path.
fn rename(e: ImportErrorKind, parent: &str) -> ImportErrorKind {
    match e {
        ImportErrorKind::Field { field: f, problem } => ImportErrorKind::Field {
            field: format!("{parent}.{f}"),
            problem,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::links::Provider;

    #[test]
    fn a_pushed_meeting_is_read() {
        let m = meeting_from_json(
            r#"{"uid": "zoom-1", "title": "Renewal", "start": "2025-03-12T12:00:00-04:00",
                "end": "2025-03-12T16:30:00Z", "organizer": {"email": "Alice@Example.com", "name": "Alice"},
                "attendees": ["erin@partner.org", {"email": "room@example.com", "kind": "room", "response": "accepted"}],
                "location": "Zoom", "description": "Join https://acme.zoom.us/j/88123456789?pwd=x",
                "links": ["https://meet.google.com/abc-defg-hij"]}"#,
        )
        .unwrap();
        assert_eq!(m.start.to_rfc3339(), "2025-03-12T16:00:00+00:00");
        assert_eq!(
            m.organizer.as_ref().unwrap().email.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(m.attendees.len(), 2);
        assert_eq!(m.attendees[1].kind, AttendeeKind::Room);
        let providers: Vec<Provider> = m.links.iter().map(|l| l.provider).collect();
        assert_eq!(providers, vec![Provider::GoogleMeet, Provider::Zoom]);
        assert_eq!(m.links[1].source, "description");
        assert!(!m.private && !m.cancelled && !m.bot_invited);
    }

    #[test]
    fn errors_name_the_meeting_and_the_field() {
        let (ok, errors) = meetings_from_json(
            r#"[{"uid": "a", "start": "2025-03-12T16:00:00Z"},
                {"uid": "b", "title": "Bad", "start": "tomorrow"},
                {"uid": "c", "start": "2025-03-12T16:00:00Z", "attendees": [{"email": "nope"}]},
                {"uid": "d", "start": "2025-03-12T16:00:00Z", "colour": "red"},
                {"start": "2025-03-12T16:00:00Z"},
                {"uid": "f", "start": "2025-03-12T16:00:00Z", "attendees": [{"email": "x@y.z", "response": "maybe"}]},
                {"uid": "g", "start": "2025-03-12T16:00:00Z", "end": "2025-03-12T15:00:00Z"},
                7]"#,
        );
        assert_eq!(ok.len(), 1);
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                r#"event 2 "Bad" (UID b): start: "tomorrow" is not an RFC 3339 time (like 2025-03-12T16:00:00Z)"#,
                r#"event 3 (UID c): attendees[0].email: "nope" is not an email address"#,
                "event 4 (UID d): colour: unknown field (expected one of uid, title, start, end, all_day, organizer, attendees, private, cancelled, bot_invited, location, description, links, recurrence_id)",
                "event 5 (no UID): uid: missing (it is required)",
                r#"event 6 (UID f): attendees[0].response: "maybe" is not one of needs_action, accepted, declined, tentative, delegated"#,
                "event 7 (UID g): end: is before start",
                "event 8 (no UID): (meeting): expected an object, found a number",
            ]
        );
        let (none, errors) = meetings_from_json("{not json");
        assert!(none.is_empty());
        assert!(
            errors[0]
                .to_string()
                .starts_with("calendar: not valid JSON: "),
            "{}",
            errors[0]
        );
    }
}
