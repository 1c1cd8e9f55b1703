//! Dialog handling Hearken's signalling does on its own: CANCEL of an
//! INVITE in flight, BYE for a dialog it does not have.

use hearken::metrics::IngestError;

use super::{SipTransport, settled_sessions, sip_addr, sip_errors, sip_server, sipp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_invite_gets_487_and_leaves_nothing() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    for transport in [SipTransport::Udp, SipTransport::Tcp] {
        sipp(addr, "cancel.xml", "cancelled-call", transport, &[]).await;
    }
    // Cancelled before its media was asked for: no worker saw it.
    assert_eq!(sip_errors(&server, IngestError::NoCommonCodec), 0);
    assert_eq!(settled_sessions(&server).await, 0);
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

/// A whole call: 200 with SDP, ACK, a hold re-INVITE answered
/// `recvonly`, a key by SIP INFO, BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_hold_dtmf_and_bye() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    // One call id per run: a call that ended is gone (410).
    for (transport, call) in [
        (SipTransport::Udp, "sip-call-udp"),
        (SipTransport::Tcp, "sip-call-tcp"),
    ] {
        sipp(addr, "call_hold_dtmf.xml", call, transport, &[]).await;
    }
    assert_eq!(
        settled_sessions(&server).await,
        0,
        "BYE ended both dialogs' sessions"
    );
    server.shutdown().await;
}

/// An INVITE without SDP: Hearken offers in the 200, the ACK answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_offer_is_answered_in_the_ack() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    sipp(addr, "late_offer.xml", "late-call", SipTransport::Udp, &[]).await;
    assert_eq!(sip_errors(&server, IngestError::NoCommonCodec), 0);
    assert_eq!(settled_sessions(&server).await, 0);
    server.shutdown().await;
}
