//! The consent audit log as a hash chain: formatting each line and checking
//! a whole log. Pure: the recorder writes the lines, `hearken consent
//! verify` and the API read them.
//!
//! A log is JSON Lines. Every line is one JSON object that starts with three
//! fields the chain adds to the event's own:
//!
//! - `seq`: 1 for the first line, then 2, 3, … with no gap;
//! - `at`: the wall-clock time of the event, RFC 3339 in UTC with
//!   milliseconds (`2025-03-01T09:30:00.250Z`);
//! - `prev_sha256`: the lowercase hex SHA-256 of the previous line's exact
//!   bytes, without its newline; the first line carries [`GENESIS_SHA256`].
//!
//! The head of the chain (the SHA-256 of the last line) is recorded in
//! `call.json` ([`ConsentLogSummary`]). Changing, removing or reordering any
//! line breaks the chain at the next line, or, for the last line, no longer
//! matches the recorded head. The chain proves that the log is the one the
//! recorder wrote as long as the head it is checked against is trusted; it
//! is not a signature.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev_sha256` of the first line of every log: 64 zeros (no line
/// hashes to it).
pub const GENESIS_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields the chain adds to every line; an event may not carry them.
pub const CHAIN_FIELDS: [&str; 3] = ["seq", "at", "prev_sha256"];

/// What `call.json` records of a call's consent audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentLogSummary {
    /// Lines written and synced.
    pub lines: u64,
    /// SHA-256 (lowercase hex) of the last of them; [`GENESIS_SHA256`] when
    /// there is none.
    pub head_sha256: String,
    /// Why the log could not be written, when it could not; capture of the
    /// call stopped at that point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The writing side of a chain: the number of lines so far and the hash of
/// the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditChain {
    lines: u64,
    head: [u8; 32],
}

/// One formatted line and where it leaves the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedLine {
    /// Its `seq`.
    pub seq: u64,
    /// The line, without a newline.
    pub text: String,
    /// SHA-256 of `text` (lowercase hex): the new head.
    pub sha256: String,
}

/// Why an event could not be made into a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The event has a field the chain sets itself.
    #[error("the event already has a field named {0:?}, which the chain sets")]
    ReservedField(&'static str),
}

impl Default for AuditChain {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditChain {
    /// The chain of an empty log.
    pub fn new() -> Self {
        Self {
            lines: 0,
            head: [0; 32],
        }
    }

    /// The chain continuing after a log that verified (a call whose log
    /// already has lines, from an earlier attempt with the same call id).
    pub fn resume(log: &VerifiedLog) -> Self {
        Self {
            lines: log.lines,
            head: log.hashes.last().copied().unwrap_or([0; 32]),
        }
    }

    /// Lines so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// SHA-256 of the last line (lowercase hex), or [`GENESIS_SHA256`].
    pub fn head_sha256(&self) -> String {
        hex::encode(self.head)
    }

    /// What `call.json` records of this chain (with no error).
    pub fn summary(&self) -> ConsentLogSummary {
        ConsentLogSummary {
            lines: self.lines,
            head_sha256: self.head_sha256(),
            error: None,
        }
    }

    /// Formats `event` (a JSON object) as the next line, with `seq`, `at`
    /// and `prev_sha256` first, and moves the head to it. The caller writes
    /// `text` and a newline; if that fails it must not write any later line
    /// of this chain (see the recorder).
    pub fn append(
        &mut self,
        at: DateTime<Utc>,
        event: &Map<String, Value>,
    ) -> Result<ChainedLine, AppendError> {
        if let Some(field) = CHAIN_FIELDS.iter().find(|f| event.contains_key(**f)) {
            return Err(AppendError::ReservedField(field));
        }
        let seq = self.lines + 1;
        let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        // Written by hand only to put the chain's fields first (serde_json
        // sorts an object's keys); the event's own fields follow as
        // serde_json writes them. Neither `at` (RFC 3339) nor a hex digest
        // needs escaping.
        let body = Value::Object(event.clone()).to_string();
        let rest = body.strip_prefix('{').unwrap_or(&body);
        let separator = if rest == "}" { "" } else { "," };
        let text = format!(
            "{{\"seq\":{seq},\"at\":\"{at}\",\"prev_sha256\":\"{}\"{separator}{rest}",
            hex::encode(self.head)
        );
        let head: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        self.lines = seq;
        self.head = head;
        Ok(ChainedLine {
            seq,
            text,
            sha256: hex::encode(head),
        })
    }
}

/// A log whose every line checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    /// Number of lines.
    pub lines: u64,
    /// SHA-256 of the last line (lowercase hex), or [`GENESIS_SHA256`].
    pub head_sha256: String,
    /// `at` of the first line.
    pub first_at: Option<DateTime<Utc>>,
    /// `at` of the last line.
    pub last_at: Option<DateTime<Utc>>,
    /// SHA-256 of each line, in order.
    hashes: Vec<[u8; 32]>,
}

impl VerifiedLog {
    /// The head after the first `lines` lines (a head recorded while the
    /// log was shorter); `None` when the log has fewer lines.
    pub fn head_after(&self, lines: u64) -> Option<String> {
        if lines == 0 {
            return Some(GENESIS_SHA256.to_owned());
        }
        let index = usize::try_from(lines - 1).ok()?;
        self.hashes.get(index).map(hex::encode)
    }
}

/// Where a log stops checking out: the first bad line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {fault}")]
pub struct ChainError {
    /// The line (1-based) where the fault shows.
    pub line: u64,
    /// What is wrong with it.
    pub fault: ChainFault,
}

/// What is wrong with one line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainFault {
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON (the parser's words).
    BadJson(String),
    /// JSON, but not an object.
    NotAnObject,
    /// No `seq`, or not a positive integer.
    MissingSeq,
    /// `seq` is not the line's number.
    WrongSeq {
        /// The line's number.
        expected: u64,
        /// What the line says.
        found: u64,
    },
    /// No `prev_sha256`, or not a string.
    MissingPrevHash,
    /// `prev_sha256` is not the hash of the previous line (or, on line 1,
    /// not [`GENESIS_SHA256`]).
    WrongPrevHash {
        /// The previous line's number (0 for line 1).
        previous: u64,
    },
    /// No `at`, or `null`.
    MissingAt,
    /// `at` is not an RFC 3339 time.
    BadAt(String),
    /// The last line has no newline: cut short (a crash mid-write) or
    /// appended to by hand.
    Torn,
}

impl fmt::Display for ChainFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => write!(f, "not UTF-8 text"),
            Self::BadJson(e) => write!(f, "not valid JSON ({e})"),
            Self::NotAnObject => write!(f, "not a JSON object"),
            Self::MissingSeq => write!(f, "no seq (a positive integer)"),
            Self::WrongSeq { expected, found } if found > expected => write!(
                f,
                "seq is {found}, expected {expected}: lines before it are missing, or lines were reordered"
            ),
            Self::WrongSeq { expected, found } => write!(
                f,
                "seq is {found}, expected {expected}: a line is repeated, or lines were reordered"
            ),
            Self::MissingPrevHash => write!(f, "no prev_sha256"),
            Self::WrongPrevHash { previous: 0 } => write!(
                f,
                "prev_sha256 is not the genesis value: lines before it were removed"
            ),
            Self::WrongPrevHash { previous } => write!(
                f,
                "prev_sha256 is not the SHA-256 of line {previous}: line {previous} was changed \
                 (or lines around it were removed or reordered)"
            ),
            Self::MissingAt => write!(f, "no at (wall-clock time)"),
            Self::BadAt(e) => write!(f, "at is not an RFC 3339 time ({e})"),
            Self::Torn => write!(
                f,
                "the last line has no newline: it was cut short (a crash while writing it) or added by hand"
            ),
        }
    }
}

/// Checks a whole log (the bytes of `consent.jsonl`): every line complete,
/// an object, numbered in order, chained to the line before, and timed. An
/// empty log verifies with no lines.
pub fn verify(log: &[u8]) -> Result<VerifiedLog, ChainError> {
    let mut verified = VerifiedLog {
        lines: 0,
        head_sha256: GENESIS_SHA256.to_owned(),
        first_at: None,
        last_at: None,
        hashes: Vec::new(),
    };
    let mut prev = [0u8; 32];
    let mut rest = log;
    while !rest.is_empty() {
        let line = verified.lines + 1;
        let fail = |fault| ChainError { line, fault };
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            return Err(fail(ChainFault::Torn));
        };
        let bytes = &rest[..end];
        rest = &rest[end + 1..];
        let text = std::str::from_utf8(bytes).map_err(|_| fail(ChainFault::NotUtf8))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| fail(ChainFault::BadJson(e.to_string())))?;
        let Value::Object(fields) = value else {
            return Err(fail(ChainFault::NotAnObject));
        };
        let seq = fields
            .get("seq")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
            .ok_or_else(|| fail(ChainFault::MissingSeq))?;
        if seq != line {
            return Err(fail(ChainFault::WrongSeq {
                expected: line,
                found: seq,
            }));
        }
        let prev_hash = fields
            .get("prev_sha256")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(ChainFault::MissingPrevHash))?;
        if prev_hash != hex::encode(prev) {
            return Err(fail(ChainFault::WrongPrevHash { previous: line - 1 }));
        }
        let at = match fields.get("at") {
            None | Some(Value::Null) => return Err(fail(ChainFault::MissingAt)),
            Some(Value::String(at)) => DateTime::parse_from_rfc3339(at)
                .map_err(|e| fail(ChainFault::BadAt(e.to_string())))?
                .with_timezone(&Utc),
            Some(other) => return Err(fail(ChainFault::BadAt(format!("found {other}")))),
        };
        prev = Sha256::digest(bytes).into();
        verified.hashes.push(prev);
        verified.lines = line;
        verified.first_at.get_or_insert(at);
        verified.last_at = Some(at);
    }
    verified.head_sha256 = hex::encode(prev);
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn event(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn a_line_puts_the_chain_fields_first() {
        let mut chain = AuditChain::new();
        let line = chain
            .append(
                at("2025-03-01T09:30:00.25Z"),
                &event(r#"{"event":"discarded","t":1.5,"what":"all"}"#),
            )
            .unwrap();
        // Expected text written out by hand from the format in the module
        // docs.
        assert_eq!(
            line.text,
            format!(
                "{{\"seq\":1,\"at\":\"2025-03-01T09:30:00.250Z\",\"prev_sha256\":\"{GENESIS_SHA256}\",\"event\":\"discarded\",\"t\":1.5,\"what\":\"all\"}}"
            )
        );
        assert_eq!(line.seq, 1);
        // Computed outside the code: `printf '%s' LINE | sha256sum`.
        assert_eq!(
            line.sha256,
            "b0bd400f9640ffa3eca26e5b588cde023c939c79e1535afd5f2270780babcfad"
        );
        assert_eq!(chain.head_sha256(), line.sha256);
        assert_eq!(chain.lines(), 1);
        let empty = chain
            .append(at("2025-03-01T09:30:01Z"), &Map::new())
            .unwrap();
        assert_eq!(
            empty.text,
            format!(
                "{{\"seq\":2,\"at\":\"2025-03-01T09:30:01.000Z\",\"prev_sha256\":\"{}\"}}",
                line.sha256
            )
        );
    }

    #[test]
    fn an_event_may_not_set_the_chain_fields() {
        let mut chain = AuditChain::new();
        assert_eq!(
            chain.append(at("2025-03-01T09:30:00Z"), &event(r#"{"seq":7}"#)),
            Err(AppendError::ReservedField("seq"))
        );
        assert_eq!(chain.lines(), 0, "a refused event does not move the chain");
    }

    /// A log of three hand-built lines: each `prev_sha256` computed here
    /// from the previous line's text.
    fn hand_built() -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut prev = GENESIS_SHA256.to_owned();
        for (seq, (time, rest)) in [
            (
                "2025-03-01T09:30:00.000Z",
                r#""event":"mode_evaluated","mode":"explicit""#,
            ),
            (
                "2025-03-01T09:30:04.120Z",
                r#""event":"state_changed","to":"granted""#,
            ),
            (
                "2025-03-01T09:31:00.500Z",
                r#""event":"call_ended","reason":"api""#,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let line = format!(
                "{{\"seq\":{},\"at\":\"{time}\",\"prev_sha256\":\"{prev}\",{rest}}}",
                seq + 1
            );
            prev = hex::encode(Sha256::digest(line.as_bytes()));
            lines.push(line);
        }
        lines
    }

    fn join(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn fault(log: &[u8]) -> (u64, ChainFault) {
        let e = verify(log).unwrap_err();
        (e.line, e.fault)
    }

    #[test]
    fn a_hand_built_log_verifies() {
        let lines = hand_built();
        let v = verify(&join(&lines)).unwrap();
        assert_eq!(v.lines, 3);
        assert_eq!(
            v.head_sha256,
            hex::encode(Sha256::digest(lines[2].as_bytes()))
        );
        assert_eq!(v.first_at, Some(at("2025-03-01T09:30:00Z")));
        assert_eq!(v.last_at, Some(at("2025-03-01T09:31:00.5Z")));
        assert_eq!(v.head_after(0).as_deref(), Some(GENESIS_SHA256));
        assert_eq!(
            v.head_after(1),
            Some(hex::encode(Sha256::digest(lines[0].as_bytes())))
        );
        assert_eq!(v.head_after(4), None);
        let empty = verify(b"").unwrap();
        assert_eq!(
            (empty.lines, empty.head_sha256.as_str()),
            (0, GENESIS_SHA256)
        );
    }

    #[test]
    fn what_the_chain_writes_verifies_and_resumes() {
        let mut chain = AuditChain::new();
        let mut log = Vec::new();
        for i in 0..5 {
            let line = chain
                .append(
                    at("2025-03-01T09:30:00Z") + chrono::Duration::seconds(i),
                    &event(&format!(r#"{{"event":"gate_changed","t":{i}}}"#)),
                )
                .unwrap();
            log.extend_from_slice(line.text.as_bytes());
            log.push(b'\n');
        }
        let v = verify(&log).unwrap();
        assert_eq!((v.lines, v.head_sha256.clone()), (5, chain.head_sha256()));
        let mut resumed = AuditChain::resume(&v);
        assert_eq!(resumed, chain);
        let next = resumed
            .append(
                at("2025-03-01T09:40:00Z"),
                &event(r#"{"event":"call_ended"}"#),
            )
            .unwrap();
        assert_eq!(next.seq, 6);
        log.extend_from_slice(next.text.as_bytes());
        log.push(b'\n');
        assert_eq!(verify(&log).unwrap().lines, 6);
    }

    #[test]
    fn an_edited_line_is_named_by_the_next_one() {
        let mut lines = hand_built();
        lines[1] = lines[1].replace("granted", "declined");
        let (line, fault) = fault(&join(&lines));
        assert_eq!(
            (line, fault.clone()),
            (3, ChainFault::WrongPrevHash { previous: 2 })
        );
        assert!(fault.to_string().contains("line 2 was changed"), "{fault}");
    }

    #[test]
    fn a_changed_time_is_caught() {
        let mut lines = hand_built();
        lines[0] = lines[0].replace("09:30:00.000Z", "09:29:00.000Z");
        assert_eq!(
            fault(&join(&lines)),
            (2, ChainFault::WrongPrevHash { previous: 1 })
        );
    }

    #[test]
    fn swapped_lines_are_out_of_order() {
        let mut lines = hand_built();
        lines.swap(1, 2);
        assert_eq!(
            fault(&join(&lines)),
            (
                2,
                ChainFault::WrongSeq {
                    expected: 2,
                    found: 3
                }
            )
        );
    }

    #[test]
    fn a_deleted_line_is_a_gap() {
        let mut lines = hand_built();
        lines.remove(1);
        assert_eq!(
            fault(&join(&lines)),
            (
                2,
                ChainFault::WrongSeq {
                    expected: 2,
                    found: 3
                }
            )
        );
        let mut first_gone = hand_built();
        first_gone.remove(0);
        assert_eq!(
            fault(&join(&first_gone)),
            (
                1,
                ChainFault::WrongSeq {
                    expected: 1,
                    found: 2
                }
            )
        );
    }

    #[test]
    fn renumbering_after_a_deletion_still_breaks_the_chain() {
        let mut lines = hand_built();
        lines.remove(1);
        lines[1] = lines[1].replacen("\"seq\":3", "\"seq\":2", 1);
        assert_eq!(
            fault(&join(&lines)),
            (2, ChainFault::WrongPrevHash { previous: 1 })
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let lines = hand_built();
        let mut log = join(&lines[..1]);
        log.extend_from_slice(b"{\"seq\":2,\"eve\n");
        assert!(matches!(fault(&log), (2, ChainFault::BadJson(_))));

        let mut log = join(&lines[..1]);
        log.extend_from_slice(b"[1,2]\n");
        assert_eq!(fault(&log), (2, ChainFault::NotAnObject));

        let mut log = join(&lines[..1]);
        log.extend_from_slice(b"\xff\xfe\n");
        assert_eq!(fault(&log), (2, ChainFault::NotUtf8));

        let torn = &join(&lines)[..join(&lines).len() - 10];
        assert_eq!(fault(torn), (3, ChainFault::Torn));

        let no_at = format!(
            "{{\"seq\":1,\"at\":null,\"prev_sha256\":\"{GENESIS_SHA256}\",\"event\":\"x\"}}\n"
        );
        assert_eq!(fault(no_at.as_bytes()), (1, ChainFault::MissingAt));
        let bad_at =
            format!("{{\"seq\":1,\"at\":\"yesterday\",\"prev_sha256\":\"{GENESIS_SHA256}\"}}\n");
        assert!(matches!(
            fault(bad_at.as_bytes()),
            (1, ChainFault::BadAt(_))
        ));
        let no_seq =
            format!("{{\"at\":\"2025-03-01T09:30:00Z\",\"prev_sha256\":\"{GENESIS_SHA256}\"}}\n");
        assert_eq!(fault(no_seq.as_bytes()), (1, ChainFault::MissingSeq));
        let no_prev = "{\"seq\":1,\"at\":\"2025-03-01T09:30:00Z\"}\n";
        assert_eq!(fault(no_prev.as_bytes()), (1, ChainFault::MissingPrevHash));
        let bad_genesis = "{\"seq\":1,\"at\":\"2025-03-01T09:30:00Z\",\"prev_sha256\":\"ab\"}\n";
        assert_eq!(
            fault(bad_genesis.as_bytes()),
            (1, ChainFault::WrongPrevHash { previous: 0 })
        );
        let blank = b"\n";
        assert!(matches!(fault(blank), (1, ChainFault::BadJson(_))));
    }

    #[test]
    fn the_error_names_the_line() {
        let mut lines = hand_built();
        lines.swap(1, 2);
        let e = verify(&join(&lines)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: seq is 3, expected 2: lines before it are missing, or lines were reordered"
        );
    }
}
