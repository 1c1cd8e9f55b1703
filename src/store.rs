//! The data directory: where every artifact of a call lives, and the only
//! code that writes or lists it.
//!
//! ```text
//! {data_dir}/calls/{call_id}/
//!   call.json          the call's summary: in progress from call time zero,
//!                      final (with `ended_at`) once every sink finished
//!   consent.jsonl      the consent audit log, one synced line per event,
//!                      hash-chained (see [`hearken_core::audit`])
//!   audio/{stem}.opus  one aligned Ogg Opus track per participant
//!                      ({stem}.{n}.opus when a call id is reused)
//!   consent-evidence/{stem}.opus
//!                      a participant's spoken yes to the consent request
//!                      (verbal consent only; never a no)
//!   transcript.json    segments, words and coverage (with a backend)
//!   transcript.vtt     the same as WebVTT with <v Speaker> tags
//!   meeting.json       a meeting imported as metadata only (no media)
//!   audio/mix.opus     every track mixed at its place, made after the call
//!   insights.json      talk time, turns, trackers, key moments (after the call)
//!   shares.jsonl       share links: created, revoked, every use
//!   shares/{id}.opus   the part of the mix a share of a time range serves
//! {data_dir}/share-secret
//!                      the key share links are signed with (mode 0600),
//!                      unless `shares.secret` is set
//! ```
//!
//! Each file has one writer: `call.json` is written by the recorder at call
//! time zero and by the call's completion at its end (see
//! [`crate::sinks::Completion`]); `consent.jsonl`, the tracks and the
//! evidence clips by the recorder; the transcript by the transcriber; `meeting.json` by the
//! meeting index; the mix, `insights.json` and the post-call status in
//! `call.json` by the post-call worker (`src/postcall.rs`); the share files
//! by the share handlers. They all write through this module, and the HTTP layer
//! reads through it, never through a sink. Call ids are safe path
//! components by construction ([`CallId`]), and track stems are made safe by
//! the conference.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use hearken_core::audit::{self, ChainError, VerifiedLog};
use hearken_core::conference::{CallSummary, SegmentSummary};
use hearken_core::ids::CallId;
use hearken_core::ogg;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

/// Most numbered files (`{stem}.{n}.opus`) tried for one participant.
const MAX_TRACK_FILES: u32 = 1000;

/// The mix's name in `audio/`: never given to a participant's track.
pub const MIX_FILE: &str = "mix.opus";

/// What [`Store::repair_track`] did to a recording a crash interrupted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackRepair {
    /// Seconds of audio its whole pages hold.
    pub seconds: f64,
    /// Bytes of a page cut short that were removed from its end.
    pub cut_bytes: u64,
    /// Whether its stream was ended here (it was still open).
    pub ended: bool,
}

/// Who hears of what the store writes, after it is on disk: the fleet's
/// index and events (`src/cluster/`). Called on the writer's thread (a
/// recorder, the transcriber), so an implementation only queues and never
/// waits.
pub trait StoreTap: Send + Sync {
    /// A call's `call.json` was written (in progress, or final with
    /// `ended_at`).
    fn call_written(&self, summary: &CallSummary);
    /// A line was appended to a call's audit log and synced.
    fn audit_appended(&self, call_id: &CallId, line: &str);
    /// A call's transcript was written (`transcript` is what
    /// `transcript.json` holds).
    fn transcript_written(&self, call_id: &CallId, transcript: &serde_json::Value);
    /// A metadata-only meeting's `meeting.json` was written.
    fn meeting_written(&self, call_id: &CallId, meeting: &serde_json::Value);
    /// A recording file was created (`file` relative to the call
    /// directory: `audio/alice.opus`).
    fn file_created(&self, call_id: &CallId, file: &str);
    /// An ended call's `insights.json` was written (`insights` is what it
    /// holds).
    fn insights_written(&self, call_id: &CallId, insights: &serde_json::Value);
}

/// Several taps, told in order.
pub struct Taps(pub Vec<std::sync::Arc<dyn StoreTap>>);

impl StoreTap for Taps {
    fn call_written(&self, summary: &CallSummary) {
        self.0.iter().for_each(|t| t.call_written(summary));
    }
    fn audit_appended(&self, call_id: &CallId, line: &str) {
        self.0.iter().for_each(|t| t.audit_appended(call_id, line));
    }
    fn transcript_written(&self, call_id: &CallId, transcript: &serde_json::Value) {
        self.0
            .iter()
            .for_each(|t| t.transcript_written(call_id, transcript));
    }
    fn meeting_written(&self, call_id: &CallId, meeting: &serde_json::Value) {
        self.0
            .iter()
            .for_each(|t| t.meeting_written(call_id, meeting));
    }
    fn file_created(&self, call_id: &CallId, file: &str) {
        self.0.iter().for_each(|t| t.file_created(call_id, file));
    }
    fn insights_written(&self, call_id: &CallId, insights: &serde_json::Value) {
        self.0
            .iter()
            .for_each(|t| t.insights_written(call_id, insights));
    }
}

/// The data directory.
#[derive(Clone)]
pub struct Store {
    data_dir: PathBuf,
    /// This node's id in a fleet, written into every `call.json` (which
    /// node holds the call's files).
    node_id: Option<std::sync::Arc<str>>,
    tap: Option<std::sync::Arc<dyn StoreTap>>,
    /// Calls that went on here after the node that carried them was lost:
    /// the segments recorded before ([`Store::prepare_resume`]).
    resumed:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<CallId, Vec<SegmentSummary>>>>,
    /// Whether the disk is full, and the room kept for when it is.
    space: std::sync::Arc<Space>,
    #[cfg(any(test, feature = "fault-injection"))]
    faults: std::sync::Arc<Faults>,
}

/// Bytes kept in `.reserve` at the root of the data directory. When a
/// write finds the disk full, the reserve is given up, so what must still
/// be written (each call's final `call.json` with the error, its transcript,
/// audit lines) has room; no more audio is written anywhere until space is
/// back.
pub const RESERVE_BYTES: u64 = 4 << 20;
/// Free bytes at which a full data directory takes calls again (the
/// reserve is made again first).
const SPACE_BACK_BYTES: u64 = 4 * RESERVE_BYTES;
/// How often a full data directory looks for space again.
const SPACE_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The data directory's fullness, shared by the store's clones.
#[derive(Debug, Default)]
struct Space {
    full: std::sync::atomic::AtomicBool,
    /// Set while full: when free space was last looked at.
    checked: std::sync::Mutex<Option<std::time::Instant>>,
    /// `hearken_store_disk_full`, when metrics watch this store.
    gauge: std::sync::OnceLock<prometheus::IntGauge>,
}

/// Whether an I/O error means the disk (or the quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Test hooks: failures injected where the store writes (see
/// [`Store::fail_audit_appends_after`]).
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Debug)]
struct Faults {
    /// Audit appends that still succeed before every later one fails;
    /// `u64::MAX`: none fails.
    audit_appends_left: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "fault-injection"))]
impl Default for Faults {
    fn default() -> Self {
        Self {
            audit_appends_left: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

/// A call's audit log as read back: the events, and whether the chain
/// holds.
#[derive(Debug)]
pub struct AuditLogRead {
    /// Every line that is a JSON value, in file order (a line that is not
    /// is left out here and named by `chain`).
    pub events: Vec<serde_json::Value>,
    /// The log verified as a whole, or its first fault.
    pub chain: Result<VerifiedLog, ChainError>,
}

impl AuditLogRead {
    /// A log read from its lines (each without its newline), as the fleet
    /// index mirrors them; the chain is checked over the same bytes the
    /// file holds.
    pub fn from_lines(lines: &[String]) -> Self {
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        Self {
            events: lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            chain: audit::verify(&bytes),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.data_dir)
            .field("node_id", &self.node_id)
            .field("tapped", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The store rooted at `data_dir` (created with its `calls/` if missing).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir.join("calls"))?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            node_id: None,
            tap: None,
            resumed: Default::default(),
            space: Default::default(),
            #[cfg(any(test, feature = "fault-injection"))]
            faults: Default::default(),
        }
        .with_reserve())
    }

    /// Makes the reserve if it is missing. A disk too full for it is full:
    /// said in the log, and calls are refused until space is back.
    fn with_reserve(self) -> Self {
        if let Err(e) = self.make_reserve() {
            if is_disk_full(&e) {
                self.disk_full(&e);
            } else {
                warn!(error = %e, path = %self.reserve_path().display(), "cannot keep a reserve in the data directory");
            }
        }
        self
    }

    fn reserve_path(&self) -> PathBuf {
        self.data_dir.join(".reserve")
    }

    fn make_reserve(&self) -> io::Result<()> {
        let path = self.reserve_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            return Ok(());
        }
        let written = (|| {
            let mut file = File::create(&path)?;
            // Written, not only sized: a sparse file would hold no room.
            let block = vec![0u8; 64 << 10];
            for _ in 0..RESERVE_BYTES / block.len() as u64 {
                file.write_all(&block)?;
            }
            file.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&path);
        }
        written
    }

    /// `gauge` (`hearken_store_disk_full`) follows whether the data
    /// directory is full.
    pub fn watched_by(self, gauge: prometheus::IntGauge) -> Self {
        gauge.set(i64::from(self.is_full()));
        let _ = self.space.gauge.set(gauge);
        self
    }

    /// Whether the data directory is full: set by the first write that
    /// found no space, cleared by [`Self::has_space`].
    pub fn is_full(&self) -> bool {
        self.space.full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the store a write failed with `e`; `true` when that is a full
    /// disk. The first time, the reserve is given up (see
    /// [`RESERVE_BYTES`]) and the error goes to the log.
    pub fn write_failed(&self, e: &io::Error) -> bool {
        let full = is_disk_full(e);
        if full {
            self.disk_full(e);
        }
        full
    }

    fn disk_full(&self, e: &io::Error) {
        use std::sync::atomic::Ordering;
        if self.space.full.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.space.checked.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        if let Some(gauge) = self.space.gauge.get() {
            gauge.set(1);
        }
        let released = fs::remove_file(self.reserve_path()).is_ok();
        error!(
            data_dir = %self.data_dir.display(),
            error = %e,
            reserve_released = released,
            "the data directory is full: capture stops on every call and new calls are refused until space is freed"
        );
    }

    /// Whether new calls may be taken: the data directory is not full, or
    /// it was and space is back (looked at once a second at most: at least
    /// [`SPACE_BACK_BYTES`] free, and the reserve made again).
    pub fn has_space(&self) -> bool {
        use std::sync::atomic::Ordering;
        if !self.is_full() {
            return true;
        }
        {
            let mut checked = self.space.checked.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if checked.is_some_and(|at| now.duration_since(at) < SPACE_RECHECK) {
                return false;
            }
            *checked = Some(now);
        }
        let free = rustix::fs::statvfs(&self.data_dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .unwrap_or(0);
        if free < SPACE_BACK_BYTES || self.make_reserve().is_err() {
            return false;
        }
        self.space.full.store(false, Ordering::SeqCst);
        if let Some(gauge) = self.space.gauge.get() {
            gauge.set(0);
        }
        info!(data_dir = %self.data_dir.display(), free_bytes = free, "the data directory has space again: new calls are taken");
        true
    }

    /// Test hook: after `ok` more audit lines were appended through this
    /// store (and its clones), every later append fails as a full disk
    /// would, with nothing written; `None` lets every append through again.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn fail_audit_appends_after(&self, ok: Option<u64>) {
        let left = match ok {
            // u64::MAX means "never".
            Some(n) => n.min(u64::MAX - 1),
            None => u64::MAX,
        };
        self.faults
            .audit_appends_left
            .store(left, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the test hook says this append fails (and counts it).
    #[cfg(any(test, feature = "fault-injection"))]
    fn injected_append_failure(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let left = &self.faults.audit_appends_left;
        left.fetch_update(SeqCst, SeqCst, |n| match n {
            u64::MAX | 0 => None,
            n => Some(n - 1),
        })
        .is_err_and(|n| n == 0)
    }

    /// This store as the files of node `node_id` of a fleet, telling `tap`
    /// what it writes.
    pub fn in_fleet(mut self, node_id: &str, tap: Option<std::sync::Arc<dyn StoreTap>>) -> Self {
        self.node_id = Some(node_id.into());
        if tap.is_some() {
            self.tap = tap;
        }
        self
    }

    /// This store, telling `tap` what it writes (the fleet's index and
    /// events, post-call work).
    pub fn tapped(mut self, tap: std::sync::Arc<dyn StoreTap>) -> Self {
        self.tap = Some(tap);
        self
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
        let prior = self.resumed_segments(&call_id, summary.ended_at.is_some());
        let stamped;
        let summary = match (&self.node_id, prior) {
            (None, _) => summary,
            (Some(node), prior) => {
                let mut s = summary.clone();
                s.node = Some(node.to_string());
                if let Some(mut segments) = prior {
                    segments.push(SegmentSummary {
                        node: node.to_string(),
                        files: s
                            .participants
                            .iter()
                            .map(|p| p.file.clone())
                            .filter(|f| !f.is_empty())
                            .collect(),
                    });
                    s.segments = segments;
                }
                stamped = s;
                &stamped
            }
        };
        write_json_atomically(&self.call_dir(&call_id), "call.json", summary).inspect_err(|e| {
            self.write_failed(e);
        })?;
        if let Some(tap) = &self.tap {
            tap.call_written(summary);
        }
        Ok(())
    }

    /// The segments recorded elsewhere before a resumed call came here
    /// (forgotten once `ended`).
    fn resumed_segments(&self, call_id: &CallId, ended: bool) -> Option<Vec<SegmentSummary>> {
        let mut resumed = self.resumed.lock().unwrap_or_else(|p| p.into_inner());
        if ended {
            resumed.remove(call_id)
        } else {
            resumed.get(call_id).cloned()
        }
    }

    /// Makes this node ready to go on with a call another node began and
    /// was lost with: its audit log is written here as the fleet index
    /// holds it (unless this node has one already), so the hash chain goes
    /// on from the last line the lost node wrote; the files it recorded are
    /// remembered, so this node's tracks are the next segment
    /// (`{stem}.2.opus`, …) and `call.json` lists them all in order.
    pub fn prepare_resume(
        &self,
        call_id: &CallId,
        audit_lines: &[String],
        prior: Vec<SegmentSummary>,
    ) -> io::Result<()> {
        let dir = self.call_dir(call_id);
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.data_dir.join("calls"))?;
        }
        let path = dir.join("consent.jsonl");
        if !path.exists() && !audit_lines.is_empty() {
            let mut bytes = Vec::new();
            for line in audit_lines {
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
            }
            // Two sessions of the call reconnecting at once may both get
            // here: the first writes the log, the second finds it.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(&bytes)?;
                    file.sync_all()?;
                    sync_dir(&dir)?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        self.resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call_id.clone(), prior);
        Ok(())
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

    /// Opens the call's audit log for appending, creating it (and the
    /// call's directory) if needed, and returns what it already holds (a
    /// call id used again after an attempt that never started). Creating
    /// either syncs the directory that holds it, so the new entry survives a
    /// crash as the synced lines do.
    pub fn open_audit_log(&self, call_id: &CallId) -> io::Result<(File, Vec<u8>)> {
        let dir = self.call_dir(call_id);
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(&self.data_dir.join("calls"))?;
        }
        let path = dir.join("consent.jsonl");
        let existed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => true,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file", path.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let mut existing = Vec::new();
        if existed {
            file.read_to_end(&mut existing)?;
        } else {
            sync_dir(&dir)?;
        }
        Ok((file, existing))
    }

    /// Appends `line` and a newline to an audit log opened with
    /// [`Self::open_audit_log`], and syncs it. When that fails, the file is
    /// cut back to its length before (best effort), so no partial line is
    /// left for the next reader.
    pub fn append_audit_line(
        &self,
        call_id: &CallId,
        file: &mut File,
        line: &str,
    ) -> io::Result<()> {
        let before = file.metadata()?.len();
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        #[cfg(any(test, feature = "fault-injection"))]
        if self.injected_append_failure() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected by a test)",
            ));
        }
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        match &written {
            Err(e) => {
                let _ = file.set_len(before).and_then(|()| file.sync_data());
                self.write_failed(e);
            }
            Ok(()) => {
                if let Some(tap) = &self.tap {
                    tap.audit_appended(call_id, line);
                }
            }
        }
        written
    }

    /// The call's audit log, if there is one: its events and whether its
    /// hash chain holds (a line that is not JSON, a gap, an edit or a line
    /// cut by a crash is named there, never skipped silently).
    pub fn read_audit_log(&self, call_id: &CallId) -> io::Result<Option<AuditLogRead>> {
        match fs::read(self.call_dir(call_id).join("consent.jsonl")) {
            Ok(bytes) => Ok(Some(AuditLogRead {
                events: bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| serde_json::from_slice(l).ok())
                    .collect(),
                chain: audit::verify(&bytes),
            })),
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
        // A resumed call's earlier segments are on another node's disk:
        // their names are taken all the same.
        let taken: Vec<String> = self
            .resumed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(call_id)
            .map(|segments| {
                segments
                    .iter()
                    .flat_map(|s| s.files.iter())
                    .filter_map(|f| f.strip_prefix("audio/").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let taken = [taken, vec![MIX_FILE.to_owned()]].concat();
        let (file, name) = create_numbered(&audio, stem, &taken).inspect_err(|e| {
            self.write_failed(e);
        })?;
        if let Some(tap) = &self.tap {
            tap.file_created(call_id, &format!("audio/{name}"));
        }
        Ok((file, name))
    }

    // ---- consent-evidence/ ----

    /// Writes an evidence clip as `consent-evidence/{stem}.opus` (or
    /// `{stem}.2.opus`, … never overwriting one), syncs it and the
    /// directory. Returns its path relative to the call directory.
    pub fn write_evidence(&self, call_id: &CallId, stem: &str, bytes: &[u8]) -> io::Result<String> {
        let call_dir = self.call_dir(call_id);
        let dir = call_dir.join("consent-evidence");
        let created = !dir.exists();
        fs::create_dir_all(&dir)?;
        if created {
            sync_dir(&call_dir)?;
        }
        let (mut file, name) = create_numbered(&dir, stem, &[])?;
        file.write_all(bytes)?;
        file.sync_all()?;
        sync_dir(&dir)?;
        Ok(format!("consent-evidence/{name}"))
    }

    /// Deletes every recording of the call and syncs the call's directory,
    /// so the deletion survives a crash. Returns whether there were any.
    pub fn remove_audio(&self, call_id: &CallId) -> io::Result<bool> {
        let dir = self.call_dir(call_id);
        match fs::remove_dir_all(dir.join("audio")) {
            Ok(()) => {
                sync_dir(&dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes one track file (`name` as [`Self::create_track`] returned
    /// it) and syncs `audio/`. Returns whether it was there.
    pub fn remove_track(&self, call_id: &CallId, name: &str) -> io::Result<bool> {
        let audio = self.call_dir(call_id).join("audio");
        match fs::remove_file(audio.join(name)) {
            Ok(()) => {
                sync_dir(&audio)?;
                Ok(true)
            }
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
        fs::write(dir.join("transcript.vtt"), vtt)?;
        if let Some(tap) = &self.tap
            && let Ok(value) = serde_json::to_value(transcript)
        {
            tap.transcript_written(call_id, &value);
        }
        Ok(())
    }

    /// A call's `transcript.json`, if there is one.
    pub fn read_transcript<T: DeserializeOwned>(&self, call_id: &CallId) -> io::Result<Option<T>> {
        read_json(&self.call_dir(call_id).join("transcript.json"))
    }

    // ---- after the call: mix.opus, insights.json ----

    /// Rewrites an ended call's `call.json` with where its post-call work
    /// stands. Not told to the taps: the call's end was, and a status is
    /// not an event.
    pub fn write_postcall_status(
        &self,
        call_id: &CallId,
        status: &hearken_core::conference::PostCallSummary,
    ) -> io::Result<()> {
        let Some(mut summary) = self.read_call(call_id)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("call {call_id} has no call.json"),
            ));
        };
        summary.postcall = Some(status.clone());
        write_json_atomically(&self.call_dir(call_id), "call.json", &summary)
    }

    /// Where a call's track or mix `name` is (`alice.opus`, `mix.opus`), if
    /// `name` is a plain file name of `audio/` (no path, no hidden file).
    pub fn audio_path(&self, call_id: &CallId, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.ends_with(".opus")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        plain.then(|| self.call_dir(call_id).join("audio").join(name))
    }

    /// Writes `audio/mix.opus` through `write` into a temporary file, syncs
    /// it and renames it into place, so a reader sees a whole mix or none.
    pub fn write_mix<T, E>(
        &self,
        call_id: &CallId,
        write: impl FnOnce(&mut io::BufWriter<File>) -> Result<T, E>,
    ) -> io::Result<Result<T, E>> {
        let audio = self.call_dir(call_id).join("audio");
        fs::create_dir_all(&audio)?;
        let tmp = audio.join(format!(".{MIX_FILE}.tmp"));
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let made = write(&mut out);
        if made.is_err() {
            drop(out);
            let _ = fs::remove_file(&tmp);
            return Ok(made);
        }
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()?;
        fs::rename(&tmp, audio.join(MIX_FILE))?;
        sync_dir(&audio)?;
        Ok(made)
    }

    /// Writes `insights.json`.
    pub fn write_insights<T: Serialize>(&self, call_id: &CallId, insights: &T) -> io::Result<()> {
        write_json_atomically(&self.call_dir(call_id), "insights.json", insights)?;
        if let Some(tap) = &self.tap
            && let Ok(value) = serde_json::to_value(insights)
        {
            tap.insights_written(call_id, &value);
        }
        Ok(())
    }

    /// A call's `insights.json`, if there is one.
    pub fn read_insights<T: DeserializeOwned>(&self, call_id: &CallId) -> io::Result<Option<T>> {
        read_json(&self.call_dir(call_id).join("insights.json"))
    }

    // ---- shares ----

    /// The key share links are signed with: `secret` when given, else the
    /// one kept in `{data_dir}/share-secret`, made (32 random bytes, mode
    /// 0600) the first time.
    pub fn share_secret(&self, configured: &str) -> io::Result<Vec<u8>> {
        if !configured.is_empty() {
            return Ok(configured.as_bytes().to_vec());
        }
        let path = self.data_dir.join("share-secret");
        match fs::read_to_string(&path) {
            Ok(text) => {
                return hex::decode(text.trim()).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not hex: {e}", path.display()),
                    )
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let secret: [u8; 32] = rand::random();
        let tmp = self.data_dir.join(".share-secret.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(hex::encode(secret).as_bytes())?;
            f.sync_all()?;
        }
        // Two servers on one data directory starting at once: the first
        // rename wins and both read what is there.
        if fs::hard_link(&tmp, &path).is_ok() {
            sync_dir(&self.data_dir)?;
        }
        let _ = fs::remove_file(&tmp);
        let text = fs::read_to_string(&path)?;
        hex::decode(text.trim()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Appends one line to a call's `shares.jsonl` (created, revoked, used)
    /// and syncs it. Lines are written whole by one `write` on a file
    /// opened for appending, so concurrent handlers never interleave.
    pub fn append_share_line(&self, call_id: &CallId, line: &serde_json::Value) -> io::Result<()> {
        let dir = self.call_dir(call_id);
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shares.jsonl"))?;
        f.write_all(&bytes)?;
        f.sync_data()
    }

    /// Every line of a call's `shares.jsonl` that is JSON, in order.
    pub fn read_share_lines(&self, call_id: &CallId) -> io::Result<Vec<serde_json::Value>> {
        match fs::read(self.call_dir(call_id).join("shares.jsonl")) {
            Ok(bytes) => Ok(bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The part of the mix a share of a time range serves
    /// (`shares/{share_id}.opus`), made by `make` the first time it is
    /// asked for. `share_id` must be a plain id (hex).
    pub fn share_cut(
        &self,
        call_id: &CallId,
        share_id: &str,
        make: impl FnOnce(&[u8], &mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        if share_id.is_empty() || !share_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad share id"));
        }
        let dir = self.call_dir(call_id).join("shares");
        let path = dir.join(format!("{share_id}.opus"));
        if path.is_file() {
            return Ok(path);
        }
        let mix = fs::read(self.call_dir(call_id).join("audio").join(MIX_FILE))?;
        let mut cut = Vec::new();
        make(&mix, &mut cut)?;
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{share_id}.{:016x}.tmp", rand::random::<u64>()));
        fs::write(&tmp, &cut)?;
        fs::rename(&tmp, &path)?;
        Ok(path)
    }

    // ---- meeting.json ----

    /// Writes a metadata-only meeting's `meeting.json`.
    pub fn write_meeting<T: Serialize>(&self, call_id: &CallId, meeting: &T) -> io::Result<()> {
        write_json_atomically(&self.call_dir(call_id), "meeting.json", meeting)?;
        if let Some(tap) = &self.tap
            && let Ok(value) = serde_json::to_value(meeting)
        {
            tap.meeting_written(call_id, &value);
        }
        Ok(())
    }

    // ---- crash recovery ----

    /// Calls a crash left in progress: a `call.json` without an end, or
    /// (a crash before the first was written) a call directory with an
    /// audit log or recordings and no `call.json`. A directory holding only
    /// a scheduled `meeting.json` is not a call yet.
    pub fn interrupted_calls(&self) -> Vec<CallId> {
        let Ok(entries) = fs::read_dir(self.data_dir.join("calls")) else {
            return Vec::new();
        };
        let mut calls: Vec<CallId> = entries
            .flatten()
            .filter_map(|entry| {
                let dir = entry.path();
                let call_id = CallId::parse(entry.file_name().to_str()?).ok()?;
                let interrupted = match read_json::<CallSummary>(&dir.join("call.json")) {
                    Ok(Some(summary)) => summary.ended_at.is_none(),
                    Ok(None) => dir.join("consent.jsonl").exists() || dir.join("audio").is_dir(),
                    // Written atomically: unreadable is not a crash's doing,
                    // and it is left for a person to look at.
                    Err(_) => false,
                };
                interrupted.then_some(call_id)
            })
            .collect();
        calls.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        calls
    }

    /// The recordings of a call (`audio/*.opus`, not the mix), by name.
    pub fn track_names(&self, call_id: &CallId) -> io::Result<Vec<String>> {
        let dir = self.call_dir(call_id).join("audio");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".opus") && n != MIX_FILE && !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Cuts a recording a crash left in the middle of an append back to
    /// its last whole page and ends its stream the way a closed recording
    /// ends (an empty EOS page), then syncs it. A file the crash left
    /// without its headers holds no audio: it becomes `empty`, a whole
    /// stream of no audio. Returns what it holds.
    pub fn repair_track(
        &self,
        call_id: &CallId,
        name: &str,
        empty: &[u8],
    ) -> io::Result<TrackRepair> {
        let path = self.call_dir(call_id).join("audio").join(name);
        let bytes = fs::read(&path)?;
        let scan = ogg::scan_pages(&bytes);
        let mut file = OpenOptions::new().write(true).open(&path)?;
        let mut repair = TrackRepair {
            seconds: scan.opus_seconds(),
            cut_bytes: (bytes.len() - scan.whole_len) as u64,
            ended: false,
        };
        if scan.pages < 2 {
            // Not even the two header pages: nothing was recorded.
            file.set_len(0)?;
            file.write_all(empty)?;
            repair.ended = true;
        } else {
            if repair.cut_bytes > 0 {
                file.set_len(scan.whole_len as u64)?;
            }
            if let Some(page) = ogg::end_of_stream_page(&scan) {
                file.seek(io::SeekFrom::End(0))?;
                file.write_all(&page)?;
                repair.ended = true;
            }
        }
        if repair.cut_bytes > 0 || repair.ended {
            file.sync_all()?;
        }
        Ok(repair)
    }

    /// Cuts a last line a crash tore from `consent.jsonl`: its append
    /// never finished, so it was never synced and the gate never acted on
    /// it. The torn bytes are kept beside it in `consent.jsonl.torn`.
    /// Returns the log as it stands and how many bytes were cut.
    pub fn repair_audit_log(&self, call_id: &CallId) -> io::Result<Option<(Vec<u8>, usize)>> {
        let dir = self.call_dir(call_id);
        let path = dir.join("consent.jsonl");
        let mut bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let torn = bytes.len() - whole;
        if torn > 0 {
            // Appended: a second crash's torn line joins the first.
            let mut kept = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("consent.jsonl.torn"))?;
            kept.write_all(&bytes[whole..])?;
            kept.write_all(b"\n")?;
            kept.sync_all()?;
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(whole as u64)?;
            file.sync_all()?;
            bytes.truncate(whole);
        }
        Ok(Some((bytes, torn)))
    }

    /// When anything in the call's directory last changed: the closest a
    /// restart can tell to when a crash stopped the call.
    pub fn last_modified(&self, call_id: &CallId) -> Option<std::time::SystemTime> {
        let dir = self.call_dir(call_id);
        let mut latest = fs::metadata(&dir).and_then(|m| m.modified()).ok();
        for sub in [dir.clone(), dir.join("audio"), dir.join("consent-evidence")] {
            for entry in fs::read_dir(sub).into_iter().flatten().flatten() {
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    latest = latest.max(Some(modified));
                }
            }
        }
        latest
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

/// Creates `{stem}.opus` in `dir`, or `{stem}.2.opus`, … when it exists:
/// never overwrites a file. Returns the file and its name.
fn create_numbered(dir: &Path, stem: &str, taken: &[String]) -> io::Result<(File, String)> {
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{stem}.opus")
        } else {
            format!("{stem}.{n}.opus")
        };
        if taken.contains(&name) && n < MAX_TRACK_FILES {
            n += 1;
            continue;
        }
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
        {
            Ok(f) => return Ok((f, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < MAX_TRACK_FILES => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Syncs a directory, so entries created, renamed or removed in it are
/// durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
            consent_log: None,
            capture_error: None,
            announcement_track: None,
            node: None,
            segments: Vec::new(),
            postcall: None,
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
    fn a_line_cut_by_a_crash_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        assert!(store.read_audit_log(&c).unwrap().is_none());
        let (mut f, existing) = store.open_audit_log(&c).unwrap();
        assert!(existing.is_empty());
        let mut chain = hearken_core::audit::AuditChain::new();
        let at = chrono::DateTime::UNIX_EPOCH;
        for event in ["a", "b"] {
            let mut fields = serde_json::Map::new();
            fields.insert("event".into(), event.into());
            let line = chain.append(at, &fields).unwrap();
            store.append_audit_line(&c, &mut f, &line.text).unwrap();
        }
        f.write_all(b"{\"seq\":3,\"eve").unwrap();
        let log = store.read_audit_log(&c).unwrap().unwrap();
        assert_eq!(log.events.len(), 2);
        let e = log.chain.unwrap_err();
        assert_eq!(
            (e.line, e.fault),
            (3, hearken_core::audit::ChainFault::Torn)
        );
        // Reopening hands back what is there, to resume from.
        let (_, existing) = store.open_audit_log(&c).unwrap();
        assert!(existing.ends_with(b"{\"seq\":3,\"eve"));
    }

    #[test]
    fn a_recording_torn_before_its_headers_becomes_an_empty_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (mut f, name) = store.create_track(&c, "alice").unwrap();
        // Half an OpusHead page: all a kill right after creating it leaves.
        f.write_all(b"OggS\0\x02\0\0").unwrap();
        let empty = {
            let mut w = hearken_core::track::TrackWriter::new(7, 312);
            w.finish();
            w.poll_output()
        };
        let repair = store.repair_track(&c, &name, &empty).unwrap();
        assert_eq!(
            (repair.seconds, repair.cut_bytes, repair.ended),
            (0.0, 8, true)
        );
        let bytes = fs::read(store.call_dir(&c).join("audio").join(&name)).unwrap();
        assert_eq!(bytes, empty);
        let scan = ogg::scan_pages(&bytes);
        assert!(scan.eos && scan.whole_len == bytes.len());
        // Repaired once, nothing more to do.
        let again = store.repair_track(&c, &name, &empty).unwrap();
        assert_eq!((again.cut_bytes, again.ended), (0, false));
    }

    #[test]
    fn a_torn_audit_line_is_cut_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (mut f, _) = store.open_audit_log(&c).unwrap();
        let mut chain = hearken_core::audit::AuditChain::new();
        let mut fields = serde_json::Map::new();
        fields.insert("event".into(), "a".into());
        let line = chain.append(chrono::DateTime::UNIX_EPOCH, &fields).unwrap();
        store.append_audit_line(&c, &mut f, &line.text).unwrap();
        f.write_all(b"{\"seq\":2,\"ev").unwrap();
        let (log, cut) = store.repair_audit_log(&c).unwrap().unwrap();
        assert_eq!(cut, 12);
        assert_eq!(audit::verify(&log).unwrap().lines, 1);
        let kept = fs::read(store.call_dir(&c).join("consent.jsonl.torn")).unwrap();
        assert_eq!(kept, b"{\"seq\":2,\"ev\n");
        assert_eq!(
            fs::read(store.call_dir(&c).join("consent.jsonl")).unwrap(),
            log
        );
    }

    #[test]
    fn a_failed_append_leaves_no_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (mut f, _) = store.open_audit_log(&c).unwrap();
        store.append_audit_line(&c, &mut f, "{\"one\":1}").unwrap();
        store.fail_audit_appends_after(Some(1));
        store.append_audit_line(&c, &mut f, "{\"two\":2}").unwrap();
        let e = store
            .append_audit_line(&c, &mut f, "{\"three\":3}")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(store.append_audit_line(&c, &mut f, "{\"four\":4}").is_err());
        store.fail_audit_appends_after(None);
        store.append_audit_line(&c, &mut f, "{\"five\":5}").unwrap();
        let text = fs::read_to_string(store.call_dir(&c).join("consent.jsonl")).unwrap();
        assert_eq!(text, "{\"one\":1}\n{\"two\":2}\n{\"five\":5}\n");
    }

    #[test]
    fn an_audit_log_that_is_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        fs::create_dir_all(store.call_dir(&c).join("consent.jsonl")).unwrap();
        let e = store.open_audit_log(&c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_share_secret_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.share_secret("").unwrap();
        assert_eq!(first.len(), 32);
        let mode = fs::metadata(dir.path().join("share-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the server's user reads it");
        assert_eq!(store.share_secret("").unwrap(), first, "kept across starts");
        let configured = "a secret of at least thirty-two characters";
        assert_eq!(
            store.share_secret(configured).unwrap(),
            configured.as_bytes()
        );
    }

    #[test]
    fn audio_paths_are_plain_names_of_audio() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        assert_eq!(
            store.audio_path(&c, "alice.2.opus"),
            Some(store.call_dir(&c).join("audio/alice.2.opus"))
        );
        for bad in [
            "../consent.jsonl",
            "../../x.opus",
            "a/b.opus",
            ".mix.opus.tmp",
            "alice.ogg",
            "",
            "%2e%2e.opus",
        ] {
            assert_eq!(store.audio_path(&c, bad), None, "{bad}");
        }
    }

    #[test]
    fn no_track_is_named_like_the_mix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (_, name) = store.create_track(&c, "mix").unwrap();
        assert_eq!(name, "mix.2.opus");
    }

    #[test]
    fn a_mix_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let failed: Result<(), &str> = store
            .write_mix(&c, |out| {
                out.write_all(b"half").unwrap();
                Err("encoder failed")
            })
            .unwrap();
        assert!(failed.is_err());
        let audio = store.call_dir(&c).join("audio");
        assert!(!audio.join(MIX_FILE).exists());
        assert_eq!(
            fs::read_dir(&audio).unwrap().count(),
            0,
            "no temp file left"
        );
        let made: Result<(), &str> = store
            .write_mix(&c, |out| {
                out.write_all(b"OggS").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(made.is_ok());
        assert_eq!(fs::read(audio.join(MIX_FILE)).unwrap(), b"OggS");
    }

    #[test]
    fn one_track_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = CallId::parse("c").unwrap();
        let (_, alice) = store.create_track(&c, "alice").unwrap();
        let (_, bob) = store.create_track(&c, "bob").unwrap();
        assert!(store.remove_track(&c, &alice).unwrap());
        assert!(!store.remove_track(&c, &alice).unwrap());
        let audio = store.call_dir(&c).join("audio");
        assert!(!audio.join(&alice).exists());
        assert!(audio.join(&bob).exists());
        // The name is free again for a fresh track.
        let (_, again) = store.create_track(&c, "alice").unwrap();
        assert_eq!(again, "alice.opus");
    }
}
