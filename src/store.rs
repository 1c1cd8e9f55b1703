//! The data directory: where every artifact of a call lives, and the only
//! code that writes or lists it.
//!
//! ```text
//! {data_dir}/calls/{call_id}/
//!   call.json          the call's summary: in progress from call time zero,
//!                      final (with `ended_at`) once every sink finished
//!   consent.jsonl      the consent audit log, one synced line per event
//!   audio/{stem}.opus  one aligned Ogg Opus track per participant
//!                      ({stem}.{n}.opus when a call id is reused)
//!   transcript.json    segments, words and coverage (with a backend)
//!   transcript.vtt     the same as WebVTT with <v Speaker> tags
//!   meeting.json       a meeting imported as metadata only (no media)
//! ```
//!
//! Each file has one writer: `call.json` is written by the recorder at call
//! time zero and by the call's completion at its end (see
//! [`crate::sinks::Completion`]); `consent.jsonl` and the tracks by the
//! recorder; the transcript by the transcriber; `meeting.json` by the
//! meeting index. They all write through this module, and the HTTP layer
//! reads through it, never through a sink. Call ids are safe path
//! components by construction ([`CallId`]), and track stems are made safe by
//! the conference.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hearken_core::conference::CallSummary;
use hearken_core::ids::CallId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most numbered files (`{stem}.{n}.opus`) tried for one participant.
const MAX_TRACK_FILES: u32 = 1000;

/// The data directory.
#[derive(Debug, Clone)]
pub struct Store {
    data_dir: PathBuf,
}

impl Store {
    /// The store rooted at `data_dir` (created with its `calls/` if missing).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir.join("calls"))?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
        })
    }

    /// The root.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of a call's artifacts.
    pub fn call_dir(&self, call_id: &CallId) -> PathBuf {
        self.data_dir.join("calls").join(call_id.as_str())
    }

    // ---- call.json ----

    /// Writes `call.json` atomically (temp file, sync, rename).
    pub fn write_call_json(&self, summary: &CallSummary) -> io::Result<()> {
        let call_id = CallId::parse(&summary.call_id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_json_atomically(&self.call_dir(&call_id), "call.json", summary)
    }

    /// A call's `call.json`, if there is one.
    pub fn read_call(&self, call_id: &CallId) -> io::Result<Option<CallSummary>> {
        read_json(&self.call_dir(call_id).join("call.json"))
    }

    /// Whether the call has a final `call.json` (it has ended; its id may
    /// not be reused).
    pub fn call_has_ended(&self, call_id: &CallId) -> bool {
        matches!(self.read_call(call_id), Ok(Some(s)) if s.ended_at.is_some())
    }

    /// Every call with a final `call.json`.
    pub fn ended_calls(&self) -> Vec<CallSummary> {
        self.each_call_file("call.json")
            .filter_map(|path| read_json::<CallSummary>(&path).ok().flatten())
            .filter(|s| s.ended_at.is_some())
            .collect()
    }

    // ---- consent.jsonl ----

    /// Opens the call's audit log for appending (creating the directory).
    pub fn open_audit_log(&self, call_id: &CallId) -> io::Result<File> {
        let dir = self.call_dir(call_id);
        fs::create_dir_all(&dir)?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("consent.jsonl"))
    }

    /// The call's audit log, if there is one. A line cut by a crash
    /// mid-write is skipped.
    pub fn read_audit_log(&self, call_id: &CallId) -> io::Result<Option<Vec<serde_json::Value>>> {
        match fs::read_to_string(self.call_dir(call_id).join("consent.jsonl")) {
            Ok(text) => Ok(Some(
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- audio/ ----

    /// Creates a new track file for `stem`, never overwriting a recording:
    /// `{stem}.opus`, else `{stem}.2.opus`, … Returns the file and its name.
    pub fn create_track(&self, call_id: &CallId, stem: &str) -> io::Result<(File, String)> {
        let audio = self.call_dir(call_id).join("audio");
        fs::create_dir_all(&audio)?;
        let mut n = 1;
        loop {
            let name = if n == 1 {
                format!("{stem}.opus")
            } else {
                format!("{stem}.{n}.opus")
            };
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(audio.join(&name))
            {
                Ok(f) => return Ok((f, name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < MAX_TRACK_FILES => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes every recording of the call. Returns whether there were any.
    pub fn remove_audio(&self, call_id: &CallId) -> io::Result<bool> {
        match fs::remove_dir_all(self.call_dir(call_id).join("audio")) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- transcript ----

    /// Writes `transcript.json` and `transcript.vtt`.
    pub fn write_transcript<T: Serialize>(
        &self,
        call_id: &CallId,
        transcript: &T,
        vtt: &str,
    ) -> io::Result<()> {
        let dir = self.call_dir(call_id);
        write_json_atomically(&dir, "transcript.json", transcript)?;
        fs::write(dir.join("transcript.vtt"), vtt)
    }

    /// A call's `transcript.json`, if there is one.
    pub fn read_transcript<T: DeserializeOwned>(&self, call_id: &CallId) -> io::Result<Option<T>> {
        read_json(&self.call_dir(call_id).join("transcript.json"))
    }

    // ---- meeting.json ----

    /// Writes a metadata-only meeting's `meeting.json`.
    pub fn write_meeting<T: Serialize>(&self, call_id: &CallId, meeting: &T) -> io::Result<()> {
        write_json_atomically(&self.call_dir(call_id), "meeting.json", meeting)
    }

    /// Every stored `meeting.json`.
    pub fn meetings<T: DeserializeOwned>(&self) -> Vec<T> {
        self.each_call_file("meeting.json")
            .filter_map(|path| read_json::<T>(&path).ok().flatten())
            .collect()
    }

    /// The path of `name` in every call directory.
    fn each_call_file(&self, name: &'static str) -> impl Iterator<Item = PathBuf> {
        fs::read_dir(self.data_dir.join("calls"))
            .into_iter()
            .flatten()
            .flatten()
            .map(move |entry| entry.path().join(name))
    }
}

fn write_json_atomically<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, ended: bool) -> CallSummary {
        CallSummary {
            call_id: id.to_owned(),
            started_at: None,
            ended_at: ended.then(chrono::Utc::now),
            end_reason: None,
            active_sessions: 0,
            consent_mode: None,
            participants: Vec::new(),
            failed_sessions: Vec::new(),
        }
    }

    #[test]
    fn call_json_round_trips_and_only_final_calls_are_ended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = CallId::parse("a").unwrap();
        assert!(store.read_call(&a).unwrap().is_none());
        store.write_call_json(&summary("a", false)).unwrap();
        assert!(!store.call_has_ended(&a));
        store.write_call_json(&summary("a", true)).unwrap();
        assert!(store.call_has_ended(&a));
        store.write_call_json(&summary("b", false)).unwrap();
        let ended: Vec<String> = store.ended_calls().into_iter().map(|s| s.call_id).collect();
        assert_eq!(ended, ["a"]);
        // No temp file is left behind.
        assert!(!store.call_dir(&a).join(".call.json.tmp").exists());
    }

    #[test]
    fn tracks_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (_, first) = store.create_track(&c, "alice").unwrap();
        let (_, second) = store.create_track(&c, "alice").unwrap();
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("alice.opus", "alice.2.opus")
        );
        assert!(store.remove_audio(&c).unwrap());
        assert!(!store.remove_audio(&c).unwrap());
    }

    #[test]
    fn a_line_cut_by_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        assert!(store.read_audit_log(&c).unwrap().is_none());
        let mut f = store.open_audit_log(&c).unwrap();
        f.write_all(b"{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"eve")
            .unwrap();
        let events = store.read_audit_log(&c).unwrap().unwrap();
        assert_eq!(events.len(), 2);
    }
}
