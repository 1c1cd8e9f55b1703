//! Datagram routing in the media engine ([`Engine::route`], the first half
//! of `Engine::handle_datagram`): parse the datagram, look its source up in
//! the address cache and ask that session's `Rtc` whether it `accepts` it;
//! a STUN request from a new address goes to the session its USERNAME's
//! ufrag names (one hash lookup, then that session's MESSAGE-INTEGRITY
//! check); anything else from an unknown address is dropped.
//!
//! The engine is the one the worker runs. Its sessions are real: N WHIP
//! clients (the test kit's str0m client, each at its own address) offered,
//! answered by the engine, and connected in memory (ICE and DTLS).
//!
//! Benches, per N in {1,000, 4,000}; one iteration is one datagram:
//! - `known_addr`: an SRTP-sized RTP datagram from a connected session's
//!   address (cache hit, `accepts` fast path). Sources rotate over all N
//!   sessions in a scattered order, as interleaved speakers do.
//! - `stun_new_addr`: a real STUN binding request of session k from an
//!   address not in the cache (a NAT rebinding): ufrag lookup, then the
//!   owner checks MESSAGE-INTEGRITY (HMAC-SHA1).
//! - `forged_stun`: a STUN binding request naming a ufrag no session has,
//!   from an unknown address (a flood of forged checks): one lookup, no HMAC.
//! - `unknown_addr`: an RTP datagram from an address no session knows.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hearken::config::ConsentConfig;
use hearken::media::{Command, CreateSession, Engine, EngineSettings, Output, Reply};
use hearken::metrics::Metrics;
use hearken_core::ids::CallId;
use hearken_core::offer::OfferSummary;
use hearken_testkit::{ClientOutput, Track, WhipClient, WhipOffer};

/// The engine's socket (every session's local candidate).
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

struct Node {
    engine: Engine,
    clients: Vec<WhipClient>,
    /// Each client's last STUN binding request.
    stun: Vec<Vec<u8>>,
    now: Instant,
}

impl Node {
    fn new(now: Instant) -> Self {
        let consent = hearken::setup::consent::setup(&ConsentConfig::default()).expect("consent");
        let engine = Engine::new(
            EngineSettings {
                local_addr: SERVER,
                connect_timeout: Duration::from_secs(600),
                inactivity_timeout: Duration::from_secs(600),
                rtp_idle_timeout: Duration::from_secs(60),
                ufrag_prefix: Some(hearken::media::stun_filter::UfragPrefix::random()),
            },
            Arc::new(consent),
            Metrics::new().media(),
            now,
            Utc::now(),
        );
        Self {
            engine,
            clients: Vec::new(),
            stun: Vec::new(),
            now,
        }
    }

    /// Adds clients until there are `n`, each in its own call, and connects
    /// them all.
    fn grow_to(&mut self, n: usize) {
        while self.clients.len() < n {
            let i = self.clients.len();
            let tracks = [Track::send_only(&format!("p{i}"))];
            let (offer, sdp) = WhipOffer::new(client_addr(i), &tracks, self.now).expect("offer");
            let reply = self.engine.handle_command(
                self.now,
                Command::CreateSession(Box::new(CreateSession {
                    call_id: CallId::parse(&format!("call-{i}")).expect("call id"),
                    secret: format!("secret-{i}"),
                    public_id: format!("s{i}"),
                    summary: OfferSummary::scan(&sdp).expect("offer"),
                    offer_sdp: sdp,
                    early_inputs: Vec::new(),
                    resume: None,
                })),
            );
            let Reply::Answer(Ok(answer)) = reply else {
                panic!("no answer: {reply:?}");
            };
            self.clients.push(offer.accept(&answer).expect("answer"));
            self.stun.push(Vec::new());
        }
        let index: HashMap<SocketAddr, usize> = (0..n).map(|i| (client_addr(i), i)).collect();
        for _ in 0..2_000 {
            let mut idle = true;
            for i in 0..n {
                loop {
                    match self.clients[i].poll_output().expect("client") {
                        ClientOutput::Transmit { contents, .. } => {
                            idle = false;
                            if contents.starts_with(&[0x00, 0x01]) {
                                self.stun[i] = contents.clone();
                            }
                            self.engine
                                .handle_datagram(self.now, client_addr(i), &contents);
                        }
                        ClientOutput::Timeout(_) => break,
                        _ => {}
                    }
                }
            }
            while let Some(out) = self.engine.poll_output() {
                if let Output::Transmit(t) = out
                    && let Some(&i) = index.get(&t.destination)
                {
                    idle = false;
                    self.clients[i]
                        .handle_datagram(self.now, SERVER, &t.contents)
                        .expect("client input");
                }
            }
            if idle && self.clients.iter().all(WhipClient::is_connected) {
                return;
            }
            self.now += Duration::from_millis(5);
            self.engine.handle_timeout(self.now);
            for c in &mut self.clients {
                c.handle_timeout(self.now).expect("client timeout");
            }
        }
        panic!("not every session connected");
    }
}

fn routing(c: &mut Criterion) {
    let mut node = Node::new(Instant::now());
    let rtp = rtp_datagram();
    let mut group = c.benchmark_group("route");
    for n in [1_000usize, 4_000] {
        let setup = Instant::now();
        node.grow_to(n);
        eprintln!(
            "routing: {n} sessions connected (ICE and DTLS) in {:.1} s",
            setup.elapsed().as_secs_f64()
        );
        let now = node.now;
        // Scattered order over the sessions (multiplier coprime with n).
        let order: Vec<usize> = (0..n).map(|i| (i * 2_654_435_761) % n).collect();
        // A check naming a ufrag no session has: session 0's, one byte off.
        let mut forged = node.stun[0].clone();
        let at = hearken_testkit::stun_username_at(&forged).expect("USERNAME");
        forged[at] ^= 0x20;

        // What is measured is what we claim.
        for k in order.iter().copied().take(20) {
            let routed = node.engine.route(now, client_addr(k), &rtp).expect("known");
            assert!(!routed.new_address);
            let routed = node
                .engine
                .route(now, rebound_addr(k), &node.stun[k])
                .expect("stun");
            assert!(routed.new_address);
            assert!(node.engine.route(now, rebound_addr(k), &rtp).is_none());
            assert!(node.engine.route(now, rebound_addr(k), &forged).is_none());
        }

        let bench = |group: &mut criterion::BenchmarkGroup<_>,
                     name,
                     datagram: &dyn Fn(usize) -> (SocketAddr, Vec<u8>)| {
            let inputs: Vec<(SocketAddr, Vec<u8>)> = order.iter().map(|&k| datagram(k)).collect();
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let (source, data) = &inputs[i % n];
                    i += 1;
                    black_box(node.engine.route(now, *source, black_box(data)))
                });
            });
        };
        bench(&mut group, "known_addr", &|k| (client_addr(k), rtp.clone()));
        bench(&mut group, "stun_new_addr", &|k| {
            (rebound_addr(k), node.stun[k].clone())
        });
        bench(&mut group, "forged_stun", &|k| {
            (rebound_addr(k), forged.clone())
        });
        bench(&mut group, "unknown_addr", &|k| {
            (rebound_addr(k), rtp.clone())
        });
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
