//! Who may call: an INVITE from a source outside `ingest.sip.allow_from`
//! is challenged, and reaches no media worker until its credentials pass.

use hearken::metrics::IngestError;
use hearken::server::Secrets;

use super::{SipTransport, settled_sessions, sip_addr, sip_errors, sipp};
use crate::common::TestServer;

/// A server that lets nobody in without credentials, with one user.
async fn guarded_server() -> TestServer {
    TestServer::start_with_secrets(
        |c| {
            c.ingest.sip.listen = "127.0.0.1:0".into();
            c.ingest.sip.allow_from = Vec::new();
            c.ingest.sip.credentials = vec!["trunk:SIP_TRUNK_PASSWORD".into()];
        },
        Secrets::from_pairs([("SIP_TRUNK_PASSWORD", "correct horse")]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_challenged_and_a_wrong_password_refused_before_any_media() {
    let server = guarded_server().await;
    let addr = sip_addr(&server);
    // 401 with a digest challenge, then 403 for the wrong password.
    // SIPp puts sip:{ip}:{port} in the digest's uri unless told the
    // Request-URI (-auth_uri, without its scheme); Hearken checks the uri is the request's (RFC 2617
    // §3.2.2.5), so a response captured for one call joins no other.
    let uri = format!("auth-call@{addr}");
    sipp(
        addr,
        "invite_wrong_password.xml",
        "auth-call",
        SipTransport::Udp,
        &["-au", "trunk", "-ap", "wrong horse", "-auth_uri", &uri],
    )
    .await;
    assert_eq!(sip_errors(&server, IngestError::AuthFailed), 1);
    // Nothing was placed and no worker was asked: a worker's answer to a
    // CreateSip (today: no usable audio) would be counted here.
    assert_eq!(sip_errors(&server, IngestError::NoCommonCodec), 0);
    assert_eq!(settled_sessions(&server).await, 0);
    assert_eq!(
        server.server.as_ref().unwrap().state.registry.call_ids(),
        vec![]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_credentials_get_past_the_challenge_over_udp_and_tcp() {
    let server = guarded_server().await;
    let addr = sip_addr(&server);
    for (transport, call) in [
        (SipTransport::Udp, "auth-call-udp"),
        (SipTransport::Tcp, "auth-call-tcp"),
    ] {
        // One call id per run: a call that ended is gone (410).
        let uri = format!("{call}@{addr}");
        // 401, then the INVITE again with credentials: never 401/403 again
        // (200, then ACK and BYE).
        sipp(
            addr,
            "invite_auth.xml",
            call,
            transport,
            &["-au", "trunk", "-ap", "correct horse", "-auth_uri", &uri],
        )
        .await;
    }
    assert_eq!(sip_errors(&server, IngestError::AuthFailed), 0);
    // Without the Request-URI in the digest (SIPp's default uri), the
    // same password is refused: 401, then 403.
    sipp(
        addr,
        "invite_wrong_password.xml",
        "auth-call",
        SipTransport::Udp,
        &["-au", "trunk", "-ap", "correct horse"],
    )
    .await;
    assert_eq!(sip_errors(&server, IngestError::AuthFailed), 1);
    // Whatever the engine answered, no session is left behind.
    assert_eq!(settled_sessions(&server).await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_source_needs_no_credentials() {
    // The default allow-list is 127.0.0.1/32: SIPp's INVITE is not
    // challenged, so a scenario that expects a 401 fails.
    let server = super::sip_server().await;
    let addr = sip_addr(&server);
    let outcome = tokio::spawn(async move {
        sipp(
            addr,
            "invite_wrong_password.xml",
            "open-call",
            SipTransport::Udp,
            &["-au", "trunk", "-ap", "x"],
        )
        .await
    })
    .await;
    assert!(outcome.is_err(), "an allowed source was challenged");
    assert_eq!(sip_errors(&server, IngestError::AuthFailed), 0);
    server.shutdown().await;
}
