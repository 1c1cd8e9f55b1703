//! A native-ingest client: RTP over QUIC (`roq-14`) as a platform sends it,
//! for the tests and the load generator.
//!
//! It connects with quinn, trusts exactly the certificate whose SHA-256 the
//! native answer published (`cert_sha256`), presents connection tokens on
//! the token stream, and sends RTP in DATAGRAMs or in unidirectional
//! streams, with RoQ's framing from `hearken_core::roq`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hearken_core::roq::{self, FlowId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoqClientError {
    /// QUIC or TLS setup.
    #[error("setup: {0}")]
    Setup(String),
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing a stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Finishing a stream failed.
    #[error("finish: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// A datagram could not be sent.
    #[error("datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// Framing refused the input.
    #[error("framing: {0}")]
    Framing(#[from] roq::RoqError),
}

/// Trusts one certificate, named by its SHA-256 (the native answer's
/// `cert_sha256`), as a platform pins a self-signed server.
#[derive(Debug)]
struct PinnedCert {
    sha256: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned SHA-256".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One QUIC connection to Hearken's native ingest.
pub struct RoqClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl RoqClient {
    /// Connects to `server`, trusting only the certificate whose SHA-256 is
    /// `cert_sha256` (hex).
    pub async fn connect(server: SocketAddr, cert_sha256: &str) -> Result<Self, RoqClientError> {
        let sha256 = hex::decode(cert_sha256).map_err(|e| RoqClientError::Setup(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = PinnedCert {
            sha256,
            algorithms: provider.signature_verification_algorithms,
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RoqClientError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls.alpn_protocols = vec![roq::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| RoqClientError::Setup(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.datagram_send_buffer_size(4 * 1024 * 1024);
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if server.is_ipv6() {
            "[::1]:0".parse()
        } else {
            "127.0.0.1:0".parse()
        }
        .map_err(|e: std::net::AddrParseError| RoqClientError::Setup(e.to_string()))?;
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| RoqClientError::Setup(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(server, "localhost")?.await?;
        Ok(Self { endpoint, conn })
    }

    /// The connection (to watch it close, or misbehave on purpose).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Presents connection tokens on one token stream (flow id 2^62 - 1,
    /// one RoQ packet per token).
    pub async fn present_tokens(&self, tokens: &[&str]) -> Result<(), RoqClientError> {
        let mut buf = Vec::new();
        roq::encode_stream_header(FlowId::new(roq::MAX_VARINT)?, &mut buf);
        for token in tokens {
            roq::encode_stream_packet(token.as_bytes(), &mut buf)?;
        }
        let mut send = self.conn.open_uni().await?;
        send.write_all(&buf).await?;
        send.finish()?;
        Ok(())
    }

    /// Sends one RTP packet of `flow` in a DATAGRAM.
    pub fn send_datagram(&self, flow: u64, rtp: &[u8]) -> Result<(), RoqClientError> {
        let mut buf = Vec::with_capacity(rtp.len() + 8);
        roq::encode_datagram(FlowId::new(flow)?, rtp, &mut buf)?;
        self.conn.send_datagram(Bytes::from(buf))?;
        Ok(())
    }

    /// Sends RTP packets of `flow` on a new unidirectional stream (a stream
    /// per frame, as RoQ suggests against head-of-line blocking).
    pub async fn send_stream(&self, flow: u64, packets: &[&[u8]]) -> Result<(), RoqClientError> {
        let mut buf = Vec::new();
        roq::encode_stream_header(FlowId::new(flow)?, &mut buf);
        for p in packets {
            roq::encode_stream_packet(p, &mut buf)?;
        }
        let mut send = self.conn.open_uni().await?;
        send.write_all(&buf).await?;
        send.finish()?;
        Ok(())
    }

    /// Closes the connection and waits for the peer to learn it.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// An RTP packet (version 2, no CSRC, no extension).
pub fn rtp_packet(
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    rtp_packet_marked(false, payload_type, seq, timestamp, ssrc, payload)
}

/// An RTP packet like [`rtp_packet`] with the marker bit set to `marker`:
/// audio senders set it on the first packet of a talkspurt after a silence
/// they did not send (RFC 3551 §4.1), as Opus DTX does.
pub fn rtp_packet_marked(
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    // RFC 3550 §5.1: V=2, P=0, X=0, CC=0; M, PT; sequence; timestamp; SSRC.
    p.push(0x80);
    p.push((u8::from(marker) << 7) | (payload_type & 0x7f));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_bit_sits_above_the_payload_type() {
        let plain = rtp_packet(111, 7, 960, 0xabcd, &[1, 2]);
        let marked = rtp_packet_marked(true, 111, 7, 960, 0xabcd, &[1, 2]);
        assert_eq!(plain.len(), 14);
        assert_eq!(plain[1], 111);
        assert_eq!(marked[1], 0x80 | 111);
        assert_eq!(plain[0], marked[0]);
        assert_eq!(plain[2..], marked[2..]);
    }
}
