//! A meeting as the policy sees it: one occurrence, in UTC, with its people
//! and conferencing links. Calendar import ([`super::calendar`]) and the JSON
//! meeting format ([`super::json`]) both produce it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::links::{ConferenceLink, Provider};

/// One meeting occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The calendar UID (shared by every occurrence of a recurring meeting).
    pub uid: String,
    /// For an occurrence of a recurring meeting: the start it was scheduled
    /// at by the recurrence rule (RFC 5545 `RECURRENCE-ID`), in UTC.
    pub recurrence_id: Option<DateTime<Utc>>,
    /// The title (`SUMMARY`); `(no title)` when the calendar has none.
    pub title: String,
    /// When it starts.
    pub start: DateTime<Utc>,
    /// When it ends (equal to `start` when the calendar gives no end).
    pub end: DateTime<Utc>,
    /// An all-day event (iCalendar `DATE` values): `start` is midnight of its
    /// first day in the calendar's time zone.
    pub all_day: bool,
    /// Who organised it, when known.
    pub organizer: Option<Attendee>,
    /// Everyone invited, including rooms and the bot's address if present.
    pub attendees: Vec<Attendee>,
    /// Marked private (iCalendar `CLASS:PRIVATE` or `CLASS:CONFIDENTIAL`).
    pub private: bool,
    /// Cancelled (iCalendar `STATUS:CANCELLED`, or a `METHOD:CANCEL` file).
    pub cancelled: bool,
    /// The location text, if any (a room, an address, a link).
    pub location: Option<String>,
    /// Supported conferencing links, most authoritative first (conference
    /// properties, then `URL`, `LOCATION`, `DESCRIPTION`).
    pub links: Vec<ConferenceLink>,
    /// Set by a source that knows the bot was invited some other way. The
    /// decision also counts the meeting as a manual invite when the settings'
    /// `bot_address` is among the attendees.
    pub bot_invited: bool,
}

impl Meeting {
    /// The provider of the first supported link, if any.
    pub fn provider(&self) -> Option<Provider> {
        self.links.first().map(|l| l.provider)
    }
}

/// An organizer or attendee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Normalised (lower-case) email address; `None` when the calendar gave
    /// none or it is not an address.
    pub email: Option<String>,
    /// Display name (`CN`), if given.
    pub name: Option<String>,
    /// A person, a group, or a room/resource (iCalendar `CUTYPE`).
    pub kind: AttendeeKind,
    /// Their answer to the invitation (iCalendar `PARTSTAT`).
    pub response: Response,
}

impl Attendee {
    /// A person with this email (normalised; kept as a name if it is not an
    /// address), who has not answered.
    pub fn person(email: &str) -> Attendee {
        let normalised = normalize_email(email);
        Attendee {
            name: if normalised.is_none() {
                Some(email.to_owned())
            } else {
                None
            },
            email: normalised,
            kind: AttendeeKind::Person,
            response: Response::NeedsAction,
        }
    }

    /// The email, else the name, else `an invitee without an address`: how
    /// reasons name this attendee.
    pub fn label(&self) -> String {
        match (&self.email, &self.name) {
            (Some(email), _) => email.clone(),
            (None, Some(name)) => format!("{name} (no email address)"),
            (None, None) => "an invitee without an email address".to_owned(),
        }
    }

    /// A room or other resource rather than a person: it never makes a
    /// meeting external and is never a recorded user.
    pub fn is_resource(&self) -> bool {
        if matches!(self.kind, AttendeeKind::Room | AttendeeKind::Resource) {
            return true;
        }
        // Google Workspace writes rooms and secondary calendars as addresses
        // under calendar.google.com (`c_…@resource.calendar.google.com`,
        // `…@group.calendar.google.com`), sometimes without a CUTYPE.
        self.email.as_deref().is_some_and(|e| {
            e.ends_with("@resource.calendar.google.com")
                || e.ends_with("@group.calendar.google.com")
        })
    }
}

/// What kind of calendar user an attendee is (RFC 5545 `CUTYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttendeeKind {
    /// A person (`INDIVIDUAL`, the default).
    Person,
    /// A group or distribution list (`GROUP`).
    Group,
    /// A room (`ROOM`).
    Room,
    /// Equipment or another resource (`RESOURCE`).
    Resource,
}

/// An attendee's answer (RFC 5545 `PARTSTAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Not answered yet (`NEEDS-ACTION`, the default).
    NeedsAction,
    /// Accepted.
    Accepted,
    /// Declined: not on the meeting for eligibility or blocking.
    Declined,
    /// Tentatively accepted.
    Tentative,
    /// Delegated to someone else.
    Delegated,
}

/// A half-open time window `[from, to)`: occurrences whose start is inside
/// are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant inside the window.
    pub from: DateTime<Utc>,
    /// First instant after the window.
    pub to: DateTime<Utc>,
}

impl Window {
    /// Whether `t` is inside the window.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }
}

/// A normalised email address: `mailto:` removed, trimmed, lower-case; one
/// `@` with text on both sides, a dot-free-or-dotted domain without spaces.
/// `None` when `raw` is not an address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let mut s = raw.trim();
    if s.len() >= 7
        && s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        s = s.get(7..)?.trim();
    }
    let lower = s.to_lowercase();
    let (local, domain) = lower.split_once('@')?;
    let valid_domain = !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if local.is_empty() || local.chars().any(char::is_whitespace) || !valid_domain {
        return None;
    }
    Some(lower)
}

/// The domain part of a normalised email address.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            normalize_email("mailto:Alice@Example.COM"),
            Some("alice@example.com".into())
        );
        assert_eq!(
            normalize_email("MAILTO: bob@eu.example.com "),
            Some("bob@eu.example.com".into())
        );
        for bad in [
            "",
            "mailto:",
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a@b@c",
            "a@exa mple.com",
            "a@.com",
            "a@com.",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
        assert_eq!(email_domain("a@example.com"), "example.com");
    }

    #[test]
    fn google_calendar_addresses_are_resources() {
        let mut room = Attendee::person("c_1888@resource.calendar.google.com");
        assert!(room.is_resource());
        room = Attendee::person("alice@example.com");
        assert!(!room.is_resource());
        room.kind = AttendeeKind::Room;
        assert!(room.is_resource());
    }
}
