//! Native ingest load (`--ingest roq`): every call is a native ingest
//! (`POST /v1/calls/{id}/native`, one Opus flow per speaker), the calls are
//! spread round-robin over `--quic-connections` RTP-over-QUIC connections
//! (`hearken_testkit::roq::RoqClient`), and each speaker sends what a WHIP
//! speaker would: the same [`Pacer`] over the same clips.
//!
//! Everything runs on one multi-threaded tokio runtime of `--threads`
//! workers, since the QUIC client is async. Each connection has two tasks:
//!
//! - setup: connects when its first call is answered (the answer names the
//!   listener and the certificate to pin), then, call by call, presents the
//!   call's connection token and only then hands its speakers to the pacer,
//!   so no flow's first packet precedes its token;
//! - pacer: one min-heap of its speakers' next packets, like a WHIP media
//!   thread's, so an idle millisecond costs nothing. It never waits on the
//!   network: a DATAGRAM is queued or refused at once, and in stream mode
//!   each packet is queued for a third task that opens and writes a stream
//!   per packet in the order they were sent (spawning a task per packet
//!   would not keep that order).
//!
//! Each connection counts what it sends in its own [`SendCounters`], read
//! by the coordinator exactly as a media thread's.
//!
//! A connection reaches one node: the listener its first call's answer
//! names. In a cluster a call's POST may be redirected to another node,
//! whose answer names that node's listener; such a call cannot be carried
//! on the connection, and its speakers fail with `quic_other_node` rather
//! than presenting its token to a node that does not know it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hearken_testkit::roq::{RoqClient, rtp_packet_marked};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::audio::Audio;
use crate::cli::RoqMode;
use crate::client::{CONNECT_TIMEOUT, LATE_AFTER, SendCounters, samples_to_duration};
use crate::media::MediaReport;
use crate::run::progress;
use crate::schedule::Pacer;
use crate::whip::NativeAnswer;

/// The RTP payload type of every flow (Opus's usual dynamic one, as the
/// WHIP answer negotiates).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Stream-mode packets of one connection queued or being written. Past it
/// a packet is dropped and counted as a send error: queueing more behind a
/// stalled connection would only hide the stall.
const MAX_STREAMS_IN_FLIGHT: u32 = 1_024;
/// Longest wait for a connection token to be written.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait, once sending stopped, for each of: the pacers to exit,
/// stream sends in flight to finish, queued DATAGRAMs to leave.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How often the queued DATAGRAMs are looked at while they drain.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Time given to the connections' CONNECTION_CLOSE frames to leave before
/// the runtime that sends them stops.
const CLOSE_GRACE: Duration = Duration::from_millis(200);
/// The most stopping and closing may take (see `run::overall_deadline`).
pub const SHUTDOWN_LIMIT: Duration = DRAIN_LIMIT.saturating_mul(3).saturating_add(CLOSE_GRACE);
/// Mixed into the seed for RTP numbering, so that its draws are independent
/// of the pacer's (which must equal a WHIP speaker's for the same seed).
const RTP_SALT: u64 = 0x5254_505f_4e55_4d53;

/// A speaker's RTP numbering: random, as RFC 3550 §5.1 has senders pick
/// it, yet reproducible from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpIdentity {
    /// Its SSRC.
    pub ssrc: u32,
    /// Sequence number of its first packet.
    pub first_seq: u16,
    /// RTP timestamp of sample 0 of its timeline.
    pub first_timestamp: u32,
}

impl RtpIdentity {
    /// The numbering of speaker `index` of a run seeded with `seed`.
    pub fn new(seed: u64, index: u64) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ RTP_SALT ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        Self {
            ssrc: rng.random(),
            first_seq: rng.random(),
            first_timestamp: rng.random(),
        }
    }
}

/// One speaker of a native call, as the coordinator plans it.
pub struct NativeSpeaker {
    /// The coordinator's session index of the speaker.
    pub session: usize,
    /// Its RoQ flow id (unique on its connection).
    pub flow_id: u64,
    /// What it sends when.
    pub pacer: Pacer,
    /// Its RTP numbering.
    pub rtp: RtpIdentity,
    /// Its place in the ramp: it starts then, or when its call is ready on
    /// the connection if that is later.
    pub start_at: Instant,
}

/// A call whose native ingest the server created.
pub struct AnsweredCall {
    /// Where to send and the token to present.
    pub answer: NativeAnswer,
    /// When its POST was sent (setup latency is measured from it).
    pub post_started: Instant,
    /// Its speakers.
    pub speakers: Vec<NativeSpeaker>,
}

/// Where answered calls are handed to the connection that carries them;
/// cheap to clone into signalling tasks.
#[derive(Clone)]
pub struct CallInbox {
    calls: UnboundedSender<AnsweredCall>,
}

impl CallInbox {
    /// Hands a call to its connection. False if the connection's tasks
    /// have ended.
    pub fn add(&self, call: AnsweredCall) -> bool {
        self.calls.send(call).is_ok()
    }
}

/// The native ingest's media: the runtime and its connections.
pub struct NativeMedia {
    /// Taken when it is shut down (see the `Drop` impl).
    runtime: Option<tokio::runtime::Runtime>,
    connections: Vec<Connection>,
    stop: watch::Sender<bool>,
    mode: RoqMode,
}

/// The coordinator's handle on one QUIC connection.
struct Connection {
    inbox: CallInbox,
    link: Arc<Link>,
    /// The pacer task (which owns the setup task), until joined.
    task: Option<JoinHandle<()>>,
}

/// What a connection's tasks share.
struct Link {
    /// Its index, for messages.
    index: usize,
    mode: RoqMode,
    audio: Arc<Audio>,
    reports: UnboundedSender<MediaReport>,
    counters: Arc<SendCounters>,
    /// The client, once connected.
    client: OnceLock<Arc<RoqClient>>,
    /// The listener and certificate the client connected to.
    peer: OnceLock<(std::net::SocketAddr, String)>,
    /// Whether a call placed on another node was reported.
    other_node_reported: AtomicBool,
    /// In stream mode, once connected: the queue of the task that writes a
    /// stream per packet.
    streams: OnceLock<UnboundedSender<StreamPacket>>,
    /// Stream-mode packets queued or being written.
    in_flight: Arc<Semaphore>,
    /// Why the connection is unusable (it failed or closed), as an
    /// `errors_by_kind` key; its speakers and later calls fail with it.
    lost: OnceLock<&'static str>,
    /// Set when the run ends: the connection closing is then expected.
    stopping: AtomicBool,
}

impl Link {
    /// Reports every speaker of `sessions` failed with `kind`.
    fn fail(&self, sessions: impl IntoIterator<Item = usize>, kind: &'static str) {
        for session in sessions {
            // The coordinator outlives the media; a send fails only after it
            // stopped listening.
            let _ = self.reports.send(MediaReport::Failed { session, kind });
        }
    }

    /// Marks the connection unusable (the first reason sticks).
    fn lose(&self, kind: &'static str, why: &str) {
        if self.lost.set(kind).is_ok() && !self.stopping.load(Ordering::Relaxed) {
            progress(format!("QUIC connection {}: {why}", self.index));
        }
    }

    /// Sends the next packet of `speaker`, due at `due`, without waiting.
    fn send_next(&self, speaker: &mut PacedSpeaker, due: Instant, now: Instant) {
        let planned = speaker.pacer.next(&self.audio);
        let packet = planned.payload.packet(&self.audio);
        // The pacer's clock is the RTP clock (48 kHz samples since the
        // speaker started); RTP timestamps wrap, hence the truncation.
        let timestamp = speaker.rtp.first_timestamp.wrapping_add(planned.at as u32);
        let rtp = rtp_packet_marked(
            planned.start_of_talkspurt,
            OPUS_PAYLOAD_TYPE,
            speaker.seq,
            timestamp,
            speaker.rtp.ssrc,
            &packet.data,
        );
        speaker.seq = speaker.seq.wrapping_add(1);
        let counters = &self.counters;
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters
            .payload_bytes
            .fetch_add(packet.data.len() as u64, Ordering::Relaxed);
        let Some(client) = self.client.get() else {
            counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.mode {
            RoqMode::Datagram => {
                if client.send_datagram(speaker.flow_id, &rtp).is_err() {
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                }
                if now.saturating_duration_since(due) > LATE_AFTER {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            RoqMode::Stream => {
                let queued = Arc::clone(&self.in_flight)
                    .try_acquire_owned()
                    .ok()
                    .zip(self.streams.get())
                    .is_some_and(|(permit, streams)| {
                        let packet = StreamPacket {
                            flow: speaker.flow_id,
                            rtp,
                            due,
                            _permit: permit,
                        };
                        streams.send(packet).is_ok()
                    });
                if !queued {
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A stream-mode packet on its way to its stream.
struct StreamPacket {
    flow: u64,
    rtp: Vec<u8>,
    due: Instant,
    /// Held until the packet is written, so the drain at the end can wait
    /// for every packet queued.
    _permit: OwnedSemaphorePermit,
}

/// Writes each queued packet on a stream of its own, in order.
async fn send_streams(
    client: Arc<RoqClient>,
    counters: Arc<SendCounters>,
    mut queue: UnboundedReceiver<StreamPacket>,
) {
    while let Some(packet) = queue.recv().await {
        match client.send_stream(packet.flow, &[&packet.rtp]).await {
            // Late is judged when the packet is written: opening a stream
            // can wait for the server's stream credit.
            Ok(()) => {
                if packet.due.elapsed() > LATE_AFTER {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl NativeMedia {
    /// Starts the runtime (`threads` workers) and the tasks of
    /// `connections` connections, which connect when their first call is
    /// answered and report to `reports`.
    pub fn start(
        connections: u64,
        mode: RoqMode,
        threads: usize,
        audio: Arc<Audio>,
        reports: UnboundedSender<MediaReport>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("roq-media")
            .enable_all()
            .build()?;
        let (stop, stop_rx) = watch::channel(false);
        let connections = (0..connections)
            .map(|index| {
                let (calls, calls_rx) = mpsc::unbounded_channel();
                let link = Arc::new(Link {
                    index: index as usize,
                    mode,
                    audio: Arc::clone(&audio),
                    reports: reports.clone(),
                    counters: Arc::new(SendCounters::default()),
                    client: OnceLock::new(),
                    peer: OnceLock::new(),
                    other_node_reported: AtomicBool::new(false),
                    streams: OnceLock::new(),
                    in_flight: Arc::new(Semaphore::new(MAX_STREAMS_IN_FLIGHT as usize)),
                    lost: OnceLock::new(),
                    stopping: AtomicBool::new(false),
                });
                let task =
                    runtime.spawn(run_connection(Arc::clone(&link), calls_rx, stop_rx.clone()));
                Connection {
                    inbox: CallInbox { calls },
                    link,
                    task: Some(task),
                }
            })
            .collect();
        Ok(Self {
            runtime: Some(runtime),
            connections,
            stop,
            mode,
        })
    }

    /// What each connection sent.
    pub fn counters(&self) -> Vec<Arc<SendCounters>> {
        self.connections
            .iter()
            .map(|c| Arc::clone(&c.link.counters))
            .collect()
    }

    /// The inbox of the connection that carries call `call` (round-robin).
    pub fn inbox(&self, call: u64) -> CallInbox {
        let index = (call % self.connections.len() as u64) as usize;
        self.connections[index].inbox.clone()
    }

    /// Stops every speaker, as a platform whose calls end stops sending,
    /// and waits (bounded) until what was sent has left: stream sends in
    /// flight, and DATAGRAMs still queued in the QUIC connections. Those
    /// the connection dropped from its queue instead (it drops the oldest
    /// when its buffer is full) are counted as send errors. The
    /// connections stay open for the DELETEs.
    pub async fn stop_sending(&mut self) {
        for connection in &self.connections {
            connection.link.stopping.store(true, Ordering::Relaxed);
        }
        // Receivers only fail once every task is gone.
        let _ = self.stop.send(true);
        for connection in &mut self.connections {
            if let Some(task) = connection.task.take() {
                // A pacer that does not exit in time is left to the
                // runtime's shutdown; a panic was printed already.
                let _ = tokio::time::timeout(DRAIN_LIMIT, task).await;
            }
        }
        // Stream-mode packets still queued are written (or fail) first.
        let drained = tokio::time::Instant::now() + DRAIN_LIMIT;
        for connection in &self.connections {
            let all = connection
                .link
                .in_flight
                .acquire_many(MAX_STREAMS_IN_FLIGHT);
            let _ = tokio::time::timeout_at(drained, all).await;
        }
        if self.mode == RoqMode::Datagram {
            self.count_dropped_datagrams().await;
        }
    }

    /// Adds the DATAGRAMs each connection accepted but never transmitted to
    /// its send errors, once its queue has drained (its transmitted count
    /// caught up, or stopped moving) or [`DRAIN_LIMIT`] passed.
    async fn count_dropped_datagrams(&self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        for connection in &self.connections {
            let link = &connection.link;
            let Some(client) = link.client.get() else {
                continue;
            };
            let accepted = link
                .counters
                .packets
                .load(Ordering::Relaxed)
                .saturating_sub(link.counters.send_errors.load(Ordering::Relaxed));
            let mut transmitted = client.connection().stats().frame_tx.datagram;
            while transmitted < accepted && Instant::now() < deadline {
                tokio::time::sleep(DRAIN_POLL).await;
                let now = client.connection().stats().frame_tx.datagram;
                if now == transmitted {
                    break;
                }
                transmitted = now;
            }
            let dropped = accepted.saturating_sub(transmitted);
            if dropped > 0 {
                progress(format!(
                    "QUIC connection {}: {dropped} DATAGRAMs dropped from its send queue \
                     (counted as send errors)",
                    link.index
                ));
                link.counters
                    .send_errors
                    .fetch_add(dropped, Ordering::Relaxed);
            }
        }
    }

    /// Closes every connection and stops the runtime.
    pub async fn close(self) {
        for connection in &self.connections {
            if let Some(client) = connection.link.client.get() {
                client.connection().close(0u32.into(), b"load test over");
            }
        }
        // The endpoints' drivers, on the media runtime, send the
        // CONNECTION_CLOSE frames; without them the server would keep each
        // connection until its idle timeout.
        tokio::time::sleep(CLOSE_GRACE).await;
    }
}

impl Drop for NativeMedia {
    /// Stops the runtime without waiting for its threads: this is dropped
    /// on the coordinator's runtime (also when a run fails midway), where
    /// blocking, as dropping a runtime does, would panic.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A call whose token is presented: its speakers may send.
struct ReadyCall {
    ready_at: Instant,
    speakers: Vec<NativeSpeaker>,
}

/// A speaker the pacer drives.
struct PacedSpeaker {
    session: usize,
    flow_id: u64,
    pacer: Pacer,
    rtp: RtpIdentity,
    /// Sequence number of the next packet.
    seq: u16,
    /// Sample 0 of the pacer's timeline.
    started: Instant,
}

impl PacedSpeaker {
    /// When its next packet is due.
    fn next_due(&self) -> Instant {
        self.started + samples_to_duration(self.pacer.next_at())
    }
}

/// One connection's life: the setup task, and the pacer until told to stop.
async fn run_connection(
    link: Arc<Link>,
    calls: UnboundedReceiver<AnsweredCall>,
    stop: watch::Receiver<bool>,
) {
    let (ready_tx, ready_rx) = mpsc::unbounded_channel();
    let setup = tokio::spawn(set_up_calls(Arc::clone(&link), calls, ready_tx));
    pace(&link, ready_rx, stop).await;
    setup.abort();
}

/// Connects on the first call, then presents each call's token and hands
/// its speakers to the pacer.
async fn set_up_calls(
    link: Arc<Link>,
    mut calls: UnboundedReceiver<AnsweredCall>,
    ready: UnboundedSender<ReadyCall>,
) {
    while let Some(call) = calls.recv().await {
        let sessions = || call.speakers.iter().map(|s| s.session);
        if let Some(kind) = link.lost.get() {
            link.fail(sessions(), kind);
            continue;
        }
        let client = match link.client.get() {
            Some(client) => Arc::clone(client),
            None => match connect(&link, &call.answer).await {
                Some(client) => client,
                None => {
                    link.fail(
                        sessions(),
                        link.lost.get().copied().unwrap_or("quic_connect"),
                    );
                    continue;
                }
            },
        };
        if let Some((quic, cert)) = link.peer.get()
            && (*quic != call.answer.quic || *cert != call.answer.cert_sha256)
        {
            if !link.other_node_reported.swap(true, Ordering::Relaxed) {
                progress(format!(
                    "QUIC connection {}: a call was placed on another node (listener {}, \
                     not {quic}); a connection carries the calls of one node",
                    link.index, call.answer.quic
                ));
            }
            link.fail(sessions(), "quic_other_node");
            continue;
        }
        let token = call.answer.connection_token.as_str();
        match tokio::time::timeout(TOKEN_TIMEOUT, client.present_tokens(&[token])).await {
            Ok(Ok(())) => {}
            outcome => {
                let kind = if link.lost.get().is_some() {
                    "quic_closed"
                } else {
                    "quic_token"
                };
                if let Ok(Err(e)) = outcome {
                    progress(format!("QUIC connection {}: token: {e}", link.index));
                }
                link.fail(sessions(), kind);
                continue;
            }
        }
        let ready_at = Instant::now();
        let ms = ready_at.duration_since(call.post_started).as_secs_f64() * 1e3;
        for session in sessions() {
            let _ = link.reports.send(MediaReport::Connected { session, ms });
        }
        let handed = ready.send(ReadyCall {
            ready_at,
            speakers: call.speakers,
        });
        if handed.is_err() {
            // The pacer has stopped: the run is ending.
            return;
        }
    }
}

/// Opens the connection to the listener `answer` names, pinning its
/// certificate, and watches it for closing. `None` (the link marked lost)
/// when it cannot be made.
async fn connect(link: &Arc<Link>, answer: &NativeAnswer) -> Option<Arc<RoqClient>> {
    let connecting = RoqClient::connect(answer.quic, &answer.cert_sha256);
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => Arc::new(client),
        Ok(Err(e)) => {
            link.lose(
                "quic_connect",
                &format!("cannot connect to {}: {e}", answer.quic),
            );
            return None;
        }
        Err(_) => {
            link.lose(
                "quic_connect_timeout",
                &format!(
                    "not connected to {} within {} s",
                    answer.quic,
                    CONNECT_TIMEOUT.as_secs()
                ),
            );
            return None;
        }
    };
    if link.mode == RoqMode::Stream {
        let (streams, queue) = mpsc::unbounded_channel();
        tokio::spawn(send_streams(
            Arc::clone(&client),
            Arc::clone(&link.counters),
            queue,
        ));
        // Only this task sets the queue and the client.
        let _ = link.streams.set(streams);
    }
    let _ = link.client.set(Arc::clone(&client));
    let _ = link.peer.set((answer.quic, answer.cert_sha256.clone()));
    let connection = client.connection().clone();
    let watcher = Arc::clone(link);
    tokio::spawn(async move {
        let reason = connection.closed().await;
        watcher.lose("quic_closed", &format!("closed: {reason}"));
    });
    Some(client)
}

/// Sends every speaker's packets when due until told to stop.
async fn pace(
    link: &Link,
    mut ready: UnboundedReceiver<ReadyCall>,
    mut stop: watch::Receiver<bool>,
) {
    let mut speakers: Vec<PacedSpeaker> = Vec::new();
    // Lazily ordered wake-ups: (due, index into `speakers`); each speaker
    // has exactly one entry, so none is ever stale.
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut setup_open = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if let Some(kind) = link.lost.get()
            && !speakers.is_empty()
        {
            link.fail(speakers.iter().map(|s| s.session), kind);
            speakers.clear();
            timers.clear();
        }
        let next = timers.peek().map(|Reverse((at, _))| *at);
        let wake = tokio::time::Instant::from_std(next.unwrap_or_else(Instant::now));
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            call = ready.recv(), if setup_open => match call {
                // Speakers of a connection lost meanwhile are failed at the
                // top of the next turn.
                Some(call) => {
                    for speaker in call.speakers {
                        let paced = PacedSpeaker {
                            session: speaker.session,
                            flow_id: speaker.flow_id,
                            pacer: speaker.pacer,
                            rtp: speaker.rtp,
                            seq: speaker.rtp.first_seq,
                            started: speaker.start_at.max(call.ready_at),
                        };
                        timers.push(Reverse((paced.next_due(), speakers.len())));
                        speakers.push(paced);
                    }
                }
                None => setup_open = false,
            },
            () = tokio::time::sleep_until(wake), if next.is_some() => {
                fire(link, &mut speakers, &mut timers);
            }
        }
    }
}

/// Sends every packet due by now and schedules each speaker's next.
fn fire(
    link: &Link,
    speakers: &mut [PacedSpeaker],
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
) {
    let now = Instant::now();
    while let Some(&Reverse((at, index))) = timers.peek() {
        if at > now {
            break;
        }
        timers.pop();
        let Some(speaker) = speakers.get_mut(index) else {
            continue;
        };
        // More than one packet only after a stall: catch up, each counted
        // late, as a media thread does.
        loop {
            let due = speaker.next_due();
            if due > now {
                timers.push(Reverse((due, index)));
                break;
            }
            link.send_next(speaker, due, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_numbering_is_reproducible_and_differs_per_speaker() {
        assert_eq!(RtpIdentity::new(7, 3), RtpIdentity::new(7, 3));
        assert_ne!(RtpIdentity::new(7, 3).ssrc, RtpIdentity::new(7, 4).ssrc);
        assert_ne!(RtpIdentity::new(7, 3).ssrc, RtpIdentity::new(8, 3).ssrc);
    }
}
