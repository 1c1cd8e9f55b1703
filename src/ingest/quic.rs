//! The QUIC listener of native ingest: RTP over QUIC (`roq-14`).
//!
//! One task per connection owns everything about it: the calls its tokens
//! bound, a flow-id table, and a bounded buffer for flows not bound yet.
//! Datagrams are read in that task; each unidirectional stream gets a small
//! task that undoes RoQ's stream framing ([`StreamReader`]) and hands the
//! packets to the connection's task. A packet of a bound flow goes straight
//! to the worker that owns its call ([`NativeInlet::send`], never waiting);
//! the table is the connection's own, so the packet path takes no lock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearken_core::ids::CallId;
use hearken_core::roq::{self, RoqErrorCode, StreamEvent, StreamReader};
use prometheus::IntCounter;
use quinn::VarInt;
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use super::TOKEN_FLOW_ID;
use super::native::{NativeCall, NativeCalls};
use crate::config::QuicIngestConfig;
use crate::media::session::SessionKey;
use crate::media::{NativeInlet, NativeMedia};
use crate::metrics::{IngestError, Labelled, Metrics};

/// Longest RTP packet accepted on a stream (RTP fits a UDP datagram; audio
/// needs far less).
const MAX_PACKET: usize = 1500;
/// Packets of flows not (yet) bound that a connection keeps...
const PENDING_PACKETS: usize = 256;
/// ...and their bytes, before it closes with `ROQ_UNKNOWN_FLOW_ID`.
const PENDING_BYTES: usize = 256 * 1024;
/// Unidirectional streams a peer may have open at once (a stream per
/// frame needs many).
const MAX_UNI_STREAMS: u32 = 4096;
/// Packets from stream tasks waiting for the connection task.
const STREAM_EVENTS: usize = 1024;

/// What a running QUIC ingest tells the HTTP API.
#[derive(Debug, Clone)]
pub struct QuicInfo {
    /// `host:port` for platforms to connect to.
    pub advertised: String,
    /// SHA-256 of the server certificate (DER), lowercase hex, for pinning.
    pub cert_sha256: String,
}

/// A running QUIC listener.
pub struct QuicIngest {
    /// What answers advertise.
    pub info: QuicInfo,
    /// The bound address.
    pub local_addr: SocketAddr,
    endpoint: quinn::Endpoint,
}

impl QuicIngest {
    /// Closes every connection (the node is stopping).
    pub fn close(&self) {
        self.endpoint
            .close(code(RoqErrorCode::NoError), b"server shutting down");
    }
}

/// Why the QUIC ingest could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicSetupError {
    /// A certificate or key file could not be read.
    #[error("ingest.quic: cannot read {path}: {message}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The self-signed certificate could not be made.
    #[error("ingest.quic: cannot make a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// TLS refused the certificate or key.
    #[error("ingest.quic: TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The UDP socket could not be bound.
    #[error("ingest.quic.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

fn code(c: RoqErrorCode) -> VarInt {
    VarInt::from_u64(c.code()).unwrap_or(VarInt::from_u32(1))
}

/// Loads `cert_file`/`key_file`, or makes a self-signed certificate for
/// `localhost` and the listen address.
fn certificate(
    config: &QuicIngestConfig,
    listen: SocketAddr,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    QuicSetupError,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| QuicSetupError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_error(cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        return Ok((chain, key));
    }
    let names = vec!["localhost".to_owned(), listen.ip().to_string()];
    let made = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| {
        QuicSetupError::Pem {
            path: "(self-signed)".into(),
            message: e.to_owned(),
        }
    })?;
    Ok((vec![made.cert.der().clone()], key))
}

/// Binds the listener and starts accepting connections.
pub fn start(
    config: &QuicIngestConfig,
    listen: SocketAddr,
    natives: Arc<NativeCalls>,
    metrics: &Metrics,
) -> Result<QuicIngest, QuicSetupError> {
    let (chain, key) = certificate(config, listen)?;
    let cert_sha256 = chain
        .first()
        .map(|c| hex::encode(Sha256::digest(c.as_ref())))
        .unwrap_or_default();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![roq::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| QuicSetupError::Tls(rustls::Error::General(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        // One, so that a peer that opens a bidirectional stream can be told
        // ROQ_STREAM_CREATION_ERROR rather than wait for credit forever.
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .datagram_receive_buffer_size(Some(8 * 1024 * 1024))
        .max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    server.transport_config(Arc::new(transport));
    let endpoint =
        quinn::Endpoint::server(server, listen).map_err(|source| QuicSetupError::Bind {
            addr: listen,
            source,
        })?;
    let local_addr = endpoint
        .local_addr()
        .map_err(|source| QuicSetupError::Bind {
            addr: listen,
            source,
        })?;
    let advertised = match config.advertised.trim() {
        "" => local_addr.to_string(),
        a => a.to_owned(),
    };
    let ctx = Arc::new(Context {
        natives,
        errors: metrics.ingest_errors_of(hearken_core::conference::Ingest::Native),
        connections: metrics.ingest_connections.with_label_values(&["native"]),
        token_timeout: Duration::from_millis(config.token_timeout_ms),
    });
    tokio::spawn(accept(endpoint.clone(), ctx));
    info!(%local_addr, alpn = "roq-14", cert_sha256 = %cert_sha256, "native ingest (RTP over QUIC) listening");
    Ok(QuicIngest {
        info: QuicInfo {
            advertised,
            cert_sha256,
        },
        local_addr,
        endpoint,
    })
}

/// What every connection task shares.
struct Context {
    natives: Arc<NativeCalls>,
    errors: Labelled<IngestError, IntCounter>,
    connections: prometheus::IntGauge,
    token_timeout: Duration,
}

async fn accept(endpoint: quinn::Endpoint, ctx: Arc<Context>) {
    let mut next_id: u64 = 0;
    while let Some(incoming) = endpoint.accept().await {
        next_id += 1;
        let ctx = ctx.clone();
        let span = info_span!("quic", conn = next_id, peer = %incoming.remote_address());
        tokio::spawn(
            async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "handshake failed");
                        ctx.errors.get(IngestError::Handshake).inc();
                        return;
                    }
                };
                ctx.connections.inc();
                Connection::new(conn, ctx.clone()).run().await;
                ctx.connections.dec();
            }
            .instrument(span),
        );
    }
}

/// Where a bound flow's packets go.
#[derive(Clone)]
struct Route {
    inlet: NativeInlet,
    session: SessionKey,
    call_id: CallId,
}

/// What a stream task hands to its connection.
enum FromStream {
    /// A connection token (from the token stream).
    Token(Bytes),
    /// One RTP packet of a flow.
    Packet(u64, Bytes, Instant),
}

/// Why a connection is closed.
struct Close(RoqErrorCode, String);

struct Connection {
    conn: quinn::Connection,
    ctx: Arc<Context>,
    /// Calls whose tokens this connection presented.
    calls: Vec<CallId>,
    /// A valid token was presented once (a connection whose calls all
    /// ended stays open for the platform's next ones).
    proven: bool,
    routes: FxHashMap<u64, Route>,
    /// Flows of calls that ended or flows removed: their late packets are
    /// dropped quietly rather than counted against the unknown-flow bound.
    retired: FxHashSet<u64>,
    pending: VecDeque<(u64, Bytes, Instant)>,
    pending_bytes: usize,
}

impl Connection {
    fn new(conn: quinn::Connection, ctx: Arc<Context>) -> Self {
        Self {
            conn,
            ctx,
            calls: Vec::new(),
            proven: false,
            routes: FxHashMap::default(),
            retired: FxHashSet::default(),
            pending: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    async fn run(mut self) {
        debug!("connection established");
        let (to_conn, mut from_streams) = mpsc::channel(STREAM_EVENTS);
        let mut changed: watch::Receiver<u64> = self.ctx.natives.watch();
        let token_deadline = tokio::time::sleep(self.ctx.token_timeout);
        tokio::pin!(token_deadline);
        let closing = loop {
            let step = tokio::select! {
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(d) => self.datagram(d),
                    Err(e) => break Err(e),
                },
                stream = self.conn.accept_uni() => match stream {
                    Ok(recv) => {
                        tokio::spawn(read_stream(recv, to_conn.clone(), self.ctx.clone()).in_current_span());
                        Ok(())
                    }
                    Err(e) => break Err(e),
                },
                bidi = self.conn.accept_bi() => match bidi {
                    Ok(_) => {
                        self.ctx.errors.get(IngestError::StreamCreation).inc();
                        Err(Close(
                            RoqErrorCode::StreamCreationError,
                            "RoQ uses unidirectional streams only".into(),
                        ))
                    }
                    Err(e) => break Err(e),
                },
                Some(event) = from_streams.recv() => match event {
                    FromStream::Token(token) => self.bind(&token),
                    FromStream::Packet(flow, packet, arrival) => self.packet(flow, packet, arrival),
                },
                Ok(()) = changed.changed() => self.refresh(),
                () = &mut token_deadline, if !self.proven => {
                    self.ctx.errors.get(IngestError::BadToken).inc();
                    Err(Close(
                        RoqErrorCode::GeneralError,
                        format!(
                            "no connection token within {} ms",
                            self.ctx.token_timeout.as_millis()
                        ),
                    ))
                }
            };
            if let Err(close) = step {
                break Ok(close);
            }
        };
        match closing {
            Ok(Close(roq_code, reason)) => {
                warn!(code = %roq_code, reason = %reason, "closing connection");
                self.conn.close(code(roq_code), reason.as_bytes());
            }
            Err(e) => debug!(reason = %e, "connection closed"),
        }
    }

    fn datagram(&mut self, datagram: Bytes) -> Result<(), Close> {
        let arrival = Instant::now();
        match roq::parse_datagram(&datagram) {
            Ok((flow, rtp)) => {
                let packet = datagram.slice_ref(rtp);
                self.packet(flow.value(), packet, arrival)
            }
            Err(e) => {
                debug!(error = %e, "malformed datagram dropped");
                self.ctx.errors.get(IngestError::BadFraming).inc();
                Ok(())
            }
        }
    }

    fn packet(&mut self, flow: u64, packet: Bytes, arrival: Instant) -> Result<(), Close> {
        if let Some(route) = self.routes.get(&flow) {
            let media = NativeMedia {
                session: route.session,
                flow_id: flow,
                packet,
                arrival,
            };
            if route.inlet.send(media).is_err() {
                self.ctx.errors.get(IngestError::WorkerQueueFull).inc();
            }
            return Ok(());
        }
        if self.retired.contains(&flow) {
            self.ctx.errors.get(IngestError::UnknownFlow).inc();
            return Ok(());
        }
        self.pending_bytes += packet.len();
        self.pending.push_back((flow, packet, arrival));
        if self.pending.len() > PENDING_PACKETS || self.pending_bytes > PENDING_BYTES {
            self.ctx.errors.get(IngestError::UnknownFlow).inc();
            return Err(Close(
                RoqErrorCode::UnknownFlowId,
                format!("flow {flow} is bound to no call on this connection"),
            ));
        }
        Ok(())
    }

    /// A connection token: binds its call's flows.
    fn bind(&mut self, token: &[u8]) -> Result<(), Close> {
        let Some(call) = self.ctx.natives.by_token(token) else {
            self.ctx.errors.get(IngestError::BadToken).inc();
            return Err(Close(
                RoqErrorCode::GeneralError,
                "bad connection token".into(),
            ));
        };
        self.proven = true;
        if !self.calls.contains(&call.call_id) {
            info!(call = %call.call_id, flows = call.flows.len(), "call bound");
            self.calls.push(call.call_id.clone());
        }
        self.refresh()
    }

    /// Rebuilds the flow table from the bound calls (a token arrived, or a
    /// call's flows changed or it ended), then lets through what waited.
    fn refresh(&mut self) -> Result<(), Close> {
        let mut routes: FxHashMap<u64, Route> = FxHashMap::default();
        let mut live = Vec::with_capacity(self.calls.len());
        for call_id in &self.calls {
            let Some(call) = self.ctx.natives.by_call(call_id) else {
                continue;
            };
            live.push(call_id.clone());
            add_routes(&mut routes, &call)?;
        }
        for flow in self.routes.keys() {
            if !routes.contains_key(flow) {
                self.retired.insert(*flow);
            }
        }
        for flow in routes.keys() {
            self.retired.remove(flow);
        }
        self.calls = live;
        self.routes = routes;
        let waiting = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (flow, packet, arrival) in waiting {
            self.packet(flow, packet, arrival)?;
        }
        Ok(())
    }
}

fn add_routes(routes: &mut FxHashMap<u64, Route>, call: &NativeCall) -> Result<(), Close> {
    for flow in &call.flows {
        let route = Route {
            inlet: call.inlet.clone(),
            session: call.session,
            call_id: call.call_id.clone(),
        };
        if let Some(other) = routes.insert(flow.flow_id, route)
            && other.call_id != call.call_id
        {
            return Err(Close(
                RoqErrorCode::GeneralError,
                format!(
                    "flow {} is used by two calls on this connection ({} and {})",
                    flow.flow_id, other.call_id, call.call_id
                ),
            ));
        }
    }
    Ok(())
}

/// `packet` as `Bytes`: a slice of `chunk` (no copy) when it lies there
/// whole, else a copy (it was gathered across chunks).
fn packet_bytes(chunk: &Bytes, packet: &[u8]) -> Bytes {
    let (outer, inner) = (chunk.as_ptr_range(), packet.as_ptr_range());
    let within = outer.start <= inner.start && inner.end <= outer.end;
    if within {
        chunk.slice_ref(packet)
    } else {
        Bytes::copy_from_slice(packet)
    }
}

/// Reads one unidirectional stream: its flow id, then its packets.
async fn read_stream(
    mut recv: quinn::RecvStream,
    to_conn: mpsc::Sender<FromStream>,
    ctx: Arc<Context>,
) {
    let mut reader = StreamReader::new(MAX_PACKET);
    let mut flow = None;
    loop {
        let chunk = match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => {
                if let Err(e) = reader.finish() {
                    debug!(error = %e, "stream ended mid-packet");
                    ctx.errors.get(IngestError::BadFraming).inc();
                }
                return;
            }
            // Reset by the peer (ROQ_FRAME_CANCELLED) or the connection ended.
            Err(_) => return,
        };
        let mut input: &[u8] = &chunk;
        loop {
            match reader.read(&mut input) {
                Ok(None) => break,
                Ok(Some(StreamEvent::Flow(f))) => flow = Some(f.value()),
                Ok(Some(StreamEvent::Packet(p))) => {
                    let Some(flow) = flow else { continue };
                    let packet = packet_bytes(&chunk, p);
                    let event = if flow == TOKEN_FLOW_ID {
                        FromStream::Token(packet)
                    } else {
                        FromStream::Packet(flow, packet, Instant::now())
                    };
                    if to_conn.send(event).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "stream framing broken");
                    ctx.errors.get(IngestError::BadFraming).inc();
                    let _ = recv.stop(code(e.code()));
                    return;
                }
            }
        }
    }
}
