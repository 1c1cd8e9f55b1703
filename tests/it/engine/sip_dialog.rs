//! A telephone caller's media in the engine (the SIP dialog's media, as the
//! signalling hands it over): Carol calls from Germany (`explicit`,
//! all-party) on G.711 µ-law. She hears the consent request as PCMU
//! (RFC 3551: PT 0, 160 bytes and 160 timestamp ticks per 20 ms) sent back
//! to the address her RTP comes from; nothing of her is kept until she
//! presses 1 (RFC 4733, or SIP INFO); then her speech is recorded as Opus.
//! On hold (`sendonly`) she is sent nothing and `call.json` says so; RTP
//! from any other address is not hers, except that behind NAT her first RTP
//! from her INVITE's IP is latched onto (comedia).

use std::net::SocketAddr;
use std::time::Duration;

use hearken::media::transcode::WireCodec;
use hearken::media::{Command, CreateSip, Reply, SipDirection, SipMedia};
use hearken_core::ids::CallId;

use super::{captured, consent, events_of, located, speech};
use crate::sim::{SERVER, Sim};

const CAROL: &str = "10.9.0.1:30000";

fn media(direction: SipDirection) -> SipMedia {
    SipMedia {
        remote_rtp: CAROL.parse().unwrap(),
        codec: WireCodec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        direction,
    }
}

/// Carol's speech as µ-law: the test clips decoded at 8 kHz by libopus,
/// encoded with G.711 (ezk's µ-law, ITU-T G.711 table 2a).
fn pcmu_speech() -> Vec<Vec<u8>> {
    let mut dec = opus::Decoder::new(8_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 960];
    speech(4)
        .iter()
        .map(|p| {
            let n = dec.decode(p, &mut pcm, false).unwrap();
            pcm[..n]
                .iter()
                .map(|&s| ezk_g711::mulaw::encode(s))
                .collect()
        })
        .collect()
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    hearken_testkit::roq::rtp_packet(pt, seq, ts, 0xCA01, payload)
}

fn start(sim: &mut Sim, call: &str, with_media: bool) {
    let reply = sim.command(Command::CreateSip(Box::new(CreateSip {
        call_id: CallId::parse(call).unwrap(),
        secret: "dialog-1".into(),
        public_id: "d1".into(),
        participant_id: "carol".into(),
        media: with_media.then(|| media(SipDirection::SendRecv)),
        signalling_ip: Some(CAROL.parse::<SocketAddr>().unwrap().ip()),
        early_inputs: Vec::new(),
        resume: None,
    })));
    let Reply::Sip(Ok(local)) = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(local, SERVER, "her RTP goes to the worker's socket");
    located(sim, call, "carol", "DE-BE");
}

/// Carol talks for `seconds`; `key_at` (s): she presses 1 by RFC 4733
/// then; `info_at`: by SIP INFO.
fn talk(sim: &mut Sim, call: &str, seconds: f64, key_at: Option<f64>, info_at: Option<f64>) {
    let from: SocketAddr = CAROL.parse().unwrap();
    let stranger: SocketAddr = "10.9.0.2:30000".parse().unwrap();
    let packets = pcmu_speech();
    let t0 = sim.elapsed();
    let mut key_sent = 0;
    for n in 0..(seconds / 0.02) as usize {
        let t = n as f64 * 0.02;
        let packet = &packets[n % packets.len()];
        sim.datagram_from(from, &rtp(0, n as u16, n as u32 * 160, packet));
        // The same packet from someone else: not hers.
        if n % 50 == 0 {
            sim.datagram_from(stranger, &rtp(0, n as u16, n as u32 * 160, packet));
        }
        if let Some(k) = key_at
            && t >= k
            && key_sent < 4
        {
            // RFC 4733 §2.3: event 1, end bit on the last three (sent
            // thrice), volume 10, duration in 8 kHz ticks.
            let end = key_sent >= 1;
            let flags = if end { 0x80 | 10 } else { 10 };
            let duration: u16 = if end { 960 } else { 480 };
            let ts = (k / 0.02) as u32 * 160;
            let mut payload = vec![1, flags];
            payload.extend_from_slice(&duration.to_be_bytes());
            sim.datagram_from(from, &rtp(101, 30_000 + key_sent, ts, &payload));
            key_sent += 1;
        }
        if let Some(i) = info_at
            && t >= i
            && t < i + 0.02
        {
            let reply = sim.command(Command::SipDigit {
                call_id: CallId::parse(call).unwrap(),
                secret: "dialog-1".into(),
                key: '1',
            });
            assert!(matches!(reply, Reply::Found(true)), "{reply:?}");
        }
        sim.run_until(sim.t0 + Duration::from_secs_f64(t0 + t + 0.02));
    }
}

fn request_seconds() -> f64 {
    hearken::setup::consent::load_prompts("en", None)
        .expect("prompts")
        .consent_request
        .duration
        .as_secs_f64()
}

#[test]
fn a_caller_hears_pcmu_consents_by_key_and_is_recorded_after() {
    let mut sim = Sim::new(consent(5_000));
    let call = "phone-call";
    start(&mut sim, call, true);
    let request = request_seconds();
    talk(&mut sim, call, request + 4.0, Some(request + 1.0), None);

    // What she heard: PCMU back to her address.
    let to_carol: Vec<&Vec<u8>> = sim
        .elsewhere
        .iter()
        .filter(|(_, to, _)| *to == CAROL.parse::<SocketAddr>().unwrap())
        .map(|(_, _, d)| d)
        .collect();
    let expected = (request / 0.02) as usize;
    assert!(
        to_carol.len() + 2 >= expected,
        "{} packets sent to her, the request alone is {expected}",
        to_carol.len()
    );
    for pair in to_carol.windows(2).take(expected - 1) {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(a[1] & 0x7f, 0, "PT 0 (PCMU)");
        assert_eq!(a.len(), 12 + 160, "20 ms of µ-law");
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(ts(b).wrapping_sub(ts(a)), 160, "8 kHz clock");
    }
    assert_eq!(to_carol[0][1] & 0x80, 0x80, "the prompt starts a talkspurt");

    let consented = events_of(&sim, "state_changed", "carol")
        .into_iter()
        .find(|e| e["to"]["method"] == "dtmf")
        .expect("her key is consent");
    let t = consented["t"].as_f64().unwrap();
    assert!(t > request, "after the request: {t} vs {request}");
    assert_eq!(
        captured(&sim, "carol", 0.0, t - 0.05),
        0.0,
        "nothing before"
    );
    let after = captured(&sim, "carol", t + 0.1, request + 4.0);
    assert!(
        after > request + 4.0 - t - 0.5,
        "{after} s recorded after her key"
    );
    let strangers: usize = sim
        .frames()
        .iter()
        .filter(|(who, _)| who != "carol")
        .count();
    assert_eq!(strangers, 0, "RTP from another address is nobody's");

    // She holds the call: nothing more is sent to her; call.json says so.
    let reply = sim.command(Command::UpdateSip {
        call_id: CallId::parse(call).unwrap(),
        secret: "dialog-1".into(),
        media: media(SipDirection::SendOnly),
    });
    assert!(matches!(reply, Reply::Found(true)));
    sim.run_for(Duration::from_secs(3));
    let sent_before = sim.elsewhere.len();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.elsewhere.len(), sent_before, "nothing sent on hold");
    let Reply::Snapshot(Some(summary)) = sim.command(Command::Snapshot {
        call_id: CallId::parse(call).unwrap(),
    }) else {
        panic!("snapshot");
    };
    let carol = &summary.participants[0];
    assert!(carol.on_hold, "{carol:?}");
    assert_eq!(carol.ingest, hearken_core::conference::Ingest::Sip);
    assert_eq!(carol.codec.as_deref(), Some("pcmu"));
    assert!(carol.transcoded_to_opus);
}

#[test]
fn a_late_offer_and_a_key_by_sip_info() {
    let mut sim = Sim::new(consent(5_000));
    let call = "late-offer";
    // INVITE without SDP: the dialog exists before its media.
    start(&mut sim, call, false);
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.elsewhere.is_empty(),
        "nowhere to send before the answer"
    );
    let reply = sim.command(Command::UpdateSip {
        call_id: CallId::parse(call).unwrap(),
        secret: "dialog-1".into(),
        media: media(SipDirection::SendRecv),
    });
    assert!(matches!(reply, Reply::Found(true)));
    let request = request_seconds();
    talk(&mut sim, call, request + 4.0, None, Some(request + 1.0));
    assert!(
        !sim.elsewhere.is_empty(),
        "the request waited for the media and then played"
    );
    let consented = events_of(&sim, "state_changed", "carol")
        .into_iter()
        .find(|e| e["to"]["method"] == "dtmf")
        .expect("the INFO key is consent");
    let t = consented["t"].as_f64().unwrap();
    assert!(captured(&sim, "carol", t + 0.1, 1.0 + request + 4.0) > 2.0);
    assert_eq!(captured(&sim, "carol", 0.0, t - 0.05), 0.0);
}

#[test]
fn a_caller_behind_nat_is_latched_from_the_invites_ip() {
    // Her SDP says 10.9.0.1:30000; her NAT sends from port 41000.
    let mut sim = Sim::new(consent(5_000));
    let call = "behind-nat";
    start(&mut sim, call, true);
    let nat: SocketAddr = "10.9.0.1:41000".parse().unwrap();
    let elsewhere: SocketAddr = "10.7.7.7:41000".parse().unwrap();
    let packets = pcmu_speech();
    // Someone on another IP first: not latched, nobody's.
    sim.datagram_from(elsewhere, &rtp(0, 1, 160, &packets[0]));
    for n in 0..150u16 {
        sim.datagram_from(nat, &rtp(0, n, u32::from(n) * 160, &packets[n as usize]));
        sim.run_until(sim.t0 + Duration::from_millis(20 * (u64::from(n) + 1)));
    }
    sim.run_for(Duration::from_secs(1));
    // Her audio reaches the call (Germany: withheld until she consents,
    // so it shows as frames withheld, not as nothing).
    let Reply::Snapshot(Some(summary)) = sim.command(Command::Snapshot {
        call_id: CallId::parse(call).unwrap(),
    }) else {
        panic!("snapshot");
    };
    assert_eq!(summary.participants.len(), 1, "{summary:?}");
    assert_eq!(summary.participants[0].packets_received, 150);
    // The request goes where her RTP comes from, not to the SDP's port.
    let to_nat = sim.elsewhere.iter().filter(|(_, to, _)| *to == nat).count();
    let to_sdp = sim
        .elsewhere
        .iter()
        .filter(|(_, to, _)| *to == CAROL.parse::<SocketAddr>().unwrap())
        .count();
    assert!(to_nat > 50, "{to_nat} prompt packets to the NAT's address");
    // Before her first packet the prompt started toward the SDP address.
    assert!(to_sdp <= 2, "{to_sdp} packets to the SDP address");
    assert!(
        !sim.elsewhere.iter().any(|(_, to, _)| *to == elsewhere),
        "nothing to the stranger"
    );
}
