//! `hearken consent explain`: which consent mode a call needs and why.
//!
//! Reads a participants file (and optionally a rules file), resolves every
//! participant and the recorder with [`hearken_core::consent::rules`], and
//! prints one line per participant, the call's mode, gate scope, the mode
//! for unknown locations and where it comes from, whether the announcement
//! must be in the recording, the mixed m-lines, the reasons, the rules
//! version and the disclaimer. Errors ([`CliError`]) name the file and the
//! field.
//!
//! `hearken consent verify CALL_DIR`: whether a call's consent audit log is
//! the one the recorder wrote ([`verify`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::{CliError, invalid, read_file};
use crate::config::ConsentConfig;
use hearken_core::audit::{self, VerifiedLog};
use hearken_core::conference::CallSummary;
use hearken_core::consent::rules::{
    CallDecision, ConsentMode, Location, LocationError, Media, ParticipantInput, Policy, Rules,
    decide,
};

/// Arguments of `hearken consent explain`. Options left out fall back to the
/// `[consent]` config section.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// Participants (JSON): {"participants": [{"id": "alice", "location":
    /// {"country": "US", "subdivision": "US-CA"}, "internal": false,
    /// "media": "phone", "mixed": false}]}; location is optional (unknown
    /// locations get the unknown-location mode), media (phone, video,
    /// in_person_room) defaults to phone, mixed (one m-line carrying several
    /// people) to false.
    #[arg(long, value_name = "FILE.json")]
    pub participants: PathBuf,
    /// Consent rules (YAML) [default: consent.rules_file, else the rules built
    /// into the binary].
    #[arg(long, value_name = "FILE.yaml")]
    pub rules: Option<PathBuf>,
    /// Where the recorder runs, as an ISO 3166-1 or 3166-2 code (US, US-CA,
    /// DE) [default: consent.recorder_location].
    #[arg(long, value_name = "CODE")]
    pub recorder_location: Option<String>,
    /// Company minimum mode: none, notify, notify_and_allow_opt_out or
    /// explicit [default: consent.min_mode].
    #[arg(long, value_name = "MODE")]
    pub min_mode: Option<ConsentMode>,
    /// Company mode for participants without a location, replacing the
    /// rules' default_unknown (any mode, even a lower one) [default:
    /// consent.unknown_location_mode, else the rules' default_unknown].
    #[arg(long, value_name = "MODE")]
    pub unknown_location_mode: Option<ConsentMode>,
    /// Print the decision as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `consent explain`; returns the text to print (ending in a newline).
pub fn explain(args: ExplainArgs, config: &ConsentConfig) -> Result<String, CliError> {
    let rules = load_rules(args.rules.as_deref(), config)?;
    let recorder = recorder_location(args.recorder_location.as_deref(), config)?;
    let min_mode = args.min_mode.unwrap_or(config.min_mode);
    let participants = read_participants(&args.participants)?;
    let policy = Policy {
        min_mode,
        overrides: BTreeMap::new(),
        unknown_location_mode: args.unknown_location_mode.or(config.unknown_location_mode),
    };
    let decision = decide(&rules, &policy, recorder.as_ref(), &participants);
    let mixed: Vec<&str> = participants
        .iter()
        .filter(|p| p.mixed)
        .map(|p| p.id.as_str())
        .collect();
    if args.json {
        json(&rules, &decision, &mixed)
    } else {
        Ok(text(&rules, &decision, &mixed))
    }
}

/// Arguments of `hearken consent verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// A call's directory (`{data_dir}/calls/{call_id}`), holding
    /// `consent.jsonl` and, once the call started, `call.json`.
    #[arg(value_name = "CALL_DIR")]
    pub call_dir: PathBuf,
}

/// Runs `consent verify`: checks the hash chain of the call's
/// `consent.jsonl` (every line complete, numbered in order, chained to the
/// one before, timed) and, when `call.json` records a chain head, that the
/// log still ends there (or, for a call in progress, passes through it).
/// Returns a one-paragraph report; any fault is an error that names the
/// line.
pub fn verify(args: VerifyArgs) -> Result<String, CliError> {
    let log_path = args.call_dir.join("consent.jsonl");
    let bytes = std::fs::read(&log_path).map_err(|source| CliError::Read {
        what: "consent log",
        path: log_path.clone(),
        source,
    })?;
    let log = audit::verify(&bytes).map_err(|e| invalid("consent log", &log_path, e))?;
    let call_path = args.call_dir.join("call.json");
    let call = if call_path.exists() {
        let text = read_file("call", &call_path)?;
        let summary: CallSummary = serde_json::from_str(&text)
            .map_err(|e| invalid("call", &call_path, format!("not a call summary: {e}")))?;
        Some(summary)
    } else {
        None
    };
    let anchor = match &call {
        None => {
            "There is no call.json (the call never started): only the chain was checked.".to_owned()
        }
        Some(summary) => {
            check_head(&log, summary).map_err(|m| invalid("consent log", &log_path, m))?
        }
    };
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "-".to_owned())
    };
    let mut out = format!(
        "{}: {} lines, numbered 1 to {} with no gap, each chained to the one before; \
         first at {}, last at {}; head sha256 {}. {anchor}",
        log_path.display(),
        log.lines,
        log.lines,
        time(log.first_at),
        time(log.last_at),
        log.head_sha256,
    );
    if let Some(error) = call
        .as_ref()
        .and_then(|c| c.consent_log.as_ref())
        .and_then(|l| l.error.as_deref())
    {
        let _ = write!(
            out,
            " call.json says the log could not be written past that point, so capture \
             of the call stopped there: {error}."
        );
    }
    out.push('\n');
    Ok(out)
}

/// Compares the log with the head `call.json` records; the sentence to add
/// to the report, or what does not match.
fn check_head(log: &VerifiedLog, call: &CallSummary) -> Result<String, String> {
    let Some(recorded) = &call.consent_log else {
        return Ok(
            "call.json records no chain head (written before the log had a line, or by an \
             older version): only the chain was checked."
                .to_owned(),
        );
    };
    let n = recorded.lines;
    let Some(head) = log.head_after(n) else {
        return Err(format!(
            "call.json records {n} lines, the log has {}: lines at its end were removed",
            log.lines
        ));
    };
    if head != recorded.head_sha256 {
        return Err(format!(
            "line {n} does not hash to the head call.json records ({}): line {n} was changed, \
             or the log was rewritten",
            recorded.head_sha256
        ));
    }
    if call.ended_at.is_some() {
        if log.lines != n {
            return Err(format!(
                "call.json (final) records {n} lines, the log has {}: lines were added after \
                 the call ended",
                log.lines
            ));
        }
        Ok(format!(
            "It ends at the head the final call.json records ({n} lines)."
        ))
    } else {
        Ok(format!(
            "It passes through the head the in-progress call.json recorded after line {n}."
        ))
    }
}

/// The rules named by `--rules`, else by `consent.rules_file`, else builtin.
fn load_rules(arg: Option<&Path>, config: &ConsentConfig) -> Result<Rules, CliError> {
    let path = match arg {
        Some(path) => path.to_owned(),
        None => match &config.rules_file {
            Some(path) => path.clone(),
            None => return Ok(Rules::builtin()),
        },
    };
    let text = read_file("rules", &path)?;
    Rules::parse(&text).map_err(|e| invalid("rules", &path, e))
}

/// The recorder's location from `--recorder-location`, else the config; an
/// empty code means unknown.
fn recorder_location(
    arg: Option<&str>,
    config: &ConsentConfig,
) -> Result<Option<Location>, CliError> {
    let (code, source) = match arg {
        Some(code) => (code, "--recorder-location"),
        None => (
            config.recorder_location.as_str(),
            "consent.recorder_location",
        ),
    };
    if code.trim().is_empty() {
        return Ok(None);
    }
    Location::from_code(code)
        .map(Some)
        .map_err(|e| CliError::Value {
            name: source,
            message: e.to_string(),
        })
}

/// Reads and checks the participants file; errors name the file and field.
fn read_participants(path: &Path) -> Result<Vec<ParticipantInput>, CliError> {
    let text = read_file("participants", path)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| invalid("participants", path, format!("not valid JSON: {e}")))?;
    parse_participants(&value).map_err(|e| invalid("participants", path, e))
}

/// What a JSON value is, in words.
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

/// Rejects keys outside `allowed`.
fn known_keys(place: &str, object: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => {
            let at = if place.is_empty() {
                key.clone()
            } else {
                format!("{place}.{key}")
            };
            Err(format!(
                "{at}: unknown field (expected one of {})",
                allowed.join(", ")
            ))
        }
        None => Ok(()),
    }
}

/// Fields a participant may carry; `display_name`, `email` and `capture`
/// (from the participants API) are accepted and not used here.
const PARTICIPANT_FIELDS: &[&str] = &[
    "id",
    "location",
    "internal",
    "media",
    "mixed",
    "display_name",
    "email",
    "capture",
];

fn parse_participants(value: &Value) -> Result<Vec<ParticipantInput>, String> {
    let Value::Object(top) = value else {
        return Err(format!(
            "expected an object with a \"participants\" list, found {}",
            kind(value)
        ));
    };
    known_keys("", top, &["participants"])?;
    let list = match top.get("participants") {
        None => return Err("participants: missing (expected a list of participants)".to_owned()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "participants: expected a list, found {}",
                kind(other)
            ));
        }
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let place = format!("participants[{i}]");
        let Value::Object(object) = item else {
            return Err(format!("{place}: expected an object, found {}", kind(item)));
        };
        known_keys(&place, object, PARTICIPANT_FIELDS)?;
        let id = match object.get("id") {
            None => return Err(format!("{place}.id: missing")),
            Some(Value::String(id)) if id.trim().is_empty() => {
                return Err(format!("{place}.id: must not be empty"));
            }
            Some(Value::String(id)) => id.clone(),
            Some(other) => {
                return Err(format!(
                    "{place}.id: expected a string, found {}",
                    kind(other)
                ));
            }
        };
        if let Some(first) = seen.insert(id.clone(), i) {
            return Err(format!(
                "{place}.id: duplicate id \"{id}\" (also participants[{first}].id)"
            ));
        }
        let location = match object.get("location") {
            None | Some(Value::Null) => None,
            Some(Value::Object(location)) => {
                Some(parse_location(&format!("{place}.location"), location)?)
            }
            Some(other) => {
                return Err(format!(
                    "{place}.location: expected an object, found {}",
                    kind(other)
                ));
            }
        };
        let internal = match object.get("internal") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "{place}.internal: expected true or false, found {}",
                    kind(other)
                ));
            }
        };
        let media = match object.get("media") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(
                Media::ALL
                    .into_iter()
                    .find(|m| m.as_str() == name)
                    .ok_or_else(|| {
                        format!(
                            "{place}.media: unknown medium \"{name}\" (expected phone, video or in_person_room)"
                        )
                    })?,
            ),
            Some(other) => {
                return Err(format!(
                    "{place}.media: expected a string, found {}",
                    kind(other)
                ));
            }
        };
        let mixed = match object.get("mixed") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "{place}.mixed: expected true or false, found {}",
                    kind(other)
                ));
            }
        };
        out.push(ParticipantInput {
            id,
            location,
            internal,
            media,
            mixed,
        });
    }
    Ok(out)
}

fn parse_location(place: &str, object: &Map<String, Value>) -> Result<Location, String> {
    known_keys(place, object, &["country", "subdivision"])?;
    let country = match object.get("country") {
        None => return Err(format!("{place}.country: missing")),
        Some(Value::String(c)) => c.clone(),
        Some(other) => {
            return Err(format!(
                "{place}.country: expected a string, found {}",
                kind(other)
            ));
        }
    };
    let subdivision = match object.get("subdivision") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "{place}.subdivision: expected a string or null, found {}",
                kind(other)
            ));
        }
    };
    let location = Location {
        country,
        subdivision,
    };
    location.validate().map_err(|e| match &e {
        LocationError::Country { .. } => format!("{place}.country: {e}"),
        _ => format!("{place}.subdivision: {e}"),
    })?;
    Ok(location)
}

/// The human-readable explanation; `mixed` lists the mixed m-lines' ids.
fn text(rules: &Rules, decision: &CallDecision, mixed: &[&str]) -> String {
    let recorder = ("(recorder)".to_owned(), decision.recorder.clone());
    let rows: Vec<&(String, _)> = decision.per_participant.iter().chain([&recorder]).collect();
    let id_width = rows
        .iter()
        .map(|(id, _)| id.chars().count())
        .chain(["participant".len()])
        .max()
        .unwrap_or(0);
    let code_width = rows
        .iter()
        .map(|(_, r)| r.matched.len())
        .chain(["matched".len()])
        .max()
        .unwrap_or(0);
    let mode_width = "notify_and_allow_opt_out".len();
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored.
    let _ = writeln!(
        out,
        "{:id_width$}  {:code_width$}  {:mode_width$}  why",
        "participant", "matched", "mode"
    );
    for (id, r) in rows {
        let _ = writeln!(
            out,
            "{id:id_width$}  {:code_width$}  {:mode_width$}  {}",
            r.matched,
            r.mode.as_str(),
            r.why
        );
    }
    let _ = writeln!(out, "call mode: {}", decision.mode);
    let _ = writeln!(out, "gate scope: {}", decision.scope);
    let _ = writeln!(
        out,
        "unknown-location mode: {} (from {})",
        decision.unknown_location_mode, decision.unknown_location_mode_from
    );
    let _ = writeln!(
        out,
        "announcement in recording: {}",
        if decision.announcement_in_recording {
            "required"
        } else {
            "not required"
        }
    );
    if mixed.is_empty() {
        let _ = writeln!(out, "mixed m-lines: none");
    } else {
        let _ = writeln!(out, "mixed m-lines: {}", mixed.join(", "));
    }
    let _ = writeln!(out, "reasons:");
    for reason in &decision.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    let _ = writeln!(out, "rules version: {}", rules.version());
    let _ = writeln!(out, "{}", rules.disclaimer());
    out
}

/// The decision as one JSON object, with the rules version, disclaimer and
/// the mixed m-lines' ids.
fn json(rules: &Rules, decision: &CallDecision, mixed: &[&str]) -> Result<String, CliError> {
    #[derive(Serialize)]
    struct Explained<'a> {
        rules_version: &'a str,
        disclaimer: &'a str,
        mixed: &'a [&'a str],
        #[serde(flatten)]
        decision: &'a CallDecision,
    }
    let mut out = serde_json::to_string(&Explained {
        rules_version: rules.version(),
        disclaimer: rules.disclaimer(),
        mixed,
        decision,
    })?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("consent/examples/participants.json")
    }

    fn args(participants: PathBuf) -> ExplainArgs {
        ExplainArgs {
            participants,
            rules: None,
            recorder_location: None,
            min_mode: None,
            unknown_location_mode: None,
            json: false,
        }
    }

    #[test]
    fn explains_the_example_with_builtin_rules() {
        let out = explain(args(example()), &ConsentConfig::default()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("participant"), "{out}");
        let row = |id: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(&format!("{id} ")))
                .unwrap_or_else(|| panic!("no line for {id}:\n{out}"))
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
        };
        assert_eq!(row("alice"), ["alice", "US-CA", "notify_and_allow_opt_out"]);
        assert_eq!(row("bob"), ["bob", "DE", "explicit"]);
        // Unknown locations fail closed (rules: default_unknown explicit).
        assert_eq!(row("carol"), ["carol", "default_unknown", "explicit"]);
        assert_eq!(row("dave"), ["dave", "US-NY", "notify"]);
        assert_eq!(row("erin"), ["erin", "EEA", "notify_and_allow_opt_out"]);
        // The default recorder location is US without a state, and the
        // rules differ by state: the strictest of US and default_unknown.
        assert_eq!(row("(recorder)"), ["(recorder)", "US", "explicit"]);
        assert!(out.contains("\ncall mode: explicit\n"), "{out}");
        assert!(out.contains("\ngate scope: call_wide\n"), "{out}");
        assert!(
            out.contains("\nunknown-location mode: explicit (from rules)\n"),
            "{out}"
        );
        assert!(
            out.contains("\nannouncement in recording: not required\n"),
            "{out}"
        );
        assert!(out.contains("\nmixed m-lines: none\n"), "{out}");
        assert!(
            out.contains(
                "  - strictest: bob in DE (all-party), carol (location unknown or not covered: \
                 default_unknown), the recorder in US require explicit\n"
            ),
            "{out}"
        );
        assert!(out.contains(&format!("rules version: {}\n", Rules::builtin().version())));
        assert!(
            out.trim_end().ends_with(Rules::builtin().disclaimer()),
            "{out}"
        );
    }

    #[test]
    fn json_output_is_one_object() {
        let mut a = args(example());
        a.json = true;
        a.min_mode = Some(ConsentMode::Notify);
        a.recorder_location = Some("us-ca".to_owned());
        let out = explain(a, &ConsentConfig::default()).unwrap();
        assert_eq!(out.lines().count(), 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mode"], "explicit");
        assert_eq!(v["scope"], "call_wide");
        assert_eq!(v["recorder"]["matched"], "US-CA");
        assert_eq!(v["participants"][3]["id"], "dave");
        assert_eq!(v["participants"][3]["mode"], "notify");
        assert_eq!(v["rules_version"], Rules::builtin().version());
        assert_eq!(v["unknown_location_mode"], "explicit");
        assert_eq!(v["unknown_location_mode_from"], "rules");
        assert_eq!(v["announcement_in_recording"], false);
        assert_eq!(v["mixed"], serde_json::json!([]));
        assert!(
            v["disclaimer"]
                .as_str()
                .unwrap()
                .starts_with("Not legal advice")
        );
        assert!(v["reasons"].as_array().unwrap().len() >= 2);
    }

    #[test]
    fn config_supplies_the_fallbacks() {
        let config = ConsentConfig {
            recorder_location: "DE".to_owned(),
            min_mode: ConsentMode::Explicit,
            ..ConsentConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(
            &file,
            r#"{"participants": [{"id": "x", "location": {"country": "US"}}]}"#,
        )
        .unwrap();
        let out = explain(args(file.clone()), &config).unwrap();
        let words = |first: &str| {
            out.lines()
                .find(|l| l.starts_with(first))
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>())
        };
        assert_eq!(
            words("(recorder)"),
            Some(vec!["(recorder)", "DE", "explicit"])
        );
        assert_eq!(words("x "), Some(vec!["x", "US", "explicit"]));

        let bad_place = ConsentConfig {
            recorder_location: "USA".to_owned(),
            ..ConsentConfig::default()
        };
        let err = explain(args(file.clone()), &bad_place)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("consent.recorder_location: \"USA\""),
            "{err}"
        );

        let mut a = args(file);
        a.recorder_location = Some("U".to_owned());
        let err = explain(a, &ConsentConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--recorder-location: \"U\""), "{err}");
    }

    #[test]
    fn participant_errors_name_the_file_and_field() {
        let cases = [
            (
                "[]",
                "expected an object with a \"participants\" list, found a list",
            ),
            ("{}", "participants: missing"),
            (r#"{"people": []}"#, "people: unknown field"),
            (
                r#"{"participants": {}}"#,
                "participants: expected a list, found an object",
            ),
            (
                r#"{"participants": [1]}"#,
                "participants[0]: expected an object, found a number",
            ),
            (r#"{"participants": [{}]}"#, "participants[0].id: missing"),
            (
                r#"{"participants": [{"id": 7}]}"#,
                "participants[0].id: expected a string, found a number",
            ),
            (
                r#"{"participants": [{"id": ""}]}"#,
                "participants[0].id: must not be empty",
            ),
            (
                r#"{"participants": [{"id": "a"}, {"id": "a"}]}"#,
                "participants[1].id: duplicate id \"a\" (also participants[0].id)",
            ),
            (
                r#"{"participants": [{"id": "a", "locaton": {}}]}"#,
                "participants[0].locaton: unknown field",
            ),
            (
                r#"{"participants": [{"id": "a", "location": "US"}]}"#,
                "participants[0].location: expected an object, found a string",
            ),
            (
                r#"{"participants": [{"id": "a", "location": {}}]}"#,
                "participants[0].location.country: missing",
            ),
            (
                r#"{"participants": [{"id": "a"}, {"id": "b"}, {"id": "c", "location": {"country": 1}}]}"#,
                "participants[2].location.country: expected a string, found a number",
            ),
            (
                r#"{"participants": [{"id": "a", "location": {"country": "USA"}}]}"#,
                "participants[0].location.country: \"USA\" is not a 2-letter ISO 3166-1 country code",
            ),
            (
                r#"{"participants": [{"id": "a", "location": {"country": "US", "subdivision": "DE-BY"}}]}"#,
                "participants[0].location.subdivision: subdivision DE-BY is not in country US",
            ),
            (
                r#"{"participants": [{"id": "a", "location": {"country": "US", "subdivision": "CALIF"}}]}"#,
                "participants[0].location.subdivision: \"CALIF\" is not an ISO 3166-2",
            ),
            (
                r#"{"participants": [{"id": "a", "internal": "yes"}]}"#,
                "participants[0].internal: expected true or false, found a string",
            ),
            ("{\"participants\": [", "not valid JSON"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("participants.json");
        for (json, expected) in cases {
            std::fs::write(&file, json).unwrap();
            let err = explain(args(file.clone()), &ConsentConfig::default())
                .unwrap_err()
                .to_string();
            let prefix = format!("participants file {}: ", file.display());
            assert!(err.starts_with(&prefix), "{json}: {err}");
            assert!(
                err[prefix.len()..].starts_with(expected) || err.contains(expected),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn api_fields_are_accepted_and_ids_kept_in_order() {
        let value: Value = serde_json::from_str(
            r#"{"participants": [{"id": "b", "display_name": "B", "email": "b@x", "capture": "default"}, {"id": "a", "location": null, "internal": null}]}"#,
        )
        .unwrap();
        let parsed = parse_participants(&value).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].id, "b");
        assert_eq!(parsed[1].location, None);
        assert!(!parsed[1].internal);
    }

    #[test]
    fn explains_the_unknown_location_mode_announcement_and_mixed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(
            &file,
            r#"{"participants": [
                {"id": "wa", "location": {"country": "US", "subdivision": "WA"}},
                {"id": "room", "location": {"country": "US", "subdivision": "NY"}, "mixed": true},
                {"id": "who"},
                {"id": "or", "location": {"country": "US", "subdivision": "OR"}, "media": "video"}
            ]}"#,
        )
        .unwrap();
        let mut a = args(file);
        a.recorder_location = Some("US-NY".to_owned());
        a.unknown_location_mode = Some(ConsentMode::Notify);
        let out = explain(a.clone(), &ConsentConfig::default()).unwrap();
        // wa: US-WA opt-out; room: US-NY notify; who: the company's notify;
        // or: US-OR video, floor notify, recommended opt-out.
        assert!(
            out.contains("\ncall mode: notify_and_allow_opt_out\n"),
            "{out}"
        );
        assert!(out.contains("\ngate scope: call_wide\n"), "{out}");
        assert!(
            out.contains("\nunknown-location mode: notify (from policy)\n"),
            "{out}"
        );
        assert!(
            out.contains("\nannouncement in recording: required\n"),
            "{out}"
        );
        assert!(out.contains("\nmixed m-lines: room\n"), "{out}");
        let who = out.lines().find(|l| l.starts_with("who ")).unwrap();
        assert_eq!(
            who.split_whitespace().take(3).collect::<Vec<_>>(),
            ["who", "default_unknown", "notify"]
        );
        let or = out.lines().find(|l| l.starts_with("or ")).unwrap();
        assert!(or.contains("by medium (video)"), "{or}");

        a.json = true;
        let v: Value =
            serde_json::from_str(&explain(a, &ConsentConfig::default()).unwrap()).unwrap();
        assert_eq!(v["mixed"], serde_json::json!(["room"]));
        assert_eq!(v["announcement_in_recording"], true);
        assert_eq!(v["unknown_location_mode_from"], "policy");
        assert_eq!(
            v["participants"][0]["requirements"],
            serde_json::json!(["announcement_in_recording"])
        );
    }

    #[test]
    fn media_and_mixed_are_checked() {
        for (json, expected) in [
            (
                r#"{"participants": [{"id": "a", "media": "radio"}]}"#,
                "participants[0].media: unknown medium \"radio\" (expected phone, video or in_person_room)",
            ),
            (
                r#"{"participants": [{"id": "a", "media": 1}]}"#,
                "participants[0].media: expected a string, found a number",
            ),
            (
                r#"{"participants": [{"id": "a", "mixed": "yes"}]}"#,
                "participants[0].mixed: expected true or false, found a string",
            ),
        ] {
            let value: Value = serde_json::from_str(json).unwrap();
            assert_eq!(parse_participants(&value).unwrap_err(), expected, "{json}");
        }
        let value: Value = serde_json::from_str(
            r#"{"participants": [{"id": "a", "media": "in_person_room", "mixed": true}]}"#,
        )
        .unwrap();
        let parsed = parse_participants(&value).unwrap();
        assert_eq!(parsed[0].media, Some(Media::InPersonRoom));
        assert!(parsed[0].mixed);
    }

    #[test]
    fn missing_participants_file_is_named() {
        let err = explain(
            args(PathBuf::from("/nonexistent/p.json")),
            &ConsentConfig::default(),
        )
        .unwrap_err();
        // The file and what the OS said (ENOENT is error 2 on Linux).
        assert_eq!(
            err.to_string(),
            "cannot read participants file /nonexistent/p.json: No such file or directory (os error 2)"
        );
    }
}
