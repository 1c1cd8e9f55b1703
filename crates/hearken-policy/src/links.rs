//! Conferencing links: which provider a URL belongs to, and every supported
//! link found in a piece of calendar text.
//!
//! Recognised (host and path, case-insensitive host):
//!
//! - Zoom: `zoom.us` or `*.zoom.us` with a path under `/j/` (join), `/w/`
//!   (webinar) or `/my/` (personal meeting room).
//! - Google Meet: `meet.google.com/xxx-xxxx-xxx` (the meeting code).
//! - Microsoft Teams: `teams.microsoft.com/l/meetup-join/…`,
//!   `teams.microsoft.com/meet/…`, `teams.live.com/meet/…` (and the US
//!   government clouds `*.teams.microsoft.us`).
//! - Webex: `*.webex.com/…` with a non-empty path (not `www.webex.com`).
//!
//! Links wrapped by Outlook Safe Links (`*.safelinks.protection.outlook.com
//! /?url=…`) or Google's redirector (`www.google.com/url?q=…`) are unwrapped
//! once. URLs are parsed with the `url` crate; scanning free text for them
//! (descriptions are prose with `<…>` around links in Outlook's plain text)
//! is a tokenizer over whitespace and the usual delimiters.

use serde::{Deserialize, Serialize};
use url::Url;

/// A conferencing provider the policy knows how to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Zoom meetings and webinars.
    Zoom,
    /// Google Meet.
    GoogleMeet,
    /// Microsoft Teams.
    Teams,
    /// Cisco Webex.
    Webex,
}

impl Provider {
    /// Every provider, in the order of the settings file.
    pub const ALL: [Provider; 4] = [
        Provider::Zoom,
        Provider::GoogleMeet,
        Provider::Teams,
        Provider::Webex,
    ];

    /// The key used in settings files and JSON output (`google_meet`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Zoom => "zoom",
            Provider::GoogleMeet => "google_meet",
            Provider::Teams => "teams",
            Provider::Webex => "webex",
        }
    }

    /// The name people use (`Google Meet`).
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Zoom => "Zoom",
            Provider::GoogleMeet => "Google Meet",
            Provider::Teams => "Microsoft Teams",
            Provider::Webex => "Webex",
        }
    }

    /// The provider for a settings key, if it is one.
    pub fn from_key(key: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == key)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A supported conferencing link found on a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceLink {
    /// Whose link it is.
    pub provider: Provider,
    /// The link itself (unwrapped from Safe Links / redirectors).
    pub url: String,
    /// Where it was found: an iCalendar property name (`LOCATION`,
    /// `X-GOOGLE-CONFERENCE`) or a JSON field (`links`).
    pub source: String,
}

/// The provider of one URL (`https://…`), or `None` for anything else
/// (another service, a web page, a phone number, text that is no URL).
pub fn detect_provider(url: &str) -> Option<Provider> {
    let parsed = Url::parse(url.trim()).ok()?;
    classify(&parsed, 1)
}

/// Every supported link in `text`, in order, each tagged with `source`. A
/// link already in `out` (same URL) is not added twice.
pub fn find_links(text: &str, source: &str, out: &mut Vec<ConferenceLink>) {
    for token in text.split(is_delimiter) {
        let Some(candidate) = url_in(token) else {
            continue;
        };
        let Ok(parsed) = Url::parse(&candidate) else {
            continue;
        };
        let Some(provider) = classify(&parsed, 1) else {
            continue;
        };
        let url = unwrap_redirect(&parsed).unwrap_or_else(|| parsed.to_string());
        if out.iter().any(|l| l.url == url) {
            continue;
        }
        out.push(ConferenceLink {
            provider,
            url,
            source: source.to_owned(),
        });
    }
}

/// Characters that end a URL inside prose.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '\\' | '^' | '`'
        )
}

/// Hosts that are written without a scheme often enough to look for.
const SCHEMELESS_HOSTS: &[&str] = &[
    "meet.google.com/",
    "zoom.us/",
    "teams.microsoft.com/",
    "teams.live.com/",
    "webex.com/",
];

/// The URL inside one token, if any: from `http(s)://` on, or a bare
/// known host (`meet.google.com/abc-defg-hij`), with trailing sentence
/// punctuation removed.
fn url_in(token: &str) -> Option<String> {
    let lower = token.to_ascii_lowercase();
    let found = match (lower.find("https://"), lower.find("http://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let url = match found {
        Some(at) => token.get(at..)?.to_owned(),
        None if SCHEMELESS_HOSTS.iter().any(|h| lower.contains(h)) => {
            let start = lower.find(|c: char| c.is_ascii_alphanumeric())?;
            format!("https://{}", token.get(start..)?)
        }
        None => return None,
    };
    let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '*']);
    Some(trimmed.to_owned())
}

/// The target of a Safe Links or Google redirect URL, if `url` is one.
fn unwrap_redirect(url: &Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    let param = if host.ends_with(".safelinks.protection.outlook.com") {
        "url"
    } else if (host == "www.google.com" || host == "google.com") && url.path() == "/url" {
        "q"
    } else {
        return None;
    };
    url.query_pairs()
        .find(|(k, _)| k == param)
        .map(|(_, v)| v.into_owned())
}

/// The provider of a parsed URL; `depth` bounds redirect unwrapping.
fn classify(url: &Url, depth: u8) -> Option<Provider> {
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    if let Some(inner) = unwrap_redirect(url) {
        if depth == 0 {
            return None;
        }
        let inner = Url::parse(&inner).ok()?;
        return classify(&inner, depth - 1);
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let first = segments.next().unwrap_or("").to_ascii_lowercase();
    let second = segments.next().unwrap_or("");
    if host == "zoom.us" || host.ends_with(".zoom.us") {
        return (matches!(first.as_str(), "j" | "w" | "my") && !second.is_empty())
            .then_some(Provider::Zoom);
    }
    if host == "meet.google.com" {
        return is_meet_code(&first).then_some(Provider::GoogleMeet);
    }
    if host == "teams.microsoft.com" || host.ends_with(".teams.microsoft.us") {
        let meetup = first == "l" && second.eq_ignore_ascii_case("meetup-join");
        let meet = first == "meet" && !second.is_empty();
        return (meetup || meet).then_some(Provider::Teams);
    }
    if host == "teams.live.com" {
        return (first == "meet" && !second.is_empty()).then_some(Provider::Teams);
    }
    if host.ends_with(".webex.com") && host != "www.webex.com" {
        return (!first.is_empty()).then_some(Provider::Webex);
    }
    None
}

/// A Google Meet code: three letters, four letters, three letters.
fn is_meet_code(code: &str) -> bool {
    let parts: Vec<&str> = code.split('-').collect();
    parts.len() == 3
        && [3, 4, 3]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_detected_from_urls() {
        let cases: &[(&str, Option<Provider>)] = &[
            (
                "https://us02web.zoom.us/j/81234567890?pwd=abc",
                Some(Provider::Zoom),
            ),
            ("https://zoom.us/j/81234567890", Some(Provider::Zoom)),
            ("https://acme.zoom.us/my/alice", Some(Provider::Zoom)),
            ("https://acme.zoom.us/w/91234567890", Some(Provider::Zoom)),
            ("https://zoom.us/download", None),
            ("https://zoom.us/j/", None),
            ("https://notzoom.us/j/123", None),
            (
                "https://meet.google.com/abc-defg-hij",
                Some(Provider::GoogleMeet),
            ),
            (
                "https://MEET.GOOGLE.COM/abc-defg-hij?authuser=0",
                Some(Provider::GoogleMeet),
            ),
            ("https://meet.google.com/", None),
            ("https://meet.google.com/abcdefghij", None),
            (
                "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjY%40thread.v2/0?context=%7b%7d",
                Some(Provider::Teams),
            ),
            (
                "https://teams.microsoft.com/meet/2345678901234?p=abc",
                Some(Provider::Teams),
            ),
            (
                "https://teams.live.com/meet/9876543210",
                Some(Provider::Teams),
            ),
            (
                "https://gov.teams.microsoft.us/l/meetup-join/19%3a",
                Some(Provider::Teams),
            ),
            ("https://teams.microsoft.com/downloads", None),
            ("https://acme.webex.com/meet/alice", Some(Provider::Webex)),
            (
                "https://acme.webex.com/acme/j.php?MTID=m123",
                Some(Provider::Webex),
            ),
            ("https://www.webex.com/pricing", None),
            ("https://acme.webex.com/", None),
            ("https://global.gotomeeting.com/join/123456789", None),
            ("tel:+15550100", None),
            ("ftp://zoom.us/j/123", None),
            ("not a url", None),
            (
                "https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fus02web.zoom.us%2Fj%2F8123&data=x",
                Some(Provider::Zoom),
            ),
            (
                "https://www.google.com/url?q=https://meet.google.com/abc-defg-hij&sa=D",
                Some(Provider::GoogleMeet),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(detect_provider(url), *want, "{url}");
        }
    }

    #[test]
    fn links_are_found_in_prose() {
        let text = "Microsoft Teams meeting\nJoin on your computer\nClick here to join the \
                    meeting<https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%22Tid%22%7d>\n\
                    Or Zoom (https://acme.zoom.us/j/123). Also meet.google.com/abc-defg-hij, \
                    and https://example.com/agenda.";
        let mut out = Vec::new();
        find_links(text, "DESCRIPTION", &mut out);
        let got: Vec<(Provider, &str)> = out.iter().map(|l| (l.provider, l.url.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (
                    Provider::Teams,
                    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%22Tid%22%7d"
                ),
                (Provider::Zoom, "https://acme.zoom.us/j/123"),
                (Provider::GoogleMeet, "https://meet.google.com/abc-defg-hij"),
            ]
        );
        assert!(out.iter().all(|l| l.source == "DESCRIPTION"));
    }

    #[test]
    fn safe_links_are_unwrapped_and_duplicates_dropped() {
        let mut out = Vec::new();
        find_links(
            "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fmeet.google.com%2Fabc-defg-hij&data=1",
            "DESCRIPTION",
            &mut out,
        );
        find_links("https://meet.google.com/abc-defg-hij", "LOCATION", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].url, "https://meet.google.com/abc-defg-hij");
    }

    #[test]
    fn junk_never_panics() {
        let mut out = Vec::new();
        for text in [
            "https://",
            "http://[::1",
            "https://%%%/j/1",
            "zoom.us/",
            "\u{0}https://zoom.us/j/\u{7f}",
            "https://a.zoom.us/j/1\u{2028}",
        ] {
            find_links(text, "X", &mut out);
            let _ = detect_provider(text);
        }
    }
}
