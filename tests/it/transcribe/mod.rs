//! Transcription through a fake Deepgram that speaks the real protocol:
//! start-up, reconnects, shutdown, consent, backpressure, silence, and
//! backends that misbehave.

mod backpressure;
mod bad_backends;
mod consent;
mod keep_alive;
mod reconnects;
mod shutdown;
mod skips_silence;
mod startup;
