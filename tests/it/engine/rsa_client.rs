//! A client whose DTLS certificate is RSA-2048 (as GStreamer's webrtcbin
//! makes, and as a browser can be given) connects and is recorded, as an
//! ECDSA one is. The client is str0m with OpenSSL doing its DTLS (the same
//! provider the server uses), presenting a self-signed RSA certificate.

use std::sync::Arc;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use str0m::config::DtlsCert;

use super::{consent, speech};
use crate::sim::{Sim, Talk};

fn self_signed(key: &PKey<Private>) -> X509 {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "WebRTC").unwrap();
    let name = name.build();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

#[test]
fn an_rsa_certificate_client_connects_and_is_recorded() {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let cert = self_signed(&key);
    assert_eq!(cert.public_key().unwrap().bits(), 2048);
    let config = hearken_testkit::client_config()
        .set_crypto_provider(Arc::new(hearken::media::dtls::provider()))
        .set_dtls_cert(DtlsCert {
            certificate: cert.to_der().unwrap(),
            private_key: key.private_key_to_pkcs8().unwrap(),
        });

    let mut sim = Sim::new(consent(0));
    let rsa = sim.join_with(
        config,
        "rsa-call",
        &[hearken_testkit::Track::send_only("rosa")],
    );
    let talk: Vec<Vec<u8>> = speech(1).into_iter().take(150).collect();
    sim.clients[rsa]
        .talk
        .push(Talk::new(0, talk, Duration::ZERO));
    sim.run_for(Duration::from_secs(4));

    assert!(
        sim.clients[rsa].connected_at.is_some(),
        "DTLS completed with an RSA client certificate"
    );
    let frames = sim.frames().iter().filter(|(p, _)| p == "rosa").count();
    assert_eq!(frames, 150, "every packet was decrypted and recorded");
}
