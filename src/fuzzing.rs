//! One entry point per fuzz target: each feeds outside bytes to the parser
//! production runs on them, the way production calls it, and ignores the
//! result. Only a panic (or a hang) is a finding.
//!
//! This module exists so that the fuzzers (`fuzz/`, one AFL binary per
//! target) and the test that replays their corpus (`tests/it/fuzz_corpus.rs`)
//! drive exactly the same code: the production parsers, not copies of them.
//! [`TARGETS`] lists them by the name of their corpus directory
//! (`fuzz/corpus/{name}/`).
//!
//! The engine targets ([`datagram`], [`rtp`], and [`sdp_offer`]'s answer)
//! run the sans-IO [`Engine`] the worker runs, with no socket and a clock
//! that moves only as the input says. The engine contains a panic in a call's
//! handling (it ends that call); these entry points turn such a panic back
//! into one of their own, so a contained bug is still a finding.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hearken_core::consent::rules::Rules;
use hearken_core::dtmf::{DtmfAssembler, DtmfConfig};
use hearken_core::ids::CallId;
use hearken_core::offer::OfferSummary;
use hearken_core::roq::{self, StreamEvent, StreamReader};
use hearken_core::rtp::RtpExtender;
use hearken_policy::{Calendar, Settings, SettingsFormat, Window, decide};
use str0m::ice::StunMessage;

use crate::config::ConsentConfig;
use crate::control::meetings::Meetings;
use crate::ingest::sip::sdp as sip_sdp;
use crate::media::command::{CreateNative, CreateSip, SipDirection, SipMedia};
use crate::media::transcode::WireCodec;
use crate::media::{Command, CreateSession, Engine, EngineSettings, NativeFlow, Reply};
use crate::metrics::{MediaMetrics, Metrics};
use crate::setup::consent::ConsentSetup;

/// A fuzz target: its name (the corpus directory) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, by the name of its corpus directory.
pub const TARGETS: &[Target] = &[
    ("sdp_offer", sdp_offer),
    ("datagram", datagram),
    ("rtp", rtp),
    ("dtmf", dtmf),
    ("roq", roq),
    ("icalendar", icalendar),
    ("meetings_json", meetings_json),
    ("consent_rules", consent_rules),
    ("ogg", ogg),
    ("srtp_in", srtp_in),
];

/// The entry point of the target named `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// A WHIP offer (`POST /whip/{call}`) and a SIP INVITE's SDP: what the HTTP
/// handler reads of it ([`OfferSummary::scan`]), then the engine's answer
/// (str0m parses and negotiates it); and the SIP dial-in's own SDP parser,
/// negotiation and answer.
pub fn sdp_offer(data: &[u8]) {
    // Both ingests refuse a body that is not UTF-8 before any parser sees it.
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(offer) = sip_sdp::parse(sdp)
        && let Ok(negotiated) = sip_sdp::negotiate(&offer)
    {
        let origin = sip_sdp::Origin {
            session_id: 1,
            version: 1,
        };
        let _ = sip_sdp::answer(&offer, &negotiated, SERVER, origin);
        let _ = sip_sdp::accept_answer(&offer);
    }
    let Ok(summary) = OfferSummary::scan(sdp) else {
        return;
    };
    if summary.require_audio().is_err() {
        return;
    }
    let mut node = Node::new();
    drop(node.create_whip(sdp, summary));
    node.finish();
}

/// Datagrams on a worker's UDP socket ([`Engine::handle_datagram`]): the
/// routing (a SIP caller's address, the address cache, a STUN request's
/// ufrag, a NATed caller latched by IP) and what the routed session does
/// with them, with one WHIP session (not connected), one SIP dialog and a
/// SIP dialog behind NAT waiting for its first packet.
///
/// The input is a list of records `[source, milliseconds, length, bytes…]`:
/// `source` picks the sender (the WHIP client, the SIP caller, the NATed
/// caller's public address, or an address nobody knows), `milliseconds` moves
/// the clock first (timers run), `length` bytes follow (fewer at the end).
///
/// A STUN binding request from the WHIP client whose `source` has bit 2 set
/// ([`SIGNED`]) goes out as the real client would send it: named to the
/// session's ufrag and signed with its password, which the input cannot
/// know (both are random), keeping the request's transaction id, priority,
/// role and USE-CANDIDATE. Without it no check would ever reach the
/// session, and nothing after ICE would be fuzzed.
pub fn datagram(data: &[u8]) {
    const SOURCES: [SocketAddr; 4] = [WHIP_CLIENT, SIP_CALLER, NAT_PUBLIC, STRANGER];
    let mut node = Node::new();
    // The shortest real offer of the fixtures: str0m's parse of the offer is
    // a third of this target's time, and what is fuzzed here comes after.
    let offer = include_str!("../tests/fixtures/sdp/werift-audio-sendonly.sdp");
    let summary = OfferSummary::scan(offer).expect("the fixture offer is valid");
    let reply = node.create_whip(offer, summary);
    let Reply::Answer(Ok(answer)) = &reply else {
        panic!("no answer to the fixture offer: {reply:?}");
    };
    let client = ClientChecks::new(offer, answer).expect("ICE credentials in the offer and answer");
    node.create_sip("sip", SIP_CALLER, None, WireCodec::Pcmu, 0);
    node.create_sip(
        "sip-nat",
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 4000),
        Some(NAT_PUBLIC.ip()),
        WireCodec::Pcma,
        8,
    );
    for record in Records::new(data) {
        node.advance(record.millis);
        let source = SOURCES[usize::from(record.selector) % SOURCES.len()];
        let signed = (source == WHIP_CLIENT && record.selector & SIGNED != 0)
            .then(|| client.sign(record.bytes))
            .flatten();
        let bytes = signed.as_deref().unwrap_or(record.bytes);
        node.engine.handle_datagram(node.now, source, bytes);
        node.drain();
    }
    node.finish();
}

/// The bit of a [`datagram`] record's `source` that has the WHIP client's
/// binding requests signed as the real client would sign them.
pub const SIGNED: u8 = 4;

/// What a WHIP client knows that a fuzzer cannot guess: the USERNAME of its
/// connectivity checks (the session's ufrag, then its own) and the
/// session's password, from the offer and the answer.
struct ClientChecks {
    username: String,
    password: String,
}

impl ClientChecks {
    fn new(offer: &str, answer: &str) -> Option<Self> {
        let attribute = |sdp: &str, name: &str| {
            sdp.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
                .map(str::to_owned)
        };
        let session_ufrag = attribute(answer, "a=ice-ufrag")?;
        let client_ufrag = attribute(offer, "a=ice-ufrag")?;
        Some(Self {
            username: format!("{session_ufrag}:{client_ufrag}"),
            password: attribute(answer, "a=ice-pwd")?,
        })
    }

    /// `bytes` as the client would send them, if they are a binding
    /// request; `None` otherwise (they go as they are).
    fn sign(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let request = StunMessage::parse(bytes)
            .ok()
            .filter(StunMessage::is_binding_request)?;
        let (controlling, tie_breaker) = match (request.ice_controlling(), request.ice_controlled())
        {
            (Some(t), _) => (true, t),
            (None, Some(t)) => (false, t),
            (None, None) => (true, 0),
        };
        let check = StunMessage::binding_request(
            &self.username,
            request.trans_id(),
            controlling,
            tie_breaker,
            request.prio().unwrap_or(0),
            request.use_candidate(),
        );
        let mut out = vec![0; 512];
        let len = check
            .to_bytes(Some(self.password.as_bytes()), &mut out, hmac_sha1)
            .ok()?;
        out.truncate(len);
        Some(out)
    }
}

/// HMAC-SHA1 over `parts` (STUN's MESSAGE-INTEGRITY) from the crypto
/// provider every session is built with: the harness signs with what str0m
/// verifies with.
fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    crate::media::dtls::provider()
        .sha1_hmac_provider
        .sha1_hmac(key, parts)
}

/// Plain RTP and RTCP as the engine reads them itself (WHIP's SRTP is
/// [`srtp_in`]'s): native flows ([`Engine::handle_native`]) of every codec,
/// with RFC 4733 events, and a SIP dialog's datagrams. Each packet goes
/// through `PlainSpeaker` (RTP parsed, numbers extended, G.711/G.722 made
/// into Opus, DTMF), the reordering, the conference's timeline and the
/// consent gate.
///
/// The input is a list of records `[flow, milliseconds, length, bytes…]` as
/// for [`datagram`]; `flow` picks one of the native flows or the SIP dialog.
///
/// The SIP dialog speaks PCMU: its caller hears the consent prompt, and
/// encoding that fixed audio as G.722 (none of it from the input) was a
/// fifth of this target's time. The native G.722 flow reads G.722 input.
pub fn rtp(data: &[u8]) {
    let mut node = Node::new();
    let flows: Vec<NativeFlow> = [
        (WireCodec::Opus, 111),
        (WireCodec::Pcmu, 0),
        (WireCodec::Pcma, 8),
        (WireCodec::G722, 9),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (codec, payload_type))| NativeFlow {
        flow_id: i as u64,
        participant_id: format!("p{i}"),
        codec,
        payload_type,
        dtmf_payload_type: Some(101),
    })
    .collect();
    let reply = node.engine.handle_command(
        node.now,
        Command::CreateNative(Box::new(CreateNative {
            call_id: call_id("native"),
            secret: "native-secret".to_owned(),
            public_id: "n1".to_owned(),
            flows: flows.clone(),
            early_inputs: Vec::new(),
            resume: None,
        })),
    );
    let Reply::Native(Ok(session)) = reply else {
        panic!("no native session: {reply:?}");
    };
    node.create_sip("sip", SIP_CALLER, None, WireCodec::Pcmu, 0);
    for record in Records::new(data) {
        node.advance(record.millis);
        let pick = usize::from(record.selector) % (flows.len() + 1);
        match flows.get(pick) {
            Some(flow) => node.engine.handle_native(
                node.now,
                crate::media::NativeMedia {
                    session,
                    flow_id: flow.flow_id,
                    packet: bytes::Bytes::copy_from_slice(record.bytes),
                    arrival: node.now,
                },
            ),
            None => node
                .engine
                .handle_datagram(node.now, SIP_CALLER, record.bytes),
        }
        node.drain();
    }
    node.finish();
}

/// RFC 4733 telephone events of one stream, assembled into key presses by
/// [`DtmfAssembler`] as the engine feeds it: the RTP timestamp extended,
/// the payload's event, E bit and duration (8 kHz clock), then the
/// assembler's timeouts as they fall due.
///
/// The input is a list of 9-byte records: RTP timestamp (4), RFC 4733
/// payload (4), milliseconds since the last packet (1).
pub fn dtmf(data: &[u8]) {
    const CLOCK: f64 = 8_000.0;
    let mut assembler = DtmfAssembler::new(DtmfConfig::default());
    let mut timestamps = RtpExtender::default();
    let mut now = Instant::now();
    for record in data.chunks_exact(9) {
        now += Duration::from_millis(u64::from(record[8]));
        while assembler.poll_timeout().is_some_and(|t| t <= now) {
            if assembler.handle_timeout(now).is_none() {
                break;
            }
        }
        let start = timestamps.extend_timestamp(u32::from_be_bytes([
            record[0], record[1], record[2], record[3],
        ]));
        let payload = &record[4..8];
        let duration = u16::from_be_bytes([payload[2], payload[3]]);
        let _ = assembler.handle_packet(
            start,
            payload[0],
            payload[1] & 0x80 != 0,
            Duration::from_secs_f64(f64::from(duration) / CLOCK),
            now,
        );
    }
    // Whatever is still open ends by its timeout.
    let later = now + Duration::from_secs(10);
    for _ in 0..1_000 {
        if assembler.handle_timeout(later).is_none() {
            break;
        }
    }
}

/// RTP over QUIC framing as the QUIC task reads it: the bytes as a DATAGRAM
/// ([`roq::parse_datagram`]) and as a unidirectional stream
/// ([`StreamReader`]), whole and in chunks. The first byte sets the chunk
/// size; reading in chunks must give the same packets as reading whole.
pub fn roq(data: &[u8]) {
    // What `ingest/quic.rs` accepts as the longest RTP packet of a stream.
    const MAX_PACKET: usize = 1500;
    let _ = roq::parse_datagram(data);
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let whole = read_stream(stream, stream.len().max(1), MAX_PACKET);
    let chunked = read_stream(stream, usize::from(chunk % 16) + 1, MAX_PACKET);
    assert_eq!(whole, chunked, "a stream reads the same in any chunks");
}

/// What a [`StreamReader`] makes of `stream` fed in `chunk`-byte pieces:
/// its events, then how it ended.
fn read_stream(stream: &[u8], chunk: usize, max_packet: usize) -> (Vec<String>, String) {
    let mut reader = StreamReader::new(max_packet);
    let mut events = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        loop {
            match reader.read(&mut input) {
                Ok(Some(StreamEvent::Flow(flow))) => events.push(format!("flow {}", flow.value())),
                Ok(Some(StreamEvent::Packet(p))) => events.push(format!("packet {p:?}")),
                Ok(None) => break,
                Err(e) => return (events, format!("error {e}")),
            }
            assert!(reader.buffered() <= max_packet + 8, "the reader is bounded");
        }
    }
    (events, format!("{:?}", reader.finish()))
}

/// An iCalendar file as `hearken policy explain` reads it: parsed, then
/// expanded (RRULE, RDATE, EXDATE, time zones) over a window of a year, and
/// each meeting decided by company settings.
pub fn icalendar(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let calendar = Calendar::parse(&text);
    let _ = calendar.first_start();
    let window = Window {
        from: utc("2025-01-01T00:00:00Z"),
        to: utc("2026-01-01T00:00:00Z"),
    };
    let (meetings, _errors) = calendar.expand(&window);
    for meeting in &meetings {
        let _ = decide(meeting, &SETTINGS);
        let _ = Meetings::call_id_for(meeting, None);
    }
}

/// A meeting pushed by a provider (`POST /v1/meetings`), as its handler
/// reads it: JSON checked, the meeting read, its call id made and the
/// meeting decided; and the same text as a list (`hearken policy explain`).
pub fn meetings_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (list, _errors) = hearken_policy::meetings_from_json(text);
    for meeting in &list {
        let _ = decide(meeting, &SETTINGS);
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return;
    }
    let Ok(meeting) = hearken_policy::meeting_from_json(text) else {
        return;
    };
    let _ = Meetings::call_id_for(&meeting, None);
    let _ = decide(&meeting, &SETTINGS);
    let _ = serde_json::to_string(&meeting);
}

/// A consent rules file (`consent.rules_file`, YAML), parsed and validated
/// as at start, then asked what `hearken consent explain` asks of it.
pub fn consent_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = Rules::parse(text) else {
        return;
    };
    let _ = rules.default_unknown();
    let _ = rules.low_confidence_location();
    for code in ["US", "US-CA", "DE", "GB", "ZZ"] {
        let location = hearken_core::consent::rules::Location::from_code(code).ok();
        let _ = rules.resolve(location.as_ref());
        let _ = rules.varies_by_subdivision(code);
        let _ = rules.group_of(code);
    }
    for jurisdiction in rules.jurisdictions() {
        let _ = rules.group_members(&jurisdiction.code);
    }
}

/// SRTP as the engine decrypts it itself for connected WHIP sessions
/// ([`SrtpReceiver::unprotect`]): the header's length, the packet index,
/// the replay window over a run of packets, the tag; then what it reads of
/// a packet that authenticated, which a peer holding the keys controls: the
/// padding ([`strip_padding`]), the RFC 8285 header extensions
/// ([`header_extension`]) and an RFC 4733 event's payload.
///
/// The input: one byte that picks the profile (its value mod 3) and our
/// DTLS role (bit 7), two bytes of the stream's starting index (shifted
/// left by 8), then records `[length, bytes…]` (fewer at the end), each
/// one datagram of the stream's SSRC, `0xcafebabe`. A receiver with fixed
/// keys takes each as a packet, then the same bytes are read as a clear
/// packet.
pub fn srtp_in(data: &[u8]) {
    use crate::media::session::{crypto, header_extension};
    use crate::media::srtp_in::{SrtpKeying, SrtpReceiver, header_len, strip_padding};
    use str0m::crypto::dtls::SrtpProfile;
    use str0m::media::{Frequency, TelephoneEvent};

    let [pick, hi, lo, rest @ ..] = data else {
        return;
    };
    let profile = [
        SrtpProfile::AES128_CM_SHA1_80,
        SrtpProfile::AEAD_AES_128_GCM,
        SrtpProfile::AEAD_AES_256_GCM,
    ][usize::from(pick % 3)];
    let keying = SrtpKeying {
        profile,
        material: vec![0x5a; profile.keying_material_len()],
        active: pick & 0x80 != 0,
    };
    let Some(mut receiver) = SrtpReceiver::new(crypto(), &keying) else {
        return;
    };
    receiver.add_stream(0xcafe_babe, u64::from(u16::from_be_bytes([*hi, *lo])) << 8);
    let mut plain = Vec::new();
    let mut rest = rest;
    while let Some((&len, tail)) = rest.split_first() {
        let (packet, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        if receiver.claims(packet).is_some() {
            let _ = receiver.unprotect(packet, &mut plain);
        }
        if let Some(header) = header_len(packet) {
            let _ = header_extension(&packet[..header], pick & 0x0f);
            let mut clear = packet.to_vec();
            if strip_padding(&mut clear, header).is_ok() {
                let _ = TelephoneEvent::parse(&clear[header..], Frequency::FORTY_EIGHT_KHZ);
            }
        }
    }
}

/// An Ogg Opus file as crash recovery, the post-call work and the share
/// links read one (a track cut short by a crash, a mix on disk): its whole
/// pages and the page that would end it ([`hearken_core::ogg::scan_pages`]),
/// its length ([`hearken_mix::duration_seconds`]) and a cut of it
/// ([`hearken_mix::cut`]), which reads every page and packet.
pub fn ogg(data: &[u8]) {
    // What crash recovery reads of a recording a crash cut short: the page
    // walk must stop where the whole pages end, and the page that ends the
    // stream must keep what it closes readable.
    let scan = hearken_core::ogg::scan_pages(data);
    assert!(scan.whole_len <= data.len());
    if let Some(page) = hearken_core::ogg::end_of_stream_page(&scan) {
        let mut ended = data[..scan.whole_len].to_vec();
        ended.extend_from_slice(&page);
        let rescan = hearken_core::ogg::scan_pages(&ended);
        assert_eq!(rescan.whole_len, ended.len());
        assert!(rescan.eos);
    }
    let _ = hearken_mix::duration_seconds(data);
    let mut out = Vec::new();
    let _ = hearken_mix::cut(data, 0.0, 1.0e6, &mut out);
    out.clear();
    let _ = hearken_mix::cut(data, 0.5, 1.5, &mut out);
}

// ---------------------------------------------------------------------------

/// The engine's socket address (every session's local candidate).
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 3478));
/// The WHIP client's address: the host candidate of the fixture offer.
const WHIP_CLIENT: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 33512));
/// A SIP caller whose RTP comes from the address its SDP names.
const SIP_CALLER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 4000));
/// A SIP caller behind NAT: its public address (its SDP names a private one).
const NAT_PUBLIC: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 5555));
/// An address no session knows.
const STRANGER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 9999));

/// The consent setup of a node with the default configuration (built-in
/// rules and prompts), made once: every engine of a process shares it, as
/// the workers of a node do.
static CONSENT: LazyLock<Arc<ConsentSetup>> = LazyLock::new(|| {
    Arc::new(crate::setup::consent::setup(&ConsentConfig::default()).expect("default consent"))
});

/// Company settings for deciding meetings: the policy fixtures'.
static SETTINGS: LazyLock<Settings> = LazyLock::new(|| {
    Settings::parse(
        include_str!("../tests/fixtures/policy/settings.toml"),
        SettingsFormat::Toml,
    )
    .expect("the fixture settings are valid")
});

thread_local! {
    /// This thread's media metrics: made once (a registry is not cheap),
    /// and per thread so that counting panics is not confused by another
    /// thread's engine.
    static METRICS: RefCell<Option<MediaMetrics>> = const { RefCell::new(None) };
}

fn media_metrics() -> MediaMetrics {
    METRICS.with(|m| {
        m.borrow_mut()
            .get_or_insert_with(|| Metrics::new().media())
            .clone()
    })
}

fn call_id(text: &str) -> CallId {
    CallId::parse(text).expect("a valid call id")
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a valid time")
        .with_timezone(&Utc)
}

/// One engine and its clock, for one input.
struct Node {
    engine: Engine,
    now: Instant,
    metrics: MediaMetrics,
    panics_before: u64,
}

impl Node {
    fn new() -> Self {
        let now = Instant::now();
        let metrics = media_metrics();
        let panics_before = metrics.call_panics.get();
        let engine = Engine::new(
            EngineSettings {
                local_addr: SERVER,
                connect_timeout: Duration::from_secs(10),
                inactivity_timeout: Duration::from_secs(10),
                rtp_idle_timeout: Duration::from_secs(10),
                ufrag_prefix: None,
            },
            Arc::clone(&CONSENT),
            metrics.clone(),
            now,
            utc("2026-01-01T00:00:00Z"),
        );
        Self {
            engine,
            now,
            metrics,
            panics_before,
        }
    }

    /// The WHIP session of call `whip` for `offer`; the engine's reply.
    fn create_whip(&mut self, offer: &str, summary: OfferSummary) -> Reply {
        self.engine.handle_command(
            self.now,
            Command::CreateSession(Box::new(CreateSession {
                call_id: call_id("whip"),
                secret: "whip-secret".to_owned(),
                public_id: "s1".to_owned(),
                offer_sdp: offer.to_owned(),
                summary,
                early_inputs: Vec::new(),
                resume: None,
            })),
        )
    }

    /// A SIP dialog whose caller sends `codec` as `payload_type` (and RFC
    /// 4733 events as 101) from `remote_rtp`.
    fn create_sip(
        &mut self,
        name: &str,
        remote_rtp: SocketAddr,
        signalling_ip: Option<IpAddr>,
        codec: WireCodec,
        payload_type: u8,
    ) {
        let reply = self.engine.handle_command(
            self.now,
            Command::CreateSip(Box::new(CreateSip {
                call_id: call_id(name),
                secret: format!("{name}-secret"),
                public_id: name.to_owned(),
                participant_id: "caller".to_owned(),
                media: Some(SipMedia {
                    remote_rtp,
                    codec,
                    payload_type,
                    dtmf_payload_type: Some(101),
                    direction: SipDirection::SendRecv,
                }),
                signalling_ip,
                early_inputs: Vec::new(),
                resume: None,
            })),
        );
        assert!(matches!(reply, Reply::Sip(Ok(_))), "{reply:?}");
        self.drain();
    }

    /// Moves the clock `millis` on and runs the timers that fell due.
    fn advance(&mut self, millis: u8) {
        self.now += Duration::from_millis(u64::from(millis));
        // Bounded: a timer that kept itself due would otherwise loop here.
        for _ in 0..64 {
            if self.engine.poll_timeout() > self.now {
                break;
            }
            self.engine.handle_timeout(self.now);
        }
    }

    /// Takes everything the engine wants done (and does none of it).
    fn drain(&mut self) {
        while self.engine.poll_output().is_some() {}
    }

    /// Ends every call, and turns a panic the engine contained into one here.
    fn finish(mut self) {
        self.drain();
        self.engine.shutdown(self.now);
        self.drain();
        let panics = self.metrics.call_panics.get() - self.panics_before;
        assert_eq!(panics, 0, "handling a call panicked (see the log above)");
    }
}

/// A record of the engine targets' input.
struct Record<'a> {
    selector: u8,
    millis: u8,
    bytes: &'a [u8],
}

/// Splits an input into [`Record`]s: `[selector, millis, length, bytes…]`.
struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let [selector, millis, length, rest @ ..] = self.rest else {
            return None;
        };
        let (bytes, rest) = rest.split_at(usize::from(*length).min(rest.len()));
        self.rest = rest;
        Some(Record {
            selector: *selector,
            millis: *millis,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
    }

    /// Every input the fuzzers kept (seeds, what they found, and the inputs
    /// of bugs since fixed) runs through its target without a panic.
    #[test]
    fn every_fuzz_corpus_input_replays_without_a_panic() {
        for &(name, entry) in TARGETS {
            let dir = corpus_dir().join(name);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.expect("a directory entry").path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "{} has no inputs", dir.display());
            for file in files {
                let data = std::fs::read(&file).expect("a corpus file");
                let outcome = std::panic::catch_unwind(|| entry(&data));
                assert!(outcome.is_ok(), "{name}: {} panicked", file.display());
            }
        }
    }

    /// A corpus directory without a target would never be replayed.
    #[test]
    fn every_corpus_directory_has_a_target() {
        for entry in std::fs::read_dir(corpus_dir()).expect("fuzz/corpus") {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(target(&name).is_some(), "fuzz/corpus/{name} has no target");
        }
    }

    /// RFC 8445 §7.3: an ICE agent answers a connectivity check that names
    /// its ufrag and carries the right MESSAGE-INTEGRITY with a success
    /// response to where it came from, and answers no other. The datagram
    /// target's signing is what lets a fuzzed check be the former.
    #[test]
    fn a_signed_check_is_answered_and_the_same_check_unsigned_is_not() {
        let offer = include_str!("../tests/fixtures/sdp/werift-audio-sendonly.sdp");
        let answers_to_client = |sign: bool| {
            let mut node = Node::new();
            let summary = OfferSummary::scan(offer).expect("a valid offer");
            let Reply::Answer(Ok(answer)) = node.create_whip(offer, summary) else {
                panic!("no answer");
            };
            node.drain();
            // A check a client that does not know the session's password
            // would make: its own guess at USERNAME and key.
            let trans_id = str0m::ice::TransId::new();
            let guess = StunMessage::binding_request("abcd:47d8", trans_id, true, 7, 1_000, true);
            let mut raw = vec![0; 512];
            let len = guess
                .to_bytes(Some(b"not the password"), &mut raw, hmac_sha1)
                .expect("a check serialises");
            raw.truncate(len);
            let client = ClientChecks::new(offer, &answer).expect("ICE credentials");
            let bytes = if sign {
                client.sign(&raw).expect("a binding request is signed")
            } else {
                raw
            };
            node.engine.handle_datagram(node.now, WHIP_CLIENT, &bytes);
            let mut successes = 0;
            while let Some(output) = node.engine.poll_output() {
                if let crate::media::Output::Transmit(t) = output
                    && t.destination == WHIP_CLIENT
                    && StunMessage::parse(&t.contents).is_ok_and(|m| {
                        m.is_successful_binding_response() && m.trans_id() == trans_id
                    })
                {
                    successes += 1;
                }
            }
            node.finish();
            successes
        };
        assert_eq!(answers_to_client(true), 1);
        assert_eq!(answers_to_client(false), 0);
    }

    /// The engine targets' records: `[selector, millis, length, bytes…]`,
    /// the last one cut short where the input ends.
    #[test]
    fn a_record_stream_splits_as_documented() {
        let records: Vec<(u8, u8, Vec<u8>)> = Records::new(&[1, 2, 3, 9, 9, 9, 4, 5, 9, 7])
            .map(|r| (r.selector, r.millis, r.bytes.to_vec()))
            .collect();
        assert_eq!(records, vec![(1, 2, vec![9, 9, 9]), (4, 5, vec![7])]);
    }
}
