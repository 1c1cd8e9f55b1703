//! The WHIP client side that Hearken's tests, benches and load generator
//! share: a str0m `Rtc` in the client role (full ICE, controlling, DTLS
//! active), built and driven the same way everywhere, with no socket and no
//! clock of its own.
//!
//! - [`WhipOffer::new`] builds the client and its offer: one audio m-line
//!   per [`Track`], each with its own msid stream id.
//! - [`WhipOffer::accept`] applies the server's answer and gives the
//!   [`WhipClient`].
//! - [`roq`]: a native-ingest client (RTP over QUIC, quinn) as a platform
//!   sends it.
//! - [`services`]: private NATS (JetStream) and PostgreSQL servers for the
//!   tests of a Hearken cluster, each on its own loopback port.
//! - The caller moves datagrams: [`WhipClient::handle_datagram`] in,
//!   [`WhipClient::poll_output`] out (until it returns a timeout), over real
//!   sockets or an in-memory network in simulated time.

#![forbid(unsafe_code)]

pub mod roq;
pub mod services;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt, TelephoneEvent};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Why the client cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The local address cannot be a host candidate.
    #[error("no host candidate for {0}")]
    Candidate(SocketAddr),
    /// str0m made no offer.
    #[error("no offer was created")]
    NoOffer,
    /// The answer is not SDP.
    #[error("the answer is not valid SDP: {0}")]
    AnswerSdp(String),
    /// The answer does not fit the offer.
    #[error("the answer was refused: {0}")]
    AnswerRefused(String),
    /// The client's `Rtc` failed.
    #[error("client rtc: {0}")]
    Rtc(#[from] str0m::RtcError),
}

/// One audio m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The msid stream id (the participant id Hearken records under).
    pub stream_id: String,
    /// `SendOnly` (a WHIP publisher) or `SendRecv` (hears the bot).
    pub direction: Direction,
}

impl Track {
    /// A sendonly track.
    pub fn send_only(stream_id: &str) -> Self {
        Self {
            stream_id: stream_id.to_owned(),
            direction: Direction::SendOnly,
        }
    }

    /// A sendrecv track (the server may play prompts into it).
    pub fn send_recv(stream_id: &str) -> Self {
        Self {
            stream_id: stream_id.to_owned(),
            direction: Direction::SendRecv,
        }
    }
}

/// The client's codecs: Opus, and telephone-event at the Opus clock (as
/// Chrome offers it, PT 110).
pub fn client_config() -> RtcConfig {
    let mut config = Rtc::builder();
    config.codec_config().add_config(
        Pt::new_with_value(110),
        None,
        Codec::Tele,
        Frequency::FORTY_EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    config
}

/// A client whose offer is out, waiting for the answer.
pub struct WhipOffer {
    rtc: Rtc,
    local: SocketAddr,
    mids: Vec<Mid>,
    pending: SdpPendingOffer,
}

impl WhipOffer {
    /// A client at `local` offering `tracks`. Returns it and the offer SDP.
    pub fn new(
        local: SocketAddr,
        tracks: &[Track],
        now: Instant,
    ) -> Result<(Self, String), ClientError> {
        Self::with_config(client_config(), local, tracks, now)
    }

    /// Like [`Self::new`] with the caller's `Rtc` settings.
    pub fn with_config(
        config: RtcConfig,
        local: SocketAddr,
        tracks: &[Track],
        now: Instant,
    ) -> Result<(Self, String), ClientError> {
        let mut rtc = config.build(now);
        let candidate = Candidate::host(local, "udp").map_err(|_| ClientError::Candidate(local))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let mids = tracks
            .iter()
            .map(|t| {
                api.add_media(
                    MediaKind::Audio,
                    t.direction,
                    Some(t.stream_id.clone()),
                    Some(format!("{}-audio", t.stream_id)),
                    None,
                )
            })
            .collect();
        let (offer, pending) = api.apply().ok_or(ClientError::NoOffer)?;
        let sdp = offer.to_sdp_string();
        Ok((
            Self {
                rtc,
                local,
                mids,
                pending,
            },
            sdp,
        ))
    }

    /// Applies the server's answer.
    pub fn accept(mut self, answer: &str) -> Result<WhipClient, ClientError> {
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| ClientError::AnswerSdp(e.to_string()))?;
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .map_err(|e| ClientError::AnswerRefused(e.to_string()))?;
        Ok(WhipClient {
            rtc: self.rtc,
            local: self.local,
            rtp_time: vec![0; self.mids.len()],
            mids: self.mids,
            connected: false,
        })
    }
}

/// What the client has for its driver.
#[derive(Debug)]
pub enum ClientOutput {
    /// Send `contents` to `destination`.
    Transmit {
        /// Where to.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// ICE and DTLS completed.
    Connected,
    /// Audio the server sent on m-line `track` (a prompt).
    Audio {
        /// Index of the track in the offer.
        track: usize,
        /// The Opus packet.
        payload: Vec<u8>,
    },
    /// Nothing more until this time (or a datagram).
    Timeout(Instant),
}

/// A connected (or connecting) WHIP client. See the crate docs.
pub struct WhipClient {
    /// The client's `Rtc`, for anything not wrapped here.
    pub rtc: Rtc,
    /// Its address.
    pub local: SocketAddr,
    /// The m-line of each track, in offer order.
    pub mids: Vec<Mid>,
    rtp_time: Vec<u64>,
    connected: bool,
}

impl WhipClient {
    /// Whether ICE and DTLS completed.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A datagram arrived from `source`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), ClientError> {
        if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, data) {
            self.rtc.handle_input(Input::Receive(now, r))?;
        }
        Ok(())
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    /// The next thing to do; call until it returns [`ClientOutput::Timeout`].
    pub fn poll_output(&mut self) -> Result<ClientOutput, ClientError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(ClientOutput::Timeout(t)),
                Output::Transmit(t) => {
                    return Ok(ClientOutput::Transmit {
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    });
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    return Ok(ClientOutput::Connected);
                }
                Output::Event(Event::MediaData(data)) => {
                    if let Some(track) = self.mids.iter().position(|m| *m == data.mid) {
                        return Ok(ClientOutput::Audio {
                            track,
                            payload: data.data.to_vec(),
                        });
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// The m-line of `track` and its negotiated Opus payload type, while it
    /// sends.
    fn opus_of(&mut self, track: usize) -> Option<(Mid, Pt)> {
        let mid = *self.mids.get(track)?;
        let pt = self
            .rtc
            .writer(mid)?
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt())?;
        Some((mid, pt))
    }

    /// Sends one Opus packet of `samples` (48 kHz) on track `track`, with an
    /// RFC 6464 audio level (-dBov) when given. Returns `false` when the
    /// track no longer sends (the server ended the session).
    pub fn send_opus(
        &mut self,
        track: usize,
        now: Instant,
        payload: &[u8],
        samples: u64,
        audio_level: Option<i8>,
    ) -> Result<bool, ClientError> {
        let Some((mid, pt)) = self.opus_of(track) else {
            return Ok(false);
        };
        let Some(mut writer) = self.rtc.writer(mid) else {
            return Ok(false);
        };
        if let Some(level) = audio_level {
            writer = writer.audio_level(level, level > -60);
        }
        let at = MediaTime::new(self.rtp_time[track], Frequency::FORTY_EIGHT_KHZ);
        writer.write(pt, now, at, payload.to_vec())?;
        self.rtp_time[track] += samples;
        Ok(true)
    }

    /// Presses DTMF key `event` (RFC 4733 code) on track `track`: one event
    /// packet, end bit set, lasting `duration`.
    pub fn press_key(
        &mut self,
        track: usize,
        now: Instant,
        event: u8,
        duration: Duration,
    ) -> Result<bool, ClientError> {
        let Some((mid, pt)) = self.opus_of(track) else {
            return Ok(false);
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return Ok(false);
        };
        let at = MediaTime::new(self.rtp_time[track], Frequency::FORTY_EIGHT_KHZ);
        writer
            .telephone_event(TelephoneEvent {
                event,
                end: true,
                volume: 10,
                duration,
            })
            .write(pt, now, at, Vec::new())?;
        Ok(true)
    }
}

/// The Opus packets of an Ogg Opus file (its two header packets skipped),
/// in order: the speech the tests and the load generator send.
pub fn read_opus_packets(path: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut reader = ogg::PacketReader::new(std::io::BufReader::new(file));
    let mut packets = Vec::new();
    while let Some(p) = reader
        .read_packet()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
    {
        packets.push(p.data);
    }
    // OpusHead and OpusTags.
    Ok(packets.split_off(2.min(packets.len())))
}

/// Offset of the USERNAME attribute's value (RFC 8489 §14.3) in a STUN
/// message, for tests that forge or alter a connectivity check.
pub fn stun_username_at(stun: &[u8]) -> Option<usize> {
    let mut at = 20;
    while at + 4 <= stun.len() {
        let kind = u16::from_be_bytes([stun[at], stun[at + 1]]);
        let len = usize::from(u16::from_be_bytes([stun[at + 2], stun[at + 3]]));
        if kind == 0x0006 {
            return Some(at + 4);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}
