//! `hearken policy explain`: which meetings of a calendar are recorded, how,
//! and why.
//!
//! Reads a settings file (JSON or TOML) and one or more calendars (iCalendar
//! `.ics`, or `.json` meetings as providers push them), expands every
//! meeting over a window with [`hearken_policy`], decides each
//! occurrence and prints one line per occurrence (start, title, decision,
//! method, reasons) or, with `--json`, the JSON array of the interface
//! contract. Files are read here; errors ([`CliError`]) name the file, and
//! a broken event is reported (naming it) without stopping the others.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::Serialize;

use super::{CliError, invalid, read_file};

use hearken_policy::calendar::rfc3339;
use hearken_policy::{
    Calendar, Decision, Meeting, Settings, SettingsFormat, Window, decide, meetings_from_json,
};

/// How long the default window lasts.
pub const DEFAULT_WINDOW_DAYS: i64 = 90;

/// Arguments of `hearken policy explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyExplainArgs {
    /// Company recording settings, JSON or TOML (by extension; otherwise
    /// JSON if it starts with `{`).
    #[arg(long, value_name = "FILE")]
    pub settings: PathBuf,
    /// Calendar to explain: iCalendar (.ics) or JSON meetings (.json).
    /// Repeat for several.
    #[arg(long, value_name = "FILE.ics", required = true)]
    pub calendar: Vec<PathBuf>,
    /// Start of the window (inclusive): YYYY-MM-DD (midnight UTC) or an RFC
    /// 3339 time [default: midnight UTC of the day of the earliest event in
    /// the calendars].
    #[arg(long, value_name = "DATE", value_parser = parse_bound)]
    pub from: Option<WindowBound>,
    /// End of the window (exclusive): YYYY-MM-DD includes that whole day
    /// (UTC), an RFC 3339 time ends right there [default: 90 days after the
    /// start].
    #[arg(long, value_name = "DATE", value_parser = parse_bound)]
    pub to: Option<WindowBound>,
    /// Print a JSON array, one object per occurrence: uid, start, title,
    /// decision, method, provider, reasons. Import errors go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// A `--from`/`--to` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBound {
    /// A calendar day (UTC).
    Day(NaiveDate),
    /// An instant.
    Instant(DateTime<Utc>),
}

impl WindowBound {
    /// As a window start: midnight UTC for a day.
    pub fn as_start(self) -> DateTime<Utc> {
        match self {
            WindowBound::Day(d) => d.and_time(NaiveTime::MIN).and_utc(),
            WindowBound::Instant(t) => t,
        }
    }

    /// As a window end: the next midnight UTC for a day (the day is in).
    pub fn as_end(self) -> DateTime<Utc> {
        match self {
            WindowBound::Day(d) => d.succ_opt().unwrap_or(d).and_time(NaiveTime::MIN).and_utc(),
            WindowBound::Instant(t) => t,
        }
    }
}

/// Parses `YYYY-MM-DD` or an RFC 3339 time.
pub fn parse_bound(text: &str) -> Result<WindowBound, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(WindowBound::Day(day));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| WindowBound::Instant(t.with_timezone(&Utc)))
        .map_err(|_| {
            format!(
                "{text:?} is not a date (2025-03-01) or an RFC 3339 time (2025-03-01T09:00:00Z)"
            )
        })
}

/// One occurrence and its decision, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explained {
    /// The calendar UID.
    pub uid: String,
    /// Start, RFC 3339 UTC.
    pub start: String,
    /// Title.
    pub title: String,
    /// `record`, `metadata_only`, `skip` or `blocked`.
    pub decision: &'static str,
    /// `native` or `assistant` for a recorded meeting.
    pub method: Option<&'static str>,
    /// The provider used (recorded) or detected (otherwise), if any.
    pub provider: Option<&'static str>,
    /// Why, in plain words.
    pub reasons: Vec<String>,
}

/// Everything `explain` found: the occurrences, the import problems (each
/// naming its file and event) and the window used.
#[derive(Debug, Clone)]
pub struct Report {
    /// One entry per occurrence, sorted by start, title, uid.
    pub occurrences: Vec<Explained>,
    /// Problems that left an event out, as `FILE: event N (UID …): what`.
    pub errors: Vec<String>,
    /// The window the calendars were expanded over.
    pub window: Window,
}

/// Runs `policy explain`; returns the text to print (ending in a newline).
/// With `--json` import errors are written to stderr so that stdout stays a
/// JSON array; without it they follow the table as `error:` lines.
pub fn explain(args: PolicyExplainArgs) -> Result<String, CliError> {
    let json = args.json;
    let report = report(&args)?;
    if json {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        let mut out = serde_json::to_string_pretty(&report.occurrences)?;
        out.push('\n');
        Ok(out)
    } else {
        Ok(table(&report))
    }
}

/// Reads the files, expands the calendars and decides every occurrence.
pub fn report(args: &PolicyExplainArgs) -> Result<Report, CliError> {
    let settings = read_settings(&args.settings)?;
    let mut sources = Vec::new();
    for path in &args.calendar {
        sources.push(read_calendar(path)?);
    }
    let from = match args.from {
        Some(b) => b.as_start(),
        None => sources
            .iter()
            .filter_map(Source::first_start)
            .min()
            .map(|t| t.date_naive().and_time(NaiveTime::MIN).and_utc())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    };
    let to = match args.to {
        Some(b) => b.as_end(),
        None => from
            .checked_add_signed(Duration::days(DEFAULT_WINDOW_DAYS))
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    };
    if to <= from {
        return Err(CliError::Value {
            name: "--to",
            message: format!(
                "the window is empty: --to ({}) must be after --from ({})",
                rfc3339(to),
                rfc3339(from)
            ),
        });
    }
    let window = Window { from, to };

    let mut meetings: Vec<Meeting> = Vec::new();
    let mut errors = Vec::new();
    for source in &sources {
        let (found, problems) = match &source.content {
            Content::Ics(calendar) => calendar.expand(&window),
            Content::Json(list, problems) => (
                list.iter()
                    .filter(|m| window.contains(m.start))
                    .cloned()
                    .collect(),
                problems.clone(),
            ),
        };
        meetings.extend(found);
        errors.extend(
            problems
                .iter()
                .map(|e| format!("{}: {e}", source.path.display())),
        );
    }
    meetings.sort_by(|a, b| (a.start, &a.title, &a.uid).cmp(&(b.start, &b.title, &b.uid)));
    let occurrences = meetings
        .iter()
        .map(|m| explained(m, &decide(m, &settings)))
        .collect();
    Ok(Report {
        occurrences,
        errors,
        window,
    })
}

/// The contract's JSON object for one occurrence.
fn explained(meeting: &Meeting, decision: &Decision) -> Explained {
    let provider = match decision {
        Decision::Record { provider, .. } => Some(*provider),
        _ => meeting.provider(),
    };
    Explained {
        uid: meeting.uid.clone(),
        start: rfc3339(meeting.start),
        title: meeting.title.clone(),
        decision: decision.kind(),
        method: decision.method().map(|m| m.as_str()),
        provider: provider.map(|p| p.as_str()),
        reasons: decision.reasons().to_vec(),
    }
}

/// One line per occurrence, columns aligned, then the errors.
fn table(report: &Report) -> String {
    let mut out = String::new();
    if report.occurrences.is_empty() {
        let _ = writeln!(
            out,
            "no meeting starts between {} and {}",
            rfc3339(report.window.from),
            rfc3339(report.window.to)
        );
    }
    let width = report
        .occurrences
        .iter()
        .map(|o| o.title.chars().count())
        .max()
        .unwrap_or(0);
    for o in &report.occurrences {
        let pad = width - o.title.chars().count();
        let _ = writeln!(
            out,
            "{}  {}{}  {:<13}  {:<9}  {}",
            o.start,
            o.title,
            " ".repeat(pad),
            o.decision,
            o.method.unwrap_or("-"),
            o.reasons.join("; ")
        );
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

/// A calendar file, read.
struct Source {
    path: PathBuf,
    content: Content,
}

enum Content {
    Ics(Calendar),
    Json(Vec<Meeting>, Vec<hearken_policy::ImportError>),
}

impl Source {
    fn first_start(&self) -> Option<DateTime<Utc>> {
        match &self.content {
            Content::Ics(c) => c.first_start(),
            Content::Json(list, _) => list.iter().map(|m| m.start).min(),
        }
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn read_settings(path: &Path) -> Result<Settings, CliError> {
    let text = read_file("settings", path)?;
    let format = if has_extension(path, "toml") {
        SettingsFormat::Toml
    } else if has_extension(path, "json") || text.trim_start().starts_with('{') {
        SettingsFormat::Json
    } else {
        SettingsFormat::Toml
    };
    Settings::parse(&text, format).map_err(|e| invalid("settings", path, e))
}

fn read_calendar(path: &Path) -> Result<Source, CliError> {
    let text = read_file("calendar", path)?;
    let content = if has_extension(path, "json") {
        let (meetings, errors) = meetings_from_json(&text);
        Content::Json(meetings, errors)
    } else {
        Content::Ics(Calendar::parse(&text))
    };
    Ok(Source {
        path: path.to_owned(),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse() {
        assert_eq!(
            parse_bound("2025-03-01").unwrap().as_start().to_rfc3339(),
            "2025-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_bound("2025-03-31").unwrap().as_end().to_rfc3339(),
            "2025-04-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_bound("2025-03-01T09:00:00+01:00")
                .unwrap()
                .as_end()
                .to_rfc3339(),
            "2025-03-01T08:00:00+00:00"
        );
        assert!(parse_bound("March").unwrap_err().contains("\"March\""));
    }
}
