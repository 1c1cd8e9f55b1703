//! The sans-IO core: state machines that take input and the current time as
//! arguments and return outputs. Nothing here reads a clock, opens a socket or
//! touches a file; the shell does that and feeds the core.

pub mod conference;
pub mod consent;
pub mod dtmf;
pub mod ids;
pub mod offer;
pub mod ogg;
pub mod opus;
pub mod policy;
pub mod prompt;
pub mod speaker;
pub mod track;
pub mod transcript;
pub mod voice;
