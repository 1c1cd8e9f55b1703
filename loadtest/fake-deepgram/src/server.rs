//! The HTTP upgrade handler and the per-connection websocket loop.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use crate::FakeConfig;
use crate::behavior::{Behavior, DropMode};
use crate::ogg_opus::OggOpusDecoder;
use crate::record::{
    CloseRecord, Closer, ConnectionRecord, ControlMessage, ReceivedEvent, Record, RejectedAttempt,
};
use crate::transcriber::{StreamParams, Transcriber};

/// Close code and reason for the idle timeout, as the real service sends.
pub const NET_0001: (u16, &str) = (1011, "NET-0001");

/// State shared by the handler, the connections and [`crate::FakeDeepgram`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: FakeConfig,
    pub(crate) started: Instant,
    pub(crate) state: Mutex<SharedState>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct SharedState {
    pub(crate) record: Record,
    pub(crate) behavior: Behavior,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SharedState> {
        // A panic while holding this lock can only come from a bug in this
        // crate; the record is still the best information a test has.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    fn with_connection(&self, index: usize, f: impl FnOnce(&mut ConnectionRecord)) {
        if let Some(c) = self.lock().record.connections.get_mut(index) {
            f(c);
        }
    }

    fn close(&self, index: usize, by: Closer, code: Option<u16>, reason: impl Into<String>) {
        let at = self.since_start();
        let reason = reason.into();
        tracing::debug!(connection = index, ?by, ?code, %reason, "connection closed");
        self.with_connection(index, |c| {
            c.closed.get_or_insert(CloseRecord {
                at,
                by,
                code,
                reason,
            });
        });
    }
}

/// The router: `GET /v1/listen`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/listen", get(listen))
        .with_state(shared)
}

fn error_response(
    shared: &Shared,
    status: StatusCode,
    err_code: &str,
    dg_error: &str,
    query: Vec<(String, String)>,
) -> Response {
    let request_id = uuid::Uuid::new_v4();
    let at = shared.since_start();
    shared.lock().record.rejected.push(RejectedAttempt {
        at,
        status: status.as_u16(),
        dg_error: dg_error.to_owned(),
        query,
    });
    let body = serde_json::json!({
        "err_code": err_code,
        "err_msg": dg_error,
        "request_id": request_id.to_string(),
    });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(dg_error) {
        headers.insert("dg-error", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        headers.insert("dg-request-id", v);
    }
    response
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) => scheme.eq_ignore_ascii_case("token") && token.trim() == key,
        None => false,
    }
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Validate the audio parameters; the error is the `dg-error` text. Without
/// `encoding` (and `sample_rate`) the audio is a container, which the fake
/// takes as Ogg Opus.
fn stream_params(
    query: &[(String, String)],
    config: &FakeConfig,
) -> Result<(StreamParams, bool), String> {
    let container = match param(query, "encoding") {
        Some("linear16") => false,
        Some(other) => {
            return Err(format!(
                "the fake supports only encoding=linear16 or a container, not {other}"
            ));
        }
        None if param(query, "sample_rate").is_some() => {
            return Err("sample_rate needs encoding (omit both for a container)".to_owned());
        }
        None => true,
    };
    let sample_rate = if container {
        crate::ogg_opus::DECODED_RATE
    } else {
        param(query, "sample_rate")
            .ok_or("sample_rate is required with encoding")?
            .parse::<u32>()
            .ok()
            .filter(|r| *r >= 2)
            .ok_or("invalid sample_rate")?
    };
    let channels = match param(query, "channels") {
        None => 1,
        Some(c) => c
            .parse::<u16>()
            .ok()
            .filter(|c| *c >= 1)
            .ok_or("invalid channels")?,
    };
    let utterance_end_ms = match param(query, "utterance_end_ms") {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| "invalid utterance_end_ms")?),
    };
    let params = StreamParams {
        sample_rate,
        channels,
        interim_results: param(query, "interim_results") == Some("true"),
        endpointing: param(query, "endpointing") != Some("false"),
        utterance_end_ms,
        vad_events: param(query, "vad_events") == Some("true"),
        diarize: param(query, "diarize") == Some("true"),
        model: param(query, "model").unwrap_or("base").to_owned(),
        rms_threshold: config.rms_threshold,
    };
    Ok((params, container))
}

/// `GET /v1/listen`: check the key, apply injected rejections, validate the
/// audio parameters, then upgrade.
async fn listen(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !authorized(&headers, &shared.config.api_key) {
        return error_response(
            &shared,
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTH",
            "Invalid credentials.",
            query,
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let reject = {
        let mut state = shared.lock();
        match &mut state.behavior.reject {
            Some(r) if r.count > 0 => {
                r.count -= 1;
                let status = r.status;
                if r.count == 0 {
                    state.behavior.reject = None;
                }
                Some(status)
            }
            _ => None,
        }
    };
    if let Some(status) = reject {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (err_code, message) = if status == StatusCode::TOO_MANY_REQUESTS {
            (
                "TOO_MANY_REQUESTS",
                "Too many requests. Please try again later",
            )
        } else {
            ("INTERNAL_SERVER_ERROR", "Internal server error (injected)")
        };
        return error_response(&shared, status, err_code, message, query);
    }
    let (params, container) = match stream_params(&query, &shared.config) {
        Ok(p) => p,
        Err(e) => {
            return error_response(&shared, StatusCode::BAD_REQUEST, "Bad Request", &e, query);
        }
    };

    let container = match container.then(OggOpusDecoder::new).transpose() {
        Ok(c) => c,
        Err(e) => {
            return error_response(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                &e.to_string(),
                query,
            );
        }
    };
    let request_id = uuid::Uuid::new_v4();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let opened_at = shared.since_start();
    let (index, drop_rule) = {
        let mut state = shared.lock();
        let drop_rule = match &mut state.behavior.drop {
            Some(plan) if plan.count > 0 => {
                plan.count -= 1;
                let rule = (plan.after, plan.mode.clone());
                if plan.count == 0 {
                    state.behavior.drop = None;
                }
                Some(rule)
            }
            _ => None,
        };
        let index = state.record.connections.len();
        state.record.connections.push(ConnectionRecord {
            index,
            request_id,
            query,
            opened_at,
            audio: Vec::new(),
            audio_bytes: 0,
            events: Vec::new(),
            closed: None,
        });
        (index, drop_rule)
    };
    tracing::debug!(connection = index, %request_id, "upgrading");
    let transcriber = Transcriber::new(params, request_id.to_string(), created);
    let connection = Connection {
        shared: Arc::clone(&shared),
        index,
        transcriber,
        container,
        drop_rule,
        outbox: VecDeque::new(),
        last_due: None,
    };
    let mut response = ws.on_upgrade(move |socket| connection.run(socket));
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert("dg-request-id", v);
    }
    response
}

/// One accepted websocket connection.
struct Connection {
    shared: Arc<Shared>,
    index: usize,
    transcriber: Transcriber,
    /// For a container stream: its demuxer and decoder.
    container: Option<OggOpusDecoder>,
    drop_rule: Option<(Duration, DropMode)>,
    /// Serialized messages and the time each may be sent.
    outbox: VecDeque<(Instant, String)>,
    last_due: Option<Instant>,
}

/// What ends the loop.
enum End {
    /// Already recorded; just drop the socket.
    Done,
    /// Send this close frame, record it, and wait briefly for the reply.
    Close(u16, String),
}

impl Connection {
    async fn run(mut self, mut socket: WebSocket) {
        let end = self.serve(&mut socket).await;
        if let End::Close(code, reason) = end {
            self.shared
                .close(self.index, Closer::Server, Some(code), reason.clone());
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            if socket.send(Message::Close(Some(frame))).await.is_ok() {
                // Give the client a moment to answer the close handshake.
                let _ = timeout(Duration::from_secs(1), async {
                    while let Some(Ok(msg)) = socket.recv().await {
                        if matches!(msg, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
    }

    async fn serve(&mut self, socket: &mut WebSocket) -> End {
        let idle_timeout = self.shared.config.idle_timeout;
        let mut idle_deadline = Instant::now() + idle_timeout;
        let mut closing = false;
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            while let Some((due, _)) = self.outbox.front()
                && *due <= Instant::now()
            {
                let Some((_, text)) = self.outbox.pop_front() else {
                    break;
                };
                if let Err(e) = socket.send(Message::Text(text.into())).await {
                    self.shared.close(
                        self.index,
                        Closer::Client,
                        None,
                        format!("send failed: {e}"),
                    );
                    return End::Done;
                }
            }
            if closing && self.outbox.is_empty() {
                return End::Close(1000, String::new());
            }
            let next_due = self.outbox.front().map(|(due, _)| *due);
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => {
                    self.shared.close(self.index, Closer::Server, None, "fake shut down");
                    return End::Done;
                }
                () = sleep_until(next_due.unwrap_or(idle_deadline)), if next_due.is_some() => {}
                () = sleep_until(idle_deadline), if !closing && !self.silent() => {
                    return End::Close(NET_0001.0, NET_0001.1.to_owned());
                }
                msg = socket.recv() => {
                    let at = self.shared.since_start();
                    match msg {
                        Some(Ok(Message::Binary(bytes))) if bytes.is_empty() => {
                            self.control(at, ControlMessage::CloseStream);
                            closing = !self.silent();
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            idle_deadline = Instant::now() + idle_timeout;
                            if let Some(end) = self.audio(at, &bytes) {
                                return end;
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            let message = parse_control(&text);
                            if matches!(message, ControlMessage::KeepAlive) {
                                idle_deadline = Instant::now() + idle_timeout;
                            }
                            if matches!(message, ControlMessage::CloseStream) {
                                closing = !self.silent();
                            }
                            self.control(at, message);
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = match frame {
                                Some(f) => (Some(f.code), f.reason.to_string()),
                                None => (None, String::new()),
                            };
                            self.shared.close(self.index, Closer::Client, code, reason);
                            return End::Done;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Err(e)) => {
                            self.shared.close(self.index, Closer::Client, None, e.to_string());
                            return End::Done;
                        }
                        None => {
                            self.shared
                                .close(self.index, Closer::Client, None, "connection closed");
                            return End::Done;
                        }
                    }
                }
            }
        }
    }

    /// Record and transcribe one audio message; `Some` when a forced drop
    /// ends the connection.
    fn audio(&mut self, at: Duration, bytes: &[u8]) -> Option<End> {
        let stream_offset = self.transcriber.stream_seconds();
        let record_audio = self.shared.config.record_audio;
        self.shared.with_connection(self.index, |c| {
            c.audio_bytes += bytes.len() as u64;
            if record_audio {
                c.audio.extend_from_slice(bytes);
                c.events.push(ReceivedEvent::Audio {
                    at,
                    bytes: bytes.len(),
                    stream_offset,
                });
            }
        });
        match self.container.as_mut() {
            None => self.transcriber.handle_audio(bytes),
            Some(c) => match c.handle_bytes(bytes) {
                Ok(pcm) => self.transcriber.handle_audio(&pcm),
                // What Deepgram does with audio it cannot decode.
                Err(e) => return Some(End::Close(1008, format!("DATA-0000: {e}"))),
            },
        }
        if let Some((after, mode)) = &self.drop_rule
            && self.transcriber.stream_seconds() >= after.as_secs_f64()
        {
            return Some(match mode {
                DropMode::Abrupt => {
                    self.shared
                        .close(self.index, Closer::Server, None, "forced abrupt drop");
                    End::Done
                }
                DropMode::CloseFrame { code, reason } => End::Close(*code, reason.clone()),
            });
        }
        self.queue_output();
        None
    }

    /// Whether this fake answers nothing at all (read when needed, so a
    /// test can change it mid-stream).
    fn silent(&self) -> bool {
        self.shared.lock().behavior.silent
    }

    fn control(&mut self, at: Duration, message: ControlMessage) {
        let honoured = {
            let behavior = &self.shared.lock().behavior;
            !behavior.silent && !behavior.withhold_tail
        };
        match &message {
            ControlMessage::Finalize { .. } if honoured => self.transcriber.handle_finalize(),
            ControlMessage::CloseStream if honoured => self.transcriber.handle_close_stream(),
            _ => {}
        }
        self.shared.with_connection(self.index, |c| {
            c.events.push(ReceivedEvent::Control { at, message });
        });
        self.queue_output();
    }

    fn queue_output(&mut self) {
        let (delay, silent) = {
            let behavior = &self.shared.lock().behavior;
            (behavior.result_delay, behavior.silent)
        };
        while let Some(message) = self.transcriber.poll_output() {
            if silent {
                continue;
            }
            let text = match serde_json::to_string(&message) {
                Ok(text) => text,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialize a server message");
                    continue;
                }
            };
            let due = (Instant::now() + delay).max(self.last_due.unwrap_or_else(Instant::now));
            self.last_due = Some(due);
            self.outbox.push_back((due, text));
        }
    }
}

fn parse_control(text: &str) -> ControlMessage {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return ControlMessage::Other(text.to_owned()),
    };
    match value.get("type").and_then(|t| t.as_str()) {
        Some("KeepAlive") => ControlMessage::KeepAlive,
        Some("Finalize") => ControlMessage::Finalize {
            channel: value.get("channel").and_then(serde_json::Value::as_u64),
        },
        Some("CloseStream") => ControlMessage::CloseStream,
        _ => ControlMessage::Other(text.to_owned()),
    }
}
