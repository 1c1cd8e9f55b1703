//! WebRTC sessions (str0m) and the media worker threads that own them.

pub mod worker;
