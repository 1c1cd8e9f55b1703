//! Crash recovery at start. A server that was killed (`kill -9`, the OOM
//! killer, a lost machine) leaves its calls in progress on disk: a
//! `call.json` without an end, a recording whose last page may be cut
//! short, an audit log whose last line may be torn. Before this start takes
//! any session, each such call is repaired and ended with reason
//! `crash_recovered`, so every recording plays, every audit log verifies,
//! and the call's id is not taken again.
//!
//! What the recorder had not yet written (at most its last second: pages
//! are flushed once a second) is lost with the process; nothing it wrote is.

use chrono::{DateTime, Utc};
use hearken_core::announcement::ANNOUNCEMENT_STEM;
use hearken_core::audit::{self, ConsentLogSummary};
use hearken_core::conference::{CallSummary, EndReason, ParticipantSummary};
use hearken_core::ids::CallId;
use hearken_core::track::{DEFAULT_PRE_SKIP, TrackWriter};
use tracing::{error, warn};

use crate::metrics::Metrics;
use crate::store::Store;

/// Repairs and ends every call a crash left in progress; returns how many.
/// Blocks on the file system: call it before the server takes sessions.
pub fn recover_interrupted_calls(store: &Store, metrics: &Metrics) -> usize {
    let calls = store.interrupted_calls();
    // What a recording torn before its headers becomes: a whole stream of
    // no audio (the same for every call).
    let empty = {
        let mut writer = TrackWriter::new(rand::random::<u32>(), DEFAULT_PRE_SKIP);
        writer.finish();
        writer.poll_output()
    };
    for call_id in &calls {
        match recover_call(store, call_id, &empty) {
            Ok(summary) => {
                metrics
                    .calls_ended
                    .with_label_values(&[EndReason::CrashRecovered.as_label()])
                    .inc();
                warn!(
                    call = %call_id,
                    participants = summary.participants.len(),
                    audit_lines = summary.consent_log.as_ref().map_or(0, |l| l.lines),
                    "a call the last run left in progress was ended (crash_recovered)"
                );
            }
            Err(e) => {
                error!(call = %call_id, error = %e, "cannot recover a call the last run left in progress");
            }
        }
    }
    calls.len()
}

/// Repairs one call's files and writes its final `call.json`.
fn recover_call(store: &Store, call_id: &CallId, empty: &[u8]) -> std::io::Result<CallSummary> {
    let ended_at: DateTime<Utc> = store
        .last_modified(call_id)
        .map_or_else(Utc::now, DateTime::from);
    let mut summary = store
        .read_call(call_id)?
        .unwrap_or_else(|| CallSummary::ended_without_state(call_id, ended_at));

    if let Some((log, torn)) = store.repair_audit_log(call_id)? {
        if torn > 0 {
            warn!(call = %call_id, bytes = torn, "cut the audit log's torn last line (kept in consent.jsonl.torn)");
        }
        summary.consent_log = Some(match audit::verify(&log) {
            Ok(verified) => {
                summary.started_at = summary.started_at.or(verified.first_at);
                ConsentLogSummary {
                    lines: verified.lines,
                    head_sha256: verified.head_sha256,
                    error: summary.consent_log.and_then(|l| l.error),
                }
            }
            // Not a crash's doing (a torn line was cut above): named in
            // `call.json` for a person to look at, the file left as it is.
            Err(e) => {
                let mut log = summary.consent_log.take().unwrap_or(ConsentLogSummary {
                    lines: 0,
                    head_sha256: audit::GENESIS_SHA256.to_owned(),
                    error: None,
                });
                log.error = Some(format!("the audit log does not verify: {e}"));
                log
            }
        });
    }

    for name in store.track_names(call_id)? {
        let repair = store.repair_track(call_id, &name, empty)?;
        if repair.cut_bytes > 0 {
            warn!(call = %call_id, file = %name, bytes = repair.cut_bytes, "cut a recording's last page a crash left short");
        }
        let file = format!("audio/{name}");
        let stem = name.trim_end_matches(".opus");
        if let Some(p) = summary.participants.iter_mut().find(|p| p.file == file) {
            p.recorded_seconds = repair.seconds;
        } else if let Some(a) = summary
            .announcement_track
            .as_mut()
            .filter(|_| stem == ANNOUNCEMENT_STEM)
        {
            a.file = Some(file);
            a.recorded_seconds = repair.seconds;
        } else if stem != ANNOUNCEMENT_STEM {
            // Joined after the last `call.json` was written: named after
            // its file, the only record of it besides the audit log.
            summary.participants.push(ParticipantSummary {
                id: stem.to_owned(),
                file,
                recorded_seconds: repair.seconds,
                ..Default::default()
            });
        }
    }

    // Named when they joined, never created: nothing of theirs was
    // recorded.
    let dir = store.call_dir(call_id);
    for p in &mut summary.participants {
        if !p.file.is_empty() && !dir.join(&p.file).is_file() {
            p.file = String::new();
            p.recorded_seconds = 0.0;
        }
    }
    summary.ended_at = Some(ended_at.max(summary.started_at.unwrap_or(ended_at)));
    summary.end_reason = Some(EndReason::CrashRecovered);
    summary.active_sessions = 0;
    store.write_call_json(&summary)?;
    Ok(summary)
}
