//! Pure readings of SIP requests: which call and which speaker a dialog is
//! ([`target`]), the key of a SIP INFO ([`info_digit`]), and a last-resort
//! answer to a message the SIP stack could not parse ([`fallback_response`]).

use hearken_core::ids::CallId;

use crate::http::extract::MAX_PARTICIPANT_ID;

/// The header that names the call when the Request-URI cannot.
pub const CALL_ID_HEADER: &str = "X-Hearken-Call-Id";
/// The header that names the speaker (else the From URI's user).
pub const PARTICIPANT_HEADER: &str = "X-Hearken-Participant";
/// Longest display name taken from a From header.
const MAX_DISPLAY_NAME: usize = 256;

/// The methods Hearken answers (the `Allow` header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";

/// Why a request names no usable call or speaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Neither the Request-URI's user nor `X-Hearken-Call-Id` names a call.
    #[error("no call id: put it in the Request-URI (sip:CALL_ID@host) or in X-Hearken-Call-Id")]
    NoCallId,
    /// The call id is not a valid one.
    #[error("bad call id {shown:?}: {reason}")]
    BadCallId {
        /// The id as given (shortened).
        shown: String,
        /// Why.
        reason: hearken_core::ids::CallIdError,
    },
    /// Neither `X-Hearken-Participant` nor the From URI names the speaker.
    #[error("no participant id: send X-Hearken-Participant or a From URI with a user part")]
    NoParticipant,
    /// The participant id is not a valid one.
    #[error(
        "bad participant id: must be 1-{MAX_PARTICIPANT_ID} characters without control characters"
    )]
    BadParticipant,
}

impl TargetError {
    /// The SIP status: 404 for a call that cannot be named, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoCallId | Self::BadCallId { .. } => 404,
            Self::NoParticipant | Self::BadParticipant => 400,
        }
    }
}

/// Who a new dialog is: its call, its speaker, and the speaker's display
/// name if the From header had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The call to join.
    pub call_id: CallId,
    /// The speaker.
    pub participant_id: String,
    /// The From header's display name.
    pub display_name: Option<String>,
}

/// Undoes `%XX` escapes (RFC 3261 §19.1.2 lets a URI user escape any
/// character). Invalid escapes are kept as written; invalid UTF-8 is
/// replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user part of a `sip:`/`sips:`/`tel:` URI, decoded; `None` when the
/// URI has none.
pub fn uri_user(uri: &str) -> Option<String> {
    let uri = uri.trim();
    let rest = ["sip:", "sips:", "tel:"].iter().find_map(|scheme| {
        uri.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &uri[scheme.len()..])
    })?;
    let user = if uri[..3].eq_ignore_ascii_case("tel") {
        // tel:+15551234;phone-context=…
        rest.split(';').next().unwrap_or(rest)
    } else {
        let (userinfo, _) = rest.split_once('@')?;
        // user;params:password — keep the user.
        let user = userinfo.split(':').next().unwrap_or(userinfo);
        user.split(';').next().unwrap_or(user)
    };
    let user = percent_decode(user);
    (!user.is_empty()).then_some(user)
}

/// Reads a name-addr or addr-spec header (`"Ann" <sip:ann@x>;tag=1`,
/// `sip:ann@x;tag=1`): its display name and its URI.
pub fn name_addr(value: &str) -> (Option<String>, String) {
    let value = value.trim();
    if let Some(open) = value.find('<') {
        let display = value[..open].trim().trim_matches('"').trim();
        let uri = value[open + 1..]
            .split('>')
            .next()
            .unwrap_or_default()
            .to_owned();
        let display = (!display.is_empty()).then(|| display.replace("\\\"", "\""));
        (display, uri)
    } else {
        // Without <>, parameters after ';' belong to the header.
        (None, value.split(';').next().unwrap_or(value).to_owned())
    }
}

fn valid_participant(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_PARTICIPANT_ID && !id.chars().any(char::is_control)
}

/// Which call and which speaker a new dialog is. `call_header` and
/// `participant_header` are the values of [`CALL_ID_HEADER`] and
/// [`PARTICIPANT_HEADER`]; `from` is the From header's value. The header
/// wins over the Request-URI (a trunk may rewrite the URI's user).
pub fn target(
    request_uri: &str,
    call_header: Option<&str>,
    participant_header: Option<&str>,
    from: &str,
) -> Result<Target, TargetError> {
    let call = match call_header.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => uri_user(request_uri).ok_or(TargetError::NoCallId)?,
    };
    let call_id = CallId::parse(&call).map_err(|reason| TargetError::BadCallId {
        shown: call.chars().take(64).collect(),
        reason,
    })?;
    let (display, from_uri) = name_addr(from);
    let participant_id = match participant_header {
        Some(h) => h.trim().to_owned(),
        None => uri_user(&from_uri).ok_or(TargetError::NoParticipant)?,
    };
    if !valid_participant(&participant_id) {
        return Err(TargetError::BadParticipant);
    }
    let display_name =
        display.filter(|d| d.len() <= MAX_DISPLAY_NAME && !d.chars().any(char::is_control));
    Ok(Target {
        call_id,
        participant_id,
        display_name,
    })
}

/// Why a SIP INFO carries no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigitError {
    /// A content type other than the two DTMF ones.
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    /// The body names no key.
    #[error("no DTMF key in the body")]
    NoKey,
}

fn key_of(text: &str) -> Option<char> {
    let text = text.trim();
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_none() {
        let c = c.to_ascii_uppercase();
        return matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c);
    }
    // Some senders give the RFC 4733 event number (10 = *, 11 = #).
    match text.parse::<u8>().ok()? {
        n @ 0..=9 => char::from_digit(u32::from(n), 10),
        10 => Some('*'),
        11 => Some('#'),
        n @ 12..=15 => Some(char::from(b'A' + (n - 12))),
        _ => None,
    }
}

/// The key a SIP INFO reports: `application/dtmf-relay` (`Signal=5`,
/// `Duration=160`) or `application/dtmf` (the key alone).
pub fn info_digit(content_type: &str, body: &str) -> Result<char, DigitError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/dtmf-relay" => body
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
            .and_then(|(_, v)| key_of(v))
            .ok_or(DigitError::NoKey),
        "application/dtmf" => key_of(body).ok_or(DigitError::NoKey),
        _ => Err(DigitError::ContentType(mime.chars().take(64).collect())),
    }
}

/// Makes `text` safe inside a quoted header value (a Warning's text).
pub fn quoted_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .take(200)
        .collect()
}

/// The methods the SIP stack's parser knows; any other method of a
/// well-formed request is one Hearken does not implement (405).
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Compact header forms (RFC 3261 §7.3.3) of the headers a response copies.
fn canonical_header(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "via" | "v" => Some("Via"),
        "from" | "f" => Some("From"),
        "to" | "t" => Some("To"),
        "call-id" | "i" => Some("Call-ID"),
        "cseq" => Some("CSeq"),
        _ => None,
    }
}

/// The outcome of reading a request the SIP stack refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Answer with this response (405 for an unknown method, else 400).
    Reply {
        /// The status.
        status: u16,
        /// The response, ready to send.
        bytes: Vec<u8>,
    },
    /// Too broken to answer: drop it.
    Drop,
}

/// A last-resort answer to a message the SIP stack could not parse or
/// route: when it is a request (not ACK) whose Via, From, To, Call-ID and
/// CSeq can be found, a 405 (a method Hearken does not know) or a 400
/// naming `why`; anything else is dropped.
pub fn fallback_response(bytes: &[u8], why: &str) -> Fallback {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let Some(request_line) = lines.next() else {
        return Fallback::Drop;
    };
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, _uri, version] = parts.as_slice() else {
        return Fallback::Drop;
    };
    if !version.eq_ignore_ascii_case("SIP/2.0")
        || method.is_empty()
        || !method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
        || method.eq_ignore_ascii_case("ACK")
    {
        return Fallback::Drop;
    }
    let mut copied: Vec<(&'static str, &str)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(canonical) = canonical_header(name.trim()) {
            copied.push((canonical, value.trim()));
        }
    }
    for needed in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !copied.iter().any(|(n, _)| *n == needed) {
            return Fallback::Drop;
        }
    }
    // A response that could be used to reflect a flood stays small: no
    // header is copied whole if it is huge.
    if copied.iter().any(|(_, v)| v.len() > 1024) {
        return Fallback::Drop;
    }
    let known = KNOWN_METHODS.iter().any(|m| m == method);
    let (status, reason) = if known {
        (400, "Bad Request")
    } else {
        (405, "Method Not Allowed")
    };
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for (name, value) in &copied {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if known {
        out.push_str(&format!(
            "Warning: 399 hearken \"{}\"\r\n",
            quoted_text(why)
        ));
    } else {
        out.push_str(&format!("Allow: {ALLOW}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Fallback::Reply {
        status,
        bytes: out.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_uri_names_the_call_and_from_the_speaker() {
        let t = target(
            "sip:standup-42@hearken.example:5060;transport=udp",
            None,
            None,
            "\"Ann Lee\" <sip:ann@pbx.example>;tag=abc",
        )
        .unwrap();
        assert_eq!(t.call_id.as_str(), "standup-42");
        assert_eq!(t.participant_id, "ann");
        assert_eq!(t.display_name.as_deref(), Some("Ann Lee"));
    }

    #[test]
    fn headers_win_over_the_uris() {
        let t = target(
            "sip:+15550100@trunk.example",
            Some("call-7"),
            Some("participant 7"),
            "sip:+15550199@trunk.example;tag=1",
        )
        .unwrap();
        assert_eq!(t.call_id.as_str(), "call-7");
        assert_eq!(t.participant_id, "participant 7");
        assert_eq!(t.display_name, None);
    }

    #[test]
    fn escaped_users_are_decoded() {
        let t = target("sip:call%2D1@h", None, None, "<sip:bob%40home@h>").unwrap();
        assert_eq!(t.call_id.as_str(), "call-1");
        assert_eq!(t.participant_id, "bob@home");
        let t = target("sip:c@h", None, None, "<tel:+15550100;phone-context=x>").unwrap();
        assert_eq!(t.participant_id, "+15550100");
    }

    #[test]
    fn bad_targets_are_named() {
        assert_eq!(
            target("sip:hearken.example", None, None, "<sip:a@b>").unwrap_err(),
            TargetError::NoCallId
        );
        let err = target("sip:bad%2Fid@h", None, None, "<sip:a@b>").unwrap_err();
        assert!(matches!(err, TargetError::BadCallId { .. }), "{err:?}");
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("bad/id"), "{err}");
        let err = target("sip:c@h", Some("../x"), None, "<sip:a@b>").unwrap_err();
        assert!(matches!(err, TargetError::BadCallId { .. }), "{err:?}");
        assert_eq!(
            target("sip:c@h", None, None, "<sip:pbx.example>").unwrap_err(),
            TargetError::NoParticipant
        );
        let err = target("sip:c@h", None, Some(""), "<sip:a@b>").unwrap_err();
        assert_eq!(err, TargetError::BadParticipant);
        assert_eq!(err.status(), 400);
        let long = "p".repeat(MAX_PARTICIPANT_ID + 1);
        assert_eq!(
            target("sip:c@h", None, Some(&long), "<sip:a@b>").unwrap_err(),
            TargetError::BadParticipant
        );
        assert_eq!(
            target("sip:c@h", None, None, "<sip:a%07b@h>").unwrap_err(),
            TargetError::BadParticipant
        );
    }

    #[test]
    fn info_digits() {
        assert_eq!(
            info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Ok('5')
        );
        assert_eq!(
            info_digit(
                "Application/DTMF-Relay; charset=x",
                "signal= *\nDuration=250"
            ),
            Ok('*')
        );
        assert_eq!(info_digit("application/dtmf", "#"), Ok('#'));
        assert_eq!(info_digit("application/dtmf", "11"), Ok('#'));
        assert_eq!(info_digit("application/dtmf", "a"), Ok('A'));
        assert_eq!(
            info_digit("application/dtmf-relay", "Duration=160"),
            Err(DigitError::NoKey)
        );
        assert_eq!(info_digit("application/dtmf", "x"), Err(DigitError::NoKey));
        assert!(matches!(
            info_digit("text/plain", "1"),
            Err(DigitError::ContentType(_))
        ));
    }

    #[test]
    fn fallback_answers_unknown_methods_with_405() {
        let req = b"FROB sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:x@h>\r\ni: abc\r\nCSeq: 1 FROB\r\n\r\n";
        let Fallback::Reply { status, bytes } = fallback_response(req, "unparseable") else {
            panic!("expected a reply");
        };
        assert_eq!(status, 405);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("SIP/2.0 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"),
            "{text}"
        );
        assert!(text.contains("Call-ID: abc\r\n"), "{text}");
        assert!(text.contains(&format!("Allow: {ALLOW}\r\n")), "{text}");
    }

    #[test]
    fn fallback_answers_broken_known_requests_with_400_and_drops_garbage() {
        let req = b"INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: abc\r\nCSeq: one INVITE\r\n\r\n";
        let Fallback::Reply { status, bytes } = fallback_response(req, "bad \"CSeq\"") else {
            panic!("expected a reply");
        };
        assert_eq!(status, 400);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("Warning: 399 hearken \"bad 'CSeq'\"\r\n"),
            "{text}"
        );
        for garbage in [
            &b"\x00\x01\x02garbage"[..],
            b"INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
            b"ACK sip:x@h SIP/2.0\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: i\r\nCSeq: 1 ACK\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"",
        ] {
            assert_eq!(fallback_response(garbage, "x"), Fallback::Drop, "{garbage:?}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("%"), "%");
    }
}
