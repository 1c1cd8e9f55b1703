//! A media engine and its clients in simulated time: the same engine the
//! worker runs, real str0m clients (ICE, DTLS, SRTP), real Opus speech, and
//! a network that delivers every datagram 1 ms after it was sent. Nothing
//! sleeps: time jumps to the next thing that is due, so a two-minute call
//! runs in a fraction of a second.
//!
//! What the engine hands its sinks is kept in order ([`Sim::sink`]), as the
//! recorder would receive it.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hearken::config::ConsentConfig;
use hearken::media::{Command, CreateSession, Engine, EngineEvent, EngineSettings, Output, Reply};
use hearken::metrics::Metrics;
use hearken::sinks::SinkMsg;
use hearken_core::ids::CallId;
use hearken_core::offer::OfferSummary;
use hearken_testkit::{ClientOutput, Track, WhipClient, WhipOffer};
use str0m::RtcConfig;

/// The engine's address.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40_000);
/// One-way delay of the simulated network.
pub const LATENCY: Duration = Duration::from_millis(1);

/// An audio stream a client sends: 20 ms packets from `start` on (relative
/// to the client's connection), with an RFC 6464 level.
pub struct Talk {
    /// Track index in the client's offer.
    pub track: usize,
    /// The packets, in order.
    pub packets: Vec<Vec<u8>>,
    /// Sent from this long after the client connected.
    pub start: Duration,
    next: usize,
}

impl Talk {
    /// Packets sent so far.
    pub fn sent(&self) -> usize {
        self.next
    }

    /// `packets` on `track`, from `start` after connecting.
    pub fn new(track: usize, packets: Vec<Vec<u8>>, start: Duration) -> Self {
        Self {
            track,
            packets,
            start,
            next: 0,
        }
    }
}

/// A DTMF key press due `at` after connecting.
pub struct KeyPress {
    /// Track index.
    pub track: usize,
    /// RFC 4733 event code.
    pub event: u8,
    /// When, after the client connected.
    pub at: Duration,
    done: bool,
}

impl KeyPress {
    /// Press `event` on `track` `at` after connecting.
    pub fn new(track: usize, event: u8, at: Duration) -> Self {
        Self {
            track,
            event,
            at,
            done: false,
        }
    }
}

/// One simulated WHIP client.
pub struct SimClient {
    /// The client.
    pub whip: WhipClient,
    /// Its session's secret (the WHIP URL).
    pub secret: String,
    /// The call it joined.
    pub call_id: CallId,
    /// When it connected.
    pub connected_at: Option<Instant>,
    /// Audio it received: (when, track, Opus packet).
    pub received: Vec<(Instant, usize, Vec<u8>)>,
    /// What it sends.
    pub talk: Vec<Talk>,
    /// Keys it presses.
    pub keys: Vec<KeyPress>,
    timeout: Instant,
    /// Gone (deleted or ended by the server).
    pub gone: bool,
}

/// Decides whether the network loses a datagram (from, to, bytes).
pub type DropFilter = dyn FnMut(SocketAddr, SocketAddr, &[u8]) -> bool;

/// A datagram on its way.
struct InFlight {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// The simulation.
pub struct Sim {
    /// Simulated now.
    pub now: Instant,
    /// The start (simulated).
    pub t0: Instant,
    /// The engine under test.
    pub engine: Engine,
    /// The clients, by join order.
    pub clients: Vec<SimClient>,
    /// Everything the engine handed its sinks, in order.
    pub sink: Vec<SinkMsg>,
    /// Everything the engine told the control plane.
    pub events: Vec<EngineEvent>,
    /// The server's metrics.
    pub metrics: Metrics,
    /// STUN requests that reached the engine: (source, datagram).
    pub stun_to_server: Vec<(SocketAddr, Vec<u8>)>,
    /// Drops a datagram (from, to, bytes) when it returns true.
    pub drop_if: Option<Box<DropFilter>>,
    /// Datagrams the engine sent to addresses no WHIP client has (SIP
    /// callers): (arrival, destination, bytes).
    pub elsewhere: Vec<(Instant, SocketAddr, Vec<u8>)>,
    network: VecDeque<InFlight>,
}

/// UTC of the simulation's start.
pub fn t0_utc() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T15:00:00Z")
        .expect("a valid time")
        .with_timezone(&Utc)
}

impl Sim {
    /// An engine with consent set up from `consent`.
    pub fn new(consent: ConsentConfig) -> Self {
        let setup = hearken::setup::consent::setup(&consent).expect("consent setup");
        let metrics = Metrics::new();
        let t0 = Instant::now();
        let engine = Engine::new(
            EngineSettings {
                local_addr: SERVER,
                connect_timeout: Duration::from_secs(10),
                inactivity_timeout: Duration::from_secs(15),
                rtp_idle_timeout: Duration::from_secs(60),
                ufrag_prefix: Some(hearken::media::stun_filter::UfragPrefix::random()),
            },
            Arc::new(setup),
            metrics.media(),
            t0,
            t0_utc(),
        );
        Self {
            now: t0,
            t0,
            engine,
            clients: Vec::new(),
            sink: Vec::new(),
            events: Vec::new(),
            metrics,
            stun_to_server: Vec::new(),
            drop_if: None,
            elsewhere: Vec::new(),
            network: VecDeque::new(),
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.now.duration_since(self.t0).as_secs_f64()
    }

    /// A client joins `call` with `tracks`; returns its index.
    pub fn join(&mut self, call: &str, tracks: &[Track]) -> usize {
        self.join_with(hearken_testkit::client_config(), call, tracks)
    }

    /// Like [`Self::join`], with the client's own `Rtc` settings.
    pub fn join_with(&mut self, config: RtcConfig, call: &str, tracks: &[Track]) -> usize {
        let index = self.clients.len();
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                1 + (index / 250) as u8,
                1 + (index % 250) as u8,
            )),
            50_000 + index as u16,
        );
        let (offer, sdp) = WhipOffer::with_config(config, addr, tracks, self.now).expect("offer");
        let call_id = CallId::parse(call).expect("call id");
        let secret = format!("secret-{index}");
        let reply = self.engine.handle_command(
            self.now,
            Command::CreateSession(Box::new(CreateSession {
                call_id: call_id.clone(),
                secret: secret.clone(),
                public_id: format!("s{index}"),
                summary: OfferSummary::scan(&sdp).expect("offer summary"),
                offer_sdp: sdp,
                early_inputs: Vec::new(),
                resume: None,
            })),
        );
        let Reply::Answer(Ok(answer)) = reply else {
            panic!("no answer: {reply:?}");
        };
        let whip = offer.accept(&answer).expect("answer accepted");
        self.clients.push(SimClient {
            whip,
            secret,
            call_id,
            connected_at: None,
            received: Vec::new(),
            talk: Vec::new(),
            keys: Vec::new(),
            timeout: self.now,
            gone: false,
        });
        self.pump();
        index
    }

    /// Sends a command to the engine now.
    pub fn command(&mut self, command: Command) -> Reply {
        let reply = self.engine.handle_command(self.now, command);
        self.pump();
        reply
    }

    /// The client deletes its session (WHIP `DELETE`).
    pub fn leave(&mut self, client: usize) -> bool {
        let c = &self.clients[client];
        let command = Command::DeleteSession {
            call_id: c.call_id.clone(),
            secret: c.secret.clone(),
            done: None,
        };
        self.clients[client].gone = true;
        matches!(self.command(command), Reply::Found(true))
    }

    /// Runs until `until` (simulated).
    pub fn run_until(&mut self, until: Instant) {
        while self.now < until {
            let next = self.next_due().min(until);
            self.now = next.max(self.now);
            self.deliver_due();
            self.send_due();
            self.engine.handle_timeout(self.now);
            for c in &mut self.clients {
                if !c.gone && self.now >= c.timeout {
                    let _ = c.whip.handle_timeout(self.now);
                }
            }
            self.pump();
            if self.now >= until {
                break;
            }
        }
    }

    /// A datagram from `from` (not a WHIP client: a SIP caller) reaches the
    /// engine now.
    pub fn datagram_from(&mut self, from: SocketAddr, data: &[u8]) {
        self.engine.handle_datagram(self.now, from, data);
        self.pump();
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// The earliest thing due: a datagram, a timeout, a packet to send.
    fn next_due(&self) -> Instant {
        let mut next = self.engine.poll_timeout();
        if let Some(d) = self.network.front() {
            next = next.min(d.at);
        }
        for c in self.clients.iter().filter(|c| !c.gone) {
            next = next.min(c.timeout);
            if let Some(at) = c.connected_at {
                for t in &c.talk {
                    if t.next < t.packets.len() {
                        next = next.min(at + t.start + Duration::from_millis(20 * t.next as u64));
                    }
                }
                for k in c.keys.iter().filter(|k| !k.done) {
                    next = next.min(at + k.at);
                }
            }
        }
        // Never stand still.
        next.max(self.now + Duration::from_micros(100))
    }

    fn deliver_due(&mut self) {
        while self.network.front().is_some_and(|d| d.at <= self.now) {
            let Some(d) = self.network.pop_front() else {
                break;
            };
            if let Some(drop_if) = self.drop_if.as_mut()
                && drop_if(d.from, d.to, &d.data)
            {
                continue;
            }
            if d.to == SERVER {
                if d.data.first().is_some_and(|&b| b < 2) {
                    self.stun_to_server.push((d.from, d.data.clone()));
                }
                self.engine.handle_datagram(self.now, d.from, &d.data);
            } else if let Some(c) = self
                .clients
                .iter_mut()
                .find(|c| c.whip.local == d.to && !c.gone)
            {
                let _ = c.whip.handle_datagram(self.now, d.from, &d.data);
            } else {
                self.elsewhere.push((self.now, d.to, d.data));
            }
            // str0m's contract: drain the outputs after every input.
            self.pump();
        }
    }

    fn send_due(&mut self) {
        let now = self.now;
        for c in self.clients.iter_mut().filter(|c| !c.gone) {
            let Some(at) = c.connected_at else {
                continue;
            };
            for t in &mut c.talk {
                while t.next < t.packets.len()
                    && at + t.start + Duration::from_millis(20 * t.next as u64) <= now
                {
                    let packet = &t.packets[t.next];
                    // Talking at -30 dBov: speech for the voice filter.
                    let _ = c.whip.send_opus(t.track, now, packet, 960, Some(-30));
                    t.next += 1;
                }
            }
            for k in c.keys.iter_mut().filter(|k| !k.done && at + k.at <= now) {
                k.done = true;
                let _ = c
                    .whip
                    .press_key(k.track, now, k.event, Duration::from_millis(120));
            }
        }
    }

    /// Moves every output: client datagrams onto the network, engine
    /// transmits onto the network, sink messages and events into the logs.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for c in self.clients.iter_mut().filter(|c| !c.gone) {
                loop {
                    match c.whip.poll_output() {
                        Ok(ClientOutput::Transmit {
                            destination,
                            contents,
                        }) => {
                            moved = true;
                            self.network.push_back(InFlight {
                                at: self.now + LATENCY,
                                from: c.whip.local,
                                to: destination,
                                data: contents,
                            });
                        }
                        Ok(ClientOutput::Connected) => {
                            c.connected_at.get_or_insert(self.now);
                        }
                        Ok(ClientOutput::Audio { track, payload }) => {
                            c.received.push((self.now, track, payload));
                        }
                        Ok(ClientOutput::Timeout(t)) => {
                            c.timeout = t;
                            break;
                        }
                        Err(_) => {
                            c.gone = true;
                            break;
                        }
                    }
                }
            }
            while let Some(out) = self.engine.poll_output() {
                moved = true;
                match out {
                    Output::Transmit(t) => self.network.push_back(InFlight {
                        at: self.now + LATENCY,
                        from: SERVER,
                        to: t.destination,
                        data: t.contents.to_vec(),
                    }),
                    Output::Sink(msg) => self.sink.push(msg),
                    Output::Event(e) => self.events.push(e),
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// The frames the sinks got, one by one or committed from a consent
    /// hold: (participant, call-time position in s).
    pub fn frames(&self) -> Vec<(String, f64)> {
        let at = |frame: &hearken_core::conference::SpeakerFrame| {
            (
                frame.participant_id.to_string(),
                frame.position as f64 / 48_000.0,
            )
        };
        self.sink
            .iter()
            .flat_map(|m| match m {
                SinkMsg::Frame { frame, .. } => vec![at(frame)],
                SinkMsg::Frames { frames, .. } => frames.iter().map(at).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The audit events the sinks got, as JSON objects.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.sink
            .iter()
            .filter_map(|m| match m {
                SinkMsg::Audit { event, .. } => serde_json::to_value(event).ok(),
                _ => None,
            })
            .collect()
    }
}
