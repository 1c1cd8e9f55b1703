//! The `hearken` subcommands that are more than starting the server (the
//! command-line parsing itself is in `main.rs`).

pub mod consent;
pub mod policy;
