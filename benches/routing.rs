//! Datagram routing in a media worker (`Worker::handle_datagram` in
//! `src/rtc/worker.rs`): parse the datagram into a str0m `Receive`, look its
//! source address up in the worker's address cache (`HashMap<SocketAddr,
//! u64>`), then ask that session's `Rtc` whether it `accepts` the input; on a
//! cache miss, ask every session in turn.
//!
//! Sessions are real: N ICE-lite server `Rtc`s built like the worker's
//! (`set_ice_lite(true)`, Opus only, one host candidate on the worker's
//! socket address), each answered to a real client `Rtc` (full ICE, its own
//! host address) and driven in memory until the server's ICE agent reached
//! `Completed`, i.e. nominated the client's address as the send address.
//! Only the ICE part of the handshake is run; DTLS is not needed to route.
//!
//! Benches, per N in {1,000, 4,000}; one iteration is one datagram:
//! - `known_addr`: an SRTP-sized datagram (RTP header, 120 bytes) from a
//!   connected session's address: cache hit, then `accepts` takes its fast
//!   path (source == nominated send address). Sources rotate over all N
//!   sessions in a scattered order, as interleaved speakers do.
//! - `stun_new_addr`: a real STUN binding request (USERNAME,
//!   MESSAGE-INTEGRITY) of session k from an address not in the cache (a
//!   NAT rebinding; every session's first packet takes this path): cache
//!   miss, then a scan of the sessions: each other session rejects it on the
//!   USERNAME ufrag, the owner checks MESSAGE-INTEGRITY (HMAC-SHA1). k
//!   rotates, so the owner is on average halfway through the scan.
//! - `unknown_addr`: an RTP datagram from an address no session knows (a
//!   stray or hostile packet): cache miss, a scan in which every session
//!   says no (not STUN, no viable candidate): the worst case, O(N).

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// The worker's UDP socket (every session's local candidate).
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 3478));

fn client_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(100, 64, (i / 250) as u8, (i % 250 + 1) as u8);
    SocketAddr::new(ip.into(), 40_000 + (i % 20_000) as u16)
}

/// Another address of client `i` (its NAT mapped a new port).
fn rebound_addr(i: usize) -> SocketAddr {
    let mut a = client_addr(i);
    a.set_port(a.port() + 20_000);
    a
}

/// An RTP header with Opus payload type and 108 bytes of (encrypted) body.
fn rtp_datagram() -> Vec<u8> {
    let mut d = vec![
        0x80, 111, 0x12, 0x34, 0, 0, 0x3c, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];
    d.extend((0..108u8).map(|b| b.wrapping_mul(37)));
    d
}

struct Connected {
    server: Rtc,
    /// The last STUN binding request the client sent.
    stun: Vec<u8>,
}

fn deliver(to: &mut Rtc, now: Instant, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
    let receive = Receive::new(Protocol::Udp, source, destination, data).expect("parse");
    to.handle_input(Input::Receive(now, receive))
        .expect("input");
}

/// Builds one server session and drives ICE with its client to completion.
fn connect(i: usize, start: Instant) -> Connected {
    let mut server = RtcConfig::new()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(start);
    server.add_local_candidate(Candidate::host(SERVER, "udp").expect("candidate"));
    let mut client = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .build(start);
    let addr = client_addr(i);
    client.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let answer = server.sdp_api().accept_offer(offer).expect("answer");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");

    let mut now = start;
    let mut stun = None;
    let mut done = false;
    for _ in 0..2_000 {
        let client_next = loop {
            match client.poll_output().expect("client output") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if t.contents.starts_with(&[0x00, 0x01]) {
                        stun = Some(t.contents.to_vec());
                    }
                    deliver(&mut server, now, t.source, t.destination, &t.contents);
                }
                Output::Event(_) => {}
            }
        };
        let server_next = loop {
            match server.poll_output().expect("server output") {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    deliver(&mut client, now, t.source, t.destination, &t.contents)
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                )) => done = true,
                Output::Event(_) => {}
            }
        };
        if done && let Some(stun) = stun.take() {
            return Connected { server, stun };
        }
        now = client_next
            .min(server_next)
            .max(now + Duration::from_millis(1));
        client
            .handle_input(Input::Timeout(now))
            .expect("client timeout");
        server
            .handle_input(Input::Timeout(now))
            .expect("server timeout");
    }
    panic!("session {i}: ICE did not complete");
}

/// What the worker holds: sessions by key, and the address cache.
struct Worker {
    sessions: HashMap<u64, Rtc>,
    by_addr: HashMap<SocketAddr, u64>,
}

impl Worker {
    /// `Worker::handle_datagram` up to the choice of session.
    fn route(&self, data: &[u8], source: SocketAddr, now: Instant) -> Option<u64> {
        let receive = Receive::new(Protocol::Udp, source, SERVER, data).ok()?;
        let input = Input::Receive(now, receive);
        match self.by_addr.get(&source) {
            Some(&k) if self.sessions.get(&k).is_some_and(|s| s.accepts(&input)) => Some(k),
            _ => self
                .sessions
                .iter()
                .find(|(_, s)| s.accepts(&input))
                .map(|(&k, _)| k),
        }
    }
}

fn routing(c: &mut Criterion) {
    const MAX: usize = 4_000;
    let start = Instant::now();
    let setup = Instant::now();
    let mut pool: Vec<(u64, Connected)> = (0..MAX).map(|i| (i as u64, connect(i, start))).collect();
    eprintln!(
        "routing: {MAX} sessions connected (ICE only) in {:.1} s; size_of::<Rtc>() = {} bytes",
        setup.elapsed().as_secs_f64(),
        std::mem::size_of::<Rtc>()
    );
    let now = start + Duration::from_secs(5);
    let rtp = rtp_datagram();

    let mut group = c.benchmark_group("route");
    // ... and parsing the datagram into a `Receive` (RTP: first byte only).
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            black_box(Receive::new(Protocol::Udp, client_addr(7), SERVER, black_box(&rtp)).is_ok())
        })
    });
    for n in [1_000usize, MAX] {
        let mut stuns = Vec::with_capacity(n);
        let mut worker = Worker {
            sessions: HashMap::new(),
            by_addr: HashMap::new(),
        };
        for (k, conn) in pool.drain(..n) {
            worker.by_addr.insert(client_addr(k as usize), k);
            worker.sessions.insert(k, conn.server);
            stuns.push(conn.stun);
        }
        // Scattered order over the sessions (multiplier coprime with n).
        let order: Vec<usize> = (0..n).map(|i| (i * 2_654_435_761) % n).collect();

        // What is measured is what we claim: session 1 accepts session 0's
        // STUN request from session 1's address only if it takes the fast path
        // (the STUN path would refuse it: wrong ufrag).
        let s1 = &worker.sessions[&1];
        let foreign = Receive::new(Protocol::Udp, client_addr(1), SERVER, &stuns[0]).expect("stun");
        assert!(s1.accepts(&Input::Receive(now, foreign)), "fast path");
        for (k, stun) in stuns.iter().enumerate().take(20) {
            assert_eq!(worker.route(&rtp, client_addr(k), now), Some(k as u64));
            assert_eq!(worker.route(stun, rebound_addr(k), now), Some(k as u64));
        }
        assert_eq!(worker.route(&rtp, rebound_addr(0), now), None);

        // The parts of `known_addr`: the cache lookup alone (address ->
        // key -> session) ...
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("cache_lookup_only", n), &n, |b, _| {
            b.iter(|| {
                let source = client_addr(order[i % n]);
                i += 1;
                let key = worker.by_addr.get(black_box(&source));
                black_box(key.and_then(|k| worker.sessions.get(k)).is_some())
            });
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("known_addr", n), &n, |b, _| {
            b.iter(|| {
                let k = order[i % n];
                i += 1;
                black_box(worker.route(black_box(&rtp), client_addr(k), now))
            });
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("stun_new_addr", n), &n, |b, _| {
            b.iter(|| {
                let k = order[i % n];
                i += 1;
                black_box(worker.route(black_box(&stuns[k]), rebound_addr(k), now))
            });
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("unknown_addr", n), &n, |b, _| {
            b.iter(|| {
                let k = order[i % n];
                i += 1;
                black_box(worker.route(black_box(&rtp), rebound_addr(k), now))
            });
        });

        // Give the sessions back for the next, larger N.
        let mut back: Vec<(u64, Connected)> = worker
            .sessions
            .into_iter()
            .map(|(k, server)| {
                let stun = std::mem::take(&mut stuns[k as usize]);
                (k, Connected { server, stun })
            })
            .collect();
        back.sort_by_key(|(k, _)| *k);
        back.append(&mut pool);
        pool = back;
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = routing
}
criterion_main!(benches);
