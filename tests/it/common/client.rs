//! An independent WHIP client on a real UDP socket: the test kit's str0m
//! client, driven in real time by a blocking loop.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};

use super::TestServer;

/// One outgoing audio stream of the test client.
pub struct Outgoing {
    pub stream_id: String,
    pub packets: Vec<Vec<u8>>,
    /// Start sending this long after the session connected.
    pub start_after: Duration,
}

/// An independent WHIP client: str0m in the client role (full ICE,
/// controlling, DTLS active) on its own UDP socket.
pub struct WhipClient {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub mids: Vec<Mid>,
    pub location: String,
    pub etag: Option<String>,
    /// Opus packets the bot sent us, with arrival time after connect.
    pub received: Vec<(Duration, Vec<u8>)>,
    /// When the session connected.
    pub connected_at: Option<Instant>,
    /// Per stream (by index), the RTP audio level (RFC 6464, -dBov) to send
    /// with each packet, cycled; none means no audio-level extension.
    pub audio_levels: Vec<Option<Vec<i8>>>,
}

/// Connects one session of `call` with an m-line per speaker and sends
/// `packets` on each, the n-th speaker starting `stagger` × n after the
/// first, on a blocking thread; the client, once it has sent everything and
/// lingered `linger`.
pub async fn talk_in_background(
    server: &TestServer,
    call: &str,
    speakers: &[&str],
    packets: Vec<Vec<u8>>,
    stagger: Duration,
    linger: Duration,
) -> tokio::task::JoinHandle<WhipClient> {
    let client = WhipClient::connect(server, call, speakers).await;
    let streams: Vec<Outgoing> = speakers
        .iter()
        .enumerate()
        .map(|(n, id)| Outgoing {
            stream_id: (*id).into(),
            packets: packets.clone(),
            start_after: stagger * n as u32,
        })
        .collect();
    tokio::task::spawn_blocking(move || client.run(streams, linger))
}

/// An offer with one audio m-line per stream id (the test kit's client, at
/// a throwaway address): for tests that only POST it.
pub fn offer_sdp(stream_ids: &[&str], direction: Direction) -> String {
    let (_offer, sdp) = whip_offer(stream_ids, direction, "127.0.0.1:9".parse().expect("addr"));
    sdp
}

fn whip_offer(
    stream_ids: &[&str],
    direction: Direction,
    local: SocketAddr,
) -> (hearken_testkit::WhipOffer, String) {
    let tracks: Vec<hearken_testkit::Track> = stream_ids
        .iter()
        .map(|id| hearken_testkit::Track {
            stream_id: (*id).to_owned(),
            direction,
        })
        .collect();
    hearken_testkit::WhipOffer::new(local, &tracks, Instant::now()).expect("offer")
}

impl WhipClient {
    /// POSTs an offer for `stream_ids` and applies the answer.
    pub async fn connect(server: &TestServer, call_id: &str, stream_ids: &[&str]) -> Self {
        Self::connect_with(server, call_id, stream_ids, |sdp| sdp).await
    }

    /// Like [`Self::connect`], letting the test rewrite the offer's text
    /// (e.g. to put a hostile msid in it) before it is POSTed.
    pub async fn connect_with(
        server: &TestServer,
        call_id: &str,
        stream_ids: &[&str],
        rewrite: impl FnOnce(String) -> String,
    ) -> Self {
        Self::connect_dir(server, call_id, stream_ids, Direction::SendOnly, rewrite).await
    }

    /// Like [`Self::connect_with`], with the m-lines' direction.
    pub async fn connect_dir(
        server: &TestServer,
        call_id: &str,
        stream_ids: &[&str],
        direction: Direction,
        rewrite: impl FnOnce(String) -> String,
    ) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let local = socket.local_addr().expect("addr");
        let (offer, sdp) = whip_offer(stream_ids, direction, local);
        let response = server.post_offer(call_id, &rewrite(sdp)).await;
        assert_eq!(response.status(), 201, "WHIP POST answered");
        let location = response
            .headers()
            .get("location")
            .expect("Location")
            .to_str()
            .expect("ascii")
            .to_owned();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let answer = response.text().await.expect("answer");
        let client = offer.accept(&answer).expect("answer accepted");
        let (rtc, mids) = (client.rtc, client.mids);
        socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            rtc,
            socket,
            local,
            mids,
            location,
            etag,
            received: Vec::new(),
            connected_at: None,
            audio_levels: Vec::new(),
        }
    }

    /// Runs the client until every stream has been sent (20 ms pacing, real
    /// time), then keeps the session up for `linger`. Blocking: call from
    /// `spawn_blocking`.
    pub fn run(self, streams: Vec<Outgoing>, linger: Duration) -> Self {
        self.run_with_dtmf(streams, linger, Vec::new())
    }

    /// Like [`Self::run`], also pressing DTMF keys (RFC 4733 event codes) on
    /// the first m-line at the given times after connecting.
    pub fn run_with_dtmf(
        mut self,
        streams: Vec<Outgoing>,
        linger: Duration,
        mut dtmf: Vec<(Duration, u8)>,
    ) -> Self {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut connected_at: Option<Instant> = None;
        let mut sent = vec![0usize; streams.len()];
        let mut rtp_time = vec![0u64; streams.len()];
        let mut next_send = vec![None::<Instant>; streams.len()];
        let mut buf = vec![0u8; 2000];
        loop {
            let now = Instant::now();
            assert!(now < deadline, "client did not finish in time");
            // Drain output.
            let timeout = loop {
                match self.rtc.poll_output().expect("client rtc") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::Connected) => {
                        connected_at = Some(Instant::now());
                        self.connected_at = connected_at;
                    }
                    Output::Event(Event::MediaData(data)) => {
                        if let Some(at) = connected_at {
                            self.received.push((at.elapsed(), data.data.to_vec()));
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            if let Some(at) = connected_at {
                if let Some(&(when, key)) = dtmf.first()
                    && now >= at + when
                {
                    dtmf.remove(0);
                    let mid = self.mids[0];
                    let Some(writer) = self.rtc.writer(mid) else {
                        // The server ended the session.
                        return self;
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .expect("opus negotiated")
                        .pt();
                    let ts = MediaTime::new(rtp_time[0], Frequency::FORTY_EIGHT_KHZ);
                    writer
                        .telephone_event(str0m::media::TelephoneEvent {
                            event: key,
                            end: true,
                            volume: 10,
                            duration: Duration::from_millis(120),
                        })
                        .write(pt, now, ts, Vec::new())
                        .expect("dtmf write");
                    continue_after_write(&mut self.rtc, &self.socket);
                }
                let done = streams
                    .iter()
                    .enumerate()
                    .all(|(i, s)| sent[i] >= s.packets.len());
                if done && now >= at + linger {
                    let last_start = streams
                        .iter()
                        .map(|s| s.start_after)
                        .max()
                        .unwrap_or_default();
                    if now >= at + last_start + linger {
                        return self;
                    }
                }
                for (i, stream) in streams.iter().enumerate() {
                    if sent[i] >= stream.packets.len() {
                        continue;
                    }
                    let due = *next_send[i].get_or_insert(at + stream.start_after);
                    if now < due {
                        continue;
                    }
                    let packet = &stream.packets[sent[i]];
                    let samples = u64::from(
                        hearken_core::opus::packet_samples(packet).expect("valid packet"),
                    );
                    let mid = self.mids[i];
                    let Some(mut writer) = self.rtc.writer(mid) else {
                        // The server ended the session.
                        return self;
                    };
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .expect("opus negotiated")
                        .pt();
                    if let Some(Some(levels)) = self.audio_levels.get(i) {
                        let level = levels[sent[i] % levels.len()];
                        writer = writer.audio_level(level, level > -60);
                    }
                    writer
                        .write(
                            pt,
                            now,
                            MediaTime::new(rtp_time[i], Frequency::FORTY_EIGHT_KHZ),
                            packet.clone(),
                        )
                        .expect("write");
                    rtp_time[i] += samples;
                    sent[i] += 1;
                    next_send[i] = Some(due + Duration::from_micros(samples * 1_000_000 / 48_000));
                }
                // Written media must be drained before the next input.
                continue_after_write(&mut self.rtc, &self.socket);
            }
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            self.socket.set_read_timeout(Some(wait)).expect("timeout");
            match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => {
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                        let _ = self.rtc.handle_input(Input::Receive(Instant::now(), r));
                    }
                }
                Err(_) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    }
}

fn continue_after_write(rtc: &mut Rtc, socket: &UdpSocket) {
    loop {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Timeout(_)) | Err(_) => break,
            Ok(Output::Event(_)) => {}
        }
    }
}
