//! One WHIP session: its str0m [`Rtc`], the speakers its audio m-lines carry,
//! the prompts being played into it, and every deadline it has.
//!
//! A session has one entry in the engine's timer heap, at the earliest of
//! its deadlines (str0m's next timeout, the connect or inactivity timeout,
//! a DTMF event whose end was lost, the next prompt packet). When it fires,
//! [`Session::due`] says what is due.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hearken_core::conference::{ParticipantIdx, SessionEndReason};
use hearken_core::dtmf::DtmfAssembler;
use hearken_core::ids::CallId;
use hearken_core::offer::OfferSummary;
use hearken_core::rtp::RtpExtender;
use hearken_core::voice::VoiceHint;
use rustc_hash::FxHashMap;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::crypto::CryptoProvider;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::rtp::Extension;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig, RtcError};
use tracing::Span;

use super::command::{CreateSession, CreateSessionError, FailureCause, SessionFailure};
use super::dtls::KeyingSlot;
use super::engine::EngineSettings;
use super::playback::{Playback, PromptLine};
use super::srtp_in::SrtpReceiver;

/// The engine's number for a session (never reused within an engine).
pub use hearken_core::conference::SessionKey;

/// A received audio m-line: whose voice it carries.
pub(crate) struct Speaker {
    /// The participant in the call's conference.
    pub participant: ParticipantIdx,
    /// `participant` span, child of the session's.
    pub span: Span,
    /// RFC 4733 events on this m-line, once the first one arrived.
    pub dtmf: Option<DtmfAssembler>,
}

/// A remote SSRC whose SRTP the engine decrypts itself ([`SrtpReceiver`]),
/// past str0m, and what its m-line negotiated.
pub(crate) struct DirectStream {
    pub ssrc: u32,
    pub mid: Mid,
    /// The m-line's Opus payload types.
    pub opus: Vec<u8>,
    /// Its telephone-event payload types, with their clocks.
    pub tele: Vec<(u8, Frequency)>,
    /// The RFC 6464 audio level extension's id, when negotiated.
    pub audio_level: Option<u8>,
    /// Goes on from str0m's extended timestamps.
    pub timestamps: RtpExtender,
    /// Packets that authenticated, and that did not since the last that did.
    pub authenticated: u64,
    pub auth_failures: u32,
}

impl DirectStream {
    /// The speech hint of a packet's RFC 6464 audio level, read from its
    /// header (RFC 8285 one- or two-byte header extensions).
    pub fn voice_hint(&self, header: &[u8]) -> VoiceHint {
        let (level, voice) = match self.audio_level.and_then(|id| header_extension(header, id)) {
            Some(&[v, ..]) => (Some(-((v & 0x7f) as i8)), Some(v & 0x80 != 0)),
            _ => (None, None),
        };
        VoiceHint::from_extension(level, voice)
    }
}

/// The data of header extension element `id` in an RTP header (RFC 8285),
/// if the header has it.
pub(crate) fn header_extension(header: &[u8], id: u8) -> Option<&[u8]> {
    if header.first()? & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(header[0] & 0x0f);
    let profile = u16::from_be_bytes([*header.get(at)?, *header.get(at + 1)?]);
    let words = u16::from_be_bytes([*header.get(at + 2)?, *header.get(at + 3)?]);
    let elements = header.get(at + 4..at + 4 + 4 * usize::from(words))?;
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xFFF0 == 0x1000 => true,
        _ => return None,
    };
    let mut i = 0;
    while i < elements.len() {
        let (element_id, len, data_at) = if two_byte {
            let len = usize::from(*elements.get(i + 1)?);
            (elements[i], len, i + 2)
        } else {
            let b = elements[i];
            if b == 0 {
                // Padding between elements.
                i += 1;
                continue;
            }
            // RFC 8285 §4.2: id 15 stops the parsing.
            if b >> 4 == 15 {
                return None;
            }
            (b >> 4, usize::from(b & 0x0f) + 1, i + 1)
        };
        if two_byte && element_id == 0 {
            i += 1;
            continue;
        }
        let data = elements.get(data_at..data_at + len)?;
        if element_id == id {
            return Some(data);
        }
        i = data_at + len;
    }
    None
}

/// Packets of a stream taken from str0m that may fail authentication here
/// before any has passed, before the session gives its streams back to
/// str0m. A genuine sender's packets always authenticate, so this only
/// guards against keys that are not the sender's (a bug): audio is then
/// received as before rather than lost.
pub(crate) const RECEIVE_DIRECTLY_GIVE_UP: u32 = 16;

/// A session and everything the engine tracks about it.
pub(crate) struct Session {
    pub call_id: CallId,
    pub secret: Box<str>,
    pub public_id: Box<str>,
    /// Our ICE username fragment: a STUN request names it first in USERNAME.
    pub local_ufrag: Box<str>,
    pub rtc: Rtc,
    /// Where the DTLS handshake leaves the SRTP keys.
    pub keying: Option<KeyingSlot>,
    /// Once connected: the SRTP of the SSRCs in `direct`, decrypted here.
    pub srtp_in: Option<SrtpReceiver>,
    pub direct: Vec<DirectStream>,
    /// Test hook: take streams from str0m with keys that are not the
    /// sender's (`Command::InjectWrongSrtpKeys`).
    #[cfg(any(test, feature = "fault-injection"))]
    pub wrong_srtp_keys: bool,
    pub offer: OfferSummary,
    pub speakers: FxHashMap<Mid, Speaker>,
    pub playbacks: Vec<Playback>,
    /// Per m-line: when its last prompt ends (one plays at a time).
    pub prompt_lines: FxHashMap<Mid, PromptLine>,
    /// Addresses this session accepted datagrams from (the routing cache
    /// entries to forget when it ends).
    pub remote_addrs: Vec<SocketAddr>,
    /// The time of this session's live entry in the timer heap.
    pub scheduled: Option<Instant>,
    /// When str0m next wants `Input::Timeout`.
    pub rtc_deadline: Instant,
    /// When anything last arrived from the client.
    pub last_input: Instant,
    /// ICE reached connected (so a connect timeout is DTLS's fault).
    pub ice_connected: bool,
    /// ICE and DTLS completed.
    pub connected: bool,
    pub connect_deadline: Instant,
    /// Set when something decided the session must end.
    pub ending: Option<(SessionEndReason, Option<SessionFailure>)>,
    pub span: Span,
}

/// What a session's timer found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing yet (a stale or early wake-up).
    Nothing,
    /// The connect timeout passed before ICE and DTLS completed.
    ConnectTimeout,
    /// Nothing arrived from a connected client for the inactivity timeout.
    Inactive,
    /// str0m, DTMF or a prompt has work.
    Work,
}

impl Session {
    /// Answers `create`'s offer with a new ICE-lite `Rtc` whose only
    /// candidate is `advertised`. Returns the session and its SDP answer.
    pub fn accept(
        create: &CreateSession,
        settings: &EngineSettings,
        now: Instant,
        span: Span,
    ) -> Result<(Session, String), CreateSessionError> {
        let advertised = settings.local_addr;
        // The slot is the DTLS instance's that `new_rtc` creates: clear
        // any left from before, so a failed creation cannot hand us another
        // session's.
        drop(super::dtls::take_created_keying_slot());
        let mut rtc = new_rtc(now);
        let keying = super::dtls::take_created_keying_slot();
        if let Some(prefix) = settings.ufrag_prefix {
            let mut creds = IceCreds::new();
            creds.ufrag = prefix.apply(&creds.ufrag);
            rtc.direct_api().set_local_ice_credentials(creds);
        }
        let candidate = Candidate::host(advertised, "udp")
            .map_err(|_| CreateSessionError::NoLocalCandidate(advertised))?;
        rtc.add_local_candidate(candidate);
        let offer = SdpOffer::from_sdp_string(&create.offer_sdp)
            .map_err(|e| CreateSessionError::BadOffer(RtcError::RemoteSdp(e.to_string())))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(CreateSessionError::BadOffer)?;
        let receives_audio = create.summary.speaker_media().any(|m| {
            rtc.media(Mid::from(m.mid.as_str())).is_some_and(|media| {
                media.kind() == MediaKind::Audio
                    && !media.disabled()
                    && media.direction().is_receiving()
            })
        });
        if !receives_audio {
            return Err(CreateSessionError::NoUsableAudio);
        }
        let local_ufrag = rtc
            .direct_api()
            .local_ice_credentials()
            .ufrag
            .into_boxed_str();
        let session = Session {
            call_id: create.call_id.clone(),
            secret: create.secret.clone().into_boxed_str(),
            public_id: create.public_id.clone().into_boxed_str(),
            local_ufrag,
            rtc,
            keying,
            srtp_in: None,
            direct: Vec::new(),
            #[cfg(any(test, feature = "fault-injection"))]
            wrong_srtp_keys: false,
            offer: create.summary.clone(),
            speakers: FxHashMap::default(),
            playbacks: Vec::new(),
            prompt_lines: FxHashMap::default(),
            remote_addrs: Vec::new(),
            scheduled: None,
            rtc_deadline: now,
            last_input: now,
            ice_connected: false,
            connected: false,
            connect_deadline: now + settings.connect_timeout,
            ending: None,
            span,
        };
        Ok((
            session,
            candidates_in_every_section(&answer.to_sdp_string()),
        ))
    }

    /// Marks the session for removal (the first reason wins).
    pub fn end(&mut self, reason: SessionEndReason, failure: Option<(FailureCause, String)>) {
        if self.ending.is_none() {
            let failure = failure.map(|(cause, detail)| SessionFailure {
                session: self.public_id.to_string(),
                cause,
                detail,
            });
            self.ending = Some((reason, failure));
        }
    }

    /// Marks the session failed by a str0m error (for a DTLS failure, in
    /// OpenSSL's words when it gave any).
    pub fn fail(&mut self, error: &RtcError) {
        let cause = failure_cause(error);
        let detail = match error {
            RtcError::Dtls(_) => super::dtls::take_failure(),
            _ => None,
        }
        .unwrap_or_else(|| error.to_string());
        self.end(SessionEndReason::Failed, Some((cause, detail)));
    }

    /// Takes the remote SSRC that str0m just delivered a packet of on `mid`
    /// away from str0m: from now on the engine decrypts its packets itself
    /// (`srtp_in`), going on from that packet's extended sequence number
    /// and timestamp. Does nothing before the session is connected (str0m
    /// has then checked the DTLS certificate against the SDP fingerprint),
    /// or when str0m has no stream for the m-line.
    pub fn receive_directly(&mut self, mid: Mid, highest_seq: u64, highest_timestamp: u64) {
        if !self.connected {
            return;
        }
        let Some(keying) = self.keying.as_ref().and_then(|slot| slot.get()) else {
            return;
        };
        if self.srtp_in.is_none() {
            #[cfg(any(test, feature = "fault-injection"))]
            let keying = &{
                let mut keying = keying.clone();
                if self.wrong_srtp_keys {
                    keying.material.iter_mut().for_each(|b| *b ^= 0xff);
                }
                keying
            };
            self.srtp_in = SrtpReceiver::new(&CRYPTO, keying);
            if self.srtp_in.is_none() {
                // A profile we cannot key: str0m receives everything.
                self.keying = None;
                return;
            }
        }
        let Some(ssrc) = self
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .map(|s| *s.ssrc())
        else {
            return;
        };
        let Some(media) = self.rtc.media(mid) else {
            return;
        };
        let audio_level = media.remote_extmap().id_of(Extension::AudioLevel);
        let codecs = self.rtc.codec_config();
        let negotiated = || {
            media
                .remote_pts()
                .iter()
                .filter_map(|pt| codecs.find(|p| p.pt() == *pt))
        };
        let opus: Vec<u8> = negotiated()
            .filter(|p| p.spec().codec == Codec::Opus)
            .map(|p| *p.pt())
            .collect();
        let tele = negotiated()
            .filter(|p| p.spec().codec == Codec::Tele)
            .map(|p| (*p.pt(), p.spec().clock_rate))
            .collect();
        if opus.is_empty() {
            return;
        }
        let Some(receiver) = self.srtp_in.as_mut() else {
            return;
        };
        // A new SSRC on the m-line replaces the old one.
        for old in self
            .direct
            .iter()
            .filter(|d| d.mid == mid || d.ssrc == ssrc)
        {
            receiver.remove_stream(old.ssrc);
        }
        self.direct.retain(|d| d.mid != mid && d.ssrc != ssrc);
        receiver.add_stream(ssrc, highest_seq);
        tracing::debug!(parent: &self.span, %mid, ssrc, "received directly from now on");
        self.direct.push(DirectStream {
            ssrc,
            mid,
            opus,
            tele,
            audio_level,
            timestamps: RtpExtender::continuing(highest_seq, highest_timestamp),
            authenticated: 0,
            auth_failures: 0,
        });
    }

    /// Gives every stream back to str0m and decrypts nothing here any more:
    /// for a stream none of whose packets authenticated here (see
    /// [`RECEIVE_DIRECTLY_GIVE_UP`]).
    pub fn stop_receiving_directly(&mut self) {
        self.keying = None;
        self.srtp_in = None;
        self.direct.clear();
    }

    /// The earliest of this session's deadlines.
    pub fn next_deadline(&self, inactivity_timeout: Duration) -> Instant {
        let mut next = self.rtc_deadline;
        if self.connected {
            next = next.min(self.last_input + inactivity_timeout);
        } else {
            next = next.min(self.connect_deadline);
        }
        for speaker in self.speakers.values() {
            if let Some(t) = speaker.dtmf.as_ref().and_then(DtmfAssembler::poll_timeout) {
                next = next.min(t);
            }
        }
        for playback in &self.playbacks {
            next = next.min(playback.next_at);
        }
        next
    }

    /// What is due at `now`.
    pub fn due(&self, now: Instant, inactivity_timeout: Duration) -> Due {
        if !self.connected && now >= self.connect_deadline {
            return Due::ConnectTimeout;
        }
        if self.connected && now.saturating_duration_since(self.last_input) >= inactivity_timeout {
            return Due::Inactive;
        }
        if now >= self.next_deadline(inactivity_timeout) {
            Due::Work
        } else {
            Due::Nothing
        }
    }

    /// Why a connect timeout happened: ICE never completed, or DTLS did not.
    pub fn connect_timeout_failure(&self) -> (FailureCause, String) {
        if self.ice_connected {
            (
                FailureCause::DtlsTimeout,
                "ICE connected but the DTLS handshake did not complete".to_owned(),
            )
        } else if self.remote_addrs.is_empty() {
            (
                FailureCause::IceTimeout,
                "no ICE connectivity check arrived from the client".to_owned(),
            )
        } else {
            (
                FailureCause::IceTimeout,
                "ICE connectivity checks arrived but ICE did not complete".to_owned(),
            )
        }
    }
}

/// The failure cause of a str0m error.
pub(crate) fn failure_cause(error: &RtcError) -> FailureCause {
    match error {
        RtcError::Dtls(e) if e.to_string().to_ascii_lowercase().contains("srtp") => {
            FailureCause::Srtp
        }
        RtcError::Dtls(_) => FailureCause::Dtls,
        _ => FailureCause::Rtc,
    }
}

/// The crypto provider every session is built with.
pub(crate) fn crypto() -> &'static CryptoProvider {
    &CRYPTO
}

/// One provider for every session: DTLS through OpenSSL (see `dtls.rs`).
static CRYPTO: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| Arc::new(super::dtls::provider()));

/// A new `Rtc` for one WHIP session: ICE-lite (the server never trickles),
/// Opus only, telephone-event when offered.
///
/// Only two RTP header extensions are answered: the audio level (it says
/// when a speaker talks) and the MID (BUNDLE demultiplexing). Hearken only
/// receives and sends no bandwidth-adaptive media, so transport-wide
/// congestion control would be pure cost: with it negotiated, str0m sends a
/// TWCC feedback packet every 50 ms per session.
pub fn new_rtc(now: Instant) -> Rtc {
    // One DTLS certificate for every session of the process, as SFUs such
    // as Janus do: generating one per session cost most of the 0.8 ms of an
    // answer, and lets each worker keep one OpenSSL context for all its
    // sessions. Clients pin it per session by the answer's a=fingerprint.
    static CERT: LazyLock<Option<DtlsCert>> =
        LazyLock::new(|| CRYPTO.dtls_provider.generate_certificate());
    let mut config = RtcConfig::new().set_crypto_provider(CRYPTO.clone());
    if let Some(cert) = CERT.as_ref() {
        config = config.set_dtls_cert(cert.clone());
    }
    let mut config = config
        .set_ice_lite(true)
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .clear_codecs()
        .enable_opus(true, false);
    add_telephone_event(&mut config);
    config.build(now)
}

/// Adds telephone-event at the Opus clock (Chrome offers it as PT 110) and
/// at 8 kHz (what SIP gateways send, usually PT 101 or 126). Shared with the
/// test and load clients, so both ends negotiate the same codecs.
pub fn add_telephone_event(config: &mut RtcConfig) {
    let codecs = config.codec_config();
    codecs.add_config(
        Pt::new_with_value(110),
        None,
        Codec::Tele,
        Frequency::FORTY_EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    codecs.add_config(
        Pt::new_with_value(126),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
}

/// Repeats the answer's ICE candidates in every accepted m-section and ends
/// each with `a=end-of-candidates`.
///
/// RFC 8843 puts candidates only in the BUNDLE-tagged m-section, which is
/// what str0m writes. Some stacks read them elsewhere: aiortc takes the
/// remote candidates of the *last* bundled m-section, finds none and waits
/// forever. Hearken is ICE-lite and has every candidate at answer time, so
/// repeating them (and saying there are no more) is harmless and lets every
/// stack connect. Checked with Chromium, Firefox, werift and GStreamer.
pub fn candidates_in_every_section(answer: &str) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = answer.lines().collect();
    let candidates: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=candidate:"))
        .fold(Vec::new(), |mut unique, l| {
            if !unique.contains(&l) {
                unique.push(l);
            }
            unique
        });
    if candidates.is_empty() {
        return answer.to_owned();
    }
    // Split into the session part and one block per m-section.
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in &lines {
        if line.starts_with("m=") {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    let mut out = String::with_capacity(answer.len() + 256);
    for (i, block) in blocks.iter().enumerate() {
        let is_media = i > 0;
        // A rejected m-section (port 0) carries no candidates.
        let rejected = block
            .first()
            .and_then(|m| m.split_whitespace().nth(1))
            .is_some_and(|port| port == "0");
        for line in block {
            if is_media && (line.starts_with("a=candidate:") || *line == "a=end-of-candidates") {
                continue;
            }
            out.push_str(line);
            out.push_str(eol);
        }
        if is_media && !rejected {
            for candidate in &candidates {
                out.push_str(candidate);
                out.push_str(eol);
            }
            out.push_str("a=end-of-candidates");
            out.push_str(eol);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2\r\na=ice-lite\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
a=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=inactive\r\n";

    fn sections(sdp: &str) -> Vec<String> {
        sdp.split("m=").skip(1).map(str::to_owned).collect()
    }

    #[test]
    fn every_accepted_section_carries_the_candidates_and_their_end() {
        let out = candidates_in_every_section(ANSWER);
        let s = sections(&out);
        assert_eq!(s.len(), 3);
        for audio in &s[..2] {
            assert_eq!(audio.matches("a=candidate:1 1 udp").count(), 1, "{audio}");
            assert!(audio.ends_with("a=candidate:1 1 udp 2130706175 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n"), "{audio}");
        }
        // The rejected video section stays without candidates.
        assert!(!s[2].contains("a=candidate"), "{}", s[2]);
        // Everything else is kept, in order.
        assert!(out.starts_with(
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n"
        ));
        assert!(out.contains("a=mid:2\r\na=inactive\r\n"));
    }

    /// An RTP header (V=2, PT 111, SSRC 1) with the extension block `ext`.
    fn header_with(ext: &[u8]) -> Vec<u8> {
        let mut h = vec![0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        h.extend_from_slice(ext);
        h
    }

    fn direct(audio_level: Option<u8>) -> DirectStream {
        DirectStream {
            ssrc: 1,
            mid: Mid::from("0"),
            opus: vec![111],
            tele: Vec::new(),
            audio_level,
            timestamps: RtpExtender::new(),
            authenticated: 0,
            auth_failures: 0,
        }
    }

    #[test]
    fn one_byte_header_extensions_are_found_by_id() {
        // RFC 8285 §4.2: id 4 (mid "0"), a padding byte, id 1 with 0xA5:
        // RFC 6464's V bit set and level 0x25, i.e. voice at -37 dBov.
        let h = header_with(&[0xBE, 0xDE, 0, 2, 0x40, b'0', 0x00, 0x10, 0xA5, 0, 0, 0]);
        assert_eq!(header_extension(&h, 4), Some(&b"0"[..]));
        assert_eq!(header_extension(&h, 1), Some(&[0xA5][..]));
        assert_eq!(header_extension(&h, 2), None);
        assert_eq!(
            direct(Some(1)).voice_hint(&h),
            VoiceHint {
                level_dbov: Some(37),
                voice_activity: Some(true)
            }
        );
        // Not negotiated: no hint, whatever the packet carries.
        assert_eq!(direct(None).voice_hint(&h), VoiceHint::default());
    }

    #[test]
    fn two_byte_header_extensions_are_found_by_id() {
        // RFC 8285 §4.3: id 1, length 1, 0x25: no voice, -37 dBov.
        let h = header_with(&[0x10, 0x00, 0, 1, 1, 1, 0x25, 0]);
        assert_eq!(
            direct(Some(1)).voice_hint(&h),
            VoiceHint {
                level_dbov: Some(37),
                voice_activity: Some(false)
            }
        );
    }

    #[test]
    fn broken_header_extensions_give_nothing() {
        // Three words announced, one present.
        assert_eq!(
            header_extension(&header_with(&[0xBE, 0xDE, 0, 3, 0x10, 0xA5, 0, 0]), 1),
            None
        );
        // An element longer than the block.
        assert_eq!(
            header_extension(&header_with(&[0xBE, 0xDE, 0, 1, 0x0F, 0xA5, 0, 0]), 0),
            None
        );
        // Id 15 ends the parsing (RFC 8285 §4.2).
        assert_eq!(
            header_extension(&header_with(&[0xBE, 0xDE, 0, 1, 0xF0, 0x10, 0xA5, 0]), 1),
            None
        );
        // An unknown profile.
        assert_eq!(
            header_extension(&header_with(&[0xAB, 0xCD, 0, 1, 0x10, 0xA5, 0, 0]), 1),
            None
        );
        // No X bit.
        let mut h = header_with(&[0xBE, 0xDE, 0, 1, 0x10, 0xA5, 0, 0]);
        h[0] = 0x80;
        assert_eq!(header_extension(&h, 1), None);
    }

    #[test]
    fn idempotent_and_without_candidates_unchanged() {
        let once = candidates_in_every_section(ANSWER);
        assert_eq!(candidates_in_every_section(&once), once);
        let none = "v=0\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n";
        assert_eq!(candidates_in_every_section(none), none);
    }
}
