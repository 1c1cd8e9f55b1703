//! WHIP sessions over real sockets: answers, errors, gateways, bad input,
//! timeouts, admission control, and real independent WebRTC stacks.

mod admission_control;
mod answer_directions;
mod bad_input_during_call;
mod e2e_chromium;
mod errors;
mod gateway_speakers;
mod interop;
mod sdp_fixtures;
mod session_timeouts;
mod two_participants;
