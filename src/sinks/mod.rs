//! Where consented audio goes: files (the recorder) and, later, transcription.

pub mod recorder;
pub mod transcribe;
