//! Dialog handling Hearken's signalling does on its own: CANCEL of an
//! INVITE in flight, BYE for a dialog it does not have.

use hearken::metrics::IngestError;

use super::{SipTransport, sessions, sip_addr, sip_errors, sip_server, sipp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_invite_gets_487_and_leaves_nothing() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    for transport in [SipTransport::Udp, SipTransport::Tcp] {
        sipp(addr, "cancel.xml", "cancelled-call", transport, &[]).await;
    }
    // Cancelled before its media was asked for: no worker saw it.
    assert_eq!(sip_errors(&server, IngestError::NoCommonCodec), 0);
    assert_eq!(sessions(&server), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_for_an_unknown_dialog_gets_481() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    sipp(
        addr,
        "bye_unknown_dialog.xml",
        "no-call",
        SipTransport::Udp,
        &[],
    )
    .await;
    sipp(
        addr,
        "bye_unknown_dialog.xml",
        "no-call",
        SipTransport::Tcp,
        &[],
    )
    .await;
    assert_eq!(sip_errors(&server, IngestError::UnknownDialog), 2);
    server.shutdown().await;
}

/// Needs the engine's side of `CreateSip` (it answers `NoUsableAudio`
/// until SIP media lands): run with `--ignored` once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the engine's SIP media (CreateSip answered with a local RTP address)"]
async fn a_call_with_hold_dtmf_and_bye() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    for transport in [SipTransport::Udp, SipTransport::Tcp] {
        sipp(addr, "call_hold_dtmf.xml", "sip-call", transport, &[]).await;
    }
    assert_eq!(sessions(&server), 0, "BYE ended both dialogs' sessions");
    server.shutdown().await;
}

/// As above: needs the engine's SIP media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the engine's SIP media (CreateSip answered with a local RTP address)"]
async fn a_late_offer_is_answered_in_the_ack() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    sipp(addr, "late_offer.xml", "late-call", SipTransport::Udp, &[]).await;
    assert_eq!(sip_errors(&server, IngestError::NoCommonCodec), 0);
    assert_eq!(sessions(&server), 0);
    server.shutdown().await;
}
