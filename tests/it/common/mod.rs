//! Shared test helpers: a real server on loopback, an independent WHIP client
//! built on str0m (full ICE, the client side), and Ogg Opus decoding with
//! libopus to check what was recorded.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearken::config::{Config, TranscriptionBackend};
use hearken::server::{RunningServer, Secrets, start_with_secrets};

use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};

/// The development token the default config accepts.
pub const TOKEN: &str = "hearken-dev";

/// A server running in this process, with its own data directory.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub http: SocketAddr,
    pub data_dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts a server on loopback with OS-chosen ports.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting the test adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_secrets(adjust, Secrets::from_pairs([])).await
    }

    /// Starts a server with `secrets` as its environment for secrets.
    pub async fn start_with_secrets(adjust: impl FnOnce(&mut Config), secrets: Secrets) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.storage.data_dir = data_dir.path().to_owned();
        config.media.port_base = 0;
        config.media.workers = 2;
        // Media-spine tests: a participant who cannot hear the bot (sendonly)
        // counts as notified at once, and no grace period is waited for.
        // Consent tests set their own.
        config.consent.grace_period_ms = 0;
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind http");
        let server = start_with_secrets(config, listener, std::future::pending(), secrets)
            .await
            .expect("server starts");
        let http = server.http_addr;
        Self {
            server: Some(server),
            http,
            data_dir,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn call_dir(&self, call_id: &str) -> PathBuf {
        self.data_dir.path().join("calls").join(call_id)
    }

    /// `POST /whip/{call_id}` with an SDP body.
    pub async fn post_offer(&self, call_id: &str, sdp: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/whip/{call_id}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/sdp")
            .body(sdp.to_owned())
            .send()
            .await
            .expect("http")
    }

    pub async fn delete(&self, location: &str) -> reqwest::Response {
        self.client
            .delete(self.url(location))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("http")
    }

    pub async fn call_json(&self, call_id: &str) -> serde_json::Value {
        request_json(self, reqwest::Method::GET, &format!("/v1/calls/{call_id}")).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("http")
            .text()
            .await
            .expect("text")
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Sum of a counter in Prometheus text (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Opus packets of an Ogg Opus file (headers skipped).
pub fn read_opus_packets(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::File::open(path).expect("open ogg");
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut packets = Vec::new();
    let mut index = 0;
    while let Ok(Some(p)) = reader.read_packet() {
        if index >= 2 {
            packets.push(p.data);
        }
        index += 1;
    }
    packets
}

/// The repository's test speech clips.
pub fn speech(name: &str) -> Vec<Vec<u8>> {
    read_opus_packets(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("media/test")
            .join(name),
    )
}

/// A decoded recording: mono 48 kHz samples after pre-skip, plus facts.
pub struct Decoded {
    pub samples: Vec<i16>,
    pub pre_skip: usize,
    pub pages_with_eos: usize,
}

impl Decoded {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / 48_000.0
    }

    /// RMS of `[from, to)` seconds.
    pub fn rms(&self, from: f64, to: f64) -> f64 {
        let a = ((from * 48_000.0) as usize).min(self.samples.len());
        let b = ((to * 48_000.0) as usize).min(self.samples.len());
        if b <= a {
            return 0.0;
        }
        let sum: f64 = self.samples[a..b]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum();
        (sum / (b - a) as f64).sqrt()
    }

    /// Seconds of 20 ms windows louder than `threshold` RMS.
    pub fn voiced_seconds(&self, threshold: f64) -> f64 {
        self.samples
            .chunks(960)
            .filter(|c| {
                let sum: f64 = c.iter().map(|&s| f64::from(s).powi(2)).sum();
                (sum / c.len() as f64).sqrt() > threshold
            })
            .count() as f64
            * 0.02
    }

    /// Time of the first 20 ms window louder than `threshold` RMS.
    pub fn onset(&self, threshold: f64) -> Option<f64> {
        self.samples
            .chunks(960)
            .position(|c| {
                let sum: f64 = c.iter().map(|&s| f64::from(s).powi(2)).sum();
                (sum / c.len() as f64).sqrt() > threshold
            })
            .map(|i| i as f64 * 0.02)
    }
}

/// Number of Ogg pages with the EOS flag, walking page headers (RFC 3533 §6).
pub fn eos_pages(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut eos = 0;
    while at + 27 <= bytes.len() && &bytes[at..at + 4] == b"OggS" {
        let segments = usize::from(bytes[at + 26]);
        let lacing = &bytes[at + 27..(at + 27 + segments).min(bytes.len())];
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        if bytes[at + 5] & 0x04 != 0 {
            eos += 1;
        }
        at += 27 + segments + body;
    }
    assert_eq!(at, bytes.len(), "the file is a sequence of whole pages");
    eos
}

/// Decodes an Ogg Opus file with the `ogg` crate and libopus.
pub fn decode_ogg_opus(path: &Path) -> Decoded {
    let file = std::fs::File::open(path).expect("open recording");
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 5760];
    let mut pre_skip = 0;
    let mut index = 0;
    let mut eos = 0;
    while let Ok(Some(p)) = reader.read_packet() {
        if p.last_in_stream() {
            eos += 1;
        }
        if index == 0 {
            assert_eq!(&p.data[..8], b"OpusHead");
            pre_skip = usize::from(u16::from_le_bytes([p.data[10], p.data[11]]));
        } else if index >= 2 {
            let n = decoder.decode(&p.data, &mut buf, false).expect("decode");
            pcm.extend_from_slice(&buf[..n]);
        }
        index += 1;
    }
    let samples = pcm.split_off(pre_skip.min(pcm.len()));
    let _ = eos;
    Decoded {
        samples,
        pre_skip,
        pages_with_eos: eos_pages(&std::fs::read(path).expect("read recording")),
    }
}

/// One outgoing audio stream of the test client.
pub struct Outgoing {
    pub stream_id: String,
    pub packets: Vec<Vec<u8>>,
    /// Start sending this long after the session connected.
    pub start_after: Duration,
}

/// An independent WHIP client: str0m in the client role (full ICE,
/// controlling, DTLS active) on its own UDP socket.
pub struct WhipClient {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub mids: Vec<Mid>,
    pub location: String,
    pub etag: Option<String>,
    /// Opus packets the bot sent us, with arrival time after connect.
    pub received: Vec<(Duration, Vec<u8>)>,
    /// When the session connected.
    pub connected_at: Option<Instant>,
    /// Per stream (by index), the RTP audio level (RFC 6464, -dBov) to send
    /// with each packet, cycled; none means no audio-level extension.
    pub audio_levels: Vec<Option<Vec<i8>>>,
}

/// An offer with one audio m-line per stream id (the test kit's client, at
/// a throwaway address): for tests that only POST it.
pub fn offer_sdp(stream_ids: &[&str], direction: Direction) -> String {
    let (_offer, sdp) = whip_offer(stream_ids, direction, "127.0.0.1:9".parse().expect("addr"));
    sdp
}

fn whip_offer(
    stream_ids: &[&str],
    direction: Direction,
    local: SocketAddr,
) -> (hearken_testkit::WhipOffer, String) {
    let tracks: Vec<hearken_testkit::Track> = stream_ids
        .iter()
        .map(|id| hearken_testkit::Track {
            stream_id: (*id).to_owned(),
            direction,
        })
        .collect();
    hearken_testkit::WhipOffer::new(local, &tracks, Instant::now()).expect("offer")
}

impl WhipClient {
    /// POSTs an offer for `stream_ids` and applies the answer.
    pub async fn connect(server: &TestServer, call_id: &str, stream_ids: &[&str]) -> Self {
        Self::connect_with(server, call_id, stream_ids, |sdp| sdp).await
    }

    /// Like [`Self::connect`], letting the test rewrite the offer's text
    /// (e.g. to put a hostile msid in it) before it is POSTed.
    pub async fn connect_with(
        server: &TestServer,
        call_id: &str,
        stream_ids: &[&str],
        rewrite: impl FnOnce(String) -> String,
    ) -> Self {
        Self::connect_dir(server, call_id, stream_ids, Direction::SendOnly, rewrite).await
    }

    /// Like [`Self::connect_with`], with the m-lines' direction.
    pub async fn connect_dir(
        server: &TestServer,
        call_id: &str,
        stream_ids: &[&str],
        direction: Direction,
        rewrite: impl FnOnce(String) -> String,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let local = socket.local_addr().expect("addr");
        let (offer, sdp) = whip_offer(stream_ids, direction, local);
        let response = server.post_offer(call_id, &rewrite(sdp)).await;
        assert_eq!(response.status(), 201, "WHIP POST answered");
        let location = response
            .headers()
            .get("location")
            .expect("Location")
            .to_str()
            .expect("ascii")
            .to_owned();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let answer = response.text().await.expect("answer");
        let client = offer.accept(&answer).expect("answer accepted");
        let (rtc, mids) = (client.rtc, client.mids);
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            rtc,
            socket,
            local,
            mids,
            location,
            etag,
            received: Vec::new(),
            connected_at: None,
            audio_levels: Vec::new(),
        }
    }

    /// Runs the client until every stream has been sent (20 ms pacing, real
    /// time), then keeps the session up for `linger`. Blocking: call from
    /// `spawn_blocking`.
    pub fn run(self, streams: Vec<Outgoing>, linger: Duration) -> Self {
        self.run_with_dtmf(streams, linger, Vec::new())
    }

    /// Like [`Self::run`], also pressing DTMF keys (RFC 4733 event codes) on
    /// the first m-line at the given times after connecting.
    pub fn run_with_dtmf(
        mut self,
        streams: Vec<Outgoing>,
        linger: Duration,
        mut dtmf: Vec<(Duration, u8)>,
    ) -> Self {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut connected_at: Option<Instant> = None;
        let mut sent = vec![0usize; streams.len()];
        let mut rtp_time = vec![0u64; streams.len()];
        let mut next_send = vec![None::<Instant>; streams.len()];
        let mut buf = vec![0u8; 2000];
        loop {
            let now = Instant::now();
            assert!(now < deadline, "client did not finish in time");
            // Drain output.
            let timeout = loop {
                match self.rtc.poll_output().expect("client rtc") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::Connected) => {
                        connected_at = Some(Instant::now());
                        self.connected_at = connected_at;
                    }
                    Output::Event(Event::MediaData(data)) => {
                        if let Some(at) = connected_at {
                            self.received.push((at.elapsed(), data.data.to_vec()));
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            if let Some(at) = connected_at {
                if let Some(&(when, key)) = dtmf.first()
                    && now >= at + when
                {
                    dtmf.remove(0);
                    let mid = self.mids[0];
                    let Some(writer) = self.rtc.writer(mid) else {
                        // The server ended the session.
                        return self;
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .expect("opus negotiated")
                        .pt();
                    let ts = MediaTime::new(rtp_time[0], Frequency::FORTY_EIGHT_KHZ);
                    writer
                        .telephone_event(str0m::media::TelephoneEvent {
                            event: key,
                            end: true,
                            volume: 10,
                            duration: Duration::from_millis(120),
                        })
                        .write(pt, now, ts, Vec::new())
                        .expect("dtmf write");
                    continue_after_write(&mut self.rtc, &self.socket);
                }
                let done = streams
                    .iter()
                    .enumerate()
                    .all(|(i, s)| sent[i] >= s.packets.len());
                if done && now >= at + linger {
                    let last_start = streams
                        .iter()
                        .map(|s| s.start_after)
                        .max()
                        .unwrap_or_default();
                    if now >= at + last_start + linger {
                        return self;
                    }
                }
                for (i, stream) in streams.iter().enumerate() {
                    if sent[i] >= stream.packets.len() {
                        continue;
                    }
                    let due = *next_send[i].get_or_insert(at + stream.start_after);
                    if now < due {
                        continue;
                    }
                    let packet = &stream.packets[sent[i]];
                    let samples = u64::from(
                        hearken_core::opus::packet_samples(packet).expect("valid packet"),
                    );
                    let mid = self.mids[i];
                    let Some(mut writer) = self.rtc.writer(mid) else {
                        // The server ended the session.
                        return self;
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .expect("opus negotiated")
                        .pt();
                    if let Some(Some(levels)) = self.audio_levels.get(i) {
                        let level = levels[sent[i] % levels.len()];
                        writer = writer.audio_level(level, level > -60);
                    }
                    writer
                        .write(
                            pt,
                            now,
                            MediaTime::new(rtp_time[i], Frequency::FORTY_EIGHT_KHZ),
                            packet.clone(),
                        )
                        .expect("write");
                    rtp_time[i] += samples;
                    sent[i] += 1;
                    next_send[i] = Some(due + Duration::from_micros(samples * 1_000_000 / 48_000));
                }
                // Written media must be drained before the next input.
                continue_after_write(&mut self.rtc, &self.socket);
            }
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.socket.set_read_timeout(Some(wait)).expect("timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                        let _ = self.rtc.handle_input(Input::Receive(Instant::now(), r));
                    }
                }
                Err(_) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }
}

fn continue_after_write(rtc: &mut Rtc, socket: &UdpSocket) {
    loop {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Timeout(_)) | Err(_) => break,
            Ok(Output::Event(_)) => {}
        }
    }
}

/// Shared handle for moving a client into `spawn_blocking` and back.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;

/// A server transcribing through `fake` (its API key handed to the server
/// as the secret `key_var` names).
pub async fn transcribing_server(
    fake: &hearken_fake_deepgram::FakeDeepgram,
    key_var: &str,
    adjust: impl FnOnce(&mut Config),
) -> TestServer {
    let url = fake.url();
    let var = key_var.to_owned();
    let key = fake.api_key();
    TestServer::start_with_secrets(
        move |c| {
            c.transcription.backend = TranscriptionBackend::Deepgram;
            c.transcription.deepgram.url = url;
            c.transcription.deepgram.api_key_env = var;
            adjust(c);
        },
        Secrets::from_pairs([(key_var, key)]),
    )
    .await
}

/// `GET /v1/calls/{call}/transcript` as JSON.
pub async fn transcript(server: &TestServer, call: &str) -> serde_json::Value {
    get_json(server, &format!("/v1/calls/{call}/transcript")).await
}

/// All words of one participant, sorted: (start, end, word).
pub fn words_of(transcript: &serde_json::Value, participant: &str) -> Vec<(f64, f64, String)> {
    let mut words: Vec<(f64, f64, String)> = transcript["segments"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|s| s["participant_id"] == participant)
        .flat_map(|s| s["words"].as_array().cloned().unwrap_or_default())
        .map(|w| {
            (
                w["start"].as_f64().unwrap_or(0.0),
                w["end"].as_f64().unwrap_or(0.0),
                w["word"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    words.sort_by(|a, b| a.0.total_cmp(&b.0));
    words
}

/// `GET /v1/calls/{call}/consent`: the consent audit log.
pub async fn consent_log(server: &TestServer, call: &str) -> serde_json::Value {
    get_json(server, &format!("/v1/calls/{call}/consent")).await
}

/// An authorized `GET` of a JSON resource.
pub async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    request_json(server, reqwest::Method::GET, path).await
}

/// An authorized `POST` with no body, answered with JSON.
pub async fn post_empty(server: &TestServer, path: &str) -> serde_json::Value {
    request_json(server, reqwest::Method::POST, path).await
}

/// An authorized request with no body, answered with JSON.
pub async fn request_json(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
) -> serde_json::Value {
    server
        .client
        .request(method, server.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json")
}
