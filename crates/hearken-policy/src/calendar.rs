//! Calendar import from iCalendar (RFC 5545) text, as Google Workspace and
//! Microsoft Outlook export it, expanded into meeting occurrences over a
//! window.
//!
//! # Crates, and why
//!
//! - Content lines are parsed by `icalendar` (its `parser` feature): an
//!   actively maintained crate that unescapes TEXT values, keeps parameters
//!   (quoted `CN="Doe, John"`, `TZID="W. Europe Standard Time"`) and nested
//!   components (`VALARM`). `ical` was considered too: it parses lines but
//!   does no recurrence, and its crate metadata carries no license.
//! - Recurrences (`RRULE`, `RDATE`) are expanded by `rrule` with `chrono-tz`
//!   zones, so a weekly 10:00 New York meeting stays at 10:00 local across a
//!   DST change. `icalendar`'s own `recurrence` feature is not used: it
//!   anchors floating and all-day times to the machine's local zone (a
//!   hidden read of the environment, which the core must not do) and passes
//!   Windows zone names straight to `chrono-tz`, which does not know them.
//!   Here every value is resolved first ([`super::timezones`]) and `rrule`
//!   only ever sees IANA zones or UTC.
//!
//! # What is done here
//!
//! The text is unfolded (RFC 5545 §3.1) and cut into its `VEVENT` and
//! `VTIMEZONE` blocks, and each block is parsed on its own, so one broken
//! event gives one [`ImportError`] naming it (index and UID) while the rest
//! of the calendar imports. Then, per event: organizer and attendees
//! (`mailto:`, `CN`, `CUTYPE`, `PARTSTAT`), `CLASS:PRIVATE`/`CONFIDENTIAL`,
//! `STATUS:CANCELLED` (and `METHOD:CANCEL` for the whole file), conferencing
//! links from the conference properties, `URL`, `LOCATION` and
//! `DESCRIPTION`, and the times. Floating times and all-day (`DATE`) values
//! are in the calendar's zone (`X-WR-TIMEZONE`, as Google writes it), else
//! UTC. A local time that a DST change makes ambiguous is the first of the
//! two; one that does not exist is moved forward by the gap (RFC 5545
//! §3.3.5).
//!
//! Expansion over `[from, to)`: occurrences of `RRULE`/`RDATE` minus
//! `EXDATE`; an occurrence with a `RECURRENCE-ID` override is replaced by the
//! override (which may move it, rename it or cancel it; what it leaves out is
//! taken from the series). `RANGE=THISANDFUTURE` is treated as the single
//! occurrence. Work is bounded: a series is walked for at most
//! [`MAX_OCCURRENCES_WALKED`] occurrences.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use icalendar::parser::{Component, Property, read_calendar};
use rrule::{RRule, RRuleSet, Unvalidated};

use super::links::{ConferenceLink, find_links};
use super::meeting::{Attendee, AttendeeKind, Meeting, Response, Window, normalize_email};
use super::timezones::resolve_tzid;

/// How many occurrences of one series are walked (from its first) before
/// expansion stops with [`ImportErrorKind::TooManyOccurrences`].
pub const MAX_OCCURRENCES_WALKED: usize = 100_000;

/// Properties searched for conferencing links, most authoritative first.
const LINK_PROPERTIES: &[&str] = &[
    "CONFERENCE",
    "X-GOOGLE-CONFERENCE",
    "X-MICROSOFT-SKYPETEAMSMEETINGURL",
    "X-MICROSOFT-ONLINEMEETINGEXTERNALLINK",
    "X-MICROSOFT-ONLINEMEETINGCONFLINK",
    "URL",
    "LOCATION",
    "DESCRIPTION",
    "X-ALT-DESC",
];

/// Which part of the input an import error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRef {
    /// The file as a whole.
    Calendar,
    /// The `index`-th `VEVENT` (from 1, in file order), or the `index`-th
    /// meeting of a JSON list.
    Event {
        /// Position in the file, from 1.
        index: usize,
        /// Its UID, if it has one.
        uid: Option<String>,
        /// Its title, if it has one.
        title: Option<String>,
    },
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventRef::Calendar => f.write_str("calendar"),
            EventRef::Event { index, uid, title } => {
                write!(f, "event {index}")?;
                if let Some(title) = title {
                    write!(f, " {title:?}")?;
                }
                match uid {
                    Some(uid) => write!(f, " (UID {uid})"),
                    None => f.write_str(" (no UID)"),
                }
            }
        }
    }
}

/// One problem found while importing; the rest of the input still imports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {kind}")]
pub struct ImportError {
    /// Where.
    pub at: EventRef,
    /// What.
    pub kind: ImportErrorKind,
}

/// What went wrong with one event (or the file).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportErrorKind {
    /// The text holds no calendar at all.
    #[error("not an iCalendar file (no BEGIN:VCALENDAR or BEGIN:VEVENT line)")]
    NotCalendar,
    /// A `BEGIN:VEVENT` without its `END:VEVENT`.
    #[error("BEGIN:VEVENT at line {line} is never closed with END:VEVENT")]
    Unclosed {
        /// Line of the `BEGIN`.
        line: usize,
    },
    /// The event's lines could not be parsed as iCalendar content lines.
    #[error("cannot parse line {line}: {text:?}")]
    Syntax {
        /// Line number in the file (from 1).
        line: usize,
        /// The offending (unfolded) line.
        text: String,
    },
    /// An `END:` that does not close the component open at that point.
    #[error("line {line} {text:?} does not close BEGIN:{open}")]
    Mismatched {
        /// Line number in the file (from 1).
        line: usize,
        /// The `END:` line.
        text: String,
        /// The component open there.
        open: String,
    },
    /// A required property is absent.
    #[error("{property} is missing")]
    Missing {
        /// The property (`DTSTART`).
        property: &'static str,
    },
    /// A property's value has the wrong form.
    #[error("{property} {value:?} is not {expected}")]
    BadValue {
        /// The property.
        property: String,
        /// Its value.
        value: String,
        /// What it should be, in words.
        expected: &'static str,
    },
    /// A `TZID` that is neither an IANA zone, a Windows zone, nor named by a
    /// `VTIMEZONE`'s `X-LIC-LOCATION`.
    #[error("{property} has unknown time zone {tzid:?}")]
    UnknownTimeZone {
        /// The property.
        property: String,
        /// The zone name.
        tzid: String,
    },
    /// The event ends before it starts.
    #[error("DTEND {end} is before DTSTART {start}")]
    EndBeforeStart {
        /// Start (UTC, RFC 3339).
        start: String,
        /// End (UTC, RFC 3339).
        end: String,
    },
    /// The recurrence rule is invalid.
    #[error("RRULE {rule:?} is invalid: {detail}")]
    BadRecurrence {
        /// The rule as written.
        rule: String,
        /// Why, from the `rrule` crate.
        detail: String,
    },
    /// A series was walked for [`MAX_OCCURRENCES_WALKED`] occurrences
    /// without reaching the end of the window; later ones are not imported.
    #[error("more than {limit} occurrences before the end of the window; later ones are left out")]
    TooManyOccurrences {
        /// The bound.
        limit: usize,
    },
    /// A second event (or a second override of one occurrence) with a UID
    /// already seen; the first one is kept.
    #[error("duplicate UID{}: the first one is kept", .recurrence_id.as_ref().map(|r| format!(" and RECURRENCE-ID {r}")).unwrap_or_default())]
    DuplicateUid {
        /// The occurrence it overrides, for an override.
        recurrence_id: Option<String>,
    },
    /// JSON meetings: the text is not JSON.
    #[error("not valid JSON: {detail}")]
    Json {
        /// The parser's message.
        detail: String,
    },
    /// JSON meetings: a field is missing or wrong.
    #[error("{field}: {problem}")]
    Field {
        /// The field's path (`attendees[2].email`).
        field: String,
        /// What is wrong.
        problem: String,
    },
}

/// A parsed calendar, ready to be expanded over any window.
#[derive(Debug, Clone)]
pub struct Calendar {
    events: Vec<Event>,
    errors: Vec<ImportError>,
}

/// One `VEVENT`, resolved.
#[derive(Debug, Clone)]
struct Event {
    index: usize,
    uid: String,
    start: DateTime<Tz>,
    all_day: bool,
    length: Length,
    zone: Tz,
    recurrence: Option<Recurrence>,
    recurrence_id: Option<DateTime<Utc>>,
    fields: Fields,
}

/// What an override may leave out and take from its series.
#[derive(Debug, Clone, Default)]
struct Fields {
    title: Option<String>,
    organizer: Option<Attendee>,
    attendees: Option<Vec<Attendee>>,
    private: Option<bool>,
    cancelled: bool,
    location: Option<String>,
    links: Option<Vec<ConferenceLink>>,
}

/// How long each occurrence lasts.
#[derive(Debug, Clone, Copy)]
enum Length {
    /// A fixed duration.
    Fixed(Duration),
    /// Whole days, midnight to midnight in the calendar's zone.
    Days(i64),
}

#[derive(Debug, Clone)]
struct Recurrence {
    set: RRuleSet,
    exdates: Vec<DateTime<Utc>>,
    exdate_days: Vec<NaiveDate>,
}

/// What every event of one file shares.
struct Context {
    default_zone: Tz,
    aliases: BTreeMap<String, Tz>,
    cancelled: bool,
}

/// A time value as written.
enum Stamp {
    Utc(NaiveDateTime),
    Local(NaiveDateTime),
    Date(NaiveDate),
}

/// Imports `text` and expands it over `window`: every occurrence whose start
/// is inside, sorted by start, and every problem found (each naming its
/// event). Never fails as a whole: a file that is not a calendar gives one
/// error and no meetings.
pub fn import_ics(text: &str, window: &Window) -> (Vec<Meeting>, Vec<ImportError>) {
    Calendar::parse(text).expand(window)
}

impl Calendar {
    /// Parses iCalendar text. Problems are kept and reported by
    /// [`Calendar::expand`] along with those found while expanding.
    pub fn parse(text: &str) -> Calendar {
        let lines = unfold(text);
        let blocks = split_blocks(&lines);
        let mut errors = Vec::new();
        if !blocks.has_calendar && blocks.events.is_empty() {
            errors.push(ImportError {
                at: EventRef::Calendar,
                kind: ImportErrorKind::NotCalendar,
            });
        }
        let mut context = Context {
            default_zone: Tz::UTC,
            aliases: BTreeMap::new(),
            cancelled: false,
        };
        for zone in &blocks.zones {
            let Ok(component) = parse_block(zone) else {
                continue;
            };
            let tzid = prop(&component, "TZID").map(|p| p.val.as_str().trim().to_owned());
            let location = prop(&component, "X-LIC-LOCATION")
                .and_then(|p| p.val.as_str().trim().parse::<Tz>().ok());
            if let (Some(tzid), Some(tz)) = (tzid, location) {
                context.aliases.insert(tzid, tz);
            }
        }
        for (_, line) in &blocks.calendar_lines {
            let wrapped = format!("BEGIN:VCALENDAR\n{line}\nEND:VCALENDAR\n");
            let Ok(parsed) = read_calendar(&wrapped) else {
                continue;
            };
            for p in &parsed.properties {
                let value = p.val.as_str().trim();
                if p.name.as_str().eq_ignore_ascii_case("X-WR-TIMEZONE") {
                    if let Some(tz) = resolve_tzid(value, &context.aliases) {
                        context.default_zone = tz;
                    }
                } else if p.name.as_str().eq_ignore_ascii_case("METHOD") {
                    context.cancelled = value.eq_ignore_ascii_case("CANCEL");
                }
            }
        }

        let mut events: Vec<Event> = Vec::new();
        for (i, block) in blocks.events.iter().enumerate() {
            let index = i + 1;
            let raw_uid = raw_property(&block.lines, "UID");
            let raw_title = raw_property(&block.lines, "SUMMARY");
            let at = EventRef::Event {
                index,
                uid: raw_uid.clone(),
                title: raw_title,
            };
            if !block.closed {
                // An inner component left open makes the event's END close
                // it instead: name that line if there is one.
                let inner = block.lines.get(1..).unwrap_or(&[]);
                let kind = mismatched(inner).unwrap_or(ImportErrorKind::Unclosed {
                    line: block.first_line,
                });
                errors.push(ImportError { at, kind });
                continue;
            }
            let event = parse_block(block).and_then(|c| event_from(&c, index, &context));
            match event {
                Ok(event) => {
                    let duplicate = events
                        .iter()
                        .any(|e| e.uid == event.uid && e.recurrence_id == event.recurrence_id);
                    if duplicate {
                        errors.push(ImportError {
                            at,
                            kind: ImportErrorKind::DuplicateUid {
                                recurrence_id: event.recurrence_id.map(rfc3339),
                            },
                        });
                    } else {
                        events.push(event);
                    }
                }
                Err(kind) => errors.push(ImportError { at, kind }),
            }
        }
        Calendar { events, errors }
    }

    /// The earliest start of any event (series start or override), for
    /// choosing a default window.
    pub fn first_start(&self) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .map(|e| e.start.with_timezone(&Utc))
            .min()
    }

    /// How many events parsed (series count once).
    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// The occurrences whose start is inside `window`, sorted by start then
    /// title then UID, and the problems: those of parsing, then those of
    /// expanding.
    pub fn expand(&self, window: &Window) -> (Vec<Meeting>, Vec<ImportError>) {
        let mut meetings = Vec::new();
        let mut errors = self.errors.clone();
        let overrides: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.recurrence_id.is_some())
            .collect();
        for event in self.events.iter().filter(|e| e.recurrence_id.is_none()) {
            let overridden = |t: DateTime<Utc>| {
                overrides
                    .iter()
                    .any(|o| o.uid == event.uid && o.recurrence_id == Some(t))
            };
            match &event.recurrence {
                None => {
                    let start = event.start.with_timezone(&Utc);
                    if window.contains(start) && !overridden(start) {
                        meetings.push(occurrence(event, None, event.start));
                    }
                }
                Some(recurrence) => {
                    let mut walked = 0usize;
                    let mut finished = false;
                    let set = recurrence.set.clone().limit();
                    for start in &set {
                        walked += 1;
                        if walked > MAX_OCCURRENCES_WALKED {
                            break;
                        }
                        let start = start.with_timezone(&event.zone);
                        let utc = start.with_timezone(&Utc);
                        if utc >= window.to {
                            finished = true;
                            break;
                        }
                        if utc < window.from
                            || recurrence.exdates.contains(&utc)
                            || recurrence.exdate_days.contains(&start.date_naive())
                            || overridden(utc)
                        {
                            continue;
                        }
                        meetings.push(occurrence(event, Some(utc), start));
                    }
                    if walked > MAX_OCCURRENCES_WALKED && !finished {
                        errors.push(ImportError {
                            at: event.reference(),
                            kind: ImportErrorKind::TooManyOccurrences {
                                limit: MAX_OCCURRENCES_WALKED,
                            },
                        });
                    }
                }
            }
        }
        for o in &overrides {
            if !window.contains(o.start.with_timezone(&Utc)) {
                continue;
            }
            let series = self
                .events
                .iter()
                .find(|e| e.uid == o.uid && e.recurrence_id.is_none());
            let mut meeting = occurrence(o, o.recurrence_id, o.start);
            if let Some(series) = series {
                meeting = merge(meeting, &o.fields, &series.fields);
            }
            meetings.push(meeting);
        }
        meetings.sort_by(|a, b| (a.start, &a.title, &a.uid).cmp(&(b.start, &b.title, &b.uid)));
        (meetings, errors)
    }
}

impl Event {
    fn reference(&self) -> EventRef {
        EventRef::Event {
            index: self.index,
            uid: Some(self.uid.clone()),
            title: self.fields.title.clone(),
        }
    }
}

/// The meeting for one occurrence of `event` starting at `start`.
fn occurrence(event: &Event, recurrence_id: Option<DateTime<Utc>>, start: DateTime<Tz>) -> Meeting {
    // Past the end of time (a huge DURATION), the meeting ends when it
    // starts rather than overflowing.
    let utc_start = start.with_timezone(&Utc);
    let end = match event.length {
        Length::Fixed(d) => utc_start.checked_add_signed(d),
        Length::Days(n) => Duration::try_days(n)
            .and_then(|d| start.date_naive().checked_add_signed(d))
            .map(|day| {
                local_to_zoned(day.and_time(chrono::NaiveTime::MIN), event.zone).with_timezone(&Utc)
            }),
    }
    .unwrap_or(utc_start);
    let f = &event.fields;
    Meeting {
        uid: event.uid.clone(),
        recurrence_id,
        title: f.title.clone().unwrap_or_else(|| "(no title)".to_owned()),
        start: start.with_timezone(&Utc),
        end,
        all_day: event.all_day,
        organizer: f.organizer.clone(),
        attendees: f.attendees.clone().unwrap_or_default(),
        private: f.private.unwrap_or(false),
        cancelled: f.cancelled,
        location: f.location.clone(),
        links: f.links.clone().unwrap_or_default(),
        bot_invited: false,
    }
}

/// An override's meeting with what it leaves out taken from its series.
fn merge(mut meeting: Meeting, own: &Fields, series: &Fields) -> Meeting {
    if own.title.is_none()
        && let Some(title) = &series.title
    {
        meeting.title = title.clone();
    }
    if own.organizer.is_none() {
        meeting.organizer = series.organizer.clone();
    }
    if own.attendees.is_none() {
        meeting.attendees = series.attendees.clone().unwrap_or_default();
    }
    if own.private.is_none() {
        meeting.private = series.private.unwrap_or(false);
    }
    if own.links.is_none() {
        meeting.links = series.links.clone().unwrap_or_default();
        if own.location.is_none() {
            meeting.location = series.location.clone();
        }
    }
    meeting.cancelled = own.cancelled || series.cancelled;
    meeting
}

/// An unfolded content line and the file line it started on.
type Line = (usize, String);

/// RFC 5545 §3.1 unfolding, keeping each logical line's first line number.
fn unfold(text: &str) -> Vec<Line> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out: Vec<Line> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        match (raw.strip_prefix([' ', '\t']), out.last_mut()) {
            (Some(rest), Some((_, last))) => last.push_str(rest),
            _ => {
                if !raw.trim().is_empty() {
                    out.push((n + 1, raw.to_owned()));
                }
            }
        }
    }
    out
}

/// A `BEGIN:X` … `END:X` block.
struct Block {
    first_line: usize,
    lines: Vec<Line>,
    closed: bool,
}

struct Blocks {
    has_calendar: bool,
    events: Vec<Block>,
    zones: Vec<Block>,
    calendar_lines: Vec<Line>,
}

/// `BEGIN:NAME` / `END:NAME` (case-insensitive), if the line is one.
fn marker(line: &str) -> Option<(bool, String)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim();
    let begin = if key.eq_ignore_ascii_case("BEGIN") {
        true
    } else if key.eq_ignore_ascii_case("END") {
        false
    } else {
        return None;
    };
    Some((begin, value.trim().to_ascii_uppercase()))
}

/// Cuts the lines into `VEVENT` and `VTIMEZONE` blocks and the calendar's
/// own property lines; other components (`VTODO`, …) are passed over.
fn split_blocks(lines: &[Line]) -> Blocks {
    let mut blocks = Blocks {
        has_calendar: false,
        events: Vec::new(),
        zones: Vec::new(),
        calendar_lines: Vec::new(),
    };
    // (kind, block, nesting depth inside the block)
    let mut current: Option<(String, Block, usize)> = None;
    for line in lines {
        let mark = marker(&line.1);
        if let Some((kind, mut block, mut depth)) = current.take() {
            // A new event inside an unclosed one: keep the broken one as it
            // is and start over, so one missing END costs one event.
            if let Some((true, name)) = &mark
                && name == "VEVENT"
                && kind == "VEVENT"
                && depth == 0
            {
                blocks.events.push(block);
                current = Some((name.clone(), new_block(line), 0));
                continue;
            }
            block.lines.push(line.clone());
            match &mark {
                Some((true, _)) => depth += 1,
                Some((false, name)) if depth == 0 && *name == kind => {
                    block.closed = true;
                    match kind.as_str() {
                        "VEVENT" => blocks.events.push(block),
                        "VTIMEZONE" => blocks.zones.push(block),
                        _ => {}
                    }
                    continue;
                }
                Some((false, _)) => depth = depth.saturating_sub(1),
                None => {}
            }
            current = Some((kind, block, depth));
            continue;
        }
        match mark {
            Some((true, name)) if name == "VCALENDAR" => blocks.has_calendar = true,
            Some((true, name)) => current = Some((name, new_block(line), 0)),
            Some((false, _)) => {}
            None => blocks.calendar_lines.push(line.clone()),
        }
    }
    if let Some((kind, block, _)) = current
        && kind == "VEVENT"
    {
        blocks.events.push(block);
    }
    blocks
}

fn new_block(line: &Line) -> Block {
    Block {
        first_line: line.0,
        lines: vec![line.clone()],
        closed: false,
    }
}

/// The unescaped-enough value of the first `NAME:` line, to name an event
/// whose block does not parse.
fn raw_property(lines: &[Line], name: &str) -> Option<String> {
    lines.iter().find_map(|(_, l)| {
        let (key, value) = l.split_once(':')?;
        let key = key.split(';').next()?.trim();
        (key.eq_ignore_ascii_case(name) && !value.trim().is_empty())
            .then(|| value.trim().replace("\\,", ",").replace("\\;", ";"))
    })
}

/// Parses one block with the `icalendar` parser; a failure names the first
/// line the parser rejects on its own.
fn parse_block(block: &Block) -> Result<Component<'static>, ImportErrorKind> {
    let text: String = block.lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let parsed = read_calendar(&text).ok().and_then(|mut c| {
        if c.components.len() == 1 {
            c.components.pop()
        } else {
            None
        }
    });
    if let Some(component) = parsed {
        return Ok(owned(component));
    }
    // Find the culprit: a BEGIN/END that does not pair up, or the first
    // inner line that does not parse alone.
    let inner = block
        .lines
        .get(1..block.lines.len().saturating_sub(1))
        .unwrap_or(&[]);
    if let Some(mismatch) = mismatched(inner) {
        return Err(mismatch);
    }
    for (n, line) in inner {
        if marker(line).is_some() {
            continue;
        }
        if read_calendar(&format!("BEGIN:VEVENT\n{line}\nEND:VEVENT\n")).is_err() {
            return Err(ImportErrorKind::Syntax {
                line: *n,
                text: line.clone(),
            });
        }
    }
    Err(ImportErrorKind::Syntax {
        line: block.first_line,
        text: block
            .lines
            .first()
            .map(|(_, l)| l.clone())
            .unwrap_or_default(),
    })
}

/// The first `END:` among `lines` that does not close the component open
/// at that point, if any.
fn mismatched(lines: &[Line]) -> Option<ImportErrorKind> {
    let mut open: Vec<String> = Vec::new();
    for (n, line) in lines {
        match marker(line) {
            Some((true, name)) => open.push(name),
            Some((false, name)) => match open.pop() {
                Some(top) if top == name => {}
                top => {
                    return Some(ImportErrorKind::Mismatched {
                        line: *n,
                        text: line.clone(),
                        open: top.unwrap_or_else(|| "VEVENT".to_owned()),
                    });
                }
            },
            None => {}
        }
    }
    None
}

/// A parsed component detached from the text it borrowed.
fn owned(c: Component<'_>) -> Component<'static> {
    Component {
        name: c.name.into_owned(),
        properties: c
            .properties
            .into_iter()
            .map(|p| Property {
                name: p.name.into_owned(),
                val: p.val.into_owned(),
                params: p
                    .params
                    .into_iter()
                    .map(|q| icalendar::parser::Parameter {
                        key: q.key.into_owned(),
                        val: q.val.map(|v| v.into_owned()),
                    })
                    .collect(),
            })
            .collect(),
        components: c.components.into_iter().map(owned).collect(),
    }
}

fn prop<'a>(c: &'a Component<'static>, name: &str) -> Option<&'a Property<'static>> {
    c.properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn props<'a>(
    c: &'a Component<'static>,
    name: &'a str,
) -> impl Iterator<Item = &'a Property<'static>> {
    c.properties
        .iter()
        .filter(move |p| p.name.as_str().eq_ignore_ascii_case(name))
}

fn param<'a>(p: &'a Property<'static>, name: &str) -> Option<&'a str> {
    p.params
        .iter()
        .find(|q| q.key.as_str().eq_ignore_ascii_case(name))
        .and_then(|q| q.val.as_ref())
        .map(|v| v.as_str().trim())
}

/// A non-empty trimmed text value.
fn text(c: &Component<'static>, name: &str) -> Option<String> {
    prop(c, name)
        .map(|p| p.val.as_str().trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Builds an event from its parsed component.
fn event_from(
    c: &Component<'static>,
    index: usize,
    cx: &Context,
) -> Result<Event, ImportErrorKind> {
    let uid = text(c, "UID").unwrap_or_else(|| format!("event-{index}"));
    let dtstart = prop(c, "DTSTART").ok_or(ImportErrorKind::Missing {
        property: "DTSTART",
    })?;
    let (start, all_day) = time_of(dtstart, cx, None)?;
    let zone = start.timezone();

    let length = match (prop(c, "DTEND"), prop(c, "DURATION")) {
        (Some(dtend), _) => {
            let (end, end_is_date) = time_of(dtend, cx, None)?;
            if end < start {
                return Err(ImportErrorKind::EndBeforeStart {
                    start: rfc3339(start.with_timezone(&Utc)),
                    end: rfc3339(end.with_timezone(&Utc)),
                });
            }
            if all_day && end_is_date {
                Length::Days((end.date_naive() - start.date_naive()).num_days())
            } else {
                Length::Fixed(end.with_timezone(&Utc) - start.with_timezone(&Utc))
            }
        }
        (None, Some(duration)) => {
            let value = duration.val.as_str().trim();
            let d = parse_duration(value).ok_or_else(|| ImportErrorKind::BadValue {
                property: "DURATION".to_owned(),
                value: value.to_owned(),
                expected: "a duration (like PT1H30M or P1D)",
            })?;
            if d < Duration::zero() {
                return Err(ImportErrorKind::BadValue {
                    property: "DURATION".to_owned(),
                    value: value.to_owned(),
                    expected: "a positive duration",
                });
            }
            match (all_day, d.num_seconds() % 86_400) {
                (true, 0) => Length::Days(d.num_days()),
                _ => Length::Fixed(d),
            }
        }
        (None, None) if all_day => Length::Days(1),
        (None, None) => Length::Fixed(Duration::zero()),
    };

    let recurrence_id = match prop(c, "RECURRENCE-ID") {
        Some(p) => Some(time_of(p, cx, Some(zone))?.0.with_timezone(&Utc)),
        None => None,
    };
    let recurrence = recurrence_of(c, start, all_day, cx)?;

    let organizer = prop(c, "ORGANIZER").map(|p| {
        let mut a = attendee(p);
        a.response = Response::Accepted;
        a
    });
    let attendees: Vec<Attendee> = props(c, "ATTENDEE").map(attendee).collect();
    let class = text(c, "CLASS").map(|s| s.to_ascii_uppercase());
    let status = text(c, "STATUS").map(|s| s.to_ascii_uppercase());
    let mut links = Vec::new();
    let mut has_link_source = false;
    for name in LINK_PROPERTIES {
        for p in props(c, name) {
            has_link_source = true;
            find_links(p.val.as_str(), name, &mut links);
        }
    }
    let fields = Fields {
        title: text(c, "SUMMARY"),
        organizer,
        attendees: (!attendees.is_empty()).then_some(attendees),
        private: class.map(|c| c == "PRIVATE" || c == "CONFIDENTIAL"),
        cancelled: cx.cancelled || status.as_deref() == Some("CANCELLED"),
        location: text(c, "LOCATION"),
        links: has_link_source.then_some(links),
    };
    Ok(Event {
        index,
        uid,
        start,
        all_day,
        length,
        zone,
        recurrence,
        recurrence_id,
        fields,
    })
}

/// An organizer or attendee from its property.
fn attendee(p: &Property<'static>) -> Attendee {
    let email =
        normalize_email(p.val.as_str()).or_else(|| param(p, "EMAIL").and_then(normalize_email));
    let kind = match param(p, "CUTYPE").map(str::to_ascii_uppercase).as_deref() {
        Some("GROUP") => AttendeeKind::Group,
        Some("ROOM") => AttendeeKind::Room,
        Some("RESOURCE") => AttendeeKind::Resource,
        _ => AttendeeKind::Person,
    };
    let response = match param(p, "PARTSTAT").map(str::to_ascii_uppercase).as_deref() {
        Some("ACCEPTED") => Response::Accepted,
        Some("DECLINED") => Response::Declined,
        Some("TENTATIVE") => Response::Tentative,
        Some("DELEGATED") => Response::Delegated,
        _ => Response::NeedsAction,
    };
    Attendee {
        email,
        name: param(p, "CN").filter(|s| !s.is_empty()).map(str::to_owned),
        kind,
        response,
    }
}

/// `RRULE`/`RDATE`/`EXDATE` of an event, if it recurs.
fn recurrence_of(
    c: &Component<'static>,
    start: DateTime<Tz>,
    all_day: bool,
    cx: &Context,
) -> Result<Option<Recurrence>, ImportErrorKind> {
    let rules: Vec<&Property<'static>> = props(c, "RRULE").collect();
    let rdates: Vec<&Property<'static>> = props(c, "RDATE").collect();
    if rules.is_empty() && rdates.is_empty() {
        return Ok(None);
    }
    let zone = start.timezone();
    let dtstart = start.with_timezone(&rrule::Tz::Tz(zone));
    let mut set = RRuleSet::new(dtstart);
    for p in &rules {
        let written = p.val.as_str().trim();
        let bad = |detail: String| ImportErrorKind::BadRecurrence {
            rule: written.to_owned(),
            detail,
        };
        // An RRULE is ASCII (RFC 5545 §3.3.10). `rrule` slices a BYDAY
        // value by bytes and panics inside a multi-byte character, so
        // anything else is refused before it gets there.
        if !written.is_ascii() {
            return Err(bad("not ASCII".to_owned()));
        }
        let normalised = normalize_rule(written, zone, all_day, cx).map_err(bad)?;
        let rule: RRule<Unvalidated> = normalised
            .parse()
            .map_err(|e: rrule::RRuleError| bad(e.to_string()))?;
        let rule = rule.validate(dtstart).map_err(|e| bad(e.to_string()))?;
        set = set.rrule(rule);
    }
    if rules.is_empty() {
        // Without an RRULE, `rrule` yields only the RDATEs; DTSTART is the
        // first occurrence (RFC 5545 §3.8.5.2).
        set = set.rdate(dtstart);
    }
    for p in &rdates {
        for value in p.val.as_str().split(',') {
            let value = value.split('/').next().unwrap_or(value).trim();
            let (t, _) = value_time(p, value, cx, Some(zone))?;
            set = set.rdate(t.with_timezone(&rrule::Tz::Tz(zone)));
        }
    }
    let mut exdates = Vec::new();
    let mut exdate_days = Vec::new();
    for p in props(c, "EXDATE") {
        for value in p.val.as_str().split(',') {
            let value = value.trim();
            let (t, is_date) = value_time(p, value, cx, Some(zone))?;
            if is_date && !all_day {
                exdate_days.push(t.date_naive());
            } else {
                exdates.push(t.with_timezone(&Utc));
            }
        }
    }
    Ok(Some(Recurrence {
        set,
        exdates,
        exdate_days,
    }))
}

/// An RRULE with its `UNTIL` in UTC, as `rrule` requires for zoned starts
/// (a local or date `UNTIL` would otherwise be read in the machine's zone).
fn normalize_rule(rule: &str, zone: Tz, all_day: bool, cx: &Context) -> Result<String, String> {
    let rule = rule.strip_prefix("RRULE:").unwrap_or(rule);
    let mut parts = Vec::new();
    for part in rule.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("{part:?} is not NAME=VALUE"));
        };
        if !key.trim().eq_ignore_ascii_case("UNTIL") {
            parts.push(part.trim().to_owned());
            continue;
        }
        let until = match parse_stamp(value.trim()) {
            Some(Stamp::Utc(t)) => t.and_utc(),
            Some(Stamp::Local(t)) => local_to_zoned(t, zone).with_timezone(&Utc),
            Some(Stamp::Date(d)) if all_day => {
                local_to_zoned(d.and_time(chrono::NaiveTime::MIN), cx.default_zone)
                    .with_timezone(&Utc)
            }
            // A DATE UNTIL on a timed series: through the end of that day.
            Some(Stamp::Date(d)) => {
                let next = d.succ_opt().unwrap_or(d).and_time(chrono::NaiveTime::MIN);
                let end = local_to_zoned(next, zone).with_timezone(&Utc);
                end.checked_sub_signed(Duration::seconds(1)).unwrap_or(end)
            }
            None => {
                return Err(format!(
                    "UNTIL {:?} is not a date or date-time",
                    value.trim()
                ));
            }
        };
        parts.push(format!("UNTIL={}", until.format("%Y%m%dT%H%M%SZ")));
    }
    Ok(parts.join(";"))
}

/// The time of a DTSTART-like property, and whether it is a DATE.
fn time_of(
    p: &Property<'static>,
    cx: &Context,
    zone: Option<Tz>,
) -> Result<(DateTime<Tz>, bool), ImportErrorKind> {
    value_time(p, p.val.as_str().trim(), cx, zone)
}

/// One time value of property `p` (which may hold a list): UTC, local in
/// the property's `TZID` (else `zone`, else the calendar's zone), or a date
/// at midnight in the calendar's zone.
fn value_time(
    p: &Property<'static>,
    value: &str,
    cx: &Context,
    zone: Option<Tz>,
) -> Result<(DateTime<Tz>, bool), ImportErrorKind> {
    let name = p.name.as_str().to_ascii_uppercase();
    let stamp = parse_stamp(value).ok_or_else(|| ImportErrorKind::BadValue {
        property: name.clone(),
        value: value.to_owned(),
        expected: "a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS, optionally Z)",
    })?;
    let tz = match param(p, "TZID") {
        Some(tzid) => {
            resolve_tzid(tzid, &cx.aliases).ok_or_else(|| ImportErrorKind::UnknownTimeZone {
                property: name.clone(),
                tzid: tzid.to_owned(),
            })?
        }
        None => zone.unwrap_or(cx.default_zone),
    };
    Ok(match stamp {
        Stamp::Utc(t) => (Tz::UTC.from_utc_datetime(&t), false),
        Stamp::Local(t) => (local_to_zoned(t, tz), false),
        Stamp::Date(d) => (
            local_to_zoned(d.and_time(chrono::NaiveTime::MIN), cx.default_zone),
            true,
        ),
    })
}

/// `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`.
fn parse_stamp(value: &str) -> Option<Stamp> {
    if let Some(utc) = value.strip_suffix(['Z', 'z']) {
        return NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .ok()
            .map(Stamp::Utc);
    }
    if value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d")
            .ok()
            .map(Stamp::Date);
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S")
        .ok()
        .map(Stamp::Local)
}

/// A local time in `tz`: the earlier of two when a DST change repeats it,
/// shifted forward by the gap when a DST change skips it (RFC 5545 §3.3.5).
fn local_to_zoned(t: NaiveDateTime, tz: Tz) -> DateTime<Tz> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(d) => d,
        chrono::LocalResult::Ambiguous(earlier, _) => earlier,
        chrono::LocalResult::None => {
            // The offset in force a day earlier, before the gap.
            let day_before = t.checked_sub_signed(Duration::days(1)).unwrap_or(t);
            let before = tz.offset_from_utc_datetime(&day_before).fix();
            let utc = t
                .checked_sub_signed(Duration::seconds(i64::from(before.local_minus_utc())))
                .unwrap_or(t);
            tz.from_utc_datetime(&utc)
        }
    }
}

/// An RFC 5545 duration: `[+-]P[nW]` or `[+-]P[nD][T[nH][nM][nS]]`.
fn parse_duration(value: &str) -> Option<Duration> {
    let (negative, rest) = match value.as_bytes().first()? {
        b'-' => (true, value.get(1..)?),
        b'+' => (false, value.get(1..)?),
        _ => (false, value),
    };
    let rest = rest.strip_prefix(['P', 'p'])?;
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut number = String::new();
    let mut in_time = false;
    let mut any = false;
    for ch in rest.chars() {
        match ch.to_ascii_uppercase() {
            '0'..='9' => number.push(ch),
            'T' if !in_time && number.is_empty() => in_time = true,
            unit => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                any = true;
                let part = match (unit, in_time) {
                    ('W', false) => Duration::try_weeks(n)?,
                    ('D', false) => Duration::try_days(n)?,
                    ('H', true) => Duration::try_hours(n)?,
                    ('M', true) => Duration::try_minutes(n)?,
                    ('S', true) => Duration::try_seconds(n)?,
                    _ => return None,
                };
                total = total.checked_add(&part)?;
            }
        }
    }
    if !number.is_empty() || !any {
        return None;
    }
    Some(if negative { -total } else { total })
}

/// RFC 3339 in UTC with a `Z` (`2025-03-03T15:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
