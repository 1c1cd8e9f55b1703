//! SDP for SIP dial-in: the offer/answer model of RFC 3264 for one audio
//! stream of plain RTP, as pure functions.
//!
//! - [`parse`] reads a session description (only what negotiation needs).
//! - [`negotiate`] picks, from an offer, the first audio stream Hearken can
//!   take and the first of its codecs Hearken speaks (PCMU, PCMA, G.722,
//!   Opus), in the offerer's order and with the offerer's payload type
//!   numbers; [`answer`] writes the answer: the same m-lines in the same
//!   order, every other stream refused with port 0.
//! - [`offer`] writes Hearken's own offer for a late-offer INVITE (one
//!   without SDP) and [`accept_answer`] reads the caller's answer to it.
//!
//! RTCP: Hearken advertises no `a=rtcp` line and does not ask for
//! `a=rtcp-mux`; by RFC 3550 a peer sends RTCP to the RTP port + 1. The media
//! worker has a single port, so that RTCP is never read, and nothing here
//! needs to negotiate a port for it (Hearken needs no RTCP to record).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::media::transcode::WireCodec;
use crate::media::{SipDirection, SipMedia};

/// The payload types Hearken's own offer uses for its dynamic formats.
const OFFER_OPUS_PT: u8 = 96;
const OFFER_DTMF_PT: u8 = 101;
const OFFER_DTMF48_PT: u8 = 102;

/// Why an offer (or an answer to Hearken's offer) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not SDP Hearken can read (the line is named).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No audio stream was offered (or all were refused with port 0).
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio was offered only over secure RTP (RTP/SAVP, SDES), which
    /// Hearken's plain RTP does not carry.
    #[error("audio offered only as secure RTP ({0}); Hearken takes plain RTP/AVP")]
    SecureOnly(String),
    /// No offered codec is one Hearken speaks.
    #[error("no codec in common: Hearken takes PCMU, PCMA, G722 or opus/48000/2")]
    NoCommonCodec,
    /// The stream's address is not an IP address.
    #[error("the connection address {0:?} is not an IP address")]
    BadAddress(String),
}

impl SdpError {
    /// Whether the SIP answer is 488 (a valid offer Hearken cannot take)
    /// rather than 400 (not valid SDP).
    pub fn is_not_acceptable(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }
}

/// An `a=rtpmap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type.
    pub pt: u8,
    /// The encoding name as written (`PCMU`, `opus`, …).
    pub encoding: String,
    /// The clock rate.
    pub clock: u32,
    /// The channels, if given.
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, …
    pub kind: String,
    /// The port (0: refused or disabled).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, …
    pub proto: String,
    /// The format list as written (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// The section's `c=` address, if it has one.
    pub connection: Option<IpAddr>,
    /// Its `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// Its direction attribute, if it has one.
    pub direction: Option<SipDirection>,
}

/// A session description, as far as negotiation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// The session-level direction attribute.
    pub direction: Option<SipDirection>,
    /// The media sections in order.
    pub media: Vec<MediaSection>,
}

fn malformed(line: &str) -> SdpError {
    let shown: String = line.chars().take(80).collect();
    SdpError::Malformed(format!("cannot read line {shown:?}"))
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl]
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(_family), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(&format!("c={value}")));
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| SdpError::BadAddress(addr.chars().take(64).collect()))
}

fn parse_direction(attr: &str) -> Option<SipDirection> {
    match attr {
        "sendrecv" => Some(SipDirection::SendRecv),
        "sendonly" => Some(SipDirection::SendOnly),
        "recvonly" => Some(SipDirection::RecvOnly),
        "inactive" => Some(SipDirection::Inactive),
        _ => None,
    }
}

fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    // a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
    let (pt, rest) = value.split_once(' ')?;
    let mut enc = rest.trim().split('/');
    let encoding = enc.next()?.to_owned();
    let clock = enc.next()?.trim().parse().ok()?;
    let channels = match enc.next() {
        Some(c) => Some(c.trim().parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        pt: pt.trim().parse().ok()?,
        encoding,
        clock,
        channels,
    })
}

/// Reads a session description. Unknown lines and attributes are skipped;
/// lines Hearken relies on (`c=`, `m=`) must be well-formed.
pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let mut sdp = SessionDescription {
        connection: None,
        direction: None,
        media: Vec::new(),
    };
    let mut saw_version = false;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(malformed(line));
        };
        match kind {
            "v" => {
                if value.trim() != "0" {
                    return Err(malformed(line));
                }
                saw_version = true;
            }
            "c" => {
                let addr = parse_connection(value)?;
                match sdp.media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => sdp.connection = Some(addr),
                }
            }
            "m" => {
                let mut parts = value.split_whitespace();
                let (Some(kind), Some(port), Some(proto)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(malformed(line));
                };
                // m=audio 49170/2 RTP/AVP 0: a port count is allowed.
                let port = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| malformed(line))?;
                sdp.media.push(MediaSection {
                    kind: kind.to_owned(),
                    port,
                    proto: proto.to_owned(),
                    formats: parts.map(str::to_owned).collect(),
                    connection: None,
                    rtpmaps: Vec::new(),
                    direction: None,
                });
            }
            "a" => {
                let (name, attr_value) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                if let Some(direction) = parse_direction(name) {
                    match sdp.media.last_mut() {
                        Some(m) => m.direction = Some(direction),
                        None => sdp.direction = Some(direction),
                    }
                } else if name == "rtpmap"
                    && let (Some(m), Some(v)) = (sdp.media.last_mut(), attr_value)
                {
                    // An rtpmap Hearken cannot read names a format it will
                    // not pick; skipping it is safe.
                    if let Some(map) = parse_rtpmap(v) {
                        m.rtpmaps.push(map);
                    }
                }
            }
            _ if kind.len() == 1 => {}
            _ => return Err(malformed(line)),
        }
    }
    if !saw_version {
        return Err(SdpError::Malformed("no v=0 line".into()));
    }
    Ok(sdp)
}

/// What the answer gives one offered stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The index of the accepted audio m-line.
    pub index: usize,
    /// The media the dialog carries.
    pub media: SipMedia,
    /// The rtpmap of the codec (for the answer).
    pub codec_map: RtpMap,
    /// The rtpmap of `telephone-event`, if offered at a rate that fits.
    pub dtmf_map: Option<RtpMap>,
}

/// The rtpmap of format `pt` in `m`, or the static one RFC 3551 gives it.
fn rtpmap_of(m: &MediaSection, pt: u8) -> Option<RtpMap> {
    if let Some(map) = m.rtpmaps.iter().find(|r| r.pt == pt) {
        return Some(map.clone());
    }
    let (encoding, clock) = match pt {
        0 => ("PCMU", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        _ => return None,
    };
    Some(RtpMap {
        pt,
        encoding: encoding.to_owned(),
        clock,
        channels: None,
    })
}

fn codec_of(map: &RtpMap) -> Option<WireCodec> {
    let name = map.encoding.to_ascii_lowercase();
    match (name.as_str(), map.clock) {
        ("pcmu", 8000) => Some(WireCodec::Pcmu),
        ("pcma", 8000) => Some(WireCodec::Pcma),
        ("g722", 8000) => Some(WireCodec::G722),
        // RFC 7587: opus is always opus/48000/2 in SDP.
        ("opus", 48000) if map.channels == Some(2) => Some(WireCodec::Opus),
        _ => None,
    }
}

fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP")
}

fn is_secure_rtp(proto: &str) -> bool {
    let p = proto.to_ascii_uppercase();
    p.contains("SAVP") || p.starts_with("UDP/TLS")
}

/// The telephone-event format of `m` that goes with `codec`: the one at
/// the codec's RTP clock (RFC 4733 §2.1), else the 8 kHz one.
fn dtmf_of(m: &MediaSection, codec: WireCodec) -> Option<RtpMap> {
    let events: Vec<RtpMap> = m
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| rtpmap_of(m, pt))
        .filter(|r| r.encoding.eq_ignore_ascii_case("telephone-event"))
        .collect();
    events
        .iter()
        .find(|r| r.clock == codec.clock_rate())
        .or_else(|| events.iter().find(|r| r.clock == 8000))
        .cloned()
}

/// The direction of a stream: its own attribute, else the session's, else
/// `sendrecv`; an old-style hold (`c=0.0.0.0`, RFC 2543) counts as
/// `inactive`.
fn direction_of(sdp: &SessionDescription, m: &MediaSection, addr: IpAddr) -> SipDirection {
    if addr.is_unspecified() {
        return SipDirection::Inactive;
    }
    m.direction
        .or(sdp.direction)
        .unwrap_or(SipDirection::SendRecv)
}

/// Picks the stream and codec Hearken answers an offer with: the first
/// audio m-line over plain RTP with a non-zero port and a codec Hearken
/// speaks; within it, the first such codec in the offerer's order.
pub fn negotiate(offer: &SessionDescription) -> Result<Negotiated, SdpError> {
    let mut saw_audio = false;
    let mut secure: Option<String> = None;
    for (index, m) in offer.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 {
            continue;
        }
        saw_audio = true;
        if !is_plain_rtp(&m.proto) {
            if is_secure_rtp(&m.proto) {
                secure.get_or_insert_with(|| m.proto.clone());
            }
            continue;
        }
        let Some((codec, codec_map)) = m
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| rtpmap_of(m, pt))
            .find_map(|map| codec_of(&map).map(|c| (c, map)))
        else {
            continue;
        };
        let Some(addr) = m.connection.or(offer.connection) else {
            return Err(SdpError::Malformed(format!(
                "m-line {index} has no c= line and the session has none"
            )));
        };
        let dtmf_map = dtmf_of(m, codec);
        return Ok(Negotiated {
            index,
            media: SipMedia {
                remote_rtp: SocketAddr::new(addr, m.port),
                codec,
                payload_type: codec_map.pt,
                dtmf_payload_type: dtmf_map.as_ref().map(|d| d.pt),
                direction: direction_of(offer, m, addr),
            },
            codec_map,
            dtmf_map,
        });
    }
    Err(match (saw_audio, secure) {
        (false, _) => SdpError::NoAudio,
        (true, Some(proto)) => SdpError::SecureOnly(proto),
        (true, None) => SdpError::NoCommonCodec,
    })
}

/// The direction Hearken answers with (RFC 3264 §6.1).
pub fn answer_direction(caller: SipDirection) -> &'static str {
    match caller {
        SipDirection::SendRecv => "sendrecv",
        SipDirection::SendOnly => "recvonly",
        SipDirection::RecvOnly => "sendonly",
        SipDirection::Inactive => "inactive",
    }
}

/// The `o=` line's numbers: a session id fixed for the dialog and a version
/// that grows with every new description Hearken sends in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The session id.
    pub session_id: u64,
    /// The version.
    pub version: u64,
}

fn ip_family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IP4" } else { "IP6" }
}

fn write_header(out: &mut String, local: SocketAddr, origin: Origin) {
    let ip = local.ip();
    let fam = ip_family(ip);
    let _ = write!(
        out,
        "v=0\r\no=hearken {} {} IN {fam} {ip}\r\ns=hearken\r\nc=IN {fam} {ip}\r\nt=0 0\r\n",
        origin.session_id, origin.version
    );
}

fn write_rtpmap(out: &mut String, map: &RtpMap) {
    let _ = write!(out, "a=rtpmap:{} {}/{}", map.pt, map.encoding, map.clock);
    if let Some(ch) = map.channels {
        let _ = write!(out, "/{ch}");
    }
    out.push_str("\r\n");
}

/// Writes the answer to `offer`: the m-lines in the offer's order, the
/// negotiated one on `local` (the media worker's RTP address) with the
/// chosen codec and `telephone-event`, every other one refused (port 0,
/// its formats as offered).
pub fn answer(
    offer: &SessionDescription,
    chosen: &Negotiated,
    local: SocketAddr,
    origin: Origin,
) -> String {
    let mut out = String::with_capacity(512);
    write_header(&mut out, local, origin);
    for (index, m) in offer.media.iter().enumerate() {
        if index != chosen.index {
            // RFC 3264 §6: a refused stream keeps its m-line with port 0
            // and at least one format.
            let formats = if m.formats.is_empty() {
                "0".to_owned()
            } else {
                m.formats.join(" ")
            };
            let _ = write!(out, "m={} 0 {} {formats}\r\n", m.kind, m.proto);
            continue;
        }
        let mut formats = chosen.codec_map.pt.to_string();
        if let Some(d) = &chosen.dtmf_map {
            let _ = write!(formats, " {}", d.pt);
        }
        let _ = write!(out, "m=audio {} RTP/AVP {formats}\r\n", local.port());
        write_rtpmap(&mut out, &chosen.codec_map);
        if let Some(d) = &chosen.dtmf_map {
            write_rtpmap(&mut out, d);
            let _ = write!(out, "a=fmtp:{} 0-16\r\n", d.pt);
        }
        out.push_str("a=ptime:20\r\n");
        let _ = write!(out, "a={}\r\n", answer_direction(chosen.media.direction));
    }
    out
}

/// Hearken's own offer (late offer: the INVITE had no SDP): every codec it
/// speaks, and telephone-event at both clocks, `sendrecv`.
pub fn offer(local: SocketAddr, origin: Origin) -> String {
    let mut out = String::with_capacity(512);
    write_header(&mut out, local, origin);
    let _ = write!(
        out,
        "m=audio {} RTP/AVP 0 8 9 {OFFER_OPUS_PT} {OFFER_DTMF_PT} {OFFER_DTMF48_PT}\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:9 G722/8000\r\n\
         a=rtpmap:{OFFER_OPUS_PT} opus/48000/2\r\n\
         a=rtpmap:{OFFER_DTMF_PT} telephone-event/8000\r\n\
         a=fmtp:{OFFER_DTMF_PT} 0-16\r\n\
         a=rtpmap:{OFFER_DTMF48_PT} telephone-event/48000\r\n\
         a=fmtp:{OFFER_DTMF48_PT} 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
        local.port()
    );
    out
}

/// Reads the caller's answer to [`offer`]: the first accepted audio stream
/// and the first codec in it (an answer lists what will be used, RFC 3264
/// §6.1), which must be one Hearken offered.
pub fn accept_answer(answer: &SessionDescription) -> Result<SipMedia, SdpError> {
    // The answer's formats are a subset of Hearken's offer, so negotiating
    // over it picks the answerer's first choice among them.
    negotiate(answer).map(|n| n.media)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "192.0.2.10:40002";

    fn offer_with(media: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
        )
    }

    fn answer_to(text: &str) -> Result<(Negotiated, String), SdpError> {
        let parsed = parse(text)?;
        let chosen = negotiate(&parsed)?;
        let origin = Origin {
            session_id: 7,
            version: 1,
        };
        let sdp = answer(&parsed, &chosen, LOCAL.parse().unwrap(), origin);
        Ok((chosen, sdp))
    }

    #[test]
    fn pcmu_with_telephone_event_keeps_the_offerers_numbers() {
        let (n, sdp) = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        ))
        .unwrap();
        assert_eq!(n.media.codec, WireCodec::Pcmu);
        assert_eq!(n.media.payload_type, 0);
        assert_eq!(n.media.dtmf_payload_type, Some(101));
        assert_eq!(n.media.remote_rtp, "198.51.100.7:30000".parse().unwrap());
        assert_eq!(n.media.direction, SipDirection::SendRecv);
        assert!(sdp.contains("c=IN IP4 192.0.2.10\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 40002 RTP/AVP 0 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=fmtp:101 0-16\r\n"), "{sdp}");
        assert!(sdp.contains("a=ptime:20\r\n"), "{sdp}");
        assert!(sdp.contains("a=sendrecv\r\n"), "{sdp}");
    }

    #[test]
    fn the_first_offered_codec_hearken_speaks_wins() {
        // 18 (G.729) is not spoken: PCMA, offered before PCMU, is picked.
        let (n, sdp) = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 18 8 0\r\na=rtpmap:18 G729/8000\r\n",
        ))
        .unwrap();
        assert_eq!(n.media.codec, WireCodec::Pcma);
        assert_eq!(n.media.payload_type, 8);
        assert_eq!(n.media.dtmf_payload_type, None);
        assert!(sdp.contains("m=audio 40002 RTP/AVP 8\r\n"), "{sdp}");
        assert!(!sdp.contains("telephone-event"), "{sdp}");
    }

    #[test]
    fn g722_is_static_9_at_an_8k_clock() {
        let (n, sdp) = answer_to(&offer_with("m=audio 30000 RTP/AVP 9\r\n")).unwrap();
        assert_eq!(n.media.codec, WireCodec::G722);
        assert_eq!(n.media.payload_type, 9);
        assert!(sdp.contains("a=rtpmap:9 G722/8000\r\n"), "{sdp}");
    }

    #[test]
    fn opus_keeps_its_dynamic_number_and_takes_the_48k_events() {
        let (n, sdp) = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 111 0 101 110\r\n\
             a=rtpmap:111 opus/48000/2\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=rtpmap:110 telephone-event/48000\r\n",
        ))
        .unwrap();
        assert_eq!(n.media.codec, WireCodec::Opus);
        assert_eq!(n.media.payload_type, 111);
        assert_eq!(n.media.dtmf_payload_type, Some(110));
        assert!(sdp.contains("m=audio 40002 RTP/AVP 111 110\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:110 telephone-event/48000\r\n"),
            "{sdp}"
        );
    }

    #[test]
    fn opus_with_only_8k_events_gets_those() {
        let (n, _) = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
        ))
        .unwrap();
        assert_eq!(n.media.codec, WireCodec::Opus);
        assert_eq!(n.media.dtmf_payload_type, Some(101));
    }

    #[test]
    fn mono_opus_is_not_opus() {
        let err = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/1\r\n",
        ))
        .unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
    }

    #[test]
    fn directions_are_mirrored() {
        for (offered, caller, answered) in [
            ("sendonly", SipDirection::SendOnly, "a=recvonly"),
            ("recvonly", SipDirection::RecvOnly, "a=sendonly"),
            ("inactive", SipDirection::Inactive, "a=inactive"),
            ("sendrecv", SipDirection::SendRecv, "a=sendrecv"),
        ] {
            let (n, sdp) = answer_to(&offer_with(&format!(
                "m=audio 30000 RTP/AVP 0\r\na={offered}\r\n"
            )))
            .unwrap();
            assert_eq!(n.media.direction, caller, "{offered}");
            assert!(sdp.contains(&format!("{answered}\r\n")), "{offered}: {sdp}");
        }
        // A session-level attribute applies to streams without their own.
        let text = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\na=sendonly\r\nm=audio 30000 RTP/AVP 0\r\n";
        let (n, _) = answer_to(text).unwrap();
        assert_eq!(n.media.direction, SipDirection::SendOnly);
        // Old-style hold.
        let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
        let (n, sdp) = answer_to(text).unwrap();
        assert_eq!(n.media.direction, SipDirection::Inactive);
        assert!(sdp.contains("a=inactive\r\n"), "{sdp}");
    }

    #[test]
    fn no_common_codec_is_an_error() {
        let err = answer_to(&offer_with(
            "m=audio 30000 RTP/AVP 18 3\r\na=rtpmap:18 G729/8000\r\n",
        ))
        .unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
        assert!(err.is_not_acceptable());
    }

    #[test]
    fn secure_rtp_only_is_refused() {
        let err = answer_to(&offer_with(
            "m=audio 30000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n",
        ))
        .unwrap_err();
        assert!(
            matches!(err, SdpError::SecureOnly(ref p) if p == "RTP/SAVP"),
            "{err:?}"
        );
        assert!(err.is_not_acceptable());
    }

    #[test]
    fn a_plain_stream_beside_a_secure_one_is_taken_and_the_other_refused() {
        let (n, sdp) = answer_to(&offer_with(
            "m=audio 30000 RTP/SAVP 0\r\nm=audio 30002 RTP/AVP 0\r\n",
        ))
        .unwrap();
        assert_eq!(n.index, 1);
        assert_eq!(n.media.remote_rtp.port(), 30002);
        let m_lines: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m_lines, ["m=audio 0 RTP/SAVP 0", "m=audio 40002 RTP/AVP 0"]);
    }

    #[test]
    fn port_zero_and_non_audio_streams_are_refused_in_order() {
        let (n, sdp) = answer_to(&offer_with(
            "m=video 31000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n\
             m=audio 0 RTP/AVP 0\r\n\
             m=audio 30000 RTP/AVP 8\r\nc=IN IP4 203.0.113.9\r\n\
             m=application 32000 UDP/BFCP *\r\n",
        ))
        .unwrap();
        assert_eq!(n.index, 2);
        assert_eq!(n.media.remote_rtp, "203.0.113.9:30000".parse().unwrap());
        let m_lines: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=video 0 RTP/AVP 96",
                "m=audio 0 RTP/AVP 0",
                "m=audio 40002 RTP/AVP 8",
                "m=application 0 UDP/BFCP *",
            ]
        );
    }

    #[test]
    fn only_refused_audio_is_no_audio() {
        assert_eq!(
            answer_to(&offer_with("m=audio 0 RTP/AVP 0\r\n")).unwrap_err(),
            SdpError::NoAudio
        );
        assert_eq!(
            answer_to(&offer_with("m=video 3000 RTP/AVP 96\r\n")).unwrap_err(),
            SdpError::NoAudio
        );
    }

    #[test]
    fn malformed_sdp_is_a_bad_request() {
        for bad in [
            "hello",
            "v=0\r\nm=audio port RTP/AVP 0\r\n",
            "v=0\r\nc=IN IP4\r\n",
            "m=audio 3000 RTP/AVP 0\r\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.is_not_acceptable(), "{bad:?}: {err:?}");
        }
        assert!(matches!(
            parse("v=0\r\nc=IN IP4 host.example\r\n").unwrap_err(),
            SdpError::BadAddress(_)
        ));
    }

    #[test]
    fn hearkens_offer_and_the_callers_answer() {
        let origin = Origin {
            session_id: 9,
            version: 1,
        };
        let ours = offer(LOCAL.parse().unwrap(), origin);
        let parsed = parse(&ours).unwrap();
        assert_eq!(parsed.media.len(), 1);
        assert_eq!(parsed.media[0].formats, ["0", "8", "9", "96", "101", "102"]);
        let theirs = "v=0\r\no=- 5 5 IN IP4 198.51.100.8\r\ns=-\r\nc=IN IP4 198.51.100.8\r\nt=0 0\r\n\
                      m=audio 31000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
        let media = accept_answer(&parse(theirs).unwrap()).unwrap();
        assert_eq!(media.codec, WireCodec::Pcma);
        assert_eq!(media.payload_type, 8);
        assert_eq!(media.dtmf_payload_type, Some(101));
        assert_eq!(media.direction, SipDirection::SendOnly);
        assert_eq!(media.remote_rtp, "198.51.100.8:31000".parse().unwrap());
    }

    #[test]
    fn ipv6_addresses_are_written_as_ip6() {
        let parsed = parse(
            "v=0\r\no=- 1 1 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n",
        )
        .unwrap();
        let n = negotiate(&parsed).unwrap();
        assert_eq!(n.media.remote_rtp, "[2001:db8::7]:30000".parse().unwrap());
        let sdp = answer(
            &parsed,
            &n,
            "[2001:db8::1]:40000".parse().unwrap(),
            Origin {
                session_id: 1,
                version: 1,
            },
        );
        assert!(sdp.contains("c=IN IP6 2001:db8::1\r\n"), "{sdp}");
    }
}
