//! DTLS for WebRTC sessions through OpenSSL, plugged into str0m as a crypto
//! provider: RSA and ECDSA client certificates alike.
//!
//! str0m 0.25 does DTLS with its aws-lc-rs backend, which uses the `dimpl`
//! crate, and dimpl accepts only ECDSA client certificates: its
//! CertificateRequest asks for `ecdsa_sign` only, so a client with an RSA
//! certificate (GStreamer's webrtcbin, which can only make RSA-2048; a
//! browser given one) answers with an empty Certificate and the handshake
//! ends with alert 40. str0m's own OpenSSL backend (`str0m-openssl`) would
//! do, but the registry's newest release (0.6) is for str0m 0.24, which
//! answers refused video m-lines in a way Chromium rejects. So this module
//! implements str0m's `DtlsProvider` with the `openssl` crate's DTLS, and
//! only that: SRTP, the STUN HMAC and the hashes stay on aws-lc-rs, so the
//! per-packet cost is unchanged. Replace it with `str0m-openssl` once a
//! release for str0m 0.25 exists.
//!
//! Certificates are not *validated* here, on purpose: WebRTC certificates
//! are self-signed, and str0m compares the peer's certificate with the SDP
//! `a=fingerprint` once this provider reports it (`DtlsOutput::PeerCert`).
//!
//! str0m only learns that a handshake failed (`ConnectionClosed`); the
//! reason OpenSSL gave is kept for the thread's engine to read
//! ([`take_failure`]) and put into the session's failure.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openssl::pkey::{Id, PKey};
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, HandshakeError, MidHandshakeSslStream, ShutdownState, Ssl, SslContext,
    SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode,
};
use openssl::x509::X509;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion, SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use tracing::debug;

use super::srtp_in::SrtpKeying;

thread_local! {
    /// Why the last handshake on this thread failed (see the module docs).
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The OpenSSL context of the certificate this thread's sessions use
    /// (the server has one certificate): built once, not per session.
    static CONTEXT: RefCell<Option<(Vec<u8>, SslContext)>> = const { RefCell::new(None) };
    /// The keying slot of the instance last created on this thread (see
    /// [`take_created_keying_slot`]).
    static CREATED_SLOT: RefCell<Option<KeyingSlot>> = const { RefCell::new(None) };
}

/// Where one DTLS association leaves the SRTP keys its handshake exported,
/// for the engine's own receive path (`srtp_in`). str0m gets the same keys
/// and keeps them to itself.
pub type KeyingSlot = Arc<OnceLock<SrtpKeying>>;

/// The keying slot of the DTLS instance this thread created last, once.
///
/// str0m creates a session's DTLS instance inside `RtcConfig::build`, so
/// the slot taken right after `build` is that session's: nothing else runs
/// on the thread in between.
pub fn take_created_keying_slot() -> Option<KeyingSlot> {
    CREATED_SLOT.with(|slot| slot.borrow_mut().take())
}

/// The context for `cert`, from this thread's cache when it is the same
/// certificate.
fn cached_context(
    cert: &DtlsCert,
    srtp: &[SrtpProfile],
) -> Result<SslContext, openssl::error::ErrorStack> {
    CONTEXT.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((der, ctx)) = cache.as_ref()
            && *der == cert.certificate
        {
            return Ok(ctx.clone());
        }
        let ctx = context(cert, srtp)?;
        *cache = Some((cert.certificate.clone(), ctx.clone()));
        Ok(ctx)
    })
}

/// Why the last DTLS handshake handled on this thread failed, if one did
/// since the last call. The engine reads it right after str0m reports a
/// DTLS error for a session.
pub fn take_failure() -> Option<String> {
    FAILURE.with(|f| f.borrow_mut().take())
}

fn record_failure(reason: String) {
    debug!(reason = %reason, "DTLS handshake failed");
    FAILURE.with(|f| *f.borrow_mut() = Some(reason));
}

/// The crypto provider to hand to `RtcConfig::set_crypto_provider`: every
/// piece from the compiled-in backend (aws-lc-rs), DTLS from OpenSSL.
pub fn provider() -> CryptoProvider {
    static DTLS: OsslDtlsProvider = OsslDtlsProvider {
        srtp: SrtpProfile::ALL,
    };
    CryptoProvider {
        dtls_provider: &DTLS,
        ..str0m::crypto::from_feature_flags()
    }
}

/// How often a handshaking instance asks for `handle_timeout`. OpenSSL keeps
/// its own retransmission timer (1 s, doubling); driving the handshake lets
/// it retransmit once that timer has expired, and is a no-op before.
const HANDSHAKE_TICK: Duration = Duration::from_millis(100);
/// "No timeout": far enough away that str0m never fires it.
const IDLE: Duration = Duration::from_secs(24 * 3600);
const SRTP_LABEL: &str = "EXTRACTOR-dtls_srtp";
const CIPHERS: &str = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES256:ECDHE+AES128";

/// The DTLS provider. Certificates are generated by the compiled-in backend
/// (an ECDSA P-256 certificate, as with plain str0m).
#[derive(Debug)]
pub struct OsslDtlsProvider {
    srtp: &'static [SrtpProfile],
}

impl DtlsProvider for OsslDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        if dtls_version != DtlsVersion::Dtls12 {
            return Err(CryptoError::Other(format!(
                "OpenSSL DTLS provider supports DTLS 1.2 only, not {dtls_version}"
            )));
        }
        let mtu = mtu.unwrap_or(str0m::DATAGRAM_MTU_TARGET);
        Ok(Box::new(
            OsslDtls::new(cert, self.srtp, now, mtu).map_err(ossl)?,
        ))
    }
}

fn ossl(e: openssl::error::ErrorStack) -> CryptoError {
    CryptoError::Other(format!("openssl: {e}"))
}

fn context(
    cert: &DtlsCert,
    srtp: &[SrtpProfile],
) -> Result<SslContext, openssl::error::ErrorStack> {
    let mut ctx = SslContextBuilder::new(SslMethod::dtls())?;
    ctx.set_cipher_list(CIPHERS)?;
    // Same preference order as dimpl, so the negotiated SRTP profile (and
    // so the SRTP cost per packet) is what it was with the dimpl backend.
    let profiles: Vec<&str> = srtp
        .iter()
        .map(|p| srtp_name(*p))
        .filter(|n| !n.is_empty())
        .collect();
    ctx.set_tlsext_use_srtp(&profiles.join(":"))?;
    // Ask for a client certificate (RSA or ECDSA) and insist on one; accept
    // any (self-signed): str0m compares it with the SDP fingerprint.
    ctx.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    let x509 = X509::from_der(&cert.certificate)?;
    ctx.set_certificate(&x509)?;
    let key = PKey::private_key_from_der(&cert.private_key)?;
    ctx.set_private_key(&key)?;
    ctx.check_private_key()?;
    ctx.set_options(
        SslOptions::NO_DTLSV1
            | SslOptions::NO_QUERY_MTU
            | SslOptions::SINGLE_ECDH_USE
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_TICKET,
    );
    Ok(ctx.build())
}

/// OpenSSL's reason for a failed handshake, in its own words (the first
/// error of its stack, e.g. "peer did not return a certificate").
fn openssl_reason(e: &openssl::ssl::Error) -> String {
    match e.ssl_error().and_then(|stack| stack.errors().first()) {
        Some(first) => match first.reason() {
            Some(reason) => format!("DTLS handshake failed: {reason}"),
            None => format!("DTLS handshake failed: {first}"),
        },
        None => format!("DTLS handshake failed: {e}"),
    }
}

fn srtp_name(p: SrtpProfile) -> &'static str {
    match p {
        SrtpProfile::AES128_CM_SHA1_80 => "SRTP_AES128_CM_SHA1_80",
        SrtpProfile::AEAD_AES_128_GCM => "SRTP_AEAD_AES_128_GCM",
        SrtpProfile::AEAD_AES_256_GCM => "SRTP_AEAD_AES_256_GCM",
        // A profile added to dimpl later: str0m could not key it either.
        _ => "",
    }
}

fn srtp_from_id(id: SrtpProfileId) -> Option<SrtpProfile> {
    match id {
        SrtpProfileId::SRTP_AES128_CM_SHA1_80 => Some(SrtpProfile::AES128_CM_SHA1_80),
        SrtpProfileId::SRTP_AEAD_AES_128_GCM => Some(SrtpProfile::AEAD_AES_128_GCM),
        SrtpProfileId::SRTP_AEAD_AES_256_GCM => Some(SrtpProfile::AEAD_AES_256_GCM),
        _ => None,
    }
}

/// The datagram "socket" OpenSSL reads from and writes to: one `read` is one
/// whole datagram (DTLS needs the boundaries), one `write` one record batch.
#[derive(Default)]
struct Datagrams {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl io::Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // OpenSSL reads with a buffer larger than any record; a datagram
        // that does not fit is truncated, which OpenSSL treats as garbage.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl io::Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    Init(Ssl),
    Handshaking(MidHandshakeSslStream<Datagrams>),
    /// Keyed, with application data (a data channel): OpenSSL stays.
    Established(SslStream<Datagrams>),
    /// Keyed, and OpenSSL let go of, keeping only our last flight.
    ///
    /// For DTLS, OpenSSL holds its record and handshake buffers for the
    /// life of the connection, about 40 KB a session (measured: a third of
    /// what a speaker costs). After the handshake they serve two things
    /// only. A peer whose copy of our last flight was lost retransmits its
    /// own and must get ours again (RFC 6347 §4.2.4): we keep those few
    /// hundred bytes and resend them. And application data, which Hearken
    /// has none of unless a client opened a data channel: data that comes
    /// with the handshake keeps OpenSSL; data later is dropped, as the
    /// network would. A keyed association sends no close_notify at its
    /// end; clients end with WHIP's DELETE, or notice ICE going away.
    Keyed,
    Failed,
}

/// How many of the peer's retransmitted flights we answer with ours once
/// keyed (its own backoff paces them).
const LAST_FLIGHT_RESENDS: u8 = 8;

enum Event {
    PeerCert(Vec<u8>),
    Connected,
    Keying(Vec<u8>, SrtpProfile),
    Data(Vec<u8>),
    CloseNotify,
}

/// One DTLS association.
pub struct OsslDtls {
    state: State,
    /// Datagrams for the state's stream before it exists (Init) are queued here.
    pending_in: VecDeque<Vec<u8>>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    active: Option<bool>,
    last_now: Instant,
    close_sent: bool,
    close_received: bool,
    /// Our last handshake flight, resent if the peer retransmits its own.
    last_flight: Vec<Vec<u8>>,
    /// Resends of it left.
    resends_left: u8,
    /// The SRTP keys, once established.
    keying: KeyingSlot,
}

impl fmt::Debug for OsslDtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OsslDtls")
            .field("active", &self.active)
            .field("established", &matches!(self.state, State::Established(_)))
            .finish()
    }
}

impl OsslDtls {
    fn new(
        cert: &DtlsCert,
        srtp: &[SrtpProfile],
        now: Instant,
        mtu: usize,
    ) -> Result<Self, openssl::error::ErrorStack> {
        let ctx = cached_context(cert, srtp)?;
        let mut ssl = Ssl::new(&ctx)?;
        ssl.set_mtu(mtu as u32)?;
        let keying = KeyingSlot::default();
        CREATED_SLOT.with(|slot| *slot.borrow_mut() = Some(keying.clone()));
        Ok(Self {
            state: State::Init(ssl),
            pending_in: VecDeque::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            active: None,
            last_now: now,
            close_sent: false,
            close_received: false,
            last_flight: Vec::new(),
            resends_left: LAST_FLIGHT_RESENDS,
            keying,
        })
    }

    fn handshaking(&self) -> bool {
        matches!(self.state, State::Init(_) | State::Handshaking(_))
    }

    /// Runs OpenSSL as far as it can go with the datagrams it has.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        let Some(active) = self.active else {
            // Not started: keep datagrams until set_active.
            return Ok(());
        };
        let result = match mem::replace(&mut self.state, State::Failed) {
            State::Init(ssl) => {
                let io = Datagrams {
                    incoming: mem::take(&mut self.pending_in),
                    outgoing: VecDeque::new(),
                };
                if active {
                    ssl.connect(io)
                } else {
                    ssl.accept(io)
                }
            }
            State::Handshaking(mut mid) => {
                mid.get_mut().incoming.append(&mut self.pending_in);
                mid.handshake()
            }
            State::Established(mut s) => {
                s.get_mut().incoming.append(&mut self.pending_in);
                let r = self.read_established(&mut s);
                self.out.append(&mut s.get_mut().outgoing);
                self.state = State::Established(s);
                return r;
            }
            State::Keyed => {
                // Only a retransmitted handshake flight of the peer means
                // anything now: it lost our last one. Anything else (an
                // alert, a close_notify, data) is ignored.
                let retransmitted = self
                    .pending_in
                    .drain(..)
                    .any(|d| matches!(d.first(), Some(20 | 22)));
                if retransmitted && self.resends_left > 0 {
                    self.resends_left -= 1;
                    self.out.extend(self.last_flight.iter().cloned());
                }
                self.state = State::Keyed;
                return Ok(());
            }
            State::Failed => {
                self.pending_in.clear();
                return Err(DtlsImplError::ConnectionClosed);
            }
        };
        match result {
            Ok(mut s) => {
                self.out.append(&mut s.get_mut().outgoing);
                if !active {
                    // As the server, what we just sent is our last flight.
                    self.last_flight = self.out.iter().cloned().collect();
                }
                self.on_established(&s)?;
                let events = self.events.len();
                let r = self.read_established(&mut s);
                self.out.append(&mut s.get_mut().outgoing);
                let carried_data = self.events.len() > events;
                // A client must keep OpenSSL: its last flight is the
                // server's to resend.
                self.state = if active || carried_data || r.is_err() {
                    State::Established(s)
                } else {
                    State::Keyed
                };
                r
            }
            Err(HandshakeError::WouldBlock(mut mid)) => {
                self.out.append(&mut mid.get_mut().outgoing);
                self.state = State::Handshaking(mid);
                Ok(())
            }
            Err(HandshakeError::Failure(mut mid)) => {
                // Send the alert OpenSSL queued, then give up.
                self.out.append(&mut mid.get_mut().outgoing);
                record_failure(openssl_reason(mid.error()));
                Err(DtlsImplError::ConnectionClosed)
            }
            Err(HandshakeError::SetupFailure(e)) => {
                record_failure(format!("DTLS setup failed: {e}"));
                Err(DtlsImplError::ConnectionClosed)
            }
        }
    }

    fn on_established(&mut self, s: &SslStream<Datagrams>) -> Result<(), DtlsImplError> {
        let ssl = s.ssl();
        let fail = |what: &str| {
            record_failure(format!("DTLS established without {what}"));
            DtlsImplError::ConnectionClosed
        };
        let peer = ssl
            .peer_certificate()
            .ok_or_else(|| fail("a peer certificate"))?;
        let der = peer.to_der().map_err(|_| fail("a DER peer certificate"))?;
        let profile = ssl
            .selected_srtp_profile()
            .and_then(|p| srtp_from_id(p.id()))
            .ok_or_else(|| fail("an SRTP profile"))?;
        let mut km = vec![0; profile.keying_material_len()];
        ssl.export_keying_material(&mut km, SRTP_LABEL, None)
            .map_err(|_| fail("SRTP keying material"))?;
        let (key_type, bits) = match peer.public_key() {
            Ok(k) => (
                match k.id() {
                    Id::RSA => "RSA",
                    Id::EC => "ECDSA",
                    Id::ED25519 => "Ed25519",
                    _ => "other",
                },
                k.bits(),
            ),
            Err(_) => ("unknown", 0),
        };
        debug!(
            role = if self.active == Some(true) { "client" } else { "server" },
            version = ssl.version_str(),
            cipher = ssl.current_cipher().map(|c| c.name()).unwrap_or("?"),
            srtp = ?profile,
            peer_key = key_type,
            peer_bits = bits,
            "DTLS established"
        );
        // A second handshake on one association does not happen
        // (renegotiation is off), so the first keys are the only ones.
        let _ = self.keying.set(SrtpKeying {
            profile,
            material: km.clone(),
            active: self.active == Some(true),
        });
        self.events.push_back(Event::PeerCert(der));
        self.events.push_back(Event::Connected);
        self.events.push_back(Event::Keying(km, profile));
        Ok(())
    }

    fn read_established(&mut self, s: &mut SslStream<Datagrams>) -> Result<(), DtlsImplError> {
        let mut buf = vec![0u8; 16_384];
        loop {
            match s.ssl_read(&mut buf) {
                Ok(n) => self.events.push_back(Event::Data(buf[..n].to_vec())),
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    if !self.close_received {
                        self.close_received = true;
                        self.events.push_back(Event::CloseNotify);
                        if !self.close_sent {
                            // Reciprocal close_notify (RFC 5246 7.2.1).
                            let _ = s.shutdown();
                            self.close_sent = true;
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    // A bad record after the handshake is dropped by OpenSSL's
                    // DTLS layer itself; anything surfacing here is fatal.
                    if s.get_shutdown().contains(ShutdownState::RECEIVED) {
                        return Ok(());
                    }
                    debug!(error = %e, "DTLS read failed");
                    return Err(DtlsImplError::ConnectionClosed);
                }
            }
        }
    }
}

impl DtlsInstance for OsslDtls {
    fn set_active(&mut self, active: bool) {
        self.active = Some(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        // str0m kicks an active (client) instance with an empty packet.
        if !packet.is_empty() {
            self.pending_in.push_back(packet.to_vec());
        }
        self.drive()
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(d) = self.out.front() {
            if d.len() > buf.len() {
                return DtlsOutput::BufferTooSmall { needed: d.len() };
            }
            // INVARIANT: `front` was just `Some`.
            let d = self.out.pop_front().expect("front");
            buf[..d.len()].copy_from_slice(&d);
            return DtlsOutput::Packet(&buf[..d.len()]);
        }
        if let Some(e) = self.events.front() {
            let needed = match e {
                Event::PeerCert(v) | Event::Keying(v, _) | Event::Data(v) => v.len(),
                Event::Connected | Event::CloseNotify => 0,
            };
            if needed > buf.len() {
                return DtlsOutput::BufferTooSmall { needed };
            }
            // INVARIANT: `front` was just `Some`.
            return match self.events.pop_front().expect("front") {
                Event::Connected => DtlsOutput::Connected,
                Event::CloseNotify => DtlsOutput::CloseNotify,
                Event::PeerCert(v) => {
                    buf[..v.len()].copy_from_slice(&v);
                    DtlsOutput::PeerCert(&buf[..v.len()])
                }
                Event::Data(v) => {
                    buf[..v.len()].copy_from_slice(&v);
                    DtlsOutput::ApplicationData(&buf[..v.len()])
                }
                Event::Keying(v, p) => DtlsOutput::KeyingMaterial(KeyingMaterial::new(&v), p),
            };
        }
        let wait = if self.active.is_some() && self.handshaking() {
            HANDSHAKE_TICK
        } else {
            IDLE
        };
        DtlsOutput::Timeout(self.last_now + wait)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.last_now = self.last_now.max(now);
        if self.handshaking() && self.active.is_some() {
            // Retransmits the last flight if OpenSSL's timer has expired.
            // A server that has not seen a ClientHello yet has nothing to do.
            if matches!(self.state, State::Handshaking(_)) || self.active == Some(true) {
                return self.drive();
            }
        }
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        if data.is_empty() {
            return Ok(0);
        }
        let s = match &mut self.state {
            State::Established(s) => s,
            // No data channel carried data with the handshake; data now is
            // lost as on the network (see `State::Keyed`).
            State::Keyed => return Ok(data.len()),
            _ => return Ok(0), // str0m keeps it and retries after the handshake
        };
        if self.close_sent {
            return Err(DtlsImplError::ConnectionClosed);
        }
        let r = s.ssl_write(data);
        self.out.append(&mut s.get_mut().outgoing);
        match r {
            Ok(_) => Ok(data.len()),
            Err(e) => {
                debug!(error = %e, "DTLS write failed");
                Err(DtlsImplError::ConnectionClosed)
            }
        }
    }

    fn is_active(&self) -> bool {
        self.active.unwrap_or(false)
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        matches!(self.state, State::Established(_) | State::Keyed)
            .then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.close_sent || self.close_received
    }

    fn is_closed(&self) -> bool {
        self.is_closing() && self.out.is_empty()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        if let State::Established(s) = &mut self.state
            && !self.close_sent
        {
            let _ = s.shutdown();
            self.out.append(&mut s.get_mut().outgoing);
        }
        self.close_sent = true;
        Ok(())
    }
}
