//! A media worker: one OS thread, one UDP socket, a waker for commands, the
//! clock, and the [`Engine`] that does the rest.
//!
//! Each turn of the loop waits (mio) for a datagram, a command or the
//! engine's next deadline (after a read, first letting datagrams gather
//! for [`RECEIVE_COALESCE`]); hands commands, then up to [`READ_BUDGET`]
//! datagrams, read in batches, then the time to the engine; and carries
//! out what the engine asked for: datagrams sent, sink messages queued with
//! `try_send` (a full queue drops the frame and counts it), events to the
//! control plane.
//! Nothing here waits on disk, a lock or `.await`.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use hearken_verbal::Recognised;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};
use tracing::{debug, error, info, warn};

use super::command::{Command, EngineEvent, Reply};
use super::engine::{Engine, EngineSettings, Output};
use super::native::NativeMedia;
use super::stun_filter::{self, UfragPrefix};
use super::verbal::VerbalService;
use crate::metrics::{DropReason, MediaMetrics, Metrics};
use crate::setup::consent::ConsentSetup;
use crate::sinks::{SinkMsg, SinkSender};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Datagrams read per loop turn before commands and timers get a look in
/// (quinn's `IO_LOOP_BOUND` is 160 for the same reason); read in batches of
/// up to [`BATCH_SIZE`].
const READ_BUDGET: usize = 256;
/// Datagrams read before a session or call ends (see
/// [`Worker::read_socket_dry`]): a socket buffer's worth and more.
const DRY_BUDGET: usize = 16 * READ_BUDGET;
/// Largest datagram we accept (above any sane MTU).
const MAX_DATAGRAM: usize = 2048;
/// Largest run of datagrams the kernel coalesces into one buffer with GRO
/// (quinn-udp turns it on where the kernel has it).
const MAX_GRO_BYTES: usize = 64 * 1024;
/// Commands waiting for a worker beyond this are refused (the worker is
/// overloaded or stuck, and the caller answers 503).
const COMMAND_QUEUE: usize = 1024;
/// Native RTP packets waiting for a worker beyond this are dropped (and
/// counted): the worker is behind, and a late packet is worth less than
/// the ones after it.
const NATIVE_QUEUE: usize = 16_384;
/// Native packets handled per loop turn before the socket, commands and
/// timers get a look in.
const NATIVE_BUDGET: usize = 512;
/// After reading the socket, the worker lets datagrams gather this long
/// before it reads again (unless a deadline or a backlog says otherwise),
/// the way a NIC moderates its interrupts: at 1,000 speakers with a quarter
/// talking the worker woke for nearly every datagram, and the wake-up
/// (poll, context switches, a receive call) was about a sixth of the
/// worker's time. A datagram waits at most this long more, and so may a
/// command that comes in meanwhile; a deadline does not.
const RECEIVE_COALESCE: Duration = Duration::from_micros(500);
/// How often the engine's wall clock is re-anchored.
const WALL_CLOCK_EVERY: Duration = Duration::from_secs(1);

/// What travels to a worker thread.
enum WorkerMsg {
    /// A command and where its reply goes.
    Ask(Command, tokio::sync::oneshot::Sender<Reply>),
    /// End every call, wait for the recorder to finish, stop the thread.
    Shutdown,
}

/// What a worker needs to start.
pub struct WorkerSettings {
    /// Worker number (names the thread and its metrics).
    pub index: usize,
    /// Address to bind.
    pub bind: SocketAddr,
    /// Address advertised in the ICE candidate (its port is replaced by the
    /// bound port).
    pub advertised: SocketAddr,
    /// Kernel receive buffer to ask for.
    pub recv_buffer_bytes: usize,
    /// Sessions that do not connect in this time are ended.
    pub connect_timeout: Duration,
    /// Connected sessions silent this long are ended as disconnected.
    pub inactivity_timeout: Duration,
    /// Plain-RTP sessions (native, SIP) silent this long are ended as
    /// disconnected.
    pub rtp_idle_timeout: Duration,
    /// Consent rules, prompts and settings.
    pub consent: Arc<ConsentSetup>,
    /// The node's verbal-consent recogniser, when it runs.
    pub verbal: Option<Arc<VerbalService>>,
}

/// The control plane's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    /// Worker number.
    pub index: usize,
    /// UDP port of its socket.
    pub port: u16,
    commands: Sender<WorkerMsg>,
    waker: Arc<Waker>,
    sessions: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
    native: NativeInlet,
}

/// Where native RTP enters a worker: a bounded queue fed with `try_send`,
/// and the worker's waker, rung only when the worker may be asleep (the
/// first packet since it last emptied the queue), so a burst costs one
/// wake-up, not one per packet.
#[derive(Clone)]
pub struct NativeInlet {
    queue: Sender<NativeMedia>,
    waker: Arc<Waker>,
    armed: Arc<AtomicBool>,
}

/// The worker's native queue is full (or the worker is gone): the packet
/// was dropped.
#[derive(Debug, thiserror::Error)]
#[error("the media worker's native queue is full")]
pub struct InletFull;

impl NativeInlet {
    /// Queues one packet for the worker without waiting.
    pub fn send(&self, media: NativeMedia) -> Result<(), InletFull> {
        self.queue.try_send(media).map_err(|_| InletFull)?;
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        Ok(())
    }
}

/// Why a worker did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// The worker thread has stopped.
    #[error("media worker stopped")]
    Gone,
    /// The worker has too many commands waiting.
    #[error("media worker is overloaded")]
    Busy,
    /// The worker did not answer in time.
    #[error("media worker did not answer in time")]
    TimedOut,
}

impl WorkerHandle {
    /// Sends a command and waits at most `limit` for its reply.
    pub async fn ask(&self, command: Command, limit: Duration) -> Result<Reply, AskError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(WorkerMsg::Ask(command, reply))?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(AskError::Gone),
            Err(_) => Err(AskError::TimedOut),
        }
    }

    /// Where native RTP for this worker's calls goes.
    pub fn native_inlet(&self) -> NativeInlet {
        self.native.clone()
    }

    /// Asks the worker to end every call and stop.
    pub fn shutdown(&self) {
        let _ = self.send(WorkerMsg::Shutdown);
    }

    fn send(&self, msg: WorkerMsg) -> Result<(), AskError> {
        if !self.is_alive() {
            return Err(AskError::Gone);
        }
        self.commands.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => AskError::Busy,
            TrySendError::Disconnected(_) => AskError::Gone,
        })?;
        self.waker.wake().map_err(|_| AskError::Gone)
    }

    /// Sessions on this worker (for least-loaded placement).
    pub fn load(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Whether the worker thread runs (a worker whose thread died takes no
    /// new calls).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// Binds the socket and starts the worker thread. The recorder (with its
/// thread) belongs to the worker from now on: the worker stops it last.
pub fn spawn(
    settings: WorkerSettings,
    recorder: SinkSender,
    recorder_join: thread::JoinHandle<()>,
    events: tokio::sync::mpsc::Sender<EngineEvent>,
    metrics: &Metrics,
) -> io::Result<(WorkerHandle, thread::JoinHandle<()>)> {
    let (std_socket, ufrag_prefix) = bind_udp(settings.bind, settings.recv_buffer_bytes)?;
    let port = std_socket.local_addr()?.port();
    let mut socket = UdpSocket::from_std(std_socket);
    let receive = BatchReceive::new(&socket)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
    let (native_tx, native_rx) = crossbeam_channel::bounded(NATIVE_QUEUE);
    let native_armed = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(AtomicBool::new(true));
    let local_addr = SocketAddr::new(settings.advertised.ip(), port);
    let media = metrics.media();
    let now = Instant::now();
    let mut engine = Engine::new(
        EngineSettings {
            local_addr,
            connect_timeout: settings.connect_timeout,
            inactivity_timeout: settings.inactivity_timeout,
            rtp_idle_timeout: settings.rtp_idle_timeout,
            ufrag_prefix,
        },
        settings.consent,
        media.clone(),
        now,
        Utc::now(),
    );
    let mut verbal_results = None;
    if let Some(service) = &settings.verbal {
        let (tap, results) = service.connect(settings.index, waker.clone());
        engine = engine.with_verbal(tap);
        verbal_results = Some(results);
    }
    let worker = Worker {
        index: settings.index,
        socket,
        receive,
        poll,
        engine,
        commands: cmd_rx,
        native: native_rx,
        native_armed: native_armed.clone(),
        verbal_results,
        events,
        recorder,
        recorder_join: Some(recorder_join),
        metrics: media,
        busy: metrics
            .worker_busy_seconds
            .with_label_values(&[&settings.index.to_string()]),
        load: sessions.clone(),
        wall_clock_at: now,
    };
    let guard = AliveGuard {
        alive: alive.clone(),
        index: settings.index,
        failed: metrics.workers_failed.clone(),
    };
    let join = thread::Builder::new()
        .name(format!("media-{}", settings.index))
        .spawn(move || {
            let _guard = guard;
            worker.run();
        })?;
    info!(worker = settings.index, addr = %local_addr, "media worker started");
    Ok((
        WorkerHandle {
            index: settings.index,
            port,
            commands: cmd_tx,
            native: NativeInlet {
                queue: native_tx,
                waker: waker.clone(),
                armed: native_armed,
            },
            waker,
            sessions,
            alive,
        },
        join,
    ))
}

/// Marks the worker dead when its thread ends by a panic.
struct AliveGuard {
    alive: Arc<AtomicBool>,
    index: usize,
    failed: prometheus::IntGauge,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Release);
        if thread::panicking() {
            error!(
                worker = self.index,
                "media worker died; its calls are lost and it takes no new ones"
            );
            self.failed.inc();
        }
    }
}

/// Binds the worker's socket. With the STUN filter attached, returns the
/// ufrag prefix it lets through.
fn bind_udp(
    addr: SocketAddr,
    recv_buffer: usize,
) -> io::Result<(std::net::UdpSocket, Option<UfragPrefix>)> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    // Bursts from thousands of speakers must not overflow the default buffer;
    // the kernel may grant less than asked, which is fine.
    let _ = socket.set_recv_buffer_size(recv_buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let prefix = UfragPrefix::random();
    let filtered = match stun_filter::attach(&socket, prefix) {
        Ok(()) => Some(prefix),
        Err(e) => {
            warn!(error = %e, "no STUN socket filter: forged checks reach the worker");
            None
        }
    };
    Ok((socket.into(), filtered))
}

/// Reads up to [`BATCH_SIZE`] datagrams with one system call (`recvmmsg`
/// on Linux, through quinn-udp): one `recvfrom` per datagram was 7 % of the
/// worker's time at 500 speakers (loadtest/RESULTS.md).
struct BatchReceive {
    state: UdpSocketState,
    /// [`BATCH_SIZE`] slots of `slot_len` bytes, one per buffer the kernel
    /// fills (a buffer holds a run of same-sized datagrams where GRO
    /// coalesced them; see [`RecvMeta::stride`]).
    slots: Box<[u8]>,
    slot_len: usize,
    meta: [RecvMeta; BATCH_SIZE],
}

impl BatchReceive {
    fn new(socket: &UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        let slot_len = (state.gro_segments() * MAX_DATAGRAM).clamp(MAX_DATAGRAM, MAX_GRO_BYTES);
        Ok(Self {
            state,
            slots: vec![0; BATCH_SIZE * slot_len].into_boxed_slice(),
            slot_len,
            meta: [RecvMeta::default(); BATCH_SIZE],
        })
    }

    /// Receives what the socket holds, up to a batch; returns how many
    /// buffers were filled (read them with [`Self::datagrams`]).
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut slots = self.slots.chunks_mut(self.slot_len).map(IoSliceMut::new);
        let mut buffers: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| slots.next().expect("BATCH_SIZE slots were allocated"));
        self.state.recv(socket.into(), &mut buffers, &mut self.meta)
    }

    /// The datagrams of the first `filled` buffers, with their sources.
    fn datagrams(&self, filled: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..filled]
            .iter()
            .zip(self.slots.chunks(self.slot_len))
            .flat_map(|(meta, slot)| {
                // `stride` is the length of each datagram in the run (all
                // but the last); an empty datagram has no chunks.
                let stride = meta.stride.max(1);
                slot[..meta.len.min(slot.len())]
                    .chunks(stride)
                    .map(move |datagram| (meta.addr, datagram))
            })
    }
}

struct Worker {
    index: usize,
    socket: UdpSocket,
    receive: BatchReceive,
    poll: Poll,
    engine: Engine,
    commands: Receiver<WorkerMsg>,
    /// Native RTP from the QUIC ingest.
    native: Receiver<NativeMedia>,
    /// Set by a sender that woke the worker; cleared before the queue is
    /// emptied (see [`NativeInlet`]).
    native_armed: Arc<AtomicBool>,
    /// Results of the verbal-consent recogniser (it wakes the poll too).
    verbal_results: Option<Receiver<Recognised>>,
    events: tokio::sync::mpsc::Sender<EngineEvent>,
    recorder: SinkSender,
    recorder_join: Option<thread::JoinHandle<()>>,
    metrics: MediaMetrics,
    busy: prometheus::Counter,
    load: Arc<AtomicUsize>,
    wall_clock_at: Instant,
}

impl Worker {
    fn run(mut self) {
        // Made before the first offer: the first `Rtc` of the process
        // generates its DTLS certificate and the first of this thread
        // builds its OpenSSL context. Left to the first offer, every offer
        // queued behind it waited too: p99 of a fresh server's first 100
        // WHIP answers was 43-113 ms, 5 ms with this.
        drop(super::session::new_rtc(Instant::now()));
        let mut events = Events::with_capacity(16);
        let mut socket_backlog = false;
        let mut socket_read_at = Instant::now();
        let mut native_backlog = false;
        loop {
            let deadline = self.engine.poll_timeout();
            let timeout = if socket_backlog || native_backlog {
                Duration::ZERO
            } else {
                let gather_until = (socket_read_at + RECEIVE_COALESCE).min(deadline);
                let now = Instant::now();
                if gather_until > now && self.commands.is_empty() {
                    thread::sleep(gather_until - now);
                }
                deadline.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!(error = %e, "poll failed");
            }
            let woke = Instant::now();
            socket_backlog |= events.iter().any(|ev| ev.token() == SOCKET);
            if woke.duration_since(self.wall_clock_at) >= WALL_CLOCK_EVERY {
                self.engine.set_wall_clock(woke, Utc::now());
                self.wall_clock_at = woke;
            }
            while let Ok(msg) = self.commands.try_recv() {
                match msg {
                    WorkerMsg::Ask(command, reply) => {
                        if matches!(
                            command,
                            Command::DeleteSession { .. } | Command::EndCall { .. }
                        ) {
                            // What the socket holds arrived before the end
                            // was asked for: it belongs to the call.
                            socket_backlog = self.read_socket_dry();
                        }
                        let answer = self.engine.handle_command(Instant::now(), command);
                        let _ = reply.send(answer);
                    }
                    WorkerMsg::Shutdown => {
                        self.finish();
                        return;
                    }
                }
            }
            if let Some(results) = &self.verbal_results {
                while let Ok(recognised) = results.try_recv() {
                    self.engine.handle_verbal(Instant::now(), recognised);
                }
            }
            if socket_backlog {
                socket_read_at = woke;
                socket_backlog = self.read_socket();
            }
            native_backlog = self.read_native();
            self.engine.handle_timeout(Instant::now());
            self.carry_out();
            self.load
                .store(self.engine.session_count(), Ordering::Relaxed);
            self.busy.inc_by(woke.elapsed().as_secs_f64());
        }
    }

    /// Reads what the socket holds now, up to [`DRY_BUDGET`] datagrams
    /// (so a flood cannot hold a command back for long); returns whether
    /// more may wait.
    fn read_socket_dry(&mut self) -> bool {
        for _ in 0..DRY_BUDGET / READ_BUDGET {
            if !self.read_socket() {
                return false;
            }
        }
        true
    }

    /// Reads up to [`READ_BUDGET`] datagrams, a batch per system call;
    /// returns whether more may wait.
    fn read_socket(&mut self) -> bool {
        let mut read = 0;
        while read < READ_BUDGET {
            let filled = match self.receive.recv(&self.socket) {
                Ok(filled) => filled,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // e.g. ICMP port unreachable surfacing on Linux: not fatal.
                    debug!(error = %e, "udp receive error");
                    read += 1;
                    continue;
                }
            };
            // One clock reading for the batch: it all arrived by now.
            let now = Instant::now();
            for (source, datagram) in self.receive.datagrams(filled) {
                self.engine.handle_datagram(now, source, datagram);
                read += 1;
            }
            // Frames out to the recorder once per batch, not per datagram:
            // a batch takes well under a millisecond.
            self.carry_out();
            if filled < BATCH_SIZE {
                // The queue was empty when the call returned; a datagram
                // arriving since wakes the (edge-triggered) poll again.
                return false;
            }
        }
        true
    }

    /// Handles up to [`NATIVE_BUDGET`] native packets; returns whether more
    /// may wait.
    fn read_native(&mut self) -> bool {
        // Cleared first: a packet queued after this wakes the poll again.
        self.native_armed.store(false, Ordering::Release);
        for _ in 0..NATIVE_BUDGET {
            let Ok(media) = self.native.try_recv() else {
                return false;
            };
            self.engine.handle_native(Instant::now(), media);
            self.carry_out();
        }
        true
    }

    /// Does what the engine asked for.
    fn carry_out(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit(t) => {
                    if self.socket.send_to(&t.contents, t.destination).is_err() {
                        self.metrics.udp_send_errors.inc();
                    }
                }
                Output::Sink(msg) => self.send_to_recorder(msg),
                Output::Event(event) => {
                    if self.events.try_send(event).is_err() {
                        // Only if the control plane is stuck or gone.
                        self.metrics.sink_messages_dropped.inc();
                        warn!(
                            worker = self.index,
                            "control plane event queue full; event dropped"
                        );
                    }
                }
            }
        }
    }

    fn send_to_recorder(&mut self, msg: SinkMsg) {
        if let SinkMsg::Frame { frame, .. } = &msg {
            self.metrics
                .datagram_to_sink_seconds
                .observe(frame.arrival.elapsed().as_secs_f64());
            if self.recorder.try_send_frame(msg).is_err() {
                self.metrics
                    .frames_dropped
                    .get(DropReason::RecorderQueueFull)
                    .inc();
            }
            return;
        }
        if let SinkMsg::Announcement { .. } = &msg {
            // Paced like a speaker's frames: the same budget.
            if self.recorder.try_send_frame(msg).is_err() {
                self.metrics
                    .frames_dropped
                    .get(DropReason::RecorderQueueFull)
                    .inc();
            }
            return;
        }
        // Everything else is a control message, a commit of frames
        // (`SinkMsg::Frames`) included: one message, taken whole.
        let what = msg.label();
        if self.recorder.try_send_control(msg).is_err() {
            self.metrics.sink_messages_dropped.inc();
            error!(
                worker = self.index,
                message = what,
                "recorder queue full: control message dropped"
            );
        }
    }

    /// Ends every call, lets the recorder finish them, stops.
    fn finish(&mut self) {
        self.engine.shutdown(Instant::now());
        self.carry_out();
        // The recorder handles messages in order: every call ended above is
        // on disk once it has handled Shutdown.
        let _ = self.recorder.try_send_control(SinkMsg::Shutdown);
        if let Some(join) = self.recorder_join.take() {
            let _ = join.join();
        }
        while let Ok(msg) = self.commands.try_recv() {
            if let WorkerMsg::Ask(command, reply) = msg {
                let _ = reply.send(self.engine.handle_command(Instant::now(), command));
            }
        }
        self.load.store(0, Ordering::Relaxed);
        info!(worker = self.index, "media worker stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> UdpSocket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        UdpSocket::from_std(socket)
    }

    #[test]
    fn one_call_reads_a_whole_batch_and_the_rest_follows() {
        let socket = bound();
        let mut receive = BatchReceive::new(&socket).expect("batch receive");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = socket.local_addr().expect("addr");
        let sent: Vec<Vec<u8>> = (0..BATCH_SIZE + 8).map(|i| vec![i as u8; 20 + i]).collect();
        for datagram in &sent {
            sender.send_to(datagram, to).expect("send");
        }
        let mut calls = Vec::new();
        let mut received = Vec::new();
        loop {
            match receive.recv(&socket) {
                Ok(filled) => {
                    calls.push(filled);
                    for (source, datagram) in receive.datagrams(filled) {
                        assert_eq!(source, sender.local_addr().expect("addr"));
                        received.push(datagram.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("receive failed: {e}"),
            }
        }
        assert_eq!(calls, [BATCH_SIZE, 8], "datagrams per system call");
        assert_eq!(received, sent);
    }

    #[test]
    fn a_coalesced_buffer_is_split_at_its_stride() {
        // What the kernel hands over with GRO: three datagrams of one
        // sender in one buffer, all but the last `stride` bytes long.
        let socket = bound();
        let mut receive = BatchReceive::new(&socket).expect("batch receive");
        let source: SocketAddr = "127.0.0.1:5004".parse().expect("addr");
        for (i, byte) in receive.slots[..250].iter_mut().enumerate() {
            *byte = (i / 100) as u8;
        }
        receive.meta[0] = RecvMeta {
            addr: source,
            len: 250,
            stride: 100,
            ..RecvMeta::default()
        };
        let datagrams: Vec<(SocketAddr, Vec<u8>)> = receive
            .datagrams(1)
            .map(|(from, datagram)| (from, datagram.to_vec()))
            .collect();
        assert_eq!(
            datagrams,
            [
                (source, vec![0; 100]),
                (source, vec![1; 100]),
                (source, vec![2; 50]),
            ]
        );
    }
}
