//! The `hearken` subcommands that are more than starting the server (the
//! command-line parsing itself is in `main.rs`).

pub mod consent;
pub mod policy;

use std::path::PathBuf;

/// Why a subcommand could not do its work. Every variant names the file,
/// flag or config key it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An input file could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    Read {
        /// What the file is (`rules`, `participants`, `settings`, …).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An input file was read but is not usable.
    #[error("{what} file {}: {message}", path.display())]
    Invalid {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A flag or config value is not usable.
    #[error("{name}: {message}")]
    Value {
        /// The flag (`--to`) or config key (`consent.recorder_location`).
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The output could not be encoded as JSON.
    #[error("cannot encode the output as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads a whole input file, naming it in the error.
fn read_file(what: &'static str, path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// An [`CliError::Invalid`] for `path`.
fn invalid(what: &'static str, path: &std::path::Path, message: impl ToString) -> CliError {
    CliError::Invalid {
        what,
        path: path.to_owned(),
        message: message.to_string(),
    }
}
