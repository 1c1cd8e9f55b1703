//! Native ingest: the platform pushes each speaker's RTP over QUIC (RoQ),
//! many calls on one connection, and no participant joins the call.

mod bad_input;
mod certificate_from_files;
mod consent_without_prompts;
mod flows_change_mid_call;
mod platform_vanishes;
mod telephone_transcription;
mod three_calls_one_connection;
