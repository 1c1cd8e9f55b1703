//! Configuration: one TOML file, every key overridable by a `HEARKEN_*`
//! environment variable, and defaults that run on one machine with no file.
//!
//! The environment name of a key is `HEARKEN_` followed by its dotted path in
//! upper case with `.` replaced by `_`: `media.port_base` is
//! `HEARKEN_MEDIA_PORT_BASE`. Lists (such as `auth.tokens`) are comma-separated
//! in the environment.
//!
//! Overrides are applied generically by walking the table of defaults, so a key
//! added to [`Config`] is overridable without further code.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearken_core::consent::engine::DeclinePolicy;
use hearken_core::consent::rules::ConsentMode;
use serde::{Deserialize, Serialize};

/// The token accepted by the embedded defaults. A server that accepts it is
/// open to anyone who has read the README, so it is logged loudly at start.
pub const DEVELOPMENT_TOKEN: &str = "hearken-dev";

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "HEARKEN_";

/// Environment variables with the prefix that are not config keys but are
/// still ours (so they are not reported as unknown).
const NON_KEY_ENV_VARS: &[&str] = &["HEARKEN_CONFIG", "HEARKEN_LOG"];

/// Keys that are unset by default (`Option`s, so absent from the table of
/// defaults the overrides walk): each may still be set from the
/// environment; an empty value leaves it unset.
const OPTIONAL_KEYS: &[&str] = &[
    "policy.settings_file",
    "policy.webhook_url",
    "consent.rules_file",
    "consent.prompts_dir",
    "consent.unknown_location_mode",
    "ingest.quic.cert_file",
    "ingest.quic.key_file",
];

/// The whole effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP API and WHIP signaling.
    pub http: HttpConfig,
    /// UDP media workers.
    pub media: MediaConfig,
    /// Where recordings and call metadata are kept.
    pub storage: StorageConfig,
    /// Who may use the API.
    pub auth: AuthConfig,
    /// Capacity limits of this node.
    pub limits: LimitsConfig,
    /// Recording consent.
    pub consent: ConsentConfig,
    /// Transcription of consented audio.
    pub transcription: TranscriptionConfig,
    /// Which meetings are recorded.
    pub policy: PolicyConfig,
    /// The ways in besides WHIP: native RTP over QUIC (and SIP).
    pub ingest: IngestConfig,
    /// Many nodes as one service (NATS JetStream); off by default.
    pub cluster: ClusterConfig,
    /// The fleet's durable call index (PostgreSQL); off by default.
    pub store: StoreConfig,
    /// What is made of a call after it ends: the playable mix and the
    /// insights.
    pub insights: InsightsSettings,
    /// Share links to a call's review page.
    pub shares: SharesConfig,
}

/// Post-call work (`src/postcall.rs`): `audio/mix.opus` and
/// `insights.json`, made once a call's files are final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsightsSettings {
    /// Whether ended calls are mixed and analysed.
    pub enabled: bool,
    /// Calls worked on at once (each decodes and encodes on one core).
    pub concurrency: usize,
    /// Ended calls waiting their turn; beyond it a call is left `pending`
    /// (counted) and picked up at the next start.
    pub queue: usize,
    /// Bitrate of the mix (bits/s).
    pub mix_bitrate: i32,
    /// A turn at least this long (seconds) is a key moment.
    pub monologue_moment_seconds: f64,
    /// Nobody talking for this long (seconds) is a key moment.
    pub long_silence_seconds: f64,
    /// Another person's talk shorter than this (seconds, "mm-hm") does not
    /// end a turn.
    pub backchannel_seconds: f64,
    /// Level (dBFS, RMS of 20 ms) from which a track counts as talking.
    pub voice_threshold_dbfs: f32,
    /// Trackers: a name and the phrases that count for it, matched on
    /// word boundaries, case and punctuation ignored (`[insights.trackers]`
    /// in the file; the environment can only replace a listed tracker's
    /// phrases).
    pub trackers: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for InsightsSettings {
    fn default() -> Self {
        let tracker = |phrases: &[&str]| phrases.iter().map(|p| (*p).to_owned()).collect();
        Self {
            enabled: true,
            concurrency: 1,
            queue: 1024,
            mix_bitrate: 32_000,
            monologue_moment_seconds: 60.0,
            long_silence_seconds: 10.0,
            backchannel_seconds: 1.0,
            voice_threshold_dbfs: -45.0,
            trackers: [
                (
                    "pricing".to_owned(),
                    tracker(&["price", "pricing", "cost", "budget", "discount"]),
                ),
                (
                    "next steps".to_owned(),
                    tracker(&["next steps", "follow up", "action item", "send over"]),
                ),
                (
                    "competitors".to_owned(),
                    tracker(&["competitor", "alternative", "other vendor"]),
                ),
            ]
            .into_iter()
            .collect(),
        }
    }
}

/// The longest `shares.max_expires_in`: ten years.
const MAX_SHARE_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// Share links (`POST /v1/calls/{id}/shares`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharesConfig {
    /// The key share links are signed with (HMAC-SHA256; at least 32
    /// characters). Empty: one is generated at first start and kept in
    /// `{storage.data_dir}/share-secret` (mode 0600). Every node of a
    /// fleet needs the same one.
    pub secret: String,
    /// The longest a link may live (seconds).
    pub max_expires_in: u64,
}

impl Default for SharesConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            max_expires_in: 90 * 24 * 3600,
        }
    }
}

/// Clustering: membership, placement and events on NATS JetStream (see
/// `src/cluster/`). With `nats_url` empty the node runs alone, exactly as
/// without this section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server (`nats://10.0.0.5:4222`, several separated by
    /// commas); empty runs a single node.
    pub nats_url: String,
    /// This node's id in the fleet; empty means the host name.
    pub node_id: String,
    /// The base URL other nodes send a call's clients to
    /// (`http://10.0.0.7:8080`); empty means `http://{http.listen}`.
    pub advertised_url: String,
    /// How often this node says it is alive. A node silent for three
    /// heartbeats is out of placement.
    pub heartbeat_ms: u64,
    /// Seconds a draining node (`POST /v1/admin/drain`, SIGTERM) lets its
    /// calls go on before it ends them and leaves.
    pub drain_timeout: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            node_id: String::new(),
            advertised_url: String::new(),
            heartbeat_ms: 1000,
            drain_timeout: 3600,
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a fleet.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    /// `drain_timeout` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout)
    }

    /// `heartbeat_ms` as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

/// The fleet index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// PostgreSQL connection URL
    /// (`postgres://hearken:secret@10.0.0.9:5432/hearken`); empty keeps
    /// the call index in the node's files only.
    pub postgres_url: String,
}

impl StoreConfig {
    /// Whether calls are indexed in PostgreSQL.
    pub fn enabled(&self) -> bool {
        !self.postgres_url.trim().is_empty()
    }
}

/// Ingest settings: the ways audio reaches Hearken besides WHIP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Native ingest: the platform pushes RTP over QUIC.
    pub quic: QuicIngestConfig,
    /// SIP dial-in: a user agent server over UDP and TCP.
    pub sip: SipIngestConfig,
}

/// SIP dial-in (see `src/ingest/sip/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipIngestConfig {
    /// Address the SIP listener binds, on UDP and TCP alike
    /// (`127.0.0.1:5060`); empty turns SIP dial-in off.
    pub listen: String,
    /// `host:port` put in Contact headers; empty means the bound address
    /// (with `media.advertised_ip` when bound to all interfaces).
    pub advertised: String,
    /// Digest realm of the challenges.
    pub realm: String,
    /// Source networks whose INVITEs need no credentials (`10.0.0.0/8`,
    /// `::1/128`; a bare address is one host).
    pub allow_from: Vec<String>,
    /// Digest users, each `user:ENV_VAR`: the user name, and the
    /// environment variable its password is read from at start (the
    /// password itself is never in the config or a log). From the
    /// environment: `HEARKEN_INGEST_SIP_CREDENTIALS=trunk:SIP_TRUNK_PASSWORD`.
    pub credentials: Vec<String>,
}

impl Default for SipIngestConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            advertised: String::new(),
            realm: "hearken".to_owned(),
            allow_from: vec!["127.0.0.1/32".to_owned()],
            credentials: Vec::new(),
        }
    }
}

impl SipIngestConfig {
    /// The address to listen on, when SIP dial-in is on.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            key: "ingest.sip.listen",
            message: format!("{text:?} is not an address like 127.0.0.1:5060"),
        })
    }

    /// `allow_from`, read.
    pub fn allow_networks(&self) -> Result<Vec<crate::ingest::sip::auth::Network>, ConfigError> {
        self.allow_from
            .iter()
            .map(|n| {
                n.parse().map_err(
                    |e: crate::ingest::sip::auth::BadNetwork| ConfigError::Invalid {
                        key: "ingest.sip.allow_from",
                        message: e.to_string(),
                    },
                )
            })
            .collect()
    }

    /// `credentials` as (user, variable) pairs.
    pub fn credential_entries(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "ingest.sip.credentials",
            message,
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for entry in &self.credentials {
            let Some((user, var)) = entry.split_once(':') else {
                return Err(invalid(format!(
                    "{entry:?} is not user:ENV_VAR (the variable that holds the password)"
                )));
            };
            let (user, var) = (user.trim(), var.trim());
            if user.is_empty() || user.chars().any(|c| c.is_control() || c == '"') {
                return Err(invalid(format!(
                    "{entry:?}: the user name is empty or unusable"
                )));
            }
            let var_ok = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !var_ok {
                // Said without echoing the text: it may be a password put
                // there by mistake.
                return Err(invalid(format!(
                    "the entry of user {user:?} must name an environment variable (letters, digits, _), not hold the password"
                )));
            }
            if out.iter().any(|(u, _)| u == user) {
                return Err(invalid(format!("user {user:?} is listed twice")));
            }
            out.push((user.to_owned(), var.to_owned()));
        }
        Ok(out)
    }
}

/// Native ingest over QUIC (RTP over QUIC, `roq-14`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicIngestConfig {
    /// UDP address the QUIC listener binds (`127.0.0.1:4433`); empty turns
    /// native ingest off.
    pub listen: String,
    /// `host:port` put in the native answer for platforms to connect to;
    /// empty means the bound address.
    pub advertised: String,
    /// PEM certificate chain; empty (with `key_file` empty) means a
    /// self-signed certificate made at start, its SHA-256 in every answer.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// A connection that presents no valid connection token this long after
    /// its handshake is closed.
    pub token_timeout_ms: u64,
}

impl Default for QuicIngestConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            advertised: String::new(),
            cert_file: None,
            key_file: None,
            token_timeout_ms: 10_000,
        }
    }
}

impl QuicIngestConfig {
    /// The address to listen on, when native ingest is on.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let text = self.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| ConfigError::Invalid {
            key: "ingest.quic.listen",
            message: format!("{text:?} is not an address like 127.0.0.1:4433"),
        })
    }
}

/// Recording-policy settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Company recording settings (TOML or JSON, see
    /// `tests/fixtures/policy/`); unset means no meetings API (calls are
    /// admitted by `unknown_calls`).
    pub settings_file: Option<PathBuf>,
    /// What a WHIP call with no known meeting gets.
    pub unknown_calls: UnknownCalls,
    /// Provider webhook that receives join requests for meetings recorded
    /// by the assistant method (unset: no scheduler).
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook's HMAC-SHA256 secret.
    pub webhook_secret_env: String,
    /// A join request is sent this long before the meeting starts.
    pub join_lead_seconds: u64,
    /// The base URL providers reach this node's WHIP endpoint at.
    pub public_url: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            settings_file: None,
            unknown_calls: UnknownCalls::Record,
            webhook_url: None,
            webhook_secret_env: "HEARKEN_WEBHOOK_SECRET".to_owned(),
            join_lead_seconds: 60,
            public_url: "http://127.0.0.1:8080".to_owned(),
        }
    }
}

/// What a WHIP call with no known meeting gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCalls {
    /// Recorded (consent still applies).
    Record,
    /// Refused with 403.
    Refuse,
}

/// Where consented audio is transcribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptionBackend {
    /// Nowhere: record only.
    None,
    /// Deepgram's live streaming API (`transcription.deepgram`).
    Deepgram,
}

/// Transcription settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// `none` (record only) or `deepgram`.
    pub backend: TranscriptionBackend,
    /// Frames waiting for the transcriber at most (shared by all calls);
    /// beyond it frames are dropped and counted.
    pub queue_frames: usize,
    /// Frames waiting for one speaker's backend connection at most (6,000
    /// frames is two minutes of 20 ms packets: a consent hold's commit, at
    /// most a minute of one speaker, fits beside a minute of live audio).
    /// At least [`MIN_SPEAKER_QUEUE_FRAMES`].
    pub speaker_queue_frames: usize,
    /// Bound on opening a backend connection; a slower one counts as a
    /// failed attempt and is retried.
    pub connect_timeout_ms: u64,
    /// Seconds of consented audio buffered per speaker while the backend is
    /// unreachable; past it the oldest audio is dropped (and counted).
    pub buffer_seconds: u64,
    /// How long the end of a call waits for the last final results.
    pub finish_timeout_ms: u64,
    /// Transcribe only while a speaker talks (RTP audio level or Opus DTX
    /// says so): silence is neither decoded nor sent. Frames without a level
    /// are always sent.
    pub skip_silence: bool,
    /// With `skip_silence`: silence still sent after speech, so the backend
    /// hears the pause and ends the utterance (keep it above endpointing).
    pub silence_hangover_ms: u64,
    /// With `skip_silence`: silence held back and sent when speech starts,
    /// so level meters that lag the onset do not clip the first syllable.
    pub silence_preroll_ms: u64,
    /// Deepgram live streaming.
    pub deepgram: DeepgramConfig,
}

/// The smallest `transcription.speaker_queue_frames`: one commit of a
/// consent hold for one speaker (60 s of 20 ms packets), which the speaker's
/// queue takes whole or not at all.
pub const MIN_SPEAKER_QUEUE_FRAMES: usize = 3_000;

/// Deepgram settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepgramConfig {
    /// Base URL; `http://` means plain `ws://` (local fakes).
    pub url: String,
    /// Name of the environment variable holding the API key (the key itself
    /// is never in the config, never logged).
    pub api_key_env: String,
    /// Model (`nova-3`, …).
    pub model: String,
    /// Language (BCP-47).
    pub language: String,
    /// Key terms to boost.
    pub keyterms: Vec<String>,
    /// Endpointing silence (ms).
    pub endpointing_ms: u32,
    /// Ask for interim results (shown live).
    pub interim_results: bool,
    /// What is sent: `linear16` (Opus decoded to 16 kHz mono PCM) or
    /// `ogg-opus` (the speakers' Opus packets as they arrived, in an Ogg
    /// container: no decoding, a tenth of the bandwidth).
    pub encoding: DeepgramEncoding,
    /// Send `mip_opt_out=true`: Deepgram keeps neither the audio nor the
    /// transcript to improve its models (the Model Improvement Program).
    /// Without it Deepgram may keep them, which consent given for a
    /// recording does not cover.
    pub mip_opt_out: bool,
}

/// The audio format sent to Deepgram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeepgramEncoding {
    /// `encoding=linear16&sample_rate=16000&channels=1`.
    Linear16,
    /// An Ogg Opus stream (a container: no `encoding` parameter).
    OggOpus,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self {
            backend: TranscriptionBackend::None,
            queue_frames: 20_000,
            speaker_queue_frames: 6_000,
            connect_timeout_ms: 10_000,
            buffer_seconds: 120,
            finish_timeout_ms: 10_000,
            skip_silence: true,
            silence_hangover_ms: 1_000,
            silence_preroll_ms: 200,
            deepgram: DeepgramConfig::default(),
        }
    }
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        Self {
            url: "https://api.deepgram.com".to_owned(),
            api_key_env: "DEEPGRAM_API_KEY".to_owned(),
            model: "nova-3".to_owned(),
            language: "en".to_owned(),
            keyterms: Vec::new(),
            endpointing_ms: 300,
            interim_results: true,
            encoding: DeepgramEncoding::Linear16,
            mip_opt_out: true,
        }
    }
}

/// Recording-consent settings (see `consent/rules.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentConfig {
    /// Consent rules file (YAML); unset means the rules built into the
    /// binary (`consent/rules.yaml` in the source tree).
    pub rules_file: Option<PathBuf>,
    /// Where the recorder itself runs, as an ISO 3166-1 or 3166-2 code
    /// (`US`, `US-CA`, `DE`); it counts like a participant.
    pub recorder_location: String,
    /// Company policy floor: the mode is never below this
    /// (`none`, `notify`, `notify_and_allow_opt_out`, `explicit`).
    pub min_mode: ConsentMode,
    /// Mode for participants whose location is unknown, replacing the
    /// rules' `default_unknown` (`explicit` as shipped); any mode.
    pub unknown_location_mode: Option<ConsentMode>,
    /// Under notify modes, staying on the call this long after the notice
    /// ends counts as implicit consent.
    pub grace_period_ms: u64,
    /// What a decline does: `stop_and_discard`, `stop` or `exclude_participant`.
    pub decline_policy: DeclinePolicy,
    /// DTMF digit that grants consent.
    pub agree_digit: String,
    /// DTMF digit that declines.
    pub decline_digit: String,
    /// Language of the prompts (`media/prompts/{language}/`).
    pub language: String,
    /// Directory holding `{language}/{name}.opus` prompts; unset means the
    /// prompts built into the binary (`media/prompts/`: en, es, fr, de).
    pub prompts_dir: Option<PathBuf>,
    /// Most seconds of one participant's audio held in memory while their
    /// consent is pending (the oldest goes first beyond it).
    pub hold_seconds: u64,
    /// Hold audio also where the law demands explicit prior consent (off:
    /// it is dropped until consent).
    pub hold_under_explicit: bool,
    /// Most MiB of held audio on this node, all calls together; beyond it
    /// new audio is discarded rather than held.
    pub hold_node_limit_mb: u64,
    /// A participant who joins without details holds capture this long for
    /// them; then the unknown-location mode applies.
    pub details_wait_ms: u64,
    /// The provider shows its own recording notice to everyone, so a prompt
    /// a participant cannot hear (a `sendonly` session) still informs them.
    pub provider_notifies: bool,
    /// Under an all-party (call-wide) gate, let `exclude_participant` exclude
    /// only the decliner instead of stopping the call.
    pub allow_exclude_under_all_party: bool,
    /// Listen for a spoken "yes" / "no" during the consent request, on this
    /// machine (pocketsphinx); without the model the server runs without it
    /// and says why.
    pub verbal: bool,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            rules_file: None,
            recorder_location: "US".to_owned(),
            min_mode: ConsentMode::None,
            unknown_location_mode: None,
            grace_period_ms: 5_000,
            decline_policy: DeclinePolicy::Stop,
            agree_digit: "1".to_owned(),
            decline_digit: "9".to_owned(),
            language: "en".to_owned(),
            prompts_dir: None,
            hold_seconds: 60,
            hold_under_explicit: false,
            hold_node_limit_mb: 256,
            details_wait_ms: 3_000,
            provider_notifies: false,
            allow_exclude_under_all_party: false,
            verbal: true,
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Origins allowed by CORS (browser WHIP clients). `*` allows any origin;
    /// an empty list turns CORS off.
    pub cors_allowed_origins: Vec<String>,
}

/// Media (UDP) settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Local IP the worker sockets bind to (`0.0.0.0` for all interfaces).
    pub bind_ip: IpAddr,
    /// IP put in the ICE host candidate of every answer: the address clients
    /// can reach this node at.
    pub advertised_ip: IpAddr,
    /// UDP port of the first worker; worker `n` uses `port_base + n`. 0 lets
    /// the OS pick a free port for each worker (tests; behind a fixed
    /// firewall rule you want fixed ports).
    pub port_base: u16,
    /// Number of media worker threads; 0 means one per core.
    pub workers: usize,
    /// A session that has not connected (ICE + DTLS) this long after its
    /// answer was sent is ended.
    pub connect_timeout_ms: u64,
    /// A connected session from which nothing at all (media, RTCP, STUN
    /// consent checks) arrives this long is ended as disconnected. Browsers
    /// send consent checks every ~5 s even when muted.
    pub inactivity_timeout_ms: u64,
    /// Requested kernel receive buffer per worker socket.
    pub udp_recv_buffer_bytes: usize,
    /// A plain-RTP session (a call's native ingest, a SIP caller not on
    /// hold) from which no packet arrives this long is ended as
    /// disconnected: its platform or phone vanished without `DELETE` or
    /// `BYE`.
    pub rtp_idle_timeout_ms: u64,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Root of all call artifacts: `{data_dir}/calls/{call_id}/...`.
    pub data_dir: PathBuf,
}

/// Authentication settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens accepted on WHIP and on the `/v1` API.
    pub tokens: Vec<String>,
}

/// Capacity limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// WHIP sessions this node accepts at once; past it, WHIP answers 503.
    pub max_sessions: usize,
    /// Frames that may wait for the recorder of one worker before new ones
    /// are dropped (and counted).
    pub recorder_queue_frames: usize,
    /// Seconds a client is told to wait (`Retry-After`) when the node is full.
    pub retry_after_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            cors_allowed_origins: vec!["*".to_owned()],
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertised_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_base: 40000,
            workers: 0,
            connect_timeout_ms: 15_000,
            inactivity_timeout_ms: 10_000,
            udp_recv_buffer_bytes: 4 * 1024 * 1024,
            rtp_idle_timeout_ms: 60_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: vec![DEVELOPMENT_TOKEN.to_owned()],
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions: 2000,
            recorder_queue_frames: 8192,
            retry_after_secs: 5,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An environment override could not be parsed as the key's type.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is of the right type but not acceptable.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A loaded configuration and what the loader noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// `HEARKEN_*` variables that match no key (probably typos).
    pub unknown_env: Vec<String>,
}

impl Config {
    /// Loads the defaults, then `file` (if given), then the environment
    /// overrides from `env`, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut table = defaults_table();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let from_file: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            // The file's trackers are the trackers (a deep merge would keep
            // the shipped ones beside them, and they could not be removed).
            let trackers = from_file
                .get("insights")
                .and_then(|i| i.get("trackers"))
                .cloned();
            merge(&mut table, from_file);
            if let (Some(trackers), Some(toml::Value::Table(insights))) =
                (trackers, table.get_mut("insights"))
            {
                insights.insert("trackers".to_owned(), trackers);
            }
            // Catch unknown keys and wrong types with the file's name in the error.
            Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                ConfigError::File {
                    path: path.to_owned(),
                    message: e.to_string(),
                }
            })?;
        }

        let mut known = BTreeSet::new();
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        apply_env(&mut table, "", &env, &mut known)?;
        apply_optional_env(&mut table, &env, &mut known);
        let unknown_env = env
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !known.contains(k) && !NON_KEY_ENV_VARS.contains(&k.as_str()))
            .collect();

        let config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Env {
                var: "HEARKEN_*".to_owned(),
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(Loaded {
            config,
            unknown_env,
        })
    }

    /// Checks values that are well-typed but unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "auth.tokens",
                message: "a token must not be empty".into(),
            });
        }
        if self.media.advertised_ip.is_unspecified() {
            return Err(ConfigError::Invalid {
                key: "media.advertised_ip",
                message: "must be an address clients can reach, not 0.0.0.0 or ::".into(),
            });
        }
        if usize::from(self.media.port_base) + self.worker_count() > usize::from(u16::MAX) + 1 {
            return Err(ConfigError::Invalid {
                key: "media.port_base",
                message: format!(
                    "{} workers starting at port {} run past 65535",
                    self.worker_count(),
                    self.media.port_base
                ),
            });
        }
        if self.limits.max_sessions == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_sessions",
                message: "must be at least 1".into(),
            });
        }
        if self.limits.recorder_queue_frames == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.recorder_queue_frames",
                message: "must be at least 1".into(),
            });
        }
        if self.media.connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "media.connect_timeout_ms",
                message: "must be at least 1".into(),
            });
        }
        for (key, value) in [
            (
                "transcription.queue_frames",
                self.transcription.queue_frames,
            ),
            (
                "transcription.speaker_queue_frames",
                self.transcription.speaker_queue_frames,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.transcription.speaker_queue_frames < MIN_SPEAKER_QUEUE_FRAMES {
            return Err(ConfigError::Invalid {
                key: "transcription.speaker_queue_frames",
                message: format!(
                    "must be at least {MIN_SPEAKER_QUEUE_FRAMES} (one consent hold's commit: 60 s of 20 ms packets)"
                ),
            });
        }
        if self.transcription.buffer_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "transcription.buffer_seconds",
                message: "must be at least 1 (the default keeps 120 s per speaker)".into(),
            });
        }
        let t = &self.transcription;
        if t.skip_silence && t.silence_hangover_ms < u64::from(t.deepgram.endpointing_ms) {
            return Err(ConfigError::Invalid {
                key: "transcription.silence_hangover_ms",
                message: format!(
                    "{} ms is shorter than transcription.deepgram.endpointing_ms ({} ms): \
                     the backend would never hear a pause long enough to end an utterance",
                    t.silence_hangover_ms, t.deepgram.endpointing_ms
                ),
            });
        }
        if self.consent.hold_seconds > 600 {
            return Err(ConfigError::Invalid {
                key: "consent.hold_seconds",
                message: "must be at most 600 (held audio lives in memory)".into(),
            });
        }
        if self.consent.details_wait_ms > 60_000 {
            return Err(ConfigError::Invalid {
                key: "consent.details_wait_ms",
                message: "must be at most 60000".into(),
            });
        }
        self.ingest.quic.listen_addr()?;
        let sip = &self.ingest.sip;
        sip.listen_addr()?;
        sip.allow_networks()?;
        sip.credential_entries()?;
        if sip.realm.is_empty() || sip.realm.contains('"') {
            return Err(ConfigError::Invalid {
                key: "ingest.sip.realm",
                message: "must be non-empty and without '\"'".into(),
            });
        }
        let q = &self.ingest.quic;
        if q.cert_file.is_some() != q.key_file.is_some() {
            return Err(ConfigError::Invalid {
                key: if q.cert_file.is_some() {
                    "ingest.quic.key_file"
                } else {
                    "ingest.quic.cert_file"
                },
                message:
                    "cert_file and key_file go together (or neither, for a self-signed certificate)"
                        .into(),
            });
        }
        if q.token_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "ingest.quic.token_timeout_ms",
                message: "must be at least 1".into(),
            });
        }
        if self.media.rtp_idle_timeout_ms < 100 {
            return Err(ConfigError::Invalid {
                key: "media.rtp_idle_timeout_ms",
                message: "must be at least 100".into(),
            });
        }
        if self.media.inactivity_timeout_ms < 100 {
            return Err(ConfigError::Invalid {
                key: "media.inactivity_timeout_ms",
                message: "must be at least 100".into(),
            });
        }
        self.validate_cluster()?;
        self.validate_insights()
    }

    fn validate_insights(&self) -> Result<(), ConfigError> {
        let i = &self.insights;
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if i.concurrency == 0 || i.concurrency > 64 {
            return invalid("insights.concurrency", "must be between 1 and 64");
        }
        if i.queue == 0 {
            return invalid("insights.queue", "must be at least 1");
        }
        if !(6_000..=510_000).contains(&i.mix_bitrate) {
            return invalid(
                "insights.mix_bitrate",
                "must be between 6000 and 510000 (what Opus can encode)",
            );
        }
        for (key, value) in [
            (
                "insights.monologue_moment_seconds",
                i.monologue_moment_seconds,
            ),
            ("insights.long_silence_seconds", i.long_silence_seconds),
            ("insights.backchannel_seconds", i.backchannel_seconds),
        ] {
            if !value.is_finite() || value < 0.0 {
                return invalid(key, "must be a number of seconds, 0 or more");
            }
        }
        if !(-100.0..=0.0).contains(&i.voice_threshold_dbfs) {
            return invalid(
                "insights.voice_threshold_dbfs",
                "must be between -100 and 0",
            );
        }
        for (name, phrases) in &i.trackers {
            if name.trim().is_empty() {
                return invalid("insights.trackers", "a tracker needs a name");
            }
            if phrases
                .iter()
                .all(|p| p.split_whitespace().next().is_none())
            {
                return Err(ConfigError::Invalid {
                    key: "insights.trackers",
                    message: format!("tracker {name:?} has no phrase"),
                });
            }
        }
        let secret = &self.shares.secret;
        if !secret.is_empty() && secret.len() < 32 {
            return invalid(
                "shares.secret",
                "must be at least 32 characters (or empty, to generate one)",
            );
        }
        if !(1..=MAX_SHARE_SECONDS).contains(&self.shares.max_expires_in) {
            return invalid(
                "shares.max_expires_in",
                "must be between 1 and 315360000 (ten years)",
            );
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.heartbeat_ms < 50 || c.heartbeat_ms > 60_000 {
            return Err(ConfigError::Invalid {
                key: "cluster.heartbeat_ms",
                message: "must be between 50 and 60000".into(),
            });
        }
        if c.enabled() {
            for url in c.nats_url.split(',') {
                let url = url.trim();
                let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
                    .iter()
                    .any(|s| url.starts_with(s))
                    || !url.contains("://");
                if url.is_empty() || !scheme_ok {
                    return Err(ConfigError::Invalid {
                        key: "cluster.nats_url",
                        message: format!("{url:?} is not a NATS URL like nats://127.0.0.1:4222"),
                    });
                }
            }
        }
        if !c.node_id.is_empty()
            && !c
                .node_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
        {
            return Err(ConfigError::Invalid {
                key: "cluster.node_id",
                message: "may hold only letters, digits, '-' and '_'".into(),
            });
        }
        let url = c.advertised_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "cluster.advertised_url",
                message: format!("{url:?} is not a base URL like http://10.0.0.7:8080"),
            });
        }
        let pg = self.store.postgres_url.trim();
        if !(pg.is_empty() || pg.starts_with("postgres://") || pg.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "store.postgres_url",
                message: "must be a URL like postgres://user@host:5432/db".into(),
            });
        }
        Ok(())
    }

    /// The number of media workers to start (`media.workers`, or one per core).
    pub fn worker_count(&self) -> usize {
        if self.media.workers > 0 {
            self.media.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// Whether the development token is accepted.
    pub fn accepts_development_token(&self) -> bool {
        self.auth.tokens.iter().any(|t| t == DEVELOPMENT_TOKEN)
    }

    /// `media.inactivity_timeout_ms` as a duration.
    pub fn inactivity_timeout(&self) -> Duration {
        Duration::from_millis(self.media.inactivity_timeout_ms)
    }

    /// `media.connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.media.connect_timeout_ms)
    }

    /// The effective config as TOML; tokens are replaced unless `show_secrets`.
    pub fn to_toml(&self, show_secrets: bool) -> String {
        let mut shown = self.clone();
        if !show_secrets {
            shown.auth.tokens = shown
                .auth
                .tokens
                .iter()
                .map(|t| {
                    if t == DEVELOPMENT_TOKEN {
                        t.clone()
                    } else {
                        "<redacted>".to_owned()
                    }
                })
                .collect();
        }
        if !show_secrets && !shown.shares.secret.is_empty() {
            shown.shares.secret = "<redacted>".to_owned();
        }
        if !show_secrets {
            shown.store.postgres_url = redact_url_password(&shown.store.postgres_url);
            shown.cluster.nats_url = shown
                .cluster
                .nats_url
                .split(',')
                .map(|u| redact_url_password(u.trim()))
                .collect::<Vec<_>>()
                .join(",");
        }
        // INVARIANT: Config is plain data with string map keys; it always serializes.
        toml::to_string_pretty(&shown).expect("config serializes to TOML")
    }
}

/// `url` with the password of its user info (`user:password@`) replaced,
/// for logs, errors and `hearken config`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

fn defaults_table() -> toml::Table {
    match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        // INVARIANT: a struct of plain fields serializes to a table.
        _ => unreachable!("Config serializes to a TOML table"),
    }
}

/// Deep-merges `from` into `into`, keys of `from` winning.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn env_name(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.replace('.', "_").to_uppercase())
}

/// Replaces every leaf of `table` that has an environment override, parsing
/// the text as the type of the value it replaces.
fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    env: &[(String, String)],
    known: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let toml::Value::Table(inner) = value {
            apply_env(inner, &path, env, known)?;
            continue;
        }
        let var = env_name(&path);
        let Some((_, text)) = env.iter().find(|(k, _)| *k == var) else {
            continue;
        };
        known.insert(var.clone());
        *value = parse_env_value(value, text).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message: format!("{message} (for config key {path})"),
        })?;
    }
    Ok(())
}

/// Sets the [`OPTIONAL_KEYS`] given (non-empty) in the environment.
fn apply_optional_env(
    table: &mut toml::Table,
    env: &[(String, String)],
    known: &mut BTreeSet<String>,
) {
    for path in OPTIONAL_KEYS {
        let var = env_name(path);
        let Some((_, text)) = env.iter().find(|(k, _)| *k == var) else {
            continue;
        };
        known.insert(var);
        let text = text.trim();
        let Some((sections, key)) = path.rsplit_once('.') else {
            continue;
        };
        let Some(inner) = table_at(table, sections) else {
            continue;
        };
        if text.is_empty() {
            inner.remove(key);
        } else {
            inner.insert(key.to_owned(), toml::Value::String(text.to_owned()));
        }
    }
}

/// The table at dotted path `sections` of `table`, if there is one.
fn table_at<'a>(table: &'a mut toml::Table, sections: &str) -> Option<&'a mut toml::Table> {
    sections
        .split('.')
        .try_fold(table, |t, section| match t.get_mut(section) {
            Some(toml::Value::Table(inner)) => Some(inner),
            _ => None,
        })
}

fn parse_env_value(current: &toml::Value, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    Ok(match current {
        toml::Value::String(_) => toml::Value::String(text.to_owned()),
        toml::Value::Integer(_) => toml::Value::Integer(
            text.parse()
                .map_err(|_| format!("expected a whole number, got {text:?}"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            text.parse()
                .map_err(|_| format!("expected a number, got {text:?}"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match text {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(format!("expected true or false, got {text:?}")),
        }),
        toml::Value::Array(_) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            return Err("this key cannot be set from the environment".to_owned());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_work_without_a_file() {
        let loaded = Config::load(None, env(&[])).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(loaded.config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(loaded.config.media.port_base, 40000);
        assert_eq!(loaded.config.storage.data_dir, PathBuf::from("./data"));
        assert!(loaded.config.accepts_development_token());
    }

    #[test]
    fn insights_and_shares_settings_are_checked_by_key() {
        for (var, value, key) in [
            ("HEARKEN_INSIGHTS_CONCURRENCY", "0", "insights.concurrency"),
            (
                "HEARKEN_INSIGHTS_MIX_BITRATE",
                "1000",
                "insights.mix_bitrate",
            ),
            (
                "HEARKEN_INSIGHTS_LONG_SILENCE_SECONDS",
                "-1",
                "insights.long_silence_seconds",
            ),
            ("HEARKEN_SHARES_SECRET", "too short", "shares.secret"),
            (
                "HEARKEN_SHARES_MAX_EXPIRES_IN",
                "0",
                "shares.max_expires_in",
            ),
        ] {
            let text = Config::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(text.contains(key), "{var}={value}: {text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearken.toml");
        std::fs::write(
            &path,
            "[insights.trackers]\n\"renewal\" = [\"renew\", \"contract end\"]\nempty = [\" \"]\n",
        )
        .unwrap();
        let text = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(
            text.contains("insights.trackers") && text.contains("empty"),
            "{text}"
        );
        std::fs::write(&path, "[insights.trackers]\nrenewal = [\"renew\"]\n").unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap().config;
        assert_eq!(
            c.insights.trackers.len(),
            1,
            "the file's trackers replace the shipped ones"
        );
        let shown = Config::load(
            None,
            env(&[("HEARKEN_SHARES_SECRET", "0123456789abcdef0123456789abcdef")]),
        )
        .unwrap()
        .config
        .to_toml(false);
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }

    #[test]
    fn environment_overrides_every_contract_key() {
        let loaded = Config::load(
            None,
            env(&[
                ("HEARKEN_HTTP_LISTEN", "0.0.0.0:9000"),
                ("HEARKEN_MEDIA_BIND_IP", "0.0.0.0"),
                ("HEARKEN_MEDIA_ADVERTISED_IP", "192.0.2.7"),
                ("HEARKEN_MEDIA_PORT_BASE", "41000"),
                ("HEARKEN_MEDIA_WORKERS", "3"),
                ("HEARKEN_STORAGE_DATA_DIR", "/var/lib/hearken"),
                ("HEARKEN_AUTH_TOKENS", "alpha, beta"),
                ("HEARKEN_LIMITS_MAX_SESSIONS", "12"),
            ]),
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.media.bind_ip.to_string(), "0.0.0.0");
        assert_eq!(c.media.advertised_ip.to_string(), "192.0.2.7");
        assert_eq!(c.media.port_base, 41000);
        assert_eq!(c.media.workers, 3);
        assert_eq!(c.worker_count(), 3);
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/hearken"));
        assert_eq!(c.auth.tokens, vec!["alpha", "beta"]);
        assert_eq!(c.limits.max_sessions, 12);
        assert!(loaded.unknown_env.is_empty());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearken.toml");
        std::fs::write(
            &path,
            "[media]\nport_base = 42000\nworkers = 2\n[auth]\ntokens = [\"file-token\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[("HEARKEN_MEDIA_WORKERS", "4")]))
            .unwrap()
            .config;
        assert_eq!(c.media.port_base, 42000);
        assert_eq!(c.media.workers, 4);
        assert_eq!(c.auth.tokens, vec!["file-token"]);
        assert!(!c.accepts_development_token());
    }

    #[test]
    fn errors_name_the_field() {
        let err = Config::load(None, env(&[("HEARKEN_MEDIA_PORT_BASE", "forty")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("HEARKEN_MEDIA_PORT_BASE"), "{text}");
        assert!(text.contains("media.port_base"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[media]\nport_bsae = 1\n").unwrap();
        let text = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(text.contains("port_bsae"), "{text}");

        let text = Config::load(None, env(&[("HEARKEN_MEDIA_ADVERTISED_IP", "0.0.0.0")]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("media.advertised_ip"), "{text}");

        let text = Config::load(None, env(&[("HEARKEN_HTTP_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("nowhere") || text.contains("listen"),
            "{text}"
        );
    }

    #[test]
    fn enums_and_optional_keys_are_typed_and_named() {
        let c = Config::load(
            None,
            env(&[
                ("HEARKEN_CONSENT_MIN_MODE", "explicit"),
                ("HEARKEN_TRANSCRIPTION_BACKEND", "deepgram"),
                ("HEARKEN_POLICY_WEBHOOK_URL", "http://hooks.test/join"),
                ("HEARKEN_CONSENT_RULES_FILE", ""),
            ]),
        )
        .unwrap();
        assert!(c.unknown_env.is_empty(), "{:?}", c.unknown_env);
        let c = c.config;
        assert_eq!(c.consent.min_mode, ConsentMode::Explicit);
        assert_eq!(c.transcription.backend, TranscriptionBackend::Deepgram);
        assert_eq!(
            c.policy.webhook_url.as_deref(),
            Some("http://hooks.test/join")
        );
        assert_eq!(c.consent.rules_file, None, "empty leaves it unset");
        assert_eq!(Config::default().policy.settings_file, None);

        let text = Config::load(None, env(&[("HEARKEN_CONSENT_MIN_MODE", "strict")]))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("strict") && text.contains("explicit"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[consent]\ndecline_policy = \"shrug\"\n").unwrap();
        let text = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(
            text.contains("decline_policy") && text.contains("shrug"),
            "{text}"
        );
    }

    #[test]
    fn the_vendor_keeps_nothing_unless_told_otherwise() {
        assert!(Config::default().transcription.deepgram.mip_opt_out);
        let c = Config::load(
            None,
            env(&[("HEARKEN_TRANSCRIPTION_DEEPGRAM_MIP_OPT_OUT", "false")]),
        )
        .unwrap();
        assert!(c.unknown_env.is_empty(), "{:?}", c.unknown_env);
        assert!(!c.config.transcription.deepgram.mip_opt_out);
    }

    #[test]
    fn a_speaker_queue_must_hold_a_whole_commit() {
        let text = Config::load(
            None,
            env(&[("HEARKEN_TRANSCRIPTION_SPEAKER_QUEUE_FRAMES", "2999")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("transcription.speaker_queue_frames") && text.contains("3000"),
            "{text}"
        );
        assert!(
            Config::load(
                None,
                env(&[("HEARKEN_TRANSCRIPTION_SPEAKER_QUEUE_FRAMES", "3000")])
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_prefixed_variables_are_reported() {
        let loaded = Config::load(
            None,
            env(&[("HEARKEN_HTTP_LISTN", "x"), ("HEARKEN_LOG", "debug")]),
        )
        .unwrap();
        assert_eq!(loaded.unknown_env, vec!["HEARKEN_HTTP_LISTN"]);
    }

    #[test]
    fn sip_keys_from_the_environment() {
        let c = Config::load(
            None,
            env(&[
                ("HEARKEN_INGEST_SIP_LISTEN", "127.0.0.1:5060"),
                ("HEARKEN_INGEST_SIP_REALM", "calls.example"),
                ("HEARKEN_INGEST_SIP_ALLOW_FROM", "10.0.0.0/8, ::1"),
                (
                    "HEARKEN_INGEST_SIP_CREDENTIALS",
                    "trunk:SIP_TRUNK_PASSWORD,pbx:PBX_PW",
                ),
            ]),
        )
        .unwrap();
        assert!(c.unknown_env.is_empty(), "{:?}", c.unknown_env);
        let sip = c.config.ingest.sip;
        assert_eq!(
            sip.listen_addr().unwrap(),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(sip.realm, "calls.example");
        assert_eq!(sip.allow_networks().unwrap().len(), 2);
        assert_eq!(
            sip.credential_entries().unwrap(),
            vec![
                ("trunk".to_owned(), "SIP_TRUNK_PASSWORD".to_owned()),
                ("pbx".to_owned(), "PBX_PW".to_owned())
            ]
        );
        let d = Config::default().ingest.sip;
        assert_eq!(d.listen_addr().unwrap(), None, "off by default");
        assert_eq!(d.allow_from, ["127.0.0.1/32"]);
        assert_eq!(d.realm, "hearken");
    }

    #[test]
    fn sip_errors_name_the_key_and_never_echo_a_password() {
        for (var, value, key) in [
            (
                "HEARKEN_INGEST_SIP_LISTEN",
                "port 5060",
                "ingest.sip.listen",
            ),
            (
                "HEARKEN_INGEST_SIP_ALLOW_FROM",
                "10.0.0.0/40",
                "ingest.sip.allow_from",
            ),
            (
                "HEARKEN_INGEST_SIP_CREDENTIALS",
                "trunk",
                "ingest.sip.credentials",
            ),
            ("HEARKEN_INGEST_SIP_REALM", "", "ingest.sip.realm"),
        ] {
            let text = Config::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(text.contains(key), "{var}: {text}");
        }
        let text = Config::load(
            None,
            env(&[("HEARKEN_INGEST_SIP_CREDENTIALS", "trunk:hunter2!")]),
        )
        .unwrap_err()
        .to_string();
        assert!(text.contains("ingest.sip.credentials"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn printed_config_hides_tokens_and_reloads() {
        let mut c = Config::default();
        c.auth.tokens = vec!["secret-one".into()];
        let text = c.to_toml(false);
        assert!(!text.contains("secret-one"));
        let reparsed: Config = toml::from_str(&c.to_toml(true)).unwrap();
        assert_eq!(reparsed, c);
    }

    #[test]
    fn fleet_settings_load_from_the_environment_and_hide_the_password() {
        let loaded = Config::load(
            None,
            env(&[
                (
                    "HEARKEN_CLUSTER_NATS_URL",
                    "nats://10.0.0.5:4222,nats://10.0.0.6:4222",
                ),
                ("HEARKEN_CLUSTER_NODE_ID", "media-1"),
                ("HEARKEN_CLUSTER_ADVERTISED_URL", "http://10.0.0.11:8080"),
                ("HEARKEN_CLUSTER_HEARTBEAT_MS", "250"),
                ("HEARKEN_CLUSTER_DRAIN_TIMEOUT", "900"),
                (
                    "HEARKEN_STORE_POSTGRES_URL",
                    "postgres://hearken:s3cret@10.0.0.9/hearken",
                ),
            ]),
        )
        .unwrap();
        assert!(loaded.unknown_env.is_empty(), "{:?}", loaded.unknown_env);
        let c = loaded.config;
        assert!(c.cluster.enabled() && c.store.enabled());
        assert_eq!(c.cluster.node_id, "media-1");
        assert_eq!(c.cluster.heartbeat(), Duration::from_millis(250));
        assert_eq!(c.cluster.drain_timeout(), Duration::from_secs(900));
        let shown = c.to_toml(false);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://hearken:<redacted>@10.0.0.9/hearken"),
            "{shown}"
        );
        // The defaults run a node alone, with no other service.
        let alone = Config::default();
        assert!(!alone.cluster.enabled() && !alone.store.enabled());
    }

    #[test]
    fn bad_fleet_settings_name_their_key() {
        for (var, value, key) in [
            (
                "HEARKEN_CLUSTER_NATS_URL",
                "http://10.0.0.5:4222",
                "cluster.nats_url",
            ),
            ("HEARKEN_CLUSTER_NODE_ID", "media 1", "cluster.node_id"),
            (
                "HEARKEN_CLUSTER_ADVERTISED_URL",
                "10.0.0.11:8080",
                "cluster.advertised_url",
            ),
            ("HEARKEN_CLUSTER_HEARTBEAT_MS", "10", "cluster.heartbeat_ms"),
            (
                "HEARKEN_STORE_POSTGRES_URL",
                "mysql://db/hearken",
                "store.postgres_url",
            ),
        ] {
            let text = Config::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(text.contains(key), "{var}={value}: {text}");
        }
    }
}
