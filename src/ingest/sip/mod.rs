//! SIP dial-in: a SIP user agent server (UAS) over UDP and TCP that
//! conferencing platforms and trunks call to bring one speaker each into a
//! call. This module is the signalling; the media (plain RTP on the media
//! worker's socket) is the engine's, reached with [`Command::CreateSip`],
//! [`Command::UpdateSip`], [`Command::SipDigit`] and
//! [`Command::DeleteSession`].
//!
//! [`Command::CreateSip`]: crate::media::Command::CreateSip
//! [`Command::UpdateSip`]: crate::media::Command::UpdateSip
//! [`Command::SipDigit`]: crate::media::Command::SipDigit
//! [`Command::DeleteSession`]: crate::media::Command::DeleteSession
//!
//! # Layout
//!
//! - [`sdp`]: the RFC 3264 offer/answer for one audio stream (pure).
//! - [`auth`]: the source allow-list and Digest authentication (pure).
//! - [`message`]: which call and speaker a request names, SIP INFO keys, and
//!   the last-resort 400/405 for what the stack cannot parse (pure).
//! - `uas`: the dialogs: INVITE (early and late offer), ACK, BYE, CANCEL,
//!   OPTIONS, re-INVITE (hold), INFO; what each asks of the media worker.
//! - this file: binding, the UDP and TCP transports, and start/stop.
//!
//! # The stack
//!
//! Messages are parsed and written with `rsipstack`'s SIP codec, and its
//! transaction layer (RFC 3261 §17 with RFC 6026) matches retransmissions,
//! CANCELs and ACKs and retransmits non-2xx final responses. Hearken reads
//! the sockets itself and hands each parsed message to the transaction
//! layer ([`EndpointInner::on_received_message`]), so that a message the
//! codec refuses is counted (`hearken_ingest_errors_total{ingest="sip",
//! reason="malformed_message"}`) and, when it still names enough to be
//! answered, answered with 400 (or 405 for a method the codec does not know).
//!
//! # Who may call
//!
//! An INVITE from a network in `ingest.sip.allow_from` is taken as is; any
//! other needs Digest credentials of a user in `ingest.sip.credentials` (401
//! challenge, then the INVITE again with `Authorization`). Nothing reaches a
//! media worker before that: no session is placed and no `CreateSip` is
//! sent for an INVITE that has not passed.
//!
//! # Which call, which speaker
//!
//! The Request-URI's user is the call id (`sip:{call_id}@host`), unless the
//! INVITE carries `X-Hearken-Call-Id`; the speaker is `X-Hearken-Participant`
//! or else the From URI's user. One dialog is one speaker; any number of
//! dialogs may join one call, each placed with
//! [`crate::control::registry::Registry::place_session`] on the worker that
//! carries the call.
//!
//! [`EndpointInner::on_received_message`]: rsipstack::transaction::endpoint::EndpointInner::on_received_message

pub mod auth;
pub mod message;
pub mod sdp;
mod uas;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rsipstack::platform::CancellationToken;
use rsipstack::sip::{HasHeaders, Header, SipMessage, Transport};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::udp::{UdpConnection, UdpInner};
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use self::auth::{Credentials, DigestAuth, Network};
use self::message::Fallback;
use crate::config::SipIngestConfig;
use crate::metrics::{IngestError, Labelled, Metrics};
use crate::server::{AppState, Secrets};
use hearken_core::conference::Ingest;
use prometheus::IntCounter;

pub use self::uas::SipInfo;

/// Largest SIP message taken (UDP datagrams are smaller anyway).
const MAX_MESSAGE: usize = 65_535;
/// TCP connections open at once; more are refused.
const MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection that sends nothing this long is closed (a caller keeps
/// one open through a call with its own keepalives or requests; RFC 5626
/// CRLF pings count).
const TCP_IDLE: Duration = Duration::from_secs(600);

/// Why the SIP ingest could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipSetupError {
    /// A socket could not be bound.
    #[error("ingest.sip.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A credential names a variable that is not set.
    #[error(
        "ingest.sip.credentials: the password of SIP user {user:?} is read from the environment variable {var}, which is not set"
    )]
    MissingPassword {
        /// The user.
        user: String,
        /// The variable.
        var: String,
    },
    /// A value of the config is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The sockets of a SIP ingest, bound but not yet served (the server
/// builds its [`AppState`] in between: the state names the bound address,
/// and the UAS needs the state).
pub struct BoundSip {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    info: SipInfo,
    auth: DigestAuth,
    allow_from: Vec<Network>,
}

/// Binds UDP and TCP on `listen` (the same port for both; with port 0 the
/// OS picks one free for both) and reads the credentials' passwords from
/// `secrets`.
pub async fn bind(
    config: &SipIngestConfig,
    listen: SocketAddr,
    advertised_ip: std::net::IpAddr,
    secrets: &Secrets,
) -> Result<BoundSip, SipSetupError> {
    let mut credentials = Credentials::default();
    for (user, var) in config.credential_entries()? {
        let password = secrets
            .get(&var)
            .ok_or_else(|| SipSetupError::MissingPassword {
                user: user.clone(),
                var: var.clone(),
            })?;
        credentials.insert(&user, password);
    }
    let allow_from = config.allow_networks()?;
    let bind_error = |source| SipSetupError::Bind {
        addr: listen,
        source,
    };
    // With port 0 the UDP port the OS picks may be taken for TCP: try again.
    let mut attempts = if listen.port() == 0 { 8 } else { 1 };
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind(listen).await.map_err(bind_error)?;
        let port = udp.local_addr().map_err(bind_error)?.port();
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(tcp) => break (udp, tcp),
            Err(e) if attempts > 1 => {
                attempts -= 1;
                debug!(port, error = %e, "SIP: TCP port taken, binding again");
            }
            Err(e) => return Err(bind_error(e)),
        }
    };
    let local_addr = udp.local_addr().map_err(bind_error)?;
    let contact_host = match config.advertised.trim() {
        "" if local_addr.ip().is_unspecified() => {
            SocketAddr::new(advertised_ip, local_addr.port()).to_string()
        }
        "" => local_addr.to_string(),
        given => given.to_owned(),
    };
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let auth = DigestAuth::new(&config.realm, key, credentials);
    Ok(BoundSip {
        udp: Arc::new(udp),
        tcp,
        info: SipInfo::new(local_addr, contact_host),
        auth,
        allow_from,
    })
}

impl BoundSip {
    /// What the server keeps in its state.
    pub fn info(&self) -> SipInfo {
        self.info.clone()
    }

    /// Starts answering: the UDP reader, the TCP acceptor, the transaction
    /// layer's timers and the UAS.
    pub async fn serve(self, state: Arc<AppState>) -> Result<SipIngest, SipSetupError> {
        let cancel = CancellationToken::new();
        let endpoint = rsipstack::EndpointBuilder::new()
            .with_user_agent(concat!("hearken/", env!("CARGO_PKG_VERSION")))
            .with_cancel_token(cancel.child_token())
            .build();
        let inner = endpoint.inner.clone();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| SipSetupError::Bind {
                addr: self.info.local_addr,
                source: std::io::Error::other(e.to_string()),
            })?;
        let errors = state.metrics.ingest_errors_of(Ingest::Sip);
        let local_addr = self.info.local_addr;
        let udp_conn = UdpConnection::attach(
            UdpInner {
                conn: self.udp.clone(),
                addr: SipAddr {
                    r#type: Some(Transport::Udp),
                    addr: local_addr.into(),
                },
            },
            None,
            Some(cancel.child_token()),
        )
        .await;
        let reader = Reader {
            endpoint: inner.clone(),
            errors: errors.clone(),
        };
        let uas = uas::Uas::new(
            state.clone(),
            inner.clone(),
            self.info.clone(),
            self.auth,
            self.allow_from,
            errors,
        );
        // The transaction layer's timers (retransmissions, timeouts).
        tokio::spawn({
            let inner = inner.clone();
            let cancel = cancel.clone();
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = inner.process_timer() => {}
                }
            }
        });
        tokio::spawn(uas.clone().run(incoming, cancel.clone()));
        tokio::spawn(serve_udp(
            self.udp.clone(),
            SipConnection::Udp(udp_conn),
            reader.clone(),
            cancel.clone(),
        ));
        tokio::spawn(serve_tcp(
            self.tcp,
            reader,
            state.metrics.clone(),
            cancel.clone(),
        ));
        info!(%local_addr, contact = %self.info.contact_host, "SIP ingest listening on UDP and TCP");
        Ok(SipIngest {
            cancel,
            _endpoint: endpoint,
        })
    }
}

/// A running SIP ingest.
pub struct SipIngest {
    cancel: CancellationToken,
    // Dropping the endpoint would stop its transport layer; it lives as long
    // as the ingest.
    _endpoint: rsipstack::transaction::Endpoint,
}

impl SipIngest {
    /// Stops reading both sockets and the transaction timers (the node is
    /// stopping; its workers end every call).
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// Turns bytes from a socket into messages for the transaction layer.
#[derive(Clone)]
struct Reader {
    endpoint: EndpointInnerRef,
    errors: Labelled<IngestError, IntCounter>,
}

/// What became of one message.
enum Read {
    /// Handed to the transaction layer.
    Taken,
    /// Refused; `Some` is the answer to send back as is.
    Refused(Option<Vec<u8>>),
}

/// Why a parsed request cannot go to the transaction layer.
fn structural_problem(msg: &SipMessage) -> Option<&'static str> {
    let headers = msg.headers();
    let has = |pred: fn(&Header) -> bool| headers.iter().any(pred);
    if !has(|h| matches!(h, Header::Via(_))) {
        return Some("no Via header");
    }
    if !has(|h| matches!(h, Header::From(_))) {
        return Some("no From header");
    }
    if !has(|h| matches!(h, Header::To(_))) {
        return Some("no To header");
    }
    if !has(|h| matches!(h, Header::CallId(_))) {
        return Some("no Call-ID header");
    }
    let Some(cseq) = headers.iter().find_map(|h| match h {
        Header::CSeq(c) => Some(c.value().to_owned()),
        _ => None,
    }) else {
        return Some("no CSeq header");
    };
    let mut parts = cseq.split_whitespace();
    let (Some(number), Some(method)) = (parts.next(), parts.next()) else {
        return Some("bad CSeq header");
    };
    if number.parse::<u32>().is_err() {
        return Some("bad CSeq number");
    }
    if let SipMessage::Request(req) = msg
        && !method.eq_ignore_ascii_case(&req.method.to_string())
    {
        return Some("CSeq method differs from the request's");
    }
    // RFC 3261 §18.3: over UDP a body shorter than Content-Length is an
    // error (the codec cut or kept what was there).
    let declared = headers.iter().find_map(|h| match h {
        Header::ContentLength(l) => l.value().trim().parse::<usize>().ok(),
        _ => None,
    });
    let body_len = match msg {
        SipMessage::Request(r) => r.body.len(),
        SipMessage::Response(r) => r.body.len(),
    };
    if declared.is_some_and(|d| d > body_len) {
        return Some("body shorter than Content-Length");
    }
    None
}

impl Reader {
    async fn read(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        transport: Transport,
        conn: SipConnection,
    ) -> Read {
        let refuse = |why: &str| {
            self.errors.get(IngestError::MalformedMessage).inc();
            debug!(%from, why, "SIP: malformed message");
            match message::fallback_response(bytes, why) {
                Fallback::Reply { bytes, .. } => Read::Refused(Some(bytes)),
                Fallback::Drop => Read::Refused(None),
            }
        };
        let msg = match SipMessage::try_from(bytes) {
            Ok(msg) => msg,
            Err(e) => return refuse(&format!("unreadable message: {e}")),
        };
        if let Some(why) = structural_problem(&msg) {
            return refuse(why);
        }
        let msg = match SipConnection::update_msg_received(msg, from, transport) {
            Ok(msg) => msg,
            Err(_) => return refuse("unreadable Via header"),
        };
        let source = SipAddr {
            r#type: Some(transport),
            addr: from.into(),
        };
        match self.endpoint.on_received_message(msg, conn, &source).await {
            Ok(()) => Read::Taken,
            Err(e) => refuse(&format!("cannot be matched to a transaction: {e}")),
        }
    }
}

/// Whether a datagram is a keepalive (RFC 5626 §4.4.1: CRLFCRLF, answered
/// with CRLF; a lone CRLF is not answered).
fn keepalive(bytes: &[u8]) -> Option<&'static [u8]> {
    if bytes == b"\r\n\r\n" {
        return Some(b"\r\n");
    }
    bytes.iter().all(u8::is_ascii_whitespace).then_some(b"")
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    conn: SipConnection,
    reader: Reader,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux;
                    // they say nothing about this socket.
                    debug!(error = %e, "SIP: UDP receive error");
                    continue;
                }
            },
        };
        let bytes = &buf[..len];
        if let Some(pong) = keepalive(bytes) {
            if !pong.is_empty() {
                let _ = socket.send_to(pong, from).await;
            }
            continue;
        }
        if let Read::Refused(Some(answer)) =
            reader.read(bytes, from, Transport::Udp, conn.clone()).await
        {
            // Answered to the packet's source, never to a Via it names: a
            // forged Via cannot aim it elsewhere.
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    reader: Reader,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "SIP: TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= MAX_TCP_CONNECTIONS {
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            debug!(%peer, "SIP: too many TCP connections, refused");
            continue;
        }
        let gauge = metrics.ingest_connections.with_label_values(&["sip"]);
        gauge.inc();
        let reader = reader.clone();
        let cancel = cancel.clone();
        let open = open.clone();
        tokio::spawn(async move {
            tcp_connection(stream, peer, reader, cancel).await;
            gauge.dec();
            open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }
}

/// Where a complete message ends in `buf`, if it has arrived: the end of
/// the header section plus Content-Length (RFC 3261 §18.3: mandatory on
/// streams). `Err` when the header section is too large or the length is
/// not a number.
fn frame_length(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_MESSAGE {
            return Err("header section too large");
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name == "l" {
            length = value.trim().parse().map_err(|_| "bad Content-Length")?;
        }
    }
    let total = end + 4 + length;
    if total > MAX_MESSAGE {
        return Err("message too large");
    }
    Ok((buf.len() >= total).then_some(total))
}

async fn tcp_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    reader: Reader,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(wr));
    // The transaction layer answers through a channel connection: what it
    // sends arrives on `out` and is written to the stream.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<TransportEvent>();
    let (_unused_tx, unused_rx) = tokio::sync::mpsc::unbounded_channel::<TransportEvent>();
    let stop = cancel.child_token();
    let Ok(channel) = ChannelConnection::create_connection(
        unused_rx,
        out_tx,
        SipAddr {
            r#type: Some(Transport::Tcp),
            addr: peer.into(),
        },
        Some(stop.clone()),
    )
    .await
    else {
        return;
    };
    let conn = SipConnection::Channel(channel);
    let write_task = tokio::spawn({
        let writer = writer.clone();
        let stop = stop.clone();
        async move {
            while let Some(event) = out_rx.recv().await {
                if let TransportEvent::Incoming(msg, _, _) = event
                    && write_all(&writer, &msg.to_bytes()).await.is_err()
                {
                    stop.cancel();
                    return;
                }
            }
        }
    });
    let mut buf = BytesMut::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            r = tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // RFC 5626 keepalives between messages.
            while buf.starts_with(b"\r\n\r\n") {
                buf.advance(4);
                if write_all(&writer, b"\r\n").await.is_err() {
                    break 'conn;
                }
            }
            while buf.starts_with(b"\r\n") {
                buf.advance(2);
            }
            match frame_length(&buf) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let message = buf.split_to(len);
                    if let Read::Refused(Some(answer)) = reader
                        .read(&message, peer, Transport::Tcp, conn.clone())
                        .await
                    {
                        let _ = write_all(&writer, &answer).await;
                    }
                }
                Err(why) => {
                    // The stream cannot be framed any more: count it, close.
                    reader.errors.get(IngestError::MalformedMessage).inc();
                    debug!(%peer, why, "SIP: TCP stream closed");
                    break 'conn;
                }
            }
        }
    }
    stop.cancel();
    write_task.abort();
    let _ = writer.lock().await.shutdown().await;
}

async fn write_all(
    writer: &tokio::sync::Mutex<OwnedWriteHalf>,
    bytes: &[u8],
) -> std::io::Result<()> {
    writer.lock().await.write_all(bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_on_content_length() {
        let msg = b"OPTIONS sip:x@h SIP/2.0\r\nContent-Length: 4\r\n\r\nabcdNEXT";
        assert_eq!(frame_length(msg), Ok(Some(msg.len() - 4)));
        assert_eq!(frame_length(&msg[..20]), Ok(None));
        assert_eq!(frame_length(&msg[..msg.len() - 6]), Ok(None));
        let compact = b"OPTIONS sip:x@h SIP/2.0\r\nl: 0\r\n\r\n";
        assert_eq!(frame_length(compact), Ok(Some(compact.len())));
        assert!(frame_length(b"X\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(frame_length(b"X\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(frame_length(&vec![b'a'; MAX_MESSAGE + 1]).is_err());
    }

    #[test]
    fn structural_problems_are_named() {
        let ok = "OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: abc\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::try_from(ok).unwrap();
        assert_eq!(structural_problem(&msg), None);
        for (from, to, why) in [
            ("Call-ID: abc\r\n", "", "no Call-ID header"),
            (
                "CSeq: 1 OPTIONS",
                "CSeq: 1 INVITE",
                "CSeq method differs from the request's",
            ),
            (
                "Content-Length: 0",
                "Content-Length: 10",
                "body shorter than Content-Length",
            ),
            ("To: <sip:x@h>\r\n", "", "no To header"),
        ] {
            let text = ok.replace(from, to);
            let msg = SipMessage::try_from(text.as_str()).unwrap();
            assert_eq!(structural_problem(&msg), Some(why), "{text}");
        }
    }

    #[test]
    fn keepalives() {
        assert_eq!(keepalive(b"\r\n\r\n"), Some(&b"\r\n"[..]));
        assert_eq!(keepalive(b"\r\n"), Some(&b""[..]));
        assert_eq!(keepalive(b"OPTIONS"), None);
    }
}
