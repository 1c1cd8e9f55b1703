//! Deepgram live streaming, one websocket per speaker: `linear16` at 16 kHz
//! mono (the default), or the speaker's own Opus packets in an Ogg Opus
//! container (`ogg-opus`, no decoding at all; Deepgram detects the
//! container, so no `encoding` is sent). Requests carry `mip_opt_out=true`
//! unless `transcription.deepgram.mip_opt_out` is off, so Deepgram keeps
//! nothing.
//!
//! The `deepgram` crate builds the request (its options and query string)
//! and reads the answers (its message types). The websocket itself is
//! opened here with `tokio-tungstenite`, because the crate opens it with
//! the default buffers, a 128 KiB read buffer allocated up front and a write
//! buffer that grows to 128 KiB, and gives each connection a writer task:
//! with one connection per talking speaker, that was most of the 260 to
//! 307 KB each cost. Here a connection reads into 8 KiB, writes each message
//! as it is sent, and runs on the speaker's own task.

use std::sync::Arc;
use std::time::Duration;

use deepgram::Deepgram;
use deepgram::common::options::{Language, Model, Options};
use deepgram::common::stream_response::StreamResponse;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::backend::{
    AudioInput, Backend, BackendError, BackendEvent, BoxFuture, Connection, Failure,
};
use crate::config::{DeepgramConfig, DeepgramEncoding};
use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::transcript::{Chunk, ChunkAudio, StreamWord, extend_linear16};

/// Bytes a connection reads into: Deepgram's messages are JSON of a few
/// KiB; a larger one grows the buffer while it is read.
const READ_BUFFER: usize = 8 << 10;
/// Silence on a connection after which a `KeepAlive` is sent: Deepgram
/// closes one that gets nothing for 10 s (`NET-0001`).
const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(3);

/// Why the Deepgram backend could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeepgramSetupError {
    /// The API key variable is not set.
    #[error("environment variable {0} (transcription.deepgram.api_key_env) is not set")]
    MissingKey(String),
    /// The URL is not usable.
    #[error("transcription.deepgram.url: {0}")]
    BadUrl(String),
}

/// The Deepgram backend.
pub struct DeepgramBackend {
    /// Builds the query string of each request.
    client: Arc<Deepgram>,
    /// `{url}/v1/listen` as `ws://` or `wss://`.
    listen_url: reqwest::Url,
    /// The `Authorization` header's value.
    authorization: Arc<str>,
    /// For `wss://`: the bundled public roots, as the `deepgram` crate uses.
    tls: Option<Arc<rustls::ClientConfig>>,
    config: DeepgramConfig,
}

impl DeepgramBackend {
    /// With its API key (read by the server from the variable
    /// `api_key_env` names).
    pub fn with_key(config: &DeepgramConfig, key: &str) -> Result<Self, DeepgramSetupError> {
        let bad = |e: &dyn std::fmt::Display| DeepgramSetupError::BadUrl(e.to_string());
        let client =
            Deepgram::with_base_url_and_api_key(config.url.as_str(), key).map_err(|e| bad(&e))?;
        let mut base = reqwest::Url::parse(&config.url).map_err(|e| bad(&e))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut listen_url = base.join("v1/listen").map_err(|e| bad(&e))?;
        let scheme = match listen_url.scheme() {
            "http" | "ws" => "ws",
            "https" | "wss" => "wss",
            other => return Err(bad(&format!("the scheme {other} is not http(s) or ws(s)"))),
        };
        listen_url
            .set_scheme(scheme)
            .map_err(|()| bad(&"cannot use the URL as a websocket URL"))?;
        let tls = (scheme == "wss").then(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        });
        Ok(Self {
            client: Arc::new(client),
            listen_url,
            authorization: format!("Token {key}").into(),
            tls,
            config: config.clone(),
        })
    }
}

/// What a failed upgrade means for the retry: 429 and 5xx are the
/// backend's own state, anything else is a connection failure.
fn classify(e: tungstenite::Error) -> BackendError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status();
            let failure = if status == tungstenite::http::StatusCode::TOO_MANY_REQUESTS {
                Failure::RateLimited
            } else if status.is_server_error() {
                Failure::ServerError
            } else {
                Failure::Connect
            };
            let detail = response
                .headers()
                .get("dg-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            BackendError::new(failure, format!("HTTP {status} {detail}"))
        }
        e => BackendError::new(Failure::Connect, e.to_string()),
    }
}

impl Backend for DeepgramBackend {
    fn name(&self) -> &'static str {
        "deepgram"
    }

    fn model(&self) -> String {
        self.config.model.clone()
    }

    fn input(&self) -> AudioInput {
        match self.config.encoding {
            DeepgramEncoding::Linear16 => AudioInput::Pcm,
            DeepgramEncoding::OggOpus => AudioInput::Opus,
        }
    }

    fn connect(
        &self,
        pcm_rate: u32,
    ) -> BoxFuture<'static, Result<Box<dyn Connection>, BackendError>> {
        let client = self.client.clone();
        let config = self.config.clone();
        let listen_url = self.listen_url.clone();
        let authorization = self.authorization.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let options = Options::builder()
                .model(Model::from(config.model.clone()))
                .language(Language::from(config.language.clone()))
                .smart_format(true)
                .punctuate(true)
                .keyterms(config.keyterms.iter().map(String::as_str))
                // Deepgram keeps nothing to train on (the crate has no
                // setter for it).
                .query_params(
                    config
                        .mip_opt_out
                        .then(|| ("mip_opt_out".to_owned(), "true".to_owned())),
                )
                .build();
            let request = client.transcription().stream_request_with_options(options);
            let request = match config.encoding {
                DeepgramEncoding::Linear16 => request
                    .encoding(deepgram::common::options::Encoding::Linear16)
                    .sample_rate(pcm_rate)
                    .channels(1),
                DeepgramEncoding::OggOpus => request,
            };
            let query = request
                .interim_results(config.interim_results)
                .endpointing(deepgram::common::options::Endpointing::CustomDurationMs(
                    config.endpointing_ms,
                ))
                .urlencoded()
                .map_err(|e| BackendError::new(Failure::Protocol, e.to_string()))?;
            let mut url = listen_url;
            url.set_query(Some(&query));
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| BackendError::new(Failure::Protocol, e.to_string()))?;
            let authorization = tungstenite::http::HeaderValue::from_str(&authorization)
                .map_err(|e| BackendError::new(Failure::Protocol, e.to_string()))?;
            request
                .headers_mut()
                .insert(tungstenite::http::header::AUTHORIZATION, authorization);
            let connector = match tls {
                Some(tls) => Connector::Rustls(tls),
                None => Connector::Plain,
            };
            let buffers = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0);
            let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(buffers),
                false,
                Some(connector),
            )
            .await
            .map_err(classify)?;
            let ogg = (config.encoding == DeepgramEncoding::OggOpus).then(ogg_stream);
            Ok(Box::new(DeepgramConnection {
                ws,
                ogg,
                pcm: Vec::new(),
                held: 0,
                last_sent: Instant::now(),
                keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE_AFTER)),
            }) as Box<dyn Connection>)
        })
    }
}

/// Audio per websocket message (48 kHz samples): 100 ms, the top of what
/// Deepgram recommends. Every message costs a wakeup of the crate's writer
/// task and a socket write, so five 20 ms frames go in one.
const MESSAGE_SAMPLES: u64 = 4_800;

struct DeepgramConnection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// With `ogg-opus`: this connection's Ogg stream (each connection is a
    /// new stream, headers first, so a reconnect starts a clean one).
    ogg: Option<OggOpusWriter>,
    /// With `linear16`: PCM bytes of the next message.
    pcm: Vec<u8>,
    /// Samples (48 kHz) in the next message.
    held: u64,
    /// When the last message went out (for `KeepAlive`).
    last_sent: Instant,
    /// Fires [`KEEP_ALIVE_AFTER`] after `last_sent`, or earlier: moved on
    /// lazily when it fires, not on every send, so a busy connection
    /// touches the timer once every few seconds rather than per message.
    keep_alive: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// A new Ogg stream for one connection; see [`OpusHead::EXACT_MONO`] for
/// why its stream time is the sample count the transcript stream keeps.
fn ogg_stream() -> OggOpusWriter {
    OggOpusWriter::new(rand::random(), &OpusHead::EXACT_MONO, "hearken", &[])
}

impl DeepgramConnection {
    /// Adds `chunk` to the next message.
    fn hold(&mut self, chunk: &Chunk) -> Result<(), BackendError> {
        match (&chunk.audio, self.ogg.as_mut()) {
            (ChunkAudio::Pcm(pcm), None) => extend_linear16(&mut self.pcm, pcm),
            (ChunkAudio::Opus(packet), Some(ogg)) => {
                let samples = u32::try_from(chunk.samples).map_err(|_| {
                    BackendError::new(Failure::Protocol, "an Opus chunk is too long")
                })?;
                ogg.push_packet(packet, samples)
                    .map_err(|e| BackendError::new(Failure::Protocol, e.to_string()))?;
            }
            _ => {
                return Err(BackendError::new(
                    Failure::Protocol,
                    "audio in a form this connection was not opened for",
                ));
            }
        }
        self.held += chunk.samples;
        Ok(())
    }

    /// Sends the held audio as one message (for Ogg, the pages closed so
    /// far plus the open one: Deepgram decodes as pages arrive).
    async fn send_held(&mut self) -> Result<(), BackendError> {
        if self.held == 0 {
            return Ok(());
        }
        self.held = 0;
        let bytes = match self.ogg.as_mut() {
            Some(ogg) => {
                ogg.flush();
                ogg.poll_output()
            }
            None => std::mem::take(&mut self.pcm),
        };
        if bytes.is_empty() {
            // An empty frame would close the stream.
            return Ok(());
        }
        self.send(Message::Binary(bytes.into())).await
    }

    /// Sends one message as it is (nothing is held back).
    async fn send(&mut self, message: Message) -> Result<(), BackendError> {
        self.last_sent = Instant::now();
        self.ws
            .send(message)
            .await
            .map_err(|e| BackendError::new(Failure::Send, e.to_string()))
    }

    /// Sends a control message (`{"type": kind}`).
    async fn control(&mut self, kind: &str) -> Result<(), BackendError> {
        self.send(Message::Text(format!(r#"{{"type":"{kind}"}}"#).into()))
            .await
    }
}

fn words_of(channel: &deepgram::common::stream_response::Channel) -> (String, Vec<StreamWord>) {
    let Some(alt) = channel.alternatives.first() else {
        return (String::new(), Vec::new());
    };
    let words = alt
        .words
        .iter()
        .map(|w| StreamWord {
            word: w.punctuated_word.clone().unwrap_or_else(|| w.word.clone()),
            start: w.start,
            end: w.end,
            confidence: w.confidence,
        })
        .collect();
    (alt.transcript.clone(), words)
}

impl Connection for DeepgramConnection {
    fn send_audio<'a>(&'a mut self, chunk: &'a Chunk) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            self.hold(chunk)?;
            if self.held >= MESSAGE_SAMPLES {
                self.send_held().await?;
            }
            Ok(())
        })
    }

    fn holds_audio(&self) -> bool {
        self.held > 0
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.send_held())
    }

    fn finalize(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.send_held().await?;
            self.control("Finalize").await
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.send_held().await?;
            self.control("CloseStream").await
        })
    }

    fn next_event(&mut self) -> BoxFuture<'_, Option<Result<BackendEvent, BackendError>>> {
        // Cancel-safe: the speaker's task drops this future whenever
        // something else wakes it first. Reading a message and sending a
        // KeepAlive each complete or leave nothing half done.
        Box::pin(async move {
            loop {
                let text = tokio::select! {
                    message = self.ws.next() => match message? {
                        Ok(Message::Text(text)) => text,
                        Ok(Message::Close(frame)) => {
                            return match frame {
                                Some(f) if f.code != CloseCode::Normal => {
                                    Some(Err(BackendError::new(
                                        Failure::Closed,
                                        format!("closed by the server ({}): {}", f.code, f.reason),
                                    )))
                                }
                                _ => None,
                            };
                        }
                        Ok(_) => continue,
                        Err(e) => return Some(Err(BackendError::new(Failure::Closed, e.to_string()))),
                    },
                    () = &mut self.keep_alive => {
                        let due = self.last_sent + KEEP_ALIVE_AFTER;
                        if Instant::now() >= due
                            && let Err(e) = self.control("KeepAlive").await
                        {
                            return Some(Err(e));
                        }
                        let next = self.last_sent + KEEP_ALIVE_AFTER;
                        self.keep_alive.as_mut().reset(next);
                        continue;
                    }
                };
                match serde_json::from_str::<StreamResponse>(&text) {
                    Ok(StreamResponse::TranscriptResponse {
                        start,
                        duration,
                        is_final,
                        channel,
                        ..
                    }) => {
                        let (text, words) = words_of(&channel);
                        return Some(Ok(if is_final {
                            BackendEvent::Final {
                                start,
                                duration,
                                text,
                                words,
                            }
                        } else {
                            BackendEvent::Interim { text, words }
                        }));
                    }
                    Ok(StreamResponse::TerminalResponse { .. }) => {
                        return Some(Ok(BackendEvent::Closed { reason: None }));
                    }
                    Ok(_) => {}
                    // A single malformed message does not end the stream.
                    Err(e) => tracing::warn!(error = %e, "unreadable message from deepgram"),
                }
            }
        })
    }
}
