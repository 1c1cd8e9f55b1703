//! Command-line flags and their validation into a [`Plan`].
//!
//! Validation is strict on purpose: the generator opens one UDP socket per
//! speaker and sends real-time media, so a typo (an extra zero in `--calls`,
//! a remote `--url`) must be refused before anything is started. Every
//! refusal names the flag it is about.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use url::{Host, Url};

/// Most speakers (WHIP sessions or native flows) one run may open.
pub const MAX_SPEAKERS: u64 = 20_000;
/// Longest hold, in seconds.
pub const MAX_DURATION_S: u64 = 3_600;
/// Longest ramp (speakers / ramp rate), in seconds.
pub const MAX_RAMP_S: f64 = 3_600.0;
/// Most media threads.
pub const MAX_THREADS: usize = 64;
/// Longest accepted `--run-id` (call ids are at most 64 characters).
const MAX_RUN_ID_LEN: usize = 32;
/// The default `--reconnect-silence-ms`.
pub const DEFAULT_RECONNECT_SILENCE_MS: u64 = 2_000;
/// Shortest `--reconnect-silence-ms`: two consent checks (one every
/// [`crate::reconnect::CONSENT_INTERVAL`]) unanswered.
pub const MIN_RECONNECT_SILENCE_MS: u64 = 1_000;
/// Longest `--reconnect-silence-ms`.
pub const MAX_RECONNECT_SILENCE_MS: u64 = 30_000;

/// Plays a conferencing provider against a Hearken server on this machine:
/// `--calls` calls of `--speakers-per-call` speakers, each speaker its own
/// WHIP session (or, with `--ingest roq`, a flow of a native ingest over
/// shared QUIC connections) sending real Opus speech, and reports what the
/// server used.
#[derive(Debug, Parser)]
// A repeated flag overrides the earlier one (handy when editing a command
// line), as `--dtx`/`--no-dtx` do.
#[command(name = "hearken-loadtest", version, args_override_self = true)]
pub struct Args {
    /// Server base URL; must be loopback (127.0.0.0/8, ::1 or localhost).
    #[arg(long)]
    pub url: String,
    /// Bearer token for WHIP (and `/metrics`).
    #[arg(long)]
    pub token: String,
    /// Number of calls.
    #[arg(long)]
    pub calls: u64,
    /// Speakers (WHIP sessions, or flows of the call's native ingest) per
    /// call.
    #[arg(long)]
    pub speakers_per_call: u64,
    /// Seconds to hold every session after the last one was started.
    #[arg(long)]
    pub duration: u64,
    /// Sessions started per second.
    #[arg(long)]
    pub ramp: f64,
    /// Average fraction of time each speaker talks (0 to 1).
    #[arg(long, default_value_t = 1.0)]
    pub talk_ratio: f64,
    /// During silence, send one comfort-noise packet every 400 ms like
    /// Chrome with Opus DTX (the default).
    #[arg(long = "dtx", overrides_with = "no_dtx")]
    pub dtx_flag: bool,
    /// During silence, send a silent packet every 20 ms instead of DTX.
    #[arg(long = "no-dtx", overrides_with = "dtx_flag")]
    pub no_dtx: bool,
    /// Media threads (each drives many speakers from one mio poll loop).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Directory of Ogg Opus speech clips (`*.opus`) the speakers loop over.
    #[arg(long, default_value = default_audio_dir())]
    pub audio_dir: PathBuf,
    /// Read the server's CPU and RSS from /proc/PID instead of `/metrics`.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Run the fake Deepgram server in-process on 127.0.0.1:PORT.
    #[arg(long)]
    pub fake_deepgram_port: Option<u16>,
    /// API key the fake Deepgram server accepts (`Authorization: Token KEY`);
    /// give the server the same key in its `DEEPGRAM_API_KEY`.
    #[arg(long, default_value = "fake-deepgram-key")]
    pub fake_deepgram_key: String,
    /// Run id used in call ids (`lt-{run_id}-{call}`); random by default.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Seed for the speakers' random offsets and talk schedules.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// How speakers reach the server: a WHIP session each, or flows of
    /// native ingests (RTP over QUIC, `roq-14`).
    #[arg(long, value_enum, default_value_t = IngestKind::Whip)]
    pub ingest: IngestKind,
    /// With `--ingest roq`: QUIC connections the calls are spread over,
    /// round-robin (default 1, at most `--calls`).
    #[arg(long)]
    pub quic_connections: Option<u64>,
    /// With `--ingest roq`: RTP in QUIC DATAGRAMs (the default) or one
    /// unidirectional stream per packet.
    #[arg(long, value_enum)]
    pub roq_mode: Option<RoqMode>,
    /// When a connected speaker's session dies (its node stops answering),
    /// start a new WHIP session for the same call and participant through
    /// `--url` and go on sending (WHIP only).
    #[arg(long)]
    pub reconnect: bool,
    /// With `--reconnect`: a session is dead after this many milliseconds
    /// without a datagram from its node (default 2000).
    #[arg(long)]
    pub reconnect_silence_ms: Option<u64>,
}

/// The value of `--ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestKind {
    /// One WHIP session (ICE, DTLS, SRTP over UDP) per speaker.
    Whip,
    /// One native ingest per call, its speakers' RTP over QUIC.
    Roq,
}

/// How RTP travels on a QUIC connection (`--roq-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoqMode {
    /// One QUIC DATAGRAM per RTP packet.
    Datagram,
    /// One unidirectional stream per RTP packet.
    Stream,
}

impl RoqMode {
    /// The name in reports (`datagram`, `stream`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Datagram => "datagram",
            Self::Stream => "stream",
        }
    }
}

/// How the speakers of a validated run reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// A WHIP session per speaker.
    Whip,
    /// A native ingest per call over shared QUIC connections.
    Roq {
        /// QUIC connections, 1 to `calls`; call `c` uses connection
        /// `c % connections`.
        connections: u64,
        /// DATAGRAMs or a stream per packet.
        mode: RoqMode,
    },
}

impl Ingest {
    /// The name in reports (`whip`, `roq`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Roq { .. } => "roq",
        }
    }

    /// The server's `ingest` label of this ingest's metrics (`whip`,
    /// `native`).
    pub fn server_label(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Roq { .. } => "native",
        }
    }
}

/// The default `--audio-dir`: the repository's test speech, found from this
/// crate's manifest directory at compile time.
fn default_audio_dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../media/test")
}

/// A refused flag value.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{flag}: {message}")]
pub struct CliError {
    /// The flag, as typed (`--url`).
    pub flag: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl CliError {
    fn new(flag: &'static str, message: impl Into<String>) -> Self {
        Self {
            flag,
            message: message.into(),
        }
    }
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server base URL (loopback).
    pub url: Url,
    /// Bearer token.
    pub token: String,
    /// Number of calls.
    pub calls: u64,
    /// Speakers per call.
    pub speakers_per_call: u64,
    /// The hold after the last session was started.
    pub duration: Duration,
    /// Sessions started per second.
    pub ramp_per_s: f64,
    /// Fraction of time talking.
    pub talk_ratio: f64,
    /// Opus DTX during silence.
    pub dtx: bool,
    /// Media threads.
    pub threads: usize,
    /// Speech clips.
    pub audio_dir: PathBuf,
    /// Measure the server through /proc instead of `/metrics`.
    pub server_pid: Option<u32>,
    /// In-process fake Deepgram port.
    pub fake_deepgram_port: Option<u16>,
    /// Key the fake Deepgram accepts.
    pub fake_deepgram_key: String,
    /// Distinguishes this run's call ids from earlier runs'.
    pub run_id: String,
    /// Random seed.
    pub seed: u64,
    /// JSON output.
    pub json: bool,
    /// WHIP sessions or native ingest.
    pub ingest: Ingest,
    /// `--reconnect`: how long a silent node means a dead session; `None`
    /// without the flag (a dead session is a failure).
    pub reconnect: Option<Duration>,
}

impl Plan {
    /// Every speaker of every call.
    pub fn speakers(&self) -> u64 {
        self.calls * self.speakers_per_call
    }

    /// How long starting every session takes at the ramp rate.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.speakers() as f64 / self.ramp_per_s)
    }

    /// The call id of call `index`.
    pub fn call_id(&self, index: u64) -> String {
        format!("lt-{}-{index}", self.run_id)
    }

    /// The sockets the generator opens for media: one per speaker with
    /// WHIP, one per QUIC connection with native ingest.
    pub fn media_sockets(&self) -> u64 {
        match self.ingest {
            Ingest::Whip => self.speakers(),
            Ingest::Roq { connections, .. } => connections,
        }
    }
}

impl Args {
    /// Checks every flag and builds the plan; `random` supplies the run id
    /// and seed when they were not given.
    pub fn validate(self, random: impl FnOnce() -> (String, u64)) -> Result<Plan, CliError> {
        let url = loopback_url(&self.url)?;
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control()) {
            return Err(CliError::new("--token", "must be non-empty printable text"));
        }
        if self.calls == 0 {
            return Err(CliError::new("--calls", "must be at least 1"));
        }
        if self.speakers_per_call == 0 {
            return Err(CliError::new("--speakers-per-call", "must be at least 1"));
        }
        let speakers = self.calls.checked_mul(self.speakers_per_call);
        if speakers.is_none_or(|s| s > MAX_SPEAKERS) {
            return Err(CliError::new(
                "--speakers-per-call",
                format!(
                    "--calls {} x --speakers-per-call {} exceeds {MAX_SPEAKERS} speakers",
                    self.calls, self.speakers_per_call
                ),
            ));
        }
        let speakers = speakers.unwrap_or(MAX_SPEAKERS);
        if self.duration == 0 || self.duration > MAX_DURATION_S {
            return Err(CliError::new(
                "--duration",
                format!("must be 1 to {MAX_DURATION_S} seconds"),
            ));
        }
        if !self.ramp.is_finite() || self.ramp <= 0.0 {
            return Err(CliError::new(
                "--ramp",
                "must be a positive number of sessions per second",
            ));
        }
        if speakers as f64 / self.ramp > MAX_RAMP_S {
            return Err(CliError::new(
                "--ramp",
                format!("starting {speakers} sessions would take longer than {MAX_RAMP_S} s"),
            ));
        }
        if !(0.0..=1.0).contains(&self.talk_ratio) {
            return Err(CliError::new("--talk-ratio", "must be between 0 and 1"));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(CliError::new(
                "--threads",
                format!("must be 1 to {MAX_THREADS}"),
            ));
        }
        if self.server_pid == Some(0) {
            return Err(CliError::new("--server-pid", "must be a process id"));
        }
        if self.fake_deepgram_port == Some(0) {
            return Err(CliError::new(
                "--fake-deepgram-port",
                "must be a fixed port the server is configured with",
            ));
        }
        let ingest = self.ingest()?;
        let reconnect = self.reconnect(ingest)?;
        let (random_id, random_seed) = random();
        let run_id = match self.run_id {
            Some(id) => {
                if id.is_empty()
                    || id.len() > MAX_RUN_ID_LEN
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(CliError::new(
                        "--run-id",
                        format!("must be 1 to {MAX_RUN_ID_LEN} of [A-Za-z0-9_-]"),
                    ));
                }
                id
            }
            None => random_id,
        };
        Ok(Plan {
            url,
            token: self.token,
            calls: self.calls,
            speakers_per_call: self.speakers_per_call,
            duration: Duration::from_secs(self.duration),
            ramp_per_s: self.ramp,
            talk_ratio: self.talk_ratio,
            // `--dtx` and `--no-dtx` override each other; DTX unless the
            // last one given was `--no-dtx`.
            dtx: !self.no_dtx,
            threads: self.threads,
            audio_dir: self.audio_dir,
            server_pid: self.server_pid,
            fake_deepgram_port: self.fake_deepgram_port,
            fake_deepgram_key: self.fake_deepgram_key,
            run_id,
            seed: self.seed.unwrap_or(random_seed),
            json: self.json,
            ingest,
            reconnect,
        })
    }

    /// Checks `--reconnect` and `--reconnect-silence-ms`.
    fn reconnect(&self, ingest: Ingest) -> Result<Option<Duration>, CliError> {
        if !self.reconnect {
            if self.reconnect_silence_ms.is_some() {
                return Err(CliError::new(
                    "--reconnect-silence-ms",
                    "only applies with --reconnect",
                ));
            }
            return Ok(None);
        }
        if ingest != Ingest::Whip {
            return Err(CliError::new(
                "--reconnect",
                "only applies to --ingest whip",
            ));
        }
        let ms = self
            .reconnect_silence_ms
            .unwrap_or(DEFAULT_RECONNECT_SILENCE_MS);
        if !(MIN_RECONNECT_SILENCE_MS..=MAX_RECONNECT_SILENCE_MS).contains(&ms) {
            return Err(CliError::new(
                "--reconnect-silence-ms",
                format!(
                    "must be {MIN_RECONNECT_SILENCE_MS} to {MAX_RECONNECT_SILENCE_MS} \
                     milliseconds (consent checks go out every {} ms)",
                    crate::reconnect::CONSENT_INTERVAL.as_millis()
                ),
            ));
        }
        Ok(Some(Duration::from_millis(ms)))
    }

    /// Checks `--ingest` and the flags that only apply to one ingest.
    fn ingest(&self) -> Result<Ingest, CliError> {
        match self.ingest {
            IngestKind::Whip => {
                // A roq-only flag on a WHIP run is a mistake in the command
                // line (a forgotten `--ingest roq`), not something to ignore.
                if self.quic_connections.is_some() {
                    return Err(CliError::new(
                        "--quic-connections",
                        "only applies to --ingest roq",
                    ));
                }
                if self.roq_mode.is_some() {
                    return Err(CliError::new("--roq-mode", "only applies to --ingest roq"));
                }
                Ok(Ingest::Whip)
            }
            IngestKind::Roq => {
                let connections = self.quic_connections.unwrap_or(1);
                if connections == 0 || connections > self.calls {
                    return Err(CliError::new(
                        "--quic-connections",
                        format!(
                            "must be 1 to --calls ({}): each connection carries at least one call",
                            self.calls
                        ),
                    ));
                }
                Ok(Ingest::Roq {
                    connections,
                    mode: self.roq_mode.unwrap_or(RoqMode::Datagram),
                })
            }
        }
    }
}

/// Parses `--url` and refuses any host that is not loopback: the generator
/// floods its target with UDP and must never be pointed at another machine.
pub fn loopback_url(text: &str) -> Result<Url, CliError> {
    let url = Url::parse(text).map_err(|e| CliError::new("--url", format!("{text:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CliError::new("--url", "must be an http:// or https:// URL"));
    }
    if !is_loopback_host(&url) {
        return Err(CliError::new(
            "--url",
            format!(
                "host {:?} is not loopback (127.0.0.0/8, ::1 or localhost)",
                url.host_str().unwrap_or("")
            ),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::new("--url", "must not have a query or fragment"));
    }
    Ok(url)
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        // The URL parser lower-cases domains.
        Some(Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "hearken-loadtest",
            "--url",
            "http://127.0.0.1:8080",
            "--token",
            "t",
            "--calls",
            "10",
            "--speakers-per-call",
            "4",
            "--duration",
            "20",
            "--ramp",
            "20",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("flags parse")
    }

    fn validate(extra: &[&str]) -> Result<Plan, CliError> {
        args(extra).validate(|| ("run".to_owned(), 7))
    }

    #[test]
    fn loopback_hosts_are_accepted() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://LOCALHOST:8080",
            "https://localhost",
        ] {
            assert!(loopback_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn remote_hosts_are_refused_naming_the_flag() {
        for url in [
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "http://example.com",
            "http://localhost.example.com",
            "http://128.0.0.1",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/?x=1",
        ] {
            let err = loopback_url(url).expect_err(url);
            assert_eq!(err.flag, "--url", "{url}");
        }
    }

    #[test]
    fn absurd_values_are_refused_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--calls", "0"], "--calls"),
            (
                &["--calls", "5000", "--speakers-per-call", "5"],
                "--speakers-per-call",
            ),
            (&["--duration", "3601"], "--duration"),
            (&["--duration", "0"], "--duration"),
            (&["--ramp", "0"], "--ramp"),
            (&["--ramp=-3"], "--ramp"),
            (&["--ramp", "NaN"], "--ramp"),
            (&["--ramp", "0.001"], "--ramp"),
            (&["--talk-ratio", "1.5"], "--talk-ratio"),
            (&["--threads", "0"], "--threads"),
            (&["--run-id", "a/b"], "--run-id"),
            (&["--url", "http://192.168.1.1"], "--url"),
        ];
        for (extra, flag) in cases {
            let err = validate(extra).expect_err("refused");
            assert_eq!(err.flag, *flag, "{extra:?}: {err}");
            assert!(err.to_string().starts_with(flag), "{err}");
        }
    }

    #[test]
    fn roq_flags_are_refused_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--ingest", "roq", "--quic-connections", "0"],
                "--quic-connections",
            ),
            // More connections than calls would leave some empty.
            (
                &["--ingest", "roq", "--quic-connections", "11"],
                "--quic-connections",
            ),
            // Roq-only flags on a WHIP run (the default ingest).
            (&["--quic-connections", "2"], "--quic-connections"),
            (&["--roq-mode", "stream"], "--roq-mode"),
            (
                &["--ingest", "whip", "--roq-mode", "datagram"],
                "--roq-mode",
            ),
        ];
        for (extra, flag) in cases {
            let err = validate(extra).expect_err("refused");
            assert_eq!(err.flag, *flag, "{extra:?}: {err}");
            assert!(err.to_string().starts_with(flag), "{err}");
        }
        // Values clap itself refuses (status 2 before validation).
        for extra in [
            &["--ingest", "sip"][..],
            &["--ingest", "roq", "--roq-mode", "dgram"],
            &["--ingest", "roq", "--quic-connections", "-1"],
        ] {
            let mut argv = vec![
                "hearken-loadtest",
                "--url",
                "http://127.0.0.1:8080",
                "--token",
                "t",
                "--calls",
                "10",
                "--speakers-per-call",
                "4",
                "--duration",
                "20",
                "--ramp",
                "20",
            ];
            argv.extend_from_slice(extra);
            assert!(Args::try_parse_from(argv).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn roq_plans_default_to_one_connection_and_datagrams() {
        let plan = validate(&["--ingest", "roq"]).expect("valid");
        assert_eq!(
            plan.ingest,
            Ingest::Roq {
                connections: 1,
                mode: RoqMode::Datagram
            }
        );
        assert_eq!(plan.media_sockets(), 1);
        let plan = validate(&[
            "--ingest",
            "roq",
            "--quic-connections",
            "10",
            "--roq-mode",
            "stream",
        ])
        .expect("valid");
        assert_eq!(
            plan.ingest,
            Ingest::Roq {
                connections: 10,
                mode: RoqMode::Stream
            }
        );
        assert_eq!(plan.ingest.name(), "roq");
        assert_eq!(plan.ingest.server_label(), "native");
        let whip = validate(&["--ingest", "whip"]).expect("valid");
        assert_eq!(whip.ingest, Ingest::Whip);
        assert_eq!(whip.media_sockets(), 40);
    }

    #[test]
    fn reconnect_flags_are_checked_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--reconnect-silence-ms", "2000"],
                "--reconnect-silence-ms",
            ),
            (
                &["--reconnect", "--reconnect-silence-ms", "999"],
                "--reconnect-silence-ms",
            ),
            (
                &["--reconnect", "--reconnect-silence-ms", "30001"],
                "--reconnect-silence-ms",
            ),
            (&["--reconnect", "--ingest", "roq"], "--reconnect"),
        ];
        for (extra, flag) in cases {
            let err = validate(extra).expect_err("refused");
            assert_eq!(err.flag, *flag, "{extra:?}: {err}");
            assert!(err.to_string().starts_with(flag), "{err}");
        }
        assert_eq!(
            validate(&[]).expect("valid").reconnect,
            None,
            "off by default"
        );
        assert_eq!(
            validate(&["--reconnect"]).expect("valid").reconnect,
            Some(Duration::from_millis(DEFAULT_RECONNECT_SILENCE_MS))
        );
        assert_eq!(
            validate(&["--reconnect", "--reconnect-silence-ms", "1500"])
                .expect("valid")
                .reconnect,
            Some(Duration::from_millis(1_500))
        );
    }

    #[test]
    fn a_sane_plan_is_built() {
        let plan = validate(&["--no-dtx", "--talk-ratio", "0.25"]).expect("valid");
        assert_eq!(plan.speakers(), 40);
        assert!(!plan.dtx);
        assert_eq!(plan.run_id, "run");
        assert_eq!(plan.seed, 7);
        assert_eq!(plan.ramp_time(), Duration::from_secs(2));
        assert_eq!(plan.call_id(3), "lt-run-3");
        assert!(validate(&[]).expect("valid").dtx, "DTX is the default");
        assert!(validate(&["--no-dtx", "--dtx"]).expect("valid").dtx);
        assert_eq!(plan.ingest, Ingest::Whip, "WHIP is the default");
    }
}
