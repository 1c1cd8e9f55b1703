//! The result of a run: one flat-ish JSON object (`--json`) or a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// p50/p95/p99 of a set of samples, in milliseconds; null when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted here).
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        Self {
            p50: percentile(samples, 0.50),
            p95: percentile(samples, 0.95),
            p99: percentile(samples, 0.99),
        }
    }
}

/// Nearest-rank percentile of sorted `samples`: the smallest sample with at
/// least a fraction `q` of the samples at or below it.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

/// p50/p99 estimated from histogram buckets, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Server resident memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rss {
    /// Before any session was created.
    pub baseline: Option<u64>,
    /// At the start of the hold.
    pub start: Option<u64>,
    /// At the end of the hold.
    pub end: Option<u64>,
    /// Highest sample during the hold (one a second).
    pub max: Option<u64>,
    /// `end - start`.
    pub growth: Option<i64>,
}

/// What the in-process fake Deepgram received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FakeDeepgramStats {
    /// Accepted websocket connections.
    pub connections: usize,
    /// Refused upgrade attempts.
    pub rejected: usize,
    /// `linear16` audio bytes received.
    pub audio_bytes: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// How the speakers reached the server: `whip` or `roq` (native
    /// ingest, RTP over QUIC).
    pub ingest: &'static str,
    /// With `roq`: the QUIC connections the calls were spread over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_connections: Option<u64>,
    /// With `roq`: `datagram` or `stream` (one per packet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roq_mode: Option<&'static str>,
    /// Calls.
    pub calls: u64,
    /// Speakers per call.
    pub speakers_per_call: u64,
    /// Sessions (speakers) attempted.
    pub speakers_requested: u64,
    /// Sessions that reached `Event::Connected`; with `roq`, speakers
    /// whose call's token was presented on a connected QUIC connection.
    pub speakers_connected: u64,
    /// The configured hold, in seconds.
    pub duration_s: u64,
    /// The measured window between the two server scrapes, in seconds.
    pub hold_s: f64,
    /// Sessions started per second.
    pub ramp_per_s: f64,
    /// Fraction of time talking.
    pub talk_ratio: f64,
    /// Opus DTX in silences.
    pub dtx: bool,
    /// Media threads.
    pub threads: usize,
    /// Where server CPU/RSS came from: `proc` (`--server-pid`),
    /// `proc_auto` (the process listening on the URL's port) or `metrics`
    /// (its `process_*` metrics; CPU in whole seconds).
    pub server_probe: &'static str,
    /// The server process read through `/proc`, if any.
    pub server_pid: Option<u32>,
    /// RTP packets sent over the whole run (with `--reconnect`, by every
    /// session of each speaker; never those paused while it reconnected).
    pub packets_sent: u64,
    /// RTP packets sent during the hold window.
    pub packets_sent_hold: u64,
    /// Packets sent more than 5 ms after they were due (whole run).
    pub late_sends: u64,
    /// Of those, sent during the hold window (the ramp's signalling shares
    /// the generator's core, so lateness there says less).
    pub late_sends_hold: u64,
    /// Datagrams the generator's kernel refused; with `roq`, packets the
    /// QUIC connection refused or dropped from its queue, and stream-mode
    /// packets dropped with too many streams in flight.
    pub send_errors: u64,
    /// `hearken_rtp_packets_received_total` delta over the hold.
    pub server_packets_received: Option<f64>,
    /// `hearken_recorder_frames_written_total` delta (null if not exposed).
    pub server_packets_recorded: Option<f64>,
    /// `hearken_rtp_packets_lost_total` delta.
    pub server_packets_lost: Option<f64>,
    /// `hearken_frames_dropped_total` delta, all reasons.
    pub server_frames_dropped: Option<f64>,
    /// `1 - received / sent` over the hold.
    pub loss: Option<f64>,
    /// Server CPU seconds over the hold.
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU microseconds per received packet.
    pub server_cpu_us_per_packet: Option<f64>,
    /// Speakers one fully busy core would carry at this load.
    pub speakers_per_core: Option<f64>,
    /// Server resident memory.
    pub server_rss_bytes: Rss,
    /// End-of-hold RSS per connected speaker, in KiB.
    pub rss_kb_per_speaker: Option<f64>,
    /// (End-of-hold RSS - baseline) per connected speaker, in KiB.
    pub rss_kb_per_speaker_over_baseline: Option<f64>,
    /// Server datagram-to-sink latency over the hold, from its histogram.
    pub datagram_to_sink_ms: Quantiles,
    /// POST sent to connected (ICE + DTLS), in milliseconds; with `roq`,
    /// native POST sent to the call's token presented on a connected QUIC
    /// connection (the first call of a connection includes the handshake).
    pub setup_ms: Percentiles,
    /// POST sent to the 201 answer read (WHIP, or native with `roq`), in
    /// milliseconds.
    pub whip_answer_ms: Percentiles,
    /// DELETE latency at the end, in milliseconds.
    pub delete_ms: Percentiles,
    /// Sessions that failed (to set up, or during the hold).
    pub errors: u64,
    /// The failures by kind (`http_503`, `connect_timeout`, …).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// DELETEs that failed (not counted in `errors`).
    pub delete_errors: u64,
    /// Redirects (307 or 308 to another node of a cluster) followed by the
    /// POSTs that were answered 201: one POST per WHIP session, one per
    /// native call.
    pub redirects_followed: u64,
    /// Sessions (speakers) per node that answered their POST 201, keyed by
    /// the node's base URL `scheme://host:port`. One key for a single
    /// server.
    pub sessions_by_node: BTreeMap<String, u64>,
    /// Calls whose sessions more than one node answered; 0 when every call
    /// landed whole on one node.
    pub calls_split_across_nodes: u64,
    /// `--reconnect-silence-ms`: the silence after which a session is
    /// taken for dead; null without `--reconnect`.
    pub reconnect_silence_ms: Option<u64>,
    /// With `--reconnect`: sessions re-established after a loss (a speaker
    /// lost twice counts twice).
    pub reconnects: u64,
    /// With `--reconnect`: losses not recovered, each ending its speaker
    /// (`reconnect_failed` past the deadline, `reconnect_unfinished` when
    /// the hold ended first; both also in `errors_by_kind`).
    /// `reconnects + reconnect_failures` is the number of losses.
    pub reconnect_failures: u64,
    /// With `--reconnect`: loss detected to the new session connected, in
    /// milliseconds.
    pub reconnect_ms: Percentiles,
    /// With `--reconnect`: failed attempts (each retried until the
    /// deadline) by kind: `http_503`, `http_transport`, `connect_timeout`,
    /// ….
    pub reconnect_attempt_errors_by_kind: BTreeMap<String, u64>,
    /// With `--reconnect`: packets not sent because their speaker's session
    /// was down (due from the loss's detection until the new session
    /// connected, the speaker gave up, or the hold ended). Not in
    /// `packets_sent`: `packets_sent + packets_sent_while_disconnected` is
    /// what the speakers would have sent without the losses.
    pub packets_sent_while_disconnected: u64,
    /// With `--reconnect`: of `packets_sent`, those lost sessions sent after
    /// the last datagram they heard from their node, i.e. in the detection
    /// window: an upper bound on what a dead node took with it.
    pub packets_sent_before_detection: u64,
    /// The generator's CPU seconds over the whole run.
    pub generator_cpu_seconds: f64,
    /// The generator's CPU seconds over the hold.
    pub generator_cpu_seconds_hold: f64,
    /// Generator CPU microseconds per packet sent during the hold.
    pub generator_cpu_us_per_packet: Option<f64>,
    /// The in-process fake Deepgram's counts, when one ran.
    pub fake_deepgram: Option<FakeDeepgramStats>,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_json_line(&self) -> String {
        // INVARIANT: every field serializes (no maps with non-string keys);
        // non-finite floats become null.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as an aligned two-column table.
    pub fn to_table(&self) -> String {
        let roq = self.ingest == "roq";
        let ingest = match (self.quic_connections, self.roq_mode) {
            (Some(connections), Some(mode)) => format!(
                "{} ({connections} QUIC connection(s), RTP in {mode}s)",
                self.ingest
            ),
            _ => self.ingest.to_owned(),
        };
        let mut rows: Vec<(&str, String)> = vec![
            ("ingest", ingest),
            (
                "speakers",
                format!(
                    "{} connected of {} ({} calls x {})",
                    self.speakers_connected,
                    self.speakers_requested,
                    self.calls,
                    self.speakers_per_call
                ),
            ),
            (
                "load",
                format!(
                    "talk ratio {}, DTX {}, ramp {}/s, {} media thread(s)",
                    self.talk_ratio,
                    if self.dtx { "on" } else { "off" },
                    self.ramp_per_s,
                    self.threads
                ),
            ),
            (
                "hold",
                format!(
                    "{:.1} s measured ({} s requested)",
                    self.hold_s, self.duration_s
                ),
            ),
            (
                if roq {
                    "setup ms (token sent)"
                } else {
                    "setup ms (connected)"
                },
                percentiles(&self.setup_ms),
            ),
            (
                if roq {
                    "setup ms (native answer)"
                } else {
                    "setup ms (WHIP answer)"
                },
                percentiles(&self.whip_answer_ms),
            ),
            ("delete ms", percentiles(&self.delete_ms)),
            (
                "placement",
                format!(
                    "{} ({} redirects followed, {} calls split across nodes)",
                    if self.sessions_by_node.is_empty() {
                        "-".to_owned()
                    } else {
                        self.sessions_by_node
                            .iter()
                            .map(|(node, n)| format!("{node}={n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    self.redirects_followed,
                    self.calls_split_across_nodes
                ),
            ),
            (
                "reconnects",
                match self.reconnect_silence_ms {
                    None => "off".to_owned(),
                    Some(ms) => format!(
                        "{} re-established, {} failed (silence limit {ms} ms); ms {}; \
                         {} packets not sent while down, {} sent before detection",
                        self.reconnects,
                        self.reconnect_failures,
                        percentiles(&self.reconnect_ms),
                        self.packets_sent_while_disconnected,
                        self.packets_sent_before_detection
                    ),
                },
            ),
            (
                "errors",
                if self.errors_by_kind.is_empty() {
                    self.errors.to_string()
                } else {
                    let kinds: Vec<String> = self
                        .errors_by_kind
                        .iter()
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect();
                    format!("{} ({})", self.errors, kinds.join(", "))
                },
            ),
            (
                "packets sent",
                format!(
                    "{} total, {} in hold, {} late ({} in hold), {} send errors",
                    self.packets_sent,
                    self.packets_sent_hold,
                    self.late_sends,
                    self.late_sends_hold,
                    self.send_errors
                ),
            ),
            (
                "server packets",
                format!(
                    "{} received, {} recorded, {} lost, {} frames dropped",
                    num(self.server_packets_received, 0),
                    num(self.server_packets_recorded, 0),
                    num(self.server_packets_lost, 0),
                    num(self.server_frames_dropped, 0)
                ),
            ),
            ("loss", num(self.loss.map(|l| l * 100.0), 3) + " %"),
            (
                "server CPU",
                format!(
                    "{} s in hold (from {}), {} us/packet, {} speakers/core",
                    num(self.server_cpu_seconds, 2),
                    self.server_probe,
                    num(self.server_cpu_us_per_packet, 2),
                    num(self.speakers_per_core, 0)
                ),
            ),
            (
                "server RSS MiB",
                format!(
                    "baseline {}, start {}, end {}, max {}",
                    mib(self.server_rss_bytes.baseline),
                    mib(self.server_rss_bytes.start),
                    mib(self.server_rss_bytes.end),
                    mib(self.server_rss_bytes.max)
                ),
            ),
            (
                "RSS KiB/speaker",
                format!(
                    "{} ({} over baseline)",
                    num(self.rss_kb_per_speaker, 1),
                    num(self.rss_kb_per_speaker_over_baseline, 1)
                ),
            ),
            (
                "datagram-to-sink ms",
                format!(
                    "p50 {}, p99 {}",
                    num(self.datagram_to_sink_ms.p50, 3),
                    num(self.datagram_to_sink_ms.p99, 3)
                ),
            ),
            (
                "generator CPU",
                format!(
                    "{:.2} s total, {:.2} s in hold, {} us/packet",
                    self.generator_cpu_seconds,
                    self.generator_cpu_seconds_hold,
                    num(self.generator_cpu_us_per_packet, 2)
                ),
            ),
        ];
        if let Some(fake) = &self.fake_deepgram {
            rows.push((
                "fake Deepgram",
                format!(
                    "{} connections, {} rejected, {} audio bytes",
                    fake.connections, fake.rejected, fake.audio_bytes
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mib(bytes: Option<u64>) -> String {
    num(bytes.map(|b| b as f64 / (1024.0 * 1024.0)), 1)
}

fn percentiles(p: &Percentiles) -> String {
    format!(
        "p50 {}, p95 {}, p99 {}",
        num(p.p50, 1),
        num(p.p95, 1),
        num(p.p99, 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(50.0));
        assert_eq!(percentile(&sorted, 0.95), Some(95.0));
        assert_eq!(percentile(&sorted, 0.99), Some(99.0));
        assert_eq!(percentile(&sorted, 1.0), Some(100.0));
        assert_eq!(percentile(&sorted, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        let mut shuffled = vec![3.0, 1.0, 2.0, 4.0];
        let p = Percentiles::of(&mut shuffled);
        assert_eq!((p.p50, p.p95, p.p99), (Some(2.0), Some(4.0), Some(4.0)));
    }

    #[test]
    fn json_has_the_contract_fields_and_nulls() {
        let report = Report {
            speakers_connected: 3,
            errors_by_kind: BTreeMap::from([("http_503".to_owned(), 2)]),
            ..Report::default()
        };
        let line = report.to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["speakers_connected"], 3);
        assert_eq!(v["errors_by_kind"]["http_503"], 2);
        for key in ["p50", "p95", "p99"] {
            assert!(v["setup_ms"][key].is_null());
            assert!(v["whip_answer_ms"][key].is_null());
        }
        assert!(v["server_packets_recorded"].is_null());
        assert!(v["packets_sent"].is_u64());
        assert!(v["errors"].is_u64());
        assert_eq!(v["redirects_followed"], 0);
        assert_eq!(v["sessions_by_node"], serde_json::json!({}));
        assert_eq!(v["calls_split_across_nodes"], 0);
        assert!(report.to_table().contains("3 connected"));
        // A WHIP report names its ingest and nothing of QUIC.
        let whip = Report {
            ingest: "whip",
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::from_str(&whip.to_json_line()).expect("json");
        assert_eq!(v["ingest"], "whip");
        assert!(v.get("quic_connections").is_none() && v.get("roq_mode").is_none());
    }

    #[test]
    fn reconnect_fields_are_always_there() {
        let off = Report::default();
        let v: serde_json::Value = serde_json::from_str(&off.to_json_line()).expect("json");
        assert!(v["reconnect_silence_ms"].is_null());
        for key in [
            "reconnects",
            "reconnect_failures",
            "packets_sent_while_disconnected",
            "packets_sent_before_detection",
        ] {
            assert_eq!(v[key], 0, "{key}");
        }
        for key in ["p50", "p95", "p99"] {
            assert!(v["reconnect_ms"][key].is_null());
        }
        assert_eq!(v["reconnect_attempt_errors_by_kind"], serde_json::json!({}));
        let table = off.to_table();
        let row = table.lines().find(|l| l.starts_with("reconnects"));
        assert!(row.is_some_and(|r| r.ends_with("  off")), "{table}");

        let on = Report {
            reconnect_silence_ms: Some(2_000),
            reconnects: 48,
            reconnect_failures: 2,
            reconnect_ms: Percentiles::of(&mut [900.0, 1_200.0, 4_100.0]),
            reconnect_attempt_errors_by_kind: BTreeMap::from([("http_503".to_owned(), 7)]),
            packets_sent: 10_000,
            packets_sent_while_disconnected: 1_234,
            packets_sent_before_detection: 321,
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::from_str(&on.to_json_line()).expect("json");
        assert_eq!(v["reconnect_silence_ms"], 2_000);
        assert_eq!(v["reconnects"], 48);
        assert_eq!(v["reconnect_failures"], 2);
        assert_eq!(v["reconnect_ms"]["p50"], 1_200.0);
        assert_eq!(v["reconnect_ms"]["p99"], 4_100.0);
        assert_eq!(v["reconnect_attempt_errors_by_kind"]["http_503"], 7);
        assert_eq!(v["packets_sent"], 10_000);
        assert_eq!(v["packets_sent_while_disconnected"], 1_234);
        assert_eq!(v["packets_sent_before_detection"], 321);
        let table = on.to_table();
        assert!(
            table.contains("48 re-established, 2 failed (silence limit 2000 ms)"),
            "{table}"
        );
        assert!(
            table.contains("1234 packets not sent while down"),
            "{table}"
        );
    }

    #[test]
    fn a_roq_report_names_its_connections_and_mode() {
        let report = Report {
            ingest: "roq",
            quic_connections: Some(2),
            roq_mode: Some("stream"),
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::from_str(&report.to_json_line()).expect("json");
        assert_eq!(v["ingest"], "roq");
        assert_eq!(v["quic_connections"], 2);
        assert_eq!(v["roq_mode"], "stream");
        let table = report.to_table();
        assert!(
            table.contains("roq (2 QUIC connection(s), RTP in streams)"),
            "{table}"
        );
        assert!(table.contains("native answer"), "{table}");
    }
}
