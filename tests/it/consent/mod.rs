//! Consent end to end: notices, DTMF, late joiners, declines, the rules
//! file, `hearken consent explain`, and the audit log (`hearken consent
//! verify`, failing closed), and spoken consent heard locally.

mod announcement_in_recording;
mod audit_log;
mod decline_policies;
mod explain;
mod explicit_dtmf;
mod late_joiner_all_party;
mod notify_implicit;
mod pre_call_inputs_survive_a_failed_session;
mod rules_errors;
mod two_prompts_in_chromium;
mod verbal_no;
mod verbal_yes;
