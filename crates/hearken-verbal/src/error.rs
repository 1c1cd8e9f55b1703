//! The errors of this crate: loading a model, decoding an utterance, handing
//! work to the recogniser thread.

use std::path::PathBuf;

/// Why a verbal-consent model could not be loaded. Every variant says what is
/// missing, so the server can start without verbal consent and log why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// No grammar for this language: consent falls back to DTMF and the API.
    #[error(
        "no verbal-consent grammar for language {language:?} (have: {known}); consent falls back to DTMF and the API",
        known = crate::language::CODES.join(", ")
    )]
    NoGrammar {
        /// The language asked for.
        language: String,
    },
    /// The acoustic model or its dictionary is not where it should be.
    #[error(
        "the {language} speech model is not installed: {path} is missing (Debian package {package})"
    )]
    ModelNotInstalled {
        /// The language whose model is missing.
        language: &'static str,
        /// The file or directory that is missing.
        path: PathBuf,
        /// The Debian package that installs it.
        package: &'static str,
    },
    /// A model file exists but could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A word of the grammar is not in the model's pronunciation dictionary.
    #[error("the word {word:?} of the {language} grammar is not in the dictionary {dictionary}")]
    WordNotInDictionary {
        /// The grammar's language.
        language: &'static str,
        /// The word.
        word: &'static str,
        /// The dictionary searched.
        dictionary: PathBuf,
    },
    /// The decoder's own dictionary could not be written to a temporary file.
    #[error("cannot write the decoder's dictionary to a temporary file")]
    TempFile(#[source] std::io::Error),
    /// pocketsphinx refused the configuration, the model or a grammar.
    #[error("pocketsphinx could not {step} (a damaged or incompatible model)")]
    Decoder {
        /// What it was doing.
        step: &'static str,
    },
    /// The recogniser thread could not be started or stopped before loading.
    #[error("the recogniser thread could not start")]
    Thread(#[source] std::io::Error),
}

/// Why an utterance could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A pocketsphinx call failed.
    #[error("pocketsphinx failed to {step}")]
    Decoder {
        /// The call that failed.
        step: &'static str,
    },
}

/// Why the recogniser thread did not take an utterance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// Its queue is full: the caller decides (drop and count, or fall back).
    #[error("the recogniser's queue is full")]
    Full(Box<crate::Job>),
    /// The thread has ended (it panicked or the recogniser is shutting down).
    #[error("the recogniser thread has stopped")]
    Stopped(Box<crate::Job>),
}
