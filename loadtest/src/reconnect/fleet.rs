//! Reconnecting against fake nodes on loopback: each answers WHIP offers
//! with an ICE-lite str0m session on its own UDP socket, as a Hearken node
//! does, and counts the RTP packets its sessions received; an entry node
//! redirects every POST to the node of its choice, or answers 503. A node
//! "killed" stops answering anything, as after `kill -9`.

use std::net::UdpSocket;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode, header};
use axum::routing::{delete, post};
use rand::SeedableRng as _;
use rand::rngs::SmallRng;
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::sync::watch;
use url::Url;

use super::*;
use crate::audio::Audio;
use crate::client::SendCounters;
use crate::media::{MediaInbox, MediaReport, MediaThread};
use crate::schedule::{Pacer, TalkSchedule};
use crate::whip::{Answer, node_of};

/// The silence limit of these tests (the shortest `--reconnect-silence-ms`).
const SILENCE: Duration = Duration::from_millis(1_000);

/// What a fake node saw.
struct NodeState {
    alive: AtomicBool,
    /// RTP packets its sessions received (str0m media events).
    packets: AtomicU64,
    /// The offers it answered.
    offers: Mutex<Vec<String>>,
    /// DELETEs received.
    deletes: AtomicU32,
}

/// A fake node.
struct Node {
    url: Url,
    state: Arc<NodeState>,
    http: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start() -> Self {
        let state = Arc::new(NodeState {
            alive: AtomicBool::new(true),
            packets: AtomicU64::new(0),
            offers: Mutex::default(),
            deletes: AtomicU32::new(0),
        });
        let app = Router::new()
            .route("/whip/{call}", post(answer_offer))
            .route(
                "/whip/{call}/{session}",
                delete(|State(state): State<Arc<NodeState>>| {
                    state.deletes.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(StatusCode::OK)
                }),
            )
            .with_state(Arc::clone(&state));
        let (url, http) = serve(app).await;
        Self { url, state, http }
    }

    fn packets(&self) -> u64 {
        self.state.packets.load(Ordering::SeqCst)
    }

    /// Dies at once: its HTTP port refuses, its sessions fall silent.
    fn kill(&self) {
        self.state.alive.store(false, Ordering::SeqCst);
        self.http.abort();
    }
}

/// Serves `app` on a free loopback port.
async fn serve(app: Router) -> (Url, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url =
        Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, http)
}

fn response(status: StatusCode, location: Option<String>, body: String) -> Response<Body> {
    let mut response = Response::builder().status(status);
    if let Some(location) = location {
        response = response.header(header::LOCATION, location);
    }
    response.body(Body::from(body)).expect("response")
}

async fn answer_offer(
    State(state): State<Arc<NodeState>>,
    Path(call): Path<String>,
    offer: String,
) -> Response<Body> {
    match start_session(Arc::clone(&state), &offer) {
        Ok(answer) => {
            let mut offers = state.offers.lock().expect("offers");
            offers.push(offer);
            let location = format!("/whip/{call}/s{}", offers.len());
            response(StatusCode::CREATED, Some(location), answer)
        }
        Err(e) => response(StatusCode::BAD_REQUEST, None, e),
    }
}

/// An ICE-lite session for `offer`, driven by its own thread; its answer.
fn start_session(state: Arc<NodeState>, offer: &str) -> Result<String, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    // As a Hearken node configures it: no transport-wide congestion
    // control, so the client hears nothing but the answers to its consent
    // checks (and a receiver report every 5 s).
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| e.to_string())?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || drive_session(rtc, socket, &state));
    Ok(answer.to_sdp_string())
}

fn drive_session(mut rtc: Rtc, socket: UdpSocket, state: &NodeState) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; 2_048];
    while state.alive.load(Ordering::SeqCst) {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(at)) => break at,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::MediaData(_))) => {
                    state.packets.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        let now = Instant::now();
        if timeout <= now {
            if rtc.handle_input(Input::Timeout(now)).is_err() {
                return;
            }
            continue;
        }
        let wait = (timeout - now).clamp(Duration::from_millis(1), Duration::from_millis(5));
        if socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        if let Ok((n, source)) = socket.recv_from(&mut buf)
            && state.alive.load(Ordering::SeqCst)
            && let Ok(r) = Receive::new(Protocol::Udp, source, local, &buf[..n])
            && rtc.handle_input(Input::Receive(Instant::now(), r)).is_err()
        {
            return;
        }
    }
}

/// The entry node: answers 503 while it has refusals left, else
/// redirects every POST to its target node.
struct Entry {
    url: Url,
    target: Arc<Mutex<Url>>,
    refusals: Arc<AtomicU32>,
}

impl Entry {
    async fn start(target: &Url) -> Self {
        let target = Arc::new(Mutex::new(target.clone()));
        let refusals = Arc::new(AtomicU32::new(0));
        let redirect = {
            let (target, refusals) = (Arc::clone(&target), Arc::clone(&refusals));
            move |Path(call): Path<String>| {
                let refused = refusals
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let target = target.lock().expect("target").clone();
                std::future::ready(if refused {
                    response(StatusCode::SERVICE_UNAVAILABLE, None, String::new())
                } else {
                    let to = target.join(&format!("whip/{call}")).expect("url");
                    response(
                        StatusCode::TEMPORARY_REDIRECT,
                        Some(to.to_string()),
                        String::new(),
                    )
                })
            }
        };
        let app = Router::new()
            .route("/whip/{call}", post(redirect))
            // What a run scrapes: nothing it knows.
            .route("/metrics", axum::routing::get(|| std::future::ready("")));
        let (url, _) = serve(app).await;
        Self {
            url,
            target,
            refusals,
        }
    }

    /// From now on: `refusals` 503s, then redirects to `node`.
    fn then(&self, refusals: u32, node: &Node) {
        *self.target.lock().expect("target") = node.url.clone();
        self.refusals.store(refusals, Ordering::SeqCst);
    }
}

fn audio() -> Arc<Audio> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../media/test");
    Arc::new(Audio::load(FsPath::new(dir)).expect("the test speech"))
}

/// A speaker that talks all the time: a packet every 20 ms.
fn talking() -> Pacer {
    let schedule = TalkSchedule::new(1.0, SmallRng::seed_from_u64(1));
    Pacer::new(schedule, true, 0, 0, 0)
}

/// Starts speaker `session` of call `c1` (msid `spk{session}`) with
/// `--reconnect`, through `server`, on the media thread of `inbox`.
async fn first_session(server: &Server, session: usize, inbox: &MediaInbox) -> Answer {
    let stream_id = format!("spk{session}");
    let (pending, offer) = PendingSpeaker::new(&stream_id, Some(CONSENT_INTERVAL)).expect("offer");
    let post_started = Instant::now();
    let answer = server.offer("c1", offer).await.expect("201");
    let speaker = pending.accept(&answer.sdp).expect("answer").first(
        session,
        post_started,
        talking(),
        Some(SILENCE),
    );
    assert!(inbox.add(speaker));
    answer
}

async fn next_report(
    reports: &mut UnboundedReceiver<MediaReport>,
    within: Duration,
) -> MediaReport {
    tokio::time::timeout(within, reports.recv())
        .await
        .expect("a media report in time")
        .expect("the media thread is running")
}

/// A reconnector as a run makes one, with `deadline`; its notes and the
/// switch that says sending stopped.
fn reconnector(
    server: &Server,
    audio: &Arc<Audio>,
    deadline: Duration,
) -> (
    Arc<Reconnector>,
    UnboundedReceiver<ReconnectNote>,
    watch::Sender<Option<Instant>>,
) {
    let (notes, notes_rx) = unbounded_channel();
    let (stop, stopped) = watch::channel(None);
    let ctx = Arc::new(Reconnector {
        server: server.clone(),
        audio: Arc::clone(audio),
        notes,
        stopped,
        silence_limit: SILENCE,
        deadline,
    });
    (ctx, notes_rx, stop)
}

fn lost(session: usize, inbox: MediaInbox, resume: Box<Resume>) -> Lost {
    Lost {
        session,
        call_id: "c1".to_owned(),
        stream_id: format!("spk{session}"),
        inbox,
        resume,
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_whose_node_dies_goes_on_on_another_node() {
    let audio = audio();
    let (a, b) = (Node::start().await, Node::start().await);
    let entry = Entry::start(&a.url).await;
    let server = Server::new(entry.url.clone(), "t").expect("client");
    let (reports_tx, mut reports) = unbounded_channel();
    let media = MediaThread::spawn(0, Arc::clone(&audio), reports_tx).expect("media thread");
    let counters: Arc<SendCounters> = Arc::clone(&media.counters);

    let answer = first_session(&server, 0, &media.inbox()).await;
    assert_eq!(answer.placement.node, node_of(&a.url));
    let report = next_report(&mut reports, Duration::from_secs(5)).await;
    assert!(
        matches!(report, MediaReport::Connected { session: 0, .. }),
        "{report:?}"
    );
    // A live node answers every consent check: never silent for the limit.
    tokio::time::sleep(SILENCE * 2).await;
    assert!(
        reports.try_recv().is_err(),
        "no loss while the node answers"
    );
    assert!(a.packets() >= 80, "{} packets reached node a", a.packets());

    // Node a dies; the entry has not noticed yet (two 503s), then sends
    // the call to node b.
    entry.then(2, &b);
    a.kill();
    let killed = Instant::now();
    let report = next_report(&mut reports, Duration::from_secs(5)).await;
    let detected = killed.elapsed();
    let MediaReport::Lost {
        session: 0,
        kind,
        resume,
    } = report
    else {
        panic!("{report:?}");
    };
    assert_eq!(kind, "server_silent");
    // Silence counts from the last answer heard, before the kill.
    assert!(
        detected <= SILENCE + Duration::from_millis(300),
        "loss detected {detected:?} after the kill"
    );
    let sent_at_loss = load(&counters.packets);

    let (ctx, mut notes, _stop) = reconnector(&server, &audio, RECONNECT_DEADLINE);
    let task = tokio::spawn(reconnect(ctx, lost(0, media.inbox(), resume)));
    let report = next_report(&mut reports, Duration::from_secs(10)).await;
    let MediaReport::Reconnected { session: 0, ms } = report else {
        panic!("{report:?}");
    };
    task.await.expect("the task ends once connected");
    // Two refusals: waits of 187-250 ms and 375-500 ms before the third
    // attempt, which connects at once on loopback.
    assert!((560.0..3_000.0).contains(&ms), "reconnected in {ms} ms");
    let mut kinds = Vec::new();
    let mut answered = None;
    while let Ok(note) = notes.try_recv() {
        match note {
            ReconnectNote::AttemptFailed { session: 0, kind } => kinds.push(kind),
            ReconnectNote::Answered {
                session: 0,
                placement,
                ..
            } => answered = Some(placement),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kinds, ["http_503", "http_503"]);
    let placement = answered.expect("answered 201");
    assert_eq!(
        placement.node,
        node_of(&b.url),
        "on node b, through a redirect"
    );
    assert_eq!(placement.redirects, 1);
    let offers = b.state.offers.lock().expect("offers").clone();
    assert_eq!(offers.len(), 1);
    assert!(
        offers[0].contains("a=msid:spk0 spk0-audio"),
        "the same participant: {}",
        offers[0]
    );

    // The speech goes on on node b, from where the wall clock is.
    tokio::time::sleep(SILENCE).await;
    assert!(b.packets() >= 40, "{} packets reached node b", b.packets());
    assert!(reports.try_recv().is_err(), "no loss while node b answers");
    media.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let sent = load(&counters.packets);
    let paused = load(&counters.paused);
    let before_detection = load(&counters.sent_before_detection);
    let received = a.packets() + b.packets();
    // Nothing was sent while the session was down: a packet due every
    // 20 ms from the detection to the new session connected.
    let expected = ms / 20.0;
    assert!(
        (paused as f64 - expected).abs() <= 3.0,
        "{paused} packets paused over {ms} ms"
    );
    assert_eq!(
        load(&counters.packets) - sent_at_loss,
        b.packets(),
        "b got all"
    );
    // What the dead node did not get was sent in the detection window.
    assert!(received <= sent, "{received} received, {sent} sent");
    assert!(
        sent - received <= before_detection,
        "{sent} sent, {received} received, {before_detection} sent before detection"
    );
    assert!(
        before_detection <= (SILENCE.as_millis() as u64 + 300) / 20,
        "{before_detection}"
    );
    assert_eq!(load(&counters.send_errors), 0);
    println!(
        "loss detected {} ms after the kill; reconnected {ms:.0} ms after detection; \
         {sent} packets sent ({} to a, {} to b), {received} received, \
         {before_detection} sent before detection, {paused} not sent while down",
        detected.as_millis(),
        sent_at_loss,
        sent - sent_at_loss,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_that_cannot_reconnect_fails_at_the_deadline_or_the_end_of_the_hold() {
    let audio = audio();
    let a = Node::start().await;
    let entry = Entry::start(&a.url).await;
    let server = Server::new(entry.url.clone(), "t").expect("client");
    let (reports_tx, mut reports) = unbounded_channel();
    let media = MediaThread::spawn(0, Arc::clone(&audio), reports_tx).expect("media thread");
    for session in 0..2 {
        first_session(&server, session, &media.inbox()).await;
        let report = next_report(&mut reports, Duration::from_secs(5)).await;
        assert!(
            matches!(report, MediaReport::Connected { .. }),
            "{report:?}"
        );
    }
    // Node a dies, and the fleet never takes its calls.
    entry.then(u32::MAX, &a);
    a.kill();
    let mut resumes = [None, None];
    for _ in 0..2 {
        match next_report(&mut reports, Duration::from_secs(5)).await {
            MediaReport::Lost {
                session, resume, ..
            } => resumes[session] = Some(resume),
            other => panic!("{other:?}"),
        }
    }

    // Speaker 0 may try for 1.2 s: attempts at 0, 0.19-0.25 and
    // 0.56-0.75 s; the next would be past the deadline (at 1.31 s or
    // later), so it gives up when the third is refused.
    let deadline = Duration::from_millis(1_200);
    let resume = resumes[0].take().expect("lost");
    let lost_at = resume.lost_at;
    let (ctx, mut notes, _stop) = reconnector(&server, &audio, deadline);
    tokio::spawn(reconnect(ctx, lost(0, media.inbox(), resume)));
    let mut refused = 0;
    let (outcome, paused, attempts) = loop {
        let note = tokio::time::timeout(Duration::from_secs(5), notes.recv())
            .await
            .expect("a note in time")
            .expect("note");
        match note {
            ReconnectNote::AttemptFailed { kind, .. } => {
                assert_eq!(kind, "http_503");
                refused += 1;
            }
            ReconnectNote::Ended {
                session: 0,
                outcome,
                paused,
                attempts,
            } => break (outcome, paused, attempts),
            other => panic!("{other:?}"),
        }
    };
    let given_up = lost_at.elapsed();
    assert_eq!(outcome, Ended::Failed);
    assert_eq!(attempts, 3);
    assert_eq!(refused, attempts);
    assert!(
        given_up >= Duration::from_millis(560) && given_up < deadline,
        "gave up {given_up:?} after the loss"
    );
    // What fell due from the loss until the speaker gave up.
    let expected = given_up.as_secs_f64() * 50.0;
    assert!(
        (paused as f64 - expected).abs() <= 3.0,
        "{paused} paused in {given_up:?}"
    );

    // Speaker 1 is still trying when the hold ends.
    let resume = resumes[1].take().expect("lost");
    let lost_at = resume.lost_at;
    let (ctx, mut notes, stop) = reconnector(&server, &audio, RECONNECT_DEADLINE);
    let task = tokio::spawn(reconnect(ctx, lost(1, media.inbox(), resume)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    media.stop();
    let stopped_at = Instant::now();
    stop.send(Some(stopped_at)).expect("the task listens");
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the task ends at once")
        .expect("task");
    let mut ended = None;
    while let Ok(note) = notes.try_recv() {
        if let ReconnectNote::Ended {
            outcome, paused, ..
        } = note
        {
            ended = Some((outcome, paused));
        }
    }
    let (outcome, paused) = ended.expect("ended");
    assert_eq!(outcome, Ended::Unfinished);
    let expected = (stopped_at - lost_at).as_secs_f64() * 50.0;
    assert!(
        (paused as f64 - expected).abs() <= 3.0,
        "{paused} paused, {expected} expected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_reconnect_moves_the_calls_of_a_dead_node() {
    use clap::Parser as _;
    let (a, b) = (Node::start().await, Node::start().await);
    let entry = Entry::start(&a.url).await;
    let plan = crate::cli::Args::try_parse_from([
        "hearken-loadtest",
        "--url",
        entry.url.as_str(),
        "--token",
        "t",
        "--calls",
        "2",
        "--speakers-per-call",
        "2",
        "--duration",
        "4",
        "--ramp",
        "20",
        "--reconnect",
        "--reconnect-silence-ms",
        "1000",
    ])
    .expect("flags")
    .validate(|| ("rc".to_owned(), 1))
    .expect("plan");
    let run = tokio::task::spawn_blocking(move || crate::run::run(plan));
    // Every speaker is up on node a well within 1.5 s; then a dies, and
    // the entry refuses once before sending the calls to node b.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(a.state.offers.lock().expect("offers").len(), 4);
    entry.then(1, &b);
    a.kill();
    let report = run.await.expect("run").expect("report");
    println!("{}", report.to_table());

    assert_eq!(report.speakers_connected, 4);
    assert_eq!(report.reconnect_silence_ms, Some(1_000));
    assert_eq!(report.reconnects, 4, "{report:?}");
    assert_eq!(report.reconnect_failures, 0);
    assert_eq!(report.errors, 0, "{:?}", report.errors_by_kind);
    assert_eq!(
        report.reconnect_attempt_errors_by_kind,
        std::collections::BTreeMap::from([("http_503".to_owned(), 1)])
    );
    let p99 = report.reconnect_ms.p99.expect("reconnect times");
    assert!(p99 < 2_000.0, "{:?}", report.reconnect_ms);
    // Each speaker counts on its final node; each call whole on it.
    assert_eq!(
        report.sessions_by_node,
        std::collections::BTreeMap::from([(node_of(&b.url), 4)])
    );
    assert_eq!(report.calls_split_across_nodes, 0);
    assert_eq!(report.redirects_followed, 8, "one per POST answered 201");
    // The new sessions are DELETEd on node b; the lost ones are not.
    assert_eq!(b.state.deletes.load(Ordering::SeqCst), 4);
    assert_eq!(report.delete_errors, 0);
    let offers = b.state.offers.lock().expect("offers").clone();
    let mut msids: Vec<&str> = offers
        .iter()
        .filter_map(|o| o.lines().find(|l| l.starts_with("a=msid:")))
        .collect();
    msids.sort_unstable();
    assert_eq!(
        msids,
        [
            "a=msid:spk0 spk0-audio",
            "a=msid:spk0 spk0-audio",
            "a=msid:spk1 spk1-audio",
            "a=msid:spk1 spk1-audio"
        ]
    );
    // Packets: all sent reached a live node but those sent in the
    // detection windows; none was sent while a session was down.
    let received = a.packets() + b.packets();
    assert!(received <= report.packets_sent);
    assert!(report.packets_sent - received <= report.packets_sent_before_detection);
    // Four speakers paused for about their reconnect time each, 50
    // packets a second.
    assert!(
        (10..=4 * 100).contains(&report.packets_sent_while_disconnected),
        "{}",
        report.packets_sent_while_disconnected
    );
}
