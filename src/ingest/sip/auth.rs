//! Who may start a SIP dialog: a source-address allow-list, and HTTP Digest
//! (RFC 2617, with the SHA-256 of RFC 8760 and RFC 7616) against configured
//! credentials, as pure functions.
//!
//! Nonces are stateless: `{issued, hex seconds}.{HMAC-SHA256(key, issued ‖
//! realm), 16 bytes hex}`, with a key drawn at start. A nonce older than
//! [`NONCE_LIFETIME_SECS`] is answered with a fresh challenge marked
//! `stale=true`, so a client that knows the password retries without asking
//! its user. Passwords are only ever compared through their hashes; they are
//! never logged (the [`Credentials`] `Debug` shows user names only).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// How long a nonce is good for.
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// A source network allowed in without credentials (`10.0.0.0/8`,
/// `::1/128`; a bare address is one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network in `ingest.sip.allow_from` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network like 192.0.2.0/24, 127.0.0.1 or ::1/128")]
pub struct BadNetwork(pub String);

impl std::str::FromStr for Network {
    type Err = BadNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(text.to_owned());
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl Network {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Digest users and their passwords.
#[derive(Clone, Default)]
pub struct Credentials {
    users: BTreeMap<String, String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Adds (or replaces) a user.
    pub fn insert(&mut self, user: &str, password: String) {
        self.users.insert(user.to_owned(), password);
    }

    /// Whether there are no users (only the allow-list admits anyone).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, for SIP RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

impl Algorithm {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex::encode(md5_digest(data.as_bytes())),
            Self::Sha256 | Self::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn is_session(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }
}

/// The parameters of an `Authorization: Digest …` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestResponse {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `nc`.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not a Digest header Hearken can read.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// An algorithm Hearken does not do.
    #[error("unsupported digest algorithm")]
    Algorithm,
    /// `qop` other than `auth` (`auth-int` is not offered).
    #[error("unsupported qop")]
    Qop,
    /// For another realm.
    #[error("wrong realm")]
    Realm,
    /// A nonce Hearken did not issue.
    #[error("nonce not issued here")]
    Nonce,
    /// The nonce has expired (answer with `stale=true`).
    #[error("stale nonce")]
    Stale,
    /// The `uri` parameter is not the request's URI.
    #[error("digest uri does not match the Request-URI")]
    Uri,
    /// No such user, or the wrong password (not told apart to the caller).
    #[error("wrong user name or password")]
    Credentials,
}

/// Splits `a=b, c="d, e"` into pairs, honouring quotes and `\` escapes.
fn split_params(text: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err(AuthError::Malformed("expected name=value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(AuthError::Malformed("unterminated quote")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(AuthError::Malformed("unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.to_ascii_lowercase(), value));
    }
}

/// Reads an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<DigestResponse, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value
        .split_once(char::is_whitespace)
        .ok_or(AuthError::Malformed("no parameters"))?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(AuthError::Malformed("not Digest"));
    }
    let mut d = DigestResponse::default();
    for (name, v) in split_params(rest)? {
        match name.as_str() {
            "username" => d.username = v,
            "realm" => d.realm = v,
            "nonce" => d.nonce = v,
            "uri" => d.uri = v,
            "response" => d.response = v,
            "algorithm" => d.algorithm = Some(v),
            "qop" => d.qop = Some(v),
            "nc" => d.nc = Some(v),
            "cnonce" => d.cnonce = Some(v),
            _ => {}
        }
    }
    if d.username.is_empty() || d.nonce.is_empty() || d.uri.is_empty() || d.response.is_empty() {
        return Err(AuthError::Malformed(
            "username, nonce, uri and response are required",
        ));
    }
    Ok(d)
}

/// Checks a digest response against `password`: the whole computation of
/// RFC 2617 §3.2.2 (RFC 7616 §3.4.1 for SHA-256), compared in constant
/// time. `method` is the request's method.
pub fn digest_matches(d: &DigestResponse, method: &str, password: &str) -> Result<bool, AuthError> {
    let algorithm = match &d.algorithm {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a).ok_or(AuthError::Algorithm)?,
    };
    let mut ha1 = algorithm.hash(&format!("{}:{}:{}", d.username, d.realm, password));
    let ha2 = algorithm.hash(&format!("{method}:{}", d.uri));
    let expected = match d.qop.as_deref() {
        None => {
            if algorithm.is_session() {
                return Err(AuthError::Malformed("-sess needs qop and cnonce"));
            }
            algorithm.hash(&format!("{ha1}:{}:{ha2}", d.nonce))
        }
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (&d.nc, &d.cnonce) else {
                return Err(AuthError::Malformed("qop=auth needs nc and cnonce"));
            };
            if algorithm.is_session() {
                ha1 = algorithm.hash(&format!("{ha1}:{}:{cnonce}", d.nonce));
            }
            algorithm.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", d.nonce))
        }
        Some(_) => return Err(AuthError::Qop),
    };
    Ok(constant_time_eq(
        expected.as_bytes(),
        d.response.to_ascii_lowercase().as_bytes(),
    ))
}

fn md5_digest(data: &[u8]) -> impl AsRef<[u8]> {
    <Md5 as md5::Digest>::digest(data)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Issues and checks nonces, and checks digest responses, for one realm.
pub struct DigestAuth {
    realm: String,
    key: [u8; 32],
    credentials: Credentials,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuth")
            .field("realm", &self.realm)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl DigestAuth {
    /// A verifier for `realm` whose nonces are signed with `key`.
    pub fn new(realm: &str, key: [u8; 32], credentials: Credentials) -> Self {
        Self {
            realm: realm.to_owned(),
            key,
            credentials,
        }
    }

    /// Whether any user is configured.
    pub fn has_users(&self) -> bool {
        !self.credentials.is_empty()
    }

    fn mac(&self, issued: u64) -> String {
        // INVARIANT: HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key");
        mac.update(&issued.to_be_bytes());
        mac.update(self.realm.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A nonce issued at `now` (seconds since the epoch).
    pub fn nonce(&self, now: u64) -> String {
        format!("{now:x}.{}", self.mac(now))
    }

    /// Checks that `nonce` was issued here and is still fresh at `now`.
    pub fn check_nonce(&self, nonce: &str, now: u64) -> Result<(), AuthError> {
        let (issued, mac) = nonce.split_once('.').ok_or(AuthError::Nonce)?;
        let issued = u64::from_str_radix(issued, 16).map_err(|_| AuthError::Nonce)?;
        if !constant_time_eq(self.mac(issued).as_bytes(), mac.as_bytes()) {
            return Err(AuthError::Nonce);
        }
        // A nonce from the future (clock stepped back) is treated as stale.
        if issued > now || now - issued > NONCE_LIFETIME_SECS {
            return Err(AuthError::Stale);
        }
        Ok(())
    }

    /// The `WWW-Authenticate` value of a challenge issued at `now`.
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        let mut out = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            self.realm,
            self.nonce(now)
        );
        if stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// Checks an `Authorization` header of a request with `method` and
    /// Request-URI `request_uri` at `now`. `Ok` names the user.
    pub fn verify(
        &self,
        header: &str,
        method: &str,
        request_uri: &str,
        now: u64,
    ) -> Result<String, AuthError> {
        let d = parse_authorization(header)?;
        if d.realm != self.realm {
            return Err(AuthError::Realm);
        }
        self.check_nonce(&d.nonce, now)?;
        // The digest covers `uri`: it must be this request's, or a response
        // captured for one call could be replayed to join another.
        if d.uri.trim() != request_uri.trim() {
            return Err(AuthError::Uri);
        }
        let Some(password) = self.credentials.password(&d.username) else {
            return Err(AuthError::Credentials);
        };
        if digest_matches(&d, method, password)? {
            Ok(d.username)
        } else {
            Err(AuthError::Credentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5, the example every implementation checks against.
    fn rfc2617() -> DigestResponse {
        DigestResponse {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            algorithm: None,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
        }
    }

    #[test]
    fn the_rfc_2617_example_by_hand() {
        // HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life")
        let ha1 = hex::encode(md5_digest(b"Mufasa:testrealm@host.com:Circle Of Life"));
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
        // HA2 = MD5("GET:/dir/index.html")
        let ha2 = hex::encode(md5_digest(b"GET:/dir/index.html"));
        assert_eq!(ha2, "39aff3a2bab6126f332b942af96d3366");
        let response = hex::encode(md5_digest(
            format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}")
                .as_bytes(),
        ));
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn the_verifier_accepts_the_rfc_example_and_refuses_a_wrong_one() {
        let d = rfc2617();
        assert_eq!(digest_matches(&d, "GET", "Circle Of Life"), Ok(true));
        assert_eq!(digest_matches(&d, "GET", "Circle of Life"), Ok(false));
        assert_eq!(digest_matches(&d, "POST", "Circle Of Life"), Ok(false));
        let mut wrong = d.clone();
        wrong.response = "6629fae49393a05397450978507c4ef2".into();
        assert_eq!(digest_matches(&wrong, "GET", "Circle Of Life"), Ok(false));
        let mut upper = d.clone();
        upper.response = d.response.to_uppercase();
        assert_eq!(digest_matches(&upper, "GET", "Circle Of Life"), Ok(true));
    }

    #[test]
    fn the_rfc_example_parses_from_its_header() {
        let header = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        assert_eq!(parse_authorization(header).unwrap(), rfc2617());
        assert!(parse_authorization("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").is_err());
        assert!(parse_authorization("Digest username=\"x").is_err());
        assert!(parse_authorization("Digest realm=\"r\"").is_err());
    }

    #[test]
    fn sha256_and_no_qop() {
        let mut d = rfc2617();
        d.algorithm = Some("SHA-256".into());
        let ha1 = hex::encode(Sha256::digest(b"Mufasa:testrealm@host.com:Circle Of Life"));
        let ha2 = hex::encode(Sha256::digest(b"GET:/dir/index.html"));
        d.response = hex::encode(Sha256::digest(
            format!("{ha1}:{}:00000001:0a4f113b:auth:{ha2}", d.nonce).as_bytes(),
        ));
        assert_eq!(digest_matches(&d, "GET", "Circle Of Life"), Ok(true));

        let mut plain = rfc2617();
        plain.qop = None;
        let ha1 = hex::encode(md5_digest(b"Mufasa:testrealm@host.com:Circle Of Life"));
        let ha2 = hex::encode(md5_digest(b"GET:/dir/index.html"));
        plain.response = hex::encode(md5_digest(
            format!("{ha1}:{}:{ha2}", plain.nonce).as_bytes(),
        ));
        assert_eq!(digest_matches(&plain, "GET", "Circle Of Life"), Ok(true));

        let mut int = rfc2617();
        int.qop = Some("auth-int".into());
        assert_eq!(digest_matches(&int, "GET", "x"), Err(AuthError::Qop));
        let mut alg = rfc2617();
        alg.algorithm = Some("SHA-512".into());
        assert_eq!(digest_matches(&alg, "GET", "x"), Err(AuthError::Algorithm));
    }

    fn client_response(nonce: &str, uri: &str, user: &str, password: &str) -> String {
        let ha1 = hex::encode(md5_digest(format!("{user}:hearken:{password}").as_bytes()));
        let ha2 = hex::encode(md5_digest(format!("INVITE:{uri}").as_bytes()));
        let response = hex::encode(md5_digest(
            format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}").as_bytes(),
        ));
        format!(
            "Digest username=\"{user}\", realm=\"hearken\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\""
        )
    }

    #[test]
    fn a_full_round_trip_with_nonces() {
        let mut creds = Credentials::default();
        creds.insert("trunk", "s3cret".into());
        let auth = DigestAuth::new("hearken", [7; 32], creds);
        let challenge = auth.challenge(1_000, false);
        assert!(
            challenge.starts_with("Digest realm=\"hearken\", nonce=\""),
            "{challenge}"
        );
        assert!(!challenge.contains("stale"));
        let nonce = auth.nonce(1_000);
        let uri = "sip:call-1@127.0.0.1:5060";
        let header = client_response(&nonce, uri, "trunk", "s3cret");
        assert_eq!(
            auth.verify(&header, "INVITE", uri, 1_010),
            Ok("trunk".into())
        );
        // Wrong password, unknown user: the same answer.
        let bad = client_response(&nonce, uri, "trunk", "guess");
        assert_eq!(
            auth.verify(&bad, "INVITE", uri, 1_010),
            Err(AuthError::Credentials)
        );
        let nobody = client_response(&nonce, uri, "nobody", "s3cret");
        assert_eq!(
            auth.verify(&nobody, "INVITE", uri, 1_010),
            Err(AuthError::Credentials)
        );
        // Replayed for another call.
        assert_eq!(
            auth.verify(&header, "INVITE", "sip:call-2@127.0.0.1:5060", 1_010),
            Err(AuthError::Uri)
        );
        // Expired.
        assert_eq!(
            auth.verify(&header, "INVITE", uri, 1_000 + NONCE_LIFETIME_SECS + 1),
            Err(AuthError::Stale)
        );
        // Forged nonce.
        let forged = client_response(
            "3e8.00000000000000000000000000000000",
            uri,
            "trunk",
            "s3cret",
        );
        assert_eq!(
            auth.verify(&forged, "INVITE", uri, 1_010),
            Err(AuthError::Nonce)
        );
        // Another node's key.
        let other = DigestAuth::new("hearken", [8; 32], Credentials::default());
        assert_eq!(other.check_nonce(&nonce, 1_010), Err(AuthError::Nonce));
    }

    #[test]
    fn credentials_debug_shows_no_password() {
        let mut creds = Credentials::default();
        creds.insert("trunk", "hunter2".into());
        let shown = format!("{:?}", DigestAuth::new("hearken", [0; 32], creds));
        assert!(shown.contains("trunk"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn networks() {
        let n: Network = "127.0.0.1/32".parse().unwrap();
        assert!(n.contains("127.0.0.1".parse().unwrap()));
        assert!(!n.contains("127.0.0.2".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let host: Network = "192.0.2.5".parse().unwrap();
        assert!(host.contains("192.0.2.5".parse().unwrap()));
        assert!(!host.contains("192.0.2.6".parse().unwrap()));
        for bad in ["10.0.0.0/33", "hostname", "10.0.0.0/x", "::1/129", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
