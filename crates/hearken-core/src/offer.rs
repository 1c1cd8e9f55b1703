//! What Hearken needs to know about an SDP offer before answering it: its
//! m-lines, their kind, direction and `a=msid` stream id.
//!
//! str0m parses and answers the offer; this reads the few attributes str0m
//! does not expose (whether the offer carried an `a=msid`, per m-line). It is a
//! line scan, not a parser: an offer it accepts must still pass str0m.

/// Kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (data channels) or anything else.
    Other,
}

/// Direction attribute of an m-line, as offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferedDirection {
    /// `a=sendonly`: the client only sends (a WHIP publisher).
    SendOnly,
    /// `a=sendrecv` (also the default when no direction is given).
    SendRecv,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl OfferedDirection {
    /// Whether the client will send media on this m-line.
    pub fn client_sends(self) -> bool {
        matches!(self, Self::SendOnly | Self::SendRecv)
    }
}

/// One m-line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// `a=mid` value (empty if absent; str0m rejects such offers).
    pub mid: String,
    /// Media kind.
    pub kind: MediaKind,
    /// Offered direction.
    pub direction: OfferedDirection,
    /// `a=msid` stream id, unless absent or `-` (RFC 8830: no stream).
    pub msid_stream_id: Option<String>,
    /// The stream id of the first `a=ssrc:N msid:STREAM TRACK` line (RFC
    /// 5576 style, which GStreamer's webrtcbin writes instead of `a=msid`).
    pub ssrc_msid_stream_id: Option<String>,
    /// Whether the m-line is disabled (port 0).
    pub disabled: bool,
    /// Whether an `opus/48000/2` payload type is offered.
    pub offers_opus: bool,
}

impl OfferedMedia {
    /// The stream id that names this m-line's speaker: `a=msid`, else the
    /// msid of an `a=ssrc` line.
    pub fn stream_id(&self) -> Option<&str> {
        self.msid_stream_id
            .as_deref()
            .or(self.ssrc_msid_stream_id.as_deref())
    }
}

/// The m-lines of an offer, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// Every m-line.
    pub media: Vec<OfferedMedia>,
}

/// Why an offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The body does not start like an SDP session description.
    #[error("not an SDP session description (must start with \"v=0\")")]
    NotSdp,
    /// The offer has no m-line at all.
    #[error("the offer has no media section")]
    NoMedia,
    /// No m-line offers Opus audio that the client sends.
    #[error(
        "no usable audio: the offer needs an audio m-line, sendonly or sendrecv, with opus/48000/2"
    )]
    NoUsableAudio,
}

impl OfferSummary {
    /// Scans `sdp` for its m-lines.
    pub fn scan(sdp: &str) -> Result<Self, OfferError> {
        let mut lines = sdp.lines().map(str::trim_end);
        if lines.next().map(str::trim) != Some("v=0") {
            return Err(OfferError::NotSdp);
        }
        let mut media: Vec<OfferedMedia> = Vec::new();
        for line in lines {
            if let Some(rest) = line.strip_prefix("m=") {
                let mut fields = rest.split_whitespace();
                let kind = match fields.next() {
                    Some("audio") => MediaKind::Audio,
                    Some("video") => MediaKind::Video,
                    _ => MediaKind::Other,
                };
                let disabled = fields.next() == Some("0");
                media.push(OfferedMedia {
                    mid: String::new(),
                    kind,
                    direction: OfferedDirection::SendRecv,
                    msid_stream_id: None,
                    ssrc_msid_stream_id: None,
                    disabled,
                    offers_opus: false,
                });
                continue;
            }
            let Some(current) = media.last_mut() else {
                continue;
            };
            let Some(attr) = line.strip_prefix("a=") else {
                continue;
            };
            match attr {
                "sendonly" => current.direction = OfferedDirection::SendOnly,
                "sendrecv" => current.direction = OfferedDirection::SendRecv,
                "recvonly" => current.direction = OfferedDirection::RecvOnly,
                "inactive" => current.direction = OfferedDirection::Inactive,
                _ => {
                    if let Some(mid) = attr.strip_prefix("mid:") {
                        current.mid = mid.trim().to_owned();
                    } else if let Some(msid) = attr.strip_prefix("msid:") {
                        let stream = msid.split_whitespace().next().unwrap_or("");
                        if !stream.is_empty() && stream != "-" {
                            current.msid_stream_id = Some(stream.to_owned());
                        }
                    } else if let Some(ssrc) = attr.strip_prefix("ssrc:") {
                        // a=ssrc:<ssrc> msid:<stream> <track>
                        let stream = ssrc
                            .split_once(' ')
                            .and_then(|(_, rest)| rest.trim().strip_prefix("msid:"))
                            .and_then(|msid| msid.split_whitespace().next())
                            .filter(|s| !s.is_empty() && *s != "-");
                        if let Some(stream) = stream
                            && current.ssrc_msid_stream_id.is_none()
                        {
                            current.ssrc_msid_stream_id = Some(stream.to_owned());
                        }
                    } else if let Some(rtpmap) = attr.strip_prefix("rtpmap:") {
                        let encoding = rtpmap.split_whitespace().nth(1).unwrap_or("");
                        if encoding.eq_ignore_ascii_case("opus/48000/2") {
                            current.offers_opus = true;
                        }
                    }
                }
            }
        }
        if media.is_empty() {
            return Err(OfferError::NoMedia);
        }
        Ok(Self { media })
    }

    /// The m-lines that will become speakers: enabled audio with Opus that the
    /// client sends.
    pub fn speaker_media(&self) -> impl Iterator<Item = &OfferedMedia> {
        self.media.iter().filter(|m| {
            m.kind == MediaKind::Audio && !m.disabled && m.offers_opus && m.direction.client_sends()
        })
    }

    /// Fails with [`OfferError::NoUsableAudio`] unless at least one m-line
    /// will become a speaker.
    pub fn require_audio(&self) -> Result<(), OfferError> {
        if self.speaker_media().next().is_some() {
            Ok(())
        } else {
            Err(OfferError::NoUsableAudio)
        }
    }

    /// The m-line with this mid.
    pub fn by_mid(&self, mid: &str) -> Option<&OfferedMedia> {
        self.media.iter().find(|m| m.mid == mid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SPEAKERS: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 110\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
a=msid:alice track-a\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendrecv\r\na=msid:- track-b\r\n\
a=rtpmap:111 OPUS/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\na=msid:alice v\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn reads_mlines_msid_and_direction() {
        let s = OfferSummary::scan(TWO_SPEAKERS).unwrap();
        assert_eq!(s.media.len(), 3);
        assert_eq!(s.media[0].mid, "0");
        assert_eq!(s.media[0].msid_stream_id.as_deref(), Some("alice"));
        assert_eq!(s.media[0].direction, OfferedDirection::SendOnly);
        assert_eq!(s.media[1].msid_stream_id, None, "'-' means no stream");
        assert_eq!(s.media[1].direction, OfferedDirection::SendRecv);
        assert_eq!(s.media[2].kind, MediaKind::Video);
        let speakers: Vec<_> = s.speaker_media().map(|m| m.mid.as_str()).collect();
        assert_eq!(speakers, ["0", "1"]);
        assert!(s.require_audio().is_ok());
    }

    #[test]
    fn video_only_or_recvonly_audio_is_not_usable() {
        let video_only =
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n";
        let s = OfferSummary::scan(video_only).unwrap();
        assert_eq!(s.require_audio(), Err(OfferError::NoUsableAudio));
        let recvonly = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n";
        let s = OfferSummary::scan(recvonly).unwrap();
        assert_eq!(s.require_audio(), Err(OfferError::NoUsableAudio));
        let pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n";
        let s = OfferSummary::scan(pcmu).unwrap();
        assert_eq!(s.require_audio(), Err(OfferError::NoUsableAudio));
    }

    /// What GStreamer's webrtcbin 1.22 offers: no `a=msid`, the stream id
    /// only on the `a=ssrc` lines.
    #[test]
    fn stream_id_falls_back_to_the_ssrc_msid() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:audio0\r\na=sendrecv\r\n\
a=rtpmap:96 OPUS/48000/2\r\na=ssrc:2416124346 msid:user2896318818@host-e3d5 webrtctransceiver0\r\n\
a=ssrc:2416124346 cname:user2896318818@host-e3d5\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:audio1\r\na=msid:alice a1\r\n\
a=ssrc:1 msid:ignored t\r\na=rtpmap:96 OPUS/48000/2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:audio2\r\na=ssrc:7 cname:x\r\na=rtpmap:96 OPUS/48000/2\r\n";
        let s = OfferSummary::scan(offer).unwrap();
        assert_eq!(s.media[0].msid_stream_id, None);
        assert_eq!(s.media[0].stream_id(), Some("user2896318818@host-e3d5"));
        assert_eq!(s.media[1].stream_id(), Some("alice"), "a=msid wins");
        assert_eq!(s.media[2].stream_id(), None, "no msid anywhere");
    }

    #[test]
    fn garbage_is_not_sdp() {
        assert_eq!(OfferSummary::scan(""), Err(OfferError::NotSdp));
        assert_eq!(OfferSummary::scan("hello"), Err(OfferError::NotSdp));
        assert_eq!(
            OfferSummary::scan("v=0\r\ns=-\r\n"),
            Err(OfferError::NoMedia)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,400}") {
            let _ = OfferSummary::scan(&text);
            let _ = OfferSummary::scan(&format!("v=0\n{text}"));
        }
    }
}
