//! Recording consent, decided in the pure core.
//!
//! The law is data, not code: `consent/rules.yaml` (built into the binary,
//! replaceable with `consent.rules_file`) maps each jurisdiction (an ISO 3166-1
//! country, an ISO 3166-2 subdivision, or a group such as the EEA) to a legal
//! floor and a recommended mode. [`rules`] parses and validates that file,
//! resolves a participant's location to one entry (subdivision, then country,
//! then group, then the default for unknown locations), applies the company
//! policy (which can raise a mode but never lower it below the legal floor),
//! and decides the mode of a call and the scope of its gate: the strictest of
//! the participants and the recorder wins.
//!
//! Modes, weakest to strictest: `none < notify < notify_and_allow_opt_out <
//! explicit`. Nothing here is legal advice; the rules file says so too.

pub mod engine;
pub mod events;
pub mod rules;
