//! Deepgram live streaming through the `deepgram` crate (`listen` feature),
//! one websocket per speaker: `linear16` at 16 kHz mono (the default), or the
//! speaker's own Opus packets in an Ogg Opus container (`ogg-opus`, no
//! decoding at all; Deepgram detects the container, so no `encoding` is
//! sent). Requests carry `mip_opt_out=true` unless
//! `transcription.deepgram.mip_opt_out` is off, so Deepgram keeps nothing.

use std::sync::Arc;

use deepgram::Deepgram;
use deepgram::common::options::{Language, Model, Options};
use deepgram::common::stream_response::StreamResponse;
use deepgram::listen::websocket::WebsocketHandle;

use super::backend::{
    AudioInput, Backend, BackendError, BackendEvent, BoxFuture, Connection, Failure,
};
use crate::config::{DeepgramConfig, DeepgramEncoding};
use hearken_core::ogg::{OggOpusWriter, OpusHead};
use hearken_core::transcript::{Chunk, ChunkAudio, StreamWord, extend_linear16};

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
    client: Arc<Deepgram>,
    config: DeepgramConfig,
}

impl DeepgramBackend {
    /// With its API key (read by the server from the variable
    /// `api_key_env` names).
    pub fn with_key(config: &DeepgramConfig, key: &str) -> Result<Self, DeepgramSetupError> {
        let client = Deepgram::with_base_url_and_api_key(config.url.as_str(), key)
            .map_err(|e| DeepgramSetupError::BadUrl(e.to_string()))?;
        Ok(Self {
            client: Arc::new(client),
            config: config.clone(),
        })
    }
}

fn classify(e: &deepgram::DeepgramError) -> BackendError {
    let text = e.to_string();
    let reason = if text.contains("429") {
        Failure::RateLimited
    } else if text.contains(" 5") && text.contains("HTTP") || text.contains("50") {
        Failure::ServerError
    } else {
        Failure::Connect
    };
    BackendError::new(reason, text)
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
            let handle = request
                .interim_results(config.interim_results)
                .endpointing(deepgram::common::options::Endpointing::CustomDurationMs(
                    config.endpointing_ms,
                ))
                // The crate's worker sends KeepAlive after 3 s without
                // audio, so a silent speaker does not hit NET-0001.
                .keep_alive()
                .handle()
                .await
                .map_err(|e| classify(&e))?;
            let ogg = (config.encoding == DeepgramEncoding::OggOpus).then(ogg_stream);
            Ok(Box::new(DeepgramConnection {
                handle,
                ogg,
                pcm: Vec::new(),
                held: 0,
            }) as Box<dyn Connection>)
        })
    }
}

/// Audio per websocket message (48 kHz samples): 100 ms, the top of what
/// Deepgram recommends. Every message costs a wakeup of the crate's writer
/// task and a socket write, so five 20 ms frames go in one.
const MESSAGE_SAMPLES: u64 = 4_800;

struct DeepgramConnection {
    handle: WebsocketHandle,
    /// With `ogg-opus`: this connection's Ogg stream (each connection is a
    /// new stream, headers first, so a reconnect starts a clean one).
    ogg: Option<OggOpusWriter>,
    /// With `linear16`: PCM bytes of the next message.
    pcm: Vec<u8>,
    /// Samples (48 kHz) in the next message.
    held: u64,
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
        self.handle
            .send_data(bytes)
            .await
            .map_err(|e| BackendError::new(Failure::Send, e.to_string()))
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
            self.handle
                .finalize()
                .await
                .map_err(|e| BackendError::new(Failure::Send, e.to_string()))
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.send_held().await?;
            self.handle
                .close_stream()
                .await
                .map_err(|e| BackendError::new(Failure::Send, e.to_string()))
        })
    }

    fn next_event(&mut self) -> BoxFuture<'_, Option<Result<BackendEvent, BackendError>>> {
        Box::pin(async move {
            loop {
                let response = self.handle.receive().await?;
                match response {
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
                    Ok(_) => continue,
                    Err(deepgram::DeepgramError::WebsocketClose { code, reason }) => {
                        return Some(Err(BackendError::new(
                            Failure::Closed,
                            format!("closed by the server ({code}): {reason}"),
                        )));
                    }
                    Err(e) => {
                        let text = e.to_string();
                        // A single malformed message does not end the stream.
                        if text.contains("missing field") || text.contains("JSON") {
                            tracing::warn!(error = %text, "unreadable message from deepgram");
                            continue;
                        }
                        return Some(Err(BackendError::new(Failure::Closed, text)));
                    }
                }
            }
        })
    }
}
